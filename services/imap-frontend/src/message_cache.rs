//! What FETCH serves of a message that never changes, kept per message for
//! the whole process: internal date, size, where GetBody finds the body,
//! the parsed `mailfleet_mime::MessageMeta` (ENVELOPE, BODYSTRUCTURE, part
//! offsets) and the top-level header block (HEADER.FIELDS).
//!
//! A message is named by (mailbox id, UID): mailstore never gives a UID
//! twice in a mailbox and never reuses a mailbox id, and a message's content
//! and these fields are fixed once it exists, so an entry needs no
//! invalidation. Its flags and modseq change, but those live in the
//! session's view. A FETCH asks mailstore only for the messages missing
//! here: the classic FETCH of 100 messages' ENVELOPE and header fields was
//! one FetchMessages call carrying 100 metadata documents and header blocks,
//! each parsed again here; once the messages are known it needs no call.
//! Bounded by weight and shared by every session; depends on nothing of the
//! session.

use std::sync::Arc;

use mailfleet_mime::MessageMeta;
use mailfleet_proto::v1 as pb;
use quick_cache::sync::Cache;

/// What an entry is counted as beyond its header block and metadata.
const ENTRY_OVERHEAD: u64 = 256;
/// Typical entry weight, to size the cache's tables.
const TYPICAL_ENTRY: u64 = 4096;

/// One message's immutable FETCH data.
#[derive(Debug, Default)]
pub(crate) struct Cached {
    pub uid: u32,
    pub internal_date_ms: i64,
    /// Octets served by GetBody (Return-Path line included).
    pub size: u64,
    /// Length of the Return-Path line served before the blob.
    pub prefix_len: u32,
    pub body_ref: Option<pb::BodyRef>,
    /// Metadata was asked for (else `meta` is the default).
    pub with_meta: bool,
    pub meta: Arc<MessageMeta>,
    /// The header block was asked for. It may still be empty (too large
    /// or unreadable for mailstore to send): GetBody reads it then.
    pub with_header: bool,
    pub header: Box<[u8]>,
    /// What the metadata weighed as JSON (the parsed form is about as big).
    meta_len: u64,
}

impl Cached {
    /// From a FetchMessages answer asked `with_meta`/`with_header`; the
    /// metadata already parsed for the same message (`parsed`) is reused.
    pub(crate) fn from_fetched(
        m: pb::FetchedMessage,
        with_meta: bool,
        with_header: bool,
        parsed: Option<Arc<MessageMeta>>,
    ) -> Cached {
        let meta = match parsed {
            Some(meta) => meta,
            None if m.meta_json.is_empty() => Arc::default(),
            None => Arc::new(serde_json::from_slice(&m.meta_json).unwrap_or_default()),
        };
        Cached {
            uid: m.uid,
            internal_date_ms: m.internal_date_ms,
            size: m.size,
            prefix_len: m.prefix_len,
            body_ref: m.body_ref,
            with_meta,
            meta,
            with_header,
            header: m.header.into_boxed_slice(),
            meta_len: m.meta_json.len() as u64,
        }
    }

    /// Whether this entry serves a FETCH that needs `meta` and `header`.
    fn serves(&self, meta: bool, header: bool) -> bool {
        (self.with_meta || !meta) && (self.with_header || !header)
    }
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<(i64, u32), Arc<Cached>> for Weight {
    fn weight(&self, _key: &(i64, u32), val: &Arc<Cached>) -> u64 {
        ENTRY_OVERHEAD + 2 * val.meta_len + val.header.len() as u64
    }
}

/// Shared by every session of the process.
pub(crate) struct MessageCache(Option<Cache<(i64, u32), Arc<Cached>, Weight>>);

impl MessageCache {
    /// A cache of about `bytes` (0: none, every FETCH asks mailstore).
    pub(crate) fn new(bytes: u64) -> MessageCache {
        if bytes == 0 {
            return MessageCache(None);
        }
        let items = usize::try_from((bytes / TYPICAL_ENTRY).max(16)).unwrap_or(usize::MAX);
        MessageCache(Some(Cache::with_weighter(items, bytes, Weight)))
    }

    /// Message `uid` of mailbox `mailbox`, whatever it holds.
    pub(crate) fn peek(&self, mailbox: i64, uid: u32) -> Option<Arc<Cached>> {
        self.0.as_ref()?.get(&(mailbox, uid))
    }

    /// Message `uid` of mailbox `mailbox` when the entry has what a FETCH
    /// needing `meta` and `header` reads.
    pub(crate) fn get(
        &self,
        mailbox: i64,
        uid: u32,
        meta: bool,
        header: bool,
    ) -> Option<Arc<Cached>> {
        self.peek(mailbox, uid).filter(|c| c.serves(meta, header))
    }

    /// Keeps `entry`, unless the entry already kept has more.
    pub(crate) fn insert(&self, mailbox: i64, entry: Arc<Cached>) {
        let Some(cache) = &self.0 else { return };
        let key = (mailbox, entry.uid);
        if let Some(kept) = cache.get(&key)
            && kept.serves(entry.with_meta, entry.with_header)
            && !entry.serves(kept.with_meta, kept.with_header)
        {
            return;
        }
        cache.insert(key, entry);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fetched(uid: u32, subject: &str) -> pb::FetchedMessage {
        let mut meta = MessageMeta::default();
        meta.envelope.subject = Some(subject.into());
        pb::FetchedMessage {
            uid,
            meta_json: serde_json::to_vec(&meta).unwrap(),
            header: b"Subject: x\r\n\r\n".to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn kept_per_mailbox_and_uid_with_what_was_asked() {
        let cache = MessageCache::new(1 << 20);
        let a = Arc::new(Cached::from_fetched(fetched(1, "first"), true, false, None));
        cache.insert(7, a.clone());
        // The same UID of another mailbox is another message.
        assert!(cache.peek(8, 1).is_none());
        assert_eq!(
            cache
                .get(7, 1, true, false)
                .unwrap()
                .meta
                .envelope
                .subject
                .as_deref(),
            Some("first")
        );
        // Asked without the header block: a FETCH of header fields misses.
        assert!(cache.get(7, 1, true, true).is_none());
        // A plain entry never replaces a fuller one.
        cache.insert(
            7,
            Arc::new(Cached::from_fetched(fetched(1, "x"), false, false, None)),
        );
        assert!(Arc::ptr_eq(&cache.get(7, 1, true, false).unwrap(), &a));
        // A fuller one does, and reuses the parsed metadata it is given.
        let full = Cached::from_fetched(fetched(1, "ignored"), true, true, Some(a.meta.clone()));
        cache.insert(7, Arc::new(full));
        let got = cache.get(7, 1, true, true).unwrap();
        assert!(Arc::ptr_eq(&got.meta, &a.meta));
        assert_eq!(&*got.header, b"Subject: x\r\n\r\n");
        // Without a cache nothing is kept.
        let none = MessageCache::new(0);
        none.insert(7, a);
        assert!(none.peek(7, 1).is_none());
    }
}
