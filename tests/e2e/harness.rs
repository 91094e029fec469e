//! Starts a whole mailfleet stack for one test: every service as its own
//! `mailfleet serve …` child process (so a test can SIGKILL one), against the
//! real Postgres (a fresh database), the real RabbitMQ (a fresh vhost) and
//! object storage in a temporary directory or a real S3-compatible server
//! (s3s-fs) started for the test. Everything is removed again on drop.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");

/// Stacks are heavy on a 2-core machine: tests that start one run one at a
/// time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the stack lock for a test that starts its own processes.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A loopback port free right now, from below the kernel's ephemeral
/// range. A port the kernel hands out for port 0 is an ephemeral one, and
/// an outgoing connection (to Postgres, RabbitMQ, a test client) could take
/// it before the service meant to listen on it starts (seen in CI: "Address
/// already in use"). Each test process starts at its own point of the span.
/// Where the ephemeral range starts lower than the span's end, port 0 it is.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok());
    if ephemeral_low.is_some_and(|low| low >= LOW + SPAN) {
        let start = std::process::id().wrapping_mul(7919) % SPAN;
        for _ in 0..SPAN {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW + (start + n) % SPAN;
            if let Ok(port) = u16::try_from(port)
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
            {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{prefix}_{}_{:x}", std::process::id(), nanos & 0xffff_ffff)
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn rabbitmqctl(args: &[&str]) {
    let out = run(Command::new("rabbitmqctl").args(args));
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The services a stack can run, with the settings naming their ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Svc {
    Mailstore,
    SmtpGateway,
    DeliveryWorker,
    Pop3Frontend,
    ImapFrontend,
}

impl Svc {
    fn name(self) -> &'static str {
        match self {
            Svc::Mailstore => "mailstore",
            Svc::SmtpGateway => "smtp-gateway",
            Svc::DeliveryWorker => "delivery-worker",
            Svc::Pop3Frontend => "pop3-frontend",
            Svc::ImapFrontend => "imap-frontend",
        }
    }
}

/// Object storage of a stack.
pub enum Blobs {
    Local,
    S3,
}

/// A real S3-compatible server (s3s-fs) for one test.
struct S3Server {
    child: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl S3Server {
    const ACCESS: &'static str = "mailfleet-test";
    const SECRET: &'static str = "mailfleet-test-secret";
    const BUCKET: &'static str = "mailfleet";

    fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("MAILFLEET_S3S_FS") {
            return PathBuf::from(p);
        }
        let cached = dirs_home().join(".cache/mailfleet-ci/tools/bin/s3s-fs");
        if cached.exists() {
            return cached;
        }
        PathBuf::from("s3s-fs")
    }

    fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(Self::BUCKET)).expect("bucket dir");
        let port = free_port();
        let child = Command::new(Self::binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                Self::ACCESS,
                "--secret-key",
                Self::SECRET,
            ])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the S3-compatible test server {:?} ({e}); install it with \
                     `cargo install --locked s3s-fs@0.14.1 --features binary` or set MAILFLEET_S3S_FS",
                    Self::binary()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _root: root,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

pub struct Stack {
    _serial: MutexGuard<'static, ()>,
    pub db: String,
    pub vhost: String,
    pub dir: tempfile::TempDir,
    pub smtp_port: u16,
    pub grpc_port: u16,
    http_ports: BTreeMap<Svc, u16>,
    env: Vec<(String, String)>,
    children: BTreeMap<Svc, Child>,
    _s3: Option<S3Server>,
    pub admin_token: String,
}

impl Stack {
    /// A stack with mailstore, smtp-gateway and delivery-worker running and
    /// ready, domain example.test and the given accounts created.
    pub fn start(blobs: Blobs, accounts: &[&str], extra_env: &[(&str, &str)]) -> Stack {
        let serial = serial();
        let db = unique("mf_e2e");
        let vhost = unique("mf_e2e");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let dir = tempfile::tempdir().expect("temp dir");
        let smtp_port = free_port();
        let grpc_port = free_port();
        let admin_token = unique("admin");
        let mut env: Vec<(String, String)> = vec![
            (
                "MAILFLEET_DATABASE_URL".into(),
                format!("postgres://postgres@127.0.0.1:5432/{db}"),
            ),
            (
                "MAILFLEET_AMQP_URL".into(),
                format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"),
            ),
            (
                "MAILFLEET_MAILSTORE_URL".into(),
                format!("http://127.0.0.1:{grpc_port}"),
            ),
            (
                "MAILFLEET_GRPC_LISTEN".into(),
                format!("127.0.0.1:{grpc_port}"),
            ),
            (
                "MAILFLEET_SMTP_LISTEN".into(),
                format!("127.0.0.1:{smtp_port}"),
            ),
            // imap-frontend's ManageSieve listener: a port of its own, never
            // 4190 (a stack running beside the tests may hold it).
            (
                "MAILFLEET_SIEVE_LISTEN".into(),
                format!("127.0.0.1:{}", free_port()),
            ),
            ("MAILFLEET_SERVICE_TOKEN".into(), unique("service")),
            ("MAILFLEET_ADMIN_TOKEN".into(), admin_token.clone()),
            ("MAILFLEET_HOSTNAME".into(), "mx.example.test".into()),
            ("MAILFLEET_LOG".into(), "info".into()),
            ("MAILFLEET_SHUTDOWN_GRACE".into(), "5s".into()),
            // No SPF/DKIM/DMARC lookups to the public DNS from a test.
            ("MAILFLEET_SMTP_VERIFY_INBOUND".into(), "false".into()),
        ];
        let s3 = match blobs {
            Blobs::Local => {
                env.push((
                    "MAILFLEET_BLOB_URL".into(),
                    format!("file://{}", dir.path().join("blobs").display()),
                ));
                None
            }
            Blobs::S3 => {
                let s3 = S3Server::start();
                env.extend([
                    (
                        "MAILFLEET_BLOB_URL".into(),
                        format!("s3://{}", S3Server::BUCKET),
                    ),
                    (
                        "MAILFLEET_S3_ENDPOINT".into(),
                        format!("http://127.0.0.1:{}", s3.port),
                    ),
                    ("MAILFLEET_S3_ACCESS_KEY".into(), S3Server::ACCESS.into()),
                    ("MAILFLEET_S3_SECRET_KEY".into(), S3Server::SECRET.into()),
                    ("MAILFLEET_S3_ALLOW_HTTP".into(), "true".into()),
                    // Small enough that the test's larger messages go multipart.
                    ("MAILFLEET_BLOB_INLINE_LIMIT".into(), "65536".into()),
                ]);
                Some(s3)
            }
        };
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let http_ports = [Svc::Mailstore, Svc::SmtpGateway, Svc::DeliveryWorker]
            .into_iter()
            .map(|s| (s, free_port()))
            .collect();
        let mut stack = Stack {
            _serial: serial,
            db,
            vhost,
            dir,
            smtp_port,
            grpc_port,
            http_ports,
            env,
            children: BTreeMap::new(),
            _s3: s3,
            admin_token,
        };
        stack.spawn(Svc::Mailstore);
        stack.wait_ready(Svc::Mailstore);
        stack.spawn(Svc::DeliveryWorker);
        stack.spawn(Svc::SmtpGateway);
        stack.wait_ready(Svc::DeliveryWorker);
        stack.wait_ready(Svc::SmtpGateway);
        stack.cli_ok(&["domain", "add", "example.test"]);
        for a in accounts {
            stack.cli_ok(&["account", "add", a, "--password", "secret-pw"]);
        }
        stack
    }

    fn log_path(&self, svc: Svc) -> PathBuf {
        self.dir.path().join(format!("{}.log", svc.name()))
    }

    /// Starts (or restarts) one service.
    pub fn spawn(&mut self, svc: Svc) {
        // Services beyond the three every stack runs get a port on first start.
        let http_port = *self.http_ports.entry(svc).or_insert_with(free_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(svc))
            .expect("log file");
        let child = Command::new(BIN)
            .args(["serve", svc.name()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dirs_home())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("MAILFLEET_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn mailfleet serve");
        self.children.insert(svc, child);
    }

    fn readyz(&self, svc: Svc) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.http_ports[&svc])) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 200")
    }

    /// The body of a GET of `path` on the service's HTTP port (`/metrics`).
    pub fn http_get(&self, svc: Svc, path: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_ports[&svc])).expect("HTTP port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("HTTP response");
        resp.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// Waits until the service answers /readyz with 200 (generous deadline).
    pub fn wait_ready(&mut self, svc: Svc) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.readyz(svc) {
                return;
            }
            if let Some(child) = self.children.get_mut(&svc)
                && let Ok(Some(status)) = child.try_wait()
            {
                {
                    panic!(
                        "{} exited with {status} before it was ready:\n{}",
                        svc.name(),
                        self.log(svc)
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 60 s:\n{}",
                svc.name(),
                self.log(svc)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self, svc: Svc) -> String {
        std::fs::read_to_string(self.log_path(svc)).unwrap_or_default()
    }

    /// The process id of a running service.
    pub fn pid(&self, svc: Svc) -> Option<u32> {
        self.children.get(&svc).map(Child::id)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self, svc: Svc) {
        if let Some(mut c) = self.children.remove(&svc) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for the process to exit; returns whether it exited
    /// successfully.
    pub fn stop(&mut self, svc: Svc) -> bool {
        self.terminate(svc);
        self.wait_exit(svc)
    }

    /// Sends SIGTERM without waiting (several services can drain at once).
    pub fn terminate(&self, svc: Svc) {
        if let Some(c) = self.children.get(&svc) {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// Waits for a service sent SIGTERM to exit (30 s at most, well above the
    /// stack's 5 s drain deadline); returns whether it exited successfully.
    pub fn wait_exit(&mut self, svc: Svc) -> bool {
        if let Some(mut c) = self.children.remove(&svc) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    return status.success();
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("{} did not stop within 30 s of SIGTERM", svc.name());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        false
    }

    /// Runs the mailfleet CLI against this stack.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env(
                "MAILFLEET_MAILSTORE_URL",
                format!("http://127.0.0.1:{}", self.grpc_port),
            )
            .env("MAILFLEET_ADMIN_TOKEN", &self.admin_token))
    }

    pub fn cli_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "mailfleet {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `mailfleet message list ADDR` as (uid, size, subject).
    pub fn messages(&self, addr: &str) -> Vec<(u32, u64, String)> {
        let out = self.cli_ok(&["message", "list", addr]);
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.splitn(3, ' ');
                let uid = parts
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("bad line {l:?}"));
                let size = parts
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("bad line {l:?}"));
                (uid, size, parts.next().unwrap_or_default().to_owned())
            })
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let svcs: Vec<Svc> = self.children.keys().copied().collect();
        for s in svcs {
            self.kill(s);
        }
        if std::thread::panicking() {
            for s in [
                Svc::Mailstore,
                Svc::SmtpGateway,
                Svc::DeliveryWorker,
                Svc::Pop3Frontend,
                Svc::ImapFrontend,
            ] {
                let log = self.log(s);
                let tail: String = log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                eprintln!("----- {} log (last 40 lines) -----\n{tail}", s.name());
            }
        }
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .output();
    }
}

/// One line of the load client's report.
#[derive(Debug, serde::Deserialize)]
pub struct Sent {
    pub i: u32,
    pub data_codes: Vec<serde_json::Value>,
    pub rcpt_codes: Vec<u64>,
    pub accepted: bool,
}

impl Sent {
    /// DATA attempts whose outcome the client could not know: a 4xx after
    /// the data was sent, or a connection lost before the reply (a string).
    /// RFC 5321 6.1: the message may have been stored anyway, so each such
    /// attempt may leave one copy besides the retry's.
    pub fn ambiguous_attempts(&self) -> usize {
        self.data_codes
            .iter()
            .filter(|c| c.as_u64().is_some_and(|c| (400..500).contains(&c)) || c.is_string())
            .count()
    }

    /// At most this many copies may be stored: one for the 250 the client
    /// saw (none without it), plus one per ambiguous attempt. A message
    /// that only ever saw 250 is stored exactly once.
    pub fn allowed_copies(&self) -> usize {
        usize::from(self.accepted) + self.ambiguous_attempts()
    }
}

pub fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/clients/smtp_load.py")
}

/// A running Python smtplib load client, its report read as it goes.
pub struct Load {
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
    pub reports: std::sync::Arc<Mutex<Vec<Sent>>>,
}

#[derive(Clone, Debug)]
pub struct LoadSpec<'a> {
    pub tag: &'a str,
    pub start: u32,
    pub count: u32,
    pub threads: u32,
    pub attempts: u32,
    pub pad_kib: u32,
    pub rcpts: &'a [&'a str],
}

impl Default for LoadSpec<'_> {
    fn default() -> Self {
        Self {
            tag: "e2e",
            start: 0,
            count: 100,
            threads: 8,
            attempts: 1,
            pad_kib: 0,
            rcpts: &[],
        }
    }
}

impl Load {
    pub fn start(port: u16, spec: &LoadSpec<'_>) -> Load {
        let mut cmd = Command::new("python3");
        cmd.arg(client_script())
            .args(["--port", &port.to_string()])
            .args(["--start", &spec.start.to_string()])
            .args(["--count", &spec.count.to_string()])
            .args(["--threads", &spec.threads.to_string()])
            .args(["--attempts", &spec.attempts.to_string()])
            .args(["--pad-kib", &spec.pad_kib.to_string()])
            .args(["--retry-pause", "0.3"])
            .args(["--tag", spec.tag]);
        for r in spec.rcpts {
            cmd.args(["--rcpt", r]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().expect("piped stdout");
        let reports = std::sync::Arc::new(Mutex::new(Vec::new()));
        let r = reports.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let sent: Sent = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad report line {line:?}: {e}"));
                r.lock().unwrap_or_else(|p| p.into_inner()).push(sent);
            }
        });
        Load {
            child,
            reader: Some(reader),
            reports,
        }
    }

    /// How many messages the client has finished with so far.
    pub fn done(&self) -> usize {
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits until at least `n` messages are finished (or the client ended).
    pub fn wait_done(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.done() < n {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            assert!(Instant::now() < deadline, "load client made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn finish(mut self) -> Vec<Sent> {
        let status = self.child.wait().expect("load client");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        assert!(status.success(), "load client failed");
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The exact bytes the client sent as message `i`.
pub fn expected_bytes(spec: &LoadSpec<'_>) -> BTreeMap<u32, Vec<u8>> {
    let out = run(Command::new("python3")
        .arg(client_script())
        .args(["--dump", "--port", "0", "--tag", spec.tag])
        .args(["--pad-kib", &spec.pad_kib.to_string()])
        .args([
            "--start",
            &spec.start.to_string(),
            "--count",
            &spec.count.to_string(),
        ]));
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("dump line");
            let i = v["i"].as_u64().expect("i") as u32;
            (
                i,
                hex::decode(v["hex"].as_str().expect("hex")).expect("hex"),
            )
        })
        .collect()
}

/// Splits the trace headers the system adds (Return-Path, Received) off a
/// stored message; returns (trace header lines, the rest).
pub fn split_trace_headers(stored: &[u8]) -> (Vec<String>, &[u8]) {
    let mut pos = 0;
    let mut trace = Vec::new();
    while pos < stored.len() {
        let end = stored[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| pos + p + 2)
            .unwrap_or(stored.len());
        let line = String::from_utf8_lossy(&stored[pos..end]).into_owned();
        let is_trace = line.starts_with("Return-Path:") || line.starts_with("Received:");
        let is_continuation = line.starts_with(' ') || line.starts_with('\t');
        if is_trace || (is_continuation && !trace.is_empty()) {
            if is_continuation {
                if let Some(last) = trace.last_mut() {
                    let last: &mut String = last;
                    last.push_str(&line);
                }
            } else {
                trace.push(line);
            }
            pos = end;
        } else {
            break;
        }
    }
    (trace, &stored[pos..])
}

/// A self-signed certificate for loopback and a free port for every listener
/// that TLS turns on (submission, IMAP, POP3 and their implicit-TLS ports),
/// so a stack with TLS never binds a well-known port.
pub struct TlsSetup {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    key: PathBuf,
    ports: BTreeMap<&'static str, u16>,
}

impl TlsSetup {
    const LISTENERS: [&'static str; 6] = [
        "SUBMISSION",
        "SUBMISSIONS",
        "IMAP",
        "IMAPS",
        "POP3",
        "POP3S",
    ];

    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) =
            mailfleet_runtime::tls::ensure_self_signed(dir.path(), &["localhost", "127.0.0.1"])
                .expect("self-signed certificate");
        let ports = Self::LISTENERS.iter().map(|l| (*l, free_port())).collect();
        Self {
            _dir: dir,
            cert,
            key,
            ports,
        }
    }

    /// The port of a listener, by its setting's middle part ("IMAPS").
    pub fn port(&self, listener: &str) -> u16 {
        self.ports[listener]
    }

    /// The settings: certificate, key and every listen address; `extra`
    /// settings are appended.
    pub fn env(&self, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "MAILFLEET_TLS_CERT".to_owned(),
                self.cert.display().to_string(),
            ),
            (
                "MAILFLEET_TLS_KEY".to_owned(),
                self.key.display().to_string(),
            ),
        ];
        env.extend(
            self.ports
                .iter()
                .map(|(l, p)| (format!("MAILFLEET_{l}_LISTEN"), format!("127.0.0.1:{p}"))),
        );
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    }
}

/// Borrows owned settings in the form `Stack::start` takes.
pub fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
