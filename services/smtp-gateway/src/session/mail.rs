//! MAIL FROM (RFC 5321 4.1.1.2, SIZE from RFC 1870, BODY from RFC 6152).

use super::{Envelope, Session, State};
use crate::backend::Backend;
use crate::codec::command::MailFrom;
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

/// Opens a transaction. The caller has checked the session is greeted and
/// outside a transaction.
pub(super) fn mail<B: Backend>(session: &mut Session, from: MailFrom, gw: &Gateway<B>) -> Reply {
    if from
        .size
        .is_some_and(|size| size > gw.settings.max_message_size)
    {
        return reply::message_too_big();
    }
    let State::Ready { client } = &session.state else {
        return reply::bad_sequence("Send EHLO or HELO first");
    };
    session.state = State::Mail {
        client: client.clone(),
        envelope: Envelope {
            return_path: from.address,
            recipients: Vec::new(),
            body: from.body,
        },
    };
    reply::sender_ok()
}
