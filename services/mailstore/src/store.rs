//! The domain operations of mailstore over Postgres: accounts, domains,
//! aliases, recipient resolution, authentication and mailbox listings.
//! Deliver lives in [`crate::deliver`], body streaming in [`crate::body`].

use std::sync::Arc;

use mailfleet_blob::BlobStore;
use sqlx::PgPool;

use crate::address::{Address, normalize_domain, parse_alias};
use crate::error::{Result, StoreError};
use crate::metrics::Metrics;
use crate::password::{CredentialCache, Hasher};

/// Mailboxes every new account gets, with their RFC 6154 special-use.
pub const DEFAULT_MAILBOXES: &[(&str, Option<&str>)] = &[
    ("INBOX", None),
    ("Sent", Some("\\Sent")),
    ("Drafts", Some("\\Drafts")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

/// Largest page of ListMessages.
pub const MAX_PAGE: i64 = 10_000;
pub const DEFAULT_PAGE: i64 = 1_000;

#[derive(Clone)]
pub struct Store {
    pub pool: PgPool,
    pub blobs: BlobStore,
    pub hasher: Arc<Hasher>,
    pub credentials: Arc<CredentialCache>,
    pub metrics: Metrics,
    /// Change events published after commits (see `crate::events`).
    pub events: crate::events::Events,
    /// Seals DKIM private keys at rest (see `crate::dkim`).
    pub dkim_seal: crate::seal::Sealer,
    /// Message metadata kept in memory (see `crate::meta_cache`).
    pub meta_cache: crate::meta_cache::MetaCache,
    /// Mailbox listings kept in memory (see `crate::mailbox_cache`).
    pub mailbox_cache: crate::mailbox_cache::MailboxCache,
    /// Accounts an APPEND recently found over quota (see `crate::append`).
    pub over_quota: Arc<crate::over_quota::OverQuota>,
    /// The brute-force limits of every login (see `crate::auth_guard`).
    pub auth_guard: crate::auth_guard::AuthGuard,
    /// Deliver mail rspamd marked as spam into Junk (`crate::deliver::target`).
    pub spam_junk: bool,
    /// Spam lessons from Junk moves (see `crate::learn`).
    pub learner: crate::learn::Learner,
    /// Compiled active Sieve scripts (see `crate::sieve::run`).
    pub sieve_cache: Arc<crate::sieve::cache::ScriptCache>,
}

/// The outcome of a login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// The password is right: the account's id and canonical address.
    Ok { id: i64, address: String },
    /// Wrong password or unknown user (counted by the guard).
    Failed,
    /// Refused unchecked: the pair or the address is locked out.
    Locked,
}

/// An account an envelope recipient goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAccount {
    pub id: i64,
    /// The canonical address.
    pub address: String,
    /// It has a byte or message quota (so RCPT must check it).
    pub limited: bool,
}

/// Where an envelope recipient goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Every target account.
    Local(Vec<LocalAccount>),
    UnknownUser,
    NotLocal,
}

#[derive(Clone, Debug)]
pub struct AccountRow {
    pub address: String,
    pub quota_bytes: i64,
    pub used_bytes: i64,
    pub quota_messages: i64,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MailboxRow {
    pub id: i64,
    pub name: String,
    pub special_use: Option<String>,
    pub subscribed: bool,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highestmodseq: i64,
    pub messages: i64,
    pub unseen: i64,
    pub size: i64,
    /// The first UID no session has taken as \Recent yet.
    pub first_recent_uid: i64,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MessageRow {
    pub uid: i64,
    pub size: i64,
    pub modseq: i64,
    pub flags: Vec<String>,
    pub internal_date: chrono::DateTime<chrono::Utc>,
    pub subject: Option<String>,
    pub blob_id: String,
}

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument(msg.into())
}

pub(crate) fn parse_address(raw: &str) -> Result<Address> {
    Address::parse(raw).ok_or_else(|| invalid(format!("not a valid address: {raw:?}")))
}

impl Store {
    // ---- domains ----

    pub async fn add_domain(&self, raw: &str) -> Result<String> {
        let name =
            normalize_domain(raw).ok_or_else(|| invalid(format!("not a valid domain: {raw:?}")))?;
        let inserted: Option<(String,)> = sqlx::query_as(
            "INSERT INTO domains (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING name",
        )
        .bind(&name)
        .fetch_optional(&self.pool)
        .await?;
        match inserted {
            Some(_) => {
                self.events.directory_changed();
                Ok(name)
            }
            None => Err(StoreError::AlreadyExists(format!(
                "domain {name} already exists"
            ))),
        }
    }

    pub async fn list_domains(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT name FROM domains ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn require_domain(&self, domain: &str) -> Result<()> {
        let found: Option<(String,)> = sqlx::query_as("SELECT name FROM domains WHERE name = $1")
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!(
                "domain {domain} is not local; add it first"
            ))),
        }
    }

    // ---- accounts ----

    async fn hash_password(&self, password: &str) -> Result<String> {
        if password.is_empty() {
            return Err(invalid("the password must not be empty"));
        }
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(StoreError::Internal)
    }

    pub async fn add_account(
        &self,
        raw: &str,
        password: &str,
        quota_bytes: u64,
        quota_messages: u64,
    ) -> Result<AccountRow> {
        let addr = parse_address(raw)?;
        let quota = i64::try_from(quota_bytes).map_err(|_| invalid("quota too large"))?;
        let quota_messages =
            i64::try_from(quota_messages).map_err(|_| invalid("message quota too large"))?;
        self.require_domain(&addr.domain).await?;
        let hash = self.hash_password(password).await?;
        let address = addr.full();
        let mut tx = self.pool.begin().await?;
        let id: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO accounts (address, domain, password_hash, quota_bytes, quota_messages) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address) DO NOTHING RETURNING id",
        )
        .bind(&address)
        .bind(&addr.domain)
        .bind(&hash)
        .bind(quota)
        .bind(quota_messages)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id,)) = id else {
            return Err(StoreError::AlreadyExists(format!(
                "account {address} already exists"
            )));
        };
        let names: Vec<&str> = DEFAULT_MAILBOXES.iter().map(|m| m.0).collect();
        let uses: Vec<Option<&str>> = DEFAULT_MAILBOXES.iter().map(|m| m.1).collect();
        sqlx::query(
            "WITH boxes AS (INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) \
                SELECT $1, n, u, $4 FROM UNNEST($2::text[], $3::text[]) AS v(n, u) RETURNING name) \
             INSERT INTO subscriptions (account_id, name) SELECT $1, name FROM boxes",
        )
        .bind(id)
        .bind(&names)
        .bind(&uses)
        .bind(new_uidvalidity())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.events.directory_changed();
        Ok(AccountRow {
            address,
            quota_bytes: quota,
            used_bytes: 0,
            quota_messages,
        })
    }

    pub async fn list_accounts(&self, domain: &str) -> Result<Vec<AccountRow>> {
        let domain = if domain.trim().is_empty() {
            String::new()
        } else {
            normalize_domain(domain)
                .ok_or_else(|| invalid(format!("not a valid domain: {domain:?}")))?
        };
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT address, quota_bytes, used_bytes, quota_messages FROM accounts \
             WHERE $1 = '' OR domain = $1 ORDER BY address",
        )
        .bind(&domain)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(address, quota_bytes, used_bytes, quota_messages)| AccountRow {
                    address,
                    quota_bytes,
                    used_bytes,
                    quota_messages,
                },
            )
            .collect())
    }

    pub async fn set_password(&self, raw: &str, password: &str) -> Result<()> {
        let addr = parse_address(raw)?;
        let hash = self.hash_password(password).await?;
        let done = sqlx::query("UPDATE accounts SET password_hash = $2 WHERE address = $1")
            .bind(addr.full())
            .bind(&hash)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no account {}", addr.full())));
        }
        Ok(())
    }

    /// Deletes the account with its mailboxes and messages (cascading); the
    /// blobs stay for the sweeper, since other recipients may share them.
    pub async fn remove_account(&self, raw: &str) -> Result<()> {
        let addr = parse_address(raw)?;
        let done = sqlx::query("DELETE FROM accounts WHERE address = $1")
            .bind(addr.full())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no account {}", addr.full())));
        }
        self.events.directory_changed();
        Ok(())
    }

    // ---- aliases ----

    pub async fn add_alias(&self, raw: &str, targets: &[String]) -> Result<(String, Vec<String>)> {
        let (alias, domain) =
            parse_alias(raw).ok_or_else(|| invalid(format!("not a valid alias: {raw:?}")))?;
        if targets.is_empty() {
            return Err(invalid("an alias needs at least one target account"));
        }
        let mut wanted = Vec::with_capacity(targets.len());
        for t in targets {
            wanted.push(parse_address(t)?.full());
        }
        wanted.sort();
        wanted.dedup();
        self.require_domain(&domain).await?;
        let mut tx = self.pool.begin().await?;
        let clash: Option<(i64,)> = sqlx::query_as("SELECT id FROM accounts WHERE address = $1")
            .bind(&alias)
            .fetch_optional(&mut *tx)
            .await?;
        if clash.is_some() {
            return Err(StoreError::AlreadyExists(format!("{alias} is an account")));
        }
        let found: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, address FROM accounts WHERE address = ANY($1) ORDER BY address",
        )
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
        if found.len() != wanted.len() {
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|w| !found.iter().any(|(_, a)| a == *w))
                .map(String::as_str)
                .collect();
            return Err(StoreError::NotFound(format!(
                "no account {}",
                missing.join(", ")
            )));
        }
        let inserted: Option<(String,)> = sqlx::query_as(
            "INSERT INTO aliases (address, domain) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING address",
        )
        .bind(&alias)
        .bind(&domain)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            return Err(StoreError::AlreadyExists(format!(
                "alias {alias} already exists"
            )));
        }
        let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
        sqlx::query("INSERT INTO alias_targets (alias, account_id) SELECT $1, UNNEST($2::int8[])")
            .bind(&alias)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.events.directory_changed();
        Ok((alias, found.into_iter().map(|(_, a)| a).collect()))
    }

    pub async fn list_aliases(&self, domain: &str) -> Result<Vec<(String, Vec<String>)>> {
        let domain = if domain.trim().is_empty() {
            String::new()
        } else {
            normalize_domain(domain)
                .ok_or_else(|| invalid(format!("not a valid domain: {domain:?}")))?
        };
        let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
            "SELECT al.address, \
                    COALESCE(array_agg(a.address ORDER BY a.address) FILTER (WHERE a.address IS NOT NULL), '{}') \
             FROM aliases al \
             LEFT JOIN alias_targets t ON t.alias = al.address \
             LEFT JOIN accounts a ON a.id = t.account_id \
             WHERE $1 = '' OR al.domain = $1 \
             GROUP BY al.address ORDER BY al.address",
        )
        .bind(&domain)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn remove_alias(&self, raw: &str) -> Result<()> {
        let (alias, _) =
            parse_alias(raw).ok_or_else(|| invalid(format!("not a valid alias: {raw:?}")))?;
        let done = sqlx::query("DELETE FROM aliases WHERE address = $1")
            .bind(&alias)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no alias {alias}")));
        }
        self.events.directory_changed();
        Ok(())
    }

    // ---- recipients and authentication ----

    /// Resolves an envelope recipient in one round trip: exact account, exact
    /// alias, then (for `user+tag`) the account and alias without the tag,
    /// then the catch-all `@domain`. The lowest rank that matches wins.
    pub async fn resolve(&self, raw: &str) -> Result<Resolution> {
        let mut all = self.resolve_many(&[raw]).await?;
        Ok(all.pop().unwrap_or(Resolution::NotLocal))
    }

    /// [`Store::resolve`] for many recipients in one query (Deliver's batch,
    /// a fan-out's 50 recipients): one answer per address, in order.
    pub async fn resolve_many(&self, raws: &[&str]) -> Result<Vec<Resolution>> {
        let parsed: Vec<Option<Address>> = raws.iter().map(|r| Address::parse(r)).collect();
        // Rows of the query name the address by its place among the parsed ones.
        let (mut exact, mut untagged, mut catch_all, mut domain, mut slot) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, addr) in parsed.iter().enumerate() {
            let Some(addr) = addr else { continue };
            exact.push(addr.full());
            untagged.push(addr.without_tag().map(|a| a.full()).unwrap_or_default());
            catch_all.push(format!("@{}", addr.domain));
            domain.push(addr.domain.clone());
            slot.push(i);
        }
        // Not an address we could ever own, until a row says otherwise.
        let mut out: Vec<Resolution> = vec![Resolution::NotLocal; raws.len()];
        if slot.is_empty() {
            return Ok(out);
        }
        // Each account row says whether it has a quota at all, so RCPT's
        // over-quota check reads nothing more for the usual unlimited one.
        let rows: Vec<(i64, i32, i64, String, bool)> = sqlx::query_as(
            "WITH r AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
                          WITH ORDINALITY AS r(exact, untagged, catch_all, domain, i)) \
             SELECT r.i, 0, 0::int8, d.name, false FROM r JOIN domains d ON d.name = r.domain \
             UNION ALL SELECT r.i, 1, a.id, a.address, a.quota_bytes > 0 OR a.quota_messages > 0 \
               FROM r JOIN accounts a ON a.address = r.exact \
             UNION ALL SELECT r.i, 2, a.id, a.address, a.quota_bytes > 0 OR a.quota_messages > 0 \
               FROM r JOIN alias_targets t ON t.alias = r.exact JOIN accounts a ON a.id = t.account_id \
             UNION ALL SELECT r.i, 3, a.id, a.address, a.quota_bytes > 0 OR a.quota_messages > 0 \
               FROM r JOIN accounts a ON a.address = r.untagged \
             UNION ALL SELECT r.i, 4, a.id, a.address, a.quota_bytes > 0 OR a.quota_messages > 0 \
               FROM r JOIN alias_targets t ON t.alias = r.untagged JOIN accounts a ON a.id = t.account_id \
             UNION ALL SELECT r.i, 5, a.id, a.address, a.quota_bytes > 0 OR a.quota_messages > 0 \
               FROM r JOIN alias_targets t ON t.alias = r.catch_all JOIN accounts a ON a.id = t.account_id",
        )
        .bind(&exact)
        .bind(&untagged)
        .bind(&catch_all)
        .bind(&domain)
        .fetch_all(&self.pool)
        .await?;
        // Per parsed address: (domain is ours, rows of rank > 0).
        let mut found: Vec<(bool, Vec<(i32, LocalAccount)>)> =
            vec![(false, Vec::new()); slot.len()];
        for (ordinal, rank, id, address, limited) in rows {
            // ORDINALITY counts from 1.
            let Some(f) = usize::try_from(ordinal - 1)
                .ok()
                .and_then(|k| found.get_mut(k))
            else {
                continue;
            };
            if rank == 0 {
                f.0 = true;
            } else {
                f.1.push((
                    rank,
                    LocalAccount {
                        id,
                        address,
                        limited,
                    },
                ));
            }
        }
        for ((ours, rows), i) in found.into_iter().zip(slot) {
            let Some(o) = out.get_mut(i).filter(|_| ours) else {
                continue;
            };
            let Some(best) = rows.iter().map(|r| r.0).min() else {
                *o = Resolution::UnknownUser;
                continue;
            };
            let mut accounts: Vec<LocalAccount> = rows
                .into_iter()
                .filter(|r| r.0 == best)
                .map(|r| r.1)
                .collect();
            accounts.sort_by(|a, b| (a.id, &a.address).cmp(&(b.id, &b.address)));
            accounts.dedup_by(|a, b| a.id == b.id);
            *o = Resolution::Local(accounts);
        }
        Ok(out)
    }

    /// Whether any of `accounts` (ids) could not take a message of `size`
    /// octets now: over its byte quota (at least one octet is needed, so a
    /// full account counts whatever the size) or at its message quota. The
    /// same limits Deliver applies, read without a lock: an answer for RCPT,
    /// not a reservation.
    pub async fn over_quota(&self, accounts: &[i64], size: u64) -> Result<bool> {
        if accounts.is_empty() {
            return Ok(false);
        }
        let size = i64::try_from(size.max(1)).unwrap_or(i64::MAX);
        let (full,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM accounts a WHERE a.id = ANY($1) AND ( \
               (a.quota_bytes > 0 AND a.used_bytes > a.quota_bytes - $2) \
               OR (a.quota_messages > 0 AND a.quota_messages <= \
                   (SELECT COALESCE(sum(m.message_count), 0) FROM mailboxes m WHERE m.account_id = a.id))))",
        )
        .bind(accounts)
        .bind(size)
        .fetch_one(&self.pool)
        .await?;
        Ok(full)
    }

    /// Verifies a password through the login guard (`crate::auth_guard`):
    /// a locked pair or address is refused before any check; a wrong
    /// password or unknown user is counted and answered after the guard's
    /// delay, and both cost the same time.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        remote_ip: &str,
        protocol: &str,
    ) -> Result<AuthResult> {
        let username = username.trim().to_lowercase();
        let keys = crate::auth_guard::Keys::new(&username, remote_ip);
        let (key_list, window) = self.auth_guard.standing_params(&keys);
        // The guard's standing and the account in one statement.
        let (locked, pair_counted, id, address, hash): (
            bool,
            bool,
            Option<i64>,
            Option<String>,
            Option<String>,
        ) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT g.locked, g.pair_counted, a.id, a.address, a.password_hash \
             FROM ({}) g LEFT JOIN accounts a ON a.address = $1",
            crate::auth_guard::AuthGuard::STANDING_SQL
        )))
        .bind(&username)
        .bind(key_list)
        .bind(window)
        .fetch_one(&self.pool)
        .await?;
        if locked {
            tokio::time::sleep(self.auth_guard.failure_delay).await;
            return Ok(AuthResult::Locked);
        }
        let row = match (id, address, hash) {
            (Some(id), Some(address), Some(hash)) => Some((id, address, hash)),
            _ => None,
        };
        let mut ok = matches!(&row, Some((_, address, hash)) if self.credentials.check(address, password, hash));
        if !ok {
            let hasher = self.hasher.clone();
            let pw = password.to_owned();
            let hash = row.as_ref().map(|r| r.2.clone());
            ok = tokio::task::spawn_blocking(move || hasher.verify(&pw, hash.as_deref()))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            if ok && let Some((_, address, hash)) = &row {
                self.credentials.insert(address, password, hash);
            }
        }
        match row {
            Some((id, address, _)) if ok => {
                if pair_counted {
                    self.auth_guard.succeeded(&self.pool, &keys).await?;
                }
                Ok(AuthResult::Ok { id, address })
            }
            _ => {
                let delay = self.auth_guard.failed(&self.pool, &keys, protocol).await?;
                tokio::time::sleep(delay).await;
                Ok(AuthResult::Failed)
            }
        }
    }

    // ---- mailboxes and messages ----

    /// The account's mailboxes (INBOX first, then by name), and the
    /// subscribed names that no mailbox has (in name order), in one
    /// statement: LIST needs both, and they were two round trips.
    pub async fn list_mailboxes(&self, account: &str) -> Result<(Vec<MailboxRow>, Vec<String>)> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            mailbox: MailboxRow,
            subscribed_only: Vec<String>,
        }
        let addr = parse_address(account)?;
        let rows: Vec<Row> = sqlx::query_as(
            "WITH acc AS (SELECT id FROM accounts WHERE address = $1), \
               orphans AS (SELECT ARRAY(SELECT s.name FROM subscriptions s, acc \
                   WHERE s.account_id = acc.id AND NOT EXISTS \
                     (SELECT 1 FROM mailboxes x WHERE x.account_id = s.account_id AND x.name = s.name) \
                   ORDER BY s.name) AS names) \
             SELECT m.id, m.name, m.special_use, \
                    EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name) AS subscribed, \
                    m.uidvalidity, m.uidnext, m.highestmodseq, \
                    m.message_count AS messages, m.unseen_count AS unseen, m.total_size AS size, \
                    m.first_recent_uid, o.names AS subscribed_only \
             FROM acc JOIN mailboxes m ON m.account_id = acc.id CROSS JOIN orphans o \
             ORDER BY (m.name <> 'INBOX'), m.name",
        )
        .bind(addr.full())
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::NotFound(format!("no account {}", addr.full())));
        };
        let subscribed_only = first.subscribed_only.clone();
        Ok((
            rows.into_iter().map(|r| r.mailbox).collect(),
            subscribed_only,
        ))
    }

    /// (quota_bytes, used_bytes, message count, quota_messages) of an account.
    pub async fn quota(&self, account: &str) -> Result<(i64, i64, i64, i64)> {
        let addr = parse_address(account)?;
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT a.quota_bytes, a.used_bytes, \
                    COALESCE((SELECT sum(m.message_count) FROM mailboxes m WHERE m.account_id = a.id), 0)::int8, \
                    a.quota_messages \
             FROM accounts a WHERE a.address = $1",
        )
        .bind(addr.full())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::NotFound(format!("no account {}", addr.full())))
    }

    /// The mailbox id and uidvalidity of `account`'s mailbox `name` (empty
    /// or any case of "INBOX" means the inbox).
    pub async fn find_mailbox(&self, account: &str, name: &str) -> Result<(i64, i64)> {
        let mut conn = self.pool.acquire().await?;
        find_mailbox_on(&mut conn, account, name).await
    }

    pub async fn list_messages(
        &self,
        account: &str,
        mailbox: &str,
        uid_from: u32,
        limit: u32,
    ) -> Result<(i64, Vec<MessageRow>)> {
        let (mailbox_id, uidvalidity) = self.find_mailbox(account, mailbox).await?;
        let limit = match i64::from(limit) {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let rows: Vec<MessageRow> =
            sqlx::query_as(
                "SELECT m.uid, m.size, m.modseq, m.flags, m.internal_date, b.meta->>'subject' AS subject, m.blob_id \
                 FROM messages m JOIN blobs b ON b.id = m.blob_id \
                 WHERE m.mailbox_id = $1 AND m.uid >= $2 AND m.expunged_modseq IS NULL \
                 ORDER BY m.uid LIMIT $3",
            )
            .bind(mailbox_id)
            .bind(i64::from(uid_from))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok((uidvalidity, rows))
    }
}

/// A UIDVALIDITY from the clock (seconds), never 0, within 32 bits.
fn new_uidvalidity() -> i64 {
    let secs = chrono::Utc::now().timestamp().rem_euclid(1 << 32);
    secs.max(1)
}

/// [`Store::find_mailbox`] on a given connection: inside a transaction it
/// must be the transaction's own, or every holder of a pooled connection
/// could wait for one more and the pool would deadlock under load.
pub(crate) async fn find_mailbox_on(
    conn: &mut sqlx::PgConnection,
    account: &str,
    name: &str,
) -> Result<(i64, i64)> {
    let addr = parse_address(account)?;
    let name = if name.is_empty() || name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    };
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT m.id, m.uidvalidity FROM mailboxes m JOIN accounts a ON a.id = m.account_id \
         WHERE a.address = $1 AND m.name = $2",
    )
    .bind(addr.full())
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("no mailbox {name:?} for {}", addr.full())))
}
