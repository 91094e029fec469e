//! The accept loop shared by every protocol listener: connection limits (in
//! total and per client IP), one tracing span per connection, and shutdown.
//! Each protocol supplies a [`Handler`] for the session itself. Behind a load
//! balancer, [`serve_with`] reads the PROXY protocol header first, so the
//! handler and the per-IP limit see the real client address.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::Config;
use crate::config::CidrList;
use crate::proxy_protocol::{self, Proxied};

/// Binds one listener; the error names the protocol and the address, which
/// is what an operator needs to find the clashing setting.
pub async fn bind(addr: SocketAddr, protocol: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {protocol} on {addr}"))
}

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

/// Whether a listener expects a PROXY protocol header (v1 or v2) from a load
/// balancer before the client's first byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Connections come straight from clients.
    #[default]
    Off,
    /// Every connection must come from a `trusted` peer (the balancers) and
    /// start with a header, within `timeout`; the client it names is the peer
    /// the handler sees and the limits count. Other connections are closed:
    /// the spec forbids guessing, and a header from anyone else would let any
    /// host claim any address (SPF, per-IP limits, loopback privileges).
    Required {
        timeout: Duration,
        trusted: Arc<CidrList>,
    },
}

impl ProxyProtocol {
    /// From the `proxy_protocol`, `proxy_protocol_timeout` and
    /// `proxy_trusted` settings.
    pub fn from_config(config: &Config) -> Self {
        if config.proxy_protocol {
            Self::Required {
                timeout: config.proxy_protocol_timeout,
                trusted: Arc::new(config.proxy_trusted.clone()),
            }
        } else {
            Self::Off
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
    serve_with(
        listener,
        handler,
        limits,
        ProxyProtocol::Off,
        protocol,
        shutdown,
        tracker,
    )
    .await
}

/// [`serve`] with a PROXY protocol choice (see [`ProxyProtocol::from_config`]).
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    proxy: ProxyProtocol,
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
        let ProxyProtocol::Required { timeout, trusted } = &proxy else {
            start(
                &counts, limits, stream, peer, &handler, protocol, &shutdown, &tracker,
            );
            continue;
        };
        if !trusted.contains(peer.ip()) {
            tracing::info!(%peer, protocol, "Connection closed: not from a trusted PROXY protocol peer.");
            continue;
        }
        // Until its header arrives the connection holds a slot of the
        // balancer's address, so silent connections are bounded by the limits.
        let Some(waiting) = admit(&counts, limits, peer.ip()) else {
            tracing::info!(%peer, protocol, "Connection refused by limit.");
            tracker.spawn(handler.clone().refuse(stream));
            continue;
        };
        // The header is read off the accept loop so a slow or silent
        // balancer connection cannot stall other clients.
        let (counts, handler, shutdown_task, tracker_task, timeout) = (
            counts.clone(),
            handler.clone(),
            shutdown.clone(),
            tracker.clone(),
            *timeout,
        );
        tracker.spawn(async move {
            let mut stream = stream;
            let header = tokio::select! {
                _ = shutdown_task.cancelled() => return,
                h = tokio::time::timeout(timeout, proxy_protocol::read_header(&mut stream)) => h,
            };
            // The slot is freed before the socket closes, so a client that
            // sees the close can reconnect within the limits.
            drop(waiting);
            let client = match header {
                Ok(Ok(Proxied::Tcp { source, .. })) => source,
                Ok(Ok(Proxied::Local)) => peer,
                Ok(Err(error)) => {
                    tracing::info!(%error, %peer, protocol, "Connection closed: no valid PROXY protocol header.");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, protocol, "Connection closed: no PROXY protocol header in time.");
                    return;
                }
            };
            start(&counts, limits, stream, client, &handler, protocol, &shutdown_task, &tracker_task);
        });
    }
}

/// Takes a connection slot for `ip`, or `None` when a limit is reached.
fn admit(counts: &Arc<Mutex<Counts>>, limits: Limits, ip: IpAddr) -> Option<Slot> {
    let mut c = counts.lock().ok()?;
    let per_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    if c.total >= limits.max_connections || per_ip >= limits.max_connections_per_ip {
        return None;
    }
    c.total += 1;
    *c.per_ip.entry(ip).or_default() += 1;
    Some(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Admits a connection from `peer` within the limits and runs its session,
/// or has the handler refuse it.
#[allow(clippy::too_many_arguments)]
fn start<H: Handler>(
    counts: &Arc<Mutex<Counts>>,
    limits: Limits,
    stream: TcpStream,
    peer: SocketAddr,
    handler: &Arc<H>,
    protocol: &'static str,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let slot = admit(counts, limits, peer.ip());
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// Reports the peer it was given and echoes the first line back.
    struct Echo(mpsc::UnboundedSender<SocketAddr>);

    impl Handler for Echo {
        async fn handle(
            self: Arc<Self>,
            mut stream: TcpStream,
            peer: SocketAddr,
            _: CancellationToken,
        ) {
            let _ = self.0.send(peer);
            let _ = stream.write_all(b"hello\r\n").await;
            let mut buf = [0u8; 6];
            if stream.read_exact(&mut buf).await.is_ok() {
                let _ = stream.write_all(&buf).await;
            }
        }
        async fn refuse(self: Arc<Self>, mut stream: TcpStream) {
            let _ = stream.write_all(b"busy\r\n").await;
        }
    }

    fn proxied(timeout: Duration, trusted: &str) -> ProxyProtocol {
        use crate::config::Setting;
        ProxyProtocol::Required {
            timeout,
            trusted: Arc::new(CidrList::parse_setting(trusted).unwrap()),
        }
    }

    async fn start_listener(
        proxy: ProxyProtocol,
        per_ip: usize,
    ) -> (
        SocketAddr,
        mpsc::UnboundedReceiver<SocketAddr>,
        CancellationToken,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let limits = Limits {
            max_connections: 10,
            max_connections_per_ip: per_ip,
        };
        tokio::spawn(serve_with(
            listener,
            Arc::new(Echo(tx)),
            limits,
            proxy,
            "test",
            shutdown.clone(),
            TaskTracker::new(),
        ));
        (addr, rx, shutdown)
    }

    async fn read_line(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        // A reset (closed with unread input) reads as the end, like EOF.
        while stream.read(&mut b).await.unwrap_or(0) == 1 {
            out.push(b[0]);
            if b[0] == b'\n' {
                break;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn proxied_peer_reaches_the_handler_and_the_limits() {
        let required = proxied(Duration::from_secs(5), "127.0.0.0/8");
        let (addr, mut peers, shutdown) = start_listener(required, 1).await;

        // v2 header and the first protocol bytes in one segment: nothing past
        // the header may be swallowed.
        let mut c1 = TcpStream::connect(addr).await.unwrap();
        let mut hdr = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        hdr.extend_from_slice(&[203, 0, 113, 9, 127, 0, 0, 1, 0x1f, 0x90, 0, 25]);
        hdr.extend_from_slice(b"PING\r\n");
        c1.write_all(&hdr).await.unwrap();
        assert_eq!(
            peers.recv().await.unwrap(),
            "203.0.113.9:8080".parse().unwrap()
        );
        assert_eq!(read_line(&mut c1).await, "hello\r\n");
        assert_eq!(read_line(&mut c1).await, "PING\r\n");

        // A second client behind the same balancer gets its own per-IP slot...
        let mut c2 = TcpStream::connect(addr).await.unwrap();
        c2.write_all(b"PROXY TCP4 198.51.100.4 127.0.0.1 4000 25\r\n")
            .await
            .unwrap();
        assert_eq!(
            peers.recv().await.unwrap(),
            "198.51.100.4:4000".parse().unwrap()
        );
        assert_eq!(read_line(&mut c2).await, "hello\r\n");

        // ...while the same client again is over its limit of one.
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        c3.write_all(b"PROXY TCP4 198.51.100.4 127.0.0.1 4001 25\r\n")
            .await
            .unwrap();
        assert_eq!(read_line(&mut c3).await, "busy\r\n");

        // A balancer health check (LOCAL) is the real peer.
        let mut c4 = TcpStream::connect(addr).await.unwrap();
        c4.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00")
            .await
            .unwrap();
        assert_eq!(
            peers.recv().await.unwrap().ip(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn connection_without_header_is_closed_unanswered() {
        let required = proxied(Duration::from_secs(5), "127.0.0.0/8");
        let (addr, mut peers, shutdown) = start_listener(required, 10).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"EHLO client.example\r\n").await.unwrap();
        assert_eq!(read_line(&mut c).await, "", "closed without a greeting");
        assert!(peers.try_recv().is_err());

        let quick = proxied(Duration::from_millis(100), "127.0.0.0/8");
        let (addr, _peers, shutdown2) = start_listener(quick, 10).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_line(&mut silent).await, "", "closed after the timeout");
        shutdown.cancel();
        shutdown2.cancel();
    }

    /// A PROXY header is believed only from a listed balancer: anyone else
    /// claiming to relay for 127.0.0.1 is closed unanswered.
    #[tokio::test]
    async fn header_from_an_untrusted_peer_is_refused() {
        let (addr, mut peers, shutdown) =
            start_listener(proxied(Duration::from_secs(5), "192.0.2.0/24"), 10).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        // The peer may be closed before the header is written.
        let _ = c
            .write_all(b"PROXY TCP4 127.0.0.1 127.0.0.1 4000 25\r\nPING\r\n")
            .await;
        assert_eq!(read_line(&mut c).await, "", "closed without a greeting");
        assert!(peers.try_recv().is_err());
        shutdown.cancel();

        // Nobody is trusted by default.
        let (addr, mut peers, shutdown) =
            start_listener(proxied(Duration::from_secs(5), ""), 10).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c
            .write_all(b"PROXY TCP4 127.0.0.1 127.0.0.1 4000 25\r\n")
            .await;
        assert_eq!(read_line(&mut c).await, "");
        assert!(peers.try_recv().is_err());
        shutdown.cancel();
    }

    /// A connection that never sends its header holds a slot of the
    /// balancer's address until the header timeout closes it.
    #[tokio::test]
    async fn waiting_for_the_header_holds_a_slot_until_the_timeout() {
        let (addr, mut peers, shutdown) =
            start_listener(proxied(Duration::from_millis(300), "127.0.0.1/32"), 1).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // Connections are accepted in order, so the second one is counted
        // after the first.
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_line(&mut second).await, "busy\r\n");
        assert_eq!(read_line(&mut silent).await, "", "closed by the timeout");
        let mut third = TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"PROXY TCP4 198.51.100.4 127.0.0.1 4000 25\r\n")
            .await
            .unwrap();
        assert_eq!(read_line(&mut third).await, "hello\r\n");
        assert_eq!(
            peers.recv().await.unwrap(),
            "198.51.100.4:4000".parse().unwrap()
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn off_sees_the_socket_peer() {
        let (addr, mut peers, shutdown) = start_listener(ProxyProtocol::Off, 10).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_line(&mut c).await, "hello\r\n");
        assert_eq!(peers.recv().await.unwrap(), c.local_addr().unwrap());
        shutdown.cancel();
    }
}
