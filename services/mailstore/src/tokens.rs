//! The credentials the gRPC services accept. Apart from `grpc` so that the
//! services it mounts (the outbound index in `queue_index`) share them
//! without importing `grpc` back.

use mailfleet_runtime::config::SecretString;

/// The accepted credentials.
#[derive(Clone)]
pub struct Tokens {
    pub service: SecretString,
    pub admin: SecretString,
}
