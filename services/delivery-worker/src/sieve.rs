//! What recipients' Sieve scripts send (mailstore's `DeliveryResult.outbound`)
//! as outbound jobs: a redirect is the original blob to a new recipient, its
//! envelope sender kept; a vacation reply is a new message (RFC 5230 5,
//! RFC 3834: `Auto-Submitted: auto-replied`, In-Reply-To and References, the
//! null envelope sender). Job ids derive from the delivery's idempotency key,
//! so a redelivered job publishes the same ids and local delivery
//! deduplicates them.

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use mailfleet_proto::v1::{DeliveryJob, JobRecipient, SieveOutbound};

/// NOTIFY=NEVER (queue.proto): nobody is told about a vacation reply's fate.
const NOTIFY_NEVER: u32 = 8;

/// The outbound effects of one delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    /// The delivery's idempotency key (job id + recipient).
    pub key: String,
    pub items: Vec<SieveOutbound>,
}

/// The job id of the `n`th effect of the delivery `key`.
pub fn job_id(key: &str, n: usize) -> String {
    format!("{key}/sieve{n}")
}

/// A vacation reply's bytes.
pub fn vacation_message(o: &SieveOutbound, message_id: &str) -> std::io::Result<Vec<u8>> {
    let subject = if o.subject.is_empty() {
        "Auto: your message".to_owned()
    } else {
        o.subject.clone()
    };
    let mut b = MessageBuilder::new()
        .from(o.from.as_str())
        .to(o.to.as_str())
        .subject(subject)
        .message_id(message_id)
        .header("Auto-Submitted", Raw::new("auto-replied"));
    if !o.in_reply_to.is_empty() {
        b = b.header("In-Reply-To", Raw::new(o.in_reply_to.as_str()));
    }
    if !o.references.is_empty() {
        b = b.header("References", Raw::new(o.references.as_str()));
    }
    if o.mime {
        // :mime: the reason is a whole MIME entity (its own headers first).
        let mut out = b.header("MIME-Version", Raw::new("1.0")).write_to_vec()?;
        // The builder wrote an empty body; the entity replaces it.
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            out.truncate(end + 2);
        }
        out.extend_from_slice(
            o.reason
                .replace("\r\n", "\n")
                .replace('\n', "\r\n")
                .as_bytes(),
        );
        return Ok(out);
    }
    b.text_body(o.reason.as_str()).write_to_vec()
}

/// The job that sends one effect; `blob` holds what it sends (the original
/// for a redirect, the built reply for a vacation).
pub fn job(
    original: &DeliveryJob,
    o: &SieveOutbound,
    id: String,
    blob_id: String,
    blob_size: u64,
    now_ms: i64,
    hostname: &str,
) -> DeliveryJob {
    let vacation = o.kind == "vacation";
    DeliveryJob {
        job_id: id,
        // A reply goes from the null sender (no loops, no bounces); a
        // redirect keeps the original's.
        return_path: if vacation {
            String::new()
        } else {
            original.return_path.clone()
        },
        recipients: vec![JobRecipient {
            address: o.to.clone(),
            notify: if vacation { NOTIFY_NEVER } else { 0 },
            ..JobRecipient::default()
        }],
        blob_id,
        blob_size,
        received_at_ms: now_ms,
        accepted_at_ms: now_ms,
        client_helo: hostname.to_owned(),
        ..DeliveryJob::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_vacation_reply_says_it_is_automatic_and_refers_to_the_original() {
        let o = SieveOutbound {
            kind: "vacation".into(),
            to: "bob@remote.test".into(),
            from: "alice@example.test".into(),
            subject: "Away".into(),
            reason: "I am away.".into(),
            in_reply_to: "<m1@x>".into(),
            references: "<m0@x> <m1@x>".into(),
            ..Default::default()
        };
        let raw = String::from_utf8(vacation_message(&o, "v1@host").unwrap()).unwrap();
        for h in [
            "Auto-Submitted: auto-replied",
            "In-Reply-To: <m1@x>",
            "References: <m0@x> <m1@x>",
            "Subject: Away",
            "I am away.",
        ] {
            assert!(raw.contains(h), "{h} missing from {raw}");
        }
        let j = job(
            &DeliveryJob {
                return_path: "bob@remote.test".into(),
                ..Default::default()
            },
            &o,
            job_id("j1/alice@example.test", 1),
            "blob".into(),
            1,
            0,
            "mx",
        );
        assert_eq!(j.return_path, "", "a reply goes from the null sender");
        assert_eq!(j.job_id, "j1/alice@example.test/sieve1");
        let redirect = SieveOutbound {
            kind: "redirect".into(),
            to: "c@elsewhere.test".into(),
            ..Default::default()
        };
        let j = job(
            &DeliveryJob {
                return_path: "bob@remote.test".into(),
                ..Default::default()
            },
            &redirect,
            job_id("k", 0),
            "blob".into(),
            1,
            0,
            "mx",
        );
        assert_eq!(j.return_path, "bob@remote.test");
        assert_eq!(j.recipients[0].address, "c@elsewhere.test");
    }
}
