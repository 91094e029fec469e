//! `mailfleet dev`: the whole stack on loopback, one child process per
//! service (`mailfleet serve <name>`, so one can be killed or measured alone),
//! against the local Postgres and RabbitMQ and a blob directory under
//! `./data`.
//!
//! Order of events: check Postgres and RabbitMQ; settle the configuration
//! (dev defaults, overridden by any `MAILFLEET_…` variable already set) and
//! validate it; keep the credentials in the dev file; start mailstore and wait
//! for its `/readyz`, then the others; create the demo domain and account;
//! print where everything listens; then watch the children until Ctrl-C or
//! SIGTERM (stop them all, exit 0) or until one dies (stop the rest, exit 1).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use mailfleet_proto::v1::{
    AddAccountRequest, AddDomainRequest, ListAccountsRequest, ListDomainsRequest,
};
use mailfleet_runtime::{CancellationToken, Config};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;

use crate::devfile::{self, DevFile};
use crate::probe;
use crate::serve::Service;

/// `mailfleet dev`'s flags.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Add N to every default dev port, so two stacks can run side by side.
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
}

/// How long the whole stack may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
pub const DEMO_DOMAIN: &str = "example.test";
pub const DEMO_ACCOUNT: &str = "demo@example.test";
pub const DEMO_PASSWORD: &str = "demo";

/// The dev ports, before `--port-offset`.
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub submissions: u16,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub sieve: u16,
    pub grpc: u16,
    // Served from the issues that bring them (with TLS for the last three):
    // submission 2587, submissions 2465, IMAPS 1993, POP3S 1995. Add them here,
    // to `defaults` and to the summary printed at start-up.
    /// HTTP (health, metrics) per service, in `Service::ALL` order.
    pub http: [(Service, u16); 5],
}

impl Ports {
    pub fn with_offset(offset: u16) -> anyhow::Result<Ports> {
        let p = |base: u16| {
            base.checked_add(offset)
                .ok_or_else(|| anyhow!("--port-offset {offset} pushes port {base} past 65535"))
        };
        Ok(Ports {
            smtp: p(2525)?,
            submission: p(2587)?,
            submissions: p(2465)?,
            imap: p(1143)?,
            imaps: p(1993)?,
            pop3: p(1110)?,
            pop3s: p(1995)?,
            sieve: p(14190)?,
            grpc: p(50051)?,
            http: [
                (Service::Mailstore, p(9103)?),
                (Service::SmtpGateway, p(9101)?),
                (Service::DeliveryWorker, p(9102)?),
                (Service::ImapFrontend, p(9104)?),
                (Service::Pop3Frontend, p(9105)?),
            ],
        })
    }
}

/// The dev stack's settings before the environment is applied, as
/// `MAILFLEET_…` variables.
pub fn defaults(
    ports: &Ports,
    blob_dir: &std::path::Path,
    service_token: &str,
    admin_token: &str,
) -> BTreeMap<String, String> {
    [
        (
            "MAILFLEET_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/mailfleet".to_owned(),
        ),
        (
            "MAILFLEET_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
        ),
        (
            "MAILFLEET_BLOB_URL",
            format!("file://{}", blob_dir.display()),
        ),
        ("MAILFLEET_SERVICE_TOKEN", service_token.to_owned()),
        ("MAILFLEET_ADMIN_TOKEN", admin_token.to_owned()),
        (
            "MAILFLEET_MAILSTORE_URL",
            format!("http://127.0.0.1:{}", ports.grpc),
        ),
        ("MAILFLEET_GRPC_LISTEN", format!("127.0.0.1:{}", ports.grpc)),
        ("MAILFLEET_SMTP_LISTEN", format!("127.0.0.1:{}", ports.smtp)),
        (
            "MAILFLEET_SUBMISSION_LISTEN",
            format!("127.0.0.1:{}", ports.submission),
        ),
        (
            "MAILFLEET_SUBMISSIONS_LISTEN",
            format!("127.0.0.1:{}", ports.submissions),
        ),
        // Dev listens on loopback only: plaintext AUTH is what "loopback in
        // dev" means. No SPF/DKIM/DMARC lookups to the public DNS from a
        // laptop stack (MAILFLEET_SMTP_VERIFY_INBOUND=true turns them on).
        ("MAILFLEET_ALLOW_PLAINTEXT_AUTH", "true".to_owned()),
        ("MAILFLEET_SMTP_VERIFY_INBOUND", "false".to_owned()),
        ("MAILFLEET_IMAP_LISTEN", format!("127.0.0.1:{}", ports.imap)),
        (
            "MAILFLEET_IMAPS_LISTEN",
            format!("127.0.0.1:{}", ports.imaps),
        ),
        ("MAILFLEET_POP3_LISTEN", format!("127.0.0.1:{}", ports.pop3)),
        (
            "MAILFLEET_POP3S_LISTEN",
            format!("127.0.0.1:{}", ports.pop3s),
        ),
        (
            "MAILFLEET_SIEVE_LISTEN",
            format!("127.0.0.1:{}", ports.sieve),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Dev defaults overridden by the `MAILFLEET_…` variables of `env`. The HTTP
/// port is per service, so dev always chooses it.
pub fn merge(
    mut defaults: BTreeMap<String, String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    for (k, v) in env {
        if k.starts_with("MAILFLEET_") && k != "MAILFLEET_HTTP_LISTEN" {
            defaults.insert(k, v);
        }
    }
    defaults
}

/// `host:port` of a database or broker URL, for a reachability check.
pub fn host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return None;
    }
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host.contains(':'),
    };
    Some(if has_port {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    })
}

pub async fn command(args: DevArgs) -> ExitCode {
    let shutdown = mailfleet_runtime::shutdown::on_signal();
    match run(args, shutdown).await {
        Ok(code) => code,
        Err(e) => crate::exit::fail(&e),
    }
}

async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let ports = Ports::with_offset(args.port_offset)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let blob_dir = cwd.join("data").join("blobs");
    let file_path = devfile::path()
        .ok_or_else(|| anyhow!("cannot find the user's config directory (is HOME set?)"))?;
    let saved = DevFile::load(&file_path)?.unwrap_or_default();
    let nonempty_or_new = |s: &str| {
        if s.is_empty() {
            devfile::random_token()
        } else {
            s.to_owned()
        }
    };
    let mut dev_defaults = defaults(
        &ports,
        &blob_dir,
        &nonempty_or_new(&saved.service_token),
        &nonempty_or_new(&saved.admin_token),
    );
    // One self-signed certificate for every TLS listener (SMTP submission
    // and submissions, IMAPS, POP3S), kept next to the dev credentials.
    let tls_dir = file_path
        .parent()
        .map_or_else(|| cwd.join("data").join("tls"), |d| d.join("tls"));
    let (cert, key) =
        mailfleet_runtime::tls::ensure_self_signed(&tls_dir, &["localhost", "127.0.0.1"])
            .context("cannot create the dev TLS certificate")?;
    dev_defaults.insert("MAILFLEET_TLS_CERT".into(), cert.display().to_string());
    dev_defaults.insert("MAILFLEET_TLS_KEY".into(), key.display().to_string());
    let vars = merge(dev_defaults, std::env::vars());
    let config = match Config::load(vars.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailfleet dev: {e}");
            return Ok(ExitCode::from(crate::exit::EXIT_CONFIG));
        }
    };

    if !dependencies_answer(&config).await {
        return Ok(ExitCode::FAILURE);
    }
    if let Some(dir) = config.blob_url.strip_prefix("file://") {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the blob directory {dir}"))?;
    }
    // Keep what the running stack uses, so the CLI elsewhere finds it.
    DevFile {
        mailstore_url: config.mailstore_url.clone(),
        service_token: config.service_token.expose().to_owned(),
        admin_token: config.admin_token.expose().to_owned(),
    }
    .save(&file_path)?;

    let exe = std::env::current_exe().context("cannot find the mailfleet executable")?;
    let mut stack = Stack {
        children: Vec::new(),
        grace: config.shutdown_grace + Duration::from_secs(5),
    };
    let deadline = Instant::now() + READY_DEADLINE;
    // mailstore first: every other service needs it to be ready.
    for wave in [&ports.http[..1], &ports.http[1..]] {
        for &(service, port) in wave {
            let http = SocketAddr::from(([127, 0, 0, 1], port));
            if let Err(e) = stack.spawn(&exe, service, &vars, http) {
                stack.stop().await;
                return Err(e);
            }
        }
        match stack.wait_ready(deadline, &shutdown).await {
            Ok(true) => {}
            Ok(false) => {
                stack.stop().await;
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                eprintln!("mailfleet dev: {e:#}");
                stack.stop().await;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if let Err(e) = provision(&config).await {
        eprintln!("mailfleet dev: {e:#}");
        stack.stop().await;
        return Ok(ExitCode::FAILURE);
    }
    print_summary(&config, &ports, &file_path);

    let code = stack.watch(&shutdown).await;
    stack.stop().await;
    if code == ExitCode::SUCCESS {
        eprintln!("mailfleet dev: stopped.");
    }
    Ok(code)
}

/// Prints one sentence for each missing dependency; true when both answer.
async fn dependencies_answer(config: &Config) -> bool {
    let mut ok = true;
    if let Some(addr) = host_port(&config.database_url, 5432)
        && !probe::port_open(&addr).await
    {
        eprintln!(
            "mailfleet dev: Postgres is not reachable at {addr} (MAILFLEET_DATABASE_URL); start it, \
                 e.g. `sudo service postgresql start` or `docker compose up -d postgres`, and run `mailfleet dev` again."
        );
        ok = false;
    }
    if let Some(addr) = host_port(&config.amqp_url, 5672)
        && !probe::port_open(&addr).await
    {
        eprintln!(
            "mailfleet dev: RabbitMQ is not reachable at {addr} (MAILFLEET_AMQP_URL); start it, \
                 e.g. `sudo service rabbitmq-server start` or `docker compose up -d rabbitmq`, and run `mailfleet dev` again."
        );
        ok = false;
    }
    ok
}

/// Creates the demo domain and account unless they exist.
async fn provision(config: &Config) -> anyhow::Result<()> {
    let target = crate::target::Target {
        endpoint: config.mailstore_url.clone(),
        token: config.admin_token.expose().to_owned(),
    };
    let mut admin = target.admin()?;
    let domains = admin
        .list_domains(ListDomainsRequest {})
        .await
        .map_err(|s| target.explain(&s))?
        .into_inner();
    if !domains
        .domains
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(DEMO_DOMAIN))
    {
        match admin
            .add_domain(AddDomainRequest {
                name: DEMO_DOMAIN.into(),
            })
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {}
            Err(s) => return Err(target.explain(&s)).context("cannot create the demo domain"),
        }
    }
    let accounts = admin
        .list_accounts(ListAccountsRequest {
            domain: DEMO_DOMAIN.into(),
        })
        .await
        .map_err(|s| target.explain(&s))?
        .into_inner();
    if !accounts
        .accounts
        .iter()
        .any(|a| a.address.eq_ignore_ascii_case(DEMO_ACCOUNT))
    {
        match admin
            .add_account(AddAccountRequest {
                address: DEMO_ACCOUNT.into(),
                password: DEMO_PASSWORD.into(),
                quota_bytes: 0,
                quota_messages: 0,
            })
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {}
            Err(s) => return Err(target.explain(&s)).context("cannot create the demo account"),
        }
    }
    Ok(())
}

fn print_summary(config: &Config, ports: &Ports, file: &std::path::Path) {
    let http = |s: Service| {
        ports
            .http
            .iter()
            .find(|(x, _)| *x == s)
            .map_or(0, |(_, p)| *p)
    };
    let smtp = config.smtp_listen;
    let submission = config.submission_listen;
    let submissions = config.submissions_listen;
    println!(
        "\nmailfleet dev is ready.\n\
         \n  SMTP (MX)        {smtp}\
         \n  SMTP submission  {submission}   (STARTTLS; AUTH PLAIN/LOGIN)\
         \n  SMTPS submission {submissions}   (implicit TLS, self-signed certificate)\
         \n  IMAP             {imap}   (STARTTLS; LOGIN, AUTHENTICATE PLAIN)\
         \n  IMAPS            {imaps}   (implicit TLS, self-signed certificate)\
         \n  POP3             {pop3}   (STLS; USER/PASS, SASL PLAIN)\
         \n  POP3S            {pop3s}   (implicit TLS, self-signed certificate)\
         \n  ManageSieve      {sieve}  (STARTTLS; AUTHENTICATE PLAIN)\
         \n  mailstore gRPC   {grpc}\
         \n  spam filter      {spam}\
         \n  health/metrics   smtp-gateway :{h1}  delivery-worker :{h2}  mailstore :{h3}  imap-frontend :{h4}  pop3-frontend :{h5}\
         \n                   (http://127.0.0.1:PORT/readyz and /metrics)\
         \n\n  Demo account: {DEMO_ACCOUNT}, password {DEMO_PASSWORD}\
         \n  Credentials for the admin CLI: {file}\
         \n\nSend a first message:\
         \n  swaks --server {smtp} --from you@example.org --to {DEMO_ACCOUNT}\
         \nRead it:\
         \n  mailfleet message list {DEMO_ACCOUNT}\
         \n  mailfleet message get {DEMO_ACCOUNT} 1\
         \n\nCtrl-C stops the stack.\n",
        spam = spam_summary(config),
        imap = config.imap_listen,
        imaps = config.imaps_listen,
        pop3 = config.pop3_listen,
        pop3s = config.pop3s_listen,
        sieve = config.sieve_listen,
        grpc = config.mailstore_url,
        h1 = http(Service::SmtpGateway),
        h2 = http(Service::DeliveryWorker),
        h3 = http(Service::Mailstore),
        h4 = http(Service::ImapFrontend),
        h5 = http(Service::Pop3Frontend),
        file = file.display(),
    );
}

/// What `mailfleet dev` says about spam checks: it starts no rspamd, but
/// uses one when MAILFLEET_SPAM_URL names it.
fn spam_summary(config: &Config) -> String {
    if config.spam_url.is_empty() {
        return "off (MAILFLEET_SPAM_URL names an rspamd to use; see README, Spam filtering)"
            .into();
    }
    let learning = if config.spam_learn_url.is_empty() {
        "no learning".to_owned()
    } else {
        format!("Junk moves teach {}", config.spam_learn_url)
    };
    format!(
        "spam checks by rspamd at {} on the MX listener; {learning}",
        config.spam_url
    )
}

struct Running {
    service: Service,
    http: SocketAddr,
    child: Child,
    ready: bool,
}

struct Stack {
    children: Vec<Running>,
    grace: Duration,
}

impl Stack {
    fn spawn(
        &mut self,
        exe: &std::path::Path,
        service: Service,
        vars: &BTreeMap<String, String>,
        http: SocketAddr,
    ) -> anyhow::Result<()> {
        // The children stay in dev's process group: a Ctrl-C in the terminal
        // reaches all of them, and `kill -- -PGID` stops the whole stack.
        // Standard input is a pipe dev never writes to: when dev dies, even
        // by SIGKILL, the kernel closes it and the child stops
        // (`--exit-with-stdin`, see serve.rs for why not PR_SET_PDEATHSIG).
        let mut child = Command::new(exe)
            .arg("serve")
            .arg(service.name())
            .arg("--exit-with-stdin")
            .envs(vars)
            .env("MAILFLEET_HTTP_LISTEN", http.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Only a safety net for early returns; normal stops use SIGTERM.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", service.name()))?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(service, out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(service, err));
        }
        self.children.push(Running {
            service,
            http,
            child,
            ready: false,
        });
        Ok(())
    }

    /// Waits until every child is ready. Ok(false) when shutdown was requested.
    async fn wait_ready(
        &mut self,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        loop {
            let mut waiting = None;
            for c in self.children.iter_mut().filter(|c| !c.ready) {
                if let Some(status) = c.child.try_wait()? {
                    bail!(
                        "{} exited during start-up ({}); see its log above",
                        c.service.name(),
                        describe(status)
                    );
                }
                match probe::http_get(c.http, "/readyz").await {
                    Ok((200, _)) => {
                        c.ready = true;
                        eprintln!("mailfleet dev: {} is ready.", c.service.name());
                    }
                    Ok((_, body)) => waiting = Some((c.service, body)),
                    Err(e) => waiting = Some((c.service, e.to_string())),
                }
            }
            let Some((service, why)) = waiting else {
                return Ok(true);
            };
            if Instant::now() > deadline {
                bail!(
                    "{} is not ready after {} s ({why}); stopping the stack",
                    service.name(),
                    READY_DEADLINE.as_secs()
                );
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Runs until shutdown (exit 0) or a child's death (exit 1).
    async fn watch(&mut self, shutdown: &CancellationToken) -> ExitCode {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return ExitCode::SUCCESS,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            for c in &mut self.children {
                let status = match c.child.try_wait() {
                    Ok(Some(status)) => status,
                    Ok(None) => continue,
                    Err(e) => {
                        eprintln!("mailfleet dev: cannot watch {}: {e}", c.service.name());
                        return ExitCode::FAILURE;
                    }
                };
                // A Ctrl-C reaches the children too (same process group), and
                // one may exit before our own handler has run.
                if tokio::time::timeout(Duration::from_secs(1), shutdown.cancelled())
                    .await
                    .is_ok()
                {
                    return ExitCode::SUCCESS;
                }
                eprintln!(
                    "mailfleet dev: {} exited unexpectedly ({}); stopping the stack.",
                    c.service.name(),
                    describe(status)
                );
                return ExitCode::FAILURE;
            }
        }
    }

    /// SIGTERM to the front services first and mailstore last, each group
    /// waited for within the grace period, then SIGKILL.
    async fn stop(&mut self) {
        let (front, back): (Vec<_>, Vec<_>) = self
            .children
            .drain(..)
            .partition(|c| c.service != Service::Mailstore);
        for group in [front, back] {
            for c in &group {
                terminate(&c.child).await;
            }
            let deadline = Instant::now() + self.grace;
            for mut c in group {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, c.child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        eprintln!(
                            "mailfleet dev: {} did not stop in time; killing it.",
                            c.service.name()
                        );
                        let _ = c.child.start_kill();
                        let _ = c.child.wait().await;
                    }
                }
            }
        }
    }
}

/// Sends SIGTERM. `kill(1)` because signalling through libc needs `unsafe`,
/// which this workspace forbids.
async fn terminate(child: &Child) {
    let Some(pid) = child.id() else { return };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Copies a child's output to ours, each line prefixed with the service name.
async fn forward(service: Service, output: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{}] {line}", service.name());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_to_addresses() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/mailfleet", 5432).unwrap(),
            "127.0.0.1:5432"
        );
        assert_eq!(
            host_port("postgres://u:p@db/x?sslmode=disable", 5432).unwrap(),
            "db:5432"
        );
        assert_eq!(
            host_port("amqp://guest:guest@[::1]:5673/%2f", 5672).unwrap(),
            "[::1]:5673"
        );
        assert_eq!(host_port("amqp://[::1]/%2f", 5672).unwrap(), "[::1]:5672");
        assert_eq!(host_port("postgres:///mailfleet", 5432), None);
    }

    #[test]
    fn environment_wins_except_http_listen_and_offsets_apply() {
        let ports = Ports::with_offset(100).unwrap();
        assert_eq!(ports.smtp, 2625);
        assert!(
            ports
                .http
                .iter()
                .any(|&(s, p)| s == Service::Pop3Frontend && p == 9205)
        );
        assert!(Ports::with_offset(u16::MAX).is_err());
        let d = defaults(&ports, std::path::Path::new("/w/data/blobs"), "s", "a");
        assert_eq!(d["MAILFLEET_BLOB_URL"], "file:///w/data/blobs");
        let merged = merge(
            d,
            [
                (
                    "MAILFLEET_SMTP_LISTEN".to_string(),
                    "127.0.0.1:9999".to_string(),
                ),
                (
                    "MAILFLEET_HTTP_LISTEN".to_string(),
                    "127.0.0.1:1".to_string(),
                ),
                ("MAILFLEET_RELAY".to_string(), "x".to_string()),
                ("HOME".to_string(), "/h".to_string()),
            ],
        );
        assert_eq!(merged["MAILFLEET_SMTP_LISTEN"], "127.0.0.1:9999");
        assert_eq!(merged["MAILFLEET_GRPC_LISTEN"], "127.0.0.1:50151");
        assert_eq!(merged["MAILFLEET_RELAY"], "x");
        assert!(!merged.contains_key("MAILFLEET_HTTP_LISTEN"));
        assert!(!merged.contains_key("HOME"));
        Config::load(merged).unwrap();
    }
}
