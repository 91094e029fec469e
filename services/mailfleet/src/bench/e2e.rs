//! End to end: the time from the server's 250 to the message being visible.
//! Against mailfleet one poller lists each recipient mailbox in mailstore
//! incrementally (`uid_from`) and matches the markers in the subjects.
//! Against any other server a count command (`--visible-cmd`, e.g. the files
//! in a Maildir's `new/`) says how many copies have been delivered; messages
//! are taken to become visible in the order they were accepted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mailfleet_proto::v1::{ListMailboxesRequest, ListMessagesRequest};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::grpc::MailStore;

use super::message::parse_marker;

const POLL_PAUSE: Duration = Duration::from_millis(20);
/// A count command starts a process each time: polled less often, so the
/// machine it measures is not busy running it.
const COUNT_PAUSE: Duration = Duration::from_millis(50);
/// Longest a count command may take, and the most it may print.
const COUNT_TIMEOUT: Duration = Duration::from_secs(30);
const COUNT_OUTPUT: u64 = 4096;
const CONCURRENT_CALLS: usize = 16;
const PAGE: u32 = 1000;

/// What is known about one message.
#[derive(Clone, Copy, Default)]
pub struct Slot {
    pub accepted: Option<Instant>,
    pub visible: Option<Instant>,
    /// Copies seen so far (one per recipient mailbox).
    copies: u32,
}

/// Counters behind the slots: per account, copies owed and seen; the order
/// of acceptance, for a count that says only how many.
#[derive(Default)]
struct Progress {
    owed: Vec<u64>,
    seen: Vec<u64>,
    order: Vec<u64>,
    /// How many of `order` are marked visible.
    marked: usize,
}

/// Shared between the senders and the poller. Message `seq` goes to account
/// `seq % accounts`, or with fan-out to every account.
pub struct Ledger {
    pub slots: Mutex<Vec<Slot>>,
    progress: Mutex<Progress>,
    accounts: usize,
    fanout: bool,
}

impl Ledger {
    pub fn new(messages: u64, accounts: usize, fanout: bool) -> Arc<Ledger> {
        let accounts = accounts.max(1);
        Arc::new(Ledger {
            slots: Mutex::new(vec![
                Slot::default();
                usize::try_from(messages).unwrap_or(0)
            ]),
            progress: Mutex::new(Progress {
                owed: vec![0; accounts],
                seen: vec![0; accounts],
                ..Progress::default()
            }),
            accounts,
            fanout,
        })
    }

    pub fn account_of(&self, seq: u64) -> usize {
        usize::try_from(seq % self.accounts as u64).unwrap_or(0)
    }

    /// Copies of one message: one per recipient.
    pub fn copies_per_message(&self) -> u64 {
        if self.fanout { self.accounts as u64 } else { 1 }
    }

    pub fn accepted(&self, seq: u64, at: Instant) {
        if let Ok(mut slots) = self.slots.lock()
            && let Some(s) = usize::try_from(seq).ok().and_then(|i| slots.get_mut(i))
        {
            s.accepted = Some(at);
        }
        if let Ok(mut p) = self.progress.lock() {
            p.order.push(seq);
            if self.fanout {
                p.owed.iter_mut().for_each(|n| *n += 1);
            } else if let Some(n) = p.owed.get_mut(self.account_of(seq)) {
                *n += 1;
            }
        }
    }

    /// The poller found message `seq` in `account`'s mailbox.
    fn seen(&self, slots: &mut [Slot], account: usize, seq: u64, at: Instant) {
        if let Some(s) = usize::try_from(seq).ok().and_then(|i| slots.get_mut(i)) {
            s.copies = s.copies.saturating_add(1);
            if u64::from(s.copies) >= self.copies_per_message() {
                s.visible.get_or_insert(at);
            }
        }
        if let Ok(mut p) = self.progress.lock()
            && let Some(n) = p.seen.get_mut(account)
        {
            *n += 1;
        }
    }

    /// A count command says `copies` have been delivered: the messages they
    /// complete, in the order of acceptance, are visible from `at`.
    pub fn delivered(&self, copies: u64, at: Instant) {
        let (Ok(mut slots), Ok(mut p)) = (self.slots.lock(), self.progress.lock()) else {
            return;
        };
        let messages = usize::try_from(copies / self.copies_per_message()).unwrap_or(usize::MAX);
        let upto = messages.min(p.order.len());
        for i in p.marked..upto {
            if let Some(s) = p
                .order
                .get(i)
                .and_then(|&seq| usize::try_from(seq).ok())
                .and_then(|seq| slots.get_mut(seq))
            {
                s.visible.get_or_insert(at);
            }
        }
        p.marked = p.marked.max(upto);
    }

    /// Whether every accepted message has been marked by [`Ledger::delivered`].
    fn all_delivered(&self) -> bool {
        self.progress
            .lock()
            .is_ok_and(|p| p.marked >= p.order.len())
    }

    /// Per account: copies accepted but not yet seen.
    fn outstanding(&self) -> Vec<u64> {
        self.progress
            .lock()
            .map(|p| {
                p.owed
                    .iter()
                    .zip(&p.seen)
                    .map(|(o, s)| o.saturating_sub(*s))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The next UID of each account's INBOX, so only this run's messages are read.
pub async fn starting_uids(
    store: &MailStore,
    accounts: &[String],
) -> Result<Vec<u32>, tonic::Status> {
    let calls = accounts.iter().map(|a| {
        let mut store = store.clone();
        let account = a.clone();
        async move {
            let list = store
                .list_mailboxes(ListMailboxesRequest { account })
                .await?
                .into_inner();
            Ok::<u32, tonic::Status>(
                list.mailboxes
                    .iter()
                    .find(|m| m.name.eq_ignore_ascii_case("INBOX"))
                    .map_or(1, |m| m.uidnext.max(1)),
            )
        }
    });
    futures::stream::iter(calls)
        .buffered(CONCURRENT_CALLS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

pub struct PollResult {
    pub errors: u64,
    pub last_error: Option<String>,
}

/// Polls until `done` is cancelled and every accepted message is visible, or
/// `timeout` after `done`.
pub async fn poll(
    store: MailStore,
    accounts: Vec<String>,
    mut uid_from: Vec<u32>,
    run: String,
    ledger: Arc<Ledger>,
    done: CancellationToken,
    timeout: Duration,
) -> PollResult {
    let mut result = PollResult {
        errors: 0,
        last_error: None,
    };
    let mut done_at: Option<Instant> = None;
    loop {
        let finished = done.is_cancelled();
        if finished && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        let outstanding = ledger.outstanding();
        if finished && outstanding.iter().all(|&n| n == 0) {
            return result;
        }
        if done_at.is_some_and(|t| t.elapsed() > timeout) {
            return result;
        }
        let calls = accounts
            .iter()
            .enumerate()
            // Only mailboxes still owed a message: polling the others would
            // only load mailstore and slow the measurement's own rounds.
            .filter(|(i, _)| outstanding.get(*i).is_some_and(|&n| n > 0))
            .map(|(i, account)| {
                let store = store.clone();
                let account = account.clone();
                let from = uid_from.get(i).copied().unwrap_or(1);
                async move { (i, new_messages(store, account, from).await) }
            })
            .collect::<Vec<_>>();
        let answers: Vec<_> = futures::stream::iter(calls)
            .buffer_unordered(CONCURRENT_CALLS)
            .collect()
            .await;
        let now = Instant::now();
        for (i, answer) in answers {
            match answer {
                Ok(found) => {
                    if let Ok(mut slots) = ledger.slots.lock() {
                        for (uid, subject) in found {
                            if let Some(from) = uid_from.get_mut(i) {
                                *from = (*from).max(uid.saturating_add(1));
                            }
                            if let Some(seq) = parse_marker(&run, &subject) {
                                ledger.seen(&mut slots, i, seq, now);
                            }
                        }
                    }
                }
                Err(status) => {
                    result.errors += 1;
                    result.last_error = Some(status.message().to_owned());
                }
            }
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// Runs the count command until `done` is cancelled and every accepted
/// message is counted, or `timeout` after `done`. `baseline` is what it
/// printed before the run.
pub async fn poll_count(
    command: String,
    baseline: u64,
    ledger: Arc<Ledger>,
    done: CancellationToken,
    timeout: Duration,
) -> PollResult {
    let mut result = PollResult {
        errors: 0,
        last_error: None,
    };
    let mut done_at: Option<Instant> = None;
    loop {
        let finished = done.is_cancelled();
        if finished && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        if finished && ledger.all_delivered() {
            return result;
        }
        if done_at.is_some_and(|t| t.elapsed() > timeout) {
            return result;
        }
        match count(&command).await {
            Ok(n) => ledger.delivered(n.saturating_sub(baseline), Instant::now()),
            Err(e) => {
                result.errors += 1;
                result.last_error = Some(format!("{e:#}"));
            }
        }
        tokio::time::sleep(COUNT_PAUSE).await;
    }
}

/// Runs `command` with `sh -c` and reads the number it prints.
pub async fn count(command: &str) -> anyhow::Result<u64> {
    use anyhow::{Context, anyhow};
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run the count command with sh")?;
    let mut out = Vec::new();
    let run = async {
        if let Some(stdout) = child.stdout.take() {
            stdout.take(COUNT_OUTPUT).read_to_end(&mut out).await?;
        }
        child.wait().await
    };
    let status = tokio::time::timeout(COUNT_TIMEOUT, run)
        .await
        .map_err(|_| anyhow!("the count command did not finish within {COUNT_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&out);
    if !status.success() {
        return Err(anyhow!("the count command failed ({status})"));
    }
    parse_count(&text)
        .ok_or_else(|| anyhow!("the count command printed {:?}, not a number", text.trim()))
}

/// The number a count command printed: one unsigned integer, blanks around.
pub fn parse_count(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// (uid, subject) of the messages from `uid_from` on.
async fn new_messages(
    mut store: MailStore,
    account: String,
    mut uid_from: u32,
) -> Result<Vec<(u32, String)>, tonic::Status> {
    let mut found = Vec::new();
    loop {
        let page = store
            .list_messages(ListMessagesRequest {
                account: account.clone(),
                mailbox: String::new(),
                uid_from,
                limit: PAGE,
            })
            .await?
            .into_inner();
        let Some(last) = page.messages.last().map(|m| m.uid) else {
            return Ok(found);
        };
        let full = page.messages.len() >= PAGE as usize;
        found.extend(page.messages.into_iter().map(|m| (m.uid, m.subject)));
        match last.checked_add(1) {
            // A short page is the end: no second call to learn it is empty.
            Some(next) if full && next > uid_from => uid_from = next,
            _ => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn visible(ledger: &Ledger) -> Vec<bool> {
        ledger
            .slots
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.visible.is_some())
            .collect()
    }

    #[test]
    fn a_count_marks_messages_in_the_order_they_were_accepted() {
        let ledger = Ledger::new(4, 1, false);
        let now = Instant::now();
        for seq in [2, 0, 3] {
            ledger.accepted(seq, now);
        }
        ledger.delivered(2, now);
        assert_eq!(visible(&ledger), [true, false, true, false]);
        assert!(!ledger.all_delivered());
        // A count that goes down (a message read and moved away) unmarks nothing.
        ledger.delivered(1, now);
        assert_eq!(visible(&ledger), [true, false, true, false]);
        ledger.delivered(5, now);
        assert_eq!(visible(&ledger), [true, false, true, true]);
        assert!(ledger.all_delivered());
    }

    #[test]
    fn a_fanned_out_message_is_visible_with_its_last_copy() {
        let ledger = Ledger::new(2, 3, true);
        let now = Instant::now();
        ledger.accepted(0, now);
        ledger.accepted(1, now);
        assert_eq!(ledger.copies_per_message(), 3);
        assert_eq!(ledger.outstanding(), [2, 2, 2]);
        {
            let mut slots = ledger.slots.lock().unwrap();
            ledger.seen(&mut slots, 0, 0, now);
            ledger.seen(&mut slots, 1, 0, now);
        }
        assert_eq!(visible(&ledger), [false, false]);
        assert_eq!(ledger.outstanding(), [1, 1, 2]);
        ledger.seen(&mut ledger.slots.lock().unwrap(), 2, 0, now);
        assert_eq!(visible(&ledger), [true, false]);
        // Counted copies: 5 of 6 complete only the first message.
        let counted = Ledger::new(2, 3, true);
        counted.accepted(1, now);
        counted.accepted(0, now);
        counted.delivered(5, now);
        assert_eq!(visible(&counted), [false, true]);
    }

    #[test]
    fn without_fan_out_each_account_is_owed_its_own_messages() {
        let ledger = Ledger::new(5, 2, false);
        let now = Instant::now();
        for seq in 0..5 {
            ledger.accepted(seq, now);
        }
        assert_eq!(ledger.outstanding(), [3, 2]);
    }

    #[tokio::test]
    async fn the_count_command_is_read_and_its_failures_are_errors() {
        assert_eq!(count("echo '  42'").await.unwrap(), 42);
        assert_eq!(count("printf 7").await.unwrap(), 7);
        let e = count("echo many").await.unwrap_err();
        assert!(format!("{e:#}").contains("not a number"), "{e:#}");
        let e = count("echo 3; exit 2").await.unwrap_err();
        assert!(format!("{e:#}").contains("failed"), "{e:#}");
        assert_eq!(parse_count("-1"), None);
    }
}
