//! The DATA decoder (dot-unstuffing, terminator, bare CR/LF and long-line
//! checks) and BDAT's line-ending check: any input split at any points gives
//! the same result as in one piece, and no call appends more than its input
//! plus two bytes (the bound the connection's memory relies on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_gateway::codec::data::{DataDecoder, LineEndingCheck, Progress};

fn run(input: &[u8], cuts: &[usize], max_line: usize) -> (Vec<u8>, Option<usize>, bool, bool) {
    let mut decoder = DataDecoder::new().with_max_line(max_line);
    let mut out = Vec::new();
    let mut start = 0;
    let mut done = None;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        if end < start {
            continue;
        }
        let piece = &input[start..end];
        let before = out.len();
        let progress = decoder.decode(piece, &mut out);
        assert!(
            out.len() - before <= piece.len() + 2,
            "decoder grew past its bound"
        );
        if let Progress::Done { consumed } = progress {
            assert!(consumed <= piece.len());
            done = Some(start + consumed);
            break;
        }
        start = end;
    }
    assert_eq!(decoder.decoded_len(), out.len() as u64);
    (
        out,
        done,
        decoder.saw_bare_line_ending(),
        decoder.saw_long_line(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let max_line = usize::from(seed & 0x0f) * 7;
    // Cut points derived from the input itself, so they vary with it.
    let step = usize::from(seed >> 4) + 1;
    let cuts: Vec<usize> = (step..input.len()).step_by(step).collect();
    let whole = run(input, &[], max_line);
    let split = run(input, &cuts, max_line);
    assert_eq!(
        whole, split,
        "DATA decoding depends on how the input is split"
    );

    let mut check = LineEndingCheck::default();
    check.push(input);
    let mut pieces = LineEndingCheck::default();
    for chunk in input.chunks(step) {
        pieces.push(chunk);
    }
    assert_eq!(check.saw_bare(true), pieces.saw_bare(true));
    assert_eq!(check.saw_bare(false), pieces.saw_bare(false));
});
