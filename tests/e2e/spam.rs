//! Spam filtering end to end with a real rspamd (deploy/rspamd/run on ports
//! of its own): GTUBE is refused at the MX, rspamd's "add header" verdict
//! lands in the recipient's Junk, and IMAP MOVE into and out of Junk reaches
//! rspamd's learn endpoints through mailstore, RabbitMQ and delivery-worker
//! (rspamd's `/stat` learned count), with the controller's password.

use std::process::Command;
use std::time::{Duration, Instant};

use mailfleet_spam::testing::{GTUBE, GTUBE_ADD_HEADER, TestRspamd};

use crate::harness::{Blobs, Stack, Svc, TlsSetup, env_refs, run};

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "secret-pw";
const RSPAMD_PASSWORD: &str = "controller-pw";

#[test]
fn gtube_is_refused_spam_lands_in_junk_and_junk_moves_teach_rspamd() {
    if !TestRspamd::available() {
        return;
    }
    // The controller wants a password from every address, as the Helm
    // chart's rspamd does: lessons arrive only if delivery-worker sends it.
    let rspamd = TestRspamd::start_with_password(RSPAMD_PASSWORD);
    let tls = TlsSetup::new();
    let imap = tls.port("IMAP");
    let env = tls.env(&[
        ("MAILFLEET_SPAM_URL", rspamd.url.clone()),
        ("MAILFLEET_SPAM_LEARN_URL", rspamd.controller_url.clone()),
        ("MAILFLEET_SPAM_LEARN_PASSWORD", RSPAMD_PASSWORD.to_owned()),
    ]);
    let mut stack = Stack::start(Blobs::Local, &[ALICE], &env_refs(&env));
    stack.spawn(Svc::ImapFrontend);
    stack.wait_ready(Svc::ImapFrontend);
    let learned_before = rspamd.learned();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/e2e/clients/spam_junk.py"
    );
    let out = run(Command::new("python3")
        .arg(script)
        .arg(stack.smtp_port.to_string())
        .arg(imap.to_string())
        .arg(ALICE)
        .arg(PASSWORD)
        .arg(GTUBE_ADD_HEADER)
        .arg(GTUBE));
    assert!(
        out.status.success(),
        "spam_junk.py failed: {}\n{}\nsmtp-gateway log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        stack.log(Svc::SmtpGateway)
    );

    // Both lessons reach rspamd: delivery-worker counts its 200 answers, and
    // rspamd's own /stat says it learned. (Its `learned` counter is not one
    // per request: two learns in the same moment were seen counted once.)
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = stack.http_get(Svc::DeliveryWorker, "/metrics");
        if metrics.contains("mailfleet_delivery_spam_lessons_total{result=\"learned\"} 2") {
            break;
        }
        assert!(
            Instant::now() < until,
            "2 lessons not learned: {metrics}\ndelivery-worker log:\n{}\nrspamd log:\n{}",
            stack.log(Svc::DeliveryWorker),
            rspamd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        rspamd.learned() > learned_before,
        "rspamd's /stat shows no learn"
    );
}
