//! Accounts an APPEND found over quota lately. Apart from `append` so that
//! `Store`, which holds one, does not import the module that extends it.

use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

/// How long an account refused for its quota has every APPEND checked
/// against the quota before its body is stored.
const OVER_QUOTA_MEMORY: Duration = Duration::from_secs(60);

/// Accounts an APPEND found over quota lately, by address. Most APPENDs of
/// small bodies skip the look-up that refuses early (the insert checks the
/// quota under the account's lock in any case); an account refused lately
/// is looked up again first, so it cannot fill object storage with bodies
/// no message will own.
pub struct OverQuota(Cache<Box<str>, Instant>);

impl Default for OverQuota {
    fn default() -> Self {
        OverQuota(Cache::new(10_000))
    }
}

impl OverQuota {
    pub fn refused(&self, account: &str) {
        self.0.insert(account.into(), Instant::now());
    }

    pub fn lately(&self, account: &str) -> bool {
        self.0
            .get(account)
            .is_some_and(|at| at.elapsed() < OVER_QUOTA_MEMORY)
    }
}
