//! One complete IMAP command (literals included) through the path the
//! server parses it with: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imap_frontend::parse_command(data);
});
