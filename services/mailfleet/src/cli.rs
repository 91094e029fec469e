//! The command line: the subcommands and dispatch to the modules. Each
//! command module owns its arguments; nothing imports this module back.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mailfleet_runtime::Config;

use crate::admin::{AccountCommand, AliasCommand, DomainCommand, MessageCommand};
use crate::bench::BenchCommand;
use crate::dev::DevArgs;
use crate::serve::Service;
use crate::target::Connection;

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
    /// Manage an account's Sieve scripts (mail filters, vacation replies).
    Sieve {
        #[command(subcommand)]
        command: crate::sieve::SieveCommand,
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
        Command::Sieve {
            command,
            connection,
        } => crate::sieve::sieve(&connection, command).await,
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
    fn sieve_commands_take_an_address_and_a_script_name() {
        match parse(&["sieve", "put", "a@b.test", "rules", "-", "--activate"])
            .unwrap()
            .command
        {
            Command::Sieve {
                command:
                    crate::sieve::SieveCommand::Put {
                        address,
                        name,
                        file,
                        activate,
                    },
                ..
            } => {
                assert_eq!((address.as_str(), name.as_str()), ("a@b.test", "rules"));
                assert_eq!(file.as_os_str(), "-");
                assert!(activate);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["sieve", "activate", "a@b.test"]).is_err());
        assert!(parse(&["sieve", "list", "a@b.test"]).is_ok());
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
