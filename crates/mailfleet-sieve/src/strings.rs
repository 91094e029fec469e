//! String handling shared by compile and run: encoded characters (RFC 5228 2.4.2.4), variable
//! templates (RFC 5229 section 3) and `set` modifiers (RFC 5229 section 4).

use crate::ast::{Modifier, Part, Value};

/// Decodes `${hex:…}` and `${unicode:…}`. A sequence that is not well formed stays as written;
/// a code point outside Unicode is an error (RFC 5228 2.4.2.4).
pub(crate) fn decode_encoded(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find("${") {
        out.push_str(&rest[..p]);
        let after = &rest[p + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[p..]);
            return Ok(out);
        };
        let inner = &after[..end];
        match decode_one(inner)? {
            Some(decoded) => {
                out.push_str(&decoded);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn decode_one(inner: &str) -> Result<Option<String>, String> {
    let Some(colon) = inner.find(':') else {
        return Ok(None);
    };
    let kind = inner[..colon].trim().to_ascii_lowercase();
    let body = &inner[colon + 1..];
    let words: Vec<&str> = body
        .split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
        .collect();
    if !words
        .iter()
        .all(|w| w.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Ok(None);
    }
    match kind.as_str() {
        "hex" => {
            let mut bytes = Vec::new();
            for w in &words {
                if w.len() % 2 != 0 {
                    return Ok(None);
                }
                for pair in w.as_bytes().chunks(2) {
                    let h = std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok());
                    match h {
                        Some(b) => bytes.push(b),
                        None => return Ok(None),
                    }
                }
            }
            match String::from_utf8(bytes) {
                Ok(s) => Ok(Some(s)),
                Err(_) => Err("encoded character ${hex:…} is not UTF-8".into()),
            }
        }
        "unicode" => {
            let mut s = String::new();
            for w in &words {
                let Ok(cp) = u32::from_str_radix(w, 16) else {
                    return Err(format!("encoded character {w} is out of range"));
                };
                match char::from_u32(cp) {
                    Some(c) => s.push(c),
                    None => {
                        return Err(format!(
                            "encoded character U+{w} is not a Unicode character"
                        ));
                    }
                }
            }
            Ok(Some(s))
        }
        _ => Ok(None),
    }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Splits a string into literal text and `${…}` references. `${name}` must be an identifier and
/// `${n}` digits; anything else stays literal text (RFC 5229 section 3).
pub(crate) fn template(s: String) -> Result<Value, String> {
    if !s.contains("${") {
        return Ok(Value::Lit(s));
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s.as_str();
    while let Some(p) = rest.find("${") {
        lit.push_str(&rest[..p]);
        let after = &rest[p + 2..];
        let Some(end) = after.find('}') else {
            lit.push_str(&rest[p..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            let n = name.parse::<usize>().unwrap_or(usize::MAX);
            flush(&mut parts, &mut lit);
            parts.push(Part::Match(n));
            rest = &after[end + 1..];
        } else if is_identifier(name) {
            flush(&mut parts, &mut lit);
            parts.push(Part::Var(name.to_ascii_lowercase()));
            rest = &after[end + 1..];
        } else if name.contains('.') && name.split('.').all(is_identifier) {
            return Err(format!(
                "variable namespace in ${{{name}}} is not supported"
            ));
        } else {
            lit.push_str("${");
            rest = after;
        }
    }
    lit.push_str(rest);
    flush(&mut parts, &mut lit);
    if parts.iter().all(|p| matches!(p, Part::Lit(_))) {
        let mut s = String::new();
        for p in parts {
            if let Part::Lit(l) = p {
                s.push_str(&l);
            }
        }
        return Ok(Value::Lit(s));
    }
    Ok(Value::Template(parts))
}

fn flush(parts: &mut Vec<Part>, lit: &mut String) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit)));
    }
}

/// Applies `set` modifiers, highest precedence first (they were sorted at compile time).
pub(crate) fn apply_modifiers(mut v: String, mods: &[Modifier]) -> String {
    for m in mods {
        v = match m {
            Modifier::Lower => v.to_lowercase(),
            Modifier::Upper => v.to_uppercase(),
            Modifier::LowerFirst => {
                let mut c = v.chars();
                match c.next() {
                    Some(f) => f.to_lowercase().chain(c).collect(),
                    None => v,
                }
            }
            Modifier::UpperFirst => {
                let mut c = v.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().chain(c).collect(),
                    None => v,
                }
            }
            Modifier::QuoteWildcard => {
                let mut o = String::with_capacity(v.len());
                for ch in v.chars() {
                    if matches!(ch, '*' | '?' | '\\') {
                        o.push('\\');
                    }
                    o.push(ch);
                }
                o
            }
            Modifier::Length => v.chars().count().to_string(),
        };
    }
    v
}

/// Cuts a string to at most `max` bytes on a character boundary (RFC 5229 allows truncation).
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_characters_decode_and_malformed_ones_stay() {
        assert_eq!(decode_encoded("${hex:40}").as_deref(), Ok("@"));
        assert_eq!(decode_encoded("${hex: 24 24}").as_deref(), Ok("$$"));
        assert_eq!(decode_encoded("${unicode:40}").as_deref(), Ok("@"));
        assert_eq!(decode_encoded("${hex:4}").as_deref(), Ok("${hex:4}"));
        assert_eq!(decode_encoded("${hex:zz}x").as_deref(), Ok("${hex:zz}x"));
        assert!(decode_encoded("${unicode:D800}").is_err());
        assert!(decode_encoded("${unicode:110000}").is_err());
    }

    #[test]
    fn modifiers_apply_in_precedence_order() {
        let mut m = vec![Modifier::Length, Modifier::Upper];
        m.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
        assert_eq!(apply_modifiers("juMBlEd lETteRS".into(), &m), "15");
        assert_eq!(
            apply_modifiers("Ma*".into(), &[Modifier::QuoteWildcard]),
            "Ma\\*"
        );
        assert_eq!(
            apply_modifiers("jUMBLED".into(), &[Modifier::Lower, Modifier::UpperFirst]),
            "Jumbled"
        );
    }
}
