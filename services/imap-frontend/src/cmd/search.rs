//! SEARCH and UID SEARCH: the typed key tree (`proto`) becomes a mailstore
//! `SearchKey` (sequence numbers turned into UIDs through the session's
//! map, `$` into the saved result, RECENT/NEW/OLD through the session's
//! own \Recent UIDs); mailstore evaluates it and answers UIDs. A key of
//! nothing but flags, modseqs and sets is evaluated here, over the
//! session's own message state.

pub(crate) mod esearch;

use mailfleet_proto::v1 as pb;
use pb::SearchOp as Op;

use crate::errors::{self, Target};
use crate::proto::{self, SearchKey};
use crate::session::search_key::{MAX_DEPTH, charset_reply, convert};
use crate::session::searchres::Saved;
use crate::session::view::{MessageState, Selected};
use crate::session::{Reply, Session};

/// SEARCH or UID SEARCH, with RETURN (RFC 4731) or without.
pub(crate) async fn run(s: &mut Session, cmd: proto::Search) -> std::io::Result<Reply> {
    if cmd.ret.is_some() {
        search_return(s, cmd).await
    } else {
        search(s, &cmd).await
    }
}

/// SEARCH without RETURN (a `* SEARCH` answer, ESEARCH after ENABLE
/// IMAP4rev2).
async fn search(s: &mut Session, cmd: &proto::Search) -> std::io::Result<Reply> {
    if let Some(reply) = charset_reply(cmd.charset.as_deref()) {
        return Ok(reply);
    }
    let uid = cmd.uid;
    let (hits, modseqs) = match matching(s, &cmd.key, uid).await? {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    let highest = modseqs.map(|m| m.into_iter().max().unwrap_or(0));
    let mut line = search_line(s, &hits, uid);
    // RFC 7162 3.1.5: the highest modseq of the messages found, if any
    // (RFC 4731 form in an ESEARCH answer).
    if let Some(highest) = highest.filter(|&h| h > 0) {
        if s.rev2 {
            line.push_str(&format!(" MODSEQ {highest}"));
        } else {
            line.push_str(&format!(" (MODSEQ {highest})"));
        }
    }
    line.push_str("\r\n");
    s.out.extend_from_slice(line.as_bytes());
    s.sync(uid).await?;
    Ok(Reply::Ok("SEARCH completed".into()))
}

/// SEARCH RETURN (...) (RFC 4731), answered with ESEARCH.
async fn search_return(s: &mut Session, cmd: proto::Search) -> std::io::Result<Reply> {
    let save = cmd.ret.is_some_and(|r| r.save);
    let reply = search_inner(s, cmd).await?;
    if save && !matches!(reply, Reply::Ok(_)) {
        s.searchres = Default::default();
    }
    Ok(reply)
}

async fn search_inner(s: &mut Session, cmd: proto::Search) -> std::io::Result<Reply> {
    if let Some(reply) = charset_reply(cmd.charset.as_deref()) {
        return Ok(reply);
    }
    let opts = cmd.ret.unwrap_or_default();
    let (hits, modseqs) = match matching(s, &cmd.key, cmd.uid).await? {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    if opts.save {
        s.searchres = Saved::new(s.state.selected(), &hits, cmd.uid, opts);
    }
    if opts.answers() {
        let mut response = esearch::Esearch::new(&s.tag, cmd.uid, opts, &hits);
        // RFC 7162 3.1.5 with RFC 4731: MODSEQ return data when something
        // matched, the highest of the messages the response returns.
        response.modseq = modseqs
            .map(|m| esearch::returned_modseq(opts, &m))
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

/// The matching messages, ascending: UIDs (`uid`) or sequence numbers, and
/// with a MODSEQ key the modseq of each. Also used by ESEARCH
/// (`esearch`), which reports the modseq of the messages it returns.
/// The inner error is the reply.
pub(crate) async fn matching(
    s: &mut Session,
    criteria: &SearchKey,
    uid: bool,
) -> std::io::Result<Result<(Vec<u32>, Option<Vec<u64>>), Reply>> {
    s.sync(uid).await?;
    let saved = s.saved_uids();
    let sel = s.view()?;
    let Some(key) = convert(criteria, sel, &saved, 0) else {
        return Ok(Err(Reply::Bad("Search key too complex".into())));
    };
    let with_modseqs = criteria.has_modseq();
    if with_modseqs {
        s.enable_condstore();
    }
    if let Some(found) = s.state.selected().and_then(|sel| local(&key, sel)) {
        let (hits, modseqs) = found
            .iter()
            .map(|&(u, seq, m)| (if uid { u } else { seq }, m))
            .unzip();
        return Ok(Ok((hits, with_modseqs.then_some(modseqs))));
    }
    let (account, mailbox) = s.target()?;
    let call = s.client.search_messages(pb::SearchMessagesRequest {
        account,
        mailbox,
        key: Some(key),
        with_modseqs,
    });
    // A client that leaves during a long search (BODY keys read bodies)
    // ends the session at once: the call is dropped, and mailstore stops.
    let r = tokio::select! {
        r = call => r,
        () = s.io.get_ref().get_ref().closed_by_peer() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the client left during SEARCH",
            ));
        }
    };
    let r = match r {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(Err(errors::reply(&status, Target::Mailbox))),
    };
    let mut found = Vec::with_capacity(r.uids.len());
    if let Some(sel) = s.state.selected() {
        for (i, &u) in r.uids.iter().enumerate() {
            // Messages the session does not know yet are left out.
            let Some(seq) = sel.seq_of(u) else { continue };
            let modseq = r.modseqs.get(i).copied().unwrap_or(0);
            found.push((if uid { u } else { seq as u32 }, modseq));
        }
    }
    found.sort_unstable();
    let (hits, modseqs) = found.into_iter().unzip();
    Ok(Ok((hits, with_modseqs.then_some(modseqs))))
}

/// The SEARCH answer: `* SEARCH n...` for rev1, `* ESEARCH (TAG "t") [UID]
/// ALL set` for rev2. `numbers` are sequence numbers or UIDs, ascending.
fn search_line(s: &Session, numbers: &[u32], uid: bool) -> String {
    if !s.rev2 {
        let mut line = String::from("* SEARCH");
        for n in numbers {
            line.push(' ');
            line.push_str(&n.to_string());
        }
        return line;
    }
    let mut line = format!("* ESEARCH (TAG \"{}\")", quoted(&s.tag));
    if uid {
        line.push_str(" UID");
    }
    if !numbers.is_empty() {
        line.push_str(" ALL ");
        line.push_str(&crate::session::uid_text(numbers));
    }
    line
}

/// A tag is ASTRING-CHARs, but escape anyway: it goes inside quotes.
fn quoted(tag: &str) -> String {
    tag.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// Whether `key` needs nothing but flags, modseqs, UIDs and sequence
/// numbers, which the session holds itself.
fn is_local(key: &pb::SearchKey, depth: usize) -> bool {
    depth <= MAX_DEPTH
        && match key.op() {
            Op::SearchAll | Op::SearchNone | Op::SearchFlag | Op::SearchUid | Op::SearchModseq => {
                true
            }
            Op::SearchAnd | Op::SearchOr | Op::SearchNot => {
                key.children.iter().all(|c| is_local(c, depth + 1))
            }
            _ => false,
        }
}

fn eval(key: &pb::SearchKey, uid: u32, max_uid: u32, state: &MessageState) -> bool {
    match key.op() {
        Op::SearchAll => true,
        Op::SearchAnd => key.children.iter().all(|c| eval(c, uid, max_uid, state)),
        Op::SearchOr => key.children.iter().any(|c| eval(c, uid, max_uid, state)),
        Op::SearchNot => !key.children.iter().all(|c| eval(c, uid, max_uid, state)),
        Op::SearchFlag => state.flags.has(&key.text),
        Op::SearchModseq => state.modseq >= key.modseq,
        Op::SearchUid => key.uids.as_ref().is_some_and(|set| {
            set.ranges.iter().any(|r| {
                let bound = |v: u32| if v == 0 { max_uid } else { v };
                let (a, z) = (bound(r.first), bound(r.last));
                (a.min(z)..=a.max(z)).contains(&uid)
            })
        }),
        _ => false,
    }
}

/// SEARCH answered from the session's own state when `key` allows it:
/// (UID, sequence number, modseq) of each match, ascending.
fn local(key: &pb::SearchKey, sel: &Selected) -> Option<Vec<(u32, u32, u64)>> {
    if !is_local(key, 0) || sel.states.len() != sel.uids.len() {
        return None;
    }
    let max_uid = sel.uids.last().copied().unwrap_or(0);
    Some(
        sel.uids
            .iter()
            .zip(&sel.states)
            .enumerate()
            .filter(|&(_, (&uid, state))| eval(key, uid, max_uid, state))
            .map(|(i, (&uid, state))| (uid, i as u32 + 1, state.modseq))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_quoted_safely() {
        assert_eq!(quoted("a1"), "a1");
        assert_eq!(quoted("a\"b\\c\r"), "a\\\"b\\\\c");
    }
}
