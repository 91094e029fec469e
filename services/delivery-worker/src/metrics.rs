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
        m
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
