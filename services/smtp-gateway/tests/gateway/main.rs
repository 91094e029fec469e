//! The integration-test binary of smtp-gateway.
//!
//! - `codec`: the pure layer.
//! - `session`: the whole SMTP dialogue on a real socket, with a fake backend
//!   (recipient check, storage and publish failures on demand), driven by
//!   Python's smtplib and by raw sockets for bad input.
//! - `broker`: the durability path against the real RabbitMQ (own vhost) and
//!   a file blob store, and `run()` itself (start-up errors, readiness,
//!   metrics, shutdown).
//! - `mailstore`: the MX path with the real mailstore as well.
//! - `spam`: the MX spam check against a real rspamd.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod broker;
mod codec;
mod fuzz;
mod mailstore;
mod security;
mod session;
mod spam;
mod submission;
mod support;
mod timeouts;
mod verify;
