//! FetchMessages: what IMAP FETCH needs per message without reading bodies:
//! flags, modseq, internal date, size, and the cached `MessageMeta` (JSON as
//! stored) with the length of the Return-Path line served before the blob,
//! so the frontend can map part offsets onto GetBody offsets.

use mailfleet_proto::v1 as pb;

use crate::deliver::return_path_line;
use crate::error::Result;
use crate::flags::uid_ranges;
use crate::store::Store;

/// Most messages answered by one call; the frontend asks in smaller pieces.
pub const MAX_FETCH: i64 = 5_000;

/// The mailbox id, then (when a message matched) uid, flags, modseq,
/// internal date, size, return path, blob id.
type Row = (
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
    ) -> Result<Vec<pb::FetchedMessage>> {
        let mailbox = crate::mailboxes::canonical_name(mailbox);
        let addr = crate::store::parse_address(account)?;
        let (lo, hi) = uid_ranges(uids, i64::from(u32::MAX))?;
        // One statement finds the mailbox and its messages: no row means no
        // mailbox. Each range is an index range scan (the set is a few
        // ranges, the mailbox may be huge); the metadata comes from the cache.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT mb.id, x.uid, x.flags, x.modseq, x.internal_date, x.size, x.return_path, x.blob_id \
             FROM (SELECT b.id FROM mailboxes b JOIN accounts a ON a.id = b.account_id \
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
        let rows: Vec<_> = rows
            .into_iter()
            .filter_map(|(_, uid, flags, modseq, date, size, rp, blob)| {
                Some((uid?, flags?, modseq?, date?, size?, rp, blob?))
            })
            .collect();
        let metas = if with_meta {
            let ids: Vec<&str> = rows.iter().map(|r| r.6.as_str()).collect();
            self.meta_cache.get_many(&self.pool, &ids).await?
        } else {
            vec![None; rows.len()]
        };
        Ok(rows
            .into_iter()
            .zip(metas)
            .map(
                |((uid, flags, modseq, date, size, return_path, _), meta)| pb::FetchedMessage {
                    uid: u32::try_from(uid).unwrap_or(u32::MAX),
                    flags,
                    modseq: u64::try_from(modseq).unwrap_or(0),
                    internal_date_ms: date.timestamp_millis(),
                    size: u64::try_from(size).unwrap_or(0),
                    meta_json: meta.map(|m| m.json.as_bytes().to_vec()).unwrap_or_default(),
                    prefix_len: return_path_line(return_path.as_deref()).len() as u32,
                },
            )
            .collect())
    }
}
