//! The maildrop of a logged-in session: the lease that locks it across all
//! replicas (renewed in the background while the session lives), the INBOX
//! snapshot taken at login, and the UPDATE state's effects in mailstore.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailfleet_proto::v1 as pb;
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::grpc::MailStore;
use prometheus_client::metrics::counter::Counter;
use tonic::Status;

/// The lease resource name shared by every pop3-frontend replica.
pub(crate) const RESOURCE: &str = "pop3-maildrop";
/// Messages asked for per ListMessages call while snapshotting (mailstore
/// honours limits up to 10,000, so a shorter page is the last one).
const PAGE: u32 = 1000;
/// How long a release may take when the session ends.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a login waits for a maildrop another session holds before
/// `-ERR [IN-USE]`: a client that QUITs and reconnects at once, or two
/// fetchmail runs back to back, find the lock being released (Dovecot too
/// waits a few seconds).
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// First pause between lease attempts while waiting; it doubles up to
/// [`LOCK_RETRY_MAX`].
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(25);
const LOCK_RETRY_MAX: Duration = Duration::from_millis(400);

/// One message of the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub uid: u32,
    /// Octets RETR sends (before byte-stuffing).
    pub size: u64,
    pub deleted: bool,
    pub retrieved: bool,
    /// Already \Seen at login: RETR then needs no flag change at QUIT.
    pub seen: bool,
}

/// The exclusive lock on an account's maildrop.
pub(crate) struct Lock {
    pub lease_id: String,
    /// Set when a renewal found the lease taken over (it expired).
    pub lost: Arc<AtomicBool>,
    renewer: CancellationToken,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // However the session ends, the renewals stop; the lease then runs
        // out by itself if it was not released.
        self.renewer.cancel();
    }
}

pub(crate) struct Maildrop {
    pub account: String,
    pub uidvalidity: u32,
    pub messages: Vec<Message>,
    pub lock: Lock,
}

pub(crate) enum Acquire {
    Locked(Lock),
    InUse,
}

/// Takes the maildrop lease, waiting up to [`LOCK_WAIT`] while another
/// session holds it (counted in `waits` once per login that waits), and
/// starts renewing it every third of its TTL.
pub(crate) async fn lock(
    client: &MailStore,
    account: &str,
    holder: &str,
    ttl: Duration,
    waits: &Counter,
) -> Result<Acquire, Status> {
    let ttl_seconds = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1);
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    let mut pause = LOCK_RETRY_FIRST;
    let mut waited = false;
    let r = loop {
        let r = client
            .clone()
            .acquire_lease(pb::AcquireLeaseRequest {
                account: account.to_owned(),
                resource: RESOURCE.into(),
                holder: holder.to_owned(),
                ttl_seconds,
            })
            .await?
            .into_inner();
        if r.acquired {
            break r;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Acquire::InUse);
        }
        if !waited {
            waits.inc();
            waited = true;
        }
        // The last pause ends at the deadline, for one final attempt.
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(LOCK_RETRY_MAX);
    };
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = CancellationToken::new();
    tokio::spawn(renew(
        client.clone(),
        account.to_owned(),
        r.lease_id.clone(),
        ttl_seconds,
        lost.clone(),
        renewer.clone(),
    ));
    Ok(Acquire::Locked(Lock {
        lease_id: r.lease_id,
        lost,
        renewer,
    }))
}

async fn renew(
    mut client: MailStore,
    account: String,
    lease_id: String,
    ttl_seconds: u32,
    lost: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let every = Duration::from_secs(u64::from(ttl_seconds)) / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every.max(Duration::from_millis(200))) => {}
        }
        let request = pb::RenewLeaseRequest {
            account: account.clone(),
            resource: RESOURCE.into(),
            lease_id: lease_id.clone(),
            ttl_seconds,
        };
        match client.renew_lease(request).await {
            Ok(r) if r.get_ref().renewed => {}
            Ok(_) => {
                tracing::warn!("The POP3 maildrop lease expired and was taken over.");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            // Retried at the next tick; the TTL leaves room for two misses.
            Err(status) => tracing::warn!(%status, "Failed to renew the POP3 maildrop lease."),
        }
    }
}

/// Releases the lease (best effort: if this fails the lease runs out).
pub(crate) async fn unlock(client: &MailStore, account: &str, lock: Lock) {
    let request = pb::ReleaseLeaseRequest {
        account: account.to_owned(),
        resource: RESOURCE.into(),
        lease_id: lock.lease_id.clone(),
    };
    drop(lock);
    let mut client = client.clone();
    match tokio::time::timeout(RELEASE_TIMEOUT, client.release_lease(request)).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => tracing::warn!(%status, "Failed to release the POP3 maildrop lease."),
        Err(_) => tracing::warn!("Timed out releasing the POP3 maildrop lease."),
    }
}

/// Lists the whole INBOX page by page: the snapshot that fixes message
/// numbers for the session.
pub(crate) async fn snapshot(
    client: &MailStore,
    account: &str,
) -> Result<(u32, Vec<Message>), Status> {
    let mut client = client.clone();
    let mut messages = Vec::new();
    let mut uidvalidity;
    let mut from = 1u32;
    loop {
        let page = client
            .list_messages(pb::ListMessagesRequest {
                account: account.to_owned(),
                mailbox: String::new(),
                uid_from: from,
                limit: PAGE,
            })
            .await?
            .into_inner();
        uidvalidity = page.uidvalidity;
        let full = page.messages.len() >= PAGE as usize;
        let Some(last) = page.messages.last().map(|m| m.uid) else {
            break;
        };
        messages.extend(page.messages.into_iter().map(|m| Message {
            uid: m.uid,
            size: m.size,
            deleted: false,
            retrieved: false,
            seen: m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")),
        }));
        // A short page is the last: most logins cost one call.
        match last.checked_add(1) {
            Some(next) if full && next > from => from = next,
            _ => break,
        }
    }
    Ok((uidvalidity, messages))
}

/// Sorted UIDs as ranges of consecutive values only, so a range never
/// covers a message outside the snapshot.
pub(crate) fn uid_set(uids: &[u32]) -> pb::UidSet {
    let mut ranges: Vec<pb::UidRange> = Vec::new();
    for &uid in uids {
        match ranges.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(uid) => r.last = uid,
            _ => ranges.push(pb::UidRange {
                first: uid,
                last: uid,
            }),
        }
    }
    pb::UidSet { ranges }
}

/// The UPDATE state (RFC 1939 6): expunge the messages marked deleted, then
/// flag the retrieved ones \Seen. Returns how many were expunged.
pub(crate) async fn update(client: &MailStore, drop: &Maildrop) -> Result<usize, Status> {
    let mut client = client.clone();
    let deleted: Vec<u32> = drop
        .messages
        .iter()
        .filter(|m| m.deleted)
        .map(|m| m.uid)
        .collect();
    let seen: Vec<u32> = drop
        .messages
        .iter()
        .filter(|m| m.retrieved && !m.deleted && !m.seen)
        .map(|m| m.uid)
        .collect();
    let mut expunged = 0;
    if !deleted.is_empty() {
        let r = client
            .expunge(pb::ExpungeRequest {
                account: drop.account.clone(),
                mailbox: String::new(),
                uids: Some(uid_set(&deleted)),
                only_deleted: false,
            })
            .await?;
        expunged = r.get_ref().expunged.len();
    }
    if !seen.is_empty() {
        let request = pb::StoreFlagsRequest {
            account: drop.account.clone(),
            mailbox: String::new(),
            uids: Some(uid_set(&seen)),
            mode: pb::FlagsMode::FlagsAdd as i32,
            flags: vec!["\\Seen".into()],
            unchanged_since: 0,
        };
        // \Seen is a courtesy to IMAP clients; its loss must not fail QUIT.
        if let Err(status) = client.store_flags(request).await {
            tracing::warn!(%status, "Failed to flag retrieved messages \\Seen.");
        }
    }
    Ok(expunged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_cover_only_listed_uids() {
        let set = uid_set(&[1, 2, 3, 5, 7, 8]);
        let pairs: Vec<(u32, u32)> = set.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(pairs, [(1, 3), (5, 5), (7, 8)]);
        assert!(uid_set(&[]).ranges.is_empty());
    }
}
