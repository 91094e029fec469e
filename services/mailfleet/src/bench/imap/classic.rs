//! `bench imap --mix classic`: the load Dovecot's imaptest makes with its
//! default states, so our figures compare with an outside tool's and with
//! another server's under the same tool.
//!
//! Each of `--clients` clients loops sessions as imaptest's default states
//! do, in its order and with its default probabilities: LOGIN as a random
//! user of `--users`; LIST "" * (50 %); STATUS (MESSAGES UNSEEN RECENT) (50 %);
//! SELECT INBOX; FETCH of a range of 100 messages from a random start (all
//! when fewer) with UID, FLAGS, ENVELOPE, INTERNALDATE, RFC822.SIZE and
//! BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT MESSAGE-ID)]; FETCH2: BODY.PEEK[]
//! of a random message, and again with 30 % probability after each;
//! STORE +/-FLAGS of random flags and keywords on a random range (50 %);
//! DELETE: STORE +FLAGS (\Deleted) on a random message; EXPUNGE; APPEND,
//! and again with 5 % probability after each; LOGOUT. With `--keep-open`
//! a client logs in and selects once and loops LIST to APPEND.
//!
//! Every response is checked ([`Checker`]); commands count when their
//! tagged response arrives before the deadline, and nothing is issued after
//! it, so the wind-down is not in the rate.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::io::AsyncWriteExt;

use super::{Imap, ImapArgs, Response, loopback, message, source_address};
use crate::bench::cpu;

/// Flags and keywords the STORE state sets and clears.
const STORE_FLAGS: [&str; 5] = ["\\Seen", "\\Flagged", "\\Answered", "$Bench1", "$Bench2"];
/// Largest range a FETCH covers (imaptest: 100 messages).
const FETCH_RANGE: u64 = 100;
/// Largest range a STORE covers.
const STORE_RANGE: u64 = 10;
/// Examples of each error kind kept for the report.
const EXAMPLES: usize = 3;

/// What is wrong with a response, apart from its tagged status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// FETCH FLAGS holds a keyword the last untagged FLAGS did not list.
    UndeclaredKeyword,
    /// BODY[HEADER.FIELDS (...)] came back empty, RFC822.SIZE not 0.
    EmptyHeaderFields,
    /// BODY[] came back empty though RFC822.SIZE is not zero.
    EmptyBody,
    /// `* n FETCH` with n above the EXISTS count the session knows.
    FetchBeyondExists,
    /// A FETCH response the checker cannot read.
    MalformedFetch,
}

impl Problem {
    fn describe(self) -> &'static str {
        match self {
            Problem::UndeclaredKeyword => "FETCH FLAGS with a keyword not in the last FLAGS",
            Problem::EmptyHeaderFields => "empty BODY[HEADER.FIELDS ...]",
            Problem::EmptyBody => "empty BODY[] of a message whose RFC822.SIZE is not 0",
            Problem::FetchBeyondExists => "FETCH of a sequence number beyond EXISTS",
            Problem::MalformedFetch => "unreadable FETCH response",
        }
    }
}

/// The mailbox state a session knows from the untagged responses, in order.
#[derive(Debug, Default)]
pub struct Checker {
    pub exists: u64,
    /// Keywords of the last `* FLAGS`, lower-cased.
    keywords: HashSet<String>,
}

impl Checker {
    /// Reads one untagged response (literal contents left out, as `{n}`
    /// followed by CRLF) and returns what is wrong with it.
    pub fn untagged(&mut self, line: &str) -> Vec<Problem> {
        let Some(rest) = line.strip_prefix("* ") else {
            return Vec::new();
        };
        if let Some(list) = strip_prefix_ci(rest, "FLAGS ") {
            self.keywords = list
                .trim_matches(|c| c == '(' || c == ')')
                .split_whitespace()
                .filter(|f| !f.starts_with('\\'))
                .map(str::to_ascii_lowercase)
                .collect();
            return Vec::new();
        }
        let Some((n, rest)) = rest.split_once(' ') else {
            return Vec::new();
        };
        let Ok(n) = n.parse::<u64>() else {
            return Vec::new();
        };
        let word = rest.split(' ').next().unwrap_or_default();
        if word.eq_ignore_ascii_case("EXISTS") {
            self.exists = n;
            return Vec::new();
        }
        if word.eq_ignore_ascii_case("EXPUNGE") {
            self.exists = self.exists.saturating_sub(1);
            return Vec::new();
        }
        if !word.eq_ignore_ascii_case("FETCH") {
            return Vec::new();
        }
        let mut problems = Vec::new();
        if n == 0 || n > self.exists {
            problems.push(Problem::FetchBeyondExists);
        }
        let Some(items) = fetch_items(&rest[word.len()..]) else {
            problems.push(Problem::MalformedFetch);
            return problems;
        };
        let size = items
            .iter()
            .find(|(k, _)| k == "RFC822.SIZE")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        for (name, value) in &items {
            if name == "FLAGS" {
                let undeclared = value
                    .trim_matches(|c| c == '(' || c == ')')
                    .split_whitespace()
                    .filter(|f| !f.starts_with('\\'))
                    .any(|k| !self.keywords.contains(&k.to_ascii_lowercase()));
                if undeclared {
                    problems.push(Problem::UndeclaredKeyword);
                }
            } else if name.starts_with("BODY[HEADER.FIELDS") {
                // A header block always ends with its blank line. A message
                // another session expunged may come back empty with
                // RFC822.SIZE 0 (RFC 2180 4.1.3, Dovecot does): not an error.
                if size != Some(0) && string_length(value).is_none_or(|l| l <= 2) {
                    problems.push(Problem::EmptyHeaderFields);
                }
            } else if name == "BODY[]"
                && size.is_some_and(|s| s > 0)
                && string_length(value).is_none_or(|l| l == 0)
            {
                problems.push(Problem::EmptyBody);
            }
        }
        problems
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Length of a string value: `{n}` (literal), `"..."`, or None for NIL.
fn string_length(value: &str) -> Option<usize> {
    if let Some(n) = value.strip_prefix('{') {
        return n.trim_end_matches('}').trim_end_matches('+').parse().ok();
    }
    let q = value.strip_prefix('"')?.strip_suffix('"')?;
    Some(q.len())
}

/// The items of a FETCH response's parenthesised list: (NAME upper-cased,
/// raw value). Values are atoms, quoted strings, `{n}` for literals, or
/// whole parenthesised lists.
fn fetch_items(s: &str) -> Option<Vec<(String, String)>> {
    let s = s.trim_start();
    let b = s.as_bytes();
    if b.first() != Some(&b'(') {
        return None;
    }
    let mut i = 1;
    let mut items = Vec::new();
    loop {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if *b.get(i)? == b')' {
            return Some(items);
        }
        // The name runs to a space outside brackets: BODY[HEADER.FIELDS (A B)].
        let start = i;
        let mut depth = 0usize;
        while let Some(&c) = b.get(i) {
            match c {
                b'[' => depth += 1,
                b']' => depth = depth.checked_sub(1)?,
                b' ' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let name = s.get(start..i)?.to_ascii_uppercase();
        i += 1;
        let start = i;
        skip_value(b, &mut i)?;
        items.push((name, s.get(start..i)?.trim_end().to_owned()));
    }
}

/// Moves `i` past one value.
fn skip_value(b: &[u8], i: &mut usize) -> Option<()> {
    match *b.get(*i)? {
        b'"' => {
            *i += 1;
            loop {
                match *b.get(*i)? {
                    b'\\' => *i += 2,
                    b'"' => {
                        *i += 1;
                        return Some(());
                    }
                    _ => *i += 1,
                }
            }
        }
        b'{' => {
            while *b.get(*i)? != b'}' {
                *i += 1;
            }
            *i += 1;
            // The literal's contents were left out; its CRLF is still there.
            if b.get(*i..*i + 2) == Some(b"\r\n") {
                *i += 2;
            }
            Some(())
        }
        b'(' => {
            *i += 1;
            loop {
                match *b.get(*i)? {
                    b')' => {
                        *i += 1;
                        return Some(());
                    }
                    b' ' => *i += 1,
                    _ => skip_value(b, i)?,
                }
            }
        }
        _ => {
            while let Some(&c) = b.get(*i) {
                if c == b' ' || c == b')' {
                    break;
                }
                // BODY[...]<0> style atoms keep their brackets.
                if c == b'[' {
                    while *b.get(*i)? != b']' {
                        *i += 1;
                    }
                }
                *i += 1;
            }
            Some(())
        }
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// Commands whose tagged response came before the deadline, by name.
    done: BTreeMap<&'static str, u64>,
    /// Errors by kind, with a few examples each.
    errors: BTreeMap<String, (u64, Vec<String>)>,
}

impl Tally {
    fn error(&mut self, kind: String, example: impl FnOnce() -> String) {
        let e = self.errors.entry(kind).or_default();
        e.0 += 1;
        if e.1.len() < EXAMPLES {
            e.1.push(example());
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.done {
            *self.done.entry(k).or_default() += v;
        }
        for (k, (n, ex)) in other.errors {
            let e = self.errors.entry(k).or_default();
            e.0 += n;
            e.1.extend(ex);
            e.1.truncate(EXAMPLES);
        }
    }
}

/// One logged-in (or logging-in) connection and its checker.
struct Session<'t> {
    c: Imap,
    check: Checker,
    tally: &'t mut Tally,
    deadline: Instant,
}

impl Session<'_> {
    /// Sends one command unless the deadline has passed (None); checks the
    /// untagged responses and the tagged status.
    async fn cmd(&mut self, name: &'static str, command: &str) -> anyhow::Result<Option<Response>> {
        if Instant::now() >= self.deadline {
            return Ok(None);
        }
        let r = self.c.command(command, true).await?;
        Ok(Some(self.checked(name, r)))
    }

    async fn append(&mut self, account: &str) -> anyhow::Result<Option<Response>> {
        if Instant::now() >= self.deadline {
            return Ok(None);
        }
        let i = rand::random_range(0..1_000_000);
        let r = self
            .c
            .append_response("INBOX", &message(account, i))
            .await?;
        Ok(Some(self.checked("APPEND", r)))
    }

    fn checked(&mut self, name: &'static str, r: Response) -> Response {
        for line in &r.untagged {
            for p in self.check.untagged(line) {
                self.tally
                    .error(p.describe().to_owned(), || format!("{name}: {line}"));
            }
        }
        if r.status != "OK" {
            let tagged = String::from_utf8_lossy(&self.c.line).trim_end().to_owned();
            self.tally
                .error(format!("{name} answered {}", r.status), || tagged);
        }
        if Instant::now() < self.deadline {
            *self.tally.done.entry(name).or_default() += 1;
        }
        r
    }

    /// LIST and STATUS, valid in both authenticated and selected state.
    async fn authenticated(&mut self) -> anyhow::Result<bool> {
        if rand::random_bool(0.5) && self.cmd("LIST", "LIST \"\" *").await?.is_none() {
            return Ok(false);
        }
        if rand::random_bool(0.5)
            && self
                .cmd("STATUS", "STATUS INBOX (MESSAGES UNSEEN RECENT)")
                .await?
                .is_none()
        {
            return Ok(false);
        }
        Ok(true)
    }

    /// The selected-state commands and APPEND; false once the deadline passed.
    async fn selected(&mut self, account: &str) -> anyhow::Result<bool> {
        macro_rules! send {
            ($name:expr, $cmd:expr) => {
                if self.cmd($name, &$cmd).await?.is_none() {
                    return Ok(false);
                }
            };
        }
        let exists = self.check.exists;
        if exists > 0 {
            let (a, b) = if exists <= FETCH_RANGE {
                (1, exists)
            } else {
                let a = rand::random_range(1..=exists - FETCH_RANGE + 1);
                (a, a + FETCH_RANGE - 1)
            };
            send!(
                "FETCH",
                format!(
                    "FETCH {a}:{b} (UID FLAGS ENVELOPE INTERNALDATE RFC822.SIZE \
                     BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT MESSAGE-ID)])"
                )
            );
        }
        loop {
            let exists = self.check.exists;
            if exists == 0 {
                break;
            }
            let n = rand::random_range(1..=exists);
            send!("FETCH2", format!("FETCH {n} (RFC822.SIZE BODY.PEEK[])"));
            if !rand::random_bool(0.30) {
                break;
            }
        }
        let exists = self.check.exists;
        if exists > 0 && rand::random_bool(0.5) {
            let a = rand::random_range(1..=exists);
            let b = (a + rand::random_range(0..STORE_RANGE)).min(exists);
            let flags: Vec<&str> = STORE_FLAGS
                .iter()
                .copied()
                .filter(|_| rand::random_bool(0.4))
                .collect();
            let flags = if flags.is_empty() {
                vec![STORE_FLAGS[rand::random_range(0..STORE_FLAGS.len())]]
            } else {
                flags
            };
            let op = if rand::random_bool(0.5) { '+' } else { '-' };
            send!(
                "STORE",
                format!("STORE {a}:{b} {op}FLAGS ({})", flags.join(" "))
            );
        }
        let exists = self.check.exists;
        if exists > 0 {
            let n = rand::random_range(1..=exists);
            send!("DELETE", format!("STORE {n} +FLAGS (\\Deleted)"));
        }
        send!("EXPUNGE", "EXPUNGE");
        loop {
            if self.append(account).await?.is_none() {
                return Ok(false);
            }
            if !rand::random_bool(0.05) {
                break;
            }
        }
        Ok(true)
    }
}

/// Opens a session as a random user and selects INBOX; None past the deadline.
async fn open<'t>(
    args: &ImapArgs,
    source: Option<std::net::IpAddr>,
    users: &[String],
    tally: &'t mut Tally,
    deadline: Instant,
) -> anyhow::Result<Option<(Session<'t>, String)>> {
    let user = users[rand::random_range(0..users.len())].clone();
    let c = Imap::connect(&args.target, source).await?;
    let mut s = Session {
        c,
        check: Checker::default(),
        tally,
        deadline,
    };
    let login = format!("LOGIN \"{user}\" \"{}\"", super::PASSWORD);
    match s.cmd("LOGIN", &login).await? {
        None => return Ok(None),
        Some(r) if r.status != "OK" => bail!("LOGIN as {user} refused"),
        Some(_) => {}
    }
    Ok(Some((s, user)))
}

/// One client until the deadline.
async fn client(
    args: Arc<ImapArgs>,
    users: Arc<Vec<String>>,
    source: Option<std::net::IpAddr>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut failures_in_a_row = 0;
    while Instant::now() < deadline {
        let result = session(&args, source, &users, &mut tally, deadline).await;
        if let Err(e) = result {
            tally.error("connection or protocol error".into(), || format!("{e:#}"));
            failures_in_a_row += 1;
            if failures_in_a_row >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            failures_in_a_row = 0;
        }
    }
    tally
}

/// One session (or, with --keep-open, all of this client's work).
async fn session(
    args: &ImapArgs,
    source: Option<std::net::IpAddr>,
    users: &[String],
    tally: &mut Tally,
    deadline: Instant,
) -> anyhow::Result<()> {
    let Some((mut s, user)) = open(args, source, users, tally, deadline).await? else {
        return Ok(());
    };
    let going = if args.keep_open {
        // Selected once; then LIST/STATUS and the selected states in a loop.
        s.cmd("SELECT", "SELECT INBOX").await?.is_some()
            && loop {
                if !s.authenticated().await? || !s.selected(&user).await? {
                    break false;
                }
            }
    } else {
        s.authenticated().await?
            && s.cmd("SELECT", "SELECT INBOX").await?.is_some()
            && s.selected(&user).await?
    };
    if going {
        s.cmd("LOGOUT", "LOGOUT").await?;
    } else {
        // Past the deadline: log out without counting it.
        let _ = s.c.writer.write_all(b"z LOGOUT\r\n").await;
        let _ = s.c.writer.flush().await;
    }
    Ok(())
}

/// Runs the classic mix; returns whether any error was seen.
pub async fn phase(args: &ImapArgs, users: &[String]) -> anyhow::Result<bool> {
    let procs = cpu::parse_list(
        args.server_procs
            .as_deref()
            .unwrap_or(super::MAILFLEET_PROCS),
    );
    let looped = loopback(&args.target).await;
    let args_arc = Arc::new(args.clone());
    let users = Arc::new(users.to_vec());
    let cpu_before = cpu::snapshot(&procs);
    let start = Instant::now();
    let deadline = start + args.duration;
    let workers: Vec<_> = (0..args.clients)
        .map(|i| {
            // Closed sockets linger in TIME_WAIT: each client its own source.
            let source = looped.then(|| source_address(5, i * super::PER_SOURCE));
            tokio::spawn(client(args_arc.clone(), users.clone(), source, deadline))
        })
        .collect();
    tokio::time::sleep_until(deadline.into()).await;
    // CPU over the same span as the commands counted.
    let cpu_after = cpu::snapshot(&procs);
    let mut tally = Tally::default();
    for w in workers {
        if let Ok(t) = w.await {
            tally.merge(t);
        }
    }
    let secs = args.duration.as_secs_f64().max(1e-9);
    let total: u64 = tally.done.values().sum();
    let errors: u64 = tally.errors.values().map(|(n, _)| n).sum();
    println!(
        "  classic mix (imaptest default states), {}: {total} commands in {secs:.1} s = {:.0} commands/s, \
         {} clients over {} users, {errors} errors",
        if args.keep_open {
            "sessions kept open"
        } else {
            "one login per session"
        },
        total as f64 / secs,
        args.clients,
        users.len()
    );
    let per: Vec<String> = tally.done.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("    completed before the deadline: {}", per.join(", "));
    for (kind, (n, examples)) in &tally.errors {
        println!("    error: {kind}: {n}");
        for e in examples {
            println!("      e.g. {}", truncate(e, 200));
        }
    }
    let used = cpu::used(&cpu_before, &cpu_after, cpu::TICKS_PER_SECOND);
    cpu::print_per_operation(&used, &procs, total, "command");
    Ok(errors > 0)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: &mut Checker, line: &str) -> Vec<Problem> {
        c.untagged(line)
    }

    #[test]
    fn checker_reads_state_and_flags_errors() {
        let mut c = Checker::default();
        assert!(check(&mut c, "* FLAGS (\\Seen \\Deleted $Bench1)").is_empty());
        assert!(check(&mut c, "* 3 EXISTS").is_empty());
        // Fine: declared keyword, headers and body with their sizes.
        assert!(
            check(
                &mut c,
                "* 2 FETCH (UID 7 FLAGS (\\Seen $bench1) ENVELOPE (\"d\" {3}\r\n NIL ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL NIL NIL) \
                 RFC822.SIZE 4000 BODY[HEADER.FIELDS (FROM TO SUBJECT MESSAGE-ID)] {120}\r\n)"
            )
            .is_empty()
        );
        assert!(check(&mut c, "* 3 FETCH (RFC822.SIZE 4000 BODY[] {4000}\r\n)").is_empty());
        // A keyword FLAGS never announced.
        assert_eq!(
            check(&mut c, "* 1 FETCH (FLAGS ($Bench2))"),
            vec![Problem::UndeclaredKeyword]
        );
        // Empty header fields, as a literal or a quoted string.
        assert_eq!(
            check(
                &mut c,
                "* 1 FETCH (BODY[HEADER.FIELDS (FROM)] {2}\r\n UID 4)"
            ),
            vec![Problem::EmptyHeaderFields]
        );
        assert_eq!(
            check(&mut c, "* 1 FETCH (BODY[HEADER.FIELDS (FROM)] \"\")"),
            vec![Problem::EmptyHeaderFields]
        );
        assert!(
            check(
                &mut c,
                "* 1 FETCH (RFC822.SIZE 0 BODY[HEADER.FIELDS (FROM)] {0}\r\n)"
            )
            .is_empty()
        );
        // Empty body with a size; the size may come after the body.
        assert_eq!(
            check(&mut c, "* 1 FETCH (BODY[] {0}\r\n RFC822.SIZE 4000)"),
            vec![Problem::EmptyBody]
        );
        assert!(check(&mut c, "* 1 FETCH (BODY[] {0}\r\n RFC822.SIZE 0)").is_empty());
        // Beyond EXISTS, also after an EXPUNGE lowered it.
        assert_eq!(
            check(&mut c, "* 4 FETCH (FLAGS (\\Seen))"),
            vec![Problem::FetchBeyondExists]
        );
        assert!(check(&mut c, "* 1 EXPUNGE").is_empty());
        assert_eq!(
            check(&mut c, "* 3 FETCH (FLAGS ())"),
            vec![Problem::FetchBeyondExists]
        );
        // A new FLAGS list declares the keyword.
        assert!(check(&mut c, "* FLAGS (\\Seen $Bench1 $Bench2)").is_empty());
        assert!(check(&mut c, "* 1 FETCH (FLAGS ($Bench2))").is_empty());
        assert_eq!(
            check(&mut c, "* 1 FETCH (FLAGS (\\Seen)"),
            vec![Problem::MalformedFetch]
        );
        assert!(check(&mut c, "* OK [UIDNEXT 5] x").is_empty());
        assert!(check(&mut c, "* STATUS INBOX (MESSAGES 9)").is_empty());
    }
}
