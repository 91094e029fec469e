//! Deliver files mail that rspamd marked as spam (`Delivery.spam`, from the
//! job) into the account's `\Junk` mailbox, creating one when the account
//! has none, and into INBOX when MAILFLEET_SPAM_JUNK is off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

async fn deliver(ms: &mut MailStore, config: &Config, key: &str, to: &str, spam: bool) {
    let data = format!("Subject: {key}\r\n\r\nbody of {key}\r\n");
    let blob_id = put_blob(config, data.as_bytes()).await;
    let results = ms
        .deliver(pb::DeliverRequest {
            deliveries: vec![pb::Delivery {
                idempotency_key: key.into(),
                recipient: to.into(),
                blob_id,
                blob_size: data.len() as u64,
                return_path: "s@example.org".into(),
                spam,
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(
        results[0].status,
        pb::DeliveryStatus::DeliveryStored as i32,
        "{results:?}"
    );
}

/// Subjects of the live messages in `mailbox`.
async fn subjects(ms: &mut MailStore, account: &str, mailbox: &str) -> Vec<String> {
    ms.list_messages(pb::ListMessagesRequest {
        account: account.into(),
        mailbox: mailbox.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .messages
    .into_iter()
    .map(|m| m.subject)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spam_goes_to_junk_which_is_created_when_missing() {
    let db = ScratchDb::new("mailstore_junk");
    let blob_dir = tempfile::tempdir().unwrap();
    let mut config = config(&db, blob_dir.path());
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, "alice@example.test", 0, 0).await;
    add_account(&running, "bob@example.test", 0, 0).await;

    deliver(&mut ms, &config, "clean", "alice@example.test", false).await;
    deliver(&mut ms, &config, "spam", "alice@example.test", true).await;
    assert_eq!(
        subjects(&mut ms, "alice@example.test", "INBOX").await,
        ["clean"]
    );
    assert_eq!(
        subjects(&mut ms, "alice@example.test", "Junk").await,
        ["spam"]
    );

    // Bob deleted his Junk: the first spam brings it back, special-use and all.
    ms.delete_mailbox(pb::DeleteMailboxRequest {
        account: "bob@example.test".into(),
        name: "Junk".into(),
    })
    .await
    .unwrap();
    deliver(&mut ms, &config, "spam-2", "bob@example.test", true).await;
    let boxes = ms
        .list_mailboxes(pb::ListMailboxesRequest {
            account: "bob@example.test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mailboxes;
    let junk = boxes.iter().find(|m| m.name == "Junk").expect("Junk again");
    assert_eq!(junk.special_use, "\\Junk");
    assert_eq!(
        subjects(&mut ms, "bob@example.test", "Junk").await,
        ["spam-2"]
    );
    assert!(
        subjects(&mut ms, "bob@example.test", "INBOX")
            .await
            .is_empty()
    );
    stop(running).await;

    // MAILFLEET_SPAM_JUNK=false: spam stays in INBOX.
    config.spam_junk = false;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    deliver(&mut ms, &config, "spam-3", "alice@example.test", true).await;
    assert_eq!(
        subjects(&mut ms, "alice@example.test", "INBOX").await,
        ["clean", "spam-3"]
    );
    assert_eq!(
        subjects(&mut ms, "alice@example.test", "Junk").await,
        ["spam"]
    );
    stop(running).await;
}
