//! MAIL FROM (RFC 5321 4.1.1.2, SIZE from RFC 1870, BODY from RFC 6152 and
//! RFC 3030, SMTPUTF8 from RFC 6531, RET and ENVID from RFC 3461).
//!
//! On submission the sender must be the authenticated account or an address
//! that delivers to it (alias, `user+tag`); on the MX role the SPF result of
//! the sender is taken here, for the Authentication-Results header.

use super::{Envelope, Session, State};
use crate::backend::Backend;
use crate::codec::command::MailFrom;
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;
use crate::role::Role;

/// Opens a transaction. The caller has checked the session is greeted,
/// outside a transaction, and authenticated on submission.
pub(super) async fn mail<B: Backend>(
    session: &mut Session,
    from: MailFrom,
    gw: &Gateway<B>,
) -> Reply {
    if from
        .size
        .is_some_and(|size| size > gw.settings.max_message_size)
    {
        return reply::message_too_big();
    }
    let State::Ready { client } = &session.state else {
        return reply::bad_sequence("Send EHLO or HELO first");
    };
    let client = client.clone();
    if let Some(account) = &session.account
        && !from.address.is_empty()
    {
        match owns(gw, account, &from.address).await {
            Ok(true) => {}
            Ok(false) => return reply::sender_not_owned(),
            Err(reply) => return reply,
        }
    }
    let spf = match (&gw.verifier, session.role) {
        (Some(verifier), Role::Mx) => Some(
            verifier
                .spf(session.peer.ip(), &client.helo, &from.address)
                .await,
        ),
        _ => None,
    };
    session.state = State::Mail {
        client,
        envelope: Envelope {
            return_path: from.address,
            recipients: Vec::new(),
            size: from.size,
            body: from.body,
            smtputf8: from.smtputf8,
            ret: from.ret,
            envid: from.envid,
            spf,
        },
    };
    reply::sender_ok()
}

/// Whether `account` may use `address` as a sender: the address delivers to
/// the account (its own address, an alias of it, or a `+tag` form).
pub(super) async fn owns<B: Backend>(
    gw: &Gateway<B>,
    account: &str,
    address: &str,
) -> Result<bool, Reply> {
    if address.eq_ignore_ascii_case(account) {
        return Ok(true);
    }
    match gw.backend.address_owners(address).await {
        Ok(owners) => Ok(owners.iter().any(|o| o.eq_ignore_ascii_case(account))),
        Err(error) => {
            tracing::warn!(%error, "Failed to check a sender address.");
            Err(reply::sender_check_unavailable())
        }
    }
}
