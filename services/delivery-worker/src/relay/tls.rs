//! The rustls client configuration of opportunistic STARTTLS (RFC 7435):
//! encryption without authentication (see `client` for why); shared with the
//! load tool through the runtime crate.

use std::sync::Arc;

use rustls::ClientConfig;

/// The client configuration for STARTTLS to remote MX hosts.
pub fn opportunistic() -> Arc<ClientConfig> {
    mailfleet_runtime::tls::unauthenticated_client_config()
}
