//! Property tests (a bounded fuzz run in every `cargo test`): the command
//! parser, the line reader and the DATA decoder never panic on any input,
//! accepted addresses can never break a header, and the decoder's output
//! does not depend on how the input is split.
//!
//! `PROPTEST_CASES=100000 cargo test -p smtp-gateway --test gateway fuzz`
//! runs a longer campaign.

use proptest::prelude::*;
use smtp_gateway::codec::command::{self, Command};
use smtp_gateway::codec::data::{DataDecoder, Progress};
use smtp_gateway::codec::line::{LineEvent, LineReader};

/// The number of cases: `PROPTEST_CASES` when set, else the bounded default.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Command-shaped lines: a verb and parameter soup from the SMTP alphabet,
/// plus arbitrary bytes.
fn command_line() -> impl Strategy<Value = Vec<u8>> {
    let verbs = prop::sample::select(vec![
        "MAIL FROM:<",
        "RCPT TO:<",
        "EHLO ",
        "HELO ",
        "AUTH ",
        "AUTH PLAIN ",
        "BDAT ",
        "STARTTLS",
        "DATA",
        "RSET",
        "VRFY ",
        "NOOP ",
        "QUIT",
        "",
    ]);
    let tail = prop::collection::vec(
        prop_oneof![
            any::<u8>(),
            prop::sample::select(b"<>@.:;=, \r\"\\+-".to_vec()),
            prop::sample::select(b"BODY=SIZE=RET=ENVID=NOTIFY=ORCPT=rfc822SMTPUTF8LAST".to_vec()),
        ],
        0..300,
    );
    (verbs, tail).prop_map(|(verb, tail)| {
        let mut line = verb.as_bytes().to_vec();
        line.extend(tail.into_iter().filter(|&b| b != b'\n'));
        line
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    #[test]
    fn command_parser_never_panics_and_addresses_stay_clean(line in command_line()) {
        match command::parse(&line) {
            Ok(Command::Mail(from)) => {
                prop_assert!(!from.address.chars().any(|c| c.is_control() || c == '<' || c == '>'));
                if let Some(envid) = from.envid {
                    prop_assert!(envid.bytes().all(|b| b.is_ascii_graphic()));
                }
            }
            Ok(Command::Rcpt(to)) => {
                prop_assert!(!to.address.chars().any(|c| c.is_control() || c == '<' || c == '>'));
            }
            Ok(_) => {}
            Err(reply) => prop_assert!(reply.code >= 500 && reply.code < 600),
        }
    }

    #[test]
    fn line_reader_is_bounded_and_never_panics(
        input in prop::collection::vec(any::<u8>(), 0..4000),
        max in 3usize..600,
    ) {
        let mut reader = LineReader::new(max);
        let mut buf: Vec<u8> = Vec::new();
        for chunk in input.chunks(97) {
            buf.extend_from_slice(chunk);
            loop {
                let (consumed, event) = reader.poll(&buf);
                if let Some(LineEvent::Line(line)) = &event {
                    prop_assert!(line.len() < max);
                }
                let done = event.is_none();
                buf.drain(..consumed);
                if done {
                    break;
                }
            }
            prop_assert!(buf.len() <= max.max(97) + 97);
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(400)))]

    #[test]
    fn data_decoder_output_does_not_depend_on_splits(
        body in prop::collection::vec(prop_oneof![
            Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()
        ], 0..600),
        split in 1usize..64,
    ) {
        let whole = {
            let mut d = DataDecoder::new();
            let mut out = Vec::new();
            let p = d.decode(&body, &mut out);
            (out, p, d.saw_bare_line_ending())
        };
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        let mut consumed_total = 0;
        let mut done = None;
        for chunk in body.chunks(split) {
            let mut piece = Vec::new();
            match d.decode(chunk, &mut piece) {
                Progress::Done { consumed } => {
                    out.extend_from_slice(&piece);
                    done = Some(consumed_total + consumed);
                    break;
                }
                Progress::NeedMore => {
                    out.extend_from_slice(&piece);
                    consumed_total += chunk.len();
                }
            }
        }
        prop_assert_eq!(&out, &whole.0);
        match whole.1 {
            Progress::Done { consumed } => prop_assert_eq!(done, Some(consumed)),
            Progress::NeedMore => prop_assert_eq!(done, None),
        }
        prop_assert_eq!(d.saw_bare_line_ending(), whole.2);
        // Only CRLF.CRLF ends the data: the terminator, if found, is there.
        if let Some(end) = done {
            let seen = [b"\r\n.\r\n".as_slice()].concat();
            prop_assert!(end == 3 && body.starts_with(b".\r\n") || body[..end].ends_with(&seen));
        }
    }
}
