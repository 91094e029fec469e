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

/// The header fields an outside stress run fetched.
const HEADER_FIELDS: &str = "BODY.PEEK[HEADER.FIELDS (Message-ID From To In-Reply-To References)]";

fn threaded_message(i: usize) -> String {
    format!(
        "Message-ID: <m{i}@example.test>\r\nFrom: a{i}@example.test\r\nTo: b@example.test\r\n\
         In-Reply-To: <p{i}@example.test>\r\nReferences: <r{i}@example.test> <p{i}@example.test>\r\n\
         Subject: s{i}\r\n\r\nbody {i}\r\n"
    )
}

fn append_threaded(c: &mut Raw, tag: &str, i: usize) {
    let m = threaded_message(i);
    c.ok(tag, &format!("APPEND INBOX {{{}+}}\r\n{m}", m.len()));
}

/// FETCH `set` (HEADER_FIELDS): the data of each FETCH response, and the
/// tagged reply.
fn fetch_fields(c: &mut Raw, tag: &str, set: &str) -> (Vec<(String, Vec<u8>)>, String) {
    c.send(format!("{tag} FETCH {set} ({HEADER_FIELDS})\r\n").as_bytes());
    let mut found = Vec::new();
    loop {
        let line = c.line();
        assert!(!line.is_empty(), "connection closed");
        if line.starts_with(&format!("{tag} ")) {
            return (found, line);
        }
        // Only the answers to this FETCH: an unsolicited FETCH of flags
        // another session changed (RFC 3501 7.4.2) carries no BODY item.
        if !line.contains(" FETCH ") || !line.contains("BODY[") {
            continue;
        }
        let data = match line
            .trim_end()
            .strip_suffix('}')
            .and_then(|l| l.rsplit_once('{'))
        {
            Some((_, n)) => {
                let data = c.bytes(n.parse().unwrap());
                let rest = c.line();
                assert!(rest.ends_with(")\r\n"), "{rest:?}");
                data
            }
            // A quoted string or NIL instead of a literal.
            None => Vec::new(),
        };
        found.push((line, data));
    }
}

/// Sessions fetching header fields by sequence number while another
/// appends and expunges: every FETCH response carries the fields the
/// message has; one expunged meanwhile is never answered with nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_fields_fetched_during_expunges_are_never_empty() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut w = Raw::connect(port);
        w.ok("w1", &format!("LOGIN {USER} {PASS}"));
        for i in 0..120 {
            append_threaded(&mut w, &format!("p{i}"), i);
        }
        w.ok("w2", "SELECT INBOX");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Each round adds five messages and expunges the five
                // newest: the ones a FETCH 1:* reads last.
                let mut i = 1000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..5 {
                        i += 1;
                        append_threaded(&mut w, &format!("a{i}"), i);
                    }
                    let n = w.ok(&format!("n{i}"), "NOOP");
                    let exists = n
                        .iter()
                        .chain(std::iter::once(&"* 125 EXISTS\r\n".to_owned()))
                        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS\r\n"))
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap();
                    let low = exists.saturating_sub(4).max(1);
                    w.ok(
                        &format!("s{i}"),
                        &format!("STORE {low}:{exists} +FLAGS.SILENT (\\Deleted)"),
                    );
                    w.ok(&format!("e{i}"), "EXPUNGE");
                }
            })
        };
        let readers: Vec<_> = (0..3)
            .map(|r| {
                std::thread::spawn(move || {
                    let mut c = Raw::connect(port);
                    c.ok("r1", &format!("LOGIN {USER} {PASS}"));
                    c.ok("r2", "SELECT INBOX");
                    let mut fetched = 0;
                    for round in 0..6 {
                        c.ok(&format!("n{round}"), "NOOP");
                        let (found, tagged) = fetch_fields(&mut c, &format!("f{round}"), "1:*");
                        for (line, data) in &found {
                            let text = String::from_utf8_lossy(data);
                            assert!(
                                text.contains("Message-ID: <m") && text.contains("References: <r"),
                                "reader {r}: {line:?} gave {text:?} ({tagged:?})"
                            );
                        }
                        fetched += found.len();
                    }
                    c.ok("r3", "LOGOUT");
                    fetched
                })
            })
            .collect();
        let outcome: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        for fetched in outcome {
            assert!(fetched.unwrap() > 0);
        }
    })
    .await
    .unwrap();
}

/// RFC 7162 3.1.5: the MODSEQ of an ESEARCH answer is the highest of the
/// messages it returns: with RETURN (MIN) or (MAX) alone, that message's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esearch_min_max_report_the_modseq_of_the_returned_message() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = Raw::connect(port);
        a.ok("a1", &format!("LOGIN {USER} {PASS}"));
        for i in 1..=3 {
            a.ok(
                &format!("a1{i}"),
                "APPEND INBOX {14+}\r\nSubject: m\r\n\r\n",
            );
        }
        a.ok("a2", "ENABLE CONDSTORE");
        a.ok("a3", "SELECT INBOX");
        // Message 2 changes last: its modseq is the mailbox's highest.
        a.ok("a4", "STORE 2 +FLAGS (\\Flagged)");
        let f = a.ok("a5", "FETCH 1:3 (MODSEQ)");
        let modseq_of = |seq: usize| -> u64 {
            let prefix = format!("* {seq} FETCH (MODSEQ (");
            let l = f
                .iter()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{f:?}"));
            l[prefix.len()..]
                .trim_end_matches([')', '\r', '\n'])
                .parse()
                .unwrap()
        };
        let (m1, m2, m3) = (modseq_of(1), modseq_of(2), modseq_of(3));
        assert!(m2 > m1 && m2 > m3, "{f:?}");
        let reported = |lines: &[String]| -> u64 {
            let l = lines
                .iter()
                .find(|l| l.starts_with("* ESEARCH "))
                .unwrap_or_else(|| panic!("{lines:?}"));
            let (_, n) = l
                .trim_end()
                .rsplit_once(" MODSEQ ")
                .unwrap_or_else(|| panic!("{lines:?}"));
            n.parse().unwrap()
        };
        // Answered from the session's state (MODSEQ only) and by mailstore
        // (a header key).
        for (i, keys) in ["MODSEQ 1", "SUBJECT m MODSEQ 1"].iter().enumerate() {
            let min = a.ok(&format!("m{i}"), &format!("SEARCH RETURN (MIN) {keys}"));
            assert!(min[0].contains(" MIN 1 "), "{min:?}");
            assert_eq!(reported(&min), m1, "{min:?}");
            let max = a.ok(&format!("x{i}"), &format!("SEARCH RETURN (MAX) {keys}"));
            assert!(max[0].contains(" MAX 3 "), "{max:?}");
            assert_eq!(reported(&max), m3, "{max:?}");
            let both = a.ok(
                &format!("b{i}"),
                &format!("UID SEARCH RETURN (MIN MAX) {keys}"),
            );
            assert_eq!(reported(&both), m1.max(m3), "{both:?}");
            let count = a.ok(&format!("c{i}"), &format!("SEARCH RETURN (COUNT) {keys}"));
            assert_eq!(reported(&count), m2, "{count:?}");
        }
        a.ok("a6", "LOGOUT");
    })
    .await
    .unwrap();
}

/// A STORE or EXPUNGE of this session that changes nothing, right after
/// another session's change, must not take the mailbox's new modseq for
/// its own: the other change is reported by that command or the next NOOP
/// (no events here, so nothing else would tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_nothing_does_not_hide_another_sessions_change() {
    let env = start_with(|config| config.queue_prefix = "elsewhere".into()).await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = Raw::connect(port);
        a.ok("a1", &format!("LOGIN {USER} {PASS}"));
        for i in 1..=3 {
            a.ok(
                &format!("p{i}"),
                &format!("APPEND INBOX {{14+}}\r\nSubject: {i}\r\n\r\n"),
            );
        }
        a.ok("a2", "SELECT INBOX");
        let mut b = Raw::connect(port);
        b.ok("b1", &format!("LOGIN {USER} {PASS}"));
        b.ok("b2", "SELECT INBOX");

        b.ok("b3", "STORE 2 +FLAGS (\\Flagged)");
        let mut seen = a.ok("a3", "STORE 1 -FLAGS (\\Answered)");
        seen.extend(a.ok("a4", "NOOP"));
        assert!(
            seen.iter()
                .any(|l| l.starts_with("* 2 FETCH (") && lists(l, "\\Flagged")),
            "{seen:?}"
        );

        b.ok("b4", "STORE 3 +FLAGS (\\Seen)");
        let mut seen = a.ok("a5", "EXPUNGE");
        seen.extend(a.ok("a6", "NOOP"));
        assert!(
            seen.iter()
                .any(|l| l.starts_with("* 3 FETCH (") && lists(l, "\\Seen")),
            "{seen:?}"
        );
        a.ok("a7", "LOGOUT");
    })
    .await
    .unwrap();
}

/// Header fields come from the header block mailstore keeps with the
/// message's metadata once read, not from a body read per message: with
/// the bodies gone from object storage, a second FETCH of the same header
/// fields still answers them whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_fields_are_served_from_the_kept_header() {
    let env = start().await;
    let port = env.imap;
    let blobs = env._dir.path().join("blobs");
    tokio::task::spawn_blocking(move || {
        let mut a = Raw::connect(port);
        a.ok("a1", &format!("LOGIN {USER} {PASS}"));
        for i in 0..3 {
            append_threaded(&mut a, &format!("p{i}"), i);
        }
        a.ok("a2", "SELECT INBOX");
        let (first, tagged) = fetch_fields(&mut a, "f1", "1:3");
        assert!(tagged.starts_with("f1 OK"), "{tagged}");
        assert_eq!(first.len(), 3);
        for (line, data) in &first {
            let text = String::from_utf8_lossy(data);
            assert!(
                text.contains("Message-ID: <m") && text.contains("References: <r"),
                "{line:?} gave {text:?}"
            );
        }
        std::fs::remove_dir_all(&blobs).unwrap();
        let (second, tagged) = fetch_fields(&mut a, "f2", "1:3");
        assert!(tagged.starts_with("f2 OK"), "{tagged}");
        assert_eq!(
            first.iter().map(|f| &f.1).collect::<Vec<_>>(),
            second.iter().map(|f| &f.1).collect::<Vec<_>>()
        );
        a.ok("a3", "LOGOUT");
    })
    .await
    .unwrap();
}

/// A FETCH of messages the process already read (date, size, envelope and
/// header block come from its cache) still shows the flags other sessions
/// set since, and the same envelope and header fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_of_known_messages_shows_other_sessions_flags() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let items = "FETCH 1 (FLAGS ENVELOPE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])";
        let mut a = Raw::connect(port);
        a.ok("a1", &format!("LOGIN {USER} {PASS}"));
        a.ok("a2", "APPEND INBOX {24+}\r\nSubject: kept\r\n\r\nhello\r\n");
        a.ok("a3", "SELECT INBOX");
        let first = a.ok("a4", items);
        let fetch = |lines: &[String]| {
            lines
                .iter()
                .filter(|l| !l.starts_with("* FLAGS") && !l.starts_with("* OK"))
                .cloned()
                .collect::<Vec<_>>()
                .concat()
        };
        let before = fetch(&first);
        assert!(before.contains("\"kept\""), "{first:?}");
        assert!(before.contains("RFC822.SIZE 24"), "{first:?}");
        assert!(before.contains("Subject: kept\r\n\r\n"), "{first:?}");

        let mut b = Raw::connect(port);
        b.ok("b1", &format!("LOGIN {USER} {PASS}"));
        b.ok("b2", "SELECT INBOX");
        b.ok("b3", "STORE 1 +FLAGS.SILENT (\\Flagged $Kept)");

        noop_until(&mut a, "n", |l| {
            l.starts_with("* 1 FETCH") && lists(l, "$Kept")
        });
        let again = a.ok("a5", items);
        let after = fetch(&again);
        assert!(
            lists(&after, "\\Flagged") && lists(&after, "$Kept"),
            "{again:?}"
        );
        // Apart from the flags, the same answer.
        let rest = |s: &str| {
            let from = s.find("ENVELOPE").unwrap_or(0);
            let to = s.rfind(")\r\n").unwrap_or(s.len());
            s.get(from..to).unwrap_or_default().to_owned()
        };
        assert_eq!(rest(&after), rest(&before));
    })
    .await
    .unwrap();
}
