//! Command lines to typed commands. The grammar work is done by `smtp-proto`;
//! this module narrows its result to what the gateway offers and maps every
//! parse failure to its reply.

use std::borrow::Cow;

use smtp_proto::{Error as ParseError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, Request};

use super::reply::{self, Reply};

/// The body type declared by `MAIL FROM:<…> BODY=…` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// `MAIL FROM` with the parameters the gateway supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// Empty for the null sender `<>`.
    pub address: String,
    pub body: BodyType,
    /// `SIZE=` as declared (RFC 1870), if any.
    pub size: Option<u64>,
}

/// A command the session can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo {
        host: String,
    },
    Helo {
        host: String,
    },
    Mail(MailFrom),
    /// `address` is "postmaster" (no domain) for `RCPT TO:<Postmaster>`.
    Rcpt {
        address: String,
    },
    Data,
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    /// A valid SMTP command this gateway does not offer (yet): AUTH,
    /// STARTTLS, BDAT, EXPN, ETRN, ...
    NotImplemented {
        name: &'static str,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ehlo { .. } => "EHLO",
            Command::Helo { .. } => "HELO",
            Command::Mail(_) => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Vrfy => "VRFY",
            Command::Help => "HELP",
            Command::Quit => "QUIT",
            Command::NotImplemented { name } => name,
        }
    }
}

/// Parses one command line (without its line ending).
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    // smtp-proto reads up to the LF, so give it the line ending back.
    let mut framed = Vec::with_capacity(line.len() + 2);
    framed.extend_from_slice(line);
    framed.extend_from_slice(b"\r\n");
    let request = Request::parse(&mut framed.iter()).map_err(|e| parse_error(&e))?;
    Ok(match request {
        Request::Ehlo { host } => Command::Ehlo {
            host: host.into_owned(),
        },
        Request::Helo { host } => Command::Helo {
            host: host.into_owned(),
        },
        Request::Mail { from } => {
            let address = from.address;
            if !address.is_empty() && !valid_mailbox(&address) {
                return Err(reply::bad_sender());
            }
            let supported = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME;
            if from.flags & !supported != 0
                || from.trans_id.is_some()
                || from.env_id.is_some()
                || from.solicit.is_some()
                || from.mtrk.is_some()
                || from.auth.is_some()
                || from.by != 0
                || from.hold_for != 0
                || from.hold_until != 0
                || from.mt_priority != 0
            {
                return Err(reply::unsupported_parameter());
            }
            Command::Mail(MailFrom {
                address: address.into_owned(),
                body: if from.flags & MAIL_BODY_8BITMIME != 0 {
                    BodyType::EightBitMime
                } else {
                    BodyType::SevenBit
                },
                size: (from.size > 0).then_some(from.size as u64),
            })
        }
        Request::Rcpt { to } => {
            if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
                return Err(reply::unsupported_parameter());
            }
            let address = if to.address.is_empty() {
                // smtp-proto turns both <> and <Postmaster> into "": only the
                // latter is a valid forward-path (RFC 5321 4.1.1.3).
                if is_postmaster(line) {
                    Cow::Borrowed("postmaster")
                } else {
                    return Err(reply::bad_recipient());
                }
            } else if valid_mailbox(&to.address) {
                to.address
            } else {
                return Err(reply::bad_recipient());
            };
            Command::Rcpt {
                address: address.into_owned(),
            }
        }
        Request::Data => Command::Data,
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Help { .. } => Command::Help,
        Request::Quit => Command::Quit,
        other => Command::NotImplemented { name: other.name() },
    })
}

fn parse_error(error: &ParseError) -> Reply {
    match error {
        ParseError::UnknownCommand => reply::unrecognized(),
        ParseError::InvalidSenderAddress => reply::bad_sender(),
        ParseError::InvalidRecipientAddress => reply::bad_recipient(),
        ParseError::SyntaxError { syntax } => reply::syntax(syntax),
        ParseError::UnsupportedParameter { .. } => reply::unsupported_parameter(),
        ParseError::InvalidParameter { .. }
        | ParseError::NeedsMoreData { .. }
        | ParseError::ResponseTooLong
        | ParseError::InvalidResponse { .. } => reply::syntax("check the command's parameters"),
    }
}

/// A mailbox `local@domain` in ASCII (SMTPUTF8 is not offered), with a
/// non-empty local part and a plausible domain or address literal.
pub fn valid_mailbox(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    address.is_ascii()
        && !local.is_empty()
        && !domain.is_empty()
        && domain.len() <= 255
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
}

fn is_postmaster(line: &[u8]) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.windows(12).any(|w| w == b"<postmaster>")
}
