//! Shared helpers: a fake backend, an in-process gateway on port 0, a raw
//! SMTP client and a Python smtplib runner.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailfleet_proto::v1::DeliveryJob;
use mailfleet_runtime::listener::{self, Limits};
use mailfleet_runtime::tls::{Tls, ensure_self_signed};
use mailfleet_runtime::{CancellationToken, Config, TaskTracker};
use smtp_gateway::backend::{
    AuthOutcome, Backend, BackendError, BodyWriter, Resolution, StoredBody,
};
use smtp_gateway::{Endpoint, Gateway, Metrics, Role, Settings};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Stored bodies and published jobs of the fake backend.
#[derive(Default)]
pub struct Recorded {
    pub bodies: Mutex<Vec<(String, Vec<u8>)>>,
    pub jobs: Mutex<Vec<DeliveryJob>>,
    pub aborted: AtomicUsize,
    pub fail_store: AtomicBool,
    pub fail_publish: AtomicBool,
    pub resolver_down: AtomicBool,
    /// Authenticate answers as mailstore's login guard does for a locked
    /// pair or address.
    pub auth_locked: AtomicBool,
}

/// The account of the fake backend, and its password.
pub const USER: &str = "user@local.test";
pub const PASSWORD: &str = "secret";

/// Room left in the account of `small@local.test`.
pub const SMALL_ROOM: u64 = 1000;

/// Recipients in `local.test` exist except `unknown@local.test`; every other
/// domain is foreign. `full@local.test` is over quota, `small@local.test`
/// has room for [`SMALL_ROOM`] octets. `USER` has the aliases `alias@local.test` and
/// `user+tag@local.test`.
#[derive(Clone, Default)]
pub struct FakeBackend(pub Arc<Recorded>);

pub struct FakeWriter {
    recorded: Arc<Recorded>,
    bytes: Vec<u8>,
}

impl BodyWriter for FakeWriter {
    async fn write(&mut self, data: &[u8]) -> Result<(), BackendError> {
        if self.recorded.fail_store.load(Ordering::SeqCst) {
            return Err(BackendError::Store("disk on fire".into()));
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }
    async fn finish(self) -> Result<StoredBody, BackendError> {
        let mut bodies = self.recorded.bodies.lock().unwrap();
        let id = format!("blob{}", bodies.len());
        let size = self.bytes.len() as u64;
        bodies.push((id.clone(), self.bytes));
        Ok(StoredBody { id, size })
    }
    async fn abort(self) {
        self.recorded.aborted.fetch_add(1, Ordering::SeqCst);
    }
}

impl Backend for FakeBackend {
    type Writer = FakeWriter;

    async fn resolve_recipient(
        &self,
        address: &str,
        size: u64,
    ) -> Result<Resolution, BackendError> {
        if self.0.resolver_down.load(Ordering::SeqCst) {
            return Err(BackendError::Resolve("mailstore down".into()));
        }
        Ok(match address.rsplit_once('@') {
            Some(("unknown", "local.test")) => Resolution::UnknownUser,
            Some(("full", "local.test")) => Resolution::OverQuota,
            Some(("small", "local.test")) if size > SMALL_ROOM => Resolution::OverQuota,
            Some((_, "local.test")) => Resolution::Local,
            _ => Resolution::NotLocal,
        })
    }

    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        _remote_ip: &str,
    ) -> Result<AuthOutcome, BackendError> {
        if self.0.resolver_down.load(Ordering::SeqCst) {
            return Err(BackendError::Auth("mailstore down".into()));
        }
        if self.0.auth_locked.load(Ordering::SeqCst) {
            return Ok(AuthOutcome::Locked);
        }
        Ok(
            if username.eq_ignore_ascii_case(USER) && password == PASSWORD {
                AuthOutcome::Ok(USER.to_owned())
            } else {
                AuthOutcome::Failed
            },
        )
    }

    async fn address_owners(&self, address: &str) -> Result<Vec<String>, BackendError> {
        Ok(match address.to_ascii_lowercase().as_str() {
            "user@local.test" | "alias@local.test" | "user+tag@local.test" => {
                vec![USER.to_owned()]
            }
            other if other.ends_with("@local.test") => vec![other.to_owned()],
            _ => Vec::new(),
        })
    }

    fn body_writer(&self) -> FakeWriter {
        FakeWriter {
            recorded: self.0.clone(),
            bytes: Vec::new(),
        }
    }

    async fn publish(&self, job: &DeliveryJob) -> Result<(), BackendError> {
        if self.0.fail_publish.load(Ordering::SeqCst) {
            return Err(BackendError::Publish("no confirm".into()));
        }
        self.0.jobs.lock().unwrap().push(job.clone());
        Ok(())
    }
}

/// A test config: the defaults with some overrides.
pub fn config(overrides: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        (
            "MAILFLEET_HOSTNAME".to_string(),
            "mx.local.test".to_string(),
        ),
        // Never ask the public DNS from a test; verification tests set
        // their own resolver.
        (
            "MAILFLEET_SMTP_VERIFY_INBOUND".to_string(),
            "false".to_string(),
        ),
    ];
    vars.extend(overrides.iter().map(|(k, v)| {
        (
            format!("MAILFLEET_{}", k.to_ascii_uppercase()),
            v.to_string(),
        )
    }));
    Config::load(vars).unwrap()
}

/// A gateway with any backend, served on 127.0.0.1:0.
pub struct Server<B> {
    pub port: u16,
    pub gateway: Arc<Gateway<B>>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub task: tokio::task::JoinHandle<()>,
}

/// A fresh self-signed certificate for 127.0.0.1 in its own directory.
pub fn test_tls() -> Tls {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mf-smtp-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (cert, key) = ensure_self_signed(&dir, &["localhost", "127.0.0.1"]).unwrap();
    Tls::load(&cert, &key).unwrap()
}

impl<B: Backend> Server<B> {
    /// The MX role, without TLS.
    pub async fn start(config: &Config, backend: B) -> Self {
        let gateway = Gateway::new(Settings::from_config(config), backend, Metrics::default());
        Self::start_gateway(config, gateway, Role::Mx).await
    }

    /// One listener of `role` with a self-signed certificate.
    pub async fn start_tls(config: &Config, backend: B, role: Role) -> Self {
        let gateway = Gateway::new(Settings::from_config(config), backend, Metrics::default())
            .with_tls(Some(test_tls()));
        Self::start_gateway(config, gateway, role).await
    }

    pub async fn start_gateway(config: &Config, gateway: Gateway<B>, role: Role) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let gateway = Arc::new(gateway);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let limits = Limits {
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
        };
        let task = tokio::spawn(listener::serve(
            listener,
            Endpoint::new(gateway.clone(), role),
            limits,
            "smtp",
            shutdown.clone(),
            tracker.clone(),
        ));
        Self {
            port,
            gateway,
            shutdown,
            tracker,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("sessions end after shutdown");
    }
}

/// A raw SMTP client for exact bytes.
pub struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Connects and reads the greeting.
    pub async fn greeted(port: u16) -> Self {
        let mut raw = Self::connect(port).await;
        let greeting = raw.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.unwrap();
    }

    /// Reads one complete (possibly multi-line) reply; "" at end of stream.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                .await
                .expect("a reply within 20s")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Sends a command line and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// The socket, for a test that drives it by hand from here on.
    pub fn into_stream(self) -> TcpStream {
        self.reader.into_inner()
    }

    /// True when the server closed the connection.
    pub async fn closed(&mut self) -> bool {
        self.reply().await.is_empty()
    }
}

/// Runs a Python snippet with `PORT` set; returns its stdout (asserting
/// success).
pub async fn python(port: u16, script: &str) -> String {
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PORT", port.to_string())
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
