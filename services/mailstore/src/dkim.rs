//! DKIM signing keys of local domains (RFC 6376) and the DNS records an
//! operator publishes for a domain.
//!
//! Each local domain gets one RSA-2048 key pair, created on first use (the
//! first `DomainDns` or the worker's first signature for the domain) and kept
//! in `dkim_keys`. RSA rather than Ed25519 (RFC 8463) because large receivers
//! still verify only `rsa-sha256`. Keys are generated with aws-lc-rs, which
//! is fast where a pure-Rust RSA generator takes seconds in debug builds.
//! Concurrent first uses race on `INSERT ... ON CONFLICT DO NOTHING` and all
//! read back the one winning row.
//!
//! With `MAILFLEET_DKIM_KEY_SECRET` set, private keys are sealed at rest
//! (see [`crate::seal`]).

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;

use crate::address::normalize_domain;
use crate::error::{Result, StoreError};
use crate::store::Store;

/// One domain's signing key.
#[derive(Clone, Debug)]
pub struct DkimKey {
    pub selector: String,
    pub algorithm: String,
    /// PKCS#8 DER.
    pub private_key: Vec<u8>,
    /// SubjectPublicKeyInfo DER (what `p=` carries, RFC 6376 3.6.1).
    pub public_key: Vec<u8>,
}

/// One DNS record to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub kind: &'static str,
    pub value: String,
}

/// A selector named after the month of creation, so a rotated key gets a
/// new name and both records can coexist while caches expire.
fn new_selector() -> String {
    format!("mf{}", chrono::Utc::now().format("%Y%m"))
}

fn generate() -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| StoreError::Internal("RSA key generation failed".into()))?;
    let private: Pkcs8V1Der<'static> = pair
        .as_der()
        .map_err(|_| StoreError::Internal("RSA key encoding failed".into()))?;
    let public: PublicKeyX509Der<'static> = pair
        .public_key()
        .as_der()
        .map_err(|_| StoreError::Internal("RSA public key encoding failed".into()))?;
    Ok((private.as_ref().to_vec(), public.as_ref().to_vec()))
}

impl Store {
    /// The domain's key, created if missing; `None` when the domain is not
    /// local.
    pub async fn dkim_key(&self, raw: &str) -> Result<Option<DkimKey>> {
        let Some(domain) = normalize_domain(raw) else {
            return Ok(None);
        };
        if let Some(key) = self.read_dkim_key(&domain).await? {
            return Ok(Some(key));
        }
        let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM domains WHERE name = $1")
            .bind(&domain)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let (private, public) = tokio::task::spawn_blocking(generate)
            .await
            .map_err(|e| StoreError::Internal(format!("key generation task: {e}")))??;
        sqlx::query(
            "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key) \
             VALUES ($1, $2, 'rsa-sha256', $3, $4) ON CONFLICT (domain) DO NOTHING",
        )
        .bind(&domain)
        .bind(new_selector())
        .bind(self.dkim_seal.seal(&domain, &private)?)
        .bind(&public)
        .execute(&self.pool)
        .await?;
        tracing::info!(%domain, "Created the DKIM key of a domain.");
        self.read_dkim_key(&domain).await
    }

    async fn read_dkim_key(&self, domain: &str) -> Result<Option<DkimKey>> {
        let row: Option<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT selector, algorithm, private_key, public_key FROM dkim_keys WHERE domain = $1",
        )
        .bind(domain)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(selector, algorithm, private_key, public_key)| {
            Ok(DkimKey {
                selector,
                algorithm,
                private_key: self.dkim_seal.open(domain, &private_key)?,
                public_key,
            })
        })
        .transpose()
    }

    /// MX, SPF, DKIM and DMARC records for a local domain.
    pub async fn domain_dns(&self, raw: &str, mx_host: &str) -> Result<Vec<DnsRecord>> {
        let domain = normalize_domain(raw)
            .ok_or_else(|| StoreError::InvalidArgument(format!("not a valid domain: {raw:?}")))?;
        let key = self
            .dkim_key(&domain)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("domain {domain} is not local")))?;
        let mx = if mx_host.trim().is_empty() {
            format!("mail.{domain}")
        } else {
            mx_host.trim().trim_end_matches('.').to_owned()
        };
        Ok(records(&domain, &mx, &key))
    }
}

/// The records, as a zone would hold them (names fully qualified).
pub fn records(domain: &str, mx: &str, key: &DkimKey) -> Vec<DnsRecord> {
    let p = base64::engine::general_purpose::STANDARD.encode(&key.public_key);
    vec![
        DnsRecord {
            name: format!("{domain}."),
            kind: "MX",
            value: format!("10 {mx}."),
        },
        DnsRecord {
            name: format!("{domain}."),
            kind: "TXT",
            // Only the domain's MX hosts send for it; "~all" (softfail) rather
            // than "-all" until the operator has checked every sender.
            value: "v=spf1 mx ~all".into(),
        },
        DnsRecord {
            name: format!("{}._domainkey.{domain}.", key.selector),
            kind: "TXT",
            value: format!("v=DKIM1; k=rsa; p={p}"),
        },
        DnsRecord {
            name: format!("_dmarc.{domain}."),
            kind: "TXT",
            // Monitoring first (p=none) with aggregate reports to postmaster.
            value: format!("v=DMARC1; p=none; rua=mailto:postmaster@{domain}; adkim=r; aspf=r"),
        },
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_keys_load_and_records_name_the_selector() {
        let (private, public) = generate().unwrap();
        assert!(KeyPair::from_pkcs8(&private).is_ok());
        let key = DkimKey {
            selector: "mf202601".into(),
            algorithm: "rsa-sha256".into(),
            private_key: private,
            public_key: public,
        };
        let r = records("example.test", "mx.example.test", &key);
        assert_eq!(r[0].value, "10 mx.example.test.");
        assert_eq!(r[2].name, "mf202601._domainkey.example.test.");
        assert!(r[2].value.starts_with("v=DKIM1; k=rsa; p=MII"));
        assert_eq!(r[3].name, "_dmarc.example.test.");
    }
}
