//! The IMAP-grade metadata of a message, computed once at delivery and cached
//! (as JSON) beside the message rows, so the IMAP and POP3 frontends answer
//! FETCH ENVELOPE, BODYSTRUCTURE and `BODY[section]` without parsing the body
//! again: they read the byte ranges recorded here straight from the blob.
//!
//! [`Analyzer`] reads a message in chunks as it streams to storage and
//! returns a [`MessageMeta`]: the [`Envelope`], the [`BodyPart`] tree (with
//! nested `message/rfc822` parts carrying their own envelope and structure)
//! and selected header fields. It keeps header blocks and the metadata,
//! never a body, so a large message is never held whole. [`analyze`] does
//! the same for a message already in memory. The MIME structure (header/body
//! split, multipart boundaries) is found by this crate so that the offsets
//! follow IMAP's rules exactly (the CRLF before a boundary belongs to the
//! boundary); header field values are parsed with `mail-parser`. Every
//! offset is relative to the raw message.
//!
//! This crate is pure: no I/O, no async runtime. Analysis never panics,
//! whatever the input, and bounds its nesting depth, its part count and the
//! header octets it keeps.

#![forbid(unsafe_code)]

use std::ops::Range;

use serde::{Deserialize, Serialize};

mod analyzer;
pub mod decode;
mod headers;

pub use analyzer::{Analyzer, MAX_BOUNDARY, MAX_HEADER, MAX_HEADERS, MAX_PARTS, MIN_HEADER};
pub use headers::{first_from, repeated_singleton};

/// Deeper MIME nesting is treated as an opaque leaf part.
pub const MAX_DEPTH: usize = 32;

/// Everything the frontends need to know about a message without reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Octets of the raw message.
    pub size: u64,
    /// Lines of the raw message.
    pub lines: u64,
    /// Octets of the top-level header block, blank line included.
    pub header_len: u64,
    pub envelope: Envelope,
    /// The root of the body structure (its header range is the message header).
    pub body: BodyPart,
    /// Decoded Subject (for listings and SORT).
    pub subject: Option<String>,
    /// The first From address as `Name <addr>` or `addr`.
    pub from: Option<String>,
    /// Every To address as `addr`, comma separated.
    pub to: Option<String>,
    /// The Date header as written.
    pub date: Option<String>,
    /// The Date header as Unix milliseconds, when it parses.
    pub date_ms: Option<i64>,
    /// The Message-ID as written (angle brackets included).
    pub message_id: Option<String>,
    /// The References header as written (unfolded), for THREAD=REFERENCES.
    /// Absent in metadata cached before it was added, hence the default.
    #[serde(default)]
    pub references: Option<String>,
}

/// An IMAP ENVELOPE (RFC 3501 7.4.2). String fields are the header values as
/// written (unfolded, trimmed); an absent header is `None` (NIL).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<EnvelopeAddress>,
    /// Defaults to From when absent, as IMAP requires.
    pub sender: Vec<EnvelopeAddress>,
    /// Defaults to From when absent, as IMAP requires.
    pub reply_to: Vec<EnvelopeAddress>,
    pub to: Vec<EnvelopeAddress>,
    pub cc: Vec<EnvelopeAddress>,
    pub bcc: Vec<EnvelopeAddress>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// One IMAP address structure. A group start has `mailbox` = group name and
/// `host` = None; a group end has both None (RFC 3501 7.4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeAddress {
    /// Display name, decoded to UTF-8 (the frontend re-encodes if needed).
    pub name: Option<String>,
    /// The source route as written without its colon (`@a,@b`), IMAP's
    /// adl field; absent in most addresses and in metadata cached before
    /// it was kept, hence the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub mailbox: Option<String>,
    pub host: Option<String>,
}

/// A Content-Disposition value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    /// Lower case, e.g. "attachment".
    pub kind: String,
    pub params: Vec<(String, String)>,
}

/// One node of the body structure, with its byte ranges in the raw message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// Lower case media type, e.g. "text" or "multipart".
    pub media_type: String,
    /// Lower case subtype, e.g. "plain" or "mixed".
    pub subtype: String,
    /// Content-Type parameters (names lower case), boundary included.
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    /// Content-Transfer-Encoding, upper case; "7BIT" when absent.
    pub encoding: String,
    /// Octets of the body (BODYSTRUCTURE size).
    pub size: u64,
    /// Lines of the body, for text/* and message/rfc822 parts.
    pub lines: Option<u64>,
    pub md5: Option<String>,
    pub disposition: Option<Disposition>,
    pub language: Vec<String>,
    pub location: Option<String>,
    /// Offset of the part's header block (MIME header, or message header at the root).
    pub header_offset: u64,
    /// Offset of the body; `body_offset - header_offset` is the header length.
    pub body_offset: u64,
    /// End of the body (exclusive).
    pub body_end: u64,
    /// Children of a multipart part, in order.
    pub parts: Vec<BodyPart>,
    /// The embedded message of a message/rfc822 part.
    pub message: Option<Box<EmbeddedMessage>>,
}

/// The message inside a message/rfc822 part: its body structure's root
/// header range is the embedded message's header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedMessage {
    pub envelope: Envelope,
    pub body: BodyPart,
}

impl BodyPart {
    pub fn is_multipart(&self) -> bool {
        self.media_type == "multipart"
    }
    /// The part's header block range.
    pub fn header_range(&self) -> Range<u64> {
        self.header_offset..self.body_offset
    }
    /// The part's body range.
    pub fn body_range(&self) -> Range<u64> {
        self.body_offset..self.body_end
    }
}

/// Computes the metadata of a raw RFC 5322 message held in memory (see
/// [`Analyzer`] for one that streams). Never panics; malformed input yields
/// a best-effort structure (a text/plain leaf at worst).
pub fn analyze(raw: &[u8]) -> MessageMeta {
    let mut analyzer = Analyzer::new();
    analyzer.update(raw);
    analyzer.finish()
}

#[cfg(test)]
mod tests;
