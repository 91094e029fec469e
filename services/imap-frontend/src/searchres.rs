//! SEARCHRES (RFC 5182): `SEARCH RETURN (SAVE ...)` keeps its result in
//! the session, and `$` names it in later sequence sets.
//!
//! imap-codec 1.0 does not parse `$`, so [`cut`] (pure, in
//! `parse::prepare`) replaces it before any parser sees it: as the
//! sequence set of FETCH, STORE, COPY and MOVE (and their UID forms) it
//! becomes `1` and `Mods::saved_set` is set, and [`substitute`] puts the
//! saved messages in its place once imap-codec has parsed the command; as a
//! search key of SEARCH, SORT or THREAD (`$` or `UID $`) it becomes a
//! KEYWORD placeholder that [`rewrite_search`] turns into the saved UIDs;
//! `UID EXPUNGE $` is recognised in `extra` and served from [`saved`]. The result is kept as
//! UIDs, so messages expunged since drop out of it by themselves, and `$`
//! means the same messages in UID and sequence-number commands.

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mailfleet_proto::v1 as pb;

use crate::ext::esearch::ReturnOpts;
use crate::rfc7162::{Tok, lex, matching, search_args, text};
use crate::session::{Reply, Selected, Session, uid_set};

/// The stem of the KEYWORD a SEARCH `$` key is replaced with.
const PLACEHOLDER: &str = "$MailfleetSaved";

/// The KEYWORD that stands for `$` in the command `line`: the stem, with a
/// number after it when the client's own text holds that word, so a client
/// that searches `KEYWORD $MailfleetSaved` gets that keyword, not the saved
/// result. [`cut`] and [`rewrite_search`] (through the session) derive it
/// from the same line.
pub(crate) fn placeholder_for(line: &[u8]) -> String {
    let lower = line.to_ascii_lowercase();
    let taken = |p: &str| {
        let p = p.to_ascii_lowercase();
        lower.windows(p.len()).any(|w| w == p.as_bytes())
    };
    let mut candidate = PLACEHOLDER.to_owned();
    let mut n = 0u32;
    while taken(&candidate) {
        n += 1;
        candidate = format!("{PLACEHOLDER}{n}");
    }
    candidate
}

/// The saved search result of a session: UIDs, ascending. Empty both when
/// nothing was saved and when an empty result was (RFC 5182 2.1: `$` is
/// then the empty set either way).
#[derive(Debug, Default)]
pub(crate) struct Saved {
    uids: Vec<u32>,
}

impl Saved {
    /// The saved messages still in the selected mailbox.
    fn live(&self, sel: &Selected) -> Vec<u32> {
        self.uids
            .iter()
            .copied()
            .filter(|&u| sel.seq_of(u).is_some())
            .collect()
    }
}

/// A command with its `$` replaced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub plain: Vec<u8>,
    /// The sequence set of FETCH/STORE/COPY/MOVE was `$`.
    pub saved_set: bool,
}

/// Replaces `$` where RFC 5182 allows it. `None`: no `$` to replace (or
/// not well-formed enough to tell; imap-codec then answers).
pub(crate) fn cut(buf: &[u8]) -> Option<Cut> {
    if !buf.contains(&b'$') {
        return None;
    }
    let (body, uid, name) = crate::extra::command_head(buf)?;
    let upper = name.to_ascii_uppercase();
    let first = if uid { 3 } else { 2 };
    match upper.as_slice() {
        b"FETCH" | b"STORE" | b"COPY" | b"MOVE" => {
            let toks = lex(body)?;
            let set @ Tok::Word(..) = toks.get(first).copied()? else {
                return None;
            };
            if text(body, set) != b"$" {
                return None;
            }
            let mut plain = body.get(..set.start())?.to_vec();
            plain.push(b'1');
            plain.extend_from_slice(body.get(set.end()..)?);
            plain.extend_from_slice(b"\r\n");
            Some(Cut {
                plain,
                saved_set: true,
            })
        }
        b"SEARCH" => search(body, &lex(body)?, first),
        // SORT (criteria) charset keys / THREAD algorithm charset keys.
        b"SORT" => {
            let toks = lex(body)?;
            let Tok::Open(_) = toks.get(first).copied()? else {
                return None;
            };
            search(body, &toks, matching(&toks, first)? + 2)
        }
        b"THREAD" => search(body, &lex(body)?, first + 2),
        _ => None,
    }
}

/// Replaces the search keys `$` and `UID $` with the placeholder.
fn search(b: &[u8], toks: &[Tok], first: usize) -> Option<Cut> {
    let placeholder = placeholder_for(b);
    let mut plain = Vec::with_capacity(b.len() + 32);
    let mut copied = 0;
    let mut k = first;
    let is_dollar = |t: Option<&Tok>| matches!(t, Some(&t @ Tok::Word(..)) if text(b, t) == b"$");
    while k < toks.len() {
        let t = toks.get(k).copied()?;
        let Tok::Word(..) = t else {
            k += 1;
            continue;
        };
        let word = text(b, t);
        if word.eq_ignore_ascii_case(b"RETURN") && matches!(toks.get(k + 1), Some(Tok::Open(_))) {
            k = matching(toks, k + 1)? + 1;
            continue;
        }
        let end = if word == b"$" {
            t.end()
        } else if word.eq_ignore_ascii_case(b"UID") && is_dollar(toks.get(k + 1)) {
            toks.get(k + 1)?.end()
        } else {
            k += 1 + search_args(word);
            continue;
        };
        plain.extend_from_slice(b.get(copied..t.start())?);
        plain.extend_from_slice(b"KEYWORD ");
        plain.extend_from_slice(placeholder.as_bytes());
        copied = end;
        k += if word == b"$" { 1 } else { 2 };
    }
    if copied == 0 {
        return None;
    }
    plain.extend_from_slice(b.get(copied..)?);
    plain.extend_from_slice(b"\r\n");
    Some(Cut {
        plain,
        saved_set: false,
    })
}

/// The saved result is reset by SELECT, EXAMINE, UNSELECT and CLOSE
/// (RFC 5182 2.1), whether or not they succeed: each leaves the previous
/// mailbox.
pub(crate) fn on_command(s: &mut Session, body: &CommandBody<'_>) {
    if matches!(
        body,
        CommandBody::Select { .. }
            | CommandBody::Examine { .. }
            | CommandBody::Unselect
            | CommandBody::Close
    ) {
        s.searchres = Saved::default();
    }
}

/// The saved messages still in the selected mailbox, as UIDs (`UID
/// EXPUNGE $`, parsed in `extra`).
pub(crate) fn saved(s: &Session) -> Vec<u32> {
    s.selected
        .as_ref()
        .map(|sel| s.searchres.live(sel))
        .unwrap_or_default()
}

/// Puts the saved messages in place of a `$` sequence set. `Some(reply)`:
/// the saved set is empty, so the command has nothing to do.
pub(crate) async fn substitute(
    s: &mut Session,
    body: &mut CommandBody<'_>,
) -> std::io::Result<Option<Reply>> {
    let (set, uid, verb) = match body {
        CommandBody::Fetch {
            sequence_set, uid, ..
        } => (sequence_set, *uid, "FETCH"),
        CommandBody::Store {
            sequence_set, uid, ..
        } => (sequence_set, *uid, "STORE"),
        CommandBody::Copy {
            sequence_set, uid, ..
        } => (sequence_set, *uid, "COPY"),
        CommandBody::Move {
            sequence_set, uid, ..
        } => (sequence_set, *uid, "MOVE"),
        _ => return Ok(None),
    };
    // Not selected: the command's own gate answers.
    let Some(sel) = s.selected.as_ref() else {
        return Ok(None);
    };
    let live = s.searchres.live(sel);
    let numbers: Vec<u32> = if uid {
        live
    } else {
        // Sequence numbers stay valid through the command: a non-UID
        // command never announces an expunge.
        live.iter()
            .filter_map(|&u| sel.seq_of(u))
            .filter_map(|n| u32::try_from(n).ok())
            .collect()
    };
    match sequence_set(&numbers) {
        Some(new) => {
            *set = new;
            Ok(None)
        }
        None => {
            s.sync(uid).await?;
            Ok(Some(Reply::Ok(format!("{verb} completed (nothing to do)"))))
        }
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

/// Replaces the placeholder keys with the saved messages; the placeholder
/// is the one [`placeholder_for`] chose for the command being run.
pub(crate) fn rewrite_search(key: &mut pb::SearchKey, s: &Session) {
    let placeholder = s.searchres_placeholder.as_str();
    if !uses_placeholder(key, placeholder) {
        return;
    }
    replace(key, &uid_set(&saved(s)), placeholder);
}

fn uses_placeholder(key: &pb::SearchKey, placeholder: &str) -> bool {
    (key.op() == pb::SearchOp::SearchFlag && key.text == placeholder)
        || key
            .children
            .iter()
            .any(|c| uses_placeholder(c, placeholder))
}

fn replace(key: &mut pb::SearchKey, saved: &pb::UidSet, placeholder: &str) {
    if key.op() == pb::SearchOp::SearchFlag && key.text == placeholder {
        *key = pb::SearchKey {
            op: pb::SearchOp::SearchUid as i32,
            uids: Some(saved.clone()),
            ..Default::default()
        };
        return;
    }
    // Depth is bounded by the conversion from imap-codec's tree.
    for c in &mut key.children {
        replace(c, saved, placeholder);
    }
}

/// Saves a SEARCH result: `hits` are UIDs (`uid`) or sequence numbers,
/// ascending. With MIN and/or MAX but neither ALL nor COUNT only those are
/// saved (RFC 5182 2.4).
pub(crate) fn save(s: &mut Session, hits: &[u32], uid: bool, opts: ReturnOpts) {
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
        let Some(sel) = s.selected.as_ref() else {
            s.searchres = Saved::default();
            return;
        };
        chosen = chosen
            .iter()
            .filter_map(|&n| sel.uids.get((n as usize).checked_sub(1)?).copied())
            .collect();
    }
    chosen.sort_unstable();
    chosen.dedup();
    s.searchres = Saved { uids: chosen };
}

/// A SEARCH with SAVE that failed leaves `$` empty (RFC 5182 2.1).
pub(crate) fn reset(s: &mut Session) {
    s.searchres = Saved::default();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn placeholder_is_never_the_clients_own_text() {
        assert_eq!(placeholder_for(b"a SEARCH $ UNSEEN\r\n"), PLACEHOLDER);
        let line = b"a SEARCH OR $ KEYWORD $mailfleetSAVED\r\n";
        let p = placeholder_for(line);
        assert_eq!(p, format!("{PLACEHOLDER}1"));
        let cut = cut(line).unwrap();
        assert_eq!(
            String::from_utf8(cut.plain).unwrap(),
            format!("a SEARCH OR KEYWORD {p} KEYWORD $mailfleetSAVED\r\n")
        );
    }
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use proptest::prelude::*;

    fn plain(line: &str) -> (String, bool) {
        let c = cut(line.as_bytes()).unwrap_or_else(|| panic!("{line}"));
        (String::from_utf8(c.plain).unwrap(), c.saved_set)
    }

    #[test]
    fn dollar_as_the_sequence_set() {
        for (line, want) in [
            ("a FETCH $ (FLAGS)\r\n", "a FETCH 1 (FLAGS)\r\n"),
            (
                "a UID FETCH $ BODY.PEEK[]\r\n",
                "a UID FETCH 1 BODY.PEEK[]\r\n",
            ),
            (
                "a STORE $ +FLAGS.SILENT (\\Deleted)\r\n",
                "a STORE 1 +FLAGS.SILENT (\\Deleted)\r\n",
            ),
            ("a UID COPY $ Archive\r\n", "a UID COPY 1 Archive\r\n"),
            ("a uid move $ \"A $ b\"\r\n", "a uid move 1 \"A $ b\"\r\n"),
        ] {
            let (p, saved) = plain(line);
            assert_eq!(p, want);
            assert!(saved);
            assert!(CommandCodec::default().decode(p.as_bytes()).is_ok(), "{p}");
        }
        // `$` elsewhere, or inside a set, is not the saved result.
        assert_eq!(cut(b"a FETCH 1 BODY[HEADER.FIELDS ($x)]\r\n"), None);
        assert_eq!(cut(b"a COPY 1:2 $Box\r\n"), None);
        assert_eq!(cut(b"a FETCH 1,$ FLAGS\r\n"), None);
        assert_eq!(cut(b"a FETCH 1 FLAGS\r\n"), None);
    }

    #[test]
    fn dollar_as_a_search_key() {
        let (p, saved) = plain("a SEARCH $ UNSEEN\r\n");
        assert_eq!(p, "a SEARCH KEYWORD $MailfleetSaved UNSEEN\r\n");
        assert!(!saved);
        let (p, _) = plain("a UID SEARCH OR UID $ (NOT $) KEYWORD $ SUBJECT $\r\n");
        assert_eq!(
            p,
            "a UID SEARCH OR KEYWORD $MailfleetSaved (NOT KEYWORD $MailfleetSaved) KEYWORD $ SUBJECT $\r\n"
        );
        assert!(CommandCodec::default().decode(p.as_bytes()).is_ok());
        let (p, _) = plain("a SEARCH RETURN (SAVE MIN) $\r\n");
        assert_eq!(p, "a SEARCH RETURN (SAVE MIN) KEYWORD $MailfleetSaved\r\n");
        assert_eq!(cut(b"a SEARCH KEYWORD $Junk\r\n"), None);
        assert_eq!(cut(b"a SEARCH HEADER X-A $\r\n"), None);
        // SORT and THREAD take search keys after their own arguments.
        let (p, _) = plain("a UID SORT (DATE) UTF-8 $ UNSEEN\r\n");
        assert_eq!(
            p,
            "a UID SORT (DATE) UTF-8 KEYWORD $MailfleetSaved UNSEEN\r\n"
        );
        let (p, _) = plain("a THREAD REFERENCES UTF-8 NOT $\r\n");
        assert_eq!(
            p,
            "a THREAD REFERENCES UTF-8 NOT KEYWORD $MailfleetSaved\r\n"
        );
        assert_eq!(cut(b"a SORT ($) UTF-8 ALL\r\n"), None);
    }

    #[test]
    fn saved_numbers_become_a_set() {
        assert!(sequence_set(&[]).is_none());
        let set = sequence_set(&[1, 2, 3, 7]).unwrap();
        assert_eq!(set.0.as_ref().len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn cut_never_panics(
            verb in prop::sample::select(vec!["FETCH", "UID STORE", "SEARCH", "UID SEARCH", "COPY", "SORT", "THREAD"]),
            parts in prop::collection::vec(prop::sample::select(vec![
                "$", "UID", "(", ")", "RETURN", "(SAVE)", "HEADER", "KEYWORD", "{1}\r\n$", "\"$\"", "1:*", "",
            ]), 0..10),
            noise in prop::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut line = format!("t {verb} {}", parts.join(" ")).into_bytes();
            line.extend_from_slice(&noise);
            line.extend_from_slice(b"\r\n");
            if let Some(c) = cut(&line) {
                prop_assert!(c.plain.ends_with(b"\r\n"));
            }
        }
    }
}
