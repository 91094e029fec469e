//! `mailfleet sieve put|get|list|activate|deactivate|delete|check ADDR …`:
//! an account's Sieve scripts through mailstore's SieveScripts API, with
//! the admin credential (operators act for any account; users use
//! ManageSieve).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use mailfleet_proto::v1 as pb;

use crate::target::{Connection, Target};

#[derive(Debug, Subcommand)]
pub enum SieveCommand {
    /// Upload a script (compiled and checked first; `-` reads standard input).
    Put {
        address: String,
        name: String,
        file: PathBuf,
        /// Make it the active script too.
        #[arg(long)]
        activate: bool,
    },
    /// Print a script.
    Get { address: String, name: String },
    /// List the account's scripts; the active one is marked `ACTIVE`.
    List { address: String },
    /// Make a script the one that runs at delivery.
    Activate { address: String, name: String },
    /// Run no script at delivery.
    Deactivate { address: String },
    /// Delete a script (not the active one).
    Delete { address: String, name: String },
    /// Compile a script without storing it (`-` reads standard input).
    Check { address: String, file: PathBuf },
}

pub async fn sieve(connection: &Connection, command: SieveCommand) -> ExitCode {
    match sieve_inner(connection, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::exit::fail(&e),
    }
}

fn read_script(file: &PathBuf) -> anyhow::Result<String> {
    let mut content = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut content)
            .context("cannot read the script from standard input (is it UTF-8?)")?;
    } else {
        content = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {} (is it UTF-8?)", file.display()))?;
    }
    Ok(content)
}

async fn sieve_inner(connection: &Connection, command: SieveCommand) -> anyhow::Result<()> {
    let target = Target::resolve(connection)?;
    let mut client = target.sieve()?;
    let mut out = std::io::stdout().lock();
    let explain = |s: tonic::Status| target.explain(&s);
    match command {
        SieveCommand::Put {
            address,
            name,
            file,
            activate,
        } => {
            let content = read_script(&file)?;
            client
                .put_script(pb::PutScriptRequest {
                    account: address.clone(),
                    name: name.clone(),
                    content,
                })
                .await
                .map_err(explain)?;
            if activate {
                client
                    .set_active(pb::SetActiveRequest {
                        account: address,
                        name,
                    })
                    .await
                    .map_err(explain)?;
            }
        }
        SieveCommand::Get { address, name } => {
            let script = client
                .get_script(pb::GetScriptRequest {
                    account: address,
                    name,
                })
                .await
                .map_err(explain)?
                .into_inner();
            out.write_all(script.content.as_bytes())?;
        }
        SieveCommand::List { address } => {
            let list = client
                .list_scripts(pb::ListScriptsRequest { account: address })
                .await
                .map_err(explain)?
                .into_inner();
            for s in list.scripts {
                if s.active {
                    writeln!(out, "{} ACTIVE", s.name)?;
                } else {
                    writeln!(out, "{}", s.name)?;
                }
            }
        }
        SieveCommand::Activate { address, name } => {
            client
                .set_active(pb::SetActiveRequest {
                    account: address,
                    name,
                })
                .await
                .map_err(explain)?;
        }
        SieveCommand::Deactivate { address } => {
            client
                .set_active(pb::SetActiveRequest {
                    account: address,
                    name: String::new(),
                })
                .await
                .map_err(explain)?;
        }
        SieveCommand::Delete { address, name } => {
            client
                .delete_script(pb::DeleteScriptRequest {
                    account: address,
                    name,
                })
                .await
                .map_err(explain)?;
        }
        SieveCommand::Check { address, file } => {
            let content = read_script(&file)?;
            client
                .check_script(pb::CheckScriptRequest {
                    account: address,
                    content,
                })
                .await
                .map_err(explain)?;
            writeln!(out, "ok")?;
        }
    }
    Ok(())
}
