//! `mailfleet dev` and its children: a dev stack whose parent is SIGKILLed
//! must not leave its five `mailfleet serve …` processes running (they would
//! hold the dev ports, and the next `mailfleet dev` could not start).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{BIN, free_port, rabbitmqctl, unique};

/// A process as /proc knows it: its PID and start time, so a reused PID is
/// not taken for the same process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: u64,
}

/// (parent PID, state, start time) from /proc/PID/stat; None once it is gone.
fn stat(pid: u32) -> Option<(u32, char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields after
    // the last ')' are "state ppid pgrp … starttime" (field 22).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, state, start))
}

fn children_of(parent: u32) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (ppid, _, start) = stat(pid)?;
            (ppid == parent).then_some(Proc { pid, start })
        })
        .collect()
}

/// Still running: present, the same process, and not a zombie waiting for
/// whoever adopted it to reap it.
fn alive(p: Proc) -> bool {
    stat(p.pid).is_some_and(|(_, state, start)| start == p.start && state != 'Z' && state != 'X')
}

/// Kills whatever is left on drop, so a failing test does not leave a stack.
struct Cleanup {
    dev: Child,
    children: Vec<Proc>,
    db: String,
    vhost: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.dev.kill();
        let _ = self.dev.wait();
        for p in self.children.iter().filter(|p| alive(**p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &p.pid.to_string()])
                .output();
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

/// A `--port-offset` whose five HTTP ports (9101..=9105 plus the offset)
/// are free now; every other address is set through the environment. The
/// offset stays below 10 000 (the gRPC default 50051 must not pass 65535)
/// and the HTTP ports below the harness's span (20 000 and up).
fn free_offset() -> u16 {
    let start = (std::process::id() % 1000) as u16 * 7;
    (0..1000u16)
        .map(|i| 1_000 + (start + i * 9) % 9_000)
        .find(|&o| (9101..=9105).all(|p| std::net::TcpListener::bind(("127.0.0.1", p + o)).is_ok()))
        .expect("a free port offset")
}

#[test]
fn children_of_a_sigkilled_dev_stop() {
    let _serial = crate::harness::serial();
    let home = tempfile::tempdir().expect("temp dir");
    let db = unique("mf_e2e_dev");
    let vhost = unique("mf_e2e_dev");
    rabbitmqctl(&["add_vhost", &vhost]);
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    let grpc = free_port();
    let listen = |p: u16| format!("127.0.0.1:{p}");
    let log = std::fs::File::create(home.path().join("dev.log")).expect("log file");
    let dev = Command::new(BIN)
        .args(["dev", "--port-offset", &free_offset().to_string()])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env(
            "MAILFLEET_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{db}"),
        )
        .env(
            "MAILFLEET_AMQP_URL",
            format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"),
        )
        .env("MAILFLEET_GRPC_LISTEN", listen(grpc))
        .env(
            "MAILFLEET_MAILSTORE_URL",
            format!("http://127.0.0.1:{grpc}"),
        )
        .env("MAILFLEET_SMTP_LISTEN", listen(free_port()))
        .env("MAILFLEET_SUBMISSION_LISTEN", listen(free_port()))
        .env("MAILFLEET_SUBMISSIONS_LISTEN", listen(free_port()))
        .env("MAILFLEET_IMAP_LISTEN", listen(free_port()))
        .env("MAILFLEET_IMAPS_LISTEN", listen(free_port()))
        .env("MAILFLEET_POP3_LISTEN", listen(free_port()))
        .env("MAILFLEET_POP3S_LISTEN", listen(free_port()))
        .env("MAILFLEET_SHUTDOWN_GRACE", "5s")
        .env("MAILFLEET_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn mailfleet dev");
    let dev_pid = dev.id();
    let mut cleanup = Cleanup {
        dev,
        children: Vec::new(),
        db,
        vhost,
    };
    let dev_log = || std::fs::read_to_string(home.path().join("dev.log")).unwrap_or_default();

    // Ready once the summary is printed: every child answered /readyz.
    let stdout = cleanup.dev.stdout.take().expect("dev stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("mailfleet dev is ready") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        panic!("mailfleet dev did not become ready:\n{}", dev_log());
    }

    cleanup.children = children_of(dev_pid);
    assert_eq!(
        cleanup.children.len(),
        5,
        "dev runs one child per service: {:?}",
        cleanup.children
    );

    cleanup.dev.kill().expect("SIGKILL mailfleet dev");
    cleanup.dev.wait().expect("reap mailfleet dev");

    // Bounded only so that a regression fails instead of hanging: the
    // children stop within their shutdown grace (5 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<Proc> = cleanup
            .children
            .iter()
            .copied()
            .filter(|p| alive(*p))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "children of the SIGKILLed dev still run: {left:?}\n{}",
            dev_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
