//! StoreFlags, Expunge and the lease RPCs through mailstore's gRPC API, on
//! port-0 listeners against a fresh Postgres database and a temp-dir blob
//! store (set-up shared in `common/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn uids(ranges: &[(u32, u32)]) -> Option<pb::UidSet> {
    Some(pb::UidSet {
        ranges: ranges
            .iter()
            .map(|&(first, last)| pb::UidRange { first, last })
            .collect(),
    })
}

async fn inbox(ms: &mut MailStore) -> pb::Mailbox {
    ms.list_mailboxes(pb::ListMailboxesRequest {
        account: "alice@example.test".into(),
    })
    .await
    .unwrap()
    .into_inner()
    .mailboxes
    .remove(0)
}

async fn store(
    ms: &mut MailStore,
    set: &[(u32, u32)],
    mode: pb::FlagsMode,
    flags: &[&str],
    unchanged_since: u64,
) -> Result<pb::StoreFlagsResponse, tonic::Status> {
    ms.store_flags(pb::StoreFlagsRequest {
        account: "alice@example.test".into(),
        mailbox: String::new(),
        uids: uids(set),
        mode: mode as i32,
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        unchanged_since,
    })
    .await
    .map(|r| r.into_inner())
}

/// Delivers `data` to alice's INBOX.
async fn deliver_one(ms: &mut MailStore, config: &Config, key: &str, data: &str) {
    let blob_id = put_blob(config, data.as_bytes()).await;
    ms.deliver(pb::DeliverRequest {
        deliveries: vec![pb::Delivery {
            idempotency_key: key.into(),
            recipient: "alice@example.test".into(),
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

/// mailstore running on a fresh database `name`, where alice@example.test
/// has `count` messages ("Subject: m<i>") delivered to her INBOX.
async fn started_with_alice(
    name: &str,
    count: usize,
) -> (ScratchDb, tempfile::TempDir, Config, Running, MailStore) {
    let db = ScratchDb::new(name);
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, "alice@example.test", 0, 0).await;
    for i in 0..count {
        let data = format!("Subject: m{i}\r\n\r\nbody\r\n");
        deliver_one(&mut ms, &config, &format!("job-{i}"), &data).await;
    }
    (db, blob_dir, config, running, ms)
}

async fn expunge(ms: &mut MailStore, set: &[(u32, u32)], only_deleted: bool) -> Vec<u32> {
    ms.expunge(pb::ExpungeRequest {
        account: "alice@example.test".into(),
        mailbox: String::new(),
        uids: uids(set),
        only_deleted,
    })
    .await
    .unwrap()
    .into_inner()
    .expunged
}

async fn used_bytes(admin: &mut Admin) -> u64 {
    admin
        .list_accounts(pb::ListAccountsRequest {
            domain: "example.test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .accounts
        .into_iter()
        .find(|a| a.address == "alice@example.test")
        .unwrap()
        .used_bytes
}

async fn acquire(ms: &mut MailStore, resource: &str, ttl: u32) -> Option<String> {
    let r = ms
        .acquire_lease(pb::AcquireLeaseRequest {
            account: "alice@example.test".into(),
            resource: resource.into(),
            holder: "test".into(),
            ttl_seconds: ttl,
        })
        .await
        .unwrap()
        .into_inner();
    r.acquired.then_some(r.lease_id)
}

async fn renew(ms: &mut MailStore, resource: &str, lease_id: &str) -> bool {
    ms.renew_lease(pb::RenewLeaseRequest {
        account: "alice@example.test".into(),
        resource: resource.into(),
        lease_id: lease_id.into(),
        ttl_seconds: 60,
    })
    .await
    .unwrap()
    .into_inner()
    .renewed
}

async fn release(ms: &mut MailStore, resource: &str, lease_id: &str) {
    ms.release_lease(pb::ReleaseLeaseRequest {
        account: "alice@example.test".into(),
        resource: resource.into(),
        lease_id: lease_id.into(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_expunge_and_leases() {
    let db = ScratchDb::new("mailstore_flags");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut admin = admin_client(&running.grpc_url, ADMIN_TOKEN).unwrap();
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, "alice@example.test", 0, 0).await;

    // Three messages, UIDs 1..=3.
    let mut deliveries = Vec::new();
    for i in 0..3 {
        let data = format!("Subject: m{i}\r\n\r\nbody {i}\r\n");
        let blob_id = put_blob(&config, data.as_bytes()).await;
        deliveries.push(pb::Delivery {
            idempotency_key: format!("job-{i}"),
            recipient: "alice@example.test".into(),
            blob_id,
            blob_size: data.len() as u64,
            return_path: "s@example.org".into(),
            internal_date_ms: 0,
            ..Default::default()
        });
    }
    ms.deliver(pb::DeliverRequest { deliveries }).await.unwrap();
    let before = inbox(&mut ms).await;
    assert_eq!((before.messages, before.unseen), (3, 3));
    assert_eq!(used_bytes(&mut admin).await, before.size);

    // ADD \Seen (any case) to UID 1: a new modseq, one fewer unseen.
    let r = store(&mut ms, &[(1, 1)], pb::FlagsMode::FlagsAdd, &["\\SEEN"], 0)
        .await
        .unwrap();
    assert_eq!(r.updated.len(), 1);
    assert_eq!(r.updated[0].uid, 1);
    assert_eq!(r.updated[0].flags, ["\\Seen"]);
    assert!(r.updated[0].modseq > before.highestmodseq);
    assert_eq!(r.highestmodseq, r.updated[0].modseq);
    let seen_modseq = r.highestmodseq;
    assert_eq!(inbox(&mut ms).await.unseen, 2);
    // Adding it again changes nothing and spends no modseq.
    let r = store(&mut ms, &[(1, 1)], pb::FlagsMode::FlagsAdd, &["\\Seen"], 0)
        .await
        .unwrap();
    assert!(r.updated.is_empty());
    assert_eq!(r.highestmodseq, seen_modseq);

    // UNCHANGEDSINCE older than UID 1's modseq: UID 1 is reported, 2 and 3 change.
    let r = store(
        &mut ms,
        &[(1, 0)],
        pb::FlagsMode::FlagsAdd,
        &["$Work"],
        seen_modseq - 1,
    )
    .await
    .unwrap();
    assert_eq!(r.modified, [1]);
    assert_eq!(r.updated.iter().map(|u| u.uid).collect::<Vec<_>>(), [2, 3]);
    // REPLACE over 1:* with \Deleted: UID 1 loses \Seen, so unseen is 3 again.
    let r = store(
        &mut ms,
        &[(1, 0)],
        pb::FlagsMode::FlagsReplace,
        &["\\Deleted"],
        0,
    )
    .await
    .unwrap();
    assert_eq!(r.updated.len(), 3);
    assert!(r.updated.iter().all(|u| u.flags == ["\\Deleted"]));
    assert_eq!(inbox(&mut ms).await.unseen, 3);
    // REMOVE \Deleted from UID 3 and mark it seen.
    store(
        &mut ms,
        &[(3, 3)],
        pb::FlagsMode::FlagsRemove,
        &["\\deleted"],
        0,
    )
    .await
    .unwrap();
    let seen3 = store(&mut ms, &[(3, 3)], pb::FlagsMode::FlagsAdd, &["\\Seen"], 0)
        .await
        .unwrap()
        .highestmodseq;
    // SEARCH MODSEQ (RFC 7162): modseq at or above; modseqs on request.
    let search = |key: pb::SearchKey, with_modseqs: bool| {
        let mut ms = ms.clone();
        async move {
            ms.search_messages(pb::SearchMessagesRequest {
                account: "alice@example.test".into(),
                mailbox: String::new(),
                key: Some(key),
                with_modseqs,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let modseq_key = |modseq| pb::SearchKey {
        op: pb::SearchOp::SearchModseq as i32,
        modseq,
        ..Default::default()
    };
    let r = search(modseq_key(seen3), true).await;
    assert_eq!((r.uids, r.modseqs), (vec![3], vec![seen3]));
    // The REPLACE above gave all three messages seen3 - 2.
    let r = search(modseq_key(seen3 - 2), false).await;
    assert_eq!(r.uids, [1, 2, 3]);
    assert!(r.modseqs.is_empty());
    let r = search(modseq_key(seen3 + 1), true).await;
    assert!(r.uids.is_empty() && r.modseqs.is_empty());
    let listed = ms
        .list_messages(pb::ListMessagesRequest {
            account: "alice@example.test".into(),
            mailbox: String::new(),
            uid_from: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(listed[2].flags, ["\\Seen"]);
    assert_eq!(listed[0].flags, ["\\Deleted"]);
    let size3 = listed[2].size;

    // Bad input is INVALID_ARGUMENT.
    for (mode, flag) in [
        (pb::FlagsMode::FlagsAdd, "\\Recent"),
        (pb::FlagsMode::FlagsAdd, "two words"),
        (pb::FlagsMode::Unspecified, "\\Seen"),
    ] {
        let e = store(&mut ms, &[(1, 1)], mode, &[flag], 0)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{flag}");
    }

    // Expunge only \Deleted over everything: UIDs 1 and 2 go.
    let before = inbox(&mut ms).await;
    assert_eq!(expunge(&mut ms, &[(1, 0)], true).await, [1, 2]);
    let after = inbox(&mut ms).await;
    assert_eq!((after.messages, after.unseen, after.size), (1, 0, size3));
    assert!(after.highestmodseq > before.highestmodseq);
    assert_eq!(used_bytes(&mut admin).await, size3);
    let listed = ms
        .list_messages(pb::ListMessagesRequest {
            account: "alice@example.test".into(),
            mailbox: String::new(),
            uid_from: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(listed.iter().map(|m| m.uid).collect::<Vec<_>>(), [3]);
    let mut gone = ms
        .get_body(pb::GetBodyRequest {
            account: "alice@example.test".into(),
            mailbox: String::new(),
            uid: 1,
            offset: 0,
            length: 0,
            include_expunged: false,
            body_ref: None,
        })
        .await;
    if let Ok(stream) = &mut gone {
        // The status may arrive as the first stream item instead.
        let first = stream.get_mut().message().await;
        assert!(first.is_err(), "an expunged message has no body");
    } else {
        assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
    }
    // Unless asked for: an IMAP session may not have announced the expunge.
    let mut kept = ms
        .get_body(pb::GetBodyRequest {
            account: "alice@example.test".into(),
            mailbox: String::new(),
            uid: 1,
            offset: 0,
            length: 0,
            include_expunged: true,
            body_ref: None,
        })
        .await
        .unwrap()
        .into_inner();
    let first = kept.message().await.unwrap().unwrap();
    assert!(!first.data.is_empty(), "an expunged message keeps its body");
    // Flags of expunged messages cannot be changed; expunging again is a no-op.
    let r = store(&mut ms, &[(1, 2)], pb::FlagsMode::FlagsAdd, &["\\Seen"], 0)
        .await
        .unwrap();
    assert!(r.updated.is_empty());
    assert!(expunge(&mut ms, &[(1, 2)], false).await.is_empty());
    // Without only_deleted, UID 3 goes too; the counters are back to zero.
    assert_eq!(expunge(&mut ms, &[(3, 3)], false).await, [3]);
    let empty = inbox(&mut ms).await;
    assert_eq!((empty.messages, empty.unseen, empty.size), (0, 0, 0));
    assert_eq!(used_bytes(&mut admin).await, 0);

    // Leases: one holder at a time; renew and release only by the holder.
    let a = acquire(&mut ms, "pop3-maildrop", 60).await.unwrap();
    assert!(acquire(&mut ms, "pop3-maildrop", 60).await.is_none());
    assert!(acquire(&mut ms, "other", 60).await.is_some());
    assert!(renew(&mut ms, "pop3-maildrop", &a).await);
    assert!(!renew(&mut ms, "pop3-maildrop", "not-mine").await);
    release(&mut ms, "pop3-maildrop", "not-mine").await;
    assert!(acquire(&mut ms, "pop3-maildrop", 60).await.is_none());
    release(&mut ms, "pop3-maildrop", &a).await;
    let b = acquire(&mut ms, "pop3-maildrop", 1).await.unwrap();
    assert!(!renew(&mut ms, "pop3-maildrop", &a).await);
    // A lease that runs out is taken over, and its old holder cannot renew.
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        if let Some(c) = acquire(&mut ms, "pop3-maildrop", 60).await {
            break c;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!renew(&mut ms, "pop3-maildrop", &b).await);
    assert!(renew(&mut ms, "pop3-maildrop", &c).await);
    // Concurrent acquires: exactly one wins.
    release(&mut ms, "pop3-maildrop", &c).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut ms = ms.clone();
        tasks.push(tokio::spawn(async move {
            acquire(&mut ms, "pop3-maildrop", 60).await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
    let e = ms
        .acquire_lease(pb::AcquireLeaseRequest {
            account: "nobody@example.test".into(),
            resource: "pop3-maildrop".into(),
            holder: String::new(),
            ttl_seconds: 60,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    stop(running).await;
}

/// More concurrent StoreFlags calls than pooled connections all succeed: a
/// call inside its transaction never waits for a second connection (that
/// deadlocked the pool under the IMAP bench until the acquire timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_beyond_the_pool_size() {
    let db = ScratchDb::new("mailstore_flagpool");
    let blob_dir = tempfile::tempdir().unwrap();
    let mut config = config(&db, blob_dir.path());
    config.database_max_connections = 2;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, "alice@example.test", 0, 0).await;
    deliver_one(&mut ms, &config, "job-1", "Subject: m\r\n\r\nbody\r\n").await;

    let calls = (0..24).map(|i| {
        let mut ms = ms.clone();
        async move {
            let mode = if i % 2 == 0 {
                pb::FlagsMode::FlagsAdd
            } else {
                pb::FlagsMode::FlagsRemove
            };
            store(&mut ms, &[(1, 1)], mode, &["\\Seen"], 0).await
        }
    });
    // A pool deadlock shows as UNAVAILABLE after the acquire timeout.
    for result in futures::future::join_all(calls).await {
        result.expect("every store succeeds");
    }
    stop(running).await;
}

/// Concurrent StoreFlags calls on one mailbox lose no update (a STORE reads
/// without a lock and writes only if nothing changed meanwhile, else reads
/// again or falls back to the row lock): each call adds its own keyword to
/// UID 1 and every keyword is there at the end; each call that changed
/// something got its own modseq; \Seen toggled on UID 2 and set on 1:* leave
/// the unseen count right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_lose_no_update() {
    let (_db, _blob_dir, _config, running, mut ms) =
        started_with_alice("mailstore_flagrace", 3).await;

    const CALLS: usize = 40;
    let calls = (0..CALLS).map(|i| {
        let mut ms = ms.clone();
        async move {
            let keyword = format!("k{i}");
            let added = store(&mut ms, &[(1, 1)], pb::FlagsMode::FlagsAdd, &[&keyword], 0)
                .await
                .expect("store succeeds");
            let mode = if i % 2 == 0 {
                pb::FlagsMode::FlagsAdd
            } else {
                pb::FlagsMode::FlagsRemove
            };
            store(&mut ms, &[(2, 2)], mode, &["\\Seen"], 0)
                .await
                .expect("store succeeds");
            added
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut modseqs: Vec<u64> = results.iter().map(|r| r.updated[0].modseq).collect();
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), CALLS, "each change has its own modseq");

    // The flags as stored: a no-op STORE returns nothing, so read them by
    // adding a flag every message lacks.
    let all = store(&mut ms, &[(1, 0)], pb::FlagsMode::FlagsAdd, &["\\Seen"], 0)
        .await
        .unwrap();
    let one = all
        .updated
        .iter()
        .find(|u| u.uid == 1)
        .expect("UID 1 changed");
    for i in 0..CALLS {
        assert!(
            one.flags.contains(&format!("k{i}")),
            "keyword k{i} was lost: {:?}",
            one.flags
        );
    }
    assert_eq!(inbox(&mut ms).await.unseen, 0, "every message is \\Seen");
    store(
        &mut ms,
        &[(1, 0)],
        pb::FlagsMode::FlagsRemove,
        &["\\Seen"],
        0,
    )
    .await
    .unwrap();
    assert_eq!(inbox(&mut ms).await.unseen, 3);
    stop(running).await;
}

/// Slack in the statement counts below for transactions Postgres commits in
/// the scratch database by itself meanwhile (autovacuum and analyze workers
/// count in `xact_commit` too): a few under load. Each counted operation used
/// to cost two or more statements, so the counts still tell the paths apart.
const OWN_TRANSACTIONS: i64 = 10;

/// Postgres statements (each its own transaction) of one mailstore run
/// that makes `stores` STOREs, each changing \Seen of UID 1 and 2.
async fn statements_of_a_run(db: &str, config: &Config, stores: usize) -> i64 {
    let before = committed_after_exit(db).await;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    for i in 0..stores {
        let mode = if i % 2 == 0 {
            pb::FlagsMode::FlagsAdd
        } else {
            pb::FlagsMode::FlagsRemove
        };
        let r = store(&mut ms, &[(1, 2)], mode, &["\\Seen"], 0)
            .await
            .unwrap();
        assert_eq!(r.updated.len(), 2, "STORE {i} changed both messages");
    }
    stop(running).await;
    committed_after_exit(db).await - before
}

/// A STORE costs mailstore one Postgres statement: the flags are read and
/// written by one UPDATE (it was a read and then a write), and the change
/// event needs no read of the mailbox (it was one per write). Counted as
/// the transactions of two runs that differ only in the number of STOREs,
/// so what a start-up costs cancels out; the health check's ping every two
/// seconds is what the slack allows for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_one_postgres_statement() {
    const STORES: usize = 30;
    let (db, _blob_dir, config, running, _ms) = started_with_alice("mailstore_flagcount", 2).await;
    stop(running).await;

    let few = statements_of_a_run(&db.name, &config, STORES).await;
    let many = statements_of_a_run(&db.name, &config, 2 * STORES).await;
    let per_store = many - few;
    assert!(
        per_store <= STORES as i64 + OWN_TRANSACTIONS,
        "{STORES} more STOREs cost {per_store} more Postgres statements"
    );
}

/// Postgres statements of one mailstore run that fetches the body of UID 1
/// `fetches` times as an IMAP FETCH does (FetchMessages, then GetBody with
/// what it returned), checking the bytes each time.
async fn statements_of_body_fetches(db: &str, config: &Config, fetches: usize, want: &[u8]) -> i64 {
    let before = committed_after_exit(db).await;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    for _ in 0..fetches {
        let m = ms
            .fetch_messages(pb::FetchMessagesRequest {
                account: "alice@example.test".into(),
                mailbox: "INBOX".into(),
                uids: uids(&[(1, 1)]),
                with_meta: false,
                with_header: false,
            })
            .await
            .unwrap()
            .into_inner()
            .messages
            .remove(0);
        let mut stream = ms
            .get_body(pb::GetBodyRequest {
                account: "alice@example.test".into(),
                mailbox: "INBOX".into(),
                uid: 1,
                offset: 0,
                length: 0,
                include_expunged: true,
                body_ref: m.body_ref,
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            got.extend_from_slice(&chunk.data);
        }
        assert_eq!(got, want, "the served message, Return-Path line first");
    }
    stop(running).await;
    committed_after_exit(db).await - before
}

/// A FETCH of a body costs one Postgres statement: GetBody serves what
/// FetchMessages read (its body_ref) without looking the message up again
/// (it was one statement more per body). Counted as in
/// `a_store_is_one_postgres_statement`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_fetch_is_one_postgres_statement() {
    const FETCHES: usize = 30;
    let (db, _blob_dir, config, running, mut ms) =
        started_with_alice("mailstore_bodycount", 0).await;
    let data = "Subject: m\r\n\r\nbody\r\n";
    deliver_one(&mut ms, &config, "job-1", data).await;
    stop(running).await;
    let want = format!("Return-Path: <s@example.org>\r\n{data}").into_bytes();

    let few = statements_of_body_fetches(&db.name, &config, FETCHES, &want).await;
    let many = statements_of_body_fetches(&db.name, &config, 2 * FETCHES, &want).await;
    let per_fetch = many - few;
    assert!(
        per_fetch <= FETCHES as i64 + OWN_TRANSACTIONS,
        "{FETCHES} more body FETCHes cost {per_fetch} more Postgres statements"
    );
}

/// Postgres statements of one mailstore run that APPENDs `appends`
/// messages to alice's INBOX as IMAP APPEND does (AppendMessageStream).
async fn statements_of_appends(db: &str, config: &Config, appends: usize) -> i64 {
    let before = committed_after_exit(db).await;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    for i in 0..appends {
        let data = format!("Subject: a{i}\r\nMessage-ID: <a{i}.{appends}@x>\r\n\r\nbody {i}\r\n");
        let start = pb::AppendStart {
            account: "alice@example.test".into(),
            mailbox: "INBOX".into(),
            size: data.len() as u64,
            ..Default::default()
        };
        let r = append_stream(&mut ms, start, vec![data.into_bytes()])
            .await
            .unwrap();
        assert!(r.uid > 0);
    }
    stop(running).await;
    committed_after_exit(db).await - before
}

/// An APPEND costs one Postgres statement once mailstore has seen its
/// mailbox: the mailbox's id is kept, and the insert checks it (it was a
/// look-up, the insert and the event publisher's read). Counted as in
/// `a_store_is_one_postgres_statement`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_is_one_postgres_statement() {
    const APPENDS: usize = 20;
    let db = ScratchDb::new("mailstore_appendcount");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    add_account(&running, "alice@example.test", 0, 0).await;
    stop(running).await;

    let few = statements_of_appends(&db.name, &config, APPENDS).await;
    let many = statements_of_appends(&db.name, &config, 2 * APPENDS).await;
    let per_append = many - few;
    assert!(
        per_append <= APPENDS as i64 + OWN_TRANSACTIONS,
        "{APPENDS} more APPENDs cost {per_append} more Postgres statements"
    );
}

async fn fetch_flags(ms: &mut MailStore) -> Vec<(u32, Vec<String>, u64)> {
    ms.fetch_messages(pb::FetchMessagesRequest {
        account: "alice@example.test".into(),
        mailbox: "INBOX".into(),
        uids: uids(&[(1, 0)]),
        with_meta: false,
        with_header: false,
    })
    .await
    .unwrap()
    .into_inner()
    .messages
    .into_iter()
    .map(|m| (m.uid, m.flags, m.modseq))
    .collect()
}

/// STORE and EXPUNGE commit without waiting for their WAL flush; what they
/// wrote is still there for every other reader as soon as they answered:
/// another mailstore replica (its own pool and caches, as another IMAP
/// session may be served by) reads the new flags, modseqs and counters, and
/// no longer lists the expunged message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_expunges_are_seen_by_another_replica_at_once() {
    let db = ScratchDb::new("mailstore_flagreplica");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let one = start(config.clone()).await;
    let other = start(config.clone()).await;
    let mut writer = mailstore_client(&one.grpc_url, SERVICE_TOKEN).unwrap();
    let mut reader = mailstore_client(&other.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&one, "alice@example.test", 0, 0).await;
    for i in 0..3 {
        let data = format!("Subject: m{i}\r\n\r\nbody {i}\r\n");
        deliver_one(&mut writer, &config, &format!("job-{i}"), &data).await;
    }
    // Both replicas have read the mailbox (and keep its listing).
    assert_eq!(fetch_flags(&mut reader).await.len(), 3);
    assert_eq!(fetch_flags(&mut writer).await.len(), 3);
    for round in 0..20 {
        let mode = if round % 2 == 0 {
            pb::FlagsMode::FlagsAdd
        } else {
            pb::FlagsMode::FlagsRemove
        };
        let r = store(&mut writer, &[(1, 2)], mode, &["\\Seen", "$Label"], 0)
            .await
            .unwrap();
        assert_eq!(r.updated.len(), 2, "round {round}");
        let seen = fetch_flags(&mut reader).await;
        for u in &r.updated {
            let got = seen.iter().find(|m| m.0 == u.uid).unwrap();
            assert_eq!((&got.1, got.2), (&u.flags, u.modseq), "round {round}");
        }
        let status = inbox(&mut reader).await;
        assert_eq!(status.highestmodseq, r.highestmodseq, "round {round}");
        let unseen = if round % 2 == 0 { 1 } else { 3 };
        assert_eq!(status.unseen, unseen, "round {round}");
    }
    store(
        &mut writer,
        &[(3, 3)],
        pb::FlagsMode::FlagsAdd,
        &["\\Deleted"],
        0,
    )
    .await
    .unwrap();
    assert_eq!(expunge(&mut writer, &[(1, 0)], true).await, [3]);
    let left: Vec<u32> = fetch_flags(&mut reader).await.iter().map(|m| m.0).collect();
    assert_eq!(left, [1, 2]);
    assert_eq!(inbox(&mut reader).await.messages, 2);
    stop(one).await;
    stop(other).await;
}

/// Postgres statements of one mailstore run that makes `calls` LIST-shaped
/// ListMailboxes calls and as many STATUS-shaped SelectMailbox calls (the
/// frontend's `Session::mailbox_status`: no listing, no claim) on an INBOX
/// holding messages no session has taken as \Recent.
async fn statements_of_lists_and_statuses(db: &str, config: &Config, calls: usize) -> i64 {
    let before = committed_after_exit(db).await;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    for _ in 0..calls {
        let list = ms
            .list_mailboxes(pb::ListMailboxesRequest {
                account: "alice@example.test".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.subscribed_only, ["Gone"]);
        let status = ms
            .select_mailbox(pb::SelectMailboxRequest {
                account: "alice@example.test".into(),
                mailbox: "INBOX".into(),
                changed_since: u64::MAX >> 1,
                uid_from: u32::MAX,
                limit: 1,
                claim_recent: false,
            })
            .await
            .unwrap()
            .into_inner();
        let mailbox = status.mailbox.unwrap();
        assert_eq!((mailbox.messages, mailbox.recent), (2, 2));
        assert!(status.messages.is_empty());
    }
    stop(running).await;
    committed_after_exit(db).await - before
}

/// LIST costs one Postgres statement (the mailboxes and the subscribed
/// names without one were two), and so does STATUS when messages arrived
/// since the last SELECT (the unclaimed \Recent count was a general path of
/// four). Counted as in `a_store_is_one_postgres_statement`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_status_are_one_postgres_statement_each() {
    const CALLS: usize = 20;
    let (db, _blob_dir, config, running, mut ms) =
        started_with_alice("mailstore_liststatuscount", 2).await;
    ms.subscribe_mailbox(pb::SubscribeMailboxRequest {
        account: "alice@example.test".into(),
        name: "Gone".into(),
        subscribed: true,
    })
    .await
    .unwrap();
    stop(running).await;

    let few = statements_of_lists_and_statuses(&db.name, &config, CALLS).await;
    let many = statements_of_lists_and_statuses(&db.name, &config, 2 * CALLS).await;
    let per_pair = many - few;
    assert!(
        per_pair <= 2 * CALLS as i64 + OWN_TRANSACTIONS,
        "{CALLS} more LIST and STATUS pairs cost {per_pair} more Postgres statements"
    );
}
