//! `mailfleet serve <service>`: validate the configuration, bind the
//! service's addresses, run it until SIGTERM/SIGINT.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use mailfleet_runtime::{CancellationToken, Config};

use clap::ValueEnum;

/// The whole `serve` command: exit 64 on invalid configuration, 1 on a
/// start-up error, 0 after a clean shutdown. With `exit_with_stdin`, the end
/// of standard input is a shutdown request too (see [`watch_stdin`]).
pub async fn command(service: Service, exit_with_stdin: bool) -> ExitCode {
    let name = format!("mailfleet serve {}", service.name());
    mailfleet_runtime::service::run(&name, |config, shutdown| async move {
        if exit_with_stdin {
            watch_stdin(service, shutdown.clone(), config.shutdown_grace);
        }
        run(service, config, shutdown).await
    })
    .await
}

/// Shuts down when standard input ends, and exits after `grace` (plus a
/// margin) if the graceful shutdown has not finished by then.
///
/// `mailfleet dev` gives each child a pipe as standard input and never
/// writes to it: the kernel closes it when dev exits, however it exits, so
/// the children of a SIGKILLed dev stop instead of running on as orphans.
/// Linux's PR_SET_PDEATHSIG would need `unsafe` (`pre_exec`) or a race-prone
/// call after exec, and fires when the *thread* that spawned the child ends,
/// not the process; the pipe needs neither and works on every Unix.
///
/// A plain thread, not tokio's `stdin()`: a blocking read on the runtime's
/// blocking pool would hold up the runtime's shutdown while dev still lives.
fn watch_stdin(service: Service, shutdown: CancellationToken, grace: Duration) {
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            // Anything written is ignored; only the end (or an error) counts.
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            // Not eprintln!: with the parent gone, stderr may be a broken
            // pipe, and eprintln! panics when it cannot write.
            let _ = writeln!(
                std::io::stderr(),
                "mailfleet serve {}: standard input closed (the parent is gone); shutting down.",
                service.name()
            );
            shutdown.cancel();
            std::thread::sleep(grace + Duration::from_secs(5));
            let _ = writeln!(
                std::io::stderr(),
                "mailfleet serve {}: did not stop within the shutdown grace; exiting.",
                service.name()
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        eprintln!(
            "mailfleet serve {}: cannot watch standard input ({e}); stopping.",
            service.name()
        );
        std::process::exit(1);
    }
}

/// Binds the addresses `config` gives `service` (each service knows its
/// own) and runs it.
pub async fn run(
    service: Service,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match service {
        Service::Mailstore => {
            let listeners = mailstore::Listeners::bind(&config).await?;
            mailstore::run(config, listeners, shutdown).await
        }
        Service::SmtpGateway => {
            let listeners = smtp_gateway::Listeners::bind(&config).await?;
            smtp_gateway::run(config, listeners, shutdown).await
        }
        Service::DeliveryWorker => {
            let listeners = delivery_worker::Listeners::bind(&config).await?;
            delivery_worker::run(config, listeners, shutdown).await
        }
        Service::ImapFrontend => {
            let listeners = imap_frontend::Listeners::bind(&config).await?;
            imap_frontend::run(config, listeners, shutdown).await
        }
        Service::Pop3Frontend => {
            let listeners = pop3_frontend::Listeners::bind(&config).await?;
            pop3_frontend::run(config, listeners, shutdown).await
        }
    }
}

/// The services `mailfleet serve` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Service {
    #[value(name = "smtp-gateway")]
    SmtpGateway,
    #[value(name = "delivery-worker")]
    DeliveryWorker,
    #[value(name = "mailstore")]
    Mailstore,
    #[value(name = "imap-frontend")]
    ImapFrontend,
    #[value(name = "pop3-frontend")]
    Pop3Frontend,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Mailstore,
        Service::SmtpGateway,
        Service::DeliveryWorker,
        Service::ImapFrontend,
        Service::Pop3Frontend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::SmtpGateway => "smtp-gateway",
            Service::DeliveryWorker => "delivery-worker",
            Service::Mailstore => "mailstore",
            Service::ImapFrontend => "imap-frontend",
            Service::Pop3Frontend => "pop3-frontend",
        }
    }
}
