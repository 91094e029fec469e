//! RFC 7162 CONDSTORE and QRESYNC in a session: what ENABLE turns on, the
//! HIGHESTMODSEQ a session may report, QRESYNC SELECT/EXAMINE, the changes
//! since a mod-sequence (FETCH CHANGEDSINCE, VANISHED (EARLIER)), VANISHED
//! responses, and SEARCH MODSEQ keys for mailstore.
//!
//! The syntax is parsed in `proto`; mailstore keeps a modseq per message
//! and keeps expunged messages' UIDs with the modseq of their expunge, so
//! every answer here is exact (seq-match-data is never needed).

use crate::encode;
use crate::proto::{Qresync, SelectParams, SeqOrUid, Sequence, SequenceSet};
use crate::session::{Reply, Selected, Session, uid_set};

/// UID ranges per VANISHED line, so that no line grows without bound
/// (RFC 7162 4 asks clients to accept 8192-octet lines).
const VANISHED_RANGES_PER_LINE: usize = 300;
/// Buffered response bytes before a QRESYNC SELECT writes to the socket.
const FLUSH_AT: usize = 64 * 1024;

/// What the client has enabled (RFC 5161 ENABLE, or implicitly).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct State {
    pub condstore: bool,
    pub qresync: bool,
}

/// ENABLE of one capability: the name for the ENABLED response when this
/// command turned it on, `None` when it is not ours or was on already.
pub(crate) fn enable(s: &mut Session, name: &str) -> Option<&'static str> {
    if name.eq_ignore_ascii_case("CONDSTORE") {
        if s.rfc7162.condstore {
            return None;
        }
        enable_condstore(s);
        Some("CONDSTORE")
    } else if name.eq_ignore_ascii_case("QRESYNC") {
        if s.rfc7162.qresync {
            return None;
        }
        // QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
        enable_condstore(s);
        s.rfc7162.qresync = true;
        Some("QRESYNC")
    } else {
        None
    }
}

/// Turns CONDSTORE on; the first time, with a mailbox selected, the client
/// learns its HIGHESTMODSEQ (RFC 7162 3.1).
pub(crate) fn enable_condstore(s: &mut Session) {
    if s.rfc7162.condstore {
        return;
    }
    s.rfc7162.condstore = true;
    if let Some(sel) = &s.selected {
        let line = format!("OK [HIGHESTMODSEQ {}] Highest", reported_modseq(sel));
        s.untagged(&line);
    }
}

/// The highest modseq the client may take as fully reported: below any
/// expunge not yet announced (RFC 7162 3.2: a delayed EXPUNGE must not be
/// skipped by a client resynchronising later).
pub(crate) fn reported_modseq(sel: &Selected) -> u64 {
    sel.expunge_floor
        .map_or(sel.modseq, |floor| floor.min(sel.modseq))
}

/// Whether a UID set names `uid`; `*` is the largest possible UID here, so
/// that UIDs above every live message (expunged ones) are included.
pub(crate) fn set_contains(set: &SequenceSet, uid: u32) -> bool {
    let v = |x: &SeqOrUid| match x {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => u32::MAX,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(a) => v(a) == uid,
        Sequence::Range(a, b) => (v(a).min(v(b))..=v(a).max(v(b))).contains(&uid),
    })
}

/// `VANISHED [(EARLIER)] uid-set` lines for ascending UIDs, bounded in size.
pub(crate) fn vanished_lines(uids: &[u32], earlier: bool) -> Vec<String> {
    let ranges = uid_set(uids).ranges;
    ranges
        .chunks(VANISHED_RANGES_PER_LINE)
        .map(|chunk| {
            let set = chunk
                .iter()
                .map(|r| {
                    if r.first == r.last {
                        r.first.to_string()
                    } else {
                        format!("{}:{}", r.first, r.last)
                    }
                })
                .collect::<Vec<_>>()
                .join(",");
            if earlier {
                format!("VANISHED (EARLIER) {set}")
            } else {
                format!("VANISHED {set}")
            }
        })
        .collect()
}

/// An untagged FETCH for a flag change: UID and MODSEQ always, as RFC 7162
/// 3.1 asks once CONDSTORE is on.
pub(crate) fn flags_fetch_line(seq: usize, uid: u32, flags: &[String], modseq: u64) -> Vec<u8> {
    let mut line = format!("* {seq} FETCH (UID {uid} FLAGS ").into_bytes();
    encode::flags(&mut line, flags);
    line.extend_from_slice(format!(" MODSEQ ({modseq}))\r\n").as_bytes());
    line
}

/// The lowest UID a UID set can name (`*` counting as the largest).
pub(crate) fn lowest(set: &SequenceSet) -> u32 {
    let v = |x: &SeqOrUid| match x {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => u32::MAX,
    };
    set.0
        .as_ref()
        .iter()
        .map(|seq| match seq {
            Sequence::Single(a) => v(a),
            Sequence::Range(a, b) => v(a).min(v(b)),
        })
        .min()
        .unwrap_or(u32::MAX)
}

/// Messages changed after `since` in the selected mailbox, from UID `from`
/// on: (live UIDs, expunged UIDs), both ascending.
pub(crate) async fn changed_since(
    s: &mut Session,
    since: u64,
    from: u32,
) -> Result<(Vec<u32>, Vec<u32>), tonic::Status> {
    let (account, mailbox) = s.target()?;
    let listing =
        crate::session::list_mailbox(s.client.clone(), &account, &mailbox, since, from, false)
            .await?;
    let (gone, live): (Vec<_>, Vec<_>) = listing.messages.iter().partition(|m| m.expunged);
    let live = live.iter().map(|m| m.uid).collect();
    let gone = gone.iter().map(|m| m.uid).collect();
    Ok((live, gone))
}

/// SELECT/EXAMINE with RFC 7162 parameters (or with CONDSTORE on).
pub(crate) async fn select(
    s: &mut Session,
    name: &str,
    read_only: bool,
    params: &SelectParams,
) -> std::io::Result<Reply> {
    if params.qresync.is_some() && !s.rfc7162.qresync {
        return Ok(Reply::Bad("Enable QRESYNC first".into()));
    }
    if params.condstore {
        // Quietly: no HIGHESTMODSEQ for the mailbox being closed.
        s.rfc7162.condstore = true;
    }
    let reply = s.select(name, read_only).await?;
    let Some(sel) = s.selected.as_ref() else {
        return Ok(reply);
    };
    if s.rfc7162.condstore {
        let line = format!("OK [HIGHESTMODSEQ {}] Highest", sel.modseq);
        s.untagged(&line);
    }
    if let Some(q) = &params.qresync {
        resync(s, q).await?;
    }
    Ok(reply)
}

/// QRESYNC: what changed since the client's modseq, when its UIDVALIDITY
/// is still right: VANISHED (EARLIER) for expunged UIDs, then FETCH (UID
/// FLAGS MODSEQ) for changed messages, both within the known UIDs if given.
async fn resync(s: &mut Session, q: &Qresync) -> std::io::Result<()> {
    let (account, mailbox) = s.target()?;
    let listing = match crate::session::list_mailbox(
        s.client.clone(),
        &account,
        &mailbox,
        q.modseq,
        1,
        false,
    )
    .await
    {
        Ok(l) => l,
        Err(status) => {
            // The SELECT itself succeeded; the client resyncs by hand.
            tracing::warn!(%status, "QRESYNC changes could not be read.");
            return Ok(());
        }
    };
    if listing
        .mailbox
        .as_ref()
        .is_some_and(|mb| mb.uidvalidity != q.uidvalidity)
    {
        return Ok(());
    }
    let Some(sel) = s.selected.as_ref() else {
        return Ok(());
    };
    let mut gone = Vec::new();
    let mut fetches: Vec<u8> = Vec::new();
    for m in &listing.messages {
        if q.known_uids
            .as_ref()
            .is_some_and(|k| !set_contains(k, m.uid))
        {
            continue;
        }
        match sel.seq_of(m.uid) {
            // Expunged before this session's snapshot.
            None if m.expunged => gone.push(m.uid),
            Some(seq) if !m.expunged => {
                fetches.extend(flags_fetch_line(seq, m.uid, &m.flags, m.modseq))
            }
            // Arrived or expunged after the snapshot: the next sync
            // reports it as EXISTS or VANISHED.
            _ => {}
        }
    }
    for line in vanished_lines(&gone, true) {
        s.untagged(&line);
    }
    if !fetches.is_empty() {
        // Keywords set since the client's modseq come before FETCHes show them.
        for m in listing.messages.iter().filter(|m| !m.expunged) {
            s.announce_keywords(&m.flags);
        }
    }
    for line in fetches.split_inclusive(|&b| b == b'\n') {
        s.out.extend_from_slice(line);
        if s.out.len() > FLUSH_AT {
            s.flush().await?;
        }
    }
    Ok(())
}

/// The tagged reply of a conditional STORE that left some messages alone.
pub(crate) fn modified_reply(modified: &[u32]) -> Reply {
    Reply::Ok(format!(
        "[MODIFIED {}] Conditional STORE failed",
        crate::session::uid_text(modified)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vanished_lines_are_ranges_and_bounded() {
        assert_eq!(
            vanished_lines(&[1, 2, 3, 5], true),
            vec!["VANISHED (EARLIER) 1:3,5".to_owned()]
        );
        assert_eq!(vanished_lines(&[7], false), vec!["VANISHED 7".to_owned()]);
        let many: Vec<u32> = (1..=2000).map(|i| i * 2).collect();
        let lines = vanished_lines(&many, false);
        assert_eq!(lines.len(), 2000usize.div_ceil(VANISHED_RANGES_PER_LINE));
        assert!(lines.iter().all(|l| l.len() < 8192));
    }

    fn sequence_set(text: &str) -> SequenceSet {
        match crate::proto::parse_command(format!("a UID EXPUNGE {text}\r\n").as_bytes()) {
            Ok(crate::proto::Command {
                body: crate::proto::CommandBody::UidExpunge(crate::proto::SeqSet::Set(s)),
                ..
            }) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uid_sets_with_star_cover_expunged_uids() {
        let set = sequence_set("3:*,1");
        assert!(set_contains(&set, 1));
        assert!(!set_contains(&set, 2));
        assert!(set_contains(&set, 4_000_000_000));
        assert_eq!(lowest(&set), 1);
        let set = sequence_set("*:7,9");
        assert_eq!(lowest(&set), 7);
    }
}
