//! The IMAP-grade metadata of a message, computed once at delivery and cached
//! (as JSON) beside the message rows, so the IMAP and POP3 frontends answer
//! FETCH ENVELOPE, BODYSTRUCTURE and `BODY[section]` without parsing the body
//! again: they read the byte ranges recorded here straight from the blob.
//!
//! The main entry point is [`analyze`], which returns a [`MessageMeta`]: the
//! [`Envelope`], the [`BodyPart`] tree (with nested `message/rfc822` parts
//! carrying their own envelope and structure) and selected header fields.
//! The MIME structure (header/body split, multipart boundaries) is found by
//! this crate so that the offsets follow IMAP's rules exactly (the CRLF before
//! a boundary belongs to the boundary); header field values are parsed with
//! `mail-parser`. Every offset is relative to the raw blob.
//!
//! This crate is pure: no I/O, no async runtime. [`analyze`] never panics,
//! whatever the input, and bounds its nesting depth.

#![forbid(unsafe_code)]

use std::ops::Range;

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, Header, HeaderName, HeaderValue, MessageParser};
use serde::{Deserialize, Serialize};

/// Deeper MIME nesting is treated as an opaque leaf part.
pub const MAX_DEPTH: usize = 32;

/// Everything the frontends need to know about a message without reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Octets of the raw message.
    pub size: u64,
    /// Lines of the raw message.
    pub lines: u64,
    /// Octets of the top-level header block, blank line included.
    pub header_len: u64,
    pub envelope: Envelope,
    /// The root of the body structure (its header range is the message header).
    pub body: BodyPart,
    /// Decoded Subject (for listings and SORT).
    pub subject: Option<String>,
    /// The first From address as `Name <addr>` or `addr`.
    pub from: Option<String>,
    /// Every To address as `addr`, comma separated.
    pub to: Option<String>,
    /// The Date header as written.
    pub date: Option<String>,
    /// The Date header as Unix milliseconds, when it parses.
    pub date_ms: Option<i64>,
    /// The Message-ID as written (angle brackets included).
    pub message_id: Option<String>,
    /// The References header as written (unfolded), for THREAD=REFERENCES.
    /// Absent in metadata cached before it was added, hence the default.
    #[serde(default)]
    pub references: Option<String>,
}

/// An IMAP ENVELOPE (RFC 3501 7.4.2). String fields are the header values as
/// written (unfolded, trimmed); an absent header is `None` (NIL).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<EnvelopeAddress>,
    /// Defaults to From when absent, as IMAP requires.
    pub sender: Vec<EnvelopeAddress>,
    /// Defaults to From when absent, as IMAP requires.
    pub reply_to: Vec<EnvelopeAddress>,
    pub to: Vec<EnvelopeAddress>,
    pub cc: Vec<EnvelopeAddress>,
    pub bcc: Vec<EnvelopeAddress>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// One IMAP address structure. A group start has `mailbox` = group name and
/// `host` = None; a group end has both None (RFC 3501 7.4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeAddress {
    /// Display name, decoded to UTF-8 (the frontend re-encodes if needed).
    pub name: Option<String>,
    pub mailbox: Option<String>,
    pub host: Option<String>,
}

/// A Content-Disposition value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    /// Lower case, e.g. "attachment".
    pub kind: String,
    pub params: Vec<(String, String)>,
}

/// One node of the body structure, with its byte ranges in the raw message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// Lower case media type, e.g. "text" or "multipart".
    pub media_type: String,
    /// Lower case subtype, e.g. "plain" or "mixed".
    pub subtype: String,
    /// Content-Type parameters (names lower case), boundary included.
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    /// Content-Transfer-Encoding, upper case; "7BIT" when absent.
    pub encoding: String,
    /// Octets of the body (BODYSTRUCTURE size).
    pub size: u64,
    /// Lines of the body, for text/* and message/rfc822 parts.
    pub lines: Option<u64>,
    pub md5: Option<String>,
    pub disposition: Option<Disposition>,
    pub language: Vec<String>,
    pub location: Option<String>,
    /// Offset of the part's header block (MIME header, or message header at the root).
    pub header_offset: u64,
    /// Offset of the body; `body_offset - header_offset` is the header length.
    pub body_offset: u64,
    /// End of the body (exclusive).
    pub body_end: u64,
    /// Children of a multipart part, in order.
    pub parts: Vec<BodyPart>,
    /// The embedded message of a message/rfc822 part.
    pub message: Option<Box<EmbeddedMessage>>,
}

/// The message inside a message/rfc822 part: its body structure's root
/// header range is the embedded message's header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedMessage {
    pub envelope: Envelope,
    pub body: BodyPart,
}

impl BodyPart {
    pub fn is_multipart(&self) -> bool {
        self.media_type == "multipart"
    }
    /// The part's header block range.
    pub fn header_range(&self) -> Range<u64> {
        self.header_offset..self.body_offset
    }
    /// The part's body range.
    pub fn body_range(&self) -> Range<u64> {
        self.body_offset..self.body_end
    }
}

/// Computes the metadata of a raw RFC 5322 message. Never panics; malformed
/// input yields a best-effort structure (a text/plain leaf at worst).
pub fn analyze(raw: &[u8]) -> MessageMeta {
    let parser = MessageParser::new();
    let (envelope, body) = analyze_message(&parser, raw, 0..raw.len(), 0);
    let header = parse_header_block(
        &parser,
        slice(raw, body.header_offset as usize..body.body_offset as usize),
    );
    let subject = header
        .iter()
        .find(|h| h.name == HeaderName::Subject)
        .and_then(|h| h.value.as_text())
        .map(str::to_owned);
    let from = header
        .iter()
        .find(|h| h.name == HeaderName::From)
        .and_then(|h| h.value.as_address())
        .and_then(|a| a.first())
        .and_then(|a| {
            let addr = a.address.as_deref()?;
            Some(match a.name.as_deref() {
                Some(name) if !name.is_empty() => format!("{name} <{addr}>"),
                _ => addr.to_owned(),
            })
        });
    let to = header
        .iter()
        .find(|h| h.name == HeaderName::To)
        .and_then(|h| h.value.as_address())
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty());
    let date_ms = header
        .iter()
        .find(|h| h.name == HeaderName::Date)
        .and_then(|h| h.value.as_datetime())
        .filter(|d| d.is_valid())
        .map(|d| d.to_timestamp().saturating_mul(1000));
    let references = find(&header, &HeaderName::References).map(|h| {
        raw_value(
            h,
            slice(raw, body.header_offset as usize..body.body_offset as usize),
        )
    });
    MessageMeta {
        size: raw.len() as u64,
        lines: count_lines(raw),
        header_len: body.body_offset - body.header_offset,
        subject,
        from,
        to,
        date: envelope.date.clone(),
        date_ms,
        message_id: envelope.message_id.clone(),
        references,
        envelope,
        body,
    }
}

fn slice(raw: &[u8], range: Range<usize>) -> &[u8] {
    raw.get(range).unwrap_or_default()
}

/// Analyzes the message occupying `range` of `raw`: header block, then body.
fn analyze_message(
    parser: &MessageParser,
    raw: &[u8],
    range: Range<usize>,
    depth: usize,
) -> (Envelope, BodyPart) {
    let body_start = header_end(raw, range.clone());
    let headers = parse_header_block(parser, slice(raw, range.start..body_start));
    let header_text = slice(raw, range.start..body_start);
    let envelope = envelope(&headers, header_text);
    let part = analyze_part(
        parser,
        raw,
        range.start,
        body_start,
        range.end,
        &headers,
        header_text,
        depth,
        false,
    );
    (envelope, part)
}

/// Offset just after the header block of the entity starting at
/// `range.start`: after the first empty line, or `range.end` when none.
fn header_end(raw: &[u8], range: Range<usize>) -> usize {
    let mut pos = range.start;
    while pos < range.end {
        let line_end = match raw
            .get(pos..range.end)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
        {
            Some(i) => pos + i + 1,
            None => return range.end,
        };
        let line = slice(raw, pos..line_end);
        if line == b"\n" || line == b"\r\n" {
            return line_end;
        }
        pos = line_end;
    }
    range.end
}

fn parse_header_block<'x>(parser: &MessageParser, block: &'x [u8]) -> Vec<Header<'x>> {
    let mut headers = Vec::new();
    let mut stream = MessageStream::new(block);
    // The return value only says whether a body follows; the headers parsed
    // so far are kept either way.
    let _ = stream.parse_headers(parser, &mut headers);
    headers
}

/// The raw value of a header field, unfolded and trimmed.
fn raw_value(header: &Header<'_>, block: &[u8]) -> String {
    let bytes = slice(
        block,
        header.offset_start as usize..header.offset_end as usize,
    );
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

fn find<'a, 'x>(headers: &'a [Header<'x>], name: &HeaderName<'_>) -> Option<&'a Header<'x>> {
    headers.iter().find(|h| &h.name == name)
}

fn envelope(headers: &[Header<'_>], block: &[u8]) -> Envelope {
    let raw = |name: HeaderName<'_>| find(headers, &name).map(|h| raw_value(h, block));
    let addrs = |name: HeaderName<'_>| {
        find(headers, &name)
            .and_then(|h| h.value.as_address())
            .map(envelope_addresses)
            .unwrap_or_default()
    };
    let from = addrs(HeaderName::From);
    let mut sender = addrs(HeaderName::Sender);
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addrs(HeaderName::ReplyTo);
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    Envelope {
        date: raw(HeaderName::Date),
        subject: raw(HeaderName::Subject),
        from,
        sender,
        reply_to,
        to: addrs(HeaderName::To),
        cc: addrs(HeaderName::Cc),
        bcc: addrs(HeaderName::Bcc),
        in_reply_to: raw(HeaderName::InReplyTo),
        message_id: raw(HeaderName::MessageId),
    }
}

fn envelope_addresses(address: &Address<'_>) -> Vec<EnvelopeAddress> {
    let one = |a: &mail_parser::Addr<'_>| {
        let (mailbox, host) = match a.address.as_deref() {
            Some(addr) => match addr.rsplit_once('@') {
                Some((m, h)) => (Some(m.to_owned()), Some(h.to_owned())),
                None => (Some(addr.to_owned()), None),
            },
            None => (None, None),
        };
        EnvelopeAddress {
            name: a
                .name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            mailbox,
            // An address without a host would read as a group start: IMAP
            // servers use a placeholder host in that case.
            host: host.or_else(|| Some("MISSING_DOMAIN".to_owned())),
        }
    };
    match address {
        Address::List(list) => list
            .iter()
            .filter(|a| a.address.is_some())
            .map(one)
            .collect(),
        Address::Group(groups) => {
            let mut out = Vec::new();
            for g in groups {
                match g.name.as_deref() {
                    Some(name) => {
                        out.push(EnvelopeAddress {
                            name: None,
                            mailbox: Some(name.to_owned()),
                            host: None,
                        });
                        out.extend(g.addresses.iter().filter(|a| a.address.is_some()).map(one));
                        out.push(EnvelopeAddress::default());
                    }
                    None => out.extend(g.addresses.iter().filter(|a| a.address.is_some()).map(one)),
                }
            }
            out
        }
    }
}

fn params_of(ct: &mail_parser::ContentType<'_>) -> Vec<(String, String)> {
    ct.attributes()
        .unwrap_or_default()
        .iter()
        .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn analyze_part(
    parser: &MessageParser,
    raw: &[u8],
    header_offset: usize,
    body_offset: usize,
    body_end: usize,
    headers: &[Header<'_>],
    block: &[u8],
    depth: usize,
    in_digest: bool,
) -> BodyPart {
    let content_type =
        find(headers, &HeaderName::ContentType).and_then(|h| h.value.as_content_type());
    let (mut media_type, mut subtype, mut params) = match content_type {
        Some(ct) if !ct.ctype().is_empty() => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
            params_of(ct),
        ),
        // RFC 2046 5.1.5: the default in a digest is message/rfc822.
        _ if in_digest => ("message".into(), "rfc822".into(), Vec::new()),
        _ => ("text".into(), "plain".into(), Vec::new()),
    };
    if subtype.is_empty() {
        // A type without subtype is malformed: fall back to the default.
        (media_type, subtype, params) = ("text".into(), "plain".into(), Vec::new());
    }
    if media_type == "text" && !params.iter().any(|(k, _)| k == "charset") {
        params.push(("charset".into(), "us-ascii".into()));
    }
    let encoding = find(headers, &HeaderName::ContentTransferEncoding)
        .map(|h| raw_value(h, block).to_ascii_uppercase())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "7BIT".into());
    let disposition = find(headers, &HeaderName::ContentDisposition)
        .and_then(|h| h.value.as_content_type())
        .map(|ct| Disposition {
            kind: ct.ctype().to_ascii_lowercase(),
            params: params_of(ct),
        });
    let language = match find(headers, &HeaderName::ContentLanguage).map(|h| &h.value) {
        Some(HeaderValue::TextList(list)) => list.iter().map(|s| s.trim().to_string()).collect(),
        Some(HeaderValue::Text(s)) => vec![s.trim().to_string()],
        _ => Vec::new(),
    };
    let mut part = BodyPart {
        media_type,
        subtype,
        params,
        id: find(headers, &HeaderName::ContentId).map(|h| raw_value(h, block)),
        description: find(headers, &HeaderName::ContentDescription).map(|h| raw_value(h, block)),
        encoding,
        size: body_end.saturating_sub(body_offset) as u64,
        lines: None,
        md5: find(headers, &HeaderName::ContentMd5).map(|h| raw_value(h, block)),
        disposition,
        language,
        location: find(headers, &HeaderName::ContentLocation).map(|h| raw_value(h, block)),
        header_offset: header_offset as u64,
        body_offset: body_offset as u64,
        body_end: body_end as u64,
        parts: Vec::new(),
        message: None,
    };
    let identity = matches!(part.encoding.as_str(), "7BIT" | "8BIT" | "BINARY");
    if part.media_type == "multipart" {
        let boundary = part
            .params
            .iter()
            .find(|(k, _)| k == "boundary")
            .map(|(_, v)| v.clone())
            .filter(|b| !b.is_empty());
        let children = match boundary {
            Some(b) if depth < MAX_DEPTH => {
                split_multipart(raw, body_offset..body_end, b.as_bytes())
            }
            _ => Vec::new(),
        };
        if children.is_empty() {
            // IMAP cannot describe a multipart without parts: serve it as text.
            part.media_type = "text".into();
            part.subtype = "plain".into();
            part.params = vec![("charset".into(), "us-ascii".into())];
            part.lines = Some(count_lines(slice(raw, body_offset..body_end)));
            return part;
        }
        let digest = part.subtype == "digest";
        for child in children {
            let child_body = header_end(raw, child.clone());
            let child_block = slice(raw, child.start..child_body);
            let child_headers = parse_header_block(parser, child_block);
            part.parts.push(analyze_part(
                parser,
                raw,
                child.start,
                child_body,
                child.end,
                &child_headers,
                child_block,
                depth + 1,
                digest,
            ));
        }
    } else if part.media_type == "message"
        && matches!(part.subtype.as_str(), "rfc822" | "global")
        && identity
        && depth < MAX_DEPTH
    {
        part.lines = Some(count_lines(slice(raw, body_offset..body_end)));
        let (envelope, body) = analyze_message(parser, raw, body_offset..body_end, depth + 1);
        part.message = Some(Box::new(EmbeddedMessage { envelope, body }));
    } else if part.media_type == "text" {
        part.lines = Some(count_lines(slice(raw, body_offset..body_end)));
    }
    part
}

/// The body ranges of the parts of a multipart body, by RFC 2046 5.1.1: a
/// delimiter line is `--boundary` (`--boundary--` closes) with optional
/// trailing white space, and the line break before it belongs to it.
fn split_multipart(raw: &[u8], range: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = range.start;
    while pos < range.end {
        let line_end = raw
            .get(pos..range.end)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(range.end, |i| pos + i + 1);
        let line = slice(raw, pos..line_end);
        if let Some(close) = delimiter(line, boundary) {
            if let Some(start) = current.take() {
                // Remove the line break that precedes the delimiter.
                let mut end = pos;
                if end > start && raw.get(end - 1) == Some(&b'\n') {
                    end -= 1;
                    if end > start && raw.get(end - 1) == Some(&b'\r') {
                        end -= 1;
                    }
                }
                parts.push(start..end.max(start));
            }
            if close {
                return parts;
            }
            current = Some(line_end);
        }
        pos = line_end;
    }
    // No close delimiter (truncated message): the last part runs to the end.
    if let Some(start) = current {
        parts.push(start..range.end.max(start));
    }
    parts
}

/// `Some(is_close)` when `line` is a delimiter line for `boundary`.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .then_some(close)
}

/// Lines in `bytes`: line feeds, plus one for a last line without one.
pub fn count_lines(bytes: &[u8]) -> u64 {
    let lf = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    match bytes.last() {
        Some(b'\n') | None => lf,
        Some(_) => lf + 1,
    }
}

#[cfg(test)]
mod tests;
