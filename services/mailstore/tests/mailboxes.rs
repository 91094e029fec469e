//! Mailbox names through mailstore's gRPC API, against a fresh Postgres
//! database: what CREATE, RENAME and SELECT do to the hierarchy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const USER: &str = "alice@example.test";

async fn names(ms: &mut MailStore) -> Vec<String> {
    let mut names: Vec<String> = ms
        .list_mailboxes(pb::ListMailboxesRequest {
            account: USER.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mailboxes
        .into_iter()
        .map(|m| m.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superiors_come_with_create_and_rename_never_with_select() {
    let db = ScratchDb::new("mailstore_mailboxes");
    let blob_dir = tempfile::tempdir().unwrap();
    let running = start(config(&db, blob_dir.path())).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, USER, 0, 0).await;
    // A new account comes with INBOX and the special-use mailboxes.
    let base = names(&mut ms).await;
    assert!(base.contains(&"INBOX".to_owned()), "{base:?}");
    let with = |extra: &[&str]| {
        let mut v = base.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.sort();
        v
    };

    // SELECT of a name that does not exist fails and creates nothing, not
    // even the superior its name implies.
    let missing = ms
        .select_mailbox(pb::SelectMailboxRequest {
            account: USER.into(),
            mailbox: "Ghost/Child".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(names(&mut ms).await, base);

    // CREATE makes the superiors too (RFC 3501 6.3.3).
    ms.create_mailbox(pb::CreateMailboxRequest {
        account: USER.into(),
        name: "Work/2026/Q4".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        names(&mut ms).await,
        with(&["Work", "Work/2026", "Work/2026/Q4"])
    );

    // RENAME makes the superiors of the new name and moves the children.
    ms.rename_mailbox(pb::RenameMailboxRequest {
        account: USER.into(),
        from: "Work/2026".into(),
        to: "Old/Years".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        names(&mut ms).await,
        with(&["Old", "Old/Years", "Old/Years/Q4", "Work"])
    );
    stop(running).await;
}
