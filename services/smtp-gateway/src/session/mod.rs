//! The SMTP session state machine, free of socket I/O: the connection module
//! feeds it parsed commands and writes what it answers.
//!
//! The state is an enum whose variants carry their own data, and
//! [`Session::apply`] is the one gate that decides which command each state
//! accepts. One module per command group applies the allowed ones.

mod data;
mod hello;
mod mail;
mod misc;
mod rcpt;

use std::net::SocketAddr;

pub use data::{DataOutcome, Transaction, complete as data_complete};

use crate::backend::Backend;
use crate::codec::command::{BodyType, Command};
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

/// Who the client said it is (HELO/EHLO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub helo: String,
    /// EHLO (true) or HELO (false).
    pub esmtp: bool,
}

/// An open mail transaction: MAIL given, recipients accumulating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Empty for the null sender.
    pub return_path: String,
    pub recipients: Vec<String>,
    pub body: BodyType,
}

/// Where the session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Connected, no HELO/EHLO yet.
    Fresh,
    /// Greeted, no transaction.
    Ready { client: Client },
    /// Inside a transaction.
    Mail { client: Client, envelope: Envelope },
}

/// What the connection must do after a command.
#[derive(Debug)]
pub enum Outcome {
    Reply(Reply),
    /// Answer, then close the connection.
    Close(Reply),
    /// Answer 354 and receive the message body for this transaction.
    Data(Transaction),
}

/// One SMTP session.
#[derive(Debug)]
pub struct Session {
    pub peer: SocketAddr,
    pub state: State,
}

impl Session {
    pub fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            state: State::Fresh,
        }
    }

    /// Applies one command. The only place that decides what each state
    /// allows; out-of-order commands get 503 5.5.1 and change nothing.
    pub async fn apply<B: Backend>(&mut self, command: Command, gw: &Gateway<B>) -> Outcome {
        let reply = match (command, &mut self.state) {
            (Command::Ehlo { host }, _) => hello::ehlo(self, host, gw),
            (Command::Helo { host }, _) => hello::helo(self, host, gw),
            (Command::Mail(from), State::Ready { .. }) => mail::mail(self, from, gw),
            (Command::Mail(_), State::Fresh) => reply::bad_sequence("Send EHLO or HELO first"),
            (Command::Mail(_), State::Mail { .. }) => reply::bad_sequence("Nested MAIL command"),
            (Command::Rcpt { address }, State::Mail { envelope, .. }) => {
                rcpt::rcpt(envelope, address, gw).await
            }
            (Command::Rcpt { .. }, _) => reply::bad_sequence("Need MAIL before RCPT"),
            (Command::Data, State::Mail { envelope, .. }) if !envelope.recipients.is_empty() => {
                return data::begin(self);
            }
            (Command::Data, State::Mail { .. }) => reply::bad_sequence("Need RCPT before DATA"),
            (Command::Data, _) => reply::bad_sequence("Need MAIL and RCPT before DATA"),
            (Command::Rset, _) => misc::rset(self),
            (Command::Noop, _) => reply::ok(),
            (Command::Vrfy, _) => reply::vrfy(),
            (Command::Help, _) => reply::help(),
            (Command::Quit, _) => return Outcome::Close(reply::bye(&gw.settings.hostname)),
            (Command::NotImplemented { .. }, _) => reply::not_implemented(),
        };
        Outcome::Reply(reply)
    }

    /// Ends any transaction, keeping the greeting.
    pub fn reset(&mut self) {
        if let State::Mail { client, .. } = &self.state {
            self.state = State::Ready {
                client: client.clone(),
            };
        }
    }
}
