//! The SMTP dialogue end to end on a socket, with the fake backend.

use std::sync::atomic::Ordering;

use smtp_gateway::Role;

use crate::support::{FakeBackend, Raw, Server, config, python};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_sends_a_message_to_two_local_recipients() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let out = python(
        server.port,
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), local_hostname="client.example")
code, ehlo = s.ehlo()
assert code == 250, ehlo
for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
    assert s.has_extn(ext), ext
msg = "From: a@remote.example\r\nSubject: hi\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
refused = s.sendmail("a@remote.example", ["x@local.test", "y@local.test"], msg)
assert refused == {}, refused
code, text = s.noop()
print(code)
s.quit()
"#,
    )
    .await;
    assert_eq!(out.trim(), "250");

    let jobs = backend.0.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.return_path, "a@remote.example");
    let rcpts: Vec<&str> = job.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["x@local.test", "y@local.test"]);
    assert_eq!(job.client_helo, "client.example");
    assert_eq!(job.client_ip, "127.0.0.1");
    assert!(uuid::Uuid::parse_str(&job.job_id).is_ok());
    let bodies = backend.0.bodies.lock().unwrap().clone();
    let (id, body) = &bodies[0];
    assert_eq!(&job.blob_id, id);
    assert_eq!(job.blob_size, body.len() as u64);
    let body = String::from_utf8(body.clone()).unwrap();
    assert!(
        body.starts_with("Received: from client.example (rDNS-less [127.0.0.1])\r\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!("with ESMTP id {}", job.job_id)),
        "{body}"
    );
    assert!(!body.contains("for <"), "two recipients: no 'for' clause");
    // smtplib stuffed the dots; the gateway removed exactly one.
    assert!(
        body.ends_with("\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\n.\r\n"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn recipient_checks_map_to_their_replies() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[("smtp_max_recipients", "2")]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO c.example").await.starts_with("250-"));
    assert!(
        c.cmd("MAIL FROM:<>").await.starts_with("250 2.1.0"),
        "null sender is allowed"
    );
    assert!(
        c.cmd("RCPT TO:<unknown@local.test>")
            .await
            .starts_with("550 5.1.1")
    );
    assert!(
        c.cmd("RCPT TO:<x@elsewhere.example>")
            .await
            .starts_with("554 5.7.1")
    );
    assert!(c.cmd("RCPT TO:<bad address>").await.starts_with("501"));
    backend.0.resolver_down.store(true, Ordering::SeqCst);
    assert!(
        c.cmd("RCPT TO:<x@local.test>")
            .await
            .starts_with("451 4.4.3")
    );
    backend.0.resolver_down.store(false, Ordering::SeqCst);
    assert!(
        c.cmd("RCPT TO:<x@local.test>")
            .await
            .starts_with("250 2.1.5")
    );
    assert!(
        c.cmd("RCPT TO:<y@local.test>")
            .await
            .starts_with("250 2.1.5")
    );
    assert!(
        c.cmd("RCPT TO:<z@local.test>")
            .await
            .starts_with("452 4.5.3")
    );
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(
        c.cmd("DATA").await.starts_with("503 5.5.1"),
        "RSET ended the transaction"
    );
    assert!(c.cmd("QUIT").await.starts_with("221 2.0.0"));
    assert!(c.closed().await);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_session_goes_on() {
    let server = Server::start(&config(&[]), FakeBackend::default()).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(
        c.cmd("MAIL FROM:<a@b.example>")
            .await
            .starts_with("503 5.5.1"),
        "MAIL before EHLO"
    );
    assert!(c.cmd("HELO c.example").await.starts_with("250 "));
    assert!(c.cmd("XYZZY").await.starts_with("500 5.5.1"));
    assert!(
        c.cmd("STARTTLS").await.starts_with("454 4.7.0"),
        "no TLS configured"
    );
    assert!(
        c.cmd("AUTH PLAIN").await.starts_with("502 5.5.1"),
        "no AUTH on the MX role"
    );
    assert!(c.cmd("MAIL FROM:a@b.example").await.starts_with("501"));
    assert!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=999999999999")
            .await
            .starts_with("552 5.3.4")
    );
    assert!(
        c.cmd("RCPT TO:<x@local.test>")
            .await
            .starts_with("503 5.5.1"),
        "RCPT before MAIL"
    );
    assert!(
        c.cmd("DATA").await.starts_with("503 5.5.1"),
        "DATA before MAIL"
    );
    assert!(c.cmd("MAIL FROM:<a@b.example>").await.starts_with("250"));
    assert!(
        c.cmd("MAIL FROM:<a@b.example>")
            .await
            .starts_with("503 5.5.1"),
        "nested MAIL"
    );
    assert!(
        c.cmd("DATA").await.starts_with("503 5.5.1"),
        "DATA before RCPT"
    );
    let long = format!("NOOP {}", "x".repeat(5000));
    assert!(c.cmd(&long).await.starts_with("500 5.5.2"));
    assert!(
        c.cmd("NOOP").await.starts_with("250 2.0.0"),
        "the session continues"
    );
    assert!(c.cmd("VRFY someone").await.starts_with("252 2.1.5"));
    assert!(c.cmd("HELP").await.starts_with("214"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    server.stop().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    c.send(
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@local.test>\r\n\
          RCPT TO:<unknown@local.test>\r\nDATA\r\n",
    )
    .await;
    assert!(c.reply().await.starts_with("250-"));
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    assert!(c.reply().await.starts_with("550 5.1.1"));
    assert!(c.reply().await.starts_with("354"));
    // The end of data and the next transaction in one write: the bytes after
    // the terminator are commands again, never message text.
    c.send(b"Subject: one\r\n\r\nbody\r\n.\r\nJUNK AFTER DATA\r\nMAIL FROM:<>\r\nRCPT TO:<x@local.test>\r\nDATA\r\n")
        .await;
    let queued = c.reply().await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    assert!(c.reply().await.starts_with("500 5.5.1"));
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    assert!(c.reply().await.starts_with("354"));
    c.send(b"two\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    let jobs = backend.0.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1].return_path, "");
    let bodies = backend.0.bodies.lock().unwrap().clone();
    let first = String::from_utf8_lossy(&bodies[0].1).to_string();
    assert!(
        first.ends_with("\r\n\r\nbody\r\n") && !first.contains("JUNK"),
        "{first}"
    );
    assert!(
        first.contains("for <x@local.test>;"),
        "one recipient: 'for' clause: {first}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bare_lf_dot_cannot_smuggle_a_second_message() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    for line in [
        "EHLO c.example",
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<x@local.test>",
    ] {
        assert!(c.cmd(line).await.starts_with("250"));
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(
        b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@b.example>\r\nRCPT TO:<victim@local.test>\r\n\
          DATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n",
    )
    .await;
    let reply = c.reply().await;
    assert!(reply.starts_with("550 5.6.11"), "{reply}");
    // Exactly one reply for all of that, and the session is usable.
    assert!(c.cmd("NOOP").await.starts_with("250 2.0.0"));
    assert!(backend.0.jobs.lock().unwrap().is_empty());
    assert_eq!(backend.0.aborted.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn oversized_message_is_refused_after_the_end_of_data() {
    let backend = FakeBackend::default();
    let server = Server::start(
        &config(&[("smtp_max_message_size", "1000")]),
        backend.clone(),
    )
    .await;
    let mut c = Raw::greeted(server.port).await;
    let ehlo = c.cmd("EHLO c.example").await;
    assert!(ehlo.contains("250-SIZE 1000\r\n"), "{ehlo}");
    for line in ["MAIL FROM:<a@b.example>", "RCPT TO:<x@local.test>"] {
        assert!(c.cmd(line).await.starts_with("250"));
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    let line = format!("{}\r\n", "y".repeat(98));
    for _ in 0..200 {
        c.send(line.as_bytes()).await;
    }
    c.send(b".\r\n").await;
    assert!(c.reply().await.starts_with("552 5.3.4"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(backend.0.jobs.lock().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn storage_or_publish_failure_answers_451_and_resets() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO c.example").await.starts_with("250"));
    for (flag, name) in [
        (&backend.0.fail_store, "store"),
        (&backend.0.fail_publish, "publish"),
    ] {
        flag.store(true, Ordering::SeqCst);
        for line in ["MAIL FROM:<a@b.example>", "RCPT TO:<x@local.test>"] {
            assert!(c.cmd(line).await.starts_with("250"));
        }
        assert!(c.cmd("DATA").await.starts_with("354"));
        let reply = c.cmd("body\r\n.").await;
        assert!(reply.starts_with("451 4.3.0"), "{name}: {reply}");
        assert!(
            c.cmd("RCPT TO:<x@local.test>").await.starts_with("503"),
            "{name}: reset"
        );
        flag.store(false, Ordering::SeqCst);
    }
    assert!(backend.0.jobs.lock().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn idle_client_times_out_and_command_limit_holds() {
    let server = Server::start(
        &config(&[("smtp_timeout", "300ms"), ("smtp_max_commands", "3")]),
        FakeBackend::default(),
    )
    .await;
    let mut idle = Raw::greeted(server.port).await;
    let reply = idle.reply().await;
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(idle.closed().await);

    let mut busy = Raw::greeted(server.port).await;
    for _ in 0..3 {
        assert!(busy.cmd("NOOP").await.starts_with("250"));
    }
    assert!(busy.cmd("NOOP").await.starts_with("421"));
    assert!(busy.closed().await);
    server.stop().await;
}

/// RFC 5321 4.5.3.2: a stalled DATA block times out on its own (shorter)
/// timer while a session between commands is still given its full one.
#[tokio::test]
async fn data_pause_times_out_on_its_own_timer() {
    let backend = FakeBackend::default();
    let server = Server::start(
        &config(&[("smtp_timeout", "30s"), ("smtp_data_timeout", "300ms")]),
        backend.clone(),
    )
    .await;
    // The waiting session's last command comes before any of the stalled
    // one's: when the stalled session is cut off, the waiting one has been
    // idle longer, so a data timer applied to it would have fired first.
    let mut waiting = Raw::greeted(server.port).await;
    assert!(waiting.cmd("EHLO c.example").await.starts_with("250"));

    let mut stalled = Raw::greeted(server.port).await;
    for line in [
        "EHLO c.example",
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<x@local.test>",
    ] {
        assert!(stalled.cmd(line).await.starts_with("250"));
    }
    assert!(stalled.cmd("DATA").await.starts_with("354"));
    stalled.send(b"Subject: half a message\r\n").await;
    let reply = stalled.reply().await;
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(stalled.closed().await);
    assert!(
        backend.0.jobs.lock().unwrap().is_empty(),
        "a cut-off message is never queued"
    );

    // Idle for longer than the data timeout, the session between commands
    // lives on: a 421 would already be waiting for this NOOP.
    let reply = waiting.cmd("NOOP").await;
    assert!(reply.starts_with("250"), "{reply}");
    server.stop().await;
}

/// Submission gives a client that has not authenticated a shorter command
/// timeout than the MX role gives its peers.
#[tokio::test]
async fn submission_before_auth_has_the_shorter_timeout() {
    let settings = [("smtp_timeout", "30s"), ("smtp_preauth_timeout", "300ms")];
    let submission =
        Server::start_tls(&config(&settings), FakeBackend::default(), Role::Submission).await;
    let mx = Server::start(&config(&settings), FakeBackend::default()).await;
    // The MX peer goes idle before the submission user does: when the user
    // is cut off, the peer has been idle longer.
    let mut peer = Raw::greeted(mx.port).await;
    assert!(peer.cmd("EHLO c.example").await.starts_with("250"));

    let mut user = Raw::greeted(submission.port).await;
    assert!(user.cmd("EHLO laptop.example").await.starts_with("250"));
    let reply = user.reply().await;
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(user.closed().await);

    // A 421 would already be waiting for this NOOP had the peer the
    // shorter timer.
    let reply = peer.cmd("NOOP").await;
    assert!(reply.starts_with("250"), "{reply}");
    submission.stop().await;
    mx.stop().await;
}

#[tokio::test]
async fn shutdown_says_421_to_idle_sessions_and_lets_data_finish() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut idle = Raw::greeted(server.port).await;
    assert!(idle.cmd("EHLO c.example").await.starts_with("250"));
    let mut busy = Raw::greeted(server.port).await;
    for line in [
        "EHLO c.example",
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<x@local.test>",
    ] {
        assert!(busy.cmd(line).await.starts_with("250"));
    }
    assert!(busy.cmd("DATA").await.starts_with("354"));
    busy.send(b"Subject: in flight\r\n\r\n").await;

    server.shutdown.cancel();
    let reply = idle.reply().await;
    assert!(reply.starts_with("421 4.3.2"), "{reply}");
    assert!(idle.closed().await);

    busy.send(b"still here\r\n.\r\n").await;
    assert!(
        busy.reply().await.starts_with("250 2.0.0"),
        "the transaction in DATA finished"
    );
    let reply = busy.reply().await;
    assert!(reply.starts_with("421 4.3.2"), "then the goodbye: {reply}");
    assert_eq!(backend.0.jobs.lock().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn too_many_connections_get_421() {
    let server = Server::start(
        &config(&[("max_connections_per_ip", "1")]),
        FakeBackend::default(),
    )
    .await;
    let _first = Raw::greeted(server.port).await;
    let mut second = Raw::connect(server.port).await;
    let reply = second.reply().await;
    assert!(reply.starts_with("421 4.7.0"), "{reply}");
    let label = server.gateway.metrics.listener(smtp_gateway::Role::Mx);
    assert_eq!(
        server.gateway.metrics.refused.get_or_create(&label).get(),
        1
    );
    server.stop().await;
}

/// The other smuggling variants (CVE-2023-51764 class): bare CR dot, mixed
/// endings, and a dot in the middle of a line. None ends the data early.
#[tokio::test]
async fn smuggling_variants_never_yield_a_second_message() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO c.example").await.starts_with("250"));
    let smuggled = "MAIL FROM:<evil@b.example>\r\nRCPT TO:<victim@local.test>\r\nDATA\r\n\
                    Subject: smuggled\r\n\r\nhi\r\n";
    for (separator, bare) in [
        ("\r.\r", true),
        ("\r\n.\n", true),
        ("\n.\r\n", true),
        ("\r.\r\n", true),
        // A dot in the middle of a line is text, not a terminator.
        ("\r\nhello .\r\n", false),
        ("\r\nx.\r\n", false),
    ] {
        let jobs_before = backend.0.jobs.lock().unwrap().len();
        assert!(c.cmd("MAIL FROM:<a@b.example>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        let body = format!("Subject: first\r\n\r\nhello{separator}{smuggled}.\r\n");
        c.send(body.as_bytes()).await;
        let reply = c.reply().await;
        if bare {
            assert!(reply.starts_with("550 5.6.11"), "{separator:?}: {reply}");
            assert_eq!(backend.0.jobs.lock().unwrap().len(), jobs_before);
        } else {
            assert!(reply.starts_with("250 2.0.0"), "{separator:?}: {reply}");
            let jobs = backend.0.jobs.lock().unwrap().clone();
            assert_eq!(jobs.len(), jobs_before + 1, "one message, not two");
            assert_eq!(jobs.last().unwrap().recipients.len(), 1);
        }
        // Exactly one reply for all of it: the next command is in step.
        assert!(
            c.cmd("NOOP").await.starts_with("250 2.0.0"),
            "{separator:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn text_lines_over_the_limit_are_refused_at_the_end_of_data() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[("smtp_max_text_line", "100")]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO c.example").await.starts_with("250"));
    for (line_len, ok) in [(100, true), (101, false)] {
        assert!(c.cmd("MAIL FROM:<a@b.example>").await.starts_with("250"));
        assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        let body = format!("Subject: long\r\n\r\n{}\r\n.", "x".repeat(line_len));
        let reply = c.cmd(&body).await;
        if ok {
            assert!(reply.starts_with("250 2.0.0"), "{reply}");
        } else {
            assert!(reply.starts_with("550 5.6.0"), "{reply}");
        }
    }
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert_eq!(backend.0.jobs.lock().unwrap().len(), 1);
    server.stop().await;
}
