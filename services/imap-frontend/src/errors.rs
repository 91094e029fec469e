//! The one map from mailstore's answers (gRPC status) to IMAP responses
//! with response codes (RFC 5530). mailstore's own text is logged, never
//! sent: it may name tables, accounts or internals, and it is not written
//! for IMAP clients.

use tonic::Code;

use crate::proto::Reply;

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
    let text = match status.code() {
        Code::NotFound if target == Target::Destination => "[TRYCREATE] No such mailbox",
        Code::NotFound => "[NONEXISTENT] No such mailbox or message",
        Code::AlreadyExists => "[ALREADYEXISTS] Mailbox already exists",
        Code::FailedPrecondition if message.contains("quota") => "[OVERQUOTA] Quota exceeded",
        Code::InvalidArgument if message.contains("too large") => "[TOOBIG] Message too large",
        Code::InvalidArgument | Code::FailedPrecondition => {
            tracing::info!(code = ?status.code(), message, "mailstore refused the command.");
            "[CANNOT] The server cannot do this to that mailbox or message"
        }
        Code::ResourceExhausted => "[LIMIT] A server limit was reached",
        _ => {
            tracing::warn!(code = ?status.code(), message, "mailstore call failed.");
            "[UNAVAILABLE] Temporary server failure, try again"
        }
    };
    Reply::No(text.into())
}

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
        assert!(
            no(Code::FailedPrecondition, "over quota", Target::Destination)
                .starts_with("[OVERQUOTA]")
        );
        assert!(
            no(
                Code::InvalidArgument,
                "message too large",
                Target::Destination
            )
            .starts_with("[TOOBIG]")
        );
    }
}
