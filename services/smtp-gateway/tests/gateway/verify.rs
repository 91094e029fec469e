//! Inbound SPF, DKIM and DMARC on the MX role against a DNS server of the
//! test's own on loopback (a tiny UDP responder), never the public DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::hickory_resolver::proto::op::{Message, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
use mail_auth::hickory_resolver::proto::rr::{RData, Record, RecordType};
use smtp_gateway::verify::Verifier;
use smtp_gateway::{Gateway, Metrics, Role, Settings};
use tokio::net::UdpSocket;

use crate::support::{FakeBackend, Raw, Server, config};

/// Answers TXT questions from a fixed table; NXDOMAIN for anything else.
struct TestDns {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestDns {
    async fn start(records: Vec<(String, String)>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let table: Arc<HashMap<String, String>> = Arc::new(records.into_iter().collect());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let id = query.metadata.id;
                let op = query.metadata.op_code;
                let mut answer = None;
                for q in &query.queries {
                    let name = q.name().to_string().trim_end_matches('.').to_lowercase();
                    if q.query_type() == RecordType::TXT
                        && let Some(text) = table.get(&name)
                    {
                        let chunks = text
                            .as_bytes()
                            .chunks(255)
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect();
                        answer = Some(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::TXT(TXT::new(chunks)),
                        ));
                    }
                }
                let mut response = match answer {
                    Some(record) => {
                        let mut m = Message::response(id, op);
                        m.add_answer(record);
                        m
                    }
                    None => Message::error_msg(id, op, ResponseCode::NXDomain),
                };
                for q in query.queries {
                    response.add_query(q);
                }
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Self { addr, task }
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn records(dkim_public: &[u8]) -> Vec<(String, String)> {
    use base64::Engine;
    let p = base64::engine::general_purpose::STANDARD.encode(dkim_public);
    [
        ("pass.example", "v=spf1 ip4:127.0.0.1 -all".to_owned()),
        ("_dmarc.pass.example", "v=DMARC1; p=reject".to_owned()),
        ("fail.example", "v=spf1 ip4:192.0.2.1 -all".to_owned()),
        ("_dmarc.fail.example", "v=DMARC1; p=reject".to_owned()),
        ("signed.example", "v=spf1 -all".to_owned()),
        ("_dmarc.signed.example", "v=DMARC1; p=reject".to_owned()),
        (
            "sel._domainkey.signed.example",
            format!("v=DKIM1; k=ed25519; p={p}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn server(dns: &TestDns, reject: bool) -> (Server<FakeBackend>, FakeBackend) {
    let backend = FakeBackend::default();
    let cfg = config(&[]);
    let gateway = Gateway::new(
        Settings::from_config(&cfg),
        backend.clone(),
        Metrics::default(),
    )
    .with_verifier(Some(
        Verifier::new(Some(dns.addr), "mx.local.test", reject).unwrap(),
    ));
    (
        Server::start_gateway(&cfg, gateway, Role::Mx).await,
        backend,
    )
}

/// Sends one message; returns the reply to the end of data.
async fn send(port: u16, mail_from: &str, message: &[u8]) -> String {
    let mut c = Raw::greeted(port).await;
    assert!(c.cmd("EHLO client.example").await.starts_with("250"));
    assert!(
        c.cmd(&format!("MAIL FROM:<{mail_from}>"))
            .await
            .starts_with("250")
    );
    assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(message).await;
    c.send(b".\r\n").await;
    c.reply().await
}

fn stored(backend: &FakeBackend) -> String {
    let bodies = backend.0.bodies.lock().unwrap();
    String::from_utf8_lossy(&bodies.last().unwrap().1).into_owned()
}

/// A message DKIM-signed (ed25519) for signed.example with the PKCS#8 key.
fn signed_message(der: &[u8], body: &str) -> Vec<u8> {
    let message =
        format!("From: a@signed.example\r\nTo: x@local.test\r\nSubject: signed\r\n\r\n{body}");
    let signature = DkimSigner::from_key(Ed25519Key::from_pkcs8_der(der).unwrap())
        .domain("signed.example")
        .selector("sel")
        .headers(["From", "To", "Subject"])
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_dkim_dmarc_pass_and_fail_against_a_loopback_dns() {
    let der = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&der).unwrap();
    let dns = TestDns::start(records(&key.public_key())).await;

    // Reject off: everything is accepted, the results are recorded.
    let (srv, backend) = server(&dns, false).await;
    let reply = send(
        srv.port,
        "a@pass.example",
        b"Authentication-Results: mx.local.test; dkim=pass (forged)\r\n\
          From: a@pass.example\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .await;
    assert!(reply.starts_with("250 "), "{reply}");
    let body = stored(&backend);
    assert!(!body.contains("forged"), "{body}");
    let (received, rest) = body.split_once("\r\nAuthentication-Results: ").unwrap();
    assert!(received.starts_with("Received: "), "{body}");
    assert!(rest.starts_with("mx.local.test;"), "{body}");
    assert!(body.contains("spf=pass"), "{body}");
    assert!(body.contains("dmarc=pass"), "{body}");

    let reply = send(
        srv.port,
        "a@fail.example",
        b"From: a@fail.example\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .await;
    assert!(reply.starts_with("250 "), "recorded only: {reply}");
    let body = stored(&backend);
    assert!(body.contains("spf=fail"), "{body}");
    assert!(body.contains("dmarc=fail"), "{body}");

    let reply = send(
        srv.port,
        "bounce@elsewhere.example",
        &signed_message(&der, "signed body\r\n"),
    )
    .await;
    assert!(reply.starts_with("250 "), "{reply}");
    let body = stored(&backend);
    assert!(body.contains("dkim=pass"), "{body}");
    assert!(body.contains("dmarc=pass"), "{body}");
    srv.stop().await;

    // Reject on: p=reject failures get 550 5.7.1; passes still go through.
    let (srv, backend) = server(&dns, true).await;
    let reply = send(
        srv.port,
        "a@fail.example",
        b"From: a@fail.example\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .await;
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    // A DKIM signature broken in transit, From: a p=reject domain.
    let mut tampered = signed_message(&der, "signed body\r\n");
    let len = tampered.len();
    tampered[len - 3] = b'X';
    let reply = send(srv.port, "bounce@elsewhere.example", &tampered).await;
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    // A spoofed From: of a p=reject domain with a passing envelope elsewhere.
    let reply = send(
        srv.port,
        "a@pass.example",
        b"From: ceo@signed.example\r\nSubject: pay\r\n\r\nnow\r\n",
    )
    .await;
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    let reply = send(
        srv.port,
        "a@pass.example",
        b"From: a@pass.example\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .await;
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(backend.0.jobs.lock().unwrap().len(), 1);
    srv.stop().await;
}

/// Issue 16 item 8: MX sessions that stop before the final dot hold no more
/// than the gateway's body memory budget between them (on the old code each
/// held up to `smtp_verify_max_size` for DKIM, whatever the others held).
/// The sessions over it wait, reading nothing more from their clients, and
/// go on as soon as memory is given back: every message is then verified
/// whole and accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stopping_before_the_final_dot_share_one_memory_budget() {
    const BUDGET: usize = 1024 * 1024;
    const HOLD: usize = 256 * 1024;
    const SESSIONS: usize = 12;
    let dns = TestDns::start(Vec::new()).await;
    let cfg = config(&[
        ("smtp_body_memory", &BUDGET.to_string()),
        ("smtp_verify_max_size", &HOLD.to_string()),
    ]);
    let backend = FakeBackend::default();
    let gateway = Gateway::new(
        Settings::from_config(&cfg),
        backend.clone(),
        Metrics::default(),
    )
    .with_verifier(Some(
        Verifier::new(Some(dns.addr), "mx.local.test", false).unwrap(),
    ));
    let srv = Server::start_gateway(&cfg, gateway, Role::Mx).await;

    // 200 KiB each: all twelve would need about 2.4 MiB held at once.
    let mut message = b"From: a@sender.example\r\nSubject: big\r\n\r\n".to_vec();
    while message.len() < 200 * 1024 {
        message.extend_from_slice(&[b'x'; 78]);
        message.extend_from_slice(b"\r\n");
    }
    let message = Arc::new(message);
    let (go, ready) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..SESSIONS {
        let mut c = Raw::greeted(srv.port).await;
        assert!(c.cmd("EHLO client.example").await.starts_with("250"));
        assert!(
            c.cmd("MAIL FROM:<a@sender.example>")
                .await
                .starts_with("250")
        );
        assert!(c.cmd("RCPT TO:<x@local.test>").await.starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        let (message, mut ready) = (message.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            c.send(&message).await;
            ready.wait_for(|go| *go).await.unwrap();
            c.send(b".\r\n").await;
            c.reply().await
        }));
    }

    let metrics = &srv.gateway.metrics;
    let received = || {
        metrics
            .bytes_received
            .get_or_create(&metrics.listener(Role::Mx))
            .get() as usize
    };
    // Wait until the budget makes a session wait; the budget is never
    // exceeded on the way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while metrics.body_memory_waiting.get() == 0 {
        let held = metrics.body_memory_bytes.get() as usize;
        assert!(held <= BUDGET, "{held} bytes held, budget {BUDGET}");
        assert!(
            std::time::Instant::now() < deadline,
            "no session waited: held {held}, received {}",
            received()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let held = metrics.body_memory_bytes.get() as usize;
    assert!(
        held <= BUDGET && held > BUDGET - HOLD,
        "a session waits while {held} of {BUDGET} bytes are held"
    );
    // The server stopped reading: it did not just stop counting. Each
    // session may have read one chunk beyond what it holds.
    assert!(
        received() <= BUDGET + SESSIONS * 16 * 1024 * 2,
        "{} bytes read from the clients",
        received()
    );

    // The final dots: the held sessions finish, the waiting ones go on.
    go.send(true).unwrap();
    drop(ready);
    for task in tasks {
        let reply = tokio::time::timeout(std::time::Duration::from_secs(120), task)
            .await
            .expect("every session ends")
            .unwrap();
        assert!(reply.starts_with("250 "), "{reply}");
    }
    {
        let bodies = backend.0.bodies.lock().unwrap();
        assert_eq!(bodies.len(), SESSIONS);
        for (_, body) in bodies.iter() {
            let text = String::from_utf8_lossy(body);
            assert!(
                text.contains("Authentication-Results: mx.local.test;"),
                "verified whole"
            );
            assert!(
                body.ends_with(&message[message.len() - 80..]),
                "stored whole"
            );
        }
    }
    assert_eq!(metrics.body_memory_bytes.get(), 0, "all given back");
    assert!(metrics.body_memory_waits.get() >= 1);
    srv.stop().await;
}
