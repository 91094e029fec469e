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
//! claim this server's name are removed from a held body (RFC 8601 5).

use mail_parser::MessageParser;

use super::data::Transaction;
use crate::backend::{Backend, BackendError, BodyWriter};
use crate::codec::reply::{self, Reply};
use crate::gateway::{Gateway, Role};
use crate::verify::Verdict;

/// Largest header block kept for the From: check.
pub const HEAD_LIMIT: usize = 64 * 1024;

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
    error: Option<BackendError>,
}

impl<W: BodyWriter> Intake<W> {
    /// Opens the body of `tx`.
    pub async fn open<B: Backend<Writer = W>>(tx: &Transaction, gw: &Gateway<B>) -> Self {
        let prefix = tx.received_header(&gw.settings.hostname).into_bytes();
        let hold = tx.role == Role::Mx && gw.verifier.is_some();
        let mut intake = Self {
            writer: gw.backend.body_writer(),
            prefix: Some(prefix),
            held: hold.then(Vec::new),
            hold_limit: gw.settings.verify_max_size,
            verdict: None,
            head: tx.account.is_some().then(Vec::new),
            head_complete: false,
            head_overflow: false,
            error: None,
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
        self.capture_head(data);
        if let Some(held) = &mut self.held {
            if (held.len() + data.len()) as u64 <= self.hold_limit {
                held.extend_from_slice(data);
                return;
            }
            // Over the limit: decide on what we have, then stream.
            let held = self.held.take().unwrap_or_default();
            let verdict = verdict(tx, gw, &held, false).await;
            let held = without_forged_results(held, &gw.settings.hostname);
            self.write_prefix(verdict.as_ref().map(|v| v.header.as_str()))
                .await;
            self.verdict = verdict;
            self.write(&held).await;
        }
        self.write(data).await;
    }

    /// A storage error seen so far (the caller answers 451 at the end).
    pub fn take_error(&mut self) -> Option<BackendError> {
        self.error.take()
    }

    /// The addresses of the From: header(s); `None` when they cannot be
    /// vouched for (header block too large, a From: without an address).
    pub fn header_from(&self) -> Option<Vec<String>> {
        let Some(head) = &self.head else {
            return Some(Vec::new());
        };
        if self.head_overflow {
            return None;
        }
        let Some(message) = MessageParser::new().parse_headers(head.as_slice()) else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(from) = message.from() {
            for addr in from.iter() {
                match addr.address() {
                    Some(a) => out.push(a.to_owned()),
                    // A From: without a usable address cannot be vouched for.
                    None => return None,
                }
            }
        }
        Some(out)
    }

    /// Runs the checks that need the whole message, writes what is still
    /// held, and hands back the writer to finish. On refusal the body is
    /// thrown away and the reply says why.
    pub async fn finish<B: Backend<Writer = W>>(
        mut self,
        tx: &Transaction,
        gw: &Gateway<B>,
    ) -> Result<W, Reply> {
        if let Some(held) = self.held.take() {
            let verdict = verdict(tx, gw, &held, true).await;
            let held = without_forged_results(held, &gw.settings.hostname);
            self.write_prefix(verdict.as_ref().map(|v| v.header.as_str()))
                .await;
            self.verdict = verdict;
            self.write(&held).await;
        }
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
        Ok(self.writer)
    }

    pub async fn abort(self) {
        self.writer.abort().await;
    }

    async fn write_prefix(&mut self, results: Option<&str>) {
        if let Some(prefix) = self.prefix.take() {
            self.write(&prefix).await;
        }
        if let Some(results) = results {
            self.write(results.as_bytes()).await;
        }
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

/// Drops `Authentication-Results` fields that claim our name (RFC 8601 5).
fn without_forged_results(held: Vec<u8>, hostname: &str) -> Vec<u8> {
    crate::verify::strip_forged_results(&held, hostname).unwrap_or(held)
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
