//! `mailfleet bench imap`: IMAP load in four phases, against a running stack
//! (e.g. `mailfleet dev`):
//!
//! 1. command mix: `--sessions` logged-in sessions, one account each, loop
//!    SELECT, FETCH of flags, FETCH of envelopes, STORE, SEARCH and APPEND
//!    for `--duration`; commands/s and latency per command.
//! 2. full sessions: `--clients` clients loop connect, LOGIN, SELECT,
//!    FETCH 1:* (FLAGS), LOGOUT; sessions/s.
//! 3. first sync (`--first-sync N`, off by default): SELECT and
//!    UID FETCH 1:* (UID FLAGS) of a mailbox of N messages, timed.
//! 4. IDLE (`--idle-sessions N`): N sessions in IDLE on one imap-frontend,
//!    its RSS per session, and how long one APPEND takes to reach every
//!    session idling on that mailbox as `* n EXISTS`.
//! 5. large APPENDs (`--large-appends N`, off by default): N sessions each
//!    APPEND one message of `--large-size` octets at once; the time taken
//!    and the peak RSS of mailstore and imap-frontend, which stream bodies
//!    and so should not grow with the message size.
//!
//! Accounts (`imapbench…`, `imapsess…`, `imapidle…`, `imapsync…`, `imaplarge…` at
//! `--domain`, password "bench") are created through mailstore (unless
//! `--no-provision`) and seeded with APPEND (LITERAL+) on the first run, then
//! reused. On a loopback target
//! sessions come from several loopback addresses (`PER_SOURCE` each), so the
//! per-IP connection limit stays at its default.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, ReadHalf, WriteHalf,
};
use tokio::net::{TcpSocket, TcpStream};

use super::rss;
use crate::admin::Target;
use crate::cli::Connection;

const PASSWORD: &str = "bench";
/// Sessions per loopback source address; below the default per-IP limit.
const PER_SOURCE: usize = 50;
/// Sessions opened at once in the IDLE phase.
const OPENING: usize = 32;
/// Longest response line (literals excluded) the client accepts.
const MAX_LINE: usize = 64 * 1024;
/// Largest literal the client accepts in a response.
const MAX_LITERAL: usize = 64 * 1024 * 1024;
/// Longest wait for one tagged response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Idle sessions share this many accounts.
const IDLE_ACCOUNTS: usize = 100;
const MESSAGE_SIZE: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct ImapArgs {
    /// IMAP server to load (plain; the bench measures the server, not TLS).
    #[arg(long, default_value = "127.0.0.1:1143")]
    pub target: String,
    /// Domain of the bench accounts (must be local).
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// Concurrent sessions of the command-mix phase, one account each (0 skips it).
    #[arg(long, default_value_t = 50)]
    pub sessions: usize,
    /// Messages seeded into each account of the command-mix phase.
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Concurrent clients of the full-session phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Length of each of the first two phases.
    #[arg(long, default_value = "20s", value_parser = mailfleet_runtime::config::parse_duration)]
    pub duration: Duration,
    /// Messages in the first-sync mailbox (0 skips the phase).
    #[arg(long, default_value_t = 0)]
    pub first_sync: usize,
    /// Sessions held in IDLE at once (0 skips the phase).
    #[arg(long, default_value_t = 1000)]
    pub idle_sessions: usize,
    /// Sessions that each APPEND one large message at once (0 skips the phase).
    #[arg(long, default_value_t = 0)]
    pub large_appends: usize,
    /// Size of each large message in octets.
    #[arg(long, default_value_t = 40 * 1024 * 1024)]
    pub large_size: usize,
    /// mailstore gRPC endpoint (for creating accounts).
    #[arg(long)]
    pub mailstore: Option<String>,
    /// Admin token (for creating accounts).
    #[arg(long)]
    pub token: Option<String>,
    /// The accounts exist on the target already, with password "bench": no
    /// mailstore is asked to create them. For loading another IMAP server
    /// (Dovecot, say) with the same mix, to compare on one machine.
    #[arg(long)]
    pub no_provision: bool,
}

pub async fn imap(args: ImapArgs) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&e),
    }
}

/// A tagged response and what came before it.
struct Response {
    /// OK, NO or BAD.
    status: String,
    /// The untagged lines, literals left out, when the caller kept them.
    untagged: Vec<String>,
    /// Octets read for this command.
    octets: u64,
}

/// A minimal IMAP client: tagged commands, untagged lines, literals read
/// and thrown away (their lengths are bounded).
struct Imap {
    reader: BufReader<ReadHalf<TcpStream>>,
    writer: BufWriter<WriteHalf<TcpStream>>,
    tag: u64,
    line: Vec<u8>,
}

impl Imap {
    async fn connect(target: &str, source: Option<IpAddr>) -> anyhow::Result<Imap> {
        let stream = match source {
            None => TcpStream::connect(target).await,
            Some(ip) => {
                let remote = tokio::net::lookup_host(target)
                    .await?
                    .find(SocketAddr::is_ipv4)
                    .ok_or_else(|| anyhow!("{target}: no IPv4 address"))?;
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(remote).await
            }
        }
        .with_context(|| format!("cannot connect to {target}"))?;
        let _ = stream.set_nodelay(true);
        let (r, w) = tokio::io::split(stream);
        let mut c = Imap {
            reader: BufReader::with_capacity(16 * 1024, r),
            writer: BufWriter::with_capacity(8 * 1024, w),
            tag: 0,
            line: Vec::new(),
        };
        c.read_line().await?;
        if !c.line.starts_with(b"* OK") {
            bail!("greeting: {}", String::from_utf8_lossy(&c.line).trim_end());
        }
        Ok(c)
    }

    /// Reads one response line, literals skipped; returns the octets read.
    async fn read_line(&mut self) -> anyhow::Result<u64> {
        self.line.clear();
        let mut octets = 0u64;
        loop {
            let start = self.line.len();
            let mut limited = (&mut self.reader).take(MAX_LINE as u64);
            let n = limited.read_until(b'\n', &mut self.line).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            octets += n as u64;
            if self.line.len() > MAX_LINE {
                bail!("a response line over {MAX_LINE} octets");
            }
            match literal_length(&self.line[start..]) {
                Some(len) if len <= MAX_LITERAL => {
                    let mut rest = (&mut self.reader).take(len as u64);
                    let skipped = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await?;
                    if skipped != len as u64 {
                        bail!("the server closed the connection inside a literal");
                    }
                    octets += skipped;
                }
                Some(len) => bail!("a literal of {len} octets"),
                None => return Ok(octets),
            }
        }
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("b{}", self.tag)
    }

    /// Sends a command and reads to its tagged response; `keep` keeps the
    /// untagged lines.
    async fn command(&mut self, command: &str, keep: bool) -> anyhow::Result<Response> {
        let tag = self.next_tag();
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        self.writer.flush().await?;
        self.finish(&tag, keep).await
    }

    async fn finish(&mut self, tag: &str, keep: bool) -> anyhow::Result<Response> {
        let mut untagged = Vec::new();
        let mut octets = 0;
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            octets += tokio::time::timeout_at(deadline.into(), self.read_line())
                .await
                .map_err(|_| anyhow!("no response within {RESPONSE_TIMEOUT:?}"))??;
            let text = String::from_utf8_lossy(&self.line);
            if let Some(rest) = text.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                let status = rest.split(' ').next().unwrap_or_default().to_owned();
                return Ok(Response {
                    status,
                    untagged,
                    octets,
                });
            }
            if keep {
                untagged.push(text.trim_end().to_owned());
            }
        }
    }

    /// A command that must answer OK.
    async fn ok(&mut self, command: &str) -> anyhow::Result<Response> {
        let r = self.command(command, false).await?;
        if r.status != "OK" {
            bail!(
                "{command}: {}",
                String::from_utf8_lossy(&self.line).trim_end()
            );
        }
        Ok(r)
    }

    async fn login(&mut self, user: &str) -> anyhow::Result<()> {
        self.ok(&format!("LOGIN \"{user}\" \"{PASSWORD}\"")).await?;
        Ok(())
    }

    /// SELECT; returns EXISTS.
    async fn select(&mut self, mailbox: &str) -> anyhow::Result<u64> {
        let r = self.command(&format!("SELECT \"{mailbox}\""), true).await?;
        if r.status != "OK" {
            bail!("SELECT: {}", String::from_utf8_lossy(&self.line).trim_end());
        }
        Ok(r.untagged
            .iter()
            .find_map(|l| l.strip_suffix(" EXISTS")?.strip_prefix("* ")?.parse().ok())
            .unwrap_or(0))
    }

    /// APPEND with a non-synchronising literal (RFC 7888).
    async fn append(&mut self, mailbox: &str, message: &[u8]) -> anyhow::Result<()> {
        let tag = self.next_tag();
        self.writer
            .write_all(format!("{tag} APPEND \"{mailbox}\" {{{}+}}\r\n", message.len()).as_bytes())
            .await?;
        self.writer.write_all(message).await?;
        self.writer.write_all(b"\r\n").await?;
        self.writer.flush().await?;
        let r = self.finish(&tag, false).await?;
        if r.status != "OK" {
            bail!("APPEND: {}", String::from_utf8_lossy(&self.line).trim_end());
        }
        Ok(())
    }

    async fn logout(mut self) {
        let _ = self.command("LOGOUT", false).await;
    }
}

/// The length of the literal announced at the end of a line: `{n}` or `{n+}`.
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Loopback source address for session `i` of a group starting at `base`.
fn source_address(base: u8, i: usize) -> IpAddr {
    let n = (i / PER_SOURCE) as u32;
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(127, base, 0, 1)) + n,
    ))
}

async fn loopback(target: &str) -> bool {
    tokio::net::lookup_host(target)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| a.ip().is_loopback() && a.is_ipv4())
}

fn message(account: &str, i: usize) -> Vec<u8> {
    super::message::message(
        "imap",
        i as u64,
        "bench-sender@example.org",
        account,
        MESSAGE_SIZE,
    )
}

/// Makes sure `account`'s INBOX holds at least `count` messages, appending
/// the missing ones over `parallel` sessions.
async fn seed(target: &str, account: &str, count: usize, parallel: usize) -> anyhow::Result<()> {
    let mut c = Imap::connect(target, None).await?;
    c.login(account).await?;
    let have = c.select("INBOX").await? as usize;
    c.logout().await;
    if have >= count {
        return Ok(());
    }
    let missing = count - have;
    if missing > 1000 {
        eprintln!("Appending {missing} messages to {account}...");
    }
    let parallel = parallel.clamp(1, missing);
    let results = futures::future::join_all((0..parallel).map(|p| async move {
        let mut c = Imap::connect(target, None).await?;
        c.login(account).await?;
        for i in (have + p..count).step_by(parallel) {
            c.append("INBOX", &message(account, i)).await?;
        }
        c.logout().await;
        anyhow::Ok(())
    }))
    .await;
    results.into_iter().collect()
}

async fn run(args: ImapArgs) -> anyhow::Result<()> {
    let name = |kind: &str, i: usize| format!("imap{kind}{i}@{}", args.domain);
    let mix_users: Vec<String> = (1..=args.sessions).map(|i| name("bench", i)).collect();
    let session_users: Vec<String> = (1..=args.clients).map(|i| name("sess", i)).collect();
    let idle_users: Vec<String> = (1..=IDLE_ACCOUNTS.min(args.idle_sessions))
        .map(|i| name("idle", i))
        .collect();
    let sync_user = name("sync", args.first_sync);
    let large_user = name("large", 1);
    let mut all: Vec<String> = mix_users.clone();
    all.extend(session_users.iter().cloned());
    all.extend(idle_users.iter().cloned());
    if args.first_sync > 0 {
        all.push(sync_user.clone());
    }
    if args.large_appends > 0 {
        all.push(large_user.clone());
    }
    if !args.no_provision {
        let target = Target::resolve(&Connection {
            endpoint: args.mailstore.clone(),
            token: args.token.clone(),
        })
        .context("the IMAP bench creates its accounts through mailstore")?;
        super::ensure_accounts(&target, &args.domain, &all).await?;
    }
    eprintln!("Seeding the bench mailboxes over IMAP APPEND...");
    for u in &mix_users {
        seed(&args.target, u, args.messages, 4).await?;
    }
    for u in &session_users {
        seed(&args.target, u, 50, 4).await?;
    }
    if args.first_sync > 0 {
        seed(&args.target, &sync_user, args.first_sync, 8).await?;
    }
    println!("mailfleet bench imap -> {}", args.target);
    if args.sessions > 0 {
        mix_phase(&args, &mix_users).await?;
    }
    if args.clients > 0 {
        sessions_phase(&args, &session_users).await?;
    }
    if args.first_sync > 0 {
        first_sync_phase(&args, &sync_user).await?;
    }
    if args.idle_sessions > 0 {
        idle_phase(&args, &idle_users).await?;
    }
    if args.large_appends > 0 {
        large_append_phase(&args, &large_user).await?;
    }
    Ok(())
}

/// The commands of the mix, in the order each session runs them.
const MIX: [&str; 6] = [
    "SELECT",
    "FETCH FLAGS",
    "FETCH ENVELOPE",
    "STORE",
    "SEARCH",
    "APPEND",
];

/// One round of the mix; pushes (command index, latency).
async fn mix_round(
    c: &mut Imap,
    account: &str,
    round: usize,
    times: &mut Vec<(usize, Duration)>,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let exists = c.select("INBOX").await?.max(1);
    times.push((0, t.elapsed()));
    // A window that moves through the mailbox, as a client paging would.
    let start = (round * 37) as u64 % exists + 1;
    let end = (start + 19).min(exists);
    let steps: [String; 4] = [
        format!("FETCH {start}:{end} (FLAGS)"),
        format!("FETCH {start}:{} (ENVELOPE)", (start + 9).min(exists)),
        format!(
            "STORE {start} {}FLAGS (\\Seen)",
            if round.is_multiple_of(2) { '+' } else { '-' }
        ),
        if round.is_multiple_of(2) {
            "SEARCH UNSEEN".to_owned()
        } else {
            "SEARCH FROM \"bench-sender\" SINCE 1-Jan-2025".to_owned()
        },
    ];
    for (i, step) in steps.iter().enumerate() {
        let t = Instant::now();
        c.ok(step).await?;
        times.push((i + 1, t.elapsed()));
    }
    let t = Instant::now();
    c.append("INBOX", &message(account, round)).await?;
    times.push((5, t.elapsed()));
    Ok(())
}

async fn mix_phase(args: &ImapArgs, users: &[String]) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let looped = loopback(&args.target).await;
    let mut sessions = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut c = Imap::connect(&args.target, looped.then(|| source_address(2, i))).await?;
        c.login(u).await?;
        sessions.push((c, u.clone()));
    }
    let start = Instant::now();
    let workers: Vec<_> = sessions
        .into_iter()
        .map(|(mut c, u)| {
            let (stop, errors) = (stop.clone(), errors.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    if let Err(e) = mix_round(&mut c, &u, round, &mut times).await {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("mix error: {e:#}");
                        }
                        break;
                    }
                }
                c.logout().await;
                times
            })
        })
        .collect();
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut by_command: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    for w in workers {
        for (i, d) in w.await.unwrap_or_default() {
            by_command.entry(i).or_default().push(d);
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let total: usize = by_command.values().map(Vec::len).sum();
    println!(
        "  command mix: {total} commands in {secs:.1} s = {:.0} commands/s over {} sessions ({} errors)",
        total as f64 / secs,
        users.len(),
        errors.load(Ordering::Relaxed)
    );
    for (i, mut d) in by_command {
        d.sort();
        println!(
            "    {:<15} {:>8} p50 {:>7.2} ms  p99 {:>7.2} ms",
            MIX[i],
            d.len(),
            super::percentile(&d, 0.5).as_secs_f64() * 1e3,
            super::percentile(&d, 0.99).as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// One full session: connect, LOGIN, SELECT, FETCH 1:* (FLAGS), LOGOUT.
async fn session(target: &str, source: Option<IpAddr>, user: &str) -> anyhow::Result<()> {
    let mut c = Imap::connect(target, source).await?;
    c.login(user).await?;
    c.select("INBOX").await?;
    c.ok("FETCH 1:* (FLAGS)").await?;
    c.ok("LOGOUT").await?;
    Ok(())
}

async fn sessions_phase(args: &ImapArgs, users: &[String]) -> anyhow::Result<()> {
    let looped = loopback(&args.target).await;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (u, target) = (u.clone(), args.target.clone());
            let (stop, errors) = (stop.clone(), errors.clone());
            // Closed sockets linger in TIME_WAIT: give each client its own source.
            let source = looped.then(|| source_address(3, i * PER_SOURCE));
            tokio::spawn(async move {
                let mut times = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match session(&target, source, &u).await {
                        Ok(()) => times.push(t.elapsed()),
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
    times.sort();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "  full sessions: {} in {secs:.1} s = {:.0} sessions/s with {} clients ({} errors); \
         each: connect, LOGIN, SELECT, FETCH 1:* (FLAGS) of 50 messages, LOGOUT; p50 {:.1} ms, p99 {:.1} ms",
        times.len(),
        times.len() as f64 / secs,
        users.len(),
        errors.load(Ordering::Relaxed),
        super::percentile(&times, 0.5).as_secs_f64() * 1e3,
        super::percentile(&times, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

async fn first_sync_phase(args: &ImapArgs, user: &str) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let mut c = Imap::connect(&args.target, None).await?;
        c.login(user).await?;
        let t = Instant::now();
        let exists = c.select("INBOX").await?;
        let select = t.elapsed();
        let r = c.command("UID FETCH 1:* (UID FLAGS)", true).await?;
        let total = t.elapsed();
        if r.status != "OK" {
            bail!("UID FETCH: {}", String::from_utf8_lossy(&c.line).trim_end());
        }
        let fetched = r.untagged.iter().filter(|l| l.contains(" FETCH ")).count();
        c.logout().await;
        if fetched as u64 != exists {
            bail!("UID FETCH 1:* answered {fetched} messages of {exists}");
        }
        runs.push((total, select, exists, r.octets));
    }
    runs.sort();
    let (total, select, exists, octets) = runs[runs.len() / 2];
    println!(
        "  first sync of {exists} messages (SELECT + UID FETCH 1:* (UID FLAGS), median of 3): \
         {:.3} s (SELECT {:.3} s), {:.1} MB of responses",
        total.as_secs_f64(),
        select.as_secs_f64(),
        octets as f64 / 1e6
    );
    Ok(())
}

/// (current, peak) RSS in KiB of the imap-frontend serving `target`.
fn frontend_rss(target: &str) -> Option<(u64, u64)> {
    rss::serving("imap-frontend", "MAILFLEET_IMAP_LISTEN", target).map(|p| (p.rss_kib, p.hwm_kib))
}

/// (current, peak) RSS in KiB of the one `name` process, if there is one.
fn service_rss(name: &str) -> Option<(u64, u64)> {
    let mut found = rss::service_processes()
        .into_iter()
        .filter(|p| p.name == name);
    match (found.next(), found.next()) {
        (Some(p), None) => Some((p.rss_kib, p.hwm_kib)),
        _ => None,
    }
}

async fn large_append_phase(args: &ImapArgs, user: &str) -> anyhow::Result<()> {
    let services = ["mailstore", "imap-frontend"];
    let before = services.map(service_rss);
    let messages: Vec<Vec<u8>> = (0..args.large_appends)
        .map(|i| {
            super::message::message(
                "imap-large",
                i as u64,
                "bench-sender@example.org",
                user,
                args.large_size,
            )
        })
        .collect();
    let start = Instant::now();
    let results = futures::future::join_all(messages.iter().map(|m| async move {
        let mut c = Imap::connect(&args.target, None).await?;
        c.login(user).await?;
        c.append("INBOX", m).await?;
        c.logout().await;
        anyhow::Ok(())
    }))
    .await;
    let elapsed = start.elapsed();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let octets: usize = messages.iter().map(Vec::len).sum();
    println!(
        "  {} concurrent APPENDs of {:.1} MiB: {:.2} s, {:.1} MB/s",
        args.large_appends,
        args.large_size as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        octets as f64 / 1e6 / elapsed.as_secs_f64()
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (name, before) in services.iter().zip(before) {
        match (before, service_rss(name)) {
            (Some((rss0, hwm0)), Some((_, hwm))) => println!(
                "    {name:<14} RSS before {:>7.1} MiB, peak before {:>7.1} MiB, peak after {:>7.1} MiB",
                mib(rss0),
                mib(hwm0),
                mib(hwm)
            ),
            _ => println!("    {name:<14} RSS: not one such process in /proc"),
        }
    }
    Ok(())
}

async fn idle_phase(args: &ImapArgs, users: &[String]) -> anyhow::Result<()> {
    let looped = loopback(&args.target).await;
    let before = frontend_rss(&args.target);
    let start = Instant::now();
    let opened: Vec<anyhow::Result<(usize, Imap)>> = futures::stream::iter(0..args.idle_sessions)
        .map(|i| {
            let target = args.target.clone();
            let user = &users[i % users.len()];
            async move {
                let mut c = Imap::connect(&target, looped.then(|| source_address(4, i))).await?;
                c.login(user).await?;
                c.select("INBOX").await?;
                let tag = c.next_tag();
                c.writer
                    .write_all(format!("{tag} IDLE\r\n").as_bytes())
                    .await?;
                c.writer.flush().await?;
                c.read_line().await?;
                if !c.line.starts_with(b"+") {
                    bail!("IDLE: {}", String::from_utf8_lossy(&c.line).trim_end());
                }
                Ok((i % users.len(), c))
            }
        })
        .buffer_unordered(OPENING)
        .collect()
        .await;
    let setup = start.elapsed();
    let mut sessions = Vec::new();
    let mut failures = BTreeMap::<String, usize>::new();
    for r in opened {
        match r {
            Ok(c) => sessions.push(c),
            Err(e) => *failures.entry(format!("{e:#}")).or_default() += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = frontend_rss(&args.target);
    let open = sessions.len();
    println!(
        "  IDLE: {open} of {} sessions in IDLE at once on {} accounts, opened in {:.1} s",
        args.idle_sessions,
        users.len(),
        setup.as_secs_f64()
    );
    match (before, during) {
        (Some((rss0, _)), Some((rss1, hwm))) if open > 0 => println!(
            "    imap-frontend RSS {:.1} MiB before, {:.1} MiB with them (peak {:.1} MiB): {:.1} KiB per IDLE session",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss1.saturating_sub(rss0) as f64 / open as f64
        ),
        _ => println!(
            "    imap-frontend RSS: not measured (no imap-frontend process serving the target found)"
        ),
    }
    for (error, count) in &failures {
        println!("    {count} sessions failed: {error}");
    }
    if open > 0 {
        push_latency(args, users, &mut sessions).await?;
    }
    futures::stream::iter(sessions)
        .for_each_concurrent(OPENING, |(_, mut c)| async move {
            if c.writer.write_all(b"DONE\r\n").await.is_ok() && c.writer.flush().await.is_ok() {
                let tag = format!("b{}", c.tag);
                let _ = c.finish(&tag, false).await;
            }
            c.logout().await;
        })
        .await;
    if !failures.is_empty() {
        bail!("{} IDLE sessions failed", failures.values().sum::<usize>());
    }
    Ok(())
}

/// APPENDs one message to the first idle account and times how long each of
/// that account's idling sessions takes to see it as `* n EXISTS`.
async fn push_latency(
    args: &ImapArgs,
    users: &[String],
    sessions: &mut [(usize, Imap)],
) -> anyhow::Result<()> {
    let mut writer = Imap::connect(&args.target, None).await?;
    writer.login(&users[0]).await?;
    let sent = Instant::now();
    writer.append("INBOX", &message(&users[0], 0)).await?;
    writer.logout().await;
    let mut seen = Vec::new();
    // The sessions idling on the account the message goes to.
    let mut watching: Vec<&mut Imap> = sessions
        .iter_mut()
        .filter(|(account, _)| *account == 0)
        .map(|(_, c)| c)
        .collect();
    let watchers = watching.len();
    let waits = watching.iter_mut().map(|c| async move {
        let wait = async {
            loop {
                c.read_line().await?;
                if c.line.ends_with(b"EXISTS\r\n") {
                    return anyhow::Ok(sent.elapsed());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait).await
    });
    for r in futures::future::join_all(waits).await {
        match r {
            Ok(Ok(d)) => seen.push(d),
            Ok(Err(e)) => eprintln!("IDLE session error: {e:#}"),
            Err(_) => {}
        }
    }
    seen.sort();
    println!(
        "    one APPEND reached {} of {} IDLE sessions of that mailbox as EXISTS: p50 {:.1} ms, max {:.1} ms",
        seen.len(),
        watchers,
        super::percentile(&seen, 0.5).as_secs_f64() * 1e3,
        seen.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_lengths() {
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {42}\r\n"), Some(42));
        assert_eq!(literal_length(b"a APPEND x {7+}\r\n"), Some(7));
        assert_eq!(literal_length(b"* OK {not a literal}\r\n"), None);
        assert_eq!(literal_length(b"* OK done\r\n"), None);
        assert_eq!(literal_length(b"{}\r\n"), None);
        assert_eq!(literal_length(b"{99999999999}\r\n"), None);
    }

    #[test]
    fn sources_spread_over_loopback() {
        assert_eq!(
            source_address(4, 0),
            IpAddr::V4(Ipv4Addr::new(127, 4, 0, 1))
        );
        assert_eq!(
            source_address(4, PER_SOURCE),
            IpAddr::V4(Ipv4Addr::new(127, 4, 0, 2))
        );
        assert_eq!(
            source_address(4, 10_000),
            IpAddr::V4(Ipv4Addr::new(127, 4, 0, 201))
        );
    }
}
