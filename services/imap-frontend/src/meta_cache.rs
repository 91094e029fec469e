//! Parsed message metadata, kept per blob id for the whole process.
//!
//! FetchMessages sends each message's `mailfleet_mime::MessageMeta` as
//! JSON, and a FETCH of ENVELOPE or BODYSTRUCTURE parsed it for every
//! message every time: the classic mix's FETCH of 100 messages parsed 100
//! documents. A blob's metadata never changes (mailstore keeps it by blob
//! id for the same reason), so the parsed form is kept in a bounded cache
//! shared by all sessions and needs no invalidation. Depends on nothing of
//! the session.

use std::sync::Arc;

use mailfleet_mime::MessageMeta;
use mailfleet_proto::v1 as pb;
use quick_cache::sync::Cache;

/// What an entry is counted as beyond its JSON's length (the parsed form
/// holds about the same text, in more allocations).
const ENTRY_OVERHEAD: u64 = 512;
/// Typical JSON length, to size the cache's tables.
const TYPICAL_ENTRY: u64 = 2048;

/// An entry: the parsed metadata and the length of the JSON it came from,
/// which is what it weighs.
#[derive(Clone)]
struct Kept {
    meta: Arc<MessageMeta>,
    json_len: u64,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Box<str>, Kept> for Weight {
    fn weight(&self, key: &Box<str>, val: &Kept) -> u64 {
        key.len() as u64 + ENTRY_OVERHEAD + 2 * val.json_len
    }
}

/// Shared by every session of the process.
pub(crate) struct MetaCache(Option<Cache<Box<str>, Kept, Weight>>);

impl MetaCache {
    /// A cache of about `bytes` (0: none, every FETCH parses).
    pub(crate) fn new(bytes: u64) -> MetaCache {
        if bytes == 0 {
            return MetaCache(None);
        }
        let items = usize::try_from((bytes / TYPICAL_ENTRY).max(16)).unwrap_or(usize::MAX);
        MetaCache(Some(Cache::with_weighter(items, bytes, Weight)))
    }

    /// The metadata of `m` (the default when it has none or it does not
    /// parse), parsed once per blob.
    pub(crate) fn get(&self, m: &pb::FetchedMessage) -> Arc<MessageMeta> {
        if m.meta_json.is_empty() {
            return Arc::default();
        }
        let blob = m.body_ref.as_ref().map_or("", |r| r.blob_id.as_str());
        let cache = self.0.as_ref().filter(|_| !blob.is_empty());
        if let Some(kept) = cache.and_then(|c| c.get(blob)) {
            return kept.meta;
        }
        let parsed: Arc<MessageMeta> =
            Arc::new(serde_json::from_slice(&m.meta_json).unwrap_or_default());
        if let Some(c) = cache {
            let json_len = m.meta_json.len() as u64;
            c.insert(
                blob.into(),
                Kept {
                    meta: parsed.clone(),
                    json_len,
                },
            );
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fetched(blob: &str, subject: &str) -> pb::FetchedMessage {
        let mut meta = MessageMeta::default();
        meta.envelope.subject = Some(subject.into());
        pb::FetchedMessage {
            meta_json: serde_json::to_vec(&meta).unwrap(),
            body_ref: Some(pb::BodyRef {
                blob_id: blob.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn parsed_once_per_blob_and_never_mixed_up() {
        let cache = MetaCache::new(1 << 20);
        let a = cache.get(&fetched("a", "first"));
        // The same blob is not parsed again: its entry is the same one.
        let again = cache.get(&fetched("a", "first"));
        assert!(Arc::ptr_eq(&a, &again));
        let b = cache.get(&fetched("b", "second"));
        assert_eq!(b.envelope.subject.as_deref(), Some("second"));
        // Without a blob id, nothing is kept.
        let mut no_ref = fetched("", "third");
        no_ref.body_ref = None;
        assert_eq!(
            cache.get(&no_ref).envelope.subject.as_deref(),
            Some("third")
        );
        assert!(
            MetaCache::new(0)
                .get(&fetched("a", "x"))
                .envelope
                .subject
                .is_some()
        );
        assert_eq!(
            cache.get(&pb::FetchedMessage::default()).envelope,
            Default::default()
        );
    }
}
