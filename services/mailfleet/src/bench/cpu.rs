//! CPU time of server processes, from `/proc/<pid>/stat` (utime + stime),
//! so a load figure can be given as CPU per command beside commands/s.
//!
//! Processes are chosen by name: an entry `NAME` matches a process whose
//! comm is NAME (Dovecot's `imap`, `auth`; postgres backends), a
//! `mailfleet serve NAME` process, or a program called NAME. `NAME:TEXT`
//! also requires TEXT in the command line (`postgres:mailfleet_dev`: the
//! backends of one database, not the whole shared server's).
//!
//! Processes that exit during the run (Dovecot's per-connection `imap` and
//! `imap-login`) are gone before the second reading; their time reaches
//! their parent's cutime + cstime when it reaps them, which is reported
//! apart as "exited children".

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub name: String,
    filter: Option<String>,
}

/// `dovecot,imap,imap-login,auth` -> matchers; empty entries are skipped.
pub fn parse_list(list: &str) -> Vec<Matcher> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once(':') {
            Some((name, filter)) => Matcher {
                name: name.to_owned(),
                filter: Some(filter.to_owned()),
            },
            None => Matcher {
                name: e.to_owned(),
                filter: None,
            },
        })
        .collect()
}

/// One reading of one process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    /// utime + stime.
    pub own: u64,
    /// cutime + cstime: children it has reaped.
    pub children: u64,
}

/// Which matcher (by name) a process answers to, if any.
fn matches<'m>(matchers: &'m [Matcher], comm: &str, cmdline: &[u8]) -> Option<&'m str> {
    let args: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let program = args
        .first()
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|p| Path::new(p).file_name()?.to_str())
        .unwrap_or_default();
    let joined = String::from_utf8_lossy(&args.join(&b' ')).into_owned();
    matchers
        .iter()
        .find(|m| {
            let named = comm == m.name
                || program == m.name
                || (args.get(1) == Some(&&b"serve"[..]) && args.get(2) == Some(&m.name.as_bytes()));
            named
                && m.filter
                    .as_ref()
                    .is_none_or(|f| joined.contains(f.as_str()))
        })
        .map(|m| m.name.as_str())
}

/// (comm, ticks) from the text of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<(String, Ticks)> {
    // comm may hold spaces and parentheses: it ends at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state); utime..cstime are fields 14..17.
    let n = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    Some((
        comm,
        Ticks {
            own: n(14)? + n(15)?,
            children: n(16)? + n(17)?,
        },
    ))
}

/// Every matching process now: pid -> (name, ticks).
pub fn snapshot(matchers: &[Matcher]) -> HashMap<u32, (String, Ticks)> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let dir = Path::new("/proc").join(pid.to_string());
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Some((comm, ticks)) = parse_stat(&stat) else {
            continue;
        };
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if let Some(name) = matches(matchers, &comm, &cmdline) {
            found.insert(pid, (name.to_owned(), ticks));
        }
    }
    found
}

/// CPU seconds used between two snapshots, per name.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Used {
    /// By the processes themselves (those alive at the end; a process born
    /// during the run counts from zero).
    pub own: f64,
    /// By children they reaped during the run.
    pub exited_children: f64,
    /// Processes seen at the end.
    pub processes: usize,
}

pub fn used(
    before: &HashMap<u32, (String, Ticks)>,
    after: &HashMap<u32, (String, Ticks)>,
    ticks_per_second: f64,
) -> BTreeMap<String, Used> {
    let mut out: BTreeMap<String, Used> = BTreeMap::new();
    for (pid, (name, t1)) in after {
        let t0 = before
            .get(pid)
            .filter(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .unwrap_or(Ticks {
                own: 0,
                children: 0,
            });
        let u = out.entry(name.clone()).or_default();
        u.own += t1.own.saturating_sub(t0.own) as f64 / ticks_per_second;
        u.exited_children += t1.children.saturating_sub(t0.children) as f64 / ticks_per_second;
        u.processes += 1;
    }
    out
}

/// Prints the CPU `used` per operation completed (`count` of them, each a
/// `unit`: "command", "session"), each process name apart and summed.
pub fn print_per_operation(
    used: &BTreeMap<String, Used>,
    procs: &[Matcher],
    count: u64,
    unit: &str,
) {
    if used.is_empty() {
        println!(
            "    CPU: no process of {} found in /proc",
            procs
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return;
    }
    let per = |s: f64| s * 1e3 / (count.max(1) as f64);
    println!("    server CPU (utime+stime from /proc over the run) per {unit} completed:");
    let mut sum = 0.0;
    for (name, u) in used {
        sum += u.own + u.exited_children;
        println!(
            "      {name:<14} {:>3} processes {:>7.2} s  {:.3} ms/{unit}",
            u.processes,
            u.own,
            per(u.own)
        );
        if u.exited_children > 0.0 {
            println!(
                "      {:<14}   exited children {:>7.2} s  {:.3} ms/{unit}",
                "",
                u.exited_children,
                per(u.exited_children)
            );
        }
    }
    println!(
        "      {:<14} {:>17.2} s  {:.3} ms/{unit}",
        "sum",
        sum,
        per(sum)
    );
}

/// Clock ticks per second of /proc/<pid>/stat. USER_HZ is 100 on every
/// Linux architecture a server runs on, and the kernel keeps it fixed
/// whatever CONFIG_HZ is.
pub const TICKS_PER_SECOND: f64 = 100.0;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stat_and_matching() {
        let stat = "42 (imap-login) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 11 9 20 0 1 0 100 1000 10";
        let (comm, t) = parse_stat(stat).unwrap();
        assert_eq!(comm, "imap-login");
        assert_eq!(
            t,
            Ticks {
                own: 10,
                children: 20
            }
        );
        let odd = "7 (a) b) R 1 1 1 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 1 1 1";
        assert_eq!(parse_stat(odd).unwrap().0, "a) b");

        let m = parse_list("imap-frontend, postgres:mailfleet_x,,dovecot");
        assert_eq!(m.len(), 3);
        assert_eq!(
            matches(&m, "mailfleet", b"/t/mailfleet\0serve\0imap-frontend\0"),
            Some("imap-frontend")
        );
        assert_eq!(
            matches(&m, "mailfleet", b"/t/mailfleet\0bench\0imap\0"),
            None
        );
        assert_eq!(
            matches(
                &m,
                "postgres",
                b"postgres: postgres mailfleet_x 127.0.0.1(5) idle\0"
            ),
            Some("postgres")
        );
        assert_eq!(
            matches(
                &m,
                "postgres",
                b"postgres: postgres other 127.0.0.1(5) idle\0"
            ),
            None
        );
        assert_eq!(
            matches(&m, "dovecot", b"/usr/sbin/dovecot\0-c\0x\0"),
            Some("dovecot")
        );

        let mut before = HashMap::new();
        before.insert(
            1,
            (
                "dovecot".to_owned(),
                Ticks {
                    own: 5,
                    children: 10,
                },
            ),
        );
        let mut after = before.clone();
        after.insert(
            1,
            (
                "dovecot".to_owned(),
                Ticks {
                    own: 7,
                    children: 60,
                },
            ),
        );
        after.insert(
            2,
            (
                "imap".to_owned(),
                Ticks {
                    own: 30,
                    children: 0,
                },
            ),
        );
        let u = used(&before, &after, 100.0);
        assert_eq!(u["dovecot"].own, 0.02);
        assert_eq!(u["dovecot"].exited_children, 0.5);
        assert_eq!(u["imap"].own, 0.3);
    }
}
