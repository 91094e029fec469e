//! The connection states of RFC 9051 3 (RFC 3501 3), each with the data
//! only it has (who logged in; in Selected, the mailbox's view), and the
//! one gate that says which commands a state allows ([`refusal`]).

use super::view::Selected;
use crate::proto::{CommandBody, Reply};

/// Where a session is in its life, with what it knows there.
pub(crate) enum State {
    NotAuthenticated,
    Authenticated {
        /// The account's address as mailstore gave it at login.
        user: String,
    },
    Selected {
        user: String,
        view: Selected,
    },
    /// LOGOUT was accepted: the session only finishes its answer.
    Logout,
}

impl State {
    /// The logged-in account, in the states that have one.
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            State::Authenticated { user } | State::Selected { user, .. } => Some(user),
            State::NotAuthenticated | State::Logout => None,
        }
    }

    /// The selected mailbox's view, in Selected.
    pub(crate) fn selected(&self) -> Option<&Selected> {
        match self {
            State::Selected { view, .. } => Some(view),
            _ => None,
        }
    }

    pub(crate) fn selected_mut(&mut self) -> Option<&mut Selected> {
        match self {
            State::Selected { view, .. } => Some(view),
            _ => None,
        }
    }

    /// Leaves the selected mailbox (Selected becomes Authenticated) and
    /// returns its view; any other state is left as it is.
    pub(crate) fn unselect(&mut self) -> Option<Selected> {
        match std::mem::replace(self, State::Logout) {
            State::Selected { user, view } => {
                *self = State::Authenticated { user };
                Some(view)
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// Enters Selected with `view`, from Authenticated or Selected (the
    /// gate lets SELECT run nowhere else; elsewhere nothing changes).
    pub(crate) fn select(&mut self, view: Selected) {
        match std::mem::replace(self, State::Logout) {
            State::Authenticated { user } | State::Selected { user, .. } => {
                *self = State::Selected { user, view };
            }
            other => *self = other,
        }
    }
}

/// The states a command may run in (RFC 9051 6.1 to 6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowed {
    /// Any state (RFC 9051 6.1; ID: RFC 2971 3.1).
    Any,
    /// Not authenticated only (RFC 9051 6.2).
    NotAuthenticated,
    /// Authenticated or Selected (RFC 9051 6.3).
    LoggedIn,
    /// Selected only (RFC 9051 6.4).
    Selected,
}

/// The table: where each command may run. The match is exhaustive, so a
/// new command cannot be added without saying where it belongs.
pub(crate) fn allowed(body: &CommandBody) -> Allowed {
    use CommandBody as C;
    match body {
        C::Capability | C::Noop | C::Logout | C::Id(_) => Allowed::Any,
        C::StartTls | C::Login { .. } | C::Authenticate { .. } => Allowed::NotAuthenticated,
        C::Enable(_)
        | C::Select { .. }
        | C::Create(_)
        | C::Delete(_)
        | C::Rename { .. }
        | C::Subscribe(_)
        | C::Unsubscribe(_)
        | C::List(_)
        | C::Status { .. }
        | C::Append(_)
        | C::Idle
        | C::Namespace
        | C::GetQuota(_)
        | C::GetQuotaRoot(_)
        | C::SetQuota { .. } => Allowed::LoggedIn,
        C::Check
        | C::Close
        | C::Unselect
        | C::Expunge
        | C::UidExpunge(_)
        | C::Search(_)
        | C::Fetch(_)
        | C::Store(_)
        | C::Copy { .. }
        | C::Move { .. }
        | C::Sort(_)
        | C::Thread(_) => Allowed::Selected,
    }
}

/// The one place a command is refused for the state it comes in: BAD, as
/// for any command not valid in the current state (RFC 9051 7.1.5).
pub(crate) fn refusal(state: &State, body: &CommandBody) -> Option<Reply> {
    let why = match (state, allowed(body)) {
        (_, Allowed::Any) => return None,
        (State::Logout, _) => "Logging out",
        (State::NotAuthenticated, Allowed::NotAuthenticated) => return None,
        (State::NotAuthenticated, _) => "Log in first",
        (_, Allowed::NotAuthenticated) => "Already authenticated",
        (State::Authenticated { .. }, Allowed::Selected) => "Select a mailbox first",
        (State::Authenticated { .. } | State::Selected { .. }, _) => return None,
    };
    Some(Reply::Bad(why.into()))
}

/// A command ran without the login or the selected mailbox it needs,
/// which the gate ([`refusal`]) rules out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoTarget;

impl From<NoTarget> for std::io::Error {
    fn from(_: NoTarget) -> Self {
        std::io::Error::other("IMAP command ran without its login or mailbox")
    }
}

impl From<NoTarget> for tonic::Status {
    fn from(_: NoTarget) -> Self {
        tonic::Status::failed_precondition("IMAP command ran without its login or mailbox")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn view() -> Selected {
        Selected::new("INBOX".into(), 1, false)
    }

    #[test]
    fn one_gate_per_state() {
        let body = |line: &str| crate::proto::parse_command(line.as_bytes()).unwrap().body;
        let bad = |state: &State, line: &str| match refusal(state, &body(line)) {
            Some(Reply::Bad(why)) => why,
            None => "allowed".into(),
            Some(other) => format!("{other:?}"),
        };
        let not_auth = State::NotAuthenticated;
        let authed = State::Authenticated { user: "u".into() };
        let selected = State::Selected {
            user: "u".into(),
            view: view(),
        };
        for line in [
            "a CAPABILITY\r\n",
            "a NOOP\r\n",
            "a LOGOUT\r\n",
            "a ID NIL\r\n",
        ] {
            for state in [&not_auth, &authed, &selected] {
                assert_eq!(bad(state, line), "allowed", "{line}");
            }
        }
        assert_eq!(bad(&not_auth, "a LOGIN u p\r\n"), "allowed");
        assert_eq!(bad(&not_auth, "a STARTTLS\r\n"), "allowed");
        assert_eq!(bad(&not_auth, "a SELECT INBOX\r\n"), "Log in first");
        assert_eq!(bad(&not_auth, "a FETCH 1 FLAGS\r\n"), "Log in first");
        assert_eq!(bad(&authed, "a LOGIN u p\r\n"), "Already authenticated");
        assert_eq!(
            bad(&selected, "a AUTHENTICATE PLAIN\r\n"),
            "Already authenticated"
        );
        assert_eq!(bad(&authed, "a LIST \"\" *\r\n"), "allowed");
        assert_eq!(
            bad(&authed, "a FETCH 1 FLAGS\r\n"),
            "Select a mailbox first"
        );
        assert_eq!(bad(&authed, "a CHECK\r\n"), "Select a mailbox first");
        assert_eq!(
            bad(&authed, "a UID SORT (DATE) UTF-8 ALL\r\n"),
            "Select a mailbox first"
        );
        assert_eq!(bad(&selected, "a FETCH 1 FLAGS\r\n"), "allowed");
        assert_eq!(bad(&selected, "a SELECT INBOX\r\n"), "allowed");
        assert_eq!(bad(&State::Logout, "a SELECT INBOX\r\n"), "Logging out");
    }

    #[test]
    fn selected_carries_the_user_and_unselect_keeps_it() {
        let mut state = State::NotAuthenticated;
        state.select(view());
        assert!(state.selected().is_none(), "no SELECT before login");
        state = State::Authenticated { user: "u".into() };
        state.select(view());
        assert_eq!(state.user(), Some("u"));
        assert_eq!(state.selected().map(|v| v.name.as_str()), Some("INBOX"));
        assert!(state.unselect().is_some());
        assert!(matches!(&state, State::Authenticated { user } if user == "u"));
        assert!(state.unselect().is_none());
    }
}
