//! RCPT TO (RFC 5321 4.1.1.3), checked through mailstore's ResolveRecipient.
//! The MX role has no AUTH, so a domain that is not ours is refused; an
//! authenticated submission may relay anywhere (delivery-worker relays the
//! non-local recipients). NOTIFY and ORCPT (RFC 3461) ride along. A local
//! recipient whose account is over quota (for the SIZE announced, or for
//! any message) gets `452 4.2.2` here instead of a bounce later.

use super::{Envelope, Recipient};
use crate::backend::{Backend, Resolution};
use crate::codec::command::RcptTo;
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

/// `relay`: the session is an authenticated submission.
pub(super) async fn rcpt<B: Backend>(
    envelope: &mut Envelope,
    to: RcptTo,
    relay: bool,
    gw: &Gateway<B>,
) -> Reply {
    if envelope.recipients.len() >= gw.settings.max_recipients {
        return reply::too_many_recipients();
    }
    if !envelope.smtputf8 && !to.address.is_ascii() {
        return reply::utf8_needs_smtputf8();
    }
    let address = if to.address == "postmaster" {
        format!("postmaster@{}", gw.settings.hostname)
    } else {
        to.address
    };
    if envelope.has_recipient(&address) {
        // Same recipient twice: one copy is enough.
        return reply::recipient_ok();
    }
    let size = envelope.size.unwrap_or(0);
    let accept = match gw.backend.resolve_recipient(&address, size).await {
        Ok(Resolution::Local) => true,
        // Refused now rather than accepted and bounced to a sender that
        // may be forged (backscatter); 4xx, as the mailbox may drain.
        Ok(Resolution::OverQuota) => return reply::mailbox_full(),
        Ok(Resolution::UnknownUser) => return reply::unknown_user(),
        Ok(Resolution::NotLocal) if relay => true,
        Ok(Resolution::NotLocal) => return reply::relay_denied(),
        Err(error) => {
            tracing::warn!(%error, "Failed to check a recipient.");
            return reply::recipient_check_unavailable();
        }
    };
    if accept {
        envelope.recipients.push(Recipient {
            address,
            notify: to.notify,
            orcpt: to.orcpt,
        });
    }
    reply::recipient_ok()
}
