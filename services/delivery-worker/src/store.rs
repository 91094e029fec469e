//! The mailstore calls the worker makes, behind a trait so batch handling can
//! be tested without a server.

use std::future::Future;

use mailfleet_proto::v1::{
    DeliverRequest, Delivery, DeliveryResult, RecipientStatus, ResolveRecipientRequest,
};
use mailfleet_runtime::grpc::MailStore;
use tonic::{Code, Status};

/// Local delivery as the worker needs it.
pub trait Store: Clone + Send + Sync + 'static {
    /// Stores a batch in one transaction; one result per delivery, in order.
    fn deliver(
        &self,
        deliveries: Vec<Delivery>,
    ) -> impl Future<Output = Result<Vec<DeliveryResult>, Status>> + Send;

    /// Whether an address is local, unknown or foreign.
    fn resolve(
        &self,
        address: &str,
    ) -> impl Future<Output = Result<RecipientStatus, Status>> + Send;
}

/// The gRPC client of mailstore.
#[derive(Clone)]
pub struct GrpcStore {
    client: MailStore,
}

impl GrpcStore {
    pub fn new(client: MailStore) -> Self {
        Self { client }
    }
}

impl Store for GrpcStore {
    async fn deliver(&self, deliveries: Vec<Delivery>) -> Result<Vec<DeliveryResult>, Status> {
        let mut client = self.client.clone();
        let response = client.deliver(DeliverRequest { deliveries }).await?;
        Ok(response.into_inner().results)
    }

    async fn resolve(&self, address: &str) -> Result<RecipientStatus, Status> {
        let mut client = self.client.clone();
        let response = client
            .resolve_recipient(ResolveRecipientRequest {
                address: address.to_owned(),
                size: 0,
            })
            .await?;
        Ok(response.into_inner().status())
    }
}

/// How the worker treats a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// mailstore (or the path to it) is down or overloaded: hold the jobs and
    /// try the same call again after a pause.
    Retry,
    /// The request itself is refused: retrying it unchanged will not help,
    /// so split the batch to find the job that causes it.
    Refused,
}

pub fn classify(status: &Status) -> CallFailure {
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::AlreadyExists => CallFailure::Refused,
        // Authentication and permission errors are configuration problems an
        // operator fixes without losing mail, so they are held and retried.
        _ => CallFailure::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_retried_and_invalid_is_refused() {
        assert_eq!(classify(&Status::unavailable("down")), CallFailure::Retry);
        assert_eq!(
            classify(&Status::unauthenticated("token")),
            CallFailure::Retry
        );
        assert_eq!(
            classify(&Status::deadline_exceeded("slow")),
            CallFailure::Retry
        );
        assert_eq!(
            classify(&Status::invalid_argument("bad")),
            CallFailure::Refused
        );
        assert_eq!(classify(&Status::not_found("blob")), CallFailure::Refused);
    }
}
