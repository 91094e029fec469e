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
use crate::subject::base_subject;
use crate::thread::{self, ThreadInput};

/// Most sort criteria accepted in one request.
const MAX_CRITERIA: usize = 16;

/// uid, internal date, size, From/To/Cc JSON (when asked for), Message-ID,
/// In-Reply-To, decoded subject, Date as ms, References.
type KeyRow = (
    i64,
    chrono::DateTime<chrono::Utc>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// Deepest AND nesting looked through by [`uid_only`].
const MAX_DEPTH: usize = 64;

/// The UID sets a key comes down to when it is only ALL and UID sets ANDed
/// together, which is what a client's `SORT (...) UTF-8 ALL` becomes (the
/// frontend adds the UIDs the session knows): such a key needs no search
/// pass over the mailbox.
fn uid_only(key: &pb::SearchKey, depth: usize) -> Option<Vec<&pb::UidSet>> {
    if depth > MAX_DEPTH {
        return None;
    }
    match key.op() {
        pb::SearchOp::SearchAll => Some(Vec::new()),
        pb::SearchOp::SearchUid => Some(key.uids.iter().collect()),
        pb::SearchOp::SearchAnd => {
            let mut out = Vec::new();
            for c in &key.children {
                out.extend(uid_only(c, depth + 1)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Whether `uid` is in `set` (`last` = 0 is the highest UID, as in SEARCH).
fn in_set(uid: i64, set: &pb::UidSet, max_uid: i64) -> bool {
    set.ranges.iter().any(|r| {
        let b = |v: u32| if v == 0 { max_uid } else { i64::from(v) };
        let (a, z) = (b(r.first), b(r.last));
        (a.min(z)..=a.max(z)).contains(&uid)
    })
}

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

/// The i;unicode-casemap form of `s` (RFC 5051): each character mapped
/// to its simple titlecase, then the whole decomposed (NFKD). Keys in this
/// form compare by their UTF-8 octets, which is `String`'s order, so "é"
/// sorts with "e" and case never matters.
fn casemap(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.chars()
        .map(titlecase)
        .collect::<String>()
        .nfkd()
        .collect()
}

/// A character's simple titlecase mapping. Rust has upper case only: it
/// is the same mapping but for the four Latin digraphs, whose titlecase
/// is their middle form; a character whose upper case is several (German
/// sharp s) has no simple mapping and stays.
fn titlecase(c: char) -> char {
    match c {
        '\u{1C4}'..='\u{1C6}' => '\u{1C5}',
        '\u{1C7}'..='\u{1C9}' => '\u{1C8}',
        '\u{1CA}'..='\u{1CC}' => '\u{1CB}',
        '\u{1F1}'..='\u{1F3}' => '\u{1F2}',
        _ => {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        }
    }
}

/// RFC 5256 FROM, TO, CC: the addr-mailbox (local part) of the first
/// address, case-insensitively; empty when there is none.
fn mailbox_key(list: &[EnvelopeAddress]) -> String {
    casemap(
        first_address(list)
            .and_then(|a| a.mailbox.as_deref())
            .unwrap_or_default(),
    )
}

/// RFC 5957 DISPLAYFROM, DISPLAYTO: the (decoded) display name of the
/// first address when it has one, else its addr-spec; empty when there is
/// no address.
fn display_key(list: &[EnvelopeAddress]) -> String {
    let Some(a) = first_address(list) else {
        return String::new();
    };
    match a.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => casemap(name),
        None => casemap(&format!(
            "{}@{}",
            a.mailbox.as_deref().unwrap_or_default(),
            a.host.as_deref().unwrap_or_default()
        )),
    }
}

/// One row's value for one criterion, derived once per row (not per
/// comparison: case folding and base subjects allocate).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Number(i64),
    Text(String),
}

fn key_of(r: &SortRow, key: pb::SortKey) -> Key {
    use pb::SortKey as K;
    match key {
        K::SortArrival => Key::Number(r.internal_ms),
        K::SortDate => Key::Number(r.sent_ms()),
        K::SortSize => Key::Number(r.size),
        K::SortFrom => Key::Text(mailbox_key(&r.envelope.from)),
        K::SortTo => Key::Text(mailbox_key(&r.envelope.to)),
        K::SortCc => Key::Text(mailbox_key(&r.envelope.cc)),
        K::SortDisplayFrom => Key::Text(display_key(&r.envelope.from)),
        K::SortDisplayTo => Key::Text(display_key(&r.envelope.to)),
        K::SortSubject => Key::Text(base_subject(r.subject.as_deref().unwrap_or_default()).0),
    }
}

/// Orders rows by the criteria; equal rows keep UID order (RFC 5256: ties
/// are broken by sequence number, which follows UID order).
pub fn sort_rows(rows: &mut Vec<SortRow>, criteria: &[pb::SortCriterion]) {
    let mut keyed: Vec<(Vec<Key>, SortRow)> = std::mem::take(rows)
        .into_iter()
        .map(|r| (criteria.iter().map(|c| key_of(&r, c.key())).collect(), r))
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| {
        for ((x, y), c) in ka.iter().zip(kb).zip(criteria) {
            let o = if c.reverse { y.cmp(x) } else { x.cmp(y) };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.uid.cmp(&b.uid)
    });
    rows.extend(keyed.into_iter().map(|(_, r)| r));
}

impl Store {
    /// Sort and thread keys of the messages matching `key`, in UID order;
    /// addresses only with `addresses` (their JSON is the costly part).
    async fn sort_rows(
        &self,
        account: &str,
        mailbox: &str,
        key: Option<&pb::SearchKey>,
        addresses: bool,
    ) -> Result<Vec<SortRow>> {
        let all = pb::SearchKey::default();
        let key = key.unwrap_or(&all);
        let sets = uid_only(key, 0);
        // Any other key is evaluated by SEARCH first.
        let matched: Option<Vec<i64>> = match sets {
            Some(_) => None,
            None => Some(
                self.search_messages(account, mailbox, Some(key))
                    .await?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            ),
        };
        let mailbox = crate::mailboxes::canonical_name(mailbox);
        let (mailbox_id, _) = self.find_mailbox(account, &mailbox).await?;
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT m.uid, m.internal_date, m.size, \
                    CASE WHEN $3 THEN (b.meta->'envelope'->'from')::text END, \
                    CASE WHEN $3 THEN (b.meta->'envelope'->'to')::text END, \
                    CASE WHEN $3 THEN (b.meta->'envelope'->'cc')::text END, \
                    b.meta->'envelope'->>'message_id', b.meta->'envelope'->>'in_reply_to', \
                    b.meta->>'subject', (b.meta->>'date_ms')::bigint, b.meta->>'references' \
             FROM messages m JOIN blobs b ON b.id = m.blob_id \
             WHERE m.mailbox_id = $1 AND m.expunged_modseq IS NULL \
               AND ($2::bigint[] IS NULL OR m.uid = ANY($2)) \
             ORDER BY m.uid",
        )
        .bind(mailbox_id)
        .bind(&matched)
        .bind(addresses)
        .fetch_all(&self.pool)
        .await?;
        let max_uid = rows.last().map_or(0, |r| r.0);
        let list = |json: Option<String>| -> Vec<EnvelopeAddress> {
            json.and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default()
        };
        Ok(rows
            .into_iter()
            .filter(|r| {
                sets.as_ref()
                    .is_none_or(|sets| sets.iter().all(|s| in_set(r.0, s, max_uid)))
            })
            .map(
                |(
                    uid,
                    date,
                    size,
                    from,
                    to,
                    cc,
                    message_id,
                    in_reply_to,
                    subject,
                    date_ms,
                    references,
                )| {
                    SortRow {
                        uid: u32::try_from(uid).unwrap_or(u32::MAX),
                        internal_ms: date.timestamp_millis(),
                        size,
                        envelope: Envelope {
                            from: list(from),
                            to: list(to),
                            cc: list(cc),
                            message_id,
                            in_reply_to,
                            ..Default::default()
                        },
                        subject,
                        date_ms,
                        references,
                    }
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
        use pb::SortKey as K;
        let addresses = criteria.iter().any(|c| {
            matches!(
                c.key(),
                K::SortFrom | K::SortTo | K::SortCc | K::SortDisplayFrom | K::SortDisplayTo
            )
        });
        let mut rows = self.sort_rows(account, mailbox, key, addresses).await?;
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
        let rows = self.sort_rows(account, mailbox, key, false).await?;
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

    fn row(uid: u32, from: &str, subject: &str, date: Option<i64>, size: i64) -> SortRow {
        SortRow {
            uid,
            internal_ms: 1000 - i64::from(uid),
            size,
            envelope: Envelope {
                from: vec![EnvelopeAddress {
                    mailbox: Some(from.into()),
                    host: Some("x".into()),
                    ..EnvelopeAddress::default()
                }],
                ..Default::default()
            },
            subject: Some(subject.into()),
            date_ms: date,
            references: None,
        }
    }

    fn address(name: Option<&str>, mailbox: &str, host: &str) -> EnvelopeAddress {
        EnvelopeAddress {
            name: name.map(Into::into),
            mailbox: Some(mailbox.into()),
            host: Some(host.into()),
            ..EnvelopeAddress::default()
        }
    }

    /// i;unicode-casemap: case never matters and accented letters sort
    /// with their base letter (RFC 5051); RFC 5957 display keys.
    #[test]
    fn address_keys_use_unicode_casemap() {
        assert_eq!(casemap("émile"), casemap("\u{c9}MILE"));
        assert!(casemap("Émile") < casemap("Fred"));
        assert!(casemap("edgar") < casemap("Émile"));
        assert_eq!(casemap("ǆemal"), casemap("ǅEMAL"));
        assert_eq!(casemap("straße"), "STRAßE");
        let group = EnvelopeAddress {
            mailbox: Some("group".into()),
            ..EnvelopeAddress::default()
        };
        let list = [group, address(Some(" Zoe "), "alice", "x.test")];
        assert_eq!(display_key(&list), "ZOE");
        assert_eq!(mailbox_key(&list), "ALICE");
        let list = [address(Some(""), "Bob", "x.test")];
        assert_eq!(display_key(&list), "BOB@X.TEST");
        assert_eq!(display_key(&[]), "");
        assert_eq!(mailbox_key(&[]), "");
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
