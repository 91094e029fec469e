//! W3C trace context (`traceparent`, `tracestate`) across process boundaries,
//! so one message is one trace from SMTP DATA through the queue to mailstore.
//!
//! - gRPC: [`inject_grpc`] adds the current span's context to outgoing
//!   metadata (the runtime's bearer-token interceptor does it for every
//!   mailstore call); a server passes [`grpc_server_span`] to tonic's
//!   `Server::builder().trace_fn(..)` so each call's span continues the
//!   caller's trace.
//! - AMQP (or any string headers): [`current_headers`] gives the pairs to put
//!   in a message's headers table; a consumer calls [`set_parent_from`] on its
//!   per-job span with the pairs it received. This crate knows no lapin, so
//!   the queue code converts to and from its `FieldTable`.
//!
//! Without OTLP export (see [`crate::telemetry`]) spans carry no OpenTelemetry
//! context: injection adds nothing and extraction is a no-op.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::codegen::http;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header names (lower case, as on the wire in HTTP/2 and AMQP here).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

struct Pairs<'a>(&'a mut Vec<(String, String)>);

impl Injector for Pairs<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty tracestate is legal but only costs bytes on every call.
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}

struct Lookup(HashMap<String, String>);

impl Extractor for Lookup {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The trace context headers of `span`; empty when it records no trace.
pub fn headers_of(span: &Span) -> Vec<(String, String)> {
    let cx = span.context();
    let mut out = Vec::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut Pairs(&mut out));
    }
    out
}

/// The trace context headers of the current span.
pub fn current_headers() -> Vec<(String, String)> {
    headers_of(&Span::current())
}

/// Makes `span` a child of the remote span named in `headers` (any header
/// set: only `traceparent` and `tracestate` are read, case-insensitively).
/// Returns whether a valid parent was found.
pub fn set_parent_from<I, K, V>(span: &Span, headers: I) -> bool
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let Some(cx) = extract(headers) else {
        return false;
    };
    span.set_parent(cx).is_ok()
}

/// Links `span` to the remote span named in `headers` without making it the
/// parent: a batch that serves several messages continues the first one's
/// trace and links the others. Returns whether a valid context was found.
pub fn add_link_from<I, K, V>(span: &Span, headers: I) -> bool
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let Some(cx) = extract(headers) else {
        return false;
    };
    span.add_link(cx.span().span_context().clone());
    true
}

fn extract<I, K, V>(headers: I) -> Option<opentelemetry::Context>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let map: HashMap<String, String> = headers
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.as_ref().to_ascii_lowercase();
            (k == TRACEPARENT || k == TRACESTATE).then(|| (k, v.as_ref().to_owned()))
        })
        .collect();
    if map.is_empty() {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&Lookup(map));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace id of `span` in hex, for log lines; `None` when it records no trace.
pub fn trace_id_of(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Adds the current span's trace context to outgoing gRPC metadata.
pub fn inject_grpc(metadata: &mut MetadataMap) {
    for (k, v) in current_headers() {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(k.as_bytes()),
            MetadataValue::try_from(v.as_str()),
        ) {
            metadata.insert(k, v);
        }
    }
}

/// The trace context headers in incoming gRPC metadata.
pub fn grpc_headers(metadata: &MetadataMap) -> Vec<(String, String)> {
    [TRACEPARENT, TRACESTATE]
        .iter()
        .filter_map(|k| {
            let v = metadata.get(*k)?.to_str().ok()?;
            Some(((*k).to_owned(), v.to_owned()))
        })
        .collect()
}

/// For tonic's `Server::builder().trace_fn(..)`: one span per incoming call,
/// named after the gRPC method and continuing the caller's trace.
pub fn grpc_server_span(req: &http::Request<()>) -> Span {
    let span = tracing::info_span!(
        "grpc",
        otel.name = %req.uri().path(),
        rpc.method = %req.uri().path(),
        otel.kind = "server",
    );
    let headers = [TRACEPARENT, TRACESTATE].into_iter().filter_map(|k| {
        let v = req.headers().get(k)?.to_str().ok()?;
        Some((k, v))
    });
    set_parent_from(&span, headers);
    span
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    /// A subscriber that gives spans OpenTelemetry context, as export does.
    fn with_otel<R>(f: impl FnOnce() -> R) -> R {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn amqp_style_round_trip_keeps_the_trace_and_the_parent() {
        with_otel(|| {
            let publish = tracing::info_span!("publish");
            let headers = publish.in_scope(current_headers);
            assert_eq!(headers.len(), 1, "{headers:?}");
            assert_eq!(headers[0].0, TRACEPARENT);
            let sent_trace = trace_id_of(&publish).unwrap();
            let sent_span = publish.context().span().span_context().span_id();

            let consume = tracing::info_span!("consume");
            assert!(set_parent_from(&consume, headers.clone()));
            assert_eq!(trace_id_of(&consume).unwrap(), sent_trace);
            // The traceparent the consumer would forward names the same trace
            // and a new span of its own.
            let forwarded = headers_of(&consume);
            let parts: Vec<&str> = forwarded[0].1.split('-').collect();
            assert_eq!(parts[1], sent_trace);
            assert_ne!(parts[2], sent_span.to_string());
            // Its parent is the publishing span.
            let parent: Vec<&str> = headers[0].1.split('-').collect();
            assert_eq!(parent[2], sent_span.to_string());
        });
    }

    #[test]
    fn grpc_round_trip_through_metadata_and_server_span() {
        with_otel(|| {
            let client = tracing::info_span!("client");
            let mut md = MetadataMap::new();
            client.in_scope(|| inject_grpc(&mut md));
            let traceparent = md.get(TRACEPARENT).unwrap().to_str().unwrap().to_owned();
            assert_eq!(
                grpc_headers(&md),
                vec![(TRACEPARENT.to_owned(), traceparent.clone())]
            );

            let req = http::Request::builder()
                .uri("/mailfleet.v1.MailStore/Deliver")
                .header("TraceParent", traceparent.as_str())
                .body(())
                .unwrap();
            let server = grpc_server_span(&req);
            assert_eq!(trace_id_of(&server), trace_id_of(&client));
        });
    }

    #[test]
    fn a_batch_continues_one_trace_and_links_another() {
        with_otel(|| {
            let a = tracing::info_span!("a");
            let b = tracing::info_span!("b");
            let (ha, hb) = (a.in_scope(current_headers), b.in_scope(current_headers));
            let batch = tracing::info_span!("batch");
            assert!(set_parent_from(&batch, ha));
            assert!(add_link_from(&batch, hb));
            assert!(!add_link_from(&batch, [("traceparent", "garbage")]));
            assert_eq!(trace_id_of(&batch), trace_id_of(&a));
            assert_ne!(trace_id_of(&batch), trace_id_of(&b));
        });
    }

    #[test]
    fn bad_or_missing_headers_change_nothing() {
        with_otel(|| {
            let span = tracing::info_span!("x");
            let before = trace_id_of(&span);
            assert!(!set_parent_from(&span, Vec::<(String, String)>::new()));
            assert!(!set_parent_from(&span, [("traceparent", "00-zz-zz-01")]));
            assert!(!set_parent_from(&span, [("other", "x")]));
            assert_eq!(trace_id_of(&span), before);
        });
    }

    #[test]
    fn without_export_nothing_is_injected() {
        let span = tracing::info_span!("plain");
        assert!(headers_of(&span).is_empty());
        let mut md = MetadataMap::new();
        span.in_scope(|| inject_grpc(&mut md));
        assert!(md.is_empty());
    }
}
