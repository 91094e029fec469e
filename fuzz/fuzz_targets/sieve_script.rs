//! A Sieve script uploaded by a user, compiled and run against a fixed
//! message: never a panic, and the outcome keeps its promises (a runtime
//! error leaves exactly the implicit keep; the action and redirect limits
//! hold).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfleet_sieve::{Action, Context, Envelope, Limits, compile, execute};

const MESSAGE: &[u8] = b"Received: from a.test by b.test; Mon, 7 Dec 2026 10:00:00 +0000\r\n\
From: =?utf-8?q?Caf=C3=A9?= <someone+tag@remote.test>\r\n\
To: me@example.com, other@example.com\r\n\
Subject: [list] hello *there*\r\n\
Date: Mon, 7 Dec 2026 10:00:00 +0100\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
hello body\r\n\
--b\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAEC\r\n\
--b--\r\n";

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_steps: 10_000,
        max_actions: 8,
        max_redirects: 2,
        max_variable_bytes: 256,
        max_body_scan_bytes: 4096,
        ..Limits::default()
    };
    let Ok(script) = compile(data, &limits) else {
        return;
    };
    let Some(now) = chrono::DateTime::parse_from_rfc3339("2026-12-07T19:30:00+01:00").ok() else {
        return;
    };
    let ctx = Context {
        envelope: Envelope {
            from: "someone+tag@remote.test",
            to: "me+sieve@example.com",
            auth: None,
        },
        message: MESSAGE,
        size: MESSAGE.len() as u64,
        now,
        own_addresses: &["me@example.com"],
    };
    let outcome = execute(&script, &ctx, &limits);
    if outcome.error.is_some() {
        assert_eq!(outcome.actions, vec![Action::Keep { flags: vec![] }]);
    }
    assert!(
        !outcome.actions.is_empty(),
        "no action at all: the message would vanish"
    );
    // Discard is added after the action limit was checked, so it may be one past it.
    assert!(outcome.actions.len() <= limits.max_actions + 1);
    let redirects = outcome
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Redirect { .. }))
        .count();
    assert!(redirects <= limits.max_redirects);
});
