//! `mailfleet bench smtp --idle N`: the memory cost of idle sessions.
//!
//! Opens N sessions (greeting, EHLO, optionally STARTTLS and EHLO again),
//! holds them without a command, and reads smtp-gateway's resident set from
//! /proc before and after. On a loopback target the sessions come from
//! several loopback addresses, at most `PER_SOURCE` each, so the measurement
//! runs with the default per-IP connection limit in force.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use futures::StreamExt;

use super::SmtpArgs;
use super::client::Client;
use super::rss;

/// Sessions per source address; below the default `max_connections_per_ip`.
const PER_SOURCE: usize = 50;
/// Sessions being opened at once.
const OPENING: usize = 64;
/// Upper bound on --idle: each session is a socket of this process too.
const MAX_SESSIONS: usize = 50_000;

pub async fn run(args: &SmtpArgs, sessions: usize) -> anyhow::Result<ExitCode> {
    if sessions == 0 || sessions > MAX_SESSIONS {
        return Err(anyhow!("--idle must be between 1 and {MAX_SESSIONS}"));
    }
    let loopback = tokio::net::lookup_host(&args.target)
        .await?
        .next()
        .is_some_and(|a| a.ip().is_loopback() && a.is_ipv4());
    let gateway = gateway_pid(&args.target)?;
    let before = rss_kib(gateway).ok_or_else(|| anyhow!("smtp-gateway has exited"))?;

    eprintln!(
        "Opening {sessions} idle sessions to {}{}...",
        args.target,
        if args.starttls { " with STARTTLS" } else { "" }
    );
    let started = Instant::now();
    let target = Arc::new(args.target.clone());
    let starttls = args.starttls;
    let results: Vec<_> = futures::stream::iter(0..sessions)
        .map(|i| {
            let target = target.clone();
            async move {
                let source = loopback.then(|| source_address(i));
                Client::connect_from(&target, source, "idle.bench.mailfleet.test", starttls).await
            }
        })
        .buffer_unordered(OPENING)
        .collect()
        .await;
    let opening = started.elapsed();
    let mut clients = Vec::with_capacity(sessions);
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    for result in results {
        match result {
            Ok(client) => clients.push(client),
            Err(e) => *failures.entry(e.to_string()).or_default() += 1,
        }
    }
    tokio::time::sleep(args.hold).await;
    let held = rss_kib(gateway).ok_or_else(|| anyhow!("smtp-gateway exited under load"))?;
    let peak = hwm_kib(gateway).unwrap_or(held);
    let open = clients.len();
    // QUIT each session; the server must still answer every one of them.
    let closed = futures::stream::iter(clients)
        .map(|c| async move {
            c.quit().await;
        })
        .buffer_unordered(OPENING)
        .count()
        .await;

    println!(
        "smtp-gateway (pid {gateway}) with {open} of {sessions} sessions idle after EHLO{}:",
        if starttls { " over STARTTLS" } else { "" }
    );
    println!(
        "  opened in {:.2} s; held {:?}; closed {closed} with QUIT",
        opening.as_secs_f64(),
        args.hold
    );
    println!(
        "  RSS before {:.1} MiB, with the sessions {:.1} MiB, peak (VmHWM) {:.1} MiB",
        before as f64 / 1024.0,
        held as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    if open > 0 {
        println!(
            "  {:.1} KiB per idle session",
            held.saturating_sub(before) as f64 / open as f64
        );
    }
    for (error, count) in &failures {
        println!("  {count} sessions failed: {error}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// 127.0.1.1, 127.0.1.2, ...: one address per `PER_SOURCE` sessions.
fn source_address(session: usize) -> IpAddr {
    let n = (session / PER_SOURCE) as u32;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 1, 1)) + n))
}

/// The smtp-gateway serving `target`.
fn gateway_pid(target: &str) -> anyhow::Result<u32> {
    rss::serving("smtp-gateway", "MAILFLEET_SMTP_LISTEN", target)
        .map(|p| p.pid)
        .ok_or_else(|| {
            anyhow!(
                "no smtp-gateway serving {target} found in /proc; --idle measures a gateway on this machine"
            )
        })
}

fn rss_kib(pid: u32) -> Option<u64> {
    rss::process(pid).map(|p| p.rss_kib)
}

fn hwm_kib(pid: u32) -> Option<u64> {
    rss::process(pid).map(|p| p.hwm_kib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_change_every_per_source_sessions() {
        assert_eq!(source_address(0), IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(
            source_address(PER_SOURCE - 1),
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1))
        );
        assert_eq!(
            source_address(PER_SOURCE),
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2))
        );
        // 50,000 sessions stay inside 127.0.0.0/8.
        assert_eq!(
            source_address(MAX_SESSIONS - 1),
            IpAddr::V4(Ipv4Addr::new(127, 0, 4, 232))
        );
    }
}
