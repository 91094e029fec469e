//! A mailbox of 100,000 messages: what IMAP APPEND makes mailstore run
//! (AppendMessage, then the frontend's "changes since" SelectMailbox) must
//! reach the message rows through indexes, never by reading the table, or
//! APPEND slows down as the mailbox grows (issue 15: 50 to 100/s past
//! 40,000 messages). Shown by Postgres's own counter of sequential scans of
//! `messages`, after enough calls that prepared statements use their
//! generic plans.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const USER: &str = "alice@example.test";
/// Messages put into the mailbox with one statement.
const SEEDED: i64 = 100_000;
/// APPENDs measured: past the five custom plans after which Postgres may
/// switch a prepared statement to its generic plan.
const APPENDS: i64 = 20;

/// What Postgres's statistics say of `messages`.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
struct Counters {
    /// Sequential scans.
    seq_scan: i64,
    /// Rows read by sequential scans, and index entries read.
    rows_read: i64,
    n_tup_ins: i64,
    n_tup_upd: i64,
}

async fn counters(db: &str) -> Counters {
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query_as(
        "SELECT seq_scan, n_tup_ins, n_tup_upd, seq_tup_read + \
                (SELECT COALESCE(sum(i.idx_tup_read), 0)::int8 FROM pg_stat_user_indexes i \
                 WHERE i.relid = t.relid) AS rows_read \
         FROM pg_stat_user_tables t WHERE relname = 'messages'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// Waits until the rows inserted into and updated in `messages` reach
/// (`inserted`, `updated`): a backend reports its counters together, so
/// the scans before its last write are counted too.
async fn counters_after(db: &str, inserted: i64, updated: i64) -> Counters {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counters(db).await;
        if c.n_tup_ins >= inserted && c.n_tup_upd >= updated {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "Postgres never reported {inserted} inserted and {updated} updated rows ({c:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts 100,000 more messages into alice's INBOX (which holds one) with
/// one statement, sharing the first one's body; the mailbox row says what
/// real APPENDs would have left. Returns once Postgres counts the rows.
async fn seed(db: &str) {
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id) \
         SELECT m.mailbox_id, g, g, CASE WHEN g % 3 = 0 THEN '{\\Seen}'::text[] ELSE '{}' END, \
                now(), m.size, m.blob_id \
         FROM messages m, generate_series(2::int8, $1 + 1) g WHERE m.uid = 1",
    )
    .bind(SEEDED)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE mailboxes b SET uidnext = $1 + 2, highestmodseq = $1 + 1, \
             message_count = $1 + 1, first_recent_uid = $1 + 2 \
         FROM accounts a WHERE a.id = b.account_id AND a.address = $2 AND b.name = 'INBOX'",
    )
    .bind(SEEDED)
    .bind(USER)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE messages")
        .execute(&mut conn)
        .await
        .unwrap();
    // Its counters are reported when the connection closes.
    conn.close().await.unwrap();
    counters_after(db, SEEDED + 1, 0).await;
}

async fn append(ms: &mut MailStore, i: i64) -> pb::AppendMessageResponse {
    ms.append_message(pb::AppendMessageRequest {
        account: USER.into(),
        mailbox: "INBOX".into(),
        flags: vec![],
        internal_date_ms: 0,
        data: format!("Subject: m{i}\r\nMessage-ID: <m{i}@example.test>\r\n\r\nbody {i}\r\n")
            .into_bytes(),
    })
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_into_a_mailbox_of_100000_messages_reads_no_message_table_scan() {
    let db = ScratchDb::new("mailstore_large");
    let blob_dir = tempfile::tempdir().unwrap();
    let mut config = config(&db, blob_dir.path());
    // One connection: all of mailstore's statements run in one backend,
    // whose counters Postgres reports together.
    config.database_max_connections = 1;
    let running = start(config.clone()).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, USER, 0, 0).await;
    let first = append(&mut ms, 0).await;
    assert_eq!(first.uid, 1);
    // A backend reports its table counters to Postgres's statistics at most
    // once a second, and all of them when it exits: this mailstore's scans
    // of the near-empty table (a sequential scan is right there) must not
    // show up as scans of the full one. Stopping it closes its connection.
    stop(running).await;

    seed(&db.name).await;
    let running = start(config).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    let before = counters_after(&db.name, SEEDED + 1, 0).await;

    // Each round: what the frontend asks after an APPEND (the changes
    // since the modseq its view had), then the next APPEND, so that the
    // last statement is an insert.
    let mut since = u64::try_from(SEEDED + 1).unwrap();
    let mut last: Option<pb::AppendMessageResponse> = None;
    for i in 1..=APPENDS {
        let changes = ms
            .select_mailbox(pb::SelectMailboxRequest {
                account: USER.into(),
                mailbox: "INBOX".into(),
                changed_since: since,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let uids: Vec<u32> = changes.messages.iter().map(|m| m.uid).collect();
        let expected: Vec<u32> = last.iter().map(|r| r.uid).collect();
        assert_eq!(
            uids, expected,
            "the message appended last is the one change"
        );
        if let Some(r) = &last {
            since = r.modseq;
        }
        let r = append(&mut ms, i).await;
        assert_eq!(i64::from(r.uid), SEEDED + 1 + i);
        last = Some(r);
    }
    // The last APPEND's insert comes after every statement above.
    let after = counters_after(&db.name, before.n_tup_ins + APPENDS, 0).await;
    assert_eq!(
        after.seq_scan - before.seq_scan,
        0,
        "sequential scans of messages during {APPENDS} APPENDs into a mailbox of {} messages",
        SEEDED + 1
    );
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunge_in_a_mailbox_of_100000_messages_reads_only_the_deleted_ones() {
    let db = ScratchDb::new("mailstore_large_expunge");
    let blob_dir = tempfile::tempdir().unwrap();
    let mut config = config(&db, blob_dir.path());
    config.database_max_connections = 1;
    let running = start(config).await;
    let mut ms = mailstore_client(&running.grpc_url, SERVICE_TOKEN).unwrap();
    add_account(&running, USER, 0, 0).await;
    append(&mut ms, 0).await;
    seed(&db.name).await;
    let set = |uids: &[u32]| pb::UidSet {
        ranges: uids
            .iter()
            .map(|&u| pb::UidRange { first: u, last: u })
            .collect(),
    };
    // Expunged rows stay (for QRESYNC): a mailbox that had many.
    let expunge = |ms: &mut MailStore, uids: Option<pb::UidSet>, only_deleted: bool| {
        let mut ms = ms.clone();
        async move {
            ms.expunge(pb::ExpungeRequest {
                account: USER.into(),
                mailbox: "INBOX".into(),
                uids,
                only_deleted,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let old = pb::UidSet {
        ranges: vec![pb::UidRange {
            first: 2,
            last: 50_001,
        }],
    };
    let r = expunge(&mut ms, Some(old), false).await;
    assert_eq!(r.expunged.len(), 50_000);
    let deleted = [60_000u32, 90_001];
    for &uid in &deleted {
        ms.store_flags(pb::StoreFlagsRequest {
            account: USER.into(),
            mailbox: "INBOX".into(),
            uids: Some(set(&[uid])),
            mode: pb::FlagsMode::FlagsAdd as i32,
            flags: vec!["\\Deleted".into()],
            unchanged_since: 0,
        })
        .await
        .unwrap();
    }
    // The writes above, counted (50,000 expunged rows, then one per STORE).
    let updated = 50_000 + i64::try_from(deleted.len()).unwrap();
    let before = counters_after(&db.name, 0, updated).await;
    // IMAP's EXPUNGE: `1:*`, only what is flagged \Deleted.
    let all = pb::UidSet {
        ranges: vec![pb::UidRange { first: 1, last: 0 }],
    };
    let r = expunge(&mut ms, Some(all), true).await;
    assert_eq!(r.expunged, deleted);
    let after = counters_after(&db.name, 0, before.n_tup_upd + 2).await;
    let read = after.rows_read - before.rows_read;
    assert!(
        read < 100,
        "EXPUNGE of 2 messages read {read} rows of a mailbox of 100,001 (50,000 expunged)"
    );
    stop(running).await;
}
