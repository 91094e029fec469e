//! Shared set-up of the mailstore integration tests: the service in-process
//! on port-0 listeners against a fresh Postgres database and a temp-dir blob
//! store.

// Each test file uses a part of what is here.
#![allow(dead_code, unused_imports)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub use std::time::{Duration, Instant};

pub use mailfleet_blob::BlobStore;
pub use mailfleet_proto::v1 as pb;
pub use mailfleet_runtime::config::SecretString;
pub use mailfleet_runtime::grpc::{Admin, MailStore, admin_client, mailstore_client};
pub use mailfleet_runtime::{CancellationToken, Config};
pub use sqlx::Connection;
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use tokio::net::TcpListener;
pub use tokio::task::JoinHandle;

pub const SERVICE_TOKEN: &str = "service-secret";
pub const ADMIN_TOKEN: &str = "admin-secret";

pub fn unique_db_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("mailstore_test_{tag}_{}_{nanos}", std::process::id())
}

pub fn config(db: &str, blob_dir: &std::path::Path) -> Config {
    let mut c = Config::load(Vec::new()).unwrap();
    c.database_url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    c.database_max_connections = 8;
    c.blob_url = format!("file://{}", blob_dir.display());
    c.service_token = SecretString::new(SERVICE_TOKEN);
    c.admin_token = SecretString::new(ADMIN_TOKEN);
    // Cheap hashes keep the test fast; the cost is configuration.
    c.argon2_memory_kib = 1024;
    c.argon2_iterations = 1;
    c.shutdown_grace = Duration::from_secs(5);
    c
}

/// Drops the test database when the test ends, however it ends.
pub struct Database(pub String);

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) =
                    sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

pub struct Running {
    pub grpc_url: String,
    pub http: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

pub async fn start(config: Config) -> Running {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
    let http_addr = http.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(mailstore::run(
        config,
        mailstore::Listeners { grpc, http },
        shutdown.clone(),
    ));
    let running = Running {
        grpc_url,
        http: http_addr,
        shutdown,
        task,
    };
    wait_ready(&running).await;
    running
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// Waits until /readyz answers 200 (migrations done, Postgres answering).
pub async fn wait_ready(r: &Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(!r.task.is_finished(), "mailstore stopped during start-up");
        if let Some(resp) = http_get(r.http, "/readyz").await
            && resp.starts_with("HTTP/1.1 200")
        {
            return;
        }
        assert!(Instant::now() < deadline, "mailstore not ready in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn stop(r: Running) {
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

pub async fn put_blob(config: &Config, data: &[u8]) -> String {
    let store = BlobStore::from_config(config).unwrap();
    let mut w = store.writer();
    w.write(data).await.unwrap();
    w.finish().await.unwrap().id
}

/// Creates the account (and its domain, if new) through the Admin API,
/// with password "pw" and these quotas (0: none).
pub async fn add_account(
    running: &Running,
    address: &str,
    quota_bytes: u64,
    quota_messages: u64,
) -> pb::Account {
    let mut admin = admin_client(&running.grpc_url, ADMIN_TOKEN).unwrap();
    let domain = address.rsplit('@').next().unwrap_or_default();
    match admin
        .add_domain(pb::AddDomainRequest {
            name: domain.into(),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => panic!("add_domain {domain}: {s}"),
    }
    admin
        .add_account(pb::AddAccountRequest {
            address: address.into(),
            password: "pw".into(),
            quota_bytes,
            quota_messages,
        })
        .await
        .unwrap()
        .into_inner()
}

/// AppendMessageStream: `start`, then `chunks`, as one client stream.
pub async fn append_stream(
    ms: &mut MailStore,
    start: pb::AppendStart,
    chunks: Vec<Vec<u8>>,
) -> Result<pb::AppendMessageResponse, tonic::Status> {
    let first = pb::AppendStreamRequest {
        start: Some(start),
        data: Vec::new(),
        commit: false,
    };
    let rest = chunks.into_iter().map(|data| pb::AppendStreamRequest {
        start: None,
        data,
        commit: false,
    });
    let commit = pb::AppendStreamRequest {
        start: None,
        data: Vec::new(),
        commit: true,
    };
    let requests = futures::stream::iter(
        std::iter::once(first)
            .chain(rest)
            .chain(std::iter::once(commit)),
    );
    ms.append_message_stream(requests)
        .await
        .map(|r| r.into_inner())
}

/// A message of at least `size` octets with the structure mail clients
/// send: a text part, a large base64 attachment and a forwarded message
/// with its own multipart body. Its delimiters fall anywhere in a stream
/// of fixed-size chunks.
pub fn large_mime_message(subject: &str, size: usize) -> Vec<u8> {
    let mut raw = format!(
        "From: a@example.org\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n\r\n\
This is a multi-part message in MIME format.\r\n--outer-b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n--outer-b\r\n\
Content-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=big.pdf\r\n\r\n"
    )
    .into_bytes();
    let mut i = 0u64;
    while raw.len() < size {
        raw.extend_from_slice(format!("{:076}\r\n", i * 7919).as_bytes());
        i += 1;
    }
    raw.extend_from_slice(
        b"--outer-b\r\nContent-Type: message/rfc822\r\n\r\n\
From: b@example.org\r\nSubject: forwarded\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--\r\n\
--outer-b--\r\n",
    );
    raw
}

/// The metadata mailstore keeps for message `uid` of `mailbox`.
pub async fn meta_of(
    ms: &mut MailStore,
    account: &str,
    mailbox: &str,
    uid: u32,
) -> mailfleet_mime::MessageMeta {
    let fetched = ms
        .fetch_messages(pb::FetchMessagesRequest {
            account: account.into(),
            mailbox: mailbox.into(),
            uids: Some(pb::UidSet {
                ranges: vec![pb::UidRange {
                    first: uid,
                    last: uid,
                }],
            }),
            with_meta: true,
            with_header: false,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(fetched.len(), 1, "no message {uid} in {mailbox}");
    serde_json::from_slice(&fetched[0].meta_json).unwrap()
}
