//! Command lines to typed commands. The grammar work is done by `smtp-proto`;
//! this module narrows its result to what the gateway offers and maps every
//! parse failure to its reply.

use std::borrow::Cow;

use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME,
    MAIL_BODY_BINARYMIME, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8, RCPT_NOTIFY_DELAY,
    RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, Request,
};

use super::reply::{self, Reply};

/// The body type declared by `MAIL FROM:<…> BODY=…` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
    /// RFC 3030: only with BDAT.
    BinaryMime,
}

/// RFC 3461 RET: what a failure DSN should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ret {
    #[default]
    Unspecified,
    Full,
    Headers,
}

/// RFC 3461 NOTIFY bits, as carried on the delivery job.
pub mod notify {
    pub const SUCCESS: u32 = 1;
    pub const FAILURE: u32 = 2;
    pub const DELAY: u32 = 4;
    pub const NEVER: u32 = 8;
}

/// The SASL mechanisms offered (RFC 4954).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

/// `MAIL FROM` with the parameters the gateway supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// Empty for the null sender `<>`.
    pub address: String,
    pub body: BodyType,
    /// `SIZE=` as declared (RFC 1870), if any.
    pub size: Option<u64>,
    /// `SMTPUTF8` (RFC 6531): UTF-8 addresses and headers.
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Ret,
    /// `ENVID=` (RFC 3461), xtext-decoded.
    pub envid: Option<String>,
}

/// `RCPT TO` with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    /// "postmaster" (no domain) for `RCPT TO:<Postmaster>`.
    pub address: String,
    /// [`notify`] bits; 0 when NOTIFY was not given.
    pub notify: u32,
    /// `ORCPT=rfc822;…`, as "rfc822;address".
    pub orcpt: Option<String>,
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
    Rcpt(RcptTo),
    Data,
    /// RFC 3030 chunk: `size` octets follow the command line.
    Bdat {
        size: u64,
        last: bool,
    },
    StartTls,
    /// RFC 4954; `initial` is the initial response as sent (base64 or "=").
    Auth {
        mechanism: Mechanism,
        initial: Option<String>,
    },
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    /// AUTH with a mechanism this gateway does not offer.
    UnsupportedMechanism,
    /// A valid SMTP command this gateway does not offer: EXPN, ETRN, BURL, ...
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
            Command::Rcpt(_) => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } | Command::UnsupportedMechanism => "AUTH",
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
            let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
            if !address.is_empty() && !valid_mailbox(&address, smtputf8) {
                return Err(reply::bad_sender());
            }
            let supported = MAIL_BODY_7BIT
                | MAIL_BODY_8BITMIME
                | MAIL_BODY_BINARYMIME
                | MAIL_SMTPUTF8
                | MAIL_RET_FULL
                | MAIL_RET_HDRS;
            // REQUIRETLS (RFC 8689) is not offered: delivery cannot honour it yet.
            // AUTH= (RFC 4954 5) is accepted and ignored: the session's own
            // AUTH is what counts.
            if from.flags & !supported != 0
                || from.trans_id.is_some()
                || from.solicit.is_some()
                || from.mtrk.is_some()
                || from.by != 0
                || from.hold_for != 0
                || from.hold_until != 0
                || from.mt_priority != 0
            {
                return Err(reply::unsupported_parameter());
            }
            if from.flags & MAIL_RET_FULL != 0 && from.flags & MAIL_RET_HDRS != 0 {
                return Err(reply::syntax("RET=FULL or RET=HDRS, not both"));
            }
            let envid = match from.env_id {
                Some(id) if !printable(&id) => {
                    return Err(reply::syntax("ENVID must be printable ASCII"));
                }
                other => other.map(Cow::into_owned),
            };
            Command::Mail(MailFrom {
                address: address.into_owned(),
                body: if from.flags & MAIL_BODY_BINARYMIME != 0 {
                    BodyType::BinaryMime
                } else if from.flags & MAIL_BODY_8BITMIME != 0 {
                    BodyType::EightBitMime
                } else {
                    BodyType::SevenBit
                },
                size: (from.size > 0).then_some(from.size as u64),
                smtputf8,
                ret: if from.flags & MAIL_RET_FULL != 0 {
                    Ret::Full
                } else if from.flags & MAIL_RET_HDRS != 0 {
                    Ret::Headers
                } else {
                    Ret::Unspecified
                },
                envid,
            })
        }
        Request::Rcpt { to } => {
            let dsn =
                RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER;
            if to.flags & !dsn != 0 || to.rrvs != 0 {
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
            } else if valid_mailbox(&to.address, true) {
                // UTF-8 is checked against the transaction's SMTPUTF8 later.
                to.address
            } else {
                return Err(reply::bad_recipient());
            };
            let orcpt = match to.orcpt {
                Some(o) if !valid_mailbox(&o, true) => {
                    return Err(reply::syntax("ORCPT=rfc822;address"));
                }
                other => other.map(|o| format!("rfc822;{o}")),
            };
            let mut notify = 0;
            for (flag, bit) in [
                (RCPT_NOTIFY_SUCCESS, notify::SUCCESS),
                (RCPT_NOTIFY_FAILURE, notify::FAILURE),
                (RCPT_NOTIFY_DELAY, notify::DELAY),
                (RCPT_NOTIFY_NEVER, notify::NEVER),
            ] {
                if to.flags & flag != 0 {
                    notify |= bit;
                }
            }
            if notify & notify::NEVER != 0 && notify != notify::NEVER {
                return Err(reply::syntax("NOTIFY=NEVER stands alone"));
            }
            Command::Rcpt(RcptTo {
                address: address.into_owned(),
                notify,
                orcpt,
            })
        }
        Request::Data => Command::Data,
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Help { .. } => Command::Help,
        Request::Quit => Command::Quit,
        Request::StartTls => Command::StartTls,
        Request::Bdat {
            chunk_size,
            is_last,
        } => Command::Bdat {
            size: chunk_size as u64,
            last: is_last,
        },
        Request::Auth {
            mechanism,
            initial_response,
        } => {
            let mechanism = match mechanism {
                AUTH_PLAIN => Mechanism::Plain,
                AUTH_LOGIN => Mechanism::Login,
                _ => return Ok(Command::UnsupportedMechanism),
            };
            Command::Auth {
                mechanism,
                initial: (!initial_response.is_empty()).then(|| initial_response.into_owned()),
            }
        }
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

/// A mailbox `local@domain` with a non-empty local part and a plausible
/// domain or address literal. Non-ASCII is allowed only with `utf8` (RFC 6531).
/// Control characters, spaces and angle brackets never pass, so an address
/// can never break out of a header it is copied into.
pub fn valid_mailbox(address: &str, utf8: bool) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    (utf8 || address.is_ascii())
        && !address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>'))
        && !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 255
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
}

/// Printable ASCII without spaces (ENVID, RFC 3461 4.4).
fn printable(text: &str) -> bool {
    !text.is_empty() && text.len() <= 100 && text.bytes().all(|b| b.is_ascii_graphic())
}

fn is_postmaster(line: &[u8]) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.windows(12).any(|w| w == b"<postmaster>")
}
