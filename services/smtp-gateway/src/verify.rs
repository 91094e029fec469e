//! Inbound message authentication on the MX role: SPF (RFC 7208) at MAIL
//! FROM, DKIM (RFC 6376) and DMARC (RFC 7489) at the end of the data, with
//! `mail-auth`, and the outcome as an `Authentication-Results` header
//! (RFC 8601) put in front of the stored message.
//!
//! DNS goes through hickory's resolver, pointed at `dns_resolver` when it is
//! set (tests run their own DNS server on loopback) or at the system
//! resolver. A DMARC `p=reject` is honoured only when the operator enables
//! `smtp_dmarc_reject`; otherwise the failure is recorded and the message kept.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator, SpfOutput,
    dmarc::Policy, dmarc::verify::DmarcParameters, spf::verify::SpfParameters,
};
use mailfleet_runtime::Config;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid dns_resolver {0:?}: expected ip or ip:port")]
    Address(String),
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
}

/// How long one DNS question may take: a slow resolver delays the reply to
/// MAIL FROM or to the end of data, never beyond the client's patience.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// SPF/DKIM/DMARC checks; one per gateway, shared by every session.
pub struct Verifier {
    auth: MessageAuthenticator,
    hostname: String,
    reject: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hostname", &self.hostname)
            .field("reject", &self.reject)
            .finish()
    }
}

/// The outcome of the checks on one message.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `Authentication-Results: …\r\n`, ready to prepend.
    pub header: String,
    /// The From domain when its DMARC policy says reject, the message fails
    /// and rejection is enabled.
    pub reject: Option<String>,
    pub dmarc: &'static str,
}

impl Verifier {
    /// `None` when `smtp_verify_inbound` is off.
    pub fn from_config(config: &Config) -> Result<Option<Self>, VerifyError> {
        if !config.smtp_verify_inbound {
            return Ok(None);
        }
        // `dns_resolver` is shared with delivery-worker's MX lookups: `ip` or `ip:port`.
        let raw = config.dns_resolver.trim();
        let resolver = if raw.is_empty() {
            None
        } else {
            let parsed = raw
                .parse::<SocketAddr>()
                .ok()
                .or_else(|| raw.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
            Some(parsed.ok_or_else(|| VerifyError::Address(raw.to_owned()))?)
        };
        Self::new(resolver, &config.hostname, config.smtp_dmarc_reject).map(Some)
    }

    /// `resolver`: a DNS server to ask (UDP, then TCP), or `None` for the
    /// system configuration.
    pub fn new(
        resolver: Option<SocketAddr>,
        hostname: &str,
        reject: bool,
    ) -> Result<Self, VerifyError> {
        let auth = match resolver {
            Some(addr) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                    addr.ip(),
                    true,
                    connections,
                )]);
                let mut options = ResolverOpts::default();
                options.timeout = DNS_TIMEOUT;
                options.attempts = 1;
                MessageAuthenticator::new(config, options)
            }
            None => MessageAuthenticator::new_system_conf(),
        }
        .map_err(|e| VerifyError::Resolver(e.to_string()))?;
        Ok(Self {
            auth,
            hostname: hostname.to_owned(),
            reject,
        })
    }

    /// SPF for the MAIL FROM identity (the HELO identity for the null
    /// sender, RFC 7208 2.4).
    pub async fn spf(&self, ip: IpAddr, helo: &str, sender: &str) -> SpfOutput {
        let params = if sender.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, &self.hostname)
        } else {
            SpfParameters::verify_mail_from(ip, helo, &self.hostname, sender)
        };
        self.auth.verify_spf(params).await
    }

    /// DKIM and DMARC on `message` (the header block at least); `complete`
    /// is false when only the start of a large message was kept, in which
    /// case DKIM is not verified and DMARC can pass only through SPF.
    pub async fn message(
        &self,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        spf: &SpfOutput,
        message: &[u8],
        complete: bool,
    ) -> Verdict {
        let mut results = AuthenticationResults::new(&self.hostname);
        let sender_for_spf = if sender.is_empty() {
            format!("postmaster@{helo}")
        } else {
            sender.to_owned()
        };
        results = results.with_spf_mailfrom_result(spf, ip, &sender_for_spf, helo);
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            // Not even a header block: nothing to align, keep SPF only.
            return Verdict {
                header: header_line(&results),
                reject: None,
                dmarc: "none",
            };
        };
        let dkim = if complete {
            self.auth.verify_dkim(&parsed).await
        } else {
            Vec::new()
        };
        let header_from = parsed.from().to_owned();
        if !dkim.is_empty() {
            results = results.with_dkim_results(&dkim, &header_from);
        }
        let mail_from_domain = match sender.rsplit_once('@') {
            Some((_, domain)) => domain.to_owned(),
            None => helo.to_owned(),
        };
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(&parsed, &dkim, &mail_from_domain, spf))
            .await;
        results = results.with_dmarc_result(&dmarc);
        let header = header_line(&results);
        let failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        let label = match dmarc.result() {
            DmarcResult::Pass => "pass",
            DmarcResult::Fail(_) => "fail",
            DmarcResult::TempError(_) => "temperror",
            DmarcResult::PermError(_) => "permerror",
            DmarcResult::None => "none",
        };
        let reject = (self.reject && failed && dmarc.policy() == Policy::Reject)
            .then(|| dmarc.domain().to_owned());
        Verdict {
            header,
            reject,
            dmarc: label,
        }
    }
}

/// Removes `Authentication-Results` fields that claim to come from this
/// server (`authserv-id` = `hostname`) from the header block of `message`
/// (RFC 8601 5): only our own, freshly added field may speak for us.
/// Returns `None` when there was nothing to remove.
pub fn strip_forged_results(message: &[u8], hostname: &str) -> Option<Vec<u8>> {
    let mut filter = ResultsFilter::new(hostname);
    let mut out = Vec::with_capacity(message.len());
    filter.push(message, &mut out);
    filter.finish(&mut out);
    filter.removed().then_some(out)
}

/// Longest header field kept whole while deciding whether it is ours; a
/// longer one is judged on its start (where the authserv-id is) and then
/// streamed or dropped as judged.
const FIELD_LIMIT: usize = 64 * 1024;

/// Streams a message and drops, from its header block only, every
/// `Authentication-Results` field whose authserv-id is `hostname` (any
/// case of the field name, folded or not, after any comments), and with
/// [`ResultsFilter::dropping_spam_fields`] every `X-Spam-*` field too.
/// Memory is one header field at most ([`FIELD_LIMIT`]); input may be
/// split anywhere.
#[derive(Debug)]
pub struct ResultsFilter {
    hostname: String,
    /// Also drop the client's `X-Spam-*` fields (only ours speak for rspamd).
    spam_fields: bool,
    /// The blank line after the header block went by: pass everything.
    body: bool,
    /// The field being read (while its end is not known).
    field: Vec<u8>,
    /// A field is open (`field` may be empty once judged).
    in_field: bool,
    /// The last byte ended a line: the next one says whether the field goes on.
    line_end: bool,
    /// The open field outgrew the limit: whether it is being dropped.
    judged: Option<bool>,
    removed: bool,
}

impl ResultsFilter {
    pub fn new(hostname: &str) -> Self {
        Self {
            hostname: hostname.to_owned(),
            spam_fields: false,
            body: false,
            field: Vec::new(),
            in_field: false,
            line_end: true,
            judged: None,
            removed: false,
        }
    }

    /// Drops `X-Spam-*` fields as well (the MX role with a spam filter):
    /// a message stored unchecked must not carry a verdict the sender wrote.
    pub fn dropping_spam_fields(mut self, drop: bool) -> Self {
        self.spam_fields = drop;
        self
    }

    /// True once a field was dropped.
    pub fn removed(&self) -> bool {
        self.removed
    }

    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < data.len() {
            if self.body {
                out.extend_from_slice(&data[i..]);
                return;
            }
            let b = data[i];
            i += 1;
            if self.line_end {
                self.line_end = false;
                if self.in_field && (b == b' ' || b == b'\t') {
                    // A continuation line of the open field.
                } else {
                    self.end_field(out);
                    self.in_field = true;
                }
            }
            match self.judged {
                Some(true) => {}
                Some(false) => out.push(b),
                None => self.field.push(b),
            }
            if b == b'\n' {
                self.line_end = true;
                if self.judged.is_none() && matches!(self.field.as_slice(), b"\r\n" | b"\n") {
                    // The blank line: the header block is over.
                    out.extend_from_slice(&self.field);
                    self.field.clear();
                    self.in_field = false;
                    self.body = true;
                }
            }
            if self.judged.is_none() && self.field.len() > FIELD_LIMIT {
                let ours = self.drops(&self.field);
                self.removed |= ours;
                if !ours {
                    out.extend_from_slice(&self.field);
                }
                self.field.clear();
                self.judged = Some(ours);
            }
        }
    }

    /// Writes what is still held (a last field without a blank line after).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.end_field(out);
    }

    fn end_field(&mut self, out: &mut Vec<u8>) {
        if self.in_field && self.judged.is_none() {
            if self.drops(&self.field) {
                self.removed = true;
            } else {
                out.extend_from_slice(&self.field);
            }
        }
        self.field.clear();
        self.in_field = false;
        self.judged = None;
    }

    /// A field this filter leaves out.
    fn drops(&self, field: &[u8]) -> bool {
        self.is_ours(field) || (self.spam_fields && is_spam_field(field))
    }

    /// An `Authentication-Results` field whose authserv-id is our name.
    fn is_ours(&self, field: &[u8]) -> bool {
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return false;
        };
        if !field[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"authentication-results")
        {
            return false;
        }
        let id = authserv_id(&field[colon + 1..]);
        let id = id.strip_suffix(b".").unwrap_or(id);
        let host = self.hostname.trim_end_matches('.');
        !id.is_empty() && id.eq_ignore_ascii_case(host.as_bytes())
    }
}

/// An `X-Spam-*` field (any case), as rspamd and SpamAssassin write them.
fn is_spam_field(field: &[u8]) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = field[..colon].trim_ascii();
    name.len() > 7 && name[..7].eq_ignore_ascii_case(b"x-spam-")
}

/// The authserv-id at the start of an Authentication-Results value: the
/// first token after folding white space and comments (RFC 5322 CFWS,
/// nested, with quoted-pairs), up to `;`, white space or a comment.
fn authserv_id(value: &[u8]) -> &[u8] {
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        let b = value[i];
        if depth > 0 {
            match b {
                b'\\' => i += 1,
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
        } else if b == b'(' {
            depth = 1;
        } else if !b.is_ascii_whitespace() {
            break;
        }
        i += 1;
    }
    let rest = value.get(i..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| b == b';' || b == b'(' || b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The header as mail-auth writes it, folded and CRLF-terminated.
fn header_line(results: &AuthenticationResults<'_>) -> String {
    use mail_auth::common::headers::HeaderWriter;
    let mut header = results.to_header();
    if !header.ends_with("\r\n") {
        header.push_str("\r\n");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::strip_forged_results;

    #[test]
    fn forged_results_for_our_name_are_removed_and_others_kept() {
        let message = b"Authentication-Results: MX.local.test;\r\n\tdkim=pass\r\n\
Authentication-Results: other.example; spf=pass\r\n\
Subject: x\r\n\
\r\n\
Authentication-Results: mx.local.test; in the body stays\r\n";
        let out = strip_forged_results(message, "mx.local.test").unwrap_or_default();
        assert_eq!(
            out,
            b"Authentication-Results: other.example; spf=pass\r\n\
Subject: x\r\n\
\r\n\
Authentication-Results: mx.local.test; in the body stays\r\n"
                .to_vec()
        );
        assert!(strip_forged_results(b"Subject: y\r\n\r\nbody", "mx.local.test").is_none());
    }

    /// Comments before the authserv-id, folding, any case of the name,
    /// input split at every byte, a field over the limit.
    #[test]
    fn forged_results_with_comments_folding_and_splits_are_removed() {
        let message: &[u8] = b"Received: x\r\n\
authentication-RESULTS: (forged (nested \\) comment)) MX.Local.Test.; spf=pass\r\n\
Authentication-Results:\r\n\t(c)\r\n mx.local.test;\r\n dkim=pass\r\n\
Authentication-Results: mx.local.test.example; spf=pass\r\n\
Authentication-Results: (mx.local.test) other.example; spf=fail\r\n\
Subject: s\r\n\
\r\n\
Authentication-Results: mx.local.test; body\r\n";
        let expected: &[u8] = b"Received: x\r\n\
Authentication-Results: mx.local.test.example; spf=pass\r\n\
Authentication-Results: (mx.local.test) other.example; spf=fail\r\n\
Subject: s\r\n\
\r\n\
Authentication-Results: mx.local.test; body\r\n";
        assert_eq!(
            strip_forged_results(message, "mx.local.test").unwrap_or_default(),
            expected
        );
        let mut filter = super::ResultsFilter::new("mx.local.test");
        let mut out = Vec::new();
        for b in message {
            filter.push(std::slice::from_ref(b), &mut out);
        }
        filter.finish(&mut out);
        assert_eq!(out, expected);

        let long = format!(
            "Authentication-Results: mx.local.test; x={}\r\nSubject: s\r\n\r\nb",
            "a".repeat(200_000)
        );
        let out = strip_forged_results(long.as_bytes(), "mx.local.test").unwrap_or_default();
        assert_eq!(out, b"Subject: s\r\n\r\nb");
    }

    /// With spam fields dropped, the client's X-Spam-* go from the header
    /// block (folded, any case, split anywhere), never from the body.
    #[test]
    fn spam_fields_are_dropped_from_the_header_block_only() {
        let message: &[u8] = b"Received: x\r\n\
X-Spam-Status: No, score=-100\r\n\
x-spam-FLAG: NO\r\n\tfolded\r\n\
X-Spamish: kept\r\n\
Subject: s\r\n\
\r\n\
X-Spam-Status: in the body stays\r\n";
        let expected: &[u8] = b"Received: x\r\n\
X-Spamish: kept\r\n\
Subject: s\r\n\
\r\n\
X-Spam-Status: in the body stays\r\n";
        for split in [1, 7, message.len()] {
            let mut filter = super::ResultsFilter::new("mx.local.test").dropping_spam_fields(true);
            let mut out = Vec::new();
            for piece in message.chunks(split) {
                filter.push(piece, &mut out);
            }
            filter.finish(&mut out);
            assert_eq!(out, expected, "split {split}");
        }
        // Off by default.
        assert!(strip_forged_results(message, "mx.local.test").is_none());
    }
}
