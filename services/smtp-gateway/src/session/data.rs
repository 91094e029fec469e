//! DATA (RFC 5321 4.1.1.4) and the durability steps of the gateway: the body
//! is stored, the job is published and confirmed, and only then 250.
//! The streaming of the body itself is socket I/O and lives in the
//! connection module; this module starts and completes the transaction
//! (for DATA and for BDAT alike), with the checks that need the message:
//! DKIM/DMARC on the MX role, the From: header on submission.

use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;

use super::intake::Intake;
use super::transaction::Transaction;
use super::{Outcome, Session, State};
use crate::backend::{Backend, BackendError, BodyWriter};
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

/// How the reception of the body ended (the terminator was read in all
/// cases; a connection lost in DATA never gets here).
#[derive(Debug)]
pub enum DataOutcome {
    Complete,
    TooBig,
    BareLineEnding,
    LineTooLong,
    StoreFailed(BackendError),
}

/// Starts DATA: the transaction leaves the session whatever its outcome, so
/// the session is back to "greeted" when the body has been read.
pub(super) fn begin(session: &mut Session) -> Outcome {
    match begin_transaction(session) {
        Some(tx) => Outcome::Data(Box::new(tx)),
        // The gate only sends DATA here inside a transaction.
        None => Outcome::Reply(reply::bad_sequence("Need MAIL and RCPT before DATA")),
    }
}

/// Takes the open transaction out of the session (back to "greeted").
pub(super) fn begin_transaction(session: &mut Session) -> Option<Transaction> {
    let state = std::mem::replace(&mut session.state, State::Fresh);
    match state {
        State::Mail { client, envelope } => {
            session.state = State::Ready {
                client: client.clone(),
            };
            Some(Transaction {
                client,
                envelope,
                job_id: uuid::Uuid::now_v7().to_string(),
                client_ip: session.peer.ip(),
                received_at: Utc::now(),
                role: session.role,
                tls: session.tls.clone(),
                account: session.account.clone(),
            })
        }
        other => {
            session.state = other;
            None
        }
    }
}

/// Completes the transaction once the terminator (or the last chunk) was
/// read: checks, stores, publishes and answers. Never 250 for a job the
/// broker did not confirm.
pub async fn complete<B: Backend>(
    tx: Transaction,
    intake: Intake<B::Writer>,
    outcome: DataOutcome,
    gw: &Gateway<B>,
) -> Reply {
    let started = Instant::now();
    let label = gw.metrics.listener(tx.role);
    match outcome {
        DataOutcome::Complete => {}
        DataOutcome::TooBig => {
            intake.abort().await;
            return reply::message_too_big();
        }
        DataOutcome::BareLineEnding => {
            intake.abort().await;
            return reply::bare_line_ending();
        }
        DataOutcome::LineTooLong => {
            intake.abort().await;
            return reply::text_line_too_long();
        }
        DataOutcome::StoreFailed(error) => {
            tracing::warn!(%error, job_id = %tx.job_id, "Failed to store a message body.");
            intake.abort().await;
            return reply::temporary_failure();
        }
    }
    if let Some(account) = &tx.account {
        // Two From fields let the sender check read one and a reader or a
        // signer another: refuse every repeated singleton field outright.
        if let Some(field) = intake.repeated_field() {
            intake.abort().await;
            return reply::repeated_header(field);
        }
        match intake.header_from() {
            Some(froms) => {
                for from in froms {
                    match super::mail::owns(gw, account, &from).await {
                        Ok(true) => {}
                        Ok(false) => {
                            intake.abort().await;
                            return reply::from_not_owned();
                        }
                        Err(reply) => {
                            intake.abort().await;
                            return reply;
                        }
                    }
                }
            }
            None => {
                intake.abort().await;
                return reply::from_not_owned();
            }
        }
    }
    // The charge for what the writer buffers lasts until its upload ends.
    let super::intake::Finished {
        writer,
        charge,
        spam,
    } = match intake.finish(&tx, gw).await {
        Ok(finished) => finished,
        Err(reply) => return reply,
    };
    let body = writer.finish().await;
    drop(charge);
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, job_id = %tx.job_id, "Failed to store a message body.");
            return reply::temporary_failure();
        }
    };
    let mut job = tx.job(&body);
    job.spam = spam;
    // One trace per message: a root span whose context travels with the job
    // (AMQP headers) to delivery-worker and from there to mailstore.
    let span = tracing::info_span!(parent: None, "smtp.message", job_id = %job.job_id);
    let trace_id = mailfleet_runtime::trace_context::trace_id_of(&span).unwrap_or_default();
    match gw.backend.publish(&job).instrument(span).await {
        Ok(()) => {
            gw.metrics.accepted.get_or_create(&label).inc();
            gw.metrics
                .queue_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                job_id = %job.job_id,
                %trace_id,
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
