//! LIST and LSUB, with LIST-EXTENDED (RFC 5258: selection options
//! SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE; return options
//! SUBSCRIBED, CHILDREN, SPECIAL-USE; several patterns), LIST-STATUS
//! (RFC 5819) and SPECIAL-USE (RFC 6154). [`plan`] decides the responses
//! from the mailbox list (pure); [`run`] asks mailstore and writes them.

pub(crate) mod status;

use std::collections::BTreeMap;

use mailfleet_proto::v1 as pb;

use crate::errors::rpc;
use crate::proto::ListCommand;
use crate::session::{Reply, Session};

/// LIST pattern matching: `*` matches anything, `%` anything but "/".
/// INBOX matches case-insensitively.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern = match (pattern.get(..5), pattern.get(5..)) {
        (Some(head), Some(rest)) if head.eq_ignore_ascii_case("INBOX") => format!("INBOX{rest}"),
        _ => pattern.to_owned(),
    };
    // Dynamic programming over (pattern prefix, name prefix): linear in
    // their product, so no pattern can make matching explode.
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    if p.len() > 1024 {
        return false;
    }
    // row[j]: the pattern so far matches name[..j]. Every index below
    // stays within 0..=n.len() by construction.
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        for j in 0..=n.len() {
            next[j] = match c {
                b'*' => row[j] || (j > 0 && next[j - 1]),
                b'%' => row[j] || (j > 0 && next[j - 1] && n[j - 1] != b'/'),
                _ => j > 0 && row[j - 1] && n[j - 1] == c,
            };
        }
        row = next;
    }
    row[n.len()]
}

/// One response line to send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub attrs: Vec<String>,
    /// CHILDINFO extended data (the selection options a descendant meets).
    pub childinfo: Vec<&'static str>,
    /// Index into the mailbox list, for LIST-STATUS (selectable ones only).
    pub mailbox: Option<usize>,
}

/// What a name in the hierarchy is.
#[derive(Clone, Copy)]
enum Node {
    /// A mailbox (index into the list).
    Mailbox(usize),
    /// Subscribed, but no mailbox has the name.
    Subscription,
    /// Only a superior of deeper names.
    Parent,
}

/// The responses for `cmd` given the account's mailboxes, the subscribed
/// names no mailbox has (`subscribed_only`), and the patterns already
/// joined to the reference and decoded to UTF-8.
pub(crate) fn plan(
    cmd: &ListCommand,
    mbs: &[pb::Mailbox],
    subscribed_only: &[String],
    patterns: &[String],
) -> Vec<Entry> {
    let selecting = cmd.select_subscribed || cmd.select_special || cmd.lsub;
    let by_subscription = cmd.select_subscribed || cmd.lsub;
    // Every existing name, the subscribed names when subscriptions select
    // (RFC 5258 3: they are listed even without a mailbox), plus the
    // missing superiors of deeper names.
    let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
    for (i, m) in mbs.iter().enumerate() {
        nodes.insert(m.name.as_str(), Node::Mailbox(i));
    }
    if by_subscription {
        for name in subscribed_only {
            nodes.entry(name.as_str()).or_insert(Node::Subscription);
        }
    }
    let names: Vec<&str> = nodes.keys().copied().collect();
    for name in names {
        for (i, c) in name.char_indices() {
            if c == '/' {
                nodes
                    .entry(name.get(..i).unwrap_or_default())
                    .or_insert(Node::Parent);
            }
        }
    }
    let mailbox = |n: Node| match n {
        Node::Mailbox(i) => mbs.get(i),
        _ => None,
    };
    let subscribed = |n: Node| match n {
        Node::Mailbox(i) => mbs.get(i).is_some_and(|m| m.subscribed),
        Node::Subscription => true,
        Node::Parent => false,
    };
    let matches = |name: &str| patterns.iter().any(|p| wildcard_match(p, name));
    let criteria = |n: Node| {
        (!by_subscription || subscribed(n))
            && (!cmd.select_special || mailbox(n).is_some_and(|m| !m.special_use.is_empty()))
    };
    let childinfo_names: Vec<&'static str> = [
        (cmd.select_subscribed, "SUBSCRIBED"),
        (cmd.select_special, "SPECIAL-USE"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();

    // INBOX first, then the others in name order.
    let mut order: Vec<(&str, Node)> = nodes.iter().map(|(n, i)| (*n, *i)).collect();
    order.sort_by_key(|(n, _)| *n != "INBOX");
    let mut out = Vec::new();
    for (name, node) in order {
        if !matches(name) {
            continue;
        }
        // Descendants: names starting with "name/" ("0" follows "/").
        let (lo, hi) = (format!("{name}/"), format!("{name}0"));
        let descendants = || nodes.range(lo.as_str()..hi.as_str());
        // Children are mailboxes; a subscription alone is not one.
        let has_children = descendants().any(|(_, d)| matches!(d, Node::Mailbox(_)));
        let selected = criteria(node);
        // RFC 5258 3 (RECURSIVEMATCH), RFC 3501 6.3.9 (LSUB and `%`): a
        // name whose descendant meets the criteria without matching the
        // pattern itself is listed too.
        let below =
            (cmd.recursive || cmd.lsub) && descendants().any(|(d, n)| criteria(*n) && !matches(d));
        if selecting && !selected && !below {
            continue;
        }
        let mut attrs = Vec::new();
        let mut status_of = None;
        let children = if has_children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        };
        match (node, mailbox(node)) {
            // LSUB (RFC 3501 6.3.9) names subscriptions: \Noselect marks a
            // name listed only for its subscribed descendants; no other
            // attribute is computed (as Dovecot, and imaptest's
            // `subscribe` script, expect).
            _ if cmd.lsub => {
                if !selected {
                    attrs.push("\\Noselect".to_owned());
                }
            }
            (Node::Mailbox(i), Some(m)) => {
                status_of = Some(i);
                attrs.push(children.to_owned());
                if !m.special_use.is_empty()
                    && (!cmd.extended || cmd.return_special || cmd.select_special)
                {
                    attrs.push(m.special_use.clone());
                }
                if m.subscribed && (cmd.return_subscribed || cmd.select_subscribed) {
                    attrs.push("\\Subscribed".into());
                }
            }
            (Node::Subscription, _) => {
                attrs.push("\\NonExistent".into());
                attrs.push("\\Subscribed".into());
            }
            _ => {
                attrs.push(
                    if cmd.extended {
                        "\\NonExistent"
                    } else {
                        "\\Noselect"
                    }
                    .to_owned(),
                );
                if has_children {
                    attrs.push("\\HasChildren".into());
                }
            }
        }
        out.push(Entry {
            name: name.to_owned(),
            attrs,
            childinfo: if below && cmd.recursive {
                childinfo_names.clone()
            } else {
                Vec::new()
            },
            mailbox: status_of,
        });
    }
    out
}

/// Runs LIST or LSUB.
pub(crate) async fn run(s: &mut Session, cmd: ListCommand) -> std::io::Result<Reply> {
    let verb = if cmd.lsub { "LSUB" } else { "LIST" };
    let utf8 = s.ext.utf8;
    let decode = |raw: &[u8]| crate::names::pattern_from_client(raw, utf8);
    let reference = decode(&cmd.reference);
    let patterns: Vec<String> = cmd
        .patterns
        .iter()
        .map(|p| format!("{reference}{}", decode(p)))
        .collect();
    if cmd.patterns.len() == 1 && cmd.patterns.iter().all(Vec::is_empty) {
        // The hierarchy delimiter query.
        s.untagged(&format!("{verb} (\\Noselect) \"/\" \"\""));
        return Ok(Reply::Ok(format!("{verb} completed")));
    }
    let account = s.account()?;
    let r = rpc!(
        s.client
            .list_mailboxes(pb::ListMailboxesRequest { account })
    );
    if let Some(mb) = s
        .state
        .selected()
        .and_then(|sel| r.mailboxes.iter().find(|m| m.id == sel.id))
    {
        s.note_mailbox(mb);
    }
    for entry in plan(&cmd, &r.mailboxes, &r.subscribed_only, &patterns) {
        let mut line = format!("* {verb} ({}) \"/\" ", entry.attrs.join(" ")).into_bytes();
        crate::names::to_client(&mut line, &entry.name, utf8);
        if !entry.childinfo.is_empty() {
            let opts: Vec<String> = entry.childinfo.iter().map(|o| format!("\"{o}\"")).collect();
            line.extend_from_slice(format!(" (\"CHILDINFO\" ({}))", opts.join(" ")).as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        s.out.extend_from_slice(&line);
        let (Some(items), Some(mb)) = (&cmd.status, entry.mailbox.and_then(|i| r.mailboxes.get(i)))
        else {
            continue;
        };
        // RFC 5819: a STATUS response follows each selectable mailbox.
        match status::values(s, mb, items).await {
            Ok(values) => {
                let mut line = b"* STATUS ".to_vec();
                crate::names::to_client(&mut line, &mb.name, utf8);
                line.push(b' ');
                line.extend_from_slice(values.as_bytes());
                line.extend_from_slice(b"\r\n");
                s.out.extend_from_slice(&line);
            }
            Err(status) => {
                tracing::debug!(%status, "LIST-STATUS of one mailbox failed.");
            }
        }
    }
    Ok(Reply::Ok(format!("{verb} completed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: &str, subscribed: bool, special: &str) -> pb::Mailbox {
        pb::Mailbox {
            name: name.into(),
            subscribed,
            special_use: special.into(),
            ..Default::default()
        }
    }

    fn cmd(line: &str) -> Result<ListCommand, String> {
        match crate::proto::parse_command(format!("t {line}\r\n").as_bytes()) {
            Ok(crate::proto::Command {
                body: crate::proto::CommandBody::List(l),
                ..
            }) => Ok(l),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.reason),
        }
    }

    fn lines(line: &str, mbs: &[pb::Mailbox]) -> Vec<String> {
        let c = cmd(line).unwrap();
        let pats: Vec<String> = c
            .patterns
            .iter()
            .map(|p| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&c.reference),
                    String::from_utf8_lossy(p)
                )
            })
            .collect();
        plan(&c, mbs, &["Gone".to_owned(), "Work/Old".to_owned()], &pats)
            .into_iter()
            .map(|e| {
                let mut s = format!("({}) {}", e.attrs.join(" "), e.name);
                if !e.childinfo.is_empty() {
                    s.push_str(&format!(" CHILDINFO {:?}", e.childinfo));
                }
                s
            })
            .collect()
    }

    fn boxes() -> Vec<pb::Mailbox> {
        vec![
            mb("INBOX", true, ""),
            mb("Archive/2024", true, ""),
            mb("Sent", true, "\\Sent"),
            mb("Sent Old", false, ""),
            mb("Trash", false, "\\Trash"),
            mb("Work", false, ""),
            mb("Work/Projects", true, ""),
        ]
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(&"*a".repeat(500), &"a".repeat(600)));
        assert!(!wildcard_match(&"*a".repeat(500), &"a".repeat(400)));
        assert!(wildcard_match("*", "a/b"));
        assert!(wildcard_match("%", "a"));
        assert!(!wildcard_match("%", "a/b"));
        assert!(wildcard_match("a/%", "a/b"));
        assert!(wildcard_match("inbox", "INBOX"));
        assert!(!wildcard_match("Sent", "Sentx"));
    }

    #[test]
    fn parses_the_extended_forms() {
        let c = cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent*\") RETURN (CHILDREN STATUS (MESSAGES SIZE))").unwrap();
        assert!(c.extended && c.select_subscribed && c.recursive);
        assert_eq!(c.patterns, vec![b"INBOX".to_vec(), b"Sent*".to_vec()]);
        assert_eq!(
            c.status,
            Some(vec![status::Item::Messages, status::Item::Size])
        );
        assert!(!cmd("LIST \"\" *").unwrap().extended);
        for bad in [
            "LIST (RECURSIVEMATCH) \"\" *",
            "LIST (BOGUS) \"\" *",
            "LIST \"\" * RETURN (BOGUS)",
            "LIST \"\" * RETURN",
            "LIST \"\" () ",
            "LIST \"\"",
            "LSUB (SUBSCRIBED) \"\" *",
            "LIST \"\" * RETURN (STATUS)",
        ] {
            assert!(cmd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_list() {
        assert_eq!(
            lines("LIST \"\" %", &boxes()),
            vec![
                "(\\HasNoChildren) INBOX",
                "(\\Noselect \\HasChildren) Archive",
                "(\\HasNoChildren \\Sent) Sent",
                "(\\HasNoChildren) Sent Old",
                "(\\HasNoChildren \\Trash) Trash",
                "(\\HasChildren) Work",
            ]
        );
        assert_eq!(
            lines("LIST \"\" (inbox \"Sent*\") RETURN (SUBSCRIBED)", &boxes()),
            vec![
                "(\\HasNoChildren \\Subscribed) INBOX",
                "(\\HasNoChildren \\Subscribed) Sent",
                "(\\HasNoChildren) Sent Old",
            ]
        );
    }

    #[test]
    fn selection_options() {
        assert_eq!(
            lines("LIST (SUBSCRIBED) \"\" *", &boxes()),
            vec![
                "(\\HasNoChildren \\Subscribed) INBOX",
                "(\\HasNoChildren \\Subscribed) Archive/2024",
                "(\\NonExistent \\Subscribed) Gone",
                "(\\HasNoChildren \\Subscribed) Sent",
                "(\\NonExistent \\Subscribed) Work/Old",
                "(\\HasNoChildren \\Subscribed) Work/Projects",
            ]
        );
        assert_eq!(
            lines("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %", &boxes()),
            vec![
                "(\\HasNoChildren \\Subscribed) INBOX",
                "(\\NonExistent \\HasChildren) Archive CHILDINFO [\"SUBSCRIBED\"]",
                "(\\NonExistent \\Subscribed) Gone",
                "(\\HasNoChildren \\Subscribed) Sent",
                "(\\HasChildren) Work CHILDINFO [\"SUBSCRIBED\"]",
            ]
        );
        assert_eq!(
            lines("LIST (SPECIAL-USE) \"\" *", &boxes()),
            vec![
                "(\\HasNoChildren \\Sent) Sent",
                "(\\HasNoChildren \\Trash) Trash"
            ]
        );
        assert_eq!(
            lines("LSUB \"\" %", &boxes()),
            vec![
                "() INBOX",
                "(\\Noselect) Archive",
                "() Gone",
                "() Sent",
                "(\\Noselect) Work",
            ]
        );
    }
}
