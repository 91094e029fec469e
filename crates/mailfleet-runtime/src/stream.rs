//! A server connection that starts plain and may become TLS (STARTTLS), or
//! is TLS from the start (implicit TLS): one type for every protocol
//! listener, so the session code is written once over `AsyncRead +
//! AsyncWrite`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a STARTTLS handshake holds the socket; reads and writes
    /// fail.
    Upgrading,
}

impl MaybeTls {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// The plain socket for a STARTTLS handshake, leaving `Upgrading` in
    /// its place; `None` (and nothing changed) when already TLS.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, MaybeTls::Upgrading) {
            MaybeTls::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl MaybeTls {
    /// Acknowledges what the client sends next at once rather than after
    /// the delayed-ACK timer (TCP_QUICKACK; a no-op where it does not
    /// exist). For a server that has just asked for data it answers only
    /// after all of it has come, as an IMAP literal's continuation does: a
    /// client that writes the data in two sends (Python's imaplib sends the
    /// literal, then its CRLF) holds the second back under Nagle's
    /// algorithm until the first is acknowledged, and a delayed ACK makes
    /// that about 40 ms per command.
    pub fn quick_ack(&self) {
        let tcp = match self {
            MaybeTls::Plain(tcp) => tcp,
            MaybeTls::Tls(tls) => tls.get_ref().0,
            MaybeTls::Upgrading => return,
        };
        if let Err(error) = set_quickack(tcp) {
            tracing::debug!(%error, "Cannot set TCP_QUICKACK.");
        }
    }

    /// Resolves once the client has closed or reset the connection, seen
    /// on the socket itself without reading from it: a command that waits
    /// on something long (an IMAP SEARCH in mailstore) races this to stop
    /// working for nobody. Bytes the client sent meanwhile (a pipelined
    /// command) stay unread for the session; while some wait, the socket
    /// is looked at again every quarter second rather than woken for.
    pub async fn closed_by_peer(&self) {
        let tcp = match self {
            MaybeTls::Plain(tcp) => tcp,
            MaybeTls::Tls(tls) => tls.get_ref().0,
            MaybeTls::Upgrading => return std::future::pending().await,
        };
        loop {
            match tcp.ready(tokio::io::Interest::READABLE).await {
                Ok(ready) if ready.is_read_closed() => return,
                Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn set_quickack(tcp: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(tcp).set_tcp_quickack(true)
}

#[cfg(not(target_os = "linux"))]
fn set_quickack(_: &TcpStream) -> io::Result<()> {
    Ok(())
}

fn upgrading() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection is being upgraded to TLS",
    )
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// A stream whose writes fail with `TimedOut` once the peer has taken no
/// byte for `timeout`: a client that stops reading (its receive window full)
/// cannot hold a session, its buffers and its connection slot forever. Every
/// write, flush and shutdown is covered, wherever in a session it happens.
/// Reads pass through; each protocol bounds them by its own timers.
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Armed when a write first has to wait, dropped when one completes.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.timer = None;
            return polled;
        }
        let timeout = self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer has not read for too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bounded(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.bounded(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.bounded(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn plain_passes_through_and_upgrading_refuses_io() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"ping").await.unwrap();
            let mut buf = [0; 4];
            c.read_exact(&mut buf).await.unwrap();
            buf
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = MaybeTls::Plain(tcp);
        assert!(!conn.is_tls());
        let mut buf = [0; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        conn.write_all(b"pong").await.unwrap();
        assert_eq!(&client.await.unwrap(), b"pong");

        let tcp = conn.take_plain().unwrap();
        assert!(
            conn.read(&mut buf).await.is_err(),
            "no reads while upgrading"
        );
        assert!(conn.take_plain().is_none());
        conn = MaybeTls::Plain(tcp);
        assert!(conn.take_plain().is_some());
    }

    /// quick_ack takes the socket out of delayed-ACK ("ping-pong") mode,
    /// which an interactive exchange puts it in.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn quick_ack_leaves_delayed_ack_mode() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let sock = socket2::SockRef::from(&tcp);
        sock.set_tcp_quickack(false).unwrap();
        assert!(!sock.tcp_quickack().unwrap());
        let conn = MaybeTls::Plain(tcp);
        conn.quick_ack();
        let MaybeTls::Plain(tcp) = &conn else {
            unreachable!()
        };
        assert!(socket2::SockRef::from(tcp).tcp_quickack().unwrap());
    }

    /// A peer that never reads fills its window; the next write then fails
    /// instead of waiting forever.
    #[tokio::test]
    async fn write_deadline_ends_writes_to_a_peer_that_does_not_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = WriteDeadline::new(tcp, Duration::from_millis(200));
        let block = vec![b'x'; 64 * 1024];
        let err = loop {
            if let Err(e) = conn.write_all(&block).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
