//! imap-frontend: the IMAP server (RFC 3501 IMAP4rev1 with IDLE, UIDPLUS,
//! MOVE, SPECIAL-USE, NAMESPACE, ID, ENABLE, UNSELECT, CHILDREN, SASL-IR,
//! LITERAL+, APPENDLIMIT, STARTTLS and implicit TLS; CONDSTORE and QRESYNC;
//! LIST-EXTENDED, LIST-STATUS, ESEARCH, STATUS=SIZE, QUOTA and UTF8=ACCEPT;
//! SORT and THREAD; \Recent, and IMAP4rev2 after ENABLE; APPEND streamed
//! to mailstore, literal8 included; BINARY; SEARCHRES). ManageSieve (RFC
//! 5804) has its own listener here too (`managesieve`).
//!
//! Main items: [`Listeners`] and [`run`]. The layers, each importing only
//! those below it: `connection` (the loop that reads a command, refuses it
//! when the state does not allow it, dispatches it and writes the reply)
//! above `cmd` (one file per command family, never importing each other)
//! above `session` (the RFC state enum with its data, the selected
//! mailbox's view, what the client enabled, resynchronisation) and
//! `errors` (the one map from mailstore failures to IMAP responses), above
//! [`proto`] (one typed [`Command`] from the exact bytes the client sent;
//! [`parse_command`] is the fuzz entry point; no I/O), `encode` and
//! `names`. mailstore speaks UIDs only: the session keeps the
//! sequence-number map. FETCH serves ENVELOPE and BODYSTRUCTURE from
//! metadata cached at delivery and streams body sections by byte range;
//! SEARCH is evaluated by mailstore unless the view can answer it. Change
//! events from RabbitMQ (`events`) wake IDLE sessions. No storage crate is
//! used here, and nothing is kept between connections.

#![forbid(unsafe_code)]

mod cmd;
mod conn;
mod connection;
mod encode;
mod errors;
mod events;
pub mod managesieve;
mod message_cache;
mod metrics;
mod names;
pub mod proto;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use mailfleet_runtime::http::Health;
use mailfleet_runtime::listener::{self, Handler, Limits};
use mailfleet_runtime::tls::Tls;
use mailfleet_runtime::{CancellationToken, Config, TaskTracker};
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::conn::{Conn, MaybeTls};
use crate::metrics::TlsLabel;
use crate::session::{Session, Shared};

pub use crate::proto::{Command, ParseError, parse_command};

pub use crate::connection::MEMORY_LITERAL_LIMIT;
/// Change events buffered per session before it must resynchronise.
const EVENT_BUFFER: usize = 1024;
/// Memory for what FETCH serves of messages that never changes, shared by
/// all sessions (see `message_cache.rs`).
const MESSAGE_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The bound sockets the service serves.
pub struct Listeners {
    /// Port 143: plain, STARTTLS when TLS is configured.
    pub imap: TcpListener,
    /// Port 993: implicit TLS; needs `tls_cert`/`tls_key`.
    pub imaps: Option<TcpListener>,
    /// Port 4190: ManageSieve, STARTTLS when TLS is configured.
    pub sieve: Option<TcpListener>,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses `config` gives the IMAP server; implicit TLS only
    /// when a certificate is configured.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let imap = listener::bind(config.imap_listen, "IMAP").await?;
        let imaps = if config.tls_cert.is_empty() {
            None
        } else {
            Some(listener::bind(config.imaps_listen, "IMAPS").await?)
        };
        Ok(Self {
            imap,
            imaps,
            sieve: Some(listener::bind(config.sieve_listen, "ManageSieve").await?),
            http: listener::bind(config.http_listen, "HTTP").await?,
        })
    }
}

struct Imap {
    shared: Arc<Shared>,
    implicit_tls: bool,
}

impl Handler for Imap {
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let metrics = &self.shared.metrics;
        metrics
            .connections
            .get_or_create(&TlsLabel {
                tls: if self.implicit_tls { "yes" } else { "no" },
            })
            .inc();
        let conn = if self.implicit_tls {
            let Some(tls) = &self.shared.tls else { return };
            let timeout = HANDSHAKE_TIMEOUT.min(self.shared.idle_timeout);
            match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
                Ok(Ok(s)) => Conn::new(MaybeTls::Tls(Box::new(s)), self.shared.idle_timeout),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed.");
                    return;
                }
                Err(_) => return,
            }
        } else {
            Conn::new(MaybeTls::Plain(stream), self.shared.idle_timeout)
        };
        metrics.sessions.inc();
        let mut session = Session::new(self.shared.clone(), conn, peer);
        if let Err(error) = session.run(shutdown).await {
            tracing::debug!(%error, "IMAP session ended with an I/O error.");
        }
        metrics.sessions.dec();
    }

    async fn refuse(self: Arc<Self>, mut stream: TcpStream) {
        if !self.implicit_tls {
            let bye = stream.write_all(b"* BYE Too many connections\r\n");
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, bye).await;
        }
        let _ = stream.shutdown().await;
    }
}

/// Runs imap-frontend until `shutdown` is cancelled and open sessions have
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
    let tls = Tls::from_config(&config).context("cannot load the TLS certificate")?;
    if let Some(tls) = &tls {
        tls.spawn_reloader(config.tls_reload_interval, shutdown.clone());
    }
    if listeners.imaps.is_some() && tls.is_none() {
        anyhow::bail!("the IMAPS listener needs MAILFLEET_TLS_CERT and MAILFLEET_TLS_KEY");
    }

    let mut registry = Registry::default();
    let mut metrics = metrics::Metrics::new(&mut registry);
    if let Some(tls) = &tls {
        metrics.register_tls(&mut registry, tls.expiry_gauge());
    }
    let sieve_channel = mailfleet_runtime::grpc::channel_for(&config)
        .context("cannot set up gRPC to mailstore for ManageSieve")?;
    let sieve_shared = Arc::new(managesieve::Shared::new(
        client.clone(),
        mailfleet_runtime::grpc::sieve_over(sieve_channel, config.service_token.expose()),
        tls.clone(),
        config.allow_plaintext_auth,
        config.sieve_max_script_size,
        config.imap_timeout,
        &mut registry,
    ));
    let health = Health::new();
    let tracker = TaskTracker::new();
    tracker.spawn(mailfleet_runtime::readiness::watch_mailstore(
        client.clone(),
        health.register("mailstore"),
        shutdown.clone(),
    ));
    let (events_tx, _) = tokio::sync::broadcast::channel(EVENT_BUFFER);
    let feed = events::Feed::default();
    tracker.spawn(events::consume(
        config.amqp_url.clone(),
        config.queue_prefix.clone(),
        events_tx.clone(),
        health.register("rabbitmq"),
        feed.clone(),
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
        tls,
        allow_plaintext: config.allow_plaintext_auth,
        max_line: config.imap_max_line_length.max(1024),
        // A message IMAP takes in is one SMTP would have taken too.
        append_limit: usize::try_from(config.smtp_max_message_size).unwrap_or(usize::MAX),
        idle_timeout: config.imap_timeout,
        metrics,
        events: events_tx,
        feed,
        messages: crate::message_cache::MessageCache::new(MESSAGE_CACHE_BYTES),
    });
    let limits = Limits {
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
    };
    if let Ok(addr) = listeners.imap.local_addr() {
        tracing::info!(%addr, "IMAP listening.");
    }
    // Behind a PROXY-protocol balancer the sessions see the real client.
    let proxy = listener::ProxyProtocol::from_config(&config);
    let plain = listener::serve_with(
        listeners.imap,
        Arc::new(Imap {
            shared: shared.clone(),
            implicit_tls: false,
        }),
        limits,
        proxy.clone(),
        "imap",
        shutdown.clone(),
        tracker.clone(),
    );
    let sieve = async {
        let Some(sieve) = listeners.sieve else { return };
        if let Ok(addr) = sieve.local_addr() {
            tracing::info!(%addr, "ManageSieve listening.");
        }
        listener::serve_with(
            sieve,
            Arc::new(managesieve::ManageSieve(sieve_shared)),
            limits,
            proxy.clone(),
            "managesieve",
            shutdown.clone(),
            tracker.clone(),
        )
        .await
    };
    let imap = async {
        match listeners.imaps {
            Some(imaps) => {
                if let Ok(addr) = imaps.local_addr() {
                    tracing::info!(%addr, "IMAPS listening.");
                }
                let secure = listener::serve_with(
                    imaps,
                    Arc::new(Imap {
                        shared,
                        implicit_tls: true,
                    }),
                    limits,
                    proxy.clone(),
                    "imaps",
                    shutdown.clone(),
                    tracker.clone(),
                );
                tokio::join!(plain, secure);
            }
            None => plain.await,
        }
    };
    tokio::join!(imap, sieve);

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
