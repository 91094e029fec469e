//! A search key as mailstore evaluates it: the typed key tree (`proto`)
//! becomes a mailstore `SearchKey`, sequence numbers turned into UIDs
//! through the selected mailbox's view, `$` into the saved result and
//! RECENT/NEW/OLD into the session's own \Recent UIDs. SEARCH, SORT and
//! THREAD all filter with it.

use chrono::NaiveDate;
use mailfleet_proto::v1 as pb;
use pb::SearchOp as Op;

use crate::proto::{SearchKey, SeqSet};
use crate::session::view::Selected;
use crate::session::{Reply, uid_set};

/// Deepest key nesting accepted (imap-codec bounds recursion too).
pub(crate) const MAX_DEPTH: usize = 64;

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
