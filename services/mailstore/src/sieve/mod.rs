//! Sieve (RFC 5228) in mailstore: the account's scripts in Postgres
//! ([`scripts`]) and the `mailfleet.v1.SieveScripts` gRPC service over them
//! ([`grpc`]). The interpreter itself is the pure `mailfleet-sieve` crate.

pub mod grpc;
pub mod scripts;

pub use scripts::{ScriptRow, SieveQuota};
