//! BINARY (RFC 3516, part of IMAP4rev2): `FETCH BINARY[section]<partial>`,
//! `BINARY.PEEK[...]` and `BINARY.SIZE[section]`.
//!
//! The items are parsed in `proto`; FETCH asks [`check`] whether every
//! message can serve them and writes each with [`write_item`]. A leaf part's
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

use crate::message_cache::Cached;
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

impl Item {
    /// The BINARY item a typed fetch item is, if it is one.
    pub(crate) fn from_fetch(item: &crate::proto::FetchItem) -> Option<Item> {
        use crate::proto::FetchItem;
        Some(match item {
            FetchItem::Binary {
                peek,
                path,
                partial,
            } => Item {
                kind: Kind::Binary { peek: *peek },
                path: path.clone(),
                partial: *partial,
            },
            FetchItem::BinarySize { path } => Item {
                kind: Kind::Size,
                path: path.clone(),
                partial: None,
            },
            _ => return None,
        })
    }
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
    let Some(node) = super::part::find_part(root, path) else {
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

/// Whether every item can be served for `m`: the reply of the whole FETCH
/// otherwise (RFC 3516 4.2: UNKNOWN-CTE).
pub(crate) fn check(items: &[Item], m: &Cached) -> Result<(), Reply> {
    for i in items {
        match plan(&m.meta, u64::from(m.prefix_len), m.size, &i.path) {
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
pub(crate) async fn write_item(s: &mut Session, item: &Item, m: &Cached) -> std::io::Result<()> {
    let plan = plan(&m.meta, u64::from(m.prefix_len), m.size, &item.path)
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
            pump(s, m, &plan, &(0..u64::MAX), false).await?.0
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
    let (n, nul) = pump(s, m, &plan, &window, false).await?;
    if nul {
        s.out.push(b'~');
    }
    s.out.extend_from_slice(format!("{{{n}}}\r\n").as_bytes());
    if n == 0 {
        return Ok(());
    }
    s.flush().await?;
    let (written, _) = pump(s, m, &plan, &window, true).await?;
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
    m: &Cached,
    plan: &Plan,
    window: &Range<u64>,
    write: bool,
) -> std::io::Result<(u64, bool)> {
    let uid = m.uid;
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
        let (account, mailbox) = s.target()?;
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
                // Where FetchMessages found it: no second lookup of the row.
                body_ref: m.body_ref.clone(),
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

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
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
}
