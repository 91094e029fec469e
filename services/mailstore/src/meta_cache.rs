//! A bounded in-memory cache of message metadata, keyed by blob id.
//!
//! A blob's metadata never changes once recorded, so any replica may keep
//! it without invalidation. FETCH of ENVELOPE/BODYSTRUCTURE and SEARCH on
//! header fields read it for many messages per call; from Postgres that
//! meant a jsonb-to-text conversion per message and, for SEARCH, a JSON
//! parse of every message in the mailbox each time. With the cache Postgres
//! returns blob ids and only the misses are read (in one query).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use mailfleet_mime::Envelope;
use quick_cache::sync::Cache;
use sqlx::PgPool;

use crate::error::Result;

/// Memory an entry costs beyond its JSON text (key, parsed search fields,
/// bookkeeping), as the cache counts it.
const ENTRY_OVERHEAD: u64 = 256;
/// Typical entry size, to size the cache's tables.
const TYPICAL_ENTRY: u64 = 1024;

/// The part of a message's metadata SEARCH reads: everything but the body
/// structure, which is most of it and never searched.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SearchMeta {
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub header_len: u64,
    #[serde(default)]
    pub envelope: Envelope,
    #[serde(default)]
    pub subject: Option<String>,
}

impl SearchMeta {
    /// The day of the Date header as written, its time and zone ignored
    /// (RFC 3501 6.4.4 SENTBEFORE/SENTON/SENTSINCE), as the Unix
    /// milliseconds of that day's midnight UTC, the form of a SEARCH key's
    /// date. Read from the envelope's Date text, so metadata cached before
    /// this was needed answers too.
    pub fn sent_day_ms(&self) -> Option<i64> {
        const DAY_S: i64 = 86_400;
        let date = mail_parser::DateTime::parse_rfc822(self.envelope.date.as_deref()?)?;
        // to_timestamp_local reads the fields as written, without the zone.
        date.is_valid().then(|| {
            date.to_timestamp_local()
                .div_euclid(DAY_S)
                .saturating_mul(DAY_S * 1000)
        })
    }
}

/// One blob's metadata: the JSON as stored, its search fields parsed the
/// first time a SEARCH needs them, and its top-level header block read from
/// object storage the first time a FETCH of header fields needs it (it is
/// part of the blob, so it never changes either).
pub(crate) struct Entry {
    pub json: Box<str>,
    search: OnceLock<Option<SearchMeta>>,
    /// Set when the entry is made, never after: the cache weighs an entry
    /// again when it replaces it, and must get the same weight.
    header: Option<Bytes>,
}

impl Entry {
    fn new(json: String) -> Entry {
        Entry {
            json: json.into_boxed_str(),
            search: OnceLock::new(),
            header: None,
        }
    }

    /// The blob's top-level header block, once read.
    pub(crate) fn header(&self) -> Option<&Bytes> {
        self.header.as_ref()
    }

    pub(crate) fn search(&self) -> Option<&SearchMeta> {
        self.search
            .get_or_init(|| serde_json::from_str(&self.json).ok())
            .as_ref()
    }
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Box<str>, Arc<Entry>> for Weight {
    fn weight(&self, key: &Box<str>, val: &Arc<Entry>) -> u64 {
        let header = val.header.as_ref().map_or(0, |h| h.len() as u64);
        key.len() as u64 + val.json.len() as u64 + header + ENTRY_OVERHEAD
    }
}

type Entries = Cache<Box<str>, Arc<Entry>, Weight>;

/// Shared by every call of one mailstore process.
#[derive(Clone)]
pub struct MetaCache(Option<Arc<Entries>>);

impl MetaCache {
    /// A cache of at most `bytes` (0: none, every read goes to Postgres).
    pub fn new(bytes: u64) -> MetaCache {
        if bytes == 0 {
            return MetaCache(None);
        }
        let items = usize::try_from((bytes / TYPICAL_ENTRY).max(16)).unwrap_or(usize::MAX);
        MetaCache(Some(Arc::new(Cache::with_weighter(items, bytes, Weight))))
    }

    /// The metadata of each of `ids`, in their order (None: the blob has
    /// no row); misses are read from Postgres in one query and kept. A
    /// SEARCH asks for every message of a mailbox, so hits cost no
    /// allocation beyond the result.
    pub(crate) async fn get_many(
        &self,
        pool: &PgPool,
        ids: &[&str],
    ) -> Result<Vec<Option<Arc<Entry>>>> {
        let mut found: Vec<Option<Arc<Entry>>> = ids
            .iter()
            .map(|id| self.0.as_ref().and_then(|c| c.get(*id)))
            .collect();
        let mut missing: Vec<&str> = ids
            .iter()
            .zip(&found)
            .filter(|(_, e)| e.is_none())
            .map(|(id, _)| *id)
            .collect();
        if missing.is_empty() {
            return Ok(found);
        }
        missing.sort_unstable();
        missing.dedup();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, meta::text FROM blobs WHERE id = ANY($1)")
                .bind(&missing)
                .fetch_all(pool)
                .await?;
        let mut read = HashMap::with_capacity(rows.len());
        for (id, json) in rows {
            let entry = Arc::new(Entry::new(json));
            if let Some(c) = &self.0 {
                c.insert(id.clone().into_boxed_str(), entry.clone());
            }
            read.insert(id, entry);
        }
        for (slot, id) in found.iter_mut().zip(ids) {
            if slot.is_none() {
                *slot = read.get(*id).cloned();
            }
        }
        Ok(found)
    }

    /// Keeps the header block read for `entry` (blob `id`): a new entry
    /// with it replaces the old one, so the cache counts its bytes.
    pub(crate) fn set_header(&self, id: &str, entry: &Entry, header: Bytes) {
        if let Some(c) = &self.0 {
            let with = Entry {
                json: entry.json.clone(),
                search: OnceLock::new(),
                header: Some(header),
            };
            c.insert(Box::from(id), Arc::new(with));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_fields_parse_once_and_tolerate_junk() {
        let e = Entry::new(
            r#"{"size":10,"header_len":4,"envelope":{"date":null,"subject":"hi","from":[],"sender":[],"reply_to":[],"to":[],"cc":[],"bcc":[],"in_reply_to":null,"message_id":null},"body":{},"subject":"hi","date_ms":5}"#
                .to_owned(),
        );
        let s = e.search().unwrap();
        assert_eq!((s.size, s.header_len, s.sent_day_ms()), (10, 4, None));
        assert_eq!(s.envelope.subject.as_deref(), Some("hi"));
        assert!(Entry::new("not json".into()).search().is_none());
    }

    /// SENT* keys compare the day as written: its time and zone do not
    /// move it to another UTC day (RFC 3501 6.4.4).
    #[test]
    fn sent_day_is_the_date_as_written() {
        let day = |date: &str| {
            let meta = SearchMeta {
                envelope: Envelope {
                    date: Some(date.into()),
                    ..Envelope::default()
                },
                ..SearchMeta::default()
            };
            meta.sent_day_ms()
        };
        let midnight = |y, m, d| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
        };
        // 04:30 UTC on 2 January, but 1 January as written.
        assert_eq!(day("Mon, 1 Jan 2024 23:30:00 -0500"), midnight(2024, 1, 1));
        // 22:00 UTC on 23 March, but 24 March as written.
        assert_eq!(
            day("Sun, 25 Mar 2007 00:00:00 +0200"),
            midnight(2007, 3, 25)
        );
        assert_eq!(
            day("Sat, 24 Mar 2007 23:00:00 +0200 (EET)"),
            midnight(2007, 3, 24)
        );
        assert_eq!(
            day("Sun, 28 Oct 2007 23:00:00 +0200"),
            midnight(2007, 10, 28)
        );
        assert_eq!(day("1 Jan 1969 01:00:00 +0300"), midnight(1969, 1, 1));
        assert_eq!(day("not a date"), None);
    }

    /// A header block kept later replaces the entry (the cache weighs the
    /// old value again when it replaces it, so an entry never changes) and
    /// counts in the cache's bytes.
    #[test]
    fn a_kept_header_replaces_its_entry_and_counts() {
        let cache = MetaCache::new(1024 * 1024);
        let c = cache.0.as_ref().unwrap();
        let e = Arc::new(Entry::new("{}".into()));
        c.insert("b".into(), e.clone());
        let before = c.weight();
        cache.set_header("b", &e, Bytes::from(vec![b'x'; 500]));
        assert_eq!(c.weight(), before + 500);
        assert_eq!(c.get("b").unwrap().header().map(|h| h.len()), Some(500));
        assert!(e.header().is_none());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = MetaCache::new(64 * 1024);
        let c = cache.0.as_ref().unwrap();
        for i in 0..1000 {
            c.insert(
                format!("blob{i}").into_boxed_str(),
                Arc::new(Entry::new("x".repeat(1000))),
            );
        }
        assert!(c.weight() <= 64 * 1024, "{}", c.weight());
        assert!(c.len() > 10);
        assert!(MetaCache::new(0).0.is_none());
    }
}
