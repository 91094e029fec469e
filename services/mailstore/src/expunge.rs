//! Expunge: removes messages by UID (optionally only those flagged \Deleted)
//! in one transaction holding the mailbox row lock, then the account row.
//!
//! Rows are not deleted: they keep `expunged_modseq` (a new modseq) so
//! QRESYNC can report them as VANISHED, and every listing and body read
//! filters `expunged_modseq IS NULL`. The mailbox counters and the account's
//! `used_bytes` drop in the same transaction. The lock order (mailbox, then
//! account) is Deliver's, so the two never deadlock. Blobs stay: other
//! messages may share them, and unreferenced ones are the sweeper's job.

use mailfleet_proto::v1::{ExpungeResponse, UidSet};

use crate::error::Result;
use crate::flags::{DELETED, SEEN, uid_ranges};
use crate::store::Store;

impl Store {
    pub async fn expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&UidSet>,
        only_deleted: bool,
    ) -> Result<ExpungeResponse> {
        let mut tx = self.pool.begin().await?;
        let (mailbox_id, highest) = self.lock_mailbox(&mut tx, account, mailbox).await?;
        let max_uid = Self::star_uid(&mut tx, mailbox_id, uids).await?;
        let (lo, hi) = uid_ranges(uids, max_uid)?;
        let new_modseq = highest + 1;
        let gone: Vec<(i64, i64, bool)> = sqlx::query_as(
            "UPDATE messages m SET expunged_modseq = $4, modseq = $4 \
             FROM UNNEST($2::int8[], $3::int8[]) AS r(lo, hi) \
             WHERE m.mailbox_id = $1 AND m.uid BETWEEN r.lo AND r.hi \
               AND m.uid BETWEEN (SELECT min(v) FROM UNNEST($2::int8[]) v) AND (SELECT max(v) FROM UNNEST($3::int8[]) v) AND m.expunged_modseq IS NULL \
               AND (NOT $5 OR $6 = ANY(m.flags)) \
             RETURNING m.uid, m.size, $7 = ANY(m.flags)",
        )
        .bind(mailbox_id)
        .bind(&lo)
        .bind(&hi)
        .bind(new_modseq)
        .bind(only_deleted)
        .bind(DELETED)
        .bind(SEEN)
        .fetch_all(&mut *tx)
        .await?;
        if gone.is_empty() {
            tx.commit().await?;
            return Ok(ExpungeResponse {
                expunged: Vec::new(),
                highestmodseq: u64::try_from(highest).unwrap_or(0),
            });
        }
        let count = gone.len() as i64;
        let bytes: i64 = gone.iter().map(|g| g.1).sum();
        let unseen = gone.iter().filter(|g| !g.2).count() as i64;
        sqlx::query(
            "UPDATE mailboxes SET highestmodseq = $2, message_count = message_count - $3, \
                    unseen_count = unseen_count - $4, total_size = total_size - $5 WHERE id = $1",
        )
        .bind(mailbox_id)
        .bind(new_modseq)
        .bind(count)
        .bind(unseen)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE accounts a SET used_bytes = GREATEST(a.used_bytes - $2, 0) \
             FROM mailboxes m WHERE m.id = $1 AND a.id = m.account_id",
        )
        .bind(mailbox_id)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.events.changed(vec![mailbox_id]);
        let mut expunged: Vec<u32> = gone
            .iter()
            .map(|g| u32::try_from(g.0).unwrap_or(u32::MAX))
            .collect();
        expunged.sort_unstable();
        Ok(ExpungeResponse {
            expunged,
            highestmodseq: u64::try_from(new_modseq).unwrap_or(0),
        })
    }
}
