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
    let result = run(service, config, shutdown).await;
    // Export the last batch of spans before the process exits.
    mailfleet_runtime::telemetry::shutdown().await;
    match result {
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
            let (submission, submissions) = if smtp_gateway::serves_submission(&config) {
                (
                    Some(bind(config.submission_listen, "SMTP submission").await?),
                    Some(bind(config.submissions_listen, "SMTP submissions").await?),
                )
            } else {
                (None, None)
            };
            let http = bind(config.http_listen, "HTTP").await?;
            let listeners = smtp_gateway::Listeners {
                smtp,
                submission,
                submissions,
                http,
            };
            smtp_gateway::run(config, listeners, shutdown).await
        }
        Service::DeliveryWorker => {
            let http = bind(config.http_listen, "HTTP").await?;
            delivery_worker::run(config, delivery_worker::Listeners { http }, shutdown).await
        }
        Service::ImapFrontend => {
            let imap = bind(config.imap_listen, "IMAP").await?;
            // Implicit TLS only when a certificate is configured.
            let imaps = if config.tls_cert.is_empty() {
                None
            } else {
                Some(bind(config.imaps_listen, "IMAPS").await?)
            };
            let http = bind(config.http_listen, "HTTP").await?;
            let listeners = imap_frontend::Listeners { imap, imaps, http };
            imap_frontend::run(config, listeners, shutdown).await
        }
        Service::Pop3Frontend => {
            let pop3 = bind(config.pop3_listen, "POP3").await?;
            // Implicit TLS only when a certificate is configured.
            let pop3s = if config.tls_cert.is_empty() {
                None
            } else {
                Some(bind(config.pop3s_listen, "POP3S").await?)
            };
            let http = bind(config.http_listen, "HTTP").await?;
            let listeners = pop3_frontend::Listeners { pop3, pop3s, http };
            pop3_frontend::run(config, listeners, shutdown).await
        }
    }
}

/// Binds one listener; the error names the address and the protocol.
pub async fn bind(addr: SocketAddr, protocol: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {protocol} on {addr}"))
}
