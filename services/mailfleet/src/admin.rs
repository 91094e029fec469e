//! The admin subcommands: domains, accounts, aliases through the Admin API,
//! and read access to stored messages through the MailStore API (which
//! accepts the admin credential for support access).
//!
//! Output is plain text, one item per line, for people and scripts alike.
//! Every failure becomes one sentence on stderr and exit status 1.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use futures::StreamExt;
use mailfleet_proto::v1::{
    AddAccountRequest, AddAliasRequest, AddDomainRequest, GetBodyRequest, ListAccountsRequest,
    ListAliasesRequest, ListDomainsRequest, ListMessagesRequest, RemoveAccountRequest,
    RemoveAliasRequest, SetPasswordRequest,
};
use mailfleet_runtime::grpc::{self, Admin, MailStore};
use tokio::io::AsyncWriteExt;
use tonic::{Code, Status};

use crate::cli::{AccountCommand, AliasCommand, Connection, DomainCommand, MessageCommand};
use crate::devfile::DevFile;

/// Used when neither flag, environment nor dev file names an endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// The CLI's gRPC TLS, from the services' MAILFLEET_GRPC_TLS_CA/_CERT/_KEY
/// (an `https://` endpoint needs the CA).
fn grpc_tls() -> anyhow::Result<grpc::GrpcTls> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    grpc::GrpcTls::from_paths(
        &env("MAILFLEET_GRPC_TLS_CA"),
        &env("MAILFLEET_GRPC_TLS_CERT"),
        &env("MAILFLEET_GRPC_TLS_KEY"),
    )
    .context("cannot set up gRPC TLS (MAILFLEET_GRPC_TLS_*)")
}

/// A resolved mailstore endpoint and admin credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub endpoint: String,
    pub token: String,
}

impl Target {
    /// Flags win, then MAILFLEET_MAILSTORE_URL / MAILFLEET_ADMIN_TOKEN, then
    /// the file `mailfleet dev` wrote.
    pub fn resolve(connection: &Connection) -> anyhow::Result<Target> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self::resolve_from(
            connection,
            env("MAILFLEET_MAILSTORE_URL"),
            env("MAILFLEET_ADMIN_TOKEN"),
            DevFile::load_default,
        )
    }

    fn resolve_from(
        connection: &Connection,
        env_endpoint: Option<String>,
        env_token: Option<String>,
        dev_file: impl FnOnce() -> Option<DevFile>,
    ) -> anyhow::Result<Target> {
        let mut endpoint = connection.endpoint.clone().or(env_endpoint);
        let mut token = connection.token.clone().or(env_token);
        if (endpoint.is_none() || token.is_none())
            && let Some(file) = dev_file()
        {
            let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());
            endpoint = endpoint.or_else(|| nonempty(file.mailstore_url));
            token = token.or_else(|| nonempty(file.admin_token));
        }
        let token = token.ok_or_else(|| {
            anyhow!(
                "no admin token: pass --token, set MAILFLEET_ADMIN_TOKEN, or start `mailfleet dev`, which leaves one in {}",
                crate::devfile::path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.config/mailfleet/dev.toml".into())
            )
        })?;
        Ok(Target {
            endpoint: endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            token,
        })
    }

    pub fn admin(&self) -> anyhow::Result<Admin> {
        grpc::admin_client_with(&self.endpoint, &self.token, &grpc_tls()?)
            .with_context(|| format!("invalid mailstore endpoint {:?}", self.endpoint))
    }

    pub fn mailstore(&self) -> anyhow::Result<MailStore> {
        grpc::mailstore_client_with(&self.endpoint, &self.token, &grpc_tls()?)
            .with_context(|| format!("invalid mailstore endpoint {:?}", self.endpoint))
    }

    /// Turns a failed call into one sentence.
    pub fn explain(&self, status: &Status) -> anyhow::Error {
        let detail = status.message().trim_end_matches('.');
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded => anyhow!(
                "cannot reach mailstore at {} ({detail}); is it running?",
                self.endpoint
            ),
            Code::Unauthenticated | Code::PermissionDenied => anyhow!(
                "mailstore at {} refused the admin token ({detail})",
                self.endpoint
            ),
            Code::NotFound
            | Code::AlreadyExists
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::ResourceExhausted
                if !detail.is_empty() =>
            {
                anyhow!("{detail}")
            }
            code => anyhow!("mailstore answered {code:?}: {detail}"),
        }
    }
}

/// Runs an admin command body, turning its error into exit status 1.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&e),
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

    fn dev() -> Option<DevFile> {
        Some(DevFile {
            mailstore_url: "http://dev:1".into(),
            service_token: "s".into(),
            admin_token: "dev-admin".into(),
        })
    }

    #[test]
    fn flags_then_environment_then_dev_file() {
        let flags = Connection {
            endpoint: Some("http://flag:1".into()),
            token: Some("flag".into()),
        };
        let t = Target::resolve_from(&flags, Some("http://env:1".into()), Some("env".into()), dev)
            .unwrap();
        assert_eq!(
            (t.endpoint.as_str(), t.token.as_str()),
            ("http://flag:1", "flag")
        );

        let none = Connection::default();
        let t = Target::resolve_from(
            &none,
            Some("http://env:1".into()),
            Some("env".into()),
            || panic!("not read"),
        )
        .unwrap();
        assert_eq!(
            (t.endpoint.as_str(), t.token.as_str()),
            ("http://env:1", "env")
        );

        let t = Target::resolve_from(&none, None, Some("env".into()), dev).unwrap();
        assert_eq!(
            (t.endpoint.as_str(), t.token.as_str()),
            ("http://dev:1", "env")
        );

        let t = Target::resolve_from(&none, None, None, || None);
        assert!(t.unwrap_err().to_string().contains("no admin token"));
    }

    #[test]
    fn errors_are_one_sentence() {
        let t = Target {
            endpoint: "http://x:1".into(),
            token: "t".into(),
        };
        let e = t.explain(&Status::unavailable("tcp connect error"));
        assert_eq!(
            e.to_string(),
            "cannot reach mailstore at http://x:1 (tcp connect error); is it running?"
        );
        let e = t.explain(&Status::already_exists("domain example.test exists"));
        assert_eq!(e.to_string(), "domain example.test exists");
        assert_eq!(one_line("a\r\n b"), "a   b");
    }
}
