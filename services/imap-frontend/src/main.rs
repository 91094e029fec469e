//! The standalone `imap-frontend` binary, as its container runs it.

use std::process::ExitCode;

use anyhow::Context;
use mailfleet_runtime::Config;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!(
            "imap-frontend: the IMAP server of mailfleet.\n\n{}",
            Config::help()
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imap-frontend: {e}");
            return ExitCode::from(64);
        }
    };
    mailfleet_runtime::telemetry::init(&config);
    let result = start(config).await;
    // Export the last batch of spans before the process exits.
    mailfleet_runtime::telemetry::shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imap-frontend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config) -> anyhow::Result<()> {
    let imap = TcpListener::bind(config.imap_listen)
        .await
        .with_context(|| format!("cannot listen for IMAP on {}", config.imap_listen))?;
    let imaps = if config.tls_cert.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(config.imaps_listen)
                .await
                .with_context(|| format!("cannot listen for IMAPS on {}", config.imaps_listen))?,
        )
    };
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let shutdown = mailfleet_runtime::shutdown::on_signal();
    imap_frontend::run(
        config,
        imap_frontend::Listeners { imap, imaps, http },
        shutdown,
    )
    .await
}
