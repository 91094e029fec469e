//! Commands whose arguments or results imaptest and the RFCs check in
//! detail: ID, LIST patterns and LIST-EXTENDED, bad sequence numbers and
//! CLOSE, SASL-IR.

use crate::support::*;

use base64::Engine;

fn login(port: u16) -> Raw {
    let mut raw = Raw::connect(port);
    raw.ok("l1", &format!("LOGIN {USER} {PASS}"));
    raw
}

fn tagged(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or_default()
}

/// Issue 16: RFC 2971 allows 30 pairs, values of 1024 octets: such an ID
/// is answered, not refused as too long. A malformed list gets BAD and the
/// session goes on; `ID NIL` and literal values work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_takes_thirty_long_pairs_and_refuses_malformed_lists() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port);
        let pairs: Vec<String> = (0..30)
            .map(|i| {
                format!(
                    "\"field-{i:02}-{}\" \"{}\"",
                    "f".repeat(20),
                    "v".repeat(1024)
                )
            })
            .collect();
        let lines = raw.ok("a1", &format!("ID ({})", pairs.join(" ")));
        assert!(lines.iter().any(|l| l.starts_with("* ID (")), "{lines:?}");
        raw.ok("a2", "ID NIL");
        raw.ok("a3", "ID (\"name\" NIL \"version\" \"1.0\")");
        raw.send(b"a4 ID (\"name\" {5+}\r\nhello)\r\n");
        let lines = raw.until("a4");
        assert!(tagged(&lines).starts_with("a4 OK"), "{lines:?}");
        for (i, bad) in [
            "ID (\"name\" \"x\"",
            "ID \"name\" \"x\")",
            "ID (\"name\")",
            "ID (\"name\" \"x\" \"version\")",
            "ID (name \"x\")",
            "ID (NIL \"x\")",
            "ID (\"name\" (\"x\"))",
            "ID",
            "ID NIL NIL",
        ]
        .iter()
        .enumerate()
        {
            let tag = format!("b{i}");
            let lines = raw.cmd(&tag, bad);
            assert!(
                tagged(&lines).starts_with(&format!("{tag} BAD")),
                "{bad}: {lines:?}"
            );
        }
        raw.ok("c1", "NOOP");
    })
    .await
    .unwrap();
}

/// Issue 16: a LIST pattern is matched as given; `&` not starting valid
/// mUTF-7 there is plain text (as Dovecot does), not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_patterns_with_any_atom_chars_are_valid() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut raw = login(port);
        raw.ok("a1", "CREATE a&-b");
        let pattern = "!#$&'+,-.0123456789:;<=>?@^_`|}%*";
        let lines = raw.ok("a2", &format!("LIST \"\" \"{pattern}\""));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let lines = raw.ok("a3", &format!("LIST \"\" {pattern}"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        // A bare `&` matches itself.
        let lines = raw.ok("a4", "LIST \"\" \"a&*\"");
        assert_eq!(
            lines[0], "* LIST (\\HasNoChildren) \"/\" \"a&-b\"\r\n",
            "{lines:?}"
        );
        let lines = raw.ok("a5", "LIST \"\" \"a&-*\"");
        assert_eq!(
            lines[0], "* LIST (\\HasNoChildren) \"/\" \"a&-b\"\r\n",
            "{lines:?}"
        );
        // Mailbox names keep their check.
        let lines = raw.cmd("a6", "CREATE \"x&y\"");
        assert!(tagged(&lines).starts_with("a6 NO"), "{lines:?}");
        let lines = raw.cmd("a7", "SELECT \"x&y\"");
        assert!(tagged(&lines).starts_with("a7 NO"), "{lines:?}");
    })
    .await
    .unwrap();
}

/// Issue 16: a sequence number that names no message is a protocol error
/// (BAD), after which the session goes on; CLOSE then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sequence_numbers_get_bad_and_close_still_works() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut raw = login(port);
        for t in ["a1", "a2"] {
            raw.send(format!("{t} APPEND INBOX {{14+}}\r\nSubject: x\r\n\r\n\r\n").as_bytes());
            let lines = raw.until(t);
            assert!(tagged(&lines).starts_with(&format!("{t} OK")), "{lines:?}");
        }
        raw.ok("a3", "SELECT INBOX");
        for (tag, cmd) in [
            ("b1", "FETCH 0 FLAGS"),
            ("b2", "FETCH 99999 FLAGS"),
            ("b3", "FETCH 1,3 FLAGS"),
            ("b4", "STORE 3 +FLAGS (\\Seen)"),
            ("b5", "COPY 5:6 INBOX"),
        ] {
            let lines = raw.cmd(tag, cmd);
            assert!(
                tagged(&lines).starts_with(&format!("{tag} BAD")),
                "{cmd}: {lines:?}"
            );
            assert!(
                !lines.iter().any(|l| l.contains(" FETCH ")),
                "{cmd}: {lines:?}"
            );
        }
        // `*` and UIDs that name nothing are not errors.
        let lines = raw.ok("c1", "FETCH 2:* FLAGS");
        assert_eq!(lines.len(), 2, "{lines:?}");
        let lines = raw.ok("c2", "UID FETCH 99999 FLAGS");
        assert_eq!(lines.len(), 1, "{lines:?}");
        raw.ok("c3", "STORE 1 +FLAGS (\\Deleted)");
        raw.ok("c4", "CLOSE");
        raw.ok("c5", "SELECT INBOX");
        let lines = raw.ok("c6", "FETCH 1:* UID");
        assert_eq!(lines.len(), 2, "{lines:?}");
    })
    .await
    .unwrap();
}

/// CLOSE whose implicit expunge fails (the mailbox was deleted under it)
/// answers NO, not OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reports_a_failed_expunge() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = login(port);
        a.ok("a1", "CREATE box");
        a.send(b"a2 APPEND box {14+}\r\nSubject: x\r\n\r\n\r\n");
        let lines = a.until("a2");
        assert!(tagged(&lines).starts_with("a2 OK"), "{lines:?}");
        a.ok("a3", "SELECT box");
        a.ok("a4", "STORE 1 +FLAGS (\\Deleted)");
        let mut b = login(port);
        b.ok("b1", "DELETE box");
        let lines = a.cmd("a5", "CLOSE");
        assert!(tagged(&lines).starts_with("a5 NO "), "{lines:?}");
        a.ok("a6", "NOOP");
    })
    .await
    .unwrap();
}

fn plain(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

/// SASL-IR (RFC 4959): the PLAIN response on the AUTHENTICATE line, an
/// empty one (`=`) followed by a continuation, and a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_plain_with_initial_response() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port);
        let lines = raw.ok("a1", &format!("AUTHENTICATE PLAIN {}", plain(USER, PASS)));
        assert!(tagged(&lines).contains("Logged in"), "{lines:?}");
        raw.ok("a2", "SELECT INBOX");

        let mut raw = Raw::connect(port);
        raw.send(b"b1 AUTHENTICATE PLAIN =\r\n");
        assert!(raw.line().starts_with("+"));
        raw.send(format!("{}\r\n", plain(USER, PASS)).as_bytes());
        let lines = raw.until("b1");
        assert!(tagged(&lines).starts_with("b1 OK"), "{lines:?}");
        raw.ok("b2", "SELECT INBOX");

        let mut raw = Raw::connect(port);
        let lines = raw.cmd(
            "c1",
            &format!("AUTHENTICATE PLAIN {}", plain(USER, "wrong")),
        );
        assert!(tagged(&lines).starts_with("c1 NO "), "{lines:?}");
        let lines = raw.cmd("c2", "SELECT INBOX");
        assert!(tagged(&lines).starts_with("c2 BAD"), "{lines:?}");
        raw.ok("c3", &format!("LOGIN {USER} {PASS}"));
    })
    .await
    .unwrap();
}

/// The untagged responses of a command that must succeed.
fn untagged(raw: &mut Raw, tag: &str, line: &str) -> Vec<String> {
    let mut lines = raw.ok(tag, line);
    lines.pop();
    lines
}

/// LIST-EXTENDED (RFC 5258) and LSUB on RFC 5258's example hierarchy:
/// subscriptions are names that outlive their mailbox (Fruit/Peach),
/// RECURSIVEMATCH reports CHILDINFO, CREATE does not subscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_extended_on_rfc5258_examples() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut raw = login(port);
        for (i, name) in ["Sent", "Drafts", "Trash", "Junk", "Archive"].iter().enumerate() {
            raw.ok(&format!("u{i}"), &format!("UNSUBSCRIBE {name}"));
        }
        for (i, name) in [
            "Fruit",
            "Fruit/Apple",
            "Fruit/Banana",
            "Fruit/Peach",
            "Tofu",
            "Vegetable",
            "Vegetable/Broccoli",
            "Vegetable/Corn",
        ]
        .iter()
        .enumerate()
        {
            raw.ok(&format!("c{i}"), &format!("CREATE {name}"));
        }
        for (i, name) in ["Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"]
            .iter()
            .enumerate()
        {
            raw.ok(&format!("s{i}"), &format!("SUBSCRIBE {name}"));
        }
        raw.ok("d1", "DELETE Fruit/Peach");

        assert_eq!(
            untagged(&mut raw, "a1", "LIST (SUBSCRIBED) \"\" \"*\""),
            vec![
                "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n",
                "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"\r\n",
                "* LIST (\\NonExistent \\Subscribed) \"/\" \"Fruit/Peach\"\r\n",
                "* LIST (\\HasChildren \\Subscribed) \"/\" \"Vegetable\"\r\n",
                "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Vegetable/Broccoli\"\r\n",
            ]
        );
        assert_eq!(
            untagged(
                &mut raw,
                "a2",
                "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)"
            ),
            vec![
                "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n",
                "* LIST (\\HasChildren) \"/\" \"Fruit\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
                "* LIST (\\HasChildren \\Subscribed) \"/\" \"Vegetable\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
            ]
        );
        // A pattern matching the subscribed child itself: no CHILDINFO.
        assert_eq!(
            untagged(&mut raw, "a3", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Fruit*\""),
            vec![
                "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"\r\n",
                "* LIST (\\NonExistent \\Subscribed) \"/\" \"Fruit/Peach\"\r\n",
            ]
        );
        // Without SUBSCRIBED selection only mailboxes are listed.
        let all = untagged(
            &mut raw,
            "a4",
            "LIST \"\" (\"Fruit*\" \"Tofu\" \"Vegetable\") RETURN (CHILDREN SUBSCRIBED)",
        );
        assert_eq!(
            all,
            vec![
                "* LIST (\\HasChildren) \"/\" \"Fruit\"\r\n",
                "* LIST (\\HasNoChildren) \"/\" \"Fruit/Apple\"\r\n",
                "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"\r\n",
                "* LIST (\\HasNoChildren) \"/\" \"Tofu\"\r\n",
                "* LIST (\\HasChildren \\Subscribed) \"/\" \"Vegetable\"\r\n",
            ]
        );
        // LSUB (RFC 3501 6.3.9): `%` lists an unsubscribed superior of a
        // subscribed name as \Noselect and nothing else; subscribed names,
        // with a mailbox or not, get no attributes (as imaptest's
        // `subscribe` script expects).
        assert_eq!(
            untagged(&mut raw, "a5", "LSUB \"\" \"%\""),
            vec![
                "* LSUB () \"/\" \"INBOX\"\r\n",
                "* LSUB (\\Noselect) \"/\" \"Fruit\"\r\n",
                "* LSUB () \"/\" \"Vegetable\"\r\n",
            ]
        );
        assert_eq!(
            untagged(&mut raw, "a6", "LSUB \"\" \"Fruit/*\""),
            vec![
                "* LSUB () \"/\" \"Fruit/Banana\"\r\n",
                "* LSUB () \"/\" \"Fruit/Peach\"\r\n",
            ]
        );
        // Unsubscribing the name without a mailbox removes it.
        raw.ok("a7", "UNSUBSCRIBE Fruit/Peach");
        let lines = untagged(&mut raw, "a8", "LIST (SUBSCRIBED) \"\" \"Fruit/*\"");
        assert_eq!(lines, vec!["* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"\r\n"]);
    })
    .await
    .unwrap();
}

/// Issue 15: `$` (SEARCHRES) is not an in-band keyword. A client that
/// searches for the keyword mailfleet once used to stand for `$` gets the
/// messages that have that keyword, while `$` still means the saved result,
/// also in one command together with that keyword.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_result_is_not_a_keyword_a_client_can_search() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut raw = login(port);
        for t in ["a1", "a2", "a3"] {
            raw.send(format!("{t} APPEND INBOX {{14+}}\r\nSubject: x\r\n\r\n\r\n").as_bytes());
            let lines = raw.until(t);
            assert!(tagged(&lines).starts_with(&format!("{t} OK")), "{lines:?}");
        }
        raw.ok("b1", "SELECT INBOX");
        raw.ok("b2", "STORE 1 +FLAGS.SILENT ($MailfleetSaved)");
        raw.ok("b3", "SEARCH RETURN (SAVE) 3");
        let found = |lines: &[String]| -> String {
            lines
                .iter()
                .find(|l| l.starts_with("* SEARCH"))
                .cloned()
                .unwrap_or_default()
        };
        let lines = raw.ok("c1", "SEARCH KEYWORD $MailfleetSaved");
        assert_eq!(found(&lines), "* SEARCH 1\r\n", "{lines:?}");
        let lines = raw.ok("c2", "SEARCH $");
        assert_eq!(found(&lines), "* SEARCH 3\r\n", "{lines:?}");
        let lines = raw.ok("c3", "SEARCH OR $ KEYWORD $mailfleetsaved");
        assert_eq!(found(&lines), "* SEARCH 1 3\r\n", "{lines:?}");
        let lines = raw.ok("c4", "UID SORT (ARRIVAL) UTF-8 KEYWORD $MailfleetSaved");
        assert!(
            lines.iter().any(|l| l == "* SORT 1\r\n"),
            "SORT takes the keyword as a keyword too: {lines:?}"
        );
    })
    .await
    .unwrap();
}
