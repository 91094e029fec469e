//! SORT, UID SORT, THREAD and UID THREAD (RFC 5256; DISPLAYFROM and
//! DISPLAYTO of RFC 5957), which imap-codec 1.0 does not parse.
//!
//! Parsing is pure and by hand up to the search criteria: `tag [UID] SORT
//! (criteria) charset keys` and `tag [UID] THREAD algorithm charset keys`.
//! The keys are handed to imap-codec as the equivalent `SEARCH CHARSET
//! charset keys` (see [`search_form`]), which also tells the reader when a
//! literal follows. mailstore sorts and threads (see its `sort` module for
//! why there); this module maps UIDs to sequence numbers and writes the
//! `* SORT` and `* THREAD` responses.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use mailfleet_proto::v1 as pb;

use crate::session::{Reply, Session, rpc, uid_set};

/// Most sort criteria accepted (there are only nine keys).
const MAX_CRITERIA: usize = 16;

#[derive(Debug, PartialEq)]
pub(crate) enum Kind {
    Sort(Vec<pb::SortCriterion>),
    Thread(pb::ThreadAlgorithm),
}

/// A parsed SORT or THREAD command; the search keys stay in `search`, a
/// SEARCH command line imap-codec decodes.
#[derive(Debug)]
pub(crate) struct SortCommand {
    pub tag: String,
    pub uid: bool,
    pub kind: Kind,
    pub charset: String,
    pub search: Vec<u8>,
}

impl SortCommand {
    pub(crate) fn name(&self) -> String {
        let base = match self.kind {
            Kind::Sort(_) => "sort",
            Kind::Thread(_) => "thread",
        };
        if self.uid {
            format!("uid {base}")
        } else {
            base.into()
        }
    }
}

/// Where the SORT/THREAD prefix of a line ends, and what it says.
struct Prefix<'a> {
    tag: &'a [u8],
    uid: bool,
    thread: bool,
    /// The criteria list's contents (SORT) or the algorithm (THREAD).
    spec: &'a [u8],
    charset: &'a [u8],
    /// Offset of the search keys.
    rest: usize,
}

/// One space-delimited token at `pos`; returns (token, position after it
/// and its trailing space).
fn token(line: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let s = line.get(pos..)?;
    let len = s
        .iter()
        .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
        .unwrap_or(s.len());
    if len == 0 {
        return None;
    }
    let next = pos + len;
    let next = if line.get(next) == Some(&b' ') {
        next + 1
    } else {
        next
    };
    Some((&s[..len], next))
}

/// A charset: an atom or a quoted string without escapes.
fn charset_token(line: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    if line.get(pos) != Some(&b'"') {
        return token(line, pos);
    }
    let s = line.get(pos + 1..)?;
    let end = s
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b == b'\r')?;
    if s.get(end) != Some(&b'"') {
        return None;
    }
    let next = pos + 1 + end + 1;
    if line.get(next) != Some(&b' ') {
        return None;
    }
    Some((&s[..end], next + 1))
}

fn prefix(line: &[u8]) -> Option<Prefix<'_>> {
    let (tag, mut pos) = token(line, 0)?;
    let (mut word, mut next) = token(line, pos)?;
    let uid = word.eq_ignore_ascii_case(b"UID");
    if uid {
        pos = next;
        (word, next) = token(line, pos)?;
    }
    let thread = word.eq_ignore_ascii_case(b"THREAD");
    if !thread && !word.eq_ignore_ascii_case(b"SORT") {
        return None;
    }
    pos = next;
    let spec = if thread {
        let (alg, n) = token(line, pos)?;
        pos = n;
        alg
    } else {
        let open = line.get(pos..)?.strip_prefix(b"(")?;
        let close = open.iter().position(|&b| b == b')' || b == b'\r')?;
        if open.get(close) != Some(&b')') || open.get(close + 1) != Some(&b' ') {
            return None;
        }
        pos += 1 + close + 2;
        &open[..close]
    };
    let (charset, rest) = charset_token(line, pos)?;
    Some(Prefix {
        tag,
        uid,
        thread,
        spec,
        charset,
        rest,
    })
}

/// Whether the line is a SORT or THREAD command (parsed here, not by
/// imap-codec).
pub(crate) fn is_sort(line: &[u8]) -> bool {
    let Some((_, pos)) = token(line, 0) else {
        return false;
    };
    let Some((mut word, next)) = token(line, pos) else {
        return false;
    };
    if word.eq_ignore_ascii_case(b"UID") {
        match token(line, next) {
            Some((w, _)) => word = w,
            None => return false,
        }
    }
    word.eq_ignore_ascii_case(b"SORT") || word.eq_ignore_ascii_case(b"THREAD")
}

/// The command as `tag [UID] SEARCH CHARSET charset keys`, literals and
/// all: what imap-codec decodes for the keys, and what the reader asks
/// whether a literal follows. `None` when the prefix is malformed.
pub(crate) fn search_form(buf: &[u8]) -> Option<Vec<u8>> {
    let p = prefix(buf)?;
    let mut out = Vec::with_capacity(buf.len() + 16);
    out.extend_from_slice(p.tag);
    if p.uid {
        out.extend_from_slice(b" UID");
    }
    out.extend_from_slice(b" SEARCH CHARSET \"");
    out.extend_from_slice(p.charset);
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(buf.get(p.rest..)?);
    Some(out)
}

fn criteria(spec: &[u8]) -> Result<Vec<pb::SortCriterion>, String> {
    use pb::SortKey as K;
    let mut out = Vec::new();
    let mut reverse = false;
    for word in spec.split(|&b| b == b' ') {
        if word.is_empty() {
            return Err("Malformed sort criteria".into());
        }
        let w = word.to_ascii_uppercase();
        let key = match w.as_slice() {
            b"REVERSE" if !reverse => {
                reverse = true;
                continue;
            }
            b"ARRIVAL" => K::SortArrival,
            b"CC" => K::SortCc,
            b"DATE" => K::SortDate,
            b"FROM" => K::SortFrom,
            b"SIZE" => K::SortSize,
            b"SUBJECT" => K::SortSubject,
            b"TO" => K::SortTo,
            b"DISPLAYFROM" => K::SortDisplayFrom,
            b"DISPLAYTO" => K::SortDisplayTo,
            _ => {
                return Err(format!(
                    "Unknown sort criterion {}",
                    String::from_utf8_lossy(word)
                        .chars()
                        .take(40)
                        .collect::<String>()
                ));
            }
        };
        out.push(pb::SortCriterion {
            key: key as i32,
            reverse,
        });
        reverse = false;
        if out.len() > MAX_CRITERIA {
            return Err("Too many sort criteria".into());
        }
    }
    if reverse || out.is_empty() {
        return Err("Malformed sort criteria".into());
    }
    Ok(out)
}

/// Parses a SORT/THREAD command: `None` when the line is not one, `Err`
/// (tag, reason) for a BAD answer.
pub(crate) fn parse(buf: &[u8]) -> Option<Result<SortCommand, (String, String)>> {
    if !is_sort(buf) {
        return None;
    }
    let tag = crate::extra::tag_of(buf)?;
    let Some(p) = prefix(buf) else {
        return Some(Err((tag, "Malformed SORT or THREAD command".into())));
    };
    let kind = if p.thread {
        let alg = p.spec.to_ascii_uppercase();
        match alg.as_slice() {
            b"REFERENCES" => Kind::Thread(pb::ThreadAlgorithm::ThreadReferences),
            b"ORDEREDSUBJECT" => Kind::Thread(pb::ThreadAlgorithm::ThreadOrderedSubject),
            _ => return Some(Err((tag, "Unknown threading algorithm".into()))),
        }
    } else {
        match criteria(p.spec) {
            Ok(c) => Kind::Sort(c),
            Err(why) => return Some(Err((tag, why))),
        }
    };
    let search = search_form(buf)?;
    Some(Ok(SortCommand {
        tag,
        uid: p.uid,
        kind,
        charset: String::from_utf8_lossy(p.charset).to_ascii_uppercase(),
        search,
    }))
}

/// The `* THREAD` data for a pre-order forest (RFC 5256 section 4): a
/// chain of single children is written flat, siblings as parenthesised
/// lists. `label` turns a UID into what the client sees (a UID or a
/// sequence number); nodes it drops are treated as placeholders.
pub(crate) fn thread_text(nodes: &[pb::ThreadNode], label: impl Fn(u32) -> Option<u32>) -> String {
    // Rebuild the tree: children per node, and the roots.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    let mut path: Vec<usize> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        path.truncate(n.depth as usize);
        match path.last() {
            // `p` is an earlier index of `nodes`, so within `children`.
            Some(&p) if n.depth > 0 => children[p].push(i),
            _ => roots.push(i),
        }
        path.push(i);
    }
    enum Task {
        Node(usize),
        Text(&'static str),
    }
    let mut out = String::new();
    let mut stack: Vec<Task> = Vec::new();
    for &r in roots.iter().rev() {
        stack.push(Task::Text(")"));
        stack.push(Task::Node(r));
        stack.push(Task::Text("("));
    }
    while let Some(task) = stack.pop() {
        let n = match task {
            Task::Text(t) => {
                out.push_str(t);
                continue;
            }
            Task::Node(n) => n,
        };
        let number = nodes
            .get(n)
            .filter(|x| x.uid != 0)
            .and_then(|x| label(x.uid));
        if let Some(v) = number {
            out.push_str(&v.to_string());
        }
        let kids = children.get(n).map(Vec::as_slice).unwrap_or_default();
        match (number.is_some(), kids) {
            (_, []) => {}
            (true, [only]) => {
                stack.push(Task::Node(*only));
                stack.push(Task::Text(" "));
            }
            (real, kids) => {
                for &k in kids.iter().rev() {
                    stack.push(Task::Text(")"));
                    stack.push(Task::Node(k));
                    stack.push(Task::Text("("));
                }
                if real {
                    stack.push(Task::Text(" "));
                }
            }
        }
    }
    out
}

/// Runs a parsed SORT or THREAD command.
pub(crate) async fn run(s: &mut Session, cmd: SortCommand) -> std::io::Result<Reply> {
    if s.user.is_none() {
        return Ok(Reply::Bad("Log in first".into()));
    }
    if s.selected.is_none() {
        return Ok(Reply::Bad("Select a mailbox first".into()));
    }
    if cmd.charset != "UTF-8" && cmd.charset != "US-ASCII" {
        return Ok(Reply::No(
            "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset".into(),
        ));
    }
    let criteria = match CommandCodec::default().decode(&cmd.search) {
        Ok((_, c)) => match c.body {
            CommandBody::Search { criteria, .. } => criteria,
            _ => return Ok(Reply::Bad("Malformed search criteria".into())),
        },
        Err(_) => return Ok(Reply::Bad("Malformed search criteria".into())),
    };
    s.sync(cmd.uid).await?;
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::Bad("No mailbox selected".into()));
    };
    let Some(mut key) = crate::search::convert(&criteria, sel, 0) else {
        return Ok(Reply::Bad("Search key too complex".into()));
    };
    // `$` (SEARCHRES) in the keys.
    crate::searchres::rewrite_search(&mut key, s);
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::Bad("No mailbox selected".into()));
    };
    // Only messages the session knows may appear in the answer.
    let key = pb::SearchKey {
        op: pb::SearchOp::SearchAnd as i32,
        children: vec![
            key,
            pb::SearchKey {
                op: pb::SearchOp::SearchUid as i32,
                uids: Some(uid_set(&sel.uids)),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (account, mailbox) = s.target();
    let done = match cmd.kind {
        Kind::Sort(_) => "SORT completed",
        Kind::Thread(_) => "THREAD completed",
    };
    let answer = match cmd.kind {
        Kind::Sort(criteria) => Answer::Sort(
            rpc!(s.client.sort_messages(pb::SortMessagesRequest {
                account,
                mailbox,
                key: Some(key),
                criteria,
            }))
            .uids,
        ),
        Kind::Thread(algorithm) => Answer::Thread(
            rpc!(s.client.thread_messages(pb::ThreadMessagesRequest {
                account,
                mailbox,
                key: Some(key),
                algorithm: algorithm as i32,
            }))
            .nodes,
        ),
    };
    let Some(sel) = s.selected.as_ref() else {
        return Ok(Reply::Bad("No mailbox selected".into()));
    };
    let label = |u: u32| -> Option<u32> {
        let seq = sel.seq_of(u)?;
        Some(if cmd.uid {
            u
        } else {
            u32::try_from(seq).unwrap_or(u32::MAX)
        })
    };
    let line = match answer {
        Answer::Sort(uids) => {
            let mut line = String::from("* SORT");
            for v in uids.into_iter().filter_map(label) {
                line.push(' ');
                line.push_str(&v.to_string());
            }
            line
        }
        Answer::Thread(nodes) => {
            let text = thread_text(&nodes, label);
            if text.is_empty() {
                "* THREAD".into()
            } else {
                format!("* THREAD {text}")
            }
        }
    };
    s.out.extend_from_slice(line.as_bytes());
    s.out.extend_from_slice(b"\r\n");
    s.sync(cmd.uid).await?;
    Ok(Reply::Ok(done.into()))
}

enum Answer {
    Sort(Vec<u32>),
    Thread(Vec<pb::ThreadNode>),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_sort_and_thread() {
        let c = parse(b"a1 UID SORT (REVERSE DATE subject) UTF-8 ALL\r\n")
            .unwrap()
            .unwrap();
        assert!(c.uid);
        assert_eq!(c.charset, "UTF-8");
        assert_eq!(
            c.kind,
            Kind::Sort(vec![
                pb::SortCriterion {
                    key: pb::SortKey::SortDate as i32,
                    reverse: true
                },
                pb::SortCriterion {
                    key: pb::SortKey::SortSubject as i32,
                    reverse: false
                },
            ])
        );
        assert_eq!(
            c.search,
            b"a1 UID SEARCH CHARSET \"UTF-8\" ALL\r\n".to_vec()
        );
        let c = parse(b"t THREAD references \"us-ascii\" SINCE 1-Feb-1994 NOT FROM x\r\n")
            .unwrap()
            .unwrap();
        assert!(!c.uid);
        assert_eq!(c.charset, "US-ASCII");
        assert_eq!(c.kind, Kind::Thread(pb::ThreadAlgorithm::ThreadReferences));
        assert!(CommandCodec::default().decode(&c.search).is_ok());
        assert!(!is_sort(b"a SEARCH ALL\r\n"));
        assert!(is_sort(b"a uid thread x\r\n"));
    }

    #[test]
    fn bad_sort_commands_are_refused() {
        for line in [
            &b"a SORT () UTF-8 ALL\r\n"[..],
            b"a SORT (REVERSE) UTF-8 ALL\r\n",
            b"a SORT (DATE UTF-8 ALL\r\n",
            b"a SORT (BOGUS) UTF-8 ALL\r\n",
            b"a SORT DATE UTF-8 ALL\r\n",
            b"a SORT (DATE)\r\n",
            b"a THREAD MAGIC UTF-8 ALL\r\n",
            b"a THREAD\r\n",
            b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n",
        ] {
            assert!(
                matches!(parse(line), Some(Err(_))),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn literals_in_keys_are_seen() {
        // The reader learns that a literal follows from the SEARCH form.
        let f = search_form(b"a SORT (SUBJECT) UTF-8 SUBJECT {4}\r\n").unwrap();
        assert!(matches!(
            CommandCodec::default().decode(&f),
            Err(imap_codec::decode::CommandDecodeError::LiteralFound { .. })
        ));
        let f = search_form(b"a SORT (SUBJECT) UTF-8 SUBJECT {4}\r\n\xc3\xa9t\xc3\r\n");
        assert!(f.is_some());
    }

    #[test]
    fn thread_text_follows_rfc5256() {
        let n = |uid, depth| pb::ThreadNode { uid, depth };
        // (2)(3 6 (4 23)(44 7 96)) from RFC 5256 section 4.
        let nodes = [
            n(2, 0),
            n(3, 0),
            n(6, 1),
            n(4, 2),
            n(23, 3),
            n(44, 2),
            n(7, 3),
            n(96, 4),
        ];
        assert_eq!(thread_text(&nodes, Some), "(2)(3 6 (4 23)(44 7 96))");
        // A placeholder root with two children.
        let nodes = [n(0, 0), n(1, 1), n(2, 1), n(5, 0)];
        assert_eq!(thread_text(&nodes, Some), "((1)(2))(5)");
        assert_eq!(thread_text(&[], Some), "");
        // A deep chain does not recurse.
        let chain: Vec<_> = (0..50_000).map(|i| n(i + 1, i)).collect();
        assert!(thread_text(&chain, Some).ends_with(" 50000)"));
    }

    #[test]
    fn mutated_sort_lines_never_panic() {
        let seed = b"a1 UID SORT (REVERSE DATE) \"UTF-8\" OR SUBJECT {3}\r\nabc FROM x\r\n";
        for i in 0..seed.len() {
            for b in [0u8, b' ', b'(', b')', b'"', b'\r', 0xff] {
                let mut line = seed.to_vec();
                line[i] = b;
                let _ = parse(&line);
                let _ = search_form(&line);
                line.truncate(i);
                let _ = parse(&line);
            }
        }
    }
}
