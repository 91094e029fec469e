//! What the tests read from a message: header fields (unfolded, RFC 2047 decoded), addresses,
//! body text and dates. Header values are decoded with mail-parser's field parsers, and addresses
//! parsed with its address parser, applied to whichever header the script names: it already
//! handles groups, comments, quoted local parts and encoded words, which a small parser of our
//! own would get wrong, and it is the parser the rest of mailfleet uses.

use std::cell::OnceCell;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};

/// Most header fields a message may have before the rest are ignored.
const MAX_FIELDS: usize = 10_000;

pub(crate) struct Msg<'a> {
    pub raw: &'a [u8],
    /// (name, raw value after the colon, folds included, final line break excluded)
    fields: Vec<(&'a [u8], &'a [u8])>,
    body_start: usize,
    /// The MIME parse, made on the first `body :text` / `:content` test and kept for the others.
    mime: OnceCell<Option<Message<'a>>>,
}

impl<'a> Msg<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        // (name, value start, value end) as offsets into `raw`.
        let mut spans: Vec<(&[u8], usize, usize)> = Vec::new();
        let mut i = 0usize;
        let mut body_start = raw.len();
        while i < raw.len() {
            let end = raw[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(raw.len(), |p| i + p);
            let line = &raw[i..end];
            let line_len = line.strip_suffix(b"\r").unwrap_or(line).len();
            let next = (end + 1).min(raw.len());
            if line_len == 0 {
                body_start = next;
                break;
            }
            if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                // A continuation line extends the previous field's value.
                if let Some(last) = spans.last_mut() {
                    last.2 = i + line_len;
                }
            } else if let Some(colon) = line[..line_len].iter().position(|&c| c == b':')
                && spans.len() < MAX_FIELDS
            {
                spans.push((trim_ascii(&line[..colon]), i + colon + 1, i + line_len));
            }
            i = next;
        }
        let fields = spans
            .into_iter()
            .map(|(n, s, e)| (n, raw.get(s..e).unwrap_or_default()))
            .collect();
        Msg {
            raw,
            fields,
            body_start,
            mime: OnceCell::new(),
        }
    }

    /// Raw values of the fields called `name`, in message order.
    pub(crate) fn raw_values(&self, name: &str) -> Vec<&'a [u8]> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
            .collect()
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    pub(crate) fn has_prefix(&self, prefix: &str) -> bool {
        let p = prefix.as_bytes();
        self.fields
            .iter()
            .any(|(n, _)| n.len() >= p.len() && n[..p.len()].eq_ignore_ascii_case(p))
    }

    pub(crate) fn body(&self) -> &'a [u8] {
        self.raw.get(self.body_start..).unwrap_or_default()
    }

    /// The decoded body parts `:text` / `:content` look at, each cut to fit `budget` in total.
    pub(crate) fn body_parts(&self, content: Option<&[String]>, budget: usize) -> Vec<String> {
        let mut out = Vec::new();
        let raw = self.raw;
        let Some(m) = self
            .mime
            .get_or_init(|| MessageParser::default().parse(raw))
        else {
            return out;
        };
        let mut left = budget;
        for part in &m.parts {
            if left == 0 {
                break;
            }
            let (ctype, subtype) = match part.content_type() {
                Some(ct) => (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                ),
                None => ("text".to_string(), "plain".to_string()),
            };
            let wanted = match content {
                None => ctype == "text",
                Some(types) => types.iter().any(|t| {
                    let t = t.to_ascii_lowercase();
                    match t.split_once('/') {
                        _ if t.is_empty() => true,
                        Some((ty, sub)) => ty == ctype && sub == subtype,
                        None => t == ctype,
                    }
                }),
            };
            if !wanted {
                continue;
            }
            let text: String = match &part.body {
                // `:text` reads HTML as the text a reader sees; `:content "text/html"` asks for
                // the markup itself (RFC 5173 5.2, 5.3).
                PartType::Html(t) if content.is_none() => crate::html::to_text(t),
                PartType::Text(t) | PartType::Html(t) => t.to_string(),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    String::from_utf8_lossy(b).into_owned()
                }
                PartType::Message(_) | PartType::Multipart(_) => continue,
            };
            out.push(crate::strings::truncate(text, left));
            left = left.saturating_sub(out.last().map_or(0, String::len));
        }
        out
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    b.get(s..e).unwrap_or_default()
}

fn with_newline(raw: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(raw.len() + 1);
    v.extend_from_slice(raw);
    v.push(b'\n');
    v
}

/// An unstructured header value: unfolded, encoded words decoded, outer blanks trimmed.
pub(crate) fn decode_text(raw: &[u8]) -> String {
    let buf = with_newline(raw);
    match MessageStream::new(&buf).parse_unstructured() {
        HeaderValue::Text(t) => t.trim().to_string(),
        _ => String::new(),
    }
}

/// The addr-specs in an address header (groups flattened; empty when it has none).
pub(crate) fn decode_addresses(raw: &[u8]) -> Vec<String> {
    let buf = with_newline(raw);
    match MessageStream::new(&buf).parse_address() {
        HeaderValue::Address(a) => a
            .iter()
            .filter_map(|a| a.address().map(|s| s.trim().to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A date header (RFC 5322 date-time; for Received, what follows the last ';').
pub(crate) fn decode_date(name: &str, raw: &[u8]) -> Option<DateTime<FixedOffset>> {
    let raw = if name.eq_ignore_ascii_case("received") {
        let p = raw.iter().rposition(|&c| c == b';')?;
        raw.get(p + 1..)?
    } else {
        raw
    };
    let buf = with_newline(raw);
    let HeaderValue::DateTime(d) = MessageStream::new(&buf).parse_date() else {
        return None;
    };
    let off = (i32::from(d.tz_hour) * 3600 + i32::from(d.tz_minute) * 60)
        * if d.tz_before_gmt { -1 } else { 1 };
    let zone = FixedOffset::east_opt(off)?;
    let naive = NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))?
        .and_hms_opt(u32::from(d.hour), u32::from(d.minute), u32::from(d.second))?;
    zone.from_local_datetime(&naive).single()
}

/// Splits an address into local part and domain at the last '@'.
pub(crate) fn split_address(a: &str) -> (&str, &str) {
    match a.rfind('@') {
        Some(p) => (&a[..p], &a[p + 1..]),
        None => (a, ""),
    }
}

/// A plausible forward path for redirect: local@domain, no blanks or brackets.
pub(crate) fn valid_redirect_address(s: &str) -> bool {
    let (l, d) = split_address(s);
    !l.is_empty()
        && !d.is_empty()
        && s.len() <= 320
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '(' | ')')
        })
        && d.contains(|c: char| c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_unfold_and_decode() {
        let m = Msg::new(b"Subject: =?utf-8?q?caf=C3=A9?= time\r\n  again\r\nTo: A <a@x.test>, b@y.test\r\n\r\nbody\r\n");
        let s = m.raw_values("subject");
        assert_eq!(s.len(), 1);
        assert_eq!(decode_text(s[0]), "café time again");
        assert_eq!(
            decode_addresses(m.raw_values("to")[0]),
            vec!["a@x.test", "b@y.test"]
        );
        assert_eq!(m.body(), b"body\r\n");
    }

    #[test]
    fn dates_parse_with_their_zone() {
        let d =
            decode_date("date", b" Tue, 1 Apr 1997 09:06:31 -0800 (PST)").map(|d| d.to_rfc3339());
        assert_eq!(d.as_deref(), Some("1997-04-01T09:06:31-08:00"));
        let r = decode_date("received", b" from x by y; Tue, 1 Apr 1997 09:06:31 +0100")
            .map(|d| d.to_rfc3339());
        assert_eq!(r.as_deref(), Some("1997-04-01T09:06:31+01:00"));
    }
}
