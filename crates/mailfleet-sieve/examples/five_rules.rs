//! What one delivery costs the interpreter with a typical five-rule script: compiles it once and
//! runs it N times (default 100 000) on a 4 KiB message, then prints the time per run.
//!
//! `cargo run --release -p mailfleet-sieve --example five_rules [N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use mailfleet_sieve::{Context, Envelope, Limits, compile, execute};

const SCRIPT: &str = r#"require ["fileinto", "imap4flags", "variables", "envelope", "subaddress"];
if header :contains "List-Id" "announce" { fileinto "Lists/announce"; stop; }
if address :domain :is "from" ["example.org", "partner.test"] { addflag "\\Flagged"; keep; }
if header :matches "Subject" "[*] *" { fileinto "Lists/${1}"; stop; }
if envelope :detail "to" "shop" { fileinto "Shopping"; }
if size :over 1M { fileinto "Large"; }
"#;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let limits = Limits::default();
    let script = compile(SCRIPT.as_bytes(), &limits).expect("compiles");
    let mut message = String::from(
        "Received: from mx.remote.test by mx.example.com; Mon, 7 Dec 2026 10:00:00 +0000\r\n\
         From: Someone <someone@remote.test>\r\nTo: me+shop@example.com\r\n\
         Subject: [team] weekly notes\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <1@remote.test>\r\n\r\n",
    );
    while message.len() < 4096 {
        message.push_str("Some body text that no rule reads, filling the message to 4 KiB.\r\n");
    }
    let ctx = Context {
        envelope: Envelope {
            from: "someone@remote.test",
            to: "me+shop@example.com",
            auth: None,
        },
        message: message.as_bytes(),
        size: message.len() as u64,
        now: chrono::DateTime::parse_from_rfc3339("2026-12-07T19:30:00+01:00").unwrap(),
        own_addresses: &["me@example.com"],
    };
    let first = execute(&script, &ctx, &limits);
    assert!(first.error.is_none());
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(execute(&script, &ctx, &limits));
    }
    let per = start.elapsed().as_secs_f64() / f64::from(n);
    println!("actions: {:?}", first.actions);
    println!("{n} runs, {:.2} µs per run", per * 1e6);
    let start = Instant::now();
    for _ in 0..n / 10 {
        std::hint::black_box(compile(SCRIPT.as_bytes(), &limits).expect("compiles"));
    }
    println!(
        "compile: {:.2} µs",
        start.elapsed().as_secs_f64() / f64::from(n / 10) * 1e6
    );
}
