//! CopyMessages (IMAP COPY / MOVE with UIDPLUS data): the rows of the source
//! messages are copied into the target mailbox under fresh UIDs in one
//! transaction holding the target's mailbox lock, then the account lock
//! (quota). Bodies are shared, never copied. A move then expunges the
//! originals through [`Store::expunge`]: should that step fail, the messages
//! exist twice rather than never.
//!
//! A copy into or out of the `\Junk` mailbox is also a lesson for rspamd
//! (`crate::learn`), queued after the commit without waiting.

use mailfleet_proto::v1 as pb;

use crate::error::{Result, StoreError};
use crate::flags::{SEEN, uid_ranges};
use crate::mailboxes::canonical_name;
use crate::store::Store;

type Row = (
    i64,
    Vec<String>,
    chrono::DateTime<chrono::Utc>,
    Option<String>,
    i64,
    String,
);

impl Store {
    pub async fn copy_messages(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&pb::UidSet>,
        target: &str,
        is_move: bool,
    ) -> Result<pb::CopyMessagesResponse> {
        let source = canonical_name(mailbox);
        let target = canonical_name(target);
        let (source_id, _) = self.find_mailbox(account, &source).await?;
        let (lo, hi) = uid_ranges(uids, i64::from(u32::MAX))?;

        let mut tx = self.pool.begin().await?;
        let (target_id, _) = self.lock_mailbox(&mut tx, account, &target).await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT DISTINCT ON (m.uid) m.uid, m.flags, m.internal_date, m.return_path, m.size, m.blob_id \
             FROM UNNEST($2::int8[], $3::int8[]) AS r(lo, hi) \
             JOIN messages m ON m.mailbox_id = $1 AND m.uid BETWEEN r.lo AND r.hi \
               AND m.uid BETWEEN (SELECT min(v) FROM UNNEST($2::int8[]) v) AND (SELECT max(v) FROM UNNEST($3::int8[]) v) \
             WHERE m.expunged_modseq IS NULL ORDER BY m.uid",
        )
        .bind(source_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&mut *tx)
        .await?;
        let (uidvalidity,): (i64,) =
            sqlx::query_as("SELECT uidvalidity FROM mailboxes WHERE id = $1")
                .bind(target_id)
                .fetch_one(&mut *tx)
                .await?;
        let uses: Vec<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, special_use FROM mailboxes WHERE id = ANY($1)")
                .bind([source_id, target_id])
                .fetch_all(&mut *tx)
                .await?;
        let use_of = |id: i64| {
            uses.iter()
                .find(|(m, _)| *m == id)
                .and_then(|(_, u)| u.as_deref())
        };
        let lesson = crate::learn::lesson(use_of(source_id), use_of(target_id));
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(pb::CopyMessagesResponse {
                uidvalidity: u32::try_from(uidvalidity).unwrap_or(0),
                ..Default::default()
            });
        }
        let n = rows.len() as i64;
        let bytes: i64 = rows.iter().map(|r| r.4).sum();
        let unseen = rows
            .iter()
            .filter(|r| !r.1.iter().any(|f| f == SEEN))
            .count() as i64;
        let (account_id, quota, used, quota_messages, messages): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT a.id, a.quota_bytes, a.used_bytes, a.quota_messages, \
                        (SELECT COALESCE(sum(x.message_count), 0) FROM mailboxes x WHERE x.account_id = a.id)::int8 \
                 FROM accounts a JOIN mailboxes m ON m.account_id = a.id \
                 WHERE m.id = $1 FOR UPDATE OF a",
            )
            .bind(target_id)
            .fetch_one(&mut *tx)
            .await?;
        // A move does not grow the account once the originals are gone.
        let over_bytes = quota > 0 && used + bytes > quota;
        let over_messages = quota_messages > 0 && messages + n > quota_messages;
        if !is_move && (over_bytes || over_messages) {
            return Err(StoreError::OverQuota);
        }
        let (first_uid, modseq): (i64, i64) = sqlx::query_as(
            "UPDATE mailboxes SET uidnext = uidnext + $2, highestmodseq = highestmodseq + 1, \
                    message_count = message_count + $2, unseen_count = unseen_count + $3, \
                    total_size = total_size + $4 \
             WHERE id = $1 RETURNING uidnext - $2, highestmodseq",
        )
        .bind(target_id)
        .bind(n)
        .bind(unseen)
        .bind(bytes)
        .fetch_one(&mut *tx)
        .await?;
        let new_uids: Vec<i64> = (0..n).map(|i| first_uid + i).collect();
        let flags: Vec<String> = rows.iter().map(|r| r.1.join(" ")).collect();
        let dates: Vec<_> = rows.iter().map(|r| r.2).collect();
        let paths: Vec<Option<String>> = rows.iter().map(|r| r.3.clone()).collect();
        let sizes: Vec<i64> = rows.iter().map(|r| r.4).collect();
        let blobs: Vec<&str> = rows.iter().map(|r| r.5.as_str()).collect();
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, return_path, size, blob_id) \
             SELECT $1, v.uid, $2, CASE WHEN v.f = '' THEN '{}'::text[] ELSE string_to_array(v.f, ' ') END, \
                    v.d, v.rp, v.s, v.b \
             FROM UNNEST($3::int8[], $4::text[], $5::timestamptz[], $6::text[], $7::int8[], $8::text[]) \
                  AS v(uid, f, d, rp, s, b)",
        )
        .bind(target_id)
        .bind(modseq)
        .bind(&new_uids)
        .bind(&flags)
        .bind(&dates)
        .bind(&paths)
        .bind(&sizes)
        .bind(&blobs)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE accounts SET used_bytes = used_bytes + $2 WHERE id = $1")
            .bind(account_id)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Some(spam) = lesson {
            self.learner
                .learn(account, spam, rows.iter().map(|r| r.5.clone()));
        }
        let source_uids: Vec<u32> = rows
            .iter()
            .map(|r| u32::try_from(r.0).unwrap_or(0))
            .collect();
        let mut changed = vec![target_id];
        if is_move {
            let set = pb::UidSet {
                ranges: source_uids
                    .iter()
                    .map(|&u| pb::UidRange { first: u, last: u })
                    .collect(),
            };
            self.expunge(account, &source, Some(&set), false).await?;
            changed.push(source_id);
        }
        self.events.changed(changed);
        Ok(pb::CopyMessagesResponse {
            uidvalidity: u32::try_from(uidvalidity).unwrap_or(0),
            source_uids,
            target_uids: new_uids
                .into_iter()
                .map(|u| u32::try_from(u).unwrap_or(0))
                .collect(),
        })
    }
}
