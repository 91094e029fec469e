//! Delivery status notifications (RFC 3464): a `multipart/report` with a
//! human-readable part, the `message/delivery-status` part and the original
//! message (or its headers), built with mail-builder. Pure: the caller stores
//! the result and publishes it as a new job to the envelope sender.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;

/// Messages larger than this come back as headers only, whatever RET says.
pub const MAX_RETURNED_BODY: usize = 10 * 1024 * 1024;

/// What happened to one recipient, as a DSN reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    pub address: String,
    /// As given with ORCPT (`rfc822;addr`), empty when none was.
    pub orcpt: String,
    /// failed, delayed, delivered or relayed.
    pub action: &'static str,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// The remote reply or our own explanation.
    pub diagnostic: String,
}

/// The message being reported on.
pub struct Original<'a> {
    pub envid: &'a str,
    pub arrival_ms: i64,
    /// The stored message (complete, or headers only), or empty.
    pub content: &'a [u8],
    /// True when `content` is the whole message.
    pub full: bool,
}

/// The RFC 3463 status for a failure detail: the enhanced code in it if
/// there is one of the right class, else a generic one.
pub fn status_of(detail: &str, permanent: bool) -> String {
    let class = if permanent { '5' } else { '4' };
    for word in detail.split(|c: char| c.is_whitespace() || c == ':') {
        let parts: Vec<&str> = word.split('.').collect();
        if parts.len() == 3
            && parts[0].len() == 1
            && parts[0].starts_with(class)
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return word.to_owned();
        }
    }
    if permanent { "5.0.0" } else { "4.0.0" }.to_owned()
}

/// The headers of a message (up to and including the blank line).
pub fn header_section(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => &message[..at + 4],
        None => message,
    }
}

fn rfc822_date(ms: i64) -> String {
    mail_builder::headers::date::Date::new(ms / 1000).to_rfc822()
}

/// Builds the DSN message to `to` (the original envelope sender).
pub fn build(
    reporting_mta: &str,
    to: &str,
    message_id: &str,
    original: &Original<'_>,
    recipients: &[RecipientReport],
) -> std::io::Result<Vec<u8>> {
    let failed = recipients.iter().any(|r| r.action == "failed");
    let delayed = recipients.iter().any(|r| r.action == "delayed");
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };

    let mut text = format!("This is the mail system at host {reporting_mta}.\r\n\r\n");
    if failed {
        text.push_str(
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients.\r\n\r\n",
        );
    } else if delayed {
        text.push_str(
            "Your message has not been delivered yet to one or more recipients.\r\n\
             Delivery will be retried; you do not need to send it again.\r\n\r\n",
        );
    } else {
        text.push_str("Your message was delivered to the recipients below.\r\n\r\n");
    }
    for r in recipients {
        text.push_str(&format!(
            "<{}>: {}: {}\r\n",
            r.address, r.action, r.diagnostic
        ));
    }

    let mut status = format!("Reporting-MTA: dns; {reporting_mta}\r\n");
    if !original.envid.is_empty() {
        status.push_str(&format!("Original-Envelope-Id: {}\r\n", original.envid));
    }
    if original.arrival_ms > 0 {
        status.push_str(&format!(
            "Arrival-Date: {}\r\n",
            rfc822_date(original.arrival_ms)
        ));
    }
    for r in recipients {
        status.push_str("\r\n");
        if !r.orcpt.is_empty() {
            status.push_str(&format!("Original-Recipient: {}\r\n", r.orcpt));
        }
        status.push_str(&format!("Final-Recipient: rfc822; {}\r\n", r.address));
        status.push_str(&format!("Action: {}\r\n", r.action));
        status.push_str(&format!("Status: {}\r\n", r.status));
        if !r.diagnostic.is_empty() {
            // One line: a folded diagnostic must not break the field syntax.
            let one_line: String = r
                .diagnostic
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            status.push_str(&format!("Diagnostic-Code: smtp; {one_line}\r\n"));
        }
    }

    let mut parts = vec![
        MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            text,
        ),
        MimePart::new(
            ContentType::new("message/delivery-status"),
            status.into_bytes(),
        )
        .transfer_encoding("7bit"),
    ];
    if !original.content.is_empty() {
        let (kind, content) = if original.full && original.content.len() <= MAX_RETURNED_BODY {
            ("message/rfc822", original.content)
        } else {
            ("text/rfc822-headers", header_section(original.content))
        };
        parts.push(
            MimePart::new(ContentType::new(kind), content.to_vec()).transfer_encoding("8bit"),
        );
    }
    MessageBuilder::new()
        .from((
            "Mail Delivery System".to_owned(),
            format!("MAILER-DAEMON@{reporting_mta}"),
        ))
        .to(to)
        .subject(subject)
        .message_id(message_id)
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-replied"),
        )
        .body(MimePart::new(
            ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
            parts,
        ))
        .write_to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statuses_come_from_the_reply_or_a_default() {
        assert_eq!(status_of("mx: 550 5.1.1 no such user", true), "5.1.1");
        assert_eq!(status_of("550 no such user", true), "5.0.0");
        assert_eq!(status_of("451 4.7.1 greylisted", false), "4.7.1");
        assert_eq!(status_of("451 4.7.1 greylisted", true), "5.0.0");
    }

    #[test]
    fn a_report_names_each_recipient_and_carries_the_original() {
        let original = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let dsn = build(
            "mx.test",
            "a@x.test",
            "dsn-1@mx.test",
            &Original {
                envid: "ENV1",
                arrival_ms: 1_700_000_000_000,
                content: original,
                full: false,
            },
            &[RecipientReport {
                address: "bob@y.test".into(),
                orcpt: "rfc822;bob@y.test".into(),
                action: "failed",
                status: "5.1.1".into(),
                diagnostic: "550 5.1.1 no such user".into(),
            }],
        )
        .unwrap();
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("multipart/report"), "{text}");
        assert!(
            text.contains("report-type=\"delivery-status\"")
                || text.contains("report-type=delivery-status"),
            "{text}"
        );
        assert!(text.contains("Final-Recipient: rfc822; bob@y.test"));
        assert!(text.contains("Original-Recipient: rfc822;bob@y.test"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Original-Envelope-Id: ENV1"));
        assert!(text.contains("text/rfc822-headers"));
        assert!(
            !text.contains("\r\nbody\r\n"),
            "headers only were asked for"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(text.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
    }
}
