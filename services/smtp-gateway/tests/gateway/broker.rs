//! The durability path against the real RabbitMQ (one vhost per test) and a
//! file blob store, and `run()` as the binary uses it.

use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use mailfleet_blob::BlobStore;
use mailfleet_proto::v1::DeliveryJob;
use mailfleet_queue::Publisher;
use mailfleet_runtime::{CancellationToken, Config};
use smtp_gateway::backend::{AuthOutcome, Backend, BackendError, Resolution};
use smtp_gateway::{Listeners, Mailfleet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Raw, Server, config, python};

/// A RabbitMQ vhost of its own, deleted on drop.
pub struct Vhost {
    name: String,
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

impl Vhost {
    pub async fn new() -> Self {
        let name = format!("smtpgw-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]).await;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]).await;
        Self { name }
    }
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
    pub async fn delete(&self) {
        rabbitmqctl(&["delete_vhost", &self.name]).await;
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // Best effort when a test failed before its own delete.
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// A temporary blob directory, removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("smtpgw-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn url(&self) -> String {
        format!("file://{}", self.0.display())
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real blob store and publisher; only the recipient check is faked
/// (everything in local.test exists).
#[derive(Clone)]
struct RealStorage(Mailfleet);

impl Backend for RealStorage {
    type Writer = mailfleet_blob::BlobWriter;

    async fn resolve_recipient(
        &self,
        address: &str,
        _size: u64,
    ) -> Result<Resolution, BackendError> {
        Ok(if address.ends_with("@local.test") {
            Resolution::Local
        } else {
            Resolution::NotLocal
        })
    }
    fn body_writer(&self) -> Self::Writer {
        self.0.body_writer()
    }
    async fn authenticate(
        &self,
        _username: &str,
        _password: &str,
        _remote_ip: &str,
    ) -> Result<AuthOutcome, BackendError> {
        Ok(AuthOutcome::Failed)
    }
    async fn address_owners(&self, _address: &str) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }
    async fn publish(&self, job: &DeliveryJob) -> Result<(), BackendError> {
        self.0.publish(job).await
    }
}

pub fn test_config(vhost: &Vhost, blobs: &TempDir, extra: &[(&str, &str)]) -> Config {
    let url = vhost.url();
    let blob_url = blobs.url();
    let mut settings = vec![
        ("amqp_url", url.as_str()),
        ("blob_url", blob_url.as_str()),
        ("queue_prefix", "t"),
        ("smtp_publish_timeout", "2s"),
        // Nothing listens there: mailstore is "down" for run().
        ("mailstore_url", "http://127.0.0.1:1"),
        ("shutdown_grace", "5s"),
    ];
    settings.extend_from_slice(extra);
    config(&settings)
}

fn real_storage(config: &Config) -> RealStorage {
    RealStorage(Mailfleet {
        mailstore: mailfleet_runtime::grpc::mailstore_client(&config.mailstore_url, "t").unwrap(),
        blobs: BlobStore::from_config(config).unwrap(),
        publisher: Publisher::new(&config.amqp_url, &config.queue_prefix),
        publish_timeout: config.smtp_publish_timeout,
        recipients: Default::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_message_is_a_persistent_confirmed_job_and_a_stored_blob() {
    let vhost = Vhost::new().await;
    let blobs = TempDir::new();
    let config = test_config(&vhost, &blobs, &[]);
    let server = Server::start(&config, real_storage(&config)).await;

    let out = python(
        server.port,
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.example")
s.ehlo()
s.mail("sender@remote.example")
s.rcpt("u@local.test")
code, text = s.data("Subject: durable\r\n\r\nkeep me\r\n")
print(code, text.decode())
s.quit()
"#,
    )
    .await;
    let (code, text) = out.trim().split_once(' ').unwrap();
    assert_eq!(code, "250", "{out}");
    let job_id = text.strip_prefix("2.0.0 Ok: queued as ").unwrap();

    let connection = mailfleet_queue::connect(&config.amqp_url).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("t.delivery".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the job is on the work queue");
    assert_eq!(
        *message.delivery.properties.delivery_mode(),
        Some(2),
        "persistent"
    );
    let job = mailfleet_queue::decode_job(&message.delivery.data).unwrap();
    assert_eq!(job.job_id, job_id);
    assert_eq!(job.return_path, "sender@remote.example");
    assert_eq!(job.recipients.len(), 1);
    assert_eq!(job.recipients[0].address, "u@local.test");

    let body = BlobStore::from_config(&config)
        .unwrap()
        .get(&job.blob_id)
        .await
        .unwrap();
    assert_eq!(body.len() as u64, job.blob_size);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("Received: from client.example"), "{body}");
    assert!(body.contains("for <u@local.test>;"), "{body}");
    assert!(
        body.ends_with("Subject: durable\r\n\r\nkeep me\r\n"),
        "{body}"
    );
    let _ = connection.close(200, "done".into()).await;
    server.stop().await;
    vhost.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_confirm_means_451_never_250() {
    let vhost = Vhost::new().await;
    let blobs = TempDir::new();
    let config = test_config(&vhost, &blobs, &[("smtp_publish_timeout", "1s")]);
    let server = Server::start(&config, real_storage(&config)).await;
    let mut c = Raw::greeted(server.port).await;
    for line in [
        "EHLO c.example",
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<u@local.test>",
    ] {
        assert!(c.cmd(line).await.starts_with("250"));
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    // The broker loses the vhost (and every connection to it) mid-transaction.
    vhost.delete().await;
    // Answered (the client's read would fail a hang), and never 250.
    let reply = c.cmd("Subject: lost\r\n\r\nx\r\n.").await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert!(c.cmd("NOOP").await.starts_with("250"));
    server.stop().await;
}

pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_smtp_health_and_metrics_and_stops_on_shutdown() {
    let vhost = Vhost::new().await;
    let blobs = TempDir::new();
    let config = test_config(&vhost, &blobs, &[]);
    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (smtp_port, http_port) = (
        smtp.local_addr().unwrap().port(),
        http.local_addr().unwrap().port(),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(smtp_gateway::run(
        config,
        Listeners {
            smtp,
            submission: None,
            submissions: None,
            http,
        },
        shutdown.clone(),
    ));

    // RabbitMQ answers, mailstore does not: not ready, naming mailstore only.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(http_port, "/readyz").await;
        if body == "not ready: mailstore\n" {
            assert_eq!(status, 503);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never settled: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(http_port, "/healthz").await.0, 200);

    let mut c = Raw::greeted(smtp_port).await;
    assert!(c.cmd("EHLO c.example").await.starts_with("250"));
    // Mailstore is down: the recipient check is a temporary failure.
    assert!(c.cmd("MAIL FROM:<a@b.example>").await.starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<u@local.test>")
            .await
            .starts_with("451 4.4.3")
    );

    let (status, metrics) = http_get(http_port, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "mailfleet_smtp_connections_total{listener=\"smtp\"} 1",
        "mailfleet_smtp_sessions{listener=\"smtp\"} 1",
        "mailfleet_smtp_replies_rejected_total{listener=\"smtp\",code=\"451\"} 1",
        "mailfleet_smtp_queue_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} in\n{metrics}");
    }

    shutdown.cancel();
    assert!(c.reply().await.starts_with("421 4.3.2"));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    vhost.delete().await;
}

#[tokio::test]
async fn run_refuses_to_start_without_rabbitmq() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let blobs = TempDir::new();
    let url = format!("amqp://guest:secret@127.0.0.1:{port}/%2f");
    let blob_url = blobs.url();
    let config = config(&[("amqp_url", url.as_str()), ("blob_url", blob_url.as_str())]);
    let listeners = Listeners {
        smtp: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        submission: None,
        submissions: None,
        http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let error = smtp_gateway::run(config, listeners, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("cannot reach RabbitMQ at amqp://guest:***@"),
        "{error}"
    );
    assert!(
        error.contains("is it running?") && !error.contains("secret"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_message_streams_through_multipart_storage_intact() {
    let vhost = Vhost::new().await;
    let blobs = TempDir::new();
    let config = test_config(&vhost, &blobs, &[("blob_inline_limit", "65536")]);
    let server = Server::start(&config, real_storage(&config)).await;
    let mut c = Raw::greeted(server.port).await;
    for line in [
        "EHLO c.example",
        "MAIL FROM:<a@b.example> BODY=8BITMIME SIZE=10000000",
        "RCPT TO:<u@local.test>",
    ] {
        assert!(c.cmd(line).await.starts_with("250"), "{line}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    // About 9 MiB: more than one multipart part, with dot-stuffed lines and
    // 8-bit text spread through it.
    let mut expected = b"Subject: big\r\n\r\n".to_vec();
    let mut wire = expected.clone();
    for i in 0..120_000u32 {
        let line = if i % 7 == 0 {
            format!(".line {i} \u{e9}t\u{e9} {}\r\n", "z".repeat(60))
        } else {
            format!("line {i} {}\r\n", "x".repeat(64))
        };
        expected.extend_from_slice(line.as_bytes());
        if line.starts_with('.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line.as_bytes());
    }
    wire.extend_from_slice(b".\r\n");
    for piece in wire.chunks(100_003) {
        c.send(piece).await;
    }
    let reply = c.reply().await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");

    let connection = mailfleet_queue::connect(&config.amqp_url).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("t.delivery".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the job is queued");
    let job = mailfleet_queue::decode_job(&message.delivery.data).unwrap();
    let body = BlobStore::from_config(&config)
        .unwrap()
        .get(&job.blob_id)
        .await
        .unwrap();
    assert_eq!(body.len() as u64, job.blob_size);
    assert!(body.starts_with(b"Received: "));
    assert!(body.ends_with(&expected), "the body arrived byte for byte");
    let _ = connection.close(200, "done".into()).await;
    server.stop().await;
    vhost.delete().await;
}
