//! From the generic syntax tree to the typed program: every check that can be made before a
//! message arrives (known commands and tests, `require`, argument types, comparators, `if`
//! structure) is made here, and each error names its line.

use crate::ast::*;
use crate::parser::{Arg, Node};
use crate::strings;
use crate::{CompileError, SUPPORTED};

fn err(line: u32, message: impl Into<String>) -> CompileError {
    CompileError {
        line,
        message: message.into(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flag,
    Num,
    Str,
    List,
}

/// What an argument of `kind` should have been, when `arg` is not one.
fn mismatch(kind: Kind, arg: &Arg) -> Option<&'static str> {
    match (kind, arg) {
        (Kind::Num, Arg::Number(_))
        | (Kind::Str, Arg::Strings { list: false, .. })
        | (Kind::List, Arg::Strings { .. })
        | (Kind::Flag, _) => None,
        (Kind::Num, _) => Some("a number"),
        (Kind::Str, _) => Some("a string"),
        (Kind::List, _) => Some("a string list"),
    }
}

/// The tags a command or test accepts: the tag's argument kind and the extension it needs.
type Spec = fn(&str) -> Option<(Kind, Option<&'static str>)>;

struct Parsed {
    tags: Vec<(String, Option<Arg>, u32)>,
    pos: Vec<(Arg, u32)>,
}

impl Parsed {
    fn has(&self, t: &str) -> bool {
        self.tags.iter().any(|(n, _, _)| n == t)
    }
    fn get(&self, t: &str) -> Option<&(String, Option<Arg>, u32)> {
        self.tags.iter().find(|(n, _, _)| n == t)
    }
}

pub(crate) struct Compiler {
    pub(crate) required: Vec<&'static str>,
}

fn match_tags(t: &str) -> Option<(Kind, Option<&'static str>)> {
    match t {
        "is" | "contains" | "matches" => Some((Kind::Flag, None)),
        "value" | "count" => Some((Kind::Str, Some("relational"))),
        "comparator" => Some((Kind::Str, None)),
        "regex" => Some((Kind::Flag, Some("regex"))),
        _ => None,
    }
}

fn address_tags(t: &str) -> Option<(Kind, Option<&'static str>)> {
    match t {
        "all" | "localpart" | "domain" => Some((Kind::Flag, None)),
        "user" | "detail" => Some((Kind::Flag, Some("subaddress"))),
        _ => match_tags(t),
    }
}

fn index_tags(t: &str) -> Option<(Kind, Option<&'static str>)> {
    match t {
        "index" => Some((Kind::Num, Some("index"))),
        "last" => Some((Kind::Flag, Some("index"))),
        _ => None,
    }
}

impl Compiler {
    fn has(&self, ext: &str) -> bool {
        self.required.contains(&ext)
    }

    fn need(&self, ext: &str, what: &str, line: u32) -> Result<(), CompileError> {
        if self.has(ext) {
            Ok(())
        } else {
            Err(err(line, format!("{what} needs require \"{ext}\"")))
        }
    }

    fn split(&self, node: &Node, spec: Spec) -> Result<Parsed, CompileError> {
        let mut out = Parsed {
            tags: Vec::new(),
            pos: Vec::new(),
        };
        let mut it = node.args.iter().peekable();
        while let Some((arg, line)) = it.next() {
            let line = *line;
            match arg {
                Arg::Tag(t) => {
                    let Some((kind, ext)) = spec(t) else {
                        return Err(err(
                            line,
                            format!("{} does not take the tag :{t}", node.name),
                        ));
                    };
                    if let Some(ext) = ext {
                        if ext == "regex" {
                            return Err(err(line, "the regex extension (:regex) is not supported"));
                        }
                        self.need(ext, &format!(":{t}"), line)?;
                    }
                    if out.has(t) {
                        return Err(err(line, format!("tag :{t} given twice")));
                    }
                    let param = match kind {
                        Kind::Flag => None,
                        _ => {
                            let Some((p, _)) = it.next() else {
                                return Err(err(line, format!("tag :{t} needs an argument")));
                            };
                            if let Some(want) = mismatch(kind, p) {
                                return Err(err(line, format!("tag :{t} needs {want}")));
                            }
                            Some(p.clone())
                        }
                    };
                    out.tags.push((t.clone(), param, line));
                }
                other => out.pos.push((other.clone(), line)),
            }
        }
        Ok(out)
    }

    fn value(&self, s: &str, line: u32) -> Result<Value, CompileError> {
        let s = if self.has("encoded-character") {
            strings::decode_encoded(s).map_err(|m| err(line, m))?
        } else {
            s.to_string()
        };
        if self.has("variables") {
            strings::template(s).map_err(|m| err(line, m))
        } else {
            Ok(Value::Lit(s))
        }
    }

    fn values(&self, v: &[String], line: u32) -> Result<Vec<Value>, CompileError> {
        v.iter().map(|s| self.value(s, line)).collect()
    }

    /// The literal text of a string that must be constant (comparator names, relations…).
    fn literal(&self, s: &str, line: u32, what: &str) -> Result<String, CompileError> {
        match self.value(s, line)? {
            Value::Lit(s) => Ok(s),
            Value::Template(_) => Err(err(line, format!("{what} must be a constant string"))),
        }
    }

    fn positional(
        &self,
        node: &Node,
        p: &Parsed,
        kinds: &[(Kind, &str)],
    ) -> Result<Vec<Arg>, CompileError> {
        if p.pos.len() != kinds.len() {
            let names: Vec<&str> = kinds.iter().map(|(_, n)| *n).collect();
            return Err(err(
                node.line,
                format!(
                    "{} takes {} positional argument(s) ({}), {} given",
                    node.name,
                    kinds.len(),
                    names.join(", "),
                    p.pos.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for ((arg, line), (kind, name)) in p.pos.iter().zip(kinds) {
            if let Some(want) = mismatch(*kind, arg) {
                return Err(err(*line, format!("{}: {name} must be {want}", node.name)));
            }
            out.push(arg.clone());
        }
        Ok(out)
    }

    fn match_of(&self, p: &Parsed, default_line: u32) -> Result<Match, CompileError> {
        let mut kind = None;
        for (t, param, line) in &p.tags {
            let k = match t.as_str() {
                "is" => MatchType::Is,
                "contains" => MatchType::Contains,
                "matches" => MatchType::Matches,
                "value" | "count" => {
                    let rel = match param {
                        Some(Arg::Strings { values, .. }) => {
                            values.first().cloned().unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    let rel = self.literal(&rel, *line, "a relational operator")?;
                    let r = match rel.to_ascii_lowercase().as_str() {
                        "gt" => Relation::Gt,
                        "ge" => Relation::Ge,
                        "lt" => Relation::Lt,
                        "le" => Relation::Le,
                        "eq" => Relation::Eq,
                        "ne" => Relation::Ne,
                        other => {
                            return Err(err(
                                *line,
                                format!("unknown relational operator \"{other}\""),
                            ));
                        }
                    };
                    if t == "value" {
                        MatchType::Value(r)
                    } else {
                        MatchType::Count(r)
                    }
                }
                _ => continue,
            };
            if kind.is_some() {
                return Err(err(*line, "more than one match type"));
            }
            kind = Some(k);
        }
        let comparator = match p.get("comparator") {
            None => Comparator::AsciiCasemap,
            Some((_, param, line)) => {
                let name = match param {
                    Some(Arg::Strings { values, .. }) => {
                        values.first().cloned().unwrap_or_default()
                    }
                    _ => String::new(),
                };
                let name = self.literal(&name, *line, "a comparator name")?;
                match name.to_ascii_lowercase().as_str() {
                    "i;octet" => Comparator::Octet,
                    "i;ascii-casemap" => Comparator::AsciiCasemap,
                    "i;ascii-numeric" => {
                        self.need(
                            "comparator-i;ascii-numeric",
                            "comparator i;ascii-numeric",
                            *line,
                        )?;
                        Comparator::AsciiNumeric
                    }
                    other => return Err(err(*line, format!("unknown comparator \"{other}\""))),
                }
            }
        };
        let kind = kind.unwrap_or(MatchType::Is);
        if comparator == Comparator::AsciiNumeric
            && matches!(kind, MatchType::Contains | MatchType::Matches)
        {
            return Err(err(
                default_line,
                "comparator i;ascii-numeric supports only :is, :value and :count",
            ));
        }
        Ok(Match { kind, comparator })
    }

    fn address_part(p: &Parsed) -> Result<AddressPart, CompileError> {
        let mut part = None;
        for (t, _, line) in &p.tags {
            let a = match t.as_str() {
                "all" => AddressPart::All,
                "localpart" => AddressPart::Localpart,
                "domain" => AddressPart::Domain,
                "user" => AddressPart::User,
                "detail" => AddressPart::Detail,
                _ => continue,
            };
            if part.is_some() {
                return Err(err(*line, "more than one address part"));
            }
            part = Some(a);
        }
        Ok(part.unwrap_or(AddressPart::All))
    }

    fn index(p: &Parsed) -> Result<Option<Index>, CompileError> {
        let last = p.get("last");
        match p.get("index") {
            Some((_, Some(Arg::Number(n)), line)) => {
                if *n == 0 {
                    return Err(err(*line, ":index counts from 1"));
                }
                Ok(Some(Index {
                    n: *n,
                    last: last.is_some(),
                }))
            }
            _ => match last {
                Some((_, _, line)) => Err(err(*line, ":last needs :index")),
                None => Ok(None),
            },
        }
    }

    fn strings_of(&self, a: &Arg, line: u32) -> Result<Vec<Value>, CompileError> {
        match a {
            Arg::Strings { values, .. } => self.values(values, line),
            _ => Ok(Vec::new()),
        }
    }

    fn header_names(&self, a: &Arg, line: u32) -> Result<Vec<Value>, CompileError> {
        let v = self.strings_of(a, line)?;
        for n in &v {
            if let Value::Lit(s) = n
                && (s.is_empty() || !s.bytes().all(|b| (33..=126).contains(&b) && b != b':'))
            {
                return Err(err(line, format!("\"{s}\" is not a valid header name")));
            }
        }
        Ok(v)
    }

    fn zone(&self, p: &Parsed) -> Result<Zone, CompileError> {
        match (p.get("zone"), p.get("originalzone")) {
            (Some(_), Some((_, _, line))) => {
                Err(err(*line, ":zone and :originalzone exclude each other"))
            }
            (None, Some(_)) => Ok(Zone::Original),
            (None, None) => Ok(Zone::Local),
            (Some((_, param, line)), None) => {
                let s = match param {
                    Some(Arg::Strings { values, .. }) => {
                        values.first().cloned().unwrap_or_default()
                    }
                    _ => String::new(),
                };
                let s = self.literal(&s, *line, "a time zone")?;
                parse_zone(&s).map(Zone::Fixed).ok_or_else(|| {
                    err(
                        *line,
                        format!("\"{s}\" is not a time zone (+hhmm or -hhmm)"),
                    )
                })
            }
        }
    }

    fn date_part(&self, a: &Arg, line: u32) -> Result<DatePart, CompileError> {
        let s = match a {
            Arg::Strings { values, .. } => values.first().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let s = self.literal(&s, line, "a date part")?;
        Ok(match s.to_ascii_lowercase().as_str() {
            "year" => DatePart::Year,
            "month" => DatePart::Month,
            "day" => DatePart::Day,
            "date" => DatePart::Date,
            "julian" => DatePart::Julian,
            "hour" => DatePart::Hour,
            "minute" => DatePart::Minute,
            "second" => DatePart::Second,
            "time" => DatePart::Time,
            "iso8601" => DatePart::Iso8601,
            "std11" => DatePart::Std11,
            "zone" => DatePart::Zone,
            "weekday" => DatePart::Weekday,
            other => return Err(err(line, format!("unknown date part \"{other}\""))),
        })
    }

    pub(crate) fn block(&self, nodes: &[Node]) -> Result<Vec<Stmt>, CompileError> {
        let mut out: Vec<Stmt> = Vec::new();
        // Whether the previous command was an `if`/`elsif` that an `elsif`/`else` may extend.
        let mut open_if = false;
        for node in nodes {
            match node.name.as_str() {
                "require" => {
                    return Err(err(node.line, "require must come before any other command"));
                }
                "if" => {
                    let (test, body) = self.conditional(node)?;
                    out.push(Stmt {
                        cmd: Cmd::If {
                            branches: vec![(test, body)],
                            otherwise: None,
                        },
                        line: node.line,
                    });
                    open_if = true;
                }
                "elsif" | "else" => {
                    let last = out.last_mut().filter(|_| open_if);
                    let Some(Stmt {
                        cmd:
                            Cmd::If {
                                branches,
                                otherwise,
                            },
                        ..
                    }) = last
                    else {
                        return Err(err(
                            node.line,
                            format!("{} without a preceding if", node.name),
                        ));
                    };
                    if node.name == "elsif" {
                        let (test, body) = self.conditional(node)?;
                        branches.push((test, body));
                    } else {
                        if !node.args.is_empty() || !node.tests.is_empty() {
                            return Err(err(node.line, "else takes no arguments or tests"));
                        }
                        let Some(b) = &node.block else {
                            return Err(err(node.line, "else needs a block"));
                        };
                        *otherwise = Some(self.block(b)?);
                        open_if = false;
                    }
                }
                _ => {
                    open_if = false;
                    let cmd = self.command(node)?;
                    out.push(Stmt {
                        cmd,
                        line: node.line,
                    });
                }
            }
        }
        Ok(out)
    }

    fn conditional(&self, node: &Node) -> Result<(Test, Vec<Stmt>), CompileError> {
        if !node.args.is_empty() {
            return Err(err(
                node.line,
                format!("{} takes a test, not arguments", node.name),
            ));
        }
        if node.tests.len() != 1 || node.test_list {
            return Err(err(
                node.line,
                format!("{} needs exactly one test", node.name),
            ));
        }
        let Some(b) = &node.block else {
            return Err(err(node.line, format!("{} needs a block", node.name)));
        };
        let Some(t) = node.tests.first() else {
            return Err(err(
                node.line,
                format!("{} needs exactly one test", node.name),
            ));
        };
        Ok((self.test(t)?, self.block(b)?))
    }

    fn no_tests_no_block(node: &Node) -> Result<(), CompileError> {
        if !node.tests.is_empty() {
            return Err(err(
                node.line,
                format!("{} does not take a test", node.name),
            ));
        }
        if node.block.is_some() {
            return Err(err(
                node.line,
                format!("{} does not take a block", node.name),
            ));
        }
        Ok(())
    }

    fn flags_tag(&self, p: &Parsed) -> Result<Option<Vec<Value>>, CompileError> {
        match p.get("flags") {
            Some((_, Some(a), line)) => Ok(Some(self.strings_of(a, *line)?)),
            _ => Ok(None),
        }
    }

    fn str_value(&self, a: &Arg, line: u32) -> Result<Value, CompileError> {
        match a {
            Arg::Strings { values, .. } => {
                self.value(values.first().map_or("", |s| s.as_str()), line)
            }
            _ => Ok(Value::Lit(String::new())),
        }
    }

    fn command(&self, node: &Node) -> Result<Cmd, CompileError> {
        Self::no_tests_no_block(node)?;
        let line = node.line;
        let name = node.name.as_str();
        match name {
            "stop" | "discard" => {
                let p = self.split(node, |_| None)?;
                self.positional(node, &p, &[])?;
                Ok(if name == "stop" {
                    Cmd::Stop
                } else {
                    Cmd::Discard
                })
            }
            "keep" => {
                let p = self.split(node, |t| match t {
                    "flags" => Some((Kind::List, Some("imap4flags"))),
                    _ => None,
                })?;
                self.positional(node, &p, &[])?;
                Ok(Cmd::Keep {
                    flags: self.flags_tag(&p)?,
                })
            }
            "fileinto" => {
                self.need("fileinto", "fileinto", line)?;
                let p = self.split(node, |t| match t {
                    "flags" => Some((Kind::List, Some("imap4flags"))),
                    "copy" => Some((Kind::Flag, Some("copy"))),
                    "create" => Some((Kind::Flag, Some("mailbox"))),
                    _ => None,
                })?;
                let a = self.positional(node, &p, &[(Kind::Str, "mailbox")])?;
                let mailbox = match a.first() {
                    Some(a) => self.str_value(a, line)?,
                    None => Value::Lit(String::new()),
                };
                if mailbox == Value::Lit(String::new()) {
                    return Err(err(line, "fileinto needs a mailbox name"));
                }
                Ok(Cmd::FileInto {
                    mailbox,
                    flags: self.flags_tag(&p)?,
                    copy: p.has("copy"),
                    create: p.has("create"),
                })
            }
            "redirect" => {
                let p = self.split(node, |t| match t {
                    "copy" => Some((Kind::Flag, Some("copy"))),
                    _ => None,
                })?;
                let a = self.positional(node, &p, &[(Kind::Str, "address")])?;
                let address = match a.first() {
                    Some(a) => self.str_value(a, line)?,
                    None => Value::Lit(String::new()),
                };
                if let Value::Lit(s) = &address
                    && !crate::message::valid_redirect_address(s)
                {
                    return Err(err(
                        line,
                        format!("redirect: \"{s}\" is not a valid address"),
                    ));
                }
                Ok(Cmd::Redirect {
                    address,
                    copy: p.has("copy"),
                })
            }
            "reject" | "ereject" => {
                self.need(name, name, line)?;
                let p = self.split(node, |_| None)?;
                let a = self.positional(node, &p, &[(Kind::Str, "reason")])?;
                let reason = match a.first() {
                    Some(a) => self.str_value(a, line)?,
                    None => Value::Lit(String::new()),
                };
                Ok(Cmd::Reject {
                    reason,
                    ereject: name == "ereject",
                })
            }
            "setflag" | "addflag" | "removeflag" => {
                self.need("imap4flags", name, line)?;
                let p = self.split(node, |_| None)?;
                let op = match name {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                let (var, flags) = match p.pos.len() {
                    2 => {
                        self.need("variables", &format!("{name} with a variable name"), line)?;
                        let a = self.positional(
                            node,
                            &p,
                            &[(Kind::Str, "variable name"), (Kind::List, "flags")],
                        )?;
                        let (Some(v), Some(f)) = (a.first(), a.get(1)) else {
                            return Err(err(line, format!("{name} needs a list of flags")));
                        };
                        let var = self.str_value(v, line)?;
                        self.check_var_name(&var, line)?;
                        (Some(var), self.strings_of(f, line)?)
                    }
                    _ => {
                        let a = self.positional(node, &p, &[(Kind::List, "flags")])?;
                        let f = match a.first() {
                            Some(f) => self.strings_of(f, line)?,
                            None => Vec::new(),
                        };
                        (None, f)
                    }
                };
                Ok(Cmd::Flag { op, var, flags })
            }
            "set" => {
                self.need("variables", "set", line)?;
                let p = self.split(node, |t| match t {
                    "lower" | "upper" | "lowerfirst" | "upperfirst" | "quotewildcard"
                    | "length" => Some((Kind::Flag, None)),
                    _ => None,
                })?;
                let a = self.positional(node, &p, &[(Kind::Str, "name"), (Kind::Str, "value")])?;
                let (Some(n), Some(v)) = (a.first(), a.get(1)) else {
                    return Err(err(line, "set needs a name and a value"));
                };
                let name = self.str_value(n, line)?;
                let name = self.check_var_name(&name, line)?;
                let value = self.str_value(v, line)?;
                let mut modifiers: Vec<Modifier> = Vec::new();
                for (t, _, tline) in &p.tags {
                    let m = match t.as_str() {
                        "lower" => Modifier::Lower,
                        "upper" => Modifier::Upper,
                        "lowerfirst" => Modifier::LowerFirst,
                        "upperfirst" => Modifier::UpperFirst,
                        "quotewildcard" => Modifier::QuoteWildcard,
                        _ => Modifier::Length,
                    };
                    if modifiers.iter().any(|o| o.precedence() == m.precedence()) {
                        return Err(err(
                            *tline,
                            format!(
                                "set: :{t} conflicts with another modifier of the same precedence"
                            ),
                        ));
                    }
                    modifiers.push(m);
                }
                modifiers.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
                Ok(Cmd::Set {
                    name,
                    value,
                    modifiers,
                })
            }
            "vacation" => {
                self.need("vacation", "vacation", line)?;
                let p = self.split(node, |t| match t {
                    "days" => Some((Kind::Num, None)),
                    "seconds" => Some((Kind::Num, Some("vacation-seconds"))),
                    "subject" | "from" | "handle" => Some((Kind::Str, None)),
                    "addresses" => Some((Kind::List, None)),
                    "mime" => Some((Kind::Flag, None)),
                    _ => None,
                })?;
                let a = self.positional(node, &p, &[(Kind::Str, "reason")])?;
                let reason = match a.first() {
                    Some(a) => self.str_value(a, line)?,
                    None => Value::Lit(String::new()),
                };
                let period_secs = match (p.get("days"), p.get("seconds")) {
                    (Some(_), Some((_, _, l))) => {
                        return Err(err(*l, "vacation: :days and :seconds exclude each other"));
                    }
                    // RFC 5230 4.1: at least one day; we cap at 30 days.
                    (Some((_, Some(Arg::Number(d)), _)), None) => (*d).clamp(1, 30) * 86_400,
                    // RFC 6131: 0 means reply every time; cap at 30 days.
                    (None, Some((_, Some(Arg::Number(s)), _))) => (*s).min(30 * 86_400),
                    _ => 7 * 86_400,
                };
                let opt = |t: &str| -> Result<Option<Value>, CompileError> {
                    match p.get(t) {
                        Some((_, Some(a), l)) => Ok(Some(self.str_value(a, *l)?)),
                        _ => Ok(None),
                    }
                };
                let addresses = match p.get("addresses") {
                    Some((_, Some(a), l)) => self.strings_of(a, *l)?,
                    _ => Vec::new(),
                };
                Ok(Cmd::Vacation(Box::new(VacationCmd {
                    period_secs,
                    subject: opt("subject")?,
                    from: opt("from")?,
                    addresses,
                    mime: p.has("mime"),
                    handle: opt("handle")?,
                    reason,
                })))
            }
            "if" | "elsif" | "else" | "require" => Err(err(line, format!("misplaced {name}"))),
            other => Err(err(line, format!("unknown command \"{other}\""))),
        }
    }

    fn check_var_name(&self, v: &Value, line: u32) -> Result<String, CompileError> {
        match v {
            Value::Lit(s) if strings::is_identifier(s) => Ok(s.to_ascii_lowercase()),
            Value::Lit(s) => Err(err(line, format!("\"{s}\" is not a valid variable name"))),
            Value::Template(_) => Err(err(line, "a variable name must be a constant string")),
        }
    }

    pub(crate) fn test(&self, node: &Node) -> Result<Test, CompileError> {
        let line = node.line;
        let name = node.name.as_str();
        match name {
            "anyof" | "allof" => {
                if !node.args.is_empty() || !node.test_list {
                    return Err(err(
                        line,
                        format!("{name} needs a parenthesised list of tests"),
                    ));
                }
                let tests = node
                    .tests
                    .iter()
                    .map(|t| self.test(t))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if name == "anyof" {
                    Test::AnyOf(tests)
                } else {
                    Test::AllOf(tests)
                });
            }
            "not" => {
                if !node.args.is_empty() || node.test_list || node.tests.len() != 1 {
                    return Err(err(line, "not needs exactly one test"));
                }
                let Some(t) = node.tests.first() else {
                    return Err(err(line, "not needs exactly one test"));
                };
                return Ok(Test::Not(Box::new(self.test(t)?)));
            }
            _ => {}
        }
        if !node.tests.is_empty() {
            return Err(err(line, format!("{name} does not take a test")));
        }
        match name {
            "true" | "false" => {
                let p = self.split(node, |_| None)?;
                self.positional(node, &p, &[])?;
                Ok(if name == "true" {
                    Test::True
                } else {
                    Test::False
                })
            }
            "exists" => {
                let p = self.split(node, |_| None)?;
                let a = self.positional(node, &p, &[(Kind::List, "header names")])?;
                let names = match a.first() {
                    Some(a) => self.header_names(a, line)?,
                    None => Vec::new(),
                };
                Ok(Test::Exists(names))
            }
            "size" => {
                let p = self.split(node, |t| match t {
                    "over" | "under" => Some((Kind::Flag, None)),
                    _ => None,
                })?;
                let a = self.positional(node, &p, &[(Kind::Num, "limit")])?;
                let over = match (p.has("over"), p.has("under")) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => return Err(err(line, "size needs exactly one of :over and :under")),
                };
                let limit = match a.first() {
                    Some(Arg::Number(n)) => *n,
                    _ => 0,
                };
                Ok(Test::Size { over, limit })
            }
            "header" => {
                let p = self.split(node, |t| match_tags(t).or_else(|| index_tags(t)))?;
                let m = self.match_of(&p, line)?;
                let a = self.positional(
                    node,
                    &p,
                    &[(Kind::List, "header names"), (Kind::List, "keys")],
                )?;
                let (Some(n), Some(k)) = (a.first(), a.get(1)) else {
                    return Err(err(line, "header needs header names and keys"));
                };
                Ok(Test::Header {
                    m,
                    names: self.header_names(n, line)?,
                    keys: self.strings_of(k, line)?,
                    index: Self::index(&p)?,
                })
            }
            "address" => {
                let p = self.split(node, |t| address_tags(t).or_else(|| index_tags(t)))?;
                let m = self.match_of(&p, line)?;
                let part = Self::address_part(&p)?;
                let a = self.positional(
                    node,
                    &p,
                    &[(Kind::List, "header names"), (Kind::List, "keys")],
                )?;
                let (Some(n), Some(k)) = (a.first(), a.get(1)) else {
                    return Err(err(line, "address needs header names and keys"));
                };
                Ok(Test::Address {
                    m,
                    part,
                    names: self.header_names(n, line)?,
                    keys: self.strings_of(k, line)?,
                    index: Self::index(&p)?,
                })
            }
            "envelope" => {
                self.need("envelope", "envelope", line)?;
                let p = self.split(node, address_tags)?;
                let m = self.match_of(&p, line)?;
                let part = Self::address_part(&p)?;
                let a = self.positional(
                    node,
                    &p,
                    &[(Kind::List, "envelope parts"), (Kind::List, "keys")],
                )?;
                let (Some(n), Some(k)) = (a.first(), a.get(1)) else {
                    return Err(err(line, "envelope needs envelope parts and keys"));
                };
                let names = self.strings_of(n, line)?;
                for n in &names {
                    if let Value::Lit(s) = n
                        && !matches!(s.to_ascii_lowercase().as_str(), "from" | "to" | "auth")
                    {
                        return Err(err(line, format!("unknown envelope part \"{s}\"")));
                    }
                }
                Ok(Test::Envelope {
                    m,
                    part,
                    names,
                    keys: self.strings_of(k, line)?,
                })
            }
            "body" => {
                self.need("body", "body", line)?;
                let p = self.split(node, |t| match t {
                    "raw" | "text" => Some((Kind::Flag, None)),
                    "content" => Some((Kind::List, None)),
                    _ => match_tags(t),
                })?;
                let m = self.match_of(&p, line)?;
                let n = usize::from(p.has("raw"))
                    + usize::from(p.has("text"))
                    + usize::from(p.has("content"));
                if n > 1 {
                    return Err(err(
                        line,
                        "body takes one transform (:raw, :content or :text)",
                    ));
                }
                let transform = if p.has("raw") {
                    BodyTransform::Raw
                } else if let Some((_, Some(a), l)) = p.get("content") {
                    BodyTransform::Content(self.strings_of(a, *l)?)
                } else {
                    BodyTransform::Text
                };
                let a = self.positional(node, &p, &[(Kind::List, "keys")])?;
                let keys = match a.first() {
                    Some(k) => self.strings_of(k, line)?,
                    None => Vec::new(),
                };
                Ok(Test::Body { m, transform, keys })
            }
            "string" => {
                self.need("variables", "string", line)?;
                let p = self.split(node, match_tags)?;
                let m = self.match_of(&p, line)?;
                let a =
                    self.positional(node, &p, &[(Kind::List, "source"), (Kind::List, "keys")])?;
                let (Some(s), Some(k)) = (a.first(), a.get(1)) else {
                    return Err(err(line, "string needs a source and keys"));
                };
                Ok(Test::String {
                    m,
                    sources: self.strings_of(s, line)?,
                    keys: self.strings_of(k, line)?,
                })
            }
            "hasflag" => {
                self.need("imap4flags", "hasflag", line)?;
                let p = self.split(node, match_tags)?;
                let m = self.match_of(&p, line)?;
                if p.pos.len() == 2 {
                    self.need("variables", "hasflag with variable names", line)?;
                    let a = self.positional(
                        node,
                        &p,
                        &[(Kind::List, "variables"), (Kind::List, "flags")],
                    )?;
                    let (Some(v), Some(k)) = (a.first(), a.get(1)) else {
                        return Err(err(line, "hasflag needs flags"));
                    };
                    let vars = self.strings_of(v, line)?;
                    for v in &vars {
                        self.check_var_name(v, line)?;
                    }
                    Ok(Test::HasFlag {
                        m,
                        vars: Some(vars),
                        keys: self.strings_of(k, line)?,
                    })
                } else {
                    let a = self.positional(node, &p, &[(Kind::List, "flags")])?;
                    let keys = match a.first() {
                        Some(k) => self.strings_of(k, line)?,
                        None => Vec::new(),
                    };
                    Ok(Test::HasFlag {
                        m,
                        vars: None,
                        keys,
                    })
                }
            }
            "date" => {
                self.need("date", "date", line)?;
                let p = self.split(node, |t| match t {
                    "zone" => Some((Kind::Str, None)),
                    "originalzone" => Some((Kind::Flag, None)),
                    _ => match_tags(t).or_else(|| index_tags(t)),
                })?;
                let m = self.match_of(&p, line)?;
                let zone = self.zone(&p)?;
                let a = self.positional(
                    node,
                    &p,
                    &[
                        (Kind::Str, "header name"),
                        (Kind::Str, "date part"),
                        (Kind::List, "keys"),
                    ],
                )?;
                let (Some(h), Some(dp), Some(k)) = (a.first(), a.get(1), a.get(2)) else {
                    return Err(err(line, "date needs a header name, a date part and keys"));
                };
                let header = self
                    .header_names(h, line)?
                    .into_iter()
                    .next()
                    .unwrap_or(Value::Lit(String::new()));
                Ok(Test::Date {
                    m,
                    zone,
                    header,
                    part: self.date_part(dp, line)?,
                    keys: self.strings_of(k, line)?,
                    index: Self::index(&p)?,
                })
            }
            "currentdate" => {
                self.need("date", "currentdate", line)?;
                let p = self.split(node, |t| match t {
                    "zone" => Some((Kind::Str, None)),
                    _ => match_tags(t),
                })?;
                let m = self.match_of(&p, line)?;
                let zone = self.zone(&p)?;
                let a =
                    self.positional(node, &p, &[(Kind::Str, "date part"), (Kind::List, "keys")])?;
                let (Some(dp), Some(k)) = (a.first(), a.get(1)) else {
                    return Err(err(line, "currentdate needs a date part and keys"));
                };
                Ok(Test::CurrentDate {
                    m,
                    zone,
                    part: self.date_part(dp, line)?,
                    keys: self.strings_of(k, line)?,
                })
            }
            other => Err(err(line, format!("unknown test \"{other}\""))),
        }
    }
}

/// `+hhmm` / `-hhmm` to seconds east of UTC.
pub(crate) fn parse_zone(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 5 || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = i32::from(b[1] - b'0') * 10 + i32::from(b[2] - b'0');
    let m = i32::from(b[3] - b'0') * 10 + i32::from(b[4] - b'0');
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Processes the leading `require` commands and checks each extension.
pub(crate) fn requires(nodes: &[Node]) -> Result<(Vec<&'static str>, usize), CompileError> {
    let mut required: Vec<&'static str> = Vec::new();
    let mut n = 0;
    for node in nodes {
        if node.name != "require" {
            break;
        }
        n += 1;
        if !node.tests.is_empty() || node.block.is_some() || node.args.len() != 1 {
            return Err(err(node.line, "require takes one string list"));
        }
        let Some((Arg::Strings { values, .. }, _)) = node.args.first() else {
            return Err(err(node.line, "require takes one string list"));
        };
        for v in values {
            let lower = v.to_ascii_lowercase();
            if lower == "regex" {
                return Err(err(node.line, "the regex extension is not supported"));
            }
            match SUPPORTED.iter().find(|s| **s == lower) {
                Some(s) => {
                    if !required.contains(s) {
                        required.push(s);
                    }
                }
                None => return Err(err(node.line, format!("unsupported extension \"{v}\""))),
            }
        }
    }
    // vacation-seconds implies vacation (RFC 6131).
    if required.contains(&"vacation-seconds") && !required.contains(&"vacation") {
        required.push("vacation");
    }
    Ok((required, n))
}
