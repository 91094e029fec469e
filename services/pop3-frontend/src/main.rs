//! The standalone `pop3-frontend` binary, as its container runs it: the shared
//! service life (help, configuration, telemetry, signals) around
//! [`pop3_frontend::run`] on the addresses the configuration gives.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    mailfleet_runtime::service::main(
        "pop3-frontend",
        "the POP3 server of mailfleet.",
        |config, shutdown| async move {
            let listeners = pop3_frontend::Listeners::bind(&config).await?;
            pop3_frontend::run(config, listeners, shutdown).await
        },
    )
    .await
}
