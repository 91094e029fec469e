//! The message bytes on their way from the connection to the body writer.
//!
//! Normally the trace header is written first and the body streams straight
//! through. On the MX role with inbound verification, the body is held in
//! memory up to `smtp_verify_max_size` so that DKIM and DMARC can run before
//! the `Authentication-Results` header is written in front of it; a larger
//! body is flushed once the limit is reached, with a verdict taken on its
//! start (SPF-only DMARC). On submission the header block (up to
//! [`HEAD_LIMIT`]) is kept to check the From: addresses. Memory stays
//! bounded in every case. Incoming `Authentication-Results` fields that
//! claim this server's name are removed from the client's header block on
//! every role, held or streamed, verification on or off (RFC 8601 5): only
//! the field this server writes may speak for it.
//!
//! On the MX role with a spam filter the body is held the same way, up to
//! `spam_max_size`, so that rspamd sees the whole message before the reply
//! and its `X-Spam-*` fields go in front of the stored message (a larger
//! message is stored `X-Spam-Status: unchecked`). The client's own `X-Spam-*`
//! fields are left out of the held header block (only ours speak for
//! rspamd), and so are its Subject fields when rspamd rewrites the Subject
//! (the new one goes in front): a bounded edit of bytes already in memory,
//! never a rewrite of the body. A message over the size limit streams; the
//! streaming filter that drops forged `Authentication-Results` drops its
//! `X-Spam-*` fields as well, so `unchecked` is the only verdict it carries.
//!
//! Every byte held here or in the body writer is charged to the gateway's
//! [`BodyMemory`](crate::memory::BodyMemory) before it is taken: when the
//! budget is spent the session waits (reading nothing more) until others give
//! some back, and past the data timeout the message fails with a 4xx.

use std::ops::Range;

use bytes::Bytes;
use mailfleet_spam::protocol::{UNCHECKED, replaced_field_ranges};

use super::transaction::Transaction;
use crate::backend::{Backend, BackendError, BodyWriter};
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;
use crate::memory::Charge;
use crate::role::Role;
use crate::spam::{self, Decision};
use crate::verify::{ResultsFilter, Verdict};

/// Largest header block kept for the From: check.
pub const HEAD_LIMIT: usize = 64 * 1024;

/// A held body goes to the writer in pieces this large, so the filtered
/// copy stays small.
const FLUSH_PIECE: usize = 64 * 1024;

pub struct Intake<W> {
    writer: W,
    /// Trace header(s) not yet written (only while holding).
    prefix: Option<Vec<u8>>,
    /// The body so far, while holding for verification.
    held: Option<Vec<u8>>,
    hold_limit: u64,
    /// Verdict taken when a held body outgrew the limit.
    verdict: Option<Verdict>,
    /// The header block, for the From: check (submission only).
    head: Option<Vec<u8>>,
    head_complete: bool,
    head_overflow: bool,
    /// Drops forged `Authentication-Results` from the client's bytes.
    results: ResultsFilter,
    /// The filter's output, reused between writes.
    filtered: Vec<u8>,
    /// This message's share of the gateway's body memory budget.
    charge: Charge,
    error: Option<BackendError>,
    /// rspamd marked the message as spam (for the delivery job).
    spam: bool,
}

/// A body ready to be stored: the writer to finish, the memory it still
/// holds, and the spam verdict for the job.
pub struct Finished<W> {
    pub writer: W,
    pub charge: Charge,
    pub spam: bool,
}

impl<W: BodyWriter> Intake<W> {
    /// Opens the body of `tx`.
    pub async fn open<B: Backend<Writer = W>>(tx: &Transaction, gw: &Gateway<B>) -> Self {
        let prefix = tx.received_header(&gw.settings.hostname).into_bytes();
        let verify = tx.role == Role::Mx && gw.verifier.is_some();
        let spam_limit = gw
            .spam
            .as_ref()
            .filter(|_| tx.role == Role::Mx)
            .map(|f| f.max_size);
        let hold = verify || spam_limit.is_some();
        let hold_limit = verify
            .then_some(gw.settings.verify_max_size)
            .into_iter()
            .chain(spam_limit)
            .max()
            .unwrap_or(0);
        let mut intake = Self {
            writer: gw.backend.body_writer(),
            prefix: Some(prefix),
            held: hold.then(Vec::new),
            hold_limit,
            verdict: None,
            head: tx.account.is_some().then(Vec::new),
            head_complete: false,
            head_overflow: false,
            // A message too big for rspamd streams past the held header
            // edit: the filter takes the client's X-Spam-* out of it too.
            results: ResultsFilter::new(&gw.settings.hostname)
                .dropping_spam_fields(spam_limit.is_some()),
            filtered: Vec::new(),
            charge: Charge::new(gw.body_memory.clone()),
            error: None,
            spam: false,
        };
        if !hold {
            intake.write_prefix(None).await;
        }
        intake
    }

    /// Takes more body bytes.
    pub async fn push<B: Backend<Writer = W>>(
        &mut self,
        data: &[u8],
        tx: &Transaction,
        gw: &Gateway<B>,
    ) {
        if data.is_empty() || self.error.is_some() {
            return;
        }
        // The most this chunk can add to what is held: the held body's new
        // capacity, or (on flush and when streaming) a filtered copy and the
        // writer's buffer.
        let held_now = self.held_bytes();
        let need = match &self.held {
            Some(held) if ((held.len() + data.len()) as u64) <= self.hold_limit => {
                held_now + grown_capacity(held.len(), held.capacity(), data.len(), self.hold_limit)
                    - held.capacity()
            }
            Some(held) => held_now + held.len() + data.len() + FLUSH_PIECE,
            None => held_now + 2 * data.len(),
        };
        if !self.charge.reserve(need, gw.settings.data_timeout).await {
            tracing::warn!(
                job_id = %tx.job_id,
                held = gw.body_memory.held(),
                limit = gw.body_memory.limit(),
                "No memory for a message body within the data timeout."
            );
            self.error = Some(BackendError::Store(
                "the body memory budget stayed spent".into(),
            ));
            // Nothing more is kept for a message that will be refused.
            self.held = None;
            self.filtered = Vec::new();
            self.charge.trim(self.held_bytes());
            return;
        }
        self.capture_head(data);
        if let Some(held) = &mut self.held {
            if (held.len() + data.len()) as u64 <= self.hold_limit {
                let capacity =
                    grown_capacity(held.len(), held.capacity(), data.len(), self.hold_limit);
                held.reserve_exact(capacity - held.len());
                held.extend_from_slice(data);
                return;
            }
            // Over the limit: decide on what we have, then stream.
            let held = self.held.take().unwrap_or_default();
            let verdict = verdict(tx, gw, &held, false).await;
            let mut fields = verdict
                .as_ref()
                .map(|v| v.header.clone())
                .unwrap_or_default();
            if gw.spam.is_some() && tx.role == Role::Mx {
                gw.metrics.spam_check("too_big");
                fields.push_str(UNCHECKED);
            }
            self.write_prefix(Some(&fields)).await;
            self.verdict = verdict;
            for piece in held.chunks(FLUSH_PIECE) {
                self.write_client(piece).await;
            }
        }
        self.write_client(data).await;
        self.charge.trim(self.held_bytes());
    }

    /// What this message holds in memory now (capacities, as allocated).
    fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, Vec::capacity)
            + self.filtered.capacity()
            + self.head.as_ref().map_or(0, Vec::capacity)
            + self.writer.buffered()
    }

    /// A storage error seen so far (the caller answers 451 at the end).
    pub fn take_error(&mut self) -> Option<BackendError> {
        self.error.take()
    }

    /// The addresses of the first From: field (the reading ENVELOPE and
    /// DKIM signing share, `mailfleet_mime::first_from`); `None` when they
    /// cannot be vouched for (header block too large, a From: without an
    /// address).
    pub fn header_from(&self) -> Option<Vec<String>> {
        let Some(head) = &self.head else {
            return Some(Vec::new());
        };
        if self.head_overflow {
            return None;
        }
        mailfleet_mime::first_from(head)
    }

    /// A field RFC 5322 3.6 allows once that the kept header block has
    /// more than once (submission only: the block is kept there).
    pub fn repeated_field(&self) -> Option<&'static str> {
        self.head
            .as_deref()
            .and_then(mailfleet_mime::repeated_singleton)
    }

    /// Runs the checks that need the whole message, writes what is still
    /// held, and hands back the writer to finish. On refusal the body is
    /// thrown away and the reply says why.
    pub async fn finish<B: Backend<Writer = W>>(
        mut self,
        tx: &Transaction,
        gw: &Gateway<B>,
    ) -> Result<Finished<W>, Reply> {
        if let Some(held) = &self.held {
            // The flush copies the body into the writer (a piece at a time
            // through the filter). A message at its end takes that memory
            // even over the budget rather than wait: it gives everything
            // back a moment later, and waiting here, holding its body,
            // could wait for sessions that wait for it.
            let need = self.held_bytes() + held.len() + FLUSH_PIECE;
            if !self.charge.reserve_now(need) {
                tracing::debug!(job_id = %tx.job_id, "Storing a verified body over the memory budget.");
            }
        }
        if let Some(held) = self.held.take() {
            let held = Bytes::from(held);
            let (verdict, spam) = tokio::join!(
                verdict(tx, gw, &held, true),
                spam_check(tx, gw, held.clone())
            );
            let mut fields = verdict
                .as_ref()
                .map(|v| v.header.clone())
                .unwrap_or_default();
            let mut leave_out = Vec::new();
            match spam {
                Some(Decision::Refuse(reply)) => {
                    self.writer.abort().await;
                    return Err(reply);
                }
                Some(Decision::Accept {
                    headers,
                    spam,
                    new_subject,
                }) => {
                    fields.push_str(&headers);
                    self.spam = spam;
                    leave_out = replaced_field_ranges(&held, new_subject);
                }
                None => {}
            }
            self.write_prefix(Some(&fields)).await;
            self.verdict = verdict;
            for part in kept_parts(held.len(), &leave_out) {
                for piece in held.get(part).unwrap_or_default().chunks(FLUSH_PIECE) {
                    self.write_client(piece).await;
                }
            }
        }
        let mut rest = std::mem::take(&mut self.filtered);
        rest.clear();
        self.results.finish(&mut rest);
        self.write(&rest).await;
        if let Some(verdict) = &self.verdict {
            tracing::info!(dmarc = verdict.dmarc, job_id = %tx.job_id, "Inbound authentication checked.");
            if let Some(domain) = &verdict.reject {
                self.writer.abort().await;
                let domain: String = domain
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(255)
                    .collect();
                return Err(reply::dmarc_reject(&domain));
            }
        }
        if let Some(error) = self.error.take() {
            tracing::warn!(%error, job_id = %tx.job_id, "Failed to store a message body.");
            self.writer.abort().await;
            return Err(reply::temporary_failure());
        }
        // What the writer still holds stays charged until its upload ends.
        self.charge.trim(self.writer.buffered());
        Ok(Finished {
            writer: self.writer,
            charge: self.charge,
            spam: self.spam,
        })
    }

    pub async fn abort(self) {
        self.writer.abort().await;
    }

    /// Writes the trace header, then `fields` (Authentication-Results,
    /// X-Spam-*), once.
    async fn write_prefix(&mut self, results: Option<&str>) {
        if let Some(prefix) = self.prefix.take() {
            self.write(&prefix).await;
        }
        if let Some(results) = results {
            self.write(results.as_bytes()).await;
        }
    }

    /// Writes the client's bytes, less forged `Authentication-Results`.
    async fn write_client(&mut self, data: &[u8]) {
        let mut out = std::mem::take(&mut self.filtered);
        out.clear();
        self.results.push(data, &mut out);
        self.write(&out).await;
        self.filtered = out;
    }

    async fn write(&mut self, data: &[u8]) {
        if self.error.is_none()
            && !data.is_empty()
            && let Err(error) = self.writer.write(data).await
        {
            self.error = Some(error);
        }
    }

    fn capture_head(&mut self, data: &[u8]) {
        let Some(head) = &mut self.head else { return };
        if self.head_complete || self.head_overflow {
            return;
        }
        let start = head.len().saturating_sub(3);
        let room = HEAD_LIMIT.saturating_sub(head.len());
        head.extend_from_slice(&data[..data.len().min(room)]);
        if let Some(end) = head[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(start + end + 4);
            self.head_complete = true;
        } else if head.len() >= HEAD_LIMIT {
            self.head_overflow = true;
        }
    }
}

/// The capacity a held body of `len` bytes in `capacity` grows to for
/// `more` bytes: doubling (so a large body is not copied again for every
/// chunk) but never past `limit`.
fn grown_capacity(len: usize, capacity: usize, more: usize, limit: u64) -> usize {
    let needed = len + more;
    if needed <= capacity {
        return capacity;
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(needed);
    needed.max(capacity.saturating_mul(2).min(limit))
}

/// The parts of a message of `len` bytes left after taking out the sorted,
/// disjoint `ranges`.
fn kept_parts(len: usize, ranges: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut parts = Vec::with_capacity(ranges.len() + 1);
    let mut start = 0;
    for range in ranges {
        if range.start > start {
            parts.push(start..range.start);
        }
        start = start.max(range.end);
    }
    if start < len {
        parts.push(start..len);
    }
    parts
}

/// rspamd's verdict on a held, complete message (MX role with a spam
/// filter), as a reply or the fields to prepend.
async fn spam_check<B: Backend>(
    tx: &Transaction,
    gw: &Gateway<B>,
    message: Bytes,
) -> Option<Decision> {
    let filter = gw.spam.as_ref().filter(|_| tx.role == Role::Mx)?;
    let outcome = if message.len() as u64 > filter.max_size {
        gw.metrics.spam_check("too_big");
        spam::Outcome::TooBig
    } else {
        let envelope = mailfleet_spam::Envelope {
            from: &tx.envelope.return_path,
            recipients: tx
                .envelope
                .recipients
                .iter()
                .map(|r| r.address.as_str())
                .collect(),
            client_ip: tx.client_ip.to_string(),
            helo: &tx.client.helo,
            user: tx.account.as_deref(),
            queue_id: &tx.job_id,
            hostname: &gw.settings.hostname,
        };
        spam::check(filter, &envelope, message, &gw.metrics).await
    };
    Some(spam::decide(&outcome, filter.fail_open))
}

async fn verdict<B: Backend>(
    tx: &Transaction,
    gw: &Gateway<B>,
    message: &[u8],
    complete: bool,
) -> Option<Verdict> {
    let verifier = gw.verifier.as_ref()?;
    let spf = tx.envelope.spf.as_ref()?;
    Some(
        verifier
            .message(
                tx.client_ip,
                &tx.client.helo,
                &tx.envelope.return_path,
                spf,
                message,
                complete,
            )
            .await,
    )
}
