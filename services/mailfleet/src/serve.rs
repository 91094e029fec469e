//! `mailfleet serve <service>`: validate the configuration, bind the
//! service's addresses, run it until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use mailfleet_runtime::{CancellationToken, Config};
use tokio::net::TcpListener;

use crate::cli::Service;

/// The whole `serve` command: exit 64 on invalid configuration, 1 on a
/// start-up error, 0 after a clean shutdown.
pub async fn command(service: Service) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mailfleet serve {}: {e}", service.name());
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    mailfleet_runtime::telemetry::init(&config);
    let shutdown = mailfleet_runtime::shutdown::on_signal();
    match run(service, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailfleet serve {}: {e:#}", service.name());
            ExitCode::FAILURE
        }
    }
}

/// Binds the addresses `config` gives `service` and runs it.
pub async fn run(
    service: Service,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match service {
        Service::Mailstore => {
            let grpc = bind(config.grpc_listen, "gRPC").await?;
            let http = bind(config.http_listen, "HTTP").await?;
            mailstore::run(config, mailstore::Listeners { grpc, http }, shutdown).await
        }
        Service::SmtpGateway => {
            let smtp = bind(config.smtp_listen, "SMTP").await?;
            let http = bind(config.http_listen, "HTTP").await?;
            smtp_gateway::run(config, smtp_gateway::Listeners { smtp, http }, shutdown).await
        }
        Service::DeliveryWorker => {
            let http = bind(config.http_listen, "HTTP").await?;
            delivery_worker::run(config, delivery_worker::Listeners { http }, shutdown).await
        }
        Service::ImapFrontend => {
            let imap = bind(config.imap_listen, "IMAP").await?;
            let http = bind(config.http_listen, "HTTP").await?;
            imap_frontend::run(config, imap_frontend::Listeners { imap, http }, shutdown).await
        }
        Service::Pop3Frontend => {
            let pop3 = bind(config.pop3_listen, "POP3").await?;
            let http = bind(config.http_listen, "HTTP").await?;
            pop3_frontend::run(config, pop3_frontend::Listeners { pop3, http }, shutdown).await
        }
    }
}

/// Binds one listener; the error names the address and the protocol.
pub async fn bind(addr: SocketAddr, protocol: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {protocol} on {addr}"))
}
