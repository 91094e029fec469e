//! The MIME analyser that every delivered and appended message goes
//! through: never a panic, the streamed analysis equals the one-piece
//! analysis, its buffer stays bounded, and the header helpers that the
//! submission checks use never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfleet_mime::{Analyzer, MAX_BOUNDARY, MAX_HEADER, analyze};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, raw)) = data.split_first() else {
        return;
    };
    let whole = analyze(raw);
    let mut analyzer = Analyzer::new();
    for chunk in raw.chunks(usize::from(seed) + 1) {
        analyzer.update(chunk);
        // A header block and a line start, each in a Vec that may have
        // doubled past its limit.
        assert!(
            analyzer.buffered() <= 2 * (MAX_HEADER + MAX_BOUNDARY + 4),
            "the analyser's buffers grew past their bound"
        );
    }
    assert_eq!(
        whole,
        analyzer.finish(),
        "analysis depends on how the message is split"
    );
    let _ = mailfleet_mime::first_from(raw);
    let _ = mailfleet_mime::repeated_singleton(raw);
});
