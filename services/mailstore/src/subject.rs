//! RFC 5256 section 2.1: the base subject that SORT (SUBJECT) compares and
//! THREAD=ORDEREDSUBJECT / REFERENCES group by. Apart from `sort` and
//! `thread` because both use it and `sort` builds on `thread`.

/// RFC 5256 section 2.1: the base subject (upper-cased for comparison) and
/// whether the subject marked a reply or forward ("Re:", "Fwd:", "[fwd: ..]",
/// "(fwd)"). `subject` is the decoded header value.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Collapse white space runs to one space.
    let mut s = String::with_capacity(subject.len());
    for c in subject.chars() {
        if c.is_whitespace() {
            if !s.ends_with(' ') {
                s.push(' ');
            }
        } else {
            s.push(c);
        }
    }
    let mut reply = false;
    loop {
        // (2) Trailing "(fwd)" and white space.
        loop {
            let t = s.trim_end().to_owned();
            match t.len().checked_sub(5).and_then(|i| t.get(i..)) {
                Some(tail) if tail.eq_ignore_ascii_case("(fwd)") => {
                    reply = true;
                    s = t[..t.len() - 5].to_owned();
                }
                _ => {
                    s = t;
                    break;
                }
            }
        }
        // (3)-(5) Leading subj-leader (blobs + "re:"/"fwd:", or white
        // space), or a blob that does not leave the subject empty, until
        // nothing changes.
        loop {
            let t = s.trim_start();
            let rest = if let Some(rest) = strip_refwd(t) {
                reply = true;
                rest
            } else {
                match strip_blob(t) {
                    Some(rest) if !rest.trim().is_empty() => rest,
                    _ => t,
                }
            };
            if rest.len() == s.len() {
                break;
            }
            s = rest.to_owned();
        }
        // (6) "[fwd: ... ]" wraps a forwarded subject: unwrap and repeat.
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && lower.ends_with(']') {
            s = s[5..s.len() - 1].to_owned();
            reply = true;
            continue;
        }
        break;
    }
    (s.trim().to_uppercase(), reply)
}

/// `*subj-blob subj-refwd` at the start: ("re" / "fw" / "fwd") *WSP
/// [subj-blob] ":"; returns the rest.
fn strip_refwd(s: &str) -> Option<&str> {
    // Blobs before the re/fwd belong to the leader too.
    let mut rest = s;
    while let Some(r) = strip_blob(rest) {
        rest = r;
    }
    let lower = rest.get(..3).unwrap_or(rest).to_ascii_lowercase();
    let n = if lower.starts_with("re") {
        2
    } else if lower.starts_with("fwd") {
        3
    } else if lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let mut r = rest.get(n..)?.trim_start();
    if let Some(b) = strip_blob(r) {
        r = b;
    }
    r.strip_prefix(':')
}

/// A leading "[...]" (no brackets inside) and the white space after it.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(['[', ']'])?;
    if inner.as_bytes().get(end) != Some(&b']') {
        return None;
    }
    Some(inner[end + 1..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> (String, bool) {
        base_subject(s)
    }

    #[test]
    fn base_subject_follows_rfc5256() {
        assert_eq!(base("Hello"), ("HELLO".into(), false));
        assert_eq!(base("Re: Hello"), ("HELLO".into(), true));
        assert_eq!(base("RE: re: Fwd: Hello"), ("HELLO".into(), true));
        assert_eq!(base("Re[2]: Hello"), ("HELLO".into(), true));
        assert_eq!(base("[list] Re: Hello"), ("HELLO".into(), true));
        assert_eq!(base("[list] Hello"), ("HELLO".into(), false));
        assert_eq!(base("Hello (fwd)"), ("HELLO".into(), true));
        assert_eq!(base("[Fwd: Re: Hello]"), ("HELLO".into(), true));
        assert_eq!(base("  Hello \t  world  "), ("HELLO WORLD".into(), false));
        // A blob that is the whole subject stays.
        assert_eq!(base("[only]"), ("[ONLY]".into(), false));
        assert_eq!(base("Re:"), ("".into(), true));
        assert_eq!(base(""), ("".into(), false));
        assert_eq!(base("Reply all"), ("REPLY ALL".into(), false));
        assert_eq!(base("Ré: héllo"), ("RÉ: HÉLLO".into(), false));
    }

    #[test]
    fn weird_subjects_never_panic() {
        for s in [
            "[", "]", "[[]]", "(fwd", "[fwd:]", "[fwd:", "é(fwd)", "Re", "fw", "[é]x",
        ] {
            let _ = base(s);
        }
    }
}
