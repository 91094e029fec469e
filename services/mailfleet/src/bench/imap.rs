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
//! 5. APPEND at scale (`--append-scale K` with `--first-sync N`): one
//!    client APPENDs K messages one after the other into an empty mailbox,
//!    then K into the first-sync INBOX of N messages; APPENDs/s and server
//!    CPU per APPEND of each, and their ratio (the large mailbox should
//!    cost no more). The K messages are expunged again afterwards.
//! 6. large APPENDs (`--large-appends N`, off by default): N sessions each
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

mod classic;
use crate::target::{Connection, Target};

const PASSWORD: &str = "bench";
/// Sessions per loopback source address; below the default per-IP limit.
pub(super) const PER_SOURCE: usize = 50;
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

/// The processes whose CPU the classic mix reports, against mailfleet.
const MAILFLEET_PROCS: &str = "imap-frontend,mailstore,postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Dovecot imaptest's default states and probabilities (see --keep-open).
    Classic,
    /// mailfleet's own phases: a command mix over --sessions kept-open
    /// sessions, then full login-to-logout sessions over --clients.
    Mailfleet,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImapArgs {
    /// IMAP server to load (plain; the bench measures the server, not TLS).
    #[arg(long, default_value = "127.0.0.1:1143")]
    pub target: String,
    /// Domain of the bench accounts (must be local).
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// Which load: imaptest's classic mix, or mailfleet's own phases.
    #[arg(long, value_enum, default_value = "classic")]
    pub mix: Mix,
    /// Classic mix: accounts imapmix1..N the clients log in as, at random.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Classic mix: each client logs in once and loops the commands (else
    /// one login per session, as imaptest by default).
    #[arg(long)]
    pub keep_open: bool,
    /// Classic mix: processes whose CPU time is reported per command, by
    /// name (comm, `mailfleet serve NAME`, or program); `NAME:TEXT` also
    /// wants TEXT in the command line, e.g. `postgres:mydb` for one
    /// database's backends [default: imap-frontend,mailstore,postgres].
    #[arg(long)]
    pub server_procs: Option<String>,
    /// Concurrent sessions of the mailfleet command-mix phase, one account each (0 skips it).
    #[arg(long, default_value_t = 50)]
    pub sessions: usize,
    /// Messages seeded into each account of the command mix [default: 100
    /// for classic, 200 for mailfleet].
    #[arg(long)]
    pub messages: Option<usize>,
    /// Concurrent clients of the classic mix, or of the mailfleet full-session phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Length of the command mix and of the full-session phase.
    #[arg(long, default_value = "20s", value_parser = mailfleet_runtime::config::parse_duration)]
    pub duration: Duration,
    /// Messages in the first-sync mailbox (0 skips the phase).
    #[arg(long, default_value_t = 0)]
    pub first_sync: usize,
    /// Sessions held in IDLE at once, 0 skips the phase [default: 1000 with
    /// --mix mailfleet, 0 with classic].
    #[arg(long)]
    pub idle_sessions: Option<usize>,
    /// Sequential APPENDs into an empty mailbox and into the first-sync
    /// mailbox, compared (0 skips the phase; needs --first-sync).
    #[arg(long, default_value_t = 0)]
    pub append_scale: usize,
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
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => {
            eprintln!("Responses failed their checks (see above).");
            ExitCode::FAILURE
        }
        Err(e) => crate::exit::fail(&e),
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
        let stream = connect_from(target, source).await?;
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

    /// APPEND with a non-synchronising literal (RFC 7888); the untagged
    /// responses are kept.
    async fn append_response(&mut self, mailbox: &str, message: &[u8]) -> anyhow::Result<Response> {
        let tag = self.next_tag();
        self.writer
            .write_all(format!("{tag} APPEND \"{mailbox}\" {{{}+}}\r\n", message.len()).as_bytes())
            .await?;
        self.writer.write_all(message).await?;
        self.writer.write_all(b"\r\n").await?;
        self.writer.flush().await?;
        self.finish(&tag, true).await
    }

    /// APPEND that must answer OK.
    async fn append(&mut self, mailbox: &str, message: &[u8]) -> anyhow::Result<()> {
        let r = self.append_response(mailbox, message).await?;
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

/// A TCP connection to `target`, from the loopback address `source` when
/// given (so the server's per-address limits see many clients).
pub(super) async fn connect_from(
    target: &str,
    source: Option<IpAddr>,
) -> anyhow::Result<TcpStream> {
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
    Ok(stream)
}

/// Loopback source address for session `i` of a group starting at `base`.
pub(super) fn source_address(base: u8, i: usize) -> IpAddr {
    let n = (i / PER_SOURCE) as u32;
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(127, base, 0, 1)) + n,
    ))
}

pub(super) async fn loopback(target: &str) -> bool {
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

/// Runs the phases asked for; true when a response failed its checks.
async fn run(args: ImapArgs) -> anyhow::Result<bool> {
    let classic = args.mix == Mix::Classic;
    let idle_sessions = args.idle_sessions.unwrap_or(if classic { 0 } else { 1000 });
    let messages = args.messages.unwrap_or(if classic { 100 } else { 200 });
    let name = |kind: &str, i: usize| format!("imap{kind}{i}@{}", args.domain);
    let classic_users: Vec<String> = if classic {
        (1..=args.users).map(|i| name("mix", i)).collect()
    } else {
        Vec::new()
    };
    if classic && args.clients > 0 && classic_users.is_empty() {
        bail!("--users must be at least 1");
    }
    let mix_users: Vec<String> = if classic {
        Vec::new()
    } else {
        (1..=args.sessions).map(|i| name("bench", i)).collect()
    };
    let session_users: Vec<String> = if classic {
        Vec::new()
    } else {
        (1..=args.clients).map(|i| name("sess", i)).collect()
    };
    let idle_users: Vec<String> = (1..=IDLE_ACCOUNTS.min(idle_sessions))
        .map(|i| name("idle", i))
        .collect();
    let sync_user = name("sync", args.first_sync);
    let large_user = name("large", 1);
    let mut all: Vec<String> = mix_users.clone();
    all.extend(classic_users.iter().cloned());
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
        seed(&args.target, u, messages, 4).await?;
    }
    // One session per account, eight accounts at a time.
    let seeded: Vec<anyhow::Result<()>> = futures::stream::iter(&classic_users)
        .map(|u| seed(&args.target, u, messages, 1))
        .buffer_unordered(8)
        .collect()
        .await;
    seeded.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    for u in &session_users {
        seed(&args.target, u, 50, 4).await?;
    }
    if args.first_sync > 0 {
        seed(&args.target, &sync_user, args.first_sync, 8).await?;
    }
    println!("mailfleet bench imap -> {}", args.target);
    let mut failed = false;
    if classic && args.clients > 0 {
        failed |= classic::phase(&args, &classic_users).await?;
    }
    if args.sessions > 0 && !classic {
        mix_phase(&args, &mix_users).await?;
    }
    if args.clients > 0 && !classic {
        sessions_phase(&args, &session_users).await?;
    }
    if args.first_sync > 0 {
        first_sync_phase(&args, &sync_user).await?;
    }
    if args.append_scale > 0 {
        if args.first_sync == 0 {
            bail!("--append-scale compares with the --first-sync mailbox: give both");
        }
        append_scale_phase(&args, &sync_user).await?;
    }
    if idle_sessions > 0 {
        idle_phase(&args, idle_sessions, &idle_users).await?;
    }
    if args.large_appends > 0 {
        large_append_phase(&args, &large_user).await?;
    }
    Ok(failed)
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
    deadline: Instant,
    times: &mut Vec<(usize, Duration)>,
) -> anyhow::Result<()> {
    // Nothing is issued after the deadline and only what completed before
    // it counts: the wind-down is no part of the rate.
    let mut record = |i: usize, t: Instant| {
        let now = Instant::now();
        if now <= deadline {
            times.push((i, now - t));
        }
    };
    if Instant::now() >= deadline {
        return Ok(());
    }
    let t = Instant::now();
    let exists = c.select("INBOX").await?.max(1);
    record(0, t);
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
        if Instant::now() >= deadline {
            return Ok(());
        }
        let t = Instant::now();
        c.ok(step).await?;
        record(i + 1, t);
    }
    if Instant::now() >= deadline {
        return Ok(());
    }
    let t = Instant::now();
    c.append("INBOX", &message(account, round)).await?;
    record(5, t);
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
    let deadline = start + args.duration;
    let workers: Vec<_> = sessions
        .into_iter()
        .map(|(mut c, u)| {
            let (stop, errors) = (stop.clone(), errors.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    round += 1;
                    if let Err(e) = mix_round(&mut c, &u, round, deadline, &mut times).await {
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
    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut by_command: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    for w in workers {
        for (i, d) in w.await.unwrap_or_default() {
            by_command.entry(i).or_default().push(d);
        }
    }
    let secs = args.duration.as_secs_f64().max(1e-9);
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
    let deadline = start + args.duration;
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
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let t = Instant::now();
                    match session(&target, source, &u).await {
                        // Sessions ending after the deadline are the wind-down.
                        Ok(()) if Instant::now() <= deadline => times.push(t.elapsed()),
                        Ok(()) => {}
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
    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.unwrap_or_default());
    }
    times.sort();
    let secs = args.duration.as_secs_f64().max(1e-9);
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

/// `count` APPENDs one after the other into `mailbox`: (seconds, server
/// CPU by process name, UIDs from APPENDUID).
async fn timed_appends(
    c: &mut Imap,
    procs: &[super::cpu::Matcher],
    user: &str,
    mailbox: &str,
    count: usize,
) -> anyhow::Result<(f64, BTreeMap<String, super::cpu::Used>, Vec<u32>)> {
    use super::cpu;
    let messages: Vec<Vec<u8>> = (0..count).map(|i| message(user, i)).collect();
    let mut uids = Vec::with_capacity(count);
    let before = cpu::snapshot(procs);
    let start = Instant::now();
    for m in &messages {
        let r = c.append_response(mailbox, m).await?;
        if r.status != "OK" {
            bail!("APPEND: {}", String::from_utf8_lossy(&c.line).trim_end());
        }
        uids.extend(appenduid(&String::from_utf8_lossy(&c.line)));
    }
    let secs = start.elapsed().as_secs_f64();
    let used = cpu::used(&before, &cpu::snapshot(procs), cpu::TICKS_PER_SECOND);
    Ok((secs, used, uids))
}

/// The UID of an `[APPENDUID validity uid]` response code.
fn appenduid(line: &str) -> Option<u32> {
    let rest = &line[line.find("[APPENDUID ")? + 11..];
    rest.split([' ', ']']).nth(1)?.parse().ok()
}

async fn append_scale_phase(args: &ImapArgs, user: &str) -> anyhow::Result<()> {
    let procs = super::cpu::parse_list(args.server_procs.as_deref().unwrap_or(MAILFLEET_PROCS));
    let count = args.append_scale;
    let mut c = Imap::connect(&args.target, None).await?;
    c.login(user).await?;
    let held = c.select("INBOX").await?;
    // APPENDs to a mailbox not selected, as a client uploading does.
    c.ok("UNSELECT").await?;
    let empty = format!("AppendBench{}", std::process::id());
    c.ok(&format!("CREATE \"{empty}\"")).await?;
    let small = timed_appends(&mut c, &procs, user, &empty, count).await;
    c.ok(&format!("DELETE \"{empty}\"")).await?;
    let (small_secs, small_cpu, _) = small?;
    let (large_secs, large_cpu, uids) = timed_appends(&mut c, &procs, user, "INBOX", count).await?;
    // Back to the N messages the first sync expects.
    if !uids.is_empty() {
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        c.select("INBOX").await?;
        c.ok(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        c.ok(&format!("UID EXPUNGE {set}")).await?;
    }
    c.logout().await;
    let rate = |secs: f64| count as f64 / secs.max(1e-9);
    let cpu_ms = |used: &BTreeMap<String, super::cpu::Used>| {
        used.values().map(|u| u.own).sum::<f64>() * 1e3 / count.max(1) as f64
    };
    println!(
        "  APPEND at scale, {count} sequential APPENDs of {MESSAGE_SIZE} octets by one client \
         (server CPU {}):",
        procs
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join("+")
    );
    println!(
        "    into an empty mailbox:          {:>7.0} APPENDs/s, {:.2} ms CPU per APPEND",
        rate(small_secs),
        cpu_ms(&small_cpu)
    );
    println!(
        "    into a mailbox of {held:>7} messages: {:>7.0} APPENDs/s, {:.2} ms CPU per APPEND ({:+.0} % rate)",
        rate(large_secs),
        cpu_ms(&large_cpu),
        (rate(large_secs) / rate(small_secs) - 1.0) * 100.0
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
    let reset = services.map(|name| {
        let mut found = rss::service_processes()
            .into_iter()
            .filter(|p| p.name == name);
        match (found.next(), found.next()) {
            (Some(p), None) => rss::reset_peak(p.pid),
            _ => false,
        }
    });
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
    for ((name, before), reset) in services.iter().zip(before).zip(reset) {
        match (before, service_rss(name)) {
            (Some((rss0, _)), Some((_, hwm))) if reset => println!(
                "    {name:<14} RSS before {:>7.1} MiB, peak during the phase {:>7.1} MiB",
                mib(rss0),
                mib(hwm)
            ),
            (Some((rss0, hwm0)), Some((_, hwm))) => println!(
                "    {name:<14} RSS before {:>7.1} MiB, peak since process start: before {:>7.1} MiB, after {:>7.1} MiB",
                mib(rss0),
                mib(hwm0),
                mib(hwm)
            ),
            _ => println!("    {name:<14} RSS: not one such process in /proc"),
        }
    }
    Ok(())
}

async fn idle_phase(args: &ImapArgs, count: usize, users: &[String]) -> anyhow::Result<()> {
    let looped = loopback(&args.target).await;
    // VmHWM counts from process start unless reset: reset it so "peak" is
    // this phase's.
    let reset = rss::serving("imap-frontend", "MAILFLEET_IMAP_LISTEN", &args.target)
        .is_some_and(|p| rss::reset_peak(p.pid));
    let before = frontend_rss(&args.target);
    let start = Instant::now();
    let opened: Vec<anyhow::Result<(usize, Imap)>> = futures::stream::iter(0..count)
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
        count,
        users.len(),
        setup.as_secs_f64()
    );
    match (before, during) {
        (Some((rss0, _)), Some((rss1, hwm))) if open > 0 => println!(
            "    imap-frontend RSS {:.1} MiB before, {:.1} MiB with them (peak {:.1} MiB {}): {:.1} KiB per IDLE session",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            hwm as f64 / 1024.0,
            if reset {
                "during the phase"
            } else {
                "since process start"
            },
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
    // The sessions idling on the account the message goes to.
    let mut watching: Vec<&mut Imap> = sessions
        .iter_mut()
        .filter(|(account, _)| *account == 0)
        .map(|(_, c)| c)
        .collect();
    let watchers = watching.len();
    // The watchers read while the APPEND runs and note when each EXISTS
    // arrives; the clock starts when the APPEND's OK says the message
    // exists, so the APPEND's own round trip is not in the figure.
    let waits = futures::future::join_all(watching.iter_mut().map(|c| async move {
        let wait = async {
            loop {
                c.read_line().await?;
                if c.line.ends_with(b"EXISTS\r\n") {
                    return anyhow::Ok(Instant::now());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait).await
    }));
    let append = async {
        let r = writer.append("INBOX", &message(&users[0], 0)).await;
        (r, Instant::now())
    };
    let (arrivals, (appended, exists_from)) = tokio::join!(waits, append);
    appended?;
    writer.logout().await;
    let mut seen = Vec::new();
    let mut early = 0;
    for r in arrivals {
        match r {
            Ok(Ok(at)) => {
                if at < exists_from {
                    early += 1;
                }
                seen.push(at.saturating_duration_since(exists_from));
            }
            Ok(Err(e)) => eprintln!("IDLE session error: {e:#}"),
            Err(_) => {}
        }
    }
    seen.sort();
    println!(
        "    one APPEND reached {} of {} IDLE sessions of that mailbox as EXISTS, counted from the APPEND's OK \
         ({early} before it): p50 {:.1} ms, max {:.1} ms",
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
    fn appenduids() {
        assert_eq!(
            appenduid("b7 OK [APPENDUID 1733 4021] APPEND completed"),
            Some(4021)
        );
        assert_eq!(appenduid("b7 OK APPEND completed"), None);
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
