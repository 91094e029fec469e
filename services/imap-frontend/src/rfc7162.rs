//! RFC 7162 (CONDSTORE, QRESYNC) command syntax that imap-codec 1.0 cannot
//! parse: SELECT/EXAMINE parameters, the MODSEQ fetch item, FETCH modifiers
//! (CHANGEDSINCE, VANISHED), the STORE modifier UNCHANGEDSINCE and the
//! SEARCH key MODSEQ.
//!
//! Pure: bytes in, [`Parsed`] out. The RFC 7162 parts are taken out of the
//! command and returned as [`Mods`]; what remains (`plain`) is an ordinary
//! IMAP4rev1 command for imap-codec. A SEARCH MODSEQ key becomes a KEYWORD
//! placeholder (see [`placeholder_index`]) so that it keeps its place in the
//! key tree. Anything this module does not recognise is left to imap-codec.

use imap_codec::imap_types::sequence::SequenceSet;

/// Tokens looked at in one command; longer commands go to imap-codec.
const MAX_TOKENS: usize = 20_000;
/// Mod-sequences are 63-bit (RFC 7162 7: mod-sequence-value).
const MAX_MODSEQ: u64 = i64::MAX as u64;
/// The KEYWORD a SEARCH MODSEQ key is replaced with, followed by its index.
const PLACEHOLDER: &str = "$MailfleetModseq.";

/// QRESYNC SELECT/EXAMINE parameters (RFC 7162 3.2.5).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// (known sequence numbers, their UIDs); parsed and checked, not needed
    /// for the answer because expunged UIDs are kept with their modseq.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// The RFC 7162 parts of one command.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Mods {
    /// SELECT/EXAMINE (CONDSTORE).
    pub select_condstore: bool,
    pub qresync: Option<Qresync>,
    /// The MODSEQ fetch item was asked for.
    pub fetch_modseq: bool,
    /// MODSEQ was the only fetch item: `plain` asks for UID in its place,
    /// which a non-UID FETCH must not return.
    pub drop_uid: bool,
    pub changed_since: Option<u64>,
    pub vanished: bool,
    pub unchanged_since: Option<u64>,
    /// SEARCH MODSEQ values, by placeholder index.
    pub search_modseq: Vec<u64>,
    /// BINARY fetch items (RFC 3516), cut out of the command by `binary`.
    pub binary: Vec<crate::binary::Item>,
    /// The command's sequence set was `$` (RFC 5182), see `searchres`.
    pub saved_set: bool,
}

impl Mods {
    /// Whether the command is a "CONDSTORE enabling command" (RFC 7162 3.1).
    pub(crate) fn enables_condstore(&self) -> bool {
        self.select_condstore
            || self.qresync.is_some()
            || self.fetch_modseq
            || self.changed_since.is_some()
            || self.unchanged_since.is_some()
            || !self.search_modseq.is_empty()
    }
}

#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// `plain` is the command without its RFC 7162 parts, CRLF-terminated.
    Command {
        tag: String,
        plain: Vec<u8>,
        mods: Mods,
    },
    /// RFC 7162 syntax, but wrong: answer BAD.
    Invalid { tag: String, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Tok {
    Open(usize),
    Close(usize),
    /// Byte range of an atom (brackets and partials included), a quoted
    /// string or a literal.
    Word(usize, usize),
}

impl Tok {
    pub(crate) fn start(self) -> usize {
        match self {
            Tok::Open(i) | Tok::Close(i) | Tok::Word(i, _) => i,
        }
    }

    pub(crate) fn end(self) -> usize {
        match self {
            Tok::Open(i) | Tok::Close(i) => i + 1,
            Tok::Word(_, e) => e,
        }
    }
}

/// Skips a quoted string starting at `i` (the opening quote); returns the
/// index after the closing quote.
fn skip_quoted(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
}

/// Skips a literal `{n}` / `{n+}` CRLF and its n bytes starting at `i`.
fn skip_literal(b: &[u8], i: usize) -> Option<usize> {
    let close = i + b.get(i..)?.iter().position(|&c| c == b'}')?;
    let spec = b.get(i + 1..close)?;
    let digits = spec.strip_suffix(b"+").unwrap_or(spec);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if b.get(close + 1..close + 3)? != b"\r\n" {
        return None;
    }
    let end = (close + 3).checked_add(n)?;
    (end <= b.len()).then_some(end)
}

/// Splits a command (without its final CRLF) into tokens; `None` when it is
/// not well-formed enough to be looked at (imap-codec then answers it).
pub(crate) fn lex(b: &[u8]) -> Option<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if toks.len() >= MAX_TOKENS {
            return None;
        }
        match b[i] {
            b' ' => i += 1,
            b'(' => {
                toks.push(Tok::Open(i));
                i += 1;
            }
            b')' => {
                toks.push(Tok::Close(i));
                i += 1;
            }
            b'"' => {
                let end = skip_quoted(b, i)?;
                toks.push(Tok::Word(i, end));
                i = end;
            }
            b'{' => {
                let end = skip_literal(b, i)?;
                toks.push(Tok::Word(i, end));
                i = end;
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b' ' | b'(' | b')') {
                    match b[i] {
                        b'\r' | b'\n' => return None,
                        // A section: spaces, parentheses, quoted names and
                        // literals inside belong to this token.
                        b'[' => {
                            i += 1;
                            loop {
                                match *b.get(i)? {
                                    b']' => break,
                                    b'"' => i = skip_quoted(b, i)?,
                                    b'{' => i = skip_literal(b, i)?,
                                    b'\r' | b'\n' => return None,
                                    _ => i += 1,
                                }
                            }
                            i += 1;
                        }
                        _ => i += 1,
                    }
                }
                toks.push(Tok::Word(start, i));
            }
        }
    }
    Some(toks)
}

/// Index of the Close matching the Open at `open`.
pub(crate) fn matching(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k);
                }
            }
            Tok::Word(..) => {}
        }
    }
    None
}

pub(crate) fn text(b: &[u8], t: Tok) -> &[u8] {
    b.get(t.start()..t.end()).unwrap_or_default()
}

pub(crate) fn is_word(b: &[u8], t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(s, e)) if b.get(*s..*e).is_some_and(|x| x.eq_ignore_ascii_case(w.as_bytes())))
}

fn number(b: &[u8], t: Option<&Tok>) -> Option<u64> {
    let Some(&Tok::Word(s, e)) = t else {
        return None;
    };
    let digits = b.get(s..e)?;
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// mod-sequence-valzer: 0 ..= 2^63-1.
fn modseq_valzer(b: &[u8], t: Option<&Tok>) -> Option<u64> {
    number(b, t).filter(|&n| n <= MAX_MODSEQ)
}

/// mod-sequence-value: 1 ..= 2^63-1.
fn modseq_value(b: &[u8], t: Option<&Tok>) -> Option<u64> {
    modseq_valzer(b, t).filter(|&n| n > 0)
}

fn seq_set(b: &[u8], t: Option<&Tok>) -> Option<SequenceSet> {
    match t {
        Some(&Tok::Word(s, e)) => crate::extra::sequence_set(b.get(s..e)?),
        _ => None,
    }
}

fn line_of(parts: &[&[u8]]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.concat();
    out.extend_from_slice(b"\r\n");
    out
}

/// Recognises a command with RFC 7162 syntax. `None`: not one (or not
/// well-formed enough to tell), imap-codec takes it.
pub(crate) fn parse(buf: &[u8]) -> Option<Parsed> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    // Cheap look at the command name before tokenising everything.
    let mut words = body.splitn(4, |&c| c == b' ');
    let tag = crate::extra::tag_of(words.next()?)?;
    let mut name = words.next()?;
    let uid = name.eq_ignore_ascii_case(b"UID");
    if uid {
        name = words.next()?;
    }
    let upper = name.to_ascii_uppercase();
    let has = |what: &[u8]| {
        body.windows(what.len())
            .any(|w| w.eq_ignore_ascii_case(what))
    };
    match upper.as_slice() {
        b"SELECT" | b"EXAMINE" if !uid => {}
        b"FETCH" if has(b"MODSEQ") || has(b"CHANGEDSINCE") || has(b"VANISHED") => {}
        b"STORE" if has(b"UNCHANGEDSINCE") => {}
        b"SEARCH" if has(b"MODSEQ") && !has(PLACEHOLDER.as_bytes()) => {}
        _ => return None,
    }
    let toks = lex(body)?;
    let first = if uid { 3 } else { 2 };
    let invalid = |why: &str| {
        Some(Parsed::Invalid {
            tag: tag.clone(),
            why: why.to_owned(),
        })
    };
    let result = match upper.as_slice() {
        b"SELECT" | b"EXAMINE" => select(body, &toks, first),
        b"FETCH" => fetch(body, &toks, first),
        b"STORE" => store(body, &toks, first),
        _ => search(body, &toks, first),
    };
    match result {
        Ok(Some((plain, mods))) => Some(Parsed::Command { tag, plain, mods }),
        Ok(None) => None,
        Err(why) => invalid(why),
    }
}

type Step = Result<Option<(Vec<u8>, Mods)>, &'static str>;

/// `tag SELECT mailbox [(CONDSTORE | QRESYNC (...))]`.
fn select(b: &[u8], toks: &[Tok], first: usize) -> Step {
    let Some(mailbox @ Tok::Word(..)) = toks.get(first).copied() else {
        return Ok(None);
    };
    let open = first + 1;
    match toks.get(open) {
        None => return Ok(None),
        Some(Tok::Open(_)) => {}
        Some(_) => return Err("Unexpected argument after the mailbox name"),
    }
    let close = matching(toks, open).ok_or("Unbalanced parentheses")?;
    if close + 1 != toks.len() {
        return Err("Unexpected data after SELECT parameters");
    }
    let mut mods = Mods::default();
    let mut k = open + 1;
    if k == close {
        return Err("Empty SELECT parameter list");
    }
    while k < close {
        if is_word(b, toks.get(k), "CONDSTORE") && !mods.select_condstore {
            mods.select_condstore = true;
            k += 1;
        } else if is_word(b, toks.get(k), "QRESYNC") && mods.qresync.is_none() {
            let (q, next) = qresync(b, toks, k + 1).ok_or("Invalid QRESYNC parameter")?;
            mods.qresync = Some(q);
            k = next;
        } else {
            return Err("Unknown or repeated SELECT parameter");
        }
    }
    if k != close {
        return Err("Invalid SELECT parameters");
    }
    let plain = line_of(&[b.get(..mailbox.end()).unwrap_or_default()]);
    Ok(Some((plain, mods)))
}

/// `(uidvalidity modseq [known-uids [(seq-set uid-set)]])` at `k`; returns
/// the parameters and the index after the group.
fn qresync(b: &[u8], toks: &[Tok], k: usize) -> Option<(Qresync, usize)> {
    if !matches!(toks.get(k), Some(Tok::Open(_))) {
        return None;
    }
    let close = matching(toks, k)?;
    let uidvalidity = number(b, toks.get(k + 1))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)?;
    let modseq = modseq_value(b, toks.get(k + 2))?;
    let mut q = Qresync {
        uidvalidity,
        modseq,
        known_uids: None,
        seq_match: None,
    };
    let mut i = k + 3;
    if i < close && matches!(toks.get(i), Some(Tok::Word(..))) {
        q.known_uids = Some(seq_set(b, toks.get(i))?);
        i += 1;
        if i < close {
            // (known-sequence-set known-uid-set)
            if !matches!(toks.get(i), Some(Tok::Open(_)))
                || !matches!(toks.get(i + 3), Some(Tok::Close(_)))
            {
                return None;
            }
            let seqs = seq_set(b, toks.get(i + 1))?;
            let uids = seq_set(b, toks.get(i + 2))?;
            q.seq_match = Some((seqs, uids));
            i += 4;
        }
    }
    (i == close).then_some((q, close + 1))
}

/// `tag [UID] FETCH set items [(CHANGEDSINCE n [VANISHED])]`.
fn fetch(b: &[u8], toks: &[Tok], first: usize) -> Step {
    let Some(set @ Tok::Word(..)) = toks.get(first).copied() else {
        return Ok(None);
    };
    let items_at = first + 1;
    let (items_end, group) = match toks.get(items_at) {
        Some(Tok::Open(_)) => (
            matching(toks, items_at).ok_or("Unbalanced parentheses")?,
            true,
        ),
        Some(Tok::Word(..)) => (items_at, false),
        _ => return Ok(None),
    };
    let mut mods = Mods::default();
    // The items, rebuilt without MODSEQ.
    let mut kept: Vec<&[u8]> = Vec::new();
    if group {
        let mut k = items_at + 1;
        while k < items_end {
            let t = toks.get(k).copied().ok_or("Invalid fetch items")?;
            match t {
                Tok::Open(_) => {
                    let c = matching(toks, k).ok_or("Unbalanced parentheses")?;
                    let end = toks.get(c).copied().ok_or("Invalid fetch items")?;
                    kept.push(b.get(t.start()..end.end()).unwrap_or_default());
                    k = c + 1;
                }
                Tok::Word(..) if is_word(b, Some(&t), "MODSEQ") => {
                    mods.fetch_modseq = true;
                    k += 1;
                }
                _ => {
                    kept.push(text(b, t));
                    k += 1;
                }
            }
        }
    } else if let Some(t) = toks.get(items_at) {
        if is_word(b, Some(t), "MODSEQ") {
            mods.fetch_modseq = true;
        } else {
            kept.push(text(b, *t));
        }
    }
    let mod_at = items_end + 1;
    match toks.get(mod_at) {
        None => {}
        Some(Tok::Open(_)) => {
            let close = matching(toks, mod_at).ok_or("Unbalanced parentheses")?;
            if close + 1 != toks.len() {
                return Err("Unexpected data after FETCH modifiers");
            }
            let mut k = mod_at + 1;
            if k == close {
                return Err("Empty FETCH modifier list");
            }
            while k < close {
                if is_word(b, toks.get(k), "CHANGEDSINCE") && mods.changed_since.is_none() {
                    mods.changed_since =
                        Some(modseq_value(b, toks.get(k + 1)).ok_or("Invalid CHANGEDSINCE value")?);
                    k += 2;
                } else if is_word(b, toks.get(k), "VANISHED") && !mods.vanished {
                    mods.vanished = true;
                    k += 1;
                } else {
                    return Err("Unknown or repeated FETCH modifier");
                }
            }
            if k != close {
                return Err("Invalid FETCH modifiers");
            }
        }
        Some(_) => {
            // Not ours (a MODSEQ in a header name, say): imap-codec decides.
            if !mods.fetch_modseq {
                return Ok(None);
            }
            return Err("Unexpected data after fetch items");
        }
    }
    if !mods.fetch_modseq && mods.changed_since.is_none() && !mods.vanished {
        return Ok(None);
    }
    if mods.vanished && mods.changed_since.is_none() {
        return Err("VANISHED needs CHANGEDSINCE");
    }
    let items: Vec<u8> = if kept.is_empty() {
        mods.drop_uid = true;
        b"UID".to_vec()
    } else if group {
        [b"(".as_slice(), &kept.join(b" ".as_slice()), b")"].concat()
    } else {
        kept.concat()
    };
    let head = b.get(..set.end()).unwrap_or_default();
    Ok(Some((line_of(&[head, b" ", &items]), mods)))
}

/// `tag [UID] STORE set (UNCHANGEDSINCE n) flags`.
fn store(b: &[u8], toks: &[Tok], first: usize) -> Step {
    let Some(set @ Tok::Word(..)) = toks.get(first).copied() else {
        return Ok(None);
    };
    let open = first + 1;
    if !matches!(toks.get(open), Some(Tok::Open(_))) {
        return Ok(None);
    }
    let close = matching(toks, open).ok_or("Unbalanced parentheses")?;
    let mut mods = Mods::default();
    let mut k = open + 1;
    if k == close {
        return Err("Empty STORE modifier list");
    }
    while k < close {
        if is_word(b, toks.get(k), "UNCHANGEDSINCE") && mods.unchanged_since.is_none() {
            mods.unchanged_since =
                Some(modseq_valzer(b, toks.get(k + 1)).ok_or("Invalid UNCHANGEDSINCE value")?);
            k += 2;
        } else {
            return Err("Unknown or repeated STORE modifier");
        }
    }
    if k != close {
        return Err("Invalid STORE modifiers");
    }
    let after = toks.get(close).map_or(b.len(), |t| t.end());
    let head = b.get(..set.end()).unwrap_or_default();
    let rest = b.get(after..).unwrap_or_default();
    Ok(Some((line_of(&[head, rest]), mods)))
}

/// Search keys followed by `n` arguments (RFC 3501 search-key, plus the
/// CHARSET specification in front of them).
pub(crate) fn search_args(key: &[u8]) -> usize {
    const ONE: &[&str] = &[
        "BCC",
        "BODY",
        "CC",
        "FROM",
        "KEYWORD",
        "SUBJECT",
        "TEXT",
        "TO",
        "UNKEYWORD",
        "BEFORE",
        "ON",
        "SINCE",
        "SENTBEFORE",
        "SENTON",
        "SENTSINCE",
        "LARGER",
        "SMALLER",
        "UID",
        "CHARSET",
        "OLDER",
        "YOUNGER",
    ];
    if key.eq_ignore_ascii_case(b"HEADER") {
        2
    } else if ONE.iter().any(|k| key.eq_ignore_ascii_case(k.as_bytes())) {
        1
    } else {
        0
    }
}

/// SEARCH with `MODSEQ ["/flags/x" priv|shared|all] n` keys anywhere in
/// the key tree.
fn search(b: &[u8], toks: &[Tok], first: usize) -> Step {
    let mut mods = Mods::default();
    let mut plain: Vec<u8> = Vec::with_capacity(b.len() + 32);
    let mut copied = 0;
    let mut k = first;
    while k < toks.len() {
        let t = toks.get(k).copied().ok_or("Invalid search")?;
        let word = match t {
            Tok::Word(..) => text(b, t),
            _ => {
                k += 1;
                continue;
            }
        };
        if word.eq_ignore_ascii_case(b"RETURN") && matches!(toks.get(k + 1), Some(Tok::Open(_))) {
            // ESEARCH return options (RFC 4731): not keys.
            k = matching(toks, k + 1).ok_or("Unbalanced parentheses")? + 1;
            continue;
        }
        if !word.eq_ignore_ascii_case(b"MODSEQ") {
            k += 1 + search_args(word);
            continue;
        }
        let mut v = k + 1;
        if matches!(toks.get(v), Some(Tok::Word(s, _)) if b.get(*s) == Some(&b'"')) {
            let entry_type = toks.get(v + 1);
            if !["priv", "shared", "all"]
                .iter()
                .any(|w| is_word(b, entry_type, w))
            {
                return Err("Invalid MODSEQ entry type");
            }
            v += 2;
        }
        let n = modseq_valzer(b, toks.get(v)).ok_or("Invalid MODSEQ search value")?;
        let end = toks.get(v).map_or(b.len(), |t| t.end());
        plain.extend_from_slice(b.get(copied..t.start()).unwrap_or_default());
        plain.extend_from_slice(
            format!("KEYWORD {PLACEHOLDER}{}", mods.search_modseq.len()).as_bytes(),
        );
        mods.search_modseq.push(n);
        copied = end;
        k = v + 1;
    }
    if mods.search_modseq.is_empty() {
        return Ok(None);
    }
    plain.extend_from_slice(b.get(copied..).unwrap_or_default());
    plain.extend_from_slice(b"\r\n");
    Ok(Some((plain, mods)))
}

/// The index of a SEARCH MODSEQ placeholder keyword.
pub(crate) fn placeholder_index(keyword: &str) -> Option<usize> {
    let rest = keyword.strip_prefix(PLACEHOLDER)?;
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmd(line: &str) -> (String, Mods) {
        match parse(line.as_bytes()) {
            Some(Parsed::Command { plain, mods, .. }) => {
                (String::from_utf8(plain).unwrap_or_default(), mods)
            }
            other => panic!("{line}: {other:?}"),
        }
    }

    fn invalid(line: &str) -> bool {
        matches!(parse(line.as_bytes()), Some(Parsed::Invalid { .. }))
    }

    #[test]
    fn plain_commands_are_left_to_imap_codec() {
        for line in [
            "a SELECT INBOX\r\n",
            "a FETCH 1:* (FLAGS UID)\r\n",
            "a UID STORE 1 +FLAGS (\\Seen)\r\n",
            "a SEARCH SUBJECT hello\r\n",
            "a SEARCH SUBJECT modseq\r\n",
            "a FETCH 1 BODY[HEADER.FIELDS (MODSEQ)]\r\n",
            "a NOOP\r\n",
        ] {
            assert_eq!(parse(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn select_parameters() {
        let (plain, m) = cmd("a1 SELECT INBOX (CONDSTORE)\r\n");
        assert_eq!(plain, "a1 SELECT INBOX\r\n");
        assert!(m.select_condstore && m.qresync.is_none());
        let (plain, m) = cmd(
            "a2 EXAMINE \"My (box)\" (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
        );
        assert_eq!(plain, "a2 EXAMINE \"My (box)\"\r\n");
        let q = m.qresync.unwrap_or_else(|| panic!("qresync"));
        assert_eq!(q.uidvalidity, 67890007);
        assert_eq!(q.modseq, 20050715194045000);
        assert!(q.known_uids.is_some() && q.seq_match.is_none());
        let (_, m) = cmd("a3 select {5}\r\nINBOX (QRESYNC (1 2 1:9 (1:3 4:6)) CONDSTORE)\r\n");
        let q = m.qresync.clone().unwrap_or_else(|| panic!("qresync"));
        assert!(q.seq_match.is_some() && m.select_condstore);
        let (_, m) = cmd("a4 SELECT INBOX (QRESYNC (1 2))\r\n");
        assert!(m.qresync.is_some_and(|q| q.known_uids.is_none()));
        assert!(invalid("a5 SELECT INBOX ()\r\n"));
        assert!(invalid("a6 SELECT INBOX (FOO)\r\n"));
        assert!(invalid("a7 SELECT INBOX (QRESYNC (0 5))\r\n"));
        assert!(invalid("a8 SELECT INBOX (QRESYNC (1 0))\r\n"));
        assert!(invalid("a9 SELECT INBOX (QRESYNC (1 2 x))\r\n"));
        assert!(invalid("b1 SELECT INBOX (QRESYNC (1 2 1:5 (1:3)))\r\n"));
        assert!(invalid("b2 SELECT INBOX (CONDSTORE CONDSTORE)\r\n"));
        assert!(invalid("b3 SELECT INBOX (CONDSTORE) extra\r\n"));
        assert!(invalid(
            "b4 SELECT INBOX (QRESYNC (1 99999999999999999999))\r\n"
        ));
    }

    #[test]
    fn fetch_items_and_modifiers() {
        let (plain, m) = cmd("a UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 12 VANISHED)\r\n");
        assert_eq!(plain, "a UID FETCH 1:* (FLAGS)\r\n");
        assert_eq!(m.changed_since, Some(12));
        assert!(m.vanished && m.fetch_modseq && !m.drop_uid);
        let (plain, m) = cmd("a FETCH 2 MODSEQ\r\n");
        assert_eq!(plain, "a FETCH 2 UID\r\n");
        assert!(m.fetch_modseq && m.drop_uid);
        let (plain, m) = cmd("a FETCH 2 (modseq)\r\n");
        assert_eq!(plain, "a FETCH 2 UID\r\n");
        assert!(m.drop_uid);
        let (plain, m) = cmd("a FETCH 1:3 FAST (CHANGEDSINCE 5)\r\n");
        assert_eq!(plain, "a FETCH 1:3 FAST\r\n");
        assert!(!m.fetch_modseq && m.changed_since == Some(5));
        let (plain, _) = cmd(
            "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (DATE \"X)\")]<0.5> MODSEQ UID) (CHANGEDSINCE 1)\r\n",
        );
        assert_eq!(
            plain,
            "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (DATE \"X)\")]<0.5> UID)\r\n"
        );
        assert!(invalid("a FETCH 1 FLAGS (CHANGEDSINCE 0)\r\n"));
        assert!(invalid("a FETCH 1 FLAGS (CHANGEDSINCE)\r\n"));
        assert!(invalid("a FETCH 1 FLAGS (VANISHED)\r\n"));
        assert!(invalid("a FETCH 1 FLAGS (CHANGEDSINCE 1 FOO)\r\n"));
        assert!(invalid("a FETCH 1 MODSEQ ()\r\n"));
        // Without RFC 7162 words, imap-codec answers (BAD).
        assert_eq!(parse(b"a FETCH 1 FLAGS (FOO 1)\r\n"), None);
        assert!(invalid("a FETCH 1 (FLAGS MODSEQ) junk\r\n"));
    }

    #[test]
    fn store_modifier() {
        let (plain, m) =
            cmd("a STORE 1:3 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n");
        assert_eq!(plain, "a STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\n");
        assert_eq!(m.unchanged_since, Some(320162338));
        let (plain, m) = cmd("a UID STORE 7 (UNCHANGEDSINCE 0) FLAGS ()\r\n");
        assert_eq!(plain, "a UID STORE 7 FLAGS ()\r\n");
        assert_eq!(m.unchanged_since, Some(0));
        assert!(invalid("a STORE 1 (UNCHANGEDSINCE x) +FLAGS (a)\r\n"));
        assert!(invalid("a STORE 1 (UNCHANGEDSINCE 1 FOO) +FLAGS (a)\r\n"));
    }

    #[test]
    fn search_modseq_keys() {
        let (plain, m) = cmd("a SEARCH MODSEQ 620162338\r\n");
        assert_eq!(plain, "a SEARCH KEYWORD $MailfleetModseq.0\r\n");
        assert_eq!(m.search_modseq, vec![620162338]);
        let (plain, m) = cmd(
            "a UID SEARCH OR (MODSEQ \"/flags/\\\\draft\" all 620162338 SUBJECT modseq) NOT MODSEQ 3\r\n",
        );
        assert_eq!(
            plain,
            "a UID SEARCH OR (KEYWORD $MailfleetModseq.0 SUBJECT modseq) NOT KEYWORD $MailfleetModseq.1\r\n"
        );
        assert_eq!(m.search_modseq, vec![620162338, 3]);
        assert_eq!(placeholder_index("$MailfleetModseq.1"), Some(1));
        assert_eq!(placeholder_index("$Junk"), None);
        let (plain, _) = cmd("a SEARCH CHARSET UTF-8 HEADER MODSEQ x MODSEQ 0\r\n");
        assert_eq!(
            plain,
            "a SEARCH CHARSET UTF-8 HEADER MODSEQ x KEYWORD $MailfleetModseq.0\r\n"
        );
        assert!(invalid("a SEARCH MODSEQ\r\n"));
        assert!(invalid("a SEARCH MODSEQ \"/flags/x\" nope 5\r\n"));
        assert_eq!(
            parse(b"a SEARCH KEYWORD $MailfleetModseq.0 MODSEQ 1\r\n"),
            None
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&data);
        }

        /// Valid commands with bytes flipped, cut or inserted never panic,
        /// and whatever is accepted is still one CRLF-terminated line
        /// (literals aside) for imap-codec.
        #[test]
        fn mutated_commands_never_panic(
            seed in prop::sample::select(vec![
                "a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:5 41:45)))\r\n",
                "a UID FETCH 1:* (FLAGS MODSEQ BODY.PEEK[HEADER.FIELDS (DATE)]<0.9>) (CHANGEDSINCE 12 VANISHED)\r\n",
                "a STORE 1:3 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
                "a UID SEARCH OR (MODSEQ \"/flags/\\\\draft\" all 6 SUBJECT x) HEADER A {1}\r\nb MODSEQ 1\r\n",
            ]),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6),
        ) {
            let mut line = seed.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                if line.is_empty() {
                    break;
                }
                let i = at % line.len();
                match kind {
                    0 => line[i] ^= byte | 1,
                    1 => line.truncate(i),
                    _ => line.insert(i, byte),
                }
            }
            if let Some(Parsed::Command { plain, .. }) = parse(&line) {
                prop_assert!(plain.ends_with(b"\r\n"));
            }
        }

        /// Nor do command-shaped inputs built from the tokens it looks for.
        #[test]
        fn command_shaped_input_never_panics(
            verb in prop::sample::select(vec![
                "SELECT", "EXAMINE", "FETCH", "UID FETCH", "STORE", "UID STORE", "SEARCH", "UID SEARCH",
            ]),
            parts in proptest::collection::vec(prop::sample::select(vec![
                "(", ")", "MODSEQ", "CHANGEDSINCE", "UNCHANGEDSINCE", "VANISHED", "QRESYNC",
                "CONDSTORE", "1", "0", "1:*", "\"x\"", "{3}\r\nabc", "{9}\r\n", "BODY[", "]", "priv",
                "HEADER", "RETURN", "18446744073709551616", "\r", "",
            ]), 0..16),
        ) {
            let line = format!("t {verb} {}\r\n", parts.join(" "));
            if let Some(Parsed::Command { plain, .. }) = parse(line.as_bytes()) {
                prop_assert!(plain.ends_with(b"\r\n"));
            }
        }
    }
}
