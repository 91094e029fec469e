//! The `mailfleet_delivery_` metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The `destination` label of the relay families: the host of a static
/// route (`MAILFLEET_RELAY_ROUTES`, a set the operator bounds), or
/// [`DNS_DESTINATION`] for every host found in DNS, so that mail to many
/// domains cannot grow one series per remote MX.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelayLabels {
    pub destination: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsLabels {
    pub tls: &'static str,
}

/// The `destination` of every relay to a host found in DNS (MX or implicit MX).
pub const DNS_DESTINATION: &str = "dns";

/// Every `result` of `relay_attempts`.
const RELAY_RESULTS: [&str; 4] = ["completed", "rejected", "failed", "connect_failed"];

fn relay_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of the worker; cheap to clone (shared atomics).
#[derive(Clone)]
pub struct Metrics {
    /// Jobs received from the work queue (redeliveries included).
    pub jobs_consumed: Counter,
    /// Jobs acked, requeued and dead-lettered.
    pub jobs: Family<OutcomeLabels, Counter>,
    /// Recipient copies by outcome: stored, duplicate, temp_failed, failed.
    pub deliveries: Family<OutcomeLabels, Counter>,
    /// Permanent failures by reason.
    pub failures: Family<ReasonLabels, Counter>,
    /// Jobs rejected to the dead-letter queue, by reason.
    pub dead_lettered: Family<ReasonLabels, Counter>,
    /// Deliveries per mailstore Deliver call.
    pub batch_size: Histogram,
    /// Seconds per mailstore Deliver call.
    pub deliver_seconds: Histogram,
    /// Failed Deliver calls (the batch is held and retried).
    pub deliver_errors: Counter,
    /// Consumer sessions that ended other than by shutdown.
    pub consumer_restarts: Counter,
    /// 1 while a consumer is subscribed.
    pub consuming: Gauge,
    /// SMTP transactions to remote hosts, by destination (see [`RelayLabels`]) and result.
    pub relay_attempts: Family<RelayLabels, Counter>,
    /// Seconds per relay transaction (connection set-up included), by destination.
    pub relay_seconds: Family<DestinationLabels, Histogram, fn() -> Histogram>,
    /// Outbound SMTP transactions by whether they ran over TLS.
    pub relay_tls: Family<TlsLabels, Counter>,
    /// Recipients put on a retry queue.
    pub deferred: Counter,
    /// Recipients that failed for good (a DSN is sent when the sender asked for one).
    pub bounced: Counter,
    /// DSN messages generated, by action (failed, delayed, delivered, relayed).
    pub dsns: Family<OutcomeLabels, Counter>,
    /// Retry copies dropped when they surfaced (cancelled, superseded, finished).
    pub stale_copies: Family<ReasonLabels, Counter>,
    /// Delivery attempts by attempt number class (first, retry).
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Jobs waiting in retry queues (from the deferred-jobs index).
    pub deferred_jobs: Gauge,
    /// Age in seconds of the oldest deferred job's first attempt.
    pub oldest_deferred_seconds: Gauge,
    /// Seconds from smtp-gateway's 250 to the copy stored in a mailbox,
    /// retries included (one observation per stored recipient copy).
    pub end_to_end_seconds: Histogram,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            jobs_consumed: Counter::default(),
            jobs: Family::default(),
            deliveries: Family::default(),
            failures: Family::default(),
            dead_lettered: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            deliver_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            deliver_errors: Counter::default(),
            consumer_restarts: Counter::default(),
            consuming: Gauge::default(),
            relay_attempts: Family::default(),
            relay_seconds: Family::new_with_constructor(relay_histogram),
            relay_tls: Family::default(),
            deferred: Counter::default(),
            bounced: Counter::default(),
            dsns: Family::default(),
            stale_copies: Family::default(),
            attempts: Family::default(),
            deferred_jobs: Gauge::default(),
            oldest_deferred_seconds: Gauge::default(),
            // 25 ms to about 3.6 hours: a retried message is still counted.
            end_to_end_seconds: Histogram::new(exponential_buckets(0.025, 2.0, 20)),
        };
        let r = registry.sub_registry_with_prefix("mailfleet_delivery");
        r.register(
            "jobs_consumed",
            "Jobs received from the work queue",
            m.jobs_consumed.clone(),
        );
        r.register(
            "jobs",
            "Jobs settled, by outcome (acked, requeued, dead_lettered)",
            m.jobs.clone(),
        );
        r.register(
            "deliveries",
            "Recipient copies, by outcome",
            m.deliveries.clone(),
        );
        r.register(
            "permanent_failures",
            "Recipients that failed permanently, by reason",
            m.failures.clone(),
        );
        r.register(
            "dead_lettered",
            "Jobs rejected to the dead-letter queue, by reason",
            m.dead_lettered.clone(),
        );
        r.register(
            "batch_size",
            "Deliveries per mailstore Deliver call",
            m.batch_size.clone(),
        );
        r.register(
            "deliver_seconds",
            "Duration of mailstore Deliver calls",
            m.deliver_seconds.clone(),
        );
        r.register(
            "deliver_errors",
            "Failed mailstore Deliver calls",
            m.deliver_errors.clone(),
        );
        r.register(
            "consumer_restarts",
            "Consumer sessions that ended other than by shutdown",
            m.consumer_restarts.clone(),
        );
        r.register(
            "consuming",
            "1 while a consumer is subscribed to the work queue",
            m.consuming.clone(),
        );
        r.register(
            "relay_attempts",
            "SMTP transactions to remote hosts, by destination and result",
            m.relay_attempts.clone(),
        );
        r.register(
            "relay_seconds",
            "Duration of relay transactions, by destination",
            m.relay_seconds.clone(),
        );
        r.register(
            "relay_tls",
            "Outbound SMTP transactions by TLS use",
            m.relay_tls.clone(),
        );
        r.register(
            "deferred",
            "Recipients put on a retry queue",
            m.deferred.clone(),
        );
        r.register(
            "bounced",
            "Recipients that failed for good",
            m.bounced.clone(),
        );
        r.register("dsns", "DSN messages generated, by action", m.dsns.clone());
        r.register(
            "stale_copies",
            "Retry copies dropped when they surfaced, by reason",
            m.stale_copies.clone(),
        );
        r.register(
            "attempts",
            "Job processing attempts (first, retry)",
            m.attempts.clone(),
        );
        r.register(
            "deferred_jobs",
            "Jobs waiting in retry queues",
            m.deferred_jobs.clone(),
        );
        r.register(
            "oldest_deferred_seconds",
            "Age of the oldest deferred job",
            m.oldest_deferred_seconds.clone(),
        );
        r.register(
            "end_to_end_seconds",
            "Time from the SMTP 250 to the copy stored in the mailbox",
            m.end_to_end_seconds.clone(),
        );
        m.init_known_labels();
        m
    }

    /// Creates every labelled counter whose label values are known in
    /// advance at 0, so it is in /metrics from start-up and `rate()` or
    /// `increase()` sees its first event. (The relay families are labelled
    /// by destination host, known only once a message goes there.)
    fn init_known_labels(&self) {
        for reason in [
            "bad_address",
            "body_missing",
            "no_mail_host",
            "no_public_mail_host",
            "not_local",
            "rejected",
            "unknown_recipient",
            "unknown_user",
        ] {
            let _ = self.failures.get_or_create(&ReasonLabels { reason });
        }
        for reason in ["undecodable", "missing_job_id", "missing_blob_id"] {
            let _ = self.dead_lettered.get_or_create(&ReasonLabels { reason });
        }
        for reason in ["cancelled", "superseded", "stale", "finished"] {
            let _ = self.stale_copies.get_or_create(&ReasonLabels { reason });
        }
        for outcome in ["first", "retry"] {
            let _ = self.attempts.get_or_create(&OutcomeLabels { outcome });
        }
        for tls in ["yes", "no"] {
            let _ = self.relay_tls.get_or_create(&TlsLabels { tls });
        }
        self.init_relay_destination(DNS_DESTINATION);
    }

    /// Creates the relay series of every static route's host at 0.
    pub fn init_relay_routes<'a>(&self, hosts: impl IntoIterator<Item = &'a str>) {
        for host in hosts {
            self.init_relay_destination(host);
        }
    }

    fn init_relay_destination(&self, destination: &str) {
        for result in RELAY_RESULTS {
            let _ = self.relay_attempts.get_or_create(&RelayLabels {
                destination: destination.to_owned(),
                result,
            });
        }
        let _ = self.relay_seconds.get_or_create(&DestinationLabels {
            destination: destination.to_owned(),
        });
    }

    /// Observes the end-to-end latency of a copy stored now, for a job
    /// accepted at `accepted_at_ms` (ms since the epoch; 0 when unknown).
    pub fn stored(&self, accepted_at_ms: i64) {
        if accepted_at_ms <= 0 {
            return;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // Clocks of different hosts can disagree a little: never negative.
        let ms = now_ms.saturating_sub(accepted_at_ms).max(0);
        self.end_to_end_seconds.observe(ms as f64 / 1000.0);
    }

    pub fn relay_attempt(&self, destination: &str, result: &'static str) {
        self.relay_attempts
            .get_or_create(&RelayLabels {
                destination: destination.to_owned(),
                result,
            })
            .inc();
    }

    pub fn relay_seconds(&self, destination: &str, seconds: f64) {
        self.relay_seconds
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .observe(seconds);
    }

    pub fn relay_tls(&self, tls: bool) {
        let tls = if tls { "yes" } else { "no" };
        self.relay_tls.get_or_create(&TlsLabels { tls }).inc();
    }

    pub fn job(&self, outcome: &'static str) {
        self.jobs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn dead_letter(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&ReasonLabels { reason })
            .inc();
        self.job("dead_lettered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_the_alerts_use_exist_from_start_up() {
        let mut registry = Registry::default();
        let _metrics = Metrics::new(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for series in [
            "mailfleet_delivery_attempts_total{outcome=\"first\"} 0",
            "mailfleet_delivery_dead_lettered_total{reason=\"undecodable\"} 0",
            "mailfleet_delivery_permanent_failures_total{reason=\"unknown_user\"} 0",
            "mailfleet_delivery_relay_tls_total{tls=\"yes\"} 0",
            "mailfleet_delivery_stale_copies_total{reason=\"cancelled\"} 0",
            "mailfleet_delivery_relay_attempts_total{destination=\"dns\",result=\"completed\"} 0",
            "mailfleet_delivery_relay_attempts_total{destination=\"dns\",result=\"connect_failed\"} 0",
            "mailfleet_delivery_relay_seconds_bucket{le=\"0.005\",destination=\"dns\"} 0",
            "mailfleet_delivery_relay_seconds_count{destination=\"dns\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing in:\n{text}");
        }
    }

    #[test]
    fn stored_copies_observe_the_end_to_end_latency() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Unknown acceptance time: nothing to measure.
        metrics.stored(0);
        metrics.stored(now - 2_000);
        // A gateway clock ahead of ours counts as no delay, never negative.
        metrics.stored(now + 60_000);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
        };
        assert_eq!(value("mailfleet_delivery_end_to_end_seconds_count"), 2.0);
        let sum = value("mailfleet_delivery_end_to_end_seconds_sum");
        assert!((2.0..10.0).contains(&sum), "sum {sum}");
    }
}
