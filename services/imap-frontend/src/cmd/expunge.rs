//! EXPUNGE and UID EXPUNGE (UIDPLUS, RFC 4315), with HIGHESTMODSEQ once
//! CONDSTORE is on (RFC 7162 3.1.8).

use mailfleet_proto::v1 as pb;

use crate::errors::rpc;
use crate::proto::SeqSet;
use crate::session::{Reply, Session, condstore, uid_set};

/// UID EXPUNGE of a set (`$` resolved first).
pub(crate) async fn uid_expunge(s: &mut Session, set: SeqSet) -> std::io::Result<Reply> {
    let uids = match s.resolve_saved(set, true) {
        Some(set) => s
            .state
            .selected()
            .map(|v| v.resolve(&set, true))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if uids.is_empty() && !s.rfc7162.condstore {
        return Ok(Reply::Ok("UID EXPUNGE completed".into()));
    }
    // With CONDSTORE on, even an empty one reports HIGHESTMODSEQ.
    expunge(s, Some(uids)).await
}

/// EXPUNGE (`uids` None) or UID EXPUNGE.
pub(crate) async fn expunge(s: &mut Session, uids: Option<Vec<u32>>) -> std::io::Result<Reply> {
    if s.state.selected().is_some_and(|s| s.read_only) {
        return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
    }
    let (account, mailbox) = s.target()?;
    let set = match &uids {
        Some(u) => uid_set(u),
        None => pb::UidSet {
            ranges: vec![pb::UidRange { first: 1, last: 0 }],
        },
    };
    if set.ranges.is_empty() && !s.rfc7162.condstore {
        return Ok(Reply::Ok("EXPUNGE completed".into()));
    }
    if !set.ranges.is_empty() {
        let r = rpc!(s.client.expunge(pb::ExpungeRequest {
            account,
            mailbox,
            uids: Some(set),
            only_deleted: true,
        }));
        let mailbox_id = s.state.selected().map_or(0, |s| s.id);
        s.note_highest(mailbox_id, r.highestmodseq, !r.expunged.is_empty());
        s.announce_expunged(&r.expunged);
    }
    s.sync(true).await?;
    if s.rfc7162.condstore
        && let Some(sel) = s.state.selected()
    {
        let highest = condstore::reported_modseq(sel);
        return Ok(Reply::Ok(format!(
            "[HIGHESTMODSEQ {highest}] EXPUNGE completed"
        )));
    }
    Ok(Reply::Ok("EXPUNGE completed".into()))
}
