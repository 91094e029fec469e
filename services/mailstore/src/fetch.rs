//! FetchMessages: what IMAP FETCH needs per message without reading bodies:
//! flags, modseq, internal date, size, and the cached `MessageMeta` (JSON as
//! stored) with the length of the Return-Path line served before the blob,
//! so the frontend can map part offsets onto GetBody offsets.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use mailfleet_proto::v1 as pb;

use crate::deliver::return_path_line;
use crate::error::Result;
use crate::flags::uid_ranges;
use crate::meta_cache::Entry;
use crate::store::Store;

/// Most messages answered by one call; the frontend asks in smaller pieces.
pub const MAX_FETCH: i64 = 5_000;
/// Largest top-level header block returned with a message: a FETCH of
/// header fields then needs no GetBody call per message. Larger blocks
/// (rare) are read through GetBody, so a response stays bounded.
pub const MAX_HEADER: u64 = 64 * 1024;
/// Header blocks read from object storage at once.
const HEADER_READS: usize = 16;

/// The mailbox id and highestmodseq, then (when a message matched) uid,
/// flags, modseq, internal date, size, return path, blob id.
type Row = (
    i64,
    i64,
    Option<i64>,
    Option<Vec<String>>,
    Option<i64>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

impl Store {
    pub async fn fetch_messages(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&pb::UidSet>,
        with_meta: bool,
        with_header: bool,
    ) -> Result<pb::FetchMessagesResponse> {
        let mailbox = crate::mailboxes::canonical_name(mailbox);
        let addr = crate::store::parse_address(account)?;
        let (lo, hi) = uid_ranges(uids, i64::from(u32::MAX))?;
        // One statement finds the mailbox and its messages: no row means no
        // mailbox. Each range is an index range scan (the set is a few
        // ranges, the mailbox may be huge); the metadata comes from the cache.
        // The mailbox's highestmodseq, from the same snapshot, tells the
        // caller whether its view of the mailbox is still current.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT mb.id, mb.highestmodseq, x.uid, x.flags, x.modseq, x.internal_date, x.size, x.return_path, x.blob_id \
             FROM (SELECT b.id, b.highestmodseq FROM mailboxes b JOIN accounts a ON a.id = b.account_id \
                   WHERE a.address = $1 AND b.name = $2) mb \
             LEFT JOIN LATERAL ( \
                SELECT DISTINCT ON (m.uid) m.uid, m.flags, m.modseq, m.internal_date, m.size, m.return_path, m.blob_id \
                FROM UNNEST($3::int8[], $4::int8[]) AS r(lo, hi) \
                JOIN messages m ON m.mailbox_id = mb.id AND m.uid BETWEEN r.lo AND r.hi \
               AND m.uid BETWEEN (SELECT min(v) FROM UNNEST($3::int8[]) v) AND (SELECT max(v) FROM UNNEST($4::int8[]) v) \
                WHERE m.expunged_modseq IS NULL ORDER BY m.uid LIMIT $5) x ON true",
        )
        .bind(addr.full())
        .bind(&mailbox)
        .bind(&lo)
        .bind(&hi)
        .bind(MAX_FETCH)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(crate::error::StoreError::NotFound(format!(
                "no mailbox {mailbox:?} for {}",
                addr.full()
            )));
        }
        let highestmodseq = rows.first().map_or(0, |r| u64::try_from(r.1).unwrap_or(0));
        let rows: Vec<_> = rows
            .into_iter()
            .filter_map(|(_, _, uid, flags, modseq, date, size, rp, blob)| {
                Some((uid?, flags?, modseq?, date?, size?, rp, blob?))
            })
            .collect();
        let metas = if with_meta || with_header {
            let ids: Vec<&str> = rows.iter().map(|r| r.6.as_str()).collect();
            self.meta_cache.get_many(&self.pool, &ids).await?
        } else {
            vec![None; rows.len()]
        };
        let read_now = if with_header {
            let blobs: Vec<(String, Option<Arc<Entry>>)> = rows
                .iter()
                .map(|r| r.6.clone())
                .zip(metas.iter().cloned())
                .collect();
            self.read_headers(&blobs).await
        } else {
            HashMap::new()
        };
        let messages = rows
            .into_iter()
            .zip(metas)
            .map(
                |((uid, flags, modseq, date, size, return_path, blob), meta)| {
                    let prefix = return_path_line(return_path.as_deref());
                    let kept = meta.as_ref().and_then(|m| m.header());
                    let header = match kept.or_else(|| read_now.get(&blob)) {
                        Some(h) if with_header => [prefix.as_slice(), h.as_ref()].concat(),
                        _ => Vec::new(),
                    };
                    pb::FetchedMessage {
                        uid: u32::try_from(uid).unwrap_or(u32::MAX),
                        flags,
                        modseq: u64::try_from(modseq).unwrap_or(0),
                        internal_date_ms: date.timestamp_millis(),
                        size: u64::try_from(size).unwrap_or(0),
                        meta_json: match meta {
                            Some(m) if with_meta => m.json.as_bytes().to_vec(),
                            _ => Vec::new(),
                        },
                        prefix_len: prefix.len() as u32,
                        header,
                        body_ref: Some(pb::BodyRef {
                            has_return_path: return_path.is_some(),
                            return_path: return_path.unwrap_or_default(),
                            blob_id: blob,
                            size: u64::try_from(size).unwrap_or(0),
                        }),
                    }
                },
            )
            .collect();
        Ok(pb::FetchMessagesResponse {
            messages,
            highestmodseq,
        })
    }

    /// Reads into the cache the header blocks it does not hold yet (at
    /// most [`MAX_HEADER`] long), a few at a time. A block that cannot be
    /// read is left out: the frontend falls back to GetBody for it.
    async fn read_headers(&self, blobs: &[(String, Option<Arc<Entry>>)]) -> HashMap<String, Bytes> {
        let mut wanted: Vec<(String, Arc<Entry>, u64)> = Vec::new();
        for (id, entry) in blobs {
            let Some(entry) = entry else { continue };
            let Some(len) = entry.search().map(|m| m.header_len) else {
                continue;
            };
            // 0: metadata from before header_len was recorded.
            if entry.header().is_none()
                && len > 0
                && len <= MAX_HEADER
                && !wanted.iter().any(|(w, _, _)| w == id)
            {
                wanted.push((id.clone(), entry.clone(), len));
            }
        }
        let reads: Vec<_> = wanted
            .into_iter()
            .map(|(id, entry, len)| {
                let blobs = self.blobs.clone();
                async move { (blobs.get_range(&id, 0..len).await, id, entry) }
            })
            .collect();
        let mut done = futures::stream::iter(reads).buffer_unordered(HEADER_READS);
        let mut read_now = HashMap::new();
        while let Some((read, id, entry)) = done.next().await {
            match read {
                Ok(h) => {
                    self.meta_cache.set_header(&id, &entry, h.clone());
                    read_now.insert(id, h);
                }
                Err(error) => tracing::warn!(%error, "Failed to read a header block."),
            }
        }
        read_now
    }
}
