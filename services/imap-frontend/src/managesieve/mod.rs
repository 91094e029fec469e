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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::grpc::{MailStore, Sieve};
use mailfleet_runtime::listener::Handler;
use mailfleet_runtime::tls::Tls;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conn::{Conn, MaybeTls};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

/// Settings and handles shared by every ManageSieve session.
pub(crate) struct Shared {
    pub client: MailStore,
    pub sieve: Sieve,
    pub tls: Option<Tls>,
    pub allow_plaintext: bool,
    /// Largest script literal after login (`sieve_max_script_size`).
    pub max_script_size: usize,
    pub idle_timeout: Duration,
    commands: Family<CommandLabel, Counter>,
    connections: Counter,
}

impl Shared {
    pub fn new(
        client: MailStore,
        sieve: Sieve,
        tls: Option<Tls>,
        allow_plaintext: bool,
        max_script_size: usize,
        idle_timeout: Duration,
        registry: &mut Registry,
    ) -> Self {
        let shared = Self {
            client,
            sieve,
            tls,
            allow_plaintext,
            max_script_size,
            idle_timeout,
            commands: Family::default(),
            connections: Counter::default(),
        };
        registry.register(
            "mailfleet_imap_managesieve_commands",
            "ManageSieve commands by name",
            shared.commands.clone(),
        );
        registry.register(
            "mailfleet_imap_managesieve_connections",
            "ManageSieve connections accepted",
            shared.connections.clone(),
        );
        shared
    }

    fn command(&self, name: &'static str) {
        self.commands
            .get_or_create(&CommandLabel { command: name })
            .inc();
    }
}

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
