//! The `delivery-worker` binary: configuration from the environment, then
//! [`delivery_worker::run`] until SIGTERM.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use delivery_worker::{Listeners, run};
use mailfleet_runtime::{Config, shutdown, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("delivery-worker: consumes delivery jobs and stores each recipient's copy.\n");
        print!("{}", Config::help());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("delivery-worker: {e}");
            return ExitCode::from(64);
        }
    };
    telemetry::init(&config);
    let http = match TcpListener::bind(config.http_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "delivery-worker: cannot listen on {}: {e}",
                config.http_listen
            );
            return ExitCode::FAILURE;
        }
    };
    let result = run(config, Listeners { http }, shutdown::on_signal()).await;
    // Export the last batch of spans before the process exits.
    telemetry::shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delivery-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
