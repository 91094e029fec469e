//! IMAP end to end: imap-frontend as its own process in front of the stack,
//! driven by Python's imaplib (plain on loopback, STARTTLS and implicit TLS),
//! raw sockets for IDLE and bad input, and messages delivered over SMTP.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Blobs, Stack, Svc, TlsSetup, env_refs, run};

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "secret-pw";

struct ImapStack {
    stack: Stack,
    imap: u16,
    imaps: u16,
    cert: std::path::PathBuf,
    _tls: TlsSetup,
}

fn start() -> ImapStack {
    let tls = TlsSetup::new();
    let (imap, imaps) = (tls.port("IMAP"), tls.port("IMAPS"));
    let cert = tls.cert.clone();
    let env = tls.env(&[]);
    let env_ref = env_refs(&env);
    let mut stack = Stack::start(Blobs::Local, &[ALICE], &env_ref);
    stack.spawn(Svc::ImapFrontend);
    stack.wait_ready(Svc::ImapFrontend);
    ImapStack {
        stack,
        imap,
        imaps,
        cert,
        _tls: tls,
    }
}

#[test]
fn imap_mailboxes_append_fetch_store_copy_move_search() {
    let s = start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/clients/imap_suite.py"
    );
    let out = run(Command::new("python3")
        .arg(script)
        .arg(s.imap.to_string())
        .arg(s.imaps.to_string())
        .arg(&s.cert)
        .arg(ALICE)
        .arg(PASSWORD)
        .arg(s.stack.smtp_port.to_string()));
    assert!(
        out.status.success(),
        "imap_suite.py failed: {}\nimap-frontend log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.stack.log(Svc::ImapFrontend)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// A raw IMAP connection for IDLE and bad input.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
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

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    fn send(&mut self, data: &[u8]) {
        self.writer.write_all(data).unwrap();
    }

    /// Sends a command and reads up to its tagged reply; returns every line.
    fn cmd(&mut self, tag: &str, line: &str) -> Vec<String> {
        self.send(format!("{tag} {line}\r\n").as_bytes());
        self.until(tag)
    }

    fn until(&mut self, tag: &str) -> Vec<String> {
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
}

#[test]
fn imap_idle_and_noop_see_other_sessions() {
    let s = start();
    let mut a = Raw::connect(s.imap);
    assert!(
        a.cmd("a1", &format!("LOGIN {ALICE} {PASSWORD}"))
            .last()
            .unwrap()
            .starts_with("a1 OK")
    );
    let sel = a.cmd("a2", "SELECT INBOX");
    assert!(sel.iter().any(|l| l == "* 0 EXISTS\r\n"), "{sel:?}");
    let mut b = Raw::connect(s.imap);
    assert!(
        b.cmd("b1", &format!("LOGIN {ALICE} {PASSWORD}"))
            .last()
            .unwrap()
            .starts_with("b1 OK")
    );
    assert!(
        b.cmd("b2", "SELECT INBOX")
            .last()
            .unwrap()
            .starts_with("b2 OK")
    );

    // IDLE in A; APPEND in B shows up as EXISTS in A.
    a.send(b"a3 IDLE\r\n");
    assert!(a.line().starts_with("+ "));
    b.send(b"b3 APPEND INBOX {14}\r\n");
    assert!(b.line().starts_with("+ "));
    b.send(b"Subject: x\r\n\r\n\r\n");
    let appended = b.until("b3");
    assert!(
        appended.last().unwrap().starts_with("b3 OK [APPENDUID "),
        "{appended:?}"
    );
    // B appended to the mailbox it has selected: it learns of the message
    // in the APPEND response and takes its \Recent (RFC 3501: the first
    // session notified of it); A sees it without.
    assert_eq!(appended[..2], ["* 1 EXISTS\r\n", "* 1 RECENT\r\n"]);
    assert_eq!(a.line(), "* 1 EXISTS\r\n");
    assert_eq!(a.line(), "* 0 RECENT\r\n");
    // A flag change by B is pushed as FETCH.
    b.cmd("b4", "NOOP");
    let stored = b.cmd("b5", "STORE 1 +FLAGS (\\Deleted)");
    // The flags B shows include its own \Recent; A's do not.
    assert!(
        stored[0].starts_with("* 1 FETCH (FLAGS (\\Deleted \\Recent))"),
        "{stored:?}"
    );
    let l = a.line();
    assert!(l.starts_with("* 1 FETCH (UID 1 FLAGS (\\Deleted))"), "{l}");
    a.send(b"DONE\r\n");
    assert!(a.until("a3").last().unwrap().starts_with("a3 OK"));

    // An expunge by B reaches A at its NOOP; FETCH does not announce it
    // (RFC 3501 7.4.1). Ordered, not timed: B's EXPUNGE has completed
    // before A's FETCH is sent, and A's FETCH already reports B's APPEND
    // made before it (so A had caught up with B); the NOOP that follows
    // must then carry the EXPUNGE.
    b.cmd("b6", "APPEND INBOX {14+}\r\nSubject: y\r\n\r\n");
    let e = b.cmd("b7", "EXPUNGE");
    assert!(e.iter().any(|l| l == "* 1 EXPUNGE\r\n"), "{e:?}");
    let f = a.cmd("a4", "FETCH 1 (FLAGS)");
    assert!(f.iter().any(|l| l == "* 2 EXISTS\r\n"), "{f:?}");
    assert!(!f.iter().any(|l| l.contains("EXPUNGE")), "{f:?}");
    let n = a.cmd("a5", "NOOP");
    assert!(n.iter().any(|l| l == "* 1 EXPUNGE\r\n"), "{n:?}");
    assert!(
        f.iter().chain(&n).any(|l| l == "* 2 EXISTS\r\n"),
        "{f:?} {n:?}"
    );
    let u = a.cmd("a6", "UID FETCH 1:* (UID)");
    assert!(u.iter().any(|l| l == "* 1 FETCH (UID 2)\r\n"), "{u:?}");
    a.cmd("a7", "LOGOUT");
}

#[test]
fn imap_bad_input_gets_bad_and_the_session_goes_on() {
    let s = start();
    let mut c = Raw::connect(s.imap);
    c.send(b"\r\n");
    assert!(c.line().starts_with("* BAD"));
    assert!(
        c.cmd("t1", "FROBNICATE")
            .last()
            .unwrap()
            .starts_with("t1 BAD")
    );
    assert!(
        c.cmd("t2", "SELECT INBOX")
            .last()
            .unwrap()
            .starts_with("t2 BAD")
    );
    assert!(
        c.cmd("t3", "LOGIN (a b")
            .last()
            .unwrap()
            .starts_with("t3 BAD")
    );
    // Over the 64 KiB command bound (MAILFLEET_IMAP_MAX_LINE_LENGTH).
    let long = "x".repeat(100_000);
    c.send(format!("t4 NOOP {long}\r\n").as_bytes());
    assert!(c.line().starts_with("* BAD"));
    c.send(b"t5 APPEND INBOX {999999999}\r\n");
    let l = c.line();
    assert!(l.starts_with("t5 NO [TOOBIG]"), "{l}");
    assert!(
        c.cmd("t6", &format!("LOGIN {ALICE} {PASSWORD}"))
            .last()
            .unwrap()
            .starts_with("t6 OK")
    );
    assert!(
        c.cmd("t7", "SELECT INBOX")
            .last()
            .unwrap()
            .starts_with("t7 OK")
    );
    assert!(
        c.cmd("t8", "FETCH x:y FLAGS")
            .last()
            .unwrap()
            .starts_with("t8 BAD")
    );
    assert!(
        c.cmd("t9", "UID EXPUNGE nope")
            .last()
            .unwrap()
            .starts_with("t9 BAD")
    );
    // Many pipelined commands are all answered, in order.
    let mut batch = String::new();
    for i in 0..500 {
        batch.push_str(&format!("p{i} NOOP\r\n"));
    }
    c.send(batch.as_bytes());
    let lines = c.until("p499");
    assert_eq!(lines.iter().filter(|l| l.contains(" OK ")).count(), 500);
    assert!(c.cmd("t10", "ID NIL").last().unwrap().starts_with("t10 OK"));
    let bye = c.cmd("t11", "LOGOUT");
    assert!(bye[0].starts_with("* BYE"), "{bye:?}");
    // Another session is unaffected.
    let mut d = Raw::connect(s.imap);
    assert!(
        d.cmd("u1", "CAPABILITY")
            .last()
            .unwrap()
            .starts_with("u1 OK")
    );
}

/// Runs `tests/e2e/clients/<script>` (port, user, password) against a
/// fresh stack; it must print "ok".
fn run_client_script(script: &str) {
    let s = start();
    let path = format!(
        "{}/../../tests/e2e/clients/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = run(Command::new("python3")
        .arg(path)
        .arg(s.imap.to_string())
        .arg(ALICE)
        .arg(PASSWORD));
    assert!(
        out.status.success(),
        "{script} failed: {}\nimap-frontend log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.stack.log(Svc::ImapFrontend)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// CONDSTORE and QRESYNC (RFC 7162) against the real services: a client's
/// resync after another session's flag changes and expunges.
#[test]
fn imap_condstore_qresync_resync() {
    run_client_script("imap_condstore.py");
}

/// SORT/THREAD, \Recent in one of two sessions and ENABLE IMAP4rev2 against
/// imap-frontend and mailstore as their own processes.
#[test]
fn imap_sort_thread_recent_and_rev2() {
    run_client_script("imap_sort.py");
}
