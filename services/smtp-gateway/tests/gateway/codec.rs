//! The pure layer: line splitting, the DATA decoder at every chunk boundary,
//! command parsing, replies and the Received header.

use smtp_gateway::codec::command::{self, BodyType, Command, Mechanism, RcptTo, Ret};
use smtp_gateway::codec::data::{DataDecoder, Progress};
use smtp_gateway::codec::line::{LineEvent, LineReader};
use smtp_gateway::codec::received::{self, Trace};
use smtp_gateway::codec::reply;

// ---------------------------------------------------------------- lines

/// Feeds `input` in `chunk`-sized pieces through a buffer, like the
/// connection does, and collects the events.
fn split_lines(input: &[u8], max: usize, chunk: usize) -> (Vec<Result<Vec<u8>, ()>>, usize) {
    let mut reader = LineReader::new(max);
    let mut buffer: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut peak = 0;
    for piece in input.chunks(chunk) {
        buffer.extend_from_slice(piece);
        peak = peak.max(buffer.len());
        loop {
            let (consumed, event) = reader.poll(&buffer);
            let event = event.map(|e| match e {
                LineEvent::Line(l) => Ok(l.to_vec()),
                LineEvent::TooLong => Err(()),
            });
            buffer.drain(..consumed);
            match event {
                Some(e) => events.push(e),
                None => break,
            }
        }
    }
    (events, peak)
}

#[test]
fn lines_split_on_crlf_and_lf() {
    let (events, _) = split_lines(b"EHLO a\r\nNOOP\nQUIT\r\n", 512, 3);
    assert_eq!(
        events,
        vec![
            Ok(b"EHLO a".to_vec()),
            Ok(b"NOOP".to_vec()),
            Ok(b"QUIT".to_vec())
        ]
    );
}

#[test]
fn long_line_is_reported_once_at_its_end_and_the_next_line_survives() {
    let max = 512;
    let mut input = vec![b'x'; 5000];
    input.extend_from_slice(b"\r\nNOOP\r\n");
    for chunk in [1, 7, 100, 511, 512, 513, 4096, 10000] {
        let (events, peak) = split_lines(&input, max, chunk);
        assert_eq!(events, vec![Err(()), Ok(b"NOOP".to_vec())], "chunk {chunk}");
        assert!(
            peak <= max + chunk,
            "buffer stays bounded (chunk {chunk}: {peak})"
        );
    }
}

#[test]
fn line_at_the_limit_is_accepted_and_one_more_byte_is_not() {
    let max = 512;
    let mut ok = vec![b'a'; max - 2];
    ok.extend_from_slice(b"\r\n");
    let (events, _) = split_lines(&ok, max, 64);
    assert_eq!(events, vec![Ok(vec![b'a'; max - 2])]);

    let mut long = vec![b'a'; max - 1];
    long.extend_from_slice(b"\r\n");
    for chunk in [1, 64, 2000] {
        let (events, _) = split_lines(&long, max, chunk);
        assert_eq!(events, vec![Err(())], "chunk {chunk}");
    }
}

// ---------------------------------------------------------------- DATA

/// A straightforward model of RFC 5321 4.5.2 over the whole input: the data
/// ends at the first CRLF "." CRLF (the start counts as after a CRLF); lines
/// are split at CRLF only; a line starting with "." loses it.
fn reference(input: &[u8]) -> Option<(Vec<u8>, bool, usize)> {
    let mut prefixed = b"\r\n".to_vec();
    prefixed.extend_from_slice(input);
    let end = prefixed.windows(5).position(|w| w == b"\r\n.\r\n")?;
    let content = &prefixed[2..end + 2];
    let mut out = Vec::new();
    let mut first = true;
    let mut rest = content;
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        if !first {
            out.extend_from_slice(b"\r\n");
        }
        first = false;
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    let bare = content.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || content[i - 1] != b'\r'))
            || (b == b'\r' && content.get(i + 1) != Some(&b'\n'))
    });
    Some((out, bare, end + 3))
}

/// Decodes `input` cut at `cuts`; returns (message, bare, consumed).
fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Option<(Vec<u8>, bool, usize)> {
    let mut decoder = DataDecoder::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.to_vec();
    bounds.push(input.len());
    for end in bounds {
        let piece = &input[start..end];
        let before = out.len();
        match decoder.decode(piece, &mut out) {
            Progress::Done { consumed } => {
                assert!(out.len() - before <= piece.len() + 2);
                assert_eq!(decoder.decoded_len(), out.len() as u64);
                return Some((out, decoder.saw_bare_line_ending(), start + consumed));
            }
            Progress::NeedMore => assert!(out.len() - before <= piece.len() + 2),
        }
        start = end;
    }
    None
}

fn check(input: &[u8]) {
    let expected = reference(input);
    for cut in 0..=input.len() {
        assert_eq!(
            decode_in_pieces(input, &[cut]),
            expected,
            "input {:?} cut at {cut}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn every_short_input_at_every_split_matches_the_model() {
    // All strings over the bytes that matter, up to 7 long, each followed by
    // a terminator and trailing bytes of the next command.
    let alphabet = [b'\r', b'\n', b'.', b'a'];
    for len in 0..=7u32 {
        for n in 0..4usize.pow(len) {
            let mut input = Vec::new();
            let mut k = n;
            for _ in 0..len {
                input.push(alphabet[k % 4]);
                k /= 4;
            }
            input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
            check(&input);
        }
    }
}

#[test]
fn two_cuts_on_tricky_inputs() {
    let cases: &[&[u8]] = &[
        b"Subject: x\r\n\r\n..dot\r\n.\r\n",
        b"a\n.\nb\r\n.\r\nNEXT",
        b"a\r.\rb\r\n.\r\n",
        b"a\r\n.\rb\r\n.\r\n",
        b"\r\n.\r\n",
        b".\r\n",
        b"..\r\n.\r\n",
        b"a\r\n..\r\n.\r\n",
    ];
    for input in cases {
        let expected = reference(input);
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(
                    decode_in_pieces(input, &[a, b]),
                    expected,
                    "{input:?} {a} {b}"
                );
            }
        }
    }
}

#[test]
fn dot_unstuffing_and_end_detection() {
    let (out, bare, consumed) = decode_in_pieces(b"Hi\r\n..x\r\n.y\r\n.\r\nRSET\r\n", &[]).unwrap();
    assert_eq!(out, b"Hi\r\n.x\r\ny\r\n");
    assert!(!bare);
    assert_eq!(consumed, 16);
    let (out, _, consumed) = decode_in_pieces(b".\r\n", &[]).unwrap();
    assert!(out.is_empty(), "empty message");
    assert_eq!(consumed, 3);
}

#[test]
fn bare_lf_dot_never_ends_the_data() {
    // The smuggling pattern: "\n.\n" (and its CR cousins) followed by a
    // second transaction inside the first message.
    for sep in [&b"\n.\n"[..], b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n"] {
        let mut input = b"Subject: a\r\n\r\nbody".to_vec();
        input.extend_from_slice(sep);
        input.extend_from_slice(b"MAIL FROM:<evil@example.org>\r\nDATA\r\n.\r\n");
        let (out, bare, consumed) = decode_in_pieces(&input, &[]).unwrap();
        assert!(bare, "{sep:?} is flagged");
        assert_eq!(consumed, input.len(), "{sep:?} did not end the data early");
        assert!(out.windows(9).any(|w| w == b"MAIL FROM"));
    }
}

#[test]
fn bare_cr_and_lf_are_flagged_and_clean_data_is_not() {
    for (input, bare) in [
        (&b"a\rb\r\n.\r\n"[..], true),
        (b"a\nb\r\n.\r\n", true),
        (b"a\r\r\n.\r\n", true),
        (b".\rx\r\n.\r\n", true),
        (b"a\r\nb\r\n.\r\n", false),
        (b"\r\n\r\n.\r\n", false),
    ] {
        assert_eq!(decode_in_pieces(input, &[]).unwrap().1, bare, "{input:?}");
    }
}

// ---------------------------------------------------------------- commands

#[test]
fn commands_parse() {
    assert_eq!(
        command::parse(b"EHLO client.example").unwrap(),
        Command::Ehlo {
            host: "client.example".into()
        }
    );
    assert_eq!(
        command::parse(b"helo x").unwrap(),
        Command::Helo { host: "x".into() }
    );
    let Command::Mail(from) =
        command::parse(b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME").unwrap()
    else {
        panic!("not MAIL");
    };
    assert_eq!(from.address, "a@b.example");
    assert_eq!(from.size, Some(100));
    assert_eq!(from.body, BodyType::EightBitMime);
    let Command::Mail(null) = command::parse(b"MAIL FROM:<>").unwrap() else {
        panic!("not MAIL");
    };
    assert_eq!(null.address, "");
    assert_eq!(
        command::parse(b"RCPT TO:<u@local.test>").unwrap(),
        Command::Rcpt(RcptTo {
            address: "u@local.test".into(),
            notify: 0,
            orcpt: None,
        })
    );
    assert_eq!(
        command::parse(b"RCPT TO:<Postmaster>").unwrap(),
        Command::Rcpt(RcptTo {
            address: "postmaster".into(),
            notify: 0,
            orcpt: None,
        })
    );
    for (line, expected) in [
        (&b"DATA"[..], Command::Data),
        (b"RSET", Command::Rset),
        (b"NOOP", Command::Noop),
        (b"NOOP hello", Command::Noop),
        (b"VRFY someone", Command::Vrfy),
        (b"HELP", Command::Help),
        (b"QUIT", Command::Quit),
        (b"STARTTLS", Command::StartTls),
        (
            b"AUTH PLAIN",
            Command::Auth {
                mechanism: Mechanism::Plain,
                initial: None,
            },
        ),
        (
            b"AUTH login dXNlcg==",
            Command::Auth {
                mechanism: Mechanism::Login,
                initial: Some("dXNlcg==".into()),
            },
        ),
        (b"AUTH CRAM-MD5", Command::UnsupportedMechanism),
        (
            b"BDAT 10",
            Command::Bdat {
                size: 10,
                last: false,
            },
        ),
        (
            b"BDAT 0 LAST",
            Command::Bdat {
                size: 0,
                last: true,
            },
        ),
        (b"EXPN list", Command::NotImplemented { name: "EXPN" }),
    ] {
        assert_eq!(command::parse(line).unwrap(), expected, "{line:?}");
    }
}

#[test]
fn bad_commands_get_their_reply_codes() {
    let code = |line: &[u8]| command::parse(line).unwrap_err().to_bytes();
    assert!(code(b"FOO bar").starts_with(b"500 5.5.1"));
    assert!(code(b"").starts_with(b"500"));
    assert!(code(b"MAIL FROM:<no-at-sign>").starts_with(b"501 5.1.7"));
    assert!(code(b"MAIL TO:<a@b>").starts_with(b"501"));
    assert!(code(b"MAIL FROM:<a@b> REQUIRETLS").starts_with(b"555 5.5.4"));
    assert!(code(b"MAIL FROM:<a@b> RET=FULL RET=HDRS").starts_with(b"501"));
    assert!(code(b"MAIL FROM:<j\xc3\xb6rg@b.example>").starts_with(b"501 5.1.7"));
    assert!(code(b"RCPT TO:<>").starts_with(b"501 5.1.3"));
    assert!(code(b"RCPT TO:<user@>").starts_with(b"501 5.1.3"));
    assert!(code(b"RCPT TO:<a@b..c>").starts_with(b"501 5.1.3"));
    assert!(code(b"RCPT TO:<u@d.test> NOTIFY=NEVER,SUCCESS").starts_with(b"501"));
    assert!(code(b"RCPT TO:<u@d.test> RRVS=2030-01-01T00:00:00Z").starts_with(b"555"));
    assert!(code(b"EHLO").starts_with(b"501"));
}

#[test]
fn garbage_never_panics() {
    // A cheap deterministic fuzz: xorshift bytes, with command prefixes.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let prefixes: [&[u8]; 6] = [
        b"",
        b"MAIL FROM:<",
        b"RCPT TO:<",
        b"EHLO ",
        b"VRFY ",
        b"BDAT ",
    ];
    for i in 0..20000 {
        let mut line = prefixes[i % prefixes.len()].to_vec();
        let len = (next() % 80) as usize;
        for _ in 0..len {
            let b = (next() & 0xff) as u8;
            if b != b'\n' {
                line.push(b);
            }
        }
        let _ = command::parse(&line);
    }
}

// ---------------------------------------------------------------- replies

#[test]
fn replies_encode_with_enhanced_codes_and_continuations() {
    assert_eq!(
        reply::unknown_user().to_bytes(),
        b"550 5.1.1 No such user here\r\n"
    );
    let ehlo = String::from_utf8(
        reply::ehlo(
            "mx.test",
            "c",
            reply::Offer {
                max_size: 1000,
                starttls: false,
                auth: false,
            },
        )
        .to_bytes(),
    )
    .unwrap();
    let lines: Vec<&str> = ehlo.split_terminator("\r\n").collect();
    assert_eq!(lines[0], "250-mx.test greets c");
    for ext in [
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(lines.iter().any(|l| l[4..] == *ext), "{ext} in {ehlo}");
    }
    assert!(lines.last().unwrap().starts_with("250 "));
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("250-"))
    );
}

// ---------------------------------------------------------------- Received

#[test]
fn received_header_names_one_recipient_only() {
    let date = chrono::DateTime::parse_from_rfc3339("2026-11-26T07:17:17Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let one = ["u@local.test".to_string()];
    let header = received::header(&Trace {
        helo: "client.example",
        client_ip: "192.0.2.7".parse().unwrap(),
        hostname: "mx.local.test",
        esmtp: true,
        utf8: false,
        authenticated: false,
        tls: None,
        id: "JOB1",
        recipient: Some(&one[0]),
        date,
    });
    assert_eq!(
        header,
        "Received: from client.example (rDNS-less [192.0.2.7])\r\n\
         \tby mx.local.test (mailfleet) with ESMTP id JOB1\r\n\
         \tfor <u@local.test>;\r\n\
         \tThu, 26 Nov 2026 07:17:17 +0000\r\n"
    );
    let header = received::header(&Trace {
        helo: "evil (x); y",
        client_ip: "::ffff:10.0.0.1".parse().unwrap(),
        hostname: "mx",
        esmtp: false,
        utf8: false,
        authenticated: false,
        tls: None,
        id: "J",
        recipient: None,
        date,
    });
    assert!(
        header.starts_with("Received: from evil??x???y (rDNS-less [10.0.0.1])\r\n"),
        "{header}"
    );
    assert!(header.contains("with SMTP id J;"), "{header}");
    assert!(!header.contains("for <"), "{header}");
    assert!(header.lines().all(|l| l.len() < 998));
}

#[test]
fn dsn_smtputf8_and_binarymime_parameters_parse() {
    let Command::Mail(from) = command::parse(
        b"MAIL FROM:<j\xc3\xb6rg@b\xc3\xbccher.example> SMTPUTF8 BODY=BINARYMIME RET=HDRS ENVID=QQ314159",
    )
    .unwrap() else {
        panic!("not MAIL");
    };
    assert_eq!(from.address, "jörg@bücher.example");
    assert!(from.smtputf8);
    assert_eq!(from.body, BodyType::BinaryMime);
    assert_eq!(from.ret, Ret::Headers);
    assert_eq!(from.envid.as_deref(), Some("QQ314159"));
    assert!(
        matches!(
            command::parse(b"MAIL FROM:<a@b.example> AUTH=<>"),
            Ok(Command::Mail(_))
        ),
        "AUTH= is accepted and ignored"
    );
    assert_eq!(
        command::parse(
            b"RCPT TO:<u@local.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;u+2Bx@local.test"
        )
        .unwrap(),
        Command::Rcpt(RcptTo {
            address: "u@local.test".into(),
            notify: command::notify::SUCCESS | command::notify::DELAY,
            orcpt: Some("rfc822;u+x@local.test".into()),
        })
    );
    // Header injection through an address is impossible: no control
    // characters, spaces or angle brackets pass.
    for bad in [
        &b"MAIL FROM:<a\rb@x.example>"[..],
        b"MAIL FROM:<a\x00b@x.example>",
        b"RCPT TO:<a\tb@x.example>",
    ] {
        let address = match command::parse(bad) {
            Err(_) => continue,
            Ok(Command::Mail(m)) => m.address,
            Ok(Command::Rcpt(r)) => r.address,
            Ok(other) => panic!("{other:?}"),
        };
        assert!(
            !address.chars().any(|c| c.is_control() || c.is_whitespace()),
            "{address:?}"
        );
    }
}
