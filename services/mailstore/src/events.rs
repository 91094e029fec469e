//! Change events: after a transaction that adds, flags or removes messages
//! commits, mailstore publishes a [`MailboxEvent`] for each touched mailbox on
//! the `{prefix}.events` topic exchange, so IMAP sessions in IDLE learn about
//! it within a second. The changes waiting when the task wakes leave in one
//! publish (the first event, the others in its `more`): a delivery batch
//! fanned out to 50 mailboxes is one message through RabbitMQ, not 50. The
//! routing key is `account.<id>` when they are all one account's, else
//! `account.several`.
//!
//! An event is a hint ("mailbox N is now at modseq M"), not the change
//! itself: a frontend resynchronises from mailstore, so a lost or reordered
//! event only delays a notification until the next NOOP. Publishing is
//! therefore best effort and never blocks a request: request paths queue the
//! mailbox ids on a bounded channel, and one background task publishes,
//! reconnecting to RabbitMQ as needed.
//!
//! A writer that knows the modseq it committed hands it over
//! ([`Events::changed_at`], with the account too in
//! [`Events::changed_known`]); a mailbox's account never changes, so the task
//! keeps a bounded map of mailbox to account, and such a notice costs no
//! Postgres read. Only notices without a modseq (a copy) and mailboxes not in
//! the map are looked up, in one statement per batch.
//!
//! Directory changes (a domain, account or alias added or removed) go the
//! same way as a [`DirectoryEvent`] on the `{prefix}.directory` fanout
//! exchange: smtp-gateway's recipient cache drops its answers on each. A lost
//! one leaves a stale answer for the cache's few seconds at most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection};
use mailfleet_proto::v1::{DirectoryEvent, MailboxEvent};
use mailfleet_runtime::CancellationToken;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use sqlx::PgPool;
use tokio::sync::mpsc;

/// Pending notifications; beyond this, new ones are dropped (sessions still
/// catch up at their next command).
const QUEUE: usize = 4096;
/// Wait before reconnecting after a failure.
const RETRY: Duration = Duration::from_secs(1);
/// Mailboxes whose account the task remembers; beyond this the map starts
/// afresh (a miss costs one read, never a wrong event).
const ACCOUNTS_KEPT: usize = 100_000;
/// Most events in one publish (a few dozen bytes each).
const EVENTS_PER_PUBLISH: usize = 1000;
/// The routing key of a publish whose events are of several accounts.
const SEVERAL_ACCOUNTS: &str = "account.several";

/// The request side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Events {
    tx: Option<mpsc::Sender<Notice>>,
    /// Directory changes so far (`mailfleet_store_directory_changes`): the
    /// last one's number is the `seq` of its event.
    directory_changes: Counter,
    /// Numbers directory changes and queues them as one step, so their
    /// events leave in the order of their numbers.
    directory_order: Arc<Mutex<()>>,
}

/// What changed.
#[derive(Debug)]
enum Notice {
    /// Mailboxes by id, each with the highestmodseq its writer committed
    /// when it knows it.
    Mailboxes(Vec<(i64, Option<i64>)>),
    /// Mailboxes whose account and committed highestmodseq are known:
    /// (mailbox, account, highestmodseq).
    Known(Vec<(i64, i64, i64)>),
    /// A directory change, by its number.
    Directory(u64),
}

impl Events {
    /// Events that go nowhere (tests of other features).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            directory_changes: Counter::default(),
            directory_order: Arc::default(),
        }
    }

    /// Starts the publishing task; it ends when `shutdown` is cancelled.
    pub fn start(
        pool: PgPool,
        amqp_url: String,
        prefix: String,
        directory_changes: Counter,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(publish_loop(pool, amqp_url, prefix, rx, shutdown));
        (
            Self {
                tx: Some(tx),
                directory_changes,
                directory_order: Arc::default(),
            },
            task,
        )
    }

    /// Announces that these mailboxes changed (after the commit).
    pub fn changed(&self, mailbox_ids: Vec<i64>) {
        if mailbox_ids.is_empty() {
            return;
        }
        self.send(Notice::Mailboxes(
            mailbox_ids.into_iter().map(|id| (id, None)).collect(),
        ));
    }

    /// Announces that a mailbox reached `highestmodseq` (after the commit),
    /// so that the publisher needs no read of the mailbox row.
    pub fn changed_at(&self, mailbox_id: i64, highestmodseq: i64) {
        self.send(Notice::Mailboxes(vec![(mailbox_id, Some(highestmodseq))]));
    }

    /// Announces that these mailboxes reached these modseqs (after the
    /// commit): (mailbox, account, highestmodseq). Costs the publisher no read.
    pub fn changed_known(&self, changes: Vec<(i64, i64, i64)>) {
        if !changes.is_empty() {
            self.send(Notice::Known(changes));
        }
    }

    /// Announces a committed domain, account or alias change.
    pub fn directory_changed(&self) {
        // A poisoned lock only means another caller panicked between two
        // plain calls; the order it guards is still sound.
        let _order = self
            .directory_order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = self.directory_changes.inc() + 1;
        self.send(Notice::Directory(seq));
    }

    fn send(&self, notice: Notice) {
        if let Some(tx) = &self.tx
            && tx.try_send(notice).is_err()
        {
            tracing::debug!("Change event queue full; dropping a notification.");
        }
    }
}

struct Link {
    _conn: Connection,
    channel: Channel,
}

async fn connect(amqp_url: &str, prefix: &str) -> Result<Link, mailfleet_queue::QueueError> {
    let conn = mailfleet_queue::connect(amqp_url).await?;
    let channel = conn.create_channel().await?;
    mailfleet_queue::declare_topology(&channel, prefix).await?;
    Ok(Link {
        _conn: conn,
        channel,
    })
}

async fn publish_loop(
    pool: PgPool,
    amqp_url: String,
    prefix: String,
    mut rx: mpsc::Receiver<Notice>,
    shutdown: CancellationToken,
) {
    let exchange = mailfleet_queue::names(&prefix).events;
    let directory_exchange = mailfleet_queue::names(&prefix).directory;
    let mut link: Option<Link> = None;
    let mut accounts: HashMap<i64, i64> = HashMap::new();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            got = rx.recv() => match got { Some(n) => n, None => return },
        };
        let mut notices = vec![first];
        // Coalesce whatever else is already waiting.
        while notices.len() < 1000
            && let Ok(more) = rx.try_recv()
        {
            notices.push(more);
        }
        let mut mailboxes = Vec::new();
        let mut directory: Option<u64> = None;
        for n in notices {
            match n {
                Notice::Mailboxes(m) => mailboxes.extend(m),
                Notice::Known(m) => {
                    if accounts.len() + m.len() > ACCOUNTS_KEPT {
                        accounts.clear();
                    }
                    for &(mailbox, account, modseq) in &m {
                        accounts.insert(mailbox, account);
                        mailboxes.push((mailbox, Some(modseq)));
                    }
                }
                // One event stands for every change before it.
                Notice::Directory(seq) => directory = directory.max(Some(seq)),
            }
        }
        if let Some(seq) = directory {
            let payload = DirectoryEvent { seq }.encode_to_vec();
            let sent = publish(
                &mut link,
                &amqp_url,
                &prefix,
                &directory_exchange,
                "",
                &payload,
                &shutdown,
            );
            if sent.await.is_none() {
                return;
            }
        }
        if mailboxes.is_empty() {
            continue;
        }
        let changes = merge(mailboxes.into_iter());
        let rows = match resolve(&pool, &mut accounts, changes).await {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(%error, "Cannot read mailboxes for change events.");
                continue;
            }
        };
        for chunk in rows.chunks(EVENTS_PER_PUBLISH) {
            let Some((key, payload)) = bundle(chunk) else {
                continue;
            };
            let sent = publish(
                &mut link, &amqp_url, &prefix, &exchange, &key, &payload, &shutdown,
            );
            if sent.await.is_none() {
                return;
            }
        }
    }
}

/// Publishes one event, with one retry on a fresh connection before it is
/// dropped. `None` when shutdown came first.
async fn publish(
    link: &mut Option<Link>,
    amqp_url: &str,
    prefix: &str,
    exchange: &str,
    key: &str,
    payload: &[u8],
    shutdown: &CancellationToken,
) -> Option<()> {
    for attempt in 0..2 {
        if link.is_none() {
            match connect(amqp_url, prefix).await {
                Ok(l) => *link = Some(l),
                Err(error) => {
                    tracing::warn!(%error, "Cannot publish change events.");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                    continue;
                }
            }
        }
        let Some(l) = link.as_ref() else { continue };
        let sent = l
            .channel
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default(),
            )
            .await;
        match sent {
            Ok(_) => break,
            Err(error) => {
                if attempt == 1 {
                    tracing::warn!(%error, "Failed to publish a change event.");
                }
                *link = None;
            }
        }
    }
    Some(())
}

/// One publish for these (mailbox, account, highestmodseq) changes: its
/// routing key and payload (the first event, the others in its `more`).
fn bundle(rows: &[(i64, i64, i64)]) -> Option<(String, Vec<u8>)> {
    let event = |&(mailbox_id, account_id, modseq): &(i64, i64, i64)| MailboxEvent {
        account_id,
        mailbox_id,
        highestmodseq: u64::try_from(modseq).unwrap_or(0),
        more: Vec::new(),
    };
    let (first, rest) = rows.split_first()?;
    let key = if rest.iter().all(|r| r.1 == first.1) {
        format!("account.{}", first.1)
    } else {
        SEVERAL_ACCOUNTS.to_owned()
    };
    let mut head = event(first);
    head.more = rest.iter().map(event).collect();
    Some((key, head.encode_to_vec()))
}

/// One entry per mailbox: the highest modseq announced for it, or `None`
/// when any notice for it came without one (then it is read).
fn merge(changes: impl Iterator<Item = (i64, Option<i64>)>) -> Vec<(i64, Option<i64>)> {
    let mut merged: HashMap<i64, Option<i64>> = HashMap::new();
    for (id, modseq) in changes {
        merged
            .entry(id)
            .and_modify(|m| *m = m.zip(modseq).map(|(a, b)| a.max(b)))
            .or_insert(modseq);
    }
    let mut out: Vec<_> = merged.into_iter().collect();
    out.sort_unstable();
    out
}

/// (mailbox, account, highestmodseq) for each change: from the notices and
/// the kept accounts where they suffice, else in one read of the rest.
async fn resolve(
    pool: &PgPool,
    accounts: &mut HashMap<i64, i64>,
    changes: Vec<(i64, Option<i64>)>,
) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    let mut rows = Vec::with_capacity(changes.len());
    let mut unknown = Vec::new();
    for (id, modseq) in changes {
        match (accounts.get(&id), modseq) {
            (Some(&account), Some(modseq)) => rows.push((id, account, modseq)),
            _ => unknown.push(id),
        }
    }
    if unknown.is_empty() {
        return Ok(rows);
    }
    let read: Vec<(i64, i64, i64)> =
        sqlx::query_as("SELECT id, account_id, highestmodseq FROM mailboxes WHERE id = ANY($1)")
            .bind(&unknown)
            .fetch_all(pool)
            .await?;
    if accounts.len() + read.len() > ACCOUNTS_KEPT {
        accounts.clear();
    }
    for &(id, account, _) in &read {
        accounts.insert(id, account);
    }
    rows.extend(read);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::{bundle, merge};
    use mailfleet_proto::v1::MailboxEvent;
    use prost::Message;

    #[test]
    fn one_publish_carries_every_change_and_names_one_account_only_when_there_is_one() {
        let (key, payload) = bundle(&[(10, 1, 5), (11, 1, 7)]).expect("two changes");
        assert_eq!(key, "account.1");
        let event = MailboxEvent::decode(payload.as_slice()).expect("decodes");
        assert_eq!(
            (event.account_id, event.mailbox_id, event.highestmodseq),
            (1, 10, 5)
        );
        let more: Vec<_> = event
            .more
            .iter()
            .map(|e| (e.account_id, e.mailbox_id, e.highestmodseq, e.more.len()))
            .collect();
        assert_eq!(more, [(1, 11, 7, 0)]);

        let (key, _) = bundle(&[(10, 1, 5), (20, 2, 3)]).expect("two changes");
        assert_eq!(key, "account.several");
        assert!(bundle(&[]).is_none());
    }

    #[test]
    fn a_notice_without_modseq_wins_and_modseqs_take_the_highest() {
        let merged = merge(
            [
                (1, Some(5)),
                (2, Some(3)),
                (1, Some(7)),
                (2, None),
                (3, Some(1)),
            ]
            .into_iter(),
        );
        assert_eq!(merged, [(1, Some(7)), (2, None), (3, Some(1))]);
    }
}
