//! Every reply the gateway sends, in one place, with its RFC 3463 enhanced
//! status code. (RFC 2034: the greeting and the HELO/EHLO replies carry none.)

use std::borrow::Cow;

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as "5.1.1", put in front of every line.
    pub status: Option<&'static str>,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    fn plain(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        Self {
            code,
            status: None,
            lines,
        }
    }

    /// 4xx and 5xx.
    pub fn is_negative(&self) -> bool {
        self.code >= 400
    }

    /// Appends the wire form (`250-…` continuation lines, `250 …` last).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
        }
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let text = match self.status {
                Some(status) => format!("{}{sep}{status} {line}\r\n", self.code),
                None => format!("{}{sep}{line}\r\n", self.code),
            };
            out.extend_from_slice(text.as_bytes());
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

pub fn greeting(hostname: &str) -> Reply {
    Reply::plain(220, vec![format!("{hostname} ESMTP mailfleet").into()])
}

/// The EHLO reply; the extension list grows with the gateway (STARTTLS and
/// AUTH are added here when the submission role lands).
pub fn ehlo(hostname: &str, client: &str, max_size: u64) -> Reply {
    Reply::plain(
        250,
        vec![
            format!("{hostname} greets {client}").into(),
            "PIPELINING".into(),
            format!("SIZE {max_size}").into(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "HELP".into(),
        ],
    )
}

pub fn helo(hostname: &str, client: &str) -> Reply {
    Reply::plain(250, vec![format!("{hostname} greets {client}").into()])
}

pub fn ok() -> Reply {
    Reply::new(250, "2.0.0", "Ok")
}
pub fn sender_ok() -> Reply {
    Reply::new(250, "2.1.0", "Sender ok")
}
pub fn recipient_ok() -> Reply {
    Reply::new(250, "2.1.5", "Recipient ok")
}
pub fn queued(job_id: &str) -> Reply {
    Reply::new(250, "2.0.0", format!("Ok: queued as {job_id}"))
}
pub fn vrfy() -> Reply {
    Reply::new(
        252,
        "2.1.5",
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}
pub fn help() -> Reply {
    Reply::new(
        214,
        "2.0.0",
        "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
    )
}
pub fn bye(hostname: &str) -> Reply {
    Reply::new(221, "2.0.0", format!("{hostname} closing connection"))
}
pub fn start_data() -> Reply {
    Reply::plain(354, vec!["End data with <CR><LF>.<CR><LF>".into()])
}

pub fn timeout(hostname: &str) -> Reply {
    Reply::new(
        421,
        "4.4.2",
        format!("{hostname} Idle timeout, closing connection"),
    )
}
pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(421, "4.3.2", format!("{hostname} Service shutting down"))
}
pub fn too_many_connections() -> Reply {
    Reply::new(421, "4.7.0", "Too many connections, try again later")
}
pub fn too_many_commands(hostname: &str) -> Reply {
    Reply::new(
        421,
        "4.7.0",
        format!("{hostname} Too many commands, closing connection"),
    )
}
pub fn temporary_failure() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "Temporary failure, message not accepted; try again later",
    )
}
pub fn recipient_check_unavailable() -> Reply {
    Reply::new(
        451,
        "4.4.3",
        "Recipient check temporarily unavailable; try again later",
    )
}
pub fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3", "Too many recipients")
}

pub fn unrecognized() -> Reply {
    Reply::new(500, "5.5.1", "Command unrecognized")
}
pub fn line_too_long() -> Reply {
    Reply::new(500, "5.5.2", "Line too long")
}
pub fn syntax(usage: &'static str) -> Reply {
    Reply::new(501, "5.5.4", format!("Syntax: {usage}"))
}
pub fn bad_sender() -> Reply {
    Reply::new(501, "5.1.7", "Bad sender address syntax")
}
pub fn bad_recipient() -> Reply {
    Reply::new(501, "5.1.3", "Bad recipient address syntax")
}
pub fn not_implemented() -> Reply {
    Reply::new(502, "5.5.1", "Command not implemented")
}
pub fn bad_sequence(what: &'static str) -> Reply {
    Reply::new(503, "5.5.1", what)
}
pub fn unknown_user() -> Reply {
    Reply::new(550, "5.1.1", "No such user here")
}
pub fn bare_line_ending() -> Reply {
    Reply::new(550, "5.6.11", "bare LF/CR not allowed")
}
pub fn message_too_big() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    )
}
pub fn relay_denied() -> Reply {
    Reply::new(554, "5.7.1", "Relay access denied")
}
pub fn unsupported_parameter() -> Reply {
    Reply::new(555, "5.5.4", "Unsupported parameter")
}
