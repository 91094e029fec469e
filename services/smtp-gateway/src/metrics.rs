//! The `mailfleet_smtp_` metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of the rejection counter: the reply code.
pub type CodeLabel = [(&'static str, u16); 1];

#[derive(Clone)]
pub struct Metrics {
    /// Connections accepted (sessions started).
    pub connections: Counter,
    /// Connections refused by a connection limit.
    pub refused: Counter,
    /// Sessions running now.
    pub sessions: Gauge,
    /// Messages answered with 250 after end of data.
    pub accepted: Counter,
    /// Negative replies (4xx, 5xx) by code.
    pub rejected: Family<CodeLabel, Counter>,
    /// Bytes read during DATA.
    pub bytes_received: Counter,
    /// End of data to the 250: body store + confirmed publish.
    pub queue_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connections: Counter::default(),
            refused: Counter::default(),
            sessions: Gauge::default(),
            accepted: Counter::default(),
            rejected: Family::default(),
            bytes_received: Counter::default(),
            // 1 ms to about 16 s.
            queue_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `mailfleet_smtp` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("mailfleet_smtp");
        r.register(
            "connections",
            "SMTP connections accepted",
            self.connections.clone(),
        );
        r.register(
            "connections_refused",
            "SMTP connections refused by a connection limit",
            self.refused.clone(),
        );
        r.register(
            "sessions",
            "SMTP sessions in progress",
            self.sessions.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages answered 250 at the end of DATA",
            self.accepted.clone(),
        );
        r.register(
            "replies_rejected",
            "Negative SMTP replies, by reply code",
            self.rejected.clone(),
        );
        r.register(
            "received_bytes",
            "Bytes received in DATA",
            self.bytes_received.clone(),
        );
        r.register(
            "queue_duration_seconds",
            "Time from the end of DATA to the 250 (body stored, job confirmed)",
            self.queue_seconds.clone(),
        );
    }
}
