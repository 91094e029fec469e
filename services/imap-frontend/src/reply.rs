//! The placeholder's answers, as a pure function of one command line.

pub(crate) const GREETING: &str = "* OK [CAPABILITY IMAP4rev1] mailfleet IMAP ready\r\n";
pub(crate) const SHUTDOWN: &str = "* BYE mailfleet IMAP shutting down\r\n";
pub(crate) const IDLE: &str = "* BYE Autologout; idle for too long\r\n";
pub(crate) const TOO_MANY: &str = "* BYE Too many connections\r\n";
pub(crate) const TOO_LONG: &str = "* BAD Command line too long\r\n";

/// What to send back, and whether the session ends after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub text: String,
    pub close: bool,
}

/// Answers one command line (terminator included or not).
pub(crate) fn answer(line: &[u8]) -> Reply {
    let line = line
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let tag = words.next().unwrap_or_default();
    if !valid_tag(tag) {
        return Reply {
            text: "* BAD Missing or invalid tag\r\n".into(),
            close: false,
        };
    }
    // Validated above: the tag is printable ASCII.
    let tag = String::from_utf8_lossy(tag);
    let command = words.next().unwrap_or_default();
    if command.eq_ignore_ascii_case(b"LOGOUT") {
        Reply {
            text: format!("* BYE mailfleet IMAP logging out\r\n{tag} OK LOGOUT completed\r\n"),
            close: true,
        }
    } else {
        Reply {
            text: format!("{tag} BAD not implemented yet\r\n"),
            close: false,
        }
    }
}

/// RFC 3501 tag: ASTRING-CHARs except `+`.
fn valid_tag(tag: &[u8]) -> bool {
    !tag.is_empty()
        && tag.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'+' | b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            answer(b"a1 NOOP\r\n").text,
            "a1 BAD not implemented yet\r\n"
        );
        let bye = answer(b"x logout\r\n");
        assert!(bye.close);
        assert_eq!(
            bye.text,
            "* BYE mailfleet IMAP logging out\r\nx OK LOGOUT completed\r\n"
        );
        assert!(answer(b"\r\n").text.starts_with("* BAD"));
        assert!(answer(b"+ LOGIN\r\n").text.starts_with("* BAD"));
    }
}
