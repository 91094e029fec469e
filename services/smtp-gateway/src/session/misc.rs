//! RSET (the others of this group, NOOP, VRFY, HELP and QUIT, are a fixed
//! reply each and are answered in the gate).

use super::Session;
use crate::codec::reply::{self, Reply};

pub(super) fn rset(session: &mut Session) -> Reply {
    session.reset();
    reply::ok()
}
