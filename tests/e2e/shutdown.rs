//! Graceful shutdown: SIGTERM while SMTP, IMAP and POP3 sessions are open and
//! mail is flowing. Every session is told it is over in its protocol (SMTP
//! 421, IMAP `* BYE`, POP3 `-ERR`), a transaction in DATA is answered (250 or
//! 4xx, never silence), the processes exit 0, and after the whole stack has
//! been restarted every message answered 250 is in its mailbox exactly once.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Blobs, Load, LoadSpec, Stack, Svc, TlsSetup, env_refs};
use crate::verify::{assert_exactly_once, copies};

const LOAD_ACCOUNTS: [&str; 2] = ["dora@example.test", "erik@example.test"];
const IMAP_USER: &str = "ivy@example.test";
const POP3_USER: &str = "pat@example.test";
const PASSWORD: &str = "secret-pw";

fn script() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/clients/shutdown_sessions.py"
    )
    .to_owned()
}

/// Sends one message to `rcpt` with smtplib and waits until it is stored.
fn seed(stack: &Stack, rcpt: &str) {
    let code = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {})\n\
         s.sendmail('sender@remote.test', ['{rcpt}'], b'Subject: seed message 0\\r\\n\\r\\nhello\\r\\n')\n\
         s.quit()\n",
        stack.smtp_port
    );
    let out = crate::harness::run(Command::new("python3").arg("-c").arg(code));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.messages(rcpt).is_empty() {
        assert!(
            Instant::now() < deadline,
            "seed message for {rcpt} not stored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reply_code(reply: &serde_json::Value) -> Option<u16> {
    reply.as_str()?.get(..3)?.parse().ok()
}

#[test]
fn sigterm_with_open_sessions_and_mail_flowing() {
    let tls = TlsSetup::new();
    let (imaps, pop3s) = (tls.port("IMAPS"), tls.port("POP3S"));
    let env = tls.env(&[]);
    let mut stack = Stack::start(
        Blobs::Local,
        &[LOAD_ACCOUNTS[0], LOAD_ACCOUNTS[1], IMAP_USER, POP3_USER],
        &env_refs(&env),
    );
    stack.spawn(Svc::ImapFrontend);
    stack.spawn(Svc::Pop3Frontend);
    stack.wait_ready(Svc::ImapFrontend);
    stack.wait_ready(Svc::Pop3Frontend);
    seed(&stack, IMAP_USER);
    seed(&stack, POP3_USER);

    // Mail keeps flowing through every stop and restart below; the client
    // retries 4xx and refused connections like an MTA.
    let spec = LoadSpec {
        tag: "shutdownload",
        count: 1500,
        threads: 4,
        attempts: 400,
        rcpts: &LOAD_ACCOUNTS,
        ..LoadSpec::default()
    };
    let mut load = Load::start(stack.smtp_port, &spec);
    load.wait_done(20);

    let mut sessions = Command::new("python3")
        .arg(script())
        .args([
            stack.smtp_port.to_string(),
            imaps.to_string(),
            pop3s.to_string(),
        ])
        .args([IMAP_USER, POP3_USER, PASSWORD, LOAD_ACCOUNTS[0]])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut stdout = BufReader::new(sessions.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("READY line");
    assert_eq!(line.trim(), "READY", "the sessions did not open");

    let frontends = [Svc::SmtpGateway, Svc::ImapFrontend, Svc::Pop3Frontend];
    for svc in frontends {
        stack.terminate(svc);
    }
    let mut stdin = sessions.stdin.take().expect("stdin");
    stdin.write_all(b"GO\n").expect("GO");
    drop(stdin);
    line.clear();
    stdout.read_line(&mut line).expect("result line");
    assert!(sessions.wait().expect("python3").success());
    let seen: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad result {line:?}: {e}"));
    eprintln!("sessions saw: {seen:#}");
    for svc in frontends {
        assert!(
            stack.wait_exit(svc),
            "{svc:?} did not exit 0 after SIGTERM:\n{}",
            stack.log(svc)
        );
    }

    // SMTP: the waiting transaction is told to come back later.
    assert!(
        seen["smtp_idle"]
            .as_str()
            .is_some_and(|r| r.starts_with("421 4.3.2")),
        "idle SMTP session: {}",
        seen["smtp_idle"]
    );
    // The transaction in DATA finishes (250, then 421 at the next command)
    // or is answered 4xx; never a dropped connection.
    let data = reply_code(&seen["smtp_data"]);
    assert!(
        data == Some(250) || data.is_some_and(|c| (400..500).contains(&c)),
        "SMTP transaction in DATA: {}",
        seen["smtp_data"]
    );
    if data == Some(250) {
        assert!(
            seen["smtp_data_after"]
                .as_str()
                .is_some_and(|r| r.starts_with("421 4.3.2")),
            "after the 250: {}",
            seen["smtp_data_after"]
        );
    }
    // A client that stops sending inside DATA gets its 421 when the drain
    // deadline runs out.
    assert!(
        seen["smtp_stalled"]
            .as_str()
            .is_some_and(|r| r.starts_with("421 4.3.2")),
        "stalled SMTP transaction in DATA: {}",
        seen["smtp_stalled"]
    );
    // IMAP: selected and idling sessions both get an untagged BYE, then EOF.
    for key in ["imap_selected", "imap_idle"] {
        assert!(
            seen[key].as_str().is_some_and(|r| r.starts_with("* BYE")),
            "{key}: {}",
            seen[key]
        );
        assert_eq!(seen[format!("{key}_after")], "", "{key}: closed after BYE");
    }
    // POP3: -ERR, the connection closes, and the DELE was not committed
    // (RFC 1939 6: no UPDATE state without QUIT).
    assert!(
        seen["pop3"].as_str().is_some_and(|r| r.starts_with("-ERR")),
        "POP3 session: {}",
        seen["pop3"]
    );
    assert_eq!(seen["pop3_after"], "", "POP3 connection closed after -ERR");

    // Back up, then the back end: delivery-worker and mailstore drain too.
    stack.spawn(Svc::SmtpGateway);
    stack.wait_ready(Svc::SmtpGateway);
    load.wait_done(load.done() + 20);
    assert!(
        stack.stop(Svc::DeliveryWorker),
        "delivery-worker did not exit 0 after SIGTERM:\n{}",
        stack.log(Svc::DeliveryWorker)
    );
    stack.spawn(Svc::DeliveryWorker);
    stack.wait_ready(Svc::DeliveryWorker);
    load.wait_done(load.done() + 20);
    assert!(
        stack.stop(Svc::Mailstore),
        "mailstore did not exit 0 after SIGTERM:\n{}",
        stack.log(Svc::Mailstore)
    );
    stack.spawn(Svc::Mailstore);
    stack.wait_ready(Svc::Mailstore);
    stack.spawn(Svc::ImapFrontend);
    stack.spawn(Svc::Pop3Frontend);
    stack.wait_ready(Svc::ImapFrontend);
    stack.wait_ready(Svc::Pop3Frontend);

    let reports = load.finish();
    assert!(
        reports.iter().all(|s| s.accepted),
        "every load message is accepted once the stack is back"
    );
    assert_exactly_once(&stack, &LOAD_ACCOUNTS, &reports, spec.tag);

    // The in-DATA transaction: stored once if it got its 250; the stalled
    // one, never finished, not at all.
    let data_copies = copies(&stack, LOAD_ACCOUNTS[0], "shutdowndata")
        .get(&0)
        .copied()
        .unwrap_or(0);
    if data == Some(250) {
        assert_eq!(data_copies, 1, "the message answered 250 in DATA");
    } else {
        assert!(data_copies <= 1, "a 4xx message stored {data_copies} times");
    }
    assert!(
        copies(&stack, LOAD_ACCOUNTS[0], "shutdownstall").is_empty(),
        "a message whose DATA never ended was stored"
    );
    // The POP3 session's DELE did not take effect.
    let before = seen["pop3_messages_before"].as_u64().expect("count") as usize;
    assert_eq!(
        stack.messages(POP3_USER).len(),
        before,
        "a DELE without QUIT removed a message"
    );
}
