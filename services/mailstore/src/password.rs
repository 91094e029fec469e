//! argon2id password hashing. Hashing and verifying cost tens of
//! milliseconds of CPU, so callers run them on the blocking pool.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    /// A hash of a random password, verified for unknown users so that a
    /// failed login costs the same whether or not the account exists.
    dummy: String,
}

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, String> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| format!("argon2 parameters: {e}"))?;
        let mut h = Self {
            params,
            dummy: String::new(),
        };
        let random: [u8; 16] = rand::random();
        h.dummy = h.hash(&hex::encode(random))?;
        Ok(h)
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string for `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        self.argon()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| format!("argon2 hash: {e}"))
    }

    /// Verifies `password` against `phc`, or against the dummy hash when
    /// there is no account, so both cases take the same time.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let (hash, real) = match phc {
            Some(h) => (h, true),
            None => (self.dummy.as_str(), false),
        };
        // Verification uses the parameters stored in the hash itself.
        let ok = self
            .argon()
            .verify_password(password.as_bytes(), hash)
            .is_ok();
        ok && real
    }
}

/// Recently verified credentials, so repeated logins (IMAP clients open
/// several connections, POP3 polls) skip the argon2 cost. Entries are keyed
/// by an HMAC of user and password under a per-process random key (no
/// password is kept) and remember the stored hash they were verified
/// against: after a password change the stored hash differs and the entry no
/// longer matches, on every replica.
pub struct CredentialCache {
    key: [u8; 32],
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl CredentialCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            key: rand::random(),
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, user: &str, password: &str) -> Option<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// True when `user`/`password` was verified against `stored_hash` recently.
    pub fn check(&self, user: &str, password: &str, stored_hash: &str) -> bool {
        let Some(tag) = self.tag(user, password) else {
            return false;
        };
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        entries
            .get(&tag)
            .is_some_and(|(hash, at)| hash == stored_hash && at.elapsed() < self.ttl)
    }

    /// Remembers a successful verification.
    pub fn insert(&self, user: &str, password: &str, stored_hash: &str) {
        let Some(tag) = self.tag(user, password) else {
            return;
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than track LRU order.
                entries.clear();
            }
        }
        entries.insert(tag, (stored_hash.to_owned(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = Hasher::new(1024, 1).unwrap();
        let phc = h.hash("hunter2").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(h.verify("hunter2", Some(&phc)));
        assert!(!h.verify("hunter3", Some(&phc)));
        assert!(!h.verify("hunter2", None));
        assert!(!h.verify("x", Some("not a hash")));
    }

    #[test]
    fn cache_matches_only_the_same_user_password_and_hash() {
        let c = CredentialCache::new(2, Duration::from_secs(60));
        c.insert("a@x", "pw", "$hash1");
        assert!(c.check("a@x", "pw", "$hash1"));
        assert!(!c.check("a@x", "pw2", "$hash1"));
        assert!(!c.check("b@x", "pw", "$hash1"));
        assert!(
            !c.check("a@x", "pw", "$hash2"),
            "a password change invalidates"
        );
        c.insert("b@x", "pw", "$h");
        c.insert("c@x", "pw", "$h");
        assert!(c.check("c@x", "pw", "$h"), "bounded, newest kept");
        let expired = CredentialCache::new(2, Duration::ZERO);
        expired.insert("a@x", "pw", "$hash1");
        assert!(!expired.check("a@x", "pw", "$hash1"));
    }
}
