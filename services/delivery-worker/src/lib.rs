//! delivery-worker: consumes delivery jobs from RabbitMQ, stores each local
//! recipient's copy through mailstore `Deliver` and relays the others over
//! SMTP.
//!
//! Jobs arrive under a bounded prefetch and are grouped into batches (up to
//! `delivery_batch_size` deliveries, waiting at most `delivery_batch_wait`),
//! each stored with one `Deliver` call; every copy carries the idempotency key
//! `{job id}/{recipient}`, so a redelivered job never stores a second copy.
//! A job is acked only after every recipient has a final or scheduled
//! outcome: recipients that failed temporarily move to a new job on a retry
//! queue (per-message delay, dead-lettered back to the work queue), a DSN is
//! published for those that failed for good, and a job that cannot be
//! decoded is dead-lettered. The consumer reconnects and re-subscribes whenever the
//! broker drops it, and `/readyz` is green only while it is subscribed.
//!
//! Main types: [`consumer`] (supervisor and session), [`batch`] (jobs to
//! deliveries to verdicts), [`outcome`] (per-recipient result), [`acks`]
//! (delivery-tag bookkeeping), [`finish`] (after local delivery: [`relay`]
//! over SMTP with [`dkim`] signatures, [`retry`] queues, [`dsn`] bounces).
//! This crate does not touch Postgres: mailstore does. It reads bodies from
//! object storage to relay them and stores the DSNs it generates.

#![forbid(unsafe_code)]

pub mod acks;
pub mod backoff;
pub mod batch;
pub mod consumer;
pub mod dkim;
pub mod dsn;
pub mod finish;
pub mod learn;
pub mod metrics;
pub mod outcome;
pub mod relay;
pub mod retry;
pub mod sieve;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use mailfleet_runtime::http::{Health, HealthFlag};
use mailfleet_runtime::{CancellationToken, Config};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic::Code;
use tracing::info;

use crate::batch::BatchContext;
use crate::consumer::ConsumerSettings;
use crate::finish::Finisher;
use crate::metrics::Metrics;
use crate::store::{GrpcStore, Store};

/// The sockets the worker serves, bound by the caller.
pub struct Listeners {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses `config` gives the worker.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            http: mailfleet_runtime::listener::bind(config.http_listen, "HTTP").await?,
        })
    }
}

/// Runs the worker until `shutdown` is cancelled and the batches in flight
/// are settled (bounded by `shutdown_grace`). Fails at start-up when
/// RabbitMQ cannot be reached.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let health = Health::new();
    let consuming = health.register("consuming");
    let mailstore_ok = health.register("mailstore");

    let client = mailfleet_runtime::grpc::mailstore_client_for(&config).with_context(|| {
        format!(
            "cannot set up gRPC to mailstore at {:?}",
            config.mailstore_url
        )
    })?;
    let store = GrpcStore::new(client);
    let finisher = outbound_pipeline(&config, metrics.clone(), shutdown.clone())?;
    let learner = learner(&config, &mut registry)?;

    let first = mailfleet_queue::connect(&config.amqp_url)
        .await
        .map_err(|e| anyhow!("{e}; is RabbitMQ running?"))?;

    // The HTTP port outlives the consumer so /metrics answers while draining.
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(mailfleet_runtime::http::serve(
        listeners.http,
        health.clone(),
        Arc::new(registry),
        http_stop.clone(),
    ));
    let probe = tokio::spawn(probe_mailstore(
        store.clone(),
        mailstore_ok.clone(),
        shutdown.clone(),
    ));

    let settings = ConsumerSettings {
        amqp_url: config.amqp_url.clone(),
        queue_prefix: config.queue_prefix.clone(),
        prefetch: config.delivery_prefetch,
        batch_size: config.delivery_batch_size,
        batch_wait: config.delivery_batch_wait,
        shutdown_grace: config.shutdown_grace,
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(5),
    };
    let ctx = BatchContext {
        store,
        metrics,
        mailstore_ok,
        shutdown: shutdown.clone(),
        max_deliveries_per_call: config.delivery_batch_size,
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(5),
        finisher: Some(finisher.clone()),
    };
    let retries = tokio::spawn(finish::poll_retries(
        finisher.outbound.clone(),
        finisher.publisher.clone(),
        finisher.metrics.clone(),
        Duration::from_secs(1),
        shutdown.clone(),
    ));
    let learning = learner.map(|l| tokio::spawn(l.run(shutdown.clone())));
    info!(prefix = %config.queue_prefix, prefetch = config.delivery_prefetch, batch = config.delivery_batch_size, "delivery-worker started.");
    consumer::supervise(settings, ctx, consuming, first, shutdown).await;

    http_stop.cancel();
    let _ = probe.await;
    let _ = retries.await;
    if let Some(learning) = learning {
        let _ = learning.await;
    }
    match http.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("the HTTP server failed"),
        Err(e) => Err(e).context("the HTTP server task failed"),
    }
}

/// The spam lesson consumer, when MAILFLEET_SPAM_LEARN_URL names rspamd's
/// controller. Its counters are served either way (at 0 without it), as
/// every labelled counter is from start-up.
fn learner(config: &Config, registry: &mut Registry) -> anyhow::Result<Option<learn::Learner>> {
    let metrics = learn::LearnMetrics::new(registry);
    if config.spam_learn_url.is_empty() {
        return Ok(None);
    }
    let rspamd = mailfleet_spam::Rspamd::new(&config.spam_learn_url, config.spam_timeout)
        .context("invalid MAILFLEET_SPAM_LEARN_URL")?
        .with_password(config.spam_learn_password.expose())
        .context("invalid MAILFLEET_SPAM_LEARN_PASSWORD")?;
    let blobs = mailfleet_blob::BlobStore::from_config(config)
        .map_err(|e| anyhow!("cannot use object storage at {}: {e}", config.blob_url))?;
    Ok(Some(learn::Learner {
        amqp_url: config.amqp_url.clone(),
        prefix: config.queue_prefix.clone(),
        rspamd,
        blobs,
        max_size: config.spam_max_size,
        metrics,
    }))
}

/// Relay, retry queues and DSNs, from the settings.
fn outbound_pipeline(
    config: &Config,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<Finisher>> {
    let routes = relay::routes::Routes::parse(&config.relay_routes)
        .map_err(|e| anyhow!("invalid MAILFLEET_RELAY_ROUTES: {e}"))?;
    let router = relay::routes::Router::new(routes, &config.dns_resolver)
        .map_err(|e| anyhow!(e))?
        .allow_private(config.relay_allow_private);
    metrics.init_relay_routes(router.routes().hosts());
    let schedule = retry::Schedule::parse(&config.retry_schedule, config.delivery_lifetime)
        .map_err(|e| anyhow!("invalid MAILFLEET_RETRY_SCHEDULE: {e}"))?;
    let blobs = mailfleet_blob::BlobStore::from_config(config)
        .map_err(|e| anyhow!("cannot use object storage at {}: {e}", config.blob_url))?;
    let channel = mailfleet_runtime::grpc::channel_for(config).with_context(|| {
        format!(
            "cannot set up gRPC to mailstore at {:?}",
            config.mailstore_url
        )
    })?;
    let outbound = mailfleet_proto::v1::outbound_client::OutboundClient::with_interceptor(
        channel,
        mailfleet_runtime::grpc::BearerToken::new(config.service_token.expose()),
    );
    let settings = relay::client::ClientSettings {
        hostname: config.hostname.clone(),
        timeout: config.relay_timeout,
        tls: Some(relay::tls::opportunistic()),
    };
    let relay = relay::Relay::new(
        router,
        settings,
        config.relay_max_connections_per_host,
        config.relay_max_messages_per_connection,
        blobs.clone(),
        Some(dkim::Signer::new(outbound.clone())),
        metrics.clone(),
    );
    Ok(Arc::new(Finisher {
        relay,
        publisher: mailfleet_queue::Publisher::new(&config.amqp_url, &config.queue_prefix),
        outbound,
        blobs,
        schedule,
        hostname: config.hostname.clone(),
        metrics,
        shutdown,
    }))
}

/// Keeps the `mailstore` readiness flag current while no deliveries flow.
async fn probe_mailstore<S: Store>(store: S, flag: HealthFlag, shutdown: CancellationToken) {
    loop {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            store.resolve("postmaster@readiness-probe.invalid"),
        )
        .await;
        let ok = match answer {
            Ok(Ok(_)) => true,
            // An answer that is an application error still proves mailstore
            // is up and accepts our credential.
            Ok(Err(status)) => !matches!(
                status.code(),
                Code::Unavailable
                    | Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::DeadlineExceeded
                    | Code::Unknown
            ),
            Err(_) => false,
        };
        flag.set(ok);
        let pause = if ok {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// `mailfleet serve` spawns `run`, so its future must be `Send`; this fails
/// to compile otherwise.
#[cfg(test)]
#[allow(dead_code)]
fn run_is_send(config: Config, listeners: Listeners) -> impl Send {
    run(config, listeners, CancellationToken::new())
}
