//! Leases: exclusive, expiring locks on an account's resource (the POP3
//! maildrop lock). Each operation is one statement judged by Postgres's
//! clock, so two replicas racing for the same lease cannot both win and a
//! crashed holder's lease simply runs out.

use crate::address::Address;
use crate::error::{Result, StoreError};
use crate::store::Store;

/// Lease lifetime when the caller asks for none, and the longest allowed.
pub const DEFAULT_TTL_SECONDS: u32 = 60;
pub const MAX_TTL_SECONDS: u32 = 3600;

pub(crate) fn ttl(seconds: u32) -> f64 {
    f64::from(match seconds {
        0 => DEFAULT_TTL_SECONDS,
        n => n.min(MAX_TTL_SECONDS),
    })
}

fn account_of(raw: &str) -> Result<String> {
    Address::parse(raw)
        .map(|a| a.full())
        .ok_or_else(|| StoreError::InvalidArgument(format!("not a valid address: {raw:?}")))
}

fn check_resource(resource: &str) -> Result<()> {
    if resource.is_empty() || resource.len() > 200 {
        return Err(StoreError::InvalidArgument(
            "a lease resource must be 1 to 200 bytes".into(),
        ));
    }
    Ok(())
}

impl Store {
    /// Takes the lease when nobody holds an unexpired one: `Some(lease_id)`
    /// on success, `None` when it is held.
    pub async fn acquire_lease(
        &self,
        account: &str,
        resource: &str,
        holder: &str,
        ttl_seconds: u32,
    ) -> Result<Option<String>> {
        let address = account_of(account)?;
        check_resource(resource)?;
        let lease_id = uuid::Uuid::new_v4().to_string();
        let holder: String = holder.chars().take(200).collect();
        // One statement: insert, or take over a row whose lease has run
        // out; a live lease makes the WHERE false and nothing is returned.
        let won: Option<(String,)> = sqlx::query_as(
            "INSERT INTO leases (account_id, resource, lease_id, holder, expires_at) \
             SELECT a.id, $2, $3, $4, now() + make_interval(secs => $5) FROM accounts a WHERE a.address = $1 \
             ON CONFLICT (account_id, resource) DO UPDATE \
               SET lease_id = EXCLUDED.lease_id, holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
               WHERE leases.expires_at <= now() \
             RETURNING lease_id",
        )
        .bind(&address)
        .bind(resource)
        .bind(&lease_id)
        .bind(&holder)
        .bind(ttl(ttl_seconds))
        .fetch_optional(&self.pool)
        .await?;
        if won.is_some() {
            return Ok(Some(lease_id));
        }
        let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM accounts WHERE address = $1")
            .bind(&address)
            .fetch_optional(&self.pool)
            .await?;
        match exists {
            Some(_) => Ok(None),
            None => Err(StoreError::NotFound(format!("no account {address}"))),
        }
    }

    /// Extends the caller's lease. False when the lease is no longer the
    /// caller's (it expired and someone else took it, or was released).
    pub async fn renew_lease(
        &self,
        account: &str,
        resource: &str,
        lease_id: &str,
        ttl_seconds: u32,
    ) -> Result<bool> {
        let address = account_of(account)?;
        check_resource(resource)?;
        // An expired lease nobody took over is still the caller's to renew:
        // no one else can have acted on it.
        let done = sqlx::query(
            "UPDATE leases l SET expires_at = now() + make_interval(secs => $4) \
             FROM accounts a WHERE a.address = $1 AND l.account_id = a.id \
               AND l.resource = $2 AND l.lease_id = $3",
        )
        .bind(&address)
        .bind(resource)
        .bind(lease_id)
        .bind(ttl(ttl_seconds))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends the caller's lease; releasing a lease one does not hold does nothing.
    pub async fn release_lease(&self, account: &str, resource: &str, lease_id: &str) -> Result<()> {
        let address = account_of(account)?;
        check_resource(resource)?;
        // The row stays, marked expired (migration 0018): the next taker
        // updates it in place. Committed without waiting for the WAL flush,
        // as `pop3_lock` takes it (migration 0015): a release lost in a
        // Postgres crash leaves a lease that runs out by itself.
        sqlx::query(
            "WITH c AS (SELECT set_config('synchronous_commit', 'off', true)), \
                  d AS (UPDATE leases l SET expires_at = '-infinity' FROM accounts a \
                        WHERE a.address = $1 AND l.account_id = a.id AND l.resource = $2 \
                          AND l.lease_id = $3 RETURNING 1) \
             SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM c)",
        )
        .bind(&address)
        .bind(resource)
        .bind(lease_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
