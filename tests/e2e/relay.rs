//! Remote relay end to end: alice submits one message (SMTP submission,
//! STARTTLS + AUTH, Python smtplib) to local and remote recipients; the
//! remote domains are routed (`MAILFLEET_RELAY_ROUTES`) to small SMTP peers
//! written for this test, on loopback:
//!
//! - `ok@remote.test` is accepted: it arrives once, DKIM-signed for
//!   example.test (verified here with mail-auth against the key that
//!   `mailfleet domain dns` prints), without a Return-Path;
//! - `greylist@remote.test` gets 451 first, then 250: it arrives once, after
//!   a retry through the retry queue;
//! - `reject@remote.test` gets 550 5.1.1: alice receives a DSN naming it;
//! - `bob@down.test` goes to a peer that only starts listening a few seconds
//!   later: it arrives once when the peer is up;
//! - `x@never.test` goes to a peer that never comes: `mailfleet queue list`
//!   shows it deferred, and when the (short) lifetime is over alice gets a
//!   DSN naming it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Blobs, Stack, Svc, TlsSetup, env_refs, free_port};

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "secret-pw";

/// One message a peer accepted.
#[derive(Clone, Debug)]
struct Got {
    rcpts: Vec<String>,
    data: Vec<u8>,
}

#[derive(Default)]
struct PeerState {
    got: Mutex<Vec<Got>>,
    /// Pause before answering the end of data (a slow remote).
    data_delay_ms: std::sync::atomic::AtomicU64,
    /// Sessions between 354 and their final reply.
    in_data: std::sync::atomic::AtomicUsize,
    /// RCPT attempts per address (greylisting answers 451 to the first).
    tries: Mutex<HashMap<String, u32>>,
}

/// A minimal SMTP server: PIPELINING-safe (answers line by line, in order),
/// scripted by the recipient's local part.
struct Peer {
    state: Arc<PeerState>,
}

impl Peer {
    fn start(listener: TcpListener) -> Peer {
        let state = Arc::new(PeerState::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = session(conn, &state);
                });
            }
        });
        Peer { state }
    }

    fn received(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    fn copies_for(&self, rcpt: &str) -> Vec<Got> {
        self.received()
            .into_iter()
            .filter(|g| g.rcpts.iter().any(|r| r == rcpt))
            .collect()
    }
}

fn session(conn: TcpStream, state: &PeerState) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    out.write_all(b"220 peer.test ESMTP test peer\r\n")?;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let arg = |prefix: &str| {
            line[prefix.len()..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        if upper.starts_with("EHLO") {
            out.write_all(
                b"250-peer.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n",
            )?;
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            out.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            rcpts.clear();
            out.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = arg("RCPT TO:");
            let tries = {
                let mut t = state.tries.lock().unwrap();
                let n = t.entry(rcpt.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if rcpt.starts_with("reject") {
                out.write_all(b"550 5.1.1 no such user here\r\n")?;
            } else if rcpt.starts_with("greylist") && tries == 1 {
                out.write_all(b"451 4.7.1 greylisted, come back later\r\n")?;
            } else {
                rcpts.push(rcpt);
                out.write_all(b"250 2.1.5 ok\r\n")?;
            }
        } else if upper.starts_with("DATA") {
            if rcpts.is_empty() {
                out.write_all(b"554 5.5.1 no valid recipients\r\n")?;
                continue;
            }
            out.write_all(b"354 go ahead\r\n")?;
            state
                .in_data
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if reader.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                    state
                        .in_data
                        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            let delay = state
                .data_delay_ms
                .load(std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(delay));
            state.got.lock().unwrap().push(Got {
                rcpts: std::mem::take(&mut rcpts),
                data,
            });
            state
                .in_data
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            out.write_all(b"250 2.0.0 queued\r\n")?;
        } else if upper.starts_with("RSET") {
            rcpts.clear();
            out.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"500 5.5.2 what?\r\n")?;
        }
    }
}

/// Polls `f` until it returns `Some`, failing with `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SEND: &str = r#"
import smtplib, ssl, sys
port, user, password, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")
msg = sys.stdin.buffer.read()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.starttls(context=ctx)
s.login(user, password)
refused = s.sendmail(user, rcpts, msg)
assert not refused, refused
s.quit()
"#;

fn submit(port: u16, rcpts: &[&str], message: &str) {
    let args = [
        port.to_string(),
        ALICE.into(),
        PASSWORD.into(),
        rcpts.join(","),
    ];
    python_with_stdin(SEND, &args, message, "submission");
}

/// Runs a Python client script with `args`, `message` on its stdin, and
/// fails the test with its stderr when it fails.
fn python_with_stdin(script: &str, args: &[String], message: &str, what: &str) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The DSNs in alice's mailbox, as text.
fn dsns(stack: &Stack) -> Vec<String> {
    stack
        .messages(ALICE)
        .into_iter()
        .filter(|(_, _, subject)| subject.contains("Undelivered Mail"))
        .map(|(uid, _, _)| {
            String::from_utf8_lossy(&stack.cli_ok(&["message", "get", ALICE, &uid.to_string()]))
                .into_owned()
        })
        .collect()
}

/// The DKIM record `mailfleet domain dns` prints: (name, TXT value).
fn dkim_record(stack: &Stack) -> (String, String) {
    let out = String::from_utf8(stack.cli_ok(&["domain", "dns", "example.test"])).unwrap();
    for want in [
        "IN MX 10 mail.example.test.",
        "v=spf1",
        "_dmarc.example.test.",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let line = out
        .lines()
        .find(|l| l.contains("._domainkey.example.test."))
        .unwrap_or_else(|| panic!("no DKIM record in:\n{out}"));
    let name = line.split_whitespace().next().unwrap().to_owned();
    // Zone-file strings ("..." "...") joined back into one value.
    let value: String = line
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat();
    assert!(value.starts_with("v=DKIM1; k=rsa; p="), "{value}");
    (name, value)
}

struct Txts(Mutex<HashMap<Box<str>, mail_auth::Txt>>);

impl mail_auth::ResolverCache<Box<str>, mail_auth::Txt> for Txts {
    fn get<Q>(&self, name: &Q) -> Option<mail_auth::Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<mail_auth::Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: Box<str>, value: mail_auth::Txt, _: std::time::Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// Verifies the message's DKIM signature against the published record.
fn assert_dkim_pass(message: &[u8], record: &(String, String)) {
    use mail_auth::common::parse::TxtRecordParser;
    let key = mail_auth::common::verify::DomainKey::parse(record.1.as_bytes()).unwrap();
    let txts = Txts(Mutex::new(HashMap::from([(
        record.0.to_ascii_lowercase().into_boxed_str(),
        mail_auth::Txt::from(key),
    )])));
    let parsed = mail_auth::AuthenticatedMessage::parse(message).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        // The cache answers; the resolver is never asked.
        let auth = mail_auth::MessageAuthenticator::new_cloudflare().unwrap();
        auth.verify_dkim(mail_auth::Parameters::new(&parsed).with_txt_cache(&txts))
            .await
            .into_iter()
            .map(|o| o.result().clone())
            .collect::<Vec<_>>()
    });
    assert!(
        results.contains(&mail_auth::DkimResult::Pass),
        "DKIM did not pass: {results:?}\n{}",
        String::from_utf8_lossy(message)
    );
}

#[test]
fn relay_retries_bounces_and_dkim() {
    let tls = TlsSetup::new();
    let peer_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_port = peer_listener.local_addr().unwrap().port();
    let peer = Peer::start(peer_listener);
    let late_port = free_port();
    let never_port = free_port();
    let submission = tls.port("SUBMISSION");
    let routes = format!(
        "remote.test=127.0.0.1:{peer_port},down.test=127.0.0.1:{late_port},never.test=127.0.0.1:{never_port}"
    );
    let env = tls.env(&[
        ("MAILFLEET_RELAY_ROUTES", routes),
        ("MAILFLEET_RETRY_SCHEDULE", "1s,2s".into()),
        ("MAILFLEET_DELIVERY_LIFETIME", "12s".into()),
        // DKIM keys sealed at rest: signing still works through the seal.
        (
            "MAILFLEET_DKIM_KEY_SECRET",
            "e2e-dkim-secret-0123456789abcdef0123456789".into(),
        ),
        ("MAILFLEET_RELAY_TIMEOUT", "10s".into()),
    ]);
    let env_ref = env_refs(&env);
    let stack = Stack::start(Blobs::Local, &[ALICE], &env_ref);
    let record = dkim_record(&stack);

    let message = "From: Alice <alice@example.test>\r\n\
                   To: ok@remote.test, greylist@remote.test, reject@remote.test\r\n\
                   Cc: bob@down.test, x@never.test\r\n\
                   Subject: relay test\r\n\
                   Date: Thu, 26 Nov 2026 08:00:00 +0000\r\n\
                   Message-ID: <relay-1@example.test>\r\n\
                   \r\n\
                   Hello, remote world.\r\n\
                   .A line that starts with a dot.\r\n";
    submit(
        submission,
        &[
            "ok@remote.test",
            "greylist@remote.test",
            "reject@remote.test",
            "bob@down.test",
            "x@never.test",
        ],
        message,
    );
    let worker_log = || stack.log(Svc::DeliveryWorker);

    // Accepted at once, signed, no Return-Path, body intact.
    let ok = wait_for("ok@remote.test", Duration::from_secs(30), || {
        peer.copies_for("ok@remote.test").pop()
    });
    let text = String::from_utf8_lossy(&ok.data).into_owned();
    assert!(text.starts_with("DKIM-Signature:"), "{text}");
    assert!(!text.contains("Return-Path:"), "{text}");
    assert!(
        text.contains("\r\n.A line that starts with a dot.\r\n"),
        "{text}"
    );
    assert_dkim_pass(&ok.data, &record);

    // The rejected recipient bounces at once; the DSN names it.
    let first = wait_for("the DSN for reject@", Duration::from_secs(30), || {
        dsns(&stack).pop()
    });
    assert!(
        first.contains("Final-Recipient: rfc822; reject@remote.test"),
        "{first}"
    );
    assert!(first.contains("Status: 5.1.1"), "{first}");
    assert!(first.contains("Action: failed"), "{first}");
    assert!(!first.contains("x@never.test\r\nAction"), "{first}");

    // Deferred recipients are listed for the operator.
    let listed = wait_for(
        "the deferred job in queue list",
        Duration::from_secs(10),
        || {
            let out = String::from_utf8(stack.cli_ok(&["queue", "list"])).unwrap();
            out.contains("x@never.test").then_some(out)
        },
    );
    let job_id = listed.split_whitespace().next().unwrap().to_owned();
    let shown = String::from_utf8(stack.cli_ok(&["queue", "show", &job_id])).unwrap();
    assert!(
        shown.contains("sender:        <alice@example.test>"),
        "{shown}"
    );

    // Greylisted: delivered after a retry, once.
    wait_for("greylist@remote.test", Duration::from_secs(30), || {
        (!peer.copies_for("greylist@remote.test").is_empty()).then_some(())
    });

    // The late peer comes up once an attempt to it has failed (its
    // recipient is listed as deferred); its recipient arrives.
    wait_for(
        "bob@down.test deferred in queue list",
        Duration::from_secs(30),
        || {
            String::from_utf8(stack.cli_ok(&["queue", "list"]))
                .unwrap()
                .contains("bob@down.test")
                .then_some(())
        },
    );
    let late = Peer::start(TcpListener::bind(("127.0.0.1", late_port)).unwrap());
    wait_for(
        "bob@down.test after the peer came up",
        Duration::from_secs(30),
        || (!late.copies_for("bob@down.test").is_empty()).then_some(()),
    );

    // The lifetime runs out for x@never.test: a second DSN names it.
    let expired = wait_for("the lifetime DSN", Duration::from_secs(60), || {
        dsns(&stack)
            .into_iter()
            .find(|d| d.contains("Final-Recipient: rfc822; x@never.test"))
    });
    assert!(expired.contains("Action: failed"), "{expired}");
    assert!(expired.contains("Status: 4.4.7"), "{expired}");
    assert!(
        !expired.contains("Final-Recipient: rfc822; reject@remote.test"),
        "{expired}"
    );

    // Nothing left deferred; every remote copy arrived exactly once.
    wait_for("an empty queue", Duration::from_secs(10), || {
        let out = String::from_utf8(stack.cli_ok(&["queue", "list"])).unwrap();
        out.trim().is_empty().then_some(())
    });
    for rcpt in ["ok@remote.test", "greylist@remote.test"] {
        assert_eq!(peer.copies_for(rcpt).len(), 1, "{rcpt}\n{}", worker_log());
    }
    assert!(peer.copies_for("reject@remote.test").is_empty());
    assert_eq!(late.copies_for("bob@down.test").len(), 1);
    assert_eq!(dsns(&stack).len(), 2, "{}", worker_log());
}

const SEND_MANY: &str = r#"
import smtplib, ssl, sys
port, user, password, rcpt, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.starttls(context=ctx)
s.login(user, password)
for i in range(n):
    msg = (f"From: alice@example.test\r\nTo: {rcpt}\r\nSubject: crash {i}\r\n"
           f"Message-ID: <crash-{i}@example.test>\r\n\r\nbody {i}\r\n").encode()
    refused = s.sendmail(user, [rcpt], msg)
    assert not refused, refused
s.quit()
"#;

fn message_id(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// delivery-worker is killed (SIGKILL) while it relays to a slow peer and
/// started again: every message arrives; a message arrives twice only if the
/// peer had accepted it before the kill (its 250 or our ack was lost with
/// the process: the RFC 5321 6.1 duplicate).
#[test]
fn relay_survives_a_worker_crash() {
    let tls = TlsSetup::new();
    let peer_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_port = peer_listener.local_addr().unwrap().port();
    let peer = Peer::start(peer_listener);
    peer.state
        .data_delay_ms
        .store(200, std::sync::atomic::Ordering::SeqCst);
    let submission = tls.port("SUBMISSION");
    let env = tls.env(&[
        ("MAILFLEET_RELAY_ROUTES", format!("*=127.0.0.1:{peer_port}")),
        ("MAILFLEET_RETRY_SCHEDULE", "1s".into()),
    ]);
    let env_ref = env_refs(&env);
    let mut stack = Stack::start(Blobs::Local, &[ALICE], &env_ref);

    const N: usize = 40;
    let out = crate::harness::run(
        Command::new("python3")
            .arg("-c")
            .arg(SEND_MANY)
            .arg(submission.to_string())
            .arg(ALICE)
            .arg(PASSWORD)
            .arg("slow@remote.test")
            .arg(N.to_string()),
    );
    assert!(
        out.status.success(),
        "submission failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the first relayed messages",
        Duration::from_secs(30),
        || (peer.received().len() >= 5).then_some(()),
    );
    stack.kill(Svc::DeliveryWorker);
    // A message whose end of data reached the peer before the kill is
    // accepted there even if its 250 reaches nobody: let those finish.
    wait_for(
        "the peer to finish its transactions",
        Duration::from_secs(10),
        || (peer.state.in_data.load(std::sync::atomic::Ordering::SeqCst) == 0).then_some(()),
    );
    let accepted_before: std::collections::HashSet<String> = peer
        .received()
        .iter()
        .map(|g| message_id(&g.data))
        .collect();
    assert!(
        accepted_before.len() < N,
        "the crash came too late to matter"
    );
    peer.state
        .data_delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    stack.spawn(Svc::DeliveryWorker);
    stack.wait_ready(Svc::DeliveryWorker);

    wait_for("every message at the peer", Duration::from_secs(60), || {
        let ids: std::collections::HashSet<String> = peer
            .received()
            .iter()
            .map(|g| message_id(&g.data))
            .collect();
        (ids.len() == N).then_some(())
    });
    let mut counts: HashMap<String, usize> = HashMap::new();
    for g in peer.received() {
        *counts.entry(message_id(&g.data)).or_default() += 1;
    }
    for (id, n) in &counts {
        assert!(
            *n == 1 || (*n == 2 && accepted_before.contains(id)),
            "{id} arrived {n} times (accepted before the crash: {})",
            accepted_before.contains(id)
        );
    }
    let duplicates = counts.values().filter(|n| **n > 1).count();
    eprintln!("relay crash test: {N} messages, {duplicates} duplicated (accepted before the kill)");
}

/// Sends `message` to port 25's listener (the MX role) from `from`.
fn send_mx(port: u16, from: &str, to: &str, message: &str) {
    python_with_stdin(
        "import smtplib, sys\n\
         s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)\n\
         assert not s.sendmail(sys.argv[2], [sys.argv[3]], sys.stdin.buffer.read())\n\
         s.quit()\n",
        &[port.to_string(), from.to_owned(), to.to_owned()],
        message,
        "sending",
    );
}

/// A Sieve script put with `mailfleet sieve put --activate` redirects a copy
/// out through the relay and answers with one vacation reply per sender.
#[test]
fn sieve_redirects_and_vacation_replies_leave_through_the_relay() {
    let peer_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_port = peer_listener.local_addr().unwrap().port();
    let peer = Peer::start(peer_listener);
    let env = [
        (
            "MAILFLEET_RELAY_ROUTES".to_owned(),
            format!("remote.test=127.0.0.1:{peer_port}"),
        ),
        (
            "MAILFLEET_SMTP_VERIFY_INBOUND".to_owned(),
            "false".to_owned(),
        ),
    ];
    let env_ref = env_refs(&env);
    let stack = Stack::start(Blobs::Local, &[ALICE], &env_ref);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("rules.sieve");
    std::fs::write(
        &script,
        "require [\"vacation\", \"copy\"];\r\n\
         redirect :copy \"fwd@remote.test\";\r\n\
         vacation :days 1 :subject \"Away\" \"I am away.\";\r\n",
    )
    .unwrap();
    stack.cli_ok(&[
        "sieve",
        "put",
        ALICE,
        "rules",
        &script.display().to_string(),
        "--activate",
    ]);
    let listed = String::from_utf8(stack.cli_ok(&["sieve", "list", ALICE])).unwrap();
    assert_eq!(listed, "rules ACTIVE\n");

    let message = |n: u32| {
        format!(
            "From: Bob <bob@remote.test>\r\nTo: {ALICE}\r\nSubject: hello {n}\r\n\
             Message-ID: <sieve-{n}@remote.test>\r\n\r\nHi {n}.\r\n"
        )
    };
    send_mx(stack.smtp_port, "bob@remote.test", ALICE, &message(1));
    let copy = wait_for("the redirected copy", Duration::from_secs(30), || {
        peer.copies_for("fwd@remote.test").pop()
    });
    assert!(String::from_utf8_lossy(&copy.data).contains("Subject: hello 1"));
    let reply = wait_for("the vacation reply", Duration::from_secs(30), || {
        peer.copies_for("bob@remote.test").pop()
    });
    let text = String::from_utf8_lossy(&reply.data).into_owned();
    for h in [
        "Auto-Submitted: auto-replied",
        "In-Reply-To: <sieve-1@remote.test>",
        "Subject: Away",
        "I am away.",
    ] {
        assert!(text.contains(h), "{h} missing from {text}");
    }
    // The message itself was kept.
    assert_eq!(stack.messages(ALICE).len(), 1);

    // A second message from bob: redirected again, but no second reply.
    // The worker publishes all of a delivery's Sieve jobs together, so once
    // the second redirect arrived its log shows every job that delivery made.
    send_mx(stack.smtp_port, "bob@remote.test", ALICE, &message(2));
    wait_for(
        "the second redirected copy",
        Duration::from_secs(30),
        || (peer.copies_for("fwd@remote.test").len() == 2).then_some(()),
    );
    let log = stack.log(Svc::DeliveryWorker);
    let sent = |kind: &str| {
        log.lines()
            .filter(|l| l.contains("Sieve message sent.") && l.contains(&format!("kind={kind}")))
            .count()
    };
    assert_eq!((sent("redirect"), sent("vacation")), (2, 1), "{log}");
    assert_eq!(peer.copies_for("bob@remote.test").len(), 1);
    let metrics = stack.http_get(Svc::Mailstore, "/metrics");
    assert!(
        metrics.contains("mailfleet_store_sieve_runs_total 2"),
        "{metrics}"
    );
}
