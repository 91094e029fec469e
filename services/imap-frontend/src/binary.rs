//! BINARY (RFC 3516, part of IMAP4rev2): `FETCH BINARY[section]<partial>`,
//! `BINARY.PEEK[...]` and `BINARY.SIZE[section]`.
//!
//! imap-codec 1.0 does not know these items: [`cut`] takes them out of a
//! FETCH command in the pure parse path (`parse::prepare`) and imap-codec
//! parses the rest. `fetch` then asks [`check`] whether every message can
//! serve them and writes each with [`write_item`]. A leaf part's
//! content-transfer-encoding is undone by a [`Decoder`] while the part's
//! bytes stream from GetBody, so memory stays bounded whatever the size of
//! the part: the decoded length (needed before the literal is announced,
//! and for BINARY.SIZE) is found by a first decoding pass that only counts.

use std::num::NonZeroU32;
use std::ops::Range;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures::StreamExt;
use mailfleet_mime::MessageMeta;
use mailfleet_proto::v1 as pb;
use tokio::io::AsyncWriteExt;

use crate::rfc7162::{Tok, lex, matching, text};
use crate::session::{Reply, Session};

/// A quoted-printable line longer than this is decoded in pieces.
const MAX_QP_LINE: usize = 64 * 1024;
/// Lenient base64: the decoder feeds it only alphabet characters, in
/// groups of four, and the last group without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// BINARY (sets \Seen) or BINARY.PEEK.
    Binary {
        peek: bool,
    },
    Size,
}

/// One BINARY fetch item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub kind: Kind,
    /// Part numbers; empty for the whole message.
    pub path: Vec<NonZeroU32>,
    /// `<offset.length>` in decoded octets.
    pub partial: Option<(u32, NonZeroU32)>,
}

impl Item {
    /// The item as named in the FETCH response.
    fn label(&self) -> String {
        let path = self
            .path
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(".");
        let mut l = match self.kind {
            Kind::Size => format!("BINARY.SIZE[{path}]"),
            Kind::Binary { .. } => format!("BINARY[{path}]"),
        };
        if let Some((offset, _)) = self.partial {
            l.push_str(&format!("<{offset}>"));
        }
        l
    }
}

/// Whether any item sets \Seen (BINARY without .PEEK, as BODY[] does).
pub(crate) fn sets_seen(items: &[Item]) -> bool {
    items.iter().any(|i| i.kind == Kind::Binary { peek: false })
}

fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses one fetch item word. `None`: not a BINARY item.
fn item(word: &[u8]) -> Option<Result<Item, &'static str>> {
    let upper = word.to_ascii_uppercase();
    let (kind, rest) = if let Some(r) = upper.strip_prefix(b"BINARY.PEEK[") {
        (Kind::Binary { peek: true }, r)
    } else if let Some(r) = upper.strip_prefix(b"BINARY.SIZE[") {
        (Kind::Size, r)
    } else if let Some(r) = upper.strip_prefix(b"BINARY[") {
        (Kind::Binary { peek: false }, r)
    } else if upper.starts_with(b"BINARY") {
        return Some(Err("Invalid BINARY fetch item"));
    } else {
        return None;
    };
    Some(parse_item(kind, rest))
}

/// `rest`: what follows `[` (section-part, `]`, optional partial).
fn parse_item(kind: Kind, rest: &[u8]) -> Result<Item, &'static str> {
    let close = rest
        .iter()
        .position(|&b| b == b']')
        .ok_or("Missing ] in BINARY section")?;
    let section = rest.get(..close).unwrap_or_default();
    let mut path = Vec::new();
    if !section.is_empty() {
        for n in section.split(|&b| b == b'.') {
            let n = number(n)
                .and_then(NonZeroU32::new)
                .ok_or("BINARY takes part numbers only")?;
            path.push(n);
        }
    }
    let after = rest.get(close + 1..).unwrap_or_default();
    let partial = if after.is_empty() {
        None
    } else {
        if kind == Kind::Size {
            return Err("BINARY.SIZE takes no partial");
        }
        let inner = after
            .strip_prefix(b"<")
            .and_then(|a| a.strip_suffix(b">"))
            .ok_or("Invalid BINARY partial")?;
        let dot = inner
            .iter()
            .position(|&b| b == b'.')
            .ok_or("Invalid BINARY partial")?;
        let offset =
            number(inner.get(..dot).unwrap_or_default()).ok_or("Invalid BINARY partial")?;
        let length = number(inner.get(dot + 1..).unwrap_or_default())
            .and_then(NonZeroU32::new)
            .ok_or("Invalid BINARY partial")?;
        Some((offset, length))
    };
    Ok(Item {
        kind,
        path,
        partial,
    })
}

/// A FETCH with its BINARY items taken out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    /// The command without them, CRLF-terminated, for imap-codec.
    pub plain: Vec<u8>,
    pub items: Vec<Item>,
    /// Only BINARY items were asked for: `plain` asks for UID in their
    /// place, which a non-UID FETCH must not return.
    pub drop_uid: bool,
}

/// Recognises `tag [UID] FETCH set items [modifiers]` with BINARY items.
/// `None`: not one (imap-codec decides); `Some(Err)`: one, malformed.
pub(crate) fn cut(buf: &[u8]) -> Option<Result<Cut, &'static str>> {
    if !buf.windows(6).any(|w| w.eq_ignore_ascii_case(b"BINARY")) {
        return None;
    }
    let (body, uid, name) = crate::extra::command_head(buf)?;
    if !name.eq_ignore_ascii_case(b"FETCH") {
        return None;
    }
    let toks = lex(body)?;
    let first = if uid { 3 } else { 2 };
    let Some(set @ Tok::Word(..)) = toks.get(first).copied() else {
        return None;
    };
    let items_at = first + 1;
    let (items_end, group) = match toks.get(items_at) {
        Some(Tok::Open(_)) => (matching(toks.as_slice(), items_at)?, true),
        Some(Tok::Word(..)) => (items_at, false),
        _ => return None,
    };
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut items = Vec::new();
    let mut k = if group { items_at + 1 } else { items_at };
    let last = if group { items_end } else { items_end + 1 };
    while k < last {
        let t = toks.get(k).copied()?;
        match t {
            Tok::Open(_) => {
                // Not a fetch item of ours: copied whole.
                let c = matching(toks.as_slice(), k)?;
                let end = toks.get(c).copied()?;
                kept.push(body.get(t.start()..end.end()).unwrap_or_default());
                k = c + 1;
            }
            Tok::Close(_) => return None,
            Tok::Word(..) => {
                match item(text(body, t)) {
                    Some(Ok(i)) => items.push(i),
                    Some(Err(why)) => return Some(Err(why)),
                    None => kept.push(text(body, t)),
                }
                k += 1;
            }
        }
    }
    if items.is_empty() {
        return None;
    }
    let drop_uid = kept.is_empty();
    let listed: Vec<u8> = if drop_uid {
        b"UID".to_vec()
    } else if group {
        [b"(".as_slice(), &kept.join(b" ".as_slice()), b")"].concat()
    } else {
        kept.concat()
    };
    let after = toks.get(items_end).map_or(body.len(), |t| t.end());
    let mut plain = body.get(..set.end()).unwrap_or_default().to_vec();
    plain.push(b' ');
    plain.extend_from_slice(&listed);
    plain.extend_from_slice(body.get(after..).unwrap_or_default());
    plain.extend_from_slice(b"\r\n");
    Some(Ok(Cut {
        plain,
        items,
        drop_uid,
    }))
}

/// A content-transfer-encoding this server can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cte {
    /// 7bit, 8bit, binary: the octets are the content.
    Identity,
    Base64,
    QuotedPrintable,
}

/// `None` for an encoding the server does not know (UNKNOWN-CTE).
pub(crate) fn cte(encoding: &str) -> Option<Cte> {
    match encoding.trim().to_ascii_uppercase().as_str() {
        "" | "7BIT" | "8BIT" | "BINARY" => Some(Cte::Identity),
        "BASE64" => Some(Cte::Base64),
        "QUOTED-PRINTABLE" => Some(Cte::QuotedPrintable),
        _ => None,
    }
}

/// Undoes a content-transfer-encoding chunk by chunk. What it keeps
/// between chunks is bounded: three base64 characters, or one
/// quoted-printable line of at most [`MAX_QP_LINE`] octets.
pub(crate) struct Decoder {
    cte: Cte,
    carry: Vec<u8>,
    /// Base64 padding was seen: the data has ended (RFC 2045 6.8).
    ended: bool,
    /// Turn bare LFs into CRLF (decoded text; RFC 3516 4.3).
    crlf: bool,
    last_cr: bool,
}

impl Decoder {
    pub(crate) fn new(cte: Cte, text: bool) -> Self {
        Decoder {
            cte,
            carry: Vec::new(),
            ended: false,
            // Quoted-printable line breaks already decode to CRLF.
            crlf: text && cte == Cte::Base64,
            last_cr: false,
        }
    }

    /// Decodes `input`, appending to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        match self.cte {
            Cte::Identity => out.extend_from_slice(input),
            Cte::Base64 => {
                for &b in input {
                    if self.ended {
                        break;
                    }
                    match b {
                        b'=' => self.ended = true,
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => self.carry.push(b),
                        // Line breaks, and junk a lenient decoder skips.
                        _ => {}
                    }
                }
                let whole = self.carry.len() / 4 * 4;
                if whole > 0 {
                    let _ = BASE64.decode_vec(self.carry.get(..whole).unwrap_or_default(), out);
                    self.carry.drain(..whole);
                }
            }
            Cte::QuotedPrintable => {
                self.carry.extend_from_slice(input);
                // Whole lines decode alone exactly as within the whole body.
                if let Some(nl) = self.carry.iter().rposition(|&b| b == b'\n') {
                    qp(self.carry.get(..=nl).unwrap_or_default(), out);
                    self.carry.drain(..=nl);
                }
                while self.carry.len() > MAX_QP_LINE {
                    let cut = qp_cut(&self.carry);
                    qp(self.carry.get(..cut).unwrap_or_default(), out);
                    self.carry.drain(..cut);
                }
            }
        }
        self.normalise(out, start);
    }

    /// Decodes what is left at the end of the data.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        match self.cte {
            Cte::Identity => {}
            // One lone character carries no whole octet: dropped.
            Cte::Base64 => {
                if self.carry.len() > 1 {
                    let _ = BASE64.decode_vec(&self.carry, out);
                }
            }
            Cte::QuotedPrintable => qp(&self.carry, out),
        }
        self.carry.clear();
        self.normalise(out, start);
    }

    fn normalise(&mut self, out: &mut Vec<u8>, start: usize) {
        if !self.crlf || !out.get(start..).unwrap_or_default().contains(&b'\n') {
            if let Some(&b) = out.get(start..).and_then(|o| o.last()) {
                self.last_cr = b == b'\r';
            }
            return;
        }
        let decoded = out.split_off(start);
        for b in decoded {
            if b == b'\n' && !self.last_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.last_cr = b == b'\r';
        }
    }
}

/// Decodes quoted-printable lines (each ends in LF, or is the end of the
/// data or a piece cut by [`qp_cut`]). Hand-written rather than the
/// `quoted_printable` crate, whose lenient mode drops 8-bit octets: mail
/// with raw UTF-8 in a quoted-printable part is common, and its octets are
/// kept here, as is an `=` that starts no escape (RFC 2045 6.7, note 2).
fn qp(data: &[u8], out: &mut Vec<u8>) {
    for line in data.split_inclusive(|&b| b == b'\n') {
        let (content, hard_break) = match line.strip_suffix(b"\n") {
            Some(c) => (c.strip_suffix(b"\r").unwrap_or(c), true),
            None => (line, false),
        };
        // Trailing white space is transport padding (RFC 2045 6.7 rule 3).
        let end = content
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |i| i + 1);
        let content = content.get(..end).unwrap_or_default();
        let mut soft = false;
        let mut i = 0;
        while let Some(&b) = content.get(i) {
            if b != b'=' {
                out.push(b);
                i += 1;
                continue;
            }
            let hex = |k: usize| content.get(k).and_then(|&c| (c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    // Two hex digits: at most 0xff.
                    out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                    i += 3;
                }
                _ if i + 1 == content.len() => {
                    soft = true;
                    i += 1;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            }
        }
        if hard_break && !soft {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Where to split an over-long quoted-printable line: not inside an `=XX`
/// escape, and not after white space (trailing white space is dropped).
fn qp_cut(line: &[u8]) -> usize {
    let safe = |i: usize| {
        let at = |k: usize| i.checked_sub(k).and_then(|j| line.get(j)).copied();
        at(1).is_some_and(|b| !matches!(b, b'=' | b' ' | b'\t' | b'\r')) && at(2) != Some(b'=')
    };
    let mut cut = MAX_QP_LINE.min(line.len());
    while cut > 1 && !safe(cut) {
        cut -= 1;
    }
    cut.max(1)
}

/// Where the served octets of one item come from: `raw` is sent as it is,
/// then `body` decoded with `cte`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    raw: Range<u64>,
    body: Range<u64>,
    cte: Cte,
    text: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    UnknownCte,
}

/// The plan of the section `path` (empty: the whole message, its top-level
/// body decoded when it is a single part). `Ok(None)`: no such part (an
/// empty string is served, as for BODY[]).
fn plan(
    meta: &MessageMeta,
    prefix: u64,
    size: u64,
    path: &[NonZeroU32],
) -> Result<Option<Plan>, Problem> {
    let shift = |r: Range<u64>| (r.start + prefix)..(r.end + prefix);
    let root = &meta.body;
    if path.is_empty() {
        if root.is_multipart() || root.message.is_some() {
            // Composite types only have identity encodings (RFC 2045 6.4).
            return Ok(Some(Plan {
                raw: 0..size,
                body: 0..0,
                cte: Cte::Identity,
                text: false,
            }));
        }
        let cte = cte(&root.encoding).ok_or(Problem::UnknownCte)?;
        return Ok(Some(Plan {
            raw: 0..(root.body_offset + prefix).min(size),
            body: shift(root.body_range()),
            cte,
            text: root.media_type == "text",
        }));
    }
    let Some(node) = crate::fetch::find_part(root, path) else {
        return Ok(None);
    };
    // A composite part is served as BODY[part] serves it (its encoding is
    // an identity one), as the whole message is.
    let cte = if node.is_multipart() || node.message.is_some() {
        Cte::Identity
    } else {
        cte(&node.encoding).ok_or(Problem::UnknownCte)?
    };
    Ok(Some(Plan {
        raw: 0..0,
        body: shift(node.body_range()),
        cte,
        text: node.media_type == "text",
    }))
}

fn meta_of(m: &pb::FetchedMessage) -> MessageMeta {
    if m.meta_json.is_empty() {
        return MessageMeta::default();
    }
    serde_json::from_slice(&m.meta_json).unwrap_or_default()
}

/// Whether every item can be served for `m`: the reply of the whole FETCH
/// otherwise (RFC 3516 4.2: UNKNOWN-CTE).
pub(crate) fn check(items: &[Item], m: &pb::FetchedMessage) -> Result<(), Reply> {
    if items.is_empty() {
        // The common FETCH: no metadata to parse.
        return Ok(());
    }
    let meta = meta_of(m);
    for i in items {
        match plan(&meta, u64::from(m.prefix_len), m.size, &i.path) {
            Ok(_) => {}
            Err(Problem::UnknownCte) => {
                return Err(Reply::No(
                    "[UNKNOWN-CTE] Cannot decode the content-transfer-encoding".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Writes one item of `m`'s FETCH response (after `check` passed).
pub(crate) async fn write_item(
    s: &mut Session,
    item: &Item,
    m: &pb::FetchedMessage,
    meta: &MessageMeta,
) -> std::io::Result<()> {
    let plan = plan(meta, u64::from(m.prefix_len), m.size, &item.path)
        .ok()
        .flatten();
    s.out.extend_from_slice(item.label().as_bytes());
    s.out.push(b' ');
    let Some(plan) = plan else {
        if item.kind == Kind::Size {
            s.out.push(b'0');
        } else {
            s.out.extend_from_slice(b"\"\"");
        }
        return Ok(());
    };
    if item.kind == Kind::Size {
        let size = if plan.cte == Cte::Identity {
            range_len(&plan.raw) + range_len(&plan.body)
        } else {
            pump(s, m.uid, &plan, &(0..u64::MAX), false).await?.0
        };
        s.out.extend_from_slice(size.to_string().as_bytes());
        return Ok(());
    }
    let window = match item.partial {
        None => 0..u64::MAX,
        Some((offset, length)) => {
            u64::from(offset)..u64::from(offset).saturating_add(u64::from(length.get()))
        }
    };
    // First pass: how many octets, and whether a NUL needs literal8.
    let (n, nul) = pump(s, m.uid, &plan, &window, false).await?;
    if nul {
        s.out.push(b'~');
    }
    s.out.extend_from_slice(format!("{{{n}}}\r\n").as_bytes());
    if n == 0 {
        return Ok(());
    }
    s.flush().await?;
    let (written, _) = pump(s, m.uid, &plan, &window, true).await?;
    if written < n {
        // The body changed or went missing between the passes: the
        // announced count is kept so the stream stays in step.
        tracing::warn!(uid = m.uid, "BINARY body shorter on the second pass.");
        let pad = [b' '; 8192];
        let mut left = n - written;
        while left > 0 {
            let k = left.min(pad.len() as u64);
            s.io.get_mut()
                .write_all(pad.get(..k as usize).unwrap_or_default())
                .await?;
            left -= k;
        }
    }
    Ok(())
}

fn range_len(r: &Range<u64>) -> u64 {
    r.end.saturating_sub(r.start)
}

/// Streams the plan's octets through the decoder and looks at those inside
/// `window` (offsets in the decoded output): counts them, notes a NUL and,
/// when `write`, sends them to the client (at most the window's length).
/// Returns (octets in the window, NUL seen).
async fn pump(
    s: &mut Session,
    uid: u32,
    plan: &Plan,
    window: &Range<u64>,
    write: bool,
) -> std::io::Result<(u64, bool)> {
    let mut pos = 0u64;
    let mut count = 0u64;
    let mut nul = false;
    let segments = [
        (plan.raw.clone(), Cte::Identity, false),
        (plan.body.clone(), plan.cte, plan.text),
    ];
    let mut out = Vec::new();
    for (range, cte, text) in segments {
        if range.is_empty() {
            continue;
        }
        if pos >= window.end {
            break;
        }
        let (account, mailbox) = s.target();
        let mut stream = match s
            .client
            .get_body(pb::GetBodyRequest {
                account,
                mailbox,
                uid,
                offset: range.start,
                length: range_len(&range),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                tracing::warn!(%status, uid, "Cannot read a message body.");
                return Ok((count, nul));
            }
        };
        let mut decoder = Decoder::new(cte, text);
        let mut finished = false;
        while !finished && pos < window.end {
            out.clear();
            match stream.next().await {
                Some(Ok(chunk)) => decoder.feed(&chunk.data, &mut out),
                Some(Err(status)) => {
                    tracing::warn!(%status, uid, "Body stream failed mid-way.");
                    return Ok((count, nul));
                }
                None => {
                    decoder.finish(&mut out);
                    finished = true;
                }
            }
            let len = out.len() as u64;
            let from = window.start.max(pos);
            let to = window.end.min(pos + len);
            if from < to {
                let slice = out
                    .get((from - pos) as usize..(to - pos) as usize)
                    .unwrap_or_default();
                nul |= slice.contains(&0);
                count += slice.len() as u64;
                if write {
                    s.io.get_mut().write_all(slice).await?;
                    s.shared.metrics.bytes_out.inc_by(slice.len() as u64);
                }
            }
            pos += len;
        }
    }
    Ok((count, nul))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn binary_items_are_cut_out() {
        let c = cut(b"a FETCH 1:* (FLAGS BINARY.PEEK[1.2]<0.100> UID)\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.plain, b"a FETCH 1:* (FLAGS UID)\r\n");
        assert!(!c.drop_uid);
        assert_eq!(
            c.items,
            vec![Item {
                kind: Kind::Binary { peek: true },
                path: vec![nz(1), nz(2)],
                partial: Some((0, nz(100))),
            }]
        );
        let c = cut(b"t UID FETCH 5 binary.size[2]\r\n").unwrap().unwrap();
        assert_eq!(c.plain, b"t UID FETCH 5 UID\r\n");
        assert!(c.drop_uid);
        assert_eq!(c.items[0].kind, Kind::Size);
        let c = cut(b"t FETCH 1 (BINARY[] BINARY.SIZE[1]) (CHANGEDSINCE 4)\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.plain, b"t FETCH 1 UID (CHANGEDSINCE 4)\r\n");
        assert_eq!(c.items.len(), 2);
        assert!(c.items[0].path.is_empty());
        assert_eq!(c.items[0].label(), "BINARY[]");
        let c = cut(b"t FETCH 1 (BINARY[3]<7.2> BODY.PEEK[HEADER.FIELDS (BINARY)])\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.plain,
            b"t FETCH 1 (BODY.PEEK[HEADER.FIELDS (BINARY)])\r\n"
        );
        assert_eq!(c.items[0].label(), "BINARY[3]<7>");
        assert!(sets_seen(&c.items));
    }

    #[test]
    fn other_fetches_are_left_alone() {
        for line in [
            "a FETCH 1 (FLAGS)\r\n",
            "a FETCH 1 BODY[HEADER.FIELDS (BINARY)]\r\n",
            "a SEARCH SUBJECT BINARY[1]\r\n",
            "a STORE 1 +FLAGS (BINARY)\r\n",
        ] {
            assert_eq!(cut(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn malformed_binary_items_are_bad() {
        for line in [
            "a FETCH 1 BINARY[HEADER]\r\n",
            "a FETCH 1 BINARY[1.0]\r\n",
            "a FETCH 1 BINARY.SIZE[1]<0.5>\r\n",
            "a FETCH 1 BINARY[1]<0.0>\r\n",
            "a FETCH 1 BINARY[1]<5>\r\n",
            "a FETCH 1 (BINARYX[1])\r\n",
            "a FETCH 1 BINARY.PEEK[1]<99999999999.1>\r\n",
        ] {
            assert!(matches!(cut(line.as_bytes()), Some(Err(_))), "{line}");
        }
        // Not even lexable: left to imap-codec, which answers BAD.
        assert_eq!(cut(b"a FETCH 1 BINARY[1\r\n"), None);
    }

    fn decode_all(cte: Cte, text: bool, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut d = Decoder::new(cte, text);
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn base64_decodes_across_chunk_boundaries() {
        let original: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let encoded = BASE64.encode(&original);
        let wrapped: Vec<u8> = encoded
            .as_bytes()
            .chunks(76)
            .flat_map(|l| [l, b"\r\n"].concat())
            .collect();
        for chunk in [1, 3, 5, 76, 4096] {
            assert_eq!(
                decode_all(Cte::Base64, false, &wrapped, chunk),
                original,
                "chunk {chunk}"
            );
        }
        // Unpadded tail, and data after the padding is ignored.
        assert_eq!(decode_all(Cte::Base64, false, b"QUJD\r\nRA", 3), b"ABCD");
        assert_eq!(decode_all(Cte::Base64, false, b"QQ==QUJD", 2), b"A");
    }

    #[test]
    fn decoded_text_gets_crlf() {
        let encoded = BASE64.encode(b"one\ntwo\r\nthree\n");
        assert_eq!(
            decode_all(Cte::Base64, true, encoded.as_bytes(), 2),
            b"one\r\ntwo\r\nthree\r\n"
        );
        // Not for other media types.
        assert_eq!(
            decode_all(Cte::Base64, false, encoded.as_bytes(), 2),
            b"one\ntwo\r\nthree\n"
        );
    }

    #[test]
    fn quoted_printable_decodes_across_chunk_boundaries() {
        let data = b"caf=C3=A9 au lait=\r\n continues\r\nnext line  \r\n=00end";
        let expected = b"caf\xc3\xa9 au lait continues\r\nnext line\r\n\x00end";
        for chunk in [1, 2, 7, 1000] {
            assert_eq!(
                decode_all(Cte::QuotedPrintable, true, data, chunk),
                expected,
                "chunk {chunk}"
            );
        }
        // A line longer than the bound is decoded in pieces, escapes whole.
        let long: Vec<u8> = b"=41".repeat(MAX_QP_LINE);
        let out = decode_all(Cte::QuotedPrintable, false, &long, 10_000);
        assert_eq!(out, vec![b'A'; MAX_QP_LINE]);
        // Raw 8-bit octets and stray `=` pass; lower-case hex is read.
        assert_eq!(
            decode_all(
                Cte::QuotedPrintable,
                true,
                "\u{fc}ber =c3=a9 a=ZZ b= \nx".as_bytes(),
                3
            ),
            "\u{fc}ber \u{e9} a=ZZ bx".as_bytes()
        );
    }

    #[test]
    fn encodings() {
        assert_eq!(cte("7BIT"), Some(Cte::Identity));
        assert_eq!(cte("binary"), Some(Cte::Identity));
        assert_eq!(cte("BASE64"), Some(Cte::Base64));
        assert_eq!(cte("Quoted-Printable"), Some(Cte::QuotedPrintable));
        assert_eq!(cte("X-UUENCODE"), None);
    }

    #[test]
    fn plans() {
        let raw = b"From: a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
        let meta = mailfleet_mime::analyze(raw);
        let size = raw.len() as u64;
        let p = plan(&meta, 0, size, &[nz(2)]).unwrap().unwrap();
        assert_eq!(p.cte, Cte::Base64);
        assert_eq!(&raw[p.body.start as usize..p.body.end as usize], b"AAEC");
        assert_eq!(plan(&meta, 0, size, &[nz(3)]), Err(Problem::UnknownCte));
        assert_eq!(plan(&meta, 0, size, &[]).unwrap().unwrap().raw, 0..size);
        assert_eq!(plan(&meta, 0, size, &[nz(9)]), Ok(None));
        // A composite part: its body as it is, like BODY[part].
        let raw = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n--o--\r\n";
        let meta = mailfleet_mime::analyze(raw);
        let p = plan(&meta, 0, raw.len() as u64, &[nz(1)]).unwrap().unwrap();
        assert_eq!(p.cte, Cte::Identity);
        assert_eq!(
            &raw[p.body.start as usize..p.body.end as usize],
            b"--i\r\n\r\nx\r\n--i--"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary data in arbitrary chunks decodes as it does whole.
        #[test]
        fn chunking_does_not_change_the_result(
            data in prop::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
            which in 0u8..3,
            text in any::<bool>(),
        ) {
            let cte = [Cte::Identity, Cte::Base64, Cte::QuotedPrintable][which as usize];
            prop_assert_eq!(
                decode_all(cte, text, &data, chunk),
                decode_all(cte, text, &data, data.len() + 1)
            );
        }

        #[test]
        fn cut_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut line = b"a FETCH 1 (BINARY".to_vec();
            line.extend_from_slice(&data);
            if let Some(Ok(c)) = cut(&line) {
                prop_assert!(c.plain.ends_with(b"\r\n"));
            }
        }
    }
}
