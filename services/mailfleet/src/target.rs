//! Where the admin, queue and bench commands find mailstore: flags, then
//! the environment, then the file `mailfleet dev` leaves behind.

use anyhow::{Context, anyhow};
use clap::Args;
use mailfleet_runtime::grpc::{self, Admin, MailStore};
use tonic::{Code, Status};

use crate::devfile::DevFile;

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

    pub fn sieve(&self) -> anyhow::Result<grpc::Sieve> {
        let channel = grpc::channel_with(&self.endpoint, &grpc_tls()?)
            .with_context(|| format!("invalid mailstore endpoint {:?}", self.endpoint))?;
        Ok(grpc::sieve_over(channel, &self.token))
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
    }
}
