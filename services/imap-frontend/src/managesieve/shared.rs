//! What every ManageSieve session shares: settings, the mailstore and
//! Sieve clients, and the command counters. Below both the listener
//! (`mod.rs`) and the session, so neither imports the other back.

use std::time::Duration;

use mailfleet_runtime::grpc::{MailStore, Sieve};
use mailfleet_runtime::tls::Tls;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

/// Settings and handles shared by every ManageSieve session.
pub(crate) struct Shared {
    pub client: MailStore,
    pub sieve: Sieve,
    pub tls: Option<Tls>,
    pub allow_plaintext: bool,
    /// Largest script literal after login (`sieve_max_script_size`).
    pub max_script_size: usize,
    pub idle_timeout: Duration,
    commands: Family<CommandLabel, Counter>,
    pub(super) connections: Counter,
}

impl Shared {
    pub fn new(
        client: MailStore,
        sieve: Sieve,
        tls: Option<Tls>,
        allow_plaintext: bool,
        max_script_size: usize,
        idle_timeout: Duration,
        registry: &mut Registry,
    ) -> Self {
        let shared = Self {
            client,
            sieve,
            tls,
            allow_plaintext,
            max_script_size,
            idle_timeout,
            commands: Family::default(),
            connections: Counter::default(),
        };
        registry.register(
            "mailfleet_imap_managesieve_commands",
            "ManageSieve commands by name",
            shared.commands.clone(),
        );
        registry.register(
            "mailfleet_imap_managesieve_connections",
            "ManageSieve connections accepted",
            shared.connections.clone(),
        );
        shared
    }

    pub(super) fn command(&self, name: &'static str) {
        self.commands
            .get_or_create(&CommandLabel { command: name })
            .inc();
    }
}
