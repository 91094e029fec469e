//! Modified UTF-7 (RFC 3501 5.1.3), the mailbox-name encoding of IMAP4rev1
//! clients: printable ASCII stands for itself ("&" is "&-"), anything else
//! is UTF-16 in a base64 variant (`,` for `/`, no padding) between "&" and
//! "-". Decoding is strict, as Dovecot's: a name that is not the one
//! canonical encoding of some text is refused.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn printable(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// UTF-8 text to modified UTF-7.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        out.push('&');
        let (mut bits, mut nbits) = (0u32, 0u32);
        for unit in run.drain(..) {
            for byte in unit.to_be_bytes() {
                bits = (bits << 8) | u32::from(byte);
                nbits += 8;
                while nbits >= 6 {
                    nbits -= 6;
                    out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
                }
            }
        }
        if nbits > 0 {
            out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
        }
        out.push('-');
    };
    for c in name.chars() {
        if printable(c as u32) {
            flush(&mut run, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Modified UTF-7 to UTF-8; `None` when `raw` is not valid mUTF-7 (8-bit
/// bytes, an unterminated or non-canonical base64 run, broken UTF-16).
pub(crate) fn decode(raw: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if !printable(u32::from(b)) {
            return None;
        }
        i += 1;
        if b != b'&' {
            out.push(char::from(b));
            continue;
        }
        let end = i + raw.get(i..)?.iter().position(|&c| c == b'-')?;
        let run = raw.get(i..end)?;
        i = end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let (mut bits, mut nbits) = (0u32, 0u32);
        let mut units = Vec::with_capacity(run.len() * 6 / 16);
        for &c in run {
            bits = ((bits << 6) | sextet(c)?) & 0xff_ffff;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push(((bits >> nbits) & 0xffff) as u16);
            }
        }
        // Leftover bits are padding: fewer than 6 and all zero.
        if nbits >= 6 || bits & ((1 << nbits) - 1) != 0 {
            return None;
        }
        for c in char::decode_utf16(units) {
            let c = c.ok()?;
            // Printable ASCII must stand for itself.
            if printable(c as u32) {
                return None;
            }
            out.push(c);
        }
        // Two adjacent runs are not canonical either.
        if raw.get(i) == Some(&b'&') && raw.get(i + 1) != Some(&b'-') {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (utf8, utf7) in [
            ("INBOX", "INBOX"),
            ("Entw\u{fc}rfe", "Entw&APw-rfe"),
            ("a&b", "a&-b"),
            ("\u{65e5}\u{672c}\u{8a9e}", "&ZeVnLIqe-"),
            (
                "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}",
                "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
            ),
            ("\u{1f600}", "&2D3eAA-"),
            ("", ""),
        ] {
            assert_eq!(encode(utf8), utf7);
            assert_eq!(decode(utf7.as_bytes()).as_deref(), Some(utf8));
        }
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "&",             // unterminated
            "&Jjo",          // unterminated
            "&AGE-",         // "a" encoded
            "&APw",          // no "-"
            "&APx-",         // non-zero padding bits
            "&2D0-",         // lone high surrogate
            "&AP-",          // half a UTF-16 unit
            "&APw-&APw-",    // adjacent runs
            "Entw\u{fc}rfe", // raw 8-bit
            "a\tb",          // control
            "&A!-",          // not base64
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn any_text_round_trips() {
        let mut state: u32 = 12345;
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(state % 9) {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let c = match state % 4 {
                    0 => char::from(b' ' + (state >> 8) as u8 % 95),
                    1 => '&',
                    2 => char::from_u32(0xa0 + (state >> 8) % 0x3000).unwrap_or('x'),
                    _ => char::from_u32(0x1_0000 + (state >> 8) % 0x1000).unwrap_or('y'),
                };
                s.push(c);
            }
            assert_eq!(decode(encode(&s).as_bytes()).as_deref(), Some(s.as_str()));
        }
    }
}
