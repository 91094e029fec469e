//! The RFC 5256 threading algorithms, pure: REFERENCES (section 3, after
//! Jamie Zawinski's) and ORDEREDSUBJECT. Input is one [`ThreadInput`] per
//! message in UID order; output is the thread forest in pre-order as
//! `(uid, depth)` pairs, `None` for a placeholder. Nothing here recurses, so
//! a reply chain thousands of messages deep cannot exhaust the stack.
//!
//! Indexing (`nodes[n]`, `inputs[i]`) only uses indices this module handed
//! out itself (positions in `inputs`, or nodes pushed and never removed),
//! so it is always in bounds.

use std::collections::HashMap;

/// What threading needs of one message.
pub struct ThreadInput {
    pub uid: u32,
    /// The Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// References (or the In-Reply-To parent), oldest first.
    pub references: Vec<String>,
    /// Base subject (RFC 5256 2.1), already case-folded.
    pub base_subject: String,
    /// The subject marked a reply or forward.
    pub reply: bool,
    /// Sent date (Date header, else internal date).
    pub sent_ms: i64,
}

/// Most message ids taken from one header.
const MAX_IDS: usize = 256;

/// The msg-ids of a References/In-Reply-To/Message-ID value, without
/// brackets, in order.
pub fn msg_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let id = after[..close].trim();
        if !id.is_empty() && !id.contains('<') && out.len() < MAX_IDS {
            out.push(id.to_owned());
        }
        rest = &after[close + 1..];
    }
    out
}

#[derive(Default, Clone)]
struct Node {
    /// Index into the inputs; None for a placeholder.
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Forest {
    nodes: Vec<Node>,
}

impl Forest {
    /// Whether `a` is `b` or one of its ancestors.
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let mut cur = Some(b);
        while let Some(c) = cur {
            if c == a {
                return true;
            }
            cur = self.nodes.get(c).and_then(|n| n.parent);
        }
        false
    }

    /// Whether making `child` a child of `parent` would close a loop. A
    /// node without children (the usual case: a new message) can only loop
    /// onto itself, which keeps deep reply chains linear.
    fn would_loop(&self, child: usize, parent: usize) -> bool {
        child == parent || (!self.children(child).is_empty() && self.is_ancestor(child, parent))
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.nodes.get_mut(child).and_then(|n| n.parent.take())
            && let Some(parent) = self.nodes.get_mut(p)
        {
            parent.children.retain(|&c| c != child);
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.unlink(child);
        if let Some(c) = self.nodes.get_mut(child) {
            c.parent = Some(parent);
        }
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.push(child);
        }
    }

    fn children(&self, n: usize) -> &[usize] {
        self.nodes.get(n).map_or(&[], |n| n.children.as_slice())
    }

    fn msg(&self, n: usize) -> Option<usize> {
        self.nodes.get(n).and_then(|n| n.msg)
    }

    /// Nodes reachable from `roots`, each after all of its descendants.
    fn post_order(&self, roots: &[usize]) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(usize, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                out.push(n);
            } else {
                stack.push((n, true));
                stack.extend(self.children(n).iter().rev().map(|&c| (c, false)));
            }
        }
        out
    }

    /// Pre-order `(uid, depth)` of the forest.
    fn emit(&self, roots: &[usize], inputs: &[ThreadInput]) -> Vec<(Option<u32>, u32)> {
        let mut out = Vec::new();
        let mut stack: Vec<(usize, u32)> = roots.iter().rev().map(|&r| (r, 0)).collect();
        while let Some((n, depth)) = stack.pop() {
            let uid = self.msg(n).and_then(|m| inputs.get(m)).map(|i| i.uid);
            out.push((uid, depth));
            stack.extend(self.children(n).iter().rev().map(|&c| (c, depth + 1)));
        }
        out
    }
}

/// Sort key of a node: its message's (sent date, position), or that of its
/// first child for a placeholder (children are sorted first).
fn node_key(f: &Forest, inputs: &[ThreadInput], n: usize) -> (i64, usize) {
    let mut cur = n;
    // A placeholder's first child is real after pruning; the bound only
    // guards against malformed forests.
    for _ in 0..f.nodes.len().max(1) {
        if let Some(m) = f.msg(cur) {
            return (inputs.get(m).map_or(0, |i| i.sent_ms), m);
        }
        match f.children(cur).first() {
            Some(&c) => cur = c,
            None => break,
        }
    }
    (i64::MAX, usize::MAX)
}

/// Sorts every sibling list (deepest first) and then the roots by sent date.
fn sort_forest(f: &mut Forest, inputs: &[ThreadInput], roots: &mut [usize]) {
    for n in f.post_order(roots) {
        let mut children = std::mem::take(&mut f.nodes[n].children);
        children.sort_by_cached_key(|&c| node_key(f, inputs, c));
        f.nodes[n].children = children;
    }
    roots.sort_by_cached_key(|&r| node_key(f, inputs, r));
}

/// The node of a message id, created on first sight.
fn container<'a>(f: &mut Forest, id: &'a str, ids: &mut HashMap<&'a str, usize>) -> usize {
    *ids.entry(id).or_insert_with(|| {
        f.nodes.push(Node::default());
        f.nodes.len() - 1
    })
}

/// THREAD=REFERENCES (RFC 5256 section 3).
pub fn references(inputs: &[ThreadInput]) -> Vec<(Option<u32>, u32)> {
    let mut f = Forest {
        nodes: Vec::with_capacity(inputs.len() * 2),
    };
    let mut ids: HashMap<&str, usize> = HashMap::new();
    // Step 1: link messages through their references.
    for (i, input) in inputs.iter().enumerate() {
        let node = match input.message_id.as_deref() {
            Some(id) => {
                let n = container(&mut f, id, &mut ids);
                if f.nodes[n].msg.is_some() {
                    // A duplicate Message-ID: this one gets a node of its own.
                    f.nodes.push(Node::default());
                    f.nodes.len() - 1
                } else {
                    n
                }
            }
            None => {
                f.nodes.push(Node::default());
                f.nodes.len() - 1
            }
        };
        f.nodes[node].msg = Some(i);
        // (A) Each reference is the parent of the next, unless it already
        // has one or the link would close a loop.
        let refs: Vec<usize> = input
            .references
            .iter()
            .map(|r| container(&mut f, r, &mut ids))
            .collect();
        for pair in refs.windows(2) {
            let (parent, child) = (pair[0], pair[1]);
            if f.nodes[child].parent.is_none() && !f.would_loop(child, parent) {
                f.link(parent, child);
            }
        }
        // (B) The last reference is the message's parent, replacing a
        // parent guessed from a truncated References of another message.
        f.unlink(node);
        if let Some(&parent) = refs.last()
            && !f.would_loop(node, parent)
        {
            f.link(parent, node);
        }
    }
    // Step 2: the root set.
    let roots: Vec<usize> = (0..f.nodes.len())
        .filter(|&n| f.nodes[n].parent.is_none())
        .collect();
    // Step 4: prune placeholders. Below the root level a placeholder gives
    // way to its children; children pruned first, so they are all real.
    for n in f.post_order(&roots) {
        let children = std::mem::take(&mut f.nodes[n].children);
        let mut kept = Vec::with_capacity(children.len());
        for c in children {
            if f.nodes[c].msg.is_some() {
                kept.push(c);
            } else {
                let grand = std::mem::take(&mut f.nodes[c].children);
                for &g in &grand {
                    f.nodes[g].parent = Some(n);
                }
                kept.extend(grand);
            }
        }
        f.nodes[n].children = kept;
    }
    // At the root level a placeholder stays only with two or more children.
    let mut top = Vec::with_capacity(roots.len());
    for r in roots {
        if f.nodes[r].msg.is_some() {
            top.push(r);
            continue;
        }
        match f.nodes[r].children.len() {
            0 => {}
            1 => {
                let c = f.nodes[r].children[0];
                f.nodes[c].parent = None;
                top.push(c);
            }
            _ => top.push(r),
        }
    }
    // Step 5: sort.
    sort_forest(&mut f, inputs, &mut top);
    // Step 6: merge threads by base subject.
    let subject_of = |f: &Forest, r: usize| -> Option<(String, bool, bool)> {
        let dummy = f.msg(r).is_none();
        let m = f
            .msg(r)
            .or_else(|| f.children(r).first().and_then(|&c| f.msg(c)))?;
        let i = inputs.get(m)?;
        Some((i.base_subject.clone(), i.reply, dummy))
    };
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &top {
        let Some((subject, reply, dummy)) = subject_of(&f, r) else {
            continue;
        };
        if subject.is_empty() {
            continue;
        }
        match table.get(&subject).copied() {
            None => {
                table.insert(subject, r);
            }
            Some(old) => {
                let (_, old_reply, old_dummy) = subject_of(&f, old).unwrap_or_default();
                if (dummy && !old_dummy) || (old_reply && !reply && !old_dummy) {
                    table.insert(subject, r);
                }
            }
        }
    }
    let mut removed = vec![false; f.nodes.len()];
    let mut i = 0;
    while i < top.len() {
        let r = top[i];
        i += 1;
        if removed.get(r).copied().unwrap_or(true) {
            continue;
        }
        let Some((subject, reply, dummy)) = subject_of(&f, r) else {
            continue;
        };
        if subject.is_empty() {
            continue;
        }
        let Some(&t) = table.get(&subject) else {
            continue;
        };
        if t == r {
            continue;
        }
        let (_, t_reply, t_dummy) = subject_of(&f, t).unwrap_or_default();
        if dummy && t_dummy {
            let children = std::mem::take(&mut f.nodes[r].children);
            for c in children {
                f.nodes[c].parent = None;
                f.link(t, c);
            }
        } else if dummy && (reply && !t_reply) {
            // Not reached (the table prefers placeholders), but a
            // placeholder below the root could not be written in IMAP.
            let children = std::mem::take(&mut f.nodes[r].children);
            for c in children {
                f.nodes[c].parent = None;
                f.link(t, c);
            }
        } else if t_dummy || (reply && !t_reply) {
            f.link(t, r);
        } else {
            f.nodes.push(Node::default());
            let d = f.nodes.len() - 1;
            removed.push(false);
            f.link(d, t);
            f.link(d, r);
            if let Some(slot) = top.iter_mut().find(|x| **x == t) {
                *slot = d;
            }
            table.insert(subject, d);
        }
        removed[r] = true;
    }
    let mut top: Vec<usize> = top
        .into_iter()
        .filter(|&r| !removed.get(r).copied().unwrap_or(true))
        .collect();
    // Step 7: sort again.
    sort_forest(&mut f, inputs, &mut top);
    f.emit(&top, inputs)
}

/// THREAD=ORDEREDSUBJECT: messages grouped by base subject; the earliest of
/// each group is the parent of the others; threads by the first's date.
pub fn ordered_subject(inputs: &[ThreadInput]) -> Vec<(Option<u32>, u32)> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&inputs[a], &inputs[b]);
        x.base_subject
            .cmp(&y.base_subject)
            .then(x.sent_ms.cmp(&y.sent_ms))
            .then(a.cmp(&b))
    });
    let mut threads: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match threads.last_mut() {
            Some(t)
                if t.first()
                    .is_some_and(|&f| inputs[f].base_subject == inputs[i].base_subject) =>
            {
                t.push(i)
            }
            _ => threads.push(vec![i]),
        }
    }
    threads.sort_by_key(|t| t.first().map(|&f| (inputs[f].sent_ms, f)));
    let mut out = Vec::with_capacity(inputs.len());
    for t in threads {
        for (k, &i) in t.iter().enumerate() {
            out.push((Some(inputs[i].uid), u32::from(k > 0)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(uid: u32, id: &str, refs: &[&str], subject: &str, sent: i64) -> ThreadInput {
        let (base, reply) = crate::subject::base_subject(subject);
        ThreadInput {
            uid,
            message_id: (!id.is_empty()).then(|| id.to_owned()),
            references: refs.iter().map(|r| r.to_string()).collect(),
            base_subject: base,
            reply,
            sent_ms: sent,
        }
    }

    #[test]
    fn msg_ids_are_extracted() {
        assert_eq!(msg_ids("<a@x> <b@y>\t<c@z>"), ["a@x", "b@y", "c@z"]);
        assert_eq!(msg_ids("junk <a@x> (comment) <b"), ["a@x"]);
        assert!(msg_ids("").is_empty());
    }

    #[test]
    fn reply_chain_with_a_missing_parent() {
        // 1 starts; 2 replies to 1; 3 replies to 2; 4 and 5 reply to a
        // message we never got (<lost>), which itself replied to 1.
        let inputs = vec![
            msg(1, "a", &[], "Plan", 10),
            msg(2, "b", &["a"], "Re: Plan", 20),
            msg(3, "c", &["a", "b"], "Re: Plan", 30),
            msg(4, "d", &["a", "lost"], "Re: Plan", 40),
            msg(5, "e", &["a", "lost"], "Re: Plan", 50),
            msg(6, "f", &[], "Other", 5),
        ];
        let t = references(&inputs);
        // The placeholder for <lost> is pruned: 4 and 5 become children of 1.
        assert_eq!(
            t,
            vec![
                (Some(6), 0),
                (Some(1), 0),
                (Some(2), 1),
                (Some(3), 2),
                (Some(4), 1),
                (Some(5), 1),
            ]
        );
    }

    #[test]
    fn orphans_with_a_common_missing_parent_keep_a_placeholder_root() {
        let inputs = vec![
            msg(1, "b", &["root"], "Re: x", 20),
            msg(2, "c", &["root"], "Re: x", 10),
        ];
        assert_eq!(
            references(&inputs),
            vec![(None, 0), (Some(2), 1), (Some(1), 1)]
        );
    }

    #[test]
    fn same_subject_threads_merge() {
        let inputs = vec![
            msg(1, "a", &[], "Lunch", 10),
            msg(2, "b", &[], "Re: Lunch", 20),
            msg(3, "c", &[], "Lunch", 30),
        ];
        // 2 is a reply by subject: it joins 1; 3 is not, so 1 and 3 go
        // under a placeholder.
        assert_eq!(
            references(&inputs),
            vec![(None, 0), (Some(1), 1), (Some(2), 2), (Some(3), 1)]
        );
    }

    #[test]
    fn loops_and_duplicates_do_not_break_it() {
        let inputs = vec![
            msg(1, "a", &["b"], "x", 1),
            msg(2, "b", &["a"], "y", 2),
            msg(3, "a", &[], "z", 3),
            msg(4, "", &["a", "a", "a"], "w", 4),
        ];
        let t = references(&inputs);
        let mut uids: Vec<u32> = t.iter().filter_map(|n| n.0).collect();
        uids.sort_unstable();
        assert_eq!(uids, [1, 2, 3, 4]);
    }

    #[test]
    fn a_long_chain_is_fine() {
        let n = 20_000u32;
        let inputs: Vec<ThreadInput> = (1..=n)
            .map(|i| {
                let refs: Vec<String> = if i > 1 {
                    vec![format!("m{}", i - 1)]
                } else {
                    vec![]
                };
                ThreadInput {
                    uid: i,
                    message_id: Some(format!("m{i}")),
                    references: refs,
                    base_subject: "S".into(),
                    reply: i > 1,
                    sent_ms: i64::from(i),
                }
            })
            .collect();
        let t = references(&inputs);
        assert_eq!(t.len(), n as usize);
        assert_eq!(t.last(), Some(&(Some(n), n - 1)));
    }

    #[test]
    fn ordered_subject_groups() {
        let inputs = vec![
            msg(1, "", &[], "b", 30),
            msg(2, "", &[], "a", 20),
            msg(3, "", &[], "Re: b", 10),
            msg(4, "", &[], "a", 5),
        ];
        assert_eq!(
            ordered_subject(&inputs),
            vec![(Some(4), 0), (Some(2), 1), (Some(3), 0), (Some(1), 1)]
        );
    }
}
