//! Turning jobs into mailstore deliveries and one batch of jobs into a verdict
//! per job.
//!
//! A batch holds whole jobs. Their deliveries go to mailstore `Deliver` in
//! calls of at most `delivery_batch_size` deliveries. While mailstore is down
//! the batch is held (not acked) and the same call is retried with backoff:
//! the idempotency keys make every retry safe, even when an earlier attempt
//! committed and only its answer was lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use mailfleet_proto::v1::{Delivery, DeliveryJob, DeliveryResult, JobRecipient, SieveOutbound};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::http::HealthFlag;
use tonic::{Code, Status};
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::finish::{Finisher, needs_finishing};
use crate::metrics::{Metrics, ReasonLabels};
use crate::outcome::{Outcome, Verdict, classify_unknown, verdict};
use crate::store::{CallFailure, Store, classify};

/// Longest wait for one Deliver answer before the call counts as failed.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// A decoded job held unacked while its deliveries are made.
#[derive(Debug)]
pub struct PendingJob {
    pub tag: u64,
    pub job_id: String,
    pub deliveries: Vec<Delivery>,
    /// The job as received (relay, retries and DSNs need all of it).
    pub job: DeliveryJob,
}

/// A job whose local delivery is done but which needs relaying, a retry
/// copy or a DSN before it can be acked (see `finish`).
#[derive(Debug, PartialEq)]
pub struct Handoff {
    pub tag: u64,
    pub job: DeliveryJob,
    /// One per delivery, with the outcome of local delivery.
    pub recipients: Vec<JobRecipient>,
    pub outcomes: Vec<Outcome>,
    /// What the recipients' Sieve scripts send, to publish before the ack.
    pub sieve: Vec<crate::sieve::Outbound>,
}

/// The idempotency key of one recipient's copy of one job.
pub fn idempotency_key(job_id: &str, recipient: &str) -> String {
    format!("{job_id}/{}", recipient.to_ascii_lowercase())
}

/// The deliveries of a job, one per distinct recipient, or why the job is
/// unusable (a metric label; such a job is dead-lettered).
pub fn plan(job: &DeliveryJob) -> Result<Vec<Delivery>, &'static str> {
    if job.job_id.is_empty() {
        return Err("missing_job_id");
    }
    if job.blob_id.is_empty() {
        return Err("missing_blob_id");
    }
    let mut seen = std::collections::HashSet::new();
    Ok(job
        .recipients
        .iter()
        .filter(|r| !r.address.is_empty())
        .filter(|r| seen.insert(r.address.to_ascii_lowercase()))
        .map(|r| Delivery {
            idempotency_key: idempotency_key(&job.job_id, &r.address),
            recipient: r.address.clone(),
            blob_id: job.blob_id.clone(),
            blob_size: job.blob_size,
            return_path: job.return_path.clone(),
            internal_date_ms: job.received_at_ms,
            spam: job.spam,
        })
        .collect())
}

/// What became of each job of a batch, by delivery tag.
#[derive(Debug, Default, PartialEq)]
pub struct BatchReport {
    /// Every recipient has a final outcome: ack.
    pub done: Vec<u64>,
    /// Some recipient failed temporarily: requeue after a pause.
    pub requeue: Vec<u64>,
    /// Given up at shutdown: leave unacked, the broker requeues them.
    pub abandoned: Vec<u64>,
    /// To be finished (relay, retry queue, DSN) before acking.
    pub handoff: Vec<Handoff>,
}

/// What a batch needs besides its jobs.
#[derive(Clone)]
pub struct BatchContext<S> {
    pub store: S,
    pub metrics: Metrics,
    /// Readiness of mailstore, as the Deliver calls see it.
    pub mailstore_ok: HealthFlag,
    /// Stops retrying (not calls in progress) at shutdown.
    pub shutdown: CancellationToken,
    pub max_deliveries_per_call: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Relay, retry queues and DSNs; without it a temporary failure
    /// requeues the job and a foreign recipient stays unserved.
    pub finisher: Option<Arc<Finisher>>,
}

enum Call {
    Answered(Vec<DeliveryResult>),
    Refused(Status),
    Abandoned,
}

impl<S: Store> BatchContext<S> {
    /// Delivers every job of the batch and reports a verdict per job.
    pub async fn process(&self, jobs: Vec<PendingJob>) -> BatchReport {
        // Every (job, delivery), and for each the index of the first delivery
        // with the same key: a job published twice can sit twice in one
        // batch, and one call must not carry a key twice.
        let all: Vec<(usize, &Delivery)> = jobs
            .iter()
            .enumerate()
            .flat_map(|(i, job)| job.deliveries.iter().map(move |d| (i, d)))
            .collect();
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut items: Vec<(usize, &Delivery)> = Vec::new();
        let mut slot_of: Vec<(usize, bool)> = Vec::with_capacity(all.len());
        for &(job, delivery) in &all {
            match first.get(delivery.idempotency_key.as_str()) {
                Some(&slot) => slot_of.push((slot, true)),
                None => {
                    first.insert(&delivery.idempotency_key, items.len());
                    slot_of.push((items.len(), false));
                    items.push((job, delivery));
                }
            }
        }

        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let mut sieve: HashMap<String, Vec<SieveOutbound>> = HashMap::new();
        if !self
            .deliver_all(&jobs, &items, &mut outcomes, &mut sieve)
            .await
        {
            return abandon(&jobs);
        }
        self.refine_unknown(&items, &mut outcomes).await;

        let mut per_job: Vec<Vec<Outcome>> = vec![Vec::new(); jobs.len()];
        for ((job, delivery), (slot, repeated)) in all.iter().zip(slot_of) {
            let outcome = match outcomes.get(slot).cloned().flatten() {
                None => Outcome::temp("no result"),
                Some(Outcome::Delivered) if repeated => Outcome::Duplicate,
                Some(o) => o,
            };
            if let (Some(pending), Some(list)) = (jobs.get(*job), per_job.get_mut(*job)) {
                self.record(pending, delivery, &outcome);
                list.push(outcome);
            }
        }
        let mut report = BatchReport::default();
        for (job, outcomes) in jobs.into_iter().zip(per_job) {
            let job_sieve: Vec<crate::sieve::Outbound> = job
                .deliveries
                .iter()
                .filter_map(|d| {
                    sieve
                        .remove(&d.idempotency_key)
                        .map(|items| crate::sieve::Outbound {
                            key: d.idempotency_key.clone(),
                            items,
                        })
                })
                .collect();
            if self.finisher.is_some()
                && (needs_finishing(&job.job, &outcomes) || !job_sieve.is_empty())
            {
                let recipients = job
                    .deliveries
                    .iter()
                    .map(|d| {
                        job.job
                            .recipients
                            .iter()
                            .find(|r| r.address.eq_ignore_ascii_case(&d.recipient))
                            .cloned()
                            .unwrap_or_else(|| JobRecipient {
                                address: d.recipient.clone(),
                                ..JobRecipient::default()
                            })
                    })
                    .collect();
                report.handoff.push(Handoff {
                    tag: job.tag,
                    job: job.job,
                    recipients,
                    outcomes,
                    sieve: job_sieve,
                });
                continue;
            }
            match verdict(&outcomes) {
                Verdict::Done => report.done.push(job.tag),
                Verdict::Requeue => report.requeue.push(job.tag),
            }
        }
        report
    }

    /// Fills `outcomes` from Deliver calls of at most the configured size;
    /// false when given up at shutdown.
    async fn deliver_all(
        &self,
        jobs: &[PendingJob],
        items: &[(usize, &Delivery)],
        outcomes: &mut [Option<Outcome>],
        sieve: &mut HashMap<String, Vec<SieveOutbound>>,
    ) -> bool {
        // Slicing below stays in bounds: start < end <= items.len() and
        // start <= at < stop <= end, and outcomes has items.len() slots.
        let limit = self.max_deliveries_per_call.max(1);
        let mut start = 0;
        while start < items.len() {
            let end = (start + limit).min(items.len());
            let chunk = &items[start..end];
            match self
                .call(chunk.iter().map(|(_, d)| (*d).clone()).collect())
                .await
            {
                Call::Answered(results) => assign(&mut outcomes[start..end], chunk, results, sieve),
                Call::Abandoned => return false,
                Call::Refused(status) => {
                    // Find the job the refusal belongs to: one call per job.
                    let mut at = start;
                    while at < end {
                        let job = items[at].0;
                        let mut stop = at;
                        while stop < end && items[stop].0 == job {
                            stop += 1;
                        }
                        let part = &items[at..stop];
                        let single = if part.len() == chunk.len() {
                            // The whole call was this one job already.
                            Call::Refused(status.clone())
                        } else {
                            self.call(part.iter().map(|(_, d)| (*d).clone()).collect())
                                .await
                        };
                        match single {
                            Call::Answered(results) => {
                                assign(&mut outcomes[at..stop], part, results, sieve)
                            }
                            Call::Abandoned => return false,
                            Call::Refused(status) => {
                                warn!(job_id = jobs.get(job).map_or("", |j| j.job_id.as_str()), code = ?status.code(), message = status.message(), "mailstore refused the job's deliveries; requeueing it.");
                                for slot in &mut outcomes[at..stop] {
                                    *slot = Some(Outcome::temp(format!(
                                        "mailstore refused: {}",
                                        status.message()
                                    )));
                                }
                            }
                        }
                        at = stop;
                    }
                }
            }
            start = end;
        }
        true
    }

    /// One Deliver call, retried with backoff while mailstore is unavailable.
    async fn call(&self, deliveries: Vec<Delivery>) -> Call {
        let mut backoff = Backoff::new(self.retry_min, self.retry_max);
        loop {
            let started = Instant::now();
            self.metrics.batch_size.observe(deliveries.len() as f64);
            let result =
                tokio::time::timeout(DELIVER_TIMEOUT, self.store.deliver(deliveries.clone()))
                    .await
                    .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer from mailstore")));
            self.metrics
                .deliver_seconds
                .observe(started.elapsed().as_secs_f64());
            let status = match result {
                Ok(results) => {
                    self.mailstore_ok.set(true);
                    return Call::Answered(results);
                }
                Err(status) => status,
            };
            self.metrics.deliver_errors.inc();
            if classify(&status) == CallFailure::Refused {
                return Call::Refused(status);
            }
            if matches!(status.code(), Code::Unavailable | Code::Unauthenticated) {
                self.mailstore_ok.set(false);
            }
            let delay = backoff.next_delay();
            warn!(code = ?status.code(), message = status.message(), ?delay, deliveries = deliveries.len(), "mailstore Deliver failed; holding the batch and retrying.");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return Call::Abandoned,
            }
        }
    }

    /// Tells a foreign domain from an unknown user for each UNKNOWN_RECIPIENT.
    async fn refine_unknown(&self, items: &[(usize, &Delivery)], outcomes: &mut [Option<Outcome>]) {
        let mut resolved: HashMap<String, Outcome> = HashMap::new();
        for ((_, delivery), slot) in items.iter().zip(outcomes.iter_mut()) {
            let Some(outcome) = slot.as_ref().filter(|o| o.is_unknown_recipient()) else {
                continue;
            };
            let key = delivery.recipient.to_ascii_lowercase();
            let refined = match resolved.get(&key) {
                Some(r) => r.clone(),
                None => {
                    let detail = match outcome {
                        Outcome::PermFail { detail, .. } => detail.clone(),
                        _ => String::new(),
                    };
                    let status = self
                        .store
                        .resolve(&delivery.recipient)
                        .await
                        .map_err(|s| s.message().to_owned());
                    let r = classify_unknown(status, &detail);
                    resolved.insert(key, r.clone());
                    r
                }
            };
            *slot = Some(refined);
        }
    }

    fn record(&self, job: &PendingJob, delivery: &Delivery, outcome: &Outcome) {
        self.metrics
            .deliveries
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
        if matches!(outcome, Outcome::Delivered) {
            // Jobs from gateways that predate accepted_at_ms: the start of
            // DATA is the closest known moment.
            let accepted = match job.job.accepted_at_ms {
                0 => job.job.received_at_ms,
                t => t,
            };
            self.metrics.stored(accepted);
        }
        match outcome {
            Outcome::Delivered | Outcome::Duplicate | Outcome::Relayed { .. } => {
                debug!(job_id = %job.job_id, recipient = %delivery.recipient, outcome = outcome.label(), "Delivered.");
            }
            Outcome::Remote => {
                debug!(job_id = %job.job_id, recipient = %delivery.recipient, "Not local; to be relayed.");
            }
            Outcome::TempFail { detail } => {
                warn!(job_id = %job.job_id, recipient = %delivery.recipient, %detail, "Delivery failed temporarily; the job will be retried.");
            }
            Outcome::PermFail { reason, detail } => {
                self.metrics
                    .failures
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
                warn!(job_id = %job.job_id, recipient = %delivery.recipient, reason, %detail, "Delivery failed permanently.");
            }
        }
    }
}

/// Matches results to deliveries by idempotency key (mailstore answers in
/// request order, but a key match does not depend on it).
fn assign(
    slots: &mut [Option<Outcome>],
    items: &[(usize, &Delivery)],
    results: Vec<DeliveryResult>,
    sieve: &mut HashMap<String, Vec<SieveOutbound>>,
) {
    let mut by_key: HashMap<String, DeliveryResult> = results
        .into_iter()
        .map(|mut r| {
            if !r.outbound.is_empty() {
                sieve.insert(r.idempotency_key.clone(), std::mem::take(&mut r.outbound));
            }
            (r.idempotency_key.clone(), r)
        })
        .collect();
    for (slot, (_, delivery)) in slots.iter_mut().zip(items) {
        *slot = Some(match by_key.remove(&delivery.idempotency_key) {
            Some(r) => Outcome::from_status(r.status, &r.detail),
            None => Outcome::temp("mailstore returned no result for this delivery"),
        });
    }
}

fn abandon(jobs: &[PendingJob]) -> BatchReport {
    BatchReport {
        abandoned: jobs.iter().map(|j| j.tag).collect(),
        ..BatchReport::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use mailfleet_proto::v1::{DeliveryStatus, JobRecipient, RecipientStatus};
    use prometheus_client::registry::Registry;

    use super::*;

    /// A mailstore in memory: knows `@local.test` users except `nobody@`,
    /// refuses blob "bad", fails with UNAVAILABLE `fail_first` times.
    #[derive(Clone, Default)]
    struct Fake {
        keys: Arc<Mutex<HashSet<String>>>,
        calls: Arc<Mutex<Vec<usize>>>,
        fail_first: Arc<Mutex<usize>>,
    }

    impl Store for Fake {
        async fn deliver(&self, deliveries: Vec<Delivery>) -> Result<Vec<DeliveryResult>, Status> {
            self.calls.lock().unwrap().push(deliveries.len());
            {
                let mut fail = self.fail_first.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err(Status::unavailable("down"));
                }
            }
            if deliveries.iter().any(|d| d.blob_id == "bad") {
                return Err(Status::invalid_argument("bad blob"));
            }
            let mut keys = self.keys.lock().unwrap();
            Ok(deliveries
                .into_iter()
                .map(|d| {
                    let status = if !d.recipient.ends_with("@local.test")
                        || d.recipient.starts_with("nobody@")
                    {
                        DeliveryStatus::DeliveryUnknownRecipient
                    } else if d.recipient.starts_with("full@") {
                        DeliveryStatus::DeliveryOverQuota
                    } else if keys.insert(d.idempotency_key.clone()) {
                        DeliveryStatus::DeliveryStored
                    } else {
                        DeliveryStatus::DeliveryDuplicate
                    };
                    DeliveryResult {
                        idempotency_key: d.idempotency_key,
                        status: status as i32,
                        detail: String::new(),
                        outbound: Vec::new(),
                    }
                })
                .collect())
        }

        async fn resolve(&self, address: &str) -> Result<RecipientStatus, Status> {
            Ok(if address.ends_with("@local.test") {
                RecipientStatus::RecipientUnknownUser
            } else {
                RecipientStatus::RecipientNotLocal
            })
        }
    }

    fn ctx(store: Fake, per_call: usize) -> (BatchContext<Fake>, Metrics) {
        let metrics = Metrics::new(&mut Registry::default());
        let ctx = BatchContext {
            store,
            metrics: metrics.clone(),
            mailstore_ok: mailfleet_runtime::http::Health::new().register("mailstore"),
            shutdown: CancellationToken::new(),
            max_deliveries_per_call: per_call,
            retry_min: Duration::from_millis(1),
            retry_max: Duration::from_millis(4),
            finisher: None,
        };
        (ctx, metrics)
    }

    fn job(tag: u64, id: &str, blob: &str, rcpts: &[&str]) -> PendingJob {
        let job = DeliveryJob {
            job_id: id.into(),
            blob_id: blob.into(),
            blob_size: 10,
            recipients: rcpts
                .iter()
                .map(|a| JobRecipient {
                    address: a.to_string(),
                    ..JobRecipient::default()
                })
                .collect(),
            ..DeliveryJob::default()
        };
        PendingJob {
            tag,
            job_id: id.into(),
            deliveries: plan(&job).unwrap(),
            job,
        }
    }

    fn count(metrics: &Metrics, outcome: &'static str) -> u64 {
        metrics
            .deliveries
            .get_or_create(&crate::metrics::OutcomeLabels { outcome })
            .get()
    }

    #[test]
    fn plan_dedups_recipients_and_rejects_jobs_without_ids() {
        let j = job(
            1,
            "j1",
            "b",
            &["A@local.test", "a@LOCAL.test", "b@local.test"],
        );
        let keys: Vec<_> = j
            .deliveries
            .iter()
            .map(|d| d.idempotency_key.as_str())
            .collect();
        assert_eq!(keys, ["j1/a@local.test", "j1/b@local.test"]);
        assert_eq!(plan(&DeliveryJob::default()), Err("missing_job_id"));
        let no_blob = DeliveryJob {
            job_id: "x".into(),
            ..DeliveryJob::default()
        };
        assert_eq!(plan(&no_blob), Err("missing_blob_id"));
    }

    #[tokio::test]
    async fn a_batch_is_split_into_calls_and_a_repeated_job_is_a_duplicate() {
        let fake = Fake::default();
        let (ctx, metrics) = ctx(fake.clone(), 3);
        let report = ctx
            .process(vec![
                job(1, "j1", "b", &["a@local.test", "b@local.test"]),
                job(2, "j2", "b", &["a@local.test"]),
                // The same job published twice, in one batch.
                job(3, "j1", "b", &["a@local.test", "b@local.test"]),
            ])
            .await;
        assert_eq!(report.done, [1, 2, 3]);
        assert_eq!(
            *fake.calls.lock().unwrap(),
            [3],
            "repeated keys are not sent twice"
        );
        assert_eq!(count(&metrics, "stored"), 3);
        assert_eq!(count(&metrics, "duplicate"), 2);

        let report = ctx
            .process(vec![job(4, "j1", "b", &["a@local.test"])])
            .await;
        assert_eq!(report.done, [4]);
        assert_eq!(count(&metrics, "duplicate"), 3);
    }

    #[tokio::test]
    async fn unknown_recipients_fail_permanently_and_foreign_ones_are_remote() {
        let (ctx, metrics) = ctx(Fake::default(), 10);
        let report = ctx
            .process(vec![
                job(1, "j1", "b", &["a@local.test", "nobody@local.test"]),
                job(2, "j2", "b", &["a@local.test", "x@remote.test"]),
            ])
            .await;
        assert_eq!(report.done, [1]);
        // Without a finisher (no relay) a foreign recipient cannot be served.
        assert_eq!(report.requeue, [2]);
        let reason = |reason| {
            metrics
                .failures
                .get_or_create(&ReasonLabels { reason })
                .get()
        };
        assert_eq!(reason("unknown_user"), 1);
        assert_eq!(count(&metrics, "remote"), 1);
        assert_eq!(count(&metrics, "stored"), 2);
    }

    #[tokio::test]
    async fn a_temporary_failure_requeues_only_its_job() {
        let (ctx, _) = ctx(Fake::default(), 10);
        let report = ctx
            .process(vec![
                job(1, "j1", "b", &["a@local.test", "full@local.test"]),
                job(2, "j2", "b", &["a@local.test"]),
            ])
            .await;
        assert_eq!(report.done, [2]);
        assert_eq!(report.requeue, [1]);
    }

    #[tokio::test]
    async fn unavailable_mailstore_is_retried_while_holding_the_batch() {
        let fake = Fake::default();
        *fake.fail_first.lock().unwrap() = 3;
        let (ctx, metrics) = ctx(fake.clone(), 10);
        let report = ctx
            .process(vec![job(1, "j1", "b", &["a@local.test"])])
            .await;
        assert_eq!(report.done, [1]);
        assert_eq!(fake.calls.lock().unwrap().len(), 4);
        assert_eq!(metrics.deliver_errors.get(), 3);
    }

    #[tokio::test]
    async fn a_refused_job_does_not_hold_back_the_others() {
        let fake = Fake::default();
        let (ctx, _) = ctx(fake.clone(), 10);
        let report = ctx
            .process(vec![
                job(1, "j1", "b", &["a@local.test"]),
                job(2, "j2", "bad", &["a@local.test", "b@local.test"]),
                job(3, "j3", "b", &["a@local.test"]),
            ])
            .await;
        assert_eq!(report.done, [1, 3]);
        assert_eq!(report.requeue, [2]);
        assert_eq!(*fake.calls.lock().unwrap(), [4, 1, 2, 1]);
    }

    #[tokio::test]
    async fn shutdown_abandons_a_held_batch() {
        let fake = Fake::default();
        *fake.fail_first.lock().unwrap() = usize::MAX;
        let (ctx, _) = ctx(fake, 10);
        ctx.shutdown.cancel();
        let report = ctx
            .process(vec![job(7, "j1", "b", &["a@local.test"])])
            .await;
        assert_eq!(report.abandoned, [7]);
        assert!(report.done.is_empty());
    }
}
