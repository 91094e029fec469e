//! The `Received:` trace header (RFC 5321 4.4) the gateway prepends.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// What the header records about one transaction.
#[derive(Debug, Clone)]
pub struct Trace<'a> {
    /// The HELO/EHLO argument as the client gave it.
    pub helo: &'a str,
    pub client_ip: IpAddr,
    /// This server's host name.
    pub hostname: &'a str,
    /// ESMTP after EHLO, SMTP after HELO (RFC 3848).
    pub esmtp: bool,
    pub id: &'a str,
    pub recipients: &'a [String],
    pub date: DateTime<Utc>,
}

/// Renders the header, folded over three lines, CRLF-terminated:
///
/// ```text
/// Received: from HELO (rDNS-less [ip])
///     by hostname (mailfleet) with ESMTP id JOBID
///     for <rcpt>; Thu, 26 Nov 2026 07:17:17 +0000
/// ```
///
/// "for" names the recipient only when there is exactly one, so a copy never
/// reveals the other recipients of the transaction.
pub fn header(trace: &Trace<'_>) -> String {
    let ip = match trace.client_ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPv6:{v6}"),
        },
    };
    let protocol = if trace.esmtp { "ESMTP" } else { "SMTP" };
    let for_clause = match trace.recipients {
        [one] => format!("\r\n\tfor <{}>", sanitize(one)),
        _ => String::new(),
    };
    format!(
        "Received: from {} (rDNS-less [{ip}])\r\n\tby {} (mailfleet) with {protocol} id {}{for_clause};\r\n\t{}\r\n",
        sanitize(trace.helo),
        sanitize(trace.hostname),
        sanitize(trace.id),
        trace.date.to_rfc2822(),
    )
}

/// Keeps the client-supplied text from breaking the header's structure:
/// only printable ASCII survives, and comment/clause delimiters become '?'.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '(' | ')' | ';' | '\\' | '<' | '>' => '?',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}
