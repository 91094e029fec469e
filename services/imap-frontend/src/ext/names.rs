//! Mailbox names between the client and mailstore (which stores UTF-8):
//! modified UTF-7 for IMAP4rev1 clients, UTF-8 after ENABLE UTF8=ACCEPT
//! (RFC 6855), both ways. Also the byte-level rewrites that let imap-codec
//! 1.0 (ASCII-only quoted strings, no literal8) parse RFC 6855 input.

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::mailbox::Mailbox;

use super::args::literal_header;
use super::mutf7;
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

/// Converts every mailbox argument imap-codec parsed to its stored UTF-8
/// form; the error is the text of the command's NO.
pub(crate) fn decode_command(body: &mut CommandBody<'_>, utf8: bool) -> Result<(), &'static str> {
    match body {
        CommandBody::Select { mailbox, .. }
        | CommandBody::Examine { mailbox, .. }
        | CommandBody::Create { mailbox }
        | CommandBody::Delete { mailbox }
        | CommandBody::Subscribe { mailbox }
        | CommandBody::Unsubscribe { mailbox }
        | CommandBody::Status { mailbox, .. }
        | CommandBody::Append { mailbox, .. }
        | CommandBody::Copy { mailbox, .. }
        | CommandBody::Move { mailbox, .. }
        | CommandBody::GetQuotaRoot { mailbox } => convert(mailbox, utf8),
        CommandBody::Rename { from, to } => {
            convert(from, utf8)?;
            convert(to, utf8)
        }
        _ => Ok(()),
    }
}

fn convert(m: &mut Mailbox<'_>, utf8: bool) -> Result<(), &'static str> {
    if let Mailbox::Other(o) = m {
        let name = from_client(o.as_ref(), utf8)?;
        *m = Mailbox::try_from(name.into_bytes()).map_err(|_| "Invalid mailbox name")?;
    }
    Ok(())
}

fn push_literal(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
}

/// Rewrites the parts of a command imap-codec 1.0 cannot read into forms
/// it can: quoted strings and atoms with 8-bit bytes (RFC 6855 UTF-8
/// names) become literals, and APPEND's `UTF8 (~{n}..)` data becomes a
/// plain literal. `None` when nothing needs rewriting. Literal data is
/// copied untouched.
pub(crate) fn rewrite_8bit(buf: &[u8]) -> Option<Vec<u8>> {
    let has_8bit_outside_literals = {
        let mut i = 0;
        let mut found = false;
        while let Some(&b) = buf.get(i) {
            if b >= 0x80 {
                found = true;
                break;
            }
            if b == b'{'
                && let Some((n, h)) = literal_header(buf.get(i..).unwrap_or_default())
            {
                i += h + n;
                continue;
            }
            i += 1;
        }
        found
    };
    let utf8_append = find_ci(first_line(buf), b" UTF8 (~{").is_some();
    if !has_8bit_outside_literals && !utf8_append {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        let rest = buf.get(i..).unwrap_or_default();
        if b == b'{'
            && let Some((n, h)) = literal_header(rest)
        {
            out.extend_from_slice(rest.get(..h + n).unwrap_or(rest));
            i += h + n;
            continue;
        }
        // APPEND's RFC 6855 form: " UTF8 (~{n}\r\n<data>)".
        if let Some(after) = rest
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case(b" UTF8 ("))
            .and_then(|_| rest.get(7..))
            .and_then(|r| r.strip_prefix(b"~"))
            && let Some((n, h)) = literal_header(after)
            && let Some(data) = after.get(h..h + n)
            && after.get(h + n) == Some(&b')')
        {
            out.push(b' ');
            push_literal(&mut out, data);
            i += 7 + 1 + h + n + 1;
            continue;
        }
        if b == b'"' {
            // Find the closing quote, honouring escapes.
            let mut j = 1;
            let mut text = Vec::new();
            let mut closed = false;
            while let Some(&c) = rest.get(j) {
                match c {
                    b'"' => {
                        closed = true;
                        break;
                    }
                    b'\\' => {
                        if let Some(&e) = rest.get(j + 1) {
                            text.push(e);
                        }
                        j += 2;
                    }
                    b'\r' | b'\n' => break,
                    _ => {
                        text.push(c);
                        j += 1;
                    }
                }
            }
            if closed && text.iter().any(|&c| c >= 0x80) {
                push_literal(&mut out, &text);
            } else {
                out.extend_from_slice(rest.get(..(j + 1).min(rest.len())).unwrap_or(rest));
            }
            i += j + 1;
            continue;
        }
        if b >= 0x80 || (b > b' ' && !matches!(b, b'(' | b')' | b'{' | b'"')) {
            // An atom: a literal when it holds 8-bit bytes.
            let len = rest
                .iter()
                .position(|&c| c <= b' ' || matches!(c, b'(' | b')' | b'{' | b'"'))
                .unwrap_or(rest.len());
            let atom = rest.get(..len).unwrap_or(rest);
            if atom.iter().any(|&c| c >= 0x80) {
                push_literal(&mut out, atom);
            } else {
                out.extend_from_slice(atom);
            }
            i += len;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

fn first_line(buf: &[u8]) -> &[u8] {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => buf.get(..i).unwrap_or(buf),
        None => buf,
    }
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// A literal announced at the end of a line (`{n}`, `{n+}`, `~{n}`):
/// (length, mode). Only the line just read is looked at: a `{n}` CRLF
/// ending a line can be nothing else in IMAP syntax (quoted strings and
/// atoms cannot hold it there).
pub(crate) fn trailing_literal(line: &[u8]) -> Option<(usize, LiteralMode)> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    // The digits are at most 10 (and a `+`) after the brace.
    let tail = line.get(line.len().saturating_sub(12)..)?;
    let open = tail.iter().rposition(|&b| b == b'{')?;
    let digits = tail.get(open + 1..)?;
    let (digits, mode) = match digits.strip_suffix(b"+") {
        Some(d) => (d, LiteralMode::NonSync),
        None => (digits, LiteralMode::Sync),
    };
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;

    #[test]
    fn utf8_quoted_names_become_literals() {
        let cmd = "a CREATE \"Entw\u{fc}rfe\"\r\n";
        let out = rewrite_8bit(cmd.as_bytes()).unwrap();
        assert_eq!(out, "a CREATE {9}\r\nEntw\u{fc}rfe\r\n".as_bytes());
        assert!(CommandCodec::default().decode(&out).is_ok());
        let atom = "a SELECT Entw\u{fc}rfe\r\n";
        let out = rewrite_8bit(atom.as_bytes()).unwrap();
        assert_eq!(out, "a SELECT {9}\r\nEntw\u{fc}rfe\r\n".as_bytes());
        // Literal data is never touched; ASCII commands are left alone.
        let lit = "a APPEND INBOX {3}\r\n\u{fc}a\r\n";
        assert_eq!(rewrite_8bit(lit.as_bytes()), None);
        assert_eq!(rewrite_8bit(b"a SELECT \"x y\"\r\n"), None);
    }

    #[test]
    fn utf8_append_data_becomes_a_literal() {
        let cmd = "a APPEND INBOX (\\Seen) UTF8 (~{4}\r\n\u{fc}ab)\r\n";
        let out = rewrite_8bit(cmd.as_bytes()).unwrap();
        assert_eq!(
            out,
            "a APPEND INBOX (\\Seen) {4}\r\n\u{fc}ab\r\n".as_bytes()
        );
        assert!(CommandCodec::default().decode(&out).is_ok());
    }

    #[test]
    fn trailing_literals() {
        let (n, mode) = trailing_literal(b"a1 LIST () \"\" {5}\r\n").unwrap();
        assert_eq!((n, mode), (5, LiteralMode::Sync));
        let (n, mode) = trailing_literal(b"a APPEND x UTF8 (~{7+}\r\n").unwrap();
        assert_eq!((n, mode), (7, LiteralMode::NonSync));
        assert!(trailing_literal(b"a NOOP\r\n").is_none());
        assert!(trailing_literal(b"a X {x}\r\n").is_none());
        assert_eq!(
            trailing_literal(b" a {0+}\r\n"),
            Some((0, LiteralMode::NonSync))
        );
        assert!(trailing_literal(b"a X {12345678901}\r\n").is_none());
    }

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
            "a CREATE \"Entw\u{fc}rfe\"\r\n".as_bytes(),
            "a APPEND INBOX UTF8 (~{4}\r\n\u{fc}ab)\r\n".as_bytes(),
            b"a LIST \"\" {3}\r\nabc\r\n",
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
            let _ = rewrite_8bit(&line);
            let _ = trailing_literal(&line);
            let _ = from_client(&line, false);
        }
    }
}
