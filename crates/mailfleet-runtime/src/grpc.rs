//! Credentials of the internal plane: every call to mailstore carries
//! `authorization: Bearer <token>`. Services present the service token; the
//! CLI presents the admin token. With `grpc_tls_*` set the plane also runs
//! over TLS ([`GrpcTls`]): mailstore proves itself with a certificate from
//! the internal CA, and requires one from every caller (mutual TLS), so a
//! pod that reaches mailstore's port without the service token and a
//! certificate gets nothing.

use std::path::Path;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};
use tonic::{Request, Status};

use crate::Config;

use mailfleet_proto::v1::admin_client::AdminClient;
use mailfleet_proto::v1::mail_store_client::MailStoreClient;
use mailfleet_proto::v1::sieve_scripts_client::SieveScriptsClient;

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
pub type Sieve = SieveScriptsClient<AuthedChannel>;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("MAILFLEET_GRPC_TLS_CERT and MAILFLEET_GRPC_TLS_KEY go together")]
    HalfIdentity,
    #[error("MAILFLEET_MAILSTORE_URL {0:?} must be https:// when MAILFLEET_GRPC_TLS_CA is set")]
    PlainUrl(String),
    #[error("MAILFLEET_MAILSTORE_URL {0:?} is https:// but MAILFLEET_GRPC_TLS_CA is not set")]
    NoCa(String),
    #[error("invalid mailstore URL: {0}")]
    Url(#[from] tonic::transport::Error),
}

/// The internal plane's TLS material, read once at start (`grpc_tls_*`).
#[derive(Clone, Debug, Default)]
pub struct GrpcTls {
    ca: Option<Certificate>,
    identity: Option<Identity>,
}

impl GrpcTls {
    /// Reads the files the configuration names; empty names mean none.
    pub fn from_config(config: &Config) -> Result<Self, GrpcError> {
        Self::from_paths(
            &config.grpc_tls_ca,
            &config.grpc_tls_cert,
            &config.grpc_tls_key,
        )
    }

    /// `ca`, `cert`, `key`: PEM files, or empty.
    pub fn from_paths(ca: &str, cert: &str, key: &str) -> Result<Self, GrpcError> {
        // tonic's rustls needs the process-wide provider the listeners use.
        crate::tls::install_crypto_provider();
        let read = |path: &str| {
            std::fs::read(Path::new(path)).map_err(|e| GrpcError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        };
        let ca = (!ca.is_empty())
            .then(|| read(ca).map(Certificate::from_pem))
            .transpose()?;
        let identity = match (cert.is_empty(), key.is_empty()) {
            (true, true) => None,
            (false, false) => Some(Identity::from_pem(read(cert)?, read(key)?)),
            _ => return Err(GrpcError::HalfIdentity),
        };
        Ok(Self { ca, identity })
    }

    /// True when calls to mailstore go over TLS.
    pub fn is_client(&self) -> bool {
        self.ca.is_some()
    }

    /// mailstore's server side: TLS when it has a certificate, and client
    /// certificates from the CA required when a CA is set.
    pub fn server_config(&self) -> Option<ServerTlsConfig> {
        let identity = self.identity.clone()?;
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.ca {
            config = config.client_ca_root(ca.clone());
        }
        Some(config)
    }

    fn client_config(&self) -> Option<ClientTlsConfig> {
        let ca = self.ca.clone()?;
        let mut config = ClientTlsConfig::new().ca_certificate(ca);
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        Some(config)
    }
}

/// A lazily connecting channel to mailstore: calls fail with UNAVAILABLE while
/// it is down and succeed again once it is back, without a new client.
pub fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(endpoint(url)?.connect_lazy())
}

/// [`channel`], over TLS when `tls` says so. An `http://` URL with TLS
/// configured (or `https://` without) is an error, never a silent
/// plaintext connection.
pub fn channel_with(url: &str, tls: &GrpcTls) -> Result<Channel, GrpcError> {
    let https = url.starts_with("https://");
    let endpoint = match tls.client_config() {
        Some(config) if https => endpoint(url)?.tls_config(config)?,
        Some(_) => return Err(GrpcError::PlainUrl(url.to_owned())),
        None if https => return Err(GrpcError::NoCa(url.to_owned())),
        None => endpoint(url)?,
    };
    Ok(endpoint.connect_lazy())
}

/// The channel a service opens to mailstore: `mailstore_url`, TLS from
/// `grpc_tls_*`.
pub fn channel_for(config: &Config) -> Result<Channel, GrpcError> {
    channel_with(&config.mailstore_url, &GrpcTls::from_config(config)?)
}

fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// A MailStore client that presents `token`.
pub fn mailstore_client(url: &str, token: &str) -> Result<MailStore, tonic::transport::Error> {
    Ok(mailstore_over(channel(url)?, token))
}

/// The MailStore client of a service: `mailstore_url`, the service token,
/// TLS from `grpc_tls_*`.
pub fn mailstore_client_for(config: &Config) -> Result<MailStore, GrpcError> {
    Ok(mailstore_over(
        channel_for(config)?,
        config.service_token.expose(),
    ))
}

fn mailstore_over(channel: Channel, token: &str) -> MailStore {
    MailStoreClient::with_interceptor(channel, BearerToken::new(token))
        .max_decoding_message_size(64 * 1024 * 1024)
}

/// An Admin client that presents `token`.
pub fn admin_client(url: &str, token: &str) -> Result<Admin, tonic::transport::Error> {
    Ok(AdminClient::with_interceptor(
        channel(url)?,
        BearerToken::new(token),
    ))
}

/// An Admin client that presents `token`, over TLS when `tls` says so.
pub fn admin_client_with(url: &str, token: &str, tls: &GrpcTls) -> Result<Admin, GrpcError> {
    Ok(AdminClient::with_interceptor(
        channel_with(url, tls)?,
        BearerToken::new(token),
    ))
}

/// A MailStore client that presents `token`, over TLS when `tls` says so.
pub fn mailstore_client_with(
    url: &str,
    token: &str,
    tls: &GrpcTls,
) -> Result<MailStore, GrpcError> {
    Ok(mailstore_over(channel_with(url, tls)?, token))
}

/// A SieveScripts client over `channel` that presents `token` (the service
/// token for ManageSieve, the admin token for the CLI).
pub fn sieve_over(channel: Channel, token: &str) -> Sieve {
    SieveScriptsClient::with_interceptor(channel, BearerToken::new(token))
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
