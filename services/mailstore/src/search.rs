//! SearchMessages: evaluates a [`SearchKey`] tree over one mailbox's live
//! messages. Flags, UIDs, dates and sizes come from the message rows; the
//! envelope headers (Subject, From, To, Cc, Bcc, ...) from the cached
//! metadata; other header fields read the header block and BODY/TEXT the
//! body from object storage, only for messages the cheaper keys left in.
//! Text matching is case-insensitive on the stored bytes (no MIME decoding
//! of bodies yet).

use std::sync::Arc;

use mailfleet_mime::EnvelopeAddress;
use mailfleet_proto::v1::{SearchKey, SearchOp};

use crate::deliver::return_path_line;
use crate::error::{Result, StoreError};
use crate::meta_cache::{Entry, SearchMeta};
use crate::store::Store;

const DAY_MS: i64 = 86_400_000;
/// Deepest key tree accepted.
const MAX_DEPTH: usize = 64;

/// uid, modseq, flags, internal date, size, blob id, return path.
type SearchRow = (
    i64,
    i64,
    Vec<String>,
    chrono::DateTime<chrono::Utc>,
    i64,
    String,
    Option<String>,
);

/// The mailbox id, then a [`SearchRow`] when the mailbox has messages.
type MailboxRow = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<Vec<String>>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

struct Row {
    uid: i64,
    modseq: i64,
    flags: Vec<String>,
    date_ms: i64,
    size: i64,
    blob_id: String,
    prefix: Vec<u8>,
    meta: Option<Arc<Entry>>,
}

impl Row {
    fn meta(&self) -> Option<&SearchMeta> {
        self.meta.as_deref().and_then(Entry::search)
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
        // One statement finds the mailbox and lists it: no row, no mailbox.
        let rows: Vec<MailboxRow> = sqlx::query_as(
            "SELECT mb.id, m.uid, m.modseq, m.flags, m.internal_date, m.size, m.blob_id, m.return_path \
             FROM (SELECT b.id FROM mailboxes b JOIN accounts a ON a.id = b.account_id \
                   WHERE a.address = $1 AND b.name = $2) mb \
             LEFT JOIN messages m ON m.mailbox_id = mb.id AND m.expunged_modseq IS NULL \
             ORDER BY m.uid",
        )
        .bind(addr.full())
        .bind(&mailbox)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(format!(
                "no mailbox {mailbox:?} for {}",
                addr.full()
            )));
        }
        let rows: Vec<SearchRow> = rows
            .into_iter()
            .filter_map(|(_, uid, modseq, flags, date, size, blob, rp)| {
                Some((uid?, modseq?, flags?, date?, size?, blob?, rp))
            })
            .collect();
        // Header and body keys read the metadata, from the cache.
        let metas = if n.meta {
            let ids: Vec<&str> = rows.iter().map(|r| r.5.as_str()).collect();
            self.meta_cache.get_many(&self.pool, &ids).await?
        } else {
            Default::default()
        };
        let max_uid = rows.last().map(|r| r.0).unwrap_or(0);
        let mut out = Vec::new();
        for (uid, modseq, flags, date, size, blob_id, rp) in rows {
            let meta = metas.get(&blob_id).cloned();
            let row = Row {
                uid,
                modseq,
                flags,
                date_ms: date.timestamp_millis(),
                size,
                blob_id,
                prefix: return_path_line(rp.as_deref()),
                meta,
            };
            if Box::pin(self.matches(key, &row, max_uid)).await? {
                out.push((
                    u32::try_from(uid).unwrap_or(u32::MAX),
                    u64::try_from(modseq).unwrap_or(0),
                ));
            }
        }
        Ok(out)
    }

    async fn matches(&self, key: &SearchKey, row: &Row, max_uid: i64) -> Result<bool> {
        let has_flag = |f: &str| row.flags.iter().any(|x| x.eq_ignore_ascii_case(f));
        let sent_ms = row.meta().and_then(|m| m.date_ms);
        Ok(match key.op() {
            SearchOp::SearchAll => true,
            SearchOp::SearchNone => false,
            SearchOp::SearchAnd => {
                for c in &key.children {
                    if !Box::pin(self.matches(c, row, max_uid)).await? {
                        return Ok(false);
                    }
                }
                true
            }
            SearchOp::SearchOr => {
                for c in &key.children {
                    if Box::pin(self.matches(c, row, max_uid)).await? {
                        return Ok(true);
                    }
                }
                false
            }
            SearchOp::SearchNot => match key.children.first() {
                Some(c) => !Box::pin(self.matches(c, row, max_uid)).await?,
                None => false,
            },
            SearchOp::SearchUid => key.uids.as_ref().is_some_and(|s| {
                s.ranges.iter().any(|r| {
                    let b = |v: u32| if v == 0 { max_uid } else { i64::from(v) };
                    let (a, z) = (b(r.first), b(r.last));
                    (a.min(z)..=a.max(z)).contains(&row.uid)
                })
            }),
            SearchOp::SearchFlag => has_flag(&key.text),
            SearchOp::SearchBefore => row.date_ms < key.date_ms,
            SearchOp::SearchOn => {
                (key.date_ms..key.date_ms.saturating_add(DAY_MS)).contains(&row.date_ms)
            }
            SearchOp::SearchSince => row.date_ms >= key.date_ms,
            SearchOp::SearchSentBefore => sent_ms.is_some_and(|d| d < key.date_ms),
            SearchOp::SearchSentOn => sent_ms
                .is_some_and(|d| (key.date_ms..key.date_ms.saturating_add(DAY_MS)).contains(&d)),
            SearchOp::SearchSentSince => sent_ms.is_some_and(|d| d >= key.date_ms),
            SearchOp::SearchModseq => u64::try_from(row.modseq).unwrap_or(0) >= key.modseq,
            SearchOp::SearchLarger => u64::try_from(row.size).unwrap_or(0) > key.size,
            SearchOp::SearchSmaller => u64::try_from(row.size).unwrap_or(0) < key.size,
            SearchOp::SearchHeader => self.header_matches(key, row).await?,
            SearchOp::SearchBody | SearchOp::SearchText => {
                let Some(meta) = row.meta() else {
                    return Ok(false);
                };
                let start = if key.op() == SearchOp::SearchBody {
                    meta.header_len
                } else {
                    0
                };
                if key.op() == SearchOp::SearchText && contains_ci(&row.prefix, key.text.as_bytes())
                {
                    return Ok(true);
                }
                if start >= meta.size {
                    return Ok(key.text.is_empty());
                }
                let bytes = self.blobs.get_range(&row.blob_id, start..meta.size).await?;
                contains_ci(&bytes, key.text.as_bytes())
            }
        })
    }

    async fn header_matches(&self, key: &SearchKey, row: &Row) -> Result<bool> {
        let Some(meta) = row.meta() else {
            return Ok(false);
        };
        let env = &meta.envelope;
        let needle = key.text.as_bytes();
        let name = key.header.to_ascii_lowercase();
        let cached: Option<Option<String>> = match name.as_str() {
            "subject" => Some(match (&meta.subject, &env.subject) {
                (None, None) => None,
                (a, b) => Some(format!(
                    "{} {}",
                    a.as_deref().unwrap_or_default(),
                    b.as_deref().unwrap_or_default()
                )),
            }),
            "from" => Some((!env.from.is_empty()).then(|| addresses(&env.from))),
            "to" => Some((!env.to.is_empty()).then(|| addresses(&env.to))),
            "cc" => Some((!env.cc.is_empty()).then(|| addresses(&env.cc))),
            "bcc" => Some((!env.bcc.is_empty()).then(|| addresses(&env.bcc))),
            "message-id" => Some(env.message_id.clone()),
            "in-reply-to" => Some(env.in_reply_to.clone()),
            "date" => Some(env.date.clone()),
            _ => None,
        };
        if let Some(value) = cached {
            return Ok(value.is_some_and(|v| contains_ci(v.as_bytes(), needle)));
        }
        if name == "return-path" {
            return Ok(!row.prefix.is_empty() && contains_ci(&row.prefix, needle));
        }
        if meta.header_len == 0 {
            return Ok(false);
        }
        let block = self
            .blobs
            .get_range(&row.blob_id, 0..meta.header_len)
            .await?;
        Ok(header_values(&block, &name).is_some_and(|v| contains_ci(&v, needle)))
    }
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
