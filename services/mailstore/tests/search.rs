//! SearchMessages against a mailbox that changes between searches, through
//! two mailstore replicas on one database: every change made through one
//! shows in the next search on the other (each replica keeps mailbox
//! listings in memory and brings them up to date by modseq).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const ALICE: &str = "alice@example.test";

/// Two mailstore replicas on one database, with Alice's account, and a
/// client of each.
struct Replicas {
    one: Running,
    two: Running,
    a: MailStore,
    b: MailStore,
    _blobs: tempfile::TempDir,
    // Last: dropped after the replicas, even when a test fails.
    _db: ScratchDb,
}

impl Replicas {
    async fn start(name: &str) -> Replicas {
        let db = ScratchDb::new(name);
        let blobs = tempfile::tempdir().unwrap();
        let config = config(&db, blobs.path());
        let one = start(config.clone()).await;
        let two = start(config).await;
        let a = mailstore_client(&one.grpc_url, SERVICE_TOKEN).unwrap();
        let b = mailstore_client(&two.grpc_url, SERVICE_TOKEN).unwrap();
        add_account(&one, ALICE, 0, 0).await;
        Replicas {
            one,
            two,
            a,
            b,
            _blobs: blobs,
            _db: db,
        }
    }

    async fn stop(self) {
        stop(self.one).await;
        stop(self.two).await;
    }
}

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

async fn store(
    ms: &mut MailStore,
    uid: u32,
    mode: pb::FlagsMode,
    flag: &str,
) -> pb::StoreFlagsResponse {
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
    .unwrap()
    .into_inner()
}

fn all() -> pb::SearchKey {
    key(pb::SearchOp::SearchAll, "", "")
}

fn flag(name: &str) -> pb::SearchKey {
    key(pb::SearchOp::SearchFlag, "", name)
}

/// An IMAP APPEND (AppendMessageStream) through `ms`.
async fn append_imap(ms: &mut MailStore, mailbox: &str, from: &str) -> Result<u32, tonic::Status> {
    let body = format!("From: {from}\r\nSubject: hello\r\n\r\nbody\r\n").into_bytes();
    let start = pb::AppendStart {
        account: ALICE.into(),
        mailbox: mailbox.into(),
        size: body.len() as u64,
        ..Default::default()
    };
    append_stream(ms, start, vec![body]).await.map(|r| r.uid)
}

/// A replica's listing of a mailbox renamed, or deleted and created again,
/// through the other: APPEND and STORE by the old name go to the mailbox
/// that has that name now, or fail as a missing mailbox, never to the
/// mailbox the listing was of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_name_follow_renames_made_through_another_replica() {
    let replicas = Replicas::start("searchrename").await;
    let (mut a, mut b) = (replicas.a.clone(), replicas.b.clone());
    a.create_mailbox(pb::CreateMailboxRequest {
        account: ALICE.into(),
        name: "Work".into(),
        special_use: String::new(),
    })
    .await
    .unwrap();
    let w1 = append_imap(&mut a, "Work", "bob@example.org")
        .await
        .unwrap();
    assert_eq!(search(&mut a, "Work", from("bob")).await, [w1]);

    b.rename_mailbox(pb::RenameMailboxRequest {
        account: ALICE.into(),
        from: "Work".into(),
        to: "Play".into(),
    })
    .await
    .unwrap();
    let gone = append_imap(&mut a, "Work", "carol@example.org").await;
    assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
    let store_gone = a
        .store_flags(pb::StoreFlagsRequest {
            account: ALICE.into(),
            mailbox: "Work".into(),
            uids: Some(pb::UidSet {
                ranges: vec![pb::UidRange {
                    first: w1,
                    last: w1,
                }],
            }),
            mode: pb::FlagsMode::FlagsAdd as i32,
            flags: vec!["\\Flagged".into()],
            unchanged_since: 0,
        })
        .await;
    assert_eq!(store_gone.unwrap_err().code(), tonic::Code::NotFound);
    // Play is the renamed mailbox, untouched by either.
    assert_eq!(search(&mut b, "Play", all()).await, [w1]);
    assert!(search(&mut b, "Play", flag("\\Flagged")).await.is_empty());

    // Work created again: the APPEND through one lands there.
    b.create_mailbox(pb::CreateMailboxRequest {
        account: ALICE.into(),
        name: "Work".into(),
        special_use: String::new(),
    })
    .await
    .unwrap();
    let n1 = append_imap(&mut a, "Work", "dave@example.org")
        .await
        .unwrap();
    assert_eq!(search(&mut b, "Work", all()).await, [n1]);
    assert_eq!(search(&mut b, "Play", all()).await, [w1]);

    replicas.stop().await;
}

/// STORE plans from the listing a replica keeps and APPEND and STORE move
/// that listing along; a listing that another replica's writes made stale
/// must neither lose those writes nor hide them from the next SEARCH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_planned_from_a_stale_listing_lose_nothing() {
    let replicas = Replicas::start("searchwrite").await;
    let (mut a, mut b) = (replicas.a.clone(), replicas.b.clone());
    let m1 = append(&mut a, "INBOX", "bob@example.org", &["\\Seen"]).await;
    let m2 = append(&mut a, "INBOX", "carol@example.org", &[]).await;
    // Replica one keeps the listing.
    assert_eq!(search(&mut a, "", flag("\\Seen")).await, [m1]);

    // Replica two takes \Seen off m1; one's listing still has it. A STORE
    // through one that adds \Seen again must really add it.
    store(&mut b, m1, pb::FlagsMode::FlagsRemove, "\\Seen").await;
    let r = store(&mut a, m1, pb::FlagsMode::FlagsAdd, "\\Seen").await;
    assert_eq!(r.updated.len(), 1, "the stale listing hid a change: {r:?}");
    assert_eq!(search(&mut a, "", flag("\\Seen")).await, [m1]);

    // Replica two flags m2; a STORE through one on m2 keeps that flag.
    store(&mut b, m2, pb::FlagsMode::FlagsAdd, "\\Flagged").await;
    let r = store(&mut a, m2, pb::FlagsMode::FlagsAdd, "\\Answered").await;
    let mut flags = r.updated[0].flags.clone();
    flags.sort();
    assert_eq!(flags, ["\\Answered", "\\Flagged"]);
    let highest = r.highestmodseq;
    assert_eq!(r.updated[0].modseq, highest);

    // Writes through one with nothing in between: its listing (current
    // after this search) moves along with them, so the STOREs plan from it,
    // and the searches through one see what those through two see.
    assert_eq!(search(&mut a, "", flag("\\Seen")).await, [m1]);
    let m3 = append(&mut a, "INBOX", "dave@example.org", &["\\Flagged"]).await;
    store(&mut a, m1, pb::FlagsMode::FlagsAdd, "\\Flagged").await;
    store(&mut a, m2, pb::FlagsMode::FlagsRemove, "\\Flagged").await;
    for ms in [&mut a, &mut b] {
        assert_eq!(search(ms, "", flag("\\Flagged")).await, [m1, m3]);
        assert_eq!(search(ms, "", flag("\\Answered")).await, [m2]);
        assert_eq!(search(ms, "", from("dave")).await, [m3]);
    }
    // An APPEND through two after one's own writes: one sees it too.
    let m4 = append(&mut b, "INBOX", "erin@example.org", &["\\Flagged"]).await;
    assert_eq!(search(&mut a, "", flag("\\Flagged")).await, [m1, m3, m4]);

    replicas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_follow_changes_made_through_another_replica() {
    let replicas = Replicas::start("searchcache").await;
    let (mut a, mut b) = (replicas.a.clone(), replicas.b.clone());

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

    replicas.stop().await;
}

fn or(children: Vec<pb::SearchKey>) -> pb::SearchKey {
    pb::SearchKey {
        op: pb::SearchOp::SearchOr as i32,
        children,
        ..Default::default()
    }
}

async fn search_reads(r: &Running) -> u64 {
    let text = http_get(r.http, "/metrics").await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("mailfleet_store_search_reads_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no search reads counter in:\n{text}"))
}

/// Issue 16: an OR of several BODY and TEXT keys reads each message once,
/// not once per key, and still matches exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_keys_read_each_message_once() {
    let mut r = Replicas::start("search_once").await;
    let mut uids = Vec::new();
    for word in ["alpha", "beta", "gamma", "delta", "epsilon"] {
        let uid =
            r.a.append_message(pb::AppendMessageRequest {
                account: ALICE.into(),
                mailbox: "INBOX".into(),
                flags: Vec::new(),
                internal_date_ms: 0,
                data: format!("From: a@example.test\r\nSubject: s\r\n\r\nsome {word} text\r\n")
                    .into_bytes(),
            })
            .await
            .unwrap()
            .into_inner()
            .uid;
        uids.push(uid);
    }
    let body = |t: &str| key(pb::SearchOp::SearchBody, "", t);
    let text = |t: &str| key(pb::SearchOp::SearchText, "", t);
    let before = search_reads(&r.one).await;
    let found = search(
        &mut r.a,
        "INBOX",
        or(vec![
            body("alpha"),
            or(vec![body("GAMMA"), or(vec![text("epsilon"), body("zeta")])]),
        ]),
    )
    .await;
    assert_eq!(found, vec![uids[0], uids[2], uids[4]]);
    assert_eq!(
        search_reads(&r.one).await - before,
        5,
        "each of the five messages is read once for its four body keys"
    );
    // AND with a body key that matches nothing, and NOT.
    let found = search(
        &mut r.a,
        "INBOX",
        and(vec![
            body("text"),
            pb::SearchKey {
                op: pb::SearchOp::SearchNot as i32,
                children: vec![or(vec![body("beta"), body("delta")])],
                ..Default::default()
            },
        ]),
    )
    .await;
    assert_eq!(found, vec![uids[0], uids[2], uids[4]]);
    r.stop().await;
}
