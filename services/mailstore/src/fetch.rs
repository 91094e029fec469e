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

type Row = (
    i64,
    Vec<String>,
    i64,
    chrono::DateTime<chrono::Utc>,
    i64,
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
        let (mailbox_id, _) = self.find_mailbox(account, &mailbox).await?;
        let (lo, hi) = uid_ranges(uids, i64::from(u32::MAX))?;
        // Each range is an index range scan (the set is a few ranges,
        // the mailbox may be huge); without metadata the blobs table is
        // not touched at all.
        let sql = if with_meta {
            "SELECT DISTINCT ON (m.uid) m.uid, m.flags, m.modseq, m.internal_date, m.size, m.return_path, \
                    CASE WHEN $4 THEN b.meta::text END \
             FROM UNNEST($2::int8[], $3::int8[]) AS r(lo, hi) \
             JOIN messages m ON m.mailbox_id = $1 AND m.uid BETWEEN r.lo AND r.hi \
             JOIN blobs b ON b.id = m.blob_id \
             WHERE m.expunged_modseq IS NULL \
             ORDER BY m.uid LIMIT $5"
        } else {
            "SELECT DISTINCT ON (m.uid) m.uid, m.flags, m.modseq, m.internal_date, m.size, m.return_path, \
                    CASE WHEN $4 THEN '' END \
             FROM UNNEST($2::int8[], $3::int8[]) AS r(lo, hi) \
             JOIN messages m ON m.mailbox_id = $1 AND m.uid BETWEEN r.lo AND r.hi \
             WHERE m.expunged_modseq IS NULL \
             ORDER BY m.uid LIMIT $5"
        };
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(mailbox_id)
            .bind(&lo)
            .bind(&hi)
            .bind(with_meta)
            .bind(MAX_FETCH)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(uid, flags, modseq, date, size, return_path, meta)| pb::FetchedMessage {
                    uid: u32::try_from(uid).unwrap_or(u32::MAX),
                    flags,
                    modseq: u64::try_from(modseq).unwrap_or(0),
                    internal_date_ms: date.timestamp_millis(),
                    size: u64::try_from(size).unwrap_or(0),
                    meta_json: meta.map(String::into_bytes).unwrap_or_default(),
                    prefix_len: return_path_line(return_path.as_deref()).len() as u32,
                },
            )
            .collect())
    }
}
