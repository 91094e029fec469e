//! The accept loop shared by every protocol listener: connection limits (in
//! total and per client IP), one tracing span per connection, and shutdown.
//! Each protocol supplies a [`Handler`] for the session itself.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// A protocol session handler.
pub trait Handler: Send + Sync + 'static {
    /// Runs one session to its end. `shutdown` is cancelled when the service
    /// stops: the session should say its protocol's goodbye and return.
    fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Answers a connection refused by a limit (e.g. SMTP `421`), then drops it.
    fn refuse(self: Arc<Self>, stream: TcpStream) -> impl Future<Output = ()> + Send;
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Releases a connection slot when the session ends, however it ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// Accepts connections until `shutdown` is cancelled; sessions run on
/// `tracker`, so the caller can wait for them with a deadline.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    protocol: &'static str,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%error, protocol, "Failed to accept a connection.");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let slot = {
            let Ok(mut c) = counts.lock() else { break };
            let per_ip = c.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if c.total >= limits.max_connections || per_ip >= limits.max_connections_per_ip {
                None
            } else {
                c.total += 1;
                *c.per_ip.entry(peer.ip()).or_default() += 1;
                Some(Slot {
                    counts: counts.clone(),
                    ip: peer.ip(),
                })
            }
        };
        let handler = handler.clone();
        match slot {
            Some(slot) => {
                let span = tracing::info_span!("connection", protocol, %peer);
                let shutdown = shutdown.clone();
                tracker.spawn(
                    async move {
                        let _slot = slot;
                        handler.handle(stream, peer, shutdown).await;
                    }
                    .instrument(span),
                );
            }
            None => {
                tracing::info!(%peer, protocol, "Connection refused by limit.");
                tracker.spawn(handler.refuse(stream));
            }
        }
    }
}
