//! `mailfleet bench smtp`: an async SMTP load generator.
//!
//! N connections share one message counter (optionally paced to a global
//! rate); each message carries a unique marker in its Subject and in an
//! `X-Mailfleet-Bench` header. The report gives accepted messages/s and the
//! reply codes; when a mailstore endpoint and admin token are at hand (flags,
//! environment, or the dev file) it also gives the end-to-end latency from
//! the 250 to the message being visible in mailstore (p50/p99) and the
//! end-to-end rate, and in every case the peak RSS of each service process.
//! With `--idle N` it sends nothing and measures what N open, idle sessions
//! cost smtp-gateway in memory (`idle`).

mod client;
mod cpu;
mod e2e;
mod idle;
mod imap;
mod message;
mod pop3;
mod rss;

pub use imap::{ImapArgs, imap};
pub use pop3::{Pop3Args, pop3};

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use futures::StreamExt;
use mailfleet_proto::v1::{
    AddAccountRequest, AddDomainRequest, ListAccountsRequest, ListDomainsRequest,
};
use mailfleet_runtime::CancellationToken;
use tokio::sync::Mutex;

use crate::target::{Connection, Target};
use client::{Client, ClientError};
use e2e::Ledger;

/// `mailfleet bench`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Send many messages over SMTP and measure acceptance and end-to-end latency.
    Smtp(SmtpArgs),
    /// POP3 sessions/s, RETR throughput and memory per concurrent session.
    Pop3(Pop3Args),
    /// IMAP commands/s for a mix, full sessions/s, first sync of a large mailbox, memory per IDLE session.
    Imap(ImapArgs),
}

#[derive(Debug, clap::Args)]
pub struct SmtpArgs {
    /// SMTP server to load.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub target: String,
    /// Concurrent SMTP connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Messages to send in total.
    #[arg(long, default_value_t = 20000)]
    pub messages: u64,
    /// Size of each message in octets.
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Send to bench1..benchN@DOMAIN (created when an admin token is at hand) [default: 100].
    #[arg(long, conflicts_with_all = ["to", "fanout"])]
    pub accounts: Option<u32>,
    /// Send every message to this one address instead.
    #[arg(long, conflicts_with = "fanout")]
    pub to: Option<String>,
    /// Send every message to all of bench1..benchN@DOMAIN in one transaction
    /// (N RCPTs): the cost of fan-out, per message.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub fanout: Option<u32>,
    /// Domain of the bench accounts.
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// Envelope sender.
    #[arg(long, default_value = "bench-sender@example.org")]
    pub from: String,
    /// Overall rate limit in messages per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// mailstore gRPC endpoint for the end-to-end measurement.
    #[arg(long)]
    pub mailstore: Option<String>,
    /// Admin token for the end-to-end measurement and account creation.
    #[arg(long)]
    pub token: Option<String>,
    /// How long to wait, after the last 250, for messages to become visible.
    #[arg(long, default_value = "120s", value_parser = mailfleet_runtime::config::parse_duration)]
    pub e2e_timeout: Duration,
    /// Skip the end-to-end measurement.
    #[arg(long)]
    pub no_e2e: bool,
    /// The recipients exist on the target already: nothing is created and
    /// mailstore is not asked anything (end to end only with --visible-cmd).
    /// For loading another SMTP server (Postfix, say) with the same run.
    #[arg(long)]
    pub no_provision: bool,
    /// A shell command (run with `sh -c`) that prints how many copies have
    /// been delivered, e.g. `ls DIR/*/Maildir/new | wc -l`: end to end is
    /// measured with it instead of mailstore, taking messages to become
    /// visible in the order they were accepted.
    #[arg(long, value_name = "COMMAND")]
    pub visible_cmd: Option<String>,
    /// Processes whose CPU time is reported per message, by name (comm,
    /// `mailfleet serve NAME`, or program); `NAME:TEXT` also wants TEXT in
    /// the command line, e.g. `postgres:mydb` for one database's backends
    /// [default: smtp-gateway,delivery-worker,mailstore,postgres,beam.smp].
    #[arg(long)]
    pub server_procs: Option<String>,
    /// Upgrade every connection with STARTTLS (the certificate is not checked).
    #[arg(long)]
    pub starttls: bool,
    /// Instead of sending mail, hold this many sessions open and idle after
    /// EHLO (STARTTLS too with --starttls) and report smtp-gateway's memory.
    #[arg(long, value_name = "SESSIONS")]
    pub idle: Option<usize>,
    /// With --idle: how long to hold the sessions before measuring.
    #[arg(long, default_value = "5s", value_parser = mailfleet_runtime::config::parse_duration)]
    pub hold: Duration,
}

pub async fn smtp(args: SmtpArgs) -> ExitCode {
    match run(args).await {
        Ok(code) => code,
        Err(e) => crate::exit::fail(&e),
    }
}

/// The processes whose CPU is reported, against mailfleet (RabbitMQ's
/// Erlang VM is `beam.smp`).
const MAILFLEET_PROCS: &str = "smtp-gateway,delivery-worker,mailstore,postgres,beam.smp";

/// How "visible" is learnt.
enum Visibility {
    /// The recipients' mailboxes in mailstore, with their UIDNEXT at the start.
    Mailstore(mailfleet_runtime::grpc::MailStore, Vec<u32>),
    /// A count command and what it printed at the start.
    Count(String, u64),
}

/// What one sending connection saw.
#[derive(Default)]
struct Tally {
    codes: BTreeMap<String, u64>,
    accepted: u64,
}

async fn run(args: SmtpArgs) -> anyhow::Result<ExitCode> {
    if let Some(sessions) = args.idle {
        return idle::run(&args, sessions).await;
    }
    if args.connections == 0 || args.messages == 0 {
        return Err(anyhow!("--connections and --messages must be at least 1"));
    }
    // The ledger keeps a few dozen bytes per message.
    if args.messages > 50_000_000 {
        return Err(anyhow!("--messages is limited to 50000000 per run"));
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(anyhow!(
            "--rate must be a positive number of messages per second"
        ));
    }
    let recipients: Vec<String> = match (&args.to, args.fanout) {
        (Some(to), _) => vec![to.clone()],
        (None, Some(n)) => (1..=n)
            .map(|i| format!("bench{i}@{}", args.domain))
            .collect(),
        (None, None) => (1..=args.accounts.unwrap_or(100).max(1))
            .map(|i| format!("bench{i}@{}", args.domain))
            .collect(),
    };
    let run_id = hex::encode(rand::random::<[u8; 4]>());

    // End to end needs mailstore or a count command; the rest works without.
    let mut e2e = None;
    if args.no_e2e {
        eprintln!("End-to-end measurement skipped (--no-e2e).");
    } else if let Some(cmd) = &args.visible_cmd {
        let baseline = e2e::count(cmd)
            .await
            .context("--visible-cmd does not give a count")?;
        e2e = Some(Visibility::Count(cmd.clone(), baseline));
    } else if args.no_provision {
        eprintln!("End-to-end latency not measured: --no-provision without --visible-cmd.");
    } else {
        match Target::resolve(&Connection {
            endpoint: args.mailstore.clone(),
            token: args.token.clone(),
        }) {
            Ok(target) => {
                if args.to.is_none() {
                    ensure_accounts(&target, &args.domain, &recipients).await?;
                }
                let store = target.mailstore()?;
                let uids = e2e::starting_uids(&store, &recipients)
                    .await
                    .map_err(|s| target.explain(&s))
                    .context("cannot read the recipients' mailboxes")?;
                e2e = Some(Visibility::Mailstore(store, uids));
            }
            Err(e) => eprintln!("End-to-end latency not measured: {e:#}."),
        }
    }

    // Fail fast, with one sentence, when the target does not answer.
    Client::connect(&args.target, "bench.mailfleet.test", args.starttls)
        .await
        .map_err(|e| anyhow!("cannot open an SMTP session with {}: {e}", args.target))?
        .quit()
        .await;

    let ledger = Ledger::new(args.messages, recipients.len(), args.fanout.is_some());
    let done = CancellationToken::new();
    let visible_in = match &e2e {
        Some(Visibility::Mailstore(..)) => "in mailstore",
        Some(Visibility::Count(..)) => "by --visible-cmd",
        None => "",
    };
    let poller = e2e.map(|v| match v {
        Visibility::Mailstore(store, uids) => tokio::spawn(e2e::poll(
            store,
            recipients.clone(),
            uids,
            run_id.clone(),
            ledger.clone(),
            done.clone(),
            args.e2e_timeout,
        )),
        Visibility::Count(cmd, baseline) => tokio::spawn(e2e::poll_count(
            cmd,
            baseline,
            ledger.clone(),
            done.clone(),
            args.e2e_timeout,
        )),
    });

    eprintln!(
        "Sending {} messages of {} octets over {} connections to {} ({} recipient{}{})...",
        args.messages,
        args.size,
        args.connections,
        args.target,
        recipients.len(),
        if recipients.len() == 1 { "" } else { "s" },
        if args.fanout.is_some() {
            ", all of them in every message"
        } else {
            ""
        }
    );
    let procs = cpu::parse_list(args.server_procs.as_deref().unwrap_or(MAILFLEET_PROCS));
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let recipients = Arc::new(recipients);
    let args = Arc::new(args);
    // "Peak" must mean this run's peak, not since each process started.
    let mut peaks_reset = true;
    for p in rss::service_processes() {
        peaks_reset &= rss::reset_peak(p.pid);
    }
    let cpu_before = cpu::snapshot(&procs);
    let start = Instant::now();
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            tokio::spawn(sender(
                args.clone(),
                run_id.clone(),
                recipients.clone(),
                next.clone(),
                ledger.clone(),
                tally.clone(),
                start,
            ))
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let sending = start.elapsed();
    done.cancel();
    let poll = match poller {
        Some(p) => Some(p.await.context("the end-to-end poller failed")?),
        None => None,
    };
    // Over sending and delivery: until the last message was visible (or
    // the end-to-end wait gave up), or the last 250 without end to end.
    let cpu_after = cpu::snapshot(&procs);

    let tally = tally.lock().await;
    report(
        &args,
        &tally,
        sending,
        start,
        &ledger,
        poll.as_ref().map(|p| (p, visible_in)),
        peaks_reset,
    );
    let used = cpu::used(&cpu_before, &cpu_after, cpu::TICKS_PER_SECOND);
    let unit = match args.fanout {
        Some(n) if n > 1 => format!("message ({n} recipients)"),
        _ => "message".to_owned(),
    };
    cpu::print_per_operation(&used, &procs, tally.accepted, &unit);
    Ok(if tally.accepted == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Creates the domain and the bench accounts that are missing.
async fn ensure_accounts(target: &Target, domain: &str, accounts: &[String]) -> anyhow::Result<()> {
    let mut admin = target.admin()?;
    let domains = admin
        .list_domains(ListDomainsRequest {})
        .await
        .map_err(|s| target.explain(&s))?
        .into_inner();
    if !domains
        .domains
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(domain))
    {
        admin
            .add_domain(AddDomainRequest {
                name: domain.into(),
            })
            .await
            .map_err(|s| target.explain(&s))
            .with_context(|| format!("cannot create domain {domain}"))?;
    }
    let existing = admin
        .list_accounts(ListAccountsRequest {
            domain: domain.into(),
        })
        .await
        .map_err(|s| target.explain(&s))?
        .into_inner();
    let missing: Vec<String> = accounts
        .iter()
        .filter(|a| {
            !existing
                .accounts
                .iter()
                .any(|e| e.address.eq_ignore_ascii_case(a))
        })
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("Creating {} bench accounts...", missing.len());
    let calls = missing.into_iter().map(|address| {
        let mut admin = admin.clone();
        async move {
            admin
                .add_account(AddAccountRequest {
                    address: address.clone(),
                    password: "bench".into(),
                    quota_bytes: 0,
                    quota_messages: 0,
                })
                .await
                .map_err(|s| target.explain(&s))
                .with_context(|| format!("cannot create account {address}"))
        }
    });
    let results: Vec<_> = futures::stream::iter(calls)
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// One connection: takes message numbers until none are left.
async fn sender(
    args: Arc<SmtpArgs>,
    run_id: String,
    recipients: Arc<Vec<String>>,
    next: Arc<AtomicU64>,
    ledger: Arc<Ledger>,
    tally: Arc<Mutex<Tally>>,
    start: Instant,
) {
    let mut local = Tally::default();
    let mut client: Option<Client> = None;
    let mut failures_in_a_row = 0;
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= args.messages {
            break;
        }
        if let Some(rate) = args.rate {
            let at = start + Duration::from_secs_f64(seq as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let c = match client.as_mut() {
            Some(c) => c,
            None => {
                match Client::connect(&args.target, "bench.mailfleet.test", args.starttls).await {
                    Ok(c) => client.insert(c),
                    Err(e) => {
                        *local.codes.entry(error_kind(&e)).or_default() += 1;
                        failures_in_a_row += 1;
                        if failures_in_a_row >= 5 {
                            eprintln!("A connection gives up after 5 failures in a row: {e}");
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
        };
        let to = if args.fanout.is_some() {
            &recipients[..]
        } else {
            let i = ledger.account_of(seq);
            recipients.get(i..=i).unwrap_or_default()
        };
        let first = to.first().map_or("", String::as_str);
        let body = message::message(&run_id, seq, &args.from, first, args.size);
        match c.send(&args.from, to, &body).await {
            Ok(code) => {
                failures_in_a_row = 0;
                *local.codes.entry(code.to_string()).or_default() += 1;
                if code == 250 {
                    local.accepted += 1;
                    ledger.accepted(seq, Instant::now());
                }
            }
            Err(e) => {
                *local.codes.entry(error_kind(&e)).or_default() += 1;
                client = None;
            }
        }
    }
    if let Some(c) = client {
        c.quit().await;
    }
    let mut total = tally.lock().await;
    total.accepted += local.accepted;
    for (k, v) in local.codes {
        *total.codes.entry(k).or_default() += v;
    }
}

fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Io(_) => "connection error".into(),
        ClientError::Timeout(_) => "timeout".into(),
        ClientError::Malformed(_) => "malformed reply".into(),
        ClientError::Refused(code, _) => format!("session refused {code}"),
        ClientError::NoStartTls => "no STARTTLS offered".into(),
    }
}

fn report(
    args: &SmtpArgs,
    tally: &Tally,
    sending: Duration,
    start: Instant,
    ledger: &Ledger,
    poll: Option<(&e2e::PollResult, &str)>,
    peaks_reset: bool,
) {
    let secs = sending.as_secs_f64().max(1e-9);
    println!("mailfleet bench smtp: {} -> {}", args.messages, args.target);
    println!(
        "  accepted: {} of {} in {:.2} s = {:.0} messages/s (SMTP 250, not end to end)",
        tally.accepted,
        args.messages,
        secs,
        tally.accepted as f64 / secs
    );
    let codes: Vec<String> = tally
        .codes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("  replies: {}", codes.join(", "));

    if let Some((poll, visible_in)) = poll {
        let slots = ledger.slots.lock().map(|s| s.clone()).unwrap_or_default();
        let mut latencies: Vec<Duration> = slots
            .iter()
            .filter_map(|s| Some(s.visible?.saturating_duration_since(s.accepted?)))
            .collect();
        latencies.sort();
        let last_visible = slots.iter().filter_map(|s| s.visible).max();
        let visible = latencies.len();
        println!(
            "  end to end (250 -> visible {visible_in}): {visible} of {} accepted messages visible",
            tally.accepted
        );
        if let Some(last) = last_visible.filter(|_| visible > 0) {
            let span = last
                .saturating_duration_since(start)
                .as_secs_f64()
                .max(1e-9);
            println!(
                "    latency p50 {} p99 {} max {}; {:.0} messages/s end to end (first send to last visible, {:.2} s)",
                ms(percentile(&latencies, 0.50)),
                ms(percentile(&latencies, 0.99)),
                ms(latencies.last().copied().unwrap_or_default()),
                visible as f64 / span,
                span
            );
        }
        if (visible as u64) < tally.accepted {
            println!(
                "    {} accepted messages were not visible within {:?} of the last send",
                tally.accepted - visible as u64,
                args.e2e_timeout
            );
        }
        if poll.errors > 0 {
            println!(
                "    {} visibility checks failed (last: {})",
                poll.errors,
                poll.last_error.as_deref().unwrap_or("?")
            );
        }
    }

    let processes = rss::service_processes();
    if processes.is_empty() {
        println!("  peak RSS: no service processes found in /proc");
    } else {
        println!(
            "  peak RSS (VmHWM) of service processes, {}:",
            if peaks_reset {
                "during the run"
            } else {
                "since each process started (could not reset it)"
            }
        );
        for p in processes {
            println!(
                "    {:<16} pid {:<8} peak {:>8.1} MiB  now {:>8.1} MiB",
                p.name,
                p.pid,
                p.hwm_kib as f64 / 1024.0,
                p.rss_kib as f64 / 1024.0
            );
        }
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
