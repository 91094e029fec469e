//! SMTP replies (RFC 5321 4.2) as the client reads them: pure parsing, no I/O.
//!
//! Hand-written rather than smtp-proto's response parser: we need only the
//! code, the enhanced status (RFC 3463) and the text of a possibly multi-line
//! reply, plus EHLO keywords, and keeping this pure makes the bounds explicit
//! (a reply longer than [`MAX_REPLY`] is an error, not unbounded memory).

/// Longest reply accepted, all lines together.
pub const MAX_REPLY: usize = 64 * 1024;

/// One complete reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Every line's text after the code and separator, joined by newlines.
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The enhanced status code (`5.1.1`) at the start of the text, if any.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.text.split_whitespace().next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let ok = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }

    /// One line for logs and DSNs: `550 5.1.1 no such user`.
    pub fn one_line(&self) -> String {
        format!("{} {}", self.code, self.text.replace('\n', " "))
    }
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete reply and the number of bytes it used.
    Complete(Reply, usize),
    /// More input is needed.
    Incomplete,
    /// Not an SMTP reply.
    Malformed(String),
}

/// Parses one reply from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut at = 0;
    let mut code: Option<u16> = None;
    let mut text = String::new();
    loop {
        let Some(nl) = buf[at..].iter().position(|&b| b == b'\n') else {
            return if buf.len() > MAX_REPLY {
                Parsed::Malformed("reply too long".into())
            } else {
                Parsed::Incomplete
            };
        };
        let line = &buf[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if at > MAX_REPLY {
            return Parsed::Malformed("reply too long".into());
        }
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Parsed::Malformed(format!(
                "not a reply line: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ));
        }
        let this = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        if !(200..600).contains(&this) || code.is_some_and(|c| c != this) {
            return Parsed::Malformed(format!("bad reply code {this}"));
        }
        code = Some(this);
        let sep = line.get(3).copied();
        let rest = line.get(4..).unwrap_or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(String::from_utf8_lossy(rest).trim_end());
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => return Parsed::Complete(Reply { code: this, text }, at),
            Some(other) => {
                return Parsed::Malformed(format!("bad separator {:?}", other as char));
            }
        }
    }
}

/// What an EHLO reply advertises.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    pub dsn: bool,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// SIZE limit; 0 when none is advertised.
    pub size: u64,
}

impl Capabilities {
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        // The first line is the greeting; keywords follow, one per line.
        for line in reply.text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "DSN" => caps.dsn = true,
                "8BITMIME" => caps.eight_bit = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_replies() {
        assert_eq!(
            parse(b"250 2.1.0 ok\r\nrest"),
            Parsed::Complete(
                Reply {
                    code: 250,
                    text: "2.1.0 ok".into()
                },
                14
            )
        );
        let ehlo = b"250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";
        let Parsed::Complete(reply, used) = parse(ehlo) else {
            panic!("incomplete");
        };
        assert_eq!(used, ehlo.len());
        let caps = Capabilities::from_ehlo(&reply);
        assert!(caps.pipelining && caps.starttls && !caps.dsn);
        assert_eq!(caps.size, 1000);
        assert_eq!(parse(b"250-partial\r\n250"), Parsed::Incomplete);
        assert!(matches!(parse(b"hello\r\n"), Parsed::Malformed(_)));
        assert!(matches!(parse(b"250-a\r\n251 b\r\n"), Parsed::Malformed(_)));
    }

    #[test]
    fn enhanced_codes_and_classes() {
        let r = Reply {
            code: 550,
            text: "5.1.1 no such user".into(),
        };
        assert_eq!(r.enhanced(), Some("5.1.1"));
        assert!(r.is_permanent());
        let r = Reply {
            code: 451,
            text: "try later".into(),
        };
        assert_eq!(r.enhanced(), None);
        assert!(r.is_transient());
        assert_eq!(r.one_line(), "451 try later");
    }

    #[test]
    fn endless_replies_are_refused() {
        let mut long = Vec::new();
        while long.len() <= MAX_REPLY {
            long.extend_from_slice(b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
        }
        assert!(matches!(parse(&long), Parsed::Malformed(_)));
    }
}
