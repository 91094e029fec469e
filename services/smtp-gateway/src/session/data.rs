//! DATA (RFC 5321 4.1.1.4) and the durability steps of the gateway: the body
//! is stored, the job is published and confirmed, and only then 250.
//! The streaming of the body itself is socket I/O and lives in the
//! connection module; this module starts and completes the transaction.

use std::net::IpAddr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use mailfleet_proto::v1::{DeliveryJob, JobRecipient};

use super::{Client, Envelope, Outcome, Session, State};
use crate::backend::{Backend, BackendError, BodyWriter, StoredBody};
use crate::codec::received::{self, Trace};
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

/// A transaction whose body is being received.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub client: Client,
    pub envelope: Envelope,
    /// Fresh per transaction (UUID v7): the queue id and the dedup key.
    pub job_id: String,
    pub client_ip: IpAddr,
    pub received_at: DateTime<Utc>,
}

/// How the reception of the body ended (the terminator was read in all
/// cases; a connection lost in DATA never gets here).
#[derive(Debug)]
pub enum DataOutcome {
    Complete,
    TooBig,
    BareLineEnding,
    StoreFailed(BackendError),
}

/// Starts DATA: the transaction leaves the session whatever its outcome, so
/// the session is back to "greeted" when the body has been read.
pub(super) fn begin(session: &mut Session) -> Outcome {
    let state = std::mem::replace(&mut session.state, State::Fresh);
    match state {
        State::Mail { client, envelope } => {
            session.state = State::Ready {
                client: client.clone(),
            };
            Outcome::Data(Transaction {
                client,
                envelope,
                job_id: uuid::Uuid::now_v7().to_string(),
                client_ip: session.peer.ip(),
                received_at: Utc::now(),
            })
        }
        other => {
            // The gate only sends DATA here inside a transaction.
            session.state = other;
            Outcome::Reply(reply::bad_sequence("Need MAIL and RCPT before DATA"))
        }
    }
}

impl Transaction {
    /// The Received header to put in front of the body.
    pub fn received_header(&self, hostname: &str) -> String {
        received::header(&Trace {
            helo: &self.client.helo,
            client_ip: self.client_ip,
            hostname,
            esmtp: self.client.esmtp,
            id: &self.job_id,
            recipients: &self.envelope.recipients,
            date: self.received_at,
        })
    }

    /// The delivery job for the stored body.
    pub fn job(&self, body: &StoredBody) -> DeliveryJob {
        DeliveryJob {
            job_id: self.job_id.clone(),
            return_path: self.envelope.return_path.clone(),
            recipients: self
                .envelope
                .recipients
                .iter()
                .map(|address| JobRecipient {
                    address: address.clone(),
                    ..JobRecipient::default()
                })
                .collect(),
            blob_id: body.id.clone(),
            blob_size: body.size,
            received_at_ms: self.received_at.timestamp_millis(),
            client_ip: self.client_ip.to_string(),
            client_helo: self.client.helo.clone(),
            ..DeliveryJob::default()
        }
    }
}

/// Completes the transaction once the terminator was read: stores, publishes
/// and answers. Never 250 for a job the broker did not confirm.
pub async fn complete<B: Backend>(
    tx: Transaction,
    writer: B::Writer,
    outcome: DataOutcome,
    gw: &Gateway<B>,
) -> Reply {
    let started = Instant::now();
    match outcome {
        DataOutcome::Complete => {}
        DataOutcome::TooBig => {
            writer.abort().await;
            return reply::message_too_big();
        }
        DataOutcome::BareLineEnding => {
            writer.abort().await;
            return reply::bare_line_ending();
        }
        DataOutcome::StoreFailed(error) => {
            tracing::warn!(%error, job_id = %tx.job_id, "Failed to store a message body.");
            writer.abort().await;
            return reply::temporary_failure();
        }
    }
    let body = match writer.finish().await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, job_id = %tx.job_id, "Failed to store a message body.");
            return reply::temporary_failure();
        }
    };
    let job = tx.job(&body);
    match gw.backend.publish(&job).await {
        Ok(()) => {
            gw.metrics.accepted.inc();
            gw.metrics
                .queue_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                job_id = %job.job_id,
                blob_id = %body.id,
                size = body.size,
                recipients = job.recipients.len(),
                "Message queued."
            );
            reply::queued(&job.job_id)
        }
        Err(error) => {
            // The body stays behind as an orphan for the sweeper.
            tracing::warn!(%error, job_id = %job.job_id, "Failed to queue a message.");
            reply::temporary_failure()
        }
    }
}
