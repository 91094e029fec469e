//! argon2id password hashing. Hashing and verifying cost tens of
//! milliseconds of CPU, so callers run them on the blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// argon2 working memory (m_cost KiB each), reused across computations.
///
/// Each computation needs m_cost KiB (19 MiB by default). Allocating it per
/// call lets the allocator keep one such block per blocking-pool thread: a
/// burst of logins or account creations then leaves the process holding
/// gigabytes. A fixed pool, one block per core, bounds both the memory and
/// the number of concurrent computations.
struct MemoryPool {
    free: Mutex<Vec<Vec<Block>>>,
    available: Condvar,
}

impl MemoryPool {
    fn new(slots: usize) -> Self {
        Self {
            free: Mutex::new((0..slots).map(|_| Vec::new()).collect()),
            available: Condvar::new(),
        }
    }

    /// Runs `f` with a block buffer of at least `blocks` blocks, waiting for
    /// a free slot.
    fn with<R>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
        let mut buf = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(b) = free.pop() {
                    break b;
                }
                free = self.available.wait(free).unwrap_or_else(|p| p.into_inner());
            }
        };
        if buf.len() < blocks {
            buf.resize(blocks, Block::new());
        }
        let r = f(&mut buf[..blocks]);
        if buf.len() > blocks {
            // A hash with unusual parameters: do not keep the larger buffer.
            buf.truncate(blocks);
            buf.shrink_to_fit();
        }
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(buf);
        self.available.notify_one();
        r
    }
}

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    pool: Arc<MemoryPool>,
    /// A hash of a random password, verified for unknown users so that a
    /// failed login costs the same whether or not the account exists.
    dummy: String,
}

/// Largest m_cost accepted from a stored hash (1 GiB), so a corrupt row
/// cannot make the service allocate without bound.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Self, String> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| format!("argon2 parameters: {e}"))?;
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut h = Self {
            params,
            pool: Arc::new(MemoryPool::new(slots)),
            dummy: String::new(),
        };
        let random: [u8; 16] = rand::random();
        h.dummy = h.hash(&hex::encode(random))?;
        Ok(h)
    }

    /// A PHC string for `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        let salt_bytes: [u8; 16] = rand::random();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.pool
            .with(self.params.block_count(), |mem| {
                argon.hash_password_into_with_memory(
                    password.as_bytes(),
                    &salt_bytes,
                    &mut out,
                    mem,
                )
            })
            .map_err(|e| format!("argon2 hash: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| e.to_string())?,
            salt: Some(Salt::new(&salt_bytes).map_err(|e| e.to_string())?),
            hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
        };
        Ok(phc.to_string())
    }

    /// Verifies `password` against `phc`, or against the dummy hash when
    /// there is no account, so both cases take the same time.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let (hash, real) = match phc {
            Some(h) => (h, true),
            None => (self.dummy.as_str(), false),
        };
        self.verify_phc(password, hash).unwrap_or(false) && real
    }

    /// Verification uses the parameters stored in the hash itself.
    fn verify_phc(&self, password: &str, phc: &str) -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .ok()?
            .unwrap_or_default();
        let params = Params::try_from(&parsed).ok()?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return None;
        }
        let expected = parsed.hash?;
        let salt = parsed.salt?;
        let mut out = vec![0u8; expected.len()];
        let argon = Argon2::new(algorithm, version, params.clone());
        self.pool
            .with(params.block_count(), |mem| {
                argon.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, mem)
            })
            .ok()?;
        // Output compares in constant time.
        Some(Output::new(&out).ok()? == expected)
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

    /// The stored hash `user`/`password` was verified against recently, if
    /// any: a login can then ask for the hash to be unchanged instead of
    /// reading it first.
    pub fn hash_for(&self, user: &str, password: &str) -> Option<String> {
        let tag = self.tag(user, password)?;
        let entries = self.entries.lock().ok()?;
        entries
            .get(&tag)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(hash, _)| hash.clone())
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
    fn hashes_from_the_reference_implementation_verify() {
        // Made by the argon2 crate's own PasswordHasher, so stored hashes of
        // either origin keep working.
        use argon2::PasswordHasher;
        let reference = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"s3cret")
        .unwrap()
        .to_string();
        let h = Hasher::new(2048, 1).unwrap();
        assert!(h.verify("s3cret", Some(&reference)));
        assert!(!h.verify("s3cre", Some(&reference)));
    }

    #[test]
    fn concurrent_hashing_shares_a_bounded_pool() {
        let h = Hasher::new(1024, 1).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    let pw = format!("pw{i}");
                    let phc = h.hash(&pw).unwrap();
                    h.verify(&pw, Some(&phc))
                })
            })
            .collect();
        assert!(threads.into_iter().all(|t| t.join().unwrap()));
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
