//! The standalone `imap-frontend` binary, as its container runs it: the shared
//! service life (help, configuration, telemetry, signals) around
//! [`imap_frontend::run`] on the addresses the configuration gives.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    mailfleet_runtime::service::main(
        "imap-frontend",
        "the IMAP server of mailfleet.",
        |config, shutdown| async move {
            let listeners = imap_frontend::Listeners::bind(&config).await?;
            imap_frontend::run(config, listeners, shutdown).await
        },
    )
    .await
}
