//! DKIM signing of relayed mail (RFC 6376) with mail-auth.
//!
//! The signing domain is the domain of the message's From header (what
//! DMARC aligns with); mail whose From domain is not local goes unsigned.
//! Keys come from mailstore (`Outbound.GetDkimKey`, created there on first
//! use) and are cached for [`KEY_TTL`], misses included. The body is
//! streamed from object storage through mail-auth's streaming signer, so a
//! large message is never held in memory; the relay streams it again to
//! send it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mailfleet_blob::BlobStore;
use mailfleet_proto::v1::GetDkimKeyRequest;
use mailfleet_proto::v1::outbound_client::OutboundClient;
use mailfleet_runtime::grpc::AuthedChannel;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::warn;

/// How long a key (or the absence of one) is cached.
const KEY_TTL: Duration = Duration::from_secs(300);
/// Header sections larger than this are not signed (and not buffered).
const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Headers signed when present (RFC 6376 5.4.1 recommendations).
const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

pub type Outbound = OutboundClient<AuthedChannel>;

/// A signer bound to one domain, selector and key (reusable across messages).
type Key = DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>;

type Cached = (Instant, Option<Arc<Key>>);

/// Signs outbound messages; cheap to share behind an `Arc`.
pub struct Signer {
    client: Outbound,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Signer {
    pub fn new(client: Outbound) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn key(&self, domain: &str) -> Result<Option<Arc<Key>>, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, key)) = cache.get(domain)
            && at.elapsed() < KEY_TTL
        {
            return Ok(key.clone());
        }
        let answer = self
            .client
            .clone()
            .get_dkim_key(GetDkimKeyRequest {
                domain: domain.to_owned(),
            })
            .await
            .map_err(|s| format!("cannot fetch the DKIM key of {domain}: {}", s.message()))?
            .into_inner();
        let key = if answer.found {
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(answer.private_key));
            match RsaKey::<Sha256>::from_key_der(der) {
                Ok(rsa) => Some(Arc::new(
                    DkimSigner::from_key(rsa)
                        .domain(domain.to_owned())
                        .selector(answer.selector)
                        .headers(SIGNED_HEADERS),
                )),
                Err(error) => {
                    warn!(%domain, %error, "The stored DKIM key does not load; sending unsigned.");
                    None
                }
            }
        } else {
            None
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(domain.to_owned(), (Instant::now(), key.clone()));
        }
        Ok(key)
    }

    /// The `DKIM-Signature:` header line (CRLF-terminated) to prepend to the
    /// message, or nothing when its From domain has no key. An error means
    /// the key or the body could not be read now (try later).
    pub async fn signature(&self, blobs: &BlobStore, blob_id: &str) -> Result<Vec<u8>, String> {
        let mut stream = blobs
            .stream(blob_id, None)
            .await
            .map_err(|e| format!("reading the message: {e}"))?;
        let mut head = Vec::new();
        let boundary = loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let from = head.len().saturating_sub(3);
                    head.extend_from_slice(&chunk);
                    if let Some(at) = find(&head[from..], b"\r\n\r\n") {
                        break Some(from + at + 4);
                    }
                    if head.len() > MAX_HEADER_BYTES {
                        return Ok(Vec::new());
                    }
                }
                Some(Err(e)) => return Err(format!("reading the message: {e}")),
                None => break None,
            }
        };
        let headers = &head[..boundary.unwrap_or(head.len())];
        let Some(domain) = from_domain(headers) else {
            return Ok(Vec::new());
        };
        let Some(key) = self.key(&domain).await? else {
            return Ok(Vec::new());
        };
        let mut signing = key.sign_streaming();
        signing.write(&head);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("reading the message: {e}"))?;
            signing.write(&chunk);
        }
        let signature = signing
            .finish()
            .map_err(|e| format!("DKIM signing for {domain} failed: {e}"))?;
        Ok(signature.to_header().into_bytes())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The lower-cased domain of the first address of the first From field
/// (`mailfleet_mime::first_from`, the reading the submission sender check
/// and the IMAP ENVELOPE share).
pub fn from_domain(headers: &[u8]) -> Option<String> {
    let addresses = mailfleet_mime::first_from(headers)?;
    let (_, domain) = addresses.first()?.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_from_domain_is_found() {
        assert_eq!(
            from_domain(b"Subject: x\r\nFrom: Alice <alice@A.Test>\r\n\r\n").as_deref(),
            Some("a.test")
        );
        assert_eq!(from_domain(b"Subject: x\r\n\r\n"), None);
        // Two From fields: the first one signs, as ENVELOPE shows it.
        assert_eq!(
            from_domain(b"From: a@first.test\r\nFrom: b@second.test\r\n\r\n").as_deref(),
            Some("first.test")
        );
    }
}
