//! The maildrop of a logged-in session: one mailstore call logs in, takes
//! the lease that locks the maildrop across all replicas and snapshots the
//! INBOX (with each message's content key, so RETR reads object storage
//! directly); one call at QUIT applies UPDATE and releases the lease. The
//! session renews the lease itself, inline, once it outlives a third of the
//! TTL (the connection asks [`Lock::renew_at`] while it waits for a command
//! or streams a body), so a usual session, over in milliseconds, costs no
//! renewal call and no task or timer of its own.

use std::time::Duration;

use mailfleet_proto::v1 as pb;
use mailfleet_runtime::grpc::MailStore;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tonic::Status;

/// The lease resource name mailstore gives the maildrop lock (RenewLease
/// needs it).
pub(crate) const RESOURCE: &str = "pop3-maildrop";
/// How long a release may take when the session ends.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a login waits for a maildrop another session holds before
/// `-ERR [IN-USE]`: a client that QUITs and reconnects at once, or two
/// fetchmail runs back to back, find the lock being released (Dovecot too
/// waits a few seconds).
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// First pause between lock attempts while waiting; it doubles up to
/// [`LOCK_RETRY_MAX`]. Short, because a POP3 session usually lasts
/// milliseconds.
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(5);
const LOCK_RETRY_MAX: Duration = Duration::from_millis(250);
/// After a renewal that failed (mailstore unreachable), the next try; the
/// TTL leaves room for a few.
const RENEW_RETRY: Duration = Duration::from_secs(2);

/// One message of the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub uid: u32,
    /// Octets RETR sends (before byte-stuffing): prefix, then the blob.
    pub size: u64,
    /// Content key of the body in object storage.
    pub blob_id: Box<str>,
    /// Octets served before the blob (the Return-Path line mailstore made).
    pub prefix: Box<[u8]>,
    pub deleted: bool,
    pub retrieved: bool,
    /// Already \Seen at login: RETR then needs no flag change at QUIT.
    pub seen: bool,
}

/// The exclusive lock on an account's maildrop.
pub(crate) struct Lock {
    pub lease_id: String,
    /// Set when a renewal found the lease taken over (it expired).
    pub lost: bool,
    ttl_seconds: u32,
    /// When the lease is next renewed; `None` once it was lost.
    renew_at: Option<Instant>,
}

impl Lock {
    fn new(lease_id: String, ttl_seconds: u32) -> Self {
        Self {
            lease_id,
            lost: false,
            ttl_seconds,
            renew_at: Some(Instant::now() + renew_every(ttl_seconds)),
        }
    }

    /// When the session must renew the lease (with [`renew`]).
    pub fn renew_at(&self) -> Option<Instant> {
        self.renew_at
    }

    /// Whether renewing is due now.
    pub fn renew_due(&self) -> bool {
        self.renew_at.is_some_and(|at| at <= Instant::now())
    }
}

/// A third of the TTL: two renewals may fail before the lease runs out.
fn renew_every(ttl_seconds: u32) -> Duration {
    (Duration::from_secs(u64::from(ttl_seconds.max(1))) / 3).max(Duration::from_millis(200))
}

pub(crate) struct Maildrop {
    pub account: String,
    pub uidvalidity: u32,
    pub messages: Vec<Message>,
    pub lock: Lock,
}

/// What a login came to.
pub(crate) enum Opened {
    Locked(Maildrop),
    /// Right password, but another session kept the maildrop.
    InUse,
    /// Wrong password or unknown user.
    Failed,
    /// The login guard refused it unchecked.
    GuardLocked,
}

/// Logs in, locks and snapshots in one call; while another session holds
/// the maildrop, retries the lock alone for up to [`LOCK_WAIT`] (counted in
/// `waits` once per login that waits).
pub(crate) async fn open(
    client: &MailStore,
    request: pb::OpenMaildropRequest,
    waits: &Counter,
) -> Result<Opened, Status> {
    let (holder, ttl_seconds) = (request.holder.clone(), request.ttl_seconds);
    let mut r = client.clone().open_maildrop(request).await?.into_inner();
    if r.locked {
        return Ok(Opened::GuardLocked);
    }
    if !r.ok {
        return Ok(Opened::Failed);
    }
    if r.in_use {
        waits.inc();
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut pause = LOCK_RETRY_FIRST;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Opened::InUse);
            }
            // The last pause ends at the deadline, for one final attempt.
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(LOCK_RETRY_MAX);
            r = client
                .clone()
                .lock_maildrop(pb::LockMaildropRequest {
                    account: r.address.clone(),
                    holder: holder.clone(),
                    ttl_seconds,
                })
                .await?
                .into_inner();
            if !r.in_use {
                break;
            }
        }
    }
    Ok(Opened::Locked(Maildrop {
        uidvalidity: r.uidvalidity,
        messages: r
            .messages
            .into_iter()
            .map(|m| Message {
                uid: m.uid,
                size: m.size,
                blob_id: m.blob_id.into(),
                prefix: m.prefix.into(),
                deleted: false,
                retrieved: false,
                seen: m.seen,
            })
            .collect(),
        lock: Lock::new(r.lease_id, ttl_seconds),
        account: r.address,
    }))
}

/// Extends the lease by its TTL. A lease found taken over (it ran out
/// during a stall longer than the TTL) is marked lost and never renewed
/// again; a failed call is tried again shortly.
pub(crate) async fn renew(client: &MailStore, account: &str, lock: &mut Lock) {
    let request = pb::RenewLeaseRequest {
        account: account.to_owned(),
        resource: RESOURCE.into(),
        lease_id: lock.lease_id.clone(),
        ttl_seconds: lock.ttl_seconds,
    };
    match client.clone().renew_lease(request).await {
        Ok(r) if r.get_ref().renewed => {
            lock.renew_at = Some(Instant::now() + renew_every(lock.ttl_seconds));
        }
        Ok(_) => {
            tracing::warn!("The POP3 maildrop lease expired and was taken over.");
            lock.lost = true;
            lock.renew_at = None;
        }
        Err(status) => {
            tracing::warn!(%status, "Failed to renew the POP3 maildrop lease.");
            lock.renew_at = Some(Instant::now() + RENEW_RETRY);
        }
    }
}

/// Releases the lease and forgets the maildrop without UPDATE: what a
/// dropped connection or a shutdown does (best effort: if this fails the
/// lease runs out).
pub(crate) async fn abandon(client: &MailStore, drop: Maildrop) {
    let request = pb::ReleaseLeaseRequest {
        account: drop.account,
        resource: RESOURCE.into(),
        lease_id: drop.lock.lease_id,
    };
    let mut client = client.clone();
    match tokio::time::timeout(RELEASE_TIMEOUT, client.release_lease(request)).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => tracing::warn!(%status, "Failed to release the POP3 maildrop lease."),
        Err(_) => tracing::warn!("Timed out releasing the POP3 maildrop lease."),
    }
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

/// The UPDATE state (RFC 1939 6) and the release, in one call: expunge the
/// messages marked deleted, flag the retrieved ones \Seen, unlock. Returns
/// how many were expunged. The lease is released however this ends (it
/// runs out when the call fails).
pub(crate) async fn update(client: &MailStore, drop: Maildrop) -> Result<usize, Status> {
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
    let request = pb::CloseMaildropRequest {
        account: drop.account,
        lease_id: drop.lock.lease_id,
        expunge: Some(uid_set(&deleted)),
        seen: Some(uid_set(&seen)),
    };
    let r = client.clone().close_maildrop(request).await?;
    Ok(r.get_ref().expunged as usize)
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
