//! Generated test messages: a unique marker in the Subject (ListMessages
//! returns it, so the end-to-end check finds each message) and in a header.

/// The marker of message `seq` of run `run`.
pub fn marker(run: &str, seq: u64) -> String {
    format!("mfbench-{run}-{seq}")
}

/// The sequence number in a subject produced by [`message`] for `run`.
pub fn parse_marker(run: &str, subject: &str) -> Option<u64> {
    let prefix = format!("mfbench-{run}-");
    let start = subject.find(&prefix)? + prefix.len();
    let digits: String = subject[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A message of about `size` octets, CRLF line ends, no line starting with a
/// dot, so it needs no dot-stuffing.
pub fn message(run: &str, seq: u64, from: &str, to: &str, size: usize) -> Vec<u8> {
    let marker = marker(run, seq);
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: mailfleet bench {marker}\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{marker}@bench.mailfleet.test>\r\n\
         X-Mailfleet-Bench: {marker}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    const LINE: &[u8] =
        b"The quick brown fox jumps over the lazy dog, load test line of mailfleet.";
    while m.len() + LINE.len() + 2 <= size {
        m.extend_from_slice(LINE);
        m.extend_from_slice(b"\r\n");
    }
    if m.len() + 2 < size {
        let rest = size - m.len() - 2;
        m.extend(std::iter::repeat_n(b'x', rest));
        m.extend_from_slice(b"\r\n");
    }
    if !m.ends_with(b"\r\n") {
        m.extend_from_slice(b"\r\n");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_marker() {
        for size in [0, 100, 4096, 4097, 100_000] {
            let m = message("ab12", 7, "s@example.org", "r@example.test", size);
            assert!(m.len() >= size.min(m.len()));
            assert!(m.len() <= size.max(400), "{} > {size}", m.len());
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.windows(2).any(|w| w == b"\n."));
        }
        assert_eq!(
            parse_marker("ab12", "mailfleet bench mfbench-ab12-42"),
            Some(42)
        );
        assert_eq!(parse_marker("ab12", "mailfleet bench mfbench-zz-42"), None);
    }
}
