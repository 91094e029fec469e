//! The standalone `pop3-frontend` binary, as its container runs it.

use std::process::ExitCode;

use anyhow::Context;
use mailfleet_runtime::Config;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!(
            "pop3-frontend: the POP3 server of mailfleet.\n\n{}",
            Config::help()
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pop3-frontend: {e}");
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
            eprintln!("pop3-frontend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config) -> anyhow::Result<()> {
    let pop3 = TcpListener::bind(config.pop3_listen)
        .await
        .with_context(|| format!("cannot listen for POP3 on {}", config.pop3_listen))?;
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    // Implicit TLS only when a certificate is configured.
    let pop3s = if config.tls_cert.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(config.pop3s_listen)
                .await
                .with_context(|| format!("cannot listen for POP3S on {}", config.pop3s_listen))?,
        )
    };
    let shutdown = mailfleet_runtime::shutdown::on_signal();
    pop3_frontend::run(
        config,
        pop3_frontend::Listeners { pop3, pop3s, http },
        shutdown,
    )
    .await
}
