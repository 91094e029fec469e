//! What the server reads from a message's content: SENT* dates, ENVELOPE
//! addresses, BINARY and BODY of parts, SORT by address. The expected
//! answers follow Dovecot's imaptest scripts (src/tests/search-date,
//! fetch-envelope, fetch-binary-mime*, fetch-body, sort-*).

use crate::support::*;

/// Appends `msg` (CRLF line ends) to INBOX with a non-synchronising literal.
fn append(raw: &mut Raw, tag: &str, msg: &str) {
    raw.ok(tag, &format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len()));
}

/// A logged-in raw session with INBOX selected.
fn session(port: u16) -> Raw {
    let mut raw = Raw::connect(port);
    raw.ok("l", &format!("LOGIN {USER} {PASS}"));
    raw.ok("s", "SELECT INBOX");
    raw
}

/// The numbers of the `* SEARCH` or `* SORT` line of a command's answer.
fn numbers(raw: &mut Raw, tag: &str, cmd: &str) -> Vec<u32> {
    let lines = raw.ok(tag, cmd);
    let line = lines
        .iter()
        .find(|l| l.starts_with("* SEARCH") || l.starts_with("* SORT"))
        .unwrap_or_else(|| panic!("{cmd}: {lines:?}"));
    line.split_whitespace()
        .skip(2)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// SENTBEFORE, SENTON and SENTSINCE take the Date header's day as written,
/// its time and zone disregarded (RFC 3501 6.4.4), across DST changes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_dates_are_the_day_as_written() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = session(port);
        // imaptest's search-date messages.
        let dates = [
            "Sat, 24 Mar 2007 23:00:00 +0200",
            "Sun, 25 Mar 2007 00:00:00 +0200",
            "Sun, 25 Mar 2007 01:00:00 +0200",
            "Sun, 25 Mar 2007 02:00:00 +0200",
            "Sun, 25 Mar 2007 04:00:00 +0300",
            "Sun, 25 Mar 2007 23:00:00 +0300",
            "Mon, 26 Mar 2007 00:00:00 +0300",
            "Sat, 27 Oct 2007 23:00:00 +0300",
            "Sun, 28 Oct 2007 00:00:00 +0300",
            "Sun, 28 Oct 2007 01:00:00 +0300",
            "Sun, 28 Oct 2007 02:00:00 +0300",
            "Sun, 28 Oct 2007 03:00:00 +0300",
            "Sun, 28 Oct 2007 03:00:00 +0200",
            "Sun, 28 Oct 2007 04:00:00 +0200",
            "Sun, 28 Oct 2007 23:00:00 +0200",
            "Mon, 29 Oct 2007 00:00:00 +0200",
            // The example: 2 January in UTC.
            "Mon, 1 Jan 2024 23:30:00 -0500",
        ];
        for (i, d) in dates.iter().enumerate() {
            append(
                &mut a,
                &format!("p{i}"),
                &format!("Date: {d}\r\n\r\nbody\r\n"),
            );
        }
        a.ok("n", "NOOP");
        let cases: &[(&str, &[u32])] = &[
            ("SENTBEFORE 24-Mar-2007", &[]),
            ("SENTBEFORE 25-Mar-2007", &[1]),
            ("SENTBEFORE 26-Mar-2007", &[1, 2, 3, 4, 5, 6]),
            ("SENTBEFORE 27-Mar-2007", &[1, 2, 3, 4, 5, 6, 7]),
            ("SENTON 23-Mar-2007", &[]),
            ("SENTON 24-Mar-2007", &[1]),
            ("SENTON 25-Mar-2007", &[2, 3, 4, 5, 6]),
            ("SENTON 26-Mar-2007", &[7]),
            ("1:7 SENTSINCE 24-Mar-2007", &[1, 2, 3, 4, 5, 6, 7]),
            ("1:7 SENTSINCE 25-Mar-2007", &[2, 3, 4, 5, 6, 7]),
            ("1:7 SENTSINCE 26-Mar-2007", &[7]),
            ("1:7 SENTSINCE 27-Mar-2007", &[]),
            ("8:16 SENTBEFORE 27-Oct-2007", &[]),
            ("8:16 SENTBEFORE 28-Oct-2007", &[8]),
            (
                "8:16 SENTBEFORE 29-Oct-2007",
                &[8, 9, 10, 11, 12, 13, 14, 15],
            ),
            (
                "8:16 SENTBEFORE 30-Oct-2007",
                &[8, 9, 10, 11, 12, 13, 14, 15, 16],
            ),
            ("8:16 SENTON 26-Oct-2007", &[]),
            ("8:16 SENTON 27-Oct-2007", &[8]),
            ("8:16 SENTON 28-Oct-2007", &[9, 10, 11, 12, 13, 14, 15]),
            ("8:16 SENTON 29-Oct-2007", &[16]),
            (
                "8:16 SENTSINCE 27-Oct-2007",
                &[8, 9, 10, 11, 12, 13, 14, 15, 16],
            ),
            (
                "8:16 SENTSINCE 28-Oct-2007",
                &[9, 10, 11, 12, 13, 14, 15, 16],
            ),
            ("8:16 SENTSINCE 29-Oct-2007", &[16]),
            ("8:16 SENTSINCE 30-Oct-2007", &[]),
            ("SENTON 1-Jan-2024", &[17]),
            ("SENTON 2-Jan-2024", &[]),
        ];
        let mut wrong = Vec::new();
        for (i, (key, want)) in cases.iter().enumerate() {
            let got = numbers(&mut a, &format!("d{i}"), &format!("SEARCH {key}"));
            if got != *want {
                wrong.push(format!("{key}: got {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    })
    .await
    .unwrap();
}

/// A source route is the address's adl field (RFC 3501 7.4.2), not part of
/// its mailbox (imaptest fetch-envelope).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_source_route_is_the_adl() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = session(port);
        append(
            &mut a,
            "p1",
            "Date: Sat, 01 Feb 2007 01:02:03 +0200\r\nFrom: <@route:user@domain>\r\n\r\nbody\r\n",
        );
        append(
            &mut a,
            "p2",
            "From: a@b.test\r\nTo: \"name\" <@route1,@route2:user@domain>\r\n\r\nbody\r\n",
        );
        let got = a.ok("f", "FETCH 1:2 ENVELOPE");
        assert_eq!(
            got[..2],
            [
                "* 1 FETCH (ENVELOPE (\"Sat, 01 Feb 2007 01:02:03 +0200\" NIL \
                 ((NIL \"@route\" \"user\" \"domain\")) ((NIL \"@route\" \"user\" \"domain\")) \
                 ((NIL \"@route\" \"user\" \"domain\")) NIL NIL NIL NIL NIL))\r\n",
                "* 2 FETCH (ENVELOPE (NIL NIL ((NIL NIL \"a\" \"b.test\")) \
                 ((NIL NIL \"a\" \"b.test\")) ((NIL NIL \"a\" \"b.test\")) \
                 ((\"name\" \"@route1,@route2\" \"user\" \"domain\")) NIL NIL NIL NIL))\r\n",
            ],
            "{got:?}"
        );
    })
    .await
    .unwrap();
}
