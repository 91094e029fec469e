//! End to end: the time from the server's 250 to the message being visible in
//! mailstore. One poller lists each recipient mailbox incrementally
//! (`uid_from`) and matches the markers in the subjects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mailfleet_proto::v1::{ListMailboxesRequest, ListMessagesRequest};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::grpc::MailStore;

use super::message::parse_marker;

const POLL_PAUSE: Duration = Duration::from_millis(20);
const CONCURRENT_CALLS: usize = 16;
const PAGE: u32 = 1000;

/// What is known about one message.
#[derive(Clone, Copy, Default)]
pub struct Slot {
    pub accepted: Option<Instant>,
    pub visible: Option<Instant>,
}

/// Shared between the senders and the poller; message `seq` goes to account
/// `seq % accounts`.
pub struct Ledger {
    pub slots: Mutex<Vec<Slot>>,
    accounts: usize,
}

impl Ledger {
    pub fn new(messages: u64, accounts: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            slots: Mutex::new(vec![
                Slot::default();
                usize::try_from(messages).unwrap_or(0)
            ]),
            accounts: accounts.max(1),
        })
    }

    pub fn account_of(&self, seq: u64) -> usize {
        usize::try_from(seq % self.accounts as u64).unwrap_or(0)
    }

    pub fn accepted(&self, seq: u64, at: Instant) {
        if let Ok(mut slots) = self.slots.lock()
            && let Some(s) = usize::try_from(seq).ok().and_then(|i| slots.get_mut(i))
        {
            s.accepted = Some(at);
        }
    }

    /// Per account: messages accepted but not yet seen.
    fn outstanding(&self) -> Vec<usize> {
        let mut out = vec![0; self.accounts];
        if let Ok(slots) = self.slots.lock() {
            for (seq, s) in slots.iter().enumerate() {
                if s.accepted.is_some() && s.visible.is_none() {
                    out[seq % self.accounts] += 1;
                }
            }
        }
        out
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
            .filter(|(i, _)| outstanding[*i] > 0)
            .map(|(i, account)| {
                let store = store.clone();
                let account = account.clone();
                let from = uid_from[i];
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
                            uid_from[i] = uid_from[i].max(uid.saturating_add(1));
                            if let Some(s) = parse_marker(&run, &subject)
                                .and_then(|seq| usize::try_from(seq).ok())
                                .and_then(|seq| slots.get_mut(seq))
                            {
                                s.visible.get_or_insert(now);
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
