//! Learning against a real rspamd whose controller wants a password from
//! every address: the client's lessons are taken only with the password
//! (`MAILFLEET_SPAM_LEARN_PASSWORD` in delivery-worker).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use mailfleet_spam::client::Learned;
use mailfleet_spam::testing::TestRspamd;
use mailfleet_spam::{Learn, Rspamd, SpamError};

const PASSWORD: &str = "correct horse battery";

fn message() -> Bytes {
    let mut m = String::from(
        "From: someone@remote.test\r\nTo: alice@example.test\r\nSubject: quarterly numbers\r\n\
         Message-ID: <learn-1@remote.test>\r\n\r\n",
    );
    for i in 0..40 {
        m.push_str(&format!(
            "Line {i} of the quarterly report with words enough for the classifier.\r\n"
        ));
    }
    Bytes::from(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lessons_need_the_controller_password() {
    if !TestRspamd::available() {
        return;
    }
    let rspamd = tokio::task::spawn_blocking(|| TestRspamd::start_with_password(PASSWORD))
        .await
        .unwrap();
    let client = |password: &str| {
        Rspamd::new(&rspamd.controller_url, Duration::from_secs(30))
            .unwrap()
            .with_password(password)
            .unwrap()
    };
    for wrong in ["", "wrong password"] {
        match client(wrong).learn(Learn::Ham, message()).await {
            Err(SpamError::Status {
                status: 403 | 401, ..
            }) => {}
            other => panic!(
                "learned with password {wrong:?}: {other:?}\n{}",
                rspamd.log()
            ),
        }
    }
    // Any answer but an error: taken (learned now, before, or nothing to learn).
    let learned = client(PASSWORD).learn(Learn::Ham, message()).await;
    assert!(
        matches!(
            learned,
            Ok(Learned::Now | Learned::Already | Learned::Nothing)
        ),
        "{learned:?}\n{}",
        rspamd.log()
    );
    // The password never shows in the client's Debug output.
    assert!(!format!("{:?}", client(PASSWORD)).contains("horse"));
    // A password HTTP cannot carry is refused up front.
    assert!(matches!(
        Rspamd::new(&rspamd.controller_url, Duration::from_secs(1))
            .unwrap()
            .with_password("line\r\nbreak"),
        Err(SpamError::Password)
    ));
}
