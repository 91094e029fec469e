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
//!
//! A call that only reads may still stop early for a caller that left: the
//! task runs with a token ([`caller_gone`]) that is cancelled when the
//! request future is dropped before the answer, and SEARCH, which may read
//! every body of a mailbox, stops at it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

tokio::task_local! {
    static CALLER_GONE: CancellationToken;
}

/// Cancelled once the caller of the gRPC call being handled has gone away
/// (its request future was dropped); `None` outside a detached call.
pub fn caller_gone() -> Option<CancellationToken> {
    CALLER_GONE.try_with(CancellationToken::clone).ok()
}

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
            let gone = CancellationToken::new();
            // Cancels `gone` if this future is dropped before the answer.
            let guard = gone.clone().drop_guard();
            // Spawned at the first poll, inside the call's span (tonic's
            // `trace_fn` span is entered while this future is polled), so
            // the trace goes on in the task.
            let task = tokio::spawn(
                CALLER_GONE
                    .scope(gone, call)
                    .instrument(tracing::Span::current()),
            );
            let result = task.await;
            guard.disarm();
            match result {
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

    /// Tells whether its caller went away, once it is told to look.
    #[derive(Clone)]
    struct Watch(Arc<tokio::sync::Notify>);

    impl Service<()> for Watch {
        type Response = bool;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<bool, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            let look = self.0.clone();
            Box::pin(async move {
                let gone = caller_gone().unwrap();
                look.notified().await;
                Ok(gone.is_cancelled())
            })
        }
    }

    #[tokio::test]
    async fn the_call_sees_its_caller_go() {
        let look = Arc::new(tokio::sync::Notify::new());
        let mut service = DetachLayer.layer(Watch(look.clone()));
        // Answered: the token stays as it was.
        let call = service.call(());
        look.notify_one();
        assert!(!call.await.unwrap());

        let seen = Arc::new(std::sync::Mutex::new(None));
        let gone = {
            let seen = seen.clone();
            let look = look.clone();
            // The inner call reports through `seen` after the outer is dropped.
            let mut service = DetachLayer.layer(tower_service_fn(move || {
                let seen = seen.clone();
                let look = look.clone();
                async move {
                    let gone = caller_gone().unwrap();
                    gone.cancelled().await;
                    *seen.lock().unwrap() = Some(true);
                    look.notify_one();
                }
            }));
            service.call(())
        };
        let mut gone = gone;
        assert!(futures::poll!(&mut gone).is_pending());
        drop(gone);
        look.notified().await;
        assert_eq!(*seen.lock().unwrap(), Some(true));
    }

    /// A service from a closure returning a future of `()`.
    fn tower_service_fn<F, Fut>(f: F) -> FnService<F>
    where
        F: FnMut() -> Fut,
    {
        FnService(f)
    }

    struct FnService<F>(F);

    impl<F, Fut> Service<()> for FnService<F>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<(), Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: ()) -> Self::Future {
            let fut = (self.0)();
            Box::pin(async move {
                fut.await;
                Ok(())
            })
        }
    }
}
