//! The admin subcommands: domains, accounts, aliases through the Admin API,
//! and read access to stored messages through the MailStore API (which
//! accepts the admin credential for support access).
//!
//! Output is plain text, one item per line, for people and scripts alike.
//! Every failure becomes one sentence on stderr and exit status 1.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use futures::StreamExt;
use mailfleet_proto::v1::{
    AddAccountRequest, AddAliasRequest, AddDomainRequest, GetBodyRequest, ListAccountsRequest,
    ListAliasesRequest, ListDomainsRequest, ListMessagesRequest, RemoveAccountRequest,
    RemoveAliasRequest, SetPasswordRequest,
};
use tokio::io::AsyncWriteExt;

use crate::target::{Connection, Target};

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

/// Runs an admin command body, turning its error into exit status 1.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => crate::exit::fail(&e),
    }
}

/// `mailfleet message list … | head` closes stdout early; that is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub async fn domain(connection: &Connection, command: DomainCommand) -> ExitCode {
    finish(domain_inner(connection, command).await)
}

async fn domain_inner(connection: &Connection, command: DomainCommand) -> anyhow::Result<()> {
    let target = Target::resolve(connection)?;
    let mut admin = target.admin()?;
    let mut out = std::io::stdout().lock();
    match command {
        DomainCommand::Add { domain } => {
            let d = admin
                .add_domain(AddDomainRequest { name: domain })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            writeln!(out, "added domain {}", d.name)?;
        }
        DomainCommand::Dns { domain, mx } => {
            crate::queue::domain_dns(&target, &mut admin, domain, mx, &mut out).await?;
        }
        DomainCommand::List => {
            let list = admin
                .list_domains(ListDomainsRequest {})
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            for d in list.domains {
                writeln!(out, "{}", d.name)?;
            }
        }
    }
    Ok(())
}

pub async fn account(connection: &Connection, command: AccountCommand) -> ExitCode {
    finish(account_inner(connection, command).await)
}

async fn account_inner(connection: &Connection, command: AccountCommand) -> anyhow::Result<()> {
    let target = Target::resolve(connection)?;
    let mut admin = target.admin()?;
    let mut out = std::io::stdout().lock();
    match command {
        AccountCommand::Add {
            address,
            password,
            quota,
            quota_messages,
        } => {
            let a = admin
                .add_account(AddAccountRequest {
                    address,
                    password,
                    quota_bytes: quota,
                    quota_messages,
                })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            writeln!(out, "added account {}", a.address)?;
        }
        AccountCommand::List { domain } => {
            let list = admin
                .list_accounts(ListAccountsRequest {
                    domain: domain.unwrap_or_default(),
                })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            for a in list.accounts {
                writeln!(out, "{} {} {}", a.address, a.quota_bytes, a.used_bytes)?;
            }
        }
        AccountCommand::Passwd { address, password } => {
            admin
                .set_password(SetPasswordRequest {
                    address: address.clone(),
                    password,
                })
                .await
                .map_err(|s| target.explain(&s))?;
            writeln!(out, "password of {address} changed")?;
        }
        AccountCommand::Remove { address } => {
            admin
                .remove_account(RemoveAccountRequest {
                    address: address.clone(),
                })
                .await
                .map_err(|s| target.explain(&s))?;
            writeln!(out, "removed account {address}")?;
        }
    }
    Ok(())
}

pub async fn alias(connection: &Connection, command: AliasCommand) -> ExitCode {
    finish(alias_inner(connection, command).await)
}

async fn alias_inner(connection: &Connection, command: AliasCommand) -> anyhow::Result<()> {
    let target = Target::resolve(connection)?;
    let mut admin = target.admin()?;
    let mut out = std::io::stdout().lock();
    match command {
        AliasCommand::Add { address, targets } => {
            let a = admin
                .add_alias(AddAliasRequest { address, targets })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            writeln!(out, "added alias {} -> {}", a.address, a.targets.join(" "))?;
        }
        AliasCommand::List { domain } => {
            let list = admin
                .list_aliases(ListAliasesRequest {
                    domain: domain.unwrap_or_default(),
                })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            for a in list.aliases {
                writeln!(out, "{} -> {}", a.address, a.targets.join(" "))?;
            }
        }
        AliasCommand::Remove { address } => {
            admin
                .remove_alias(RemoveAliasRequest {
                    address: address.clone(),
                })
                .await
                .map_err(|s| target.explain(&s))?;
            writeln!(out, "removed alias {address}")?;
        }
    }
    Ok(())
}

pub async fn message(connection: &Connection, command: MessageCommand) -> ExitCode {
    finish(message_inner(connection, command).await)
}

async fn message_inner(connection: &Connection, command: MessageCommand) -> anyhow::Result<()> {
    let target = Target::resolve(connection)?;
    let mut store = target.mailstore()?;
    match command {
        MessageCommand::List { address, mailbox } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut uid_from = 1u32;
            loop {
                let page = store
                    .list_messages(ListMessagesRequest {
                        account: address.clone(),
                        mailbox: mailbox.clone(),
                        uid_from,
                        limit: 0,
                    })
                    .await
                    .map_err(|s| target.explain(&s))?
                    .into_inner();
                let Some(last) = page.messages.last().map(|m| m.uid) else {
                    break;
                };
                for m in &page.messages {
                    writeln!(out, "{} {} {}", m.uid, m.size, one_line(&m.subject))?;
                }
                // A server that ignored uid_from would make this loop forever.
                match last.checked_add(1) {
                    Some(next) if next > uid_from => uid_from = next,
                    _ => break,
                }
            }
            out.flush()?;
        }
        MessageCommand::Get {
            address,
            uid,
            mailbox,
        } => {
            let mut chunks = store
                .get_body(GetBodyRequest {
                    account: address,
                    mailbox,
                    uid,
                    offset: 0,
                    length: 0,
                    include_expunged: false,
                    body_ref: None,
                })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            let mut out = tokio::io::stdout();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|s| target.explain(&s))?;
                out.write_all(&chunk.data).await?;
            }
            out.flush().await?;
        }
    }
    Ok(())
}

/// Subjects can hold folded or encoded line breaks; keep one message per line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subjects_stay_on_one_line() {
        assert_eq!(one_line("a\r\n b"), "a   b");
    }
}
