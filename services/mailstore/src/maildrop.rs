//! The POP3 maildrop (RFC 1939) in as few calls and statements as a session
//! allows: OpenMaildrop logs in, locks and snapshots; CloseMaildrop
//! applies UPDATE and unlocks. RETR and TOP cost mailstore nothing: the
//! snapshot carries each message's content key and served prefix, and
//! pop3-frontend reads the body from object storage itself.
//!
//! The lock is the account's "pop3-maildrop" lease (`crate::lease`): one
//! statement takes it (with the login guard's check and the account's row
//! when the credential cache knows the password), and the snapshot is a
//! second statement run after it commits. They cannot be one: a statement that takes over a lease the
//! previous holder is releasing at that moment waits for that release, but
//! its SELECT still reads the messages as they were when it started, before
//! that session's expunges.

use mailfleet_proto::v1::{FlagsMode, UidSet};

use crate::deliver::return_path_line;
use crate::error::{Result, StoreError};
use crate::lease;
use crate::store::{AuthResult, Store};

/// The lease resource of the POP3 maildrop lock (pop3-frontend renews it
/// under this name).
pub const RESOURCE: &str = "pop3-maildrop";

/// One message of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMessage {
    pub uid: u32,
    /// Octets served: prefix and blob.
    pub size: u64,
    pub blob_id: String,
    /// The Return-Path line, exactly as GetBody serves it.
    pub prefix: Vec<u8>,
    pub seen: bool,
}

/// (uidvalidity, then the message or NULLs for an empty INBOX: uid, size,
/// blob id, return path, seen).
type SnapshotRow = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

/// A locked maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub lease_id: String,
    pub uidvalidity: u32,
    pub messages: Vec<SnapshotMessage>,
}

/// What a POP3 login came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Ok {
        address: String,
        snapshot: Snapshot,
    },
    /// Right password, but another session holds the maildrop.
    InUse {
        address: String,
    },
    Failed,
    Locked,
}

impl Store {
    /// Verifies the password (the login guard and credential cache of
    /// [`Store::authenticate`]), then takes the lock and the snapshot.
    pub async fn open_maildrop(
        &self,
        username: &str,
        password: &str,
        remote_ip: &str,
        holder: &str,
        ttl_seconds: u32,
    ) -> Result<Opened> {
        if let Some(opened) = self
            .open_cached(username, password, remote_ip, holder, ttl_seconds)
            .await?
        {
            return Ok(opened);
        }
        let (id, address) = match self
            .authenticate(username, password, remote_ip, "pop3")
            .await?
        {
            AuthResult::Ok { id, address } => (id, address),
            AuthResult::Failed => return Ok(Opened::Failed),
            AuthResult::Locked => return Ok(Opened::Locked),
        };
        let Some(lease_id) = self.take_maildrop(id, holder, ttl_seconds).await? else {
            return Ok(Opened::InUse { address });
        };
        let snapshot = self.snapshot_after_lock(id, lease_id).await?;
        Ok(Opened::Ok { address, snapshot })
    }

    /// A login the credential cache knows (the usual one: clients poll with
    /// the same password): the login guard's standing, the account and the
    /// lease in one statement, the lease taken only when the account's hash
    /// is still the one this password was verified against and the guard
    /// does not refuse. `None` when the cache does not know it or the hash
    /// changed: then the full login runs.
    async fn open_cached(
        &self,
        username: &str,
        password: &str,
        remote_ip: &str,
        holder: &str,
        ttl_seconds: u32,
    ) -> Result<Option<Opened>> {
        let username = username.trim().to_lowercase();
        let Some(cached) = self.credentials.hash_for(&username, password) else {
            return Ok(None);
        };
        let keys = crate::auth_guard::Keys::new(&username, remote_ip);
        let (key_list, window) = self.auth_guard.standing_params(&keys);
        let lease_id = uuid::Uuid::new_v4().to_string();
        let holder: String = holder.chars().take(200).collect();
        let (locked, pair_counted, id, address, hash, won): (
            bool,
            bool,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH g AS ({}), \
                  a AS (SELECT id, address, password_hash FROM accounts WHERE address = $1), \
                  l AS (INSERT INTO leases (account_id, resource, lease_id, holder, expires_at) \
                        SELECT a.id, $4, $5, $6, now() + make_interval(secs => $7) FROM a, g \
                        WHERE NOT g.locked AND a.password_hash = $8 \
                        ON CONFLICT (account_id, resource) DO UPDATE \
                          SET lease_id = EXCLUDED.lease_id, holder = EXCLUDED.holder, \
                              expires_at = EXCLUDED.expires_at \
                          WHERE leases.expires_at <= now() \
                        RETURNING lease_id) \
             SELECT g.locked, g.pair_counted, a.id, a.address, a.password_hash, \
                    (SELECT lease_id FROM l) \
             FROM g LEFT JOIN a ON true",
            crate::auth_guard::AuthGuard::STANDING_SQL
        )))
        .bind(&username)
        .bind(key_list)
        .bind(window)
        .bind(RESOURCE)
        .bind(&lease_id)
        .bind(&holder)
        .bind(lease::ttl(ttl_seconds))
        .bind(&cached)
        .fetch_one(&self.pool)
        .await?;
        if locked {
            tokio::time::sleep(self.auth_guard.failure_delay).await;
            return Ok(Some(Opened::Locked));
        }
        let (Some(id), Some(address), Some(hash)) = (id, address, hash) else {
            return Ok(None);
        };
        // The lease was taken exactly when the hash is the cached one, that
        // is when this password is right.
        if hash != cached {
            return Ok(None);
        }
        if pair_counted {
            self.auth_guard.succeeded(&self.pool, &keys).await?;
        }
        Ok(Some(match won {
            Some(lease_id) => Opened::Ok {
                snapshot: self.snapshot_after_lock(id, lease_id).await?,
                address,
            },
            None => Opened::InUse { address },
        }))
    }

    /// The lock and snapshot of an account that logged in already; `None`
    /// while another session holds it.
    pub async fn lock_maildrop(
        &self,
        account: &str,
        holder: &str,
        ttl_seconds: u32,
    ) -> Result<Option<Snapshot>> {
        let address = crate::store::parse_address(account)?.full();
        let id: Option<(i64,)> = sqlx::query_as("SELECT id FROM accounts WHERE address = $1")
            .bind(&address)
            .fetch_optional(&self.pool)
            .await?;
        let Some((id,)) = id else {
            return Err(StoreError::NotFound(format!("no account {address}")));
        };
        match self.take_maildrop(id, holder, ttl_seconds).await? {
            Some(lease_id) => Ok(Some(self.snapshot_after_lock(id, lease_id).await?)),
            None => Ok(None),
        }
    }

    /// One statement: the lease, unless a live one is held (as
    /// [`Store::acquire_lease`], by account id).
    async fn take_maildrop(
        &self,
        id: i64,
        holder: &str,
        ttl_seconds: u32,
    ) -> Result<Option<String>> {
        let lease_id = uuid::Uuid::new_v4().to_string();
        let holder: String = holder.chars().take(200).collect();
        let won: Option<(String,)> = sqlx::query_as(
            "INSERT INTO leases (account_id, resource, lease_id, holder, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
             ON CONFLICT (account_id, resource) DO UPDATE \
               SET lease_id = EXCLUDED.lease_id, holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
               WHERE leases.expires_at <= now() \
             RETURNING lease_id",
        )
        .bind(id)
        .bind(RESOURCE)
        .bind(&lease_id)
        .bind(&holder)
        .bind(lease::ttl(ttl_seconds))
        .fetch_optional(&self.pool)
        .await?;
        Ok(won.map(|w| w.0))
    }

    /// The INBOX snapshot, in one statement; the lease is released again if
    /// it fails, so a failed login does not hold the maildrop.
    async fn snapshot_after_lock(&self, id: i64, lease_id: String) -> Result<Snapshot> {
        let rows: Result<Vec<SnapshotRow>> = sqlx::query_as(
            "SELECT mb.uidvalidity, m.uid, m.size, m.blob_id, m.return_path, $2 = ANY(m.flags) \
                 FROM mailboxes mb \
                 LEFT JOIN messages m ON m.mailbox_id = mb.id AND m.expunged_modseq IS NULL \
                 WHERE mb.account_id = $1 AND mb.name = 'INBOX' \
                 ORDER BY m.uid",
        )
        .bind(id)
        .bind(crate::flags::SEEN)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from);
        let rows = match rows {
            Ok(r) if !r.is_empty() => r,
            other => {
                let _ = sqlx::query(
                    "DELETE FROM leases WHERE account_id = $1 AND resource = $2 AND lease_id = $3",
                )
                .bind(id)
                .bind(RESOURCE)
                .bind(&lease_id)
                .execute(&self.pool)
                .await;
                return Err(match other {
                    Err(e) => e,
                    Ok(_) => StoreError::NotFound("the account has no INBOX".into()),
                });
            }
        };
        let uidvalidity = rows.first().map_or(0, |r| u32::try_from(r.0).unwrap_or(0));
        let messages = rows
            .into_iter()
            .filter_map(|(_, uid, size, blob_id, return_path, seen)| {
                Some(SnapshotMessage {
                    uid: u32::try_from(uid?).ok()?,
                    size: u64::try_from(size?).unwrap_or(0),
                    blob_id: blob_id?,
                    prefix: return_path_line(return_path.as_deref()),
                    seen: seen.unwrap_or(false),
                })
            })
            .collect();
        Ok(Snapshot {
            lease_id,
            uidvalidity,
            messages,
        })
    }

    /// UPDATE (RFC 1939 6): expunge `expunge`, flag `seen` \Seen (a
    /// courtesy to IMAP clients whose failure is only logged), release the
    /// lease (also when the expunge failed). Returns how many messages were
    /// expunged.
    pub async fn close_maildrop(
        &self,
        account: &str,
        lease_id: &str,
        expunge: Option<&UidSet>,
        seen: Option<&UidSet>,
    ) -> Result<u32> {
        let mut expunged = Ok(0);
        if let Some(set) = expunge.filter(|s| !s.ranges.is_empty()) {
            expunged = self
                .expunge(account, "", Some(set), false)
                .await
                .map(|r| u32::try_from(r.expunged.len()).unwrap_or(u32::MAX));
        }
        if let Some(set) = seen.filter(|s| !s.ranges.is_empty() && expunged.is_ok()) {
            let flags = [crate::flags::SEEN.to_owned()];
            if let Err(error) = self
                .store_flags(account, "", Some(set), FlagsMode::FlagsAdd, &flags, 0)
                .await
            {
                tracing::warn!(%error, "Failed to flag retrieved POP3 messages \\Seen.");
            }
        }
        // Released whatever happened, so the client can log in again at once.
        self.release_lease(account, RESOURCE, lease_id).await?;
        expunged
    }
}
