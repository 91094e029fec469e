//! What a header block says: the envelope, a part's description and the
//! message-level fields, read with `mail-parser`. Offsets inside a parsed
//! header are relative to its block.

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, Header, HeaderName, HeaderValue, MessageParser};

use crate::{BodyPart, Disposition, Envelope, EnvelopeAddress};

pub(crate) fn parse_header_block<'x>(parser: &MessageParser, block: &'x [u8]) -> Vec<Header<'x>> {
    let mut headers = Vec::new();
    let mut stream = MessageStream::new(block);
    // The return value only says whether a body follows; the headers parsed
    // so far are kept either way.
    let _ = stream.parse_headers(parser, &mut headers);
    headers
}

/// The raw value of a header field, unfolded and trimmed.
fn raw_value(header: &Header<'_>, block: &[u8]) -> String {
    let bytes = block
        .get(header.offset_start as usize..header.offset_end as usize)
        .unwrap_or_default();
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

pub(crate) fn envelope(headers: &[Header<'_>], block: &[u8]) -> Envelope {
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

/// An angle-addr's obsolete source route (RFC 5322 4.4 obs-route,
/// `<@a,@b:user@host>`) split from its addr-spec: mail-parser keeps the
/// route in the address text. The route is returned without its colon and
/// whitespace, as IMAP's adl field carries it.
fn split_route(addr: &str) -> (Option<String>, &str) {
    match addr
        .trim_start()
        .strip_prefix('@')
        .and(addr.split_once(':'))
    {
        Some((route, spec)) if !spec.is_empty() => (
            Some(route.chars().filter(|c| !c.is_whitespace()).collect()),
            spec.trim(),
        ),
        _ => (None, addr),
    }
}

fn envelope_addresses(address: &Address<'_>) -> Vec<EnvelopeAddress> {
    let one = |a: &mail_parser::Addr<'_>| {
        let (route, addr) = match a.address.as_deref() {
            Some(addr) => {
                let (route, spec) = split_route(addr);
                (route, Some(spec))
            }
            None => (None, None),
        };
        let (mailbox, host) = match addr {
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
            route,
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
                            mailbox: Some(name.to_owned()),
                            ..EnvelopeAddress::default()
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

/// A part as its header describes it: type, parameters, encoding and the
/// other BODYSTRUCTURE fields. Offsets, sizes, line counts and children
/// are the analyzer's to fill.
pub(crate) fn describe(headers: &[Header<'_>], block: &[u8], in_digest: bool) -> BodyPart {
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
    BodyPart {
        media_type,
        subtype,
        params,
        id: find(headers, &HeaderName::ContentId).map(|h| raw_value(h, block)),
        description: find(headers, &HeaderName::ContentDescription).map(|h| raw_value(h, block)),
        encoding,
        md5: find(headers, &HeaderName::ContentMd5).map(|h| raw_value(h, block)),
        disposition,
        language,
        location: find(headers, &HeaderName::ContentLocation).map(|h| raw_value(h, block)),
        ..BodyPart::default()
    }
}

/// The message-level fields of [`crate::MessageMeta`] that the envelope
/// does not give as they are needed (decoded, or as a timestamp).
#[derive(Default)]
pub(crate) struct TopFields {
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub date_ms: Option<i64>,
    pub references: Option<String>,
}

impl TopFields {
    pub fn read(headers: &[Header<'_>], block: &[u8]) -> Self {
        let subject = find(headers, &HeaderName::Subject)
            .and_then(|h| h.value.as_text())
            .map(str::to_owned);
        let from = find(headers, &HeaderName::From)
            .and_then(|h| h.value.as_address())
            .and_then(|a| a.first())
            .and_then(|a| {
                let (_, addr) = split_route(a.address.as_deref()?);
                Some(match a.name.as_deref() {
                    Some(name) if !name.is_empty() => format!("{name} <{addr}>"),
                    _ => addr.to_owned(),
                })
            });
        let to = find(headers, &HeaderName::To)
            .and_then(|h| h.value.as_address())
            .map(|a| {
                a.iter()
                    .filter_map(|a| a.address.as_deref())
                    .map(|a| split_route(a).1)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty());
        let date_ms = find(headers, &HeaderName::Date)
            .and_then(|h| h.value.as_datetime())
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp().saturating_mul(1000));
        let references = find(headers, &HeaderName::References).map(|h| raw_value(h, block));
        TopFields {
            subject,
            from,
            to,
            date_ms,
            references,
        }
    }
}

/// The fields RFC 5322 3.6 allows at most once in a message header, as
/// they are spelt in replies.
const SINGLETONS: [(HeaderName<'static>, &str); 6] = [
    (HeaderName::From, "From"),
    (HeaderName::Sender, "Sender"),
    (HeaderName::Date, "Date"),
    (HeaderName::To, "To"),
    (HeaderName::Subject, "Subject"),
    (HeaderName::MessageId, "Message-ID"),
];

/// The addresses (`local@domain`) of the first From field of a header
/// block: the one reading of From that the submission sender check, the
/// IMAP ENVELOPE and DKIM signing share, so none of them can be shown one
/// From while another acts on a second. `Some(empty)` when there is no
/// From field; `None` when a From mailbox has no usable address (such a
/// field cannot be vouched for).
pub fn first_from(block: &[u8]) -> Option<Vec<String>> {
    let parser = MessageParser::new();
    let headers = parse_header_block(&parser, block);
    let Some(from) = find(&headers, &HeaderName::From) else {
        return Some(Vec::new());
    };
    let address = from.value.as_address()?;
    let mut out = Vec::new();
    for addr in address.iter() {
        let (_, spec) = split_route(addr.address.as_deref()?);
        if spec.is_empty() {
            return None;
        }
        out.push(spec.to_owned());
    }
    Some(out)
}

/// The first field of From, Sender, Date, To, Subject and Message-ID that
/// occurs more than once in a header block (RFC 5322 3.6 allows one each).
pub fn repeated_singleton(block: &[u8]) -> Option<&'static str> {
    let parser = MessageParser::new();
    let headers = parse_header_block(&parser, block);
    SINGLETONS.iter().find_map(|(name, label)| {
        (headers.iter().filter(|h| &h.name == name).count() > 1).then_some(*label)
    })
}
