//! ManageSieve (RFC 5804 section 4) commands from bytes: no I/O. A command
//! is a line of atoms and strings, the strings quoted (`"..."`, at most 1024
//! characters, `\"` and `\\` escaped) or literals (`{n+}` CRLF then n octets;
//! the synchronising `{n}` is taken the same way, since ManageSieve has no
//! continuation request). [`decode`] says whether the buffer holds a whole
//! command, needs more, announced a literal over the limit, or is malformed
//! (and how many bytes to drop so the next command starts clean).

/// Bounds of one command.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Longest run of bytes outside literals (the command line proper).
    pub max_line: usize,
    /// Largest literal.
    pub max_literal: usize,
}

/// Longest quoted string in characters (RFC 5804 4).
pub const MAX_QUOTED_CHARS: usize = 1024;

/// One word of a command: an atom (command name, number) or a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    Atom(String),
    String(Vec<u8>),
}

/// What the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole command line: its words and the bytes it took.
    Line(Vec<Token>, usize),
    /// Read more; at least this many bytes are needed in all.
    Incomplete,
    /// A literal larger than `max_literal` was announced: the stream cannot
    /// be resynchronised cheaply, so the connection ends.
    LiteralTooLarge(u64),
    /// The line outside literals is longer than `max_line`.
    LineTooLong,
    /// Malformed: drop `skip` bytes (through the line end) and answer NO.
    Malformed { skip: usize, reason: &'static str },
}

/// Reads one command line from the start of `buf`.
pub fn decode(buf: &[u8], bounds: Bounds) -> Decoded {
    let mut tokens = Vec::new();
    let mut i = 0;
    // Bytes of the line outside literals.
    let mut line = 0usize;
    let malformed = |at: usize, reason| match find_crlf(buf, at) {
        Some(end) => Decoded::Malformed {
            skip: end + 2,
            reason,
        },
        None if buf.len() - at > bounds.max_line => Decoded::LineTooLong,
        None => Decoded::Incomplete,
    };
    loop {
        if line > bounds.max_line {
            return Decoded::LineTooLong;
        }
        let Some(&b) = buf.get(i) else {
            return if line > bounds.max_line {
                Decoded::LineTooLong
            } else {
                Decoded::Incomplete
            };
        };
        match b {
            b' ' => {
                i += 1;
                line += 1;
            }
            b'\r' => {
                return match buf.get(i + 1) {
                    None => Decoded::Incomplete,
                    Some(b'\n') if tokens.is_empty() => Decoded::Malformed {
                        skip: i + 2,
                        reason: "empty command",
                    },
                    Some(b'\n') => Decoded::Line(tokens, i + 2),
                    Some(_) => malformed(i, "CR without LF"),
                };
            }
            b'"' => match quoted(&buf[i + 1..]) {
                Quoted::Done(s, used) => {
                    tokens.push(Token::String(s));
                    i += 1 + used;
                    line += 1 + used;
                }
                Quoted::Incomplete => {
                    return if buf.len() - i > bounds.max_line {
                        Decoded::LineTooLong
                    } else {
                        Decoded::Incomplete
                    };
                }
                Quoted::Bad(reason) => return malformed(i, reason),
            },
            b'{' => match literal_header(&buf[i..]) {
                Header::Incomplete => return Decoded::Incomplete,
                Header::Bad => return malformed(i, "malformed literal"),
                Header::Size(n, used) => {
                    if n > bounds.max_literal as u64 {
                        return Decoded::LiteralTooLarge(n);
                    }
                    // n fits in usize: it is at most max_literal.
                    let n = n as usize;
                    let start = i + used;
                    let Some(data) = buf.get(start..start + n) else {
                        return Decoded::Incomplete;
                    };
                    tokens.push(Token::String(data.to_vec()));
                    i = start + n;
                    line += used;
                }
            },
            b if is_atom_char(b) => {
                let len = buf[i..].iter().take_while(|&&c| is_atom_char(c)).count();
                if i + len == buf.len() {
                    return if line + len > bounds.max_line {
                        Decoded::LineTooLong
                    } else {
                        Decoded::Incomplete
                    };
                }
                // Atoms are ASCII, so this never fails.
                let atom = String::from_utf8_lossy(&buf[i..i + len]).into_owned();
                tokens.push(Token::Atom(atom));
                i += len;
                line += len;
            }
            _ => return malformed(i, "unexpected character"),
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

fn is_atom_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'=' | b'+')
}

enum Quoted {
    /// The unescaped bytes and the bytes used after the opening quote.
    Done(Vec<u8>, usize),
    Incomplete,
    Bad(&'static str),
}

fn quoted(buf: &[u8]) -> Quoted {
    let mut out = Vec::new();
    let mut chars = 0usize;
    let mut i = 0;
    while let Some(&b) = buf.get(i) {
        match b {
            b'"' => {
                return match std::str::from_utf8(&out) {
                    Ok(_) => Quoted::Done(out, i + 1),
                    Err(_) => Quoted::Bad("a quoted string must be UTF-8"),
                };
            }
            b'\\' => match buf.get(i + 1) {
                Some(&c @ (b'"' | b'\\')) => {
                    out.push(c);
                    i += 2;
                }
                Some(_) => return Quoted::Bad("only \\\" and \\\\ may be escaped"),
                None => return Quoted::Incomplete,
            },
            b'\r' | b'\n' | 0 => return Quoted::Bad("a quoted string cannot hold CR, LF or NUL"),
            _ => {
                out.push(b);
                i += 1;
            }
        }
        // Count characters, not octets (continuation bytes do not start one).
        if b & 0xC0 != 0x80 {
            chars += 1;
            if chars > MAX_QUOTED_CHARS {
                return Quoted::Bad("a quoted string is at most 1024 characters; use a literal");
            }
        }
    }
    Quoted::Incomplete
}

enum Header {
    /// The announced size and the header's length (through its CRLF).
    Size(u64, usize),
    Incomplete,
    Bad,
}

fn literal_header(buf: &[u8]) -> Header {
    // "{" digits ["+"] "}" CRLF; ten digits are more than any bound.
    let digits = buf[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return if buf.len() == 1 {
            Header::Incomplete
        } else {
            Header::Bad
        };
    }
    if digits > 10 {
        return Header::Bad;
    }
    let mut j = 1 + digits;
    if buf.get(j) == Some(&b'+') {
        j += 1;
    }
    let tail = [b'}', b'\r', b'\n'];
    for (k, want) in tail.iter().enumerate() {
        match buf.get(j + k) {
            None => return Header::Incomplete,
            Some(b) if b == want => {}
            Some(_) => return Header::Bad,
        }
    }
    let n = std::str::from_utf8(&buf[1..1 + digits])
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    match n {
        Some(n) => Header::Size(n, j + 3),
        None => Header::Bad,
    }
}

/// A ManageSieve command with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    StartTls,
    Logout,
    Capability,
    Noop {
        tag: Option<Vec<u8>>,
    },
    Unauthenticate,
    HaveSpace {
        name: String,
        size: u64,
    },
    PutScript {
        name: String,
        script: Vec<u8>,
    },
    ListScripts,
    SetActive {
        name: String,
    },
    GetScript {
        name: String,
    },
    DeleteScript {
        name: String,
    },
    RenameScript {
        from: String,
        to: String,
    },
    CheckScript {
        script: Vec<u8>,
    },
}

impl Command {
    /// The command's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::StartTls => "STARTTLS",
            Command::Logout => "LOGOUT",
            Command::Capability => "CAPABILITY",
            Command::Noop { .. } => "NOOP",
            Command::Unauthenticate => "UNAUTHENTICATE",
            Command::HaveSpace { .. } => "HAVESPACE",
            Command::PutScript { .. } => "PUTSCRIPT",
            Command::ListScripts => "LISTSCRIPTS",
            Command::SetActive { .. } => "SETACTIVE",
            Command::GetScript { .. } => "GETSCRIPT",
            Command::DeleteScript { .. } => "DELETESCRIPT",
            Command::RenameScript { .. } => "RENAMESCRIPT",
            Command::CheckScript { .. } => "CHECKSCRIPT",
        }
    }
}

/// Why a line is not a command; the text goes to the client in a NO.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

fn invalid(s: impl Into<String>) -> Invalid {
    Invalid(s.into())
}

struct Args {
    tokens: std::vec::IntoIter<Token>,
    command: &'static str,
}

impl Args {
    fn string(&mut self) -> Result<Vec<u8>, Invalid> {
        match self.tokens.next() {
            Some(Token::String(s)) => Ok(s),
            Some(Token::Atom(_)) => Err(invalid(format!("{}: expected a string", self.command))),
            None => Err(invalid(format!("{}: missing argument", self.command))),
        }
    }

    fn optional_string(&mut self) -> Result<Option<Vec<u8>>, Invalid> {
        match self.tokens.next() {
            None => Ok(None),
            Some(Token::String(s)) => Ok(Some(s)),
            Some(Token::Atom(_)) => Err(invalid(format!("{}: expected a string", self.command))),
        }
    }

    fn utf8(&mut self) -> Result<String, Invalid> {
        String::from_utf8(self.string()?)
            .map_err(|_| invalid(format!("{}: the string is not UTF-8", self.command)))
    }

    fn number(&mut self) -> Result<u64, Invalid> {
        match self.tokens.next() {
            Some(Token::Atom(a)) if a.bytes().all(|b| b.is_ascii_digit()) => a
                .parse()
                .map_err(|_| invalid(format!("{}: number out of range", self.command))),
            _ => Err(invalid(format!("{}: expected a number", self.command))),
        }
    }

    fn end(mut self) -> Result<(), Invalid> {
        match self.tokens.next() {
            None => Ok(()),
            Some(_) => Err(invalid(format!("{}: too many arguments", self.command))),
        }
    }
}

/// The command a decoded line spells.
pub fn parse(tokens: Vec<Token>) -> Result<Command, Invalid> {
    let mut tokens = tokens.into_iter();
    let Some(Token::Atom(name)) = tokens.next() else {
        return Err(invalid("a command starts with its name"));
    };
    let upper = name.to_ascii_uppercase();
    let command: &'static str = match upper.as_str() {
        "AUTHENTICATE" => "AUTHENTICATE",
        "STARTTLS" => "STARTTLS",
        "LOGOUT" => "LOGOUT",
        "CAPABILITY" => "CAPABILITY",
        "NOOP" => "NOOP",
        "UNAUTHENTICATE" => "UNAUTHENTICATE",
        "HAVESPACE" => "HAVESPACE",
        "PUTSCRIPT" => "PUTSCRIPT",
        "LISTSCRIPTS" => "LISTSCRIPTS",
        "SETACTIVE" => "SETACTIVE",
        "GETSCRIPT" => "GETSCRIPT",
        "DELETESCRIPT" => "DELETESCRIPT",
        "RENAMESCRIPT" => "RENAMESCRIPT",
        "CHECKSCRIPT" => "CHECKSCRIPT",
        _ => return Err(invalid("unknown command")),
    };
    let mut a = Args { tokens, command };
    let cmd = match command {
        "AUTHENTICATE" => {
            let mechanism = a.utf8()?.to_ascii_uppercase();
            let initial = a.optional_string()?;
            Command::Authenticate { mechanism, initial }
        }
        "STARTTLS" => Command::StartTls,
        "LOGOUT" => Command::Logout,
        "CAPABILITY" => Command::Capability,
        "NOOP" => Command::Noop {
            tag: a.optional_string()?,
        },
        "UNAUTHENTICATE" => Command::Unauthenticate,
        "HAVESPACE" => Command::HaveSpace {
            name: a.utf8()?,
            size: a.number()?,
        },
        "PUTSCRIPT" => Command::PutScript {
            name: a.utf8()?,
            script: a.string()?,
        },
        "LISTSCRIPTS" => Command::ListScripts,
        "SETACTIVE" => Command::SetActive { name: a.utf8()? },
        "GETSCRIPT" => Command::GetScript { name: a.utf8()? },
        "DELETESCRIPT" => Command::DeleteScript { name: a.utf8()? },
        "RENAMESCRIPT" => Command::RenameScript {
            from: a.utf8()?,
            to: a.utf8()?,
        },
        _ => Command::CheckScript {
            script: a.string()?,
        },
    };
    a.end()?;
    Ok(cmd)
}

/// The client's answer to a SASL challenge: one string on its own line;
/// `"*"` cancels (RFC 5804 2.1).
pub fn parse_sasl_response(tokens: Vec<Token>) -> Result<Option<Vec<u8>>, Invalid> {
    let mut a = Args {
        tokens: tokens.into_iter(),
        command: "AUTHENTICATE",
    };
    let s = a.string()?;
    a.end()?;
    Ok(if s == b"*" { None } else { Some(s) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const B: Bounds = Bounds {
        max_line: 64,
        max_literal: 100,
    };

    fn line(input: &[u8]) -> Command {
        match decode(input, B) {
            Decoded::Line(t, used) => {
                assert_eq!(used, input.len());
                parse(t).unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_with_quoted_strings_and_literals() {
        assert_eq!(line(b"capability\r\n"), Command::Capability);
        assert_eq!(
            line(b"PUTSCRIPT \"my \\\"s\\\\\" {5+}\r\nkeep;\r\n"),
            Command::PutScript {
                name: "my \"s\\".into(),
                script: b"keep;".to_vec()
            }
        );
        // The synchronising form is read the same way.
        assert_eq!(
            line(b"CHECKSCRIPT {4}\r\nstop\r\n"),
            Command::CheckScript {
                script: b"stop".to_vec()
            }
        );
        assert_eq!(
            line(b"HAVESPACE \"a\" 12345\r\n"),
            Command::HaveSpace {
                name: "a".into(),
                size: 12345
            }
        );
        assert_eq!(
            line(b"AUTHENTICATE \"plain\" \"AGEAYg==\"\r\n"),
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            }
        );
        assert_eq!(
            line(b"RENAMESCRIPT \"a\" {1+}\r\nb\r\n"),
            Command::RenameScript {
                from: "a".into(),
                to: "b".into()
            }
        );
    }

    #[test]
    fn partial_input_asks_for_more() {
        for input in [
            &b"LISTSCR"[..],
            b"PUTSCRIPT \"a\" {5+}\r\nke",
            b"PUTSCRIPT \"a\" {5",
            b"GETSCRIPT \"ab",
            b"NOOP\r",
        ] {
            assert_eq!(decode(input, B), Decoded::Incomplete, "{input:?}");
        }
    }

    #[test]
    fn limits_and_errors() {
        assert_eq!(
            decode(b"PUTSCRIPT \"a\" {101+}\r\n", B),
            Decoded::LiteralTooLarge(101)
        );
        assert_eq!(
            decode(&[b'A'; 80], B),
            Decoded::LineTooLong,
            "an endless atom"
        );
        let long_quoted = [b"NOOP \"".as_slice(), &[b'x'; 80]].concat();
        assert_eq!(decode(&long_quoted, B), Decoded::LineTooLong);
        // A bad byte drops the line and the next command reads clean.
        let input = b"NOOP \x01 x\r\nLOGOUT\r\n";
        let Decoded::Malformed { skip, .. } = decode(input, B) else {
            panic!()
        };
        assert_eq!(
            decode(&input[skip..], B),
            Decoded::Line(vec![Token::Atom("LOGOUT".into())], 8)
        );
        assert!(matches!(
            decode(b"NOOP \"a\nb\"\r\n", B),
            Decoded::Malformed { .. }
        ));
        assert!(parse(vec![Token::Atom("FROB".into())]).is_err());
        assert!(parse(vec![Token::Atom("GETSCRIPT".into())]).is_err());
        assert!(
            parse(vec![
                Token::Atom("LOGOUT".into()),
                Token::String(b"x".to_vec())
            ])
            .is_err()
        );
        assert!(
            parse(vec![
                Token::Atom("GETSCRIPT".into()),
                Token::String(vec![0xff])
            ])
            .is_err()
        );
    }

    #[test]
    fn sasl_responses() {
        let Decoded::Line(t, _) = decode(b"\"*\"\r\n", B) else {
            panic!()
        };
        assert_eq!(parse_sasl_response(t), Ok(None));
        let Decoded::Line(t, _) = decode(b"{4+}\r\nAGE=\r\n", B) else {
            panic!()
        };
        assert_eq!(parse_sasl_response(t), Ok(Some(b"AGE=".to_vec())));
    }
}
