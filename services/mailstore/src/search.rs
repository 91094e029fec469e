//! SearchMessages: evaluates a [`SearchKey`] tree over one mailbox's live
//! messages. Flags, UIDs, dates and sizes come from the message rows; the
//! envelope headers (Subject, From, To, Cc, Bcc, ...) from the cached
//! metadata; other header fields read the header block and BODY/TEXT the
//! body, streamed from object storage, only for messages the cheaper keys
//! left in. BODY and TEXT match decoded text (see [`crate::search_text`]);
//! header keys match the header block as written, case-insensitively. A
//! message's body is read once per SEARCH whatever the number of BODY and
//! TEXT keys, several messages at a time; when the caller goes away (the
//! IMAP client disconnected and imap-frontend dropped the call), tonic
//! drops this future and the reads stop.

use std::sync::Arc;

use futures::StreamExt;

use mailfleet_mime::{EnvelopeAddress, MessageMeta};
use mailfleet_proto::v1::{SearchKey, SearchOp};

use crate::deliver::return_path_line;
use crate::error::{Result, StoreError};
use crate::mailbox_cache::Message;
use crate::meta_cache::{Entry, SearchMeta};
use crate::search_text::TextKey;
use crate::store::Store;

const DAY_MS: i64 = 86_400_000;
/// Deepest key tree accepted.
const MAX_DEPTH: usize = 64;

struct Row<'a> {
    msg: &'a Message,
    meta: Option<Arc<Entry>>,
}

impl Row<'_> {
    fn meta(&self) -> Option<&SearchMeta> {
        self.meta.as_deref().and_then(Entry::search)
    }

    /// The whole metadata (the part tree), parsed again for the few
    /// messages a BODY or TEXT key has to read.
    fn full_meta(&self) -> Option<MessageMeta> {
        serde_json::from_str(&self.meta.as_deref()?.json).ok()
    }

    /// The Return-Path line mailstore puts before a delivered message.
    fn prefix(&self) -> Vec<u8> {
        return_path_line(self.msg.return_path.as_deref())
    }
}

/// What the evaluation of a key needs beyond the row.
#[derive(Default)]
struct Needs {
    meta: bool,
}

fn needs(key: &SearchKey, n: &mut Needs, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(StoreError::InvalidArgument("search key too deep".into()));
    }
    match key.op() {
        SearchOp::SearchHeader
        | SearchOp::SearchBody
        | SearchOp::SearchText
        | SearchOp::SearchSentBefore
        | SearchOp::SearchSentOn
        | SearchOp::SearchSentSince => n.meta = true,
        _ => {}
    }
    for c in &key.children {
        needs(c, n, depth + 1)?;
    }
    Ok(())
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn addresses(list: &[EnvelopeAddress]) -> String {
    let mut out = String::new();
    for a in list {
        if let Some(n) = &a.name {
            out.push_str(n);
            out.push(' ');
        }
        out.push('<');
        out.push_str(a.mailbox.as_deref().unwrap_or_default());
        if let Some(h) = &a.host {
            out.push('@');
            out.push_str(h);
        }
        out.push_str("> ");
    }
    out
}

/// Unfolded value(s) of header `name` in a raw header block.
fn header_values(block: &[u8], name: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(block);
    let mut found: Option<Vec<u8>> = None;
    let mut current: Option<String> = None;
    let flush = |cur: &mut Option<String>, found: &mut Option<Vec<u8>>| {
        if let Some(v) = cur.take() {
            let f = found.get_or_insert_with(Vec::new);
            f.extend_from_slice(v.as_bytes());
            f.push(b' ');
        }
    };
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        flush(&mut current, &mut found);
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_owned());
        }
    }
    flush(&mut current, &mut found);
    found
}

impl Store {
    pub async fn search_messages(
        &self,
        account: &str,
        mailbox: &str,
        key: Option<&SearchKey>,
    ) -> Result<Vec<u32>> {
        let found = self
            .search_messages_with_modseqs(account, mailbox, key)
            .await?;
        Ok(found.into_iter().map(|(uid, _)| uid).collect())
    }

    /// Like [`Store::search_messages`], with each match's modseq.
    pub async fn search_messages_with_modseqs(
        &self,
        account: &str,
        mailbox: &str,
        key: Option<&SearchKey>,
    ) -> Result<Vec<(u32, u64)>> {
        let mailbox = crate::mailboxes::canonical_name(mailbox);
        let addr = crate::store::parse_address(account)?;
        let all = SearchKey::default();
        let key = key.unwrap_or(&all);
        let mut n = Needs::default();
        needs(key, &mut n, 0)?;
        let listing = self
            .mailbox_cache
            .listing(&self.pool, &addr.full(), &mailbox)
            .await?;
        // Header and body keys read the metadata, from the cache.
        let metas = if n.meta {
            let ids: Vec<&str> = listing.messages.iter().map(|m| &*m.blob_id).collect();
            self.meta_cache.get_many(&self.pool, &ids).await?
        } else {
            vec![None; listing.messages.len()]
        };
        let max_uid = listing.messages.last().map_or(0, |m| m.uid);
        let rows: Vec<Row<'_>> = listing
            .messages
            .iter()
            .zip(metas)
            .map(|(msg, meta)| Row { msg, meta })
            .collect();
        // Most messages are decided by the cheap keys; the others read
        // object storage, a bounded number at a time, each once for all of
        // its slow keys.
        let cheap_hits: Vec<Option<bool>> = rows.iter().map(|r| cheap(key, r, max_uid)).collect();
        let slow: Vec<usize> = cheap_hits
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.is_none().then_some(i))
            .collect();
        let rows_ref = &rows;
        let mut slow = futures::stream::iter(slow)
            .map(move |i| async move {
                let Some(row) = rows_ref.get(i) else {
                    return Ok((i, false));
                };
                let read = self.read_for(key, row).await?;
                Ok::<_, StoreError>((i, eval(key, row, max_uid, &read)))
            })
            .buffer_unordered(CONCURRENT_READS);
        let mut hits: Vec<bool> = cheap_hits.iter().map(|c| c.unwrap_or(false)).collect();
        // The IMAP client may leave meanwhile: then its frontend drops the
        // call and no more bodies are read for nobody.
        let gone = crate::detach::caller_gone().unwrap_or_default();
        loop {
            let done = tokio::select! {
                biased;
                () = gone.cancelled() => {
                    self.metrics.search_cancelled.inc();
                    return Err(StoreError::Cancelled);
                }
                done = slow.next() => done,
            };
            let Some(done) = done else { break };
            let (i, hit) = done?;
            if let Some(h) = hits.get_mut(i) {
                *h = hit;
            }
        }
        Ok(rows
            .iter()
            .zip(hits)
            .filter(|(_, hit)| *hit)
            .map(|(row, _)| {
                (
                    u32::try_from(row.msg.uid).unwrap_or(u32::MAX),
                    u64::try_from(row.msg.modseq).unwrap_or(0),
                )
            })
            .collect())
    }

    /// Reads what `key`'s slow keys need of one message: the header block
    /// for header fields the cache does not hold, and the decoded text for
    /// every BODY and TEXT key at once.
    async fn read_for(&self, key: &SearchKey, row: &Row<'_>) -> Result<Read> {
        let mut wanted = Wanted::default();
        wanted.gather(key, row);
        let mut read = Read::default();
        if wanted.header_block || !wanted.texts.is_empty() {
            self.metrics.search_reads.inc();
        }
        if wanted.header_block
            && let Some(meta) = row.meta()
        {
            read.header_block = self
                .blobs
                .get_range(&row.msg.blob_id, 0..meta.header_len)
                .await?
                .to_vec();
        }
        // Metadata that does not parse matches nothing, as none.
        if !wanted.texts.is_empty()
            && let Some(full) = row.full_meta()
        {
            let found = crate::search_text::contains_each(
                &self.blobs,
                &row.msg.blob_id,
                &full,
                &wanted.texts,
            )
            .await?;
            read.texts = wanted.texts.into_iter().zip(found).collect();
        }
        Ok(read)
    }
}

/// Object-storage reads one SEARCH keeps in flight at once.
const CONCURRENT_READS: usize = 8;

/// What a message's slow keys need read.
#[derive(Default)]
struct Wanted {
    header_block: bool,
    texts: Vec<TextKey>,
}

impl Wanted {
    fn gather(&mut self, key: &SearchKey, row: &Row<'_>) {
        match key.op() {
            SearchOp::SearchHeader if cached_header(key, row).is_none() => {
                self.header_block = true;
            }
            SearchOp::SearchBody | SearchOp::SearchText => {
                let k = TextKey {
                    needle: key.text.clone(),
                    headers: key.op() == SearchOp::SearchText,
                };
                if !self.texts.contains(&k) {
                    self.texts.push(k);
                }
            }
            _ => key.children.iter().for_each(|c| self.gather(c, row)),
        }
    }
}

/// What was read of one message for its slow keys.
#[derive(Default)]
struct Read {
    header_block: Vec<u8>,
    texts: Vec<(TextKey, bool)>,
}

/// Whether `row` matches `key`, with what [`Store::read_for`] read.
fn eval(key: &SearchKey, row: &Row<'_>, max_uid: i64, read: &Read) -> bool {
    if let Some(hit) = cheap(key, row, max_uid) {
        return hit;
    }
    match key.op() {
        SearchOp::SearchAnd => key.children.iter().all(|c| eval(c, row, max_uid, read)),
        SearchOp::SearchOr => key.children.iter().any(|c| eval(c, row, max_uid, read)),
        SearchOp::SearchNot => key
            .children
            .first()
            .is_some_and(|c| !eval(c, row, max_uid, read)),
        SearchOp::SearchHeader => {
            let name = key.header.to_ascii_lowercase();
            header_values(&read.header_block, &name)
                .is_some_and(|v| contains_ci(&v, key.text.as_bytes()))
        }
        SearchOp::SearchBody | SearchOp::SearchText => {
            let headers = key.op() == SearchOp::SearchText;
            read.texts
                .iter()
                .any(|(k, hit)| *hit && k.headers == headers && k.needle == key.text)
        }
        _ => false,
    }
}

/// Whether `row` matches `key`, when that is known without reading object
/// storage (flags, UIDs, dates, sizes, modseqs, the cached envelope
/// headers); None when a header block or body must be read. Most searches
/// are answered here, without a future per key and message.
fn cheap(key: &SearchKey, row: &Row<'_>, max_uid: i64) -> Option<bool> {
    let msg = row.msg;
    let sent_day = || row.meta().and_then(SearchMeta::sent_day_ms);
    Some(match key.op() {
        SearchOp::SearchAll => true,
        SearchOp::SearchNone => false,
        // One child decides AND by being false and OR by being true.
        SearchOp::SearchAnd => return cheap_all(&key.children, row, max_uid, false),
        SearchOp::SearchOr => return cheap_all(&key.children, row, max_uid, true),
        SearchOp::SearchNot => match key.children.first() {
            Some(c) => !cheap(c, row, max_uid)?,
            None => false,
        },
        SearchOp::SearchUid => key.uids.as_ref().is_some_and(|s| {
            s.ranges.iter().any(|r| {
                let b = |v: u32| if v == 0 { max_uid } else { i64::from(v) };
                let (a, z) = (b(r.first), b(r.last));
                (a.min(z)..=a.max(z)).contains(&msg.uid)
            })
        }),
        SearchOp::SearchFlag => msg.flags.iter().any(|x| x.eq_ignore_ascii_case(&key.text)),
        SearchOp::SearchBefore => msg.date_ms < key.date_ms,
        SearchOp::SearchOn => {
            (key.date_ms..key.date_ms.saturating_add(DAY_MS)).contains(&msg.date_ms)
        }
        SearchOp::SearchSince => msg.date_ms >= key.date_ms,
        // The key's date is a day's midnight UTC; so is sent_day.
        SearchOp::SearchSentBefore => sent_day().is_some_and(|d| d < key.date_ms),
        SearchOp::SearchSentOn => sent_day()
            .is_some_and(|d| (key.date_ms..key.date_ms.saturating_add(DAY_MS)).contains(&d)),
        SearchOp::SearchSentSince => sent_day().is_some_and(|d| d >= key.date_ms),
        SearchOp::SearchModseq => u64::try_from(msg.modseq).unwrap_or(0) >= key.modseq,
        SearchOp::SearchLarger => u64::try_from(msg.size).unwrap_or(0) > key.size,
        SearchOp::SearchSmaller => u64::try_from(msg.size).unwrap_or(0) < key.size,
        SearchOp::SearchHeader => return cached_header(key, row),
        SearchOp::SearchBody | SearchOp::SearchText => {
            let Some(meta) = row.meta() else {
                return Some(false);
            };
            let needle = key.text.as_bytes();
            if key.op() == SearchOp::SearchText && contains_ci(&row.prefix(), needle) {
                return Some(true);
            }
            let start = if key.op() == SearchOp::SearchBody {
                meta.header_len
            } else {
                0
            };
            if start >= meta.size {
                return Some(needle.is_empty());
            }
            return None;
        }
    })
}

/// AND (`decisive` false) or OR (`decisive` true) of `children`: a child
/// with the decisive value decides; otherwise any unknown child leaves the
/// whole unknown.
fn cheap_all(children: &[SearchKey], row: &Row<'_>, max_uid: i64, decisive: bool) -> Option<bool> {
    let mut unknown = false;
    for c in children {
        match cheap(c, row, max_uid) {
            Some(v) if v == decisive => return Some(decisive),
            Some(_) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(!decisive)
}

/// A HEADER key answered from the cached envelope fields or the
/// Return-Path; None for other fields (the header block must be read).
fn cached_header(key: &SearchKey, row: &Row<'_>) -> Option<bool> {
    let Some(meta) = row.meta() else {
        return Some(false);
    };
    let env = &meta.envelope;
    let needle = key.text.as_bytes();
    let name = key.header.as_str();
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    let in_addresses = |list: &[EnvelopeAddress]| {
        !list.is_empty() && contains_ci(addresses(list).as_bytes(), needle)
    };
    let in_text = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| contains_ci(v.as_bytes(), needle))
    };
    Some(if is("subject") {
        match (&meta.subject, &env.subject) {
            (None, None) => false,
            (a, b) => contains_ci(
                format!(
                    "{} {}",
                    a.as_deref().unwrap_or_default(),
                    b.as_deref().unwrap_or_default()
                )
                .as_bytes(),
                needle,
            ),
        }
    } else if is("from") {
        in_addresses(&env.from)
    } else if is("to") {
        in_addresses(&env.to)
    } else if is("cc") {
        in_addresses(&env.cc)
    } else if is("bcc") {
        in_addresses(&env.bcc)
    } else if is("message-id") {
        in_text(&env.message_id)
    } else if is("in-reply-to") {
        in_text(&env.in_reply_to)
    } else if is("date") {
        in_text(&env.date)
    } else if is("return-path") {
        let prefix = row.prefix();
        !prefix.is_empty() && contains_ci(&prefix, needle)
    } else if meta.header_len == 0 {
        false
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_unfold_and_match() {
        let block = b"Subject: a\r\nX-Thing: one\r\n two\r\nx-thing: three\r\n\r\n";
        let v = header_values(block, "x-thing").unwrap_or_default();
        assert!(contains_ci(&v, b"ONE two"));
        assert!(contains_ci(&v, b"three"));
        assert!(header_values(block, "x-other").is_none());
    }
}
