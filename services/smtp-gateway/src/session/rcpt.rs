//! RCPT TO (RFC 5321 4.1.1.3), checked through mailstore's ResolveRecipient.
//! The MX role has no AUTH, so a domain that is not ours is refused.

use super::Envelope;
use crate::backend::{Backend, Resolution};
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

pub(super) async fn rcpt<B: Backend>(
    envelope: &mut Envelope,
    address: String,
    gw: &Gateway<B>,
) -> Reply {
    if envelope.recipients.len() >= gw.settings.max_recipients {
        return reply::too_many_recipients();
    }
    let address = if address == "postmaster" {
        format!("postmaster@{}", gw.settings.hostname)
    } else {
        address
    };
    if envelope.recipients.contains(&address) {
        // Same recipient twice: one copy is enough.
        return reply::recipient_ok();
    }
    match gw.backend.resolve_recipient(&address).await {
        Ok(Resolution::Local) => {
            envelope.recipients.push(address);
            reply::recipient_ok()
        }
        Ok(Resolution::UnknownUser) => reply::unknown_user(),
        Ok(Resolution::NotLocal) => reply::relay_denied(),
        Err(error) => {
            tracing::warn!(%error, "Failed to check a recipient.");
            reply::recipient_check_unavailable()
        }
    }
}
