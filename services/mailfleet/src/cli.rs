//! The command line: subcommands, flags, and dispatch to the modules.

use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use mailfleet_runtime::Config;

#[derive(Debug, Parser)]
#[command(
    name = "mailfleet",
    version,
    about = "mailfleet: run, develop against, administer and benchmark the mail system."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one service in the foreground, configured by MAILFLEET_… variables.
    Serve {
        #[arg(value_enum)]
        service: Service,
        /// Stop when standard input reaches end of file: `mailfleet dev`
        /// holds the other end of a pipe, which the kernel closes when dev
        /// dies in any way, SIGKILL included.
        #[arg(long, hide = true)]
        exit_with_stdin: bool,
    },
    /// Run the whole stack on loopback, one child process per service.
    Dev(DevArgs),
    /// Manage mail domains.
    Domain {
        #[command(subcommand)]
        command: DomainCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Manage aliases (an address delivering to accounts; `@domain` is a catch-all).
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Read stored messages (support access with the admin credential).
    Message {
        #[command(subcommand)]
        command: MessageCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Inspect and manage deferred delivery jobs.
    Queue {
        #[command(subcommand)]
        command: crate::queue::QueueCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Exit 0 when a service's health endpoint answers 200 (container
    /// health checks: the image has no shell and no curl).
    Health {
        /// The service's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// /readyz (dependencies answer) or /healthz (alive).
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
    /// Load generators.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
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

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Add N to every default dev port, so two stacks can run side by side.
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
}

/// Where the admin commands find mailstore. Unset flags fall back to
/// MAILFLEET_MAILSTORE_URL / MAILFLEET_ADMIN_TOKEN, then to the file written by
/// `mailfleet dev`.
#[derive(Debug, Args, Default, Clone)]
pub struct Connection {
    /// mailstore gRPC endpoint, e.g. http://127.0.0.1:50051.
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// Admin credential.
    #[arg(long, global = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a domain.
    Add { domain: String },
    /// List domains.
    List,
    /// Print the DNS records to publish for a domain: MX, SPF, DKIM, DMARC.
    Dns {
        domain: String,
        /// Host name of the MX record (default: mail.DOMAIN).
        #[arg(long, default_value = "")]
        mx: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Add an account.
    Add {
        address: String,
        #[arg(long)]
        password: String,
        /// Quota in bytes; 0 means none.
        #[arg(long, default_value_t = 0)]
        quota: u64,
        /// Most messages the account may hold (all mailboxes); 0 means no limit.
        #[arg(long, default_value_t = 0)]
        quota_messages: u64,
    },
    /// List accounts (of one domain, or all): address, quota, used bytes.
    List { domain: Option<String> },
    /// Set an account's password.
    Passwd {
        address: String,
        #[arg(long)]
        password: String,
    },
    /// Remove an account and its mail.
    Remove { address: String },
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Add an alias delivering to one or more accounts.
    Add {
        address: String,
        #[arg(required = true, num_args = 1..)]
        targets: Vec<String>,
    },
    /// List aliases (of one domain, or all).
    List { domain: Option<String> },
    /// Remove an alias.
    Remove { address: String },
}

#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// One line per message: UID SIZE SUBJECT.
    List {
        address: String,
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
    },
    /// Write the exact stored bytes of one message to stdout.
    Get {
        address: String,
        uid: u32,
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send many messages over SMTP and measure acceptance and end-to-end latency.
    Smtp(crate::bench::SmtpArgs),
    /// POP3 sessions/s, RETR throughput and memory per concurrent session.
    Pop3(crate::bench::Pop3Args),
    /// IMAP commands/s for a mix, full sessions/s, first sync of a large mailbox, memory per IDLE session.
    Imap(crate::bench::ImapArgs),
}

/// Parses `std::env::args`, adding the environment table to `--help`.
pub fn parse() -> Cli {
    let env_help = Config::help();
    let command = Cli::command()
        .after_help(env_help.clone())
        .mut_subcommand("serve", |c| c.after_help(env_help.clone()))
        .mut_subcommand("dev", |c| c.after_help(env_help.clone()));
    let matches = command.get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve {
            service,
            exit_with_stdin,
        } => crate::serve::command(service, exit_with_stdin).await,
        Command::Dev(args) => crate::dev::command(args).await,
        Command::Health { addr, path } => crate::probe::health_command(addr, &path).await,
        Command::Domain {
            command,
            connection,
        } => crate::admin::domain(&connection, command).await,
        Command::Account {
            command,
            connection,
        } => crate::admin::account(&connection, command).await,
        Command::Alias {
            command,
            connection,
        } => crate::admin::alias(&connection, command).await,
        Command::Message {
            command,
            connection,
        } => crate::admin::message(&connection, command).await,
        Command::Queue {
            command,
            connection,
        } => crate::queue::queue(&connection, command).await,
        Command::Bench {
            command: BenchCommand::Smtp(args),
        } => crate::bench::smtp(args).await,
        Command::Bench {
            command: BenchCommand::Pop3(args),
        } => crate::bench::pop3(args).await,
        Command::Bench {
            command: BenchCommand::Imap(args),
        } => crate::bench::imap(args).await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mailfleet").chain(args.iter().copied()))
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_names() {
        for s in Service::ALL {
            match parse(&["serve", s.name()]).unwrap().command {
                Command::Serve {
                    service,
                    exit_with_stdin,
                } => {
                    assert_eq!(service, s);
                    assert!(!exit_with_stdin);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(parse(&["serve", "nope"]).is_err());
    }

    #[test]
    fn connection_flags_go_anywhere() {
        let cli = parse(&[
            "account",
            "--endpoint",
            "http://e:1",
            "add",
            "a@b.test",
            "--password",
            "p",
            "--token",
            "t",
        ])
        .unwrap();
        match cli.command {
            Command::Account {
                command:
                    AccountCommand::Add {
                        address,
                        password,
                        quota,
                        quota_messages,
                    },
                connection,
            } => {
                assert_eq!(
                    (address.as_str(), password.as_str(), quota, quota_messages),
                    ("a@b.test", "p", 0, 0)
                );
                assert_eq!(connection.endpoint.as_deref(), Some("http://e:1"));
                assert_eq!(connection.token.as_deref(), Some("t"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alias_needs_a_target_and_message_defaults_to_inbox() {
        assert!(parse(&["alias", "add", "x@b.test"]).is_err());
        match parse(&["message", "get", "a@b.test", "7"]).unwrap().command {
            Command::Message {
                command: MessageCommand::Get { uid, mailbox, .. },
                ..
            } => assert_eq!((uid, mailbox.as_str()), (7, "INBOX")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dev_port_offset() {
        match parse(&["dev", "--port-offset", "100"]).unwrap().command {
            Command::Dev(args) => assert_eq!(args.port_offset, 100),
            other => panic!("{other:?}"),
        }
    }
}
