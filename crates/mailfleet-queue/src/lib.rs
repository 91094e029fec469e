//! RabbitMQ plumbing for delivery jobs.
//!
//! - [`declare_topology`]: the one place that declares exchanges and queues,
//!   so every service declares them with identical arguments.
//! - [`Publisher`]: smtp-gateway's side of the durability contract: a job is
//!   published as a persistent message and only counts as queued once the
//!   broker's publisher confirm arrives *and is an ack* for a routed message.
//!   A lost confirm is answered by publishing the same job (same id) again on a
//!   fresh connection; delivery deduplicates by job id.
//! - [`encode_job`] / [`decode_job`]: the protobuf wire form of a job.
//! - [`retry_queue`] / [`declare_retry_queue`] / [`Publisher::publish_retry`]:
//!   delayed redelivery. One durable queue per delay, with that delay as its
//!   queue TTL and the work queue as its dead-letter target, so a deferred job
//!   waits in the broker (no consumer holds it) and comes back by itself. One
//!   queue per delay rather than per-message TTLs in one queue: RabbitMQ only
//!   expires messages at the head of a queue, so a 4 h job would hold back a
//!   1 min job queued behind it.
//! - [`Publisher::publish_learn`]: spam/ham learning jobs (mailstore, when a
//!   user moves mail into or out of Junk) on the durable `{prefix}.learn`
//!   queue that delivery-worker drains into rspamd.
//!
//! Consuming lives in delivery-worker; this crate holds no mail logic.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lapin::Confirmation;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use mailfleet_proto::v1::{DeliveryJob, LearnJob};
use prost::Message;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach RabbitMQ: {0}")]
    Connect(String),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the broker could not route the message to the queue")]
    Unroutable,
    #[error("no publisher confirm within the deadline (last error: {0})")]
    Timeout(String),
    #[error("undecodable job: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl QueueError {
    /// Whether trying again (on a fresh connection) may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, QueueError::Decode(_))
    }
}

/// Names of the exchanges and queues under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Durable work queue of delivery jobs.
    pub work: String,
    /// Jobs that could not be decoded end up here for an operator.
    pub dead: String,
    /// Topic exchange of mailbox change events.
    pub events: String,
    /// Fanout exchange of directory (domain, account, alias) change events.
    pub directory: String,
    /// Durable queue of spam/ham learning jobs (Junk moves) for rspamd.
    pub learn: String,
}

pub fn names(prefix: &str) -> Names {
    Names {
        work: format!("{prefix}.delivery"),
        dead: format!("{prefix}.delivery.dead"),
        events: format!("{prefix}.events"),
        directory: format!("{prefix}.directory"),
        learn: format!("{prefix}.learn"),
    }
}

/// The retry queue for one delay: `{prefix}.delivery.retry.{ms}ms`. A new
/// schedule makes new queues, so no declared queue ever changes arguments.
pub fn retry_queue(prefix: &str, delay: Duration) -> String {
    format!("{prefix}.delivery.retry.{}ms", delay_ms(delay))
}

fn delay_ms(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Declares the retry queue for `delay` (idempotent): messages wait `delay`
/// and are then dead-lettered to the work queue.
pub async fn declare_retry_queue(
    channel: &Channel,
    prefix: &str,
    delay: Duration,
) -> Result<String, QueueError> {
    let name = retry_queue(prefix, delay);
    let mut args = FieldTable::default();
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(delay_ms(delay)).unwrap_or(i64::MAX)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(names(prefix).work.as_str().into()),
    );
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    Ok(name)
}

/// Connects with a bounded wait, naming the broker in the error.
pub async fn connect(amqp_url: &str) -> Result<Connection, QueueError> {
    let props = ConnectionProperties::default().with_connection_name("mailfleet".into());
    match tokio::time::timeout(Duration::from_secs(5), Connection::connect(amqp_url, props)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(QueueError::Connect(format!("{}: {e}", redact(amqp_url)))),
        Err(_) => Err(QueueError::Connect(format!(
            "{}: timed out after 5s",
            redact(amqp_url)
        ))),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Declares every exchange and queue. Idempotent; call it on each new channel.
pub async fn declare_topology(channel: &Channel, prefix: &str) -> Result<(), QueueError> {
    let n = names(prefix);
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(n.dead.as_str().into(), durable, FieldTable::default())
        .await?;
    let mut args = FieldTable::default();
    // A job rejected without requeue (it cannot be decoded) goes to the dead queue.
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(n.dead.as_str().into()),
    );
    channel
        .queue_declare(n.work.as_str().into(), durable, args)
        .await?;
    channel
        .queue_declare(n.learn.as_str().into(), durable, FieldTable::default())
        .await?;
    channel
        .exchange_declare(
            n.events.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            n.directory.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// A live subscription to an exchange: the connection it needs and the
/// consumer of its private queue. Dropping it ends the subscription.
pub struct Subscription {
    _conn: Connection,
    pub consumer: Consumer,
}

/// Subscribes to `exchange` (with `routing_key`) through a queue of this
/// process's own, exclusive and auto-deleted, consumed without acks: the
/// shape of every change feed here (mailbox and directory events), where a
/// missed message only delays what the subscriber would learn anyway.
/// Once this returns, every message published to the exchange reaches the
/// consumer.
pub async fn subscribe(
    amqp_url: &str,
    prefix: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<Subscription, QueueError> {
    let conn = connect(amqp_url).await?;
    let channel = conn.create_channel().await?;
    declare_topology(&channel, prefix).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().as_str().into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumer = channel
        .basic_consume(
            queue.name().as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(Subscription {
        _conn: conn,
        consumer,
    })
}

pub fn encode_job(job: &DeliveryJob) -> Vec<u8> {
    job.encode_to_vec()
}

pub fn decode_job(bytes: &[u8]) -> Result<DeliveryJob, QueueError> {
    Ok(DeliveryJob::decode(bytes)?)
}

/// A channel in confirm mode on its own connection.
#[derive(Clone)]
struct Link {
    conn: Arc<Connection>,
    channel: Channel,
    generation: u64,
    /// Retry queues (by delay in ms) declared on this channel.
    retry_declared: Arc<std::sync::Mutex<HashSet<u64>>>,
}

struct State {
    link: Option<Link>,
    generation: u64,
}

struct Inner {
    url: String,
    prefix: String,
    work_queue: String,
    state: Mutex<State>,
}

/// Which queue a publish goes to.
#[derive(Clone, Copy)]
enum Route {
    Work,
    Retry(Duration),
    Learn,
}

/// Publishes delivery jobs with confirms; shared by all SMTP sessions (one
/// channel carries many publishes in flight). Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl Publisher {
    /// Connects lazily, at the first publish or readiness check.
    pub fn new(amqp_url: &str, prefix: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                url: amqp_url.to_owned(),
                prefix: prefix.to_owned(),
                work_queue: names(prefix).work,
                state: Mutex::new(State {
                    link: None,
                    generation: 0,
                }),
            }),
        }
    }

    /// Whether a confirm-mode channel to the broker is open (opening one if
    /// needed).
    pub async fn ready(&self) -> bool {
        self.link().await.is_ok()
    }

    /// Publishes `job` as a persistent message and waits for the broker's ack.
    /// Retries on a fresh connection until `deadline` passes; only `Ok` means
    /// the broker has stored the job.
    pub async fn publish_job(
        &self,
        job: &DeliveryJob,
        deadline: Duration,
    ) -> Result<(), QueueError> {
        self.publish(&encode_job(job), &job.job_id, Route::Work, deadline)
            .await
    }

    /// Publishes a spam/ham learning job (persistent, confirmed) on the
    /// learn queue, with the same retries as [`Publisher::publish_job`].
    pub async fn publish_learn(
        &self,
        job: &LearnJob,
        deadline: Duration,
    ) -> Result<(), QueueError> {
        self.publish(&job.encode_to_vec(), &job.blob_id, Route::Learn, deadline)
            .await
    }

    /// Publishes `job` to the retry queue for `delay` (declaring it first),
    /// with the same confirm discipline as [`Publisher::publish_job`]; the
    /// broker moves it to the work queue when the delay has passed.
    pub async fn publish_retry(
        &self,
        job: &DeliveryJob,
        delay: Duration,
        deadline: Duration,
    ) -> Result<(), QueueError> {
        self.publish(&encode_job(job), &job.job_id, Route::Retry(delay), deadline)
            .await
    }

    async fn publish(
        &self,
        payload: &[u8],
        id: &str,
        route: Route,
        deadline: Duration,
    ) -> Result<(), QueueError> {
        let until = Instant::now() + deadline;
        let mut pause = Duration::from_millis(50);
        loop {
            let remaining = until.saturating_duration_since(Instant::now());
            let error =
                match tokio::time::timeout(remaining, self.try_publish(payload, id, route)).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err((error, generation))) => {
                        if let Some(g) = generation {
                            self.invalidate(g).await;
                        }
                        error
                    }
                    Err(_) => return Err(QueueError::Timeout("no answer from the broker".into())),
                };
            tracing::warn!(%error, job_id = %id, "Failed to publish a job; retrying.");
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining < pause {
                return Err(QueueError::Timeout(error.to_string()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    async fn try_publish(
        &self,
        payload: &[u8],
        job_id: &str,
        route: Route,
    ) -> Result<(), (QueueError, Option<u64>)> {
        let link = self.link().await.map_err(|e| (e, None))?;
        let g = Some(link.generation);
        let queue = match route {
            Route::Work => self.inner.work_queue.clone(),
            Route::Learn => names(&self.inner.prefix).learn,
            Route::Retry(delay) => {
                let ms = delay_ms(delay);
                let known = link
                    .retry_declared
                    .lock()
                    .map(|set| set.contains(&ms))
                    .unwrap_or(false);
                if known {
                    retry_queue(&self.inner.prefix, delay)
                } else {
                    let name = declare_retry_queue(&link.channel, &self.inner.prefix, delay)
                        .await
                        .map_err(|e| (e, g))?;
                    if let Ok(mut set) = link.retry_declared.lock() {
                        set.insert(ms);
                    }
                    name
                }
            }
        };
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/x-protobuf".into())
            .with_message_id(job_id.into());
        // W3C trace context of the publishing span: the consumer continues
        // the message's trace (see `trace_headers`).
        let trace = mailfleet_runtime::trace_context::current_headers();
        if !trace.is_empty() {
            let mut headers = FieldTable::default();
            for (k, v) in trace {
                headers.insert(k.into(), AMQPValue::LongString(v.into()));
            }
            props = props.with_headers(headers);
        }
        let confirm = link
            .channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                // mandatory: a missing queue comes back as a returned message
                // instead of a silent ack.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                props,
            )
            .await
            .map_err(|e| (e.into(), g))?;
        match confirm.await.map_err(|e| (e.into(), g))? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err((QueueError::Unroutable, g)),
            Confirmation::Nack(_) => Err((QueueError::Nacked, g)),
            // The channel is always put in confirm mode; treat anything else
            // as not stored.
            Confirmation::NotRequested => Err((QueueError::Nacked, g)),
        }
    }

    async fn link(&self) -> Result<Link, QueueError> {
        let mut state = self.inner.state.lock().await;
        if let Some(link) = &state.link
            && link.conn.status().connected()
            && link.channel.status().connected()
        {
            return Ok(link.clone());
        }
        state.link = None;
        let conn = connect(&self.inner.url).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare_topology(&channel, &self.inner.prefix).await?;
        state.generation += 1;
        let link = Link {
            conn: Arc::new(conn),
            channel,
            generation: state.generation,
            retry_declared: Arc::default(),
        };
        state.link = Some(link.clone());
        Ok(link)
    }

    /// Drops the link a failed publish used, unless another task already
    /// replaced it.
    async fn invalidate(&self, generation: u64) {
        let mut state = self.inner.state.lock().await;
        if state.link.as_ref().map(|l| l.generation) == Some(generation)
            && let Some(old) = state.link.take()
        {
            tokio::spawn(async move {
                let _ = old.conn.close(320, "reconnecting".into()).await;
            });
        }
    }
}

/// The W3C trace context headers of a received message, for
/// `mailfleet_runtime::trace_context::set_parent_from` on the consumer's span.
pub fn trace_headers(props: &BasicProperties) -> Vec<(String, String)> {
    let Some(headers) = props.headers() else {
        return Vec::new();
    };
    headers
        .inner()
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok()?,
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                _ => return None,
            };
            Some((k.as_str().to_owned(), v))
        })
        .filter(|(k, _)| {
            k == mailfleet_runtime::trace_context::TRACEPARENT
                || k == mailfleet_runtime::trace_context::TRACESTATE
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn trace_headers_reads_only_trace_context() {
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        headers.insert("x-other".into(), AMQPValue::LongString("x".into()));
        let props = BasicProperties::default().with_headers(headers);
        assert_eq!(
            trace_headers(&props),
            vec![(
                "traceparent".to_owned(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()
            )]
        );
        assert!(trace_headers(&BasicProperties::default()).is_empty());
    }

    #[test]
    fn names_share_the_prefix() {
        let n = names("t1");
        assert_eq!(n.work, "t1.delivery");
        assert_eq!(n.dead, "t1.delivery.dead");
        assert_eq!(n.events, "t1.events");
        assert_eq!(
            retry_queue("t1", Duration::from_secs(60)),
            "t1.delivery.retry.60000ms"
        );
    }

    #[test]
    fn job_round_trips_and_garbage_is_an_error() {
        let job = DeliveryJob {
            job_id: "j1".into(),
            return_path: "a@b".into(),
            blob_id: "00".repeat(32),
            blob_size: 10,
            ..DeliveryJob::default()
        };
        assert_eq!(decode_job(&encode_job(&job)).unwrap(), job);
        assert!(decode_job(b"\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://host"), "amqp://host");
    }
}
