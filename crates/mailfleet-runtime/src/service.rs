//! The life of a service process, shared by every standalone binary so each
//! `main.rs` is one call: `--help`, configuration from the environment
//! (exit 64 when invalid), telemetry, run until SIGTERM/SIGINT, export the
//! last spans, exit 0 or 1. `mailfleet serve` does the same around its own
//! argument parsing.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::Config;

/// The exit code for an invalid configuration (sysexits' EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Runs the service `name` (described by `about` in `--help`): `start` gets
/// the configuration and the shutdown token, binds its listeners and runs
/// until the token is cancelled.
pub async fn main<F, Fut>(name: &str, about: &str, start: F) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        // A closed pipe (`| head`) is not worth a panic.
        let _ = writeln!(std::io::stdout(), "{name}: {about}\n\n{}", Config::help());
        return ExitCode::SUCCESS;
    }
    run(name, start).await
}

/// [`main`] without `--help`, for a caller that parses its own arguments
/// (`mailfleet serve`); `name` prefixes every error it prints.
pub async fn run<F, Fut>(name: &str, start: F) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::telemetry::init(&config);
    let result = start(config, crate::shutdown::on_signal()).await;
    // Export the last batch of spans before the process exits.
    crate::telemetry::shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
