//! pop3-frontend: the POP3 server (RFC 1939 with CAPA, RFC 2449; STLS,
//! RFC 2595; SASL PLAIN, RFC 5034) over mailstore's INBOX.
//!
//! [`run`] serves POP3 on the plain listener (with STLS when TLS is
//! configured) and, when given, implicit TLS on the POP3S listener, through
//! the shared accept loop of `mailfleet_runtime::listener`, plus `/healthz`,
//! `/readyz` (mailstore answering) and `/metrics` (`mailfleet_pop3_…`).
//! A login is one mailstore call (OpenMaildrop): the password check, an
//! expiring lease on the maildrop (the lock across every replica,
//! `-ERR [IN-USE]` for a second session after a few seconds' wait) and the
//! INBOX snapshot with each message's content key. RETR and TOP read the
//! body straight from object storage (`mailfleet-blob`), so they cost
//! mailstore and Postgres nothing; QUIT is one more call (CloseMaildrop)
//! that expunges the deleted messages, flags the retrieved ones \Seen and
//! releases the lease; a dropped connection changes nothing.
//!
//! Modules: `proto` (the pure codec: parser, byte-stuffing, TOP cut, SASL
//! PLAIN), `session` (state enum and command handlers), `maildrop` (login,
//! lease, snapshot, UPDATE), `connection` (I/O, TLS, body streaming),
//! `line` (bounded lines). Mail state comes from mailstore over gRPC;
//! bodies are only read, chunk by chunk, never held whole.

#![forbid(unsafe_code)]

mod connection;
mod line;
mod maildrop;
mod metrics;
pub mod proto;
mod session;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mailfleet_blob::BlobStore;
use mailfleet_runtime::grpc::MailStore;
use mailfleet_runtime::http::Health;
use mailfleet_runtime::listener::{self, Limits, ProxyProtocol};
use mailfleet_runtime::tls::Tls;
use mailfleet_runtime::{CancellationToken, Config, TaskTracker};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::connection::Pop3Listener;
use crate::metrics::Metrics;

/// The bound sockets the service serves. `pop3s` (implicit TLS) needs
/// `tls_cert` and `tls_key`.
pub struct Listeners {
    pub pop3: TcpListener,
    pub pop3s: Option<TcpListener>,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses `config` gives the POP3 server; implicit TLS only
    /// when a certificate is configured.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let pop3 = listener::bind(config.pop3_listen, "POP3").await?;
        let pop3s = if config.tls_cert.is_empty() {
            None
        } else {
            Some(listener::bind(config.pop3s_listen, "POP3S").await?)
        };
        Ok(Self {
            pop3,
            pop3s,
            http: listener::bind(config.http_listen, "HTTP").await?,
        })
    }
}

/// What every session shares.
pub(crate) struct Shared {
    pub client: MailStore,
    /// Message bodies, read by the content keys of the snapshot.
    pub blobs: BlobStore,
    pub tls: Option<Tls>,
    pub max_line: usize,
    pub idle_timeout: Duration,
    pub lease_ttl: Duration,
    pub allow_plaintext_auth: bool,
    pub hostname: String,
    pub metrics: Metrics,
}

/// Runs pop3-frontend until `shutdown` is cancelled and open sessions have
/// said goodbye (bounded by `config.shutdown_grace`).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = mailfleet_runtime::grpc::mailstore_client_for(&config).with_context(|| {
        format!(
            "cannot set up gRPC to mailstore at {:?}",
            config.mailstore_url
        )
    })?;
    let blobs = BlobStore::from_config(&config).context("cannot open the message body store")?;
    let tls = Tls::from_config(&config).context("cannot set up TLS for POP3")?;
    if listeners.pop3s.is_some() && tls.is_none() {
        anyhow::bail!("the POP3S listener needs MAILFLEET_TLS_CERT and MAILFLEET_TLS_KEY");
    }
    if let Some(tls) = &tls {
        tls.spawn_reloader(config.tls_reload_interval, shutdown.clone());
    }

    let mut metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    if let Some(tls) = &tls {
        metrics.register_tls(&mut registry, tls.expiry_gauge());
    }

    let health = Health::new();
    let tracker = TaskTracker::new();
    tracker.spawn(mailfleet_runtime::readiness::watch_mailstore(
        client.clone(),
        health.register("mailstore"),
        shutdown.clone(),
    ));
    let http = tokio::spawn(mailfleet_runtime::http::serve(
        listeners.http,
        health,
        Arc::new(registry),
        shutdown.clone(),
    ));

    let shared = Arc::new(Shared {
        client,
        blobs,
        tls,
        // RFC 2449 4: a command line may be up to 255 octets.
        max_line: config.pop3_max_line_length.max(255),
        // RFC 1939 3: the autologout timer is at least 10 minutes.
        idle_timeout: config.pop3_timeout,
        lease_ttl: config.pop3_lease_ttl.max(Duration::from_secs(1)),
        allow_plaintext_auth: config.allow_plaintext_auth,
        hostname: config.hostname.clone(),
        metrics,
    });
    let limits = Limits {
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
    };
    let proxy = ProxyProtocol::from_config(&config);
    let mut accept = Vec::new();
    for (listener, implicit_tls) in [(Some(listeners.pop3), false), (listeners.pop3s, true)] {
        let Some(listener) = listener else { continue };
        if let Ok(addr) = listener.local_addr() {
            let what = if implicit_tls { "POP3S" } else { "POP3" };
            tracing::info!(%addr, protocol = what, "Listening.");
        }
        let handler = Arc::new(Pop3Listener {
            shared: shared.clone(),
            implicit_tls,
        });
        accept.push(tokio::spawn(listener::serve_with(
            listener,
            handler,
            limits,
            proxy.clone(),
            if implicit_tls { "pop3s" } else { "pop3" },
            shutdown.clone(),
            tracker.clone(),
        )));
    }
    for task in accept {
        task.await.context("a POP3 accept loop failed")?;
    }

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
