//! Mailbox names between the client and mailstore (which stores UTF-8):
//! modified UTF-7 for IMAP4rev1 clients, UTF-8 after ENABLE UTF8=ACCEPT
//! (RFC 6855), both ways.

pub(crate) mod mutf7;
use crate::encode;

pub(crate) const BAD_MUTF7: &str = "Mailbox name is not valid mUTF-7";
const BAD_UTF8: &str = "Mailbox name is not valid UTF-8";

/// A name (or LIST pattern) as the client sent it, to UTF-8.
pub(crate) fn from_client(raw: &[u8], utf8: bool) -> Result<String, &'static str> {
    if utf8 {
        // RFC 6855 3: no mUTF-7 once UTF8=ACCEPT is enabled.
        return String::from_utf8(raw.to_vec()).map_err(|_| BAD_UTF8);
    }
    mutf7::decode(raw).ok_or(BAD_MUTF7)
}

/// A LIST reference or pattern as the client sent it, to UTF-8. Unlike a
/// mailbox name it is never refused: text that is not valid mUTF-7 (a bare
/// `&`) is matched as it stands, as Dovecot does.
pub(crate) fn pattern_from_client(raw: &[u8], utf8: bool) -> String {
    from_client(raw, utf8).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

/// "INBOX" in any case, alone or as the first level, is spelled "INBOX".
pub(crate) fn canonical(name: String) -> String {
    match name.get(..6) {
        Some(p) if p.eq_ignore_ascii_case("INBOX/") => format!("INBOX/{}", &name[6..]),
        _ if name.eq_ignore_ascii_case("INBOX") => "INBOX".into(),
        _ => name,
    }
}

/// Appends a stored (UTF-8) name the way this client reads names.
pub(crate) fn to_client(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if !utf8 {
        encode::mailbox(out, &mutf7::encode(name));
        return;
    }
    if name.bytes().any(|b| b < b' ' || b == 0x7f) {
        encode::mailbox(out, name);
        return;
    }
    // RFC 6855 3: UTF-8 in a quoted string.
    out.push(b'"');
    for b in name.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_both_ways() {
        assert_eq!(
            from_client(b"Entw&APw-rfe", false).unwrap(),
            "Entw\u{fc}rfe"
        );
        assert_eq!(from_client(b"&Jjo", false), Err(BAD_MUTF7));
        assert_eq!(from_client("\u{fc}".as_bytes(), false), Err(BAD_MUTF7));
        assert_eq!(from_client("\u{fc}".as_bytes(), true).unwrap(), "\u{fc}");
        assert_eq!(pattern_from_client(b"a&*", false), "a&*");
        assert_eq!(pattern_from_client(b"a&-*", false), "a&*");
        let mut out = Vec::new();
        to_client(&mut out, "Entw\u{fc}rfe", false);
        assert_eq!(out, b"\"Entw&APw-rfe\"");
        out.clear();
        to_client(&mut out, "Entw\u{fc}rfe", true);
        assert_eq!(out, "\"Entw\u{fc}rfe\"".as_bytes());
    }

    #[test]
    fn mutated_input_never_panics() {
        let seeds: &[&[u8]] = &[
            "Entw\u{fc}rfe".as_bytes(),
            b"Entw&APw-rfe/&AOk-t&AOk-",
            b"a&-b&Jjo",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut line = seeds[(state % 3) as usize].to_vec();
            let i = (state >> 8) as usize % line.len();
            match (state >> 20) % 3 {
                0 => line[i] ^= 1 << ((state >> 30) % 8),
                1 => line.truncate(i),
                _ => line.insert(i, (state >> 40) as u8),
            }
            let _ = from_client(&line, false);
            let _ = from_client(&line, true);
        }
    }
}
