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
    let db = Database(unique_db_name("sieve"));
    let blob_dir = tempfile::tempdir().unwrap();
    let running = start(config(&db.0, blob_dir.path())).await;
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
    let db = Database(unique_db_name("sieve_quota"));
    let blob_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&db.0, blob_dir.path());
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
