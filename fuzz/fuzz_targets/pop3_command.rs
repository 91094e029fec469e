//! POP3: command lines, SASL PLAIN responses, and the byte-stuffer and TOP
//! cut that shape RETR/TOP responses: never a panic, and stuffing split at
//! any point gives the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pop3_frontend::proto::{self, Stuffer, TopCut};

fuzz_target!(|data: &[u8]| {
    let _ = proto::parse(data);
    let _ = proto::sasl_plain(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = proto::base64_decode(text);
    }

    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(seed) + 1;
    let mut whole = Vec::new();
    let mut stuffer = Stuffer::default();
    stuffer.feed(body, &mut whole);
    stuffer.finish(&mut whole);
    let mut split = Vec::new();
    let mut stuffer = Stuffer::default();
    for chunk in body.chunks(step) {
        stuffer.feed(chunk, &mut split);
    }
    stuffer.finish(&mut split);
    assert_eq!(
        whole, split,
        "byte-stuffing depends on how the body is split"
    );

    let mut top = TopCut::new(u32::from(seed % 8));
    let mut taken = 0;
    for chunk in body.chunks(step) {
        let kept = top.take(chunk);
        assert!(kept.len() <= chunk.len());
        taken += kept.len();
        if top.done() {
            break;
        }
    }
    assert!(taken <= body.len());
});
