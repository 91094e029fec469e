//! The POP3 session: an explicit state enum (AUTHORIZATION with the USER
//! given so far, TRANSACTION with the locked maildrop; UPDATE happens inside
//! QUIT) and the one gate ([`Session::handle`]) deciding which commands each
//! state allows. The handlers live by state: `auth` (USER, PASS, AUTH and
//! the login), `transaction` (STAT, LIST, RETR, TOP, DELE, RSET, UIDL),
//! `update` (QUIT). The connection module does the I/O and asks this
//! module what to answer.

mod auth;
mod transaction;
mod update;

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::Status;

use crate::Shared;
use crate::maildrop::{self, Maildrop};
use crate::proto::Command;

/// Failed logins before the connection is closed.
const MAX_AUTH_FAILURES: u32 = 3;

pub(crate) const GREETING: &str = "+OK mailfleet POP3 server ready\r\n";
pub(crate) const SHUTDOWN: &str = "-ERR [SYS/TEMP] server shutting down, nothing was deleted\r\n";
pub(crate) const IDLE: &str = "-ERR idle for too long, closing; nothing was deleted\r\n";
pub(crate) const TOO_MANY: &str = "-ERR [SYS/TEMP] too many connections, try again later\r\n";
pub(crate) const TOO_LONG: &str = "-ERR command line too long\r\n";
const WRONG_STATE: &str = "-ERR command not valid in this state\r\n";
const NO_SUCH: &str = "-ERR no such message\r\n";
const TEMP: &str = "-ERR [SYS/TEMP] mail storage temporarily unavailable, try again later\r\n";
const NEED_TLS: &str =
    "-ERR [AUTH] plaintext authentication is not allowed on this connection; use STLS first\r\n";
const BAD_LOGIN: &str = "-ERR [AUTH] invalid user name or password\r\n";
/// The login guard refused the attempt unchecked (RFC 3206: [SYS/TEMP] is a
/// passing condition not tied to the credentials given).
const LOCKED_LOGIN: &str = "-ERR [SYS/TEMP] too many failed logins; try again later\r\n";

pub(crate) enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Maildrop>),
}

/// What the connection does after a command.
pub(crate) enum Action {
    Reply(String),
    /// RETR/TOP: stream message `uid` after the reply line; `top` limits
    /// the body to that many lines.
    Send {
        uid: u32,
        size: u64,
        top: Option<u32>,
    },
    /// Answer "+OK", then the TLS handshake.
    StartTls,
    /// Send the empty SASL challenge ("+ ") and pass the next line to
    /// [`Session::sasl_response`].
    SaslChallenge,
    /// Send the reply, then close.
    Close(String),
}

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub state: State,
    auth_failures: u32,
}

fn internal(status: &Status) -> String {
    // Details go to the log, never to the client.
    tracing::warn!(%status, "mailstore call failed.");
    TEMP.to_owned()
}

impl Session {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, tls: bool) -> Self {
        Self {
            shared,
            peer,
            tls,
            state: State::Authorization { user: None },
            auth_failures: 0,
        }
    }

    /// USER/PASS and SASL PLAIN send the password in the clear unless the
    /// connection is TLS, the peer is on this host, or the operator allows it.
    fn plaintext_ok(&self) -> bool {
        self.tls || self.peer.ip().is_loopback() || self.shared.allow_plaintext_auth
    }

    fn stls_available(&self) -> bool {
        !self.tls && self.shared.tls.is_some()
    }

    /// Drops the lease and forgets the maildrop without UPDATE: what a
    /// dropped connection or a shutdown does.
    pub async fn abandon(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
        if let State::Transaction(drop) = state {
            maildrop::abandon(&self.shared.client, *drop).await;
        }
    }

    /// When the maildrop lease must next be renewed (in TRANSACTION).
    pub fn renew_at(&self) -> Option<tokio::time::Instant> {
        match &self.state {
            State::Transaction(drop) => drop.lock.renew_at(),
            State::Authorization { .. } => None,
        }
    }

    /// Renews the maildrop lease (see [`maildrop::renew`]).
    pub async fn renew_lease(&mut self) {
        if let State::Transaction(drop) = &mut self.state {
            let Maildrop { account, lock, .. } = &mut **drop;
            maildrop::renew(&self.shared.client, account, lock).await;
        }
    }

    pub async fn handle(&mut self, command: Command) -> Action {
        self.shared.metrics.command(command.name());
        match command {
            Command::Capa => Action::Reply(self.capa()),
            Command::Quit => self.quit().await,
            Command::Apop => Action::Reply(
                "-ERR APOP is not supported (it needs plaintext-equivalent stored secrets)\r\n"
                    .into(),
            ),
            Command::Noop => match self.state {
                State::Transaction(_) => Action::Reply("+OK\r\n".into()),
                State::Authorization { .. } => Action::Reply(WRONG_STATE.into()),
            },
            Command::Stls => self.stls(),
            Command::User(name) => self.user(name),
            Command::Pass(password) => self.pass(password).await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            other => match &mut self.state {
                State::Authorization { .. } => Action::Reply(WRONG_STATE.into()),
                State::Transaction(drop) => transaction::handle(drop, other),
            },
        }
    }

    fn capa(&self) -> String {
        let mut out = String::from(
            "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n",
        );
        if matches!(self.state, State::Authorization { .. }) {
            if self.plaintext_ok() {
                out.push_str("USER\r\nSASL PLAIN\r\n");
            }
            if self.stls_available() {
                out.push_str("STLS\r\n");
            }
        }
        out.push_str("IMPLEMENTATION mailfleet\r\n.\r\n");
        out
    }

    fn stls(&mut self) -> Action {
        match self.state {
            State::Authorization { .. } if self.stls_available() => {
                // RFC 2595 4: the session starts over under TLS.
                self.state = State::Authorization { user: None };
                Action::StartTls
            }
            State::Authorization { .. } if self.tls => {
                Action::Reply("-ERR already using TLS\r\n".into())
            }
            State::Authorization { .. } => {
                Action::Reply("-ERR STLS is not available on this server\r\n".into())
            }
            State::Transaction(_) => Action::Reply(WRONG_STATE.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shared(allow_plaintext_auth: bool) -> Arc<Shared> {
        Arc::new(Shared {
            // Never called by these tests: the channel connects lazily.
            client: mailfleet_runtime::grpc::mailstore_client("http://127.0.0.1:9", "t").unwrap(),
            blobs: mailfleet_blob::BlobStore::new(
                std::sync::Arc::new(object_store::memory::InMemory::new()),
                1024,
            ),
            tls: None,
            max_line: 1024,
            idle_timeout: std::time::Duration::from_secs(600),
            lease_ttl: std::time::Duration::from_secs(60),
            allow_plaintext_auth,
            hostname: "test".into(),
            metrics: Default::default(),
        })
    }

    async fn reply(s: &mut Session, c: Command) -> String {
        match s.handle(c).await {
            Action::Reply(r) | Action::Close(r) => r,
            _ => String::from("(other action)"),
        }
    }

    #[tokio::test]
    async fn plaintext_login_needs_tls_loopback_or_permission() {
        let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut s = Session::new(shared(false), remote, false);
        let capa = reply(&mut s, Command::Capa).await;
        assert!(
            !capa.contains("USER\r\n") && !capa.contains("SASL"),
            "{capa}"
        );
        assert!(
            reply(&mut s, Command::User("a@b.c".into()))
                .await
                .starts_with("-ERR [AUTH]")
        );
        let auth = Command::Auth {
            mechanism: Some("PLAIN".into()),
            initial: Some("AGEAYg==".into()),
        };
        assert!(reply(&mut s, auth).await.starts_with("-ERR [AUTH]"));
        assert!(
            reply(&mut s, Command::Pass("x".into()))
                .await
                .starts_with("-ERR")
        );

        for mut ok in [
            Session::new(shared(true), remote, false),
            Session::new(shared(false), remote, true),
            Session::new(shared(false), "127.0.0.1:4000".parse().unwrap(), false),
        ] {
            let capa = reply(&mut ok, Command::Capa).await;
            assert!(
                capa.contains("USER\r\n") && capa.contains("SASL PLAIN"),
                "{capa}"
            );
            assert_eq!(
                reply(&mut ok, Command::User("a@b.c".into())).await,
                "+OK send PASS\r\n"
            );
        }
    }

    #[tokio::test]
    async fn transaction_commands_wait_for_login() {
        let mut s = Session::new(shared(false), "127.0.0.1:4000".parse().unwrap(), false);
        for c in [
            Command::Stat,
            Command::Retr(1),
            Command::Dele(1),
            Command::Rset,
            Command::Uidl(None),
            Command::Noop,
        ] {
            assert_eq!(reply(&mut s, c).await, WRONG_STATE);
        }
        assert!(reply(&mut s, Command::Apop).await.starts_with("-ERR APOP"));
        assert!(
            reply(&mut s, Command::Pass("x".into()))
                .await
                .starts_with("-ERR send USER")
        );
        assert!(reply(&mut s, Command::Stls).await.starts_with("-ERR"));
        assert!(matches!(s.handle(Command::Quit).await, Action::Close(_)));
    }
}
