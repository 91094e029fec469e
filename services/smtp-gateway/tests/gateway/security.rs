//! Issue 16 (security): repeated header fields on submission, bare line
//! endings in BDAT, over-quota recipients at RCPT, forged
//! Authentication-Results, with the fake backend and raw sockets.

use smtp_gateway::Role;

use crate::support::{FakeBackend, PASSWORD, Raw, Server, USER, config};

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A submission listener that takes AUTH without TLS, and a client logged
/// in as `USER`.
async fn submission(backend: &FakeBackend) -> (Server<FakeBackend>, Raw) {
    let cfg = config(&[("allow_plaintext_auth", "true")]);
    let gateway = smtp_gateway::Gateway::new(
        smtp_gateway::Settings::from_config(&cfg),
        backend.clone(),
        smtp_gateway::Metrics::default(),
    );
    let server = Server::start_gateway(&cfg, gateway, Role::Submission).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO laptop.example").await.starts_with("250"));
    let token = b64(&format!("\0{USER}\0{PASSWORD}"));
    let auth = c.cmd(&format!("AUTH PLAIN {token}")).await;
    assert!(auth.starts_with("235"), "{auth}");
    (server, c)
}

/// Sends one message with DATA; returns the final reply.
async fn send_data(c: &mut Raw, from: &str, rcpt: &str, message: &[u8]) -> String {
    let mail = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    assert!(mail.starts_with("250"), "{mail}");
    let rcpt = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(message).await;
    c.send(b"\r\n.\r\n").await;
    c.reply().await
}

/// Two From fields, the first not the user's: the sender check used to read
/// the last, ENVELOPE the first. Every singleton field of RFC 5322 3.6 given
/// twice is refused on submission; one of each is fine.
#[tokio::test]
async fn submission_refuses_repeated_from_and_other_singleton_fields() {
    let backend = FakeBackend::default();
    let (server, mut c) = submission(&backend).await;
    let two_froms = b"From: ceo@local.test\r\nFrom: user@local.test\r\nTo: x@remote.example\r\nSubject: pay\r\n\r\nwire the money";
    let reply = send_data(&mut c, USER, "x@remote.example", two_froms).await;
    assert!(reply.starts_with("550 5.6.0"), "{reply}");
    assert!(reply.contains("From"), "{reply}");

    // The other way round: the first (the one ENVELOPE and DKIM read) is
    // the user's, the second not: refused all the same.
    let swapped = b"From: user@local.test\r\nFrom: ceo@local.test\r\n\r\nx";
    let reply = send_data(&mut c, USER, "x@remote.example", swapped).await;
    assert!(reply.starts_with("550 5.6.0"), "{reply}");

    for field in ["Sender", "Date", "To", "Subject", "Message-ID"] {
        let message = format!(
            "From: user@local.test\r\n{field}: one@local.test\r\n{}: two@local.test\r\n\r\nx",
            field.to_ascii_lowercase()
        );
        let reply = send_data(&mut c, USER, "x@remote.example", message.as_bytes()).await;
        assert!(reply.starts_with("550 5.6.0"), "{field}: {reply}");
        assert!(reply.contains(field), "{field}: {reply}");
    }

    let fine = b"From: user@local.test\r\nTo: a@remote.example\r\nCc: b@remote.example\r\nCc: c@remote.example\r\nSubject: ok\r\n\r\nhello";
    let reply = send_data(&mut c, USER, "x@remote.example", fine).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued"), "{reply}");
    assert_eq!(backend.0.jobs.lock().unwrap().len(), 1, "only the last one");
    server.stop().await;
}

/// Sends `chunks` as BDAT commands (the last with LAST), pipelined; returns
/// the replies.
async fn send_bdat(c: &mut Raw, chunks: &[&[u8]]) -> Vec<String> {
    let mut wire = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { " LAST" } else { "" };
        wire.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
    }
    c.send(&wire).await;
    let mut replies = Vec::new();
    for _ in chunks {
        replies.push(c.reply().await);
    }
    replies
}

/// BDAT bodies follow DATA's rule: a bare CR or LF is refused with
/// `550 5.6.11` after the last chunk, on the MX role and on submission, and
/// nothing is queued; a CRLF split across two chunks is fine. (BINARYMIME
/// bodies stay binary: `bdat_binary_is_stored_byte_for_byte`.)
#[tokio::test]
async fn bdat_refuses_bare_cr_and_lf_like_data() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO c.example").await.starts_with("250"));
    let smuggle: &[u8] = b"Subject: s\r\n\r\nhi\r.\rMAIL FROM:<evil@remote.example>\r\n";
    // DATA first, for the reference answer.
    let data = send_data(&mut c, "a@remote.example", "x@local.test", smuggle).await;
    assert!(data.starts_with("550 5.6.11"), "{data}");
    let cases: [&[&[u8]]; 4] = [
        &[smuggle],
        &[b"Subject: s\r\n\r\nline\n.\nmore\r\n"],
        &[b"Subject: s\r\n\r\nhi\r", b".\r\n"],
        &[b"Subject: s\r\n\r\nends in a bare CR\r"],
    ];
    for chunks in cases {
        assert!(
            c.cmd("MAIL FROM:<a@remote.example>")
                .await
                .starts_with("250")
        );
        assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
        let replies = send_bdat(&mut c, chunks).await;
        let (last, first) = replies.split_last().unwrap();
        for r in first {
            assert!(r.starts_with("250 2.0.0"), "{r}");
        }
        assert!(
            last.starts_with("550 5.6.11"),
            "{chunks:?}: {last} (DATA said {data})"
        );
        assert!(c.cmd("NOOP").await.starts_with("250"), "still in step");
    }
    // A CRLF split between two chunks is no bare line ending.
    assert!(
        c.cmd("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
    let replies = send_bdat(&mut c, &[b"Subject: s\r\n\r\nhi\r", b"\nthere\r\n"]).await;
    assert!(
        replies[1].starts_with("250 2.0.0 Ok: queued"),
        "{replies:?}"
    );
    assert_eq!(backend.0.jobs.lock().unwrap().len(), 1);
    server.stop().await;

    // Submission: the same rule.
    let backend = FakeBackend::default();
    let (server, mut c) = submission(&backend).await;
    assert!(
        c.cmd(&format!("MAIL FROM:<{USER}>"))
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<x@remote.example>").await.starts_with("250"));
    let replies = send_bdat(&mut c, &[b"From: user@local.test\r\n\r\na\r.\rb\r\n"]).await;
    assert!(replies[0].starts_with("550 5.6.11"), "{replies:?}");
    assert!(backend.0.jobs.lock().unwrap().is_empty());
    server.stop().await;
}

/// Forged `Authentication-Results` naming this host (`mx.local.test`) are
/// removed from the stored message on the MX port with verification off,
/// whatever their case, comments or folding, through DATA and BDAT; one
/// naming another host stays, as does the body.
#[tokio::test]
async fn forged_authentication_results_are_stripped_with_verification_off() {
    let backend = FakeBackend::default();
    let server = Server::start(&config(&[]), backend.clone()).await;
    let mut c = Raw::greeted(server.port).await;
    assert!(c.cmd("EHLO c.example").await.starts_with("250"));
    let forged: &[u8] = b"Authentication-Results: mx.local.test; spf=pass\r\n\
authentication-RESULTS: (looks (legit)) MX.Local.Test; dkim=pass header.d=bank.example\r\n\
Authentication-Results:\r\n\tmx.local.test;\r\n\tdmarc=pass\r\n\
Authentication-Results: other.example; spf=fail\r\n\
Subject: x\r\n\
\r\n\
Authentication-Results: mx.local.test; in the body stays";
    let kept: &[u8] = b"Authentication-Results: other.example; spf=fail\r\n\
Subject: x\r\n\
\r\n\
Authentication-Results: mx.local.test; in the body stays\r\n";
    let reply = send_data(&mut c, "a@remote.example", "x@local.test", forged).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued"), "{reply}");

    assert!(
        c.cmd("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
    // Split inside a forged field, in its folding and at the blank line.
    let mut whole = forged.to_vec();
    whole.extend_from_slice(b"\r\n");
    let replies = send_bdat(&mut c, &[&whole[..30], &whole[30..130], &whole[130..]]).await;
    assert!(
        replies[2].starts_with("250 2.0.0 Ok: queued"),
        "{replies:?}"
    );

    let bodies = backend.0.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    for (_, body) in &bodies {
        let text = String::from_utf8_lossy(body);
        assert!(body.starts_with(b"Received: "), "{text}");
        assert!(body.ends_with(kept), "{text}");
        let forged_left = text
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("authentication-results"))
            .count();
        assert_eq!(forged_left, 2, "the other host's and the body's: {text}");
    }
    server.stop().await;
}
