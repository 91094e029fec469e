//! Logging and tracing: `tracing` to stderr, as text for people or JSON for
//! containers, and spans exported over OTLP/gRPC when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (e.g. `http://otel-collector:4317`).
//!
//! The exporter reads the standard `OTEL_…` variables itself (endpoint,
//! timeout, headers, `OTEL_RESOURCE_ATTRIBUTES`); `service.name` comes from
//! `OTEL_SERVICE_NAME`, else from the program (`mailfleet serve <service>`
//! or the service binary's name). Trace context crosses process boundaries
//! through [`crate::trace_context`].

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Config;

/// The provider that owns the span batch, kept so [`shutdown`] can flush it.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber. Calling it twice is harmless (tests).
/// Must run inside the Tokio runtime when OTLP export is on (the gRPC
/// exporter's channel lives there).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let otel =
        otlp_endpoint().and_then(
            |endpoint| match tracer_provider(&service_name(), &endpoint) {
                Ok(provider) => {
                    let tracer = provider.tracer("mailfleet");
                    let _ = PROVIDER.set(provider);
                    Some((tracing_opentelemetry::layer().with_tracer(tracer), endpoint))
                }
                Err(error) => {
                    eprintln!(
                        "tracing export disabled: cannot set up OTLP export to {endpoint}: {error}"
                    );
                    None
                }
            },
        );
    let (otel_layer, endpoint) = match otel {
        Some((layer, endpoint)) => (Some(layer), Some(endpoint)),
        None => (None, None),
    };
    // Colour only for a person at a terminal, not in piped or collected logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(otel_layer).with(filter);
    let installed = if config.log_format.eq_ignore_ascii_case("json") {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .try_init()
    };
    if installed.is_ok()
        && let Some(endpoint) = endpoint
    {
        tracing::info!(%endpoint, "Exporting traces over OTLP.");
    }
}

/// Flushes and stops span export; call once at the end of `main`. Waits at
/// most for the exporter's own timeout.
pub async fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let provider = provider.clone();
        // The flush blocks until the batch thread has exported; keep that
        // off the async workers, which the gRPC exporter itself needs.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// Whether spans are exported (tests and readiness messages).
pub fn exporting() -> bool {
    PROVIDER.get().is_some()
}

fn otlp_endpoint() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok())
    .find(|v| !v.trim().is_empty())
}

/// A provider exporting over OTLP/gRPC to `endpoint` in batches, with
/// `service.name` = `service` unless `OTEL_SERVICE_NAME` says otherwise.
pub fn tracer_provider(
    service: &str,
    endpoint: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let mut resource = Resource::builder();
    // OTEL_SERVICE_NAME, read by the SDK, wins over the program's name.
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// `smtp-gateway` for both `smtp-gateway` and `mailfleet serve smtp-gateway`.
fn service_name() -> String {
    let args: Vec<String> = std::env::args().take(3).collect();
    service_name_from(&args)
}

fn service_name_from(args: &[String]) -> String {
    match args {
        [_, serve, service, ..] if serve == "serve" => service.clone(),
        [program, ..] => std::path::Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mailfleet".into()),
        [] => "mailfleet".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_from_program_and_serve() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            service_name_from(&args(&["/usr/local/bin/mailfleet", "serve", "mailstore"])),
            "mailstore"
        );
        assert_eq!(
            service_name_from(&args(&["/app/delivery-worker"])),
            "delivery-worker"
        );
        assert_eq!(service_name_from(&args(&["mailfleet", "dev"])), "mailfleet");
    }
}
