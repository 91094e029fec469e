//! The gateway shared by all sessions: settings, backend, metrics.

use std::time::Duration;

use mailfleet_runtime::Config;

use crate::metrics::Metrics;

/// The settings a session uses, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub max_commands: usize,
    pub timeout: Duration,
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
        }
    }
}

/// Everything a session needs; one per listener, shared by `Arc`.
pub struct Gateway<B> {
    pub settings: Settings,
    pub backend: B,
    pub metrics: Metrics,
}

impl<B> Gateway<B> {
    pub fn new(settings: Settings, backend: B, metrics: Metrics) -> Self {
        Self {
            settings,
            backend,
            metrics,
        }
    }
}
