//! The `smtp-gateway` binary: configuration from the environment, then
//! [`smtp_gateway::run`] on the configured addresses.

use std::process::ExitCode;

use mailfleet_runtime::{Config, shutdown, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!(
            "smtp-gateway: the mailfleet SMTP server (MX, submission with STARTTLS, submissions with implicit TLS; the submission ports are served when tls_cert and tls_key are set).\n\n{}",
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
    let bind = |addr: std::net::SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|error| {
            eprintln!("smtp-gateway: cannot listen on {addr}: {error}");
        })
    };
    let Ok(smtp) = bind(config.smtp_listen).await else {
        return ExitCode::FAILURE;
    };
    let (mut submission, mut submissions) = (None, None);
    if smtp_gateway::serves_submission(&config) {
        let Ok(s) = bind(config.submission_listen).await else {
            return ExitCode::FAILURE;
        };
        let Ok(s465) = bind(config.submissions_listen).await else {
            return ExitCode::FAILURE;
        };
        submission = Some(s);
        submissions = Some(s465);
    }
    let Ok(http) = bind(config.http_listen).await else {
        return ExitCode::FAILURE;
    };
    let shutdown = shutdown::on_signal();
    let result = smtp_gateway::run(
        config,
        smtp_gateway::Listeners {
            smtp,
            submission,
            submissions,
            http,
        },
        shutdown,
    )
    .await;
    // Export the last batch of spans before the process exits.
    telemetry::shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smtp-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}
