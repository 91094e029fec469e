//! mailfleet-spam: the client side of rspamd's HTTP protocol. smtp-gateway
//! asks [`Rspamd::check`] about each MX message before it answers the final
//! dot; delivery-worker teaches rspamd with [`Rspamd::learn`] when a user
//! moves mail into or out of Junk.
//!
//! [`protocol`] is pure (no I/O): it reads rspamd's `/checkv2` answer into a
//! [`Check`] and turns it into the header fields the gateway prepends to the
//! stored message. [`client`] is the HTTP/1.1 transport (hyper, one
//! connection per request, every wait bounded by one timeout). This crate
//! knows nothing of SMTP sessions, queues or storage.

#![forbid(unsafe_code)]

pub mod client;
pub mod protocol;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{Envelope, Learn, Rspamd};
pub use protocol::{Action, Check};

/// Why rspamd could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SpamError {
    /// `MAILFLEET_SPAM_URL` is not an `http://host:port[/prefix]` URL.
    #[error("invalid rspamd URL {0:?}: expected http://host:port")]
    Url(String),
    /// No answer within the timeout (connect, request and body together).
    #[error("rspamd did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// Connection refused or broken, HTTP error.
    #[error("cannot reach rspamd: {0}")]
    Transport(String),
    /// rspamd answered with an HTTP error status.
    #[error("rspamd answered HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    /// The controller password cannot travel in an HTTP header (a control
    /// character or line break in it).
    #[error("the rspamd controller password must be printable text")]
    Password,
    /// rspamd's answer is not the JSON we expect.
    #[error("unexpected answer from rspamd: {0}")]
    Answer(String),
}
