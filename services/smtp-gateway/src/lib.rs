//! smtp-gateway: the ESMTP server of mailfleet (RFC 5321), in three roles:
//! MX (port 25: local recipients only, no AUTH, inbound SPF/DKIM/DMARC),
//! submission (587: STARTTLS, AUTH before MAIL) and submissions (465:
//! implicit TLS, RFC 8314). See [`Role`].
//!
//! Each transaction's body is stored in object storage, one confirmed
//! delivery job is published on RabbitMQ, and only then the client hears 250
//! (the durability contract of `docs/ARCHITECTURE.md`).
//!
//! Layers, from the wire inwards: [`connection`] (socket I/O, TLS, limits,
//! timeouts, shutdown) over [`session`] (the state machine, one module per
//! command group) over [`codec`] (pure parsing and reply text). The session
//! reaches the rest of mailfleet only through [`backend::Backend`], so tests
//! can swap in fakes; [`verify`] does the DNS-based checks. AUTH failures are
//! limited by mailstore's login guard, shared with IMAP and POP3. This crate
//! does not touch Postgres.

#![forbid(unsafe_code)]

pub mod backend;
pub mod codec;
mod connection;
pub mod gateway;
pub mod memory;
pub mod metrics;
pub mod recipients;
pub mod role;
pub mod session;
pub mod spam;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use mailfleet_blob::BlobStore;
use mailfleet_queue::Publisher;
use mailfleet_runtime::http::{Health, HealthFlag};
use mailfleet_runtime::listener::{self, Limits, ProxyProtocol};
use mailfleet_runtime::tls::Tls;
use mailfleet_runtime::{CancellationToken, Config, TaskTracker};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use backend::{Backend, Mailfleet};
pub use gateway::{Endpoint, Gateway, Settings};
pub use metrics::Metrics;
pub use role::Role;

/// The bound sockets the gateway serves.
pub struct Listeners {
    /// SMTP, MX role (port 25 in production, 2525 in dev).
    pub smtp: TcpListener,
    /// Submission with STARTTLS (587; dev 2587). Served only with TLS
    /// configured (or `allow_plaintext_auth`).
    pub submission: Option<TcpListener>,
    /// Submission with implicit TLS (465; dev 2465). Needs TLS.
    pub submissions: Option<TcpListener>,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses `config` gives the gateway: the MX port always,
    /// the submission ports when [`serves_submission`] says so.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let smtp = listener::bind(config.smtp_listen, "SMTP").await?;
        let (submission, submissions) = if serves_submission(config) {
            (
                Some(listener::bind(config.submission_listen, "SMTP submission").await?),
                Some(listener::bind(config.submissions_listen, "SMTP submissions").await?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            smtp,
            submission,
            submissions,
            http: listener::bind(config.http_listen, "HTTP").await?,
        })
    }
}

/// Whether the submission listeners (587, 465) are served: only with TLS
/// configured, so a deployment without certificates runs the MX role alone
/// and binds nothing else.
pub fn serves_submission(config: &Config) -> bool {
    !config.tls_cert.is_empty() && !config.tls_key.is_empty()
}

/// How often readiness is re-checked.
const READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the gateway until `shutdown` is cancelled and the sessions have
/// finished (bounded by `config.shutdown_grace`). Fails at start-up when
/// RabbitMQ cannot be reached, the blob store is misconfigured, the TLS files
/// cannot be read, or a submissions listener is given without TLS.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let blobs = BlobStore::from_config(&config)
        .with_context(|| format!("cannot open the blob store at {}", config.blob_url))?;
    let tls = Tls::from_config(&config).context("cannot load the TLS certificate")?;
    if listeners.submissions.is_some() && tls.is_none() {
        return Err(anyhow!(
            "the submissions listener (implicit TLS) needs tls_cert and tls_key"
        ));
    }
    if listeners.submission.is_some() && tls.is_none() && !config.allow_plaintext_auth {
        return Err(anyhow!(
            "the submission listener needs tls_cert and tls_key (or allow_plaintext_auth)"
        ));
    }
    let verifier = verify::Verifier::from_config(&config)
        .context("cannot set up inbound SPF/DKIM/DMARC verification")?;
    let spam = spam::SpamFilter::from_config(&config).context("cannot set up the spam check")?;
    if let Some(spam) = &spam {
        tracing::info!(
            rspamd = spam.rspamd.authority(),
            fail_open = spam.fail_open,
            "Spam checks by rspamd on the MX listener."
        );
    }
    check_broker(&config).await?;
    let mailstore = mailfleet_runtime::grpc::mailstore_client_for(&config).with_context(|| {
        format!(
            "cannot set up gRPC to mailstore at {:?}",
            config.mailstore_url
        )
    })?;
    let backend = Mailfleet {
        mailstore,
        blobs,
        publisher: Publisher::new(&config.amqp_url, &config.queue_prefix),
        publish_timeout: config.smtp_publish_timeout,
        recipients: Arc::new(recipients::RecipientCache::new(
            config.smtp_recipient_cache_ttl,
        )),
    };

    let mut metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    backend.recipients.register(&mut registry);
    if let Some(tls) = &tls {
        metrics.register_tls(&mut registry, tls.expiry_gauge());
    }
    let health = Health::new();
    let broker_ready = health.register("rabbitmq");
    let mailstore_ready = health.register("mailstore");

    let tracker = TaskTracker::new();
    tracker.spawn(recipients::watch(
        backend.recipients.clone(),
        config.amqp_url.clone(),
        config.queue_prefix.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(watch_readiness(
        backend.clone(),
        broker_ready,
        mailstore_ready,
        shutdown.clone(),
    ));
    {
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(error) =
                mailfleet_runtime::http::serve(listeners.http, health, Arc::new(registry), shutdown)
                    .await
            {
                tracing::error!(%error, "The health and metrics server failed.");
            }
        });
    }

    if let Some(tls) = &tls {
        tls.spawn_reloader(config.tls_reload_interval, shutdown.clone());
    }
    let gateway = Arc::new(
        Gateway::new(Settings::from_config(&config), backend, metrics)
            .with_tls(tls)
            .with_verifier(verifier)
            .with_spam(spam),
    );
    let limits = Limits {
        max_connections: config.max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
    };
    let proxy = ProxyProtocol::from_config(&config);
    let serve = |listener: TcpListener, role: Role| {
        gateway.metrics.touch(role);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, listener = role.name(), "SMTP listening.");
        }
        listener::serve_with(
            listener,
            Endpoint::new(gateway.clone(), role),
            limits,
            proxy.clone(),
            role.name(),
            shutdown.clone(),
            tracker.clone(),
        )
    };
    let mx = serve(listeners.smtp, Role::Mx);
    let submission = listeners.submission.map(|l| serve(l, Role::Submission));
    let submissions = listeners.submissions.map(|l| serve(l, Role::Submissions));
    tokio::join!(
        mx,
        async {
            if let Some(s) = submission {
                s.await
            }
        },
        async {
            if let Some(s) = submissions {
                s.await
            }
        },
    );

    tracker.close();
    // Sessions in DATA finish their transaction; shortly before the grace
    // period ends the ones still waiting for body bytes are answered 421, so
    // no client sees the connection just drop.
    let last_word = (config.shutdown_grace / 10).min(Duration::from_secs(1));
    let drain = config.shutdown_grace.saturating_sub(last_word);
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        gateway.drain_expired.cancel();
        if tokio::time::timeout(last_word, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace = ?config.shutdown_grace,
                "Sessions still running after the shutdown grace period; leaving them."
            );
        }
    }
    Ok(())
}

/// RabbitMQ is needed from the first message on: refuse to start without it
/// (the publisher declares the topology itself on every new channel).
async fn check_broker(config: &Config) -> anyhow::Result<()> {
    let url = mailfleet_queue::redact(&config.amqp_url);
    let connection = mailfleet_queue::connect(&config.amqp_url)
        .await
        .map_err(|error| {
            let reason = match &error {
                mailfleet_queue::QueueError::Connect(detail) => detail
                    .strip_prefix(&format!("{url}: "))
                    .unwrap_or(detail)
                    .to_owned(),
                other => other.to_string(),
            };
            anyhow!("cannot reach RabbitMQ at {url}; is it running? ({reason})")
        })?;
    let _ = connection.close(200, "start-up check done".into()).await;
    Ok(())
}

/// Keeps `/readyz` true to the dependencies really answering.
async fn watch_readiness(
    backend: Mailfleet,
    broker: HealthFlag,
    mailstore: HealthFlag,
    shutdown: CancellationToken,
) {
    loop {
        let (broker_ok, mailstore_ok) =
            tokio::join!(backend.publisher.ready(), backend.mailstore_ready());
        if broker.get() != broker_ok || mailstore.get() != mailstore_ok {
            tracing::info!(
                rabbitmq = broker_ok,
                mailstore = mailstore_ok,
                "Readiness changed."
            );
        }
        broker.set(broker_ok);
        mailstore.set(mailstore_ok);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(READINESS_INTERVAL) => {}
        }
    }
}
