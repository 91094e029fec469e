//! The command grammar (RFC 3501/9051 and the extensions advertised),
//! written over [`Cursor`]: one function per rule, each consuming exactly
//! its syntax, so a command parses without any rewrite of its text.

use std::num::NonZeroU32;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

use super::ParseError;
use super::lexer::{Cursor, Result};
use super::types::*;

/// Most patterns in one LIST.
const MAX_PATTERNS: usize = 64;
/// Most sort criteria (there are nine keys).
const MAX_CRITERIA: usize = 16;
/// RFC 2971: at most 30 field/value pairs, fields of 30 octets, values of
/// 1024.
const ID_PAIRS: usize = 30;
const ID_FIELD: usize = 30;
const ID_VALUE: usize = 1024;

pub(crate) fn command(input: &[u8]) -> std::result::Result<Command, ParseError> {
    let mut c = Cursor::new(input);
    let tag = c.tag()?;
    c.tag = Some(tag.clone());
    c.sp()?;
    let body = body(&mut c)?;
    c.end()?;
    Ok(Command { tag, body })
}

/// The tag of a command line, if it starts with a valid one: for the
/// answer to a command that cannot be read whole (too long, a literal
/// refused).
pub fn command_tag(input: &[u8]) -> Option<String> {
    let mut c = Cursor::new(input);
    let tag = c.tag().ok()?;
    (c.at_end() || c.peek() == Some(b' ')).then_some(tag)
}

fn mailbox(c: &mut Cursor<'_>) -> Result<Mailbox> {
    Ok(Mailbox(c.astring()?))
}

fn body(c: &mut Cursor<'_>) -> Result<CommandBody> {
    let verb = c.word()?;
    let mut uid = false;
    let verb = if verb == "UID" {
        c.sp()?;
        uid = true;
        let v = c.word()?;
        if !matches!(
            v.as_str(),
            "COPY" | "MOVE" | "FETCH" | "SEARCH" | "STORE" | "EXPUNGE" | "SORT" | "THREAD"
        ) {
            return c.err("Unknown UID command");
        }
        v
    } else {
        verb
    };
    Ok(match verb.as_str() {
        "CAPABILITY" => CommandBody::Capability,
        "NOOP" => CommandBody::Noop,
        "LOGOUT" => CommandBody::Logout,
        "STARTTLS" => CommandBody::StartTls,
        "IDLE" => CommandBody::Idle,
        "NAMESPACE" => CommandBody::Namespace,
        "CHECK" => CommandBody::Check,
        "CLOSE" => CommandBody::Close,
        "UNSELECT" => CommandBody::Unselect,
        "EXPUNGE" if !uid => CommandBody::Expunge,
        "EXPUNGE" => {
            c.sp()?;
            CommandBody::UidExpunge(seq_set(c)?)
        }
        "LOGIN" => {
            c.sp()?;
            let user = c.astring()?;
            c.sp()?;
            let password = c.astring()?;
            CommandBody::Login { user, password }
        }
        "AUTHENTICATE" => authenticate(c)?,
        "ENABLE" => {
            let mut caps = Vec::new();
            while c.eat(b' ') {
                caps.push(c.word()?);
            }
            if caps.is_empty() {
                return c.err("ENABLE needs a capability");
            }
            CommandBody::Enable(caps)
        }
        "SELECT" | "EXAMINE" => {
            c.sp()?;
            let mailbox = mailbox(c)?;
            let params = select_params(c)?;
            CommandBody::Select {
                mailbox,
                read_only: verb == "EXAMINE",
                params,
            }
        }
        "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
            c.sp()?;
            let m = mailbox(c)?;
            match verb.as_str() {
                "CREATE" => CommandBody::Create(m),
                "DELETE" => CommandBody::Delete(m),
                "SUBSCRIBE" => CommandBody::Subscribe(m),
                "UNSUBSCRIBE" => CommandBody::Unsubscribe(m),
                _ => CommandBody::GetQuotaRoot(m),
            }
        }
        "RENAME" => {
            c.sp()?;
            let from = mailbox(c)?;
            c.sp()?;
            let to = mailbox(c)?;
            CommandBody::Rename { from, to }
        }
        "LIST" | "LSUB" => CommandBody::List(list(c, verb == "LSUB")?),
        "STATUS" => {
            c.sp()?;
            let mailbox = mailbox(c)?;
            c.sp()?;
            let items = status_items(c)?;
            CommandBody::Status { mailbox, items }
        }
        "APPEND" => append(c)?,
        "ID" => id(c)?,
        "GETQUOTA" => {
            c.sp()?;
            CommandBody::GetQuota(c.astring()?)
        }
        "SETQUOTA" => setquota(c)?,
        "SEARCH" => CommandBody::Search(search(c, uid)?),
        "FETCH" => CommandBody::Fetch(fetch(c, uid)?),
        "STORE" => CommandBody::Store(store(c, uid)?),
        "COPY" | "MOVE" => {
            c.sp()?;
            let set = seq_set(c)?;
            c.sp()?;
            let mailbox = mailbox(c)?;
            if verb == "COPY" {
                CommandBody::Copy { uid, set, mailbox }
            } else {
                CommandBody::Move { uid, set, mailbox }
            }
        }
        "SORT" => CommandBody::Sort(sort(c, uid)?),
        "THREAD" => CommandBody::Thread(thread(c, uid)?),
        _ => return c.err("Unknown command"),
    })
}

fn authenticate(c: &mut Cursor<'_>) -> Result<CommandBody> {
    c.sp()?;
    let mechanism = c.word()?;
    let initial = if c.eat(b' ') {
        if c.eat(b'=') {
            Some(Vec::new())
        } else {
            let b = c.atom()?;
            if !b
                .iter()
                .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'+' | b'/' | b'='))
            {
                return c.err("Initial response is not base64");
            }
            Some(b.to_vec())
        }
    } else {
        None
    };
    Ok(CommandBody::Authenticate { mechanism, initial })
}

/// A sequence set or `$`.
pub(crate) fn seq_set(c: &mut Cursor<'_>) -> Result<SeqSet> {
    if c.eat(b'$') {
        return Ok(SeqSet::Saved);
    }
    Ok(SeqSet::Set(sequence_set(c)?))
}

fn seq_number(c: &mut Cursor<'_>) -> Result<SeqOrUid> {
    if c.eat(b'*') {
        return Ok(SeqOrUid::Asterisk);
    }
    Ok(SeqOrUid::Value(c.nz_number()?))
}

/// A plain sequence set (no `$`).
pub(crate) fn sequence_set(c: &mut Cursor<'_>) -> Result<SequenceSet> {
    let mut seqs = Vec::new();
    loop {
        let a = seq_number(c)?;
        let s = if c.eat(b':') {
            Sequence::Range(a, seq_number(c)?)
        } else {
            Sequence::Single(a)
        };
        seqs.push(s);
        if !c.eat(b',') {
            break;
        }
    }
    match SequenceSet::try_from(seqs) {
        Ok(s) => Ok(s),
        Err(_) => c.err("Empty sequence set"),
    }
}

fn select_params(c: &mut Cursor<'_>) -> Result<SelectParams> {
    let mut p = SelectParams::default();
    if !c.eat(b' ') {
        return Ok(p);
    }
    c.expect(b'(', "(")?;
    word_list(c, |c, word| {
        match word {
            "CONDSTORE" => p.condstore = true,
            "QRESYNC" if p.qresync.is_none() => {
                c.sp()?;
                c.expect(b'(', "( after QRESYNC")?;
                let uidvalidity = c.nz_number()?.get();
                c.sp()?;
                let modseq = c.modseq()?;
                if modseq == 0 {
                    return c.err("QRESYNC mod-sequence must not be zero");
                }
                let mut known_uids = None;
                let mut seq_match = None;
                if c.eat(b' ') {
                    if c.peek() != Some(b'(') {
                        known_uids = Some(sequence_set(c)?);
                        if c.peek() == Some(b' ') {
                            c.sp()?;
                        }
                    }
                    if c.eat(b'(') {
                        let seqs = sequence_set(c)?;
                        c.sp()?;
                        let uids = sequence_set(c)?;
                        c.expect(b')', ")")?;
                        seq_match = Some((seqs, uids));
                    }
                }
                c.expect(b')', ")")?;
                p.qresync = Some(Qresync {
                    uidvalidity,
                    modseq,
                    known_uids,
                    seq_match,
                });
            }
            _ => return c.err("Unknown SELECT parameter"),
        }
        Ok(())
    })?;
    Ok(p)
}

/// The words of a parenthesised list whose `(` was read, up to and
/// including its `)`: `each` takes every upper-cased word, with the cursor
/// after it for arguments of its own.
fn word_list<'a>(
    c: &mut Cursor<'a>,
    mut each: impl FnMut(&mut Cursor<'a>, &str) -> Result<()>,
) -> Result<()> {
    loop {
        let word = c.word()?;
        each(c, &word)?;
        if c.eat(b')') {
            return Ok(());
        }
        c.sp()?;
    }
}

fn status_item(word: &str) -> Option<StatusItem> {
    StatusItem::ALL.into_iter().find(|i| i.name() == word)
}

fn status_items(c: &mut Cursor<'_>) -> Result<Vec<StatusItem>> {
    c.expect(b'(', "( before STATUS items")?;
    let mut items = Vec::new();
    loop {
        let w = c.word()?;
        match status_item(&w) {
            Some(i) => items.push(i),
            None => return c.err("Unknown STATUS item"),
        }
        if c.eat(b')') {
            return Ok(items);
        }
        c.sp()?;
    }
}

fn list(c: &mut Cursor<'_>, lsub: bool) -> Result<ListCommand> {
    let mut l = ListCommand {
        lsub,
        ..Default::default()
    };
    c.sp()?;
    if !lsub && c.eat(b'(') {
        l.extended = true;
        if !c.eat(b')') {
            word_list(c, |c, word| {
                match word {
                    "SUBSCRIBED" => l.select_subscribed = true,
                    "SPECIAL-USE" => l.select_special = true,
                    "RECURSIVEMATCH" => l.recursive = true,
                    "REMOTE" => l.select_remote = true,
                    _ => return c.err("Unknown LIST selection option"),
                }
                Ok(())
            })?;
        }
        if l.recursive && !l.select_subscribed && !l.select_special {
            return c.err("RECURSIVEMATCH needs another selection option");
        }
        c.sp()?;
    }
    l.reference = c.astring()?;
    c.sp()?;
    if !lsub && c.eat(b'(') {
        l.extended = true;
        loop {
            l.patterns.push(c.list_mailbox()?);
            if l.patterns.len() > MAX_PATTERNS {
                return c.err("Too many LIST patterns");
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    } else {
        l.patterns.push(c.list_mailbox()?);
    }
    if !lsub && c.peek() == Some(b' ') {
        c.sp()?;
        if c.word()? != "RETURN" {
            return c.err("Unexpected LIST argument");
        }
        l.extended = true;
        c.sp()?;
        c.expect(b'(', "( after RETURN")?;
        if !c.eat(b')') {
            word_list(c, |c, word| {
                match word {
                    "SUBSCRIBED" => l.return_subscribed = true,
                    "SPECIAL-USE" => l.return_special = true,
                    "CHILDREN" => l.return_children = true,
                    "STATUS" if l.status.is_none() => {
                        c.sp()?;
                        l.status = Some(status_items(c)?);
                    }
                    _ => return c.err("Unknown LIST return option"),
                }
                Ok(())
            })?;
        }
    }
    Ok(l)
}

fn month(m: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    MONTHS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(m))
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// `d-Mon-yyyy` (RFC 3501 date-text): day 1 or 2 digits (or a space and
/// one digit inside a date-time).
fn date_text(c: &mut Cursor<'_>, day_fixed: bool) -> Result<NaiveDate> {
    let start = c.pos;
    if day_fixed {
        c.eat(b' ');
    }
    let day = c.number()?;
    if c.pos - start > 2 {
        return c.err("Bad day in date");
    }
    c.expect(b'-', "- in date")?;
    let m = c.atom_upto_dash()?;
    let Some(month) = month(&m) else {
        return c.err("Bad month in date");
    };
    c.expect(b'-', "- in date")?;
    let ystart = c.pos;
    let year = c.number()?;
    if c.pos - ystart != 4 {
        return c.err("Bad year in date");
    }
    match NaiveDate::from_ymd_opt(i32::try_from(year).unwrap_or(0), month, day) {
        Some(d) => Ok(d),
        None => c.err("No such date"),
    }
}

impl Cursor<'_> {
    /// Three letters of a month name.
    fn atom_upto_dash(&mut self) -> Result<String> {
        let r = self.rest();
        let n = r.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let m = String::from_utf8_lossy(r.get(..n).unwrap_or_default()).into_owned();
        self.pos += n;
        Ok(m)
    }
}

/// A search date: date-text, or the same quoted.
fn date(c: &mut Cursor<'_>) -> Result<NaiveDate> {
    if c.eat(b'"') {
        let d = date_text(c, false)?;
        c.expect(b'"', "closing quote of date")?;
        Ok(d)
    } else {
        date_text(c, false)
    }
}

fn digits2(c: &mut Cursor<'_>) -> Result<u32> {
    let start = c.pos;
    let n = c.number()?;
    if c.pos - start != 2 {
        return c.err("Bad time");
    }
    Ok(n)
}

/// `"dd-Mon-yyyy hh:mm:ss +zzzz"` (RFC 3501 date-time).
fn date_time(c: &mut Cursor<'_>) -> Result<DateTime<FixedOffset>> {
    c.expect(b'"', "a date-time")?;
    let d = date_text(c, true)?;
    c.sp()?;
    let h = digits2(c)?;
    c.expect(b':', ": in time")?;
    let m = digits2(c)?;
    c.expect(b':', ": in time")?;
    let s = digits2(c)?;
    c.sp()?;
    let sign = match c.peek() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return c.err("Bad zone"),
    };
    c.pos += 1;
    let zstart = c.pos;
    let z = c.number()?;
    if c.pos - zstart != 4 {
        return c.err("Bad zone");
    }
    c.expect(b'"', "closing quote of date-time")?;
    let offset = i32::try_from((z / 100) * 3600 + (z % 100) * 60).unwrap_or(i32::MAX);
    let (Some(time), Some(tz)) = (
        NaiveTime::from_hms_opt(h, m, s),
        FixedOffset::east_opt(sign * offset),
    ) else {
        return c.err("Bad date-time");
    };
    match tz
        .from_local_datetime(&NaiveDateTime::new(d, time))
        .single()
    {
        Some(dt) => Ok(dt),
        None => c.err("Bad date-time"),
    }
}

fn flag_list(c: &mut Cursor<'_>) -> Result<Vec<String>> {
    c.expect(b'(', "( before flags")?;
    let mut flags = Vec::new();
    if c.eat(b')') {
        return Ok(flags);
    }
    loop {
        flags.push(c.flag()?);
        if c.eat(b')') {
            return Ok(flags);
        }
        c.sp()?;
    }
}

/// What precedes an APPEND's message.
struct AppendPrefix {
    mailbox: Mailbox,
    flags: Vec<String>,
    date: Option<DateTime<FixedOffset>>,
    data: AppendData,
}

/// Mailbox, flags, date, and how the message is announced. The cursor
/// stops at the literal (its `~` or `{`).
fn append_prefix(c: &mut Cursor<'_>) -> Result<AppendPrefix> {
    c.sp()?;
    let mailbox = mailbox(c)?;
    c.sp()?;
    let mut flags = Vec::new();
    if c.peek() == Some(b'(') {
        flags = flag_list(c)?;
        c.sp()?;
    }
    let mut date = None;
    if c.peek() == Some(b'"') {
        date = Some(date_time(c)?);
        c.sp()?;
    }
    let data = if c.peek() == Some(b'~') {
        AppendData::Literal8
    } else if c.peek() == Some(b'{') {
        AppendData::Literal
    } else if c.peek_word() == "UTF8" {
        c.word()?;
        c.sp()?;
        c.expect(b'(', "( after UTF8")?;
        if c.peek() != Some(b'~') {
            return c.err("UTF8 data must be a literal8");
        }
        AppendData::Utf8
    } else {
        return c.err("APPEND needs a message literal");
    };
    Ok(AppendPrefix {
        mailbox,
        flags,
        date,
        data,
    })
}

fn append(c: &mut Cursor<'_>) -> Result<CommandBody> {
    let AppendPrefix {
        mailbox,
        flags,
        date,
        data,
    } = append_prefix(c)?;
    let (message, _) = c.literal_any(data != AppendData::Literal)?;
    let message = message.to_vec();
    if data == AppendData::Utf8 {
        c.expect(b')', ") after UTF8 data")?;
    }
    if c.peek() == Some(b' ') {
        return c.err("MULTIAPPEND is not supported");
    }
    Ok(CommandBody::Append(Append {
        mailbox,
        flags,
        date,
        data,
        message,
    }))
}

/// Parses an APPEND read up to its message literal's announcement
/// (`... {n}` CRLF, `~{n}` or `UTF8 (~{n}`, the literal's octets not read
/// yet). `None`: the command is no APPEND, or this literal is not its
/// message (a mailbox name sent as a literal, say), or what precedes it is
/// malformed: the connection then reads the literal like any other, within
/// the command's bound, and [`parse_command`](super::parse_command) answers.
pub fn parse_append_head(input: &[u8]) -> Option<AppendHead> {
    let mut c = Cursor::new(input);
    let tag = c.tag().ok()?;
    c.tag = Some(tag.clone());
    if !c.eat(b' ') || c.peek_word() != "APPEND" {
        return None;
    }
    c.word().ok()?;
    let AppendPrefix {
        mailbox,
        flags,
        date,
        data,
    } = append_prefix(&mut c).ok()?;
    c.eat(b'~');
    // The announcement must end the input.
    let (_, n) = super::lexer::literal_header(c.rest())?;
    (n == c.rest().len()).then_some(AppendHead {
        tag,
        mailbox,
        flags,
        date,
        data,
    })
}

fn id(c: &mut Cursor<'_>) -> Result<CommandBody> {
    c.sp()?;
    if c.peek() != Some(b'(') {
        if c.word()? == "NIL" {
            return Ok(CommandBody::Id(None));
        }
        return c.err("ID needs a list or NIL");
    }
    c.pos += 1;
    let mut pairs = Vec::new();
    if c.eat(b')') {
        return Ok(CommandBody::Id(Some(pairs)));
    }
    loop {
        let field = c.string()?;
        c.sp()?;
        let value = c.nstring()?;
        if field.len() > ID_FIELD || value.as_ref().is_some_and(|v| v.len() > ID_VALUE) {
            return c.err("ID field or value too long");
        }
        pairs.push((field, value));
        if pairs.len() > ID_PAIRS {
            return c.err("Too many ID fields");
        }
        if c.eat(b')') {
            return Ok(CommandBody::Id(Some(pairs)));
        }
        c.sp()?;
    }
}

fn setquota(c: &mut Cursor<'_>) -> Result<CommandBody> {
    c.sp()?;
    let root = c.astring()?;
    c.sp()?;
    c.expect(b'(', "( before quota limits")?;
    let mut limits = Vec::new();
    if !c.eat(b')') {
        loop {
            let r = c.word()?;
            c.sp()?;
            let n = c.number64()?;
            limits.push((r, n));
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
    }
    Ok(CommandBody::SetQuota { root, limits })
}

fn return_opts(c: &mut Cursor<'_>) -> Result<ReturnOpts> {
    c.expect(b'(', "( after RETURN")?;
    let mut o = ReturnOpts::default();
    if c.eat(b')') {
        o.all = true;
        return Ok(o);
    }
    word_list(c, |c, word| {
        match word {
            "MIN" => o.min = true,
            "MAX" => o.max = true,
            "ALL" => o.all = true,
            "COUNT" => o.count = true,
            "SAVE" => o.save = true,
            _ => return c.err("Unknown RETURN option"),
        }
        Ok(())
    })?;
    Ok(o)
}

fn charset(c: &mut Cursor<'_>) -> Result<String> {
    let cs = c.astring()?;
    Ok(String::from_utf8_lossy(&cs).to_ascii_uppercase())
}

/// `1*(SP search-key)` to the end of the command, as one key.
fn search_keys(c: &mut Cursor<'_>) -> Result<SearchKey> {
    let mut keys = Vec::new();
    while c.eat(b' ') {
        keys.push(search_key(c)?);
    }
    match keys.len() {
        0 => c.err("Missing search keys"),
        1 => Ok(keys.pop().unwrap_or(SearchKey::All)),
        _ => Ok(SearchKey::And(keys)),
    }
}

fn search(c: &mut Cursor<'_>, uid: bool) -> Result<Search> {
    let mut ret = None;
    let mut cs = None;
    if c.rest().first() == Some(&b' ') {
        c.pos += 1;
        if c.peek_word() == "RETURN" {
            c.word()?;
            c.sp()?;
            ret = Some(return_opts(c)?);
        } else {
            c.pos -= 1;
        }
    }
    if c.rest().first() == Some(&b' ') {
        c.pos += 1;
        if c.peek_word() == "CHARSET" {
            c.word()?;
            c.sp()?;
            cs = Some(charset(c)?);
        } else {
            c.pos -= 1;
        }
    }
    let key = search_keys(c)?;
    Ok(Search {
        uid,
        ret,
        charset: cs,
        key,
    })
}

fn search_key(c: &mut Cursor<'_>) -> Result<SearchKey> {
    c.enter()?;
    let k = search_key_inner(c);
    c.leave();
    k
}

fn search_key_inner(c: &mut Cursor<'_>) -> Result<SearchKey> {
    match c.peek() {
        Some(b'(') => {
            c.pos += 1;
            let mut keys = vec![search_key(c)?];
            while c.eat(b' ') {
                keys.push(search_key(c)?);
            }
            c.expect(b')', ") after search keys")?;
            return Ok(SearchKey::And(keys));
        }
        Some(b'$' | b'*' | b'0'..=b'9') => return Ok(SearchKey::Seq(seq_set(c)?)),
        _ => {}
    }
    let w = c.word()?;
    let arg = |c: &mut Cursor<'_>| -> Result<Vec<u8>> {
        c.sp()?;
        c.astring()
    };
    Ok(match w.as_str() {
        "ALL" => SearchKey::All,
        "ANSWERED" => SearchKey::Answered,
        "DELETED" => SearchKey::Deleted,
        "DRAFT" => SearchKey::Draft,
        "FLAGGED" => SearchKey::Flagged,
        "NEW" => SearchKey::New,
        "OLD" => SearchKey::Old,
        "RECENT" => SearchKey::Recent,
        "SEEN" => SearchKey::Seen,
        "UNANSWERED" => SearchKey::Unanswered,
        "UNDELETED" => SearchKey::Undeleted,
        "UNDRAFT" => SearchKey::Undraft,
        "UNFLAGGED" => SearchKey::Unflagged,
        "UNSEEN" => SearchKey::Unseen,
        "KEYWORD" | "UNKEYWORD" => {
            c.sp()?;
            let a = c.atom()?;
            if !a.is_ascii() {
                return c.err("Keywords are ASCII");
            }
            let k = String::from_utf8_lossy(a).into_owned();
            if w == "KEYWORD" {
                SearchKey::Keyword(k)
            } else {
                SearchKey::Unkeyword(k)
            }
        }
        "BCC" => SearchKey::Bcc(arg(c)?),
        "BODY" => SearchKey::Body(arg(c)?),
        "CC" => SearchKey::Cc(arg(c)?),
        "FROM" => SearchKey::From(arg(c)?),
        "SUBJECT" => SearchKey::Subject(arg(c)?),
        "TEXT" => SearchKey::Text(arg(c)?),
        "TO" => SearchKey::To(arg(c)?),
        "HEADER" => {
            let name = arg(c)?;
            SearchKey::Header(name, arg(c)?)
        }
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            c.sp()?;
            let d = date(c)?;
            match w.as_str() {
                "BEFORE" => SearchKey::Before(d),
                "ON" => SearchKey::On(d),
                "SINCE" => SearchKey::Since(d),
                "SENTBEFORE" => SearchKey::SentBefore(d),
                "SENTON" => SearchKey::SentOn(d),
                _ => SearchKey::SentSince(d),
            }
        }
        "LARGER" => {
            c.sp()?;
            SearchKey::Larger(c.number()?)
        }
        "SMALLER" => {
            c.sp()?;
            SearchKey::Smaller(c.number()?)
        }
        "UID" => {
            c.sp()?;
            SearchKey::Uid(seq_set(c)?)
        }
        "NOT" => {
            c.sp()?;
            SearchKey::Not(Box::new(search_key(c)?))
        }
        "OR" => {
            c.sp()?;
            let a = search_key(c)?;
            c.sp()?;
            SearchKey::Or(Box::new(a), Box::new(search_key(c)?))
        }
        "MODSEQ" => {
            c.sp()?;
            let mut entry = None;
            if c.peek() == Some(b'"') {
                let name = c.quoted()?;
                c.sp()?;
                let t = match c.word()?.as_str() {
                    "PRIV" => EntryType::Priv,
                    "SHARED" => EntryType::Shared,
                    "ALL" => EntryType::All,
                    _ => return c.err("Unknown MODSEQ entry type"),
                };
                c.sp()?;
                entry = Some((name, t));
            }
            SearchKey::ModSeq {
                entry,
                modseq: c.modseq()?,
            }
        }
        _ => return c.err("Unknown search key"),
    })
}

fn part_path(c: &mut Cursor<'_>) -> Result<PartPath> {
    let mut path = Vec::new();
    while c.peek().is_some_and(|b| b.is_ascii_digit()) {
        path.push(c.nz_number()?);
        if path.len() > 64 {
            return c.err("Section path too long");
        }
        if !c.eat(b'.') {
            break;
        }
    }
    Ok(path)
}

/// `[section-spec]`: the cursor is after `[`; consumes the `]`.
fn section(c: &mut Cursor<'_>) -> Result<Option<Section>> {
    if c.eat(b']') {
        return Ok(None);
    }
    let path = part_path(c)?;
    let dotted = path.is_empty() || c.buf_prev_is_dot();
    let s = if !dotted {
        Section::Part(path)
    } else {
        let w = {
            let r = c.rest();
            let n = r
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.')
                .count();
            let w = String::from_utf8_lossy(r.get(..n).unwrap_or_default()).to_ascii_uppercase();
            c.pos += n;
            w
        };
        match w.as_str() {
            "HEADER" => Section::Header(path),
            "TEXT" => Section::Text(path),
            "MIME" if !path.is_empty() => Section::Mime(path),
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                c.sp()?;
                c.expect(b'(', "( before header names")?;
                let mut fields = Vec::new();
                loop {
                    fields.push(c.astring()?);
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
                Section::HeaderFields {
                    path,
                    not: w.ends_with(".NOT"),
                    fields,
                }
            }
            _ => return c.err("Unknown section"),
        }
    };
    c.expect(b']', "] after section")?;
    Ok(Some(s))
}

impl Cursor<'_> {
    fn buf_prev_is_dot(&self) -> bool {
        self.pos > 0 && self.whole().get(self.pos - 1) == Some(&b'.')
    }
}

fn partial(c: &mut Cursor<'_>) -> Result<Option<(u32, NonZeroU32)>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let start = c.number()?;
    c.expect(b'.', ". in partial")?;
    let len = c.nz_number()?;
    c.expect(b'>', "> after partial")?;
    Ok(Some((start, len)))
}

fn fetch_item(c: &mut Cursor<'_>) -> Result<FetchItem> {
    let r = c.rest();
    let n = r
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.')
        .count();
    let w = String::from_utf8_lossy(r.get(..n).unwrap_or_default()).to_ascii_uppercase();
    c.pos += n;
    Ok(match w.as_str() {
        "UID" => FetchItem::Uid,
        "FLAGS" => FetchItem::Flags,
        "INTERNALDATE" => FetchItem::InternalDate,
        "RFC822.SIZE" => FetchItem::Rfc822Size,
        "ENVELOPE" => FetchItem::Envelope,
        "BODYSTRUCTURE" => FetchItem::BodyStructure,
        "RFC822" => FetchItem::Rfc822,
        "RFC822.HEADER" => FetchItem::Rfc822Header,
        "RFC822.TEXT" => FetchItem::Rfc822Text,
        "MODSEQ" => FetchItem::ModSeq,
        "BODY" if c.peek() != Some(b'[') => FetchItem::Body,
        "BODY" | "BODY.PEEK" => {
            c.expect(b'[', "[")?;
            let section = section(c)?;
            FetchItem::BodySection {
                peek: w == "BODY.PEEK",
                section,
                partial: partial(c)?,
            }
        }
        "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
            c.expect(b'[', "[")?;
            let path = part_path(c)?;
            if c.buf_prev_is_dot() {
                return c.err("BINARY sections are part numbers only");
            }
            c.expect(b']', "] after BINARY section")?;
            if w == "BINARY.SIZE" {
                FetchItem::BinarySize { path }
            } else {
                FetchItem::Binary {
                    peek: w == "BINARY.PEEK",
                    path,
                    partial: partial(c)?,
                }
            }
        }
        _ => return c.err("Unknown FETCH item"),
    })
}

fn fetch(c: &mut Cursor<'_>, uid: bool) -> Result<Fetch> {
    c.sp()?;
    let set = seq_set(c)?;
    c.sp()?;
    let items = if c.eat(b'(') {
        let mut v = Vec::new();
        loop {
            v.push(fetch_item(c)?);
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
        FetchItems::List(v)
    } else {
        match c.peek_word().as_str() {
            "ALL" => FetchItems::Macro(FetchMacro::All),
            "FAST" => FetchItems::Macro(FetchMacro::Fast),
            "FULL" => FetchItems::Macro(FetchMacro::Full),
            _ => FetchItems::List(vec![fetch_item(c)?]),
        }
    };
    if let FetchItems::Macro(_) = items {
        c.word()?;
    }
    let mut f = Fetch {
        uid,
        set,
        items,
        changed_since: None,
        vanished: false,
    };
    if c.eat(b' ') {
        c.expect(b'(', "( before FETCH modifiers")?;
        word_list(c, |c, word| {
            match word {
                "CHANGEDSINCE" if f.changed_since.is_none() => {
                    c.sp()?;
                    // mod-sequence-value: positive (RFC 7162 7).
                    let m = c.modseq()?;
                    if m == 0 {
                        return c.err("CHANGEDSINCE must be positive");
                    }
                    f.changed_since = Some(m);
                }
                "VANISHED" if !f.vanished => f.vanished = true,
                _ => return c.err("Unknown FETCH modifier"),
            }
            Ok(())
        })?;
        if f.vanished && f.changed_since.is_none() {
            return c.err("VANISHED needs CHANGEDSINCE");
        }
    }
    Ok(f)
}

fn store(c: &mut Cursor<'_>, uid: bool) -> Result<Store> {
    c.sp()?;
    let set = seq_set(c)?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.eat(b'(') {
        if c.word()? != "UNCHANGEDSINCE" {
            return c.err("Unknown STORE modifier");
        }
        c.sp()?;
        unchanged_since = Some(c.modseq()?);
        c.expect(b')', ") after STORE modifier")?;
        c.sp()?;
    }
    let mode = if c.eat(b'+') {
        StoreMode::Add
    } else if c.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let silent = match c.word()?.as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return c.err("Expected FLAGS or FLAGS.SILENT"),
    };
    c.sp()?;
    let (flags, list) = if c.peek() == Some(b'(') {
        (flag_list(c)?, true)
    } else {
        let mut v = vec![c.flag()?];
        while c.eat(b' ') {
            v.push(c.flag()?);
        }
        (v, false)
    };
    Ok(Store {
        uid,
        set,
        unchanged_since,
        mode,
        silent,
        flags,
        list,
    })
}

fn sort(c: &mut Cursor<'_>, uid: bool) -> Result<Sort> {
    c.sp()?;
    c.expect(b'(', "( before sort criteria")?;
    let mut criteria = Vec::new();
    loop {
        let mut w = c.word()?;
        let reverse = w == "REVERSE";
        if reverse {
            if !c.eat(b' ') {
                return c.err("REVERSE needs a sort criterion");
            }
            w = c.word()?;
        }
        let Some(key) = SortKey::ALL.into_iter().find(|k| k.name() == w) else {
            return c.err("Unknown sort criterion");
        };
        criteria.push(SortCriterion { reverse, key });
        if criteria.len() > MAX_CRITERIA {
            return c.err("Too many sort criteria");
        }
        if c.eat(b')') {
            break;
        }
        c.sp()?;
    }
    c.sp()?;
    let charset = charset(c)?;
    let key = search_keys(c)?;
    Ok(Sort {
        uid,
        criteria,
        charset,
        key,
    })
}

fn thread(c: &mut Cursor<'_>, uid: bool) -> Result<Thread> {
    c.sp()?;
    let algorithm = match c.word()?.as_str() {
        "REFERENCES" => ThreadAlgorithm::References,
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        _ => return c.err("Unknown threading algorithm"),
    };
    c.sp()?;
    let charset = charset(c)?;
    let key = search_keys(c)?;
    Ok(Thread {
        uid,
        algorithm,
        charset,
        key,
    })
}
