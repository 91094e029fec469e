//! The standalone `mailstore` binary, as its container runs it: the shared
//! service life (help, configuration, telemetry, signals) around
//! [`mailstore::run`] on the addresses the configuration gives.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    mailfleet_runtime::service::main(
        "mailstore",
        "the mailfleet metadata and mailbox service.",
        |config, shutdown| async move {
            let listeners = mailstore::Listeners::bind(&config).await?;
            mailstore::run(config, listeners, shutdown).await
        },
    )
    .await
}
