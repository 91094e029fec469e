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

/// What the EHLO reply offers on this connection.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub max_size: u64,
    /// STARTTLS: TLS is configured and not yet in use.
    pub starttls: bool,
    /// AUTH PLAIN LOGIN: a submission listener, under TLS or with plaintext allowed.
    pub auth: bool,
}

/// The EHLO reply. REQUIRETLS (RFC 8689) is deliberately absent: delivery
/// cannot honour it yet.
pub fn ehlo(hostname: &str, client: &str, offer: Offer) -> Reply {
    let mut lines: Vec<Cow<'static, str>> = vec![
        format!("{hostname} greets {client}").into(),
        "PIPELINING".into(),
        format!("SIZE {}", offer.max_size).into(),
        "8BITMIME".into(),
        "SMTPUTF8".into(),
        "CHUNKING".into(),
        "BINARYMIME".into(),
        "DSN".into(),
        "ENHANCEDSTATUSCODES".into(),
    ];
    if offer.starttls {
        lines.push("STARTTLS".into());
    }
    if offer.auth {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    lines.push("HELP".into());
    Reply::plain(250, lines)
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
pub fn chunk_ok(size: u64) -> Reply {
    Reply::new(250, "2.0.0", format!("{size} octets received"))
}
pub fn ready_for_tls() -> Reply {
    Reply::new(220, "2.0.0", "Ready to start TLS")
}
pub fn auth_ok() -> Reply {
    Reply::new(235, "2.7.0", "Authentication successful")
}
/// A SASL challenge (`334 <base64>`); no enhanced code (RFC 4954 4).
pub fn challenge(base64: &'static str) -> Reply {
    Reply::plain(334, vec![base64.into()])
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
        "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT",
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
pub fn tls_unavailable() -> Reply {
    Reply::new(454, "4.7.0", "TLS not available")
}
pub fn auth_unavailable() -> Reply {
    Reply::new(
        454,
        "4.7.0",
        "Temporary authentication failure; try again later",
    )
}
pub fn auth_locked() -> Reply {
    Reply::new(
        454,
        "4.7.0",
        "Too many authentication failures; try again later",
    )
}
pub fn sender_check_unavailable() -> Reply {
    Reply::new(
        451,
        "4.4.3",
        "Sender check temporarily unavailable; try again later",
    )
}
pub fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3", "Too many recipients")
}

pub fn mailbox_full() -> Reply {
    Reply::new(452, "4.2.2", "Mailbox full, try again later")
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
pub fn auth_cancelled() -> Reply {
    Reply::new(501, "5.0.0", "Authentication cancelled")
}
pub fn auth_malformed() -> Reply {
    Reply::new(501, "5.5.2", "Cannot decode the authentication response")
}
pub fn unsupported_mechanism() -> Reply {
    Reply::new(504, "5.5.4", "Unrecognized authentication type")
}
pub fn auth_required() -> Reply {
    Reply::new(530, "5.7.0", "Authentication required")
}
pub fn starttls_first() -> Reply {
    Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
}
pub fn bad_credentials() -> Reply {
    Reply::new(535, "5.7.8", "Authentication credentials invalid")
}
pub fn encryption_required() -> Reply {
    Reply::new(
        538,
        "5.7.11",
        "Encryption required for requested authentication mechanism",
    )
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
pub fn text_line_too_long() -> Reply {
    Reply::new(
        550,
        "5.6.0",
        "Message has a text line over the length limit",
    )
}
pub fn repeated_header(field: &'static str) -> Reply {
    Reply::new(
        550,
        "5.6.0",
        format!("Message has more than one {field}: header field (RFC 5322 3.6 allows one)"),
    )
}
pub fn message_too_big() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    )
}
pub fn sender_not_owned() -> Reply {
    Reply::new(
        553,
        "5.7.1",
        "Sender address not owned by the authenticated user",
    )
}
pub fn from_not_owned() -> Reply {
    Reply::new(
        553,
        "5.7.1",
        "From: header address not owned by the authenticated user",
    )
}
pub fn utf8_needs_smtputf8() -> Reply {
    Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
}
pub fn binary_needs_bdat() -> Reply {
    Reply::new(503, "5.5.1", "BODY=BINARYMIME requires BDAT, not DATA")
}
pub fn dmarc_reject(domain: &str) -> Reply {
    Reply::new(
        550,
        "5.7.1",
        format!("Rejected by the DMARC policy of {domain}"),
    )
}
/// rspamd's `reject`, with its message when it gave one.
pub fn spam_reject(message: Option<&str>) -> Reply {
    match message {
        Some(text) => Reply::new(550, "5.7.1", format!("Rejected as spam: {text}")),
        None => Reply::new(550, "5.7.1", "Rejected as spam"),
    }
}
/// rspamd's `soft reject` and `greylist`, and an unanswered check when
/// failing closed.
pub fn spam_try_later(message: Option<&str>) -> Reply {
    match message {
        Some(text) => Reply::new(451, "4.7.1", format!("Try again later: {text}")),
        None => Reply::new(451, "4.7.1", "Try again later"),
    }
}
pub fn relay_denied() -> Reply {
    Reply::new(554, "5.7.1", "Relay access denied")
}
pub fn unsupported_parameter() -> Reply {
    Reply::new(555, "5.5.4", "Unsupported parameter")
}
