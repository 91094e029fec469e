//! SEARCHRES (RFC 5182): `SEARCH RETURN (SAVE ...)` keeps its result in
//! the session, and `$` names it in later sequence sets. `$` is a typed
//! sequence set ([`SeqSet::Saved`]) from the parser on: [`resolve`] turns
//! it into the saved messages for FETCH, STORE, COPY, MOVE and UID
//! EXPUNGE, and `search_key::convert` for search keys. The result is kept as
//! UIDs, so messages expunged since drop out of it by themselves, and `$`
//! means the same messages in UID and sequence-number commands.

use super::view::{Selected, uid_set};
use crate::proto::ReturnOpts;
use crate::proto::{SeqOrUid, SeqSet, Sequence, SequenceSet};

/// The saved search result of a session: UIDs, ascending. Empty both when
/// nothing was saved and when an empty result was (RFC 5182 2.1: `$` is
/// then the empty set either way).
#[derive(Debug, Default)]
pub(crate) struct Saved {
    uids: Vec<u32>,
}

impl Saved {
    /// The saved messages still in the selected mailbox `sel`, as UIDs
    /// (none without a selected mailbox).
    pub(crate) fn live(&self, sel: Option<&Selected>) -> Vec<u32> {
        let Some(sel) = sel else {
            return Vec::new();
        };
        self.uids
            .iter()
            .copied()
            .filter(|&u| sel.seq_of(u).is_some())
            .collect()
    }

    /// The sequence set a command names: `$` becomes the saved messages
    /// (UIDs for a UID command, else their sequence numbers, which stay
    /// valid through the command: a non-UID command never announces an
    /// expunge). `None`: `$` is empty, the command has nothing to do.
    pub(crate) fn resolve(
        &self,
        sel: Option<&Selected>,
        set: SeqSet,
        uid: bool,
    ) -> Option<SequenceSet> {
        if let SeqSet::Set(set) = set {
            return Some(set);
        }
        let sel = sel?;
        let live = self.live(Some(sel));
        let numbers: Vec<u32> = if uid {
            live
        } else {
            live.iter()
                .filter_map(|&u| sel.seq_of(u))
                .filter_map(|n| u32::try_from(n).ok())
                .collect()
        };
        sequence_set(&numbers)
    }

    /// The result of a SEARCH with SAVE: `hits` are UIDs (`uid`) or
    /// sequence numbers of `sel`, ascending. With MIN and/or MAX but
    /// neither ALL nor COUNT only those are saved (RFC 5182 2.4).
    pub(crate) fn new(sel: Option<&Selected>, hits: &[u32], uid: bool, opts: ReturnOpts) -> Saved {
        let mut chosen: Vec<u32> = if opts.all || opts.count || !(opts.min || opts.max) {
            hits.to_vec()
        } else {
            let mut v = Vec::new();
            if opts.min {
                v.extend(hits.first());
            }
            if opts.max {
                v.extend(hits.last());
            }
            v
        };
        if !uid {
            let Some(sel) = sel else {
                return Saved::default();
            };
            chosen = chosen
                .iter()
                .filter_map(|&n| sel.uids.get((n as usize).checked_sub(1)?).copied())
                .collect();
        }
        chosen.sort_unstable();
        chosen.dedup();
        Saved { uids: chosen }
    }
}

/// Ascending numbers as a sequence set; `None` when empty.
fn sequence_set(numbers: &[u32]) -> Option<SequenceSet> {
    let value = |n: u32| std::num::NonZeroU32::new(n).map(SeqOrUid::Value);
    let seqs: Vec<Sequence> = uid_set(numbers)
        .ranges
        .iter()
        .filter_map(|r| {
            Some(if r.first == r.last {
                Sequence::Single(value(r.first)?)
            } else {
                Sequence::Range(value(r.first)?, value(r.last)?)
            })
        })
        .collect();
    SequenceSet::try_from(seqs).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn saved_numbers_become_a_set() {
        assert!(sequence_set(&[]).is_none());
        let set = sequence_set(&[1, 2, 3, 7]).unwrap();
        assert_eq!(set.0.as_ref().len(), 2);
    }
}
