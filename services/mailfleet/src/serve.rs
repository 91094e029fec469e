//! `mailfleet serve <service>`: validate the configuration, bind the
//! service's addresses, run it until SIGTERM/SIGINT.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mailfleet_runtime::{CancellationToken, Config};
use tokio::net::TcpListener;

use crate::cli::Service;

/// The whole `serve` command: exit 64 on invalid configuration, 1 on a
/// start-up error, 0 after a clean shutdown. With `exit_with_stdin`, the end
/// of standard input is a shutdown request too (see [`watch_stdin`]).
pub async fn command(service: Service, exit_with_stdin: bool) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mailfleet serve {}: {e}", service.name());
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    mailfleet_runtime::telemetry::init(&config);
    let shutdown = mailfleet_runtime::shutdown::on_signal();
    if exit_with_stdin {
        watch_stdin(service, shutdown.clone(), config.shutdown_grace);
    }
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

/// Shuts down when standard input ends, and exits after `grace` (plus a
/// margin) if the graceful shutdown has not finished by then.
///
/// `mailfleet dev` gives each child a pipe as standard input and never
/// writes to it: the kernel closes it when dev exits, however it exits, so
/// the children of a SIGKILLed dev stop instead of running on as orphans.
/// Linux's PR_SET_PDEATHSIG would need `unsafe` (`pre_exec`) or a race-prone
/// call after exec, and fires when the *thread* that spawned the child ends,
/// not the process; the pipe needs neither and works on every Unix.
///
/// A plain thread, not tokio's `stdin()`: a blocking read on the runtime's
/// blocking pool would hold up the runtime's shutdown while dev still lives.
fn watch_stdin(service: Service, shutdown: CancellationToken, grace: Duration) {
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            // Anything written is ignored; only the end (or an error) counts.
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            // Not eprintln!: with the parent gone, stderr may be a broken
            // pipe, and eprintln! panics when it cannot write.
            let _ = writeln!(
                std::io::stderr(),
                "mailfleet serve {}: standard input closed (the parent is gone); shutting down.",
                service.name()
            );
            shutdown.cancel();
            std::thread::sleep(grace + Duration::from_secs(5));
            let _ = writeln!(
                std::io::stderr(),
                "mailfleet serve {}: did not stop within the shutdown grace; exiting.",
                service.name()
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        eprintln!(
            "mailfleet serve {}: cannot watch standard input ({e}); stopping.",
            service.name()
        );
        std::process::exit(1);
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
