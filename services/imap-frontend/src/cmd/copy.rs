//! COPY and MOVE (RFC 6851), by sequence number or UID, with COPYUID
//! (UIDPLUS, RFC 4315).

use mailfleet_proto::v1 as pb;

use crate::errors::{self, Target};
use crate::proto::{SeqSet, SequenceSet};
use crate::session::{Reply, Session, uid_set, uid_text};

/// COPY (`is_move` false) or MOVE of the set the command names, into
/// `target` (a mailbox name as stored).
pub(crate) async fn run(
    s: &mut Session,
    set: SeqSet,
    target: &str,
    uid: bool,
    is_move: bool,
) -> std::io::Result<Reply> {
    let verb = if is_move { "MOVE" } else { "COPY" };
    match s.resolve_saved(set, uid) {
        Some(set) => copy(s, &set, target, uid, is_move).await,
        None => s.nothing_to_do(verb, uid).await,
    }
}

async fn copy(
    s: &mut Session,
    set: &SequenceSet,
    target: &str,
    uid: bool,
    is_move: bool,
) -> std::io::Result<Reply> {
    if is_move && s.state.selected().is_some_and(|s| s.read_only) {
        return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
    }
    s.sync(uid).await?;
    if let Some(bad) = s.bad_sequence(set, uid) {
        return Ok(bad);
    }
    let uids = match s.state.selected() {
        Some(s) => s.resolve(set, uid),
        None => Vec::new(),
    };
    let verb = if is_move { "MOVE" } else { "COPY" };
    if uids.is_empty() {
        return Ok(Reply::Ok(format!("{verb} completed (nothing to do)")));
    }
    let (account, mailbox) = s.target()?;
    let r = match s
        .client
        .copy_messages(pb::CopyMessagesRequest {
            account,
            mailbox,
            uids: Some(uid_set(&uids)),
            target: target.to_owned(),
            r#move: is_move,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(errors::reply(&s, Target::Destination)),
    };
    let code = format!(
        "COPYUID {} {} {}",
        r.uidvalidity,
        uid_text(&r.source_uids),
        uid_text(&r.target_uids)
    );
    if !is_move {
        s.sync(uid).await?;
        return Ok(Reply::Ok(format!("[{code}] COPY completed")));
    }
    s.untagged(&format!("OK [{code}] Moved"));
    let mut moved = r.source_uids.clone();
    moved.sort_unstable();
    s.announce_expunged(&moved);
    s.sync(true).await?;
    Ok(Reply::Ok("MOVE completed".into()))
}
