//! The durability invariant: every message answered 250 is in every
//! recipient's mailbox exactly once, and nothing else is.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{Sent, Stack};

/// Counts, per message number, the copies of `tag` messages in `addr`.
pub fn copies(stack: &Stack, addr: &str, tag: &str) -> BTreeMap<u32, usize> {
    let prefix = format!("{tag} message ");
    let mut counts = BTreeMap::new();
    for (_, _, subject) in stack.messages(addr) {
        if let Some(n) = subject
            .strip_prefix(&prefix)
            .and_then(|n| n.trim().parse().ok())
        {
            *counts.entry(n).or_insert(0) += 1;
        }
    }
    counts
}

/// Waits for every accepted message to arrive in every mailbox, then checks
/// exactly-once. A duplicate is tolerated only where RFC 5321 6.1 allows it:
/// the client saw a 4xx after sending the data and retried.
pub fn assert_exactly_once(stack: &Stack, accounts: &[&str], reports: &[Sent], tag: &str) {
    let accepted: Vec<&Sent> = reports.iter().filter(|s| s.accepted).collect();
    for addr in accounts {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut counts = copies(stack, addr, tag);
        while accepted.iter().any(|s| !counts.contains_key(&s.i)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            counts = copies(stack, addr, tag);
        }
        // Let any late duplicate show itself before judging.
        std::thread::sleep(Duration::from_millis(1500));
        let counts = copies(stack, addr, tag);
        let mut lost = Vec::new();
        let mut duplicated = Vec::new();
        for s in reports {
            let n = counts.get(&s.i).copied().unwrap_or(0);
            if s.accepted && n == 0 {
                lost.push(s.i);
            }
            if n > 1 && !(n == 2 && s.may_be_duplicated()) {
                duplicated.push((s.i, n));
            }
            if !s.accepted && n > 0 && !s.may_be_duplicated() {
                duplicated.push((s.i, n));
            }
        }
        let unknown: Vec<&u32> = counts
            .keys()
            .filter(|i| !reports.iter().any(|s| s.i == **i))
            .collect();
        assert!(lost.is_empty(), "{addr}: accepted but lost: {lost:?}");
        assert!(
            duplicated.is_empty(),
            "{addr}: stored more often than allowed (message, copies): {duplicated:?}"
        );
        assert!(
            unknown.is_empty(),
            "{addr}: messages nobody sent: {unknown:?}"
        );
    }
}
