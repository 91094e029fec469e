//! SMTP in, mailbox out: many messages, several recipients each, concurrently;
//! every copy byte-identical to what the client sent.

use crate::harness::{Blobs, Load, LoadSpec, Stack, Svc, expected_bytes, split_trace_headers};
use crate::verify::assert_exactly_once;

const ACCOUNTS: [&str; 3] = [
    "alice@example.test",
    "bob@example.test",
    "carol@example.test",
];

fn end_to_end(blobs: Blobs) {
    let stack = Stack::start(blobs, &ACCOUNTS, &[]);
    // carol gets hers through sub-addressing.
    let rcpts = [
        "alice@example.test",
        "bob@example.test",
        "carol+lists@example.test",
    ];
    let spec = LoadSpec {
        tag: "e2e",
        count: 120,
        threads: 8,
        rcpts: &rcpts,
        ..LoadSpec::default()
    };
    let reports = Load::start(stack.smtp_port, &spec).finish();
    assert_eq!(reports.len(), 120);
    let refused: Vec<_> = reports.iter().filter(|s| !s.accepted).collect();
    assert!(
        refused.is_empty(),
        "without faults every message is accepted: {refused:?}"
    );

    // Two large messages: above the blob store's inline limit, so on S3 they
    // go through multipart upload.
    let big = LoadSpec {
        tag: "big",
        count: 2,
        threads: 2,
        pad_kib: 3 * 1024,
        rcpts: &rcpts[..1],
        ..LoadSpec::default()
    };
    let big_reports = Load::start(stack.smtp_port, &big).finish();
    assert!(big_reports.iter().all(|s| s.accepted), "{big_reports:?}");

    assert_exactly_once(&stack, &ACCOUNTS, &reports, "e2e");
    assert_exactly_once(&stack, &ACCOUNTS[..1], &big_reports, "big");

    // Every stored copy is byte-identical to what was sent, after the trace
    // headers the system adds; the listed size is what `message get` returns.
    let mut expected = expected_bytes(&spec);
    expected.extend(
        expected_bytes(&big)
            .into_iter()
            .map(|(i, b)| (i + 10_000, b)),
    );
    for addr in ACCOUNTS {
        for (uid, size, subject) in stack.messages(addr) {
            let i: u32 = if let Some(n) = subject.strip_prefix("e2e message ") {
                n.trim().parse().unwrap()
            } else if let Some(n) = subject.strip_prefix("big message ") {
                n.trim().parse::<u32>().unwrap() + 10_000
            } else if subject.ends_with(" marker") {
                // assert_exactly_once's marker, sent after each load.
                continue;
            } else {
                panic!("unexpected subject {subject:?}");
            };
            // Every message of alice, and every tenth of the others.
            if addr != ACCOUNTS[0] && !i.is_multiple_of(10) {
                continue;
            }
            let stored = stack.cli_ok(&["message", "get", addr, &uid.to_string()]);
            assert_eq!(stored.len() as u64, size, "{addr} uid {uid}: listed size");
            let (trace, body) = split_trace_headers(&stored);
            assert!(
                trace
                    .first()
                    .is_some_and(|l| l == "Return-Path: <sender@remote.test>\r\n"),
                "{addr} uid {uid}: Return-Path first: {trace:?}"
            );
            assert!(
                trace
                    .iter()
                    .any(|l| l.starts_with("Received: from client.remote.test")
                        && l.contains("mx.example.test")),
                "{addr} uid {uid}: Received header: {trace:?}"
            );
            assert!(
                body == expected[&i].as_slice(),
                "{addr} uid {uid}: body differs from what was sent ({} vs {} bytes)",
                body.len(),
                expected[&i].len()
            );
        }
    }
}

#[test]
fn smtp_to_mailbox_on_local_disk() {
    end_to_end(Blobs::Local);
}

#[test]
fn smtp_to_mailbox_on_s3() {
    end_to_end(Blobs::S3);
}

/// SIGTERM stops every service cleanly (exit 0) after a delivery, and what was
/// accepted before is stored.
#[test]
fn services_stop_cleanly_on_sigterm() {
    let mut stack = Stack::start(Blobs::Local, &ACCOUNTS[..1], &[]);
    let spec = LoadSpec {
        tag: "term",
        count: 10,
        threads: 2,
        rcpts: &ACCOUNTS[..1],
        ..LoadSpec::default()
    };
    let reports = Load::start(stack.smtp_port, &spec).finish();
    assert_exactly_once(&stack, &ACCOUNTS[..1], &reports, "term");
    for svc in [Svc::SmtpGateway, Svc::DeliveryWorker, Svc::Mailstore] {
        assert!(
            stack.stop(svc),
            "{svc:?} exits 0 on SIGTERM:\n{}",
            stack.log(svc)
        );
    }
}
