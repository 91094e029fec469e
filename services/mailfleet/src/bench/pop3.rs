//! `mailfleet bench pop3`: the POP3 load of a mail client polling, checked
//! response by response, with the server's CPU per session.
//!
//! `--clients` clients loop sessions until `--duration` runs out, each as a
//! random user of `pop3mix1..N@DOMAIN` (`--users`, password "bench"):
//! USER/PASS, STAT, UIDL, RETR of up to 5 random messages, QUIT. Every
//! response is checked ([`Known`], [`Checks`]): a `-ERR` anywhere, a STAT
//! that differs from the sum of the LIST sizes, a UIDL that differs from the
//! one an earlier session saw, a RETR whose octets (dot-stuffing undone,
//! CRLF counted as two) differ from the LIST size or from the count in its
//! `+OK` line, and every connection or protocol error count as errors; the
//! exit status is 1 if there was any. The first session of each user also
//! sends LIST, for the sizes the others are checked against.
//!
//! A session counts when its QUIT is answered before the deadline, and
//! nothing is sent after it. One session per user before the clock starts
//! warms up (first logins verify the full password hash; the LIST). The CPU time of the server processes
//! (`--server-procs`, `/proc/<pid>/stat`, see [`super::cpu`]) over the same
//! span is reported per session completed.
//!
//! Accounts are created through mailstore and seeded over SMTP with
//! `--messages` messages of 1.6 to 66 KB on the first run; `--no-provision`
//! loads any other POP3 server whose users exist already with password
//! "bench", and `--seed-maildir DIR` writes the same messages as Maildirs
//! (`DIR/<user>/Maildir`) for such a server, then exits.
//!
//! Two optional phases measure memory (of the pop3-frontend process, never
//! of the load tool): `--big-count` messages of `--big-size` octets
//! retrieved by one client (RSS before and after), and `--idle-sessions`
//! logged-in sessions held open at once (RSS per session).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use mailfleet_proto::v1::ListMessagesRequest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::client::Client as SmtpClient;
use super::imap::{PER_SOURCE, connect_from, loopback, source_address};
use super::{cpu, rss};
use crate::target::{Connection, Target};

const PASSWORD: &str = "bench";
/// Most messages one session retrieves.
const RETR_PER_SESSION: usize = 5;
/// Smallest and largest seeded message.
const SMALLEST: f64 = 1600.0;
const LARGEST: f64 = 66_000.0;
/// Longest response line the client accepts.
const MAX_LINE: u64 = 1024 * 1024;
/// Longest wait for one response (a login may wait for the maildrop lock).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Examples of each error kind kept for the report.
const EXAMPLES: usize = 3;
/// The processes whose CPU is reported, against mailfleet.
const MAILFLEET_PROCS: &str = "pop3-frontend,mailstore,postgres";

#[derive(Debug, Clone, clap::Args)]
pub struct Pop3Args {
    /// POP3 server to load (plain; the bench measures the server, not TLS).
    #[arg(long, default_value = "127.0.0.1:1110")]
    pub target: String,
    /// Concurrent clients, each looping sessions as a random user.
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Accounts pop3mix1..N the clients log in as, at random.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Messages seeded into each account, from 1.6 to 66 KB.
    #[arg(long, default_value_t = 30)]
    pub messages: usize,
    /// Length of the run.
    #[arg(long, default_value = "20s", value_parser = mailfleet_runtime::config::parse_duration)]
    pub duration: Duration,
    /// Processes whose CPU time is reported per session, by name (comm,
    /// `mailfleet serve NAME`, or program); `NAME:TEXT` also wants TEXT in
    /// the command line, e.g. `postgres:mydb` for one database's backends
    /// [default: pop3-frontend,mailstore,postgres].
    #[arg(long)]
    pub server_procs: Option<String>,
    /// Domain of the bench accounts (must be local).
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// The accounts exist on the target already, with password "bench" and
    /// their messages: nothing is created or seeded. For loading another
    /// POP3 server (Dovecot, say) with the same sessions.
    #[arg(long)]
    pub no_provision: bool,
    /// Write the bench messages as one Maildir per user
    /// (DIR/<user>/Maildir/cur) for another server, and exit.
    #[arg(long, value_name = "DIR")]
    pub seed_maildir: Option<PathBuf>,
    /// SMTP server used to seed the bench mailboxes.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub smtp: String,
    /// mailstore gRPC endpoint (for creating accounts).
    #[arg(long)]
    pub mailstore: Option<String>,
    /// Admin token (for creating accounts).
    #[arg(long)]
    pub token: Option<String>,
    /// Messages of the RETR throughput phase (0 skips it).
    #[arg(long, default_value_t = 0)]
    pub big_count: usize,
    /// Size of each of those messages in octets.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub big_size: usize,
    /// Logged-in sessions held open at once (0 skips the phase).
    #[arg(long, default_value_t = 0)]
    pub idle_sessions: usize,
}

pub async fn pop3(args: Pop3Args) -> ExitCode {
    match run(args).await {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => {
            eprintln!("Responses failed their checks (see above).");
            ExitCode::FAILURE
        }
        Err(e) => crate::exit::fail(&e),
    }
}

/// The sizes of the seeded messages: `count` sizes spread evenly on a log
/// scale from 1.6 to 66 KB, so most are small and a few large, as in a
/// real mailbox.
fn sizes(count: usize) -> Vec<usize> {
    (0..count)
        .map(|i| {
            let t = if count > 1 {
                i as f64 / (count - 1) as f64
            } else {
                0.0
            };
            (SMALLEST * (LARGEST / SMALLEST).powf(t)).round() as usize
        })
        .collect()
}

fn message(user: &str, i: usize, size: usize) -> Vec<u8> {
    super::message::message("pop3", i as u64, "bench-sender@example.org", user, size)
}

/// What a `-ERR` or a failed read is: the server's line, or the error.
#[derive(Debug)]
enum Failure {
    /// The server answered `-ERR` (its line).
    Err(String),
    /// Connection lost, timeout, or a response that is not POP3.
    Protocol(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Protocol(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Protocol(e.into())
    }
}

/// A minimal POP3 client.
struct Pop3 {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Pop3 {
    async fn connect(target: &str, source: Option<IpAddr>) -> Result<Pop3, Failure> {
        let stream = connect_from(target, source).await?;
        let _ = stream.set_nodelay(true);
        let mut c = Pop3 {
            stream: BufReader::with_capacity(64 * 1024, stream),
            line: Vec::new(),
        };
        c.status().await?;
        Ok(c)
    }

    /// Reads one line (CRLF included); its length.
    async fn read_line(&mut self) -> anyhow::Result<usize> {
        self.line.clear();
        let mut limited = (&mut self.stream).take(MAX_LINE);
        let read = limited.read_until(b'\n', &mut self.line);
        let n = tokio::time::timeout(RESPONSE_TIMEOUT, read)
            .await
            .map_err(|_| anyhow!("no response within {RESPONSE_TIMEOUT:?}"))??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        if !self.line.ends_with(b"\n") {
            bail!("a response line over {MAX_LINE} octets");
        }
        Ok(n)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.line).trim_end().to_owned()
    }

    /// Reads a status line: Ok for +OK, Failure::Err for -ERR.
    async fn status(&mut self) -> Result<(), Failure> {
        self.read_line().await?;
        if self.line.starts_with(b"+OK") {
            Ok(())
        } else if self.line.starts_with(b"-ERR") {
            Err(Failure::Err(self.text()))
        } else {
            Err(Failure::Protocol(anyhow!(
                "not a POP3 status line: {:?}",
                self.text()
            )))
        }
    }

    async fn cmd(&mut self, c: &str) -> Result<(), Failure> {
        let stream = self.stream.get_mut();
        stream.write_all(format!("{c}\r\n").as_bytes()).await?;
        self.status().await
    }

    /// Reads a multi-line body to its "." line; returns the lines with
    /// dot-stuffing undone, or (with `count_only`) only their octets.
    async fn multi(&mut self, count_only: bool) -> anyhow::Result<(u64, Vec<String>)> {
        let mut octets = 0u64;
        let mut lines = Vec::new();
        loop {
            self.read_line().await?;
            if self.line == b".\r\n" {
                return Ok((octets, lines));
            }
            let line = match self.line.strip_prefix(b".") {
                Some(rest) => rest,
                None => &self.line[..],
            };
            octets += line.len() as u64;
            if !count_only {
                lines.push(String::from_utf8_lossy(line).trim_end().to_owned());
            }
        }
    }

    async fn login(&mut self, user: &str) -> Result<(), Failure> {
        self.cmd(&format!("USER {user}")).await?;
        self.cmd(&format!("PASS {PASSWORD}")).await
    }

    /// (messages, octets) of the last +OK line of STAT.
    fn stat_reply(&self) -> Option<(usize, u64)> {
        let text = self.text();
        let mut parts = text.split_whitespace().skip(1);
        let n = parts.next()?.parse().ok()?;
        let octets = parts.next()?.parse().ok()?;
        Some((n, octets))
    }
}

/// What the first session of a user saw; every later one must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    /// LIST sizes, by message number.
    sizes: Vec<u64>,
    /// UIDL unique ids, by message number.
    uids: Vec<String>,
}

/// The number and the value of each line of a LIST or UIDL listing.
fn listing(lines: &[String]) -> Option<Vec<(usize, String)>> {
    lines
        .iter()
        .map(|l| {
            let (n, v) = l.split_once(' ')?;
            Some((n.parse().ok()?, v.trim().to_owned()))
        })
        .collect()
}

/// The problems a session's responses show, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    StatDiffersFromList,
    UnreadableListing,
    UidlChanged,
    RetrDiffersFromList,
    RetrDiffersFromItsCount,
}

impl Problem {
    fn describe(self) -> &'static str {
        match self {
            Problem::StatDiffersFromList => "STAT differs from the count and sum of LIST",
            Problem::UnreadableListing => "unreadable LIST or UIDL listing",
            Problem::UidlChanged => "UIDL differs from an earlier session's",
            Problem::RetrDiffersFromList => "RETR octets differ from the LIST size",
            Problem::RetrDiffersFromItsCount => "RETR octets differ from the count in its +OK",
        }
    }
}

/// The checks of one session against what is known of the user.
struct Checks;

impl Checks {
    fn stat(known: &Known, n: usize, octets: u64) -> Option<Problem> {
        (n != known.sizes.len() || octets != known.sizes.iter().sum::<u64>())
            .then_some(Problem::StatDiffersFromList)
    }

    /// The LIST of a first session against its STAT: the sizes.
    fn list(lines: &[String], n: usize, octets: u64) -> Result<Vec<u64>, Problem> {
        let items = listing(lines).ok_or(Problem::UnreadableListing)?;
        let mut sizes = Vec::with_capacity(items.len());
        for (i, (number, size)) in items.iter().enumerate() {
            if *number != i + 1 {
                return Err(Problem::UnreadableListing);
            }
            sizes.push(size.parse().map_err(|_| Problem::UnreadableListing)?);
        }
        if sizes.len() != n || sizes.iter().sum::<u64>() != octets {
            return Err(Problem::StatDiffersFromList);
        }
        Ok(sizes)
    }

    fn uidl(lines: &[String], n: usize) -> Result<Vec<String>, Problem> {
        let items = listing(lines).ok_or(Problem::UnreadableListing)?;
        if items.len() != n || items.iter().enumerate().any(|(i, (k, _))| *k != i + 1) {
            return Err(Problem::UnreadableListing);
        }
        Ok(items.into_iter().map(|(_, id)| id).collect())
    }

    /// A RETR of message `n` (1-based): `status` is its +OK line, `octets`
    /// what came after it.
    fn retr(known: &Known, n: usize, status: &str, octets: u64) -> Vec<Problem> {
        let mut problems = Vec::new();
        if known.sizes.get(n - 1) != Some(&octets) {
            problems.push(Problem::RetrDiffersFromList);
        }
        // "+OK 1234 octets" (RFC 1939's example, which most servers follow).
        let counted = status
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse::<u64>().ok());
        if counted.is_some_and(|c| c != octets) {
            problems.push(Problem::RetrDiffersFromItsCount);
        }
        problems
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    sessions: u64,
    retrs: u64,
    retr_octets: u64,
    /// Session and login (USER + PASS) times of the counted sessions.
    times: Vec<(Duration, Duration)>,
    errors: BTreeMap<String, (u64, Vec<String>)>,
}

impl Tally {
    fn error(&mut self, kind: String, example: String) {
        let e = self.errors.entry(kind).or_default();
        e.0 += 1;
        if e.1.len() < EXAMPLES {
            e.1.push(example);
        }
    }

    fn problem(&mut self, p: Problem, user: &str, detail: impl FnOnce() -> String) {
        self.error(p.describe().to_owned(), format!("{user}: {}", detail()));
    }

    fn merge(&mut self, other: Tally) {
        self.sessions += other.sessions;
        self.retrs += other.retrs;
        self.retr_octets += other.retr_octets;
        self.times.extend(other.times);
        for (k, (n, ex)) in other.errors {
            let e = self.errors.entry(k).or_default();
            e.0 += n;
            e.1.extend(ex);
            e.1.truncate(EXAMPLES);
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }
}

type KnownUsers = Arc<Mutex<HashMap<String, Known>>>;

/// One session; errors of the protocol and `-ERR`s are returned, checks
/// that fail are counted in `tally` and the session goes on.
async fn session(
    target: &str,
    source: Option<IpAddr>,
    user: &str,
    known: &KnownUsers,
    tally: &mut Tally,
    deadline: Instant,
) -> Result<(), (&'static str, Failure)> {
    let start = Instant::now();
    let mut c = Pop3::connect(target, source)
        .await
        .map_err(|e| ("greeting", e))?;
    let past = || Instant::now() >= deadline;
    if past() {
        return Ok(());
    }
    c.login(user).await.map_err(|e| ("USER/PASS", e))?;
    let login = start.elapsed();
    if past() {
        let _ = c.cmd("QUIT").await;
        return Ok(());
    }
    c.cmd("STAT").await.map_err(|e| ("STAT", e))?;
    let (n, octets) = c.stat_reply().ok_or_else(|| {
        (
            "STAT",
            Failure::Protocol(anyhow!("unreadable STAT reply {:?}", c.text())),
        )
    })?;
    let seen = known.lock().ok().and_then(|k| k.get(user).cloned());
    let mut sizes = None;
    match &seen {
        Some(k) => {
            if let Some(p) = Checks::stat(k, n, octets) {
                tally.problem(p, user, || format!("STAT {n} {octets}"));
            }
        }
        None => {
            c.cmd("LIST").await.map_err(|e| ("LIST", e))?;
            let (_, lines) = c.multi(false).await.map_err(|e| ("LIST", e.into()))?;
            match Checks::list(&lines, n, octets) {
                Ok(s) => sizes = Some(s),
                Err(p) => tally.problem(p, user, || {
                    format!("STAT {n} {octets}, LIST of {} lines", lines.len())
                }),
            }
        }
    }
    c.cmd("UIDL").await.map_err(|e| ("UIDL", e))?;
    let (_, lines) = c.multi(false).await.map_err(|e| ("UIDL", e.into()))?;
    let uids = match Checks::uidl(&lines, n) {
        Ok(u) => Some(u),
        Err(p) => {
            tally.problem(p, user, || format!("UIDL of {} lines", lines.len()));
            None
        }
    };
    let known_now = match (seen, sizes, uids) {
        (Some(k), _, Some(uids)) => {
            if uids != k.uids {
                tally.problem(Problem::UidlChanged, user, || {
                    let first = k.uids.iter().zip(&uids).position(|(a, b)| a != b);
                    format!(
                        "{} ids before, {} now; first change at {first:?}",
                        k.uids.len(),
                        uids.len()
                    )
                });
            }
            Some(k)
        }
        (Some(k), _, None) => Some(k),
        (None, Some(sizes), Some(uids)) => {
            let k = Known { sizes, uids };
            if let Ok(mut all) = known.lock() {
                // Two first sessions at once: the first to get here wins,
                // and the other is checked against it.
                let first = all.entry(user.to_owned()).or_insert_with(|| k.clone());
                if *first != k {
                    tally.problem(Problem::UidlChanged, user, || {
                        "two first sessions saw different maildrops".into()
                    });
                }
            }
            Some(k)
        }
        (None, _, _) => None,
    };
    let mut picks: Vec<usize> = (1..=n).collect();
    let picks = {
        let k = RETR_PER_SESSION.min(n);
        for i in 0..k {
            let j = rand::random_range(i..n);
            picks.swap(i, j);
        }
        picks.truncate(k);
        picks
    };
    let mut retrs = 0;
    let mut retr_octets = 0;
    for i in picks {
        if past() {
            let _ = c.cmd("QUIT").await;
            return Ok(());
        }
        c.cmd(&format!("RETR {i}")).await.map_err(|e| ("RETR", e))?;
        let status = c.text();
        let (got, _) = c.multi(true).await.map_err(|e| ("RETR", e.into()))?;
        if let Some(k) = &known_now {
            for p in Checks::retr(k, i, &status, got) {
                tally.problem(p, user, || {
                    format!(
                        "RETR {i}: {status:?}, {got} octets received, LIST said {:?}",
                        k.sizes.get(i - 1)
                    )
                });
            }
        }
        if Instant::now() < deadline {
            retrs += 1;
            retr_octets += got;
        }
    }
    if past() {
        let _ = c.cmd("QUIT").await;
        return Ok(());
    }
    c.cmd("QUIT").await.map_err(|e| ("QUIT", e))?;
    if Instant::now() < deadline {
        tally.sessions += 1;
        tally.retrs += retrs;
        tally.retr_octets += retr_octets;
        tally.times.push((start.elapsed(), login));
    }
    Ok(())
}

/// One client until the deadline.
async fn client(
    args: Arc<Pop3Args>,
    users: Arc<Vec<String>>,
    known: KnownUsers,
    source: Option<IpAddr>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut failures_in_a_row = 0;
    while Instant::now() < deadline {
        let user = &users[rand::random_range(0..users.len())];
        match session(&args.target, source, user, &known, &mut tally, deadline).await {
            Ok(()) => failures_in_a_row = 0,
            Err((what, Failure::Err(line))) => {
                tally.error(format!("{what} answered -ERR"), format!("{user}: {line}"));
                failures_in_a_row = 0;
            }
            Err((what, Failure::Protocol(e))) => {
                tally.error(
                    format!("connection or protocol error at {what}"),
                    format!("{user}: {e:#}"),
                );
                failures_in_a_row += 1;
                if failures_in_a_row >= 5 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tally
}

/// Runs the bench; true when a response failed its checks.
async fn run(args: Pop3Args) -> anyhow::Result<bool> {
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let users: Vec<String> = (1..=args.users)
        .map(|i| format!("pop3mix{i}@{}", args.domain))
        .collect();
    if let Some(dir) = &args.seed_maildir {
        seed_maildirs(dir, &users, args.messages)?;
        println!(
            "Wrote {} messages for each of {} users under {}",
            args.messages,
            users.len(),
            dir.display()
        );
        return Ok(false);
    }
    let big_user = format!("pop3bench-big@{}", args.domain);
    let idle_users: Vec<String> = (1..=args.idle_sessions)
        .map(|i| format!("pop3idle{i}@{}", args.domain))
        .collect();
    if !args.no_provision {
        let target = Target::resolve(&Connection {
            endpoint: args.mailstore.clone(),
            token: args.token.clone(),
        })
        .context("the POP3 bench creates its accounts through mailstore")?;
        let mut all = users.clone();
        if args.big_count > 0 {
            all.push(big_user.clone());
        }
        all.extend(idle_users.iter().cloned());
        super::ensure_accounts(&target, &args.domain, &all).await?;
        eprintln!("Seeding the bench mailboxes over SMTP...");
        let sizes = sizes(args.messages);
        let seeded: Vec<anyhow::Result<()>> = futures::stream::iter(&users)
            .map(|u| seed(&target, &args.smtp, u, &sizes))
            .buffer_unordered(8)
            .collect()
            .await;
        seeded.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        if args.big_count > 0 {
            seed(
                &target,
                &args.smtp,
                &big_user,
                &vec![args.big_size; args.big_count],
            )
            .await?;
        }
    }
    println!("mailfleet bench pop3 -> {}", args.target);
    let mut failed = false;
    if args.clients > 0 {
        failed |= mix_phase(&args, &users).await?;
    }
    if args.big_count > 0 {
        retr_phase(&args, &big_user).await?;
    }
    if args.idle_sessions > 0 {
        idle_phase(&args, &idle_users).await?;
    }
    Ok(failed)
}

/// Runs the session mix; returns whether any error was seen.
async fn mix_phase(args: &Pop3Args, users: &[String]) -> anyhow::Result<bool> {
    let procs = cpu::parse_list(args.server_procs.as_deref().unwrap_or(MAILFLEET_PROCS));
    let looped = loopback(&args.target).await;
    let args_arc = Arc::new(args.clone());
    let users = Arc::new(users.to_vec());
    let known: KnownUsers = Arc::default();
    // Warm-up, not counted: one session per user, so the first login of
    // each (a full password hash) and the LIST the checks need are out of
    // the figures. Its errors count all the same.
    let mut tally = Tally::default();
    let warm: Vec<Tally> = futures::stream::iter(users.iter().cloned().enumerate())
        .map(|(i, user)| {
            let (target, known) = (args.target.clone(), known.clone());
            let source = looped.then(|| source_address(6, (i % args.clients.max(1)) * PER_SOURCE));
            async move {
                let mut t = Tally::default();
                let far = Instant::now() + Duration::from_secs(3600);
                if let Err((what, e)) = session(&target, source, &user, &known, &mut t, far).await {
                    let example = match e {
                        Failure::Err(line) => line,
                        Failure::Protocol(e) => format!("{e:#}"),
                    };
                    t.error(
                        format!("warm-up session failed at {what}"),
                        format!("{user}: {example}"),
                    );
                }
                Tally {
                    errors: t.errors,
                    ..Tally::default()
                }
            }
        })
        .buffer_unordered(args.clients.max(1))
        .collect()
        .await;
    for t in warm {
        tally.merge(t);
    }
    let cpu_before = cpu::snapshot(&procs);
    let start = Instant::now();
    let deadline = start + args.duration;
    let workers: Vec<_> = (0..args.clients)
        .map(|i| {
            // Closed sockets linger in TIME_WAIT: each client its own source.
            let source = looped.then(|| source_address(6, i * PER_SOURCE));
            tokio::spawn(client(
                args_arc.clone(),
                users.clone(),
                known.clone(),
                source,
                deadline,
            ))
        })
        .collect();
    tokio::time::sleep_until(deadline.into()).await;
    // CPU over the same span as the sessions counted.
    let cpu_after = cpu::snapshot(&procs);
    for w in workers {
        if let Ok(t) = w.await {
            tally.merge(t);
        }
    }
    let secs = args.duration.as_secs_f64().max(1e-9);
    let errors = tally.error_count();
    println!(
        "  sessions (USER/PASS, STAT, UIDL, up to {RETR_PER_SESSION} RETR, QUIT): {} in {secs:.1} s = {:.0} sessions/s, \
         {:.0} RETR/s ({:.1} MB/s), {} clients over {} users, {errors} errors",
        tally.sessions,
        tally.sessions as f64 / secs,
        tally.retrs as f64 / secs,
        tally.retr_octets as f64 / secs / 1e6,
        args.clients,
        users.len(),
    );
    let mut total: Vec<Duration> = tally.times.iter().map(|t| t.0).collect();
    let mut login: Vec<Duration> = tally.times.iter().map(|t| t.1).collect();
    total.sort();
    login.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "    session time p50 {:.1} ms, p99 {:.1} ms; of which USER/PASS (login, lock, snapshot) p50 {:.1} ms, p99 {:.1} ms",
        ms(super::percentile(&total, 0.5)),
        ms(super::percentile(&total, 0.99)),
        ms(super::percentile(&login, 0.5)),
        ms(super::percentile(&login, 0.99)),
    );
    for (kind, (n, examples)) in &tally.errors {
        println!("    error: {kind}: {n}");
        for e in examples {
            println!("      e.g. {}", e.chars().take(200).collect::<String>());
        }
    }
    let used = cpu::used(&cpu_before, &cpu_after, cpu::TICKS_PER_SECOND);
    cpu::print_per_operation(&used, &procs, tally.sessions, "session");
    Ok(errors > 0)
}

/// Makes sure `account` holds exactly `sizes.len()` messages, seeding them
/// over SMTP when it holds fewer.
async fn seed(target: &Target, smtp: &str, account: &str, sizes: &[usize]) -> anyhow::Result<()> {
    let store = target.mailstore()?;
    let count = || {
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
                .map_err(|s| target.explain(&s))
        }
    };
    let have = count().await?;
    if have >= sizes.len() {
        return Ok(());
    }
    let mut client = SmtpClient::connect(smtp, "bench.mailfleet.test", false)
        .await
        .map_err(|e| anyhow!("cannot open an SMTP session with {smtp}: {e}"))?;
    for (i, &size) in sizes.iter().enumerate().skip(have) {
        let m = message(account, i, size);
        let code = client
            .send("bench-sender@example.org", &[account.to_owned()], &m)
            .await
            .map_err(|e| anyhow!("seeding {account} over SMTP failed: {e}"))?;
        if code != 250 {
            bail!("seeding {account} over SMTP: the server answered {code}");
        }
    }
    client.quit().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count().await? < sizes.len() {
        if Instant::now() > deadline {
            bail!("the seeded messages for {account} did not arrive within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The bench messages as Maildirs, one per user, for a server loaded with
/// `--no-provision`: each message as it would be delivered (a Return-Path
/// line first), with LF line ends as Maildir files have them.
fn seed_maildirs(dir: &Path, users: &[String], count: usize) -> anyhow::Result<()> {
    let sizes = sizes(count);
    for user in users {
        let maildir = dir.join(user).join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub))
                .with_context(|| format!("cannot create {}", maildir.display()))?;
        }
        for (i, &size) in sizes.iter().enumerate() {
            let mut m = b"Return-Path: <bench-sender@example.org>\r\n".to_vec();
            m.extend_from_slice(&message(user, i, size));
            let lf: Vec<u8> = m.into_iter().filter(|&b| b != b'\r').collect();
            // Seen-less messages in cur/ (":2,"), numbered in order.
            let name = format!("{}.M{i}P0.bench:2,", 1_700_000_000 + i);
            std::fs::write(maildir.join("cur").join(name), lf)
                .with_context(|| format!("cannot write into {}", maildir.display()))?;
        }
    }
    Ok(())
}

/// (current, peak) RSS in KiB of the pop3-frontend serving `target`.
fn pop3_rss(target: &str) -> Option<(u64, u64)> {
    rss::serving("pop3-frontend", "MAILFLEET_POP3_LISTEN", target).map(|p| (p.rss_kib, p.hwm_kib))
}

async fn retr_phase(args: &Pop3Args, user: &str) -> anyhow::Result<()> {
    let fail = |e: Failure| match e {
        Failure::Err(line) => anyhow!("{line}"),
        Failure::Protocol(e) => e,
    };
    if let Some(p) = rss::serving("pop3-frontend", "MAILFLEET_POP3_LISTEN", &args.target) {
        rss::reset_peak(p.pid);
    }
    let before = pop3_rss(&args.target);
    let mut c = Pop3::connect(&args.target, None).await.map_err(fail)?;
    c.login(user).await.map_err(fail)?;
    c.cmd("STAT").await.map_err(fail)?;
    let (n, _) = c.stat_reply().ok_or_else(|| anyhow!("unreadable STAT"))?;
    let start = Instant::now();
    let mut octets = 0;
    let count = n.min(args.big_count);
    for i in 1..=count {
        c.cmd(&format!("RETR {i}")).await.map_err(fail)?;
        octets += c.multi(true).await?.0;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    c.cmd("QUIT").await.map_err(fail)?;
    let after = pop3_rss(&args.target);
    println!(
        "  RETR: {count} messages, {:.1} MB in {secs:.2} s = {:.1} MB/s",
        octets as f64 / 1e6,
        octets as f64 / secs / 1e6
    );
    match (before, after) {
        (Some((rss0, _)), Some((rss1, hwm))) => println!(
            "    pop3-frontend RSS {:.1} MiB before, {:.1} MiB after, peak during the phase {:.1} MiB, for {:.1} MiB messages",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            hwm as f64 / 1024.0,
            args.big_size as f64 / 1048576.0
        ),
        _ => println!(
            "    pop3-frontend RSS: not measured (no single pop3-frontend process visible)"
        ),
    }
    Ok(())
}

async fn idle_phase(args: &Pop3Args, users: &[String]) -> anyhow::Result<()> {
    let before = pop3_rss(&args.target);
    let looped = loopback(&args.target).await;
    let start = Instant::now();
    let opened: Vec<Result<Pop3, Failure>> =
        futures::stream::iter(users.iter().cloned().enumerate())
            .map(|(i, u)| {
                let target = args.target.clone();
                let source = looped.then(|| source_address(7, i));
                async move {
                    let mut c = Pop3::connect(&target, source).await?;
                    c.login(&u).await?;
                    c.cmd("STAT").await?;
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
                    eprintln!("idle session error: {e:?}");
                }
            }
        }
    }
    // Every session answers while all are open.
    for c in &mut sessions {
        if let Err(e) = c.cmd("NOOP").await {
            bail!("NOOP failed with every session open: {e:?}");
        }
    }
    let during = pop3_rss(&args.target);
    let open = sessions.len();
    for mut c in sessions {
        let _ = c.cmd("QUIT").await;
    }
    println!(
        "  concurrent: {open} logged-in sessions open at once ({failed} failed), opened in {:.1} s",
        setup.as_secs_f64()
    );
    match (before, during) {
        (Some((rss0, _)), Some((rss1, hwm))) if open > 0 => println!(
            "    pop3-frontend RSS {:.1} MiB idle, {:.1} MiB with them open (peak {:.1} MiB): {:.1} KiB per session",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss1.saturating_sub(rss0) as f64 / open as f64
        ),
        _ => println!(
            "    pop3-frontend RSS: not measured (no single pop3-frontend process visible)"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sizes_span_the_range() {
        let s = sizes(30);
        assert_eq!(s.len(), 30);
        assert_eq!(s[0], 1600);
        assert_eq!(s[29], 66_000);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn checks_catch_each_kind_of_wrong_answer() {
        let list = lines(&["1 100", "2 250"]);
        let sizes = Checks::list(&list, 2, 350).unwrap();
        assert_eq!(sizes, [100, 250]);
        // STAT that LIST does not add up to, in count or octets.
        assert_eq!(
            Checks::list(&list, 2, 351),
            Err(Problem::StatDiffersFromList)
        );
        assert_eq!(
            Checks::list(&list, 3, 350),
            Err(Problem::StatDiffersFromList)
        );
        assert_eq!(
            Checks::list(&lines(&["1 100", "3 250"]), 2, 350),
            Err(Problem::UnreadableListing)
        );
        let uids = Checks::uidl(&lines(&["1 a.1", "2 a.2"]), 2).unwrap();
        let known = Known { sizes, uids };
        assert_eq!(Checks::stat(&known, 2, 350), None);
        assert_eq!(
            Checks::stat(&known, 2, 349),
            Some(Problem::StatDiffersFromList)
        );
        assert_eq!(
            Checks::uidl(&lines(&["1 a.1"]), 2),
            Err(Problem::UnreadableListing)
        );
        // RETR: the octets received against LIST and against its own +OK.
        assert!(Checks::retr(&known, 2, "+OK 250 octets", 250).is_empty());
        assert!(Checks::retr(&known, 2, "+OK message follows", 250).is_empty());
        assert_eq!(
            Checks::retr(&known, 2, "+OK 250 octets", 249),
            [
                Problem::RetrDiffersFromList,
                Problem::RetrDiffersFromItsCount
            ]
        );
        assert_eq!(
            Checks::retr(&known, 1, "+OK 101 octets", 100),
            [Problem::RetrDiffersFromItsCount]
        );
    }

    /// A tiny POP3 server that answers from a script, for the client's
    /// reading of multi-line responses and -ERR.
    #[tokio::test]
    async fn a_session_counts_err_and_wrong_octets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            // Two sessions: the first right, the second with a RETR one
            // octet short of LIST, then -ERR for the next login.
            for round in 0..3 {
                let (s, _) = listener.accept().await.unwrap();
                let mut s = BufReader::new(s);
                s.get_mut().write_all(b"+OK hi\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if s.read_line(&mut line).await.unwrap() == 0 {
                        break;
                    }
                    let cmd = line.trim_end().to_owned();
                    let reply: &[u8] = match cmd.as_str() {
                        c if c.starts_with("PASS") && round == 2 => b"-ERR [IN-USE] locked\r\n",
                        c if c.starts_with("USER") || c.starts_with("PASS") => b"+OK\r\n",
                        "STAT" => b"+OK 1 7\r\n",
                        "LIST" => b"+OK\r\n1 7\r\n.\r\n",
                        "UIDL" => b"+OK\r\n1 x1\r\n.\r\n",
                        "RETR 1" if round == 0 => b"+OK 7 octets\r\n..a\r\nb\r\n.\r\n",
                        "RETR 1" => b"+OK 7 octets\r\n..a\r\n\r\n.\r\n",
                        "QUIT" => b"+OK bye\r\n",
                        _ => b"-ERR what\r\n",
                    };
                    s.get_mut().write_all(reply).await.unwrap();
                    if cmd == "QUIT" {
                        break;
                    }
                }
            }
        });
        let known: KnownUsers = Arc::default();
        let mut tally = Tally::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        session(&addr, None, "u", &known, &mut tally, deadline)
            .await
            .unwrap();
        assert_eq!(
            (tally.sessions, tally.retrs, tally.error_count()),
            (1, 1, 0)
        );
        session(&addr, None, "u", &known, &mut tally, deadline)
            .await
            .unwrap();
        assert_eq!(tally.error_count(), 2, "{:?}", tally.errors.keys());
        let err = session(&addr, None, "u", &known, &mut tally, deadline).await;
        assert!(matches!(err, Err(("USER/PASS", Failure::Err(l))) if l.contains("IN-USE")));
    }
}
