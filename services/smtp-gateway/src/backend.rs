//! What a session needs from the rest of mailfleet, behind one trait: the
//! recipient check (mailstore), body storage (object storage) and the
//! confirmed job publish (RabbitMQ). [`Mailfleet`] is the real thing; tests
//! put fakes behind the same trait to drive failure paths.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_blob::{BlobStore, BlobWriter};
use mailfleet_proto::v1::{
    AuthenticateRequest, DeliveryJob, RecipientStatus, ResolveRecipientRequest,
};
use mailfleet_queue::Publisher;
use mailfleet_runtime::grpc::MailStore;

use crate::recipients::{Answer, RecipientCache};

/// The answer of the recipient check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Delivered to one or more local accounts.
    Local,
    /// Our domain, but nobody has that address.
    UnknownUser,
    /// Not one of our domains.
    NotLocal,
    /// Local, but an account it delivers to has no room for the message
    /// (its quota in bytes or messages): refused at RCPT, never bounced.
    OverQuota,
}

/// Why a backend call failed. Every variant is temporary from the client's
/// point of view (the session answers 4xx), but the logs keep them apart.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("recipient check failed: {0}")]
    Resolve(String),
    #[error("authentication check failed: {0}")]
    Auth(String),
    #[error("body storage failed: {0}")]
    Store(String),
    #[error("job publish failed: {0}")]
    Publish(String),
}

/// A body stored under its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    pub id: String,
    pub size: u64,
}

/// Streams one message body into storage with bounded memory.
pub trait BodyWriter: Send + 'static {
    fn write(&mut self, data: &[u8]) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Completes the upload; the body is durable once this returns `Ok`.
    fn finish(self) -> impl Future<Output = Result<StoredBody, BackendError>> + Send;
    /// Throws away what was written.
    fn abort(self) -> impl Future<Output = ()> + Send;
    /// Bytes written but still held in memory (not yet in storage); they
    /// count against the gateway's body memory budget.
    fn buffered(&self) -> usize {
        0
    }
}

/// What a login attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password is right: the canonical account address.
    Ok(String),
    /// Wrong password or unknown user.
    Failed,
    /// Refused unchecked: too many failures for this account from this
    /// address, or from this address (mailstore's login guard).
    Locked,
}

/// The services behind a session.
pub trait Backend: Send + Sync + 'static {
    type Writer: BodyWriter;

    /// `size`: what the client announced with SIZE, 0 when it did not.
    fn resolve_recipient(
        &self,
        address: &str,
        size: u64,
    ) -> impl Future<Output = Result<Resolution, BackendError>> + Send;

    fn body_writer(&self) -> Self::Writer;

    /// Checks a password through mailstore's login guard.
    fn authenticate(
        &self,
        username: &str,
        password: &str,
        remote_ip: &str,
    ) -> impl Future<Output = Result<AuthOutcome, BackendError>> + Send;

    /// The accounts an address delivers to (own address, aliases,
    /// `user+tag`): the submission role lets an account send as any address
    /// that delivers to it.
    fn address_owners(
        &self,
        address: &str,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;

    /// Publishes the job; `Ok` only once the broker confirmed it stored it.
    fn publish(&self, job: &DeliveryJob) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// The real backend: mailstore over gRPC, the blob store, the confirmed
/// publisher. Cheap to share; every field is a handle.
#[derive(Clone)]
pub struct Mailfleet {
    pub mailstore: MailStore,
    pub blobs: BlobStore,
    pub publisher: Publisher,
    pub publish_timeout: Duration,
    /// Recent recipient answers (see `crate::recipients`).
    pub recipients: Arc<RecipientCache>,
}

/// How long one recipient check may take before the client hears 451.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for Authenticate: the login guard's delay (at most 15 s)
/// plus a password check.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

impl Mailfleet {
    /// Whether mailstore answers a cheap, authenticated call right now.
    pub async fn mailstore_ready(&self) -> bool {
        // A domain that can never be ours: the answer is NOT_LOCAL when
        // mailstore, its database and our credential all work. Never from
        // the cache, which would hide mailstore going away.
        self.ask_mailstore("readiness-probe@mailfleet.invalid", 0)
            .await
            .is_ok()
    }
}

impl Mailfleet {
    /// The recipient check, from the cache when it holds a fresh answer.
    async fn resolve(
        &self,
        address: &str,
        size: u64,
    ) -> Result<(Resolution, Vec<String>), BackendError> {
        let generation = match self.recipients.get(address) {
            Ok(a) => return Ok((a.resolution, a.accounts)),
            Err(generation) => generation,
        };
        let (resolution, accounts, cacheable) = self.ask_mailstore(address, size).await?;
        if cacheable {
            self.recipients.put(
                address,
                generation,
                Answer {
                    resolution,
                    accounts: accounts.clone(),
                },
            );
        }
        Ok((resolution, accounts))
    }

    /// One ResolveRecipient call: the answer, the accounts, and whether the
    /// answer holds whatever the size (no quota involved).
    async fn ask_mailstore(
        &self,
        address: &str,
        size: u64,
    ) -> Result<(Resolution, Vec<String>, bool), BackendError> {
        let mut client = self.mailstore.clone();
        let call = client.resolve_recipient(ResolveRecipientRequest {
            address: address.to_owned(),
            size,
        });
        let response = tokio::time::timeout(RESOLVE_TIMEOUT, call)
            .await
            .map_err(|_| BackendError::Resolve("mailstore did not answer in time".into()))?
            .map_err(|status| {
                BackendError::Resolve(format!("{:?}: {}", status.code(), status.message()))
            })?
            .into_inner();
        let resolution = match RecipientStatus::try_from(response.status) {
            Ok(RecipientStatus::RecipientLocal) if response.over_quota => Resolution::OverQuota,
            Ok(RecipientStatus::RecipientLocal) => Resolution::Local,
            Ok(RecipientStatus::RecipientUnknownUser) => Resolution::UnknownUser,
            Ok(RecipientStatus::RecipientNotLocal) => Resolution::NotLocal,
            Ok(RecipientStatus::Unspecified) | Err(_) => {
                return Err(BackendError::Resolve(format!(
                    "mailstore answered an unknown recipient status {}",
                    response.status
                )));
            }
        };
        Ok((resolution, response.accounts, !response.quota_limited))
    }
}

impl Backend for Mailfleet {
    type Writer = BlobWriter;

    async fn resolve_recipient(
        &self,
        address: &str,
        size: u64,
    ) -> Result<Resolution, BackendError> {
        self.resolve(address, size)
            .await
            .map(|(resolution, _)| resolution)
    }

    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        remote_ip: &str,
    ) -> Result<AuthOutcome, BackendError> {
        let mut client = self.mailstore.clone();
        let call = client.authenticate(AuthenticateRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            remote_ip: remote_ip.to_owned(),
            protocol: "smtp".to_owned(),
        });
        // The guard delays a failed answer by up to 15 s.
        let response = tokio::time::timeout(AUTH_TIMEOUT, call)
            .await
            .map_err(|_| BackendError::Auth("mailstore did not answer in time".into()))?
            .map_err(|status| {
                BackendError::Auth(format!("{:?}: {}", status.code(), status.message()))
            })?
            .into_inner();
        Ok(if response.ok {
            AuthOutcome::Ok(response.address)
        } else if response.locked {
            AuthOutcome::Locked
        } else {
            AuthOutcome::Failed
        })
    }

    async fn address_owners(&self, address: &str) -> Result<Vec<String>, BackendError> {
        self.resolve(address, 0).await.map(|(_, accounts)| accounts)
    }

    fn body_writer(&self) -> BlobWriter {
        self.blobs.writer()
    }

    async fn publish(&self, job: &DeliveryJob) -> Result<(), BackendError> {
        self.publisher
            .publish_job(job, self.publish_timeout)
            .await
            .map_err(|e| BackendError::Publish(e.to_string()))
    }
}

impl BodyWriter for BlobWriter {
    async fn write(&mut self, data: &[u8]) -> Result<(), BackendError> {
        BlobWriter::write(self, data)
            .await
            .map_err(|e| BackendError::Store(e.to_string()))
    }

    async fn finish(self) -> Result<StoredBody, BackendError> {
        BlobWriter::finish(self)
            .await
            .map(|r| StoredBody {
                id: r.id,
                size: r.size,
            })
            .map_err(|e| BackendError::Store(e.to_string()))
    }

    async fn abort(self) {
        BlobWriter::abort(self).await
    }

    fn buffered(&self) -> usize {
        BlobWriter::buffered(self)
    }
}
