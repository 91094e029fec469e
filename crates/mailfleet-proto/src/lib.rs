//! The generated types of `proto/` (package `mailfleet.v1`): the MailStore and
//! Admin gRPC services and the delivery job published on RabbitMQ.
//!
//! Generated code, and [`reason`]: how a status carries its [`v1::ErrorReason`],
//! which is as much part of the wire contract as the messages. Nothing in this
//! crate does I/O.

#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]

pub mod v1 {
    tonic::include_proto!("mailfleet.v1");
}

pub use prost::Message;

/// A machine-readable reason on a refused call: mailstore sets it, callers
/// choose their protocol's response code from it, never from the status
/// text (which is for logs and may change).
pub mod reason {
    use tonic::{Code, Status};
    use tonic_types::{ErrorDetails, StatusExt};

    use crate::v1::ErrorReason;

    /// The `domain` of the `google.rpc.ErrorInfo` that carries the reason.
    pub const DOMAIN: &str = "mailfleet.v1";

    /// A status with `code` and `message` that carries `reason`.
    pub fn status(code: Code, message: impl Into<String>, reason: ErrorReason) -> Status {
        let details = ErrorDetails::with_error_info(
            reason.as_str_name(),
            DOMAIN,
            std::collections::HashMap::new(),
        );
        Status::with_error_details(code, message, details)
    }

    /// The reason `status` carries, if any (details of another domain, or
    /// that do not decode, carry none).
    pub fn of(status: &Status) -> Option<ErrorReason> {
        let info = status.get_details_error_info()?;
        if info.domain != DOMAIN {
            return None;
        }
        ErrorReason::from_str_name(&info.reason).filter(|r| *r != ErrorReason::Unspecified)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reason_survives_any_text() {
            for reason in [ErrorReason::OverQuota, ErrorReason::TooBig] {
                let s = status(Code::FailedPrecondition, "whatever the text says", reason);
                assert_eq!(of(&s), Some(reason));
                assert_eq!(s.message(), "whatever the text says");
            }
            assert_eq!(of(&Status::failed_precondition("over quota")), None);
            let foreign = Status::with_error_details(
                Code::FailedPrecondition,
                "x",
                ErrorDetails::with_error_info(
                    "ERROR_REASON_OVER_QUOTA",
                    "example.com",
                    std::collections::HashMap::<String, String>::new(),
                ),
            );
            assert_eq!(of(&foreign), None);
        }
    }
}
