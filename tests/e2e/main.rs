//! End-to-end tests: the whole stack as separate processes, driven by real
//! clients (Python's smtplib) and checked through the `mailfleet` CLI, against
//! real Postgres, RabbitMQ and object storage (local disk or an S3 server).
//!
//! Needs: Postgres on 127.0.0.1:5432, RabbitMQ on 127.0.0.1:5672 with
//! `rabbitmqctl` on PATH, `psql`, `python3`, and for the S3 tests `s3s-fs`
//! (see README.md), and for `spam` rspamd and Redis on 127.0.0.1:6379.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod delivery;
mod dev;
mod faults;
mod harness;
mod imap;
mod pop3;
mod relay;
mod security;
mod shutdown;
mod smtp;
mod spam;
mod startup;
mod verify;
