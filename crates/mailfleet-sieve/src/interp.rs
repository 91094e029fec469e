//! Runs a compiled program against one message: evaluates tests, collects actions, applies
//! implicit keep and the conflict rules, and stops at any limit with a `RuntimeError`.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

use crate::ast::*;
use crate::message::{self, Msg};
use crate::{Action, Context, Limits, Program, RuntimeError, Vacation, matching, strings};

enum Flow {
    Continue,
    Stop,
}

struct Run<'a> {
    ctx: &'a Context<'a>,
    limits: &'a Limits,
    msg: Msg<'a>,
    variables: bool,
    vars: HashMap<String, String>,
    match_vars: Vec<String>,
    /// The imap4flags internal variable.
    flags: Vec<String>,
    actions: Vec<Action>,
    implicit_keep: bool,
    discarded: bool,
    steps: u64,
    redirects: usize,
    vacation_done: bool,
    line: u32,
}

pub(crate) fn run(
    prog: &Program,
    ctx: &Context,
    limits: &Limits,
) -> Result<(Vec<Action>, bool), RuntimeError> {
    let mut r = Run {
        ctx,
        limits,
        msg: Msg::new(ctx.message),
        variables: prog.extensions.contains(&"variables"),
        vars: HashMap::new(),
        match_vars: Vec::new(),
        flags: Vec::new(),
        actions: Vec::new(),
        implicit_keep: true,
        discarded: false,
        steps: 0,
        redirects: 0,
        vacation_done: false,
        line: 1,
    };
    r.block(&prog.stmts)?;
    r.finish()
}

fn lower_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Run<'_> {
    fn fail(&self, message: impl Into<String>) -> RuntimeError {
        RuntimeError {
            line: self.line,
            message: message.into(),
        }
    }

    fn step(&mut self, n: u64) -> Result<(), RuntimeError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.limits.max_steps {
            return Err(self.fail(format!("more than {} steps", self.limits.max_steps)));
        }
        Ok(())
    }

    fn expand(&self, v: &Value) -> String {
        match v {
            Value::Lit(s) => s.clone(),
            Value::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Lit(s) => out.push_str(s),
                        Part::Var(n) => out.push_str(self.vars.get(n).map_or("", |s| s.as_str())),
                        Part::Match(i) => {
                            out.push_str(self.match_vars.get(*i).map_or("", |s| s.as_str()))
                        }
                    }
                }
                // Literal text is bounded by the script size and each variable by its limit.
                strings::truncate(
                    out,
                    self.limits.max_script_bytes + self.limits.max_variable_bytes,
                )
            }
        }
    }

    fn expand_all(&self, v: &[Value]) -> Vec<String> {
        v.iter().map(|x| self.expand(x)).collect()
    }

    fn block(&mut self, stmts: &[Stmt]) -> Result<Flow, RuntimeError> {
        for s in stmts {
            self.line = s.line;
            self.step(1)?;
            if let Flow::Stop = self.command(&s.cmd)? {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    fn push(&mut self, a: Action) -> Result<(), RuntimeError> {
        // Duplicates collapse (RFC 5228 2.10.3); keep/fileinto to one place merge their flags.
        for old in &mut self.actions {
            match (old, &a) {
                (Action::Keep { flags: f1 }, Action::Keep { flags: f2 }) => {
                    merge_flags(f1, f2);
                    return Ok(());
                }
                (
                    Action::FileInto {
                        mailbox: m1,
                        flags: f1,
                        create: c1,
                    },
                    Action::FileInto {
                        mailbox: m2,
                        flags: f2,
                        create: c2,
                    },
                ) if m1 == m2 => {
                    merge_flags(f1, f2);
                    *c1 |= *c2;
                    return Ok(());
                }
                (Action::Redirect { address: a1 }, Action::Redirect { address: a2 })
                    if lower_eq(a1, a2) =>
                {
                    return Ok(());
                }
                _ => {}
            }
        }
        if self.actions.len() >= self.limits.max_actions {
            return Err(self.fail(format!("more than {} actions", self.limits.max_actions)));
        }
        self.actions.push(a);
        Ok(())
    }

    fn flag_list(&self, v: &Option<Vec<Value>>) -> Vec<String> {
        match v {
            Some(list) => {
                let mut out = Vec::new();
                merge_flags(&mut out, &split_flags(&self.expand_all(list)));
                out
            }
            None => self.flags.clone(),
        }
    }

    fn command(&mut self, cmd: &Cmd) -> Result<Flow, RuntimeError> {
        match cmd {
            Cmd::If {
                branches,
                otherwise,
            } => {
                for (test, body) in branches {
                    if self.test(test)? {
                        return self.block(body);
                    }
                }
                if let Some(body) = otherwise {
                    return self.block(body);
                }
            }
            Cmd::Stop => return Ok(Flow::Stop),
            Cmd::Keep { flags } => {
                let flags = self.flag_list(flags);
                self.push(Action::Keep { flags })?;
                self.implicit_keep = false;
            }
            Cmd::Discard => {
                self.implicit_keep = false;
                self.discarded = true;
            }
            Cmd::FileInto {
                mailbox,
                flags,
                copy,
                create,
            } => {
                let mailbox = self.expand(mailbox);
                if mailbox.is_empty() || mailbox.chars().any(char::is_control) {
                    return Err(self.fail(format!("fileinto: invalid mailbox name {mailbox:?}")));
                }
                let flags = self.flag_list(flags);
                self.push(Action::FileInto {
                    mailbox,
                    flags,
                    create: *create,
                })?;
                if !copy {
                    self.implicit_keep = false;
                }
            }
            Cmd::Redirect { address, copy } => {
                let address = self.expand(address);
                if !message::valid_redirect_address(&address) {
                    return Err(self.fail(format!("redirect: {address:?} is not a valid address")));
                }
                let dup = self
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Redirect { address: o } if lower_eq(o, &address)));
                if !dup {
                    self.redirects += 1;
                    if self.redirects > self.limits.max_redirects {
                        return Err(
                            self.fail(format!("more than {} redirects", self.limits.max_redirects))
                        );
                    }
                }
                self.push(Action::Redirect { address })?;
                if !copy {
                    self.implicit_keep = false;
                }
            }
            Cmd::Reject { reason, ereject } => {
                let reason = self.expand(reason);
                if self
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Reject { .. } | Action::Ereject { .. }))
                {
                    return Err(self.fail("more than one reject"));
                }
                self.push(if *ereject {
                    Action::Ereject { reason }
                } else {
                    Action::Reject { reason }
                })?;
                self.implicit_keep = false;
            }
            Cmd::Flag { op, var, flags } => {
                let given = split_flags(&self.expand_all(flags));
                let current = match var {
                    Some(v) => {
                        let name = self.expand(v).to_ascii_lowercase();
                        split_flags(&[self.vars.get(&name).cloned().unwrap_or_default()])
                    }
                    None => self.flags.clone(),
                };
                let mut new = match op {
                    FlagOp::Set => Vec::new(),
                    _ => current,
                };
                match op {
                    FlagOp::Set | FlagOp::Add => merge_flags(&mut new, &given),
                    FlagOp::Remove => new.retain(|f| !given.iter().any(|g| lower_eq(f, g))),
                }
                match var {
                    Some(v) => {
                        let name = self.expand(v).to_ascii_lowercase();
                        let joined =
                            strings::truncate(new.join(" "), self.limits.max_variable_bytes);
                        self.vars.insert(name, joined);
                    }
                    None => self.flags = new,
                }
            }
            Cmd::Set {
                name,
                value,
                modifiers,
            } => {
                let v = strings::apply_modifiers(self.expand(value), modifiers);
                let v = strings::truncate(v, self.limits.max_variable_bytes);
                self.vars.insert(name.clone(), v);
            }
            Cmd::Vacation(v) => self.vacation(v)?,
        }
        Ok(Flow::Continue)
    }

    fn vacation(&mut self, v: &VacationCmd) -> Result<(), RuntimeError> {
        if self.vacation_done {
            return Err(self.fail("more than one vacation"));
        }
        self.vacation_done = true;
        let sender = self.ctx.envelope.from.trim();
        let mut ours: Vec<String> = self
            .ctx
            .own_addresses
            .iter()
            .map(|s| s.to_string())
            .collect();
        ours.push(self.ctx.envelope.to.to_string());
        ours.extend(self.expand_all(&v.addresses));
        if sender.is_empty() || ours.iter().any(|o| lower_eq(o, sender)) {
            return Ok(());
        }
        let (local, _) = message::split_address(sender);
        let local = local.to_ascii_lowercase();
        if local == "mailer-daemon"
            || local == "listserv"
            || local == "majordomo"
            || local.starts_with("owner-")
            || local.ends_with("-request")
            || local.ends_with("-owner")
        {
            return Ok(());
        }
        if self.msg.has_prefix("list-") {
            return Ok(());
        }
        for raw in self.msg.raw_values("precedence") {
            let p = message::decode_text(raw).to_ascii_lowercase();
            if matches!(p.as_str(), "bulk" | "list" | "junk") {
                return Ok(());
            }
        }
        for raw in self.msg.raw_values("auto-submitted") {
            let a = message::decode_text(raw).to_ascii_lowercase();
            let first = a.split([';', ' ', '(']).next().unwrap_or("");
            if first != "no" {
                return Ok(());
            }
        }
        let mut addressed = false;
        for h in ["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"] {
            for raw in self.msg.raw_values(h) {
                if message::decode_addresses(raw)
                    .iter()
                    .any(|a| ours.iter().any(|o| lower_eq(o, a)))
                {
                    addressed = true;
                }
            }
        }
        if !addressed {
            return Ok(());
        }
        let reason = self.expand(&v.reason);
        let subject_arg = v.subject.as_ref().map(|s| self.expand(s));
        let from = v.from.as_ref().map(|s| self.expand(s));
        let subject = match &subject_arg {
            Some(s) => s.clone(),
            None => match self.msg.raw_values("subject").first() {
                Some(raw) => format!("Auto: {}", message::decode_text(raw)),
                None => "Automated reply".to_string(),
            },
        };
        let handle = match &v.handle {
            Some(h) => self.expand(h),
            // RFC 5230 4.2: without :handle, replies differ when the reply would.
            None => {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                let parts = [
                    reason.as_str(),
                    subject_arg.as_deref().unwrap_or(""),
                    from.as_deref().unwrap_or(""),
                    if v.mime { "mime" } else { "" },
                ];
                for p in parts {
                    for b in p.bytes().chain(std::iter::once(0)) {
                        h ^= u64::from(b);
                        h = h.wrapping_mul(0x0100_0000_01b3);
                    }
                }
                format!("auto-{h:016x}")
            }
        };
        self.push(Action::Vacation(Vacation {
            to: sender.to_string(),
            from,
            subject,
            reason,
            mime: v.mime,
            handle,
            period: std::time::Duration::from_secs(v.period_secs),
        }))
    }

    /// The final actions, and whether the keep among them is the implicit one.
    fn finish(mut self) -> Result<(Vec<Action>, bool), RuntimeError> {
        let rejected = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reject { .. } | Action::Ereject { .. }));
        if rejected {
            // RFC 5429 2.2 / RFC 5230 4.7: reject excludes keep, fileinto, redirect and vacation.
            if self.actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Keep { .. }
                        | Action::FileInto { .. }
                        | Action::Redirect { .. }
                        | Action::Vacation(_)
                )
            }) {
                return Err(self
                    .fail("reject cannot be combined with keep, fileinto, redirect or vacation"));
            }
        }
        if self.implicit_keep {
            let flags = self.flags.clone();
            self.push(Action::Keep { flags })?;
        }
        let delivers = self.actions.iter().any(|a| {
            matches!(
                a,
                Action::Keep { .. }
                    | Action::FileInto { .. }
                    | Action::Redirect { .. }
                    | Action::Reject { .. }
                    | Action::Ereject { .. }
            )
        });
        if self.discarded && !delivers {
            self.actions.push(Action::Discard);
        }
        Ok((self.actions, self.implicit_keep))
    }

    fn test(&mut self, t: &Test) -> Result<bool, RuntimeError> {
        self.step(1)?;
        Ok(match t {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(t)?,
            Test::AnyOf(ts) => {
                for t in ts {
                    if self.test(t)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::AllOf(ts) => {
                for t in ts {
                    if !self.test(t)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::Exists(names) => self.expand_all(names).iter().all(|n| self.msg.has(n)),
            Test::Size { over, limit } => {
                // The stored size, not the bytes at hand: a caller may pass only the start.
                let size = self.ctx.size.max(self.ctx.message.len() as u64);
                if *over { size > *limit } else { size < *limit }
            }
            Test::Header {
                m,
                names,
                keys,
                index,
            } => {
                let mut values = Vec::new();
                for n in self.expand_all(names) {
                    for raw in select(self.msg.raw_values(&n), *index) {
                        values.push(message::decode_text(raw));
                    }
                }
                self.compare(*m, &values, keys)?
            }
            Test::Address {
                m,
                part,
                names,
                keys,
                index,
            } => {
                let mut values = Vec::new();
                for n in self.expand_all(names) {
                    for raw in select(self.msg.raw_values(&n), *index) {
                        for a in message::decode_addresses(raw) {
                            if let Some(p) = address_part(&a, *part) {
                                values.push(p);
                            }
                        }
                    }
                }
                self.compare(*m, &values, keys)?
            }
            Test::Envelope {
                m,
                part,
                names,
                keys,
            } => {
                let env = self.ctx.envelope;
                let mut values = Vec::new();
                for n in self.expand_all(names) {
                    let a = match n.to_ascii_lowercase().as_str() {
                        "from" => Some(env.from),
                        "to" => Some(env.to),
                        "auth" => env.auth,
                        _ => None,
                    };
                    match a {
                        // RFC 5228 5.4: the null reverse-path is "" whatever the part.
                        Some("") => values.push(String::new()),
                        Some(a) => {
                            if let Some(p) = address_part(a, *part) {
                                values.push(p);
                            }
                        }
                        None => {}
                    }
                }
                self.compare(*m, &values, keys)?
            }
            Test::Body { m, transform, keys } => {
                let budget = self.limits.max_body_scan_bytes;
                let values = match transform {
                    BodyTransform::Raw => {
                        let b = self.msg.body();
                        let b = b.get(..budget.min(b.len())).unwrap_or_default();
                        vec![String::from_utf8_lossy(b).into_owned()]
                    }
                    BodyTransform::Text => self.msg.body_parts(None, budget),
                    BodyTransform::Content(types) => {
                        let types = self.expand_all(types);
                        self.msg.body_parts(Some(&types), budget)
                    }
                };
                self.step(values.iter().map(|v| v.len() as u64 / 1024).sum())?;
                self.compare(*m, &values, keys)?
            }
            Test::String { m, sources, keys } => {
                let mut values = self.expand_all(sources);
                if matches!(m.kind, MatchType::Count(_)) {
                    values.retain(|v| !v.is_empty());
                }
                self.compare(*m, &values, keys)?
            }
            Test::HasFlag { m, vars, keys } => {
                let values = match vars {
                    Some(vars) => {
                        let mut v = Vec::new();
                        for name in self.expand_all(vars) {
                            let s = self
                                .vars
                                .get(&name.to_ascii_lowercase())
                                .cloned()
                                .unwrap_or_default();
                            merge_flags(&mut v, &split_flags(&[s]));
                        }
                        v
                    }
                    None => self.flags.clone(),
                };
                self.compare(*m, &values, keys)?
            }
            Test::Date {
                m,
                zone,
                header,
                part,
                keys,
                index,
            } => {
                let name = self.expand(header);
                let raws = select(self.msg.raw_values(&name), *index);
                let values: Vec<String> = raws
                    .first()
                    .and_then(|raw| message::decode_date(&name, raw))
                    .map(|d| date_part(self.in_zone(d, zone), *part))
                    .into_iter()
                    .collect();
                self.compare(*m, &values, keys)?
            }
            Test::CurrentDate {
                m,
                zone,
                part,
                keys,
            } => {
                let d = self.in_zone(self.ctx.now, zone);
                let values = vec![date_part(d, *part)];
                self.compare(*m, &values, keys)?
            }
        })
    }

    fn in_zone(&self, d: DateTime<FixedOffset>, zone: &Zone) -> DateTime<FixedOffset> {
        match zone {
            Zone::Original => d,
            Zone::Local => d.with_timezone(self.ctx.now.offset()),
            Zone::Fixed(secs) => match FixedOffset::east_opt(*secs) {
                Some(z) => d.with_timezone(&z),
                None => d,
            },
        }
    }

    fn compare(
        &mut self,
        m: Match,
        values: &[String],
        keys: &[Value],
    ) -> Result<bool, RuntimeError> {
        let keys = self.expand_all(keys);
        if let MatchType::Count(rel) = m.kind {
            let n = values.len().to_string();
            self.step(keys.len() as u64)?;
            return Ok(keys
                .iter()
                .any(|k| matching::relational(m.comparator, rel, &n, k)));
        }
        for v in values {
            for k in &keys {
                self.step(1 + (v.len() as u64 * k.len() as u64) / 4096)?;
                let hit = match m.kind {
                    MatchType::Is => matching::is(m.comparator, v, k),
                    MatchType::Contains => matching::contains(m.comparator, v, k),
                    MatchType::Value(rel) => matching::relational(m.comparator, rel, v, k),
                    MatchType::Count(_) => false,
                    MatchType::Matches => match matching::matches(m.comparator, v, k) {
                        Some(caps) => {
                            if self.variables {
                                let max = self.limits.max_variable_bytes;
                                let mut mv = vec![strings::truncate(v.clone(), max)];
                                mv.extend(caps.into_iter().map(|c| strings::truncate(c, max)));
                                self.match_vars = mv;
                            }
                            true
                        }
                        None => false,
                    },
                };
                if hit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// `:index n [:last]`: the one occurrence it names, or all of them.
fn select<T: Copy>(v: Vec<T>, index: Option<Index>) -> Vec<T> {
    match index {
        None => v,
        Some(Index { n, last }) => {
            let Ok(n) = usize::try_from(n) else {
                return Vec::new();
            };
            let i = if last {
                v.len().checked_sub(n)
            } else {
                n.checked_sub(1)
            };
            i.and_then(|i| v.get(i).copied()).into_iter().collect()
        }
    }
}

fn address_part(a: &str, part: AddressPart) -> Option<String> {
    let (local, domain) = message::split_address(a);
    Some(match part {
        AddressPart::All => a.to_string(),
        AddressPart::Localpart => local.to_string(),
        AddressPart::Domain => domain.to_string(),
        // RFC 5233 with separator '+'.
        AddressPart::User => local.split_once('+').map_or(local, |(u, _)| u).to_string(),
        AddressPart::Detail => local.split_once('+')?.1.to_string(),
    })
}

fn split_flags(list: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in list {
        for f in s.split_whitespace() {
            if !out.iter().any(|o| lower_eq(o, f)) {
                out.push(f.to_string());
            }
        }
    }
    out
}

fn merge_flags(into: &mut Vec<String>, add: &[String]) {
    for f in add {
        if !into.iter().any(|o| lower_eq(o, f)) {
            into.push(f.clone());
        }
    }
}

fn date_part(d: DateTime<FixedOffset>, part: DatePart) -> String {
    match part {
        DatePart::Year => format!("{:04}", d.year()),
        DatePart::Month => format!("{:02}", d.month()),
        DatePart::Day => format!("{:02}", d.day()),
        DatePart::Date => d.format("%Y-%m-%d").to_string(),
        DatePart::Julian => {
            // Modified Julian Day: days since 1858-11-17 (RFC 5260 4.2).
            let epoch = chrono::NaiveDate::from_ymd_opt(1858, 11, 17);
            epoch
                .map(|e| (d.date_naive() - e).num_days().to_string())
                .unwrap_or_default()
        }
        DatePart::Hour => format!("{:02}", d.hour()),
        DatePart::Minute => format!("{:02}", d.minute()),
        DatePart::Second => format!("{:02}", d.second()),
        DatePart::Time => d.format("%H:%M:%S").to_string(),
        DatePart::Iso8601 => d.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        DatePart::Std11 => d.format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        DatePart::Zone => d.format("%z").to_string(),
        DatePart::Weekday => d.weekday().num_days_from_sunday().to_string(),
    }
}
