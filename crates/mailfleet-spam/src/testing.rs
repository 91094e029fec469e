//! A real rspamd for tests (feature `testing`): `deploy/rspamd/run` on free
//! loopback ports with its state in a temporary directory, the local Redis
//! for Bayes, and the extra GTUBE patterns on. [`TestRspamd::start`] waits
//! until `/ping` answers; dropping it stops rspamd.
//!
//! When `rspamd` is not installed, [`TestRspamd::available`] says so and the
//! caller skips, except under `CI` or `MAILFLEET_REQUIRE_RSPAMD`, where it
//! panics: a missing tool is a failure there, never a silent pass.

// Test scaffolding: a failure to set up is a test failure, said loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The classic GTUBE line: rspamd rejects a message containing it.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's test pattern for "add header" (RSPAMD_TEST_PATTERNS).
pub const GTUBE_ADD_HEADER: &str =
    "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's test pattern for "rewrite subject" (RSPAMD_TEST_PATTERNS).
pub const GTUBE_REWRITE_SUBJECT: &str =
    "ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Longest wait for rspamd to answer `/ping` after start (it compiles its
/// regular expressions first).
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct TestRspamd {
    child: Option<Child>,
    /// Scanner (`/checkv2`), e.g. `http://127.0.0.1:40001`.
    pub url: String,
    /// Controller (`/learnspam`, `/stat`).
    pub controller_url: String,
    controller: u16,
    /// The controller password, when started with one.
    pub password: Option<String>,
    _state: tempfile::TempDir,
    log: PathBuf,
}

impl TestRspamd {
    /// Whether rspamd is installed; panics when it is not but required.
    pub fn available() -> bool {
        let found = Command::new("rspamd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found
            && (std::env::var_os("CI").is_some()
                || std::env::var_os("MAILFLEET_REQUIRE_RSPAMD").is_some())
        {
            panic!("rspamd is not installed (apt-get install rspamd; ./test does it)");
        }
        if !found {
            eprintln!("skipped: rspamd is not installed");
        }
        found
    }

    /// Starts rspamd and waits for `/ping`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts rspamd whose controller wants `password` from everyone
    /// (loopback included: `secure_ip` is a TEST-NET address), so learning
    /// works only with the password.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> Self {
        let state = tempfile::Builder::new()
            .prefix("mf-rspamd-")
            .tempdir()
            .expect("a temporary directory");
        let normal = free_port();
        let controller = free_port();
        let log = state.path().join("rspamd.log");
        let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rspamd/run");
        let out = std::fs::File::create(&log).expect("the log file");
        let err = out.try_clone().expect("the log file");
        let mut command = Command::new(run);
        command
            .env("RSPAMD_STATE", state.path())
            .env("RSPAMD_NORMAL", format!("127.0.0.1:{normal}"))
            .env("RSPAMD_CONTROLLER", format!("127.0.0.1:{controller}"))
            .env("RSPAMD_TEST_PATTERNS", "true");
        if let Some(password) = password {
            command
                .env("RSPAMD_PASSWORD", password)
                .env("RSPAMD_SECURE_IP", "192.0.2.1");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("deploy/rspamd/run starts");
        let mut rspamd = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{normal}"),
            controller_url: format!("http://127.0.0.1:{controller}"),
            controller,
            password: password.map(str::to_owned),
            _state: state,
            log,
        };
        let until = Instant::now() + START_TIMEOUT;
        loop {
            if get(normal, "/ping", None)
                .is_some_and(|(status, body)| status == 200 && body.contains("pong"))
            {
                return rspamd;
            }
            if let Some(child) = &mut rspamd.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("rspamd exited ({status}) at start:\n{}", rspamd.log());
            }
            assert!(
                Instant::now() < until,
                "rspamd did not answer /ping within {START_TIMEOUT:?}:\n{}",
                rspamd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The controller's `learned` count (`/stat`).
    pub fn learned(&self) -> u64 {
        let (_, body) =
            get(self.controller, "/stat", self.password.as_deref()).expect("rspamd answers /stat");
        let stat: serde_json::Value = serde_json::from_str(&body).expect("/stat is JSON");
        stat["learned"].as_u64().unwrap_or(0)
    }

    /// rspamd's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops rspamd (SIGTERM) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let until = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() > until {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for TestRspamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A blocking HTTP/1.0 GET on loopback: status and body.
fn get(port: u16, path: &str, password: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = password.map_or(String::new(), |p| format!("Password: {p}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}
