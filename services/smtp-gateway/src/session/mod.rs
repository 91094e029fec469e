//! The SMTP session state machine, free of socket I/O: the connection module
//! feeds it parsed commands (and SASL response lines) and writes what it
//! answers.
//!
//! The state is an enum whose variants carry their own data, and
//! [`Session::apply`] is the one gate that decides which command each state
//! and role accepts. One module per command group applies the allowed ones.

mod auth;
mod bdat;
mod data;
mod hello;
mod intake;
mod mail;
mod misc;
mod rcpt;
mod transaction;

use std::net::SocketAddr;

use mail_auth::SpfOutput;

pub use bdat::ChunkStep;
pub use data::{DataOutcome, complete as data_complete};
pub use intake::Intake;
pub use transaction::Transaction;

use crate::backend::Backend;
use crate::codec::command::{BodyType, Command, Ret};
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;
use crate::role::Role;

/// Who the client said it is (HELO/EHLO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub helo: String,
    /// EHLO (true) or HELO (false).
    pub esmtp: bool,
}

/// The TLS parameters of an encrypted session, for the Received header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// One accepted recipient with its DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub notify: u32,
    pub orcpt: Option<String>,
}

/// An open mail transaction: MAIL given, recipients accumulating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Empty for the null sender.
    pub return_path: String,
    pub recipients: Vec<Recipient>,
    /// The SIZE given on MAIL (RFC 1870), for the quota check at RCPT.
    pub size: Option<u64>,
    pub body: BodyType,
    /// SMTPUTF8 given on MAIL (RFC 6531).
    pub smtputf8: bool,
    pub ret: Ret,
    pub envid: Option<String>,
    /// SPF of the MAIL FROM identity (MX role with verification on).
    pub spf: Option<SpfOutput>,
}

impl Envelope {
    pub fn has_recipient(&self, address: &str) -> bool {
        self.recipients.iter().any(|r| r.address == address)
    }
}

/// Where the session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Connected, no HELO/EHLO yet (again after STARTTLS).
    Fresh,
    /// Greeted, no transaction.
    Ready { client: Client },
    /// Inside a transaction.
    Mail { client: Client, envelope: Envelope },
    /// BDAT chunks of a transaction are arriving (RFC 3030); the body itself
    /// is held by the connection.
    Chunking { client: Client },
}

/// What the connection must do after a command.
#[derive(Debug)]
pub enum Outcome {
    Reply(Reply),
    /// Answer, then close the connection.
    Close(Reply),
    /// Answer 354 and receive the message body for this transaction.
    Data(Box<Transaction>),
    /// Answer 220, drop any input already buffered (RFC 3207 5), run the TLS
    /// handshake, then [`Session::tls_started`].
    StartTls,
    /// Read the `size` octets of a BDAT chunk and act on them as `step` says.
    Chunk {
        size: u64,
        last: bool,
        step: ChunkStep,
    },
}

/// One SMTP session.
#[derive(Debug)]
pub struct Session {
    pub peer: SocketAddr,
    pub role: Role,
    pub state: State,
    /// Set once the connection is encrypted (implicit TLS or STARTTLS).
    pub tls: Option<TlsInfo>,
    /// The canonical account address after a successful AUTH.
    pub account: Option<String>,
    /// A SASL exchange waiting for the client's next line.
    auth: Option<auth::Pending>,
}

impl Session {
    /// A session of the MX role on a plain connection.
    pub fn new(peer: SocketAddr) -> Self {
        Self::with_role(peer, Role::Mx, None)
    }

    pub fn with_role(peer: SocketAddr, role: Role, tls: Option<TlsInfo>) -> Self {
        Self {
            peer,
            role,
            state: State::Fresh,
            tls,
            account: None,
            auth: None,
        }
    }

    /// True while the next line is a SASL response, not a command.
    pub fn awaiting_auth_response(&self) -> bool {
        self.auth.is_some()
    }

    /// Abandons a SASL exchange (its response line was unreadable).
    pub fn cancel_auth(&mut self) {
        self.auth = None;
    }

    /// Applies one SASL response line (RFC 4954 4).
    pub async fn auth_response<B: Backend>(&mut self, line: &[u8], gw: &Gateway<B>) -> Reply {
        auth::response(self, line, gw).await
    }

    /// Applies one command. The only place that decides what each state
    /// allows; out-of-order commands get 503 5.5.1 and change nothing.
    pub async fn apply<B: Backend>(&mut self, command: Command, gw: &Gateway<B>) -> Outcome {
        let submission = self.role.is_submission();
        let reply = match (command, &mut self.state) {
            (Command::Ehlo { host }, _) => hello::ehlo(self, host, gw),
            (Command::Helo { host }, _) => hello::helo(self, host, gw),
            (Command::StartTls, State::Fresh | State::Ready { .. }) => {
                if self.tls.is_some() || self.role == Role::Submissions {
                    reply::bad_sequence("TLS already active")
                } else if gw.tls.is_none() {
                    reply::tls_unavailable()
                } else {
                    return Outcome::StartTls;
                }
            }
            (Command::StartTls, _) => reply::bad_sequence("STARTTLS not allowed in a transaction"),
            (Command::Auth { .. } | Command::UnsupportedMechanism, _) if !submission => {
                reply::not_implemented()
            }
            (Command::Auth { .. } | Command::UnsupportedMechanism, _) if self.account.is_some() => {
                reply::bad_sequence("Already authenticated")
            }
            (Command::UnsupportedMechanism, State::Ready { .. }) => reply::unsupported_mechanism(),
            (Command::Auth { mechanism, initial }, State::Ready { .. }) => {
                auth::start(self, mechanism, initial, gw).await
            }
            (Command::Auth { .. } | Command::UnsupportedMechanism, State::Fresh) => {
                reply::bad_sequence("Send EHLO first")
            }
            (Command::Auth { .. } | Command::UnsupportedMechanism, _) => {
                reply::bad_sequence("AUTH not allowed in a transaction")
            }
            (Command::Mail(_), State::Ready { .. }) if submission && self.account.is_none() => {
                if self.tls.is_none() && !gw.settings.allow_plaintext_auth {
                    reply::starttls_first()
                } else {
                    reply::auth_required()
                }
            }
            (Command::Mail(from), State::Ready { .. }) => mail::mail(self, from, gw).await,
            (Command::Mail(_), State::Fresh) => reply::bad_sequence("Send EHLO or HELO first"),
            (Command::Mail(_), _) => reply::bad_sequence("Nested MAIL command"),
            (Command::Rcpt(to), State::Mail { envelope, .. }) => {
                rcpt::rcpt(envelope, to, submission, gw).await
            }
            (Command::Rcpt(_), _) => reply::bad_sequence("Need MAIL before RCPT"),
            (Command::Data, State::Mail { envelope, .. })
                if envelope.body == BodyType::BinaryMime =>
            {
                reply::binary_needs_bdat()
            }
            (Command::Data, State::Mail { envelope, .. }) if !envelope.recipients.is_empty() => {
                return data::begin(self);
            }
            (Command::Data, State::Mail { .. }) => reply::bad_sequence("Need RCPT before DATA"),
            (Command::Data, State::Chunking { .. }) => {
                reply::bad_sequence("DATA not allowed after BDAT")
            }
            (Command::Data, _) => reply::bad_sequence("Need MAIL and RCPT before DATA"),
            (Command::Bdat { size, last }, _) => return bdat::bdat(self, size, last),
            (Command::Rset, _) => misc::rset(self),
            (Command::Noop, _) => reply::ok(),
            (Command::Vrfy, _) => reply::vrfy(),
            (Command::Help, _) => reply::help(),
            (Command::Quit, _) => return Outcome::Close(reply::bye(&gw.settings.hostname)),
            (Command::NotImplemented { .. }, _) => reply::not_implemented(),
        };
        Outcome::Reply(reply)
    }

    /// The handshake after STARTTLS succeeded: the session starts over
    /// (RFC 3207 4.2: forget HELO and anything learnt before TLS).
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.state = State::Fresh;
        self.account = None;
        self.auth = None;
        self.tls = Some(info);
    }

    /// Ends any transaction, keeping the greeting.
    pub fn reset(&mut self) {
        match &self.state {
            State::Mail { client, .. } | State::Chunking { client } => {
                self.state = State::Ready {
                    client: client.clone(),
                };
            }
            State::Fresh | State::Ready { .. } => {}
        }
    }

    /// True while BDAT chunks of a transaction are being received.
    pub fn is_chunking(&self) -> bool {
        matches!(self.state, State::Chunking { .. })
    }

    /// The EHLO offer of this session now.
    fn offer<B>(&self, gw: &Gateway<B>) -> reply::Offer {
        reply::Offer {
            max_size: gw.settings.max_message_size,
            starttls: gw.tls.is_some() && self.tls.is_none() && self.role != Role::Submissions,
            auth: self.role.is_submission()
                && self.account.is_none()
                && (self.tls.is_some() || gw.settings.allow_plaintext_auth),
        }
    }
}
