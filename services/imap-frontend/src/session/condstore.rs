//! RFC 7162 CONDSTORE and QRESYNC in a session: what is enabled, the
//! HIGHESTMODSEQ a session may report, the changes since a mod-sequence
//! (FETCH CHANGEDSINCE, VANISHED (EARLIER)) and VANISHED responses. The
//! commands that use them (ENABLE, SELECT with QRESYNC, conditional STORE)
//! are in `cmd`.
//!
//! The syntax is parsed in `proto`; mailstore keeps a modseq per message
//! and keeps expunged messages' UIDs with the modseq of their expunge, so
//! every answer here is exact (seq-match-data is never needed).

use super::view::{Selected, ranges_text, uid_set};
use crate::encode;
use crate::proto::{SeqOrUid, Sequence, SequenceSet};

/// UID ranges per VANISHED line, so that no line grows without bound
/// (RFC 7162 4 asks clients to accept 8192-octet lines).
const VANISHED_RANGES_PER_LINE: usize = 300;

/// What the client has enabled (RFC 5161 ENABLE, or implicitly).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct State {
    pub condstore: bool,
    pub qresync: bool,
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
            let set = ranges_text(chunk);
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
