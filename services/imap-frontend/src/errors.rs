//! The one map from mailstore's answers (gRPC status) to IMAP responses
//! with response codes (RFC 5530). mailstore's own text is logged, never
//! sent: it may name tables, accounts or internals, and it is not written
//! for IMAP clients. Every command reaches mailstore through [`rpc!`] or
//! calls [`reply`] itself; the answers that mean the same without a
//! failed call ([`no_such_mailbox`], [`unavailable`]) are here too, so a
//! client reads one wording for one condition. Response codes come from the
//! status code and the typed reason mailstore attaches
//! ([`mailfleet_proto::reason`]), never from its text.

use mailfleet_proto::reason;
use mailfleet_proto::v1::ErrorReason;
use tonic::Code;

use crate::proto::Reply;

const NONEXISTENT: &str = "[NONEXISTENT] No such mailbox";
const UNAVAILABLE: &str = "[UNAVAILABLE] Temporary server failure, try again";

/// What the failed call was about, where that changes the response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The selected mailbox, a named mailbox or its messages.
    Mailbox,
    /// The mailbox APPEND, COPY or MOVE puts messages into: missing means
    /// `[TRYCREATE]` (RFC 3501 6.3.11, 6.4.7).
    Destination,
}

/// The NO for a failed mailstore call.
pub(crate) fn reply(status: &tonic::Status, target: Target) -> Reply {
    let message = status.message();
    let text = match (status.code(), reason::of(status)) {
        (_, Some(ErrorReason::OverQuota)) => "[OVERQUOTA] Quota exceeded",
        (_, Some(ErrorReason::TooBig)) => "[TOOBIG] Message too large",
        (Code::NotFound, _) if target == Target::Destination => "[TRYCREATE] No such mailbox",
        (Code::NotFound, _) => "[NONEXISTENT] No such mailbox or message",
        (Code::AlreadyExists, _) => "[ALREADYEXISTS] Mailbox already exists",
        (Code::InvalidArgument | Code::FailedPrecondition, _) => {
            tracing::info!(code = ?status.code(), message, "mailstore refused the command.");
            "[CANNOT] The server cannot do this to that mailbox or message"
        }
        (Code::ResourceExhausted, _) => "[LIMIT] A server limit was reached",
        _ => {
            tracing::warn!(code = ?status.code(), message, "mailstore call failed.");
            UNAVAILABLE
        }
    };
    Reply::No(text.into())
}

/// The NO for a mailbox that mailstore reports absent in a successful
/// answer (a status or listing without the mailbox).
pub(crate) fn no_such_mailbox() -> Reply {
    Reply::No(NONEXISTENT.into())
}

/// The NO for a failure on our side of the call (a task that died).
pub(crate) fn unavailable() -> Reply {
    Reply::No(UNAVAILABLE.into())
}

/// Calls mailstore (`$call` is the call's future); a failure becomes the
/// command's NO about the selected or a named mailbox ([`reply`] with
/// [`Target::Mailbox`]).
macro_rules! rpc {
    ($call:expr) => {
        match $call.await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Ok(crate::errors::reply(
                    &status,
                    crate::errors::Target::Mailbox,
                ));
            }
        }
    };
}
pub(crate) use rpc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_no_internal_text() {
        let no = |code, msg: &str, target| match reply(&tonic::Status::new(code, msg), target) {
            Reply::No(t) => t,
            other => format!("{other:?}"),
        };
        let secret = "no mailbox \"x\" for user@example.test (row 42 in messages)";
        for (code, target, want) in [
            (Code::NotFound, Target::Destination, "[TRYCREATE]"),
            (Code::NotFound, Target::Mailbox, "[NONEXISTENT]"),
            (Code::AlreadyExists, Target::Mailbox, "[ALREADYEXISTS]"),
            (Code::InvalidArgument, Target::Mailbox, "[CANNOT]"),
            (Code::FailedPrecondition, Target::Mailbox, "[CANNOT]"),
            (Code::Unavailable, Target::Mailbox, "[UNAVAILABLE]"),
            (Code::Internal, Target::Destination, "[UNAVAILABLE]"),
        ] {
            let t = no(code, secret, target);
            assert!(t.starts_with(want), "{code:?}: {t}");
            assert!(!t.contains("user@") && !t.contains("row"), "{t}");
        }
    }

    /// The response code follows the typed reason, not the text: a reworded
    /// message keeps its code, and text alone gives none.
    #[test]
    fn reasons_not_text_pick_the_code() {
        let text = |s: &tonic::Status| match reply(s, Target::Destination) {
            Reply::No(t) => t,
            other => format!("{other:?}"),
        };
        for (code, why, want) in [
            (
                Code::FailedPrecondition,
                ErrorReason::OverQuota,
                "[OVERQUOTA]",
            ),
            (Code::InvalidArgument, ErrorReason::TooBig, "[TOOBIG]"),
        ] {
            for message in [
                "over quota",
                "message too large",
                "",
                "Kontingent erschöpft",
            ] {
                let t = text(&reason::status(code, message, why));
                assert!(t.starts_with(want), "{message:?}: {t}");
            }
        }
        for (code, message) in [
            (Code::FailedPrecondition, "over quota"),
            (Code::InvalidArgument, "message too large"),
        ] {
            let t = text(&tonic::Status::new(code, message));
            assert!(t.starts_with("[CANNOT]"), "{message:?}: {t}");
        }
    }
}
