//! Mailbox operations for IMAP: create, delete, rename, subscribe, and
//! select (status plus one page of message states, or of the changes since
//! a modseq, which is how a session resynchronises after an event).
//!
//! Names use "/" as the hierarchy delimiter; any case of "INBOX" is the
//! inbox. UIDVALIDITY of a new mailbox is above every other of the account,
//! so a name deleted and created again never repeats its (name, uidvalidity).

use mailfleet_proto::v1 as pb;

use crate::error::{Result, StoreError};
use crate::store::{MailboxRow, Store};

/// Page size of SelectMailbox.
const DEFAULT_SELECT_PAGE: i64 = 10_000;
const MAX_SELECT_PAGE: i64 = 50_000;
/// Longest mailbox name, in bytes.
const MAX_NAME: usize = 512;
/// RFC 6154 attributes a mailbox may carry.
const SPECIAL_USE: &[&str] = &[
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument(msg.into())
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The stored form of a mailbox name: "INBOX" for any case of it, and
/// "INBOX/..." for its children.
pub fn canonical_name(raw: &str) -> String {
    if raw.is_empty() || raw.eq_ignore_ascii_case("INBOX") {
        return "INBOX".into();
    }
    match raw.get(..6) {
        Some(p) if p.eq_ignore_ascii_case("INBOX/") => format!("INBOX/{}", &raw[6..]),
        _ => raw.to_owned(),
    }
}

/// A name a client may create: not empty, no empty hierarchy level, no
/// control characters, bounded.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.chars().any(char::is_control)
    {
        return Err(invalid(format!("{name:?} is not a valid mailbox name")));
    }
    Ok(())
}

pub fn mailbox_pb(m: MailboxRow) -> pb::Mailbox {
    pb::Mailbox {
        id: m.id,
        name: m.name,
        special_use: m.special_use.unwrap_or_default(),
        subscribed: m.subscribed,
        uidvalidity: u32_of(m.uidvalidity),
        uidnext: u32_of(m.uidnext),
        highestmodseq: u64_of(m.highestmodseq),
        messages: u32_of(m.messages),
        unseen: u32_of(m.unseen),
        size: u64_of(m.size),
        // Only SelectMailbox counts recent messages.
        recent: 0,
    }
}

const MAILBOX_COLUMNS: &str = "m.id, m.name, m.special_use, \
     EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name) AS subscribed, \
     m.uidvalidity, m.uidnext, m.highestmodseq, \
     m.message_count AS messages, m.unseen_count AS unseen, m.total_size AS size, m.first_recent_uid";

impl Store {
    /// RFC 3501 6.3.3: the superior names a new name needs are created
    /// with it (an existing one is left alone).
    async fn ensure_parents(&self, account: &str, name: &str) -> Result<()> {
        let mut parents = Vec::new();
        for (i, c) in name.char_indices() {
            if c == '/' {
                parents.push(name[..i].to_owned());
            }
        }
        for parent in parents {
            sqlx::query(
                "INSERT INTO mailboxes (account_id, name, uidvalidity) \
                 SELECT a.id, $2, LEAST(4294967295, GREATEST( \
                    (extract(epoch FROM now())::bigint % 4294967296), \
                    COALESCE((SELECT max(uidvalidity) + 1 FROM mailboxes WHERE account_id = a.id), 1))) \
                 FROM accounts a WHERE a.address = lower($1) ON CONFLICT DO NOTHING",
            )
            .bind(account.trim())
            .bind(&parent)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// One mailbox's row by name.
    pub async fn mailbox_row(&self, account: &str, name: &str) -> Result<MailboxRow> {
        let name = canonical_name(name);
        let row: Option<MailboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes m JOIN accounts a ON a.id = m.account_id \
             WHERE a.address = lower($1) AND m.name = $2"
        )))
        .bind(account.trim())
        .bind(&name)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::NotFound(format!("no mailbox {name:?}")))
    }

    pub async fn create_mailbox(
        &self,
        account: &str,
        name: &str,
        special_use: &str,
    ) -> Result<MailboxRow> {
        let name = canonical_name(name);
        validate_name(&name)?;
        let special = match special_use {
            "" => None,
            s => Some(
                SPECIAL_USE
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(s))
                    .map(|k| (*k).to_owned())
                    .ok_or_else(|| invalid(format!("{s:?} is not a special-use attribute")))?,
            ),
        };
        self.ensure_parents(account, &name).await?;
        let row: Option<MailboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH a AS (SELECT id FROM accounts WHERE address = lower($1)), \
             ins AS (INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) \
                SELECT a.id, $2, $3, LEAST(4294967295, GREATEST( \
                    (extract(epoch FROM now())::bigint % 4294967296), \
                    COALESCE((SELECT max(uidvalidity) + 1 FROM mailboxes WHERE account_id = a.id), 1))) \
                FROM a ON CONFLICT DO NOTHING RETURNING *) \
             SELECT {MAILBOX_COLUMNS} FROM ins m"
        )))
        .bind(account.trim())
        .bind(&name)
        .bind(special)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(r),
            None => {
                // Either the account is unknown or the name is taken.
                self.mailbox_row(account, &name).await?;
                Err(StoreError::AlreadyExists(format!(
                    "mailbox {name:?} already exists"
                )))
            }
        }
    }

    pub async fn delete_mailbox(&self, account: &str, name: &str) -> Result<()> {
        let name = canonical_name(name);
        if name == "INBOX" {
            return Err(StoreError::FailedPrecondition(
                "INBOX cannot be deleted".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        let gone: Option<(i64, i64)> = sqlx::query_as(
            "DELETE FROM mailboxes m USING accounts a \
             WHERE a.id = m.account_id AND a.address = lower($1) AND m.name = $2 \
             RETURNING m.account_id, m.total_size",
        )
        .bind(account.trim())
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((account_id, size)) = gone else {
            return Err(StoreError::NotFound(format!("no mailbox {name:?}")));
        };
        sqlx::query("UPDATE accounts SET used_bytes = GREATEST(used_bytes - $2, 0) WHERE id = $1")
            .bind(account_id)
            .bind(size)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<()> {
        let from = canonical_name(from);
        let to = canonical_name(to);
        if from == "INBOX" {
            return Err(StoreError::FailedPrecondition(
                "renaming INBOX is not supported".into(),
            ));
        }
        validate_name(&to)?;
        if to == from || to.starts_with(&format!("{from}/")) {
            return Err(invalid("a mailbox cannot be renamed into itself"));
        }
        self.mailbox_row(account, &from).await?;
        self.ensure_parents(account, &to).await?;
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE mailboxes m SET name = $3 || substr(m.name, length($2) + 1) \
             FROM accounts a WHERE a.id = m.account_id AND a.address = lower($1) \
               AND (m.name = $2 OR left(m.name, length($2) + 1) = $2 || '/')",
        )
        .bind(account.trim())
        .bind(&from)
        .bind(&to)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
                return Err(StoreError::AlreadyExists(format!(
                    "mailbox {to:?} already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        // Subscriptions follow the renamed mailboxes, as they did when
        // they were a column of the mailbox.
        sqlx::query(
            "WITH a AS (SELECT id FROM accounts WHERE address = lower($1)), \
             moved AS (DELETE FROM subscriptions s USING a WHERE s.account_id = a.id \
                AND (s.name = $2 OR left(s.name, length($2) + 1) = $2 || '/') RETURNING s.account_id, s.name) \
             INSERT INTO subscriptions (account_id, name) \
                SELECT account_id, $3 || substr(name, length($2) + 1) FROM moved ON CONFLICT DO NOTHING",
        )
        .bind(account.trim())
        .bind(&from)
        .bind(&to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Subscribes to or unsubscribes from a name, whether or not a mailbox
    /// has it (RFC 3501 6.3.6: subscriptions outlive their mailboxes).
    pub async fn subscribe_mailbox(&self, account: &str, name: &str, on: bool) -> Result<()> {
        let name = canonical_name(name);
        if on {
            validate_name(&name)?;
        }
        let account_id: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM accounts WHERE address = lower($1)")
                .bind(account.trim())
                .fetch_optional(&self.pool)
                .await?;
        let Some((account_id,)) = account_id else {
            return Err(StoreError::NotFound(format!("no account {account:?}")));
        };
        let sql = if on {
            "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2"
        };
        sqlx::query(sql)
            .bind(account_id)
            .bind(&name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The mailbox status, then one page of message states (read after the
    /// status, so a change in between shows up twice rather than never).
    pub async fn select_mailbox(
        &self,
        account: &str,
        name: &str,
        changed_since: u64,
        uid_from: u32,
        limit: u32,
        claim_recent: bool,
    ) -> Result<pb::SelectMailboxResponse> {
        let limit = match i64::from(limit) {
            0 => DEFAULT_SELECT_PAGE,
            n => n.min(MAX_SELECT_PAGE),
        };
        let since = i64::try_from(changed_since).unwrap_or(i64::MAX);
        if since > 0
            && let Some(done) = self
                .select_changes(account, name, since, uid_from, limit, claim_recent)
                .await?
        {
            return Ok(done);
        }
        let mailbox = self.mailbox_row(account, name).await?;
        let unclaimed_from = mailbox.first_recent_uid;
        let nothing_new = unclaimed_from >= mailbox.uidnext;
        // Nothing new to take (the usual resync): no row lock, no write.
        let (recent_from, recent_to) = match (claim_recent, nothing_new) {
            (true, false) => self.claim_recent(mailbox.id).await?,
            // Claimed already: an empty range.
            (true, true) => (mailbox.uidnext, mailbox.uidnext),
            (false, _) => (unclaimed_from, mailbox.uidnext),
        };
        // Two statements, not one with a CASE: a prepared statement's
        // generic plan could not use the modseq index for the changes. The
        // changes are read through that index first (MATERIALIZED): a
        // generic plan otherwise walks the primary key in UID order, the
        // whole mailbox, to find the few changed rows. The mailbox and the
        // modseq go through subqueries so that custom plans do not look
        // cheaper than the generic one (Postgres would plan anew each call).
        let sql = if since == 0 {
            "SELECT uid, flags, modseq, expunged_modseq IS NOT NULL FROM messages \
             WHERE mailbox_id = $1 AND uid >= $2 AND expunged_modseq IS NULL AND $3 = 0 \
             ORDER BY uid LIMIT $4"
        } else {
            "WITH changed AS MATERIALIZED (SELECT uid, flags, modseq, expunged_modseq FROM messages \
                 WHERE mailbox_id = (SELECT $1::int8) AND modseq > (SELECT $3::int8)) \
             SELECT uid, flags, modseq, expunged_modseq IS NOT NULL FROM changed \
             WHERE uid >= $2 ORDER BY uid LIMIT $4"
        };
        let rows: Vec<(i64, Vec<String>, i64, bool)> = sqlx::query_as(sql)
            .bind(mailbox.id)
            .bind(i64::from(uid_from))
            .bind(since)
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() as i64 > limit;
        // STATUS RECENT: live messages no session has claimed (after a
        // claim, none; with nothing unclaimed, no count to make).
        let unclaimed = if claim_recent || nothing_new {
            0
        } else {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM messages \
                 WHERE mailbox_id = $1 AND uid >= $2 AND expunged_modseq IS NULL",
            )
            .bind(mailbox.id)
            .bind(unclaimed_from)
            .fetch_one(&self.pool)
            .await?;
            n
        };
        let messages = rows
            .into_iter()
            .take(limit as usize)
            .map(|(uid, flags, modseq, expunged)| pb::MessageState {
                uid: u32_of(uid),
                flags,
                modseq: u64_of(modseq),
                expunged,
            })
            .collect();
        let mut mailbox = mailbox_pb(mailbox);
        mailbox.recent = u32_of(unclaimed);
        Ok(pb::SelectMailboxResponse {
            mailbox: Some(mailbox),
            messages,
            more,
            recent_from: u32_of(recent_from),
            recent_to: u32_of(recent_to.max(recent_from)),
        })
    }

    /// A resync's or STATUS's SelectMailbox (`since` > 0) in one
    /// statement: the mailbox row, how many live messages no session has
    /// taken as \Recent yet (STATUS RECENT), and its messages changed after
    /// `since`. `None` when the caller claims \Recent and there is
    /// something to claim: the claim comes before the listing (a message
    /// claimed must be in it), which the general path does. Counting the
    /// unclaimed here spares STATUS three more statements (the general
    /// path's mailbox row, listing and count) whenever a message arrived
    /// since the last SELECT.
    async fn select_changes(
        &self,
        account: &str,
        name: &str,
        since: i64,
        uid_from: u32,
        limit: i64,
        claim_recent: bool,
    ) -> Result<Option<pb::SelectMailboxResponse>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            mailbox: MailboxRow,
            unclaimed: i64,
            c_uid: Option<i64>,
            c_flags: Option<Vec<String>>,
            c_modseq: Option<i64>,
            c_expunged: bool,
        }
        let name = canonical_name(name);
        // The changes are read through the modseq index (MATERIALIZED), as
        // in the general path; the mailbox row comes once per change row,
        // and a resync lists few.
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH mb AS (SELECT {MAILBOX_COLUMNS}, \
                   CASE WHEN m.first_recent_uid < m.uidnext THEN (SELECT count(*) FROM messages r \
                       WHERE r.mailbox_id = m.id AND r.uid >= m.first_recent_uid AND r.expunged_modseq IS NULL) \
                   ELSE 0 END AS unclaimed \
                 FROM mailboxes m JOIN accounts a ON a.id = m.account_id \
                 WHERE a.address = lower($1) AND m.name = $2), \
             changed AS MATERIALIZED (SELECT uid, flags, modseq, expunged_modseq FROM messages \
                 WHERE mailbox_id = (SELECT id FROM mb) AND modseq > (SELECT $3::int8)) \
             SELECT mb.*, c.uid AS c_uid, c.flags AS c_flags, c.modseq AS c_modseq, \
                 c.expunged_modseq IS NOT NULL AS c_expunged \
             FROM mb LEFT JOIN (SELECT * FROM changed WHERE uid >= $4 ORDER BY uid LIMIT $5) c ON true \
             ORDER BY c.uid"
        )))
        .bind(account.trim())
        .bind(&name)
        .bind(since)
        .bind(i64::from(uid_from))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::NotFound(format!("no mailbox {name:?}")));
        };
        let mailbox = first.mailbox.clone();
        let unclaimed = first.unclaimed;
        if claim_recent && mailbox.first_recent_uid < mailbox.uidnext {
            return Ok(None);
        }
        let more = rows.len() as i64 > limit;
        let messages = rows
            .into_iter()
            .take(limit as usize)
            .filter_map(|r| {
                Some(pb::MessageState {
                    uid: u32_of(r.c_uid?),
                    flags: r.c_flags.unwrap_or_default(),
                    modseq: u64_of(r.c_modseq.unwrap_or_default()),
                    expunged: r.c_expunged,
                })
            })
            .collect();
        // As the general path answers: nothing claimed, so the unclaimed
        // range (empty when there is none).
        let (recent_from, recent_to) = (mailbox.first_recent_uid, mailbox.uidnext);
        let mut mailbox = mailbox_pb(mailbox);
        mailbox.recent = u32_of(unclaimed);
        Ok(Some(pb::SelectMailboxResponse {
            mailbox: Some(mailbox),
            messages,
            more,
            recent_from: u32_of(recent_from),
            recent_to: u32_of(recent_to.max(recent_from)),
        }))
    }

    /// Takes every unclaimed UID of a mailbox as \Recent for the caller,
    /// in one statement (the row lock orders concurrent SELECTs, so each
    /// UID goes to one session). Returns [from, to).
    async fn claim_recent(&self, mailbox_id: i64) -> Result<(i64, i64)> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "WITH old AS (SELECT id, first_recent_uid FROM mailboxes WHERE id = $1 FOR UPDATE) \
             UPDATE mailboxes m SET first_recent_uid = GREATEST(m.first_recent_uid, m.uidnext) \
             FROM old WHERE m.id = old.id RETURNING old.first_recent_uid, m.uidnext",
        )
        .bind(mailbox_id)
        .fetch_optional(&self.pool)
        .await?;
        let (from, to) = row.unwrap_or((1, 1));
        Ok((from, to.max(from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_is_case_insensitive_and_names_are_checked() {
        assert_eq!(canonical_name("inbox"), "INBOX");
        assert_eq!(canonical_name("Inbox/Sub"), "INBOX/Sub");
        assert_eq!(canonical_name("Inboxes"), "Inboxes");
        assert!(validate_name("a/b").is_ok());
        assert!(validate_name("a//b").is_err());
        assert!(validate_name("/a").is_err());
        assert!(validate_name("a\r\nb").is_err());
    }
}
