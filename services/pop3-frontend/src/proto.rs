//! The POP3 codec: command parsing, the transformations applied to message
//! bytes on the way out (byte-stuffing, TOP's header-and-n-lines cut), and
//! the SASL PLAIN decoding. Pure functions over bytes: no I/O here.
//!
//! Hand-written rather than a parser crate: POP3 (RFC 1939, 2449, 2595, 5034)
//! is a dozen keywords with at most two arguments each.

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capa,
    Quit,
    Stls,
    User(String),
    Pass(String),
    /// `AUTH` alone (list mechanisms) or `AUTH mechanism [initial-response]`.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Apop,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Top(u32, u32),
    Uidl(Option<u32>),
}

impl Command {
    /// The keyword, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::Quit => "QUIT",
            Command::Stls => "STLS",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } => "AUTH",
            Command::Apop => "APOP",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Top(..) => "TOP",
            Command::Uidl(_) => "UIDL",
        }
    }
}

/// Why a line is not a command. Each maps to one `-ERR` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    Unknown,
    MissingArgument,
    TooManyArguments,
    BadNumber,
    /// RFC 2449: arguments are at most 40 octets (PASS and AUTH excepted).
    ArgumentTooLong,
}

impl ParseError {
    pub fn text(self) -> &'static str {
        match self {
            ParseError::Empty => "-ERR empty command\r\n",
            ParseError::Unknown => "-ERR unknown command\r\n",
            ParseError::MissingArgument => "-ERR missing argument\r\n",
            ParseError::TooManyArguments => "-ERR too many arguments\r\n",
            ParseError::BadNumber => "-ERR invalid number\r\n",
            ParseError::ArgumentTooLong => "-ERR argument too long\r\n",
        }
    }
}

const MAX_ARG: usize = 40;

/// Strips one trailing CRLF or LF.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A message number or line count: decimal digits only, fitting in u32.
fn number(arg: &[u8]) -> Result<u32, ParseError> {
    if arg.is_empty() || arg.len() > 10 || !arg.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadNumber);
    }
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::BadNumber)
}

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Parses one command line (terminator included or not).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = trim_eol(line);
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    if keyword.is_empty() {
        return Err(ParseError::Empty);
    }
    let kw = keyword.to_ascii_uppercase();
    // PASS takes the rest of the line verbatim: passwords may hold spaces
    // (RFC 1939 7 allows it).
    if kw == b"PASS" {
        if rest.is_empty() {
            return Err(ParseError::MissingArgument);
        }
        return Ok(Command::Pass(text(rest)));
    }
    let args: Vec<&[u8]> = rest
        .split(|&b| b == b' ')
        .filter(|a| !a.is_empty())
        .collect();
    if kw != b"AUTH" && args.iter().any(|a| a.len() > MAX_ARG) {
        return Err(ParseError::ArgumentTooLong);
    }
    let arity = |min: usize, max: usize| {
        if args.len() < min {
            Err(ParseError::MissingArgument)
        } else if args.len() > max {
            Err(ParseError::TooManyArguments)
        } else {
            Ok(())
        }
    };
    let optional_number = |args: &[&[u8]]| args.first().map(|a| number(a)).transpose();
    Ok(match kw.as_slice() {
        b"CAPA" => arity(0, 0).map(|_| Command::Capa)?,
        b"QUIT" => arity(0, 0).map(|_| Command::Quit)?,
        b"STLS" => arity(0, 0).map(|_| Command::Stls)?,
        b"STAT" => arity(0, 0).map(|_| Command::Stat)?,
        b"NOOP" => arity(0, 0).map(|_| Command::Noop)?,
        b"RSET" => arity(0, 0).map(|_| Command::Rset)?,
        b"APOP" => Command::Apop,
        b"USER" => {
            arity(1, 1)?;
            Command::User(text(args[0]))
        }
        b"AUTH" => {
            arity(0, 2)?;
            if args.iter().any(|a| a.len() > 2048) {
                return Err(ParseError::ArgumentTooLong);
            }
            Command::Auth {
                mechanism: args.first().map(|a| text(a).to_ascii_uppercase()),
                initial: args.get(1).map(|a| text(a)),
            }
        }
        b"LIST" => {
            arity(0, 1)?;
            Command::List(optional_number(&args)?)
        }
        b"UIDL" => {
            arity(0, 1)?;
            Command::Uidl(optional_number(&args)?)
        }
        b"RETR" => {
            arity(1, 1)?;
            Command::Retr(number(args[0])?)
        }
        b"DELE" => {
            arity(1, 1)?;
            Command::Dele(number(args[0])?)
        }
        b"TOP" => {
            arity(2, 2)?;
            Command::Top(number(args[0])?, number(args[1])?)
        }
        _ => return Err(ParseError::Unknown),
    })
}

/// Byte-stuffs message bytes for a multi-line response (RFC 1939 3): a line
/// that starts with "." gets another ".". Fed chunk by chunk, so a message
/// is never held whole; [`Stuffer::finish`] ends the response.
#[derive(Debug)]
pub struct Stuffer {
    at_line_start: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
        }
    }
}

impl Stuffer {
    /// Appends the stuffed form of `data` to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() + 16);
        // Copied in runs between the dots to stuff; line ends are found with
        // memchr, since every octet of every RETR passes here.
        let mut start = 0;
        let mut line = 0;
        let mut at_line_start = self.at_line_start;
        while line < data.len() {
            if at_line_start && data[line] == b'.' {
                out.extend_from_slice(&data[start..line]);
                out.push(b'.');
                start = line;
            }
            match memchr::memchr(b'\n', &data[line..]) {
                Some(lf) => {
                    line += lf + 1;
                    at_line_start = true;
                }
                None => {
                    line = data.len();
                    at_line_start = false;
                }
            }
        }
        out.extend_from_slice(&data[start..]);
        self.at_line_start = at_line_start;
    }

    /// The terminator: CRLF first when the message did not end with a line
    /// break, then ".CRLF".
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// TOP's cut (RFC 1939 7): the header, the blank line after it, then at most
/// `lines` lines of the body.
#[derive(Debug)]
pub struct TopCut {
    in_header: bool,
    /// The current line has only seen CR so far (so it may be the blank line).
    line_blank: bool,
    lines_left: u32,
    done: bool,
}

impl TopCut {
    pub fn new(lines: u32) -> Self {
        Self {
            in_header: true,
            line_blank: true,
            lines_left: lines,
            done: false,
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }

    /// The prefix of `data` that belongs to the output; after it returns
    /// a shorter slice than given, [`TopCut::done`] is true.
    pub fn take<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        if self.done {
            return &[];
        }
        if !self.in_header && self.lines_left == 0 {
            self.done = true;
            return &[];
        }
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                if self.in_header {
                    if self.line_blank {
                        self.in_header = false;
                        if self.lines_left == 0 {
                            self.done = true;
                            return &data[..=i];
                        }
                    }
                } else {
                    self.lines_left -= 1;
                    if self.lines_left == 0 {
                        self.done = true;
                        return &data[..=i];
                    }
                }
                self.line_blank = true;
            } else if b != b'\r' {
                self.line_blank = false;
            }
        }
        data
    }
}

/// Decodes standard base64 (RFC 4648, padding required as SASL sends it).
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = input.trim().as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (n, quad) in bytes.chunks(4).enumerate() {
        let last = n + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut acc = 0u32;
        for &c in &quad[..4 - pad] {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * pad as u32;
        let decoded = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

/// The credentials of a SASL PLAIN message (RFC 4616):
/// `authzid NUL authcid NUL passwd`. An authorization identity other than
/// the user itself is refused (no proxy logins).
pub fn sasl_plain(message: &[u8]) -> Option<(String, String)> {
    let mut parts = message.split(|&b| b == 0);
    let (authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || pass.is_empty() {
        return None;
    }
    let user = std::str::from_utf8(user).ok()?.to_owned();
    let pass = std::str::from_utf8(pass).ok()?.to_owned();
    if !authz.is_empty() && !std::str::from_utf8(authz).ok()?.eq_ignore_ascii_case(&user) {
        return None;
    }
    Some((user, pass))
}

/// The UIDL of a message: stable across sessions and replicas because it
/// is made of the mailbox's UIDVALIDITY and the message's UID (RFC 1939 7:
/// 1 to 70 characters from 0x21 to 0x7E).
pub fn unique_id(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity}.{uid}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(b"capa\r\n"), Ok(Command::Capa));
        assert_eq!(
            parse(b"USER alice@example.test\r\n"),
            Ok(Command::User("alice@example.test".into()))
        );
        assert_eq!(
            parse(b"PASS two words \r\n"),
            Ok(Command::Pass("two words ".into()))
        );
        assert_eq!(parse(b"LIST\r\n"), Ok(Command::List(None)));
        assert_eq!(parse(b"list 3\r\n"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"TOP 1 0\r\n"), Ok(Command::Top(1, 0)));
        assert_eq!(parse(b"uidl 12\n"), Ok(Command::Uidl(Some(12))));
        assert_eq!(
            parse(b"AUTH PLAIN AGEAYg==\r\n"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGEAYg==".into())
            })
        );
        assert_eq!(
            parse(b"AUTH\r\n"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
    }

    #[test]
    fn bad_commands() {
        assert_eq!(parse(b"\r\n"), Err(ParseError::Empty));
        assert_eq!(parse(b"FROB\r\n"), Err(ParseError::Unknown));
        assert_eq!(parse(b"RETR\r\n"), Err(ParseError::MissingArgument));
        assert_eq!(parse(b"RETR 1 2\r\n"), Err(ParseError::TooManyArguments));
        assert_eq!(parse(b"RETR -1\r\n"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR 99999999999\r\n"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"DELE x\r\n"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"TOP 1\r\n"), Err(ParseError::MissingArgument));
        assert_eq!(parse(b"PASS\r\n"), Err(ParseError::MissingArgument));
        assert_eq!(parse(b"STAT now\r\n"), Err(ParseError::TooManyArguments));
        let long = format!("USER {}\r\n", "a".repeat(41));
        assert_eq!(parse(long.as_bytes()), Err(ParseError::ArgumentTooLong));
    }

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = Stuffer::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn stuffing() {
        assert_eq!(
            stuff(&[b".a\r\nb\r\n..c\r\n"]),
            b"..a\r\nb\r\n...c\r\n.\r\n"
        );
        // A dot after a chunk boundary at a line start is still stuffed.
        assert_eq!(stuff(&[b"a\r\n", b".\r\n"]), b"a\r\n..\r\n.\r\n");
        assert_eq!(stuff(&[b"no newline"]), b"no newline\r\n.\r\n");
        assert_eq!(stuff(&[]), b".\r\n");
        assert_eq!(stuff(&[b"x.y\r\n\xff.\r\n"]), b"x.y\r\n\xff.\r\n.\r\n");
        assert_eq!(
            stuff(&[&b"a\r\n"[..], &b""[..], &b".b"[..]]),
            b"a\r\n..b\r\n.\r\n"
        );
        // The same as stuffing octet by octet, for any input and chunking.
        let mut seed = 7u64;
        for _ in 0..200 {
            let data: Vec<u8> = (0..(seed % 300))
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    [b'.', b'\n', b'\r', b'x'][(seed >> 33) as usize % 4]
                })
                .collect();
            let mut naive = Vec::new();
            let mut at_start = true;
            for &b in &data {
                if at_start && b == b'.' {
                    naive.push(b'.');
                }
                naive.push(b);
                at_start = b == b'\n';
            }
            let chunk = (seed % 7 + 1) as usize;
            let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
            let got = stuff(&chunks);
            assert_eq!(&got[..naive.len()], &naive[..], "{data:?}");
        }
    }

    fn top(msg: &[u8], n: u32, chunk: usize) -> Vec<u8> {
        let mut cut = TopCut::new(n);
        let mut out = Vec::new();
        for c in msg.chunks(chunk) {
            out.extend_from_slice(cut.take(c));
            if cut.done() {
                break;
            }
        }
        out
    }

    #[test]
    fn top_cuts() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        for chunk in [1, 3, 100] {
            assert_eq!(top(msg, 0, chunk), b"A: 1\r\nB: 2\r\n\r\n");
            assert_eq!(top(msg, 2, chunk), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
            assert_eq!(top(msg, 9, chunk), msg);
        }
        assert_eq!(top(b"A: 1\r\n", 3, 2), b"A: 1\r\n");
        assert_eq!(top(b"A: 1\n\nbody\nmore\n", 1, 4), b"A: 1\n\nbody\n");
    }

    #[test]
    fn base64_and_plain() {
        assert_eq!(base64_decode("AGFsaWNlAHB3").unwrap(), b"\0alice\0pw");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("YQ=").is_none());
        assert!(base64_decode("Y===").is_none());
        assert!(base64_decode("YQ==YQ==").is_none());
        assert!(base64_decode("*a==").is_none());
        assert_eq!(
            sasl_plain(b"\0alice\0pw").unwrap(),
            ("alice".into(), "pw".into())
        );
        assert!(sasl_plain(b"alice\0alice\0pw").is_some());
        assert!(sasl_plain(b"bob\0alice\0pw").is_none());
        assert!(sasl_plain(b"\0alice\0").is_none());
        assert!(sasl_plain(b"\0alice").is_none());
    }

    /// Undoes byte-stuffing and the terminator, as a client does.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").unwrap();
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    /// Pseudo-random input (a fixed xorshift, so failures reproduce): the
    /// parser never panics, and stuffing round-trips whatever the chunking.
    #[test]
    fn random_input() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const ALPHABET: &[u8] = b".\r\n .AUTHPLAINRETRTOPlist0123456789\xff\x00";
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let _ = parse(&data);
            let _ = base64_decode(&String::from_utf8_lossy(&data));
            let _ = sasl_plain(&data);
            let mut line_ended = data.clone();
            if !line_ended.ends_with(b"\n") {
                line_ended.extend_from_slice(b"\r\n");
            }
            let cut = 1 + (next() % 8) as usize;
            let chunks: Vec<&[u8]> = line_ended.chunks(cut).collect();
            let wire = stuff(&chunks);
            assert_eq!(unstuff(&wire), line_ended);
            let mut top = TopCut::new((next() % 4) as u32);
            let mut taken = Vec::new();
            for c in &chunks {
                taken.extend_from_slice(top.take(c));
            }
            assert!(line_ended.starts_with(&taken));
        }
    }

    #[test]
    fn unique_ids_are_valid() {
        let id = unique_id(u32::MAX, u32::MAX);
        assert!(id.len() <= 70 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}
