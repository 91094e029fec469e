//! Helpers shared by the integration tests: compile a script, run it on a message.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use mailfleet_sieve::{Action, Context, Envelope, Limits, Outcome, compile, execute};

pub const NOW: &str = "2026-12-07T19:30:00+01:00";

pub fn msg(headers: &[&str], body: &str) -> String {
    let mut m = String::new();
    for h in headers {
        m.push_str(h);
        m.push_str("\r\n");
    }
    m.push_str("\r\n");
    m.push_str(body);
    m
}

pub struct Run<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub own: &'a [&'a str],
    pub now: &'a str,
    pub limits: Limits,
}

impl Default for Run<'_> {
    fn default() -> Self {
        Run {
            from: "sender@remote.test",
            to: "me@example.com",
            own: &["me@example.com"],
            now: NOW,
            limits: Limits::default(),
        }
    }
}

impl Run<'_> {
    pub fn on(&self, script: &str, message: &str) -> Outcome {
        let s = compile(script.as_bytes(), &self.limits)
            .unwrap_or_else(|e| panic!("script does not compile: {e}\n{script}"));
        let ctx = Context {
            envelope: Envelope {
                from: self.from,
                to: self.to,
                auth: None,
            },
            message: message.as_bytes(),
            size: message.len() as u64,
            now: chrono::DateTime::parse_from_rfc3339(self.now).unwrap(),
            own_addresses: self.own,
        };
        execute(&s, &ctx, &self.limits)
    }
}

/// Runs with the default envelope and expects no runtime error.
pub fn actions(script: &str, message: &str) -> Vec<Action> {
    let o = Run::default().on(script, message);
    assert_eq!(o.error, None, "unexpected runtime error for\n{script}");
    o.actions
}

pub fn keep() -> Action {
    Action::Keep { flags: vec![] }
}

pub fn fileinto(m: &str) -> Action {
    Action::FileInto {
        mailbox: m.into(),
        flags: vec![],
        create: false,
    }
}

pub fn compile_err(script: &str) -> mailfleet_sieve::CompileError {
    match compile(script.as_bytes(), &Limits::default()) {
        Ok(_) => panic!("script compiled but should not:\n{script}"),
        Err(e) => e,
    }
}
