//! `mailfleet bench pop3`: POP3 load in three phases, against a running
//! stack (e.g. `mailfleet dev`):
//!
//! 1. sessions/s: `--clients` concurrent clients, each on its own account
//!    (the maildrop lock is exclusive), loop login, STAT, LIST, RETR of every
//!    message (a few of 4–60 KiB, seeded over SMTP), QUIT for `--duration`;
//!    login time is reported apart from the rest of the session.
//! 2. RETR throughput: one client retrieves `--big-count` messages of
//!    `--big-size` octets; the pop3-frontend's RSS before and after shows
//!    memory stays flat while bodies stream.
//! 3. `--idle-sessions` logged-in sessions held open at once on one
//!    pop3-frontend, with its peak RSS per session.
//!
//! Accounts (`pop3bench…@DOMAIN`, password "bench") and their messages are
//! created on the first run and reused afterwards. RSS is read from /proc of
//! the pop3-frontend process, never of the load tool.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use mailfleet_proto::v1::ListMessagesRequest;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::client::Client as SmtpClient;
use super::rss;
use crate::target::{Connection, Target};

const PASSWORD: &str = "bench";
const SMALL_SIZES: [usize; 5] = [4 * 1024, 12 * 1024, 24 * 1024, 40 * 1024, 60 * 1024];

#[derive(Debug, clap::Args)]
pub struct Pop3Args {
    /// POP3 server to load.
    #[arg(long, default_value = "127.0.0.1:1110")]
    pub target: String,
    /// SMTP server used to seed the bench mailboxes.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub smtp: String,
    /// Domain of the bench accounts (must be local).
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// Concurrent clients in the sessions/s phase (one account each).
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Length of the sessions/s phase.
    #[arg(long, default_value = "20s", value_parser = mailfleet_runtime::config::parse_duration)]
    pub duration: Duration,
    /// Messages of the RETR throughput phase (0 skips it).
    #[arg(long, default_value_t = 3)]
    pub big_count: usize,
    /// Size of each of those messages in octets.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub big_size: usize,
    /// Logged-in sessions held open at once (0 skips the phase).
    #[arg(long, default_value_t = 1000)]
    pub idle_sessions: usize,
    /// mailstore gRPC endpoint (for creating accounts).
    #[arg(long)]
    pub mailstore: Option<String>,
    /// Admin token (for creating accounts).
    #[arg(long)]
    pub token: Option<String>,
}

pub async fn pop3(args: Pop3Args) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::exit::fail(&e),
    }
}

/// A minimal POP3 client that counts what it reads.
struct Pop3 {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Pop3 {
    async fn connect(target: &str) -> anyhow::Result<Pop3> {
        let stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("cannot connect to {target}"))?;
        let _ = stream.set_nodelay(true);
        let mut c = Pop3 {
            stream: BufReader::with_capacity(64 * 1024, stream),
            line: Vec::new(),
        };
        c.ok().await?;
        Ok(c)
    }

    async fn read_line(&mut self) -> anyhow::Result<usize> {
        self.line.clear();
        let n = self.stream.read_until(b'\n', &mut self.line).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(n)
    }

    /// Reads a status line; an error unless it is +OK.
    async fn ok(&mut self) -> anyhow::Result<()> {
        self.read_line().await?;
        if !self.line.starts_with(b"+OK") {
            bail!("{}", String::from_utf8_lossy(&self.line).trim_end());
        }
        Ok(())
    }

    async fn cmd(&mut self, c: &str) -> anyhow::Result<()> {
        self.stream.get_mut().write_all(c.as_bytes()).await?;
        self.stream.get_mut().write_all(b"\r\n").await?;
        self.ok().await
    }

    /// Reads a multi-line body to its "." line; returns the octets read.
    async fn multi(&mut self) -> anyhow::Result<u64> {
        let mut total = 0u64;
        loop {
            total += self.read_line().await? as u64;
            if self.line == b".\r\n" {
                return Ok(total);
            }
        }
    }

    async fn login(&mut self, user: &str) -> anyhow::Result<()> {
        self.cmd(&format!("USER {user}")).await?;
        self.cmd(&format!("PASS {PASSWORD}")).await
    }

    /// The octet count STAT reports.
    async fn stat(&mut self) -> anyhow::Result<(u64, u64)> {
        self.cmd("STAT").await?;
        let text = String::from_utf8_lossy(&self.line).into_owned();
        let mut parts = text.split_whitespace().skip(1);
        let n = parts.next().and_then(|p| p.parse().ok());
        let octets = parts.next().and_then(|p| p.parse().ok());
        n.zip(octets)
            .ok_or_else(|| anyhow!("unexpected STAT reply {text:?}"))
    }

    async fn quit(mut self) -> anyhow::Result<()> {
        self.cmd("QUIT").await
    }
}

/// (current, peak) RSS in KiB of the pop3-frontend serving `target`.
fn pop3_rss(target: &str) -> Option<(u64, u64)> {
    rss::serving("pop3-frontend", "MAILFLEET_POP3_LISTEN", target).map(|p| (p.rss_kib, p.hwm_kib))
}

/// Makes sure `account` holds exactly `sizes.len()` messages, seeding them
/// over SMTP when it is empty.
async fn seed(target: &Target, smtp: &str, account: &str, sizes: &[usize]) -> anyhow::Result<()> {
    let mut store = target.mailstore()?;
    let count = |store: &mut mailfleet_runtime::grpc::MailStore| {
        let mut store = store.clone();
        let account = account.to_owned();
        async move {
            store
                .list_messages(ListMessagesRequest {
                    account,
                    mailbox: String::new(),
                    uid_from: 0,
                    limit: 0,
                })
                .await
                .map(|r| r.into_inner().messages.len())
        }
    };
    let have = count(&mut store).await.map_err(|s| target.explain(&s))?;
    if have >= sizes.len() {
        return Ok(());
    }
    let mut client = SmtpClient::connect(smtp, "bench.mailfleet.test", false)
        .await
        .map_err(|e| anyhow!("cannot open an SMTP session with {smtp}: {e}"))?;
    for (i, &size) in sizes.iter().enumerate().skip(have) {
        let m =
            super::message::message("pop3", i as u64, "bench-sender@example.org", account, size);
        let code = client
            .send("bench-sender@example.org", account, &m)
            .await
            .map_err(|e| anyhow!("seeding {account} over SMTP failed: {e}"))?;
        if code != 250 {
            bail!("seeding {account} over SMTP: the server answered {code}");
        }
    }
    client.quit().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&mut store).await.map_err(|s| target.explain(&s))? < sizes.len() {
        if Instant::now() > deadline {
            bail!("the seeded messages for {account} did not arrive within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn run(args: Pop3Args) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let target = Target::resolve(&Connection {
        endpoint: args.mailstore.clone(),
        token: args.token.clone(),
    })
    .context("the POP3 bench creates its accounts through mailstore")?;
    let users: Vec<String> = (1..=args.clients)
        .map(|i| format!("pop3bench{i}@{}", args.domain))
        .collect();
    let big_user = format!("pop3bench-big@{}", args.domain);
    let idle_users: Vec<String> = (1..=args.idle_sessions)
        .map(|i| format!("pop3idle{i}@{}", args.domain))
        .collect();
    let mut all = users.clone();
    if args.big_count > 0 {
        all.push(big_user.clone());
    }
    all.extend(idle_users.iter().cloned());
    super::ensure_accounts(&target, &args.domain, &all).await?;
    eprintln!("Seeding the bench mailboxes over SMTP...");
    for u in &users {
        seed(&target, &args.smtp, u, &SMALL_SIZES).await?;
    }
    if args.big_count > 0 {
        seed(
            &target,
            &args.smtp,
            &big_user,
            &vec![args.big_size; args.big_count],
        )
        .await?;
    }
    println!("mailfleet bench pop3 -> {}", args.target);

    sessions_phase(&args, &users).await?;
    if args.big_count > 0 {
        retr_phase(&args, &big_user).await?;
    }
    if args.idle_sessions > 0 {
        idle_phase(&args, &idle_users).await?;
    }
    Ok(())
}

/// One full session; returns (login time, octets retrieved).
async fn session(target: &str, user: &str) -> anyhow::Result<(Duration, u64)> {
    let mut c = Pop3::connect(target).await?;
    let t = Instant::now();
    c.login(user).await?;
    let login = t.elapsed();
    let (n, _) = c.stat().await?;
    c.cmd("LIST").await?;
    c.multi().await?;
    let mut octets = 0;
    for i in 1..=n {
        c.cmd(&format!("RETR {i}")).await?;
        octets += c.multi().await?;
    }
    c.quit().await?;
    Ok((login, octets))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn sessions_phase(args: &Pop3Args, users: &[String]) -> anyhow::Result<()> {
    // Warm-up: one session per account (first logins pay the full argon2 cost).
    for u in users {
        session(&args.target, u).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let octets = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = users
        .iter()
        .map(|u| {
            let (u, target) = (u.clone(), args.target.clone());
            let (stop, octets, errors) = (stop.clone(), octets.clone(), errors.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match session(&target, &u).await {
                        Ok((login, n)) => {
                            octets.fetch_add(n, Ordering::Relaxed);
                            times.push((t.elapsed(), login));
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("session error: {e:#}");
                            }
                        }
                    }
                }
                times
            })
        })
        .collect();
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.unwrap_or_default());
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let mut total: Vec<Duration> = times.iter().map(|t| t.0).collect();
    let mut login: Vec<Duration> = times.iter().map(|t| t.1).collect();
    total.sort();
    login.sort();
    println!(
        "  sessions: {} in {:.1} s = {:.0} sessions/s with {} clients ({} errors); \
         each: login, STAT, LIST, RETR of {} messages of 4-60 KiB, QUIT",
        times.len(),
        secs,
        times.len() as f64 / secs,
        users.len(),
        errors.load(Ordering::Relaxed),
        SMALL_SIZES.len()
    );
    println!(
        "  session time p50 {:.1} ms, p99 {:.1} ms; of which login (USER+PASS, cached credentials, lock, snapshot) p50 {:.1} ms, p99 {:.1} ms",
        percentile(&total, 0.5).as_secs_f64() * 1e3,
        percentile(&total, 0.99).as_secs_f64() * 1e3,
        percentile(&login, 0.5).as_secs_f64() * 1e3,
        percentile(&login, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "  retrieved: {:.1} MB/s over all sessions",
        octets.load(Ordering::Relaxed) as f64 / secs / 1e6
    );
    Ok(())
}

async fn retr_phase(args: &Pop3Args, user: &str) -> anyhow::Result<()> {
    let before = pop3_rss(&args.target);
    let mut c = Pop3::connect(&args.target).await?;
    c.login(user).await?;
    let (n, _) = c.stat().await?;
    let start = Instant::now();
    let mut octets = 0;
    for i in 1..=n.min(args.big_count as u64) {
        c.cmd(&format!("RETR {i}")).await?;
        octets += c.multi().await?;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    c.quit().await?;
    let after = pop3_rss(&args.target);
    println!(
        "  RETR: {} messages, {:.1} MB in {:.2} s = {:.1} MB/s",
        n.min(args.big_count as u64),
        octets as f64 / 1e6,
        secs,
        octets as f64 / secs / 1e6
    );
    match (before, after) {
        (Some((rss0, _)), Some((rss1, hwm))) => println!(
            "  pop3-frontend RSS {:.1} MiB before, {:.1} MiB after (peak {:.1} MiB) for {:.1} MiB messages",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            hwm as f64 / 1024.0,
            args.big_size as f64 / 1048576.0
        ),
        _ => {
            println!("  pop3-frontend RSS: not measured (no single pop3-frontend process visible)")
        }
    }
    Ok(())
}

async fn idle_phase(args: &Pop3Args, users: &[String]) -> anyhow::Result<()> {
    let before = pop3_rss(&args.target);
    let start = Instant::now();
    let opened: Vec<anyhow::Result<Pop3>> = futures::stream::iter(users.iter().cloned())
        .map(|u| {
            let target = args.target.clone();
            async move {
                let mut c = Pop3::connect(&target).await?;
                c.login(&u).await?;
                c.stat().await?;
                Ok(c)
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let setup = start.elapsed();
    let mut sessions = Vec::new();
    let mut failed = 0;
    for r in opened {
        match r {
            Ok(c) => sessions.push(c),
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("idle session error: {e:#}");
                }
            }
        }
    }
    // Every session answers while all are open.
    for c in &mut sessions {
        c.cmd("NOOP").await?;
    }
    let during = pop3_rss(&args.target);
    let open = sessions.len();
    for c in sessions {
        let _ = c.quit().await;
    }
    println!(
        "  concurrent: {open} logged-in sessions open at once ({failed} failed), opened in {:.1} s",
        setup.as_secs_f64()
    );
    match (before, during) {
        (Some((rss0, _)), Some((rss1, hwm))) if open > 0 => println!(
            "  pop3-frontend RSS {:.1} MiB idle, {:.1} MiB with them open (peak {:.1} MiB): {:.1} KiB per session",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss1.saturating_sub(rss0) as f64 / open as f64
        ),
        _ => {
            println!("  pop3-frontend RSS: not measured (no single pop3-frontend process visible)")
        }
    }
    Ok(())
}
