//! The gateway shared by all sessions: settings, backend, metrics, TLS and
//! the inbound verifier.

use std::sync::Arc;
use std::time::Duration;

use mailfleet_runtime::Config;
use mailfleet_runtime::tls::Tls;
use tokio_util::sync::CancellationToken;

use crate::memory::BodyMemory;
use crate::metrics::Metrics;
use crate::role::Role;
use crate::spam::SpamFilter;
use crate::verify::Verifier;

/// The settings a session uses, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub max_commands: usize,
    /// Wait for the next command (RFC 5321 4.5.3.2.7).
    pub timeout: Duration,
    /// Wait for more body octets inside DATA or BDAT (RFC 5321 4.5.3.2.5).
    pub data_timeout: Duration,
    /// Wait for the next command on submission before AUTH succeeded.
    pub preauth_timeout: Duration,
    /// Password AUTH without TLS (off: only under TLS).
    pub allow_plaintext_auth: bool,
    /// Largest message kept in memory for DKIM on the MX role.
    pub verify_max_size: u64,
    /// Message bytes all sessions together may hold in memory.
    pub body_memory: u64,
    /// Longest text line in DATA (CRLF not counted); 0 for no limit.
    pub max_text_line: usize,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            hostname: config.hostname.clone(),
            max_message_size: config.smtp_max_message_size,
            max_recipients: config.smtp_max_recipients.max(1),
            // RFC 5321 4.5.3.1.4: never below 512.
            max_line_length: config.smtp_max_line_length.max(512),
            max_commands: config.smtp_max_commands.max(1),
            timeout: config.smtp_timeout,
            data_timeout: config.smtp_data_timeout,
            preauth_timeout: config.smtp_preauth_timeout.min(config.smtp_timeout),
            allow_plaintext_auth: config.allow_plaintext_auth,
            verify_max_size: config.smtp_verify_max_size,
            body_memory: config.smtp_body_memory,
            max_text_line: config.smtp_max_text_line,
        }
    }
}

/// Everything a session needs; one per gateway, shared by `Arc` between the
/// listeners (each listener is an [`Endpoint`] with its role).
pub struct Gateway<B> {
    pub settings: Settings,
    pub backend: B,
    pub metrics: Metrics,
    pub tls: Option<Tls>,
    /// SPF/DKIM/DMARC on the MX role; `None` when disabled.
    pub verifier: Option<Verifier>,
    /// rspamd on the MX role; `None` when `spam_url` is empty.
    pub spam: Option<SpamFilter>,
    /// The budget of message bytes held in memory by all sessions.
    pub body_memory: Arc<BodyMemory>,
    /// Cancelled when the shutdown grace period is about to run out: a
    /// transaction still in DATA or BDAT then gets its 421 instead of a
    /// silently closed connection.
    pub drain_expired: CancellationToken,
}

impl<B> Gateway<B> {
    /// A gateway without TLS or inbound verification; see the `with_*`
    /// methods.
    pub fn new(settings: Settings, backend: B, metrics: Metrics) -> Self {
        Self {
            body_memory: BodyMemory::new(settings.body_memory, &metrics),
            settings,
            backend,
            metrics,
            tls: None,
            verifier: None,
            spam: None,
            drain_expired: CancellationToken::new(),
        }
    }

    pub fn with_tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_spam(mut self, spam: Option<SpamFilter>) -> Self {
        self.spam = spam;
        self
    }

    pub fn with_verifier(mut self, verifier: Option<Verifier>) -> Self {
        self.verifier = verifier;
        self
    }
}

/// One listener: the shared gateway and the role of this port. The
/// runtime's accept loop drives it (see `connection`).
pub struct Endpoint<B> {
    pub gateway: Arc<Gateway<B>>,
    pub role: Role,
}

impl<B> Endpoint<B> {
    pub fn new(gateway: Arc<Gateway<B>>, role: Role) -> Arc<Self> {
        Arc::new(Self { gateway, role })
    }
}
