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
    /// SMTPUTF8 transaction (RFC 6531 4.3: UTF8SMTP…).
    pub utf8: bool,
    /// AUTH was used (RFC 3848: …A).
    pub authenticated: bool,
    /// TLS version and cipher suite when the session is encrypted (…S).
    pub tls: Option<(&'a str, &'a str)>,
    pub id: &'a str,
    /// The recipient, named only when the transaction has exactly one, so a
    /// copy never reveals the other recipients.
    pub recipient: Option<&'a str>,
    pub date: DateTime<Utc>,
}

/// Renders the header, folded over three lines, CRLF-terminated:
///
/// ```text
/// Received: from HELO (rDNS-less [ip])
///     by hostname (mailfleet) with ESMTPS (TLSv1.3 TLS13_AES_256_GCM_SHA384) id JOBID
///     for <rcpt>; Thu, 26 Nov 2026 07:17:17 +0000
/// ```
///
pub fn header(trace: &Trace<'_>) -> String {
    let ip = match trace.client_ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPv6:{v6}"),
        },
    };
    let protocol = format!(
        "{}{}{}",
        match (trace.utf8, trace.esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        },
        if trace.tls.is_some() { "S" } else { "" },
        if trace.authenticated { "A" } else { "" },
    );
    let tls = match trace.tls {
        Some((version, cipher)) => format!(" ({} {})", sanitize(version), sanitize(cipher)),
        None => String::new(),
    };
    let for_clause = match trace.recipient {
        Some(one) => format!("\r\n\tfor <{}>", sanitize(one)),
        None => String::new(),
    };
    format!(
        "Received: from {} (rDNS-less [{ip}])\r\n\tby {} (mailfleet) with {protocol}{tls} id {}{for_clause};\r\n\t{}\r\n",
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
