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

use futures::StreamExt;
use mailfleet_mime::MessageMeta;
use mailfleet_mime::decode::{Cte, Decoder, cte};
use mailfleet_proto::v1 as pb;
use tokio::io::AsyncWriteExt;

use crate::rfc7162::{Tok, lex, matching, text};
use crate::session::{Reply, Session};

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

/// Where the served octets of one item come from: `raw` is sent as it is,
/// then `body` decoded with `cte` (exactly the decoded octets, line ends
/// as encoded, so sizes and partial offsets count them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    raw: Range<u64>,
    body: Range<u64>,
    cte: Cte,
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
            }));
        }
        let cte = cte(&root.encoding).ok_or(Problem::UnknownCte)?;
        return Ok(Some(Plan {
            raw: 0..(root.body_offset + prefix).min(size),
            body: shift(root.body_range()),
            cte,
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
        (plan.raw.clone(), Cte::Identity),
        (plan.body.clone(), plan.cte),
    ];
    let mut out = Vec::new();
    for (range, cte) in segments {
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
                // Not yet expunged for this session (see fetch.rs).
                include_expunged: true,
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => {
                tracing::warn!(%status, uid, "Cannot read a message body.");
                return Ok((count, nul));
            }
        };
        let mut decoder = Decoder::new(cte);
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
