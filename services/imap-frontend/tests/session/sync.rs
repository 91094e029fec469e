//! What a session learns of other sessions and of its own changes: keywords
//! announced in FLAGS before any FETCH shows them, changes reported at the
//! end of each command without waiting for change events.

use std::time::{Duration, Instant};

use crate::support::*;

/// Whether `line` lists `flag` (as a whole word of a flag list).
fn lists(line: &str, flag: &str) -> bool {
    line.split([' ', '(', ')', '\r', '\n'])
        .any(|w| w.eq_ignore_ascii_case(flag))
}

/// The first FETCH line of message `seq` showing `keyword` must come after
/// a FLAGS and a PERMANENTFLAGS response that list it.
fn announced_first(lines: &[String], seq: usize, keyword: &str) {
    let fetch = format!("* {seq} FETCH (");
    let at = |pred: &dyn Fn(&str) -> bool| lines.iter().position(|l| pred(l));
    let fetch_at = at(&|l| l.starts_with(&fetch) && lists(l, keyword))
        .unwrap_or_else(|| panic!("no FETCH of {seq} with {keyword}: {lines:?}"));
    let flags_at = at(&|l| l.starts_with("* FLAGS (") && lists(l, keyword));
    let permanent_at =
        at(&|l| l.starts_with("* OK [PERMANENTFLAGS (") && lists(l, keyword) && l.contains("\\*)"));
    assert!(
        flags_at.is_some_and(|i| i < fetch_at) && permanent_at.is_some_and(|i| i < fetch_at),
        "{keyword} shown before FLAGS/PERMANENTFLAGS listed it: {lines:?}"
    );
}

/// Sends NOOPs until one answer has a line for which `done` holds; returns
/// every line read on the way.
fn noop_until(c: &mut Raw, tag: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    for n in 0u32.. {
        let lines = c.ok(&format!("{tag}{n}"), "NOOP");
        let found = lines.iter().any(|l| done(l));
        all.extend(lines);
        if found {
            return all;
        }
        assert!(Instant::now() < deadline, "never seen: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keywords_are_announced_before_a_fetch_shows_them() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = Raw::connect(port);
        a.ok("a1", &format!("LOGIN {USER} {PASS}"));
        a.ok("a2", "APPEND INBOX {14+}\r\nSubject: 1\r\n\r\n");
        let sel = a.ok("a3", "SELECT INBOX");
        assert!(
            sel.iter()
                .any(|l| l == "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"),
            "{sel:?}"
        );

        // A's own STORE introduces a keyword.
        let stored = a.ok("a4", "STORE 1 +FLAGS ($Label7)");
        announced_first(&stored, 1, "$Label7");
        // Said once: the next FETCH needs no new FLAGS.
        let f = a.ok("a5", "FETCH 1 (FLAGS)");
        assert!(!f.iter().any(|l| l.starts_with("* FLAGS")), "{f:?}");

        // A new session's SELECT lists the keywords in use.
        let mut b = Raw::connect(port);
        b.ok("b1", &format!("LOGIN {USER} {PASS}"));
        let sel = b.ok("b2", "SELECT INBOX");
        assert!(
            sel.iter()
                .any(|l| l.starts_with("* FLAGS (") && lists(l, "$Label7")),
            "{sel:?}"
        );
        assert!(
            sel.iter()
                .any(|l| l.starts_with("* OK [PERMANENTFLAGS (") && lists(l, "$Label7")),
            "{sel:?}"
        );

        // Another session's STORE: A hears of the keyword before the FETCH.
        b.ok("b3", "STORE 1 +FLAGS ($Label8)");
        let seen = noop_until(&mut a, "n", |l| {
            l.starts_with("* 1 FETCH") && lists(l, "$Label8")
        });
        announced_first(&seen, 1, "$Label8");

        // Another session's APPEND with a keyword, then A's FETCH FLAGS.
        b.ok("b4", "APPEND INBOX ($Label9) {14+}\r\nSubject: 2\r\n\r\n");
        let mut seen = noop_until(&mut a, "m", |l| l == "* 2 EXISTS\r\n");
        seen.extend(a.ok("a6", "FETCH 2 (FLAGS)"));
        announced_first(&seen, 2, "$Label9");

        // A COPY from another mailbox, fetched with an item that needs
        // mailstore (not only the session's state).
        b.ok("b5", "CREATE Other");
        b.ok(
            "b6",
            "APPEND Other (\\Seen $Label10) {14+}\r\nSubject: 3\r\n\r\n",
        );
        b.ok("b7", "SELECT Other");
        b.ok("b8", "COPY 1 INBOX");
        let mut seen = noop_until(&mut a, "k", |l| l == "* 3 EXISTS\r\n");
        seen.extend(a.ok("a7", "FETCH 3 (FLAGS INTERNALDATE)"));
        announced_first(&seen, 3, "$Label10");
        a.ok("a8", "LOGOUT");
    })
    .await
    .unwrap();
}

/// NOOP, CHECK and the end of any command report what other sessions did
/// as soon as their commands completed, with no change event: this
/// frontend listens on an exchange mailstore never publishes to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_changes_show_at_once_without_events() {
    let env = start_with(|config| config.queue_prefix = "elsewhere".into()).await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = Raw::connect(port);
        a.ok("a1", &format!("LOGIN {USER} {PASS}"));
        a.ok("a2", "APPEND INBOX {14+}\r\nSubject: 1\r\n\r\n");
        a.ok("a3", "SELECT INBOX");
        let mut b = Raw::connect(port);
        b.ok("b1", &format!("LOGIN {USER} {PASS}"));
        b.ok("b2", "SELECT INBOX");

        b.ok("b3", "APPEND INBOX {14+}\r\nSubject: 2\r\n\r\n");
        let n = a.ok("a4", "NOOP");
        assert!(n.iter().any(|l| l == "* 2 EXISTS\r\n"), "{n:?}");

        b.ok("b4", "STORE 1 +FLAGS (\\Flagged)");
        let n = a.ok("a5", "NOOP");
        assert!(
            n.iter()
                .any(|l| l.starts_with("* 1 FETCH (") && lists(l, "\\Flagged")),
            "{n:?}"
        );

        b.ok("b5", "STORE 2 +FLAGS (\\Deleted)");
        b.ok("b6", "EXPUNGE");
        let n = a.ok("a6", "NOOP");
        assert!(n.iter().any(|l| l == "* 2 EXPUNGE\r\n"), "{n:?}");

        b.ok("b7", "APPEND INBOX {14+}\r\nSubject: 3\r\n\r\n");
        let n = a.ok("a7", "CHECK");
        assert!(n.iter().any(|l| l == "* 2 EXISTS\r\n"), "{n:?}");

        // Any command, not only NOOP: here one that does not touch the mailbox.
        b.ok("b8", "STORE 2 +FLAGS (\\Seen)");
        let n = a.ok("a8", "CAPABILITY");
        assert!(
            n.iter()
                .any(|l| l.starts_with("* 2 FETCH (") && lists(l, "\\Seen")),
            "{n:?}"
        );

        // FETCH reports the flag change but keeps the expunge for later
        // (RFC 3501 7.4.1); the next command that may announce it does.
        b.ok("b9", "STORE 1 +FLAGS (\\Deleted)");
        b.ok("b10", "STORE 2 +FLAGS (\\Answered)");
        b.ok("b11", "EXPUNGE");
        let f = a.ok("a9", "FETCH 2 (FLAGS)");
        assert!(!f.iter().any(|l| l.contains("EXPUNGE")), "{f:?}");
        assert!(
            f.iter()
                .any(|l| l.starts_with("* 2 FETCH (") && lists(l, "\\Answered")),
            "{f:?}"
        );
        let n = a.ok("a10", "NOOP");
        assert!(n.iter().any(|l| l == "* 1 EXPUNGE\r\n"), "{n:?}");
        let u = a.ok("a11", "FETCH 1:* (UID)");
        assert_eq!(u.iter().filter(|l| l.starts_with("* ")).count(), 1, "{u:?}");
        a.ok("a12", "LOGOUT");
    })
    .await
    .unwrap();
}
