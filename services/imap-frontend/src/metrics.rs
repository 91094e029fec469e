//! Prometheus metrics of imap-frontend (`mailfleet_imap_…`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabel {
    pub command: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TlsLabel {
    pub tls: &'static str,
}

#[derive(Clone)]
pub(crate) struct Metrics {
    pub connections: Family<TlsLabel, Counter>,
    pub sessions: Gauge,
    pub idle: Gauge,
    pub commands: Family<CommandLabel, Counter>,
    pub latency: Histogram,
    pub bytes_out: Counter,
    pub tls_upgrades: Counter,
    /// The served TLS certificate's expiry (Unix seconds), when TLS is on.
    pub tls_cert_expiry: Gauge,
}

/// Command names kept as labels; anything else counts as "other".
const KNOWN: &[&str] = &[
    "capability",
    "noop",
    "logout",
    "starttls",
    "authenticate",
    "login",
    "select",
    "examine",
    "create",
    "delete",
    "rename",
    "subscribe",
    "unsubscribe",
    "list",
    "lsub",
    "status",
    "append",
    "check",
    "close",
    "expunge",
    "search",
    "fetch",
    "store",
    "copy",
    "move",
    "idle",
    "enable",
    "unselect",
    "id",
    "namespace",
    "uid expunge",
    "invalid",
];

impl Metrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            connections: Family::default(),
            sessions: Gauge::default(),
            idle: Gauge::default(),
            commands: Family::default(),
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            bytes_out: Counter::default(),
            tls_upgrades: Counter::default(),
            tls_cert_expiry: Gauge::default(),
        };
        registry.register(
            "mailfleet_imap_connections",
            "IMAP connections accepted, by implicit TLS",
            m.connections.clone(),
        );
        registry.register(
            "mailfleet_imap_sessions",
            "IMAP sessions open now",
            m.sessions.clone(),
        );
        registry.register(
            "mailfleet_imap_idle_sessions",
            "IMAP sessions in IDLE now",
            m.idle.clone(),
        );
        registry.register(
            "mailfleet_imap_commands",
            "IMAP commands by name and result",
            m.commands.clone(),
        );
        registry.register(
            "mailfleet_imap_command_seconds",
            "IMAP command latency",
            m.latency.clone(),
        );
        registry.register(
            "mailfleet_imap_body_bytes_out",
            "Message body octets sent",
            m.bytes_out.clone(),
        );
        registry.register(
            "mailfleet_imap_starttls",
            "Successful STARTTLS upgrades",
            m.tls_upgrades.clone(),
        );
        m
    }

    /// Exports the expiry of the TLS certificate `gauge` tracks (see
    /// `Tls::expiry_gauge`); only called when TLS is configured.
    pub(crate) fn register_tls(&mut self, registry: &mut Registry, gauge: Gauge) {
        self.tls_cert_expiry = gauge;
        registry.register(
            "mailfleet_imap_tls_cert_expiry_timestamp_seconds",
            "When the served TLS certificate expires (Unix time)",
            self.tls_cert_expiry.clone(),
        );
    }

    pub(crate) fn command(&self, name: &str, result: &'static str, took: Duration) {
        let command = if KNOWN.contains(&name) { name } else { "other" };
        self.commands
            .get_or_create(&CommandLabel {
                command: command.to_owned(),
                result,
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }
}
