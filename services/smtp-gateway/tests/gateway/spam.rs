//! The spam check on the MX role against a real rspamd (deploy/rspamd/run,
//! started per test on its own ports): rspamd's action decides the reply,
//! its verdict goes into the stored message and the job, and an outage
//! follows MAILFLEET_SPAM_FAIL_OPEN.

use std::sync::atomic::Ordering;

use mailfleet_spam::testing::{GTUBE, GTUBE_ADD_HEADER, GTUBE_REWRITE_SUBJECT, TestRspamd};
use smtp_gateway::metrics::ResultLabel;
use smtp_gateway::spam::SpamFilter;
use smtp_gateway::{Gateway, Metrics, Role, Settings};

use crate::support::{FakeBackend, Raw, Server, config};

/// A gateway (MX) with the spam filter of `overrides`.
async fn gateway(overrides: &[(&str, &str)], backend: FakeBackend) -> Server<FakeBackend> {
    let config = config(overrides);
    let spam = SpamFilter::from_config(&config).unwrap();
    assert!(spam.is_some(), "spam_url is set");
    let gateway =
        Gateway::new(Settings::from_config(&config), backend, Metrics::default()).with_spam(spam);
    Server::start_gateway(&config, gateway, Role::Mx).await
}

/// One message from 127.0.0.1 to user@local.test; the reply to its final dot.
async fn send(port: u16, subject: &str, body: &str) -> String {
    send_with(port, "", subject, body).await
}

/// `send`, with `fields` (whole lines, CRLF-terminated) at the top of the
/// header block.
async fn send_with(port: u16, fields: &str, subject: &str, body: &str) -> String {
    let mut raw = Raw::greeted(port).await;
    assert!(raw.cmd("EHLO client.example").await.starts_with("250"));
    assert!(
        raw.cmd("MAIL FROM:<sender@example.org>")
            .await
            .starts_with("250")
    );
    assert!(
        raw.cmd("RCPT TO:<user@local.test>")
            .await
            .starts_with("250")
    );
    assert!(raw.cmd("DATA").await.starts_with("354"));
    let id = uuid::Uuid::new_v4();
    raw.send(
        format!(
            "{fields}From: Sender <sender@example.org>\r\nTo: <user@local.test>\r\nSubject: {subject}\r\n\
             Message-ID: <{id}@example.org>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n.\r\n"
        )
        .as_bytes(),
    )
    .await;
    let reply = raw.reply().await;
    let _ = raw.cmd("QUIT").await;
    reply
}

fn count(metrics: &Metrics, result: &'static str) -> u64 {
    metrics
        .spam_checks
        .get_or_create(&ResultLabel { result })
        .get()
}

/// The last stored message, as text.
fn last_stored(backend: &FakeBackend) -> String {
    let bodies = backend.0.bodies.lock().unwrap();
    String::from_utf8_lossy(&bodies.last().expect("a stored body").1).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rspamd_actions_decide_the_reply_the_headers_and_the_junk_flag() {
    if !TestRspamd::available() {
        return;
    }
    let rspamd = tokio::task::spawn_blocking(TestRspamd::start)
        .await
        .unwrap();
    let backend = FakeBackend::default();
    let server = gateway(&[("spam_url", &rspamd.url)], backend.clone()).await;

    // GTUBE: rejected with rspamd's message, nothing stored or queued.
    let reply = send(server.port, "offer", GTUBE).await;
    assert!(reply.starts_with("550 5.7.1 "), "{reply}");
    assert!(reply.contains("Gtube pattern"), "{reply}");
    assert!(backend.0.bodies.lock().unwrap().is_empty());
    assert!(backend.0.jobs.lock().unwrap().is_empty());
    assert_eq!(backend.0.aborted.load(Ordering::SeqCst), 1);

    // A clean message: accepted, rspamd's verdict in front of the client's
    // header block (after our Received), not spam.
    // The client's own X-Spam fields (a spammer's "No") are left out.
    let reply = send(
        server.port,
        "lunch\r\nX-Spam-Status: No, score=-100 (forged)\r\nx-spam-flag: NO (forged)",
        "Lunch tomorrow at noon?",
    )
    .await;
    assert!(reply.starts_with("250 "), "{reply}");
    let stored = last_stored(&backend);
    assert!(!stored.contains("forged"), "{stored}");
    assert_eq!(stored.matches("X-Spam-Status:").count(), 1, "{stored}");
    assert!(stored.starts_with("Received: "), "{stored}");
    let head = stored.split("\r\nFrom: ").next().unwrap();
    assert!(head.contains("\r\nX-Spam-Status: No, score="), "{stored}");
    assert!(head.ends_with("\r\nX-Spam-Action: no action"), "{stored}");
    assert!(!backend.0.jobs.lock().unwrap().last().unwrap().spam);

    // "add header": accepted, marked, and the job says spam (Junk).
    let reply = send(server.port, "deal", GTUBE_ADD_HEADER).await;
    assert!(reply.starts_with("250 "), "{reply}");
    let stored = last_stored(&backend);
    assert!(
        stored.contains("\r\nX-Spam-Status: Yes, score="),
        "{stored}"
    );
    assert!(
        stored.contains("\r\nX-Spam-Action: add header\r\n"),
        "{stored}"
    );
    assert!(backend.0.jobs.lock().unwrap().last().unwrap().spam);

    // "rewrite subject": the client's Subject is replaced, not doubled.
    let reply = send(server.port, "hello", GTUBE_REWRITE_SUBJECT).await;
    assert!(reply.starts_with("250 "), "{reply}");
    let stored = last_stored(&backend);
    assert!(
        stored.contains("\r\nSubject: *** SPAM *** hello\r\n"),
        "{stored}"
    );
    assert_eq!(stored.matches("Subject:").count(), 1, "{stored}");
    assert!(
        stored.contains(GTUBE_REWRITE_SUBJECT),
        "the body is kept: {stored}"
    );
    assert!(backend.0.jobs.lock().unwrap().last().unwrap().spam);

    let metrics = &server.gateway.metrics;
    assert_eq!(count(metrics, "reject"), 1);
    assert_eq!(count(metrics, "no_action"), 1);
    assert_eq!(count(metrics, "add_header"), 1);
    assert_eq!(count(metrics, "rewrite_subject"), 1);
    assert_eq!(metrics.spam_check_errors.get(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rspamd_stopped_mid_test_follows_fail_open_both_ways() {
    if !TestRspamd::available() {
        return;
    }
    let mut rspamd = tokio::task::spawn_blocking(TestRspamd::start)
        .await
        .unwrap();
    let open_backend = FakeBackend::default();
    let open = gateway(
        &[("spam_url", &rspamd.url), ("spam_timeout", "5s")],
        open_backend.clone(),
    )
    .await;
    let closed_backend = FakeBackend::default();
    let closed = gateway(
        &[
            ("spam_url", &rspamd.url),
            ("spam_timeout", "5s"),
            ("spam_fail_open", "false"),
        ],
        closed_backend.clone(),
    )
    .await;

    // Both check while rspamd runs.
    for (server, backend) in [(&open, &open_backend), (&closed, &closed_backend)] {
        let reply = send(server.port, "before", "Still there?").await;
        assert!(reply.starts_with("250 "), "{reply}");
        assert!(last_stored(backend).contains("X-Spam-Status: No, score="));
    }

    let mut rspamd = tokio::task::spawn_blocking(move || {
        rspamd.stop();
        rspamd
    })
    .await
    .unwrap();

    // Fail open: accepted and marked unchecked, not spam.
    let reply = send(open.port, "after", "Anyone?").await;
    assert!(reply.starts_with("250 "), "{reply}");
    let stored = last_stored(&open_backend);
    assert!(
        stored.contains("\r\nX-Spam-Status: unchecked\r\n"),
        "{stored}"
    );
    assert!(!stored.contains("X-Spam-Action"), "{stored}");
    assert!(!open_backend.0.jobs.lock().unwrap().last().unwrap().spam);
    assert_eq!(open.gateway.metrics.spam_check_errors.get(), 1);
    assert_eq!(count(&open.gateway.metrics, "unchecked"), 1);

    // Fail closed: 451 4.7.1, nothing stored.
    let reply = send(closed.port, "after", "Anyone?").await;
    assert!(reply.starts_with("451 4.7.1 "), "{reply}");
    assert_eq!(
        closed_backend.0.bodies.lock().unwrap().len(),
        1,
        "only the first message"
    );
    assert_eq!(closed_backend.0.jobs.lock().unwrap().len(), 1);
    assert_eq!(closed.gateway.metrics.spam_check_errors.get(), 1);

    rspamd.stop();
    open.stop().await;
    closed.stop().await;
}

/// Over MAILFLEET_SPAM_MAX_SIZE a message is not held for rspamd: stored
/// unchecked, even failing closed with rspamd unreachable (a closed port
/// here), while a small one is refused there: the check was skipped, not
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_spam_size_limit_are_stored_unchecked() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{closed_port}");
    let backend = FakeBackend::default();
    let server = gateway(
        &[
            ("spam_url", &url),
            ("spam_fail_open", "false"),
            ("spam_max_size", "4096"),
        ],
        backend.clone(),
    )
    .await;

    let reply = send(server.port, "small", "short").await;
    assert!(reply.starts_with("451 4.7.1 "), "{reply}");

    // The sender's own verdict fields go, as they do from checked mail:
    // only our `unchecked` speaks for the filter.
    let big = "0123456789abcdef ".repeat(60).trim_end().to_owned() + "\r\n";
    let forged = "X-Spam-Status: No, score=-100.00\r\nx-spam-flag: NO\r\n\tfolded\r\n\
                  X-Spam-Action: no action\r\n";
    let reply = send_with(server.port, forged, "big", &big.repeat(8)).await;
    assert!(reply.starts_with("250 "), "{reply}");
    let stored = last_stored(&backend);
    assert!(
        stored.contains("\r\nX-Spam-Status: unchecked\r\n"),
        "{stored}"
    );
    let (head, _) = stored.split_once("\r\n\r\n").unwrap();
    let spam_fields: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-spam-"))
        .collect();
    assert_eq!(spam_fields, ["X-Spam-Status: unchecked"], "{head}");
    assert!(!head.contains("folded"), "{head}");
    assert_eq!(count(&server.gateway.metrics, "too_big"), 1);
    assert_eq!(
        server.gateway.metrics.spam_check_errors.get(),
        1,
        "only the small one"
    );
    server.stop().await;
}
