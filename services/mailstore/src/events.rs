//! Change events: after a transaction that adds, flags or removes messages
//! commits, mailstore publishes a [`MailboxEvent`] per touched mailbox on the
//! `{prefix}.events` topic exchange (routing key `account.<id>`), so IMAP
//! sessions in IDLE learn about it within a second.
//!
//! An event is a hint ("mailbox N is now at modseq M"), not the change
//! itself: a frontend resynchronises from mailstore, so a lost or reordered
//! event only delays a notification until the next NOOP. Publishing is
//! therefore best effort and never blocks a request: request paths queue the
//! mailbox ids on a bounded channel, and one background task looks up the
//! mailboxes and publishes, reconnecting to RabbitMQ as needed.
//!
//! Directory changes (a domain, account or alias added or removed) go the
//! same way as a [`DirectoryEvent`] on the `{prefix}.directory` fanout
//! exchange: smtp-gateway's recipient cache drops its answers on each. A lost
//! one leaves a stale answer for the cache's few seconds at most.

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
    /// Mailboxes by id.
    Mailboxes(Vec<i64>),
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
        self.send(Notice::Mailboxes(mailbox_ids));
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
        let mut ids: Vec<i64> = Vec::new();
        let mut directory: Option<u64> = None;
        for n in notices {
            match n {
                Notice::Mailboxes(m) => ids.extend(m),
                // One event stands for every change before it.
                Notice::Directory(seq) => directory = directory.max(Some(seq)),
            }
        }
        if let Some(seq) = directory {
            let payload = DirectoryEvent { seq }.encode_to_vec();
            if publish(
                &mut link,
                &amqp_url,
                &prefix,
                &directory_exchange,
                "",
                &payload,
                &shutdown,
            )
            .await
            .is_none()
            {
                return;
            }
        }
        if ids.is_empty() {
            continue;
        }
        ids.sort_unstable();
        ids.dedup();
        let rows: Vec<(i64, i64, i64)> = match sqlx::query_as(
            "SELECT id, account_id, highestmodseq FROM mailboxes WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await
        {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(%error, "Cannot read mailboxes for change events.");
                continue;
            }
        };
        for (mailbox_id, account_id, modseq) in rows {
            let event = MailboxEvent {
                account_id,
                mailbox_id,
                highestmodseq: u64::try_from(modseq).unwrap_or(0),
            };
            let payload = event.encode_to_vec();
            let key = format!("account.{account_id}");
            if publish(
                &mut link, &amqp_url, &prefix, &exchange, &key, &payload, &shutdown,
            )
            .await
            .is_none()
            {
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
