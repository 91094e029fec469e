//! The standalone `delivery-worker` binary, as its container runs it: the shared
//! service life (help, configuration, telemetry, signals) around
//! [`delivery_worker::run`] on the addresses the configuration gives.

#![forbid(unsafe_code)]

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    mailfleet_runtime::service::main(
        "delivery-worker",
        "consumes delivery jobs and stores each recipient's copy.",
        |config, shutdown| async move {
            let listeners = delivery_worker::Listeners::bind(&config).await?;
            delivery_worker::run(config, listeners, shutdown).await
        },
    )
    .await
}
