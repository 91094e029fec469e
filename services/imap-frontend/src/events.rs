//! Mailbox change events from RabbitMQ: one exclusive, auto-deleted queue
//! per process bound to the `{prefix}.events` exchange, fanned out to every
//! session through a broadcast channel. Sessions treat an event as a hint to
//! resynchronise their selected mailbox; a lagging session resynchronises
//! anyway. The loop reconnects forever and keeps the readiness flag honest.
//!
//! [`Feed`] tells sessions whether they can trust the events: while the
//! consumer is down, and once after each reconnect (events in between are
//! lost), a session resynchronises at every command instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mailfleet_proto::v1::MailboxEvent;
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::http::HealthFlag;
use prost::Message;
use tokio::sync::broadcast;

const RETRY: Duration = Duration::from_secs(1);

/// Whether events flow, and which connection of the consumer they come
/// through.
#[derive(Clone, Default)]
pub(crate) struct Feed(Arc<(AtomicBool, AtomicU64)>);

impl Feed {
    /// The current connection's number while events flow, else None.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.0
            .0
            .load(Ordering::Acquire)
            .then(|| self.0.1.load(Ordering::Acquire))
    }

    fn up(&self) {
        self.0.1.fetch_add(1, Ordering::AcqRel);
        self.0.0.store(true, Ordering::Release);
    }

    fn down(&self) {
        self.0.0.store(false, Ordering::Release);
    }
}

pub(crate) async fn consume(
    amqp_url: String,
    prefix: String,
    tx: broadcast::Sender<MailboxEvent>,
    flag: HealthFlag,
    feed: Feed,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run_once(&amqp_url, &prefix, &tx, &flag, &feed) => {
                flag.set(false);
                feed.down();
                if let Err(error) = r {
                    tracing::warn!(%error, "Change event consumer stopped; reconnecting.");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn run_once(
    amqp_url: &str,
    prefix: &str,
    tx: &broadcast::Sender<MailboxEvent>,
    flag: &HealthFlag,
    feed: &Feed,
) -> Result<(), mailfleet_queue::QueueError> {
    let exchange = mailfleet_queue::names(prefix).events;
    let mut sub = mailfleet_queue::subscribe(amqp_url, prefix, &exchange, "#").await?;
    flag.set(true);
    feed.up();
    tracing::info!("Consuming mailbox change events.");
    while let Some(delivery) = sub.consumer.next().await {
        let delivery = delivery?;
        if let Ok(mut event) = MailboxEvent::decode(delivery.data.as_slice()) {
            // One publish carries a batch's changes: each goes out alone.
            // No session listening is fine.
            let more = std::mem::take(&mut event.more);
            let _ = tx.send(event);
            for e in more {
                let _ = tx.send(e);
            }
        }
    }
    Ok(())
}
