//! A small, bounded reader of IMAP command arguments for the commands
//! parsed by hand (LIST-EXTENDED, STATUS, SEARCH RETURN): atoms (with the
//! list wildcards), quoted strings (UTF-8 allowed, RFC 6855), literals
//! (`{n}`, `{n+}`, `~{n}`) and parenthesised lists. Pure: bytes in, tokens
//! out.

/// Deepest parenthesis nesting accepted.
const MAX_DEPTH: usize = 8;
/// Most tokens in one command.
const MAX_TOKENS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Atom(Vec<u8>),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    List(Vec<Arg>),
}

impl Arg {
    /// The atom, upper-cased, if this is one.
    pub(crate) fn keyword(&self) -> Option<String> {
        match self {
            Arg::Atom(a) => Some(String::from_utf8_lossy(a).to_ascii_uppercase()),
            _ => None,
        }
    }

    /// An astring (atom or string) or a list-mailbox.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Arg::Atom(a) | Arg::Str(a) => Some(a),
            Arg::List(_) => None,
        }
    }
}

/// A command line split into its tag and arguments (the command name is
/// the first argument).
#[derive(Debug)]
pub(crate) struct Line {
    pub tag: String,
    pub args: Vec<Arg>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    tokens: usize,
}

fn is_atom_byte(b: u8) -> bool {
    b > b' ' && !matches!(b, b'(' | b')' | b'"' | b'{' | 0x7f)
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        matches!(self.buf.get(self.pos..), Some(b"\r\n" | b"\n" | b""))
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn args(&mut self, depth: usize) -> Result<Vec<Arg>, &'static str> {
        if depth > MAX_DEPTH {
            return Err("Too deeply nested");
        }
        let mut out = Vec::new();
        loop {
            self.skip_spaces();
            if self.at_end() {
                return if depth == 0 {
                    Ok(out)
                } else {
                    Err("Missing )")
                };
            }
            self.tokens += 1;
            if self.tokens > MAX_TOKENS {
                return Err("Too many arguments");
            }
            let arg = match self.peek() {
                Some(b')') if depth > 0 => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b')') => return Err("Unexpected )"),
                Some(b'(') => {
                    self.pos += 1;
                    Arg::List(self.args(depth + 1)?)
                }
                Some(b'"') => Arg::Str(self.quoted()?),
                Some(b'{') => Arg::Str(self.literal()?),
                Some(b'~') if self.buf.get(self.pos + 1) == Some(&b'{') => {
                    self.pos += 1;
                    Arg::Str(self.literal()?)
                }
                _ => {
                    let start = self.pos;
                    while self.peek().is_some_and(is_atom_byte) {
                        self.pos += 1;
                    }
                    if self.pos == start {
                        return Err("Unexpected character");
                    }
                    Arg::Atom(self.buf.get(start..self.pos).unwrap_or_default().to_vec())
                }
            };
            out.push(arg);
            // Arguments are separated by spaces (or close a list).
            if !matches!(self.peek(), Some(b' ' | b')' | b'\r' | b'\n') | None) {
                return Err("Missing space between arguments");
            }
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, &'static str> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n' | 0) => return Err("Unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    match self.buf.get(self.pos + 1) {
                        Some(&c @ (b'\\' | b'"')) => out.push(c),
                        _ => return Err("Bad escape in quoted string"),
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

    fn literal(&mut self) -> Result<Vec<u8>, &'static str> {
        let (len, header) =
            literal_header(self.buf.get(self.pos..).unwrap_or_default()).ok_or("Bad literal")?;
        let start = self.pos + header;
        let data = self.buf.get(start..start + len).ok_or("Short literal")?;
        self.pos = start + len;
        Ok(data.to_vec())
    }
}

/// `{n}\r\n` or `{n+}\r\n` at the start of `b`: (n, header length).
pub(crate) fn literal_header(b: &[u8]) -> Option<(usize, usize)> {
    let rest = b.strip_prefix(b"{")?;
    let close = rest.iter().position(|&c| c == b'}')?;
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

/// Splits a whole command (literals included) into tag and arguments.
pub(crate) fn parse(buf: &[u8]) -> Result<Line, &'static str> {
    let mut r = Reader {
        buf,
        pos: 0,
        tokens: 0,
    };
    let start = r.pos;
    while r.peek().is_some_and(is_atom_byte) {
        r.pos += 1;
    }
    let tag = buf.get(start..r.pos).unwrap_or_default();
    if tag.is_empty() || r.peek() != Some(b' ') {
        return Err("Missing tag");
    }
    let tag = String::from_utf8_lossy(tag).into_owned();
    let args = r.args(0)?;
    Ok(Line { tag, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Arg {
        Arg::Atom(s.as_bytes().to_vec())
    }

    fn string(s: &str) -> Arg {
        Arg::Str(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_arguments() {
        let l = parse(
            b"a1 LIST (SUBSCRIBED) \"\" (\"INBOX\" Sent*) RETURN (STATUS (MESSAGES SIZE))\r\n",
        )
        .unwrap();
        assert_eq!(l.tag, "a1");
        assert_eq!(
            l.args,
            vec![
                atom("LIST"),
                Arg::List(vec![atom("SUBSCRIBED")]),
                string(""),
                Arg::List(vec![string("INBOX"), atom("Sent*")]),
                atom("RETURN"),
                Arg::List(vec![
                    atom("STATUS"),
                    Arg::List(vec![atom("MESSAGES"), atom("SIZE")])
                ]),
            ]
        );
        let l = parse(b"b STATUS {5+}\r\na\"b\\c (SIZE)\r\n").unwrap();
        assert_eq!(l.args[1], string("a\"b\\c"));
        let l = parse("c LIST \"\" \"Entw\u{fc}rfe\\\"\"\r\n".as_bytes()).unwrap();
        assert_eq!(l.args[2], string("Entw\u{fc}rfe\""));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"a LIST (\r\n"[..],
            b"a LIST )\r\n",
            b"a LIST \"x\r\n",
            b"a LIST {5}\r\nab",
            b"a LIST \"a\"\"b\"\r\n",
            b"LIST\r\n",
            b"a LIST ((((((((((x))))))))))\r\n",
            b"a LIST \"\\x\"\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn literal_headers() {
        assert_eq!(literal_header(b"{12}\r\nx"), Some((12, 6)));
        assert_eq!(literal_header(b"{3+}\r\n"), Some((3, 6)));
        assert_eq!(literal_header(b"{}\r\n"), None);
        assert_eq!(literal_header(b"{99999999999}\r\n"), None);
        assert_eq!(literal_header(b"{1}x"), None);
    }
}
