//! The mailfleet command: one binary that links every service library.
//!
//! - `mailfleet serve <service>` runs one service ([`serve`]), as each container does;
//! - `mailfleet dev` runs the whole stack on loopback as child processes ([`dev`]);
//! - `mailfleet domain|account|alias|message …` administer through the mailstore
//!   gRPC API ([`admin`]), finding endpoint and token from flags, environment or
//!   the file `mailfleet dev` leaves behind ([`devfile`]);
//! - `mailfleet sieve …` manages users' Sieve scripts ([`sieve`]);
//! - `mailfleet bench smtp …` is the load generator ([`bench`]).
//!
//! The subcommand list and dispatch are in [`cli`]; each command module owns
//! its arguments. Nothing here owns durable state: the CLI
//! only talks to services through their public APIs.

#![forbid(unsafe_code)]

pub mod admin;
pub mod bench;
pub mod cli;
pub mod dev;
pub mod devfile;
mod exit;
mod probe;
pub mod queue;
pub mod serve;
pub mod sieve;
pub mod target;

use std::process::ExitCode;

/// Parses the command line and runs the command.
pub async fn main() -> ExitCode {
    let cli = cli::parse();
    cli::dispatch(cli).await
}
