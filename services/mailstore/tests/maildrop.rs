//! OpenMaildrop, LockMaildrop and CloseMaildrop (the POP3 maildrop): the
//! snapshot of both login paths, the lock, and a login that takes the lock
//! over from a session ending at that moment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const ALICE: &str = "alice@example.test";

async fn deliver(ms: &mut MailStore, config: &Config, key: &str, data: &str) {
    let blob_id = put_blob(config, data.as_bytes()).await;
    ms.deliver(pb::DeliverRequest {
        deliveries: vec![pb::Delivery {
            idempotency_key: key.into(),
            recipient: ALICE.into(),
            blob_id,
            blob_size: data.len() as u64,
            return_path: "s@example.org".into(),
            internal_date_ms: 0,
            ..Default::default()
        }],
    })
    .await
    .unwrap();
}

async fn open(ms: &mut MailStore, password: &str) -> pb::Maildrop {
    ms.open_maildrop(pb::OpenMaildropRequest {
        username: ALICE.into(),
        password: password.into(),
        remote_ip: "192.0.2.1".into(),
        holder: "test".into(),
        ttl_seconds: 60,
    })
    .await
    .unwrap()
    .into_inner()
}

/// LockMaildrop of alice's maildrop (a login already verified elsewhere).
async fn lock(ms: &mut MailStore) -> pb::Maildrop {
    ms.lock_maildrop(pb::LockMaildropRequest {
        account: ALICE.into(),
        holder: "test".into(),
        ttl_seconds: 60,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn close(ms: &mut MailStore, lease_id: &str) {
    ms.close_maildrop(pb::CloseMaildropRequest {
        account: ALICE.into(),
        lease_id: lease_id.into(),
        expunge: None,
        seen: None,
    })
    .await
    .unwrap();
}

fn uids(m: &pb::Maildrop) -> Vec<u32> {
    m.messages.iter().map(|m| m.uid).collect()
}

/// The first login (argon2) and the next ones (credential cache, one
/// statement) give the same snapshot; the lock holds until CloseMaildrop.
#[tokio::test]
async fn both_login_paths_lock_and_snapshot_alike() {
    let db = ScratchDb::new("mailstore_maildrop");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, ALICE, 0, 0).await;
    let bodies = ["Subject: a\r\n\r\none\r\n", "Subject: b\r\n\r\ntwo two\r\n"];
    for (i, body) in bodies.iter().enumerate() {
        deliver(&mut ms, &config, &format!("job-{i}"), body).await;
    }

    let wrong = open(&mut ms, "wrong").await;
    assert!(!wrong.ok && wrong.lease_id.is_empty());

    let first = open(&mut ms, "pw").await;
    assert!(first.ok && !first.in_use && !first.lease_id.is_empty());
    assert_eq!(uids(&first), [1, 2]);
    let prefix = b"Return-Path: <s@example.org>\r\n";
    for (m, body) in first.messages.iter().zip(bodies) {
        assert_eq!(m.prefix, prefix);
        assert_eq!(m.size as usize, prefix.len() + body.len());
        assert!(!m.seen);
    }
    assert!(
        open(&mut ms, "pw").await.in_use,
        "a second login while held"
    );
    close(&mut ms, &first.lease_id).await;

    // Cached now: the same answer from the one-statement path.
    let second = open(&mut ms, "pw").await;
    assert!(second.ok && !second.in_use);
    assert_eq!(
        (second.uidvalidity, &second.messages),
        (first.uidvalidity, &first.messages)
    );
    assert_ne!(second.lease_id, first.lease_id);
    assert!(open(&mut ms, "wrong").await.lease_id.is_empty());
    let locked = lock(&mut ms).await;
    assert!(locked.in_use);
    close(&mut ms, &second.lease_id).await;
    // A release keeps the lease row, marked run out, for the next login to
    // take in place (an UPDATE; an INSERT and a DELETE per session left dead
    // rows and index entries for vacuum).
    let mut pg = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let (count, released): (i64, Option<bool>) =
        sqlx::query_as("SELECT count(*), bool_and(expires_at <= now()) FROM leases")
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!((count, released), (1, Some(true)));
    let locked = lock(&mut ms).await;
    assert!(!locked.in_use && !locked.lease_id.is_empty());
    assert_eq!(locked.messages, first.messages);
    // The last lease is in the account's one lease row, taken in place.
    let (count, lease_id): (i64, String) =
        sqlx::query_as("SELECT count(*), max(lease_id) FROM leases")
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!((count, lease_id), (1, locked.lease_id));
    stop(running).await;
}

/// A login whose lease statement waits for the previous holder's release
/// must not list what that holder expunged just before releasing: the
/// snapshot is read after the lease is won, not when the login's statement
/// began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_waiting_for_a_release_sees_the_expunges_before_it() {
    let db = ScratchDb::new("mailstore_maildrop_race");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, ALICE, 0, 0).await;
    deliver(&mut ms, &config, "job-1", "Subject: a\r\n\r\none\r\n").await;
    deliver(&mut ms, &config, "job-2", "Subject: b\r\n\r\ntwo\r\n").await;
    // Warm the credential cache so the waiting login is the one-statement
    // path (the uncached one runs the same function).
    let held = open(&mut ms, "pw").await;
    assert!(held.ok);

    // The holder stalled past its lease's end (a login waits only for a
    // lease that has run out: one that has not is refused at once and
    // retried by the frontend), and its release is in progress: the lease
    // row locked, not yet marked released.
    let mut holder = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("UPDATE leases SET expires_at = now() - interval '1 second' WHERE lease_id = $1")
        .bind(&held.lease_id)
        .execute(&mut holder)
        .await
        .unwrap();
    let mut release = holder.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM leases WHERE lease_id = $1 FOR UPDATE")
        .bind(&held.lease_id)
        .execute(&mut *release)
        .await
        .unwrap();
    let mut waiter = ms.clone();
    let login = tokio::spawn(async move { open(&mut waiter, "pw").await });
    // Ordered marker: the login's statement is waiting for that row lock.
    let mut watch = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the login never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The holder's UPDATE: message 1 expunged and committed, then the
    // lease released.
    let expunged = ms
        .expunge(pb::ExpungeRequest {
            account: ALICE.into(),
            mailbox: String::new(),
            uids: Some(pb::UidSet {
                ranges: vec![pb::UidRange { first: 1, last: 1 }],
            }),
            only_deleted: false,
        })
        .await
        .unwrap()
        .into_inner()
        .expunged;
    assert_eq!(expunged, [1]);
    sqlx::query("UPDATE leases SET expires_at = '-infinity' WHERE lease_id = $1")
        .bind(&held.lease_id)
        .execute(&mut *release)
        .await
        .unwrap();
    release.commit().await.unwrap();

    let next = login.await.unwrap();
    assert!(next.ok && !next.in_use, "{next:?}");
    assert_eq!(uids(&next), [2], "the snapshot lists an expunged message");
    close(&mut ms, &next.lease_id).await;
    stop(running).await;
}
