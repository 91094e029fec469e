//! The `mailfleet_pop3_…` metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabel {
    pub command: &'static str,
}

#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub connections: Counter,
    pub sessions: Gauge,
    pub logins: Counter,
    pub commands: Family<CommandLabel, Counter>,
    pub retrieved_bytes: Counter,
    pub deleted: Counter,
    pub auth_failures: Counter,
    pub lock_conflicts: Counter,
    pub lock_waits: Counter,
    /// The served TLS certificate's expiry (Unix seconds), when TLS is on.
    pub tls_cert_expiry: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mailfleet_pop3_connections",
            "POP3 connections accepted",
            self.connections.clone(),
        );
        registry.register(
            "mailfleet_pop3_sessions",
            "POP3 connections open now",
            self.sessions.clone(),
        );
        registry.register(
            "mailfleet_pop3_logins",
            "POP3 sessions that logged in and locked their maildrop",
            self.logins.clone(),
        );
        registry.register(
            "mailfleet_pop3_commands",
            "POP3 commands received, by command",
            self.commands.clone(),
        );
        registry.register(
            "mailfleet_pop3_retrieved_bytes",
            "Message octets sent by RETR and TOP",
            self.retrieved_bytes.clone(),
        );
        registry.register(
            "mailfleet_pop3_deleted_messages",
            "Messages expunged by POP3 UPDATE",
            self.deleted.clone(),
        );
        registry.register(
            "mailfleet_pop3_auth_failures",
            "Failed POP3 logins",
            self.auth_failures.clone(),
        );
        registry.register(
            "mailfleet_pop3_lock_conflicts",
            "Logins refused because another session holds the maildrop",
            self.lock_conflicts.clone(),
        );
        registry.register(
            "mailfleet_pop3_lock_waits",
            "Logins that found the maildrop locked and waited for it",
            self.lock_waits.clone(),
        );
    }

    /// Exports the expiry of the TLS certificate `gauge` tracks (see
    /// `Tls::expiry_gauge`); only called when TLS is configured.
    pub fn register_tls(&mut self, registry: &mut Registry, gauge: Gauge) {
        self.tls_cert_expiry = gauge;
        registry.register(
            "mailfleet_pop3_tls_cert_expiry_timestamp_seconds",
            "When the served TLS certificate expires (Unix time)",
            self.tls_cert_expiry.clone(),
        );
    }

    pub fn command(&self, name: &'static str) {
        self.commands
            .get_or_create(&CommandLabel { command: name })
            .inc();
    }
}
