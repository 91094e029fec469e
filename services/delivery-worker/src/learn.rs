//! Spam lessons: consumes the `{prefix}.learn` queue that mailstore fills
//! when users move mail into or out of Junk, reads each body from object
//! storage and posts it to rspamd's controller (`/learnspam`,
//! `/learnham`). A job is acked once rspamd answered, "already learned"
//! included; while rspamd cannot be reached the job goes back to the queue
//! after a pause, so lessons wait in the broker, not in memory.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use mailfleet_blob::BlobStore;
use mailfleet_proto::v1::LearnJob;
use mailfleet_runtime::CancellationToken;
use mailfleet_spam::Rspamd;
use mailfleet_spam::client::{Learn, Learned};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use prost::Message;

/// Lessons in flight at once (each holds one body in memory).
const PREFETCH: u16 = 4;
/// Pause before a lesson rspamd could not take goes back to the queue, and
/// before reconnecting to the broker.
const PAUSE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// `mailfleet_delivery_spam_lessons_total{result}`: learned, already (rspamd
/// knew it), skipped (body gone or too large), invalid (undecodable job),
/// failed (rspamd or storage unreachable; requeued).
#[derive(Clone, Default)]
pub struct LearnMetrics {
    pub lessons: Family<ResultLabel, Counter>,
}

impl LearnMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        for result in ["learned", "already", "skipped", "invalid", "failed"] {
            let _ = m.lessons.get_or_create(&ResultLabel { result });
        }
        registry
            .sub_registry_with_prefix("mailfleet_delivery")
            .register(
                "spam_lessons",
                "Spam/ham lessons from Junk moves, by result",
                m.lessons.clone(),
            );
        m
    }

    fn count(&self, result: &'static str) {
        self.lessons.get_or_create(&ResultLabel { result }).inc();
    }
}

pub struct Learner {
    pub amqp_url: String,
    pub prefix: String,
    pub rspamd: Rspamd,
    pub blobs: BlobStore,
    /// Larger bodies are not sent (rspamd's max_message, our memory).
    pub max_size: u64,
    pub metrics: LearnMetrics,
}

/// What to do with one delivery of the queue.
enum Verdict {
    Ack,
    Requeue,
}

impl Learner {
    /// Consumes until `shutdown`, reconnecting after broker failures.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            rspamd = self.rspamd.authority(),
            "Spam lessons go to rspamd."
        );
        loop {
            if let Err(error) = self.consume(&shutdown).await {
                tracing::warn!(%error, "Spam lesson consumer stopped; reconnecting.");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PAUSE) => {}
            }
        }
    }

    async fn consume(&self, shutdown: &CancellationToken) -> Result<(), String> {
        let conn = mailfleet_queue::connect(&self.amqp_url)
            .await
            .map_err(|e| e.to_string())?;
        let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
        mailfleet_queue::declare_topology(&channel, &self.prefix)
            .await
            .map_err(|e| e.to_string())?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let queue = mailfleet_queue::names(&self.prefix).learn;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "shutting down".into()).await;
                    return Ok(());
                }
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the consumer was cancelled".into()),
                },
            };
            let tag = delivery.delivery_tag;
            match self.lesson(&delivery.data).await {
                Verdict::Ack => channel
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| e.to_string())?,
                Verdict::Requeue => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(PAUSE) => {}
                    }
                    channel
                        .basic_nack(
                            tag,
                            BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }

    async fn lesson(&self, payload: &[u8]) -> Verdict {
        let Ok(job) = LearnJob::decode(payload) else {
            self.metrics.count("invalid");
            tracing::warn!("Dropping an undecodable spam lesson.");
            return Verdict::Ack;
        };
        match self.blobs.size(&job.blob_id).await {
            Ok(Some(size)) if size <= self.max_size => {}
            Ok(_) => {
                self.metrics.count("skipped");
                tracing::info!(blob_id = %job.blob_id, "Spam lesson skipped: body gone or over MAILFLEET_SPAM_MAX_SIZE.");
                return Verdict::Ack;
            }
            Err(error) => {
                self.metrics.count("failed");
                tracing::warn!(%error, blob_id = %job.blob_id, "Cannot read a body for a spam lesson.");
                return Verdict::Requeue;
            }
        }
        let body = match self.blobs.get(&job.blob_id).await {
            Ok(body) => body,
            Err(error) if error.is_not_found() => {
                self.metrics.count("skipped");
                return Verdict::Ack;
            }
            Err(error) => {
                self.metrics.count("failed");
                tracing::warn!(%error, blob_id = %job.blob_id, "Cannot read a body for a spam lesson.");
                return Verdict::Requeue;
            }
        };
        let kind = if job.spam { Learn::Spam } else { Learn::Ham };
        match self.rspamd.learn(kind, body).await {
            Ok(learned) => {
                self.metrics.count(match learned {
                    Learned::Now => "learned",
                    Learned::Already => "already",
                    Learned::Nothing => "skipped",
                });
                tracing::info!(blob_id = %job.blob_id, spam = job.spam, account = %job.account, ?learned, "rspamd learned from a Junk move.");
                Verdict::Ack
            }
            Err(error) => {
                self.metrics.count("failed");
                tracing::warn!(%error, blob_id = %job.blob_id, "rspamd did not take a spam lesson; requeueing it.");
                Verdict::Requeue
            }
        }
    }
}
