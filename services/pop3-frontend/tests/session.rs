//! Starts pop3-frontend in-process on port-0 listeners and talks POP3 to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mailfleet_runtime::{CancellationToken, Config};
use mailfleet_testkit::{ADMIN_TOKEN, ScratchDb, Vhost};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

async fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut s))
        .await
        .expect("server answered in time")
        .unwrap();
    s
}

#[tokio::test]
async fn greets_answers_and_says_goodbye() {
    // Nothing listens on the mailstore URL: the service still serves its port
    // and reports itself not ready.
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mailstore_url = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let blobs = tempfile::tempdir().unwrap();
    let config = Config::load(vec![
        ("MAILFLEET_MAILSTORE_URL".to_string(), mailstore_url),
        (
            "MAILFLEET_BLOB_URL".to_string(),
            format!("file://{}", blobs.path().display()),
        ),
        ("MAILFLEET_SERVICE_TOKEN".to_string(), "t".to_string()),
        (
            "MAILFLEET_POP3_MAX_LINE_LENGTH".to_string(),
            "64".to_string(),
        ),
    ])
    .unwrap();
    let pop3 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (pop3_addr, http_addr) = (pop3.local_addr().unwrap(), http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(pop3_frontend::run(
        config,
        pop3_frontend::Listeners {
            pop3,
            pop3s: None,
            http,
        },
        shutdown.clone(),
    ));

    let mut c = BufReader::new(TcpStream::connect(pop3_addr).await.unwrap());
    assert_eq!(line(&mut c).await, "+OK mailfleet POP3 server ready\r\n");
    c.get_mut().write_all(b"USER demo\r\n").await.unwrap();
    assert_eq!(line(&mut c).await, "+OK send PASS\r\n");
    // mailstore is down: a temporary error, and the session goes on.
    c.get_mut().write_all(b"PASS pw\r\n").await.unwrap();
    assert!(line(&mut c).await.starts_with("-ERR [SYS/TEMP]"));
    c.get_mut().write_all(b"STLS\r\n").await.unwrap();
    assert!(line(&mut c).await.starts_with("-ERR"), "no TLS configured");
    let long = format!("a2 {}\r\n", "x".repeat(500));
    c.get_mut().write_all(long.as_bytes()).await.unwrap();
    assert_eq!(line(&mut c).await, "-ERR command line too long\r\n");
    c.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    assert!(line(&mut c).await.starts_with("+OK"));
    assert_eq!(line(&mut c).await, "", "connection closed after QUIT");

    let mut h = TcpStream::connect(http_addr).await.unwrap();
    h.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    h.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("mailstore"), "{response}");
    let mut h = TcpStream::connect(http_addr).await.unwrap();
    h.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    h.read_to_string(&mut metrics).await.unwrap();
    for name in [
        "mailfleet_pop3_connections_total 1",
        "mailfleet_pop3_commands_total{command=\"USER\"} 1",
        "mailfleet_pop3_logins_total 0",
        "mailfleet_pop3_retrieved_bytes_total",
        "mailfleet_pop3_auth_failures_total",
        "mailfleet_pop3_lock_conflicts_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    // A session open at shutdown gets -ERR.
    let mut c = BufReader::new(TcpStream::connect(pop3_addr).await.unwrap());
    line(&mut c).await;
    shutdown.cancel();
    assert!(
        line(&mut c)
            .await
            .starts_with("-ERR [SYS/TEMP] server shutting down")
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// pop3-frontend and mailstore in-process against a fresh database, a
/// temp-dir blob store and a RabbitMQ vhost of their own; dropping it
/// stops both and removes the database and the vhost.
struct Maildrop {
    pop3: std::net::SocketAddr,
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
    shutdown: CancellationToken,
    // Dropped after `Drop::drop` has stopped the services.
    _scratch: (ScratchDb, Vhost),
    _dir: tempfile::TempDir,
}

impl Drop for Maildrop {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

const USER: &str = "alice@example.test";
const PASS: &str = "secret-pw";

/// mailstore in-process with its database, vhost and blob directory, the
/// domain and [`USER`]; the config a pop3-frontend for it would use. With
/// `tls` (CA, certificate, key files) as both services' `grpc_tls_*`, the
/// internal plane runs over mutual TLS.
async fn start_mailstore(tls: Option<[String; 3]>) -> (Config, Maildrop) {
    let dir = tempfile::tempdir().unwrap();
    let (db, vhost) = (ScratchDb::new("pop3fe"), Vhost::new("pop3fe"));
    let mut config = mailfleet_testkit::config(&db, Some(&vhost), &dir.path().join("blobs"));
    if let Some([ca, cert, key]) = tls.clone() {
        (
            config.grpc_tls_ca,
            config.grpc_tls_cert,
            config.grpc_tls_key,
        ) = (ca, cert, key);
    }
    let grpc_tls = mailfleet_runtime::grpc::GrpcTls::from_config(&config).unwrap();
    let store = mailfleet_testkit::Mailstore::start(config.clone()).await;
    let grpc_addr = store.grpc;
    let grpc_url = match &tls {
        // The certificate names localhost.
        Some(_) => format!("https://localhost:{}", grpc_addr.port()),
        None => format!("http://{grpc_addr}"),
    };
    config.mailstore_url = grpc_url.clone();
    let (store_addr, shutdown) = (store.http, store.shutdown);
    let mut admin =
        mailfleet_runtime::grpc::admin_client_with(&grpc_url, ADMIN_TOKEN, &grpc_tls).unwrap();
    admin
        .add_domain(mailfleet_proto::v1::AddDomainRequest {
            name: "example.test".into(),
        })
        .await
        .unwrap();
    admin
        .add_account(mailfleet_proto::v1::AddAccountRequest {
            address: USER.into(),
            password: PASS.into(),
            quota_bytes: 0,
            quota_messages: 0,
        })
        .await
        .unwrap();
    let env = Maildrop {
        pop3: store_addr,
        http: store_addr,
        grpc: grpc_addr,
        shutdown,
        _scratch: (db, vhost),
        _dir: dir,
    };
    (config, env)
}

async fn start_with_mailstore() -> Maildrop {
    start_with_mailstore_tls(None).await
}

async fn start_with_mailstore_tls(tls: Option<[String; 3]>) -> Maildrop {
    let (config, mut env) = start_mailstore(tls).await;
    let pop3 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (pop3_addr, http_addr) = (pop3.local_addr().unwrap(), http.local_addr().unwrap());
    tokio::spawn(pop3_frontend::run(
        config,
        pop3_frontend::Listeners {
            pop3,
            pop3s: None,
            http,
        },
        env.shutdown.clone(),
    ));
    mailfleet_testkit::wait_ready::<()>("pop3-frontend", http_addr, None).await;
    env.pop3 = pop3_addr;
    env.http = http_addr;
    env
}

/// A connection that has sent USER and is ready for PASS.
async fn before_pass(addr: std::net::SocketAddr) -> BufReader<TcpStream> {
    let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert!(line(&mut c).await.starts_with("+OK"));
    c.get_mut()
        .write_all(format!("USER {USER}\r\n").as_bytes())
        .await
        .unwrap();
    assert!(line(&mut c).await.starts_with("+OK"));
    c
}

/// Waits until pop3-frontend's metrics show `sample` (a login waiting
/// for the lock is not visible to its client).
async fn wait_for_metric(http: std::net::SocketAddr, sample: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut h = TcpStream::connect(http).await.unwrap();
        h.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut metrics = String::new();
        h.read_to_string(&mut metrics).await.unwrap();
        if metrics.lines().any(|l| l == sample) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {sample:?} in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(c: &mut BufReader<TcpStream>, cmd: &str) {
    c.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .unwrap();
}

/// A login while another session holds the maildrop waits a moment for
/// the lock: a client that QUITs and logs in again at once (two fetchmail
/// runs back to back) is not refused with IN-USE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_waits_for_a_lock_being_released() {
    let env = start_with_mailstore().await;
    let mut first = before_pass(env.pop3).await;
    send(&mut first, &format!("PASS {PASS}")).await;
    assert!(line(&mut first).await.starts_with("+OK"));
    let mut second = before_pass(env.pop3).await;
    // The second PASS goes out while the first session holds the lock,
    // and the first QUITs once the server has the second waiting.
    send(&mut second, &format!("PASS {PASS}")).await;
    wait_for_metric(env.http, "mailfleet_pop3_lock_waits_total 1").await;
    send(&mut first, "QUIT").await;
    assert!(line(&mut first).await.starts_with("+OK"));
    let reply = line(&mut second).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    send(&mut second, "STAT").await;
    assert_eq!(line(&mut second).await, "+OK 0 0\r\n");
    send(&mut second, "QUIT").await;
    assert!(line(&mut second).await.starts_with("+OK"));
}

/// The wait is bounded: a session that keeps the maildrop still makes a
/// second login fail with IN-USE, and keeps its own session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_wait_is_in_use() {
    let env = start_with_mailstore().await;
    let mut first = before_pass(env.pop3).await;
    send(&mut first, &format!("PASS {PASS}")).await;
    assert!(line(&mut first).await.starts_with("+OK"));
    let mut second = before_pass(env.pop3).await;
    send(&mut second, &format!("PASS {PASS}")).await;
    let reply = line(&mut second).await;
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
    // The refused session stays in AUTHORIZATION; the holder goes on.
    send(&mut second, "STAT").await;
    assert!(line(&mut second).await.starts_with("-ERR"));
    send(&mut first, "STAT").await;
    assert_eq!(line(&mut first).await, "+OK 0 0\r\n");
    send(&mut first, "QUIT").await;
    assert!(line(&mut first).await.starts_with("+OK"));
}

/// A CA, and a certificate for localhost it signed (the services' own, for
/// serving and as clients), written as PEM files into `dir`.
fn internal_ca(dir: &std::path::Path) -> [String; 3] {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    [
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    ]
}

/// Issue 16 item 13: with `grpc_tls_*` set, pop3-frontend reaches mailstore
/// over mutual TLS (a POP3 login is a gRPC call), and mailstore answers no
/// caller that comes in plaintext or without a certificate from the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_plane_runs_over_mutual_tls() {
    use mailfleet_runtime::grpc::{self, GrpcTls};
    let certs = tempfile::tempdir().unwrap();
    let [ca, cert, key] = internal_ca(certs.path());
    let m = start_with_mailstore_tls(Some([ca.clone(), cert, key])).await;

    let mut c = before_pass(m.pop3).await;
    send(&mut c, &format!("PASS {PASS}")).await;
    let reply = line(&mut c).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    send(&mut c, "QUIT").await;

    let login = || mailfleet_proto::v1::AuthenticateRequest {
        username: USER.into(),
        password: PASS.into(),
        remote_ip: "127.0.0.1".into(),
        protocol: "test".into(),
    };
    let https = format!("https://localhost:{}", m.grpc.port());
    let no_cert = GrpcTls::from_paths(&ca, "", "").unwrap();
    let mut anonymous = grpc::mailstore_client_with(&https, "svc", &no_cert).unwrap();
    // Refused by the connection (the TLS handshake), never by a handler.
    let at_transport = [
        tonic::Code::Unavailable,
        tonic::Code::Cancelled,
        tonic::Code::Unknown,
    ];
    let refused = anonymous.authenticate(login()).await.unwrap_err();
    assert!(at_transport.contains(&refused.code()), "{refused}");
    let mut plain = grpc::mailstore_client(&format!("http://{}", m.grpc), "svc").unwrap();
    let refused = plain.authenticate(login()).await.unwrap_err();
    // An HTTP/2 preface sent to a TLS server: depending on when the
    // server's alert arrives, the client reports a closed connection or the
    // alert's bytes read as a bad HTTP/2 frame (Internal, "h2 protocol
    // error"); either way no handler answered.
    let protocol_error =
        refused.code() == tonic::Code::Internal && refused.message().contains("h2 protocol error");
    assert!(
        at_transport.contains(&refused.code()) || protocol_error,
        "{refused}"
    );
    // And a client never sends in plaintext what it was told to protect.
    assert!(grpc::mailstore_client_with(&format!("http://{}", m.grpc), "svc", &no_cert).is_err());
}
