//! Shared scaffolding for every mailfleet service.
//!
//! - [`config`]: the `MAILFLEET_…` settings, from the environment over an
//!   optional TOML file, typed and validated all at once.
//! - [`telemetry`]: tracing subscriber (text or JSON), OTLP span export.
//! - [`trace_context`]: W3C trace context in gRPC metadata and AMQP headers.
//! - [`http`]: `/healthz`, `/readyz` and `/metrics` on the service's HTTP port.
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token.
//! - [`grpc`]: the bearer-token credentials of the internal plane.
//! - [`listener`]: the shared TCP accept loop with connection limits.
//! - [`readiness`]: readiness that follows mailstore answering.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers from load balancers.
//! - [`tls`]: rustls server configuration from PEM files, reloaded when they
//!   change, and self-signed material for `mailfleet dev`.
//!
//! This crate knows no protocol and no storage: it must not depend on sqlx,
//! lapin or object_store.

#![forbid(unsafe_code)]

pub mod config;
pub mod grpc;
pub mod http;
pub mod listener;
pub mod proxy_protocol;
pub mod readiness;
pub mod service;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod trace_context;

pub use config::Config;
pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;
