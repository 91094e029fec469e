//! The submission roles (STARTTLS on 587, implicit TLS on 465), AUTH and its
//! limits, sender checks, and the ESMTP extensions, with the fake backend:
//! Python's smtplib, swaks, and raw sockets for the attacks.

use std::sync::atomic::Ordering;

use mailfleet_proto::v1::DsnRet;
use smtp_gateway::Role;
use smtp_gateway::metrics::OutcomeLabel;

use crate::support::{FakeBackend, PASSWORD, Raw, Server, USER, config, python};

/// Python preamble: a TLS context that accepts the self-signed certificate.
const PY: &str = r#"
import os, smtplib, socket, ssl
PORT = int(os.environ["PORT"])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
"#;

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_submission_starttls_login_relay_and_sender_checks() {
    let backend = FakeBackend::default();
    let server = Server::start_tls(&config(&[]), backend.clone(), Role::Submission).await;
    let out = python(
        server.port,
        &format!(
            r#"{PY}
s = smtplib.SMTP("127.0.0.1", PORT, local_hostname="laptop.example")
s.ehlo()
assert s.has_extn("starttls")
assert not s.has_extn("auth"), "no AUTH offered before TLS"
code, _ = s.mail("user@local.test")
assert code == 530, code
s.rset()
s.starttls(context=ctx)
s.ehlo()
assert not s.has_extn("starttls")
assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
code, _ = s.mail("user@local.test")
assert code == 530, ("AUTH required before MAIL", code)
s.rset()
try:
    s.login("user@local.test", "wrong")
    raise SystemExit("bad password accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535, e
s.login("user@local.test", "secret")
msg = "From: Alias <alias@local.test>\r\nTo: friend@remote.example\r\nSubject: t\r\n\r\nhello\r\n"
refused = s.sendmail("user+tag@local.test", ["friend@remote.example", "x@local.test"], msg)
assert refused == {{}}, refused
code, _ = s.mail("boss@local.test")
assert code == 553, ("MAIL FROM not owned", code)
s.rset()
try:
    s.sendmail("user@local.test", ["x@local.test"], "From: boss@local.test\r\n\r\nhi\r\n")
    raise SystemExit("forged From: accepted")
except smtplib.SMTPDataError as e:
    assert e.smtp_code == 553, e
print("ok")
s.quit()
"#
        ),
    )
    .await;
    assert_eq!(out.trim(), "ok");
    let jobs = backend.0.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1, "the forged From: was not queued");
    let job = &jobs[0];
    assert_eq!(job.return_path, "user+tag@local.test");
    assert_eq!(job.auth_user, USER);
    let rcpts: Vec<&str> = job.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(
        rcpts,
        ["friend@remote.example", "x@local.test"],
        "relay when authenticated"
    );
    let bodies = backend.0.bodies.lock().unwrap().clone();
    let body = String::from_utf8(bodies[0].1.clone()).unwrap();
    assert!(
        body.contains("with ESMTPSA (TLSv1.3 TLS13_"),
        "TLS version and cipher in Received: {body}"
    );
    assert_eq!(backend.0.aborted.load(Ordering::SeqCst), 1);
    let label = |outcome| OutcomeLabel {
        listener: "submission",
        outcome,
    };
    let m = &server.gateway.metrics;
    assert_eq!(m.auth.get_or_create(&label("success")).get(), 1);
    // smtplib's login() tries PLAIN, then LOGIN, with the wrong password.
    assert_eq!(m.auth.get_or_create(&label("failure")).get(), 2);
    assert_eq!(m.tls.get_or_create(&label("tls1.3")).get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_submissions_implicit_tls_auth_login_and_smtputf8() {
    let backend = FakeBackend::default();
    let server = Server::start_tls(&config(&[]), backend.clone(), Role::Submissions).await;
    let out = python(
        server.port,
        &format!(
            r#"{PY}
s = smtplib.SMTP_SSL("127.0.0.1", PORT, context=ctx, local_hostname="laptop.example")
s.ehlo()
assert s.has_extn("smtputf8") and not s.has_extn("starttls")
s.user, s.password = "user@local.test", "secret"
code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
assert code == 235, code
msg = "From: user@local.test\r\nTo: jörg@local.test\r\nSubject: grüße\r\n\r\nüber\r\n".encode()
refused = s.sendmail("user@local.test", ["jörg@local.test"], msg, mail_options=["SMTPUTF8"])
assert refused == {{}}, refused
print("ok")
s.quit()
"#
        ),
    )
    .await;
    assert_eq!(out.trim(), "ok");
    let jobs = backend.0.jobs.lock().unwrap().clone();
    assert_eq!(jobs[0].recipients[0].address, "jörg@local.test");
    assert!(jobs[0].smtputf8, "SMTPUTF8 travels on the job for relaying");
    let body = String::from_utf8(backend.0.bodies.lock().unwrap()[0].1.clone()).unwrap();
    assert!(body.contains("with UTF8SMTPSA (TLSv1.3"), "{body}");
    assert!(body.ends_with("Subject: grüße\r\n\r\nüber\r\n"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn plaintext_auth_is_refused_unless_allowed_and_failures_lock_out() {
    // Without TLS and without allow_plaintext_auth: 538, and MAIL says why.
    let server = Server::start(&config(&[]), FakeBackend::default()).await;
    let plain_submission = Server::start_gateway(
        &config(&[]),
        smtp_gateway::Gateway::new(
            smtp_gateway::Settings::from_config(&config(&[])),
            FakeBackend::default(),
            smtp_gateway::Metrics::default(),
        ),
        Role::Submission,
    )
    .await;
    let mut c = Raw::greeted(plain_submission.port).await;
    let ehlo = c.cmd("EHLO c.example").await;
    assert!(
        !ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    let token = b64(&format!("\0{USER}\0{PASSWORD}"));
    assert!(
        c.cmd(&format!("AUTH PLAIN {token}"))
            .await
            .starts_with("538 5.7.11")
    );
    assert!(
        c.cmd("MAIL FROM:<user@local.test>")
            .await
            .starts_with("530 5.7.0")
    );
    plain_submission.stop().await;
    server.stop().await;

    // Allowed.
    let cfg = config(&[("allow_plaintext_auth", "true")]);
    let backend = FakeBackend::default();
    let gateway = smtp_gateway::Gateway::new(
        smtp_gateway::Settings::from_config(&cfg),
        backend.clone(),
        smtp_gateway::Metrics::default(),
    );
    let server = Server::start_gateway(&cfg, gateway, Role::Submission).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO c.example").await.contains("AUTH PLAIN LOGIN"));
    assert!(c.cmd("AUTH CRAM-MD5").await.starts_with("504 5.5.4"));
    // AUTH LOGIN step by step, a wrong password.
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.cmd(&b64(USER)).await, "334 UGFzc3dvcmQ6\r\n");
    assert!(c.cmd(&b64("nope")).await.starts_with("535 5.7.8"));
    // Cancelled and malformed exchanges.
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 \r\n");
    assert!(c.cmd("*").await.starts_with("501 5.0.0"));
    assert!(c.cmd("AUTH PLAIN !!!").await.starts_with("501 5.5.2"));
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{USER}\0bad"))))
            .await
            .starts_with("535 5.7.8")
    );
    // mailstore's login guard says locked: a temporary refusal, even with
    // the right password (the guard itself is tested against mailstore in
    // tests/e2e's security tests).
    backend.0.auth_locked.store(true, Ordering::SeqCst);
    assert!(
        c.cmd(&format!("AUTH PLAIN {token}"))
            .await
            .starts_with("454 4.7.0")
    );
    server.stop().await;

    // Right password, plaintext allowed: 235, then a second AUTH is 503.
    let server = Server::start_gateway(
        &cfg,
        smtp_gateway::Gateway::new(
            smtp_gateway::Settings::from_config(&cfg),
            FakeBackend::default(),
            smtp_gateway::Metrics::default(),
        ),
        Role::Submission,
    )
    .await;
    let mut c = Raw::greeted(server.port).await;
    c.cmd("EHLO c.example").await;
    assert!(
        c.cmd(&format!("AUTH PLAIN {token}"))
            .await
            .starts_with("235 2.7.0")
    );
    assert!(
        c.cmd(&format!("AUTH PLAIN {token}"))
            .await
            .starts_with("503 5.5.1")
    );
    assert!(
        c.cmd("MAIL FROM:<alias@local.test>")
            .await
            .starts_with("250 2.1.0")
    );
    server.stop().await;
}

/// CVE-2011-0411: commands sent in plaintext right behind STARTTLS must be
/// discarded, never run inside the TLS session; the session starts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_pipelined_after_starttls_is_discarded() {
    let backend = FakeBackend::default();
    let server = Server::start_tls(&config(&[]), backend.clone(), Role::Mx).await;
    let out = python(
        server.port,
        &format!(
            r#"{PY}
sock = socket.create_connection(("127.0.0.1", PORT))
def reply(f):
    lines = []
    while True:
        line = f.readline()
        lines.append(line)
        if line[3:4] != b"-":
            return b"".join(lines)
f = sock.makefile("rb", buffering=0)
assert reply(f).startswith(b"220 ")
sock.sendall(b"EHLO x.example\r\n")
assert b"STARTTLS" in reply(f)
sock.sendall(b"STARTTLS\r\nEHLO x.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<x@local.test>\r\n")
r = reply(f)
assert r.startswith(b"220 2.0.0"), r
tls = ctx.wrap_socket(sock, server_hostname="localhost")
g = tls.makefile("rb", buffering=0)
tls.sendall(b"NOOP\r\n")
r = reply(g)
assert r.startswith(b"250 2.0.0"), ("injected commands were answered", r)
tls.sendall(b"MAIL FROM:<a@remote.example>\r\n")
r = reply(g)
assert r.startswith(b"503 5.5.1"), ("the session did not start over", r)
tls.sendall(b"EHLO x.example\r\n")
r = reply(g)
assert b"STARTTLS" not in r, r
tls.sendall(b"STARTTLS\r\n")
assert reply(g).startswith(b"503"), "no second STARTTLS"
print("ok")
"#
        ),
    )
    .await;
    assert_eq!(out.trim(), "ok");
    assert!(backend.0.jobs.lock().unwrap().is_empty());
    server.stop().await;
}

/// BDAT (RFC 3030) with 8-bit binary content: stored byte for byte, and a
/// smuggling attempt inside a chunk is just data.
#[tokio::test]
async fn bdat_binary_is_stored_byte_for_byte() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    let ehlo = c.cmd("EHLO c.example").await;
    for ext in ["CHUNKING", "BINARYMIME", "SMTPUTF8", "DSN"] {
        assert!(ehlo.contains(ext), "{ext} in {ehlo}");
    }
    // A chunk outside a transaction is read, dropped and refused.
    c.send(b"BDAT 5\r\nHELLO").await;
    assert!(c.reply().await.starts_with("503 5.5.1"));
    assert!(c.cmd("NOOP").await.starts_with("250"), "still in step");

    assert!(
        c.cmd("MAIL FROM:<a@remote.example> BODY=BINARYMIME")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
    assert!(
        c.cmd("DATA").await.starts_with("503 5.5.1"),
        "BINARYMIME needs BDAT"
    );
    let chunk1: &[u8] = b"Subject: bin\r\n\r\n\x00\x01\xff\n.\n\r.\r\xc3";
    let chunk2: &[u8] = b"\r\n.\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<y@local.test>\r\n";
    let mut wire = format!("BDAT {}\r\n", chunk1.len()).into_bytes();
    wire.extend_from_slice(chunk1);
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", chunk2.len()).as_bytes());
    wire.extend_from_slice(chunk2);
    wire.extend_from_slice(b"NOOP\r\n");
    c.send(&wire).await;
    let r1 = c.reply().await;
    assert!(
        r1.starts_with(&format!("250 2.0.0 {} octets", chunk1.len())),
        "{r1}"
    );
    let r2 = c.reply().await;
    assert!(r2.starts_with("250 2.0.0 Ok: queued"), "{r2}");
    assert!(c.reply().await.starts_with("250 2.0.0 Ok"));

    let bodies = backend.0.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0].1;
    let mut expected = chunk1.to_vec();
    expected.extend_from_slice(chunk2);
    assert!(body.starts_with(b"Received: "));
    assert!(body.ends_with(&expected), "byte for byte");
    let jobs = backend.0.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1, "no smuggled second message");
    assert_eq!(jobs[0].body_type, "BINARYMIME");
    assert_eq!(jobs[0].recipients.len(), 1);

    // RSET in the middle of chunks drops the body.
    c.cmd("MAIL FROM:<a@remote.example>").await;
    c.cmd("RCPT TO:<x@local.test>").await;
    c.send(b"BDAT 3\r\nabc").await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("503"), "no DATA after BDAT");
    assert!(c.cmd("RSET").await.starts_with("250"));
    c.send(b"BDAT 0 LAST\r\n").await;
    assert!(c.reply().await.starts_with("503"));
    assert_eq!(backend.0.jobs.lock().unwrap().len(), 1);
    assert_eq!(backend.0.aborted.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn dsn_parameters_ride_on_the_job_and_utf8_needs_smtputf8() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    c.cmd("EHLO c.example").await;
    assert!(
        c.cmd("MAIL FROM:<a@remote.example> RET=HDRS ENVID=QQ314159")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<jörg@local.test>")
            .await
            .starts_with("553 5.6.7")
    );
    assert!(
        c.cmd("RCPT TO:<x@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+2Bold@local.test")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    assert!(
        c.cmd("Subject: dsn\r\n\r\nbody\r\n.")
            .await
            .starts_with("250")
    );
    let job = backend.0.jobs.lock().unwrap()[0].clone();
    assert_eq!(job.envid, "QQ314159");
    assert_eq!(job.ret, DsnRet::Hdrs as i32);
    assert_eq!(job.recipients[0].notify, 1 | 2);
    assert_eq!(job.recipients[0].orcpt, "rfc822;x+old@local.test");
    assert_eq!(job.auth_user, "");
    server.stop().await;
}

/// swaks (Debian) over plain MX, STARTTLS submission and implicit TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_over_plain_starttls_and_implicit_tls() {
    if tokio::process::Command::new("swaks")
        .arg("--version")
        .output()
        .await
        .is_err()
    {
        panic!(
            "swaks is not installed (apt-get install swaks libio-socket-ssl-perl libauthen-sasl-perl)"
        );
    }
    let backend = FakeBackend::default();
    let mx = Server::start(&config(&[]), backend.clone()).await;
    let submission = Server::start_tls(&config(&[]), backend.clone(), Role::Submission).await;
    let submissions = Server::start_tls(&config(&[]), backend.clone(), Role::Submissions).await;
    let swaks = |port: u16, extra: &[&str]| {
        let mut cmd = tokio::process::Command::new("swaks");
        cmd.args(["--server", "127.0.0.1", "--port", &port.to_string()])
            .args(["--helo", "swaks.example", "--timeout", "20"])
            .args(extra);
        cmd
    };
    let auth = [
        "--auth",
        "LOGIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        USER,
        "--to",
        "friend@remote.example",
        "--header",
        "From: user@local.test",
    ];
    let runs: Vec<(u16, Vec<&str>)> = vec![
        (
            mx.port,
            vec![
                "--from",
                "a@remote.example",
                "--to",
                "x@local.test",
                "--pipeline",
            ],
        ),
        (submission.port, [&["--tls"][..], &auth[..]].concat()),
        (
            submissions.port,
            [&["--tls-on-connect"][..], &auth[..]].concat(),
        ),
    ];
    for (port, args) in runs {
        let out = swaks(port, &args).output().await.unwrap();
        assert!(
            out.status.success(),
            "swaks {args:?}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let jobs = backend.0.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[1].auth_user, USER);
    assert_eq!(jobs[2].recipients[0].address, "friend@remote.example");
    mx.stop().await;
    submission.stop().await;
    submissions.stop().await;
}
