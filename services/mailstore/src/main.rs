//! The `mailstore` binary: configuration from the environment, telemetry,
//! bind, then [`mailstore::run`].

use std::process::ExitCode;

use mailfleet_runtime::{Config, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        use std::io::Write;
        // A closed pipe (`| head`) is not worth a panic.
        let _ = writeln!(
            std::io::stdout(),
            "mailstore: the mailfleet metadata and mailbox service.\n\n{}",
            Config::help()
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailstore: {e}");
            return ExitCode::from(64);
        }
    };
    telemetry::init(&config);
    let grpc = match tokio::net::TcpListener::bind(config.grpc_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "mailstore: cannot listen on {} (MAILFLEET_GRPC_LISTEN): {e}",
                config.grpc_listen
            );
            return ExitCode::FAILURE;
        }
    };
    let http = match tokio::net::TcpListener::bind(config.http_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "mailstore: cannot listen on {} (MAILFLEET_HTTP_LISTEN): {e}",
                config.http_listen
            );
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown::on_signal();
    let result = mailstore::run(config, mailstore::Listeners { grpc, http }, shutdown).await;
    // Export the last batch of spans before the process exits.
    telemetry::shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailstore: {e:#}");
            ExitCode::FAILURE
        }
    }
}
