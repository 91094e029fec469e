//! The ManageSieve session: an explicit state enum (not authenticated, with
//! its failure count; authenticated, with the account) and the one gate
//! ([`Session::handle`]) deciding which commands each state allows. Script
//! commands call mailstore's SieveScripts service for the logged-in account;
//! mailstore compiles, stores and enforces the quota. The connection module
//! does the I/O and asks this module what to answer.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use mailfleet_proto::v1 as pb;
use tonic::{Code as GrpcCode, Status};

use super::proto::Command;
use super::response::{self, Code};
use super::shared::Shared;

/// Failed logins before the connection is closed.
const MAX_AUTH_FAILURES: u32 = 3;

pub(crate) enum State {
    NotAuthenticated { failures: u32 },
    Authenticated { account: String },
}

/// What the connection does after a command.
pub(crate) enum Action {
    Reply(Vec<u8>),
    /// Send the reply, then close.
    Close(Vec<u8>),
    /// Answer OK, do the TLS handshake, then send the capabilities again
    /// (RFC 5804 2.2).
    StartTls,
    /// Send the empty challenge (`""`) and pass the client's next line to
    /// [`Session::sasl_response`].
    SaslChallenge,
}

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub state: State,
}

impl Session {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, tls: bool) -> Self {
        Self {
            shared,
            peer,
            tls,
            state: State::NotAuthenticated { failures: 0 },
        }
    }

    pub fn authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated { .. })
    }

    /// Passwords travel in the clear unless the connection is TLS: allowed
    /// only from this host or when the operator says so (as IMAP and POP3).
    fn plaintext_ok(&self) -> bool {
        self.tls || self.peer.ip().is_loopback() || self.shared.allow_plaintext
    }

    fn starttls_available(&self) -> bool {
        !self.tls && self.shared.tls.is_some() && !self.authenticated()
    }

    /// The capability lines (RFC 5804 1.7), without the final OK.
    pub fn capabilities(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line = |key: &str, value: Option<&str>| {
            response::string(&mut out, key.as_bytes());
            if let Some(v) = value {
                out.push(b' ');
                response::string(&mut out, v.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        line("IMPLEMENTATION", Some("mailfleet"));
        match &self.state {
            State::NotAuthenticated { .. } => {
                line("SASL", Some(if self.plaintext_ok() { "PLAIN" } else { "" }));
            }
            State::Authenticated { account } => line("OWNER", Some(account)),
        }
        line(
            "SIEVE",
            Some(&mailfleet_sieve::supported_extensions().join(" ")),
        );
        if self.starttls_available() {
            line("STARTTLS", None);
        }
        line(
            "MAXREDIRECTS",
            Some(&mailfleet_sieve::Limits::default().max_redirects.to_string()),
        );
        line("VERSION", Some("1.0"));
        out
    }

    pub async fn handle(&mut self, command: Command) -> Action {
        self.shared.command(command.name());
        let account = match (&self.state, &command) {
            (_, Command::Capability) => {
                let mut out = self.capabilities();
                out.extend_from_slice(&response::ok(""));
                return Action::Reply(out);
            }
            (_, Command::Logout) => return Action::Close(response::ok("Logout completed")),
            (_, Command::Noop { tag }) => {
                return Action::Reply(match tag {
                    Some(t) => response::ok_tagged(t),
                    None => response::ok("Done"),
                });
            }
            (_, Command::StartTls) => {
                return if self.starttls_available() {
                    Action::StartTls
                } else {
                    Action::Reply(response::no(None, "STARTTLS is not available now"))
                };
            }
            (State::NotAuthenticated { .. }, Command::Authenticate { .. }) => {
                let Command::Authenticate { mechanism, initial } = command else {
                    return Action::Reply(response::no(None, "internal error"));
                };
                return self.authenticate(&mechanism, initial).await;
            }
            (State::Authenticated { .. }, Command::Authenticate { .. }) => {
                return Action::Reply(response::no(None, "Already authenticated"));
            }
            (State::Authenticated { .. }, Command::Unauthenticate) => {
                self.state = State::NotAuthenticated { failures: 0 };
                return Action::Reply(response::ok(""));
            }
            (State::NotAuthenticated { .. }, _) => {
                return Action::Reply(response::no(None, "Authenticate first"));
            }
            (State::Authenticated { account }, _) => account.clone(),
        };
        let mut sieve = self.shared.sieve.clone();
        let reply = match command {
            Command::ListScripts => sieve
                .list_scripts(pb::ListScriptsRequest { account })
                .await
                .map(|r| {
                    let mut out = Vec::new();
                    for s in r.into_inner().scripts {
                        response::string(&mut out, s.name.as_bytes());
                        if s.active {
                            out.extend_from_slice(b" ACTIVE");
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(&response::ok(""));
                    out
                }),
            Command::GetScript { name } => sieve
                .get_script(pb::GetScriptRequest { account, name })
                .await
                .map(|r| {
                    let mut out = Vec::new();
                    let content = r.into_inner().content;
                    out.extend_from_slice(format!("{{{}}}\r\n", content.len()).as_bytes());
                    out.extend_from_slice(content.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&response::ok(""));
                    out
                }),
            Command::PutScript { name, script } => match String::from_utf8(script) {
                Ok(content) => sieve
                    .put_script(pb::PutScriptRequest {
                        account,
                        name,
                        content,
                    })
                    .await
                    .map(|_| response::ok("")),
                Err(_) => return Action::Reply(response::no(None, "The script is not UTF-8")),
            },
            Command::CheckScript { script } => match String::from_utf8(script) {
                Ok(content) => sieve
                    .check_script(pb::CheckScriptRequest { account, content })
                    .await
                    .map(|_| response::ok("")),
                Err(_) => return Action::Reply(response::no(None, "The script is not UTF-8")),
            },
            Command::SetActive { name } => sieve
                .set_active(pb::SetActiveRequest { account, name })
                .await
                .map(|_| response::ok("")),
            Command::DeleteScript { name } => sieve
                .delete_script(pb::DeleteScriptRequest { account, name })
                .await
                .map(|_| response::ok("")),
            Command::RenameScript { from, to } => sieve
                .rename_script(pb::RenameScriptRequest { account, from, to })
                .await
                .map(|_| response::ok("")),
            Command::HaveSpace { name, size } => sieve
                .have_space(pb::HaveSpaceRequest {
                    account,
                    name,
                    size,
                })
                .await
                .map(|_| response::ok("")),
            Command::Unauthenticate => Ok(response::no(None, "Not authenticated")),
            // Answered above, whatever the state.
            Command::Capability
            | Command::Logout
            | Command::Noop { .. }
            | Command::StartTls
            | Command::Authenticate { .. } => Ok(response::no(None, "internal error")),
        };
        Action::Reply(reply.unwrap_or_else(|s| no_from(&s)))
    }

    async fn authenticate(&mut self, mechanism: &str, initial: Option<Vec<u8>>) -> Action {
        if mechanism != "PLAIN" {
            return Action::Reply(response::no(None, "Only SASL PLAIN is supported"));
        }
        if !self.plaintext_ok() {
            return Action::Reply(response::no(
                Some(Code::EncryptNeeded),
                "Use STARTTLS before authenticating",
            ));
        }
        match initial {
            None => Action::SaslChallenge,
            Some(b64) => self.plain(&b64).await,
        }
    }

    /// The client's answer to the empty challenge; `None` cancelled.
    pub async fn sasl_response(&mut self, answer: Option<Vec<u8>>) -> Action {
        match answer {
            None => Action::Reply(response::no(None, "Authentication cancelled")),
            Some(b64) => self.plain(&b64).await,
        }
    }

    async fn plain(&mut self, b64: &[u8]) -> Action {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).ok();
        let Some((user, password)) = decoded.as_deref().and_then(sasl_plain) else {
            return self.failed("Malformed SASL PLAIN response");
        };
        let mut client = self.shared.client.clone();
        let r = client
            .authenticate(pb::AuthenticateRequest {
                username: user,
                password,
                remote_ip: self.peer.ip().to_string(),
                protocol: "managesieve".into(),
            })
            .await;
        match r.map(|r| r.into_inner()) {
            Ok(r) if r.ok => {
                tracing::info!(account = %r.address, "ManageSieve login.");
                self.state = State::Authenticated { account: r.address };
                Action::Reply(response::ok("Logged in"))
            }
            // mailstore's login guard refused it unchecked.
            Ok(r) if r.locked => {
                tracing::info!("ManageSieve login refused: locked out by the login guard.");
                self.failed_with(Some(Code::TryLater), "Too many failed logins; try later")
            }
            Ok(_) => {
                tracing::info!("ManageSieve login failed.");
                self.failed("Authentication failed")
            }
            Err(status) => Action::Reply(no_from(&status)),
        }
    }

    fn failed(&mut self, text: &str) -> Action {
        self.failed_with(None, text)
    }

    fn failed_with(&mut self, code: Option<Code>, text: &str) -> Action {
        let failures = match &mut self.state {
            State::NotAuthenticated { failures } => {
                *failures += 1;
                *failures
            }
            State::Authenticated { .. } => 0,
        };
        if failures >= MAX_AUTH_FAILURES {
            let mut out = response::no(code, text);
            out.extend_from_slice(&response::bye("Too many failures"));
            Action::Close(out)
        } else {
            Action::Reply(response::no(code, text))
        }
    }
}

/// SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd; an authzid other
/// than the user itself is not supported.
fn sasl_plain(message: &[u8]) -> Option<(String, String)> {
    let mut parts = message.split(|&b| b == 0);
    let authz = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let password = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    if !authz.is_empty() && authz != user.as_bytes() {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

/// The one mapping of mailstore errors to ManageSieve responses.
fn no_from(status: &Status) -> Vec<u8> {
    match status.code() {
        GrpcCode::NotFound => response::no(Some(Code::NonExistent), status.message()),
        GrpcCode::AlreadyExists => response::no(Some(Code::AlreadyExists), status.message()),
        GrpcCode::FailedPrecondition => response::no(Some(Code::Active), status.message()),
        GrpcCode::ResourceExhausted => response::no(Some(Code::Quota), status.message()),
        // A bad name, or a script that does not compile ("line N: ...").
        GrpcCode::InvalidArgument => response::no(None, status.message()),
        _ => {
            // Details go to the log, never to the client.
            tracing::warn!(%status, "mailstore call failed.");
            response::no(Some(Code::TryLater), "Temporary failure, try again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_messages() {
        assert_eq!(sasl_plain(b"\0a@b\0pw"), Some(("a@b".into(), "pw".into())));
        assert_eq!(
            sasl_plain(b"a@b\0a@b\0pw"),
            Some(("a@b".into(), "pw".into()))
        );
        assert_eq!(sasl_plain(b"other\0a@b\0pw"), None);
        assert_eq!(sasl_plain(b"\0a@b"), None);
        assert_eq!(sasl_plain(b"\0\0pw"), None);
    }

    #[test]
    fn errors_map_to_response_codes() {
        assert_eq!(
            no_from(&Status::not_found("no script \"x\"")),
            b"NO (NONEXISTENT) \"no script \\\"x\\\"\"\r\n"
        );
        assert_eq!(
            no_from(&Status::invalid_argument("line 3: unknown command")),
            b"NO \"line 3: unknown command\"\r\n"
        );
        let hidden = no_from(&Status::internal("secret detail"));
        assert!(!String::from_utf8_lossy(&hidden).contains("secret"));
    }
}
