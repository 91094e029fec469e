//! LIST and LSUB, with LIST-EXTENDED (RFC 5258: selection options
//! SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE; return options
//! SUBSCRIBED, CHILDREN, SPECIAL-USE; several patterns), LIST-STATUS
//! (RFC 5819) and SPECIAL-USE (RFC 6154). [`plan`] decides the responses
//! from the mailbox list (pure); [`run`] asks mailstore and writes them.

use std::collections::BTreeMap;

use mailfleet_proto::v1 as pb;

use super::args::Arg;
use super::status::{self, Item};
use crate::extra::wildcard_match;
use crate::session::{Reply, Session, rpc};

/// Most patterns in one LIST.
const MAX_PATTERNS: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct ListCommand {
    pub lsub: bool,
    /// Any RFC 5258 syntax was used (answers say \NonExistent, not \Noselect).
    pub extended: bool,
    pub select_subscribed: bool,
    pub select_special: bool,
    pub recursive: bool,
    pub return_subscribed: bool,
    pub return_special: bool,
    pub status: Option<Vec<Item>>,
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
}

fn astring(a: Option<&Arg>) -> Result<Vec<u8>, String> {
    a.and_then(Arg::bytes)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "Missing mailbox argument".into())
}

/// LIST or LSUB arguments (after the command name).
pub(crate) fn parse(lsub: bool, args: &[Arg]) -> Result<ListCommand, String> {
    let mut cmd = ListCommand {
        lsub,
        ..Default::default()
    };
    let mut args = args.iter().peekable();
    if !lsub && let Some(Arg::List(opts)) = args.peek() {
        cmd.extended = true;
        for o in opts {
            match o.keyword().as_deref() {
                Some("SUBSCRIBED") => cmd.select_subscribed = true,
                Some("SPECIAL-USE") => cmd.select_special = true,
                Some("RECURSIVEMATCH") => cmd.recursive = true,
                // No remote mailboxes here: nothing to add.
                Some("REMOTE") => {}
                _ => return Err("Unknown LIST selection option".into()),
            }
        }
        if cmd.recursive && !cmd.select_subscribed && !cmd.select_special {
            return Err("RECURSIVEMATCH needs another selection option".into());
        }
        args.next();
    }
    cmd.reference = astring(args.next())?;
    match args.next() {
        Some(Arg::List(pats)) if !lsub => {
            cmd.extended = true;
            if pats.is_empty() || pats.len() > MAX_PATTERNS {
                return Err("Bad pattern list".into());
            }
            for p in pats {
                cmd.patterns.push(astring(Some(p))?);
            }
        }
        other => cmd.patterns.push(astring(other)?),
    }
    if let Some(ret) = args.next() {
        if lsub || ret.keyword().as_deref() != Some("RETURN") {
            return Err("Unexpected argument".into());
        }
        cmd.extended = true;
        let Some(Arg::List(opts)) = args.next() else {
            return Err("RETURN needs a list".into());
        };
        let mut opts = opts.iter();
        while let Some(o) = opts.next() {
            match o.keyword().as_deref() {
                Some("SUBSCRIBED") => cmd.return_subscribed = true,
                Some("SPECIAL-USE") => cmd.return_special = true,
                // Children are always reported (CHILDREN, RFC 3348).
                Some("CHILDREN") => {}
                Some("STATUS") => {
                    let items = opts.next().ok_or("STATUS needs items")?;
                    cmd.status = Some(status::items(items)?);
                }
                _ => return Err("Unknown LIST return option".into()),
            }
        }
    }
    if args.next().is_some() {
        return Err("Unexpected argument".into());
    }
    Ok(cmd)
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

/// The responses for `cmd` given the account's mailboxes and the patterns
/// already joined to the reference and decoded to UTF-8.
pub(crate) fn plan(cmd: &ListCommand, mbs: &[pb::Mailbox], patterns: &[String]) -> Vec<Entry> {
    // Every existing name, plus the missing superiors of deeper names.
    let mut nodes: BTreeMap<&str, Option<usize>> = BTreeMap::new();
    for (i, m) in mbs.iter().enumerate() {
        nodes.insert(m.name.as_str(), Some(i));
    }
    for m in mbs {
        for (i, c) in m.name.char_indices() {
            if c == '/' {
                nodes
                    .entry(m.name.get(..i).unwrap_or_default())
                    .or_insert(None);
            }
        }
    }
    let matches = |name: &str| patterns.iter().any(|p| wildcard_match(p, name));
    let criteria = |m: &pb::Mailbox| {
        (!(cmd.select_subscribed || cmd.lsub) || m.subscribed)
            && (!cmd.select_special || !m.special_use.is_empty())
    };
    let selecting = cmd.select_subscribed || cmd.select_special || cmd.lsub;
    let childinfo_names: Vec<&'static str> = [
        (cmd.select_subscribed, "SUBSCRIBED"),
        (cmd.select_special, "SPECIAL-USE"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();

    // INBOX first, then the others in name order.
    let mut order: Vec<(&str, Option<usize>)> = nodes.iter().map(|(n, i)| (*n, *i)).collect();
    order.sort_by_key(|(n, _)| *n != "INBOX");
    let mut out = Vec::new();
    for (name, idx) in order {
        if !matches(name) {
            continue;
        }
        let mb = idx.and_then(|i| mbs.get(i));
        // Descendants: names starting with "name/" ("0" follows "/").
        let (lo, hi) = (format!("{name}/"), format!("{name}0"));
        let mut descendants = nodes
            .range(lo.as_str()..hi.as_str())
            .filter_map(|(_, i)| i.and_then(|i| mbs.get(i)));
        let has_children = nodes.range(lo.as_str()..hi.as_str()).next().is_some();
        let selected = mb.is_some_and(criteria);
        let below =
            (cmd.recursive || cmd.lsub) && descendants.any(|d| criteria(d) && !matches(&d.name));
        if selecting && !selected && !below {
            continue;
        }
        let mut attrs = Vec::new();
        let mut status_of = None;
        match mb {
            Some(_) if cmd.lsub && !selected => attrs.push("\\Noselect".to_owned()),
            Some(m) => {
                status_of = idx;
                attrs.push(
                    if has_children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    }
                    .to_owned(),
                );
                if !m.special_use.is_empty()
                    && (!cmd.extended || cmd.return_special || cmd.select_special)
                {
                    attrs.push(m.special_use.clone());
                }
                if m.subscribed && (cmd.return_subscribed || cmd.select_subscribed) {
                    attrs.push("\\Subscribed".into());
                }
            }
            None => {
                attrs.push(
                    if cmd.extended {
                        "\\NonExistent"
                    } else {
                        "\\Noselect"
                    }
                    .to_owned(),
                );
                if !cmd.lsub {
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
    let decode = |raw: &[u8]| super::names::from_client(raw, utf8);
    let reference = match decode(&cmd.reference) {
        Ok(r) => r,
        Err(e) => return Ok(Reply::No(e.into())),
    };
    let mut patterns = Vec::new();
    for p in &cmd.patterns {
        match decode(p) {
            Ok(p) => patterns.push(format!("{reference}{p}")),
            Err(e) => return Ok(Reply::No(e.into())),
        }
    }
    if cmd.patterns.len() == 1 && cmd.patterns.iter().all(Vec::is_empty) {
        // The hierarchy delimiter query.
        s.untagged(&format!("{verb} (\\Noselect) \"/\" \"\""));
        return Ok(Reply::Ok(format!("{verb} completed")));
    }
    let account = s.account();
    let r = rpc!(
        s.client
            .list_mailboxes(pb::ListMailboxesRequest { account })
    );
    for entry in plan(&cmd, &r.mailboxes, &patterns) {
        let mut line = format!("* {verb} ({}) \"/\" ", entry.attrs.join(" ")).into_bytes();
        super::names::to_client(&mut line, &entry.name, utf8);
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
                super::names::to_client(&mut line, &mb.name, utf8);
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
    use crate::ext::args;

    fn mb(name: &str, subscribed: bool, special: &str) -> pb::Mailbox {
        pb::Mailbox {
            name: name.into(),
            subscribed,
            special_use: special.into(),
            ..Default::default()
        }
    }

    fn cmd(line: &str) -> Result<ListCommand, String> {
        let l = args::parse(format!("t {line}\r\n").as_bytes()).map_err(String::from)?;
        let lsub = l.args[0].keyword().as_deref() == Some("LSUB");
        parse(lsub, &l.args[1..])
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
        plan(&c, mbs, &pats)
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
    fn parses_the_extended_forms() {
        let c = cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent*\") RETURN (CHILDREN STATUS (MESSAGES SIZE))").unwrap();
        assert!(c.extended && c.select_subscribed && c.recursive);
        assert_eq!(c.patterns, vec![b"INBOX".to_vec(), b"Sent*".to_vec()]);
        assert_eq!(c.status, Some(vec![Item::Messages, Item::Size]));
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
                "(\\HasNoChildren \\Subscribed) Sent",
                "(\\HasNoChildren \\Subscribed) Work/Projects",
            ]
        );
        assert_eq!(
            lines("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %", &boxes()),
            vec![
                "(\\HasNoChildren \\Subscribed) INBOX",
                "(\\NonExistent \\HasChildren) Archive CHILDINFO [\"SUBSCRIBED\"]",
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
                "(\\HasNoChildren) INBOX",
                "(\\Noselect) Archive",
                "(\\HasNoChildren \\Sent) Sent",
                "(\\Noselect) Work",
            ]
        );
    }
}
