//! What a session knows of each message of its selected mailbox: flags and
//! modseq, kept beside the sequence-number map in
//! [`crate::session::Selected`]. SELECT fills it from the same listing that
//! builds the map, and every resync, STORE and implicit \Seen updates it,
//! so FETCH of FLAGS/UID/MODSEQ and SEARCH over flags are answered without
//! a round trip to mailstore (the resync that ends every command keeps it
//! current; see `Session::sync`).

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
