//! ENABLE (RFC 5161) and ID (RFC 2971): what the client turns on for the
//! rest of the session (CONDSTORE, QRESYNC, UTF8=ACCEPT, IMAP4rev2), and
//! who the server is.

use crate::session::{Reply, Session};

/// ENABLE: the ENABLED response lists what this command turned on: the
/// RFC 7162 extensions first, then UTF8=ACCEPT, then IMAP4rev2.
pub(crate) fn enable(s: &mut Session, capabilities: &[String]) -> Reply {
    let mut line = String::from("ENABLED");
    for c in capabilities {
        if let Some(name) = rfc7162(s, c) {
            line.push(' ');
            line.push_str(name);
        }
    }
    for c in capabilities {
        // RFC 6855: mailbox names in UTF-8 from now on.
        if c.eq_ignore_ascii_case("UTF8=ACCEPT") && !s.ext.utf8 {
            s.ext.utf8 = true;
            line.push_str(" UTF8=ACCEPT");
        }
    }
    for c in capabilities {
        // RFC 9051: no \Recent, ESEARCH answers SEARCH (`Session::flags_shown`, `search_line`).
        if c.eq_ignore_ascii_case("IMAP4rev2") {
            s.rev2 = true;
            line.push_str(" IMAP4rev2");
        }
    }
    s.untagged(&line);
    Reply::Ok("ENABLE completed".into())
}

/// CONDSTORE or QRESYNC: its name when this command turned it on, `None`
/// when it is not one of them or was on already.
fn rfc7162(s: &mut Session, name: &str) -> Option<&'static str> {
    if name.eq_ignore_ascii_case("CONDSTORE") {
        if s.rfc7162.condstore {
            return None;
        }
        s.enable_condstore();
        Some("CONDSTORE")
    } else if name.eq_ignore_ascii_case("QRESYNC") {
        if s.rfc7162.qresync {
            return None;
        }
        // QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
        s.enable_condstore();
        s.rfc7162.qresync = true;
        Some("QRESYNC")
    } else {
        None
    }
}

/// ID: the server's name; what the client says of itself is not kept.
pub(crate) fn id(s: &mut Session) -> Reply {
    s.untagged("ID (\"name\" \"mailfleet\" \"vendor\" \"mailfleet\")");
    Reply::Ok("ID completed".into())
}
