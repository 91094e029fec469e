//! Fault tests: whatever is killed or dropped mid-load, every message answered
//! 250 ends up exactly once in every recipient's mailbox.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Blobs, Load, LoadSpec, Stack, Svc};
use crate::verify::assert_exactly_once;

const ACCOUNTS: [&str; 2] = ["dora@example.test", "erik@example.test"];

fn load_spec(tag: &str) -> LoadSpec<'static> {
    LoadSpec {
        tag: tag_static(tag),
        count: 400,
        threads: 8,
        attempts: 30,
        rcpts: &ACCOUNTS,
        ..LoadSpec::default()
    }
}

fn tag_static(tag: &str) -> &'static str {
    Box::leak(tag.to_owned().into_boxed_str())
}

#[test]
fn broker_drops_every_connection_mid_load() {
    let stack = Stack::start(Blobs::Local, &ACCOUNTS, &[]);
    let spec = load_spec("brokerdrop");
    let mut load = Load::start(stack.smtp_port, &spec);
    for round in 1..=3 {
        load.wait_done(round * 80);
        let out = Command::new("rabbitmqctl")
            .args([
                "close_all_connections",
                "-p",
                &stack.vhost,
                "e2e fault injection",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reports = load.finish();
    assert!(
        reports.iter().filter(|s| s.accepted).count() >= 300,
        "the gateway recovers and accepts again"
    );
    assert_exactly_once(&stack, &ACCOUNTS, &reports, spec.tag);
}

#[test]
fn delivery_worker_killed_mid_load() {
    let mut stack = Stack::start(Blobs::Local, &ACCOUNTS, &[]);
    let spec = load_spec("workerkill");
    let mut load = Load::start(stack.smtp_port, &spec);
    load.wait_done(100);
    stack.kill(Svc::DeliveryWorker);
    load.wait_done(200);
    stack.spawn(Svc::DeliveryWorker);
    stack.wait_ready(Svc::DeliveryWorker);
    load.wait_done(300);
    stack.kill(Svc::DeliveryWorker);
    stack.spawn(Svc::DeliveryWorker);
    let reports = load.finish();
    assert!(
        reports.iter().all(|s| s.accepted),
        "the worker is not on the SMTP path"
    );
    assert_exactly_once(&stack, &ACCOUNTS, &reports, spec.tag);
}

#[test]
fn mailstore_stopped_mid_load() {
    // Without the recipient cache, every RCPT needs mailstore (with it, a
    // recipient answered in the last seconds is still accepted and queued).
    let mut stack = Stack::start(
        Blobs::Local,
        &ACCOUNTS,
        &[("MAILFLEET_SMTP_RECIPIENT_CACHE_TTL", "0s")],
    );
    let spec = load_spec("storedown");
    let mut load = Load::start(stack.smtp_port, &spec);
    load.wait_done(100);
    stack.kill(Svc::Mailstore);
    // While mailstore is down the gateway cannot check recipients: it must
    // answer 4xx (the client retries), never 250 for what it cannot queue.
    // The outage lasts until the client has seen one.
    // (The client reports a message once it is through, so the gateway's
    // count of 4xx replies is what says it happened.)
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stack
        .http_get(Svc::SmtpGateway, "/metrics")
        .lines()
        .any(|l| {
            l.starts_with("mailfleet_smtp_replies_rejected_total{")
                && l.contains("code=\"4")
                && !l.ends_with(" 0")
        })
    {
        assert!(
            Instant::now() < deadline,
            "the gateway never answered 4xx while mailstore was down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = load.done();
    stack.spawn(Svc::Mailstore);
    stack.wait_ready(Svc::Mailstore);
    let reports = load.finish();
    let temp_failures = reports
        .iter()
        .flat_map(|s| s.rcpt_codes.iter())
        .filter(|c| (400..500).contains(*c))
        .count();
    assert!(
        temp_failures > 0,
        "the outage was seen as 4xx by the client (finished {during} during it)"
    );
    assert!(
        reports.iter().all(|s| s.accepted),
        "every message is accepted once mailstore is back"
    );
    assert_exactly_once(&stack, &ACCOUNTS, &reports, spec.tag);
}
