//! `mailfleet queue list|show|retry|delete` (the deferred-jobs index) and
//! `mailfleet domain dns DOMAIN` (the records to publish for a domain),
//! through the Admin API.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use mailfleet_proto::v1::{
    DeleteQueueRequest, DomainDnsRequest, ListQueueRequest, QueueEntry, RetryQueueRequest,
    ShowQueueRequest,
};
use mailfleet_runtime::grpc::Admin;

use crate::target::{Connection, Target};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List deferred jobs, next attempt first: id, attempts, next attempt, recipients, last error.
    List {
        /// Most jobs listed.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Everything known about one deferred job.
    Show { job_id: String },
    /// Attempt the job now instead of at its next scheduled time.
    Retry { job_id: String },
    /// Cancel the job: it is dropped when it next surfaces, without a bounce.
    Delete { job_id: String },
}

fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

fn state(e: &QueueEntry) -> &'static str {
    if e.cancelled {
        "cancelled"
    } else if e.retry_requested {
        "retry-requested"
    } else {
        "deferred"
    }
}

pub async fn queue(connection: &Connection, command: QueueCommand) -> ExitCode {
    match queue_inner(connection, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::exit::fail(&e),
    }
}

async fn queue_inner(connection: &Connection, command: QueueCommand) -> anyhow::Result<()> {
    let target = Target::resolve(connection)?;
    let mut admin = target.admin()?;
    let mut out = std::io::stdout().lock();
    match command {
        QueueCommand::List { limit } => {
            let list = admin
                .list_queue(ListQueueRequest { limit })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            for e in list.entries {
                writeln!(
                    out,
                    "{} {} {} {} {} {}",
                    e.job_id,
                    e.attempts,
                    time(e.next_attempt_ms),
                    state(&e),
                    e.recipients.join(","),
                    one_line(&e.last_error)
                )?;
            }
        }
        QueueCommand::Show { job_id } => {
            let e = admin
                .show_queue(ShowQueueRequest { job_id })
                .await
                .map_err(|s| target.explain(&s))?
                .into_inner();
            writeln!(out, "job:           {}", e.job_id)?;
            writeln!(out, "state:         {}", state(&e))?;
            writeln!(out, "sender:        <{}>", e.return_path)?;
            writeln!(out, "recipients:    {}", e.recipients.join(", "))?;
            writeln!(out, "attempts:      {}", e.attempts)?;
            writeln!(out, "first attempt: {}", time(e.first_attempt_ms))?;
            writeln!(out, "next attempt:  {}", time(e.next_attempt_ms))?;
            writeln!(out, "last error:    {}", one_line(&e.last_error))?;
            writeln!(out, "size:          {}", e.size)?;
            writeln!(out, "blob:          {}", e.blob_id)?;
        }
        QueueCommand::Retry { job_id } => {
            admin
                .retry_queue(RetryQueueRequest {
                    job_id: job_id.clone(),
                })
                .await
                .map_err(|s| target.explain(&s))?;
            writeln!(out, "retrying {job_id} now")?;
        }
        QueueCommand::Delete { job_id } => {
            admin
                .delete_queue(DeleteQueueRequest {
                    job_id: job_id.clone(),
                })
                .await
                .map_err(|s| target.explain(&s))?;
            writeln!(out, "deleted {job_id}")?;
        }
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A TXT value as zone-file strings of at most 255 octets (RFC 1035 3.3.14):
/// a 2048-bit DKIM key does not fit in one.
pub fn zone_txt(value: &str) -> String {
    let bytes = value.as_bytes();
    bytes
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `mailfleet domain dns DOMAIN`: prints the zone records.
pub async fn domain_dns(
    target: &Target,
    admin: &mut Admin,
    domain: String,
    mx: String,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let records = admin
        .domain_dns(DomainDnsRequest {
            domain,
            mx_host: mx,
        })
        .await
        .map_err(|s| target.explain(&s))?
        .into_inner()
        .records;
    for r in records {
        let value = if r.kind == "TXT" {
            zone_txt(&r.value)
        } else {
            r.value
        };
        writeln!(out, "{} IN {} {}", r.name, r.kind, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_values_are_split() {
        assert_eq!(zone_txt("v=spf1 mx ~all"), "\"v=spf1 mx ~all\"");
        let long = "a".repeat(300);
        let z = zone_txt(&long);
        assert!(z.starts_with(&format!("\"{}\" \"", "a".repeat(255))));
        assert_eq!(time(0), "-");
    }
}
