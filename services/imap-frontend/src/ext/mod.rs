//! IMAP extensions beyond RFC 3501: LIST-EXTENDED and LIST-STATUS
//! (`list`), STATUS=SIZE (`status`), ESEARCH (`esearch`), QUOTA
//! (`quota`), and mailbox names in modified UTF-7 or, after ENABLE
//! UTF8=ACCEPT, UTF-8 (`names`, `mutf7`). Their syntax is parsed in
//! `proto`; this module runs them on a session.


use crate::proto;
use crate::session::{Reply, Session};

/// The capabilities this module implements (for CAPABILITY).
pub(crate) const CAPABILITIES: &str = " LIST-EXTENDED LIST-STATUS ESEARCH STATUS=SIZE QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE UTF8=ACCEPT";

/// Per-session state of the extensions.
#[derive(Debug, Default)]
pub(crate) struct ExtState {
    /// ENABLE UTF8=ACCEPT was given (RFC 6855).
    pub utf8: bool,
}

/// SEARCH RETURN (...) (RFC 4731), answered with ESEARCH.
pub(crate) async fn search(s: &mut Session, cmd: proto::Search) -> std::io::Result<Reply> {
    let save = cmd.ret.is_some_and(|r| r.save);
    let reply = search_inner(s, cmd).await?;
    if save && !matches!(reply, Reply::Ok(_)) {
        crate::session::searchres::reset(s);
    }
    Ok(reply)
}

async fn search_inner(s: &mut Session, cmd: proto::Search) -> std::io::Result<Reply> {
    if let Some(reply) = crate::cmd::search::charset_reply(cmd.charset.as_deref()) {
        return Ok(reply);
    }
    let opts = cmd.ret.unwrap_or_default();
    let (hits, modseqs) = match crate::cmd::search::matching(s, &cmd.key, cmd.uid).await? {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    if opts.save {
        crate::session::searchres::save(s, &hits, cmd.uid, opts);
    }
    if opts.answers() {
        let mut response = crate::cmd::search::esearch::Esearch::new(&s.tag, cmd.uid, opts, &hits);
        // RFC 7162 3.1.5 with RFC 4731: MODSEQ return data when something
        // matched, the highest of the messages the response returns.
        response.modseq = modseqs
            .map(|m| crate::cmd::search::esearch::returned_modseq(opts, &m))
            .filter(|&h| h > 0 && !hits.is_empty());
        let line = response.line();
        s.untagged(&line);
    }
    s.sync(cmd.uid).await?;
    Ok(Reply::Ok(if opts.save {
        "SEARCH completed, result saved".into()
    } else {
        "SEARCH completed".into()
    }))
}

/// ENABLE: turns on what this module offers; returns " NAME" for each
/// capability newly enabled.
pub(crate) fn enable(s: &mut Session, caps: &[String]) -> Vec<&'static str> {
    let mut enabled = Vec::new();
    for c in caps {
        if c.eq_ignore_ascii_case("UTF8=ACCEPT") && !s.ext.utf8 {
            s.ext.utf8 = true;
            enabled.push(" UTF8=ACCEPT");
        }
    }
    enabled
}
