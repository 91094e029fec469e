//! mailstore through its gRPC API: the service runs in-process on port-0
//! listeners against a fresh Postgres database (created by `run`, dropped
//! here) and a temp-dir blob store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mailfleet_proto::reason;

async fn body(
    ms: &mut MailStore,
    account: &str,
    uid: u32,
    offset: u64,
    length: u64,
) -> (Vec<u8>, u64) {
    let mut stream = ms
        .get_body(pb::GetBodyRequest {
            account: account.into(),
            mailbox: String::new(),
            uid,
            offset,
            length,
            include_expunged: false,
            body_ref: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    let mut total = None;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(chunk.data.len() <= 256 * 1024);
        if total.is_none() {
            total = Some(chunk.total_size);
        }
        out.extend_from_slice(&chunk.data);
    }
    (out, total.unwrap())
}

/// Expunges every message flagged \Deleted in one of `account`'s mailboxes.
async fn expunge_deleted(ms: &mut MailStore, account: &str, mailbox: &str) {
    ms.expunge(pb::ExpungeRequest {
        account: account.into(),
        mailbox: mailbox.into(),
        uids: Some(pb::UidSet {
            ranges: vec![pb::UidRange { first: 1, last: 0 }],
        }),
        only_deleted: true,
    })
    .await
    .unwrap();
}

async fn resolve(ms: &mut MailStore, address: &str) -> (pb::RecipientStatus, Vec<String>) {
    let r = ms
        .resolve_recipient(pb::ResolveRecipientRequest {
            address: address.into(),
            size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    (r.status(), r.accounts)
}

async fn admin_setup(admin: &mut Admin) {
    admin
        .add_domain(pb::AddDomainRequest {
            name: "Example.TEST".into(),
        })
        .await
        .unwrap();
    let dup = admin
        .add_domain(pb::AddDomainRequest {
            name: "example.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    let bad = admin
        .add_domain(pb::AddDomainRequest {
            name: "bad domain".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let domains = admin
        .list_domains(pb::ListDomainsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        domains.domains,
        vec![pb::Domain {
            name: "example.test".into()
        }]
    );

    for (addr, quota) in [
        ("Alice@example.test", 0),
        ("bob@example.test", 0),
        ("carol@example.test", 10),
    ] {
        let a = admin
            .add_account(pb::AddAccountRequest {
                address: addr.into(),
                password: format!("pw-{}", addr.to_lowercase()),
                quota_bytes: quota,
                quota_messages: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.address, addr.to_lowercase());
    }
    let e = admin
        .add_account(pb::AddAccountRequest {
            address: "alice@example.test".into(),
            password: "x".into(),
            quota_bytes: 0,
            quota_messages: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    let e = admin
        .add_account(pb::AddAccountRequest {
            address: "dave@elsewhere.test".into(),
            password: "x".into(),
            quota_bytes: 0,
            quota_messages: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = admin
        .add_account(pb::AddAccountRequest {
            address: "not an address".into(),
            password: "x".into(),
            quota_bytes: 0,
            quota_messages: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let accounts = admin
        .list_accounts(pb::ListAccountsRequest {
            domain: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    let names: Vec<_> = accounts.iter().map(|a| a.address.as_str()).collect();
    assert_eq!(
        names,
        [
            "alice@example.test",
            "bob@example.test",
            "carol@example.test"
        ]
    );

    let alias = admin
        .add_alias(pb::AddAliasRequest {
            address: "Team@example.test".into(),
            targets: vec!["alice@example.test".into(), "bob@example.test".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alias.address, "team@example.test");
    admin
        .add_alias(pb::AddAliasRequest {
            address: "@example.test".into(),
            targets: vec!["bob@example.test".into()],
        })
        .await
        .unwrap();
    admin
        .add_alias(pb::AddAliasRequest {
            address: "old@example.test".into(),
            targets: vec!["bob@example.test".into()],
        })
        .await
        .unwrap();
    let e = admin
        .add_alias(pb::AddAliasRequest {
            address: "x@example.test".into(),
            targets: vec!["nobody@example.test".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    admin
        .remove_alias(pb::RemoveAliasRequest {
            address: "old@example.test".into(),
        })
        .await
        .unwrap();
    let e = admin
        .remove_alias(pb::RemoveAliasRequest {
            address: "old@example.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let aliases = admin
        .list_aliases(pb::ListAliasesRequest {
            domain: "example.test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .aliases;
    assert_eq!(
        aliases,
        vec![
            pb::Alias {
                address: "@example.test".into(),
                targets: vec!["bob@example.test".into()]
            },
            pb::Alias {
                address: "team@example.test".into(),
                targets: vec!["alice@example.test".into(), "bob@example.test".into()]
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api() {
    let db = ScratchDb::new("mailstore_api");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut admin = admin_client(&running.grpc_url, ADMIN_TOKEN).unwrap();
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();

    // Credentials: none, wrong, or the service token on Admin are refused.
    let mut anon = mailstore_client(&running.grpc_url, "").unwrap();
    let e = anon
        .resolve_recipient(pb::ResolveRecipientRequest {
            address: "a@b.c".into(),
            size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut wrong = mailstore_client(&running.grpc_url, "guess").unwrap();
    assert_eq!(
        wrong
            .list_mailboxes(pb::ListMailboxesRequest {
                account: "a@b.c".into()
            })
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
    let mut service_as_admin = admin_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    assert_eq!(
        service_as_admin
            .list_domains(pb::ListDomainsRequest {})
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );

    // The gRPC health service reports both services as serving.
    let channel = mailfleet_runtime::grpc::channel(&running.grpc_url).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["mailfleet.v1.MailStore", "mailfleet.v1.Admin"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service}"
        );
    }

    admin_setup(&mut admin).await;

    // Default mailboxes with their special-use attributes.
    let boxes = ms
        .list_mailboxes(pb::ListMailboxesRequest {
            account: "alice@example.test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mailboxes;
    let got: Vec<(&str, &str)> = boxes
        .iter()
        .map(|m| (m.name.as_str(), m.special_use.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("INBOX", ""),
            ("Archive", "\\Archive"),
            ("Drafts", "\\Drafts"),
            ("Junk", "\\Junk"),
            ("Sent", "\\Sent"),
            ("Trash", "\\Trash")
        ]
    );
    assert!(
        boxes
            .iter()
            .all(|m| m.subscribed && m.uidvalidity > 0 && m.uidnext == 1)
    );

    // Authenticate.
    let ok = ms
        .authenticate(pb::AuthenticateRequest {
            username: "ALICE@example.test".into(),
            password: "pw-alice@example.test".into(),
            remote_ip: "127.0.0.1".into(),
            protocol: "imap".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.ok);
    assert_eq!(ok.address, "alice@example.test");
    for (user, pw) in [
        ("alice@example.test", "wrong"),
        ("nobody@example.test", "pw"),
    ] {
        let r = ms
            .authenticate(pb::AuthenticateRequest {
                username: user.into(),
                password: pw.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.ok, "{user}");
    }
    admin
        .set_password(pb::SetPasswordRequest {
            address: "alice@example.test".into(),
            password: "new-pw".into(),
        })
        .await
        .unwrap();
    let r = ms
        .authenticate(pb::AuthenticateRequest {
            username: "alice@example.test".into(),
            password: "new-pw".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.ok);
    // The old password was verified (and cached) before; it must fail now.
    let r = ms
        .authenticate(pb::AuthenticateRequest {
            username: "alice@example.test".into(),
            password: "pw-alice@example.test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.ok, "a password change invalidates cached credentials");

    // ResolveRecipient.
    use pb::RecipientStatus::*;
    assert_eq!(
        resolve(&mut ms, "Alice@Example.Test").await,
        (RecipientLocal, vec!["alice@example.test".into()])
    );
    assert_eq!(
        resolve(&mut ms, "alice+news@example.test").await,
        (RecipientLocal, vec!["alice@example.test".into()])
    );
    assert_eq!(
        resolve(&mut ms, "<team@example.test>").await,
        (
            RecipientLocal,
            vec!["alice@example.test".into(), "bob@example.test".into()]
        )
    );
    assert_eq!(resolve(&mut ms, "team+x@example.test").await.1.len(), 2);
    assert_eq!(
        resolve(&mut ms, "whoever@example.test").await,
        (RecipientLocal, vec!["bob@example.test".into()])
    );
    assert_eq!(
        resolve(&mut ms, "someone@elsewhere.test").await,
        (RecipientNotLocal, vec![])
    );
    admin
        .remove_alias(pb::RemoveAliasRequest {
            address: "@example.test".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        resolve(&mut ms, "whoever@example.test").await,
        (RecipientUnknownUser, vec![])
    );

    // Deliver a batch into one mailbox: UIDs 1..n contiguous.
    let raw = b"From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\nSubject: batch test\r\n\r\nhello\r\n";
    let blob = put_blob(&config, raw).await;
    let n = 50;
    let deliveries: Vec<pb::Delivery> = (0..n)
        .map(|i| pb::Delivery {
            idempotency_key: format!("job-{i}:alice@example.test"),
            recipient: "alice@example.test".into(),
            blob_id: blob.clone(),
            blob_size: raw.len() as u64,
            return_path: "sender@remote.test".into(),
            internal_date_ms: 1_700_000_000_000 + i,
            ..Default::default()
        })
        .collect();
    let res = ms
        .deliver(pb::DeliverRequest {
            deliveries: deliveries.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(res.len(), n as usize);
    assert!(
        res.iter()
            .all(|r| r.status() == pb::DeliveryStatus::DeliveryStored),
        "{res:?}"
    );
    assert_eq!(res[3].idempotency_key, "job-3:alice@example.test");

    let listed = ms
        .list_messages(pb::ListMessagesRequest {
            account: "alice@example.test".into(),
            mailbox: String::new(),
            uid_from: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let uids: Vec<u32> = listed.messages.iter().map(|m| m.uid).collect();
    assert_eq!(uids, (1..=n as u32).collect::<Vec<_>>());
    let rp_line = b"Return-Path: <sender@remote.test>\r\n";
    let m = &listed.messages[0];
    assert_eq!(m.subject, "batch test");
    assert_eq!(m.size, (rp_line.len() + raw.len()) as u64);
    assert_eq!(m.blob_id, blob);
    assert_eq!(m.internal_date_ms, 1_700_000_000_000);
    let page = ms
        .list_messages(pb::ListMessagesRequest {
            account: "alice@example.test".into(),
            mailbox: "inbox".into(),
            uid_from: 10,
            limit: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [10, 11, 12, 13, 14]
    );
    assert_eq!(page.uidvalidity, listed.uidvalidity);

    // Redelivery of the same keys stores nothing new.
    let again = ms
        .deliver(pb::DeliverRequest { deliveries })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        again
            .iter()
            .all(|r| r.status() == pb::DeliveryStatus::DeliveryDuplicate)
    );
    let inbox = &ms
        .list_mailboxes(pb::ListMailboxesRequest {
            account: "alice@example.test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mailboxes[0];
    assert_eq!(
        (inbox.messages, inbox.uidnext, inbox.unseen),
        (n as u32, n as u32 + 1, n as u32)
    );

    // GetBody: Return-Path line + blob bytes exactly, and ranges over both.
    let mut expected = rp_line.to_vec();
    expected.extend_from_slice(raw);
    let (bytes, total) = body(&mut ms, "alice@example.test", 1, 0, 0).await;
    assert_eq!(bytes, expected);
    assert_eq!(total, expected.len() as u64);
    let (bytes, _) = body(&mut ms, "alice@example.test", 2, 10, 40).await;
    assert_eq!(bytes, expected[10..50]);
    let (bytes, _) = body(&mut ms, "alice@example.test", 2, 60, 0).await;
    assert_eq!(bytes, expected[60..]);
    let (bytes, total) = body(&mut ms, "alice@example.test", 2, 10_000, 0).await;
    assert!(bytes.is_empty());
    assert_eq!(total, expected.len() as u64);
    // FetchMessages with_header: the served bytes up to the end of the
    // header block (Return-Path line first), as GetBody would give them,
    // whether read from object storage or (the second time) from memory.
    let header_end = rp_line.len() + mailfleet_mime::analyze(raw).header_len as usize;
    for _ in 0..2 {
        let fetched = ms
            .fetch_messages(pb::FetchMessagesRequest {
                account: "alice@example.test".into(),
                mailbox: "INBOX".into(),
                uids: Some(pb::UidSet {
                    ranges: vec![pb::UidRange { first: 1, last: 2 }],
                }),
                with_meta: false,
                with_header: true,
            })
            .await
            .unwrap()
            .into_inner()
            .messages;
        assert_eq!(fetched.len(), 2);
        for m in &fetched {
            assert!(m.meta_json.is_empty());
            assert_eq!(
                String::from_utf8_lossy(&m.header),
                String::from_utf8_lossy(&expected[..header_end])
            );
        }
    }
    let e = ms
        .get_body(pb::GetBodyRequest {
            account: "alice@example.test".into(),
            uid: 999,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // A large body streams in bounded chunks.
    let big = large_mime_message("big", 3 * 1024 * 1024);
    let big_blob = put_blob(&config, &big).await;

    // One batch with an alias (two copies), the null sender, an unknown
    // recipient, an over-quota one, a key repeated within the batch and a
    // missing body.
    let mixed = vec![
        pb::Delivery {
            idempotency_key: "m1".into(),
            recipient: "team@example.test".into(),
            blob_id: big_blob.clone(),
            return_path: String::new(),
            ..Default::default()
        },
        pb::Delivery {
            idempotency_key: "m2".into(),
            recipient: "ghost@example.test".into(),
            blob_id: blob.clone(),
            ..Default::default()
        },
        pb::Delivery {
            idempotency_key: "m3".into(),
            recipient: "carol@example.test".into(),
            blob_id: blob.clone(),
            ..Default::default()
        },
        pb::Delivery {
            idempotency_key: "m1".into(),
            recipient: "team@example.test".into(),
            blob_id: big_blob.clone(),
            ..Default::default()
        },
        pb::Delivery {
            idempotency_key: "m4".into(),
            recipient: "bob@example.test".into(),
            blob_id: "0".repeat(64),
            ..Default::default()
        },
    ];
    let res = ms
        .deliver(pb::DeliverRequest { deliveries: mixed })
        .await
        .unwrap()
        .into_inner()
        .results;
    use pb::DeliveryStatus::*;
    let statuses: Vec<_> = res.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses,
        [
            DeliveryStored,
            DeliveryUnknownRecipient,
            DeliveryOverQuota,
            DeliveryDuplicate,
            DeliveryTemporaryFailure
        ]
    );
    let (bytes, _) = body(&mut ms, "alice@example.test", n as u32 + 1, 0, 0).await;
    let mut expected_big = b"Return-Path: <>\r\n".to_vec();
    expected_big.extend_from_slice(&big);
    assert_eq!(bytes, expected_big);
    let (bytes, _) = body(&mut ms, "bob@example.test", 1, 300_000, 100).await;
    assert_eq!(bytes, expected_big[300_000..300_100]);
    // Its metadata, read as it streamed from storage, is what analysing it
    // whole gives.
    let meta = meta_of(&mut ms, "alice@example.test", "INBOX", n as u32 + 1).await;
    assert_eq!(meta, mailfleet_mime::analyze(&big));
    assert_eq!(meta.body.parts.len(), 3);
    assert_eq!(meta.body.parts[1].subtype, "pdf");
    // Over quota and missing body were not remembered: they can be retried.
    let retry = ms
        .deliver(pb::DeliverRequest {
            deliveries: vec![pb::Delivery {
                idempotency_key: "m3".into(),
                recipient: "carol@example.test".into(),
                blob_id: blob.clone(),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(retry[0].status(), DeliveryOverQuota);

    let bad = ms
        .deliver(pb::DeliverRequest {
            deliveries: vec![pb::Delivery {
                idempotency_key: "k".into(),
                recipient: "bob@example.test".into(),
                blob_id: "../etc/passwd".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // Metrics are exposed under mailfleet_store_.
    let metrics = http_get(running.http, "/metrics").await.unwrap();
    assert!(
        metrics.contains("mailfleet_store_deliveries_total{status=\"stored\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("mailfleet_store_deliver_batch_size"));

    // Removing an account removes its mailboxes.
    admin
        .remove_account(pb::RemoveAccountRequest {
            address: "alice@example.test".into(),
        })
        .await
        .unwrap();
    let e = ms
        .list_mailboxes(pb::ListMailboxesRequest {
            account: "alice@example.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(
        resolve(&mut ms, "team@example.test").await.1,
        vec!["bob@example.test".to_string()]
    );

    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_migrate_one_empty_database() {
    let db = ScratchDb::new("mailstore_migrate");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let (a, b) = tokio::join!(start(config.clone()), start(config.clone()));
    for r in [&a, &b] {
        let mut admin = admin_client(&r.grpc_url, ADMIN_TOKEN).unwrap();
        admin.list_domains(pb::ListDomainsRequest {}).await.unwrap();
    }
    stop(a).await;
    stop(b).await;
}

#[tokio::test]
async fn unreachable_postgres_is_one_clear_error() {
    let blob_dir = tempfile::tempdir().unwrap();
    let mut config = config(&ScratchDb::new("mailstore_nope"), blob_dir.path());
    config.database_url = "postgres://postgres@127.0.0.1:1/nope".into();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = mailstore::run(
        config,
        mailstore::Listeners { grpc, http },
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cannot reach Postgres at postgres://127.0.0.1:1/nope"),
        "{err}"
    );
}

/// One hot mailbox: batches of 128 distinct messages into one INBOX from two
/// concurrent callers, as two delivery-worker replicas would send them;
/// every message gets a UID and the UIDs have no gap or repeat. (Speed is
/// measured by `mailfleet bench`, not here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_mailbox_concurrent_batches() {
    let db = ScratchDb::new("mailstore_hot");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, "hot@hot.test", 0, 0).await;
    let (batches, batch) = (16, 128);
    let mut jobs = Vec::new();
    for b in 0..batches {
        let mut deliveries = Vec::new();
        for i in 0..batch {
            let raw = format!(
                "From: s@remote.test\r\nTo: hot@hot.test\r\nSubject: m {b}-{i}\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nbody {b} {i}\r\n--x--\r\n"
            );
            deliveries.push(pb::Delivery {
                idempotency_key: format!("hot-{b}-{i}"),
                recipient: "hot@hot.test".into(),
                blob_id: put_blob(&config, raw.as_bytes()).await,
                return_path: "s@remote.test".into(),
                ..Default::default()
            });
        }
        jobs.push(deliveries);
    }
    // Two workers deliver concurrently, as replicas of delivery-worker would.
    let mut tasks = Vec::new();
    for chunk in jobs.chunks(batches / 2) {
        let chunk = chunk.to_vec();
        let mut ms = ms.clone();
        tasks.push(tokio::spawn(async move {
            for deliveries in chunk {
                let res = ms
                    .deliver(pb::DeliverRequest { deliveries })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(
                    res.results
                        .iter()
                        .all(|r| r.status() == pb::DeliveryStatus::DeliveryStored)
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = batches * batch;
    let listed = ms
        .list_messages(pb::ListMessagesRequest {
            account: "hot@hot.test".into(),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let uids: Vec<u32> = listed.messages.iter().map(|m| m.uid).collect();
    assert_eq!(
        uids,
        (1..=total as u32).collect::<Vec<_>>(),
        "UIDs contiguous across concurrent batches"
    );
    stop(running).await;
}

/// GetQuota (IMAP QUOTA): the account's limit, the bytes it uses and its
/// message count, following APPEND and EXPUNGE; unknown accounts are
/// NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_quota_follows_usage() {
    let db = ScratchDb::new("mailstore_quota");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, "q@quota.test", 10_000, 0).await;
    let quota = |ms: &mut MailStore| {
        let mut ms = ms.clone();
        async move {
            ms.get_quota(pb::GetQuotaRequest {
                account: "Q@quota.test".into(),
            })
            .await
            .map(|r| r.into_inner())
        }
    };
    let q = quota(&mut ms).await.unwrap();
    assert_eq!((q.quota_bytes, q.used_bytes, q.messages), (10_000, 0, 0));
    let msg = b"Subject: q\r\n\r\nbody\r\n".to_vec();
    for mailbox in ["INBOX", "Sent"] {
        ms.append_message(pb::AppendMessageRequest {
            account: "q@quota.test".into(),
            mailbox: mailbox.into(),
            flags: vec!["\\Deleted".into()],
            internal_date_ms: 0,
            data: msg.clone(),
        })
        .await
        .unwrap();
    }
    let q = quota(&mut ms).await.unwrap();
    let len = msg.len() as u64;
    assert_eq!((q.used_bytes, q.messages), (2 * len, 2));
    expunge_deleted(&mut ms, "q@quota.test", "INBOX").await;
    let q = quota(&mut ms).await.unwrap();
    assert_eq!((q.used_bytes, q.messages), (len, 1));
    let e = ms
        .get_quota(pb::GetQuotaRequest {
            account: "nobody@quota.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    stop(running).await;
}

/// The MESSAGE quota (RFC 9208): an account holds at most `quota_messages`
/// messages in all its mailboxes; APPEND, COPY and delivery past it are
/// refused, MOVE is not (it adds nothing), and an expunge makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_quota_limits_every_way_in() {
    let db = ScratchDb::new("mailstore_msgquota");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    let account = add_account(&running, "q@quota.test", 0, 3).await;
    assert_eq!(account.quota_messages, 3);
    let append = |mailbox: &'static str| {
        let mut ms = ms.clone();
        async move {
            ms.append_message(pb::AppendMessageRequest {
                account: "q@quota.test".into(),
                mailbox: mailbox.into(),
                flags: vec!["\\Deleted".into()],
                internal_date_ms: 0,
                data: b"Subject: q\r\n\r\nbody\r\n".to_vec(),
            })
            .await
        }
    };
    append("INBOX").await.unwrap();
    append("Sent").await.unwrap();
    append("INBOX").await.unwrap();
    let full = append("Drafts").await.unwrap_err();
    assert_eq!(full.code(), tonic::Code::FailedPrecondition, "{full}");
    assert_eq!(reason::of(&full), Some(pb::ErrorReason::OverQuota));
    let q = ms
        .get_quota(pb::GetQuotaRequest {
            account: "q@quota.test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((q.messages, q.quota_messages), (3, 3));

    let copy = |is_move: bool| {
        let mut ms = ms.clone();
        async move {
            ms.copy_messages(pb::CopyMessagesRequest {
                account: "q@quota.test".into(),
                mailbox: "INBOX".into(),
                uids: Some(pb::UidSet {
                    ranges: vec![pb::UidRange { first: 1, last: 1 }],
                }),
                target: "Archive".into(),
                r#move: is_move,
            })
            .await
        }
    };
    let e = copy(false).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert_eq!(reason::of(&e), Some(pb::ErrorReason::OverQuota));
    copy(true).await.unwrap();

    // Delivery to a full account is refused as over quota, not lost.
    let data = b"Subject: d\r\n\r\nbody\r\n";
    let deliver = |key: &'static str| {
        let mut ms = ms.clone();
        let config = config.clone();
        async move {
            let blob_id = put_blob(&config, data).await;
            ms.deliver(pb::DeliverRequest {
                deliveries: vec![pb::Delivery {
                    idempotency_key: key.into(),
                    recipient: "q@quota.test".into(),
                    blob_id,
                    blob_size: data.len() as u64,
                    return_path: "s@example.org".into(),
                    internal_date_ms: 0,
                    ..Default::default()
                }],
            })
            .await
            .unwrap()
            .into_inner()
            .results[0]
                .status()
        }
    };
    assert_eq!(deliver("d1").await, pb::DeliveryStatus::DeliveryOverQuota);

    // An expunge makes room for one more.
    expunge_deleted(&mut ms.clone(), "q@quota.test", "Sent").await;
    assert_eq!(deliver("d2").await, pb::DeliveryStatus::DeliveryStored);
    assert_eq!(deliver("d3").await, pb::DeliveryStatus::DeliveryOverQuota);
    stop(running).await;
}

/// AppendMessageStream (IMAP APPEND of large messages): a body larger than
/// the inline limit streams through a multipart upload and reads back
/// byte for byte; a stream shorter or longer than announced, a body over
/// the size limit or the quota, or a missing mailbox store nothing and
/// leave no object behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_message_stream_stores_exactly_the_announced_body() {
    let db = ScratchDb::new("mailstore_appstream");
    let blob_dir = tempfile::tempdir().unwrap();
    let mut config = config(&db, blob_dir.path());
    config.blob_inline_limit = 64 * 1024;
    config.smtp_max_message_size = 20 * 1024 * 1024;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    for (address, quota_bytes) in [("s@stream.test", 0), ("small@stream.test", 1_000_000)] {
        add_account(&running, address, quota_bytes, 0).await;
    }
    let start_of = |account: &str, mailbox: &str, size: usize| pb::AppendStart {
        account: account.into(),
        mailbox: mailbox.into(),
        flags: vec!["\\Seen".into()],
        internal_date_ms: 1_600_000_000_000,
        size: size as u64,
        claim_recent: false,
    };
    let msg = large_mime_message("streamed", 9 * 1024 * 1024 + 123);
    let chunks: Vec<Vec<u8>> = msg.chunks(256 * 1024).map(<[u8]>::to_vec).collect();
    let quota = |ms: &MailStore, account: &str| {
        let mut ms = ms.clone();
        let account = account.to_owned();
        async move {
            ms.get_quota(pb::GetQuotaRequest { account })
                .await
                .unwrap()
                .into_inner()
        }
    };

    // Ends early, runs past its size: refused, nothing stored.
    let short = chunks[..chunks.len() - 1].to_vec();
    let e = append_stream(
        &mut ms,
        start_of("s@stream.test", "INBOX", msg.len()),
        short,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let mut long = chunks.clone();
    long.push(b"more".to_vec());
    let e = append_stream(&mut ms, start_of("s@stream.test", "INBOX", msg.len()), long)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    // Over smtp_max_message_size, over quota, no such mailbox.
    let e = append_stream(
        &mut ms,
        start_of("s@stream.test", "INBOX", 21 * 1024 * 1024),
        vec![],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason::of(&e), Some(pb::ErrorReason::TooBig), "{e:?}");
    let e = append_stream(
        &mut ms,
        start_of("small@stream.test", "INBOX", msg.len()),
        chunks.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert_eq!(reason::of(&e), Some(pb::ErrorReason::OverQuota));
    let e = append_stream(
        &mut ms,
        start_of("s@stream.test", "Nowhere", msg.len()),
        chunks.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let q = quota(&ms, "s@stream.test").await;
    assert_eq!((q.used_bytes, q.messages), (0, 0));

    // The whole body: stored once, read back byte for byte.
    let r = append_stream(
        &mut ms,
        start_of("s@stream.test", "INBOX", msg.len()),
        chunks.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.uid, 1);
    let (back, total) = body(&mut ms, "s@stream.test", 1, 0, 0).await;
    assert_eq!(total, msg.len() as u64);
    assert!(back == msg, "the body differs");
    let q = quota(&ms, "s@stream.test").await;
    assert_eq!((q.used_bytes, q.messages), (msg.len() as u64, 1));
    // Metadata read as the body streamed in: what analysing it whole gives.
    let meta = meta_of(&mut ms, "s@stream.test", "INBOX", 1).await;
    assert_eq!(meta, mailfleet_mime::analyze(&msg));
    assert_eq!(meta.subject.as_deref(), Some("streamed"));
    let forwarded = meta.body.parts[2].message.as_ref().unwrap();
    assert_eq!(forwarded.envelope.subject.as_deref(), Some("forwarded"));
    assert_eq!(forwarded.body.parts.len(), 2);
    let fetched = ms
        .fetch_messages(pb::FetchMessagesRequest {
            account: "s@stream.test".into(),
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet {
                ranges: vec![pb::UidRange { first: 1, last: 1 }],
            }),
            with_meta: false,
            with_header: false,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(fetched[0].flags, vec!["\\Seen".to_owned()]);
    assert_eq!(fetched[0].internal_date_ms, 1_600_000_000_000);

    // One object under its content key; no temporary upload left.
    let mut files = Vec::new();
    let mut todo = vec![blob_dir.path().to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                files.push(e.path().display().to_string());
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("/blobs/"), "{files:?}");
    stop(running).await;
}

/// A job's copies share one idempotency row (keys `<job>/<recipient>`):
/// however the job comes back (whole, concurrently twice, or only its
/// deferred recipient, as the worker's retry sends it), each recipient gets
/// exactly one copy, and a copy refused for quota is not taken for stored.
/// A mailstore of before the grouped rows, writing bare keys, agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_copies_are_stored_once_however_it_is_redelivered() {
    use pb::DeliveryStatus::*;
    let db = ScratchDb::new("mailstore_groups");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    for a in ["a@g.test", "b@g.test"] {
        add_account(&running, a, 0, 0).await;
    }
    add_account(&running, "full@g.test", 0, 1).await;
    ms.append_message(pb::AppendMessageRequest {
        account: "full@g.test".into(),
        mailbox: "INBOX".into(),
        flags: vec!["\\Deleted".into()],
        internal_date_ms: 0,
        data: b"Subject: filler\r\n\r\nbody\r\n".to_vec(),
    })
    .await
    .unwrap();
    let raw = b"From: s@remote.test\r\nSubject: job\r\n\r\nbody\r\n";
    let blob_id = put_blob(&config, raw).await;
    let job = |job: &str, recipients: &[&str]| -> Vec<pb::Delivery> {
        recipients
            .iter()
            .map(|r| pb::Delivery {
                idempotency_key: format!("{job}/{r}"),
                recipient: (*r).into(),
                blob_id: blob_id.clone(),
                blob_size: raw.len() as u64,
                return_path: "s@remote.test".into(),
                ..Default::default()
            })
            .collect()
    };
    let client = ms.clone();
    let deliver = |deliveries: Vec<pb::Delivery>| {
        let mut ms = client.clone();
        async move {
            ms.deliver(pb::DeliverRequest { deliveries })
                .await
                .unwrap()
                .into_inner()
                .results
                .iter()
                .map(|r| r.status())
                .collect::<Vec<_>>()
        }
    };
    let all = ["a@g.test", "b@g.test", "full@g.test"];
    assert_eq!(
        deliver(job("j1", &all)).await,
        [DeliveryStored, DeliveryStored, DeliveryOverQuota]
    );
    // The job redelivered twice at once: the second waits for the first.
    let (x, y) = tokio::join!(deliver(job("j1", &all)), deliver(job("j1", &all)));
    for statuses in [x, y] {
        assert_eq!(
            statuses,
            [DeliveryDuplicate, DeliveryDuplicate, DeliveryOverQuota]
        );
    }
    // Room made; the retry carries the deferred recipient only.
    expunge_deleted(&mut ms, "full@g.test", "INBOX").await;
    assert_eq!(deliver(job("j1", &["full@g.test"])).await, [DeliveryStored]);
    assert_eq!(
        deliver(job("j1", &all)).await,
        [DeliveryDuplicate, DeliveryDuplicate, DeliveryDuplicate]
    );
    for account in all {
        let listed = ms
            .list_messages(pb::ListMessagesRequest {
                account: account.into(),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.messages.len(), 1, "{account}");
    }

    // A mailstore of before migration 0017 inserts bare keys: one the
    // group lists is refused (its duplicate), a new one is listed.
    let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let insert_key = |key: &'static str| {
        sqlx::query_as::<_, (String,)>(
            "INSERT INTO deliveries (idempotency_key) VALUES ($1) ON CONFLICT DO NOTHING RETURNING idempotency_key",
        )
        .bind(key)
    };
    let old = insert_key("j1/a@g.test")
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    assert_eq!(old, None);
    let old = insert_key("j2/a@g.test")
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    assert_eq!(old, Some(("j2/a@g.test".to_owned(),)));
    assert_eq!(
        deliver(job("j2", &["a@g.test", "b@g.test"])).await,
        [DeliveryDuplicate, DeliveryStored]
    );
    // Its release (not stored after all) takes the key out again.
    sqlx::query("DELETE FROM deliveries WHERE idempotency_key = 'j2/a@g.test'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(deliver(job("j2", &["a@g.test"])).await, [DeliveryStored]);

    // Messages go with their mailbox (a trigger, not a foreign key, now).
    let mut admin = admin_client(&running.grpc_url, ADMIN_TOKEN).unwrap();
    admin
        .remove_account(pb::RemoveAccountRequest {
            address: "a@g.test".into(),
        })
        .await
        .unwrap();
    let (orphans, left): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE mailbox_id NOT IN (SELECT id FROM mailboxes)), count(*) FROM messages",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    assert!(left >= 2, "b's and full's copies stay");
    conn.close().await.unwrap();
    stop(running).await;
}
