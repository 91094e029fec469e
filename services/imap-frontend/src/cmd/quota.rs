//! QUOTA (RFC 9208) with the STORAGE and MESSAGE resources: one quota root
//! per account, "User quota" as Dovecot names it, limited by the account's
//! `quota_bytes` and `quota_messages` (0: no limit; without either there is
//! no quota root at all). Limits are the operator's: SETQUOTA is refused.

use mailfleet_proto::v1 as pb;

use crate::errors::rpc;
use crate::session::{Reply, Session};

pub(crate) const ROOT: &str = "User quota";

/// `QUOTA "User quota" (STORAGE used limit MESSAGE used limit)`, storage in
/// KiB, each resource only when the account has a limit on it.
async fn quota_line(s: &mut Session) -> Result<Option<String>, tonic::Status> {
    let account = s.account()?;
    let q = s
        .client
        .get_quota(pb::GetQuotaRequest { account })
        .await?
        .into_inner();
    let mut resources = Vec::new();
    if q.quota_bytes > 0 {
        resources.push(format!(
            "STORAGE {} {}",
            q.used_bytes / 1024,
            q.quota_bytes / 1024
        ));
    }
    if q.quota_messages > 0 {
        resources.push(format!("MESSAGE {} {}", q.messages, q.quota_messages));
    }
    if resources.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!("QUOTA \"{ROOT}\" ({})", resources.join(" "))))
}

pub(crate) async fn get_quota_root(s: &mut Session, mailbox: &str) -> std::io::Result<Reply> {
    let account = s.account()?;
    let r = rpc!(s.mailbox_status(account, mailbox.to_owned()));
    let Some(mb) = r.mailbox else {
        return Ok(crate::errors::no_such_mailbox());
    };
    let quota = match quota_line(s).await {
        Ok(q) => q,
        Err(status) => {
            return Ok(crate::errors::reply(
                &status,
                crate::errors::Target::Mailbox,
            ));
        }
    };
    let mut line = b"* QUOTAROOT ".to_vec();
    crate::names::to_client(&mut line, &mb.name, s.ext.utf8);
    if quota.is_some() {
        line.extend_from_slice(format!(" \"{ROOT}\"").as_bytes());
    }
    line.extend_from_slice(b"\r\n");
    s.out.extend_from_slice(&line);
    if let Some(q) = quota {
        s.untagged(&q);
    }
    Ok(Reply::Ok("GETQUOTAROOT completed".into()))
}

pub(crate) async fn get_quota(s: &mut Session, root: &[u8]) -> std::io::Result<Reply> {
    let quota = if root == ROOT.as_bytes() {
        match quota_line(s).await {
            Ok(q) => q,
            Err(status) => {
                return Ok(crate::errors::reply(
                    &status,
                    crate::errors::Target::Mailbox,
                ));
            }
        }
    } else {
        None
    };
    Ok(match quota {
        Some(q) => {
            s.untagged(&q);
            Reply::Ok("GETQUOTA completed".into())
        }
        None => Reply::No("[NONEXISTENT] Quota root does not exist".into()),
    })
}

pub(crate) fn set_quota() -> Reply {
    Reply::No("[NOPERM] Quota limits are set by the operator".into())
}
