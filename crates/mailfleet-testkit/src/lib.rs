//! Test support shared by the services' integration tests (never linked
//! into a service): names no other test uses, a scratch Postgres database
//! and a RabbitMQ vhost that remove themselves when dropped, the `/readyz`
//! wait, and mailstore started in-process on port-0 listeners. Each
//! service's test binary keeps only what is its own (its frontend, its
//! clients); before this crate, four harnesses carried their own copy of
//! these pieces.
//!
//! Test code: a failed set-up step panics with what failed, which is the
//! test's failure message.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailfleet_runtime::config::SecretString;
use mailfleet_runtime::{CancellationToken, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The service credential of the test stacks.
pub const SERVICE_TOKEN: &str = "svc";
/// The admin credential of the test stacks.
pub const ADMIN_TOKEN: &str = "adm";
/// Where the tests find Postgres and RabbitMQ (the machine's standard ones).
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
pub const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672";

/// How long a service may take to become ready under a loaded CI machine.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A name no other test of this run or of a parallel run uses; letters,
/// digits and `_` only, so it is a valid database and vhost name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `rabbitmqctl`; true when it succeeded.
pub fn rabbitmqctl(args: &[&str]) -> bool {
    std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A database name for one test; the database (made by mailstore's
/// migrations on first connect) is dropped with `FORCE` when this is
/// dropped, however the test ends.
pub struct ScratchDb {
    pub name: String,
}

impl ScratchDb {
    pub fn new(prefix: &str) -> Self {
        Self {
            name: unique(prefix),
        }
    }

    pub fn url(&self) -> String {
        format!("{POSTGRES}/{}", self.name)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        use sqlx::Connection;
        let name = self.name.clone();
        // Drop may run inside a runtime: a thread of its own blocks on a
        // runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) =
                    sqlx::PgConnection::connect(&format!("{POSTGRES}/postgres")).await
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

/// A RabbitMQ vhost for one test (guest may do anything in it), deleted
/// when dropped.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        assert!(
            rabbitmqctl(&["add_vhost", &name]),
            "rabbitmqctl add_vhost {name}"
        );
        assert!(
            rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]),
            "rabbitmqctl set_permissions -p {name}"
        );
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("{RABBITMQ}/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// One HTTP/1.1 GET on a fresh connection; the whole response, or `None`
/// when the connection failed.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// Whether the service at `addr` answers `/readyz` with 200.
pub async fn http_ready(addr: SocketAddr) -> bool {
    http_get(addr, "/readyz")
        .await
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// Waits until `what` at `addr` is ready; panics when it is not within a
/// minute, or when `task` (the service's own task) has ended first.
pub async fn wait_ready<T>(what: &str, addr: SocketAddr, task: Option<&JoinHandle<T>>) {
    let deadline = Instant::now() + READY_WITHIN;
    while !http_ready(addr).await {
        assert!(
            !task.is_some_and(|t| t.is_finished()),
            "{what} stopped during start-up"
        );
        assert!(Instant::now() < deadline, "{what} not ready in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The configuration every in-process test stack starts from: `db`, the
/// vhost when there is one, bodies under `blob_dir`, the test credentials
/// and cheap password hashes (their cost is configuration, and the tests
/// log in often).
pub fn config(db: &ScratchDb, vhost: Option<&Vhost>, blob_dir: &std::path::Path) -> Config {
    let mut c = Config::load(Vec::new()).expect("the default configuration loads");
    c.database_url = db.url();
    c.database_max_connections = 8;
    if let Some(v) = vhost {
        c.amqp_url = v.url();
    }
    c.blob_url = format!("file://{}", blob_dir.display());
    c.service_token = SecretString::new(SERVICE_TOKEN);
    c.admin_token = SecretString::new(ADMIN_TOKEN);
    c.argon2_memory_kib = 1024;
    c.argon2_iterations = 1;
    c
}

/// mailstore running in-process.
pub struct Mailstore {
    /// `http://127.0.0.1:PORT`.
    pub grpc_url: String,
    pub grpc: SocketAddr,
    /// Health and metrics.
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Mailstore {
    /// Starts mailstore with `config` on port-0 listeners and waits until it
    /// is ready (migrations done, Postgres answering). `grpc_url` is
    /// `http://127.0.0.1:PORT`; a test running the plane over TLS names the
    /// port from `grpc` itself.
    pub async fn start(config: Config) -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(mailstore::run(
            config,
            mailstore::Listeners { grpc, http },
            shutdown.clone(),
        ));
        wait_ready("mailstore", http_addr, Some(&task)).await;
        Self {
            grpc_url: format!("http://{grpc_addr}"),
            grpc: grpc_addr,
            http: http_addr,
            shutdown,
            task,
        }
    }

    /// Stops it and waits for a clean end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("mailstore's task")
            .expect("mailstore ended cleanly");
    }
}
