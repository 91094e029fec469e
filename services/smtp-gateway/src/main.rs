//! The `smtp-gateway` binary: configuration from the environment, then
//! [`smtp_gateway::run`] on the configured addresses.

use std::process::ExitCode;

use mailfleet_runtime::{Config, shutdown, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!(
            "smtp-gateway: the mailfleet SMTP receiver (MX role).\n\n{}",
            Config::help()
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("smtp-gateway: {error}");
            return ExitCode::from(64);
        }
    };
    telemetry::init(&config);
    let smtp = match TcpListener::bind(config.smtp_listen).await {
        Ok(l) => l,
        Err(error) => {
            eprintln!(
                "smtp-gateway: cannot listen on {}: {error}",
                config.smtp_listen
            );
            return ExitCode::FAILURE;
        }
    };
    let http = match TcpListener::bind(config.http_listen).await {
        Ok(l) => l,
        Err(error) => {
            eprintln!(
                "smtp-gateway: cannot listen on {}: {error}",
                config.http_listen
            );
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown::on_signal();
    match smtp_gateway::run(config, smtp_gateway::Listeners { smtp, http }, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smtp-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}
