//! \Recent accounting (SelectMailbox claim_recent) and SortMessages /
//! ThreadMessages argument checks through mailstore's gRPC API, against a
//! fresh Postgres database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const USER: &str = "alice@example.test";

async fn append(ms: &mut MailStore, subject: &str) -> u32 {
    ms.append_message(pb::AppendMessageRequest {
        account: USER.into(),
        mailbox: "INBOX".into(),
        flags: vec![],
        internal_date_ms: 0,
        data: format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes(),
    })
    .await
    .unwrap()
    .into_inner()
    .uid
}

async fn select(ms: &mut MailStore, claim: bool) -> pb::SelectMailboxResponse {
    ms.select_mailbox(pb::SelectMailboxRequest {
        account: USER.into(),
        mailbox: "INBOX".into(),
        claim_recent: claim,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_message_is_recent_in_exactly_one_select() {
    let db = ScratchDb::new("mailstore_recent");
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, USER, 0, 0).await;
    for i in 0..5 {
        append(&mut ms, &format!("m{i}")).await;
    }
    // Without a claim, the unclaimed range and count are reported.
    let peek = select(&mut ms, false).await;
    assert_eq!((peek.recent_from, peek.recent_to), (1, 6));
    assert_eq!(peek.mailbox.unwrap().recent, 5);

    // Eight SELECTs at once: the claimed ranges cover UIDs 1..=5 once.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = ms.clone();
        tasks.push(tokio::spawn(async move { select(&mut c, true).await }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        claimed.extend(r.recent_from..r.recent_to);
    }
    claimed.sort_unstable();
    assert_eq!(claimed, [1, 2, 3, 4, 5]);
    assert_eq!(select(&mut ms, false).await.mailbox.unwrap().recent, 0);

    // A later message is recent again, for the next claimer only.
    let uid = append(&mut ms, "late").await;
    assert_eq!(select(&mut ms, false).await.mailbox.unwrap().recent, 1);
    let r = select(&mut ms, true).await;
    assert_eq!((r.recent_from, r.recent_to), (uid, uid + 1));
    let r = select(&mut ms, true).await;
    assert_eq!(r.recent_from, r.recent_to);

    // SortMessages needs criteria; both answer over the same messages.
    let err = ms
        .sort_messages(pb::SortMessagesRequest {
            account: USER.into(),
            mailbox: "INBOX".into(),
            key: None,
            criteria: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let sorted = ms
        .sort_messages(pb::SortMessagesRequest {
            account: USER.into(),
            mailbox: "INBOX".into(),
            key: None,
            criteria: vec![pb::SortCriterion {
                key: pb::SortKey::SortSubject as i32,
                reverse: true,
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .uids;
    assert_eq!(sorted, [5, 4, 3, 2, 1, 6]);
    let threads = ms
        .thread_messages(pb::ThreadMessagesRequest {
            account: USER.into(),
            mailbox: "INBOX".into(),
            key: None,
            algorithm: pb::ThreadAlgorithm::ThreadOrderedSubject as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(threads.len(), 6);
    assert!(threads.iter().all(|n| n.depth == 0));
    stop(running).await;
}
