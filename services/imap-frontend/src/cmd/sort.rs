//! SORT, UID SORT, THREAD and UID THREAD (RFC 5256; DISPLAYFROM and
//! DISPLAYTO of RFC 5957), which imap-codec 1.0 does not parse.
//!
//! The syntax is parsed in `proto`. mailstore sorts and threads (see its
//! `sort` module for why there); this module maps UIDs to sequence numbers
//! and writes the `* SORT` and `* THREAD` responses.

use mailfleet_proto::v1 as pb;

use crate::errors::rpc;
use crate::proto::{self, SearchKey, SortKey, ThreadAlgorithm};
use crate::session::{Reply, Session, uid_set};

#[derive(Debug, PartialEq)]
pub(crate) enum Kind {
    Sort(Vec<pb::SortCriterion>),
    Thread(pb::ThreadAlgorithm),
}

/// A SORT or THREAD command as this module runs it.
#[derive(Debug)]
pub(crate) struct SortCommand {
    pub uid: bool,
    pub kind: Kind,
    pub charset: String,
    pub key: SearchKey,
}

impl From<proto::Sort> for SortCommand {
    fn from(s: proto::Sort) -> Self {
        let criteria = s
            .criteria
            .iter()
            .map(|c| pb::SortCriterion {
                key: match c.key {
                    SortKey::Arrival => pb::SortKey::SortArrival,
                    SortKey::Cc => pb::SortKey::SortCc,
                    SortKey::Date => pb::SortKey::SortDate,
                    SortKey::From => pb::SortKey::SortFrom,
                    SortKey::Size => pb::SortKey::SortSize,
                    SortKey::Subject => pb::SortKey::SortSubject,
                    SortKey::To => pb::SortKey::SortTo,
                    SortKey::DisplayFrom => pb::SortKey::SortDisplayFrom,
                    SortKey::DisplayTo => pb::SortKey::SortDisplayTo,
                } as i32,
                reverse: c.reverse,
            })
            .collect();
        SortCommand {
            uid: s.uid,
            kind: Kind::Sort(criteria),
            charset: s.charset,
            key: s.key,
        }
    }
}

impl From<proto::Thread> for SortCommand {
    fn from(t: proto::Thread) -> Self {
        SortCommand {
            uid: t.uid,
            kind: Kind::Thread(match t.algorithm {
                ThreadAlgorithm::References => pb::ThreadAlgorithm::ThreadReferences,
                ThreadAlgorithm::OrderedSubject => pb::ThreadAlgorithm::ThreadOrderedSubject,
            }),
            charset: t.charset,
            key: t.key,
        }
    }
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
    if let Some(reply) = crate::session::search_key::charset_reply(Some(&cmd.charset)) {
        return Ok(reply);
    }
    s.sync(cmd.uid).await?;
    let saved = s.saved_uids();
    let sel = s.view()?;
    let Some(key) = crate::session::search_key::convert(&cmd.key, sel, &saved, 0) else {
        return Ok(Reply::Bad("Search key too complex".into()));
    };
    let sel = s.view()?;
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
    let (account, mailbox) = s.target()?;
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
    let sel = s.view()?;
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
}
