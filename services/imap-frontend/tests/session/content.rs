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

/// SORT by address (RFC 5256 FROM, TO, CC: the first address's local part;
/// RFC 5957 DISPLAYFROM, DISPLAYTO: its decoded display name, else its
/// addr-spec), compared with i;unicode-casemap, ties by sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_by_addresses_and_display_names() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = session(port);
        let messages = [
            "From: Fred <zeta@a.test>\r\nTo: carol@x.test\r\nCc: Bob <BOB@x.test>, aaa@x.test\r\n",
            "From: =?utf-8?q?=C3=89mile?= <Yann@b.test>\r\nTo: \"Zoe\" <alice@x.test>\r\n",
            "From: edgar@c.test\r\nTo: \"\" <Bob@x.test>\r\nCc: carl@x.test\r\n",
            "From: xavier@d.test\r\nTo: =?utf-8?q?=C3=A9va?= <eva@x.test>\r\nCc: BOB@y.test\r\n",
            "From: ALPHA@e.test\r\nTo: carol@y.test\r\nCc: bob@z.test\r\n",
        ];
        for (i, h) in messages.iter().enumerate() {
            append(
                &mut a,
                &format!("p{i}"),
                &format!("{h}Subject: {i}\r\n\r\nbody\r\n"),
            );
        }
        a.ok("n", "NOOP");
        let cases: &[(&str, &[u32])] = &[
            ("FROM", &[5, 3, 4, 2, 1]),
            ("TO", &[2, 3, 1, 5, 4]),
            ("CC", &[2, 1, 4, 5, 3]),
            ("REVERSE CC", &[3, 1, 4, 5, 2]),
            // "Émile" sorts with the Es, before "Fred"; without a display
            // name the addr-spec counts; an empty name is no name.
            ("DISPLAYFROM", &[5, 3, 2, 1, 4]),
            ("REVERSE DISPLAYFROM", &[4, 1, 2, 3, 5]),
            ("DISPLAYTO", &[3, 1, 5, 4, 2]),
            ("REVERSE DISPLAYTO", &[2, 4, 5, 1, 3]),
        ];
        let mut wrong = Vec::new();
        for (i, (key, want)) in cases.iter().enumerate() {
            let got = numbers(&mut a, &format!("o{i}"), &format!("SORT ({key}) UTF-8 ALL"));
            if got != *want {
                wrong.push(format!("{key}: got {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    })
    .await
    .unwrap();
}

/// The response lines of a command before its tagged OK, joined: literals
/// included, the exact octets the server sent.
fn response(raw: &mut Raw, tag: &str, cmd: &str) -> String {
    let lines = raw.ok(tag, cmd);
    lines[..lines.len() - 1].concat()
}

/// BINARY.SIZE and BINARY[part]<partial> count the decoded octets of
/// base64 exactly, however the base64 is laid out (line breaks, padding,
/// white space, a last line without CRLF), and an empty part is an empty
/// string for BODY and BINARY (imaptest fetch-binary-mime-base64,
/// fetch-binary-mime, fetch-body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_counts_decoded_octets_and_empty_parts_are_empty() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut a = session(port);
        let part = |ctype: &str, cte: Option<&str>, body: &str| {
            let cte = cte.map_or(String::new(), |c| {
                format!("Content-Transfer-Encoding: {c}\r\n")
            });
            format!("--b\r\nContent-Type: {ctype}\r\n{cte}\r\n{body}\r\n")
        };
        let multipart = [
            "From: a@b.test\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                .to_owned(),
            // 1: padded, one line.
            part("text/plain", Some("base64"), "aGVsbG8gd29ybGQ="),
            // 2: broken into short lines.
            part("text/plain", Some("BASE64"), "aGVs\r\nbG8g\r\nd29y\r\nbGQ="),
            // 3: white space between and around the groups.
            part(
                "text/plain",
                Some("base64"),
                " aGVsbG8g dG8g\teW91\r\n  IHRvbw== ",
            ),
            // 4: a NUL, a CRLF and a bare LF: decoded as they are, text
            // or not (no line-end conversion changes the count).
            part(
                "text/plain",
                Some("base64"),
                "YWJjZGVmZwBoaWprbA0K\r\nbW5vCnBxcnN0dXZxeHl6",
            ),
            // 5: unpadded.
            part("text/plain", Some("base64"), "aGVsbG8gdG8gZXZlcnlvbmUh"),
            // 6: an empty part: its header's last CRLF is followed by the
            // boundary's, with no blank line of its own.
            "--b\r\nContent-Type: text/plain\r\n\r\n".to_owned(),
            // 7: an empty body after the blank line.
            part("text/plain", None, ""),
            "--b--\r\n".to_owned(),
        ]
        .concat();
        append(&mut a, "p1", &multipart);
        // A single-part message whose base64 ends without CRLF.
        append(
            &mut a,
            "p2",
            "Subject: x\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29y\r\nbGQ",
        );
        a.ok("n", "NOOP");
        let cases: &[(&str, &str)] = &[
            (
                "FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2] BINARY.SIZE[3] BINARY.SIZE[4] BINARY.SIZE[5])",
                "* 1 FETCH (BINARY.SIZE[1] 11 BINARY.SIZE[2] 11 BINARY.SIZE[3] 16 \
                 BINARY.SIZE[4] 30 BINARY.SIZE[5] 18)\r\n",
            ),
            (
                "FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[3] BINARY.PEEK[5])",
                "* 1 FETCH (BINARY[1] {11}\r\nhello world BINARY[2] {11}\r\nhello world \
                 BINARY[3] {16}\r\nhello to you too BINARY[5] {18}\r\nhello to everyone!)\r\n",
            ),
            (
                "FETCH 1 BINARY.PEEK[4]",
                "* 1 FETCH (BINARY[4] ~{30}\r\nabcdefg\0hijkl\r\nmno\npqrstuvqxyz)\r\n",
            ),
            (
                "FETCH 1 BINARY.PEEK[4]<0.7>",
                "* 1 FETCH (BINARY[4]<0> {7}\r\nabcdefg)\r\n",
            ),
            (
                "FETCH 1 BINARY.PEEK[4]<0.8>",
                "* 1 FETCH (BINARY[4]<0> ~{8}\r\nabcdefg\0)\r\n",
            ),
            (
                "FETCH 1 BINARY.PEEK[4]<10.10>",
                "* 1 FETCH (BINARY[4]<10> {10}\r\njkl\r\nmno\np)\r\n",
            ),
            (
                "FETCH 1 BINARY.PEEK[4]<5.10>",
                "* 1 FETCH (BINARY[4]<5> ~{10}\r\nfg\0hijkl\r\n)\r\n",
            ),
            (
                "FETCH 1 BINARY.PEEK[4]<15.100>",
                "* 1 FETCH (BINARY[4]<15> {15}\r\nmno\npqrstuvqxyz)\r\n",
            ),
            (
                "FETCH 1 BINARY.PEEK[3]<6.4>",
                "* 1 FETCH (BINARY[3]<6> {4}\r\nto y)\r\n",
            ),
            (
                "FETCH 1 (BODY.PEEK[6] BODY.PEEK[7] BINARY.SIZE[6] BINARY.SIZE[7])",
                "* 1 FETCH (BODY[6] {0}\r\n BODY[7] {0}\r\n BINARY.SIZE[6] 0 BINARY.SIZE[7] 0)\r\n",
            ),
            (
                "FETCH 1 (BINARY.PEEK[6] BINARY.PEEK[7])",
                "* 1 FETCH (BINARY[6] {0}\r\n BINARY[7] {0}\r\n)\r\n",
            ),
            (
                "FETCH 2 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.PEEK[1]<9.5>)",
                "* 2 FETCH (BINARY.SIZE[1] 11 BINARY[1] {11}\r\nhello world \
                 BINARY[1]<9> {2}\r\nld)\r\n",
            ),
        ];
        let mut wrong = Vec::new();
        for (i, (cmd, want)) in cases.iter().enumerate() {
            let got = response(&mut a, &format!("b{i}"), cmd);
            if got != *want {
                wrong.push(format!("{cmd}:\n got {got:?}\nwant {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    })
    .await
    .unwrap();
}
