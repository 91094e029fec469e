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
/// exactly-once: a message the client saw 250 for, after no ambiguous
/// attempt, is stored exactly once. Extra copies are tolerated only where
/// RFC 5321 6.1 allows them: one per attempt that got a 4xx after the data
/// was sent or lost its connection before the reply.
pub fn assert_exactly_once(stack: &Stack, accounts: &[&str], reports: &[Sent], tag: &str) {
    let accepted: Vec<&Sent> = reports.iter().filter(|s| s.accepted).collect();
    for addr in accounts {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut counts = copies(stack, addr, tag);
        while accepted.iter().any(|s| !counts.contains_key(&s.i)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            counts = copies(stack, addr, tag);
        }
    }
    // A late duplicate would still be on its way: judge only once every
    // job handed to the broker before a marker sent now has been processed.
    settle(stack, accounts, tag);
    for addr in accounts {
        let counts = copies(stack, addr, tag);
        let mut lost = Vec::new();
        let mut duplicated = Vec::new();
        for s in reports {
            let n = counts.get(&s.i).copied().unwrap_or(0);
            if s.accepted && n == 0 {
                lost.push(s.i);
            }
            if n > s.allowed_copies() {
                duplicated.push((s.i, n, s.data_codes.clone()));
            }
        }
        let unknown: Vec<&u32> = counts
            .keys()
            .filter(|i| !reports.iter().any(|s| s.i == **i))
            .collect();
        assert!(lost.is_empty(), "{addr}: accepted but lost: {lost:?}");
        assert!(
            duplicated.is_empty(),
            "{addr}: stored more often than allowed (message, copies, DATA replies): {duplicated:?}"
        );
        assert!(
            unknown.is_empty(),
            "{addr}: messages nobody sent: {unknown:?}"
        );
    }
}

/// Sends one marker message to `accounts` after the load has finished,
/// waits until it is stored for each, then until the work queue is empty
/// with no job unacknowledged: a duplicate of anything handed over before
/// the marker would be in the mailboxes by then.
fn settle(stack: &Stack, accounts: &[&str], tag: &str) {
    let subject = format!("{tag} marker");
    let rcpts: Vec<String> = accounts.iter().map(|a| format!("'{a}'")).collect();
    let code = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {port})\n\
         s.sendmail('marker@remote.test', [{rcpts}], b'Subject: {subject}\\r\\n\\r\\nmarker\\r\\n')\n\
         s.quit()\n",
        port = stack.smtp_port,
        rcpts = rcpts.join(", "),
    );
    let out = crate::harness::run(std::process::Command::new("python3").arg("-c").arg(code));
    assert!(
        out.status.success(),
        "the marker message was not accepted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deadlines only fail a hang.
    let deadline = Instant::now() + Duration::from_secs(120);
    for addr in accounts {
        while !stack
            .messages(addr)
            .iter()
            .any(|(_, _, s)| s.trim() == subject)
        {
            assert!(
                Instant::now() < deadline,
                "{addr}: the marker message never arrived"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    loop {
        let pending = pending_jobs(&stack.vhost);
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivery jobs still queued: {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The work queue of `vhost` when it still holds a job, ready or
/// unacknowledged. A redelivered job (the source of a late duplicate) goes
/// back there; retry queues are left out, as a copy waiting there for a
/// recipient's next attempt may wait longer than a test runs, and local
/// delivery is idempotent per recipient anyway.
fn pending_jobs(vhost: &str) -> Vec<String> {
    let out = crate::harness::run(std::process::Command::new("rabbitmqctl").args([
        "-q",
        "list_queues",
        "-p",
        vhost,
        "name",
        "messages",
    ]));
    assert!(
        out.status.success(),
        "rabbitmqctl list_queues: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, count) = l.split_once('\t')?;
            (name.ends_with(".delivery") && count.trim() != "0").then(|| l.to_owned())
        })
        .collect()
}
