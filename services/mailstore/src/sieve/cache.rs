//! Compiled active Sieve scripts, cached per replica. Apart from the run
//! at delivery ([`super::run`]) so that the store's state can hold the cache
//! without importing the code that runs scripts against the store.

use std::collections::HashMap;
use std::sync::Mutex;

use mailfleet_sieve::Script;

/// Compiled scripts kept per replica; beyond it the cache starts over.
const CACHE_ENTRIES: usize = 10_000;

/// Compiled active scripts by account: (version, script), and how much of a
/// message they may read.
pub struct ScriptCache {
    map: Mutex<HashMap<i64, (i64, Script)>>,
    /// The part of a message a script sees (`sieve_max_message_size`):
    /// header and body tests read at most this much, so a large message is
    /// never held whole; `size` is told the stored size.
    pub(super) max_message_bytes: u64,
}

impl ScriptCache {
    pub fn new(max_message_bytes: u64) -> Self {
        Self {
            map: Mutex::default(),
            max_message_bytes,
        }
    }

    pub(super) fn get(&self, account: i64, version: i64) -> Option<Script> {
        let map = self.map.lock().ok()?;
        map.get(&account)
            .filter(|(v, _)| *v == version)
            .map(|(_, s)| s.clone())
    }

    pub(super) fn put(&self, account: i64, version: i64, script: Script) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHE_ENTRIES && !map.contains_key(&account) {
                map.clear();
            }
            map.insert(account, (version, script));
        }
    }
}
