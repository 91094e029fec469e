//! What happens to a job after local delivery: remote recipients are
//! relayed, recipients that failed temporarily go to a retry queue (one new
//! job holding only them, so a slow recipient never holds back the others),
//! and the sender gets a DSN for recipients that failed for good (or were
//! delivered, when NOTIFY=SUCCESS asked for it).
//!
//! Order matters for the durability contract: the DSN job and the retry
//! copy are published (with confirms) *before* the original job is acked;
//! the retry copy is indexed in mailstore before it is published, so every
//! copy in a retry queue has its index row. Publishing is retried until it
//! succeeds or the worker shuts down (then the job stays unacked and comes
//! back). A job that comes back after its remote recipients were relayed is
//! relayed again: that, and a peer that accepted while our connection broke,
//! are the two cases where a remote peer can see a duplicate.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailfleet_blob::BlobStore;
use mailfleet_proto::v1::{
    CheckDeferredRequest, CommitRetryRequest, DeliveryJob, DsnRet, FinishDeferredRequest,
    IndexDeferredRequest, JobRecipient, PendingRetriesRequest,
};
use mailfleet_queue::Publisher;
use mailfleet_runtime::CancellationToken;
use prost::Message;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::dkim::Outbound;
use crate::dsn::{self, Original, RecipientReport};
use crate::metrics::{Metrics, OutcomeLabels, ReasonLabels};
use crate::outcome::Outcome;
use crate::relay::Relay;
use crate::retry::Schedule;

/// NOTIFY bits of queue.proto.
const NOTIFY_SUCCESS: u32 = 1;
const NOTIFY_FAILURE: u32 = 2;
const NOTIFY_NEVER: u32 = 8;

/// Longest wait for one publisher confirm.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(15);
/// Longest wait for one mailstore call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a job ends after [`Finisher::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Ack it.
    Done,
    /// Leave it unacked: the worker is stopping.
    Abandoned,
}

pub struct Finisher {
    pub relay: Arc<Relay>,
    pub publisher: Publisher,
    pub outbound: Outbound,
    pub blobs: BlobStore,
    pub schedule: Schedule,
    /// Our name in DSNs.
    pub hostname: String,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether the job needs more than an ack after local delivery.
pub fn needs_finishing(job: &DeliveryJob, outcomes: &[Outcome]) -> bool {
    job.attempt > 0
        || job.retry_generation > 0
        || job
            .recipients
            .iter()
            .any(|r| r.notify & NOTIFY_SUCCESS != 0)
        || outcomes
            .iter()
            .any(|o| !matches!(o, Outcome::Delivered | Outcome::Duplicate))
}

/// Whether the sender asked to hear about a failure (the default) or a success.
fn wants_failure(r: &JobRecipient) -> bool {
    r.notify & NOTIFY_NEVER == 0 && (r.notify == 0 || r.notify & NOTIFY_FAILURE != 0)
}

fn wants_success(r: &JobRecipient) -> bool {
    r.notify & NOTIFY_NEVER == 0 && r.notify & NOTIFY_SUCCESS != 0
}

/// Whether a DSN carries the whole original message. RET=FULL is honoured
/// for a failure report only: a success or delay report carries the headers
/// whatever RET says (as Postfix's success and delay notices do), because
/// anyone on port 25 can give NOTIFY=SUCCESS RET=FULL with a forged MAIL
/// FROM and have us mail a copy of the message to that address. Large
/// messages come back as headers in every case.
pub fn returns_full(ret: i32, blob_size: u64, reports: &[RecipientReport]) -> bool {
    ret != DsnRet::Hdrs as i32
        && reports.iter().any(|r| r.action == "failed")
        && usize::try_from(blob_size).unwrap_or(usize::MAX) <= dsn::MAX_RETURNED_BODY
}

impl Finisher {
    /// Whether a retry copy that surfaced is still the live one. Errors let
    /// it through: delivery is idempotent locally, and dropping a live copy
    /// would lose mail.
    pub async fn is_live(&self, job: &DeliveryJob) -> bool {
        if job.attempt == 0 && job.retry_generation == 0 {
            return true;
        }
        let mut client = self.outbound.clone();
        let call = client.check_deferred(CheckDeferredRequest {
            job_id: job.job_id.clone(),
            attempt: job.attempt,
            retry_generation: job.retry_generation,
        });
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(answer)) => {
                let answer = answer.into_inner();
                if !answer.proceed {
                    info!(job_id = %job.job_id, attempt = job.attempt, reason = %answer.reason, "Dropping a retry copy that is no longer live.");
                    let reason = match answer.reason.as_str() {
                        "cancelled" => "cancelled",
                        "superseded" => "superseded",
                        "stale" => "stale",
                        _ => "finished",
                    };
                    self.metrics
                        .stale_copies
                        .get_or_create(&ReasonLabels { reason })
                        .inc();
                }
                answer.proceed
            }
            Ok(Err(status)) => {
                warn!(job_id = %job.job_id, code = ?status.code(), "Cannot check a retry copy; processing it.");
                true
            }
            Err(_) => {
                warn!(job_id = %job.job_id, "Checking a retry copy timed out; processing it.");
                true
            }
        }
    }

    /// Relays, schedules the retry and sends DSNs; `outcomes` come from local
    /// delivery, one per `recipients` entry.
    pub async fn finish(
        &self,
        job: &DeliveryJob,
        recipients: Vec<JobRecipient>,
        mut outcomes: Vec<Outcome>,
        sieve: Vec<crate::sieve::Outbound>,
    ) -> Finished {
        if self.send_sieve(job, &sieve).await == Finished::Abandoned {
            return Finished::Abandoned;
        }
        self.metrics
            .attempts
            .get_or_create(&OutcomeLabels {
                outcome: if job.attempt == 0 { "first" } else { "retry" },
            })
            .inc();
        let remote: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o, Outcome::Remote))
            .map(|(i, _)| i)
            .collect();
        if !remote.is_empty() {
            let rcpts: Vec<JobRecipient> = remote
                .iter()
                .filter_map(|&i| recipients.get(i).cloned())
                .collect();
            let relayed = self.relay.relay(job, &rcpts).await;
            for (i, outcome) in remote.into_iter().zip(relayed) {
                self.record(job, recipients.get(i), &outcome);
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = outcome;
                }
            }
        }

        let now = now_ms();
        let received = if job.received_at_ms > 0 {
            job.received_at_ms
        } else {
            now
        };
        let elapsed = Duration::from_millis(u64::try_from(now - received).unwrap_or(0));
        let expired = self.schedule.expired(elapsed);

        let mut reports = Vec::new();
        let mut deferred: Vec<(JobRecipient, String)> = Vec::new();
        for (r, outcome) in recipients.iter().zip(&outcomes) {
            match outcome {
                Outcome::Delivered | Outcome::Duplicate | Outcome::Relayed { .. } => {
                    if wants_success(r) {
                        let (action, diagnostic) = match outcome {
                            Outcome::Relayed { detail } => ("relayed", detail.clone()),
                            _ => ("delivered", "250 2.0.0 delivered to mailbox".into()),
                        };
                        reports.push(RecipientReport {
                            address: r.address.clone(),
                            orcpt: r.orcpt.clone(),
                            action,
                            status: "2.0.0".into(),
                            diagnostic,
                        });
                    }
                }
                Outcome::PermFail { detail, .. } => {
                    self.metrics.bounced.inc();
                    if wants_failure(r) {
                        reports.push(RecipientReport {
                            address: r.address.clone(),
                            orcpt: r.orcpt.clone(),
                            action: "failed",
                            status: dsn::status_of(detail, true),
                            diagnostic: detail.clone(),
                        });
                    }
                }
                Outcome::TempFail { detail } if expired => {
                    self.metrics.bounced.inc();
                    warn!(job_id = %job.job_id, recipient = %r.address, %detail, "Delivery lifetime over; giving up.");
                    if wants_failure(r) {
                        let status = match dsn::status_of(detail, false).as_str() {
                            "4.0.0" => "4.4.7".to_owned(),
                            s => s.to_owned(),
                        };
                        reports.push(RecipientReport {
                            address: r.address.clone(),
                            orcpt: r.orcpt.clone(),
                            action: "failed",
                            status,
                            diagnostic: format!("delivery time expired; last error: {detail}"),
                        });
                    }
                }
                Outcome::TempFail { detail } => deferred.push((r.clone(), detail.clone())),
                Outcome::Remote => deferred.push((r.clone(), "not relayed".into())),
            }
        }

        if !reports.is_empty() && !job.return_path.is_empty() {
            let sent = self.send_dsn(job, &reports).await;
            if sent == Finished::Abandoned {
                return sent;
            }
        } else if !reports.is_empty() {
            debug!(job_id = %job.job_id, "No DSN for a message from the null sender.");
        }

        if deferred.is_empty() {
            if job.attempt > 0 || job.retry_generation > 0 {
                let mut client = self.outbound.clone();
                let call = client.finish_deferred(FinishDeferredRequest {
                    job_id: job.job_id.clone(),
                });
                if !matches!(tokio::time::timeout(CALL_TIMEOUT, call).await, Ok(Ok(_))) {
                    // Harmless: a later copy of this job finds no live work.
                    warn!(job_id = %job.job_id, "Could not remove the job from the deferred index.");
                }
            }
            return Finished::Done;
        }
        self.defer(job, now, elapsed, deferred).await
    }

    async fn defer(
        &self,
        job: &DeliveryJob,
        now: i64,
        elapsed: Duration,
        deferred: Vec<(JobRecipient, String)>,
    ) -> Finished {
        let delay = self.schedule.delay(job.attempt, elapsed);
        let mut next = job.clone();
        next.attempt = job.attempt.saturating_add(1);
        if next.first_attempt_ms == 0 {
            next.first_attempt_ms = now;
        }
        next.last_errors.clear();
        let last_error = deferred.first().map(|(_, e)| e.clone()).unwrap_or_default();
        for (r, error) in &deferred {
            next.last_errors.insert(r.address.clone(), error.clone());
        }
        next.recipients = deferred.into_iter().map(|(r, _)| r).collect();
        self.metrics.deferred.inc_by(next.recipients.len() as u64);
        let next_attempt_ms = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(0));
        let index = IndexDeferredRequest {
            job: next.encode_to_vec(),
            next_attempt_ms,
            last_error: last_error.clone(),
        };
        let indexed = self
            .persist("index the deferred job", || {
                let mut client = self.outbound.clone();
                let request = index.clone();
                async move {
                    tokio::time::timeout(CALL_TIMEOUT, client.index_deferred(request))
                        .await
                        .map_err(|_| "timed out".to_owned())?
                        .map(|_| ())
                        .map_err(|s| s.message().to_owned())
                }
            })
            .await;
        if !indexed {
            return Finished::Abandoned;
        }
        let published = self
            .persist("publish the retry copy", || async {
                self.publisher
                    .publish_retry(&next, delay, PUBLISH_DEADLINE)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        if !published {
            return Finished::Abandoned;
        }
        info!(job_id = %job.job_id, attempt = next.attempt, recipients = next.recipients.len(), ?delay, %last_error, "Delivery deferred.");
        Finished::Done
    }

    /// Builds the DSN, stores it and publishes it as a new job. The job id
    /// is derived from the original's, so a redelivered original produces a
    /// job that local delivery deduplicates.
    async fn send_dsn(&self, job: &DeliveryJob, reports: &[RecipientReport]) -> Finished {
        let action = reports.first().map_or("failed", |r| r.action);
        let full = returns_full(job.ret, job.blob_size, reports);
        let content = if full {
            self.blobs.get(&job.blob_id).await.map(|b| b.to_vec())
        } else {
            let end = job.blob_size.min(64 * 1024);
            self.blobs
                .get_range(&job.blob_id, 0..end)
                .await
                .map(|b| dsn::header_section(&b).to_vec())
        };
        let content = match content {
            Ok(c) => c,
            Err(error) => {
                // The report still goes out, without the original.
                warn!(job_id = %job.job_id, %error, "Cannot read the original message for the DSN.");
                Vec::new()
            }
        };
        let dsn_id = format!("{}.dsn{}", job.job_id, job.attempt);
        let message = match dsn::build(
            &self.hostname,
            &job.return_path,
            &format!("{dsn_id}@{}", self.hostname),
            &Original {
                envid: &job.envid,
                arrival_ms: job.received_at_ms,
                content: &content,
                full,
            },
            reports,
        ) {
            Ok(m) => m,
            Err(error) => {
                warn!(job_id = %job.job_id, %error, "Cannot build the DSN; the sender is not told.");
                return Finished::Done;
            }
        };
        let Some(blob) = self.store_message("store the DSN", &message).await else {
            return Finished::Abandoned;
        };
        let dsn_job = DeliveryJob {
            job_id: dsn_id,
            return_path: String::new(),
            recipients: vec![JobRecipient {
                address: job.return_path.clone(),
                notify: NOTIFY_NEVER,
                ..JobRecipient::default()
            }],
            blob_id: blob.id,
            blob_size: blob.size,
            received_at_ms: now_ms(),
            accepted_at_ms: now_ms(),
            client_helo: self.hostname.clone(),
            ..DeliveryJob::default()
        };
        if !self.publish("publish the DSN", &dsn_job).await {
            return Finished::Abandoned;
        }
        self.metrics
            .dsns
            .get_or_create(&OutcomeLabels { outcome: action })
            .inc();
        info!(job_id = %job.job_id, dsn_job = %dsn_job.job_id, to = %job.return_path, recipients = reports.len(), action, "DSN sent.");
        Finished::Done
    }

    /// Publishes what the recipients' Sieve scripts send (redirects,
    /// vacation replies) as jobs of their own, before the original is acked.
    async fn send_sieve(&self, job: &DeliveryJob, sieve: &[crate::sieve::Outbound]) -> Finished {
        for outbound in sieve {
            for (n, o) in outbound.items.iter().enumerate() {
                let id = crate::sieve::job_id(&outbound.key, n);
                let (blob_id, blob_size) = if o.kind == "vacation" {
                    let message = match crate::sieve::vacation_message(
                        o,
                        &format!("{id}@{}", self.hostname),
                    ) {
                        Ok(m) => m,
                        Err(error) => {
                            warn!(job_id = %job.job_id, %error, "Cannot build a vacation reply; not sent.");
                            continue;
                        }
                    };
                    let stored = self
                        .store_message("store the vacation reply", &message)
                        .await;
                    let Some(blob) = stored else {
                        return Finished::Abandoned;
                    };
                    (blob.id, blob.size)
                } else {
                    (job.blob_id.clone(), job.blob_size)
                };
                let out =
                    crate::sieve::job(job, o, id, blob_id, blob_size, now_ms(), &self.hostname);
                if !self.publish("publish a Sieve job", &out).await {
                    return Finished::Abandoned;
                }
                info!(job_id = %job.job_id, sieve_job = %out.job_id, kind = %o.kind, to = %o.to, "Sieve message sent.");
            }
        }
        Finished::Done
    }

    /// Stores a message this worker wrote (a DSN, a vacation reply) as a
    /// body of its own, retried like every step before the ack; `None`
    /// when it could not be stored before shutdown.
    async fn store_message(&self, what: &str, message: &[u8]) -> Option<mailfleet_blob::BlobRef> {
        self.persist_value(what, || async {
            let mut writer = self.blobs.writer();
            writer.write(message).await.map_err(|e| e.to_string())?;
            writer.finish().await.map_err(|e| e.to_string())
        })
        .await
    }

    /// Publishes a job this worker made, retried like every step before
    /// the ack; false when it could not be published before shutdown.
    async fn publish(&self, what: &str, job: &DeliveryJob) -> bool {
        self.persist(what, || async {
            self.publisher
                .publish_job(job, PUBLISH_DEADLINE)
                .await
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn persist<F, Fut>(&self, what: &str, f: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        self.persist_value(what, f).await.is_some()
    }

    /// Tries `f` until it succeeds or the worker stops.
    async fn persist_value<T, F, Fut>(&self, what: &str, f: F) -> Option<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let error = match f().await {
                Ok(v) => return Some(v),
                Err(error) => error,
            };
            let delay = backoff.next_delay();
            warn!(%error, ?delay, "Failed to {what}; retrying.");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    fn record(&self, job: &DeliveryJob, r: Option<&JobRecipient>, outcome: &Outcome) {
        self.metrics
            .deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
        let recipient = r.map_or("", |r| r.address.as_str());
        match outcome {
            Outcome::Relayed { detail } => {
                debug!(job_id = %job.job_id, %recipient, %detail, "Relayed.")
            }
            Outcome::TempFail { detail } => {
                info!(job_id = %job.job_id, %recipient, %detail, "Relay failed temporarily.")
            }
            Outcome::PermFail { reason, detail } => {
                self.metrics
                    .failures
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
                warn!(job_id = %job.job_id, %recipient, reason, %detail, "Relay failed permanently.");
            }
            _ => {}
        }
    }
}

/// Publishes the jobs an operator asked to retry now, every `interval`
/// until shutdown (see `mailstore::queue_index` for why this is safe with
/// several workers and across crashes), and keeps the queue gauges current.
pub async fn poll_retries(
    outbound: Outbound,
    publisher: Publisher,
    metrics: Metrics,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let pending = tokio::time::timeout(
            CALL_TIMEOUT,
            outbound
                .clone()
                .pending_retries(PendingRetriesRequest { limit: 100 }),
        )
        .await;
        let answer = match pending {
            Ok(Ok(r)) => r.into_inner(),
            _ => continue,
        };
        metrics
            .deferred_jobs
            .set(i64::try_from(answer.deferred).unwrap_or(i64::MAX));
        let age = if answer.oldest_first_attempt_ms > 0 {
            (now_ms() - answer.oldest_first_attempt_ms).max(0) / 1000
        } else {
            0
        };
        metrics.oldest_deferred_seconds.set(age);
        let jobs = answer.jobs;
        for bytes in jobs {
            let Ok(job) = mailfleet_queue::decode_job(&bytes) else {
                continue;
            };
            if let Err(error) = publisher.publish_job(&job, PUBLISH_DEADLINE).await {
                warn!(job_id = %job.job_id, %error, "Cannot publish a job an operator retried; trying again later.");
                continue;
            }
            let mut client = outbound.clone();
            let commit = client.commit_retry(CommitRetryRequest {
                job_id: job.job_id.clone(),
                retry_generation: job.retry_generation,
            });
            match tokio::time::timeout(CALL_TIMEOUT, commit).await {
                Ok(Ok(_)) => {
                    info!(job_id = %job.job_id, "Retrying a deferred job now, as an operator asked.")
                }
                _ => {
                    warn!(job_id = %job.job_id, "Published a retried job but could not record it; it may be attempted twice.")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(action: &'static str) -> RecipientReport {
        RecipientReport {
            address: "r@remote.example".into(),
            orcpt: String::new(),
            action,
            status: "2.0.0".into(),
            diagnostic: String::new(),
        }
    }

    /// Issue 16: NOTIFY=SUCCESS RET=FULL must not make us mail a whole
    /// message to whatever MAIL FROM said; failures still honour RET.
    #[test]
    fn only_failure_reports_return_the_full_message() {
        let full = DsnRet::Full as i32;
        let unspecified = DsnRet::Unspecified as i32;
        let hdrs = DsnRet::Hdrs as i32;
        for action in ["delivered", "relayed", "delayed"] {
            assert!(!returns_full(full, 100, &[report(action)]), "{action}");
        }
        assert!(returns_full(full, 100, &[report("failed")]));
        assert!(returns_full(unspecified, 100, &[report("failed")]));
        assert!(returns_full(
            full,
            100,
            &[report("delivered"), report("failed")]
        ));
        assert!(!returns_full(hdrs, 100, &[report("failed")]));
        let huge = dsn::MAX_RETURNED_BODY as u64 + 1;
        assert!(!returns_full(full, huge, &[report("failed")]));
    }
}
