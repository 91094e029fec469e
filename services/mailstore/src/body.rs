//! GetBody: the served bytes of a message (Return-Path line, then the blob),
//! or a range of them, streamed in chunks read from object storage by range
//! so a large message is never held in memory whole.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use mailfleet_proto::v1::{BodyChunk, BodyRef};
use tonic::Status;

use crate::deliver::return_path_line;
use crate::error::{Result, StoreError};
use crate::store::Store;

/// Largest chunk sent in one message.
pub const CHUNK_SIZE: usize = 256 * 1024;

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<BodyChunk, Status>> + Send>>;

/// Whether `id` has the form of a blob id (SHA-256, lower-case hex), so
/// that a body_ref can name nothing else in object storage.
fn is_blob_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits `data` into slices of at most [`CHUNK_SIZE`] (no copy).
fn split(data: Bytes) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(data.len() / CHUNK_SIZE + 1);
    let mut start = 0;
    while start < data.len() {
        let end = (start + CHUNK_SIZE).min(data.len());
        out.push(data.slice(start..end));
        start = end;
    }
    out
}

impl Store {
    /// Streams bytes `offset .. offset + length` (length 0: to the end) of
    /// the message as served: the first chunk carries the total size. With
    /// `include_expunged`, also of a message expunged since: its row and
    /// body stay, and an IMAP session that has not announced the expunge
    /// yet still shows the message (a FETCH racing another session's
    /// EXPUNGE got nothing otherwise).
    pub async fn body(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
        (offset, length): (u64, u64),
        include_expunged: bool,
        body_ref: Option<&BodyRef>,
    ) -> Result<BodyStream> {
        // A FETCH has just read the row (FetchMessages) and hands back what
        // it said; an IMAP session reads messages it still shows, expunged
        // or not, so only then. The caller holds the service credential,
        // with which it may read any account's mail anyway; the blob id is
        // checked to be one (it becomes an object-storage key).
        let given = body_ref.filter(|r| include_expunged && is_blob_id(&r.blob_id));
        let row = match given {
            Some(r) => Some((
                r.blob_id.clone(),
                r.has_return_path.then(|| r.return_path.clone()),
                i64::try_from(r.size).unwrap_or(i64::MAX),
            )),
            None => {
                self.body_row(account, mailbox, uid, include_expunged)
                    .await?
            }
        };
        let Some((blob_id, return_path, size)) = row else {
            return Err(StoreError::NotFound(format!(
                "no message with UID {uid} in {mailbox:?}"
            )));
        };
        self.serve(&blob_id, return_path.as_deref(), size, (offset, length))
            .await
    }

    /// The blob, return path and served size of a message, by UID.
    async fn body_row(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
        include_expunged: bool,
    ) -> Result<Option<(String, Option<String>, i64)>> {
        // One statement finds the mailbox and the message (a FETCH of bodies
        // makes one call per message).
        let addr = crate::store::parse_address(account)?;
        let row: Option<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT m.blob_id, m.return_path, m.size FROM messages m \
             JOIN mailboxes b ON b.id = m.mailbox_id JOIN accounts a ON a.id = b.account_id \
             WHERE a.address = $1 AND b.name = $2 AND m.uid = $3 \
               AND ($4 OR m.expunged_modseq IS NULL)",
        )
        .bind(addr.full())
        .bind(crate::mailboxes::canonical_name(mailbox))
        .bind(i64::from(uid))
        .bind(include_expunged)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Streams a range of what a message serves: the Return-Path line,
    /// then the blob.
    async fn serve(
        &self,
        blob_id: &str,
        return_path: Option<&str>,
        size: i64,
        (offset, length): (u64, u64),
    ) -> Result<BodyStream> {
        let prefix = return_path_line(return_path);
        let plen = prefix.len() as u64;
        let total = u64::try_from(size).unwrap_or(0).max(plen);
        let start = offset.min(total);
        let end = match length {
            0 => total,
            n => start.saturating_add(n).min(total),
        };
        if start >= end {
            let chunk = BodyChunk {
                data: Vec::new(),
                total_size: total,
            };
            return Ok(Box::pin(futures::stream::once(async move { Ok(chunk) })));
        }

        let head_range = (start.min(plen) as usize)..(end.min(plen) as usize);
        let head = prefix
            .get(head_range)
            .map(|h| h.to_vec())
            .unwrap_or_default();
        let head = futures::stream::iter((!head.is_empty()).then(|| Ok(Bytes::from(head))));

        let blob_range = start.saturating_sub(plen)..end.saturating_sub(plen);
        let tail: Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>> =
            if blob_range.is_empty() {
                Box::pin(futures::stream::empty())
            } else {
                let s = self.blobs.stream(blob_id, Some(blob_range)).await?;
                Box::pin(s.map(|r| {
                    r.map_err(|error| {
                        tracing::warn!(%error, "Failed to read a message body.");
                        if error.is_transient() {
                            Status::unavailable("object storage temporarily unavailable")
                        } else {
                            Status::internal("cannot read the message body")
                        }
                    })
                }))
            };
        let mut first = true;
        let chunks = head
            .chain(tail)
            .flat_map(|r| {
                let parts: Vec<Result<Bytes, Status>> = match r {
                    Ok(data) => split(data).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(parts)
            })
            .map(move |r| {
                r.map(|data| {
                    let total_size = if first { total } else { 0 };
                    first = false;
                    BodyChunk {
                        data: data.to_vec(),
                        total_size,
                    }
                })
            });
        Ok(Box::pin(chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::is_blob_id;

    #[test]
    fn only_sha256_hex_is_a_blob_id() {
        assert!(is_blob_id(&"ab12".repeat(16)));
        assert!(!is_blob_id(&"AB12".repeat(16)));
        assert!(!is_blob_id("../../etc/passwd"));
        assert!(!is_blob_id(&format!("{}/x", "a".repeat(62))));
        assert!(!is_blob_id(""));
    }
}
