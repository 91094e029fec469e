//! Spam learning from Junk moves: when COPY or MOVE puts messages into the
//! account's `\Junk` mailbox (spam) or takes them out of it into anything but
//! `\Trash` (ham), mailstore queues a [`LearnJob`] per message on RabbitMQ's
//! durable `{prefix}.learn` queue; delivery-worker teaches rspamd from there.
//!
//! The request path never waits for the broker, let alone rspamd: jobs go on
//! a bounded channel and one background task publishes them (persistent,
//! confirmed). A full channel or a broker outage longer than the publish
//! deadline drops the job with a warning and a metric: a missed lesson costs
//! a little accuracy, never a message.

use std::time::Duration;

use mailfleet_proto::v1::LearnJob;
use mailfleet_queue::Publisher;
use mailfleet_runtime::CancellationToken;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// Jobs waiting for the broker; beyond this, new ones are dropped.
const QUEUE: usize = 4096;
/// How long one job may wait for the broker before it is dropped.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);

/// What a copy from `source` to `target` (their special-use attributes)
/// teaches: `Some(true)` spam, `Some(false)` ham, `None` nothing.
pub fn lesson(source: Option<&str>, target: Option<&str>) -> Option<bool> {
    let junk = |s: Option<&str>| s.is_some_and(|s| s.eq_ignore_ascii_case("\\Junk"));
    let trash = |s: Option<&str>| s.is_some_and(|s| s.eq_ignore_ascii_case("\\Trash"));
    match (junk(source), junk(target)) {
        (false, true) => Some(true),
        // Deleting spam (Junk to Trash) says nothing about it being ham.
        (true, false) if !trash(target) => Some(false),
        _ => None,
    }
}

/// The request side: cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct Learner {
    tx: Option<mpsc::Sender<LearnJob>>,
    /// Jobs dropped (channel full, broker unreachable).
    pub dropped: Counter,
}

impl Learner {
    /// Learning off (no rspamd controller configured, tests).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts the publishing task; it ends when `shutdown` is cancelled.
    pub fn start(
        amqp_url: &str,
        prefix: &str,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Counter::default();
        let publisher = Publisher::new(amqp_url, prefix);
        let task = tokio::spawn(publish_loop(publisher, rx, dropped.clone(), shutdown));
        (
            Self {
                tx: Some(tx),
                dropped,
            },
            task,
        )
    }

    /// Queues a lesson per blob (after the commit).
    pub fn learn(&self, account: &str, spam: bool, blob_ids: impl IntoIterator<Item = String>) {
        let Some(tx) = &self.tx else { return };
        for blob_id in blob_ids {
            let job = LearnJob {
                blob_id,
                spam,
                account: account.to_owned(),
            };
            if tx.try_send(job).is_err() {
                self.dropped.inc();
                tracing::warn!(account, "Learn queue full; dropping a spam lesson.");
            }
        }
    }
}

async fn publish_loop(
    publisher: Publisher,
    mut rx: mpsc::Receiver<LearnJob>,
    dropped: Counter,
    shutdown: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = shutdown.cancelled() => return,
            got = rx.recv() => match got { Some(job) => job, None => return },
        };
        let published = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = publisher.publish_learn(&job, PUBLISH_DEADLINE) => r,
        };
        match published {
            Ok(()) => {
                tracing::debug!(blob_id = %job.blob_id, spam = job.spam, "Spam lesson queued.")
            }
            Err(error) => {
                dropped.inc();
                tracing::warn!(%error, blob_id = %job.blob_id, "Failed to queue a spam lesson; dropping it.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lesson;

    #[test]
    fn junk_moves_teach_and_others_do_not() {
        assert_eq!(lesson(None, Some("\\Junk")), Some(true));
        assert_eq!(lesson(Some("\\Sent"), Some("\\Junk")), Some(true));
        assert_eq!(lesson(Some("\\Junk"), None), Some(false));
        assert_eq!(lesson(Some("\\Junk"), Some("\\Archive")), Some(false));
        assert_eq!(lesson(Some("\\Junk"), Some("\\Trash")), None);
        assert_eq!(lesson(Some("\\Junk"), Some("\\Junk")), None);
        assert_eq!(lesson(None, Some("\\Archive")), None);
    }
}
