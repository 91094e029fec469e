//! The POP3 maildrop (RFC 1939) in as few calls and statements as a session
//! allows: OpenMaildrop logs in, locks and snapshots; CloseMaildrop
//! applies UPDATE and unlocks. RETR and TOP cost mailstore nothing: the
//! snapshot carries each message's content key and served prefix, and
//! pop3-frontend reads the body from object storage itself.
//!
//! The lock is the account's "pop3-maildrop" lease (`crate::lease`). The
//! SQL function `pop3_lock` (migration 0015) takes it and then snapshots the
//! INBOX, in one round trip: a login the credential cache knows is a single
//! statement (the login guard's check, the account's row, `pop3_lock`). The
//! snapshot is a statement of its own inside the function, with a fresh
//! snapshot: a statement that takes over a lease the previous holder is
//! releasing at that moment waits for that release, but a SELECT in the same
//! statement would still read the messages as they were when it started,
//! before that session's expunges.

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

/// What `pop3_lock` (migration 0015) returns: whether the lease was won,
/// then the INBOX's uidvalidity (NULL: no INBOX) and the snapshot as arrays
/// in UID order (NULL when the INBOX is empty): uid, size, blob id, return
/// path, \Seen.
type LockRow = (
    bool,
    Option<i64>,
    Option<Vec<i64>>,
    Option<Vec<i64>>,
    Option<Vec<String>>,
    Option<Vec<Option<String>>>,
    Option<Vec<bool>>,
);

/// What the cached login's statement returns: the guard's `locked` and
/// `pair_counted`, the account's id, address and hash, then a [`LockRow`].
type CachedRow = (
    bool,
    bool,
    Option<i64>,
    Option<String>,
    Option<String>,
    bool,
    Option<i64>,
    Option<Vec<i64>>,
    Option<Vec<i64>>,
    Option<Vec<String>>,
    Option<Vec<Option<String>>>,
    Option<Vec<bool>>,
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
        Ok(match self.lock(id, holder, ttl_seconds).await? {
            Some(snapshot) => Opened::Ok { address, snapshot },
            None => Opened::InUse { address },
        })
    }

    /// A login the credential cache knows (the usual one: clients poll with
    /// the same password), in one statement: the login guard's standing,
    /// the account, and `pop3_lock` (lease and snapshot), which is given the
    /// account only when its hash is still the one this password was
    /// verified against and the guard does not refuse. `None` when the cache
    /// does not know it or the hash changed: then the full login runs.
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
        // The function is called once (one row of `g`, at most one of `a`),
        // from FROM rather than the select list, where `(f()).*` would call
        // it once per column.
        let row: CachedRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH g AS ({}), \
                      a AS (SELECT id, address, password_hash FROM accounts WHERE address = $1) \
                 SELECT g.locked, g.pair_counted, a.id, a.address, a.password_hash, \
                        p.won, p.uidvalidity, p.uids, p.sizes, p.blob_ids, p.return_paths, p.seen \
                 FROM g LEFT JOIN a ON true, \
                      LATERAL pop3_lock(CASE WHEN NOT g.locked AND a.password_hash = $8 THEN a.id END, \
                                        $4, $5, $6, $7, $9) p",
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
            .bind(crate::flags::SEEN)
            .fetch_one(&self.pool)
            .await?;
        let (locked, pair_counted, id, address, hash) = (row.0, row.1, row.2, row.3, row.4);
        let lock = (row.5, row.6, row.7, row.8, row.9, row.10, row.11);
        if locked {
            tokio::time::sleep(self.auth_guard.failure_delay).await;
            return Ok(Some(Opened::Locked));
        }
        let (Some(_), Some(address), Some(hash)) = (id, address, hash) else {
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
        Ok(Some(match snapshot(lease_id, lock)? {
            Some(snapshot) => Opened::Ok { snapshot, address },
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
        self.lock(id, holder, ttl_seconds).await
    }

    /// The lease (unless a live one is held, as [`Store::acquire_lease`] by
    /// account id) and the snapshot: one statement, `pop3_lock`.
    async fn lock(&self, id: i64, holder: &str, ttl_seconds: u32) -> Result<Option<Snapshot>> {
        let lease_id = uuid::Uuid::new_v4().to_string();
        let holder: String = holder.chars().take(200).collect();
        let row: LockRow = sqlx::query_as(
            "SELECT won, uidvalidity, uids, sizes, blob_ids, return_paths, seen \
             FROM pop3_lock($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(RESOURCE)
        .bind(&lease_id)
        .bind(&holder)
        .bind(lease::ttl(ttl_seconds))
        .bind(crate::flags::SEEN)
        .fetch_one(&self.pool)
        .await?;
        snapshot(lease_id, row)
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

/// The snapshot `pop3_lock` returned: `None` when the lease was held by
/// another session; an error when the account has no INBOX (the function
/// gave the lease back already).
fn snapshot(lease_id: String, row: LockRow) -> Result<Option<Snapshot>> {
    let (won, uidvalidity, uids, sizes, blob_ids, return_paths, seen) = row;
    if !won {
        return Ok(None);
    }
    let Some(uidvalidity) = uidvalidity else {
        return Err(StoreError::NotFound("the account has no INBOX".into()));
    };
    let (uids, sizes, blob_ids) = (
        uids.unwrap_or_default(),
        sizes.unwrap_or_default(),
        blob_ids.unwrap_or_default(),
    );
    let (return_paths, seen) = (return_paths.unwrap_or_default(), seen.unwrap_or_default());
    let messages = uids
        .into_iter()
        .zip(sizes)
        .zip(blob_ids)
        .zip(return_paths)
        .zip(seen)
        .filter_map(|((((uid, size), blob_id), return_path), seen)| {
            Some(SnapshotMessage {
                uid: u32::try_from(uid).ok()?,
                size: u64::try_from(size).unwrap_or(0),
                blob_id,
                prefix: return_path_line(return_path.as_deref()),
                seen,
            })
        })
        .collect();
    Ok(Some(Snapshot {
        lease_id,
        uidvalidity: u32::try_from(uidvalidity).unwrap_or(0),
        messages,
    }))
}
