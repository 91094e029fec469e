//! One message, three services, one trace: spans exported over real OTLP/gRPC
//! to a receiver in the test, with the trace context carried the way the
//! services carry it (AMQP headers gateway -> worker, gRPC metadata worker ->
//! mailstore). Each "service" has its own tracer provider and subscriber, as
//! separate processes would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use mailfleet_runtime::telemetry::tracer_provider;
use mailfleet_runtime::trace_context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::MetadataMap;
use tracing_subscriber::layer::SubscriberExt;

/// (service.name, span name, trace id, span id, parent span id)
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>, Vec<u8>, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Receiver(Received);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    self.0.lock().unwrap().push((
                        service.clone(),
                        span.name,
                        span.trace_id,
                        span.span_id,
                        span.parent_span_id,
                    ));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn subscriber(provider: &SdkTracerProvider) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("mailfleet")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_across_three_services() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::default();
    let received = receiver.0.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let gateway = tracer_provider("smtp-gateway", &endpoint).unwrap();
    let worker = tracer_provider("delivery-worker", &endpoint).unwrap();
    let store = tracer_provider("mailstore", &endpoint).unwrap();

    // smtp-gateway: the DATA span publishes the job with its trace context.
    let amqp_headers = tracing::subscriber::with_default(subscriber(&gateway), || {
        let span = tracing::info_span!("smtp.data");
        span.in_scope(trace_context::current_headers)
    });
    // delivery-worker: the job span continues it and calls mailstore.
    let metadata = tracing::subscriber::with_default(subscriber(&worker), || {
        let span = tracing::info_span!("delivery.job");
        assert!(trace_context::set_parent_from(&span, amqp_headers.clone()));
        let mut md = MetadataMap::new();
        span.in_scope(|| trace_context::inject_grpc(&mut md));
        md
    });
    // mailstore: the server span from the incoming call's headers.
    tracing::subscriber::with_default(subscriber(&store), || {
        let mut req =
            tonic::codegen::http::Request::builder().uri("/mailfleet.v1.MailStore/Deliver");
        for (k, v) in trace_context::grpc_headers(&metadata) {
            req = req.header(k, v);
        }
        let span = trace_context::grpc_server_span(&req.body(()).unwrap());
        span.in_scope(|| tracing::info!("stored"));
    });

    for p in [gateway, worker, store] {
        tokio::task::spawn_blocking(move || p.shutdown())
            .await
            .unwrap()
            .unwrap();
    }

    let spans = received.lock().unwrap().clone();
    assert_eq!(spans.len(), 3, "{spans:?}");
    let find = |service: &str| {
        spans
            .iter()
            .find(|s| s.0 == service)
            .expect(service)
            .clone()
    };
    let (g, w, m) = (
        find("smtp-gateway"),
        find("delivery-worker"),
        find("mailstore"),
    );
    assert_eq!(g.1, "smtp.data");
    assert_eq!(w.1, "delivery.job");
    assert_eq!(m.1, "/mailfleet.v1.MailStore/Deliver");
    assert_eq!(g.2, w.2, "gateway and worker share the trace id");
    assert_eq!(w.2, m.2, "worker and mailstore share the trace id");
    assert!(g.4.is_empty(), "the gateway span is the root");
    assert_eq!(w.4, g.3, "the worker span's parent is the gateway span");
    assert_eq!(m.4, w.3, "the mailstore span's parent is the worker span");
}
