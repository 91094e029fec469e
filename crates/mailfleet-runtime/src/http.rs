//! The HTTP side port of every service: `/healthz` (the process is alive),
//! `/readyz` (its dependencies answer) and `/metrics` (Prometheus text).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Named readiness conditions; the service is ready when all are true.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<Vec<Check>>>,
}

type Check = (String, Arc<AtomicBool>);

/// One readiness condition, set by the task that knows it.
#[derive(Clone)]
pub struct HealthFlag(Arc<AtomicBool>);

impl HealthFlag {
    pub fn set(&self, ok: bool) {
        self.0.store(ok, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition, initially not ready.
    pub fn register(&self, name: &str) -> HealthFlag {
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut checks) = self.checks.lock() {
            checks.push((name.to_owned(), flag.clone()));
        }
        HealthFlag(flag)
    }

    /// The names of the conditions that are not met.
    pub fn failing(&self) -> Vec<String> {
        match self.checks.lock() {
            Ok(checks) => checks
                .iter()
                .filter(|(_, f)| !f.load(Ordering::Relaxed))
                .map(|(n, _)| n.clone())
                .collect(),
            Err(_) => vec!["health registry poisoned".into()],
        }
    }

    pub fn is_ready(&self) -> bool {
        self.failing().is_empty()
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    registry: Arc<Registry>,
}

/// Serves the health and metrics endpoints until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    health: Health,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { health, registry });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let failing = state.health.failing();
    if failing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failing.join(", ")),
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::from("metrics encoding failed\n"),
        ),
    }
}
