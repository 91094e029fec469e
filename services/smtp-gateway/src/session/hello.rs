//! EHLO and HELO (RFC 5321 4.1.1.1): both reset any transaction. The EHLO
//! reply lists what this session offers now (STARTTLS before TLS only, AUTH
//! on submission under TLS or with plaintext allowed).

use super::{Client, Session, State};
use crate::backend::Backend;
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;

pub(super) fn ehlo<B: Backend>(session: &mut Session, host: String, gw: &Gateway<B>) -> Reply {
    let reply = reply::ehlo(&gw.settings.hostname, &host, session.offer(gw));
    greet(session, host, true);
    reply
}

pub(super) fn helo<B: Backend>(session: &mut Session, host: String, gw: &Gateway<B>) -> Reply {
    let reply = reply::helo(&gw.settings.hostname, &host);
    greet(session, host, false);
    reply
}

fn greet(session: &mut Session, helo: String, esmtp: bool) {
    session.state = State::Ready {
        client: Client { helo, esmtp },
    };
}
