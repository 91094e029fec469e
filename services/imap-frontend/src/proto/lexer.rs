//! The one tokenizer every grammar rule reads through: a cursor over the
//! client's bytes that yields atoms, numbers, quoted strings, literals
//! (`{n}`, `{n+}`, `~{n}`) and single characters. It is bounded: a
//! command may hold at most [`MAX_TOKENS`] tokens and nest at most
//! [`MAX_DEPTH`] deep, so no input makes it work or recurse without limit.

use std::num::NonZeroU32;

use super::ParseError;

/// Deepest nesting of parentheses / NOT / OR accepted.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most tokens in one command (a sequence set of 100k ranges is absurd).
pub(crate) const MAX_TOKENS: usize = 200_000;

/// How a literal was announced: `{n}` waits for `+`, `{n+}` does not
/// (RFC 7888).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralMode {
    Sync,
    NonSync,
}

pub(crate) type Result<T> = std::result::Result<T, ParseError>;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pub pos: usize,
    pub tag: Option<String>,
    tokens: usize,
    depth: usize,
}

/// RFC 3501 atom-specials (and CTL, 8-bit handled by callers).
fn atom_char(b: u8) -> bool {
    b > b' ' && b != 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// ASTRING-CHAR: ATOM-CHAR or `]`. 8-bit octets are accepted too, for
/// UTF-8 mailbox names sent as atoms (RFC 6855 clients do).
fn astring_char(b: u8) -> bool {
    atom_char(b) || b == b']'
}

/// list-char: ATOM-CHAR, list-wildcards, resp-specials.
fn list_char(b: u8) -> bool {
    astring_char(b) || b == b'%' || b == b'*'
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            tag: None,
            tokens: 0,
            depth: 0,
        }
    }

    pub(crate) fn err<T>(&self, reason: impl Into<String>) -> Result<T> {
        Err(ParseError {
            tag: self.tag.clone(),
            reason: reason.into(),
        })
    }

    fn count(&mut self) -> Result<()> {
        self.tokens += 1;
        if self.tokens > MAX_TOKENS {
            return self.err("Command has too many parts");
        }
        Ok(())
    }

    /// Enters one nesting level; [`Self::leave`] undoes it.
    pub(crate) fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("Command nested too deeply");
        }
        Ok(())
    }

    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub(crate) fn whole(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Consumes `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8, what: &str) -> Result<()> {
        if self.eat(b) {
            Ok(())
        } else {
            self.err(format!("Expected {what}"))
        }
    }

    pub(crate) fn sp(&mut self) -> Result<()> {
        self.expect(b' ', "a space")
    }

    /// At the final CRLF (or the end of the input).
    pub(crate) fn at_end(&self) -> bool {
        matches!(self.rest(), b"\r\n" | b"\n" | b"")
    }

    /// The command ends here: only CRLF may follow.
    pub(crate) fn end(&mut self) -> Result<()> {
        if self.at_end() {
            self.pos = self.buf.len();
            Ok(())
        } else if self.peek() == Some(b' ') {
            self.err("Unexpected extra arguments")
        } else {
            self.err("Unexpected character")
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    /// An atom (possibly empty: callers check).
    pub(crate) fn atom(&mut self) -> Result<&'a [u8]> {
        self.count()?;
        let a = self.take_while(atom_char);
        if a.is_empty() {
            return self.err("Expected an atom");
        }
        Ok(a)
    }

    /// An atom, upper-cased, for keywords.
    pub(crate) fn word(&mut self) -> Result<String> {
        let a = self.atom()?;
        Ok(String::from_utf8_lossy(a).to_ascii_uppercase())
    }

    /// The upper-cased atom at the cursor without consuming it.
    pub(crate) fn peek_word(&self) -> String {
        let n = self.rest().iter().take_while(|&&b| atom_char(b)).count();
        String::from_utf8_lossy(self.rest().get(..n).unwrap_or_default()).to_ascii_uppercase()
    }

    /// A tag: ASTRING-CHARs but `+` (RFC 3501 `tag`).
    pub(crate) fn tag(&mut self) -> Result<String> {
        let t = self.take_while(|b| astring_char(b) && b != b'+' && b.is_ascii());
        if t.is_empty() {
            return self.err("Missing tag");
        }
        Ok(String::from_utf8_lossy(t).into_owned())
    }

    pub(crate) fn number64(&mut self) -> Result<u64> {
        self.count()?;
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() || d.len() > 20 {
            return self.err("Expected a number");
        }
        match std::str::from_utf8(d).ok().and_then(|s| s.parse().ok()) {
            Some(n) => Ok(n),
            None => self.err("Number too large"),
        }
    }

    pub(crate) fn number(&mut self) -> Result<u32> {
        let n = self.number64()?;
        match u32::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.err("Number too large"),
        }
    }

    pub(crate) fn nz_number(&mut self) -> Result<NonZeroU32> {
        match NonZeroU32::new(self.number()?) {
            Some(n) => Ok(n),
            None => self.err("Zero is not a valid number here"),
        }
    }

    /// A mod-sequence-value: 63 bits (RFC 7162 7).
    pub(crate) fn modseq(&mut self) -> Result<u64> {
        let n = self.number64()?;
        if n > i64::MAX as u64 {
            return self.err("Mod-sequence too large");
        }
        Ok(n)
    }

    pub(crate) fn quoted(&mut self) -> Result<Vec<u8>> {
        self.count()?;
        self.expect(b'"', "a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n' | 0) => return self.err("Unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    match self.buf.get(self.pos + 1) {
                        Some(&c @ (b'\\' | b'"')) => out.push(c),
                        _ => return self.err("Bad escape in quoted string"),
                    }
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}` / `{n+}` CRLF and its octets (`~{n}` too when `binary`).
    /// Returns (data, was literal8).
    pub(crate) fn literal_any(&mut self, binary: bool) -> Result<(&'a [u8], bool)> {
        self.count()?;
        let eight = binary && self.eat(b'~');
        let Some((len, header)) = literal_header(self.rest()) else {
            return self.err("Malformed literal");
        };
        let start = self.pos + header;
        let Some(data) = start
            .checked_add(len)
            .and_then(|end| self.buf.get(start..end))
        else {
            return self.err("Literal shorter than announced");
        };
        if !eight && data.contains(&0) {
            return self.err("NUL in a literal");
        }
        self.pos = start + len;
        Ok((data, eight))
    }

    /// A string: quoted or literal.
    pub(crate) fn string(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => Ok(self.literal_any(false)?.0.to_vec()),
            _ => self.err("Expected a string"),
        }
    }

    pub(crate) fn astring(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                self.count()?;
                let a = self.take_while(astring_char);
                if a.is_empty() {
                    return self.err("Expected an atom or a string");
                }
                Ok(a.to_vec())
            }
        }
    }

    /// NIL or a string.
    pub(crate) fn nstring(&mut self) -> Result<Option<Vec<u8>>> {
        if matches!(self.peek(), Some(b'"' | b'{')) {
            return Ok(Some(self.string()?));
        }
        if self.word()? == "NIL" {
            Ok(None)
        } else {
            self.err("Expected NIL or a string")
        }
    }

    /// A list-mailbox: list-chars (wildcards included) or a string.
    pub(crate) fn list_mailbox(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                self.count()?;
                let a = self.take_while(list_char);
                if a.is_empty() {
                    return self.err("Expected a mailbox pattern");
                }
                Ok(a.to_vec())
            }
        }
    }

    /// A flag: `\Name` or a keyword atom. System flags are spelled as
    /// RFC 3501 does, whatever case the client used (they are
    /// case-insensitive; stored flags are compared as spelled).
    pub(crate) fn flag(&mut self) -> Result<String> {
        const SYSTEM: [&str; 6] = ["Answered", "Flagged", "Deleted", "Seen", "Draft", "Recent"];
        let backslash = self.eat(b'\\');
        let a = self.atom()?;
        if !a.is_ascii() {
            return self.err("Flags are ASCII");
        }
        let a = String::from_utf8_lossy(a);
        if !backslash {
            return Ok(a.into_owned());
        }
        Ok(match SYSTEM.iter().find(|f| f.eq_ignore_ascii_case(&a)) {
            Some(f) => format!("\\{f}"),
            None => format!("\\{a}"),
        })
    }
}

/// `{n}` or `{n+}` then CRLF at the start of `b`: (n, header length).
pub(crate) fn literal_header(b: &[u8]) -> Option<(usize, usize)> {
    let rest = b.strip_prefix(b"{")?;
    let close = rest.iter().take(12).position(|&c| c == b'}')?;
    let digits = rest.get(..close)?;
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let after = rest.get(close + 1..)?;
    let crlf = if after.starts_with(b"\r\n") {
        2
    } else if after.starts_with(b"\n") {
        1
    } else {
        return None;
    };
    Some((n, 1 + close + 1 + crlf))
}

/// A literal announced at the end of a line (`{n}`, `{n+}`, `~{n}`):
/// (length, mode). Only the line just read is looked at: a `{n}` CRLF
/// ending a line can be nothing else in IMAP syntax (quoted strings and
/// atoms cannot hold it there). The connection uses this to know that
/// more of the command follows.
pub fn trailing_literal(line: &[u8]) -> Option<(usize, LiteralMode)> {
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
