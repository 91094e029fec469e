//! Sieve (RFC 5228) in mailstore: the account's scripts in Postgres
//! ([`scripts`]), the `mailfleet.v1.SieveScripts` gRPC service over them
//! ([`grpc`]) and the active script run on every delivered copy ([`run`]). The interpreter itself is the pure `mailfleet-sieve` crate.

pub mod cache;
pub mod grpc;
pub mod run;
pub mod scripts;

pub use scripts::{ScriptRow, SieveQuota};
