//! AUTH PLAIN and LOGIN (RFC 4954, RFC 4616), checked through mailstore's
//! Authenticate and its login guard, the brute-force limit IMAP and POP3
//! share (mailstore's `auth_guard`).
//!
//! Credentials never reach a log. mailstore answers a failed attempt only
//! after a delay that grows with the failures of the account and the
//! address; past the limit the attempt is refused before the password is
//! even checked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Session;
use crate::backend::{AuthOutcome, Backend};
use crate::codec::command::Mechanism;
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

/// `334` prompts of AUTH LOGIN: "Username:" and "Password:".
const USERNAME: &str = "VXNlcm5hbWU6";
const PASSWORD: &str = "UGFzc3dvcmQ6";

/// A SASL exchange waiting for the client's next line.
#[derive(Debug)]
pub(super) enum Pending {
    Plain,
    LoginUser,
    LoginPassword { user: String },
}

/// The AUTH command itself. The gate has checked the role, the state and
/// that no account is authenticated yet.
pub(super) async fn start<B: Backend>(
    session: &mut Session,
    mechanism: Mechanism,
    initial: Option<String>,
    gw: &Gateway<B>,
) -> Reply {
    if session.tls.is_none() && !gw.settings.allow_plaintext_auth {
        return reply::encryption_required();
    }
    match (mechanism, initial) {
        (Mechanism::Plain, None) => {
            session.auth = Some(Pending::Plain);
            reply::challenge("")
        }
        (Mechanism::Plain, Some(initial)) => plain(session, initial.as_bytes(), gw).await,
        (Mechanism::Login, None) => {
            session.auth = Some(Pending::LoginUser);
            reply::challenge(USERNAME)
        }
        (Mechanism::Login, Some(initial)) => match decode(initial.as_bytes()) {
            Some(user) => {
                session.auth = Some(Pending::LoginPassword {
                    user: String::from_utf8_lossy(&user).into_owned(),
                });
                reply::challenge(PASSWORD)
            }
            None => reply::auth_malformed(),
        },
    }
}

/// A response line to a `334` challenge.
pub(super) async fn response<B: Backend>(
    session: &mut Session,
    line: &[u8],
    gw: &Gateway<B>,
) -> Reply {
    let Some(pending) = session.auth.take() else {
        return reply::bad_sequence("No authentication in progress");
    };
    if line == b"*" {
        return reply::auth_cancelled();
    }
    match pending {
        Pending::Plain => plain(session, line, gw).await,
        Pending::LoginUser => match decode(line) {
            Some(user) => {
                session.auth = Some(Pending::LoginPassword {
                    user: String::from_utf8_lossy(&user).into_owned(),
                });
                reply::challenge(PASSWORD)
            }
            None => reply::auth_malformed(),
        },
        Pending::LoginPassword { user } => match decode(line) {
            Some(password) => {
                let password = String::from_utf8_lossy(&password).into_owned();
                verify(session, &user, &password, gw).await
            }
            None => reply::auth_malformed(),
        },
    }
}

/// `authzid NUL authcid NUL passwd` (RFC 4616 2); "=" is an empty response.
async fn plain<B: Backend>(session: &mut Session, encoded: &[u8], gw: &Gateway<B>) -> Reply {
    let Some(decoded) = decode(encoded) else {
        return reply::auth_malformed();
    };
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return reply::auth_malformed();
    };
    let (Ok(authzid), Ok(user), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
    ) else {
        return reply::auth_malformed();
    };
    // Acting for another user (authzid) is not offered.
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(user) {
        return fail(session, gw);
    }
    verify(session, user, password, gw).await
}

async fn verify<B: Backend>(
    session: &mut Session,
    user: &str,
    password: &str,
    gw: &Gateway<B>,
) -> Reply {
    if user.is_empty() || password.is_empty() {
        return fail(session, gw);
    }
    let ip = session.peer.ip().to_string();
    match gw.backend.authenticate(user, password, &ip).await {
        Ok(AuthOutcome::Ok(account)) => {
            count(session, gw, "success");
            tracing::info!(%account, "Authenticated.");
            session.account = Some(account);
            reply::auth_ok()
        }
        Ok(AuthOutcome::Failed) => fail(session, gw),
        Ok(AuthOutcome::Locked) => {
            count(session, gw, "locked");
            tracing::info!("Authentication refused: locked out by the login guard.");
            reply::auth_locked()
        }
        Err(error) => {
            count(session, gw, "error");
            tracing::warn!(%error, "Failed to check credentials.");
            reply::auth_unavailable()
        }
    }
}

/// A failure mailstore did not see (a malformed exchange, an empty name or
/// password, a foreign authzid) or one it already delayed.
fn fail<B: Backend>(session: &mut Session, gw: &Gateway<B>) -> Reply {
    count(session, gw, "failure");
    tracing::info!("Authentication failed.");
    reply::bad_credentials()
}

fn count<B>(session: &Session, gw: &Gateway<B>, outcome: &'static str) {
    gw.metrics
        .auth
        .get_or_create(&crate::metrics::OutcomeLabel {
            listener: session.role.name(),
            outcome,
        })
        .inc();
}

/// Base64 of a SASL response; "=" stands for an empty one (RFC 4954 4).
fn decode(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.trim_ascii();
    if line == b"=" {
        return Some(Vec::new());
    }
    STANDARD.decode(line).ok()
}
