//! PROXY protocol v1/v2 headers, as read byte by byte from a balancer: never
//! a panic, a complete header never claims more bytes than it was given, and
//! "incomplete" always asks for at least one byte more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfleet_runtime::proxy_protocol::{Parse, parse};

fuzz_target!(|data: &[u8]| {
    for end in 0..=data.len().min(600) {
        match parse(&data[..end]) {
            Ok(Parse::Done { len, .. }) => {
                assert!(len <= end, "header longer than the input");
                break;
            }
            Ok(Parse::Incomplete(more)) => assert!(more > 0),
            Err(_) => break,
        }
    }
    let _ = parse(data);
});
