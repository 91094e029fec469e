//! Sieve at delivery: each recipient account's active script runs on every
//! copy before the delivery transaction, and says where the copy goes
//! (INBOX, other mailboxes, with which flags, or nowhere) and what leaves
//! the system (redirects, a vacation reply), which mailstore hands back to
//! delivery-worker in the Deliver answer. The compiled scripts are cached
//! per account under the script's version, so a changed script is seen at
//! the next delivery on every replica.

use std::collections::HashMap;

use mailfleet_proto::v1 as pb;
use mailfleet_sieve::{Action, Context, Envelope, Limits, Script};

use crate::error::Result;
use crate::store::Store;

/// One stored copy a script asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// "INBOX" for keep.
    pub mailbox: String,
    pub flags: Vec<String>,
    pub create: bool,
}

/// A vacation reply waiting for the once-per-period check (done in the
/// delivery transaction, so a retried delivery never replies twice).
#[derive(Clone, Debug)]
pub struct PendingVacation {
    pub sender: String,
    pub handle: String,
    pub period_secs: i64,
    pub reply: pb::SieveOutbound,
}

/// What one account's script decided for one copy.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Empty: discarded or rejected.
    pub copies: Vec<Copy>,
    pub redirects: Vec<pb::SieveOutbound>,
    pub vacation: Option<PendingVacation>,
    /// reject/ereject: the sender gets a bounce with this reason.
    pub reject: Option<String>,
    /// The INBOX copy is the implicit keep, not a `keep` the script asked
    /// for: a message rspamd marked as spam then goes to Junk instead.
    pub implicit_keep: bool,
}

/// The flags a script gave, as IMAP stores them; others are dropped.
fn clean_flags(flags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in flags.iter().flat_map(|f| f.split_whitespace()) {
        if let Ok(f) = crate::flags::canonical_flag(f)
            && !out.iter().any(|o| o.eq_ignore_ascii_case(&f))
        {
            out.push(f);
        }
    }
    out
}

/// The header fields a reply refers to (RFC 5322 3.6.4).
fn reply_fields(message: &[u8]) -> (String, String) {
    let parsed = mail_parser::MessageParser::new().parse_headers(message);
    let Some(m) = parsed else {
        return (String::new(), String::new());
    };
    let id = m.message_id().map(|i| format!("<{i}>")).unwrap_or_default();
    let mut refs: Vec<String> = match m.references() {
        mail_parser::HeaderValue::Text(t) => vec![format!("<{t}>")],
        mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| format!("<{t}>")).collect(),
        _ => Vec::new(),
    };
    if !id.is_empty() {
        refs.push(id.clone());
    }
    (id, refs.join(" "))
}

/// Turns a script's actions into a decision.
pub fn decide(actions: Vec<Action>, account: &str, message: &[u8]) -> Decision {
    let mut d = Decision::default();
    for action in actions {
        match action {
            Action::Keep { flags } => d.copies.push(Copy {
                mailbox: "INBOX".into(),
                flags: clean_flags(&flags),
                create: false,
            }),
            Action::FileInto {
                mailbox,
                flags,
                create,
            } => d.copies.push(Copy {
                mailbox: crate::mailboxes::canonical_name(&mailbox),
                flags: clean_flags(&flags),
                create,
            }),
            Action::Redirect { address } => d.redirects.push(pb::SieveOutbound {
                kind: "redirect".into(),
                to: address,
                ..Default::default()
            }),
            Action::Reject { reason } | Action::Ereject { reason } => d.reject = Some(reason),
            Action::Discard => {}
            Action::Vacation(v) => {
                let (in_reply_to, references) = reply_fields(message);
                d.vacation = Some(PendingVacation {
                    sender: v.to.to_ascii_lowercase(),
                    handle: v.handle.clone(),
                    period_secs: i64::try_from(v.period.as_secs()).unwrap_or(i64::MAX),
                    reply: pb::SieveOutbound {
                        kind: "vacation".into(),
                        to: v.to,
                        from: v.from.unwrap_or_else(|| account.to_owned()),
                        subject: v.subject,
                        reason: v.reason,
                        mime: v.mime,
                        in_reply_to,
                        references,
                    },
                });
            }
        }
    }
    // Two copies into one mailbox are one copy with both sets of flags.
    let mut merged: Vec<Copy> = Vec::new();
    for c in d.copies {
        match merged.iter_mut().find(|m| m.mailbox == c.mailbox) {
            Some(m) => {
                for f in c.flags {
                    if !m.flags.iter().any(|x| x.eq_ignore_ascii_case(&f)) {
                        m.flags.push(f);
                    }
                }
                m.create |= c.create;
            }
            None => merged.push(c),
        }
    }
    d.copies = merged;
    d
}

/// One copy the scripts run on.
pub struct Subject<'a> {
    pub item: usize,
    pub account_id: i64,
    pub account: &'a str,
    pub blob_id: &'a str,
    pub blob_size: u64,
    pub return_path: &'a str,
    pub recipient: &'a str,
}

impl Store {
    /// Runs each account's active script on its copies. Accounts without an
    /// active script are absent from the answer (plain delivery to INBOX).
    pub(crate) async fn sieve_decisions(
        &self,
        subjects: &[Subject<'_>],
    ) -> Result<HashMap<(usize, i64), Decision>> {
        let mut out = HashMap::new();
        if subjects.is_empty() {
            return Ok(out);
        }
        let mut ids: Vec<i64> = subjects.iter().map(|s| s.account_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let active: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT account_id, version FROM sieve_scripts WHERE account_id = ANY($1) AND active",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        if active.is_empty() {
            return Ok(out);
        }
        let limits = Limits::default();
        let mut scripts: HashMap<i64, Script> = HashMap::new();
        for (account, version) in active {
            if let Some(s) = self.sieve_cache.get(account, version) {
                scripts.insert(account, s);
                continue;
            }
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT content FROM sieve_scripts WHERE account_id = $1 AND version = $2",
            )
            .bind(account)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
            let Some((content,)) = row else { continue };
            match mailfleet_sieve::compile(content.as_bytes(), &limits) {
                Ok(s) => {
                    self.sieve_cache.put(account, version, s.clone());
                    scripts.insert(account, s);
                }
                Err(error) => {
                    // Stored scripts compiled when uploaded; a newer
                    // interpreter may refuse one. Mail still arrives.
                    self.metrics.sieve_errors.inc();
                    tracing::warn!(account_id = account, %error, "The active Sieve script no longer compiles; delivering to INBOX.");
                }
            }
        }
        let mut bodies: HashMap<&str, bytes::Bytes> = HashMap::new();
        let now = chrono::Utc::now().fixed_offset();
        for s in subjects {
            let Some(script) = scripts.get(&s.account_id) else {
                continue;
            };
            if !bodies.contains_key(s.blob_id) {
                let end = s.blob_size.min(self.sieve_cache.max_message_bytes);
                let body = self.blobs.get_range(s.blob_id, 0..end).await?;
                bodies.insert(s.blob_id, body);
            }
            let message = bodies
                .get(s.blob_id)
                .map(|b| b.as_ref())
                .unwrap_or_default();
            let own = [s.account];
            let ctx = Context {
                envelope: Envelope {
                    from: s.return_path,
                    to: s.recipient,
                    auth: None,
                },
                message,
                size: s.blob_size,
                now,
                own_addresses: &own,
            };
            self.metrics.sieve_runs.inc();
            let outcome = mailfleet_sieve::execute(script, &ctx, &limits);
            if let Some(error) = &outcome.error {
                self.metrics.sieve_errors.inc();
                tracing::warn!(account = s.account, %error, "The Sieve script failed at run time; the message goes to INBOX.");
            }
            for a in &outcome.actions {
                self.metrics.sieve_action(a);
            }
            let mut decision = decide(outcome.actions, s.account, message);
            decision.implicit_keep = outcome.implicit_keep;
            out.insert((s.item, s.account_id), decision);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailfleet_sieve::Vacation;

    #[test]
    fn actions_become_copies_flags_and_outbound() {
        let d = decide(
            vec![
                Action::FileInto {
                    mailbox: "Reports".into(),
                    flags: vec!["\\flagged $Work".into(), "bad(flag".into()],
                    create: true,
                },
                Action::Keep {
                    flags: vec!["\\Seen".into()],
                },
                Action::Redirect {
                    address: "x@example.org".into(),
                },
            ],
            "a@example.test",
            b"Message-ID: <m1@x>\r\nReferences: <m0@x>\r\n\r\nbody",
        );
        assert_eq!(
            d.copies,
            vec![
                Copy {
                    mailbox: "Reports".into(),
                    flags: vec!["\\Flagged".into(), "$Work".into()],
                    create: true
                },
                Copy {
                    mailbox: "INBOX".into(),
                    flags: vec!["\\Seen".into()],
                    create: false
                }
            ]
        );
        assert_eq!(d.redirects.len(), 1);
        assert!(d.vacation.is_none() && d.reject.is_none());

        let d = decide(
            vec![Action::Vacation(Vacation {
                to: "Bob@Example.org".into(),
                from: None,
                subject: "Away".into(),
                reason: "later".into(),
                mime: false,
                handle: "h".into(),
                period: std::time::Duration::from_secs(86400),
            })],
            "a@example.test",
            b"Message-ID: <m1@x>\r\nReferences: <m0@x>\r\n\r\nbody",
        );
        assert!(d.copies.is_empty());
        let v = d.vacation.unwrap();
        assert_eq!(v.sender, "bob@example.org");
        assert_eq!(v.reply.from, "a@example.test");
        assert_eq!(v.reply.in_reply_to, "<m1@x>");
        assert_eq!(v.reply.references, "<m0@x> <m1@x>");
    }

    #[test]
    fn discard_and_reject_store_nothing() {
        assert!(decide(vec![Action::Discard], "a@x", b"").copies.is_empty());
        let d = decide(
            vec![Action::Reject {
                reason: "no thanks".into(),
            }],
            "a@x",
            b"",
        );
        assert!(d.copies.is_empty());
        assert_eq!(d.reject.as_deref(), Some("no thanks"));
    }
}
