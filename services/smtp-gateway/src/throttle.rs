//! AUTH failure limits per client IP and per account (bounded maps).
//!
//! Each failure adds a growing delay to the `535` answer; after
//! `max_failures` within the lockout window the IP (or the account, whatever
//! the IP) is refused without checking the password until the window since
//! its last failure has passed. Both maps are capped, so a flood of
//! addresses cannot grow memory without bound: when a map is full, expired
//! entries are dropped, and if it is still full the oldest entry goes.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked per map.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

#[derive(Debug)]
struct Window<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Window<K> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn failures(&self, key: &K, lockout: Duration, now: Instant) -> u32 {
        match self.entries.get(key) {
            Some(e) if now.duration_since(e.last) < lockout => e.failures,
            _ => 0,
        }
    }

    fn fail(&mut self, key: K, lockout: Duration, now: Instant) -> u32 {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_ENTRIES {
            self.entries
                .retain(|_, e| now.duration_since(e.last) < lockout);
            if self.entries.len() >= MAX_ENTRIES
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= lockout {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        entry.failures
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// The AUTH limits of one gateway, shared by its listeners.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    lockout: Duration,
    delay: Duration,
    ips: Mutex<Window<IpAddr>>,
    accounts: Mutex<Window<String>>,
}

impl AuthThrottle {
    pub fn new(max_failures: u32, lockout: Duration, delay: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            lockout,
            delay,
            ips: Mutex::new(Window::new()),
            accounts: Mutex::new(Window::new()),
        }
    }

    /// True when this IP is locked out (checked before any AUTH exchange).
    pub fn ip_locked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        lock(&self.ips).failures(&ip, self.lockout, now) >= self.max_failures
    }

    /// True when this account is locked out (checked before the password).
    pub fn account_locked(&self, account: &str) -> bool {
        let now = Instant::now();
        lock(&self.accounts).failures(&account.to_lowercase(), self.lockout, now)
            >= self.max_failures
    }

    /// Records a failure; returns how long to wait before answering.
    pub fn failed(&self, ip: IpAddr, account: &str) -> Duration {
        let now = Instant::now();
        let by_ip = lock(&self.ips).fail(ip, self.lockout, now);
        let by_account = lock(&self.accounts).fail(account.to_lowercase(), self.lockout, now);
        let n = by_ip.max(by_account).min(self.max_failures);
        self.delay.saturating_mul(n)
    }

    /// A success forgets the account's failures (not the IP's: one good
    /// password must not reset a guessing run over many accounts).
    pub fn succeeded(&self, account: &str) {
        lock(&self.accounts).clear(&account.to_lowercase());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a map inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_forgets_after_the_window() {
        let t = AuthThrottle::new(3, Duration::from_millis(200), Duration::from_millis(10));
        let ip: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(!t.ip_locked(ip));
        assert_eq!(t.failed(ip, "a@x"), Duration::from_millis(10));
        assert_eq!(t.failed(ip, "b@x"), Duration::from_millis(20));
        assert!(!t.ip_locked(ip));
        t.failed(ip, "c@x");
        assert!(t.ip_locked(ip));
        assert!(!t.account_locked("a@x"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!t.ip_locked(ip));
    }

    #[test]
    fn accounts_lock_across_ips() {
        let t = AuthThrottle::new(2, Duration::from_secs(60), Duration::ZERO);
        t.failed(IpAddr::from([192, 0, 2, 1]), "Victim@x");
        t.failed(IpAddr::from([192, 0, 2, 2]), "victim@x");
        assert!(t.account_locked("victim@x"));
        t.succeeded("victim@x");
        assert!(!t.account_locked("victim@x"));
    }

    #[test]
    fn maps_stay_bounded() {
        let t = AuthThrottle::new(5, Duration::from_secs(60), Duration::ZERO);
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            t.failed(IpAddr::from(i.to_be_bytes()), "x@y");
        }
        assert!(lock(&t.ips).entries.len() <= MAX_ENTRIES);
    }
}
