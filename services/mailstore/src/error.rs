//! The domain errors of mailstore and their one mapping to gRPC statuses.

use mailfleet_proto::reason;
use mailfleet_proto::v1::ErrorReason;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres did not answer or the transaction failed in a way a retry may fix.
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("object storage: {0}")]
    Blob(#[from] mailfleet_blob::BlobError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The account's quota (bytes or messages) cannot take the message.
    #[error("over quota")]
    OverQuota,
    /// The message is larger than mailstore accepts.
    #[error("{0}")]
    TooBig(String),
    /// A per-account limit would be exceeded (Sieve script count or bytes).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The caller went away before the answer (see `detach::caller_gone`).
    #[error("the caller went away")]
    Cancelled,
}

impl StoreError {
    /// True when a retry of the same call may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => !is_permanent_db_error(e),
            StoreError::Blob(e) => e.is_transient(),
            _ => false,
        }
    }

    /// The Postgres SQLSTATE of a database error, if any.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

fn is_permanent_db_error(e: &sqlx::Error) -> bool {
    match e {
        // Integrity and syntax errors will fail again; everything else
        // (I/O, pool timeout, serialization failure, shutdown) may not.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("23") || c.starts_with("42") || c.starts_with("22")),
        sqlx::Error::RowNotFound | sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            true
        }
        _ => false,
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidArgument(m) => Status::invalid_argument(m),
            StoreError::NotFound(m) => Status::not_found(m),
            StoreError::AlreadyExists(m) => Status::already_exists(m),
            StoreError::FailedPrecondition(m) => Status::failed_precondition(m),
            StoreError::OverQuota => reason::status(
                Code::FailedPrecondition,
                "over quota",
                ErrorReason::OverQuota,
            ),
            StoreError::TooBig(m) => reason::status(Code::InvalidArgument, m, ErrorReason::TooBig),
            StoreError::QuotaExceeded(m) => Status::resource_exhausted(m),
            StoreError::Cancelled => Status::cancelled("the caller went away"),
            StoreError::Blob(e) if e.is_not_found() => {
                tracing::error!(error = %e, "A stored message has no body in object storage.");
                Status::not_found("the message body is missing from object storage")
            }
            other => {
                // Details go to the log, not to the caller.
                tracing::warn!(error = %other, "Request failed.");
                if other.is_transient() {
                    Status::unavailable("storage temporarily unavailable")
                } else {
                    Status::internal("internal error")
                }
            }
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_unavailable_and_details_stay_inside() {
        let s = Status::from(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let s = Status::from(StoreError::Database(sqlx::Error::Io(
            std::io::Error::other("connection reset"),
        )));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(!s.message().contains("reset"));
        let s = Status::from(StoreError::Internal("secret detail".into()));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("secret"));
        assert_eq!(
            Status::from(StoreError::NotFound("no account x".into())).code(),
            tonic::Code::NotFound
        );
    }

    #[test]
    fn quota_and_size_carry_their_reason() {
        let s = Status::from(StoreError::OverQuota);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(reason::of(&s), Some(ErrorReason::OverQuota));
        let s = Status::from(StoreError::TooBig("12 octets, at most 10".into()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(reason::of(&s), Some(ErrorReason::TooBig));
        let s = Status::from(StoreError::FailedPrecondition("quota".into()));
        assert_eq!(reason::of(&s), None);
    }
}
