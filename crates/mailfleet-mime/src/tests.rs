#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// Lines in `bytes`: line feeds, plus one for a last line without one.
fn count_lines(bytes: &[u8]) -> u64 {
    let lf = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    match bytes.last() {
        Some(b'\n') | None => lf,
        Some(_) => lf + 1,
    }
}

fn part_bytes(raw: &[u8], r: Range<u64>) -> &[u8] {
    &raw[r.start as usize..r.end as usize]
}

#[test]
fn simple_text_message() {
    let raw = b"From: Alice Example <alice@example.test>\r\n\
To: bob@example.test, carol@example.test\r\n\
Subject: Hello\r\n  there\r\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
Message-ID: <1234@local.machine.example>\r\n\
\r\n\
Hi Bob,\r\nbye\r\n";
    let m = analyze(raw);
    assert_eq!(m.size, raw.len() as u64);
    assert_eq!(m.subject.as_deref(), Some("Hello there"));
    assert_eq!(m.envelope.subject.as_deref(), Some("Hello  there"));
    assert_eq!(
        m.from.as_deref(),
        Some("Alice Example <alice@example.test>")
    );
    assert_eq!(
        m.to.as_deref(),
        Some("bob@example.test, carol@example.test")
    );
    assert_eq!(
        m.message_id.as_deref(),
        Some("<1234@local.machine.example>")
    );
    assert_eq!(m.date_ms, Some(1_057_049_557_000));
    assert_eq!(m.envelope.from.len(), 1);
    assert_eq!(m.envelope.from[0].name.as_deref(), Some("Alice Example"));
    assert_eq!(m.envelope.from[0].mailbox.as_deref(), Some("alice"));
    assert_eq!(m.envelope.from[0].host.as_deref(), Some("example.test"));
    assert_eq!(
        m.envelope.sender, m.envelope.from,
        "sender defaults to from"
    );
    assert_eq!(
        m.envelope.reply_to, m.envelope.from,
        "reply-to defaults to from"
    );
    assert_eq!(m.envelope.to.len(), 2);
    assert!(m.envelope.cc.is_empty());
    let b = &m.body;
    assert_eq!(
        (b.media_type.as_str(), b.subtype.as_str()),
        ("text", "plain")
    );
    assert_eq!(b.encoding, "7BIT");
    assert_eq!(part_bytes(raw, b.body_range()), b"Hi Bob,\r\nbye\r\n");
    assert_eq!(b.size, 14);
    assert_eq!(b.lines, Some(2));
    assert_eq!(m.header_len, b.body_offset);
    assert!(part_bytes(raw, b.header_range()).ends_with(b"example>\r\n\r\n"));
}

const NESTED: &[u8] = b"From: a@example.test\r\n\
Subject: nested\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
caf\xc3\xa9\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>cafe</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"x.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"x.pdf\"\r\n\
Content-ID: <part3@x>\r\n\
Content-Description: A file\r\n\
Content-Language: en, de\r\n\
Content-Location: http://x.test/x.pdf\r\n\
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\
\r\n\
JVBERi0=\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Inner <inner@example.test>\r\n\
Subject: inside\r\n\
Content-Type: multipart/mixed; boundary=deep\r\n\
\r\n\
--deep\r\n\
\r\n\
deep text\r\n\
--deep--\r\n\
--outer--\r\n\
epilogue\r\n";

#[test]
fn nested_multipart_and_rfc822() {
    let raw = NESTED;
    let m = analyze(raw);
    let root = &m.body;
    assert_eq!(
        (root.media_type.as_str(), root.subtype.as_str()),
        ("multipart", "mixed")
    );
    assert_eq!(root.parts.len(), 3);

    let alt = &root.parts[0];
    assert_eq!(alt.subtype, "alternative");
    assert_eq!(alt.parts.len(), 2);
    let text = &alt.parts[0];
    assert_eq!(text.encoding, "8BIT");
    assert_eq!(part_bytes(raw, text.body_range()), "café".as_bytes());
    assert_eq!(text.lines, Some(1));
    assert_eq!(
        text.params,
        vec![("charset".to_string(), "utf-8".to_string())]
    );
    assert_eq!(
        part_bytes(raw, text.header_range()),
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    );
    let html = &alt.parts[1];
    assert_eq!(html.subtype, "html");
    assert_eq!(part_bytes(raw, html.body_range()), b"<p>cafe</p>");
    assert!(html.params.contains(&("charset".into(), "us-ascii".into())));
    // The multipart/alternative body ends before the CRLF preceding --outer.
    assert!(part_bytes(raw, alt.body_range()).ends_with(b"--inner--"));

    let pdf = &root.parts[1];
    assert_eq!(
        (pdf.media_type.as_str(), pdf.subtype.as_str()),
        ("application", "pdf")
    );
    assert_eq!(pdf.encoding, "BASE64");
    assert_eq!(part_bytes(raw, pdf.body_range()), b"JVBERi0=");
    assert_eq!(pdf.size, 8);
    assert_eq!(pdf.lines, None);
    assert_eq!(pdf.id.as_deref(), Some("<part3@x>"));
    assert_eq!(pdf.description.as_deref(), Some("A file"));
    assert_eq!(pdf.md5.as_deref(), Some("Q2hlY2sgSW50ZWdyaXR5IQ=="));
    assert_eq!(pdf.location.as_deref(), Some("http://x.test/x.pdf"));
    assert_eq!(pdf.language, vec!["en".to_string(), "de".to_string()]);
    let d = pdf.disposition.as_ref().unwrap();
    assert_eq!(d.kind, "attachment");
    assert_eq!(
        d.params,
        vec![("filename".to_string(), "x.pdf".to_string())]
    );
    assert_eq!(pdf.params, vec![("name".to_string(), "x.pdf".to_string())]);

    let msg = &root.parts[2];
    assert_eq!(
        (msg.media_type.as_str(), msg.subtype.as_str()),
        ("message", "rfc822")
    );
    let inner = msg.message.as_ref().unwrap();
    assert_eq!(inner.envelope.subject.as_deref(), Some("inside"));
    assert_eq!(inner.envelope.from[0].mailbox.as_deref(), Some("inner"));
    assert_eq!(inner.body.header_offset, msg.body_offset);
    assert!(part_bytes(raw, inner.body.header_range()).starts_with(b"From: Inner"));
    assert_eq!(inner.body.parts.len(), 1);
    let deep = &inner.body.parts[0];
    assert_eq!(part_bytes(raw, deep.body_range()), b"deep text");
    assert_eq!(deep.subtype, "plain");
    assert_eq!(
        msg.lines,
        Some(count_lines(part_bytes(raw, msg.body_range())))
    );
    assert!(part_bytes(raw, msg.body_range()).ends_with(b"--deep--"));

    // The metadata round-trips through JSON (it is stored as JSONB).
    let json = serde_json::to_string(&m).unwrap();
    let back: MessageMeta = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn groups_and_missing_headers() {
    let raw =
        b"To: Friends: a@x.test, b@y.test;, c@z.test\r\nCc: undisclosed-recipients:;\r\n\r\nbody";
    let m = analyze(raw);
    assert!(m.envelope.from.is_empty());
    assert!(m.envelope.subject.is_none());
    assert!(m.envelope.date.is_none());
    let to = &m.envelope.to;
    assert_eq!(to[0].mailbox.as_deref(), Some("Friends"));
    assert_eq!(to[0].host, None);
    assert_eq!(to[1].mailbox.as_deref(), Some("a"));
    assert_eq!(to[2].host.as_deref(), Some("y.test"));
    assert_eq!(to[3], EnvelopeAddress::default(), "group end");
    assert_eq!(to.last().unwrap().mailbox.as_deref(), Some("c"));
    assert_eq!(m.body.lines, Some(1));
    assert_eq!(m.body.size, 4);
}

#[test]
fn bare_lf_and_headers_only() {
    let raw = b"Subject: lf\n\nline1\nline2\n";
    let m = analyze(raw);
    assert_eq!(m.header_len, 13);
    assert_eq!(m.body.lines, Some(2));
    let raw = b"Subject: no body\r\n";
    let m = analyze(raw);
    assert_eq!(m.header_len, raw.len() as u64);
    assert_eq!(m.body.size, 0);
}

#[test]
fn multipart_without_boundary_is_text() {
    let raw = b"Content-Type: multipart/mixed\r\n\r\nno parts here\r\n";
    let m = analyze(raw);
    assert_eq!(m.body.media_type, "text");
    assert!(m.body.parts.is_empty());
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\nnothing\r\n";
    assert_eq!(analyze(raw).body.media_type, "text");
}

#[test]
fn unterminated_multipart_runs_to_end() {
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo";
    let m = analyze(raw);
    assert_eq!(m.body.parts.len(), 2);
    assert_eq!(part_bytes(raw, m.body.parts[0].body_range()), b"one");
    assert_eq!(part_bytes(raw, m.body.parts[1].body_range()), b"two");
}

#[test]
fn deep_nesting_is_bounded() {
    let mut raw = Vec::new();
    for i in 0..200 {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"\r\nleaf\r\n");
    let m = analyze(&raw);
    let mut depth = 0;
    let mut p = &m.body;
    while let Some(c) = p.parts.first() {
        p = c;
        depth += 1;
    }
    assert!(depth <= MAX_DEPTH);
}

/// Checks the structural invariants of every part: ranges nested and in bounds.
fn check(part: &BodyPart, bounds: Range<u64>) {
    assert!(part.header_offset <= part.body_offset, "{part:?}");
    assert!(part.body_offset <= part.body_end, "{part:?}");
    assert!(
        bounds.start <= part.header_offset && part.body_end <= bounds.end,
        "{part:?} {bounds:?}"
    );
    assert_eq!(part.size, part.body_end - part.body_offset);
    for c in &part.parts {
        check(c, part.body_range());
    }
    if let Some(m) = &part.message {
        check(&m.body, part.body_range());
    }
}

#[test]
fn truncated_and_mutated_inputs_never_panic() {
    let samples: [&[u8]; 2] = [
        NESTED,
        b"From: =?utf-8?q?caf=C3=A9?= <x@y>\r\nTo: <>, @, a@, \"q\r\n\r\n",
    ];
    for sample in samples {
        for end in 0..=sample.len() {
            let raw = &sample[..end];
            let m = analyze(raw);
            check(&m.body, 0..raw.len() as u64);
        }
    }
    // Deterministic pseudo-random byte flips over the nested sample.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let mut raw = NESTED.to_vec();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % raw.len() as u64) as usize;
            raw[i] =
                [b'\r', b'\n', b'-', b':', b';', b'"', 0xff, b' ', b'='][(seed >> 32) as usize % 9];
        }
        let m = analyze(&raw);
        check(&m.body, 0..raw.len() as u64);
    }
}

#[test]
fn eight_bit_and_encoded_headers() {
    let raw = "From: =?utf-8?q?Andr=C3=A9?= <andre@example.test>\r\n\
Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n\
Cc: Jörg <joerg@exämple.test>\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Gr\u{fc}\u{df}e\r\n"
        .as_bytes();
    let m = analyze(raw);
    // Decoded for listings, as written for IMAP ENVELOPE.
    assert_eq!(m.subject.as_deref(), Some("Grüße"));
    assert_eq!(
        m.envelope.subject.as_deref(),
        Some("=?utf-8?b?R3LDvMOfZQ==?=")
    );
    assert_eq!(m.envelope.from[0].name.as_deref(), Some("André"));
    assert_eq!(m.envelope.cc[0].name.as_deref(), Some("Jörg"));
    assert_eq!(m.envelope.cc[0].host.as_deref(), Some("exämple.test"));
    assert_eq!(m.body.encoding, "8BIT");
    assert_eq!(
        m.body.params,
        vec![("charset".to_string(), "iso-8859-1".to_string())]
    );
    assert_eq!(part_bytes(raw, m.body.body_range()), "Grüße\r\n".as_bytes());
}

#[test]
fn digest_parts_default_to_rfc822_and_base64_message_is_a_leaf() {
    let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogdHdvDQoNCg==\r\n--d--\r\n";
    let m = analyze(raw);
    let first = &m.body.parts[0];
    assert_eq!(
        (first.media_type.as_str(), first.subtype.as_str()),
        ("message", "rfc822")
    );
    let inner = first.message.as_ref().unwrap();
    assert_eq!(inner.envelope.subject.as_deref(), Some("one"));
    assert_eq!(part_bytes(raw, inner.body.body_range()), b"first");
    let second = &m.body.parts[1];
    assert_eq!(second.encoding, "BASE64");
    assert!(second.message.is_none());
}

#[test]
fn references_are_kept_and_old_metadata_still_loads() {
    let raw = b"Subject: Re: x\r\nIn-Reply-To: <b@x>\r\n\
References: <a@x>\r\n <b@x>\r\n\r\nbody\r\n";
    let m = analyze(raw);
    assert_eq!(m.references.as_deref(), Some("<a@x> <b@x>"));
    assert_eq!(m.envelope.in_reply_to.as_deref(), Some("<b@x>"));
    // Metadata cached before the field existed has no "references" key.
    let mut json = serde_json::to_value(&m).unwrap();
    json.as_object_mut().unwrap().remove("references");
    let old: MessageMeta = serde_json::from_value(json).unwrap();
    assert_eq!(old.references, None);
    assert_eq!(analyze(b"Subject: y\r\n\r\n").references, None);
}

/// A source route (obs-route) goes to the address's route (IMAP's adl),
/// out of its mailbox (RFC 3501 7.4.2, imaptest fetch-envelope).
#[test]
fn source_routes_are_the_adl() {
    let raw = b"From: <@route:user@domain>\r\n\
To: Name <@route1, @route2:user@domain>, plain@host.test\r\n\r\nbody\r\n";
    let m = analyze(raw);
    let addr =
        |route: Option<&str>, name: Option<&str>, mailbox: &str, host: &str| EnvelopeAddress {
            name: name.map(Into::into),
            route: route.map(Into::into),
            mailbox: Some(mailbox.into()),
            host: Some(host.into()),
        };
    assert_eq!(
        m.envelope.from,
        [addr(Some("@route"), None, "user", "domain")]
    );
    assert_eq!(
        m.envelope.to,
        [
            addr(Some("@route1,@route2"), Some("Name"), "user", "domain"),
            addr(None, None, "plain", "host.test"),
        ]
    );
    assert_eq!(m.from.as_deref(), Some("user@domain"));
    assert_eq!(m.to.as_deref(), Some("user@domain, plain@host.test"));
    // Metadata cached before routes were kept has no "route" keys.
    let json = serde_json::to_string(&m.envelope)
        .unwrap()
        .replace(r#""route":"@route","#, "");
    let old: Envelope = serde_json::from_str(&json).unwrap();
    assert_eq!(old.from[0].route, None);
}

/// Lines that MIME structure turns on, to build messages from.
const LINES: &[&[u8]] = &[
    b"Content-Type: multipart/mixed; boundary=a",
    b"Content-Type: multipart/digest; boundary=b",
    b"Content-Type: message/rfc822",
    b"Content-Type: text/plain",
    b"Content-Type: multipart/alternative",
    b"Content-Transfer-Encoding: base64",
    b"Subject: x",
    b"From: a@b.c",
    b"",
    b"",
    b"--a",
    b"--a--",
    b"--b",
    b"--b--",
    b"--a  \t",
    b"--ab",
    b"text",
    b"\r",
    b" folded",
];
const BREAKS: &[&[u8]] = &[b"\r\n", b"\r\n", b"\r\n", b"\n", b""];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The result does not depend on where the chunks are cut, and its
    /// ranges nest.
    #[test]
    fn chunking_does_not_change_the_result(
        lines in proptest::collection::vec((0..LINES.len(), 0..BREAKS.len()), 0..40),
        cuts in proptest::collection::vec(1usize..12, 1..8),
    ) {
        let mut raw = Vec::new();
        for (line, brk) in lines {
            raw.extend_from_slice(LINES[line]);
            raw.extend_from_slice(BREAKS[brk]);
        }
        let whole = analyze(&raw);
        check(&whole.body, 0..raw.len() as u64);
        let mut analyzer = Analyzer::new();
        let mut rest = &raw[..];
        for len in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*len).min(rest.len()));
            analyzer.update(chunk);
            rest = tail;
        }
        proptest::prop_assert_eq!(analyzer.finish(), whole);
    }
}

/// A message as a sender builds it, `attachment` octets of base64 in one
/// part and a long line without breaks in another, fed in 64 KiB chunks.
fn large_message(attachment: usize, long_line: usize) -> (Vec<u8>, Vec<Range<u64>>) {
    let mut raw = b"From: a@example.test\r\nSubject: big\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\n\
Content-Type: text/plain\r\n\r\nsee attached\r\n--outer\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let mut ranges = Vec::new();
    let start = raw.len();
    while raw.len() - start < attachment {
        raw.extend_from_slice(&[b'Q'; 76]);
        raw.extend_from_slice(b"\r\n");
    }
    ranges.push(start as u64..(raw.len() - 2) as u64);
    raw.extend_from_slice(b"--outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n");
    let start = raw.len();
    raw.resize(start + long_line, b'z');
    ranges.push(start as u64..raw.len() as u64);
    raw.extend_from_slice(b"\r\n--outer--\r\n");
    (raw, ranges)
}

#[test]
fn large_bodies_are_counted_not_kept() {
    let (raw, ranges) = large_message(20 << 20, 5 << 20);
    let mut analyzer = Analyzer::new();
    let mut most = 0;
    for chunk in raw.chunks(64 * 1024) {
        analyzer.update(chunk);
        most = most.max(analyzer.buffered());
    }
    let m = analyzer.finish();
    // What is held is a line's start and a header block, not a body.
    assert!(most <= MAX_HEADER + 4096, "held {most} octets");
    assert_eq!(m.size, raw.len() as u64);
    assert_eq!(m.lines, count_lines(&raw));
    let parts = &m.body.parts;
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1].body_range(), ranges[0]);
    assert_eq!(parts[1].encoding, "BASE64");
    let inner = parts[2].message.as_ref().unwrap();
    assert_eq!(inner.envelope.subject.as_deref(), Some("inner"));
    assert_eq!(inner.body.body_range(), ranges[1]);
    assert_eq!(inner.body.lines, Some(1));
    assert_eq!(parts[2].lines, Some(3));
    assert_eq!(m, analyze(&raw), "the same as analysing it whole");
}

#[test]
fn header_octets_kept_are_bounded() {
    // A header block longer than MAX_HEADER: its range is exact, the
    // fields past the limit are not read.
    let mut raw = b"Subject: first\r\n".to_vec();
    while raw.len() < MAX_HEADER + 1000 {
        raw.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    raw.extend_from_slice(b"To: late@example.test\r\n\r\nbody\r\n");
    let m = analyze(&raw);
    assert_eq!(m.subject.as_deref(), Some("first"));
    assert!(m.envelope.to.is_empty(), "read past the limit");
    assert_eq!(m.header_len, raw.len() as u64 - 6);
    assert_eq!(part_bytes(&raw, m.body.body_range()), b"body\r\n");

    // Many parts with large headers: once MAX_HEADERS is spent, each part
    // header is read from its start only, which still finds the structure.
    let filler = format!("X-Filler: {}\r\n", "f".repeat(60_000));
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for i in 0..100 {
        raw.extend_from_slice(
            format!("--b\r\nContent-Type: text/plain; name=p{i}\r\n{filler}\r\npart {i}\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"--b--\r\n");
    let m = analyze(&raw);
    assert_eq!(m.body.parts.len(), 100);
    for (i, part) in m.body.parts.iter().enumerate() {
        assert_eq!(part.params[0], ("name".into(), format!("p{i}")));
        assert_eq!(
            part_bytes(&raw, part.body_range()),
            format!("part {i}").as_bytes()
        );
    }
}

#[test]
fn part_count_is_bounded() {
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..MAX_PARTS + 50 {
        raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    raw.extend_from_slice(b"--b--\r\n");
    let m = analyze(&raw);
    assert_eq!(m.body.parts.len(), MAX_PARTS);
    // The last part found runs on to the end of the multipart.
    let last = m.body.parts.last().unwrap();
    assert_eq!(last.body_end, raw.len() as u64);
    check(&m.body, 0..raw.len() as u64);
}

/// Two From fields: the envelope, the shared `first_from` reading and the
/// singleton check all see the first one (issue 16).
#[test]
fn the_first_from_is_the_one_every_reader_sees() {
    let raw =
        b"From: ceo@example.test\r\nFrom: Demo <demo@example.test>\r\nTo: a@b.test\r\n\r\nhi\r\n";
    let m = analyze(raw);
    assert_eq!(m.envelope.from.len(), 1);
    assert_eq!(m.envelope.from[0].mailbox.as_deref(), Some("ceo"));
    assert_eq!(m.from.as_deref(), Some("ceo@example.test"));
    assert_eq!(first_from(raw), Some(vec!["ceo@example.test".to_owned()]));
    assert_eq!(repeated_singleton(raw), Some("From"));
    let subject_twice = b"Subject: a\r\nFrom: x@y.test\r\nsubject: b\r\n\r\n";
    assert_eq!(repeated_singleton(subject_twice), Some("Subject"));
    let fine =
        b"From: x@y.test\r\nCc: a@b.test\r\nCc: c@d.test\r\nReceived: 1\r\nReceived: 2\r\n\r\n";
    assert_eq!(repeated_singleton(fine), None);
    assert_eq!(first_from(b"Subject: x\r\n\r\n"), Some(Vec::new()));
    assert_eq!(first_from(b"From: nobody\r\n\r\n"), None);
}
