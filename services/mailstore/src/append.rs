//! AppendMessage (IMAP APPEND): the client's bytes go to object storage
//! under their content hash, are analysed once (the `blobs` row), and get a
//! UID in one transaction that locks the mailbox, then the account (the lock
//! order of Deliver and Expunge). Appended messages carry no Return-Path.
//!
//! AppendMessageStream takes the body in chunks straight into a
//! [`mailfleet_blob::BlobWriter`] (inline below the inline limit, multipart
//! upload above it, as SMTP intake does) and through a
//! [`mailfleet_mime::Analyzer`], so the request is never held whole; a
//! stream that ends short of, or runs past, its announced size is aborted
//! before the body reaches its content key.

use futures::{Stream, StreamExt};
use mailfleet_mime::{Analyzer, MessageMeta};
use mailfleet_proto::v1 as pb;

use crate::error::{Result, StoreError};
use crate::flags::{SEEN, canonical_flag};
use crate::mailbox_cache::Message;
use crate::store::Store;

/// Removes NUL characters from every string: Postgres JSONB rejects `\u0000`.
fn strip_nul(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nul),
        serde_json::Value::Object(o) => o.values_mut().for_each(strip_nul),
        _ => {}
    }
}

/// The SQLSTATE `mailfleet_over_quota()` raises.
const OVER_QUOTA: &str = "MF001";

/// An APPEND of a body up to this size to a mailbox whose id is kept
/// skips the look-up that refuses it before its body is stored (see
/// [`crate::over_quota::OverQuota`]); a larger one is refused before it costs an upload.
const UNCHECKED_APPEND: u64 = 1024 * 1024;

/// A body's metadata as the `blobs` row keeps it (analysed once per body,
/// like delivered ones, see deliver::ensure_blobs).
fn meta_json(meta: &MessageMeta) -> String {
    let mut value = serde_json::to_value(meta).unwrap_or_default();
    strip_nul(&mut value);
    value.to_string()
}

/// The metadata of a body held whole, analysed off the async workers.
async fn analyze(data: Vec<u8>) -> Result<String> {
    tokio::task::spawn_blocking(move || meta_json(&mailfleet_mime::analyze(&data)))
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// The metadata of a body an [`Analyzer`] read as it streamed by. Finishing
/// (building and encoding the structure of a message with many parts) runs
/// off the async workers.
pub(crate) async fn finish_analysis(analyzer: Analyzer) -> Result<String> {
    tokio::task::spawn_blocking(move || meta_json(&analyzer.finish()))
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))
}

impl Store {
    /// Stores `data` in object storage; returns the blob id, its size and
    /// its metadata JSON (for the `blobs` row the APPEND writes).
    pub(crate) async fn put_blob(&self, data: Vec<u8>) -> Result<(String, i64, String)> {
        let mut writer = self.blobs.writer();
        if let Err(e) = writer.write(&data).await {
            writer.abort().await;
            return Err(e.into());
        }
        let blob = writer.finish().await?;
        let size =
            i64::try_from(blob.size).map_err(|_| StoreError::Internal("too large".into()))?;
        let meta = analyze(data).await?;
        Ok((blob.id, size, meta))
    }

    pub async fn append_message(
        &self,
        account: &str,
        mailbox: &str,
        flags: &[String],
        internal_date_ms: i64,
        data: Vec<u8>,
    ) -> Result<pb::AppendMessageResponse> {
        let mailbox = crate::mailboxes::canonical_name(mailbox);
        let mut flags = flags
            .iter()
            .map(|f| canonical_flag(f))
            .collect::<Result<Vec<_>>>()?;
        flags.sort();
        flags.dedup();
        // Fail before storing anything when the mailbox does not exist.
        let (mailbox_id, _, _) = self.append_target(account, &mailbox).await?;
        let (blob_id, size, meta) = self.put_blob(data).await?;
        let account = crate::store::parse_address(account)?.full();
        self.insert_into(
            (&account, &mailbox, mailbox_id),
            &flags,
            internal_date_ms,
            &blob_id,
            size,
            meta,
            false,
        )
        .await
    }

    /// The mailbox an APPEND goes to: (id, quota_bytes, used_bytes of its
    /// account), in one lookup.
    async fn append_target(&self, account: &str, mailbox: &str) -> Result<(i64, i64, i64)> {
        let addr = crate::store::parse_address(account)?;
        let name = crate::mailboxes::canonical_name(mailbox);
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT m.id, a.quota_bytes, a.used_bytes FROM mailboxes m \
             JOIN accounts a ON a.id = m.account_id WHERE a.address = $1 AND m.name = $2",
        )
        .bind(addr.full())
        .bind(&name)
        .fetch_optional(&self.pool)
        .await?;
        self.mailbox_cache
            .remember_id(&addr.full(), &name, row.map(|r| r.0));
        row.ok_or_else(|| StoreError::NotFound(format!("no mailbox {name:?} for {}", addr.full())))
    }

    /// The transaction of an APPEND, one statement and no explicit
    /// transaction (two round trips fewer): the body's `blobs` row
    /// (when `meta` is given), the next UID and modseq from the mailbox row,
    /// the size onto the account within its quotas (bytes and messages; the
    /// count is read from the statement's snapshot, before this message),
    /// and the message row. With `claim`, the caller also takes the
    /// message's \Recent when every older UID is claimed already.
    /// Rows are locked mailbox first, then account, as every writer does.
    /// Over quota, the statement fails through `mailfleet_over_quota()`
    /// (migration 0007), which undoes the mailbox row's update.
    /// `target` is (account address, canonical mailbox name, mailbox id);
    /// a mailbox renamed since its id was found is not written (NotFound).
    #[allow(clippy::too_many_arguments)]
    async fn insert_into(
        &self,
        (account, mailbox, mailbox_id): (&str, &str, i64),
        flags: &[String],
        internal_date_ms: i64,
        blob_id: &str,
        size: i64,
        meta: String,
        claim: bool,
    ) -> Result<pb::AppendMessageResponse> {
        let unseen = i64::from(!flags.iter().any(|f| f == SEEN));
        let date = match internal_date_ms {
            0 => chrono::Utc::now(),
            ms => chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now),
        };
        type Inserted = (Option<i64>, Option<i64>, Option<i64>, Option<bool>, i64);
        let (uid, uidvalidity, modseq, recent, found): Inserted = sqlx::query_as(
            "WITH blob AS (INSERT INTO blobs (id, size, meta) \
                    SELECT $6, $3, $7::jsonb ON CONFLICT DO NOTHING), \
             b AS (UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1, \
                    message_count = message_count + 1, unseen_count = unseen_count + $2, \
                    total_size = total_size + $3, \
                    first_recent_uid = CASE WHEN $8 AND first_recent_uid = uidnext \
                        THEN uidnext + 1 ELSE first_recent_uid END \
                 WHERE id = $1 AND name = $9 RETURNING id, uidnext - 1 AS uid, highestmodseq, uidvalidity, account_id, \
                    $8 AND first_recent_uid = uidnext AS recent), \
             acct AS (UPDATE accounts a SET used_bytes = a.used_bytes + $3 FROM b \
                 WHERE a.id = b.account_id AND (a.quota_bytes <= 0 OR a.used_bytes + $3 <= a.quota_bytes) \
                   AND (a.quota_messages <= 0 OR a.quota_messages > \
                        (SELECT COALESCE(sum(x.message_count), 0) FROM mailboxes x WHERE x.account_id = a.id)) \
                 RETURNING a.id), \
             ins AS (INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, return_path, size, blob_id) \
                 SELECT b.id, b.uid, b.highestmodseq, $4, $5, NULL, $3, $6 FROM b, acct RETURNING uid) \
             SELECT (SELECT uid FROM ins), (SELECT uidvalidity FROM b), (SELECT highestmodseq FROM b), \
                    (SELECT recent FROM b), \
                    CASE WHEN EXISTS (SELECT 1 FROM b) AND NOT EXISTS (SELECT 1 FROM acct) \
                         THEN mailfleet_over_quota() ELSE (SELECT count(*) FROM b) END",
        )
        .bind(mailbox_id)
        .bind(unseen)
        .bind(size)
        .bind(flags)
        .bind(date)
        .bind(blob_id)
        .bind(meta)
        .bind(claim)
        .bind(mailbox)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            e if e.sqlstate().as_deref() == Some(OVER_QUOTA) => StoreError::OverQuota,
            e => e,
        })?;
        let (Some(uid), Some(uidvalidity)) = (uid, uidvalidity) else {
            return Err(if found == 0 {
                StoreError::NotFound("mailbox deleted".into())
            } else {
                StoreError::Internal("the message row was not written".into())
            });
        };
        match modseq {
            Some(modseq) => self.events.changed_at(mailbox_id, modseq),
            None => self.events.changed(vec![mailbox_id]),
        }
        if let Some(modseq) = modseq {
            // The statement took highestmodseq from modseq - 1 to modseq.
            self.mailbox_cache
                .advance(account, mailbox, mailbox_id, (modseq - 1, modseq), |_| {
                    let message = Message {
                        uid,
                        modseq,
                        flags: flags.into(),
                        date_ms: date.timestamp_millis(),
                        size,
                        blob_id: blob_id.into(),
                        return_path: None,
                    };
                    vec![(message, false)]
                });
        }
        Ok(pb::AppendMessageResponse {
            uidvalidity: u32::try_from(uidvalidity).unwrap_or(0),
            uid: u32::try_from(uid).unwrap_or(0),
            modseq: modseq.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
            recent: recent.unwrap_or(false),
        })
    }

    /// AppendMessageStream: `chunks` are the body, exactly `start.size`
    /// octets of at most `max_size`; anything else stores nothing.
    pub async fn append_stream<S>(
        &self,
        start: pb::AppendStart,
        max_size: u64,
        mut chunks: S,
    ) -> Result<pb::AppendMessageResponse>
    where
        S: Stream<Item = std::result::Result<Vec<u8>, tonic::Status>> + Unpin,
    {
        if start.size > max_size {
            return Err(StoreError::TooBig(format!(
                "message too large ({} octets, at most {max_size})",
                start.size
            )));
        }
        let announced = i64::try_from(start.size)
            .map_err(|_| StoreError::TooBig("message too large".into()))?;
        let mailbox = crate::mailboxes::canonical_name(&start.mailbox);
        let mut flags = start
            .flags
            .iter()
            .map(|f| canonical_flag(f))
            .collect::<Result<Vec<_>>>()?;
        flags.sort();
        flags.dedup();
        let account = crate::store::parse_address(&start.account)?.full();
        // A small body goes to a mailbox whose id this replica keeps
        // without a look-up first, unless its account was over quota lately;
        // the insert finds out the rest.
        let known = self
            .mailbox_cache
            .mailbox_id(&account, &mailbox)
            .filter(|_| start.size <= UNCHECKED_APPEND && !self.over_quota.lately(&account));
        let mailbox_id = match known {
            Some(id) => id,
            None => {
                let (id, quota, used) = self.append_target(&account, &mailbox).await?;
                // Refuse early what the quota cannot take; the insert checks
                // again under the account lock.
                if quota > 0 && used.saturating_add(announced) > quota {
                    self.over_quota.refused(&account);
                    return Err(StoreError::OverQuota);
                }
                id
            }
        };
        // The body is analysed as it streams to storage, never held whole.
        let mut analyzer = Analyzer::new();
        let mut writer = self.blobs.writer();
        let mut received = 0u64;
        let outcome: Result<()> = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|s| {
                    StoreError::InvalidArgument(format!("body stream failed: {}", s.message()))
                })?;
                received = received.saturating_add(chunk.len() as u64);
                if received > start.size {
                    return Err(StoreError::InvalidArgument(
                        "more data than the announced size".into(),
                    ));
                }
                analyzer.update(&chunk);
                writer.write(&chunk).await?;
            }
            if received != start.size {
                return Err(StoreError::InvalidArgument(format!(
                    "the body ended after {received} of {} octets",
                    start.size
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            writer.abort().await;
            return Err(e);
        }
        let blob = writer.finish().await?;
        // The insert writes the blobs row unless the body is known.
        let meta = finish_analysis(analyzer).await?;
        let inserted = self
            .insert_into(
                (&account, &mailbox, mailbox_id),
                &flags,
                start.internal_date_ms,
                &blob.id,
                announced,
                meta.clone(),
                start.claim_recent,
            )
            .await;
        match inserted {
            // The kept id's mailbox is gone; one of that name may
            // have been created since.
            Err(StoreError::NotFound(_)) if known.is_some() => {
                self.mailbox_cache.remember_id(&account, &mailbox, None);
                let (id, _, _) = self.append_target(&account, &mailbox).await?;
                self.insert_into(
                    (&account, &mailbox, id),
                    &flags,
                    start.internal_date_ms,
                    &blob.id,
                    announced,
                    meta,
                    start.claim_recent,
                )
                .await
            }
            Err(StoreError::OverQuota) => {
                self.over_quota.refused(&account);
                Err(StoreError::OverQuota)
            }
            other => other,
        }
    }
}
