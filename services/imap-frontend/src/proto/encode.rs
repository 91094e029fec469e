//! A command as a client writes it: the inverse of the grammar, used by
//! the round-trip property test and the fuzz target. Strings become atoms
//! where the grammar allows, quoted strings where they can, literals
//! otherwise.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};

use super::types::*;

fn atom_ok(b: u8) -> bool {
    b.is_ascii()
        && b > b' '
        && b != 0x7f
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// An IMAP string: quoted when it can be (short, 7-bit, no CR, LF or NUL),
/// else a literal. Commands and responses write strings alike.
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() < 1000
        && s.iter()
            .all(|&b| b.is_ascii() && b != b'\r' && b != b'\n' && b != 0);
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

fn astring(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty() && s.iter().all(|&b| atom_ok(b) || b == b']') {
        out.extend_from_slice(s);
    } else {
        string(out, s);
    }
}

fn list_mailbox(out: &mut Vec<u8>, s: &[u8]) {
    if !s.is_empty()
        && s.iter()
            .all(|&b| atom_ok(b) || matches!(b, b']' | b'%' | b'*'))
    {
        out.extend_from_slice(s);
    } else {
        string(out, s);
    }
}

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn seq_or_uid(out: &mut Vec<u8>, s: &SeqOrUid) {
    match s {
        SeqOrUid::Value(n) => push(out, &n.to_string()),
        SeqOrUid::Asterisk => out.push(b'*'),
    }
}

fn sequence_set(out: &mut Vec<u8>, set: &SequenceSet) {
    for (i, s) in set.0.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match s {
            Sequence::Single(a) => seq_or_uid(out, a),
            Sequence::Range(a, b) => {
                seq_or_uid(out, a);
                out.push(b':');
                seq_or_uid(out, b);
            }
        }
    }
}

fn seq_set(out: &mut Vec<u8>, set: &SeqSet) {
    match set {
        SeqSet::Saved => out.push(b'$'),
        SeqSet::Set(s) => sequence_set(out, s),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn date(out: &mut Vec<u8>, d: &NaiveDate) {
    let m = MONTHS.get(d.month0() as usize).copied().unwrap_or("Jan");
    push(out, &format!("{}-{m}-{:04}", d.day(), d.year()));
}

fn date_time(out: &mut Vec<u8>, d: &DateTime<FixedOffset>) {
    let m = MONTHS.get(d.month0() as usize).copied().unwrap_or("Jan");
    let off = d.offset().local_minus_utc();
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs() / 60;
    push(
        out,
        &format!(
            "\"{:02}-{m}-{:04} {} {sign}{:02}{:02}\"",
            d.day(),
            d.year(),
            d.format("%H:%M:%S"),
            off / 60,
            off % 60
        ),
    );
}

fn flags(out: &mut Vec<u8>, flags: &[String]) {
    out.push(b'(');
    push(out, &flags.join(" "));
    out.push(b')');
}

fn search_key(out: &mut Vec<u8>, k: &SearchKey) {
    let word_arg = |out: &mut Vec<u8>, w: &str, a: &[u8]| {
        push(out, w);
        out.push(b' ');
        astring(out, a);
    };
    let date_arg = |out: &mut Vec<u8>, w: &str, d: &NaiveDate| {
        push(out, w);
        out.push(b' ');
        date(out, d);
    };
    match k {
        SearchKey::All => push(out, "ALL"),
        SearchKey::Answered => push(out, "ANSWERED"),
        SearchKey::Deleted => push(out, "DELETED"),
        SearchKey::Draft => push(out, "DRAFT"),
        SearchKey::Flagged => push(out, "FLAGGED"),
        SearchKey::New => push(out, "NEW"),
        SearchKey::Old => push(out, "OLD"),
        SearchKey::Recent => push(out, "RECENT"),
        SearchKey::Seen => push(out, "SEEN"),
        SearchKey::Unanswered => push(out, "UNANSWERED"),
        SearchKey::Undeleted => push(out, "UNDELETED"),
        SearchKey::Undraft => push(out, "UNDRAFT"),
        SearchKey::Unflagged => push(out, "UNFLAGGED"),
        SearchKey::Unseen => push(out, "UNSEEN"),
        SearchKey::Keyword(k) => push(out, &format!("KEYWORD {k}")),
        SearchKey::Unkeyword(k) => push(out, &format!("UNKEYWORD {k}")),
        SearchKey::Bcc(a) => word_arg(out, "BCC", a),
        SearchKey::Body(a) => word_arg(out, "BODY", a),
        SearchKey::Cc(a) => word_arg(out, "CC", a),
        SearchKey::From(a) => word_arg(out, "FROM", a),
        SearchKey::Subject(a) => word_arg(out, "SUBJECT", a),
        SearchKey::Text(a) => word_arg(out, "TEXT", a),
        SearchKey::To(a) => word_arg(out, "TO", a),
        SearchKey::Header(n, v) => {
            word_arg(out, "HEADER", n);
            out.push(b' ');
            astring(out, v);
        }
        SearchKey::Before(d) => date_arg(out, "BEFORE", d),
        SearchKey::On(d) => date_arg(out, "ON", d),
        SearchKey::Since(d) => date_arg(out, "SINCE", d),
        SearchKey::SentBefore(d) => date_arg(out, "SENTBEFORE", d),
        SearchKey::SentOn(d) => date_arg(out, "SENTON", d),
        SearchKey::SentSince(d) => date_arg(out, "SENTSINCE", d),
        SearchKey::Larger(n) => push(out, &format!("LARGER {n}")),
        SearchKey::Smaller(n) => push(out, &format!("SMALLER {n}")),
        SearchKey::Uid(s) => {
            push(out, "UID ");
            seq_set(out, s);
        }
        SearchKey::Seq(s) => seq_set(out, s),
        SearchKey::Not(k) => {
            push(out, "NOT ");
            search_key(out, k);
        }
        SearchKey::Or(a, b) => {
            push(out, "OR ");
            search_key(out, a);
            out.push(b' ');
            search_key(out, b);
        }
        SearchKey::And(keys) => {
            out.push(b'(');
            search_keys(out, keys);
            out.push(b')');
        }
        SearchKey::ModSeq { entry, modseq } => {
            push(out, "MODSEQ ");
            if let Some((name, t)) = entry {
                string(out, name);
                push(
                    out,
                    match t {
                        EntryType::Priv => " priv ",
                        EntryType::Shared => " shared ",
                        EntryType::All => " all ",
                    },
                );
            }
            push(out, &modseq.to_string());
        }
    }
}

fn search_keys(out: &mut Vec<u8>, keys: &[SearchKey]) {
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        search_key(out, k);
    }
}

/// The top-level keys: an And of several is written without parentheses.
fn top_keys(out: &mut Vec<u8>, key: &SearchKey) {
    out.push(b' ');
    match key {
        SearchKey::And(keys) if keys.len() > 1 => search_keys(out, keys),
        k => search_key(out, k),
    }
}

fn path(p: &PartPath) -> String {
    p.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn dotted(p: &PartPath, what: &str) -> String {
    if p.is_empty() {
        what.to_owned()
    } else {
        format!("{}.{what}", path(p))
    }
}

fn section(out: &mut Vec<u8>, s: &Option<Section>) {
    out.push(b'[');
    match s {
        None => {}
        Some(Section::Part(p)) => push(out, &path(p)),
        Some(Section::Header(p)) => push(out, &dotted(p, "HEADER")),
        Some(Section::Text(p)) => push(out, &dotted(p, "TEXT")),
        Some(Section::Mime(p)) => push(out, &dotted(p, "MIME")),
        Some(Section::HeaderFields {
            path: p,
            not,
            fields,
        }) => {
            let what = if *not {
                "HEADER.FIELDS.NOT"
            } else {
                "HEADER.FIELDS"
            };
            push(out, &dotted(p, what));
            push(out, " (");
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                astring(out, f);
            }
            out.push(b')');
        }
    }
    out.push(b']');
}

fn partial(out: &mut Vec<u8>, p: &Option<(u32, std::num::NonZeroU32)>) {
    if let Some((a, b)) = p {
        push(out, &format!("<{a}.{b}>"));
    }
}

fn fetch_item(out: &mut Vec<u8>, i: &FetchItem) {
    match i {
        FetchItem::Uid => push(out, "UID"),
        FetchItem::Flags => push(out, "FLAGS"),
        FetchItem::InternalDate => push(out, "INTERNALDATE"),
        FetchItem::Rfc822Size => push(out, "RFC822.SIZE"),
        FetchItem::Envelope => push(out, "ENVELOPE"),
        FetchItem::Body => push(out, "BODY"),
        FetchItem::BodyStructure => push(out, "BODYSTRUCTURE"),
        FetchItem::Rfc822 => push(out, "RFC822"),
        FetchItem::Rfc822Header => push(out, "RFC822.HEADER"),
        FetchItem::Rfc822Text => push(out, "RFC822.TEXT"),
        FetchItem::ModSeq => push(out, "MODSEQ"),
        FetchItem::BodySection {
            peek,
            section: s,
            partial: p,
        } => {
            push(out, if *peek { "BODY.PEEK" } else { "BODY" });
            section(out, s);
            partial(out, p);
        }
        FetchItem::Binary {
            peek,
            path: p,
            partial: pa,
        } => {
            push(out, if *peek { "BINARY.PEEK[" } else { "BINARY[" });
            push(out, &path(p));
            out.push(b']');
            partial(out, pa);
        }
        FetchItem::BinarySize { path: p } => push(out, &format!("BINARY.SIZE[{}]", path(p))),
    }
}

fn status_items(out: &mut Vec<u8>, items: &[StatusItem]) {
    let names: Vec<&str> = items.iter().map(|i| i.name()).collect();
    push(out, &format!("({})", names.join(" ")));
}

fn uid(out: &mut Vec<u8>, u: bool) {
    if u {
        push(out, "UID ");
    }
}

/// The bytes a client sends for `cmd`, CRLF included.
pub fn encode_command(cmd: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    push(&mut out, &cmd.tag);
    out.push(b' ');
    let o = &mut out;
    match &cmd.body {
        CommandBody::Capability => push(o, "CAPABILITY"),
        CommandBody::Noop => push(o, "NOOP"),
        CommandBody::Logout => push(o, "LOGOUT"),
        CommandBody::StartTls => push(o, "STARTTLS"),
        CommandBody::Idle => push(o, "IDLE"),
        CommandBody::Namespace => push(o, "NAMESPACE"),
        CommandBody::Check => push(o, "CHECK"),
        CommandBody::Close => push(o, "CLOSE"),
        CommandBody::Unselect => push(o, "UNSELECT"),
        CommandBody::Expunge => push(o, "EXPUNGE"),
        CommandBody::UidExpunge(s) => {
            push(o, "UID EXPUNGE ");
            seq_set(o, s);
        }
        CommandBody::Login { user, password } => {
            push(o, "LOGIN ");
            astring(o, user);
            o.push(b' ');
            astring(o, password);
        }
        CommandBody::Authenticate { mechanism, initial } => {
            push(o, &format!("AUTHENTICATE {mechanism}"));
            match initial {
                Some(i) if i.is_empty() => push(o, " ="),
                Some(i) => {
                    o.push(b' ');
                    o.extend_from_slice(i);
                }
                None => {}
            }
        }
        CommandBody::Enable(caps) => push(o, &format!("ENABLE {}", caps.join(" "))),
        CommandBody::Select {
            mailbox,
            read_only,
            params,
        } => {
            push(o, if *read_only { "EXAMINE " } else { "SELECT " });
            astring(o, &mailbox.0);
            let mut ps = Vec::new();
            if params.condstore {
                ps.push("CONDSTORE".to_owned());
            }
            if let Some(q) = &params.qresync {
                let mut p = Vec::new();
                push(&mut p, &format!("QRESYNC ({} {}", q.uidvalidity, q.modseq));
                if let Some(k) = &q.known_uids {
                    p.push(b' ');
                    sequence_set(&mut p, k);
                }
                if let Some((a, b)) = &q.seq_match {
                    push(&mut p, " (");
                    sequence_set(&mut p, a);
                    p.push(b' ');
                    sequence_set(&mut p, b);
                    p.push(b')');
                }
                p.push(b')');
                ps.push(String::from_utf8_lossy(&p).into_owned());
            }
            if !ps.is_empty() {
                push(o, &format!(" ({})", ps.join(" ")));
            }
        }
        CommandBody::Create(m) => {
            push(o, "CREATE ");
            astring(o, &m.0);
        }
        CommandBody::Delete(m) => {
            push(o, "DELETE ");
            astring(o, &m.0);
        }
        CommandBody::Subscribe(m) => {
            push(o, "SUBSCRIBE ");
            astring(o, &m.0);
        }
        CommandBody::Unsubscribe(m) => {
            push(o, "UNSUBSCRIBE ");
            astring(o, &m.0);
        }
        CommandBody::GetQuotaRoot(m) => {
            push(o, "GETQUOTAROOT ");
            astring(o, &m.0);
        }
        CommandBody::GetQuota(r) => {
            push(o, "GETQUOTA ");
            astring(o, r);
        }
        CommandBody::SetQuota { root, limits } => {
            push(o, "SETQUOTA ");
            astring(o, root);
            let l: Vec<String> = limits.iter().map(|(r, n)| format!("{r} {n}")).collect();
            push(o, &format!(" ({})", l.join(" ")));
        }
        CommandBody::Rename { from, to } => {
            push(o, "RENAME ");
            astring(o, &from.0);
            o.push(b' ');
            astring(o, &to.0);
        }
        CommandBody::List(l) => list(o, l),
        CommandBody::Status { mailbox, items } => {
            push(o, "STATUS ");
            astring(o, &mailbox.0);
            o.push(b' ');
            status_items(o, items);
        }
        CommandBody::Append(a) => {
            push(o, "APPEND ");
            astring(o, &a.mailbox.0);
            if !a.flags.is_empty() {
                o.push(b' ');
                flags(o, &a.flags);
            }
            if let Some(d) = &a.date {
                o.push(b' ');
                date_time(o, d);
            }
            o.push(b' ');
            let n = a.message.len();
            match a.data {
                AppendData::Literal => push(o, &format!("{{{n}}}\r\n")),
                AppendData::Literal8 => push(o, &format!("~{{{n}}}\r\n")),
                AppendData::Utf8 => push(o, &format!("UTF8 (~{{{n}}}\r\n")),
            }
            o.extend_from_slice(&a.message);
            if a.data == AppendData::Utf8 {
                o.push(b')');
            }
        }
        CommandBody::Id(None) => push(o, "ID NIL"),
        CommandBody::Id(Some(pairs)) => {
            push(o, "ID (");
            for (i, (f, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    o.push(b' ');
                }
                string(o, f);
                o.push(b' ');
                match v {
                    Some(v) => string(o, v),
                    None => push(o, "NIL"),
                }
            }
            o.push(b')');
        }
        CommandBody::Search(s) => {
            uid(o, s.uid);
            push(o, "SEARCH");
            if let Some(r) = &s.ret {
                let mut opts = Vec::new();
                for (on, name) in [
                    (r.min, "MIN"),
                    (r.max, "MAX"),
                    (r.all, "ALL"),
                    (r.count, "COUNT"),
                    (r.save, "SAVE"),
                ] {
                    if on {
                        opts.push(name);
                    }
                }
                push(o, &format!(" RETURN ({})", opts.join(" ")));
            }
            if let Some(c) = &s.charset {
                push(o, " CHARSET ");
                astring(o, c.as_bytes());
            }
            top_keys(o, &s.key);
        }
        CommandBody::Fetch(f) => {
            uid(o, f.uid);
            push(o, "FETCH ");
            seq_set(o, &f.set);
            o.push(b' ');
            match &f.items {
                FetchItems::Macro(FetchMacro::All) => push(o, "ALL"),
                FetchItems::Macro(FetchMacro::Fast) => push(o, "FAST"),
                FetchItems::Macro(FetchMacro::Full) => push(o, "FULL"),
                FetchItems::List(items) => {
                    o.push(b'(');
                    for (i, it) in items.iter().enumerate() {
                        if i > 0 {
                            o.push(b' ');
                        }
                        fetch_item(o, it);
                    }
                    o.push(b')');
                }
            }
            let mut mods = Vec::new();
            if let Some(c) = f.changed_since {
                mods.push(format!("CHANGEDSINCE {c}"));
            }
            if f.vanished {
                mods.push("VANISHED".into());
            }
            if !mods.is_empty() {
                push(o, &format!(" ({})", mods.join(" ")));
            }
        }
        CommandBody::Store(s) => {
            uid(o, s.uid);
            push(o, "STORE ");
            seq_set(o, &s.set);
            if let Some(u) = s.unchanged_since {
                push(o, &format!(" (UNCHANGEDSINCE {u})"));
            }
            push(
                o,
                match s.mode {
                    StoreMode::Replace => " FLAGS",
                    StoreMode::Add => " +FLAGS",
                    StoreMode::Remove => " -FLAGS",
                },
            );
            if s.silent {
                push(o, ".SILENT");
            }
            o.push(b' ');
            if s.list {
                flags(o, &s.flags);
            } else {
                push(o, &s.flags.join(" "));
            }
        }
        CommandBody::Copy {
            uid: u,
            set,
            mailbox,
        }
        | CommandBody::Move {
            uid: u,
            set,
            mailbox,
        } => {
            uid(o, *u);
            push(
                o,
                if matches!(cmd.body, CommandBody::Copy { .. }) {
                    "COPY "
                } else {
                    "MOVE "
                },
            );
            seq_set(o, set);
            o.push(b' ');
            astring(o, &mailbox.0);
        }
        CommandBody::Sort(s) => {
            uid(o, s.uid);
            let c: Vec<String> = s
                .criteria
                .iter()
                .map(|c| {
                    if c.reverse {
                        format!("REVERSE {}", c.key.name())
                    } else {
                        c.key.name().to_owned()
                    }
                })
                .collect();
            push(o, &format!("SORT ({}) ", c.join(" ")));
            astring(o, s.charset.as_bytes());
            top_keys(o, &s.key);
        }
        CommandBody::Thread(t) => {
            uid(o, t.uid);
            push(
                o,
                match t.algorithm {
                    ThreadAlgorithm::References => "THREAD REFERENCES ",
                    ThreadAlgorithm::OrderedSubject => "THREAD ORDEREDSUBJECT ",
                },
            );
            astring(o, t.charset.as_bytes());
            top_keys(o, &t.key);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn list(o: &mut Vec<u8>, l: &ListCommand) {
    push(o, if l.lsub { "LSUB " } else { "LIST " });
    let mut sel = Vec::new();
    for (on, name) in [
        (l.select_subscribed, "SUBSCRIBED"),
        (l.select_remote, "REMOTE"),
        (l.recursive, "RECURSIVEMATCH"),
        (l.select_special, "SPECIAL-USE"),
    ] {
        if on {
            sel.push(name);
        }
    }
    let mut ret = Vec::new();
    for (on, name) in [
        (l.return_subscribed, "SUBSCRIBED"),
        (l.return_children, "CHILDREN"),
        (l.return_special, "SPECIAL-USE"),
    ] {
        if on {
            ret.push(name.to_owned());
        }
    }
    if let Some(items) = &l.status {
        let mut s = b"STATUS ".to_vec();
        status_items(&mut s, items);
        ret.push(String::from_utf8_lossy(&s).into_owned());
    }
    // An extended LIST says so with a selection list, empty or not.
    if !l.lsub && (l.extended || !sel.is_empty()) {
        push(o, &format!("({}) ", sel.join(" ")));
    }
    astring(o, &l.reference);
    o.push(b' ');
    if let [p] = l.patterns.as_slice() {
        list_mailbox(o, p);
    } else {
        o.push(b'(');
        for (i, p) in l.patterns.iter().enumerate() {
            if i > 0 {
                o.push(b' ');
            }
            list_mailbox(o, p);
        }
        o.push(b')');
    }
    if !l.lsub && !ret.is_empty() {
        push(o, &format!(" RETURN ({})", ret.join(" ")));
    }
}
