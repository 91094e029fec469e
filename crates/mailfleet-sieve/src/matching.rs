//! Comparators (RFC 4790: i;octet, i;ascii-casemap, i;ascii-numeric) and match types (RFC 5228
//! 2.7.1, relational RFC 5231), with `:matches` capturing what each wildcard matched (RFC 5229).

use std::cmp::Ordering;

use crate::ast::{Comparator, Relation};

fn fold(c: Comparator, ch: char) -> char {
    match c {
        Comparator::AsciiCasemap => ch.to_ascii_lowercase(),
        _ => ch,
    }
}

pub(crate) fn is(c: Comparator, value: &str, key: &str) -> bool {
    match c {
        Comparator::Octet => value == key,
        Comparator::AsciiCasemap => value.eq_ignore_ascii_case(key),
        Comparator::AsciiNumeric => numeric_cmp(value, key) == Ordering::Equal,
    }
}

pub(crate) fn contains(c: Comparator, value: &str, key: &str) -> bool {
    match c {
        Comparator::AsciiCasemap => value
            .to_ascii_lowercase()
            .contains(&key.to_ascii_lowercase()),
        _ => value.contains(key),
    }
}

/// i;ascii-numeric: the leading digits as an unbounded number; a string that does not start
/// with a digit is positive infinity (RFC 4790 9.1).
fn numeric_cmp(a: &str, b: &str) -> Ordering {
    fn digits(s: &str) -> Option<&str> {
        let end = s
            .bytes()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(s.len());
        if end == 0 {
            return None;
        }
        let d = &s[..end];
        let trimmed = d.trim_start_matches('0');
        Some(if trimmed.is_empty() { "0" } else { trimmed })
    }
    match (digits(a), digits(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
    }
}

fn ordering(c: Comparator, a: &str, b: &str) -> Ordering {
    match c {
        Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
        Comparator::AsciiCasemap => a
            .bytes()
            .map(|x| x.to_ascii_lowercase())
            .cmp(b.bytes().map(|x| x.to_ascii_lowercase())),
        Comparator::AsciiNumeric => numeric_cmp(a, b),
    }
}

pub(crate) fn relational(c: Comparator, r: Relation, value: &str, key: &str) -> bool {
    let o = ordering(c, value, key);
    match r {
        Relation::Gt => o == Ordering::Greater,
        Relation::Ge => o != Ordering::Less,
        Relation::Lt => o == Ordering::Less,
        Relation::Le => o != Ordering::Greater,
        Relation::Eq => o == Ordering::Equal,
        Relation::Ne => o != Ordering::Equal,
    }
}

#[derive(Clone, Copy)]
enum Pat {
    Lit(char),
    Any,
    Star,
}

fn compile_pattern(c: Comparator, key: &str) -> Vec<Pat> {
    let mut out = Vec::new();
    let mut it = key.chars();
    while let Some(ch) = it.next() {
        out.push(match ch {
            '*' => Pat::Star,
            '?' => Pat::Any,
            '\\' => match it.next() {
                Some(n) => Pat::Lit(fold(c, n)),
                None => Pat::Lit('\\'),
            },
            other => Pat::Lit(fold(c, other)),
        });
    }
    out
}

/// `:matches`: `*` any run, `?` one character, `\` escapes. On success returns what each
/// wildcard matched, in order; the earliest `*` takes as little as it can (RFC 5229 3.2).
/// Linear backtracking over the last `*` only, so the cost is at most value × pattern.
pub(crate) fn matches(c: Comparator, value: &str, key: &str) -> Option<Vec<String>> {
    let pat = compile_pattern(c, key);
    let val: Vec<char> = value.chars().map(|ch| fold(c, ch)).collect();
    let orig: Vec<char> = value.chars().collect();
    let (mut p, mut v) = (0usize, 0usize);
    // Each wildcard's (start, end) in `val`, in pattern order.
    let mut caps: Vec<(usize, usize)> = Vec::new();
    // The last `*`: its pattern index, the value index where it started, how many captures
    // preceded it, and its current length.
    let mut star: Option<(usize, usize, usize, usize)> = None;
    loop {
        if p < pat.len() {
            match pat[p] {
                Pat::Star => {
                    star = Some((p, v, caps.len(), 0));
                    caps.push((v, v));
                    p += 1;
                    continue;
                }
                Pat::Any if v < val.len() => {
                    caps.push((v, v + 1));
                    p += 1;
                    v += 1;
                    continue;
                }
                Pat::Lit(ch) if v < val.len() && val[v] == ch => {
                    p += 1;
                    v += 1;
                    continue;
                }
                _ => {}
            }
        } else if v == val.len() {
            let out = caps
                .iter()
                .map(|&(s, e)| {
                    orig.get(s..e)
                        .map(|x| x.iter().collect())
                        .unwrap_or_default()
                })
                .collect();
            return Some(out);
        }
        // Mismatch: let the last `*` take one more character.
        let (sp, sv, ncaps, len) = star?;
        let nlen = len + 1;
        if sv + nlen > val.len() {
            return None;
        }
        caps.truncate(ncaps);
        caps.push((sv, sv + nlen));
        star = Some((sp, sv, ncaps, nlen));
        p = sp + 1;
        v = sv + nlen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_captures_leftmost_shortest() {
        let c = Comparator::AsciiCasemap;
        assert_eq!(
            matches(c, "[acme-users] [fwd] version 1.0 is out", "[*] *"),
            Some(vec!["acme-users".into(), "[fwd] version 1.0 is out".into()])
        );
        assert_eq!(
            matches(c, "coyote@ACME.Example.COM", "*@*.*"),
            Some(vec!["coyote".into(), "ACME".into(), "Example.COM".into()])
        );
        assert_eq!(matches(c, "abc", "a?c"), Some(vec!["b".into()]));
        assert_eq!(matches(c, "abc", "a\\?c"), None);
        assert_eq!(matches(c, "a?c", "a\\?c"), Some(vec![]));
        assert_eq!(matches(c, "", "*"), Some(vec!["".into()]));
        assert_eq!(matches(c, "x", ""), None);
        assert!(matches(Comparator::Octet, "ABC", "abc").is_none());
        assert!(matches(c, "ABC", "a*").is_some());
    }

    #[test]
    fn numeric_orders_by_value_and_non_digits_are_infinite() {
        assert_eq!(numeric_cmp("10", "9"), Ordering::Greater);
        assert_eq!(numeric_cmp("007", "7"), Ordering::Equal);
        assert_eq!(
            numeric_cmp("abc", "99999999999999999999999"),
            Ordering::Greater
        );
        assert_eq!(numeric_cmp("", "x"), Ordering::Equal);
        assert!(relational(Comparator::AsciiNumeric, Relation::Ge, "5", "3"));
        assert!(is(Comparator::AsciiNumeric, "42abc", "42"));
    }
}
