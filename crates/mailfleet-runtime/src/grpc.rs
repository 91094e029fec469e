//! Credentials of the internal plane: every call to mailstore carries
//! `authorization: Bearer <token>`. Services present the service token; the
//! CLI presents the admin token.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use mailfleet_proto::v1::admin_client::AdminClient;
use mailfleet_proto::v1::mail_store_client::MailStoreClient;

/// Adds the bearer token to every outgoing call.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    pub fn new(token: &str) -> Self {
        Self(format!("Bearer {token}").parse().ok())
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match &self.0 {
            Some(v) => {
                req.metadata_mut().insert("authorization", v.clone());
                // Every call to mailstore continues the caller's trace.
                crate::trace_context::inject_grpc(req.metadata_mut());
                Ok(req)
            }
            None => Err(Status::unauthenticated(
                "the configured token is not valid ASCII",
            )),
        }
    }
}

pub type AuthedChannel = tonic::service::interceptor::InterceptedService<Channel, BearerToken>;
pub type MailStore = MailStoreClient<AuthedChannel>;
pub type Admin = AdminClient<AuthedChannel>;

/// A lazily connecting channel to mailstore: calls fail with UNAVAILABLE while
/// it is down and succeed again once it is back, without a new client.
pub fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A MailStore client that presents `token`.
pub fn mailstore_client(url: &str, token: &str) -> Result<MailStore, tonic::transport::Error> {
    Ok(
        MailStoreClient::with_interceptor(channel(url)?, BearerToken::new(token))
            .max_decoding_message_size(64 * 1024 * 1024),
    )
}

/// An Admin client that presents `token`.
pub fn admin_client(url: &str, token: &str) -> Result<Admin, tonic::transport::Error> {
    Ok(AdminClient::with_interceptor(
        channel(url)?,
        BearerToken::new(token),
    ))
}

/// Checks the bearer token of an incoming call against the accepted tokens,
/// in constant time per token. Empty tokens are never accepted.
pub fn check_bearer<T>(req: &Request<T>, accepted: &[&str]) -> Result<(), Status> {
    let presented = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing credential"))?;
    let ok = accepted
        .iter()
        .filter(|t| !t.is_empty())
        .any(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(Status::unauthenticated("invalid credential"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_checked() {
        let mut req = Request::new(());
        assert!(check_bearer(&req, &["s3cret"]).is_err());
        req.metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(check_bearer(&req, &["other", "s3cret"]).is_ok());
        assert!(check_bearer(&req, &["other"]).is_err());
        let mut empty = Request::new(());
        empty
            .metadata_mut()
            .insert("authorization", "Bearer ".parse().unwrap());
        assert!(
            check_bearer(&empty, &[""]).is_err(),
            "empty tokens never match"
        );
    }
}
