//! Every gRPC call runs to its end, even when the client goes away.
//!
//! tonic drops a handler's future when the client resets the stream (a
//! delivery-worker that lost its broker connection, a frontend session that
//! closed). sqlx is not cancel-safe at every await point of a transaction: a
//! future dropped after BEGIN was sent but before its reply was read returns
//! the pooled connection still inside a transaction, and everything later
//! run on that connection is never committed while holding its locks (seen
//! under `rabbitmqctl close_all_connections` in the fault tests). So each
//! call is spawned as its own task; the request future only waits for it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

#[derive(Clone, Copy, Debug, Default)]
pub struct DetachLayer;

impl<S> Layer<S> for DetachLayer {
    type Service = Detach<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Detach(inner)
    }
}

#[derive(Clone, Debug)]
pub struct Detach<S>(S);

impl<S, R> Service<R> for Detach<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let call = self.0.call(request);
        Box::pin(async move {
            // Spawned at the first poll, inside the call's span (tonic's
            // `trace_fn` span is entered while this future is polled), so
            // the trace goes on in the task.
            let task = tokio::spawn(call.instrument(tracing::Span::current()));
            match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: only when the runtime shuts down, and then
                // nobody waits for this answer.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[derive(Clone)]
    struct Slow(Arc<AtomicBool>);

    impl Service<()> for Slow {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<(), Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            let done = self.0.clone();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                done.store(true, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_dropped_call_still_runs_to_its_end() {
        let done = Arc::new(AtomicBool::new(false));
        let mut service = DetachLayer.layer(Slow(done.clone()));
        let mut call = service.call(());
        // The call starts, then the client goes away.
        assert!(futures::poll!(&mut call).is_pending());
        drop(call);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(done.load(Ordering::SeqCst));
    }
}
