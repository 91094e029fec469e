//! SearchMessages against a mailbox that changes between searches, through
//! two mailstore replicas on one database: every change made through one
//! shows in the next search on the other (each replica keeps mailbox
//! listings in memory and brings them up to date by modseq).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const ALICE: &str = "alice@example.test";

async fn append(ms: &mut MailStore, mailbox: &str, from: &str, flags: &[&str]) -> u32 {
    ms.append_message(pb::AppendMessageRequest {
        account: ALICE.into(),
        mailbox: mailbox.into(),
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        internal_date_ms: 0,
        data: format!("From: {from}\r\nSubject: hello\r\n\r\nbody\r\n").into_bytes(),
    })
    .await
    .unwrap()
    .into_inner()
    .uid
}

fn key(op: pb::SearchOp, header: &str, text: &str) -> pb::SearchKey {
    pb::SearchKey {
        op: op as i32,
        header: header.into(),
        text: text.into(),
        ..Default::default()
    }
}

fn from(text: &str) -> pb::SearchKey {
    key(pb::SearchOp::SearchHeader, "From", text)
}

fn and(children: Vec<pb::SearchKey>) -> pb::SearchKey {
    pb::SearchKey {
        op: pb::SearchOp::SearchAnd as i32,
        children,
        ..Default::default()
    }
}

async fn search(ms: &mut MailStore, mailbox: &str, key: pb::SearchKey) -> Vec<u32> {
    ms.search_messages(pb::SearchMessagesRequest {
        account: ALICE.into(),
        mailbox: mailbox.into(),
        key: Some(key),
        with_modseqs: false,
    })
    .await
    .unwrap()
    .into_inner()
    .uids
}

async fn store(ms: &mut MailStore, uid: u32, mode: pb::FlagsMode, flag: &str) {
    ms.store_flags(pb::StoreFlagsRequest {
        account: ALICE.into(),
        mailbox: String::new(),
        uids: Some(pb::UidSet {
            ranges: vec![pb::UidRange {
                first: uid,
                last: uid,
            }],
        }),
        mode: mode as i32,
        flags: vec![flag.into()],
        unchanged_since: 0,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_follow_changes_made_through_another_replica() {
    let db = Database(unique_db_name("searchcache"));
    let blob_dir = tempfile::tempdir().unwrap();
    let config = config(&db.0, blob_dir.path());
    let one = start(config.clone()).await;
    let two = start(config).await;
    let mut a = mailstore_client(&one.grpc_url, SERVICE_TOKEN).unwrap();
    let mut b = mailstore_client(&two.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&one, ALICE, 0, 0).await;

    let bob1 = append(&mut a, "INBOX", "bob@example.org", &[]).await;
    let carol = append(&mut a, "INBOX", "carol@example.org", &[]).await;
    let bob3 = append(&mut a, "INBOX", "Bob <bob@example.org>", &[]).await;
    assert_eq!(search(&mut a, "", from("bob")).await, [bob1, bob3]);

    // A new message, a flag change and an expunge, each through replica two.
    let bob4 = append(&mut b, "INBOX", "bob@example.org", &[]).await;
    assert_eq!(search(&mut a, "", from("BOB")).await, [bob1, bob3, bob4]);
    store(&mut b, bob3, pb::FlagsMode::FlagsAdd, "\\Flagged").await;
    let flagged = and(vec![
        from("bob"),
        key(pb::SearchOp::SearchFlag, "", "\\Flagged"),
    ]);
    assert_eq!(search(&mut a, "", flagged.clone()).await, [bob3]);
    let carol_or_flagged = pb::SearchKey {
        op: pb::SearchOp::SearchOr as i32,
        children: vec![
            from("carol"),
            key(pb::SearchOp::SearchFlag, "", "\\Flagged"),
        ],
        ..Default::default()
    };
    assert_eq!(search(&mut a, "", carol_or_flagged).await, [carol, bob3]);
    store(&mut b, bob3, pb::FlagsMode::FlagsRemove, "\\Flagged").await;
    assert!(search(&mut a, "", flagged).await.is_empty());
    store(&mut b, bob1, pb::FlagsMode::FlagsAdd, "\\Deleted").await;
    let expunged = b
        .expunge(pb::ExpungeRequest {
            account: ALICE.into(),
            mailbox: String::new(),
            uids: Some(pb::UidSet {
                ranges: vec![pb::UidRange { first: 1, last: 0 }],
            }),
            only_deleted: true,
        })
        .await
        .unwrap()
        .into_inner()
        .expunged;
    assert_eq!(expunged, [bob1]);
    assert_eq!(search(&mut a, "", from("bob")).await, [bob3, bob4]);
    // Nothing changed: the same answer again.
    assert_eq!(search(&mut a, "", from("bob")).await, [bob3, bob4]);

    // A mailbox deleted and created again under its name is a new mailbox.
    let create = |name: &str| pb::CreateMailboxRequest {
        account: ALICE.into(),
        name: name.into(),
        special_use: String::new(),
    };
    a.create_mailbox(create("Work")).await.unwrap();
    let w1 = append(&mut a, "Work", "bob@example.org", &[]).await;
    append(&mut a, "Work", "dave@example.org", &[]).await;
    assert_eq!(search(&mut a, "Work", from("bob")).await, [w1]);
    b.delete_mailbox(pb::DeleteMailboxRequest {
        account: ALICE.into(),
        name: "Work".into(),
    })
    .await
    .unwrap();
    let gone = a
        .search_messages(pb::SearchMessagesRequest {
            account: ALICE.into(),
            mailbox: "Work".into(),
            key: Some(from("bob")),
            with_modseqs: false,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    b.create_mailbox(create("Work")).await.unwrap();
    let dave = append(&mut b, "Work", "dave@example.org", &[]).await;
    assert!(search(&mut a, "Work", from("bob")).await.is_empty());
    assert_eq!(search(&mut a, "Work", from("dave")).await, [dave]);

    stop(one).await;
    stop(two).await;
}
