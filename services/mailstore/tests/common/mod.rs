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

pub use mailfleet_testkit::{
    ADMIN_TOKEN, Mailstore as Running, SERVICE_TOKEN, ScratchDb, http_get, wait_ready,
};

/// The common test configuration with mailstore's own short shutdown grace.
pub fn config(db: &ScratchDb, blob_dir: &std::path::Path) -> Config {
    let mut c = mailfleet_testkit::config(db, None, blob_dir);
    c.shutdown_grace = Duration::from_secs(5);
    c
}

pub async fn start(config: Config) -> Running {
    Running::start(config).await
}

pub async fn stop(r: Running) {
    r.stop().await;
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

/// Transactions Postgres counted for the database once every backend of
/// it has gone: a backend reports its counters before it leaves
/// `pg_stat_activity`, so none is missing.
pub async fn committed_after_exit(db: &str) -> i64 {
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (others,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "mailstore's backends never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (n,): (i64,) = sqlx::query_as(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n
}
