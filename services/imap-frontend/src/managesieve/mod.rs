//! ManageSieve (RFC 5804): users upload, list, activate and fetch their
//! Sieve scripts. Served by imap-frontend on its own listener (port 4190)
//! because it needs exactly what IMAP has: the TLS certificate and its
//! reloader, the login path through mailstore with its brute-force guard,
//! the connection limits. The scripts themselves live in mailstore (the
//! SieveScripts gRPC service), which compiles them on upload.
//!
//! `proto` reads commands from bytes (pure), `response` writes replies
//! (pure), `session` is the state machine, `conn` does the I/O.

mod conn;
pub mod proto;
pub mod response;
mod session;
mod shared;

pub(crate) use shared::Shared;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::listener::Handler;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::{Conn, MaybeTls};

/// The handler of the ManageSieve listener.
pub(crate) struct ManageSieve(pub Arc<Shared>);

impl Handler for ManageSieve {
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        self.0.connections.inc();
        let conn = Conn::new(MaybeTls::Plain(stream), self.0.idle_timeout);
        let mut session = session::Session::new(self.0.clone(), peer, false);
        if let Err(error) = conn::drive(&mut session, conn, &shutdown).await {
            tracing::debug!(%error, "ManageSieve session ended with an I/O error.");
        }
    }

    async fn refuse(self: Arc<Self>, mut stream: TcpStream) {
        let bye = stream.write_all(b"BYE \"Too many connections\"\r\n");
        let _ = tokio::time::timeout(Duration::from_secs(5), bye).await;
        let _ = stream.shutdown().await;
    }
}
