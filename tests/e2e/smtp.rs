//! The SMTP submission roles through the whole stack: `mailfleet serve`
//! processes with a certificate, real AUTH against mailstore, and delivery
//! into the mailbox, driven by Python's smtplib over STARTTLS (587 role) and
//! implicit TLS (465 role).

use std::time::{Duration, Instant};

use crate::harness::{Blobs, Stack, TlsSetup, env_refs};

#[test]
fn submission_over_starttls_and_implicit_tls_reaches_the_mailbox() {
    let tls = TlsSetup::new();
    let (submission, submissions) = (tls.port("SUBMISSION"), tls.port("SUBMISSIONS"));
    let env = tls.env(&[]);
    let env = env_refs(&env);
    let stack = Stack::start(
        Blobs::Local,
        &["alice@example.test", "bob@example.test"],
        &env,
    );
    let script = r#"
import smtplib, ssl, sys
submission, submissions = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", submission, local_hostname="laptop.example")
s.starttls(context=ctx)
s.login("alice@example.test", "secret-pw")
code, _ = s.mail("bob@example.test")
assert code == 553, code
s.rset()
s.sendmail("alice@example.test", ["bob@example.test"],
           "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: over starttls\r\n\r\nhi bob\r\n")
s.quit()
s = smtplib.SMTP_SSL("127.0.0.1", submissions, context=ctx, local_hostname="laptop.example")
s.login("bob@example.test", "secret-pw")
s.sendmail("bob+replies@example.test", ["alice@example.test"],
           "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: over tls\r\n\r\nhi alice\r\n")
s.quit()
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &submission.to_string(),
            &submissions.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        stack.log(crate::harness::Svc::SmtpGateway)
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    for (addr, subject) in [
        ("bob@example.test", "over starttls"),
        ("alice@example.test", "over tls"),
    ] {
        loop {
            let list = stack.messages(addr);
            if let Some((uid, _, s)) = list.first() {
                assert_eq!(s, subject);
                let body = stack.cli_ok(&["message", "get", addr, &uid.to_string()]);
                let body = String::from_utf8_lossy(&body);
                assert!(body.contains("with ESMTPSA (TLSv1.3"), "{body}");
                break;
            }
            assert!(Instant::now() < deadline, "{addr} never got its message");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
