//! mailstore: the gRPC service that owns the Postgres schema and serves
//! mailbox data (DESIGN.md, "Data model" and "gRPC API").
//!
//! [`run`] applies the embedded migrations, then serves `mailfleet.v1.MailStore`
//! (authentication, recipient resolution, batched idempotent delivery,
//! listings and body streaming), `mailfleet.v1.Admin` (domains, accounts,
//! aliases), `mailfleet.v1.SieveScripts` (stored Sieve scripts) and the
//! gRPC health service on the gRPC listener, and
//! `/healthz`, `/readyz`, `/metrics` on the HTTP listener. Message metadata
//! comes from `mailfleet-mime`, bodies from `mailfleet-blob`. The process
//! keeps no state of its own: any number of replicas can run.

#![forbid(unsafe_code)]

pub mod address;
pub mod append;
pub mod auth_guard;
pub mod body;
pub mod copy;
pub mod db;
pub mod deliver;
mod detach;
pub mod dkim;
pub mod error;
pub mod events;
pub mod expunge;
pub mod fetch;
pub mod flags;
pub mod grpc;
mod idempotency;
pub mod learn;
pub mod lease;
pub mod mailbox_cache;
pub mod mailboxes;
pub mod maildrop;
pub mod meta_cache;
pub mod metrics;
pub mod over_quota;
pub mod password;
pub mod queue_index;
pub mod seal;
pub mod search;
mod search_text;
pub mod sieve;
pub mod sort;
pub mod store;
mod subject;
pub mod thread;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mailfleet_blob::BlobStore;
use mailfleet_proto::v1::admin_server::AdminServer;
use mailfleet_proto::v1::mail_store_server::MailStoreServer;
use mailfleet_runtime::http::{Health, HealthFlag};
use mailfleet_runtime::{CancellationToken, Config, TaskTracker};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::grpc::{AdminService, MailStoreService};
use crate::metrics::Metrics;
use crate::password::{CredentialCache, Hasher};
use crate::store::Store;
use crate::tokens::Tokens;

/// Largest gRPC request accepted (a Deliver batch is small; bodies are not sent).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Recently verified logins kept, and for how long.
const CREDENTIAL_CACHE_ENTRIES: usize = 10_000;
const CREDENTIAL_CACHE_TTL: Duration = Duration::from_secs(300);
/// How often readiness re-checks Postgres.
const READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// The bound listeners of mailstore.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses `config` gives mailstore.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        use mailfleet_runtime::listener::bind;
        Ok(Self {
            grpc: bind(config.grpc_listen, "gRPC").await?,
            http: bind(config.http_listen, "HTTP").await?,
        })
    }
}

/// Runs mailstore until `shutdown` is cancelled. Fails at start-up with one
/// sentence when Postgres or object storage is unusable.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if config.service_token.is_empty() && config.admin_token.is_empty() {
        tracing::warn!(
            "Neither MAILFLEET_SERVICE_TOKEN nor MAILFLEET_ADMIN_TOKEN is set: every call will be refused."
        );
    }
    // The internal plane's TLS, checked before anything else starts.
    let grpc_tls = mailfleet_runtime::grpc::GrpcTls::from_config(&config)
        .context("cannot set up gRPC TLS (MAILFLEET_GRPC_TLS_*)")?
        .server_config();
    let blobs = BlobStore::from_config(&config)
        .map_err(|e| anyhow::anyhow!("cannot use object storage at {}: {e}", config.blob_url))?;
    let (memory, iterations) = (config.argon2_memory_kib, config.argon2_iterations);
    let hasher = tokio::task::spawn_blocking(move || Hasher::new(memory, iterations))
        .await
        .context("password hasher set-up panicked")?
        .map_err(|e| anyhow::anyhow!("invalid MAILFLEET_ARGON2_* settings: {e}"))?;
    let sieve_quota = sieve::SieveQuota {
        max_scripts: config.sieve_max_scripts,
        max_bytes: config.sieve_max_bytes,
        max_script_size: config.sieve_max_script_size,
    };
    if sieve_quota.max_script_size > sieve::scripts::MAX_SCRIPT_BYTES {
        anyhow::bail!(
            "MAILFLEET_SIEVE_MAX_SCRIPT_SIZE is at most {} octets",
            sieve::scripts::MAX_SCRIPT_BYTES
        );
    }
    let pool = db::connect(&config.database_url, config.database_max_connections).await?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    // Change events for IMAP IDLE; best effort, so RabbitMQ is not needed to start.
    let (events, events_task) = events::Events::start(
        pool.clone(),
        config.amqp_url.clone(),
        config.queue_prefix.clone(),
        metrics.directory_changes.clone(),
        shutdown.clone(),
    );
    let auth_guard = auth_guard::AuthGuard::new(
        config.auth_max_failures,
        config.auth_max_failures_per_address,
        config.auth_lockout,
        config.auth_failure_delay,
    );
    metrics.register_lockouts(&mut registry, auth_guard.lockouts.clone());
    // Lessons for rspamd only when delivery-worker can teach it.
    let (learner, learn_task) = if config.spam_learn_url.is_empty() {
        (learn::Learner::disabled(), None)
    } else {
        let (learner, task) =
            learn::Learner::start(&config.amqp_url, &config.queue_prefix, shutdown.clone());
        registry.register(
            "mailfleet_store_spam_lessons_dropped",
            "Spam/ham lessons (Junk moves) dropped: queue full or broker unreachable",
            learner.dropped.clone(),
        );
        (learner, Some(task))
    };
    let store = Store {
        events,
        pool: pool.clone(),
        blobs,
        hasher: Arc::new(hasher),
        credentials: Arc::new(CredentialCache::new(
            CREDENTIAL_CACHE_ENTRIES,
            CREDENTIAL_CACHE_TTL,
        )),
        metrics,
        dkim_seal: seal::Sealer::from_secret(config.dkim_key_secret.expose()),
        meta_cache: meta_cache::MetaCache::new(config.metadata_cache_size),
        mailbox_cache: mailbox_cache::MailboxCache::new(config.mailbox_cache_size),
        over_quota: Default::default(),
        auth_guard,
        spam_junk: config.spam_junk,
        learner,
        sieve_cache: Arc::new(sieve::cache::ScriptCache::new(
            config.sieve_max_message_size,
        )),
    };
    let tokens = Tokens {
        service: config.service_token.clone(),
        admin: config.admin_token.clone(),
    };

    let health = Health::new();
    let db_ready = health.register("postgres");
    db_ready.set(true);
    let tracker = TaskTracker::new();
    tracker.spawn(watch_database(pool.clone(), db_ready, shutdown.clone()));
    let http_addr = listeners.http.local_addr().ok();
    let http_shutdown = shutdown.clone();
    tracker.spawn(async move {
        if let Err(error) = mailfleet_runtime::http::serve(
            listeners.http,
            health,
            Arc::new(registry),
            http_shutdown,
        )
        .await
        {
            tracing::error!(%error, "The HTTP server failed.");
        }
    });

    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<MailStoreServer<MailStoreService>>()
        .await;
    reporter.set_serving::<AdminServer<AdminService>>().await;
    let mail_store = MailStoreServer::new(MailStoreService {
        store: store.clone(),
        tokens: tokens.clone(),
        max_append: config.smtp_max_message_size,
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let outbound =
        mailfleet_proto::v1::outbound_server::OutboundServer::new(queue_index::OutboundService {
            store: store.clone(),
            tokens: tokens.clone(),
        });
    let sieve = mailfleet_proto::v1::sieve_scripts_server::SieveScriptsServer::new(
        sieve::grpc::SieveService {
            store: store.clone(),
            tokens: tokens.clone(),
            quota: sieve_quota,
        },
    )
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let admin = AdminServer::new(AdminService { store, tokens })
        .max_decoding_message_size(MAX_REQUEST_BYTES);

    let grpc_addr = listeners.grpc.local_addr().ok();
    tracing::info!(grpc = ?grpc_addr, http = ?http_addr, "mailstore is serving.");
    // `Server::tcp_nodelay` applies only to sockets tonic accepts itself, not
    // to an incoming stream: without this, Nagle holds each streamed reply's
    // last frames until the client's delayed ACK (about 40 ms per GetBody).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listeners.grpc),
        |conn| {
            if let Ok(stream) = &conn {
                let _ = stream.set_nodelay(true);
            }
            conn
        },
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = grpc_tls {
        builder = builder
            .tls_config(tls)
            .context("invalid gRPC TLS certificate or key (MAILFLEET_GRPC_TLS_*)")?;
    }
    let server = builder
        .tcp_nodelay(true)
        // A call whose client went away still finishes (see `detach`).
        .layer(detach::DetachLayer)
        // One span per call, continuing the caller's trace (traceparent).
        .trace_fn(mailfleet_runtime::trace_context::grpc_server_span)
        .add_service(health_service)
        .add_service(mail_store)
        .add_service(admin)
        .add_service(outbound)
        .add_service(sieve)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(server);
    let grace = config.shutdown_grace;
    let result = tokio::select! {
        r = &mut server => r.context("the gRPC server failed"),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "In-flight gRPC calls did not finish within the shutdown grace period.");
            Ok(())
        }
    };
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("Background tasks did not stop within the shutdown grace period.");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), events_task).await;
    if let Some(task) = learn_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
    tracing::info!("mailstore stopped.");
    result
}

/// Keeps the readiness flag in step with Postgres answering.
async fn watch_database(pool: PgPool, flag: HealthFlag, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(READINESS_INTERVAL) => {}
        }
        let ok = matches!(
            tokio::time::timeout(READINESS_INTERVAL, sqlx::query("SELECT 1").execute(&pool)).await,
            Ok(Ok(_))
        );
        if ok != flag.get() {
            if ok {
                tracing::info!("Postgres answers again.");
            } else {
                tracing::warn!("Postgres does not answer.");
            }
        }
        flag.set(ok);
    }
}
