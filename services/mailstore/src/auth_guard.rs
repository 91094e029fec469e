//! The login guard: one brute-force limit for IMAP, POP3 and SMTP AUTH on
//! every replica, because every login goes through mailstore's Authenticate
//! and the counters live in Postgres (`auth_failures`, migration 0008).
//!
//! Failures are counted under three keys: the account, the client address
//! (an IPv6 address by its /64, which one host usually owns whole) and the
//! (account, address) pair. The pair is locked after `auth_max_failures`
//! (a guesser from one place), the address after
//! `auth_max_failures_per_address` (one place spraying many accounts); a
//! locked login is refused before any password check, so no argon2 work is
//! spent on it. The account alone is never locked, so a guesser elsewhere
//! cannot lock its owner out; its failures only slow every failed answer.
//! A failed answer waits `auth_failure_delay`, doubled for each earlier
//! failure of the pair or the account (at most 15 s, as Dovecot's auth
//! penalty). Counts older than `auth_lockout` are forgotten; a successful
//! login clears its pair.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sqlx::PgPool;

use crate::error::Result;
use crate::metrics::StatusLabel;

/// Longest delay before a failed answer.
const MAX_DELAY: Duration = Duration::from_secs(15);
/// Expired rows are swept once every this many failures.
const SWEEP_EVERY: u64 = 256;

/// The guard's settings and lockout metric.
#[derive(Clone, Debug)]
pub struct AuthGuard {
    pub max_failures: u32,
    pub max_failures_per_address: u32,
    pub lockout: Duration,
    pub failure_delay: Duration,
    pub lockouts: Family<StatusLabel, Counter>,
    failures_seen: std::sync::Arc<AtomicU64>,
}

/// The keys one login attempt is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub account: String,
    pub address: String,
    pub pair: String,
}

impl Keys {
    /// `username` must already be normalised as login normalises it.
    pub fn new(username: &str, remote_ip: &str) -> Keys {
        let address = address_key(remote_ip);
        Keys {
            account: format!("a:{username}"),
            pair: format!("p:{username} {address}"),
            address: format!("i:{address}"),
        }
    }
}

/// The client address as the guard counts it: IPv4 whole, IPv6 by its /64
/// (an IPv4-mapped IPv6 address as IPv4); anything unparsable as given.
pub fn address_key(remote_ip: &str) -> String {
    match remote_ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => remote_ip.trim().to_owned(),
    }
}

/// What the guard knew of a login before its password was checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standing {
    /// The pair or the address is locked: refuse without checking.
    pub locked: bool,
}

/// The delay before the answer to a failed login, given the failures so
/// far (this one included).
pub fn delay_for(base: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    base.saturating_mul(1u32 << doublings).min(MAX_DELAY)
}

impl AuthGuard {
    pub fn new(
        max_failures: u32,
        max_failures_per_address: u32,
        lockout: Duration,
        failure_delay: Duration,
    ) -> AuthGuard {
        AuthGuard {
            max_failures: max_failures.max(1),
            max_failures_per_address: max_failures_per_address.max(1),
            lockout,
            failure_delay,
            lockouts: Family::default(),
            failures_seen: Default::default(),
        }
    }

    fn lockout_secs(&self) -> f64 {
        self.lockout.as_secs_f64().max(1.0)
    }

    /// SQL that reads the guard's standing of `keys`: a `locked` column, to
    /// be joined with the account's row in one statement (see
    /// `Store::authenticate`). Parameters: `$2` the keys, `$3` the window.
    pub const STANDING_SQL: &'static str = "SELECT coalesce(bool_or(locked_until > now()), false) AS locked, \
                coalesce(bool_or(key LIKE 'p:%'), false) AS pair_counted \
         FROM auth_failures WHERE key = ANY($2::text[]) AND key NOT LIKE 'a:%' \
           AND last_at > now() - make_interval(secs => $3)";

    /// Parameters for [`Self::STANDING_SQL`].
    pub fn standing_params(&self, keys: &Keys) -> (Vec<String>, f64) {
        (
            vec![keys.pair.clone(), keys.address.clone()],
            self.lockout_secs(),
        )
    }

    /// Counts a failed login under its three keys and locks the pair or the
    /// address when it reaches its limit. Returns the delay to wait before
    /// answering.
    pub async fn failed(&self, pool: &PgPool, keys: &Keys, protocol: &str) -> Result<Duration> {
        // A key's count starts again once its last failure left the window.
        // `failures = limit` holds exactly once per lockout: the increments of
        // one row are serialised, and a locked key is refused before it can
        // fail again.
        let rows: Vec<(String, i32, bool)> = sqlx::query_as(
            "WITH lim(k, n) AS (SELECT * FROM unnest($1::text[], $2::int4[])) \
             INSERT INTO auth_failures AS f (key, failures, last_at, locked_until) \
             SELECT k, 1, now(), CASE WHEN n <= 1 THEN now() + make_interval(secs => $3) END FROM lim \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN f.last_at <= now() - make_interval(secs => $3) THEN 1 \
                               ELSE f.failures + 1 END, \
               last_at = now(), \
               locked_until = CASE \
                 WHEN f.locked_until > now() THEN f.locked_until \
                 WHEN (CASE WHEN f.last_at <= now() - make_interval(secs => $3) THEN 1 \
                            ELSE f.failures + 1 END) >= (SELECT n FROM lim WHERE lim.k = f.key) \
                   THEN now() + make_interval(secs => $3) \
                 ELSE NULL END \
             RETURNING key, failures, failures = (SELECT n FROM lim WHERE lim.k = f.key)",
        )
        .bind(vec![
            keys.account.clone(),
            keys.address.clone(),
            keys.pair.clone(),
        ])
        // The account key is never locked: its limit cannot be reached.
        .bind(vec![
            i32::MAX,
            i32::try_from(self.max_failures_per_address).unwrap_or(i32::MAX),
            i32::try_from(self.max_failures).unwrap_or(i32::MAX),
        ])
        .bind(self.lockout_secs())
        .fetch_all(pool)
        .await?;
        let mut worst = 0u32;
        for (key, failures, just_locked) in &rows {
            if key == &keys.account || key == &keys.pair {
                worst = worst.max(u32::try_from(*failures).unwrap_or(0));
            }
            if *just_locked {
                let scope = if key == &keys.pair { "pair" } else { "address" };
                self.lockouts
                    .get_or_create(&StatusLabel { status: scope })
                    .inc();
                tracing::warn!(
                    scope,
                    account = %keys.account.trim_start_matches("a:"),
                    address = %keys.address.trim_start_matches("i:"),
                    protocol,
                    failures,
                    lockout_secs = self.lockout.as_secs(),
                    "Login locked out after too many failures."
                );
            }
        }
        if self.failures_seen.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(pool).await;
        }
        Ok(delay_for(self.failure_delay, worst))
    }

    /// A successful login clears its pair's count.
    pub async fn succeeded(&self, pool: &PgPool, keys: &Keys) -> Result<()> {
        sqlx::query("DELETE FROM auth_failures WHERE key = $1")
            .bind(&keys.pair)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Forgets rows whose window has passed, so the table stays as small as
    /// the recent failures.
    async fn sweep(&self, pool: &PgPool) {
        let result = sqlx::query(
            "DELETE FROM auth_failures WHERE last_at <= now() - make_interval(secs => $1) \
             AND (locked_until IS NULL OR locked_until <= now())",
        )
        .bind(self.lockout_secs())
        .execute(pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "Could not sweep old login failures.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_by_host_or_64() {
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key(" 192.0.2.7 "), "192.0.2.7");
        assert_eq!(address_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1"),
            address_key("2001:db8:1:2:bbbb:cccc:dddd:eeee")
        );
        assert_ne!(
            address_key("2001:db8:1:2::1"),
            address_key("2001:db8:1:3::1")
        );
        assert_eq!(address_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
    }

    #[test]
    fn delay_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        assert_eq!(delay_for(base, 0), base);
        assert_eq!(delay_for(base, 1), base);
        assert_eq!(delay_for(base, 2), 2 * base);
        assert_eq!(delay_for(base, 4), 8 * base);
        assert_eq!(delay_for(base, 5), MAX_DELAY);
        assert_eq!(delay_for(base, u32::MAX), MAX_DELAY);
        assert_eq!(delay_for(Duration::ZERO, 9), Duration::ZERO);
    }
}
