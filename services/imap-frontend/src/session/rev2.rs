//! IMAP4rev2 (RFC 9051) for sessions that `ENABLE IMAP4rev2`, and \Recent
//! (RFC 3501) for the IMAP4rev1 sessions.
//!
//! \Recent: mailstore hands each new UID to exactly one session, the first
//! to SELECT (or, while selected, to resynchronise) after it arrived; the
//! session keeps the UIDs it was given in [`crate::session::Selected`].
//! After ENABLE IMAP4rev2 the session shows no \Recent flag and no RECENT
//! response, answers SEARCH with ESEARCH (RFC 9051 7.3.4; a minimal
//! builder: the ALL result only), announces `OK [CLOSED]` when SELECT
//! replaces a selected mailbox and sends the LIST response of the mailbox
//! it selects. STATUS DELETED is answered for every session. A rev2
//! session still takes \Recent on SELECT: it saw the messages first.

use std::borrow::Cow;

use crate::session::{Selected, Session, uid_text};

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

/// The flags of a message as the session shows them: \Recent added for a
/// rev1 session that holds the message as recent.
pub(crate) fn flags_of<'a>(s: &Session, uid: u32, flags: &'a [String]) -> Cow<'a, [String]> {
    let recent = !s.rev2 && s.state.selected().is_some_and(|sel| sel.is_recent(uid));
    if recent {
        let mut f = flags.to_vec();
        f.push("\\Recent".into());
        Cow::Owned(f)
    } else {
        Cow::Borrowed(flags)
    }
}

/// The `* RECENT` response after SELECT or new mail, none for rev2.
pub(crate) fn recent_line(s: &Session) -> Option<String> {
    if s.rev2 {
        return None;
    }
    let n = s.state.selected().map_or(0, Selected::recent_count);
    Some(format!("{n} RECENT"))
}

/// The SEARCH answer: `* SEARCH n...` for rev1, `* ESEARCH (TAG "t") [UID]
/// ALL set` for rev2. `numbers` are sequence numbers or UIDs, ascending.
pub(crate) fn search_line(s: &Session, numbers: &[u32], uid: bool) -> String {
    if !s.rev2 {
        let mut line = String::from("* SEARCH");
        for n in numbers {
            line.push(' ');
            line.push_str(&n.to_string());
        }
        return line;
    }
    let mut line = format!("* ESEARCH (TAG \"{}\")", quoted(&s.tag));
    if uid {
        line.push_str(" UID");
    }
    if !numbers.is_empty() {
        line.push_str(" ALL ");
        line.push_str(&uid_text(numbers));
    }
    line
}

/// A tag is ASTRING-CHARs, but escape anyway: it goes inside quotes.
fn quoted(tag: &str) -> String {
    tag.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_quoted_safely() {
        assert_eq!(quoted("a1"), "a1");
        assert_eq!(quoted("a\"b\\c\r"), "a\\\"b\\\\c");
    }
}
