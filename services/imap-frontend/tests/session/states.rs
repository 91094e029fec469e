//! What a client sees of the session's state machine and of mailstore's
//! failures: a command in a state that does not allow it gets BAD from the
//! one gate (and the session goes on), and a mailstore failure gets NO with
//! the RFC 5530 response code, never mailstore's own text.

use crate::support::*;

fn tagged(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or_default()
}

/// RFC 9051 6: each command is valid in some states only. Before LOGIN,
/// SELECT and FETCH are BAD; logged in, FETCH before SELECT and a second
/// LOGIN are BAD; after UNSELECT the mailbox commands are BAD again. None
/// of it ends the session or changes its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_the_wrong_state_get_bad() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut c = Raw::connect(port);
        for (tag, line) in [
            ("a1", "SELECT INBOX"),
            ("a2", "FETCH 1 FLAGS"),
            ("a3", "LIST \"\" *"),
            ("a4", "IDLE"),
        ] {
            let l = c.cmd(tag, line);
            assert_eq!(tagged(&l), format!("{tag} BAD Log in first\r\n"), "{l:?}");
        }
        // Allowed in every state.
        c.ok("a5", "NOOP");
        c.ok("a6", "CAPABILITY");
        c.ok("b1", &format!("LOGIN {USER} {PASS}"));
        c.ok("b2", "APPEND INBOX {14+}\r\nSubject: 1\r\n\r\n");
        for (tag, line) in [
            ("b3", "FETCH 1 FLAGS"),
            ("b4", "UID STORE 1 +FLAGS (\\Seen)"),
            ("b5", "EXPUNGE"),
            ("b6", "CHECK"),
            ("b7", "SEARCH ALL"),
        ] {
            let l = c.cmd(tag, line);
            assert_eq!(
                tagged(&l),
                format!("{tag} BAD Select a mailbox first\r\n"),
                "{l:?}"
            );
        }
        let l = c.cmd("b8", &format!("LOGIN {USER} {PASS}"));
        assert_eq!(tagged(&l), "b8 BAD Already authenticated\r\n", "{l:?}");
        let l = c.cmd("b9", "AUTHENTICATE PLAIN");
        assert_eq!(tagged(&l), "b9 BAD Already authenticated\r\n", "{l:?}");
        c.ok("c1", "SELECT INBOX");
        let l = c.ok("c2", "FETCH 1 FLAGS");
        assert!(l[0].starts_with("* 1 FETCH (FLAGS ("), "{l:?}");
        c.ok("c3", "UNSELECT");
        let l = c.cmd("c4", "FETCH 1 FLAGS");
        assert_eq!(tagged(&l), "c4 BAD Select a mailbox first\r\n", "{l:?}");
        // Still logged in: the mailbox can be selected again.
        c.ok("c5", "EXAMINE INBOX");
        c.ok("c6", "LOGOUT");
    })
    .await
    .unwrap();
}

/// The one map from mailstore's status codes to IMAP: a missing mailbox is
/// `[NONEXISTENT]` (or `[TRYCREATE]` as the target of APPEND and COPY), an
/// existing one `[ALREADYEXISTS]`; mailstore's text (`no mailbox "…"`)
/// and the account's address never reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailstore_failures_become_response_codes_without_their_text() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut c = Raw::connect(port);
        c.ok("a1", &format!("LOGIN {USER} {PASS}"));
        c.ok("a2", "APPEND INBOX {14+}\r\nSubject: 1\r\n\r\n");
        let mut answers = Vec::new();
        for (tag, line, code) in [
            ("b1", "SELECT Nowhere", "[NONEXISTENT]"),
            ("b2", "EXAMINE Nowhere", "[NONEXISTENT]"),
            ("b3", "STATUS Nowhere (MESSAGES)", "[NONEXISTENT]"),
            ("b4", "DELETE Nowhere", "[NONEXISTENT]"),
            ("b5", "RENAME Nowhere Elsewhere", "[NONEXISTENT]"),
            ("b6", "CREATE INBOX", "[ALREADYEXISTS]"),
            (
                "b7",
                "APPEND Nowhere {14+}\r\nSubject: 2\r\n\r\n",
                "[TRYCREATE]",
            ),
        ] {
            let l = c.cmd(tag, line);
            assert!(tagged(&l).starts_with(&format!("{tag} NO {code}")), "{l:?}");
            answers.extend(l);
        }
        c.ok("c1", "SELECT INBOX");
        let l = c.cmd("c2", "COPY 1 Nowhere");
        assert!(tagged(&l).starts_with("c2 NO [TRYCREATE]"), "{l:?}");
        answers.extend(l);
        // A failed SELECT leaves the Selected state (RFC 9051 6.3.2).
        let l = c.cmd("c3", "SELECT Nowhere");
        assert!(tagged(&l).starts_with("c3 NO [NONEXISTENT]"), "{l:?}");
        let l = c.cmd("c4", "FETCH 1 FLAGS");
        assert_eq!(tagged(&l), "c4 BAD Select a mailbox first\r\n", "{l:?}");
        for line in &answers {
            assert!(!line.contains("Nowhere"), "mailstore's text: {line:?}");
            assert!(!line.contains(USER), "the account's address: {line:?}");
        }
        c.ok("c5", "LOGOUT");
    })
    .await
    .unwrap();
}
