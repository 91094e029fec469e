//! Test helpers: a RabbitMQ vhost of its own per test, an in-memory mailstore
//! behind the worker's `Store` trait, and the consumer started in-process.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use delivery_worker::batch::BatchContext;
use delivery_worker::consumer::{ConsumerSettings, supervise};
use delivery_worker::metrics::{Metrics, OutcomeLabels};
use delivery_worker::store::Store;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use mailfleet_proto::v1::{
    Delivery, DeliveryJob, DeliveryResult, DeliveryStatus, JobRecipient, RecipientStatus,
};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::http::{Health, HealthFlag};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tonic::Status;

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn rabbitmqctl(args: &[&str]) {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A RabbitMQ vhost for one test, deleted on drop.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub async fn new() -> Self {
        let name = unique("mf-dw");
        rabbitmqctl(&["add_vhost", &name]).await;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]).await;
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// Drops every client connection of the vhost, as a broker restart would.
    pub async fn close_connections(&self) {
        rabbitmqctl(&[
            "close_all_connections",
            "-p",
            &self.name,
            "fault injected by a test",
        ])
        .await;
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

#[derive(Default)]
struct MemInner {
    /// Idempotency key -> recipient, for every stored copy.
    stored: HashMap<String, String>,
    duplicates: u64,
    calls: u64,
    down: bool,
    /// Keys that answer TEMPORARY_FAILURE once.
    fail_once: HashSet<String>,
}

/// mailstore in memory: every `@local.test` address but `nobody@` exists.
#[derive(Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<MemInner>>,
    delay: Duration,
    /// While true, every Deliver call waits (see [`MemStore::held`]).
    held: Arc<tokio::sync::watch::Sender<bool>>,
}

impl MemStore {
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// A store whose Deliver calls do not return until [`MemStore::release`]:
    /// a test sees what the worker does while batches are stuck in it,
    /// ordered by the release instead of by a delay.
    pub fn held() -> Self {
        let store = Self::default();
        store.held.send_replace(true);
        store
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    pub fn fail_once(&self, key: &str) {
        self.inner.lock().unwrap().fail_once.insert(key.to_owned());
    }

    pub fn stored_keys(&self) -> HashSet<String> {
        self.inner.lock().unwrap().stored.keys().cloned().collect()
    }

    pub fn stored_count(&self) -> usize {
        self.inner.lock().unwrap().stored.len()
    }

    pub fn duplicates(&self) -> u64 {
        self.inner.lock().unwrap().duplicates
    }

    pub fn calls(&self) -> u64 {
        self.inner.lock().unwrap().calls
    }
}

impl Store for MemStore {
    async fn deliver(&self, deliveries: Vec<Delivery>) -> Result<Vec<DeliveryResult>, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let _ = self.held.subscribe().wait_for(|held| !*held).await;
        let mut inner = self.inner.lock().unwrap();
        inner.calls += 1;
        if inner.down {
            return Err(Status::unavailable("mailstore is down (test)"));
        }
        let mut results = Vec::new();
        for d in deliveries {
            let status =
                if !d.recipient.ends_with("@local.test") || d.recipient.starts_with("nobody@") {
                    DeliveryStatus::DeliveryUnknownRecipient
                } else if inner.fail_once.remove(&d.idempotency_key) {
                    DeliveryStatus::DeliveryTemporaryFailure
                } else if inner.stored.contains_key(&d.idempotency_key) {
                    inner.duplicates += 1;
                    DeliveryStatus::DeliveryDuplicate
                } else {
                    inner
                        .stored
                        .insert(d.idempotency_key.clone(), d.recipient.clone());
                    DeliveryStatus::DeliveryStored
                };
            results.push(DeliveryResult {
                idempotency_key: d.idempotency_key,
                status: status as i32,
                detail: String::new(),
                outbound: Vec::new(),
            });
        }
        Ok(results)
    }

    async fn resolve(&self, address: &str) -> Result<RecipientStatus, Status> {
        Ok(if address.ends_with("@local.test") {
            RecipientStatus::RecipientUnknownUser
        } else {
            RecipientStatus::RecipientNotLocal
        })
    }
}

/// The consumer running in-process against a [`MemStore`].
pub struct Worker {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<()>,
    pub consuming: HealthFlag,
    pub metrics: Metrics,
    pub store: MemStore,
}

pub struct WorkerOptions {
    pub batch_size: usize,
    pub prefetch: u16,
    pub grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            prefetch: 64,
            grace: Duration::from_secs(10),
        }
    }
}

/// Logs to stderr when `MAILFLEET_TEST_LOG` is set (e.g. to `debug`).
pub fn init_logs() {
    if let Ok(log) = std::env::var("MAILFLEET_TEST_LOG") {
        let config = mailfleet_runtime::Config::load([("MAILFLEET_LOG".to_owned(), log)]).unwrap();
        mailfleet_runtime::telemetry::init(&config);
    }
}

pub async fn start_worker(url: &str, prefix: &str, store: MemStore, opts: WorkerOptions) -> Worker {
    init_logs();
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new(&mut Registry::default());
    let health = Health::new();
    let consuming = health.register("consuming");
    let settings = ConsumerSettings {
        amqp_url: url.to_owned(),
        queue_prefix: prefix.to_owned(),
        prefetch: opts.prefetch,
        batch_size: opts.batch_size,
        batch_wait: Duration::from_millis(5),
        shutdown_grace: opts.grace,
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
    };
    let ctx = BatchContext {
        store: store.clone(),
        metrics: metrics.clone(),
        mailstore_ok: health.register("mailstore"),
        shutdown: shutdown.clone(),
        max_deliveries_per_call: opts.batch_size,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        finisher: None,
    };
    let first = mailfleet_queue::connect(url).await.expect("RabbitMQ is up");
    let handle = tokio::spawn(supervise(
        settings,
        ctx,
        consuming.clone(),
        first,
        shutdown.clone(),
    ));
    let worker = Worker {
        shutdown,
        handle,
        consuming,
        metrics,
        store,
    };
    let flag = worker.consuming.clone();
    wait_until("the worker consumes", Duration::from_secs(10), || {
        flag.get()
    })
    .await;
    worker
}

impl Worker {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the worker stops within its grace period")
            .unwrap();
    }

    pub fn jobs(&self, outcome: &'static str) -> u64 {
        self.metrics
            .jobs
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }
}

/// Polls `cond` until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn job(id: &str, recipients: &[&str]) -> DeliveryJob {
    DeliveryJob {
        job_id: id.to_owned(),
        return_path: "sender@remote.test".into(),
        recipients: recipients
            .iter()
            .map(|a| JobRecipient {
                address: (*a).to_owned(),
                ..JobRecipient::default()
            })
            .collect(),
        blob_id: "ab".repeat(32),
        blob_size: 42,
        received_at_ms: 1_700_000_000_000,
        ..DeliveryJob::default()
    }
}

/// Publishes jobs through the confirmed publisher, a few at a time.
pub async fn publish_all(publisher: &mailfleet_queue::Publisher, jobs: &[DeliveryJob]) {
    for chunk in jobs.chunks(32) {
        let sends = chunk
            .iter()
            .map(|j| publisher.publish_job(j, Duration::from_secs(20)));
        for r in futures::future::join_all(sends).await {
            r.expect("the broker confirms the job");
        }
    }
}

/// A channel of the test's own, for raw publishes and queue inspection.
pub async fn raw_channel(url: &str, prefix: &str) -> (Connection, Channel) {
    let conn = mailfleet_queue::connect(url).await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    mailfleet_queue::declare_topology(&channel, prefix)
        .await
        .unwrap();
    (conn, channel)
}

pub async fn publish_raw(channel: &Channel, queue: &str, payload: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

pub async fn message_count(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}
