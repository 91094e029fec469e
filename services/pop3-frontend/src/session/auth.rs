//! AUTHORIZATION: USER/PASS (RFC 1939 7), SASL PLAIN with or without an
//! initial response (RFC 5034), and the login they lead to: verify the
//! password, take the maildrop lease (`-ERR [IN-USE]` when held), snapshot.

use mailfleet_proto::v1 as pb;

use super::{
    Action, BAD_LOGIN, LOCKED_LOGIN, MAX_AUTH_FAILURES, NEED_TLS, Session, State, WRONG_STATE,
    internal, transaction,
};
use crate::maildrop::{self, Opened};
use crate::proto;

impl Session {
    pub(super) fn user(&mut self, name: String) -> Action {
        if !matches!(self.state, State::Authorization { .. }) {
            return Action::Reply(WRONG_STATE.into());
        }
        if !self.plaintext_ok() {
            return Action::Reply(NEED_TLS.into());
        }
        self.state = State::Authorization { user: Some(name) };
        Action::Reply("+OK send PASS\r\n".into())
    }

    pub(super) async fn pass(&mut self, password: String) -> Action {
        let user = match &mut self.state {
            State::Authorization { user } => user.take(),
            State::Transaction(_) => return Action::Reply(WRONG_STATE.into()),
        };
        let Some(user) = user else {
            return Action::Reply("-ERR send USER first\r\n".into());
        };
        if !self.plaintext_ok() {
            return Action::Reply(NEED_TLS.into());
        }
        self.login(&user, &password).await
    }

    pub(super) async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial: Option<String>,
    ) -> Action {
        if !matches!(self.state, State::Authorization { .. }) {
            return Action::Reply(WRONG_STATE.into());
        }
        let Some(mechanism) = mechanism else {
            // The mechanism list, as many clients probe with a bare AUTH.
            let list = if self.plaintext_ok() { "PLAIN\r\n" } else { "" };
            return Action::Reply(format!("+OK SASL mechanisms follow\r\n{list}.\r\n"));
        };
        if mechanism != "PLAIN" {
            return Action::Reply("-ERR unsupported SASL mechanism\r\n".into());
        }
        if !self.plaintext_ok() {
            return Action::Reply(NEED_TLS.into());
        }
        match initial {
            None => Action::SaslChallenge,
            // RFC 5034 4: "=" is an empty initial response.
            Some(r) if r == "=" => self.plain("").await,
            Some(r) => self.plain(&r).await,
        }
    }

    /// The client's answer to the SASL challenge.
    pub(crate) async fn sasl_response(&mut self, line: &[u8]) -> Action {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text == "*" {
            return Action::Reply("-ERR authentication cancelled\r\n".into());
        }
        self.plain(text).await
    }

    async fn plain(&mut self, encoded: &str) -> Action {
        let credentials = proto::base64_decode(encoded).and_then(|m| proto::sasl_plain(&m));
        match credentials {
            Some((user, password)) => self.login(&user, &password).await,
            None => {
                self.shared.metrics.auth_failures.inc();
                self.failed_login("-ERR [AUTH] malformed SASL PLAIN response\r\n")
            }
        }
    }

    fn failed_login(&mut self, reply: &str) -> Action {
        self.auth_failures += 1;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            Action::Close(format!("{}-ERR too many failures, closing\r\n", reply))
        } else {
            Action::Reply(reply.to_owned())
        }
    }

    /// Verifies the password, locks the maildrop and takes the snapshot:
    /// one mailstore call (more only while waiting for the lock).
    async fn login(&mut self, user: &str, password: &str) -> Action {
        let shared = self.shared.clone();
        let request = pb::OpenMaildropRequest {
            username: user.to_owned(),
            password: password.to_owned(),
            remote_ip: self.peer.ip().to_string(),
            holder: format!("{} pop3 {}", shared.hostname, self.peer),
            ttl_seconds: u32::try_from(shared.lease_ttl.as_secs())
                .unwrap_or(u32::MAX)
                .max(1),
        };
        let drop = match maildrop::open(&shared.client, request, &shared.metrics.lock_waits).await {
            Ok(Opened::Locked(drop)) => drop,
            Ok(Opened::InUse) => {
                shared.metrics.lock_conflicts.inc();
                return Action::Reply(
                    "-ERR [IN-USE] maildrop is locked by another session\r\n".into(),
                );
            }
            // mailstore's login guard refused it unchecked.
            Ok(Opened::GuardLocked) => {
                shared.metrics.auth_failures.inc();
                tracing::info!("POP3 login refused: locked out by the login guard.");
                return self.failed_login(LOCKED_LOGIN);
            }
            Ok(Opened::Failed) => {
                shared.metrics.auth_failures.inc();
                tracing::info!("POP3 login failed.");
                return self.failed_login(BAD_LOGIN);
            }
            Err(status) => return Action::Reply(internal(&status)),
        };
        shared.metrics.logins.inc();
        tracing::info!(account = %drop.account, messages = drop.messages.len(), "POP3 login.");
        let (n, octets) = transaction::stat(&drop);
        self.state = State::Transaction(Box::new(drop));
        Action::Reply(format!(
            "+OK maildrop has {n} messages ({octets} octets)\r\n"
        ))
    }
}
