//! SortMessages and ThreadMessages (RFC 5256 SORT and THREAD, RFC 5957
//! DISPLAYFROM/DISPLAYTO).
//!
//! Why here and not in imap-frontend: the keys come from the cached
//! metadata (envelope, decoded Subject, parsed Date), which lives in
//! Postgres beside the messages. Sorting in mailstore reads just those
//! JSON fields of the matching messages in one query and answers a list of
//! UIDs; sorting in the frontend would ship every matching message's whole
//! metadata (body structure included) over gRPC first. No body is read.
//! Postgres itself cannot sort by these keys: base-subject extraction and
//! the address rules of RFC 5256 are not SQL collations, so the ordering is
//! done in Rust over the rows the query returns.

use std::cmp::Ordering;

use mailfleet_mime::{Envelope, EnvelopeAddress};
use mailfleet_proto::v1 as pb;

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::thread::{self, ThreadInput};

/// Most sort criteria accepted in one request.
const MAX_CRITERIA: usize = 16;

/// uid, internal date, size, envelope JSON, decoded subject, Date as ms,
/// References.
type KeyRow = (
    i64,
    chrono::DateTime<chrono::Utc>,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// What SORT and THREAD know about one message.
pub struct SortRow {
    pub uid: u32,
    pub internal_ms: i64,
    pub size: i64,
    pub envelope: Envelope,
    pub subject: Option<String>,
    pub date_ms: Option<i64>,
    pub references: Option<String>,
}

impl SortRow {
    /// RFC 5256 sent date: the Date header, else the internal date.
    pub fn sent_ms(&self) -> i64 {
        self.date_ms.unwrap_or(self.internal_ms)
    }
}

/// The first real address of a list (group markers skipped).
fn first_address(list: &[EnvelopeAddress]) -> Option<&EnvelopeAddress> {
    list.iter().find(|a| a.host.is_some())
}

/// RFC 5256: the addr-mailbox of the first address, case-folded.
fn mailbox_key(list: &[EnvelopeAddress]) -> String {
    first_address(list)
        .and_then(|a| a.mailbox.as_deref())
        .unwrap_or_default()
        .to_uppercase()
}

/// RFC 5957: the display name of the first address, else its addr-spec.
fn display_key(list: &[EnvelopeAddress]) -> String {
    let Some(a) = first_address(list) else {
        return String::new();
    };
    match a.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.to_uppercase(),
        None => format!(
            "{}@{}",
            a.mailbox.as_deref().unwrap_or_default(),
            a.host.as_deref().unwrap_or_default()
        )
        .to_uppercase(),
    }
}

fn compare(a: &SortRow, b: &SortRow, key: pb::SortKey) -> Ordering {
    use pb::SortKey as K;
    match key {
        K::SortArrival => a.internal_ms.cmp(&b.internal_ms),
        K::SortDate => a.sent_ms().cmp(&b.sent_ms()),
        K::SortSize => a.size.cmp(&b.size),
        K::SortFrom => mailbox_key(&a.envelope.from).cmp(&mailbox_key(&b.envelope.from)),
        K::SortTo => mailbox_key(&a.envelope.to).cmp(&mailbox_key(&b.envelope.to)),
        K::SortCc => mailbox_key(&a.envelope.cc).cmp(&mailbox_key(&b.envelope.cc)),
        K::SortDisplayFrom => display_key(&a.envelope.from).cmp(&display_key(&b.envelope.from)),
        K::SortDisplayTo => display_key(&a.envelope.to).cmp(&display_key(&b.envelope.to)),
        K::SortSubject => {
            let s = |r: &SortRow| base_subject(r.subject.as_deref().unwrap_or_default()).0;
            s(a).cmp(&s(b))
        }
    }
}

/// Orders rows by the criteria; equal rows keep UID order (RFC 5256: ties
/// are broken by sequence number, which follows UID order).
pub fn sort_rows(rows: &mut [SortRow], criteria: &[pb::SortCriterion]) {
    // Subject keys are costly to derive: compute each row's once.
    let subjects: std::collections::HashMap<u32, String> =
        if criteria.iter().any(|c| c.key() == pb::SortKey::SortSubject) {
            rows.iter()
                .map(|r| {
                    (
                        r.uid,
                        base_subject(r.subject.as_deref().unwrap_or_default()).0,
                    )
                })
                .collect()
        } else {
            Default::default()
        };
    rows.sort_by(|a, b| {
        for c in criteria {
            let o = if c.key() == pb::SortKey::SortSubject {
                subjects.get(&a.uid).cmp(&subjects.get(&b.uid))
            } else {
                compare(a, b, c.key())
            };
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.uid.cmp(&b.uid)
    });
}

/// RFC 5256 section 2.1: the base subject (upper-cased for comparison) and
/// whether the subject marked a reply or forward ("Re:", "Fwd:", "[fwd: ..]",
/// "(fwd)"). `subject` is the decoded header value.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Collapse white space runs to one space.
    let mut s = String::with_capacity(subject.len());
    for c in subject.chars() {
        if c.is_whitespace() {
            if !s.ends_with(' ') {
                s.push(' ');
            }
        } else {
            s.push(c);
        }
    }
    let mut reply = false;
    loop {
        // (2) Trailing "(fwd)" and white space.
        loop {
            let t = s.trim_end().to_owned();
            match t.len().checked_sub(5).and_then(|i| t.get(i..)) {
                Some(tail) if tail.eq_ignore_ascii_case("(fwd)") => {
                    reply = true;
                    s = t[..t.len() - 5].to_owned();
                }
                _ => {
                    s = t;
                    break;
                }
            }
        }
        // (3)-(5) Leading subj-leader (blobs + "re:"/"fwd:", or white
        // space), or a blob that does not leave the subject empty, until
        // nothing changes.
        loop {
            let t = s.trim_start();
            let rest = if let Some(rest) = strip_refwd(t) {
                reply = true;
                rest
            } else {
                match strip_blob(t) {
                    Some(rest) if !rest.trim().is_empty() => rest,
                    _ => t,
                }
            };
            if rest.len() == s.len() {
                break;
            }
            s = rest.to_owned();
        }
        // (6) "[fwd: ... ]" wraps a forwarded subject: unwrap and repeat.
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && lower.ends_with(']') {
            s = s[5..s.len() - 1].to_owned();
            reply = true;
            continue;
        }
        break;
    }
    (s.trim().to_uppercase(), reply)
}

/// `*subj-blob subj-refwd` at the start: ("re" / "fw" / "fwd") *WSP
/// [subj-blob] ":"; returns the rest.
fn strip_refwd(s: &str) -> Option<&str> {
    // Blobs before the re/fwd belong to the leader too.
    let mut rest = s;
    while let Some(r) = strip_blob(rest) {
        rest = r;
    }
    let lower = rest.get(..3).unwrap_or(rest).to_ascii_lowercase();
    let n = if lower.starts_with("re") {
        2
    } else if lower.starts_with("fwd") {
        3
    } else if lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let mut r = rest.get(n..)?.trim_start();
    if let Some(b) = strip_blob(r) {
        r = b;
    }
    r.strip_prefix(':')
}

/// A leading "[...]" (no brackets inside) and the white space after it.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(['[', ']'])?;
    if inner.as_bytes().get(end) != Some(&b']') {
        return None;
    }
    Some(inner[end + 1..].trim_start())
}

impl Store {
    /// Sort and thread keys of the messages matching `key`, in UID order.
    async fn sort_rows(
        &self,
        account: &str,
        mailbox: &str,
        key: Option<&pb::SearchKey>,
    ) -> Result<Vec<SortRow>> {
        let uids = self.search_messages(account, mailbox, key).await?;
        let mailbox = crate::mailboxes::canonical_name(mailbox);
        let (mailbox_id, _) = self.find_mailbox(account, &mailbox).await?;
        let uids: Vec<i64> = uids.into_iter().map(i64::from).collect();
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT m.uid, m.internal_date, m.size, (b.meta->'envelope')::text, \
                    b.meta->>'subject', (b.meta->>'date_ms')::bigint, b.meta->>'references' \
             FROM messages m JOIN blobs b ON b.id = m.blob_id \
             WHERE m.mailbox_id = $1 AND m.expunged_modseq IS NULL AND m.uid = ANY($2) \
             ORDER BY m.uid",
        )
        .bind(mailbox_id)
        .bind(&uids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(uid, date, size, env, subject, date_ms, references)| SortRow {
                    uid: u32::try_from(uid).unwrap_or(u32::MAX),
                    internal_ms: date.timestamp_millis(),
                    size,
                    envelope: env
                        .and_then(|e| serde_json::from_str(&e).ok())
                        .unwrap_or_default(),
                    subject,
                    date_ms,
                    references,
                },
            )
            .collect())
    }

    pub async fn sort_messages(
        &self,
        account: &str,
        mailbox: &str,
        key: Option<&pb::SearchKey>,
        criteria: &[pb::SortCriterion],
    ) -> Result<Vec<u32>> {
        if criteria.is_empty() || criteria.len() > MAX_CRITERIA {
            return Err(StoreError::InvalidArgument(
                "between 1 and 16 sort criteria".into(),
            ));
        }
        let mut rows = self.sort_rows(account, mailbox, key).await?;
        sort_rows(&mut rows, criteria);
        Ok(rows.into_iter().map(|r| r.uid).collect())
    }

    pub async fn thread_messages(
        &self,
        account: &str,
        mailbox: &str,
        key: Option<&pb::SearchKey>,
        algorithm: pb::ThreadAlgorithm,
    ) -> Result<Vec<pb::ThreadNode>> {
        let rows = self.sort_rows(account, mailbox, key).await?;
        let inputs: Vec<ThreadInput> = rows
            .iter()
            .map(|r| {
                let mut refs = thread::msg_ids(r.references.as_deref().unwrap_or_default());
                if refs.is_empty() {
                    // RFC 5256: without References, the first msg-id of
                    // In-Reply-To is the parent.
                    refs = thread::msg_ids(r.envelope.in_reply_to.as_deref().unwrap_or_default());
                    refs.truncate(1);
                }
                let (base, reply) = base_subject(r.subject.as_deref().unwrap_or_default());
                ThreadInput {
                    uid: r.uid,
                    message_id: thread::msg_ids(
                        r.envelope.message_id.as_deref().unwrap_or_default(),
                    )
                    .into_iter()
                    .next(),
                    references: refs,
                    base_subject: base,
                    reply,
                    sent_ms: r.sent_ms(),
                }
            })
            .collect();
        let nodes = match algorithm {
            pb::ThreadAlgorithm::ThreadReferences => thread::references(&inputs),
            pb::ThreadAlgorithm::ThreadOrderedSubject => thread::ordered_subject(&inputs),
        };
        Ok(nodes
            .into_iter()
            .map(|(uid, depth)| pb::ThreadNode {
                uid: uid.unwrap_or(0),
                depth,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn base(s: &str) -> (String, bool) {
        base_subject(s)
    }

    #[test]
    fn base_subject_follows_rfc5256() {
        assert_eq!(base("Hello"), ("HELLO".into(), false));
        assert_eq!(base("Re: Hello"), ("HELLO".into(), true));
        assert_eq!(base("RE: re: Fwd: Hello"), ("HELLO".into(), true));
        assert_eq!(base("Re[2]: Hello"), ("HELLO".into(), true));
        assert_eq!(base("[list] Re: Hello"), ("HELLO".into(), true));
        assert_eq!(base("[list] Hello"), ("HELLO".into(), false));
        assert_eq!(base("Hello (fwd)"), ("HELLO".into(), true));
        assert_eq!(base("[Fwd: Re: Hello]"), ("HELLO".into(), true));
        assert_eq!(base("  Hello \t  world  "), ("HELLO WORLD".into(), false));
        // A blob that is the whole subject stays.
        assert_eq!(base("[only]"), ("[ONLY]".into(), false));
        assert_eq!(base("Re:"), ("".into(), true));
        assert_eq!(base(""), ("".into(), false));
        assert_eq!(base("Reply all"), ("REPLY ALL".into(), false));
        assert_eq!(base("Ré: héllo"), ("RÉ: HÉLLO".into(), false));
    }

    #[test]
    fn weird_subjects_never_panic() {
        for s in [
            "[", "]", "[[]]", "(fwd", "[fwd:]", "[fwd:", "é(fwd)", "Re", "fw", "[é]x",
        ] {
            let _ = base(s);
        }
    }

    fn row(uid: u32, from: &str, subject: &str, date: Option<i64>, size: i64) -> SortRow {
        SortRow {
            uid,
            internal_ms: 1000 - i64::from(uid),
            size,
            envelope: Envelope {
                from: vec![EnvelopeAddress {
                    name: None,
                    mailbox: Some(from.into()),
                    host: Some("x".into()),
                }],
                ..Default::default()
            },
            subject: Some(subject.into()),
            date_ms: date,
            references: None,
        }
    }

    fn crit(key: pb::SortKey, reverse: bool) -> pb::SortCriterion {
        pb::SortCriterion {
            key: key as i32,
            reverse,
        }
    }

    #[test]
    fn sorts_by_keys_with_reverse_and_uid_ties() {
        let mut rows = vec![
            row(1, "bob", "Re: b", Some(30), 10),
            row(2, "alice", "a", None, 30),
            row(3, "Carol", "b", Some(10), 20),
        ];
        let uids = |r: &[SortRow]| r.iter().map(|r| r.uid).collect::<Vec<_>>();
        sort_rows(&mut rows, &[crit(pb::SortKey::SortFrom, false)]);
        assert_eq!(uids(&rows), [2, 1, 3]);
        sort_rows(&mut rows, &[crit(pb::SortKey::SortSize, true)]);
        assert_eq!(uids(&rows), [2, 3, 1]);
        // No Date: the internal date (998) stands in.
        sort_rows(&mut rows, &[crit(pb::SortKey::SortDate, false)]);
        assert_eq!(uids(&rows), [3, 1, 2]);
        sort_rows(&mut rows, &[crit(pb::SortKey::SortArrival, false)]);
        assert_eq!(uids(&rows), [3, 2, 1]);
        sort_rows(
            &mut rows,
            &[
                crit(pb::SortKey::SortSubject, false),
                crit(pb::SortKey::SortSize, true),
            ],
        );
        assert_eq!(uids(&rows), [2, 3, 1]);
        sort_rows(&mut rows, &[crit(pb::SortKey::SortSubject, false)]);
        assert_eq!(uids(&rows), [2, 1, 3]);
    }
}
