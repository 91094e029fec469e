//! The Sieve scripts of an account in Postgres: put (compiled first), list,
//! get, activate, delete, rename, and the quota check HAVESPACE asks for.
//! Every write locks the account row, so two concurrent PUTSCRIPTs cannot
//! both squeeze under the quota.

use sqlx::{Postgres, Transaction};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// Per-account limits on stored scripts (settings `sieve_max_*`).
#[derive(Clone, Copy, Debug)]
pub struct SieveQuota {
    pub max_scripts: u32,
    pub max_bytes: u64,
    /// Largest single script; also the compiler's `max_script_bytes`.
    pub max_script_size: usize,
}

/// Longest script name in octets (RFC 5804 1.6 asks for at least 128
/// characters; the column allows 255 octets).
pub const MAX_NAME_BYTES: usize = 255;

/// The largest script the table holds (its CHECK constraint).
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;

/// A stored script's name and state (content only from [`Store::sieve_get`]).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScriptRow {
    pub name: String,
    pub active: bool,
}

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument(msg.into())
}

/// RFC 5804 1.6: a name is non-empty Net-Unicode without control
/// characters (C0, DEL, C1) or the line and paragraph separators.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid("a script name cannot be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "a script name is at most {MAX_NAME_BYTES} octets"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err(invalid("a script name cannot contain control characters"));
    }
    Ok(())
}

impl SieveQuota {
    fn limits(&self) -> mailfleet_sieve::Limits {
        mailfleet_sieve::Limits {
            max_script_bytes: self.max_script_size,
            ..Default::default()
        }
    }

    /// Compiles `content`; a failure is INVALID_ARGUMENT "line N: ...".
    pub fn compile(&self, content: &str) -> Result<mailfleet_sieve::Script> {
        self.check_size(content.len() as u64)?;
        mailfleet_sieve::compile(content.as_bytes(), &self.limits())
            .map_err(|e| invalid(e.to_string()))
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size > self.max_script_size as u64 {
            return Err(StoreError::QuotaExceeded(format!(
                "a script is at most {} octets",
                self.max_script_size
            )));
        }
        Ok(())
    }
}

/// The account's id, locked for the rest of the transaction.
async fn lock_account(tx: &mut Transaction<'_, Postgres>, account: &str) -> Result<i64> {
    let id: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM accounts WHERE address = lower($1) FOR UPDATE")
            .bind(account.trim())
            .fetch_optional(&mut **tx)
            .await?;
    id.map(|(id,)| id)
        .ok_or_else(|| StoreError::NotFound(format!("no account {account:?}")))
}

/// Fails with RESOURCE_EXHAUSTED when a script of `size` octets stored as
/// `name` (replacing a script of that name) would break `quota`.
async fn check_space(
    tx: &mut Transaction<'_, Postgres>,
    account_id: i64,
    name: &str,
    size: u64,
    quota: &SieveQuota,
) -> Result<()> {
    quota.check_size(size)?;
    let (others, other_bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(octet_length(content)), 0)::bigint \
         FROM sieve_scripts WHERE account_id = $1 AND name <> $2",
    )
    .bind(account_id)
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    if others.saturating_add(1) > i64::from(quota.max_scripts) {
        return Err(StoreError::QuotaExceeded(format!(
            "an account has at most {} scripts",
            quota.max_scripts
        )));
    }
    let total = u64::try_from(other_bytes).unwrap_or(0).saturating_add(size);
    if total > quota.max_bytes {
        return Err(StoreError::QuotaExceeded(format!(
            "an account's scripts take at most {} octets together",
            quota.max_bytes
        )));
    }
    Ok(())
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("no script {name:?}"))
}

impl Store {
    /// Compiles and stores a script (replacing one of the same name, which
    /// keeps its active state).
    pub async fn sieve_put(
        &self,
        account: &str,
        name: &str,
        content: &str,
        quota: &SieveQuota,
    ) -> Result<()> {
        validate_name(name)?;
        quota.compile(content)?;
        let mut tx = self.pool.begin().await?;
        let id = lock_account(&mut tx, account).await?;
        check_space(&mut tx, id, name, content.len() as u64, quota).await?;
        sqlx::query(
            "INSERT INTO sieve_scripts (account_id, name, content) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, name) DO UPDATE SET content = excluded.content, \
                version = nextval('sieve_script_versions'), updated_at = now()",
        )
        .bind(id)
        .bind(name)
        .bind(content)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The account's scripts in name order.
    pub async fn sieve_list(&self, account: &str) -> Result<Vec<ScriptRow>> {
        let id: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM accounts WHERE address = lower($1)")
                .bind(account.trim())
                .fetch_optional(&self.pool)
                .await?;
        let (id,) = id.ok_or_else(|| StoreError::NotFound(format!("no account {account:?}")))?;
        let rows: Vec<ScriptRow> = sqlx::query_as(
            "SELECT name, active FROM sieve_scripts WHERE account_id = $1 ORDER BY name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// One script's state and text.
    pub async fn sieve_get(&self, account: &str, name: &str) -> Result<(ScriptRow, String)> {
        let row: Option<(bool, String)> = sqlx::query_as(
            "SELECT s.active, s.content FROM sieve_scripts s JOIN accounts a ON a.id = s.account_id \
             WHERE a.address = lower($1) AND s.name = $2",
        )
        .bind(account.trim())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (active, content) = row.ok_or_else(|| not_found(name))?;
        Ok((
            ScriptRow {
                name: name.to_owned(),
                active,
            },
            content,
        ))
    }

    /// Makes `name` the active script; "" deactivates every script.
    pub async fn sieve_set_active(&self, account: &str, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let id = lock_account(&mut tx, account).await?;
        // Two statements: a unique index is checked row by row, so one UPDATE
        // flipping both rows could trip over the old active one.
        sqlx::query(
            "UPDATE sieve_scripts SET active = false WHERE account_id = $1 AND active AND name <> $2",
        )
        .bind(id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if !name.is_empty() {
            let done = sqlx::query(
                "UPDATE sieve_scripts SET active = true WHERE account_id = $1 AND name = $2",
            )
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(not_found(name));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a script; the active one cannot be deleted (RFC 5804 2.10).
    pub async fn sieve_delete(&self, account: &str, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let id = lock_account(&mut tx, account).await?;
        let active: Option<(bool,)> =
            sqlx::query_as("SELECT active FROM sieve_scripts WHERE account_id = $1 AND name = $2")
                .bind(id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        match active {
            None => return Err(not_found(name)),
            Some((true,)) => {
                return Err(StoreError::FailedPrecondition(
                    "the active script cannot be deleted".into(),
                ));
            }
            Some((false,)) => {}
        }
        sqlx::query("DELETE FROM sieve_scripts WHERE account_id = $1 AND name = $2")
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Renames a script, keeping its active state.
    pub async fn sieve_rename(&self, account: &str, from: &str, to: &str) -> Result<()> {
        validate_name(to)?;
        let mut tx = self.pool.begin().await?;
        let id = lock_account(&mut tx, account).await?;
        let taken: Option<(i64,)> = sqlx::query_as(
            "SELECT 1::bigint FROM sieve_scripts WHERE account_id = $1 AND name = $2",
        )
        .bind(id)
        .bind(to)
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_some() {
            return Err(StoreError::AlreadyExists(format!("a script {to:?} exists")));
        }
        let done = sqlx::query(
            "UPDATE sieve_scripts SET name = $3, updated_at = now() \
             WHERE account_id = $1 AND name = $2",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(from));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether a script of `size` octets stored as `name` would fit.
    pub async fn sieve_have_space(
        &self,
        account: &str,
        name: &str,
        size: u64,
        quota: &SieveQuota,
    ) -> Result<()> {
        validate_name(name)?;
        let mut tx = self.pool.begin().await?;
        let id = lock_account(&mut tx, account).await?;
        check_space(&mut tx, id, name, size, quota).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_5804() {
        assert!(validate_name("vacation").is_ok());
        assert!(validate_name("Urlaub ☀").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name("a\u{7f}").is_err());
        assert!(validate_name("a\u{85}").is_err());
        assert!(validate_name("a\u{2028}").is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
    }
}
