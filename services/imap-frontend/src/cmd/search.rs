//! SEARCH and UID SEARCH: the typed key tree (`proto`) becomes a mailstore
//! `SearchKey` (sequence numbers turned into UIDs through the session's
//! map, `$` into the saved result, RECENT/NEW/OLD through the session's
//! own \Recent UIDs); mailstore evaluates it and answers UIDs. A key of
//! nothing but flags, modseqs and sets is evaluated here, over the
//! session's own message state.

pub(crate) mod esearch;

use chrono::NaiveDate;
use mailfleet_proto::v1 as pb;
use pb::SearchOp as Op;

use crate::proto::{self, SearchKey, SeqSet};
use crate::session::{Reply, Selected, Session, uid_set};
use crate::session::view::MessageState;

/// Deepest key nesting accepted (imap-codec bounds recursion too).
const MAX_DEPTH: usize = 64;

fn op(op: Op) -> pb::SearchKey {
    pb::SearchKey {
        op: op as i32,
        ..Default::default()
    }
}

fn flag(f: &str) -> pb::SearchKey {
    pb::SearchKey {
        op: Op::SearchFlag as i32,
        text: f.into(),
        ..Default::default()
    }
}

fn not(k: pb::SearchKey) -> pb::SearchKey {
    pb::SearchKey {
        op: Op::SearchNot as i32,
        children: vec![k],
        ..Default::default()
    }
}

fn header(name: &str, value: &[u8]) -> pb::SearchKey {
    pb::SearchKey {
        op: Op::SearchHeader as i32,
        header: name.into(),
        text: String::from_utf8_lossy(value).into_owned(),
        ..Default::default()
    }
}

fn date(o: Op, day: &NaiveDate) -> pb::SearchKey {
    let ms = day
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0);
    pb::SearchKey {
        op: o as i32,
        date_ms: ms,
        ..Default::default()
    }
}

pub(crate) fn recent(sel: &Selected) -> pb::SearchKey {
    pb::SearchKey {
        op: Op::SearchUid as i32,
        uids: Some(uid_set(&sel.recent)),
        ..Default::default()
    }
}

/// The UIDs a sequence set of a search key names; `saved` is the saved
/// result (`$`, RFC 5182), as UIDs.
fn set_key(set: &SeqSet, uid: bool, sel: &Selected, saved: &[u32]) -> pb::SearchKey {
    let uids = match set {
        SeqSet::Saved => saved.to_vec(),
        SeqSet::Set(set) => sel.resolve(set, uid),
    };
    pb::SearchKey {
        op: Op::SearchUid as i32,
        uids: Some(uid_set(&uids)),
        ..Default::default()
    }
}

/// The mailstore key for `k`; `saved` is what `$` stands for (UIDs).
/// `None` when nested deeper than mailstore accepts.
pub(crate) fn convert(
    k: &SearchKey,
    sel: &Selected,
    saved: &[u32],
    depth: usize,
) -> Option<pb::SearchKey> {
    if depth > MAX_DEPTH {
        return None;
    }
    let text = |o: Op, s: &[u8]| pb::SearchKey {
        op: o as i32,
        text: String::from_utf8_lossy(s).into_owned(),
        ..Default::default()
    };
    Some(match k {
        SearchKey::And(keys) => pb::SearchKey {
            op: Op::SearchAnd as i32,
            children: keys
                .iter()
                .map(|k| convert(k, sel, saved, depth + 1))
                .collect::<Option<Vec<_>>>()?,
            ..Default::default()
        },
        SearchKey::Or(a, b) => pb::SearchKey {
            op: Op::SearchOr as i32,
            children: vec![
                convert(a, sel, saved, depth + 1)?,
                convert(b, sel, saved, depth + 1)?,
            ],
            ..Default::default()
        },
        SearchKey::Not(a) => not(convert(a, sel, saved, depth + 1)?),
        SearchKey::Seq(set) => set_key(set, false, sel, saved),
        SearchKey::Uid(set) => set_key(set, true, sel, saved),
        // Per-flag modseqs are not kept: the message's modseq serves for
        // every entry (RFC 7162 3.1.5 allows a server without them).
        SearchKey::ModSeq { modseq, .. } => pb::SearchKey {
            op: Op::SearchModseq as i32,
            modseq: *modseq,
            ..Default::default()
        },
        SearchKey::All => op(Op::SearchAll),
        // \Recent is the session's own: its UIDs go to mailstore as a set.
        SearchKey::Recent => recent(sel),
        SearchKey::Old => not(recent(sel)),
        SearchKey::New => pb::SearchKey {
            op: Op::SearchAnd as i32,
            children: vec![recent(sel), not(flag("\\Seen"))],
            ..Default::default()
        },
        SearchKey::Answered => flag("\\Answered"),
        SearchKey::Deleted => flag("\\Deleted"),
        SearchKey::Draft => flag("\\Draft"),
        SearchKey::Flagged => flag("\\Flagged"),
        SearchKey::Seen => flag("\\Seen"),
        SearchKey::Keyword(a) => flag(a),
        SearchKey::Unanswered => not(flag("\\Answered")),
        SearchKey::Undeleted => not(flag("\\Deleted")),
        SearchKey::Undraft => not(flag("\\Draft")),
        SearchKey::Unflagged => not(flag("\\Flagged")),
        SearchKey::Unseen => not(flag("\\Seen")),
        SearchKey::Unkeyword(a) => not(flag(a)),
        SearchKey::Bcc(s) => header("bcc", s),
        SearchKey::Cc(s) => header("cc", s),
        SearchKey::From(s) => header("from", s),
        SearchKey::To(s) => header("to", s),
        SearchKey::Subject(s) => header("subject", s),
        SearchKey::Header(name, value) => header(&String::from_utf8_lossy(name), value),
        SearchKey::Body(s) => text(Op::SearchBody, s),
        SearchKey::Text(s) => text(Op::SearchText, s),
        SearchKey::Before(d) => date(Op::SearchBefore, d),
        SearchKey::On(d) => date(Op::SearchOn, d),
        SearchKey::Since(d) => date(Op::SearchSince, d),
        SearchKey::SentBefore(d) => date(Op::SearchSentBefore, d),
        SearchKey::SentOn(d) => date(Op::SearchSentOn, d),
        SearchKey::SentSince(d) => date(Op::SearchSentSince, d),
        SearchKey::Larger(n) => pb::SearchKey {
            op: Op::SearchLarger as i32,
            size: u64::from(*n),
            ..Default::default()
        },
        SearchKey::Smaller(n) => pb::SearchKey {
            op: Op::SearchSmaller as i32,
            size: u64::from(*n),
            ..Default::default()
        },
    })
}

/// Whether SEARCH may run with this CHARSET (RFC 3501 6.4.4): the BAD
/// answer otherwise.
pub(crate) fn charset_reply(charset: Option<&str>) -> Option<Reply> {
    match charset {
        None | Some("UTF-8" | "US-ASCII") => None,
        Some(_) => Some(Reply::No(
            "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset".into(),
        )),
    }
}

/// SEARCH without RETURN (a `* SEARCH` answer, ESEARCH after ENABLE
/// IMAP4rev2); with RETURN see `ext::search`.
pub(crate) async fn search(s: &mut Session, cmd: &proto::Search) -> std::io::Result<Reply> {
    if let Some(reply) = charset_reply(cmd.charset.as_deref()) {
        return Ok(reply);
    }
    let uid = cmd.uid;
    let (hits, modseqs) = match matching(s, &cmd.key, uid).await? {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    let highest = modseqs.map(|m| m.into_iter().max().unwrap_or(0));
    let mut line = crate::session::rev2::search_line(s, &hits, uid);
    // RFC 7162 3.1.5: the highest modseq of the messages found, if any
    // (RFC 4731 form in an ESEARCH answer).
    if let Some(highest) = highest.filter(|&h| h > 0) {
        if s.rev2 {
            line.push_str(&format!(" MODSEQ {highest}"));
        } else {
            line.push_str(&format!(" (MODSEQ {highest})"));
        }
    }
    line.push_str("\r\n");
    s.out.extend_from_slice(line.as_bytes());
    s.sync(uid).await?;
    Ok(Reply::Ok("SEARCH completed".into()))
}

/// The matching messages, ascending: UIDs (`uid`) or sequence numbers, and
/// with a MODSEQ key the modseq of each. Also used by ESEARCH
/// (`crate::ext`), which reports the modseq of the messages it returns.
/// The inner error is the reply.
pub(crate) async fn matching(
    s: &mut Session,
    criteria: &SearchKey,
    uid: bool,
) -> std::io::Result<Result<(Vec<u32>, Option<Vec<u64>>), Reply>> {
    s.sync(uid).await?;
    let saved = crate::session::searchres::saved(s);
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Err(Reply::Bad("No mailbox selected".into())));
    };
    let Some(key) = convert(criteria, sel, &saved, 0) else {
        return Ok(Err(Reply::Bad("Search key too complex".into())));
    };
    let with_modseqs = criteria.has_modseq();
    if with_modseqs {
        crate::session::condstore::enable_condstore(s);
    }
    if let Some(found) = s.selected.as_ref().and_then(|sel| local(&key, sel)) {
        let (hits, modseqs) = found
            .iter()
            .map(|&(u, seq, m)| (if uid { u } else { seq }, m))
            .unzip();
        return Ok(Ok((hits, with_modseqs.then_some(modseqs))));
    }
    let (account, mailbox) = s.target()?;
    let call = s.client.search_messages(pb::SearchMessagesRequest {
        account,
        mailbox,
        key: Some(key),
        with_modseqs,
    });
    // A client that leaves during a long search (BODY keys read bodies)
    // ends the session at once: the call is dropped, and mailstore stops.
    let r = tokio::select! {
        r = call => r,
        () = s.io.get_ref().get_ref().closed_by_peer() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the client left during SEARCH",
            ));
        }
    };
    let r = match r {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(Err(crate::session::status_reply(status))),
    };
    let mut found = Vec::with_capacity(r.uids.len());
    if let Some(sel) = s.selected.as_ref() {
        for (i, &u) in r.uids.iter().enumerate() {
            // Messages the session does not know yet are left out.
            let Some(seq) = sel.seq_of(u) else { continue };
            let modseq = r.modseqs.get(i).copied().unwrap_or(0);
            found.push((if uid { u } else { seq as u32 }, modseq));
        }
    }
    found.sort_unstable();
    let (hits, modseqs) = found.into_iter().unzip();
    Ok(Ok((hits, with_modseqs.then_some(modseqs))))
}

/// Whether `key` needs nothing but flags, modseqs, UIDs and sequence
/// numbers, which the session holds itself.
fn is_local(key: &pb::SearchKey, depth: usize) -> bool {
    depth <= MAX_DEPTH
        && match key.op() {
            Op::SearchAll | Op::SearchNone | Op::SearchFlag | Op::SearchUid | Op::SearchModseq => {
                true
            }
            Op::SearchAnd | Op::SearchOr | Op::SearchNot => {
                key.children.iter().all(|c| is_local(c, depth + 1))
            }
            _ => false,
        }
}

fn eval(key: &pb::SearchKey, uid: u32, max_uid: u32, state: &MessageState) -> bool {
    match key.op() {
        Op::SearchAll => true,
        Op::SearchAnd => key.children.iter().all(|c| eval(c, uid, max_uid, state)),
        Op::SearchOr => key.children.iter().any(|c| eval(c, uid, max_uid, state)),
        Op::SearchNot => !key.children.iter().all(|c| eval(c, uid, max_uid, state)),
        Op::SearchFlag => state.flags.has(&key.text),
        Op::SearchModseq => state.modseq >= key.modseq,
        Op::SearchUid => key.uids.as_ref().is_some_and(|set| {
            set.ranges.iter().any(|r| {
                let bound = |v: u32| if v == 0 { max_uid } else { v };
                let (a, z) = (bound(r.first), bound(r.last));
                (a.min(z)..=a.max(z)).contains(&uid)
            })
        }),
        _ => false,
    }
}

/// SEARCH answered from the session's own state when `key` allows it:
/// (UID, sequence number, modseq) of each match, ascending.
fn local(key: &pb::SearchKey, sel: &Selected) -> Option<Vec<(u32, u32, u64)>> {
    if !is_local(key, 0) || sel.states.len() != sel.uids.len() {
        return None;
    }
    let max_uid = sel.uids.last().copied().unwrap_or(0);
    Some(
        sel.uids
            .iter()
            .zip(&sel.states)
            .enumerate()
            .filter(|&(_, (&uid, state))| eval(key, uid, max_uid, state))
            .map(|(i, (&uid, state))| (uid, i as u32 + 1, state.modseq))
            .collect(),
    )
}
