//! delivery-worker against a real RabbitMQ (a vhost per test). mailstore is
//! replaced by an in-memory `Store` here, so these tests isolate the
//! consuming side: batching, acking, dead-lettering, re-subscribing and
//! reconnecting. `end_to_end_*` tests run the real mailstore.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use delivery_worker::batch::idempotency_key;
use lapin::options::QueueDeleteOptions;
use mailfleet_queue::{Publisher, names};
use support::*;

fn expected_keys(jobs: &[mailfleet_proto::v1::DeliveryJob]) -> HashSet<String> {
    jobs.iter()
        .flat_map(|j| {
            j.recipients
                .iter()
                .filter(|r| r.address.ends_with("@local.test") && !r.address.starts_with("nobody@"))
                .map(move |r| idempotency_key(&j.job_id, &r.address))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_delivered_once_and_a_republished_job_stores_nothing_new() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    let worker = start_worker(
        &vhost.url(),
        &prefix,
        MemStore::default(),
        WorkerOptions::default(),
    )
    .await;
    let publisher = Publisher::new(&vhost.url(), &prefix);

    let jobs: Vec<_> = (0..300)
        .map(|i| job(&format!("job-{i}"), &["alice@local.test", "bob@local.test"]))
        .collect();
    publish_all(&publisher, &jobs).await;
    // The same job again, as the gateway does after a lost confirm.
    publish_all(&publisher, &jobs[..1]).await;

    wait_until("every job is acked", Duration::from_secs(30), || {
        worker.jobs("acked") == 301
    })
    .await;
    assert_eq!(worker.store.stored_keys(), expected_keys(&jobs));
    assert_eq!(
        worker.store.duplicates(),
        2,
        "the republished job's two copies"
    );
    assert!(
        worker.store.calls() < 300,
        "jobs are batched ({} calls for 301 jobs)",
        worker.store.calls()
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_invalid_jobs_are_dead_lettered_and_the_rest_flows() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    let n = names(&prefix);
    let worker = start_worker(
        &vhost.url(),
        &prefix,
        MemStore::default(),
        WorkerOptions::default(),
    )
    .await;
    let (_conn, channel) = raw_channel(&vhost.url(), &prefix).await;

    publish_raw(&channel, &n.work, b"\xff\xff\xff\xff not a protobuf").await;
    let no_blob = mailfleet_proto::v1::DeliveryJob {
        job_id: "no-blob".into(),
        ..Default::default()
    };
    publish_raw(&channel, &n.work, &mailfleet_queue::encode_job(&no_blob)).await;
    let good = job("good", &["alice@local.test"]);
    publish_raw(&channel, &n.work, &mailfleet_queue::encode_job(&good)).await;

    wait_until("the good job is stored", Duration::from_secs(10), || {
        worker.store.stored_count() == 1
    })
    .await;
    let mut dead = 0;
    for _ in 0..250 {
        dead = message_count(&channel, &n.dead).await;
        if dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead, 2, "both bad jobs are in the dead-letter queue");
    assert_eq!(worker.jobs("dead_lettered"), 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_consumer_subscribes_again() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    let n = names(&prefix);
    let worker = start_worker(
        &vhost.url(),
        &prefix,
        MemStore::default(),
        WorkerOptions::default(),
    )
    .await;
    let (_conn, channel) = raw_channel(&vhost.url(), &prefix).await;

    // Deleting the queue makes the broker send basic.cancel to the consumer.
    channel
        .queue_delete(n.work.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    wait_until(
        "the worker notices the cancel",
        Duration::from_secs(10),
        || worker.metrics.consumer_restarts.get() >= 1,
    )
    .await;
    wait_until("the worker consumes again", Duration::from_secs(10), || {
        worker.consuming.get()
    })
    .await;

    // The publisher publishes with `mandatory` and retries until the queue
    // is back, so nothing here depends on who re-declares it first.
    let publisher = Publisher::new(&vhost.url(), &prefix);
    let jobs: Vec<_> = (0..20)
        .map(|i| job(&format!("after-{i}"), &["alice@local.test"]))
        .collect();
    publish_all(&publisher, &jobs).await;
    wait_until("the later jobs are stored", Duration::from_secs(20), || {
        worker.store.stored_count() == 20
    })
    .await;
    assert_eq!(worker.store.stored_keys(), expected_keys(&jobs));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_mid_stream_lose_and_double_nothing() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    // A slow mailstore keeps batches in flight when the connection drops.
    let store = MemStore::with_delay(Duration::from_millis(15));
    let worker = start_worker(&vhost.url(), &prefix, store, WorkerOptions::default()).await;
    let publisher = Publisher::new(&vhost.url(), &prefix);

    let jobs: Vec<_> = (0..600)
        .map(|i| {
            job(
                &format!("job-{i}"),
                &["alice@local.test", "carol@local.test"],
            )
        })
        .collect();
    publish_all(&publisher, &jobs[..300]).await;
    wait_until("delivery is under way", Duration::from_secs(20), || {
        worker.store.stored_count() >= 100
    })
    .await;
    vhost.close_connections().await;
    publish_all(&publisher, &jobs[300..]).await;
    wait_until(
        "the worker notices the fault",
        Duration::from_secs(20),
        || worker.metrics.consumer_restarts.get() >= 1,
    )
    .await;
    vhost.close_connections().await;

    let want = expected_keys(&jobs);
    wait_until("every copy is stored", Duration::from_secs(60), || {
        worker.store.stored_count() == want.len()
    })
    .await;
    assert_eq!(worker.store.stored_keys(), want);
    let (_conn, channel) = raw_channel(&vhost.url(), &prefix).await;
    wait_until("the consumer is back", Duration::from_secs(10), || {
        worker.consuming.get()
    })
    .await;
    let mut left = u32::MAX;
    for _ in 0..250 {
        left = message_count(&channel, &names(&prefix).work).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "no job is left in the queue");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_noticed_while_batches_are_stuck_in_mailstore() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    // Deliver calls return only when the test releases them: the loss must
    // be noticed while they are stuck, whatever the timing.
    let store = MemStore::held();
    let opts = WorkerOptions {
        batch_size: 4,
        // Two batches in flight and a full one waiting: the consumer stream
        // is not polled, only the connection's events tell of the loss.
        prefetch: 12,
        grace: Duration::from_secs(10),
    };
    let worker = start_worker(&vhost.url(), &prefix, store.clone(), opts).await;
    let publisher = Publisher::new(&vhost.url(), &prefix);
    let jobs: Vec<_> = (0..20)
        .map(|i| job(&format!("job-{i}"), &["alice@local.test"]))
        .collect();
    publish_all(&publisher, &jobs).await;
    wait_until(
        "the prefetch window is full",
        Duration::from_secs(10),
        || worker.metrics.jobs_consumed.get() >= 12,
    )
    .await;
    vhost.close_connections().await;
    // The deadline only fails a hang: no Deliver call has returned, so the
    // restart cannot have waited for one.
    wait_until(
        "the lost connection is noticed",
        Duration::from_secs(30),
        || worker.metrics.consumer_restarts.get() >= 1,
    )
    .await;
    assert_eq!(
        store.stored_count(),
        0,
        "noticed while every batch is still stuck in mailstore"
    );
    store.release();
    wait_until("every job is stored", Duration::from_secs(60), || {
        store.stored_count() == 20
    })
    .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_while_mailstore_is_down_and_temporary_failures_are_retried() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    let store = MemStore::default();
    store.set_down(true);
    store.fail_once(&idempotency_key("flaky", "alice@local.test"));
    let worker = start_worker(
        &vhost.url(),
        &prefix,
        store.clone(),
        WorkerOptions::default(),
    )
    .await;
    let publisher = Publisher::new(&vhost.url(), &prefix);

    let mut jobs: Vec<_> = (0..50)
        .map(|i| job(&format!("job-{i}"), &["alice@local.test"]))
        .collect();
    jobs.push(job("flaky", &["alice@local.test", "bob@local.test"]));
    jobs.push(job("mixed", &["alice@local.test", "nobody@local.test"]));
    publish_all(&publisher, &jobs).await;

    wait_until("the worker retries", Duration::from_secs(10), || {
        worker.metrics.deliver_errors.get() >= 3
    })
    .await;
    assert_eq!(store.stored_count(), 0);
    assert_eq!(
        worker.jobs("acked"),
        0,
        "nothing is acked while mailstore is down"
    );
    store.set_down(false);

    wait_until("every job is acked", Duration::from_secs(30), || {
        worker.jobs("acked") == 52
    })
    .await;
    assert_eq!(store.stored_keys(), expected_keys(&jobs));
    assert_eq!(worker.jobs("requeued"), 1, "the flaky job went back once");
    let failed = |reason| {
        worker
            .metrics
            .failures
            .get_or_create(&delivery_worker::metrics::ReasonLabels { reason })
            .get()
    };
    assert_eq!(failed("unknown_user"), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_batches_in_flight_and_leaves_the_rest_queued() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    let store = MemStore::with_delay(Duration::from_millis(100));
    let opts = WorkerOptions {
        batch_size: 10,
        prefetch: 20,
        grace: Duration::from_secs(10),
    };
    let worker = start_worker(&vhost.url(), &prefix, store.clone(), opts).await;
    let publisher = Publisher::new(&vhost.url(), &prefix);
    let jobs: Vec<_> = (0..200)
        .map(|i| job(&format!("job-{i}"), &["alice@local.test"]))
        .collect();
    publish_all(&publisher, &jobs).await;
    wait_until("delivery is under way", Duration::from_secs(10), || {
        store.calls() >= 2
    })
    .await;

    let metrics = worker.metrics.clone();
    worker.stop().await;
    let acked = metrics
        .jobs
        .get_or_create(&delivery_worker::metrics::OutcomeLabels { outcome: "acked" })
        .get();
    // Every stored copy belongs to an acked job: nothing in flight was dropped.
    assert_eq!(acked as usize, store.stored_count());
    assert!(acked < 200, "the worker stopped consuming ({acked} acked)");

    let (_conn, channel) = raw_channel(&vhost.url(), &prefix).await;
    let left = message_count(&channel, &names(&prefix).work).await;
    assert_eq!(
        left as u64 + acked,
        200,
        "unfinished jobs are back in the queue"
    );
}

/// `GET path` on the worker's HTTP port: (status code, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn config(pairs: &[(&str, String)]) -> mailfleet_runtime::Config {
    mailfleet_runtime::Config::load(
        pairs
            .iter()
            .map(|(k, v)| (format!("MAILFLEET_{k}"), v.clone())),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_fails_with_one_sentence_when_rabbitmq_is_missing() {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = config(&[(
        "AMQP_URL",
        format!("amqp://guest:secret@127.0.0.1:{port}/%2f"),
    )]);
    let err = delivery_worker::run(cfg, delivery_worker::Listeners { http }, Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach RabbitMQ"), "{err}");
    assert!(!err.contains("secret"), "the password is not shown: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_consumer_and_mailstore() {
    init_logs();
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mailstore = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cfg = config(&[
        ("AMQP_URL", vhost.url()),
        ("QUEUE_PREFIX", prefix.clone()),
        ("MAILSTORE_URL", mailstore),
        ("SHUTDOWN_GRACE", "2s".into()),
    ]);
    let shutdown = mailfleet_runtime::CancellationToken::new();
    let task = tokio::spawn(delivery_worker::run(
        cfg,
        delivery_worker::Listeners { http },
        shutdown.clone(),
    ));

    // Subscribed, but mailstore does not answer.
    let mut last = (0, String::new());
    for _ in 0..250 {
        last = http_get(addr, "/readyz").await;
        if last.0 == 503 && last.1.contains("mailstore") && !last.1.contains("consuming") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last.0, 503, "{last:?}");
    assert!(
        last.1.contains("mailstore") && !last.1.contains("consuming"),
        "{last:?}"
    );

    // The broker cancels the consumer: readiness drops until it is back.
    let (_conn, channel) = raw_channel(&vhost.url(), &prefix).await;
    channel
        .queue_delete(
            names(&prefix).work.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let mut restarted = false;
    for _ in 0..250 {
        let (_, metrics) = http_get(addr, "/metrics").await;
        if metrics.contains("mailfleet_delivery_consumer_restarts_total 1") {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted, "the restart is counted");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("mailfleet_delivery_jobs_consumed_total"),
        "{metrics}"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Consumer throughput with an instant mailstore: `cargo test --release -p
/// delivery-worker --test worker -- --ignored throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn throughput() {
    let vhost = Vhost::new().await;
    let prefix = unique("t");
    let publisher = Publisher::new(&vhost.url(), &prefix);
    let jobs: Vec<_> = (0..10_000)
        .map(|i| job(&format!("job-{i}"), &["alice@local.test"]))
        .collect();
    publish_all(&publisher, &jobs).await;
    let opts = WorkerOptions {
        batch_size: 128,
        prefetch: 256,
        grace: Duration::from_secs(10),
    };
    let started = std::time::Instant::now();
    let worker = start_worker(
        &vhost.url(),
        &prefix,
        MemStore::with_delay(Duration::from_millis(5)),
        opts,
    )
    .await;
    wait_until("every job is acked", Duration::from_secs(120), || {
        worker.jobs("acked") == 10_000
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "10000 jobs in {secs:.2}s = {:.0} jobs/s, {} Deliver calls",
        10_000.0 / secs,
        worker.store.calls()
    );
    worker.stop().await;
}

// ---- end to end with the real mailstore -------------------------------------

/// A Postgres database for one test, dropped on drop.
struct Database {
    name: String,
}

impl Database {
    async fn new() -> Self {
        let name = unique("mf_dw").replace('-', "_");
        let out = tokio::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// mailstore and the worker running in-process against fresh dependencies.
struct Stack {
    vhost: Vhost,
    _db: Database,
    _blobs: tempfile::TempDir,
    prefix: String,
    config: mailfleet_runtime::Config,
    worker_http: std::net::SocketAddr,
    shutdown: mailfleet_runtime::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

const SERVICE_TOKEN: &str = "service-token-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";

async fn wait_ready(addr: std::net::SocketAddr, what: &str) {
    for _ in 0..1500 {
        if let Ok(Ok((200, _))) = tokio::time::timeout(Duration::from_secs(1), async {
            Ok::<_, ()>(http_get(addr, "/readyz").await)
        })
        .await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} never became ready");
}

impl Stack {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A stack with extra settings (`RELAY_ROUTES`, ...).
    async fn start_with(extra: &[(&str, String)]) -> Self {
        init_logs();
        let vhost = Vhost::new().await;
        let db = Database::new().await;
        let blobs = tempfile::tempdir().unwrap();
        let prefix = unique("t");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store_http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store_http_addr = store_http.local_addr().unwrap();
        let worker_http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let worker_http_addr = worker_http.local_addr().unwrap();
        let mut pairs: Vec<(&str, String)> = vec![
            ("AMQP_URL", vhost.url()),
            ("QUEUE_PREFIX", prefix.clone()),
            ("DATABASE_URL", db.url()),
            ("DATABASE_MAX_CONNECTIONS", "4".into()),
            ("BLOB_URL", format!("file://{}", blobs.path().display())),
            (
                "MAILSTORE_URL",
                format!("http://{}", grpc.local_addr().unwrap()),
            ),
            ("SERVICE_TOKEN", SERVICE_TOKEN.into()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("SHUTDOWN_GRACE", "5s".into()),
            ("ARGON2_MEMORY_KIB", "256".into()),
            ("ARGON2_ITERATIONS", "1".into()),
            // Remote recipients go to a closed port: deferred, never bounced.
            ("RELAY_ROUTES", "*=127.0.0.1:1".into()),
            ("RETRY_SCHEDULE", "1h".into()),
        ];
        // Later entries win: the extra settings override the defaults.
        pairs.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let config = config(&pairs);
        let shutdown = mailfleet_runtime::CancellationToken::new();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(mailstore::run(
            config.clone(),
            mailstore::Listeners {
                grpc,
                http: store_http,
            },
            shutdown.clone(),
        )));
        wait_ready(store_http_addr, "mailstore").await;
        tasks.push(tokio::spawn(delivery_worker::run(
            config.clone(),
            delivery_worker::Listeners { http: worker_http },
            shutdown.clone(),
        )));
        wait_ready(worker_http_addr, "delivery-worker").await;

        let mut admin =
            mailfleet_runtime::grpc::admin_client(&config.mailstore_url, ADMIN_TOKEN).unwrap();
        admin
            .add_domain(mailfleet_proto::v1::AddDomainRequest {
                name: "example.test".into(),
            })
            .await
            .unwrap();
        admin
            .add_account(mailfleet_proto::v1::AddAccountRequest {
                address: "alice@example.test".into(),
                password: "pw-alice-1234".into(),
                quota_bytes: 0,
                quota_messages: 0,
            })
            .await
            .unwrap();
        Self {
            vhost,
            _db: db,
            _blobs: blobs,
            prefix,
            config,
            worker_http: worker_http_addr,
            shutdown,
            tasks,
        }
    }

    /// Stores a distinct body per job; returns jobs for `recipients`.
    async fn jobs(
        &self,
        n: usize,
        tag: &str,
        recipients: &[&str],
    ) -> Vec<mailfleet_proto::v1::DeliveryJob> {
        let blobs = mailfleet_blob::BlobStore::from_config(&self.config).unwrap();
        let mut jobs = Vec::new();
        for i in 0..n {
            let mut body = format!(
                "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {tag} {i}\r\nMessage-ID: <{tag}-{i}@remote.test>\r\n\r\nHello {i}.\r\n"
            );
            if tag.starts_with("relay-bench") {
                // 4 KiB messages for the relay benchmark.
                while body.len() < 4096 {
                    body.push_str(
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n",
                    );
                }
            }
            let mut w = blobs.writer();
            w.write(body.as_bytes()).await.unwrap();
            let blob = w.finish().await.unwrap();
            let mut j = job(&format!("{tag}-{i}"), recipients);
            j.blob_id = blob.id;
            j.blob_size = blob.size;
            // Received now: the delivery lifetime counts from here.
            j.received_at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            jobs.push(j);
        }
        jobs
    }

    /// (count, distinct blob ids) of alice's INBOX.
    async fn inbox(&self) -> (usize, HashSet<String>) {
        let mut client =
            mailfleet_runtime::grpc::mailstore_client(&self.config.mailstore_url, SERVICE_TOKEN)
                .unwrap();
        let mut count = 0;
        let mut blobs = HashSet::new();
        let mut from = 1;
        loop {
            let page = client
                .list_messages(mailfleet_proto::v1::ListMessagesRequest {
                    account: "alice@example.test".into(),
                    mailbox: String::new(),
                    uid_from: from,
                    limit: 0,
                })
                .await
                .unwrap()
                .into_inner();
            let Some(last) = page.messages.last().map(|m| m.uid) else {
                break;
            };
            count += page.messages.len();
            blobs.extend(page.messages.into_iter().map(|m| m.blob_id));
            from = last + 1;
        }
        (count, blobs)
    }

    async fn metric(&self, line_prefix: &str) -> f64 {
        let (_, text) = http_get(self.worker_http, "/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    async fn wait_inbox(&self, want: usize) -> (usize, HashSet<String>) {
        for _ in 0..3000 {
            let inbox = self.inbox().await;
            if inbox.0 >= want {
                return inbox;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the inbox never reached {want} messages ({:?})",
            self.inbox().await.0
        );
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_each_message_lands_once() {
    let stack = Stack::start().await;
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);
    let mut jobs = stack.jobs(50, "e2e", &["alice@example.test"]).await;
    let mut mixed = stack
        .jobs(
            1,
            "mixed",
            &["alice@example.test", "nobody@example.test", "x@remote.test"],
        )
        .await;
    jobs.append(&mut mixed);
    publish_all(&publisher, &jobs).await;
    // Published twice: stored once.
    publish_all(&publisher, &jobs[..3]).await;

    let want: HashSet<_> = jobs.iter().map(|j| j.blob_id.clone()).collect();
    let (_, blobs) = stack.wait_inbox(jobs.len()).await;
    assert_eq!(blobs, want);
    // Every job, the three repeats, and the DSN for nobody@ (to the remote
    // sender, so it is deferred like x@remote.test).
    let acked = jobs.len() + 3 + 1;
    for _ in 0..500 {
        if stack
            .metric("mailfleet_delivery_jobs_total{outcome=\"acked\"}")
            .await
            >= acked as f64
            && stack.metric("mailfleet_delivery_deferred_total").await >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stack
            .metric("mailfleet_delivery_jobs_total{outcome=\"acked\"}")
            .await,
        acked as f64
    );
    let (count, _) = stack.inbox().await;
    assert_eq!(count, jobs.len(), "no message is stored twice");
    assert_eq!(stack.metric("mailfleet_delivery_deferred_total").await, 2.0);
    assert_eq!(
        stack
            .metric("mailfleet_delivery_dsns_total{outcome=\"failed\"}")
            .await,
        1.0
    );
    stack.stop().await;
}

/// RFC 3461 NOTIFY and RFC 5321 6.1 null senders, against the real
/// mailstore: NOTIFY=NEVER gets no DSN for a failure, NOTIFY=SUCCESS gets a
/// "delivered" DSN for a local delivery, and a message from `<>` is never
/// bounced. What must not happen is ordered before a marker that must: the
/// failure DSN of a later job with the default NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_dsn_notify_never_success_and_null_sender() {
    const NOTIFY_SUCCESS: u32 = 1;
    const NOTIFY_NEVER: u32 = 8;
    let stack = Stack::start().await;
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);
    let alice = "alice@example.test";
    let mut never = stack.jobs(1, "never", &["nobody@example.test"]).await;
    never[0].return_path = alice.into();
    never[0].recipients[0].notify = NOTIFY_NEVER;
    let mut null = stack.jobs(1, "null", &["nobody@example.test"]).await;
    null[0].return_path = String::new();
    publish_all(&publisher, &never).await;
    publish_all(&publisher, &null).await;
    // Acked only after any DSN for them was published (and counted).
    for _ in 0..1500 {
        if stack
            .metric("mailfleet_delivery_jobs_total{outcome=\"acked\"}")
            .await
            >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut success = stack.jobs(1, "success", &[alice]).await;
    success[0].return_path = alice.into();
    success[0].recipients[0].notify = NOTIFY_SUCCESS;
    let mut marker = stack.jobs(1, "marker", &["nobody@example.test"]).await;
    marker[0].return_path = alice.into();
    publish_all(&publisher, &success).await;
    publish_all(&publisher, &marker).await;

    // The message itself, its success DSN and the marker's failure DSN.
    let (count, blob_ids) = stack.wait_inbox(3).await;
    let blobs = mailfleet_blob::BlobStore::from_config(&stack.config).unwrap();
    let mut texts = Vec::new();
    for id in &blob_ids {
        let body = blobs.get(id).await.unwrap();
        texts.push(String::from_utf8_lossy(&body).into_owned());
    }
    let dsns: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("message/delivery-status"))
        .collect();
    assert_eq!(count, 3, "{texts:#?}");
    assert_eq!(dsns.len(), 2, "{dsns:#?}");
    let delivered = dsns
        .iter()
        .find(|t| t.contains("Action: delivered"))
        .unwrap_or_else(|| panic!("no success DSN: {dsns:#?}"));
    assert!(
        delivered.contains("Final-Recipient: rfc822; alice@example.test"),
        "{delivered}"
    );
    assert!(delivered.contains("Status: 2."), "{delivered}");
    let failed = dsns
        .iter()
        .find(|t| t.contains("Action: failed"))
        .unwrap_or_else(|| panic!("no failure DSN for the marker: {dsns:#?}"));
    assert!(failed.contains("Subject: marker 0"), "{failed}");
    for t in &dsns {
        assert!(!t.contains("Subject: never 0"), "NOTIFY=NEVER bounced: {t}");
    }
    // Neither the NEVER job nor the null sender's produced a DSN anywhere
    // (one to `<>` would not reach alice's mailbox, but would be counted).
    assert_eq!(
        stack
            .metric("mailfleet_delivery_dsns_total{outcome=\"failed\"}")
            .await,
        1.0
    );
    assert_eq!(
        stack
            .metric("mailfleet_delivery_dsns_total{outcome=\"delivered\"}")
            .await,
        1.0
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_closed_connections_mid_stream_store_everything_once() {
    let stack = Stack::start().await;
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);
    let jobs = stack.jobs(400, "fault", &["alice@example.test"]).await;
    publish_all(&publisher, &jobs[..200]).await;
    stack.wait_inbox(50).await;
    stack.vhost.close_connections().await;
    publish_all(&publisher, &jobs[200..]).await;
    stack.vhost.close_connections().await;

    let want: HashSet<_> = jobs.iter().map(|j| j.blob_id.clone()).collect();
    let (_, blobs) = stack.wait_inbox(jobs.len()).await;
    assert_eq!(blobs, want);
    // Let any redelivered job settle, then count again.
    for _ in 0..500 {
        if stack
            .metric("mailfleet_delivery_jobs_total{outcome=\"acked\"}")
            .await
            >= jobs.len() as f64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (count, _) = stack.inbox().await;
    assert_eq!(count, jobs.len(), "no message is stored twice");
    assert!(
        stack
            .metric("mailfleet_delivery_consumer_restarts_total")
            .await
            >= 1.0
    );
    stack.stop().await;
}

/// End-to-end delivery rate into one mailbox: `cargo test -p delivery-worker
/// --test worker -- --ignored end_to_end_throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn end_to_end_throughput() {
    let stack = Stack::start().await;
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);
    let n = 3000;
    let jobs = stack.jobs(n, "bench", &["alice@example.test"]).await;
    let started = std::time::Instant::now();
    publish_all(&publisher, &jobs).await;
    let published = started.elapsed().as_secs_f64();
    stack.wait_inbox(n).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} jobs: published in {published:.2}s, all stored after {secs:.2}s = {:.0} messages/s end to end",
        n as f64 / secs
    );
    stack.stop().await;
}

/// A loopback SMTP peer offering STARTTLS and PIPELINING; counts
/// connections, TLS upgrades and the recipients of accepted messages.
#[derive(Default)]
struct TlsPeer {
    connections: std::sync::atomic::AtomicUsize,
    upgraded: std::sync::atomic::AtomicUsize,
    accepted: std::sync::Mutex<Vec<String>>,
}

/// Serves one connection's commands; returns the stream when the client
/// asked for STARTTLS (the caller upgrades it and serves it again).
async fn peer_session<S>(stream: S, peer: &TlsPeer, starttls: bool) -> Option<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut io = BufReader::new(stream);
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            if starttls {
                b"250-peer\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
            } else {
                b"250-peer\r\n250 PIPELINING\r\n"
            }
        } else if upper.starts_with("STARTTLS") && starttls {
            io.get_mut().write_all(b"220 go ahead\r\n").await.ok()?;
            return Some(io.into_inner());
        } else if upper.starts_with("MAIL") {
            rcpts.clear();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT") {
            rcpts.push(
                line[8..]
                    .trim()
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_owned(),
            );
            b"250 ok\r\n"
        } else if upper.starts_with("DATA") {
            io.get_mut().write_all(b"354 go\r\n").await.ok()?;
            loop {
                let mut l = String::new();
                if io.read_line(&mut l).await.ok()? == 0 {
                    return None;
                }
                if l == ".\r\n" {
                    break;
                }
            }
            peer.accepted.lock().unwrap().append(&mut rcpts);
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            io.get_mut().write_all(b"221 bye\r\n").await.ok()?;
            return None;
        } else {
            b"250 ok\r\n"
        };
        io.get_mut().write_all(reply).await.ok()?;
    }
}

async fn start_peer(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::sync::Arc<TlsPeer> {
    let peer = std::sync::Arc::new(TlsPeer::default());
    let shared = peer.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            shared
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let peer = shared.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                stream.write_all(b"220 peer ESMTP\r\n").await.ok()?;
                let plain = peer_session(stream, &peer, tls.is_some()).await?;
                let secure = tls?.accept(plain).await.ok()?;
                peer.upgraded
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                peer_session(secure, &peer, false).await;
                Some(())
            });
        }
    });
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_relay_uses_starttls_reuses_connections_and_obeys_the_operator() {
    use std::sync::atomic::Ordering::SeqCst;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) =
        mailfleet_runtime::tls::ensure_self_signed(certs.path(), &["localhost"]).unwrap();
    mailfleet_runtime::tls::install_crypto_provider();
    let tls = mailfleet_runtime::tls::Tls::load(&cert, &key).unwrap();
    let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = tls_listener.local_addr().unwrap().port();
    let peer = start_peer(tls_listener, Some(tls.acceptor())).await;
    // A port that nobody listens on yet: reserve it, then free it.
    let late_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let stack = Stack::start_with(&[
        (
            "RELAY_ROUTES",
            format!("tls.test=127.0.0.1:{tls_port},late.test=127.0.0.1:{late_port},*=127.0.0.1:1"),
        ),
        ("RELAY_MAX_CONNECTIONS_PER_HOST", "1".into()),
        ("RETRY_SCHEDULE", "1h".into()),
    ])
    .await;
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);

    // Five messages to one host: one connection, upgraded with STARTTLS.
    let jobs = stack.jobs(5, "tls", &["someone@tls.test"]).await;
    publish_all(&publisher, &jobs).await;
    for _ in 0..1500 {
        if peer.accepted.lock().unwrap().len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(peer.accepted.lock().unwrap().len(), 5);
    assert_eq!(
        peer.connections.load(SeqCst),
        1,
        "one connection carries all"
    );
    assert_eq!(peer.upgraded.load(SeqCst), 1);
    assert_eq!(
        stack
            .metric("mailfleet_delivery_relay_tls_total{tls=\"yes\"}")
            .await,
        5.0
    );

    // Two messages to a host that is down: deferred for an hour.
    let late = stack.jobs(2, "late", &["someone@late.test"]).await;
    publish_all(&publisher, &late).await;
    let mut admin =
        mailfleet_runtime::grpc::admin_client(&stack.config.mailstore_url, ADMIN_TOKEN).unwrap();
    let mut entries = Vec::new();
    for _ in 0..1500 {
        entries = admin
            .list_queue(mailfleet_proto::v1::ListQueueRequest { limit: 0 })
            .await
            .unwrap()
            .into_inner()
            .entries;
        if entries.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries.iter().all(|e| e.attempts == 1 && !e.cancelled),
        "{entries:?}"
    );

    // The queue gauges follow the index.
    for _ in 0..300 {
        if stack.metric("mailfleet_delivery_deferred_jobs ").await == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stack.metric("mailfleet_delivery_deferred_jobs ").await, 2.0);

    // The host comes up; the operator retries one job now and deletes the other.
    let late_peer = start_peer(
        tokio::net::TcpListener::bind(("127.0.0.1", late_port))
            .await
            .unwrap(),
        None,
    )
    .await;
    let (retried, deleted) = (late[0].job_id.clone(), late[1].job_id.clone());
    admin
        .retry_queue(mailfleet_proto::v1::RetryQueueRequest {
            job_id: retried.clone(),
        })
        .await
        .unwrap();
    admin
        .delete_queue(mailfleet_proto::v1::DeleteQueueRequest {
            job_id: deleted.clone(),
        })
        .await
        .unwrap();
    for _ in 0..1500 {
        if !late_peer.accepted.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*late_peer.accepted.lock().unwrap(), ["someone@late.test"]);
    let mut left = Vec::new();
    for _ in 0..500 {
        left = admin
            .list_queue(mailfleet_proto::v1::ListQueueRequest { limit: 0 })
            .await
            .unwrap()
            .into_inner()
            .entries;
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left.len(), 1, "the retried job is finished: {left:?}");
    assert_eq!(left[0].job_id, deleted);
    assert!(left[0].cancelled);
    stack.stop().await;
}

/// The relay families are in /metrics from start-up, for each static route's
/// host and for hosts found in DNS (one `dns` destination, however many
/// domains), so a dashboard or alert on them sees the first failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_metrics_exist_from_start_up_per_route_host() {
    let down_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let stack = Stack::start_with(&[(
        "RELAY_ROUTES",
        format!("down.test=relay.invalid:{down_port},*=127.0.0.1:{down_port}"),
    )])
    .await;
    let (_, text) = http_get(stack.worker_http, "/metrics").await;
    for destination in ["relay.invalid", "127.0.0.1", "dns"] {
        for result in ["completed", "rejected", "failed", "connect_failed"] {
            let series = format!(
                "mailfleet_delivery_relay_attempts_total{{destination=\"{destination}\",result=\"{result}\"}} 0"
            );
            assert!(text.contains(&series), "{series} missing in:\n{text}");
        }
        let series =
            format!("mailfleet_delivery_relay_seconds_count{{destination=\"{destination}\"}} 0");
        assert!(text.contains(&series), "{series} missing in:\n{text}");
    }

    // A failed connection to the smart host counts under its host, not a new series.
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);
    let jobs = stack.jobs(1, "down", &["someone@elsewhere.test"]).await;
    publish_all(&publisher, &jobs).await;
    let failed = r#"mailfleet_delivery_relay_attempts_total{destination="127.0.0.1",result="connect_failed"}"#;
    for _ in 0..1500 {
        if stack.metric(failed).await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stack.metric(failed).await >= 1.0);
    let (_, text) = http_get(stack.worker_http, "/metrics").await;
    let relay_series = text
        .lines()
        .filter(|l| l.starts_with("mailfleet_delivery_relay_attempts_total{"))
        .count();
    assert_eq!(
        relay_series, 12,
        "three destinations, four results:\n{text}"
    );
}

/// Relay throughput to a loopback SMTP sink: 16 connections, 4 KiB
/// messages, through RabbitMQ and object storage (bodies streamed). Run
/// with `cargo test -p delivery-worker --test worker -- --ignored
/// relay_throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn relay_throughput() {
    let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_port = sink_listener.local_addr().unwrap().port();
    let sink = start_peer(sink_listener, None).await;
    let stack = Stack::start_with(&[
        ("RELAY_ROUTES", format!("*=127.0.0.1:{sink_port}")),
        ("RELAY_MAX_CONNECTIONS_PER_HOST", "16".into()),
        ("RELAY_MAX_MESSAGES_PER_CONNECTION", "1000".into()),
    ])
    .await;
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);
    let n = 3000;
    let jobs = stack.jobs(n, "relay-bench", &["sink@sink.test"]).await;
    let started = std::time::Instant::now();
    publish_all(&publisher, &jobs).await;
    let published = started.elapsed().as_secs_f64();
    for _ in 0..30_000 {
        if sink.accepted.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let got = sink.accepted.lock().unwrap().len();
    println!(
        "{n} jobs of 4 KiB: published in {published:.2}s, {got} relayed after {secs:.2}s = {:.0} messages/s over {} connections",
        got as f64 / secs,
        sink.connections.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(got, n);
    stack.stop().await;
}

/// A DNS server on loopback answering from a fixed table (MX and A).
async fn dns_server() -> std::net::SocketAddr {
    use hickory_resolver::proto::op::{Message, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, MX};
    use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let name = |n: &str| Name::from_ascii(n).unwrap();
    let mx = move |owner: &str, pref: u16, host: &str| {
        Record::from_rdata(name(owner), 60, RData::MX(MX::new(pref, name(host))))
    };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.add_queries(query.queries.clone());
            for q in &query.queries {
                let owner = q.name().to_ascii().to_ascii_lowercase();
                match (owner.as_str(), q.query_type()) {
                    ("pref.test.", RecordType::MX) => {
                        reply.add_answer(mx("pref.test.", 20, "b.mx.test."));
                        reply.add_answer(mx("pref.test.", 10, "a.mx.test."));
                    }
                    ("private.test.", RecordType::MX) => {
                        reply.add_answer(mx("private.test.", 10, "a.mx.test."));
                    }
                    ("null.test.", RecordType::MX) => {
                        reply.add_answer(mx("null.test.", 0, "."));
                    }
                    ("a.mx.test.", RecordType::A) => {
                        reply.add_answer(Record::from_rdata(
                            name("a.mx.test."),
                            60,
                            RData::A(A::new(127, 0, 0, 2)),
                        ));
                    }
                    ("nomx.test.", _)
                    | ("a.mx.test.", _)
                    | ("pref.test.", _)
                    | ("private.test.", _) => {}
                    _ => reply.metadata.response_code = ResponseCode::NXDomain,
                }
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_lookup_orders_by_preference_and_honours_null_and_implicit_mx() {
    use delivery_worker::relay::routes::{RouteError, Router, Routes};
    let dns = dns_server().await;
    let router = Router::new(Routes::parse("").unwrap(), &dns.to_string()).unwrap();
    let hosts = |t: Vec<delivery_worker::relay::routes::Target>| {
        t.into_iter().map(|t| t.host).collect::<Vec<_>>()
    };
    assert_eq!(
        hosts(router.targets("pref.test").await.unwrap()),
        ["a.mx.test", "b.mx.test"]
    );
    assert!(matches!(
        router.targets("null.test").await,
        Err(RouteError::NoMail(_))
    ));
    assert_eq!(
        hosts(router.targets("nomx.test").await.unwrap()),
        ["nomx.test"]
    );
    assert!(matches!(
        router.targets("nx.test").await,
        Err(RouteError::NoMail(_))
    ));
    let a = router.targets("pref.test").await.unwrap().remove(0);
    let router = router.allow_private(true);
    assert_eq!(
        router.addresses(&a).await.unwrap(),
        ["127.0.0.2:25".parse::<std::net::SocketAddr>().unwrap()]
    );
}

/// An MX pointing at loopback is refused by default (a domain's owner must
/// not steer the relay into our network) and used with
/// `relay_allow_private`; a static route to loopback is always used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_at_a_private_address_is_refused_unless_allowed() {
    use delivery_worker::relay::routes::{AddressError, Router, Routes};
    let dns = dns_server().await;
    let router = Router::new(Routes::parse("").unwrap(), &dns.to_string()).unwrap();
    let a = router.targets("pref.test").await.unwrap().remove(0);
    assert_eq!(a.host, "a.mx.test");
    assert_eq!(
        router.addresses(&a).await,
        Err(AddressError::NotPublic("a.mx.test".into()))
    );
    let allowed = router.allow_private(true);
    assert_eq!(
        allowed.addresses(&a).await.unwrap(),
        ["127.0.0.2:25".parse::<std::net::SocketAddr>().unwrap()]
    );

    let routed = Router::new(Routes::parse("*=127.0.0.1:2525").unwrap(), &dns.to_string()).unwrap();
    let sink = routed.targets("anywhere.test").await.unwrap().remove(0);
    assert_eq!(
        routed.addresses(&sink).await.unwrap(),
        ["127.0.0.1:2525".parse::<std::net::SocketAddr>().unwrap()]
    );

    // A domain whose only MX is private fails at once, with the reason.
    let stack = Stack::start_with(&[
        ("RELAY_ROUTES", String::new()),
        ("DNS_RESOLVER", dns.to_string()),
    ])
    .await;
    let publisher = Publisher::new(&stack.vhost.url(), &stack.prefix);
    let jobs = stack.jobs(1, "private", &["bob@private.test"]).await;
    publish_all(&publisher, &jobs).await;
    let failed = r#"mailfleet_delivery_permanent_failures_total{reason="no_public_mail_host"}"#;
    for _ in 0..1500 {
        if stack.metric(failed).await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stack.metric(failed).await, 1.0);
    assert_eq!(stack.metric("mailfleet_delivery_deferred_total").await, 0.0);
    stack.stop().await;
}
