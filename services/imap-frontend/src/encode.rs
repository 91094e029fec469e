//! Response encoding: IMAP strings (atom-safe quoted or literal), NIL,
//! flags, dates, ENVELOPE and BODYSTRUCTURE from the cached
//! `mailfleet_mime` metadata. Pure functions over byte buffers.

use mailfleet_mime::{BodyPart, Envelope, EnvelopeAddress};

pub(crate) use crate::proto::string;

pub(crate) fn nstring(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s.as_bytes()),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name: quoted (or literal) always, which every client accepts.
pub(crate) fn mailbox(out: &mut Vec<u8>, name: &str) {
    string(out, name.as_bytes())
}

pub(crate) fn flags(out: &mut Vec<u8>, flags: &[String]) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_bytes());
    }
    out.push(b')');
}

/// INTERNALDATE form: "17-Jul-1996 02:44:25 +0000".
pub(crate) fn internal_date(out: &mut Vec<u8>, ms: i64) {
    let d = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    out.extend_from_slice(
        d.format("\"%d-%b-%Y %H:%M:%S +0000\"")
            .to_string()
            .as_bytes(),
    );
}

fn addresses(out: &mut Vec<u8>, list: &[EnvelopeAddress]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        nstring(out, a.name.as_deref());
        out.push(b' ');
        nstring(out, a.route.as_deref());
        out.push(b' ');
        nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

pub(crate) fn envelope(out: &mut Vec<u8>, e: &Envelope) {
    out.push(b'(');
    nstring(out, e.date.as_deref());
    out.push(b' ');
    nstring(out, e.subject.as_deref());
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        addresses(out, list);
    }
    out.push(b' ');
    nstring(out, e.in_reply_to.as_deref());
    out.push(b' ');
    nstring(out, e.message_id.as_deref());
    out.push(b')');
}

fn params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k.to_ascii_uppercase().as_bytes());
        out.push(b' ');
        string(out, v.as_bytes());
    }
    out.push(b')');
}

/// BODYSTRUCTURE (`extended`) or BODY of a part, RFC 3501 7.4.2.
pub(crate) fn body_structure(out: &mut Vec<u8>, p: &BodyPart, extended: bool) {
    out.push(b'(');
    if p.is_multipart() {
        for child in &p.parts {
            body_structure(out, child, extended);
        }
        out.push(b' ');
        string(out, p.subtype.to_ascii_uppercase().as_bytes());
        if extended {
            out.push(b' ');
            params(out, &p.params);
            extension(out, p);
        }
        out.push(b')');
        return;
    }
    string(out, p.media_type.to_ascii_uppercase().as_bytes());
    out.push(b' ');
    string(out, p.subtype.to_ascii_uppercase().as_bytes());
    out.push(b' ');
    let ps: Vec<(String, String)> = p
        .params
        .iter()
        .filter(|(k, _)| k != "boundary")
        .cloned()
        .collect();
    params(out, &ps);
    out.push(b' ');
    nstring(out, p.id.as_deref());
    out.push(b' ');
    nstring(out, p.description.as_deref());
    out.push(b' ');
    string(out, p.encoding.as_bytes());
    out.extend_from_slice(format!(" {}", p.size).as_bytes());
    if let Some(m) = &p.message {
        out.push(b' ');
        envelope(out, &m.envelope);
        out.push(b' ');
        body_structure(out, &m.body, extended);
        out.extend_from_slice(format!(" {}", p.lines.unwrap_or(0)).as_bytes());
    } else if p.media_type == "text" {
        out.extend_from_slice(format!(" {}", p.lines.unwrap_or(0)).as_bytes());
    }
    if extended {
        out.push(b' ');
        nstring(out, p.md5.as_deref());
        extension(out, p);
    }
    out.push(b')');
}

/// body-fld-dsp body-fld-lang body-fld-loc.
fn extension(out: &mut Vec<u8>, p: &BodyPart) {
    out.push(b' ');
    match &p.disposition {
        Some(d) => {
            out.push(b'(');
            string(out, d.kind.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            params(out, &d.params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match p.language.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => string(out, one.as_bytes()),
        many => {
            out.push(b'(');
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, l.as_bytes());
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    nstring(out, p.location.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\\"");
        out.clear();
        string(&mut out, "caf\u{e9}".as_bytes());
        assert_eq!(out, "{5}\r\ncaf\u{e9}".as_bytes());
    }

    #[test]
    fn text_part_structure() {
        let meta = mailfleet_mime::analyze(b"Subject: x\r\n\r\nhello\r\n");
        let mut out = Vec::new();
        body_structure(&mut out, &meta.body, false);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 7 1)"
        );
    }
}
