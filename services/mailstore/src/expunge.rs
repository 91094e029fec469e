//! Expunge: removes messages by UID (optionally only those flagged \Deleted)
//! holding the mailbox row lock, then the account row: in one statement
//! when the set needs no highest UID (`1:*`, which IMAP's EXPUNGE and CLOSE
//! send, or UIDs), otherwise in one transaction (BEGIN, lock, highest UID,
//! messages, mailbox, account, COMMIT: seven round trips, which the single
//! statement saves).
//!
//! Rows are not deleted: they keep `expunged_modseq` (a new modseq) so
//! QRESYNC can report them as VANISHED, and every listing and body read
//! filters `expunged_modseq IS NULL`. The mailbox counters and the account's
//! `used_bytes` drop in the same transaction. The lock order (mailbox, then
//! account) is Deliver's, so the two never deadlock. Blobs stay: other
//! messages may share them, and unreferenced ones are the sweeper's job.

use mailfleet_proto::v1::{ExpungeResponse, UidSet};

use crate::error::{Result, StoreError};
use crate::flags::{SEEN, uid_ranges};
use crate::store::Store;

/// The rows an expunge may remove: live ones, and with `only_deleted`
/// those flagged \Deleted, spelled as the `messages_deleted` index's
/// predicate (migration 0012) so that the planner reads that index, not
/// every row the mailbox ever had. A literal, not a parameter: a
/// parameter's value cannot prove a partial index's predicate.
fn live_filter(only_deleted: bool) -> &'static str {
    if only_deleted {
        "m.expunged_modseq IS NULL AND '\\Deleted' = ANY (m.flags)"
    } else {
        "m.expunged_modseq IS NULL"
    }
}

impl Store {
    pub async fn expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&UidSet>,
        only_deleted: bool,
    ) -> Result<ExpungeResponse> {
        if let Some(r) = self
            .expunge_at_once(account, mailbox, uids, only_deleted)
            .await?
        {
            return Ok(r);
        }
        let mut tx = self.pool.begin().await?;
        let (mailbox_id, highest) = self.lock_mailbox(&mut tx, account, mailbox).await?;
        let max_uid = Self::star_uid(&mut tx, mailbox_id, uids).await?;
        let (lo, hi) = uid_ranges(uids, max_uid)?;
        let new_modseq = highest + 1;
        let gone: Vec<(i64, i64, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE messages m SET expunged_modseq = $4, modseq = $4 \
             FROM UNNEST($2::int8[], $3::int8[]) AS r(lo, hi) \
             WHERE m.mailbox_id = $1 AND m.uid BETWEEN r.lo AND r.hi \
               AND m.uid BETWEEN (SELECT min(v) FROM UNNEST($2::int8[]) v) AND (SELECT max(v) FROM UNNEST($3::int8[]) v) \
               AND {} \
             RETURNING m.uid, m.size, $5 = ANY(m.flags)",
            live_filter(only_deleted)
        )))
        .bind(mailbox_id)
        .bind(&lo)
        .bind(&hi)
        .bind(new_modseq)
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
        self.events.changed_at(mailbox_id, new_modseq);
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

    /// Expunge in one statement, when no bound of the set needs the highest
    /// UID: `*` only as the top of a range starting at 1 (all messages), or
    /// no `*`. None for other sets. The lock on the mailbox row is taken
    /// first (every CTE joins it) and its highestmodseq read after the wait;
    /// a message another expunge took meanwhile fails the row's re-check, so
    /// nothing is counted twice. Counters and usage move in the same
    /// statement.
    async fn expunge_at_once(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&UidSet>,
        only_deleted: bool,
    ) -> Result<Option<ExpungeResponse>> {
        let ranges = uids.map(|s| s.ranges.as_slice()).unwrap_or_default();
        let star_needed = ranges
            .iter()
            .any(|r| (r.first == 0 || r.last == 0) && r.first.max(r.last) > 1);
        if star_needed || ranges.iter().any(|r| r.first == 0 && r.last == 0) {
            return Ok(None);
        }
        // `1:*` covers every UID.
        let (lo, hi) = uid_ranges(uids, i64::from(u32::MAX))?;
        let addr = crate::store::parse_address(account)?;
        let row: Option<(i64, i64, Option<Vec<i64>>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH mb AS (SELECT b.id, b.highestmodseq + 1 AS new \
                   FROM mailboxes b JOIN accounts a ON a.id = b.account_id \
                   WHERE a.address = $1 AND b.name = $2 FOR UPDATE OF b), \
               gone AS (UPDATE messages m SET expunged_modseq = mb.new, modseq = mb.new \
                   FROM mb, UNNEST((SELECT $3::int8[]), (SELECT $4::int8[])) AS r(lo, hi) \
                   WHERE m.mailbox_id = (SELECT id FROM mb) AND m.uid BETWEEN r.lo AND r.hi \
                     AND m.uid BETWEEN (SELECT min(v) FROM UNNEST($3::int8[]) v) \
                                   AND (SELECT max(v) FROM UNNEST($4::int8[]) v) \
                     AND {} \
                   RETURNING m.uid, m.size, $5 = ANY(m.flags) AS seen), \
               t AS (SELECT count(*) AS n, COALESCE(sum(size), 0)::int8 AS bytes, \
                   count(*) FILTER (WHERE NOT seen) AS unseen, array_agg(uid ORDER BY uid) AS uids \
                   FROM gone), \
               box AS (UPDATE mailboxes b SET highestmodseq = mb.new, \
                   message_count = b.message_count - t.n, unseen_count = b.unseen_count - t.unseen, \
                   total_size = b.total_size - t.bytes \
                   FROM mb, t WHERE b.id = mb.id AND t.n > 0 RETURNING b.account_id), \
               acc AS (UPDATE accounts a SET used_bytes = GREATEST(a.used_bytes - t.bytes, 0) \
                   FROM box, t WHERE a.id = box.account_id RETURNING 1) \
             SELECT mb.id, CASE WHEN t.n > 0 THEN mb.new ELSE mb.new - 1 END, t.uids FROM mb, t",
            live_filter(only_deleted)
        )))
        .bind(addr.full())
        .bind(crate::mailboxes::canonical_name(mailbox))
        .bind(&lo)
        .bind(&hi)
        .bind(SEEN)
        .fetch_optional(&self.pool)
        .await?;
        let Some((mailbox_id, highest, gone)) = row else {
            return Err(StoreError::NotFound(format!(
                "no mailbox {mailbox:?} for {}",
                addr.full()
            )));
        };
        let expunged: Vec<u32> = gone
            .unwrap_or_default()
            .into_iter()
            .map(|u| u32::try_from(u).unwrap_or(u32::MAX))
            .collect();
        if !expunged.is_empty() {
            self.events.changed_at(mailbox_id, highest);
        }
        Ok(Some(ExpungeResponse {
            expunged,
            highestmodseq: u64::try_from(highest).unwrap_or(0),
        }))
    }
}
