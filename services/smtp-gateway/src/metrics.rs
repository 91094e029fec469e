//! The `mailfleet_smtp_` metrics, labelled by listener (`smtp`,
//! `submission`, `submissions`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub listener: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub listener: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// The `result` values of `mailfleet_smtp_spam_check_total`: rspamd's
/// actions, `unchecked` (rspamd did not answer) and `too_big`.
pub const SPAM_RESULTS: [&str; 8] = [
    "no_action",
    "greylist",
    "add_header",
    "rewrite_subject",
    "soft_reject",
    "reject",
    "unchecked",
    "too_big",
];

type HistogramFamily = Family<ListenerLabel, Histogram, fn() -> Histogram>;

fn queue_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

#[derive(Clone)]
pub struct Metrics {
    /// Connections accepted (sessions started).
    pub connections: Family<ListenerLabel, Counter>,
    /// Connections refused by a connection limit.
    pub refused: Family<ListenerLabel, Counter>,
    /// Sessions running now.
    pub sessions: Family<ListenerLabel, Gauge>,
    /// Sessions ended, by how (quit, closed, timeout, shutdown, limit, error, tls_failed).
    pub sessions_ended: Family<OutcomeLabel, Counter>,
    /// Messages answered with 250 after end of data.
    pub accepted: Family<ListenerLabel, Counter>,
    /// Negative replies (4xx, 5xx) by code.
    pub rejected: Family<CodeLabel, Counter>,
    /// Bytes read during DATA and BDAT.
    pub bytes_received: Family<ListenerLabel, Counter>,
    /// TLS handshakes by outcome (the TLS version, or "failed").
    pub tls: Family<OutcomeLabel, Counter>,
    /// AUTH attempts by result (success, failure, locked, error).
    pub auth: Family<OutcomeLabel, Counter>,
    /// End of data to the 250: body store + confirmed publish.
    pub queue_seconds: HistogramFamily,
    /// The served TLS certificate's expiry (Unix seconds); registered only
    /// when TLS is configured (see [`Metrics::register_tls`]).
    pub tls_cert_expiry: Gauge,
    /// Message bytes all sessions hold in memory now (see `memory`).
    pub body_memory_bytes: Gauge,
    /// The budget for them (`smtp_body_memory`).
    pub body_memory_limit: Gauge,
    /// Sessions waiting for the budget now.
    pub body_memory_waiting: Gauge,
    /// Times a session had to wait for the budget.
    pub body_memory_waits: Counter,
    /// Spam checks (MX role) by result, see [`SPAM_RESULTS`].
    pub spam_checks: Family<ResultLabel, Counter>,
    /// Spam checks rspamd did not answer (timeout, outage, bad answer).
    pub spam_check_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connections: Family::default(),
            refused: Family::default(),
            sessions: Family::default(),
            sessions_ended: Family::default(),
            accepted: Family::default(),
            rejected: Family::default(),
            bytes_received: Family::default(),
            tls: Family::default(),
            auth: Family::default(),
            queue_seconds: Family::new_with_constructor(queue_histogram),
            tls_cert_expiry: Gauge::default(),
            body_memory_bytes: Gauge::default(),
            body_memory_limit: Gauge::default(),
            body_memory_waiting: Gauge::default(),
            body_memory_waits: Counter::default(),
            spam_checks: Family::default(),
            spam_check_errors: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `mailfleet_smtp` prefix. The AUTH
    /// counters of the submission listeners start at 0 for every result, so
    /// `rate()` and `increase()` see the first failure.
    pub fn register(&self, registry: &mut Registry) {
        for listener in ["submission", "submissions"] {
            for outcome in ["success", "failure", "locked", "error"] {
                let _ = self.auth.get_or_create(&OutcomeLabel { listener, outcome });
            }
        }
        for result in SPAM_RESULTS {
            let _ = self.spam_checks.get_or_create(&ResultLabel { result });
        }
        let r = registry.sub_registry_with_prefix("mailfleet_smtp");
        r.register(
            "spam_check",
            "Spam checks by rspamd on the MX listener, by result",
            self.spam_checks.clone(),
        );
        r.register(
            "spam_check_errors",
            "Spam checks rspamd did not answer (timeout, outage, bad answer)",
            self.spam_check_errors.clone(),
        );
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
            "sessions_ended",
            "SMTP sessions ended, by outcome",
            self.sessions_ended.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages answered 250 at the end of DATA or BDAT LAST",
            self.accepted.clone(),
        );
        r.register(
            "replies_rejected",
            "Negative SMTP replies, by reply code",
            self.rejected.clone(),
        );
        r.register(
            "received_bytes",
            "Bytes received in DATA and BDAT",
            self.bytes_received.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes, by TLS version or failed",
            self.tls.clone(),
        );
        r.register(
            "auth_attempts",
            "AUTH attempts, by result",
            self.auth.clone(),
        );
        r.register(
            "body_memory_bytes",
            "Message bytes all SMTP sessions hold in memory (DKIM hold, write buffers)",
            self.body_memory_bytes.clone(),
        );
        r.register(
            "body_memory_limit_bytes",
            "Budget for the message bytes SMTP sessions hold in memory",
            self.body_memory_limit.clone(),
        );
        r.register(
            "body_memory_waiting",
            "SMTP sessions waiting for the message memory budget",
            self.body_memory_waiting.clone(),
        );
        r.register(
            "body_memory_waits",
            "Times an SMTP session waited for the message memory budget",
            self.body_memory_waits.clone(),
        );
        r.register(
            "queue_duration_seconds",
            "Time from the end of the data to the 250 (body stored, job confirmed)",
            self.queue_seconds.clone(),
        );
    }

    /// Exports the expiry of the TLS certificate `gauge` tracks (see
    /// `Tls::expiry_gauge`), under the `mailfleet_smtp` prefix.
    pub fn register_tls(&mut self, registry: &mut Registry, gauge: Gauge) {
        self.tls_cert_expiry = gauge;
        let r = registry.sub_registry_with_prefix("mailfleet_smtp");
        r.register(
            "tls_cert_expiry_timestamp_seconds",
            "When the served TLS certificate expires (Unix time)",
            self.tls_cert_expiry.clone(),
        );
    }

    /// Creates the per-listener series of a served listener, so they read 0
    /// before the first event instead of being absent.
    pub fn touch(&self, role: crate::role::Role) {
        let label = self.listener(role);
        let _ = self.connections.get_or_create(&label);
        let _ = self.refused.get_or_create(&label);
        let _ = self.sessions.get_or_create(&label);
        let _ = self.accepted.get_or_create(&label);
        let _ = self.bytes_received.get_or_create(&label);
        let _ = self.queue_seconds.get_or_create(&label);
    }

    /// Counts one spam check with `result` (one of [`SPAM_RESULTS`]).
    pub fn spam_check(&self, result: &'static str) {
        self.spam_checks
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn listener(&self, role: crate::role::Role) -> ListenerLabel {
        ListenerLabel {
            listener: role.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_attempts_exist_from_start_up() {
        let mut registry = Registry::default();
        Metrics::default().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for outcome in ["success", "failure", "locked", "error"] {
            let series = format!(
                "mailfleet_smtp_auth_attempts_total{{listener=\"submission\",outcome=\"{outcome}\"}} 0"
            );
            assert!(text.contains(&series), "{series} missing in:\n{text}");
        }
    }
}
