//! Sealing of secrets kept in Postgres (DKIM private keys).
//!
//! With `MAILFLEET_DKIM_KEY_SECRET` set, a secret is sealed at rest
//! (AES-256-GCM, key = SHA-256 of the secret, the domain as associated data,
//! stored as `MFS1 || nonce || ciphertext`), so a database dump or backup
//! does not leak it; keys stored unsealed earlier still load (PKCS#8 DER
//! starts with 0x30, never with the marker). Apart from `dkim` so that
//! `Store`, which holds a `Sealer`, does not import the module that extends it.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// Marks a sealed private key.
const SEALED: &[u8; 4] = b"MFS1";

/// Seals and opens private keys; without a secret it stores them as they are.
#[derive(Clone, Default)]
pub struct Sealer(Option<Arc<LessSafeKey>>);

impl Sealer {
    pub fn from_secret(secret: &str) -> Self {
        if secret.is_empty() {
            return Self(None);
        }
        let digest = Sha256::digest(secret.as_bytes());
        // AES-256 takes exactly the 32 bytes of a SHA-256 digest.
        Self(
            UnboundKey::new(&AES_256_GCM, &digest)
                .ok()
                .map(|k| Arc::new(LessSafeKey::new(k))),
        )
    }

    pub fn seal(&self, domain: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let Some(key) = &self.0 else {
            return Ok(plain.to_vec());
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Internal("no randomness for sealing".into()))?;
        let mut data = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(domain.as_bytes()),
            &mut data,
        )
        .map_err(|_| StoreError::Internal("sealing the DKIM key failed".into()))?;
        let mut out = Vec::with_capacity(SEALED.len() + NONCE_LEN + data.len());
        out.extend_from_slice(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    pub fn open(&self, domain: &str, stored: &[u8]) -> Result<Vec<u8>> {
        let Some(sealed) = stored.strip_prefix(SEALED.as_slice()) else {
            return Ok(stored.to_vec());
        };
        let key = self.0.as_ref().ok_or_else(|| {
            StoreError::FailedPrecondition(
                "the DKIM key is sealed and MAILFLEET_DKIM_KEY_SECRET is not set".into(),
            )
        })?;
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Internal("truncated sealed DKIM key".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| StoreError::Internal("bad nonce of a sealed DKIM key".into()))?;
        let mut data = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(domain.as_bytes()), &mut data)
            .map_err(|_| {
                StoreError::FailedPrecondition(
                    "the DKIM key does not open with MAILFLEET_DKIM_KEY_SECRET".into(),
                )
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_secret_and_domain() {
        let sealer = Sealer::from_secret("a secret of at least thirty-two bytes!!");
        let sealed = sealer.seal("a.test", b"\x30key").unwrap();
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.windows(4).any(|w| w == b"\x30key"));
        assert_eq!(sealer.open("a.test", &sealed).unwrap(), b"\x30key");
        assert!(
            sealer.open("b.test", &sealed).is_err(),
            "bound to its domain"
        );
        assert!(
            Sealer::from_secret("other")
                .open("a.test", &sealed)
                .is_err()
        );
        assert!(Sealer::default().open("a.test", &sealed).is_err());
        // Keys stored unsealed (no secret when they were made) still load.
        assert_eq!(sealer.open("a.test", b"\x30plain").unwrap(), b"\x30plain");
        assert_eq!(
            Sealer::default().seal("a.test", b"\x30k").unwrap(),
            b"\x30k"
        );
    }
}
