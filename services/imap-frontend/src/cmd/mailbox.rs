//! The mailbox commands that are not LIST or STATUS: CREATE, DELETE,
//! RENAME, SUBSCRIBE, UNSUBSCRIBE and NAMESPACE.

use mailfleet_proto::v1 as pb;

use crate::errors::rpc;
use crate::session::{Reply, Session};

/// CREATE: a trailing hierarchy delimiter only says the client means to
/// create children (RFC 3501 6.3.3).
pub(crate) async fn create(s: &mut Session, name: String) -> std::io::Result<Reply> {
    let name = name.trim_end_matches('/').to_owned();
    let account = s.account()?;
    rpc!(s.client.create_mailbox(pb::CreateMailboxRequest {
        account,
        name,
        special_use: String::new(),
    }));
    Ok(Reply::Ok("CREATE completed".into()))
}

/// DELETE; deleting the selected mailbox leaves the Selected state.
pub(crate) async fn delete(s: &mut Session, name: String) -> std::io::Result<Reply> {
    if s.state.selected().is_some_and(|v| v.name == name) {
        s.state.unselect();
    }
    let account = s.account()?;
    rpc!(
        s.client
            .delete_mailbox(pb::DeleteMailboxRequest { account, name })
    );
    Ok(Reply::Ok("DELETE completed".into()))
}

pub(crate) async fn rename(s: &mut Session, from: String, to: String) -> std::io::Result<Reply> {
    let account = s.account()?;
    rpc!(
        s.client
            .rename_mailbox(pb::RenameMailboxRequest { account, from, to })
    );
    Ok(Reply::Ok("RENAME completed".into()))
}

/// NAMESPACE (RFC 2342): one personal namespace, "/" as delimiter.
pub(crate) fn namespace(s: &mut Session) -> Reply {
    s.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
    Reply::Ok("NAMESPACE completed".into())
}

/// SUBSCRIBE (`on`) or UNSUBSCRIBE.
pub(crate) async fn subscribe(s: &mut Session, name: String, on: bool) -> std::io::Result<Reply> {
    let account = s.account()?;
    rpc!(s.client.subscribe_mailbox(pb::SubscribeMailboxRequest {
        account,
        name,
        subscribed: on,
    }));
    Ok(Reply::Ok(
        if on {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        }
        .into(),
    ))
}
