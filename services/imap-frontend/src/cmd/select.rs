//! SELECT and EXAMINE (with CONDSTORE and QRESYNC parameters, RFC 7162),
//! UNSELECT and CLOSE: the moves into and out of the Selected state.

use mailfleet_proto::v1 as pb;

use crate::encode;
use crate::errors::{self, Target};
use crate::proto::{Qresync, SelectParams};
use crate::session::view::{self, MessageState, Selected};
use crate::session::{Listing, Reply, Session, condstore, list_mailbox};

/// Buffered response bytes before a QRESYNC SELECT writes to the socket.
const FLUSH_AT: usize = 64 * 1024;

/// SELECT/EXAMINE with RFC 7162 parameters (or with CONDSTORE on).
pub(crate) async fn run(
    s: &mut Session,
    name: &str,
    read_only: bool,
    params: &SelectParams,
) -> std::io::Result<Reply> {
    if params.qresync.is_some() && !s.rfc7162.qresync {
        return Ok(Reply::Bad("Enable QRESYNC first".into()));
    }
    if params.condstore {
        // Quietly: no HIGHESTMODSEQ for the mailbox being closed.
        s.rfc7162.condstore = true;
    }
    let reply = select(s, name, read_only).await?;
    let Some(sel) = s.state.selected() else {
        return Ok(reply);
    };
    if s.rfc7162.condstore {
        let line = format!("OK [HIGHESTMODSEQ {}] Highest", sel.modseq);
        s.untagged(&line);
    }
    if let Some(q) = &params.qresync {
        resync(s, q).await?;
    }
    Ok(reply)
}

/// QRESYNC: what changed since the client's modseq, when its UIDVALIDITY
/// is still right: VANISHED (EARLIER) for expunged UIDs, then FETCH (UID
/// FLAGS MODSEQ) for changed messages, both within the known UIDs if given.
async fn resync(s: &mut Session, q: &Qresync) -> std::io::Result<()> {
    let (account, mailbox) = s.target()?;
    let listing = match list_mailbox(s.client.clone(), &account, &mailbox, q.modseq, 1, false).await
    {
        Ok(l) => l,
        Err(status) => {
            // The SELECT itself succeeded; the client resyncs by hand.
            tracing::warn!(%status, "QRESYNC changes could not be read.");
            return Ok(());
        }
    };
    if listing
        .mailbox
        .as_ref()
        .is_some_and(|mb| mb.uidvalidity != q.uidvalidity)
    {
        return Ok(());
    }
    let Some(sel) = s.state.selected() else {
        return Ok(());
    };
    let mut gone = Vec::new();
    let mut fetches: Vec<u8> = Vec::new();
    for m in &listing.messages {
        if q.known_uids
            .as_ref()
            .is_some_and(|k| !condstore::set_contains(k, m.uid))
        {
            continue;
        }
        match sel.seq_of(m.uid) {
            // Expunged before this session's snapshot.
            None if m.expunged => gone.push(m.uid),
            Some(seq) if !m.expunged => {
                fetches.extend(condstore::flags_fetch_line(seq, m.uid, &m.flags, m.modseq))
            }
            // Arrived or expunged after the snapshot: the next sync
            // reports it as EXISTS or VANISHED.
            _ => {}
        }
    }
    for line in condstore::vanished_lines(&gone, true) {
        s.untagged(&line);
    }
    if !fetches.is_empty() {
        // Keywords set since the client's modseq come before FETCHes show them.
        for m in listing.messages.iter().filter(|m| !m.expunged) {
            s.announce_keywords(&m.flags);
        }
    }
    for line in fetches.split_inclusive(|&b| b == b'\n') {
        s.out.extend_from_slice(line);
        if s.out.len() > FLUSH_AT {
            s.flush().await?;
        }
    }
    Ok(())
}

async fn select(s: &mut Session, name: &str, read_only: bool) -> std::io::Result<Reply> {
    let previous = s.state.unselect();
    if previous.is_some() {
        // RFC 7162 3.2.11, sent whether or not QRESYNC is enabled.
        s.untagged("OK [CLOSED] Previous mailbox closed");
    }
    // Selecting the mailbox the session has open again (clients do, to
    // refresh) asks only for what changed since the state it holds.
    let base =
        previous.filter(|p| view::same_name(&p.name, name) && p.states.len() == p.uids.len());
    let since = base.as_ref().map_or(0, |b| b.modseq.max(1));
    // Read before the listing: a reconnect during it forces a resync.
    let feed_epoch_before = s.shared.feed.epoch();
    let account = s.account()?;
    // SELECT takes the new messages' \Recent; EXAMINE may not.
    let listed = list_mailbox(s.client.clone(), &account, name, since, 1, !read_only).await;
    let Listing {
        mailbox: mut status,
        recent: recent_range,
        messages: mut listing,
    } = match listed {
        Ok(l) => l,
        Err(status) => return Ok(errors::reply(&status, Target::Mailbox)),
    };
    let mut base = base;
    if let (Some(b), Some(mb)) = (&base, &status)
        && b.id != mb.id
    {
        // Deleted and created again under the same name: list it all.
        base = None;
        match list_mailbox(s.client.clone(), &account, name, 0, 1, false).await {
            Ok(l) => (status, listing) = (l.mailbox, l.messages),
            Err(status) => return Ok(errors::reply(&status, Target::Mailbox)),
        }
    }
    let (uids, states) = match base {
        Some(b) => view::merge_changes(b, listing),
        None => listing
            .into_iter()
            .map(|m| (m.uid, MessageState::new(&m.flags, m.modseq)))
            .unzip(),
    };
    let first_unseen = states
        .iter()
        .position(|s: &MessageState| !s.flags.has("\\Seen"))
        .map(|i| i + 1);
    let Some(mb) = status else {
        return Ok(crate::errors::no_such_mailbox());
    };
    // The keywords in use, each once (compared without case).
    let mut keywords: Vec<String> = Vec::new();
    for state in &states {
        for k in state.flags.keywords() {
            if !keywords.iter().any(|known| known.eq_ignore_ascii_case(k)) {
                keywords.push(k.to_owned());
            }
        }
    }
    for line in view::flags_responses(&keywords) {
        s.untagged(&line);
    }
    s.untagged(&format!("{} EXISTS", uids.len()));
    let mut recent = Vec::new();
    if !s.rev2 {
        recent.extend(
            uids.iter()
                .filter(|&&u| u >= recent_range.0 && u < recent_range.1),
        );
        s.untagged(&format!("{} RECENT", recent.len()));
    }
    if let Some(n) = first_unseen.filter(|_| !s.rev2) {
        s.untagged(&format!("OK [UNSEEN {n}] First unseen"));
    }
    if s.rev2 {
        let mut line = b"* LIST () \"/\" ".to_vec();
        encode::mailbox(&mut line, &mb.name);
        line.extend_from_slice(b"\r\n");
        s.out.extend_from_slice(&line);
    }
    s.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", mb.uidvalidity));
    s.untagged(&format!("OK [UIDNEXT {}] Predicted next UID", mb.uidnext));
    s.state.select(Selected {
        name: mb.name,
        id: mb.id,
        read_only,
        uids,
        states,
        modseq: mb.highestmodseq,
        dirty: false,
        pending_expunge: Vec::new(),
        expunge_floor: None,
        recent,
        feed_epoch: feed_epoch_before,
        keywords,
    });
    // Drop events from before the snapshot.
    while s.events.try_recv().is_ok() {}
    s.resynced = true;
    Ok(if read_only {
        Reply::Ok("[READ-ONLY] EXAMINE completed".into())
    } else {
        Reply::Ok("[READ-WRITE] SELECT completed".into())
    })
}

/// UNSELECT: back to Authenticated, nothing expunged.
pub(crate) fn unselect(s: &mut Session) -> Reply {
    s.state.unselect();
    Reply::Ok("UNSELECT completed".into())
}

/// CLOSE: expunges silently (no EXPUNGE responses) when the mailbox is
/// writable, then back to Authenticated. If the expunge fails, CLOSE did
/// not happen: the messages marked \Deleted remain and the mailbox stays
/// selected.
pub(crate) async fn close(s: &mut Session) -> std::io::Result<Reply> {
    let writable = s.state.selected().is_some_and(|v| !v.read_only);
    if writable {
        let (account, mailbox) = s.target()?;
        if let Err(status) = s
            .client
            .expunge(pb::ExpungeRequest {
                account,
                mailbox,
                uids: Some(pb::UidSet {
                    ranges: vec![pb::UidRange { first: 1, last: 0 }],
                }),
                only_deleted: true,
            })
            .await
        {
            return Ok(errors::reply(&status, Target::Mailbox));
        }
    }
    s.state.unselect();
    Ok(Reply::Ok("CLOSE completed".into()))
}
