//! Starts pop3-frontend in-process on port-0 listeners and talks POP3 to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mailfleet_runtime::{CancellationToken, Config};
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
    let config = Config::load(vec![
        ("MAILFLEET_MAILSTORE_URL".to_string(), mailstore_url),
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
