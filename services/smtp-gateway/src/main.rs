//! The standalone `smtp-gateway` binary, as its container runs it: the shared
//! service life (help, configuration, telemetry, signals) around
//! [`smtp_gateway::run`] on the addresses the configuration gives.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    mailfleet_runtime::service::main(
        "smtp-gateway",
        "the mailfleet SMTP server (MX, submission with STARTTLS, submissions with implicit TLS; the submission ports are served when tls_cert and tls_key are set).",
        |config, shutdown| async move {
            let listeners = smtp_gateway::Listeners::bind(&config).await?;
            smtp_gateway::run(config, listeners, shutdown).await
        },
    )
    .await
}
