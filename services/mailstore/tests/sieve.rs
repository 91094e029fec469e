//! Stored Sieve scripts through mailstore's SieveScripts gRPC service,
//! against a fresh Postgres database: compile check on upload, one active
//! script per account, the per-account quota, rename and delete rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mailfleet_runtime::grpc::{Sieve, channel, sieve_over};

const USER: &str = "alice@example.test";
const OTHER: &str = "bob@example.test";
const GOOD: &str = "require \"fileinto\";\r\nif header :contains \"subject\" \"report\" {\r\n  fileinto \"Reports\";\r\n}\r\n";

fn sieve(running: &Running, token: &str) -> Sieve {
    sieve_over(channel(&running.grpc_url).unwrap(), token)
}

async fn put(c: &mut Sieve, account: &str, name: &str, content: &str) -> Result<(), tonic::Status> {
    c.put_script(pb::PutScriptRequest {
        account: account.into(),
        name: name.into(),
        content: content.into(),
    })
    .await
    .map(|_| ())
}

async fn listing(c: &mut Sieve, account: &str) -> Vec<(String, bool)> {
    c.list_scripts(pb::ListScriptsRequest {
        account: account.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .scripts
    .into_iter()
    .map(|s| (s.name, s.active))
    .collect()
}

async fn activate(c: &mut Sieve, account: &str, name: &str) -> Result<(), tonic::Status> {
    c.set_active(pb::SetActiveRequest {
        account: account.into(),
        name: name.into(),
    })
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_compiled_stored_activated_renamed_and_deleted() {
    let db = ScratchDb::new("mailstore_sieve");
    let blob_dir = tempfile::tempdir().unwrap();
    let running = start(config(&db, blob_dir.path())).await;
    add_account(&running, USER, 0, 0).await;
    add_account(&running, OTHER, 0, 0).await;
    let mut c = sieve(&running, SERVICE_TOKEN);

    // Without a credential nothing is answered.
    let refused = put(&mut sieve(&running, "wrong"), USER, "a", GOOD)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // A script that does not compile is refused with its line, and not stored.
    let bad = put(
        &mut c,
        USER,
        "broken",
        "keep;\r\nif true {\r\n  frobnicate;\r\n}\r\n",
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("line 3:"), "{}", bad.message());
    let check = c
        .check_script(pb::CheckScriptRequest {
            account: USER.into(),
            content: "keep;\r\nfrobnicate;\r\n".into(),
        })
        .await
        .unwrap_err();
    assert!(
        check.message().starts_with("line 2:"),
        "{}",
        check.message()
    );
    c.check_script(pb::CheckScriptRequest {
        account: USER.into(),
        content: GOOD.into(),
    })
    .await
    .unwrap();
    assert!(listing(&mut c, USER).await.is_empty());

    // Bad names are refused.
    let e = put(&mut c, USER, "a\nb", GOOD).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    put(&mut c, USER, "rules", GOOD).await.unwrap();
    put(&mut c, USER, "vacation", "keep;\r\n").await.unwrap();
    assert_eq!(
        listing(&mut c, USER).await,
        vec![("rules".into(), false), ("vacation".into(), false)]
    );
    let got = c
        .get_script(pb::GetScriptRequest {
            account: USER.into(),
            name: "rules".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.content, GOOD);
    // Another account sees none of them.
    assert!(listing(&mut c, OTHER).await.is_empty());
    let e = c
        .get_script(pb::GetScriptRequest {
            account: OTHER.into(),
            name: "rules".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // One active script at a time.
    activate(&mut c, USER, "rules").await.unwrap();
    activate(&mut c, USER, "vacation").await.unwrap();
    assert_eq!(
        listing(&mut c, USER).await,
        vec![("rules".into(), false), ("vacation".into(), true)]
    );
    assert_eq!(
        activate(&mut c, USER, "nothing").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    // The failed activation left the active script alone.
    assert_eq!(listing(&mut c, USER).await[1], ("vacation".into(), true));

    // Replacing the active script keeps it active.
    put(&mut c, USER, "vacation", GOOD).await.unwrap();
    assert_eq!(listing(&mut c, USER).await[1], ("vacation".into(), true));

    // The active script cannot be deleted; an inactive one can.
    let e = c
        .delete_script(pb::DeleteScriptRequest {
            account: USER.into(),
            name: "vacation".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    // Rename: not onto an existing name; the active state moves along.
    let e = c
        .rename_script(pb::RenameScriptRequest {
            account: USER.into(),
            from: "vacation".into(),
            to: "rules".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    c.rename_script(pb::RenameScriptRequest {
        account: USER.into(),
        from: "vacation".into(),
        to: "away".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        listing(&mut c, USER).await,
        vec![("away".into(), true), ("rules".into(), false)]
    );
    c.delete_script(pb::DeleteScriptRequest {
        account: USER.into(),
        name: "rules".into(),
    })
    .await
    .unwrap();
    // An empty name deactivates; then the script can go.
    activate(&mut c, USER, "").await.unwrap();
    assert_eq!(listing(&mut c, USER).await, vec![("away".into(), false)]);
    c.delete_script(pb::DeleteScriptRequest {
        account: USER.into(),
        name: "away".into(),
    })
    .await
    .unwrap();
    assert!(listing(&mut c, USER).await.is_empty());

    // The admin credential works too (the operator CLI).
    put(&mut sieve(&running, ADMIN_TOKEN), OTHER, "x", GOOD)
        .await
        .unwrap();
    assert_eq!(listing(&mut c, OTHER).await, vec![("x".into(), false)]);
    // An unknown account is NOT_FOUND, not an empty list.
    let e = c
        .list_scripts(pb::ListScriptsRequest {
            account: "nobody@example.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_bounds_scripts_and_bytes_per_account() {
    let db = ScratchDb::new("mailstore_sieve_quota");
    let blob_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&db, blob_dir.path());
    cfg.sieve_max_scripts = 2;
    cfg.sieve_max_bytes = 100;
    cfg.sieve_max_script_size = 60;
    let running = start(cfg).await;
    add_account(&running, USER, 0, 0).await;
    let mut c = sieve(&running, SERVICE_TOKEN);
    let space = |name: &str, size: u64| pb::HaveSpaceRequest {
        account: USER.into(),
        name: name.into(),
        size,
    };

    c.have_space(space("a", 60)).await.unwrap();
    let e = c.have_space(space("a", 61)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    let big = format!("keep;{}\r\n", "#".repeat(56));
    assert_eq!(big.len(), 63);
    assert_eq!(
        put(&mut c, USER, "a", &big).await.unwrap_err().code(),
        tonic::Code::ResourceExhausted
    );

    let fifty = format!("keep;\r\n#{}\r\n", "x".repeat(40));
    assert_eq!(fifty.len(), 50);
    put(&mut c, USER, "a", &fifty).await.unwrap();
    put(&mut c, USER, "b", &fifty).await.unwrap();
    // A third script: over the count.
    let e = c.have_space(space("c", 1)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        put(&mut c, USER, "c", "keep;").await.unwrap_err().code(),
        tonic::Code::ResourceExhausted
    );
    // Replacing one counts its old size out.
    c.have_space(space("b", 50)).await.unwrap();
    let e = c.have_space(space("b", 51)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    put(&mut c, USER, "b", "keep;\r\n").await.unwrap();
    assert_eq!(listing(&mut c, USER).await.len(), 2);
    stop(running).await;
}

/// Delivers `raw` from `from` to USER with this idempotency key.
async fn deliver(
    ms: &mut MailStore,
    config: &Config,
    key: &str,
    from: &str,
    raw: &[u8],
) -> pb::DeliveryResult {
    deliver_marked(ms, config, key, from, raw, false).await
}

/// `deliver`, marked as spam by rspamd when `spam`.
async fn deliver_marked(
    ms: &mut MailStore,
    config: &Config,
    key: &str,
    from: &str,
    raw: &[u8],
    spam: bool,
) -> pb::DeliveryResult {
    let blob = put_blob(config, raw).await;
    let mut res = ms
        .deliver(pb::DeliverRequest {
            deliveries: vec![pb::Delivery {
                idempotency_key: key.into(),
                recipient: USER.into(),
                blob_id: blob,
                blob_size: raw.len() as u64,
                return_path: from.into(),
                internal_date_ms: 0,
                spam,
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    res.pop().unwrap()
}

/// (subject, flags) of each message in `mailbox`, in UID order.
async fn messages(ms: &mut MailStore, mailbox: &str) -> Vec<(String, Vec<String>)> {
    ms.list_messages(pb::ListMessagesRequest {
        account: USER.into(),
        mailbox: mailbox.into(),
        uid_from: 1,
        limit: 0,
    })
    .await
    .map(|r| {
        r.into_inner()
            .messages
            .into_iter()
            .map(|m| (m.subject, m.flags))
            .collect()
    })
    .unwrap_or_default()
}

async fn activate_script(c: &mut Sieve, name: &str, script: &str) {
    put(c, USER, name, script).await.unwrap();
    activate(c, USER, name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_script_files_flags_discards_and_rejects_at_delivery() {
    let db = ScratchDb::new("mailstore_sieve_deliver");
    let blob_dir = tempfile::tempdir().unwrap();
    let cfg = config(&db, blob_dir.path());
    let running = start(cfg.clone()).await;
    add_account(&running, USER, 0, 0).await;
    let mut c = sieve(&running, SERVICE_TOKEN);
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    activate_script(
        &mut c,
        "rules",
        "require [\"fileinto\", \"imap4flags\", \"mailbox\", \"reject\"];\r\n\
         if header :contains \"subject\" \"report\" {\r\n\
           addflag \"\\\\Flagged\";\r\n\
           fileinto :create \"Reports\";\r\n\
         } elsif header :contains \"subject\" \"spam\" {\r\n\
           discard;\r\n\
         } elsif header :contains \"subject\" \"go away\" {\r\n\
           reject \"not here\";\r\n\
         } elsif header :contains \"subject\" \"nowhere\" {\r\n\
           fileinto \"Missing\";\r\n\
         } else {\r\n\
           keep :flags \"$Seen-By-Sieve\";\r\n\
         }\r\n",
    )
    .await;
    let msg =
        |s: &str| format!("From: x@remote.test\r\nTo: {USER}\r\nSubject: {s}\r\n\r\nbody {s}\r\n");

    let r = deliver(
        &mut ms,
        &cfg,
        "j1",
        "x@remote.test",
        msg("weekly report").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), pb::DeliveryStatus::DeliveryStored);
    assert_eq!(
        messages(&mut ms, "Reports").await,
        vec![("weekly report".to_owned(), vec!["\\Flagged".to_owned()])]
    );
    assert!(messages(&mut ms, "INBOX").await.is_empty());

    deliver(
        &mut ms,
        &cfg,
        "j2",
        "x@remote.test",
        msg("hello").as_bytes(),
    )
    .await;
    assert_eq!(
        messages(&mut ms, "INBOX").await,
        vec![("hello".to_owned(), vec!["$Seen-By-Sieve".to_owned()])]
    );

    // discard: stored nowhere, and that is a success.
    let r = deliver(
        &mut ms,
        &cfg,
        "j3",
        "x@remote.test",
        msg("spam offer").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), pb::DeliveryStatus::DeliveryStored);
    // reject: nothing stored, the worker bounces with the reason.
    let r = deliver(
        &mut ms,
        &cfg,
        "j4",
        "x@remote.test",
        msg("go away").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), pb::DeliveryStatus::DeliveryRejected);
    assert_eq!(r.detail, "not here");
    // fileinto a mailbox that does not exist, without :create: INBOX.
    deliver(
        &mut ms,
        &cfg,
        "j5",
        "x@remote.test",
        msg("nowhere").as_bytes(),
    )
    .await;
    let inbox: Vec<String> = messages(&mut ms, "INBOX")
        .await
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(inbox, vec!["hello", "nowhere"]);
    assert_eq!(messages(&mut ms, "Reports").await.len(), 1);

    // Without an active script, everything goes to INBOX again; a changed
    // script is seen at the next delivery.
    activate(&mut c, USER, "").await.unwrap();
    deliver(
        &mut ms,
        &cfg,
        "j6",
        "x@remote.test",
        msg("report two").as_bytes(),
    )
    .await;
    assert_eq!(messages(&mut ms, "INBOX").await.len(), 3);
    activate_script(
        &mut c,
        "rules",
        "require \"fileinto\";\r\nfileinto \"Reports\";\r\n",
    )
    .await;
    deliver(
        &mut ms,
        &cfg,
        "j7",
        "x@remote.test",
        msg("anything").as_bytes(),
    )
    .await;
    assert_eq!(messages(&mut ms, "Reports").await.len(), 2);

    let metrics = http_get(running.http, "/metrics").await.unwrap();
    assert!(
        metrics.contains("mailfleet_store_sieve_runs_total 6"),
        "{metrics}"
    );
    assert!(metrics.contains("mailfleet_store_sieve_actions_total{kind=\"discard\"} 1"));
    assert!(metrics.contains("mailfleet_store_sieve_actions_total{kind=\"fileinto\"} 3"));
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacation_replies_once_per_sender_and_period_and_redirects_go_out() {
    let db = ScratchDb::new("mailstore_sieve_vacation");
    let blob_dir = tempfile::tempdir().unwrap();
    let cfg = config(&db, blob_dir.path());
    let running = start(cfg.clone()).await;
    add_account(&running, USER, 0, 0).await;
    let mut c = sieve(&running, SERVICE_TOKEN);
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    activate_script(
        &mut c,
        "away",
        "require [\"vacation\", \"copy\"];\r\n\
         redirect :copy \"archive@elsewhere.test\";\r\n\
         vacation :days 7 :subject \"Away\" \"I am away.\";\r\n",
    )
    .await;
    let msg = |from: &str, extra: &str| {
        format!(
            "From: {from}\r\nTo: {USER}\r\nSubject: hi\r\nMessage-ID: <m-{from}@x>\r\n{extra}\r\nbody\r\n"
        )
    };
    let kinds = |r: &pb::DeliveryResult| -> Vec<(String, String)> {
        r.outbound
            .iter()
            .map(|o| (o.kind.clone(), o.to.clone()))
            .collect()
    };

    let r = deliver(
        &mut ms,
        &cfg,
        "v1",
        "bob@remote.test",
        msg("bob@remote.test", "").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), pb::DeliveryStatus::DeliveryStored);
    assert_eq!(
        kinds(&r),
        vec![
            ("redirect".into(), "archive@elsewhere.test".into()),
            ("vacation".into(), "bob@remote.test".into())
        ]
    );
    let v = &r.outbound[1];
    assert_eq!(
        (v.subject.as_str(), v.reason.as_str()),
        ("Away", "I am away.")
    );
    assert_eq!(v.from, USER);
    assert_eq!(v.in_reply_to, "<m-bob@remote.test@x>");
    // The copy was kept (implicit keep).
    assert_eq!(messages(&mut ms, "INBOX").await.len(), 1);

    // The same delivery again (a redelivered job): DUPLICATE, with the same
    // outbound, so a worker that died before publishing still publishes.
    let again = deliver(
        &mut ms,
        &cfg,
        "v1",
        "bob@remote.test",
        msg("bob@remote.test", "").as_bytes(),
    )
    .await;
    assert_eq!(again.status(), pb::DeliveryStatus::DeliveryDuplicate);
    assert_eq!(kinds(&again), kinds(&r));

    // A second message from bob within the period: no second reply.
    let r = deliver(
        &mut ms,
        &cfg,
        "v2",
        "bob@remote.test",
        msg("bob@remote.test", "").as_bytes(),
    )
    .await;
    assert_eq!(
        kinds(&r),
        vec![("redirect".into(), "archive@elsewhere.test".into())]
    );
    // Another sender gets one.
    let r = deliver(
        &mut ms,
        &cfg,
        "v3",
        "carol@remote.test",
        msg("carol@remote.test", "").as_bytes(),
    )
    .await;
    assert_eq!(kinds(&r).len(), 2);
    // A list message never gets one.
    let r = deliver(
        &mut ms,
        &cfg,
        "v4",
        "list-bounces@lists.test",
        msg("dave@remote.test", "List-Id: <talk.lists.test>\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        kinds(&r),
        vec![("redirect".into(), "archive@elsewhere.test".into())]
    );

    // Once the period is over, bob gets a reply again.
    let mut conn = sqlx::PgConnection::connect(&cfg.database_url)
        .await
        .unwrap();
    sqlx::query("UPDATE sieve_vacation_sent SET sent_at = now() - interval '8 days'")
        .execute(&mut conn)
        .await
        .unwrap();
    let r = deliver(
        &mut ms,
        &cfg,
        "v5",
        "bob@remote.test",
        msg("bob@remote.test", "").as_bytes(),
    )
    .await;
    assert_eq!(kinds(&r).len(), 2);
    stop(running).await;
}

/// Spam (as rspamd marked it) goes to Junk when the script leaves it to the
/// implicit keep; an explicit `keep` or `fileinto` is the user's choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_decides_over_junk_only_where_it_acts() {
    let db = ScratchDb::new("mailstore_sieve_junk");
    let blob_dir = tempfile::tempdir().unwrap();
    let cfg = config(&db, blob_dir.path());
    let running = start(cfg.clone()).await;
    add_account(&running, USER, 0, 0).await;
    let mut c = sieve(&running, SERVICE_TOKEN);
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    let msg =
        |s: &str| format!("From: x@remote.test\r\nTo: {USER}\r\nSubject: {s}\r\n\r\nbody\r\n");

    // No script: spam goes to a Junk mailbox made for it.
    deliver_marked(
        &mut ms,
        &cfg,
        "k1",
        "x@remote.test",
        msg("a").as_bytes(),
        true,
    )
    .await;
    assert_eq!(
        messages(&mut ms, "Junk").await,
        vec![("a".to_owned(), vec![])]
    );

    activate_script(
        &mut c,
        "rules",
        "require [\"fileinto\"];\r\n\
         if header :contains \"subject\" \"mine\" { keep; }\r\n\
         elsif header :contains \"subject\" \"filed\" { fileinto \"Filed\"; }\r\n",
    )
    .await;
    ms.create_mailbox(pb::CreateMailboxRequest {
        account: USER.into(),
        name: "Filed".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // The script does nothing with it: the implicit keep goes to Junk.
    deliver_marked(
        &mut ms,
        &cfg,
        "k2",
        "x@remote.test",
        msg("b").as_bytes(),
        true,
    )
    .await;
    // Its explicit keep and fileinto win.
    deliver_marked(
        &mut ms,
        &cfg,
        "k3",
        "x@remote.test",
        msg("mine").as_bytes(),
        true,
    )
    .await;
    deliver_marked(
        &mut ms,
        &cfg,
        "k4",
        "x@remote.test",
        msg("filed").as_bytes(),
        true,
    )
    .await;
    // Not spam: INBOX as always.
    deliver(&mut ms, &cfg, "k5", "x@remote.test", msg("c").as_bytes()).await;

    let subjects = |v: Vec<(String, Vec<String>)>| v.into_iter().map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(subjects(messages(&mut ms, "Junk").await), ["a", "b"]);
    assert_eq!(subjects(messages(&mut ms, "INBOX").await), ["mine", "c"]);
    assert_eq!(subjects(messages(&mut ms, "Filed").await), ["filed"]);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_read_only_the_configured_start_of_a_message_but_see_its_size() {
    let db = ScratchDb::new("mailstore_sieve_view");
    let blob_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&db, blob_dir.path());
    cfg.sieve_max_message_size = 4096;
    let running = start(cfg.clone()).await;
    add_account(&running, USER, 0, 0).await;
    let mut c = sieve(&running, SERVICE_TOKEN);
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    activate_script(
        &mut c,
        "view",
        "require [\"fileinto\", \"body\", \"mailbox\"];\r\n\
         if body :raw :contains \"late-marker\" { fileinto :create \"SeenLate\"; stop; }\r\n\
         if body :raw :contains \"early-marker\" { fileinto :create \"SeenEarly\"; }\r\n\
         if size :over 8K { fileinto :create \"Big\"; }\r\n",
    )
    .await;
    // A marker at the start and one past the 4 KiB view, in a 10 KiB message.
    let mut raw =
        format!("From: x@remote.test\r\nTo: {USER}\r\nSubject: long\r\n\r\nearly-marker\r\n");
    while raw.len() < 10 * 1024 {
        raw.push_str("filler line that no rule looks for, to make the message long\r\n");
    }
    raw.push_str("late-marker\r\n");
    let r = deliver(&mut ms, &cfg, "v1", "x@remote.test", raw.as_bytes()).await;
    assert_eq!(r.status(), pb::DeliveryStatus::DeliveryStored);
    assert!(messages(&mut ms, "SeenLate").await.is_empty());
    assert_eq!(messages(&mut ms, "SeenEarly").await.len(), 1);
    // `size` is the stored size, not the view's.
    assert_eq!(messages(&mut ms, "Big").await.len(), 1);
}
