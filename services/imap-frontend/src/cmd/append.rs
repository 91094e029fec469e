//! APPEND streamed: the message literal is never held whole. When the
//! command reader meets a literal, [`message_literal`] tells (purely, from
//! the bytes read so far) whether it is an APPEND's message; if so the
//! session hands it to [`run`], which reads it from the socket in chunks of
//! [`CHUNK`] and forwards them to mailstore's AppendMessageStream. mailstore
//! stores nothing unless exactly the announced octets arrive, so a client
//! that disconnects mid-literal leaves no message behind. The message may
//! also come as a literal8 (`~{n}`, RFC 3516 4.2: binary, NUL allowed) or
//! in RFC 6855's `UTF8 (~{n})` form; both take the same streamed path.

use mailfleet_proto::v1 as pb;
use tokio::io::AsyncReadExt;

use crate::errors::{self, Target};
use crate::proto::{self, AppendData, LiteralMode};
use crate::session::view::MessageState;
use crate::session::{Reply, Session};

/// Octets read from the socket and sent to mailstore at a time.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the socket and mailstore.
const IN_FLIGHT: usize = 4;

/// An APPEND whose message literal has been announced but not read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub tag: String,
    pub mailbox: String,
    pub flags: Vec<String>,
    /// Milliseconds since the epoch; 0 when the client gave no date.
    pub internal_date_ms: i64,
    pub length: usize,
    pub mode: LiteralMode,
    /// RFC 6855 `UTF8 (~{n})`: a `)` closes the data after the literal.
    pub close_paren: bool,
}

/// `buf` is a command read up to a literal announcement `{n}` / `{n+}` CRLF
/// at its end. When that literal is the message of an APPEND, returns the
/// command without it. A mailbox name that is not valid in the client's
/// encoding makes it `None` too: the literal is then read like any other
/// and the whole command answered.
pub(crate) fn message_literal(
    buf: &[u8],
    length: usize,
    mode: LiteralMode,
    utf8: bool,
) -> Option<Pending> {
    let head = crate::proto::parse_append_head(buf)?;
    let mailbox = crate::names::from_client(&head.mailbox.0, utf8).ok()?;
    Some(Pending {
        tag: head.tag,
        mailbox: crate::names::canonical(mailbox),
        flags: head.flags,
        internal_date_ms: head.date.map(|d| d.timestamp_millis()).unwrap_or(0),
        length,
        mode,
        close_paren: head.data == AppendData::Utf8,
    })
}

/// The reply to a failed AppendMessageStream.
fn failure(status: tonic::Status) -> Reply {
    errors::reply(&status, Target::Destination)
}

/// Reads the literal of `p` in chunks, streams it to mailstore and answers.
/// An I/O error (the client went away) cancels the call: nothing is stored.
pub(crate) async fn run(s: &mut Session, p: Pending) -> std::io::Result<(String, String, Reply)> {
    let name = "append".to_owned();
    if p.mode == LiteralMode::Sync {
        s.out.extend_from_slice(b"+ Ready for literal data\r\n");
        s.flush().await?;
        // The literal may come in two sends (data, then CRLF): ack the
        // first at once, or the client's Nagle waits out our delayed ACK.
        s.io.get_ref().get_ref().quick_ack();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::AppendStreamRequest>(IN_FLIGHT);
    let start = pb::AppendStreamRequest {
        start: Some(pb::AppendStart {
            account: s.account()?,
            mailbox: p.mailbox.clone(),
            flags: p.flags.clone(),
            internal_date_ms: p.internal_date_ms,
            size: p.length as u64,
            claim_recent: into_selected(s, &p.mailbox).is_some_and(|read_only| !read_only),
        }),
        data: Vec::new(),
        commit: false,
    };
    let mut tx = tx.try_send(start).is_ok().then_some(tx);
    let requests =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut client = s.client.clone();
    let call = tokio::spawn(async move { client.append_message_stream(requests).await });

    let mut left = p.length;
    let mut chunk = vec![0u8; CHUNK.min(left)];
    while left > 0 {
        let n = CHUNK.min(left);
        let Some(dest) = chunk.get_mut(..n) else {
            break;
        };
        // A client that stalls mid-literal is timed out as an idle one is.
        let read = tokio::time::timeout(s.shared.idle_timeout, s.io.read_exact(dest)).await;
        if let Err(e) = read.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())) {
            // Dropping the call resets the stream; mailstore discards the body.
            call.abort();
            return Err(e);
        }
        left -= n;
        if let Some(sender) = &tx {
            let data = dest.to_vec();
            if sender
                .send(pb::AppendStreamRequest {
                    start: None,
                    data,
                    commit: false,
                })
                .await
                .is_err()
            {
                // mailstore already refused (its answer is awaited below);
                // the rest of the literal is still read and dropped.
                tx = None;
            }
        }
    }
    // The command line goes on after the literal: only CRLF may follow
    // (MULTIAPPEND is not offered), after the `)` of the UTF8 form.
    let mut rest = Vec::new();
    let complete = match s.read_line_timed(&mut rest).await {
        Err(e) => {
            call.abort();
            return Err(e);
        }
        Ok(Some(true)) => {
            let tail = if p.close_paren {
                rest.strip_prefix(b")")
            } else {
                Some(rest.as_slice())
            };
            tail.is_some_and(|t| t.iter().all(|b| matches!(b, b'\r' | b'\n')))
        }
        Ok(Some(false)) => {
            call.abort();
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(None) => false,
    };
    if !complete {
        call.abort();
        return Ok((
            p.tag,
            name,
            Reply::Bad("Junk after the APPEND literal".into()),
        ));
    }
    // Only now, with the command complete, does mailstore store it.
    if let Some(sender) = tx.take() {
        let _ = sender
            .send(pb::AppendStreamRequest {
                start: None,
                data: Vec::new(),
                commit: true,
            })
            .await;
    }
    let response = match call.await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => return Ok((p.tag, name, failure(status))),
        Err(error) => {
            tracing::warn!(%error, "APPEND call task failed.");
            return Ok((p.tag, name, errors::unavailable()));
        }
    };
    if into_selected(s, &p.mailbox).is_some() {
        learn_appended(s, &response, &p.flags);
    }
    s.sync(true).await?;
    Ok((
        p.tag,
        name,
        Reply::Ok(format!(
            "[APPENDUID {} {}] APPEND completed",
            response.uidvalidity, response.uid
        )),
    ))
}

/// An APPEND whose message came whole with the command (a literal the
/// streamed path did not take); `mailbox` as stored.
pub(crate) async fn append(
    s: &mut Session,
    mailbox: String,
    append: proto::Append,
) -> std::io::Result<Reply> {
    let account = s.account()?;
    let r = match s
        .client
        .append_message(pb::AppendMessageRequest {
            account,
            mailbox,
            flags: append.flags,
            internal_date_ms: append.date.map(|d| d.timestamp_millis()).unwrap_or(0),
            data: append.message,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(failure(status)),
    };
    s.sync(true).await?;
    Ok(Reply::Ok(format!(
        "[APPENDUID {} {}] APPEND completed",
        r.uidvalidity, r.uid
    )))
}

/// Whether `mailbox` is the session's selected mailbox: Some(read-only).
fn into_selected(s: &Session, mailbox: &str) -> Option<bool> {
    s.state
        .selected()
        .filter(|sel| crate::session::view::same_name(&sel.name, mailbox))
        .map(|sel| sel.read_only)
}

/// A message appended to the selected mailbox joins the session at once
/// (RFC 3501 6.3.11: the server should send EXISTS) when nothing else
/// changed the mailbox in between; otherwise the resync finds it.
fn learn_appended(s: &mut Session, r: &pb::AppendMessageResponse, flags: &[String]) {
    let Some(sel) = s.state.selected_mut() else {
        return;
    };
    let newest = sel.uids.last().copied().unwrap_or(0);
    if r.modseq != sel.modseq + 1 || r.uid <= newest || sel.states.len() != sel.uids.len() {
        return;
    }
    sel.uids.push(r.uid);
    sel.states.push(MessageState::new(flags, r.modseq));
    s.announce_keywords(flags);
    let Some(sel) = s.state.selected_mut() else {
        return;
    };
    sel.modseq = r.modseq;
    if r.recent {
        sel.recent.push(r.uid);
    }
    let (id, exists) = (sel.id, sel.uids.len());
    s.untagged(&format!("{exists} EXISTS"));
    if let Some(l) = s.recent_line() {
        s.untagged(&l);
    }
    // The view is now at the append's modseq, with nothing missed.
    s.note_highest(id, r.modseq, false);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn literal(buf: &[u8]) -> Option<Pending> {
        message_literal(buf, 30, LiteralMode::Sync, false)
    }

    #[test]
    fn the_message_literal_is_recognised() {
        let p = literal(b"a1 APPEND INBOX {30}\r\n").unwrap();
        assert_eq!(
            p,
            Pending {
                tag: "a1".into(),
                mailbox: "INBOX".into(),
                flags: vec![],
                internal_date_ms: 0,
                length: 30,
                mode: LiteralMode::Sync,
                close_paren: false,
            }
        );
        let p = literal(b"a2 append Sent (\\Seen $Junk) \"01-Jan-2020 00:00:00 +0000\" {30+}\r\n")
            .unwrap();
        assert_eq!(p.mailbox, "Sent");
        assert_eq!(p.flags, vec!["\\Seen".to_owned(), "$Junk".to_owned()]);
        assert_eq!(p.internal_date_ms, 1_577_836_800_000);
        // The mailbox given as a literal, then the message.
        let p = literal(b"a3 APPEND {4}\r\nWork {30}\r\n").unwrap();
        assert_eq!(p.mailbox, "Work");
        // Modified UTF-7 names are decoded as for every other command.
        let p = literal(b"a4 APPEND &AOk-t&AOk- {30}\r\n").unwrap();
        assert_eq!(p.mailbox, "\u{e9}t\u{e9}");
        // literal8 (RFC 3516 4.2) and the RFC 6855 UTF8 form.
        let p = literal(b"a5 APPEND INBOX (\\Seen) ~{30}\r\n").unwrap();
        assert_eq!((p.mailbox.as_str(), p.close_paren), ("INBOX", false));
        let p = literal(b"a6 APPEND Sent utf8 (~{30+}\r\n").unwrap();
        assert_eq!((p.mailbox.as_str(), p.close_paren), ("Sent", true));
        assert_eq!(p.flags, Vec::<String>::new());
    }

    #[test]
    fn other_literals_are_not_messages() {
        // The literal is the mailbox name.
        assert!(literal(b"a1 APPEND {5}\r\n").is_none());
        assert!(literal(b"a2 LOGIN {5}\r\n").is_none());
        assert!(literal(b"a3 SEARCH TEXT {5}\r\n").is_none());
        assert!(literal(b"a4 APPEND INBOX (\\Bogus-Flag {30}\r\n").is_none());
        assert!(literal(b"a5 APPEND INBOX X (~{30}\r\n").is_none());
        assert!(literal(b"a6 SEARCH TEXT ~{5}\r\n").is_none());
        assert!(literal(b"").is_none());
        assert!(literal(b"{").is_none());
    }
}
