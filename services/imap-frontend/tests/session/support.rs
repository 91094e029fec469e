//! What every imap-frontend session test shares: the in-process services
//! (`start`), the Python clients (`run_client`) and a raw socket client (`Raw`).

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use mailfleet_proto::v1 as pb;
use mailfleet_runtime::{CancellationToken, Config};
use tokio::net::TcpListener;

pub(crate) const USER: &str = "alice@example.test";
pub(crate) const PASS: &str = "secret-pw";

pub(crate) use mailfleet_testkit::{ADMIN_TOKEN, ScratchDb, Vhost};

/// `rabbitmqctl`, asserting that it worked.
pub(crate) fn rabbitmqctl(args: &[&str]) {
    assert!(
        mailfleet_testkit::rabbitmqctl(args),
        "rabbitmqctl {args:?} failed"
    );
}

/// Everything one test runs; dropping it stops the services and removes
/// the database and the vhost.
pub(crate) struct Env {
    pub(crate) imap: u16,
    pub(crate) imaps: u16,
    /// ManageSieve.
    pub(crate) sieve: u16,
    pub(crate) cert: std::path::PathBuf,
    /// mailstore's HTTP port (metrics).
    pub(crate) store_http: std::net::SocketAddr,
    pub(crate) db: String,
    pub(crate) vhost: String,
    pub(crate) shutdown: CancellationToken,
    // Dropped after `Drop::drop` has stopped the services.
    pub(crate) _scratch: (ScratchDb, Vhost),
    pub(crate) _dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn start() -> Env {
    start_with(|_| {}).await
}

/// `start`, with imap-frontend's configuration changed by `frontend`
/// (mailstore keeps the common one).
pub(crate) async fn start_with(frontend: impl FnOnce(&mut Config)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = mailfleet_runtime::tls::ensure_self_signed(
        &dir.path().join("tls"),
        &["localhost", "127.0.0.1"],
    )
    .unwrap();
    let db = ScratchDb::new("imapfe");
    let vhost = Vhost::new("imapfe");
    let mut config = mailfleet_testkit::config(&db, Some(&vhost), &dir.path().join("blobs"));
    config.tls_cert = cert.display().to_string();
    config.tls_key = key.display().to_string();
    config.shutdown_grace = Duration::from_secs(3);
    let store = mailfleet_testkit::Mailstore::start(config.clone()).await;
    let (grpc_url, store_addr, shutdown) = (store.grpc_url, store.http, store.shutdown);
    config.mailstore_url = grpc_url.clone();
    let mut admin = mailfleet_runtime::grpc::admin_client(&grpc_url, ADMIN_TOKEN).unwrap();
    admin
        .add_domain(pb::AddDomainRequest {
            name: "example.test".into(),
        })
        .await
        .unwrap();
    admin
        .add_account(pb::AddAccountRequest {
            address: USER.into(),
            password: PASS.into(),
            quota_bytes: 0,
            quota_messages: 0,
        })
        .await
        .unwrap();

    let imap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imaps = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sieve = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sieve_port = sieve.local_addr().unwrap().port();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (imap_port, imaps_port) = (
        imap.local_addr().unwrap().port(),
        imaps.local_addr().unwrap().port(),
    );
    let http_addr = http.local_addr().unwrap();
    frontend(&mut config);
    tokio::spawn(imap_frontend::run(
        config,
        imap_frontend::Listeners {
            imap,
            imaps: Some(imaps),
            sieve: Some(sieve),
            http,
        },
        shutdown.clone(),
    ));
    // Ready means mailstore answers and the event consumer is bound.
    mailfleet_testkit::wait_ready::<()>("imap-frontend", http_addr, None).await;
    Env {
        imap: imap_port,
        imaps: imaps_port,
        sieve: sieve_port,
        cert,
        store_http: store_addr,
        db: db.name.clone(),
        vhost: vhost.name.clone(),
        shutdown,
        _scratch: (db, vhost),
        _dir: dir,
    }
}

/// The value of an unlabelled metric served at `addr`'s /metrics (0 when
/// absent).
pub(crate) async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Runs a Python client script from `tests/e2e/clients` with `args`; it
/// must exit 0 and print "ok".
pub(crate) async fn run_client(script: &str, args: &[&str]) {
    let path = format!(
        "{}/../../tests/e2e/clients/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = tokio::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// A blocking raw IMAP connection (run inside `spawn_blocking`).
pub(crate) struct Raw {
    pub(crate) reader: BufReader<std::net::TcpStream>,
    pub(crate) writer: std::net::TcpStream,
}

impl Raw {
    pub(crate) fn connect(port: u16) -> Raw {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(raw.line().starts_with("* OK"));
        raw
    }

    pub(crate) fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    /// Exactly `n` bytes (a literal's data).
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        use std::io::Read;
        let mut data = vec![0; n];
        self.reader.read_exact(&mut data).unwrap();
        data
    }

    pub(crate) fn send(&mut self, data: &[u8]) {
        self.writer.write_all(data).unwrap();
    }

    pub(crate) fn cmd(&mut self, tag: &str, line: &str) -> Vec<String> {
        self.send(format!("{tag} {line}\r\n").as_bytes());
        self.until(tag)
    }

    pub(crate) fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed; got {lines:?}");
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    pub(crate) fn ok(&mut self, tag: &str, line: &str) -> Vec<String> {
        let lines = self.cmd(tag, line);
        let last = lines.last().cloned().unwrap_or_default();
        assert!(last.starts_with(&format!("{tag} OK")), "{line}: {lines:?}");
        lines
    }
}
