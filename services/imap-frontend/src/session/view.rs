//! The selected mailbox's view ([`Selected`]): the sequence-number map and
//! what a session knows of each message, flags and modseq. SELECT fills it from the same listing that
//! builds the map, and every resync, STORE and implicit \Seen updates it,
//! so FETCH of FLAGS/UID/MODSEQ and SEARCH over flags are answered without
//! a round trip to mailstore (the resync that ends every command keeps it
//! current; see `Session::sync`).

use mailfleet_proto::v1 as pb;

use crate::proto::{SeqOrUid, Sequence, SequenceSet};

/// System flags as bits, in the order they are written.
const SYSTEM: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// A message's flags: system flags as bits, keywords as given by mailstore
/// (most messages have none, so they cost no allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    bits: u8,
    keywords: Option<Box<[Box<str>]>>,
}

impl Flags {
    pub(crate) fn from_list<S: AsRef<str>>(list: &[S]) -> Flags {
        let mut bits = 0;
        let mut keywords = Vec::new();
        for f in list {
            let f = f.as_ref();
            match SYSTEM.iter().position(|s| s.eq_ignore_ascii_case(f)) {
                Some(i) => bits |= 1 << i,
                None => keywords.push(Box::<str>::from(f)),
            }
        }
        Flags {
            bits,
            keywords: (!keywords.is_empty()).then(|| keywords.into_boxed_slice()),
        }
    }

    /// Whether the message has `flag` (case-insensitive, as RFC 3501 2.3.2
    /// compares flags).
    pub(crate) fn has(&self, flag: &str) -> bool {
        match SYSTEM.iter().position(|s| s.eq_ignore_ascii_case(flag)) {
            Some(i) => self.bits & (1 << i) != 0,
            None => self
                .keywords
                .iter()
                .flat_map(|k| k.iter())
                .any(|k| k.eq_ignore_ascii_case(flag)),
        }
    }

    /// The keywords (flags that are not system flags), as given.
    pub(crate) fn keywords(&self) -> impl Iterator<Item = &str> + Clone {
        self.keywords.iter().flat_map(|k| k.iter()).map(|k| &**k)
    }

    /// The flags as a parenthesised list, \Recent added when `recent`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, recent: bool) {
        out.push(b'(');
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, f: &str| {
            if !first {
                out.push(b' ');
            }
            first = false;
            out.extend_from_slice(f.as_bytes());
        };
        for (i, f) in SYSTEM.iter().enumerate() {
            if self.bits & (1 << i) != 0 {
                put(out, f);
            }
        }
        for k in self.keywords.iter().flat_map(|k| k.iter()) {
            put(out, k);
        }
        if recent {
            put(out, "\\Recent");
        }
        out.push(b')');
    }
}

/// One message as the session last learnt it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MessageState {
    pub flags: Flags,
    pub modseq: u64,
}

impl MessageState {
    pub(crate) fn new<S: AsRef<str>>(flags: &[S], modseq: u64) -> MessageState {
        MessageState {
            flags: Flags::from_list(flags),
            modseq,
        }
    }
}

/// The mailbox a session has selected, with its sequence-number map.
pub(crate) struct Selected {
    pub name: String,
    pub id: i64,
    pub read_only: bool,
    /// UIDs in sequence-number order: message n has UID `uids[n - 1]`.
    pub uids: Vec<u32>,
    /// Flags and modseq of each message, parallel to `uids`.
    pub states: Vec<MessageState>,
    pub modseq: u64,
    /// An event says the mailbox changed past `modseq`.
    pub dirty: bool,
    /// Expunged elsewhere, not yet announced (announcing is not allowed now).
    pub pending_expunge: Vec<u32>,
    /// Below the modseq of the earliest of `pending_expunge` (RFC 7162).
    pub expunge_floor: Option<u64>,
    /// UIDs that are \Recent in this session, ascending (see `add_recent`).
    pub recent: Vec<u32>,
    /// The event feed's connection this state is current for (None: it
    /// was down); any other value means events may have been missed.
    pub feed_epoch: Option<u64>,
    /// The keywords the client was told of in FLAGS, in that order. FLAGS
    /// lists the flags of the mailbox (RFC 3501 7.2.6, RFC 9051 7.3.5), so
    /// no response may show a keyword before it is listed here.
    pub keywords: Vec<String>,
}

impl Selected {
    /// An empty view of mailbox `id` (tests build on it).
    #[cfg(test)]
    pub(crate) fn new(name: String, id: i64, read_only: bool) -> Selected {
        Selected {
            name,
            id,
            read_only,
            uids: Vec::new(),
            states: Vec::new(),
            modseq: 0,
            dirty: false,
            pending_expunge: Vec::new(),
            expunge_floor: None,
            recent: Vec::new(),
            feed_epoch: None,
            keywords: Vec::new(),
        }
    }

    /// Whether every keyword of `flags` was announced in FLAGS.
    pub(crate) fn knows_keywords<'a>(&self, flags: impl IntoIterator<Item = &'a str>) -> bool {
        flags
            .into_iter()
            .all(|f| f.starts_with('\\') || self.keywords.iter().any(|k| k.eq_ignore_ascii_case(f)))
    }

    pub(crate) fn seq_of(&self, uid: u32) -> Option<usize> {
        self.uids.binary_search(&uid).ok().map(|i| i + 1)
    }

    /// What the session knows of a message it holds.
    pub(crate) fn state_of(&self, uid: u32) -> Option<&MessageState> {
        let i = self.uids.binary_search(&uid).ok()?;
        self.states.get(i)
    }

    /// Records a message's flags and modseq as mailstore reported them;
    /// an older report than what the session holds is ignored.
    pub(crate) fn learn(&mut self, uid: u32, flags: &[String], modseq: u64) {
        if let Ok(i) = self.uids.binary_search(&uid)
            && let Some(state) = self.states.get_mut(i)
            && modseq >= state.modseq
        {
            *state = MessageState::new(flags, modseq);
        }
    }

    /// Takes message `seq` out of the map; returns its UID.
    pub(crate) fn remove_seq(&mut self, seq: usize) -> u32 {
        if seq <= self.states.len() {
            self.states.remove(seq - 1);
        }
        self.uids.remove(seq - 1)
    }

    /// A sequence number beyond EXISTS is a client error (RFC 3501 6.4.5:
    /// the command is BAD, not partly run). A range is accepted when one of
    /// its ends names a message, and anything when the mailbox is empty
    /// (`1:*` there is common and harmless).
    pub(crate) fn names_missing_message(&self, set: &SequenceSet) -> bool {
        let n = self.uids.len() as u32;
        let beyond = |x: &SeqOrUid| matches!(x, SeqOrUid::Value(v) if v.get() > n);
        n > 0
            && set.0.as_ref().iter().any(|seq| match seq {
                Sequence::Single(a) => beyond(a),
                Sequence::Range(a, b) => beyond(a) && beyond(b),
            })
    }

    /// UIDs of a sequence set, ascending, only those that exist.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let n = self.uids.len() as u32;
        let max_uid = self.uids.last().copied().unwrap_or(0);
        for seq in set.0.as_ref() {
            let (a, b) = match seq {
                Sequence::Single(x) => (*x, *x),
                Sequence::Range(a, b) => (*a, *b),
            };
            let v = |x: SeqOrUid| match x {
                SeqOrUid::Value(v) => v.get(),
                SeqOrUid::Asterisk => {
                    if uid {
                        max_uid
                    } else {
                        n
                    }
                }
            };
            let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
            if uid {
                let start = self.uids.partition_point(|&u| u < lo);
                let end = self.uids.partition_point(|&u| u <= hi);
                out.extend_from_slice(self.uids.get(start..end).unwrap_or_default());
            } else if lo >= 1 {
                let hi = hi.min(n);
                for s in lo..=hi {
                    if let Some(&u) = self.uids.get(s as usize - 1) {
                        out.push(u);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// \Recent (RFC 3501): mailstore hands each new UID to exactly one
/// session, the first to SELECT (or, while selected, to resynchronise)
/// after it arrived; the view keeps the UIDs it was given. After ENABLE
/// IMAP4rev2 (RFC 9051) the session shows no \Recent flag and no RECENT
/// response, but still takes \Recent on SELECT: it saw the messages first.
impl Selected {
    pub(crate) fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    /// Recent messages still in the mailbox.
    pub(crate) fn recent_count(&self) -> usize {
        self.recent
            .iter()
            .filter(|&&u| self.seq_of(u).is_some())
            .count()
    }

    /// Records the session's UIDs in `[from, to)` as recent (all of them,
    /// not only new ones: one that arrived just before the claim is known
    /// already and claimed at the next resync).
    pub(crate) fn add_recent(&mut self, from: u32, to: u32) {
        let start = self.uids.partition_point(|&u| u < from);
        let end = self.uids.partition_point(|&u| u < to);
        if let Some(claimed) = self.uids.get(start..end.max(start)) {
            self.recent.extend_from_slice(claimed);
        }
        self.recent.sort_unstable();
        self.recent.dedup();
    }
}

/// Compresses ascending UIDs into ranges.
pub(crate) fn uid_set(uids: &[u32]) -> pb::UidSet {
    let mut ranges: Vec<pb::UidRange> = Vec::new();
    for &u in uids {
        match ranges.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(u) => r.last = u,
            _ => ranges.push(pb::UidRange { first: u, last: u }),
        }
    }
    pb::UidSet { ranges }
}

/// "1:3,5" form of ascending UIDs (COPYUID, APPENDUID).
pub(crate) fn uid_text(uids: &[u32]) -> String {
    ranges_text(&uid_set(uids).ranges)
}

/// "1:3,5" form of UID ranges.
pub(crate) fn ranges_text(ranges: &[pb::UidRange]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}:{}", r.first, r.last)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The system flags every mailbox has, as FLAGS and PERMANENTFLAGS list them.
const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The FLAGS and PERMANENTFLAGS responses of a mailbox with `keywords`
/// (any keyword may be created: `\*`).
pub(crate) fn flags_responses(keywords: &[String]) -> [String; 2] {
    let mut list = String::from(SYSTEM_FLAGS);
    for k in keywords {
        list.push(' ');
        list.push_str(k);
    }
    [
        format!("FLAGS ({list})"),
        format!("OK [PERMANENTFLAGS ({list} \\*)] Flags permitted"),
    ]
}

/// Whether two mailbox names are the same mailbox (INBOX in any case).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

/// A selected mailbox's state brought up to date by a listing of what
/// changed since it: expunged messages (and those already known to be
/// expunged) leave, new ones join, others take their new flags.
pub(crate) fn merge_changes(
    base: Selected,
    changes: Vec<pb::MessageState>,
) -> (Vec<u32>, Vec<MessageState>) {
    let Selected {
        mut uids,
        mut states,
        pending_expunge,
        ..
    } = base;
    let mut gone: Vec<u32> = pending_expunge;
    let last_known = uids.last().copied().unwrap_or(0);
    let mut new = Vec::new();
    for m in changes {
        match uids.binary_search(&m.uid) {
            Ok(_) if m.expunged => gone.push(m.uid),
            Ok(i) => {
                if let Some(s) = states.get_mut(i)
                    && m.modseq >= s.modseq
                {
                    *s = MessageState::new(&m.flags, m.modseq);
                }
            }
            Err(_) if !m.expunged && m.uid > last_known => {
                new.push((m.uid, MessageState::new(&m.flags, m.modseq)));
            }
            Err(_) => {}
        }
    }
    if !gone.is_empty() {
        gone.sort_unstable();
        let mut keep = uids.iter().map(|u| gone.binary_search(u).is_err());
        states.retain(|_| keep.next().unwrap_or(true));
        uids.retain(|u| gone.binary_search(u).is_err());
    }
    new.sort_unstable_by_key(|(uid, _)| *uid);
    for (uid, state) in new {
        uids.push(uid);
        states.push(state);
    }
    (uids, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(f: &Flags, recent: bool) -> String {
        let mut out = Vec::new();
        f.encode(&mut out, recent);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn system_flags_and_keywords_round_trip() {
        let f = Flags::from_list(&["\\Seen", "$Junk", "\\flagged"]);
        assert!(f.has("\\SEEN"));
        assert!(f.has("\\Flagged"));
        assert!(f.has("$junk"));
        assert!(!f.has("\\Deleted"));
        assert!(!f.has("other"));
        assert_eq!(encoded(&f, false), "(\\Flagged \\Seen $Junk)");
        assert_eq!(encoded(&f, true), "(\\Flagged \\Seen $Junk \\Recent)");
        assert_eq!(encoded(&Flags::default(), false), "()");
        assert_eq!(encoded(&Flags::default(), true), "(\\Recent)");
    }

    #[test]
    fn a_message_without_keywords_allocates_nothing() {
        let f = Flags::from_list(&["\\Seen", "\\Answered"]);
        assert!(f.keywords.is_none());
        assert_eq!(std::mem::size_of::<MessageState>(), 32);
    }
}
