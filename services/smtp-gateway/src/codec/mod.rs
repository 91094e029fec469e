//! The pure SMTP layer: bytes in, typed commands and replies out. Nothing in
//! here does I/O or knows tokio, gRPC, the blob store or the broker, so every
//! piece can be tested (and fuzzed) on plain byte slices.
//!
//! - [`line`]: splits command lines out of the input with a hard length limit.
//! - [`data`]: the DATA body decoder (end of data, dot-unstuffing, bare CR/LF).
//! - [`command`]: command lines to [`command::Command`], via `smtp-proto`.
//! - [`reply`]: every reply this server sends, with its enhanced status code.
//! - [`received`]: the `Received:` trace header.

pub mod command;
pub mod data;
pub mod line;
pub mod received;
pub mod reply;
