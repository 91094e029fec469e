//! The placeholder's answers, as a pure function of one command line.

pub(crate) const GREETING: &str = "+OK mailfleet POP3 ready\r\n";
pub(crate) const SHUTDOWN: &str = "-ERR mailfleet POP3 shutting down\r\n";
pub(crate) const IDLE: &str = "-ERR idle for too long, closing\r\n";
pub(crate) const TOO_MANY: &str = "-ERR Too many connections\r\n";
pub(crate) const TOO_LONG: &str = "-ERR command line too long\r\n";

/// What to send back, and whether the session ends after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub text: String,
    pub close: bool,
}

/// Answers one command line (terminator included or not).
pub(crate) fn answer(line: &[u8]) -> Reply {
    let keyword = line
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    if keyword.eq_ignore_ascii_case(b"QUIT") {
        Reply {
            text: "+OK bye\r\n".into(),
            close: true,
        }
    } else {
        Reply {
            text: "-ERR not implemented yet\r\n".into(),
            close: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            answer(b"USER demo\r\n").text,
            "-ERR not implemented yet\r\n"
        );
        assert!(!answer(b"\r\n").close);
        let bye = answer(b"quit\r\n");
        assert!(bye.close);
        assert_eq!(bye.text, "+OK bye\r\n");
    }
}
