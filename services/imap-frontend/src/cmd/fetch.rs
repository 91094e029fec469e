//! FETCH and UID FETCH: flags, dates and sizes from FetchMessages; ENVELOPE
//! and BODYSTRUCTURE from the metadata cached at delivery; body sections
//! streamed from GetBody by the byte ranges recorded in that metadata, so no
//! message is parsed again and none is held whole in memory.

pub(crate) mod binary;
mod part;

use std::ops::Range;
use std::sync::Arc;

use futures::StreamExt;
use mailfleet_mime::MessageMeta;
use mailfleet_proto::v1 as pb;
use tokio::io::AsyncWriteExt;

use self::part::find_part;
use crate::encode;
use crate::errors::rpc;
use crate::message_cache::Cached;
use crate::proto::{self, FetchItem, PartPath, Section, SequenceSet};
use crate::session::{Reply, Session, condstore, uid_set};

/// Messages per FetchMessages call, with and without metadata.
const CHUNK_META: usize = 200;
const CHUNK_PLAIN: usize = 5000;
/// Buffered response bytes before writing to the socket.
const FLUSH_AT: usize = 64 * 1024;
/// Largest header block read for HEADER.FIELDS filtering.
const MAX_HEADER_READ: u64 = 1024 * 1024;

/// What a section is, in served-byte offsets.
enum Piece {
    Range(Range<u64>),
    /// A header block filtered by field names.
    Fields {
        range: Range<u64>,
        names: Vec<String>,
        not: bool,
    },
}

/// The byte range of a section; `prefix` is the Return-Path line length.
fn section_piece(meta: &MessageMeta, prefix: u64, size: u64, section: &Option<Section>) -> Piece {
    let root = &meta.body;
    let shift = |r: Range<u64>| (r.start + prefix)..(r.end + prefix);
    let root_header = 0..(root.body_offset + prefix);
    let empty = Piece::Range(0..0);
    // The header of the message a part embeds (or of the top message).
    let message_header = |p: &PartPath| -> Option<Range<u64>> {
        if p.is_empty() {
            return Some(root_header.clone());
        }
        let node = find_part(root, p)?;
        node.message.as_ref().map(|m| shift(m.body.header_range()))
    };
    match section {
        None => Piece::Range(0..size),
        Some(Section::Part(p)) => match find_part(root, p) {
            Some(node) => Piece::Range(shift(node.body_range())),
            None => empty,
        },
        Some(Section::Header(p)) => match message_header(p) {
            Some(r) => Piece::Range(r),
            None => empty,
        },
        Some(Section::Text(p)) if p.is_empty() => Piece::Range(shift(root.body_range())),
        Some(Section::Text(p)) => match find_part(root, p).and_then(|n| n.message.as_ref()) {
            Some(m) => Piece::Range(shift(m.body.body_range())),
            None => empty,
        },
        Some(Section::Mime(p)) => match find_part(root, p) {
            Some(node) => Piece::Range(shift(node.header_range())),
            None => empty,
        },
        Some(Section::HeaderFields { path, not, fields }) => match message_header(path) {
            Some(range) => Piece::Fields {
                range,
                names: fields
                    .iter()
                    .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
                    .collect(),
                not: *not,
            },
            None => empty,
        },
    }
}

/// The section as it is named in the response.
fn section_text(section: &Option<Section>) -> String {
    let path = |p: &PartPath| {
        p.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(".")
    };
    let with = |p: &PartPath, what: &str| {
        if p.is_empty() {
            what.to_owned()
        } else {
            format!("{}.{what}", path(p))
        }
    };
    let fields = |names: &[Vec<u8>]| {
        names
            .iter()
            .map(|n| {
                let mut out = Vec::new();
                encode::string(&mut out, n);
                String::from_utf8_lossy(&out).into_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match section {
        None => String::new(),
        Some(Section::Part(p)) => path(p),
        Some(Section::Header(p)) => with(p, "HEADER"),
        Some(Section::Text(p)) => with(p, "TEXT"),
        Some(Section::Mime(p)) => with(p, "MIME"),
        Some(Section::HeaderFields {
            path: p,
            not,
            fields: names,
        }) => {
            let what = if *not {
                "HEADER.FIELDS.NOT"
            } else {
                "HEADER.FIELDS"
            };
            format!("{} ({})", with(p, what), fields(names))
        }
    }
}

/// The fields of a header block kept by a HEADER.FIELDS(.NOT) list, plus
/// the terminating blank line.
fn filter_fields(block: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    let mut pos = 0;
    while pos < block.len() {
        let end = block[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |i| pos + i + 1);
        let line = &block[pos..end];
        pos = end;
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| {
                    String::from_utf8_lossy(&line[..i])
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            keep = names.contains(&name) != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// One requested item, normalised.
enum Item {
    Uid,
    Flags,
    /// RFC 7162 MODSEQ.
    ModSeq,
    InternalDate,
    Size,
    Envelope,
    Structure(bool),
    Section {
        label: String,
        section: Option<Section>,
        partial: Option<(u32, u32)>,
    },
}

/// The items other than BINARY (see `binary`), whether they need the
/// cached metadata, and whether they set \Seen.
fn items(list: &[FetchItem], uid: bool) -> (Vec<Item>, bool, bool) {
    let mut out = Vec::new();
    let mut meta = false;
    let mut seen = false;
    if uid && !list.contains(&FetchItem::Uid) {
        out.push(Item::Uid);
    }
    for n in list {
        out.push(match n {
            FetchItem::Uid => Item::Uid,
            FetchItem::Flags => Item::Flags,
            FetchItem::ModSeq => Item::ModSeq,
            FetchItem::InternalDate => Item::InternalDate,
            FetchItem::Rfc822Size => Item::Size,
            // Served by `binary`.
            FetchItem::Binary { .. } | FetchItem::BinarySize { .. } => continue,
            FetchItem::Envelope => {
                meta = true;
                Item::Envelope
            }
            FetchItem::Body => {
                meta = true;
                Item::Structure(false)
            }
            FetchItem::BodyStructure => {
                meta = true;
                Item::Structure(true)
            }
            FetchItem::Rfc822 => {
                seen = true;
                Item::Section {
                    label: "RFC822".into(),
                    section: None,
                    partial: None,
                }
            }
            FetchItem::Rfc822Header => {
                meta = true;
                Item::Section {
                    label: "RFC822.HEADER".into(),
                    section: Some(Section::Header(Vec::new())),
                    partial: None,
                }
            }
            FetchItem::Rfc822Text => {
                meta = true;
                seen = true;
                Item::Section {
                    label: "RFC822.TEXT".into(),
                    section: Some(Section::Text(Vec::new())),
                    partial: None,
                }
            }
            FetchItem::BodySection {
                section,
                partial,
                peek,
            } => {
                if section.is_some() {
                    meta = true;
                }
                if !peek {
                    seen = true;
                }
                let mut label = format!("BODY[{}]", section_text(section));
                if let Some((start, _)) = partial {
                    label.push_str(&format!("<{start}>"));
                }
                Item::Section {
                    label,
                    section: section.clone(),
                    partial: partial.map(|(s, l)| (s, l.get())),
                }
            }
        });
    }
    (out, meta, seen)
}

/// FETCH of the set the command names (`$` resolved first).
pub(crate) async fn run(s: &mut Session, cmd: proto::Fetch) -> std::io::Result<Reply> {
    match s.resolve_saved(cmd.set.clone(), cmd.uid) {
        Some(set) => fetch(s, &set, &cmd).await,
        None => s.nothing_to_do("FETCH", cmd.uid).await,
    }
}

/// FETCH and UID FETCH of `set` (`$` already resolved), with the RFC 7162
/// MODSEQ item and CHANGEDSINCE/VANISHED modifiers and RFC 3516 BINARY
/// items.
async fn fetch(s: &mut Session, set: &SequenceSet, cmd: &proto::Fetch) -> std::io::Result<Reply> {
    let uid = cmd.uid;
    let list = cmd.items.items();
    let binary: Vec<binary::Item> = list.iter().filter_map(binary::Item::from_fetch).collect();
    let (mut items, mut need_meta, mut implies_seen) = items(&list, uid);
    if !binary.is_empty() {
        // BINARY items need the part map.
        need_meta = true;
        implies_seen |= binary::sets_seen(&binary);
    }
    if cmd.vanished && !uid {
        return Ok(Reply::Bad("VANISHED needs UID FETCH".into()));
    }
    if cmd.vanished && !s.rfc7162.qresync {
        return Ok(Reply::Bad("Enable QRESYNC first".into()));
    }
    let asks_modseq = list.contains(&FetchItem::ModSeq);
    // CHANGEDSINCE implies the MODSEQ item (RFC 7162 3.1.4.1).
    if cmd.changed_since.is_some() && !asks_modseq {
        items.push(Item::ModSeq);
    }
    // New messages become addressable first (EXPUNGE only for UID FETCH).
    s.sync(uid).await?;
    // A CONDSTORE enabling command (RFC 7162 3.1).
    if asks_modseq || cmd.changed_since.is_some() {
        s.enable_condstore();
    }
    let sel = s.view()?;
    if !uid && sel.names_missing_message(set) {
        return Ok(Reply::Bad("Invalid message sequence number".into()));
    }
    let mut uids = sel.resolve(set, uid);
    if let Some(since) = cmd.changed_since {
        // Changes are read from the lowest UID that can matter on.
        let from = if cmd.vanished {
            condstore::lowest(set)
        } else {
            uids.first().copied().unwrap_or(u32::MAX)
        };
        let (live, gone) = if from == u32::MAX {
            (Vec::new(), Vec::new())
        } else {
            match changed_since(s, since, from).await {
                Ok(c) => c,
                Err(status) => {
                    return Ok(crate::errors::reply(
                        &status,
                        crate::errors::Target::Mailbox,
                    ));
                }
            }
        };
        uids.retain(|u| live.binary_search(u).is_ok());
        if cmd.vanished
            && let Some(sel) = s.state.selected()
        {
            // Expunged UIDs of the set the session no longer has.
            let gone: Vec<u32> = gone
                .into_iter()
                .filter(|&u| condstore::set_contains(set, u) && sel.seq_of(u).is_none())
                .collect();
            for line in condstore::vanished_lines(&gone, true) {
                s.untagged(&line);
            }
        }
    }
    let sel = s.view()?;
    let set_seen = implies_seen && !sel.read_only;
    let mailbox_id = sel.id;
    // Flags, UIDs and modseqs are the session's own knowledge: no call.
    let local = cmd.changed_since.is_none()
        && binary.is_empty()
        && !set_seen
        && items
            .iter()
            .all(|i| matches!(i, Item::Uid | Item::Flags | Item::ModSeq));
    if local {
        for uid in uids {
            write_local(s, &items, uid);
            if s.out.len() > FLUSH_AT {
                s.flush().await?;
            }
        }
        s.sync(uid).await?;
        return Ok(Reply::Ok("FETCH completed".into()));
    }
    let (account, mailbox) = s.target()?;
    let chunk = if need_meta { CHUNK_META } else { CHUNK_PLAIN };
    // The message's own header (HEADER.FIELDS, HEADER, RFC822.HEADER, what
    // clients list messages with) comes with the metadata, not through a
    // GetBody call per message.
    let with_header = items.iter().any(|i| match i {
        Item::Section {
            section: Some(Section::Header(path) | Section::HeaderFields { path, .. }),
            ..
        } => path.is_empty(),
        _ => false,
    });
    // What never changes comes from the process's message cache; flags and
    // modseq from the view. CHANGEDSINCE filters by mailstore's modseqs and
    // an implicit \Seen needs the current flags: both ask for every message.
    let cached_ok = cmd.changed_since.is_none() && !set_seen;
    for part in uids.chunks(chunk) {
        let mut found: Vec<Option<Arc<Cached>>> = part
            .iter()
            .map(|&u| {
                cached_ok
                    .then(|| s.shared.messages.get(mailbox_id, u, need_meta, with_header))
                    .flatten()
            })
            .collect();
        let missing: Vec<u32> = part
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(&u, _)| u)
            .collect();
        let mut flags_changed = std::collections::HashSet::new();
        // (uid, flags, modseq) as mailstore reported them.
        let mut states: Vec<(u32, Vec<String>, u64)> = Vec::new();
        if !missing.is_empty() {
            // Ask for what an entry kept already has too, so the new entry
            // replaces it rather than being refused as the lesser one.
            let kept: Vec<Option<Arc<Cached>>> = missing
                .iter()
                .map(|&u| s.shared.messages.peek(mailbox_id, u))
                .collect();
            let with_meta = need_meta || kept.iter().flatten().any(|k| k.with_meta);
            let with_header = with_header || kept.iter().flatten().any(|k| k.with_header);
            let r = rpc!(s.client.fetch_messages(pb::FetchMessagesRequest {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uids: Some(uid_set(&missing)),
                with_meta,
                with_header,
            }));
            s.note_highest(mailbox_id, r.highestmodseq, false);
            let mut messages = r.messages;
            if let Some(since) = cmd.changed_since {
                messages.retain(|m| m.modseq > since);
            }
            for m in messages {
                states.push((m.uid, m.flags.clone(), m.modseq));
                let Ok(i) = part.binary_search(&m.uid) else {
                    continue;
                };
                let parsed = s
                    .shared
                    .messages
                    .peek(mailbox_id, m.uid)
                    .filter(|k| k.with_meta)
                    .map(|k| k.meta.clone());
                let entry = Arc::new(Cached::from_fetched(m, with_meta, with_header, parsed));
                s.shared.messages.insert(mailbox_id, entry.clone());
                if let Some(slot) = found.get_mut(i) {
                    *slot = Some(entry);
                }
            }
        }
        // Before any \Seen is set or anything written: a BINARY that cannot
        // be served fails the command (RFC 3516 4.2: UNKNOWN-CTE); without
        // BINARY items this is free.
        for c in found.iter().flatten() {
            if let Err(reply) = binary::check(&binary, c) {
                return Ok(reply);
            }
        }
        if set_seen {
            let unseen: Vec<u32> = states
                .iter()
                .filter(|(_, flags, _)| !flags.iter().any(|f| f == "\\Seen"))
                .map(|(uid, _, _)| *uid)
                .collect();
            if !unseen.is_empty() {
                let r = rpc!(s.client.store_flags(pb::StoreFlagsRequest {
                    account: account.clone(),
                    mailbox: mailbox.clone(),
                    uids: Some(uid_set(&unseen)),
                    mode: pb::FlagsMode::FlagsAdd as i32,
                    flags: vec!["\\Seen".into()],
                    unchanged_since: 0,
                }));
                s.note_highest(mailbox_id, r.highestmodseq, !r.updated.is_empty());
                for u in r.updated {
                    flags_changed.insert(u.uid);
                    states.push((u.uid, u.flags, u.modseq));
                }
            }
        }
        // The view shows the flags and modseqs just read (an older report
        // than what it holds is ignored).
        if let Some(sel) = s.state.selected_mut() {
            for (uid, flags, modseq) in &states {
                sel.learn(*uid, flags, *modseq);
            }
        }
        for c in found.iter().flatten() {
            write_message(s, &items, &binary, c, flags_changed.contains(&c.uid)).await?;
        }
    }
    s.sync(uid).await?;
    Ok(Reply::Ok("FETCH completed".into()))
}

/// Messages changed after `since` in the selected mailbox, from UID `from`
/// on: (live UIDs, expunged UIDs), both ascending.
async fn changed_since(
    s: &mut Session,
    since: u64,
    from: u32,
) -> Result<(Vec<u32>, Vec<u32>), tonic::Status> {
    let (account, mailbox) = s.target()?;
    let listing =
        crate::session::list_mailbox(s.client.clone(), &account, &mailbox, since, from, false)
            .await?;
    let (gone, live): (Vec<_>, Vec<_>) = listing.messages.iter().partition(|m| m.expunged);
    let live = live.iter().map(|m| m.uid).collect();
    let gone = gone.iter().map(|m| m.uid).collect();
    Ok((live, gone))
}

/// One FETCH response of UID, FLAGS and MODSEQ items from the session's
/// own state.
fn write_local(s: &mut Session, items: &[Item], uid: u32) {
    if items.iter().any(|i| matches!(i, Item::Flags)) {
        announce_keywords_of(s, uid);
    }
    let Some(sel) = s.state.selected() else {
        return;
    };
    let (Some(seq), Some(modseq)) = (sel.seq_of(uid), sel.state_of(uid).map(|st| st.modseq)) else {
        return;
    };
    s.out
        .extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.out.push(b' ');
        }
        match item {
            Item::Uid => s.out.extend_from_slice(format!("UID {uid}").as_bytes()),
            Item::ModSeq => s
                .out
                .extend_from_slice(format!("MODSEQ ({modseq})").as_bytes()),
            _ => put_flags(s, uid),
        }
    }
    s.out.extend_from_slice(b")\r\n");
}

/// FLAGS of `uid` as the view holds it (\\Recent added where it applies).
fn put_flags(s: &mut Session, uid: u32) {
    let Some(sel) = s.state.selected() else {
        return;
    };
    let recent = !s.rev2 && sel.is_recent(uid);
    s.out.extend_from_slice(b"FLAGS ");
    match sel.state_of(uid) {
        Some(state) => state.flags.encode(&mut s.out, recent),
        None => s.out.extend_from_slice(b"()"),
    }
}

/// Announces in FLAGS the keywords of `uid` the client was not told of
/// yet; before the FETCH line that shows them starts.
fn announce_keywords_of(s: &mut Session, uid: u32) {
    let unknown: Option<Vec<String>> = s.state.selected().and_then(|sel| {
        let keywords = sel.state_of(uid)?.flags.keywords();
        (!sel.knows_keywords(keywords.clone())).then(|| keywords.map(str::to_owned).collect())
    });
    if let Some(keywords) = unknown {
        s.announce_keywords(&keywords);
    }
}

/// One FETCH response: what never changes from `m`, flags and modseq from
/// the view.
async fn write_message(
    s: &mut Session,
    items: &[Item],
    binary: &[binary::Item],
    m: &Cached,
    add_flags: bool,
) -> std::io::Result<()> {
    let Some(seq) = s.state.selected().and_then(|sel| sel.seq_of(m.uid)) else {
        return Ok(());
    };
    let modseq = s
        .state
        .selected()
        .and_then(|sel| sel.state_of(m.uid))
        .map_or(0, |state| state.modseq);
    let meta = &m.meta;
    let prefix = u64::from(m.prefix_len);
    if add_flags || items.iter().any(|i| matches!(i, Item::Flags)) {
        announce_keywords_of(s, m.uid);
    }
    s.out
        .extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    let mut first = true;
    let mut flags_written = false;
    let mut uid_written = false;
    let mut modseq_written = false;
    for item in items {
        if !first {
            s.out.push(b' ');
        }
        first = false;
        match item {
            Item::Uid => {
                uid_written = true;
                s.out.extend_from_slice(format!("UID {}", m.uid).as_bytes())
            }
            Item::ModSeq => {
                modseq_written = true;
                s.out
                    .extend_from_slice(format!("MODSEQ ({modseq})").as_bytes())
            }
            Item::Flags => {
                flags_written = true;
                put_flags(s, m.uid);
            }
            Item::InternalDate => {
                s.out.extend_from_slice(b"INTERNALDATE ");
                encode::internal_date(&mut s.out, m.internal_date_ms);
            }
            Item::Size => s
                .out
                .extend_from_slice(format!("RFC822.SIZE {}", m.size).as_bytes()),
            Item::Envelope => {
                s.out.extend_from_slice(b"ENVELOPE ");
                encode::envelope(&mut s.out, &meta.envelope);
            }
            Item::Structure(ext) => {
                s.out.extend_from_slice(if *ext {
                    b"BODYSTRUCTURE ".as_slice()
                } else {
                    b"BODY ".as_slice()
                });
                encode::body_structure(&mut s.out, &meta.body, *ext);
            }
            Item::Section {
                label,
                section,
                partial,
            } => {
                s.out.extend_from_slice(label.as_bytes());
                s.out.push(b' ');
                let piece = section_piece(meta, prefix, m.size, section);
                match piece {
                    Piece::Range(r) => {
                        let r = clip(r, m.size, *partial);
                        match header_slice(m, &r) {
                            Some(data) => {
                                s.out.extend_from_slice(
                                    format!("{{{}}}\r\n", data.len()).as_bytes(),
                                );
                                s.out.extend_from_slice(data);
                            }
                            None => stream_literal(s, m, r).await?,
                        }
                    }
                    Piece::Fields { range, names, not } => {
                        let range = range.start..range.end.min(range.start + MAX_HEADER_READ);
                        let data = match header_slice(m, &range) {
                            Some(block) => filter_fields(block, &names, not),
                            None => {
                                let block = read_range(s, m, range).await?;
                                filter_fields(&block, &names, not)
                            }
                        };
                        let r = clip(0..data.len() as u64, data.len() as u64, *partial);
                        let slice = data
                            .get(r.start as usize..r.end as usize)
                            .unwrap_or_default();
                        s.out
                            .extend_from_slice(format!("{{{}}}\r\n", slice.len()).as_bytes());
                        s.out.extend_from_slice(slice);
                    }
                }
            }
        }
    }
    for item in binary {
        if !first {
            s.out.push(b' ');
        }
        first = false;
        binary::write_item(s, item, m).await?;
    }
    if add_flags && !flags_written {
        s.out.push(b' ');
        put_flags(s, m.uid);
    }
    // An implicit \Seen is a flag change: with CONDSTORE on, it carries
    // UID and MODSEQ (RFC 7162 3.1).
    if add_flags && s.rfc7162.condstore {
        if !uid_written {
            s.out
                .extend_from_slice(format!(" UID {}", m.uid).as_bytes());
        }
        if !modseq_written {
            s.out
                .extend_from_slice(format!(" MODSEQ ({modseq})").as_bytes());
        }
    }
    s.out.extend_from_slice(b")\r\n");
    if s.out.len() > FLUSH_AT {
        s.flush().await?;
    }
    Ok(())
}

/// The bytes of `r` when they lie within the header block mailstore sent
/// with the message (None: read them with GetBody).
fn header_slice<'m>(m: &'m Cached, r: &Range<u64>) -> Option<&'m [u8]> {
    if m.header.is_empty() {
        return None;
    }
    m.header
        .get(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?)
}

/// The range clipped to the message and to a `<start.length>` partial.
fn clip(r: Range<u64>, size: u64, partial: Option<(u32, u32)>) -> Range<u64> {
    let end = r.end.min(size);
    let start = r.start.min(end);
    match partial {
        None => start..end,
        Some((off, len)) => {
            let s = (start + u64::from(off)).min(end);
            s..(s + u64::from(len)).min(end)
        }
    }
}

/// Reads a (small) range of the served message.
async fn read_range(s: &mut Session, m: &Cached, r: Range<u64>) -> std::io::Result<Vec<u8>> {
    let uid = m.uid;
    let mut out = Vec::new();
    if r.is_empty() {
        return Ok(out);
    }
    let (account, mailbox) = s.target()?;
    let stream = s
        .client
        .get_body(pb::GetBodyRequest {
            account,
            mailbox,
            uid,
            offset: r.start,
            length: r.end - r.start,
            // The session still holds the message: another session's
            // expunge since FetchMessages must not turn it into nothing.
            include_expunged: true,
            // What FetchMessages read: no second lookup of the row.
            body_ref: m.body_ref.clone(),
        })
        .await;
    match stream {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) => out.extend_from_slice(&chunk.data),
                    Err(status) => {
                        tracing::warn!(%status, uid, "Body stream failed mid-way.");
                        break;
                    }
                }
            }
        }
        Err(status) => tracing::warn!(%status, uid, "Cannot read a message header."),
    }
    Ok(out)
}

/// Writes `{n}\r\n` and the bytes of the range, streamed from mailstore.
/// Exactly n bytes are written whatever storage returns (padded or cut), so
/// the protocol stream stays in step even if a body went missing.
async fn stream_literal(s: &mut Session, m: &Cached, r: Range<u64>) -> std::io::Result<()> {
    let uid = m.uid;
    let n = r.end - r.start;
    s.out.extend_from_slice(format!("{{{n}}}\r\n").as_bytes());
    if n == 0 {
        return Ok(());
    }
    s.flush().await?;
    let (account, mailbox) = s.target()?;
    let mut written = 0u64;
    match s
        .client
        .get_body(pb::GetBodyRequest {
            account,
            mailbox,
            uid,
            offset: r.start,
            length: n,
            include_expunged: true,
            body_ref: m.body_ref.clone(),
        })
        .await
    {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else {
                    tracing::warn!(uid, "Body stream failed mid-way.");
                    break;
                };
                let take = (n - written).min(chunk.data.len() as u64) as usize;
                let data = chunk.data.get(..take).unwrap_or_default();
                s.io.get_mut().write_all(data).await?;
                s.shared.metrics.bytes_out.inc_by(data.len() as u64);
                written += take as u64;
                if written >= n {
                    break;
                }
            }
        }
        Err(status) => tracing::warn!(%status, uid, "Cannot read a message body."),
    }
    if written < n {
        let pad = vec![b' '; (n - written) as usize];
        s.io.get_mut().write_all(&pad).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_filtering() {
        let block = b"From: a\r\nSubject: s\r\n  folded\r\nTo: b\r\n\r\n";
        let names = vec!["subject".to_owned()];
        assert_eq!(
            filter_fields(block, &names, false),
            b"Subject: s\r\n  folded\r\n\r\n"
        );
        assert_eq!(
            filter_fields(block, &names, true),
            b"From: a\r\nTo: b\r\n\r\n"
        );
    }

    #[test]
    fn partial_ranges_clip() {
        assert_eq!(clip(10..20, 100, None), 10..20);
        assert_eq!(clip(10..20, 100, Some((5, 100))), 15..20);
        assert_eq!(clip(10..20, 15, None), 10..15);
        assert_eq!(clip(10..20, 100, Some((50, 5))), 20..20);
    }
}
