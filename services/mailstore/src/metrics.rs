//! Prometheus metrics of mailstore (`mailfleet_store_…`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    /// Deliveries by outcome (stored, duplicate, unknown_recipient, ...).
    pub deliveries: Family<StatusLabel, Counter>,
    /// Deliveries per Deliver call.
    pub batch_size: Histogram,
    /// Seconds per Deliver call.
    pub batch_seconds: Histogram,
    /// Authenticate results (ok, failed, locked).
    pub auth: Family<StatusLabel, Counter>,
    /// Message bodies SEARCH read from object storage (BODY, TEXT and
    /// header fields the cache does not hold): one per message and search.
    pub search_reads: Counter,
    /// SEARCH calls stopped because the caller went away.
    pub search_cancelled: Counter,
    /// Sieve scripts run at delivery (one per copy of an account with an active script).
    pub sieve_runs: Counter,
    /// Sieve actions by kind (keep, fileinto, redirect, reject, discard, vacation).
    pub sieve_actions: Family<KindLabel, Counter>,
    /// Sieve scripts that failed at run time (or no longer compile): the copy went to INBOX.
    pub sieve_errors: Counter,
    /// ResolveRecipient calls by answer (local, unknown_user, not_local).
    pub recipient_checks: Family<StatusLabel, Counter>,
    /// Domain, account and alias changes committed (each is a directory event).
    pub directory_changes: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            deliveries: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            auth: Family::default(),
            search_reads: Counter::default(),
            search_cancelled: Counter::default(),
            sieve_runs: Counter::default(),
            sieve_actions: Family::default(),
            sieve_errors: Counter::default(),
            recipient_checks: Family::default(),
            directory_changes: Counter::default(),
        };
        registry.register(
            "mailfleet_store_recipient_checks",
            "ResolveRecipient calls by answer",
            m.recipient_checks.clone(),
        );
        registry.register(
            "mailfleet_store_directory_changes",
            "Domain, account and alias changes committed; the last one's number is the seq of its directory event",
            m.directory_changes.clone(),
        );
        registry.register(
            "mailfleet_store_sieve_runs",
            "Sieve scripts run at delivery, one per copy",
            m.sieve_runs.clone(),
        );
        registry.register(
            "mailfleet_store_sieve_actions",
            "Sieve actions at delivery by kind",
            m.sieve_actions.clone(),
        );
        registry.register(
            "mailfleet_store_sieve_errors",
            "Sieve scripts that failed at run time (the copy went to INBOX)",
            m.sieve_errors.clone(),
        );
        registry.register(
            "mailfleet_store_deliveries",
            "Deliveries by outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "mailfleet_store_deliver_batch_size",
            "Deliveries per Deliver call",
            m.batch_size.clone(),
        );
        registry.register(
            "mailfleet_store_deliver_seconds",
            "Duration of Deliver calls",
            m.batch_seconds.clone(),
        );
        registry.register(
            "mailfleet_store_auth",
            "Authentication attempts by result",
            m.auth.clone(),
        );
        registry.register(
            "mailfleet_store_search_reads",
            "Messages SEARCH read from object storage (once per message and search, whatever the number of body keys)",
            m.search_reads.clone(),
        );
        registry.register(
            "mailfleet_store_search_cancelled",
            "SEARCH calls stopped before their end because the caller went away (an IMAP client that left)",
            m.search_cancelled.clone(),
        );
        m
    }

    /// Counts one Sieve action by its kind.
    pub fn sieve_action(&self, action: &mailfleet_sieve::Action) {
        use mailfleet_sieve::Action;
        let kind = match action {
            Action::Keep { .. } => "keep",
            Action::FileInto { .. } => "fileinto",
            Action::Redirect { .. } => "redirect",
            Action::Reject { .. } => "reject",
            Action::Ereject { .. } => "ereject",
            Action::Discard => "discard",
            Action::Vacation(_) => "vacation",
        };
        self.sieve_actions.get_or_create(&KindLabel { kind }).inc();
    }

    /// The login guard's lockouts by scope (pair, address), each known
    /// scope present from start-up so alerts see the first one.
    pub fn register_lockouts(
        &self,
        registry: &mut Registry,
        lockouts: Family<StatusLabel, Counter>,
    ) {
        for status in ["pair", "address"] {
            let _ = lockouts.get_or_create(&StatusLabel { status });
        }
        for status in ["ok", "failed", "locked"] {
            let _ = self.auth.get_or_create(&StatusLabel { status });
        }
        registry.register(
            "mailfleet_store_auth_lockouts",
            "Logins locked out by the login guard, by scope (pair: one account from one address; address)",
            lockouts,
        );
    }
}
