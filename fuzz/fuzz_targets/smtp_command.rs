//! SMTP command lines: the line reader (at a limit taken from the input)
//! splits the bytes, and every line goes through the command parser, as the
//! connection does. Never a panic; the reader's buffer never needs more than
//! the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_gateway::codec::command;
use smtp_gateway::codec::line::{LineEvent, LineReader};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, input)) = data.split_first() else {
        return;
    };
    let max = 3 + usize::from(limit) * 8;
    let mut reader = LineReader::new(max);
    let mut rest = input;
    loop {
        let (consumed, event) = reader.poll(rest);
        assert!(consumed <= rest.len());
        rest = &rest[consumed..];
        match event {
            Some(LineEvent::Line(line)) => {
                assert!(line.len() < max, "a line over the limit was handed out");
                let _ = command::parse(line);
            }
            Some(LineEvent::TooLong) => {}
            None if consumed == 0 => break,
            None => {}
        }
    }
    // The parser alone, on the raw bytes (a line the reader never builds).
    let _ = command::parse(input);
});
