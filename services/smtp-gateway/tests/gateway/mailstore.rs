//! The MX path with every real dependency: mailstore (its own Postgres
//! database) for the recipient check, RabbitMQ (its own vhost) and a file
//! blob store, both services started in-process through their `run`.

use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use mailfleet_proto::v1::{AddAccountRequest, AddAliasRequest, AddDomainRequest};
use mailfleet_runtime::CancellationToken;
use tokio::net::TcpListener;

use crate::broker::{TempDir, Vhost, http_get, test_config};
use crate::support::{Raw, python};

/// Drops the test database however the test ends.
struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.0
            ))
            .output();
    }
}

async fn wait_ready(http_port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(http_port, "/readyz").await;
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never got ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// mailstore started in-process on its own database, with the domain
/// `local.test`, these accounts (address, password) and the alias
/// `sales@local.test` → `u@local.test`.
struct Store {
    _db: Database,
    config: mailfleet_runtime::Config,
    http_port: u16,
    admin: mailfleet_runtime::grpc::Admin,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_store(
    vhost: &Vhost,
    blobs: &TempDir,
    extra: &[(&str, &str)],
    accounts: &[(&str, &str)],
) -> Store {
    let db = Database(format!("smtpgw_{}", uuid::Uuid::new_v4().simple()));
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{}", db.0);
    let store_grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", store_grpc.local_addr().unwrap());
    let http_port = store_http.local_addr().unwrap().port();
    let mut settings = vec![
        ("database_url", database_url.as_str()),
        ("database_max_connections", "4"),
        ("mailstore_url", grpc_url.as_str()),
        ("service_token", "svc-token"),
        ("admin_token", "admin-token"),
        ("argon2_memory_kib", "1024"),
        ("argon2_iterations", "1"),
    ];
    settings.extend_from_slice(extra);
    let config = test_config(vhost, blobs, &settings);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(mailstore::run(
        config.clone(),
        mailstore::Listeners {
            grpc: store_grpc,
            http: store_http,
        },
        shutdown.clone(),
    ));
    wait_ready(http_port, "mailstore").await;
    let mut admin = mailfleet_runtime::grpc::admin_client(&grpc_url, "admin-token").unwrap();
    admin
        .add_domain(AddDomainRequest {
            name: "local.test".into(),
        })
        .await
        .unwrap();
    for (address, password) in accounts {
        admin
            .add_account(AddAccountRequest {
                address: (*address).into(),
                password: (*password).into(),
                quota_bytes: 0,
                quota_messages: 0,
            })
            .await
            .unwrap();
    }
    admin
        .add_alias(AddAliasRequest {
            address: "sales@local.test".into(),
            targets: vec!["u@local.test".into()],
        })
        .await
        .unwrap();
    Store {
        _db: db,
        config,
        http_port,
        admin,
        shutdown,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_checks_recipients_in_mailstore_and_queues_the_message() {
    let vhost = Vhost::new().await;
    let blobs = TempDir::new();
    let tls_dir = TempDir::new();
    let (cert, key) =
        mailfleet_runtime::tls::ensure_self_signed(tls_dir.path(), &["localhost"]).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let store = start_store(
        &vhost,
        &blobs,
        &[("tls_cert", cert.as_str()), ("tls_key", key.as_str())],
        &[
            ("u@local.test", "pw"),
            ("other@local.test", "pw2"),
            ("sender@local.test", "pw2"),
        ],
    )
    .await;
    let config = store.config.clone();

    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let submissions = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let submissions_port = submissions.local_addr().unwrap().port();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (smtp_port, http_port) = (
        smtp.local_addr().unwrap().port(),
        http.local_addr().unwrap().port(),
    );
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(smtp_gateway::run(
        config.clone(),
        smtp_gateway::Listeners {
            smtp,
            submission: None,
            submissions: Some(submissions),
            http,
        },
        shutdown.clone(),
    ));
    wait_ready(http_port, "smtp-gateway").await;

    let mut c = Raw::greeted(smtp_port).await;
    assert!(c.cmd("EHLO client.example").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<s@remote.example>")
            .await
            .starts_with("250")
    );
    let reply = c.cmd("RCPT TO:<unknown@local.test>").await;
    assert!(reply.starts_with("550 5.1.1"), "{reply}");
    let reply = c.cmd("RCPT TO:<x@elsewhere.example>").await;
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    let reply = c.cmd("RCPT TO:<u@local.test>").await;
    assert!(reply.starts_with("250 2.1.5"), "{reply}");
    assert!(c.cmd("DATA").await.starts_with("354"));
    let reply = c.cmd("Subject: real\r\n\r\nhello\r\n.").await;
    let job_id = reply
        .trim_end()
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("{reply}"))
        .to_string();

    let connection = mailfleet_queue::connect(&config.amqp_url).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("t.delivery".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the job is queued");
    let job = mailfleet_queue::decode_job(&message.delivery.data).unwrap();
    assert_eq!(job.job_id, job_id);
    assert_eq!(job.recipients[0].address, "u@local.test");
    let _ = connection.close(200, "done".into()).await;

    // Submission with implicit TLS, real Authenticate and real aliases: the
    // account may send as its alias, not as another account.
    let out = python(
        submissions_port,
        r#"
import os, smtplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL("127.0.0.1", int(os.environ["PORT"]), context=ctx)
try:
    s.login("u@local.test", "wrong")
    raise SystemExit("bad password accepted")
except smtplib.SMTPAuthenticationError:
    pass
s.login("U@local.test", "pw")
code, _ = s.mail("other@local.test")
assert code == 553, code
s.rset()
s.sendmail("sales@local.test", ["far@remote.example"], "From: sales@local.test\r\nSubject: s\r\n\r\nhi\r\n")
print("ok")
s.quit()
"#,
    )
    .await;
    assert_eq!(out.trim(), "ok");
    let connection = mailfleet_queue::connect(&config.amqp_url).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("t.delivery".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the submitted job is queued");
    let job = mailfleet_queue::decode_job(&message.delivery.data).unwrap();
    assert_eq!(job.auth_user, "u@local.test");
    assert_eq!(job.return_path, "sales@local.test");
    assert_eq!(job.recipients[0].address, "far@remote.example");
    let _ = connection.close(200, "done".into()).await;

    // Readiness follows mailstore: stop it and the gateway reports it.
    store.shutdown.cancel();
    store.task.await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(http_port, "/readyz").await;
        if status == 503 {
            assert!(body.contains("mailstore"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness ignores mailstore going away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    vhost.delete().await;
}

/// One series' value from a `/metrics` page (0 when absent).
async fn metric(http_port: u16, series: &str) -> u64 {
    let (_, body) = http_get(http_port, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Waits until a series reaches `at_least`; the deadline only bounds a failure.
async fn wait_metric(http_port: u16, series: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(http_port, series).await;
        if v >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {v}, below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_answers_come_from_the_cache_until_the_directory_changes() {
    let vhost = Vhost::new().await;
    let blobs = TempDir::new();
    let mut store = start_store(
        &vhost,
        &blobs,
        &[],
        &[("u@local.test", "pw"), ("gone@local.test", "pw")],
    )
    .await;
    let config = store.config.clone();
    let store_http_port = store.http_port;

    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (smtp_port, http_port) = (
        smtp.local_addr().unwrap().port(),
        http.local_addr().unwrap().port(),
    );
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(smtp_gateway::run(
        config.clone(),
        smtp_gateway::Listeners {
            smtp,
            submission: None,
            submissions: None,
            http,
        },
        shutdown.clone(),
    ));
    wait_ready(http_port, "smtp-gateway").await;
    wait_metric(http_port, "mailfleet_smtp_recipient_cache_live", 1).await;

    let local_checks = "mailfleet_store_recipient_checks_total{status=\"local\"}";
    let mut c = Raw::greeted(smtp_port).await;
    assert!(c.cmd("EHLO client.example").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<s@remote.example>")
            .await
            .starts_with("250")
    );
    for rcpt in ["u@local.test", "sales@local.test", "gone@local.test"] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(reply.starts_with("250 2.1.5"), "{rcpt}: {reply}");
    }
    let asked = metric(store_http_port, local_checks).await;
    assert!(asked >= 3, "mailstore answered {asked} local checks");
    // The same recipients again: answered without asking mailstore.
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<s@remote.example>")
            .await
            .starts_with("250")
    );
    for rcpt in ["U@local.test", "sales@local.test", "gone@local.test"] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(reply.starts_with("250 2.1.5"), "{rcpt}: {reply}");
    }
    assert_eq!(metric(store_http_port, local_checks).await, asked);
    assert!(metric(http_port, "mailfleet_smtp_recipient_cache_hits_total").await >= 3);

    // An alias removed, then an account deleted: refused at the next RCPT
    // once the change's own event (its seq, in mailstore's order) arrived.
    store
        .admin
        .remove_alias(mailfleet_proto::v1::RemoveAliasRequest {
            address: "sales@local.test".into(),
        })
        .await
        .unwrap();
    let seq = metric(store_http_port, "mailfleet_store_directory_changes_total").await;
    wait_metric(
        http_port,
        "mailfleet_smtp_recipient_cache_last_event_seq",
        seq,
    )
    .await;
    // A fresh transaction: a recipient already taken is not checked again.
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<s@remote.example>")
            .await
            .starts_with("250")
    );
    let reply = c.cmd("RCPT TO:<sales@local.test>").await;
    assert!(reply.starts_with("550 5.1.1"), "{reply}");
    let reply = c.cmd("RCPT TO:<u@local.test>").await;
    assert!(reply.starts_with("250 2.1.5"), "{reply}");

    store
        .admin
        .remove_account(mailfleet_proto::v1::RemoveAccountRequest {
            address: "gone@local.test".into(),
        })
        .await
        .unwrap();
    let seq = metric(store_http_port, "mailfleet_store_directory_changes_total").await;
    wait_metric(
        http_port,
        "mailfleet_smtp_recipient_cache_last_event_seq",
        seq,
    )
    .await;
    let reply = c.cmd("RCPT TO:<gone@local.test>").await;
    assert!(reply.starts_with("550 5.1.1"), "{reply}");
    let _ = c.cmd("QUIT").await;

    shutdown.cancel();
    gateway.await.unwrap().unwrap();
    store.shutdown.cancel();
    store.task.await.unwrap().unwrap();
    vhost.delete().await;
}
