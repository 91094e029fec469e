//! STATUS: the RFC 3501 items, SIZE (RFC 8438), HIGHESTMODSEQ (RFC 7162)
//! and DELETED / DELETED-STORAGE (RFC 9208). The same item list serves
//! LIST-STATUS.

use mailfleet_proto::v1 as pb;

use crate::errors::rpc;
use crate::session::{Reply, Session, UID_CHUNK, uid_set};

pub(crate) use crate::proto::StatusItem as Item;

/// The `(...)` part of a STATUS response for `mb`; asks mailstore for the
/// \Deleted messages when DELETED or DELETED-STORAGE is wanted.
pub(crate) async fn values(
    s: &mut Session,
    mb: &pb::Mailbox,
    items: &[Item],
) -> Result<String, tonic::Status> {
    let wants_deleted = items
        .iter()
        .any(|i| matches!(i, Item::Deleted | Item::DeletedStorage));
    let (deleted, deleted_bytes) = if wants_deleted {
        deleted(s, &mb.name, items.contains(&Item::DeletedStorage)).await?
    } else {
        (0, 0)
    };
    let parts: Vec<String> = items
        .iter()
        .map(|i| match i {
            Item::Messages => format!("MESSAGES {}", mb.messages),
            Item::Recent => format!("RECENT {}", mb.recent),
            Item::UidNext => format!("UIDNEXT {}", mb.uidnext),
            Item::UidValidity => format!("UIDVALIDITY {}", mb.uidvalidity),
            Item::Unseen => format!("UNSEEN {}", mb.unseen),
            Item::HighestModSeq => format!("HIGHESTMODSEQ {}", mb.highestmodseq),
            Item::Size => format!("SIZE {}", mb.size),
            Item::Deleted => format!("DELETED {deleted}"),
            Item::DeletedStorage => format!("DELETED-STORAGE {deleted_bytes}"),
        })
        .collect();
    Ok(format!("({})", parts.join(" ")))
}

/// (count, octets) of the messages flagged \Deleted in `mailbox`.
async fn deleted(
    s: &mut Session,
    mailbox: &str,
    with_size: bool,
) -> Result<(usize, u64), tonic::Status> {
    let account = s.account()?;
    let uids = s
        .client
        .search_messages(pb::SearchMessagesRequest {
            account: account.clone(),
            mailbox: mailbox.to_owned(),
            key: Some(pb::SearchKey {
                op: pb::SearchOp::SearchFlag as i32,
                text: "\\Deleted".into(),
                ..Default::default()
            }),
            with_modseqs: false,
        })
        .await?
        .into_inner()
        .uids;
    let mut bytes = 0;
    if with_size {
        for chunk in uids.chunks(UID_CHUNK) {
            let r = s
                .client
                .fetch_messages(pb::FetchMessagesRequest {
                    account: account.clone(),
                    mailbox: mailbox.to_owned(),
                    uids: Some(uid_set(chunk)),
                    with_meta: false,
                    with_header: false,
                })
                .await?
                .into_inner();
            bytes += r.messages.iter().map(|m| m.size).sum::<u64>();
        }
    }
    Ok((uids.len(), bytes))
}

/// The STATUS command.
pub(crate) async fn run(s: &mut Session, raw: &[u8], items: &[Item]) -> std::io::Result<Reply> {
    // RFC 7162 3.1: STATUS (HIGHESTMODSEQ) turns CONDSTORE on.
    if items.contains(&Item::HighestModSeq) {
        s.enable_condstore();
    }
    let name = match crate::names::from_client(raw, s.ext.utf8) {
        Ok(n) => crate::names::canonical(n),
        Err(e) => return Ok(Reply::No(e.into())),
    };
    let account = s.account()?;
    let r = rpc!(s.mailbox_status(account, name));
    let Some(mb) = r.mailbox else {
        return Ok(crate::errors::no_such_mailbox());
    };
    s.note_mailbox(&mb);
    let values = match values(s, &mb, items).await {
        Ok(v) => v,
        Err(status) => {
            return Ok(crate::errors::reply(
                &status,
                crate::errors::Target::Mailbox,
            ));
        }
    };
    let mut line = b"* STATUS ".to_vec();
    crate::names::to_client(&mut line, &mb.name, s.ext.utf8);
    line.push(b' ');
    line.extend_from_slice(values.as_bytes());
    line.extend_from_slice(b"\r\n");
    s.out.extend_from_slice(&line);
    Ok(Reply::Ok("STATUS completed".into()))
}
