//! ManageSieve responses (RFC 5804 section 4): `OK`, `NO` and `BYE` with an
//! optional response code and a human-readable string, and strings written
//! quoted when they can be, as a literal otherwise. No I/O.

use super::proto::MAX_QUOTED_CHARS;

/// Appends `s` as a ManageSieve string: quoted (with `"` and `\` escaped)
/// when short and free of CR, LF and NUL, else a literal `{n}` CRLF data.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= MAX_QUOTED_CHARS && !s.iter().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if quotable {
        out.push(b'"');
        for &b in s {
            if matches!(b, b'"' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// A response code (the part in parentheses), without the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    AuthTooWeak,
    EncryptNeeded,
    Quota,
    TryLater,
    Active,
    NonExistent,
    AlreadyExists,
}

impl Code {
    fn text(self) -> &'static str {
        match self {
            Code::AuthTooWeak => "AUTH-TOO-WEAK",
            Code::EncryptNeeded => "ENCRYPT-NEEDED",
            Code::Quota => "QUOTA",
            Code::TryLater => "TRYLATER",
            Code::Active => "ACTIVE",
            Code::NonExistent => "NONEXISTENT",
            Code::AlreadyExists => "ALREADYEXISTS",
        }
    }
}

fn status(word: &str, code: Option<Code>, text: &str) -> Vec<u8> {
    let mut out = word.as_bytes().to_vec();
    if let Some(code) = code {
        out.extend_from_slice(b" (");
        out.extend_from_slice(code.text().as_bytes());
        out.push(b')');
    }
    if !text.is_empty() {
        out.push(b' ');
        string(&mut out, text.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

pub fn ok(text: &str) -> Vec<u8> {
    status("OK", None, text)
}

pub fn no(code: Option<Code>, text: &str) -> Vec<u8> {
    status("NO", code, text)
}

pub fn bye(text: &str) -> Vec<u8> {
    status("BYE", None, text)
}

/// `OK (TAG "...") "Done"`: NOOP's answer when the client gave a tag.
pub fn ok_tagged(tag: &[u8]) -> Vec<u8> {
    let mut out = b"OK (TAG ".to_vec();
    string(&mut out, tag);
    out.extend_from_slice(b") \"Done\"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\\"");
        let mut out = Vec::new();
        string(&mut out, b"keep;\r\n");
        assert_eq!(out, b"{7}\r\nkeep;\r\n");
    }

    #[test]
    fn status_lines() {
        assert_eq!(ok(""), b"OK\r\n");
        assert_eq!(
            no(Some(Code::NonExistent), "no script \"x\""),
            b"NO (NONEXISTENT) \"no script \\\"x\\\"\"\r\n"
        );
        assert_eq!(bye("Too long"), b"BYE \"Too long\"\r\n");
        assert_eq!(ok_tagged(b"t1"), b"OK (TAG \"t1\") \"Done\"\r\n");
    }
}
