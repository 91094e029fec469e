//! The generated types of `proto/` (package `mailfleet.v1`): the MailStore and
//! Admin gRPC services and the delivery job published on RabbitMQ.
//!
//! Only generated code lives here; nothing in this crate does I/O.

#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]

pub mod v1 {
    tonic::include_proto!("mailfleet.v1");
}

pub use prost::Message;
