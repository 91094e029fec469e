//! STORE and UID STORE, with .SILENT and the UNCHANGEDSINCE modifier
//! (RFC 7162 3.1.3).

use mailfleet_proto::v1 as pb;

use crate::encode;
use crate::errors::rpc;
use crate::proto::{self, SequenceSet, StoreMode};
use crate::session::{Reply, Session, UID_CHUNK, uid_set, uid_text};

/// STORE of the set the command names (`$` resolved first).
pub(crate) async fn run(s: &mut Session, cmd: proto::Store) -> std::io::Result<Reply> {
    match s.resolve_saved(cmd.set.clone(), cmd.uid) {
        Some(set) => store(s, &set, &cmd).await,
        None => s.nothing_to_do("STORE", cmd.uid).await,
    }
}

async fn store(s: &mut Session, set: &SequenceSet, cmd: &proto::Store) -> std::io::Result<Reply> {
    let uid = cmd.uid;
    if s.state.selected().is_some_and(|s| s.read_only) {
        return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
    }
    // UNCHANGEDSINCE makes it a CONDSTORE enabling command (RFC 7162 3.1).
    if cmd.unchanged_since.is_some() {
        s.enable_condstore();
    }
    // New messages become addressable first (EXPUNGE only for UID STORE).
    s.sync(uid).await?;
    if let Some(bad) = s.bad_sequence(set, uid) {
        return Ok(bad);
    }
    let mut uids = match s.state.selected() {
        Some(s) => s.resolve(set, uid),
        None => Vec::new(),
    };
    // Messages left alone by UNCHANGEDSINCE (as UIDs).
    let mut modified = Vec::new();
    if cmd.unchanged_since == Some(0) {
        // Every message has a modseq, so 0 always fails (RFC 7162 3.1.3).
        modified = std::mem::take(&mut uids);
    }
    let condstore = s.rfc7162.condstore;
    let mode = match cmd.mode {
        StoreMode::Add => pb::FlagsMode::FlagsAdd,
        StoreMode::Remove => pb::FlagsMode::FlagsRemove,
        StoreMode::Replace => pb::FlagsMode::FlagsReplace,
    };
    let flags = cmd.flags.clone();
    let answer = !cmd.silent;
    let (account, mailbox) = s.target()?;
    for chunk in uids.chunks(UID_CHUNK) {
        let r = rpc!(s.client.store_flags(pb::StoreFlagsRequest {
            account: account.clone(),
            mailbox: mailbox.clone(),
            uids: Some(uid_set(chunk)),
            mode: mode as i32,
            flags: flags.clone(),
            unchanged_since: cmd.unchanged_since.unwrap_or(0),
        }));
        modified.extend_from_slice(&r.modified);
        let mut mailbox_id = 0;
        if let Some(sel) = s.state.selected_mut() {
            mailbox_id = sel.id;
            for u in &r.updated {
                sel.learn(u.uid, &u.flags, u.modseq);
            }
        }
        // Only our own change happened: nothing to resync.
        s.note_highest(mailbox_id, r.highestmodseq, !r.updated.is_empty());
        for u in &r.updated {
            s.announce_keywords(&u.flags);
        }
        // With CONDSTORE on, even .SILENT reports the new MODSEQ (RFC
        // 7162 3.1.3), with the UID.
        if answer || condstore {
            for u in &r.updated {
                let Some(seq) = s.state.selected().and_then(|s| s.seq_of(u.uid)) else {
                    continue;
                };
                let mut parts = Vec::new();
                if uid || condstore {
                    parts.push(format!("UID {}", u.uid).into_bytes());
                }
                if answer {
                    let mut f = b"FLAGS ".to_vec();
                    encode::flags(&mut f, &s.flags_shown(u.uid, &u.flags));
                    parts.push(f);
                }
                if condstore {
                    parts.push(format!("MODSEQ ({})", u.modseq).into_bytes());
                }
                let mut line = format!("* {seq} FETCH (").into_bytes();
                line.extend_from_slice(&parts.join(b" ".as_slice()));
                line.extend_from_slice(b")\r\n");
                s.out.extend_from_slice(&line);
            }
        }
    }
    s.sync(uid).await?;
    if !modified.is_empty() {
        modified.sort_unstable();
        if !uid {
            // STORE names messages by sequence number.
            let sel = s.state.selected();
            modified = modified
                .iter()
                .filter_map(|&u| sel.and_then(|s| s.seq_of(u)))
                .map(|n| n as u32)
                .collect();
        }
        return Ok(modified_reply(&modified));
    }
    Ok(Reply::Ok("STORE completed".into()))
}

/// The tagged reply of a conditional STORE that left some messages alone.
pub(crate) fn modified_reply(modified: &[u32]) -> Reply {
    Reply::Ok(format!(
        "[MODIFIED {}] Conditional STORE failed",
        uid_text(modified)
    ))
}
