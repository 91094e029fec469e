//! imap-frontend: the IMAP server.
//!
//! For now an honest placeholder until the IMAP issue lands: it greets, answers
//! every command with `BAD not implemented yet` (LOGOUT works), and is wired
//! like the real service will be — the shared accept loop of
//! `mailfleet_runtime::listener`, bounded command lines, an idle timeout,
//! `* BYE` on shutdown, `/healthz` `/readyz` `/metrics`, and readiness that
//! follows mailstore really answering.
//!
//! Main items: [`Listeners`] and [`run`]. The session lives in `session`, the
//! pure reply logic in `reply`. No storage crate is used here: all mail state
//! comes from mailstore over gRPC.

#![forbid(unsafe_code)]

mod line;
mod readiness;
mod reply;
mod session;

use std::sync::Arc;

use anyhow::Context;
use mailfleet_runtime::http::Health;
use mailfleet_runtime::listener::{self, Limits};
use mailfleet_runtime::{CancellationToken, Config, TaskTracker};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The bound sockets the service serves.
pub struct Listeners {
    pub imap: TcpListener,
    pub http: TcpListener,
}

/// Counters exposed on `/metrics` as `mailfleet_imap_…`.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub connections: Counter,
    pub commands: Counter,
    pub sessions: Gauge,
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "mailfleet_imap_connections",
            "IMAP connections accepted",
            self.connections.clone(),
        );
        registry.register(
            "mailfleet_imap_commands",
            "IMAP commands received",
            self.commands.clone(),
        );
        registry.register(
            "mailfleet_imap_sessions",
            "IMAP sessions open now",
            self.sessions.clone(),
        );
    }
}

/// Runs imap-frontend until `shutdown` is cancelled and open sessions have
/// said goodbye (bounded by `config.shutdown_grace`).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = mailfleet_runtime::grpc::mailstore_client(
        &config.mailstore_url,
        config.service_token.expose(),
    )
    .with_context(|| format!("invalid mailstore URL {:?}", config.mailstore_url))?;

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    let health = Health::new();
    let tracker = TaskTracker::new();
    tracker.spawn(readiness::watch(
        client,
        health.register("mailstore"),
        shutdown.clone(),
    ));
    let http = tokio::spawn(mailfleet_runtime::http::serve(
        listeners.http,
        health,
        Arc::new(registry),
        shutdown.clone(),
    ));

    if let Ok(addr) = listeners.imap.local_addr() {
        tracing::info!(%addr, "IMAP listening.");
    }
    let handler = Arc::new(session::Imap {
        max_line: config.imap_max_line_length.max(64),
        idle_timeout: config.imap_timeout,
        metrics,
    });
    let limits = Limits {
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
    };
    listener::serve(
        listeners.imap,
        handler,
        limits,
        "imap",
        shutdown.clone(),
        tracker.clone(),
    )
    .await;

    tracker.close();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("Sessions still open after the shutdown grace period.");
    }
    match http.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("the health and metrics HTTP server failed"),
        Err(e) => Err(e).context("the health and metrics HTTP task failed"),
    }
}
