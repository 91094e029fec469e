//! Deadlines on every read and write: a client that stalls a TLS handshake,
//! trickles a line, stops reading or idles cannot hold its session (and its
//! connection slot) past MAILFLEET_IMAP_TIMEOUT.

use std::io::Read;

use super::support::*;

/// Reads until the server closes; everything it said on the way.
fn rest(raw: &mut Raw) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = raw.line();
        if l.is_empty() {
            return lines;
        }
        lines.push(l);
    }
}

fn short(config: &mut mailfleet_runtime::Config) {
    config.imap_timeout = std::time::Duration::from_millis(300);
}

/// 100 clients that ask for STARTTLS and then never start the handshake
/// are all closed, and their slots (all the per-IP limit holds) come back:
/// a new client gets in and logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_starttls_handshakes_are_closed_and_free_their_slots() {
    let env = start_with(|c| {
        short(c);
        c.max_connections_per_ip = 100;
    })
    .await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut stalled: Vec<Raw> = (0..100)
            .map(|i| {
                let mut c = Raw::connect(port);
                let ok = c.cmd(&format!("s{i}"), "STARTTLS");
                assert!(ok[0].starts_with(&format!("s{i} OK")), "{ok:?}");
                c
            })
            .collect();
        for c in &mut stalled {
            assert_eq!(c.line(), "", "closed without a handshake");
        }
        let mut fresh = Raw::connect(port);
        fresh.ok("a1", &format!("LOGIN {USER} {PASS}"));
        fresh.ok("a2", "LOGOUT");
    })
    .await
    .unwrap();
}

/// RFC 9051 5.4: IDLE ends with BYE after the timeout, also when the client
/// has sent part of a line (a `D` without `ONE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ends_with_bye_after_the_timeout() {
    let env = start_with(short).await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        for partial in [&b""[..], b"D"] {
            let mut c = Raw::connect(port);
            c.ok("a1", &format!("LOGIN {USER} {PASS}"));
            c.ok("a2", "SELECT INBOX");
            c.send(b"a3 IDLE\r\n");
            assert!(c.line().starts_with("+ "));
            c.send(partial);
            let said = rest(&mut c);
            assert!(
                said.iter().any(|l| l.starts_with("* BYE")),
                "{partial:?}: {said:?}"
            );
        }
    })
    .await
    .unwrap();
}

/// A client that sends a command and never reads the answer (its receive
/// window full) is dropped by the write deadline: with a per-IP limit of
/// one, a new connection then gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_dropped() {
    let env = start_with(|c| {
        short(c);
        c.max_connections_per_ip = 1;
    })
    .await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut c = Raw::connect(port);
        c.ok("a1", &format!("LOGIN {USER} {PASS}"));
        // About 640 KiB.
        let body = format!(
            "Subject: big\r\n\r\n{}",
            format!("{}\r\n", "x".repeat(78)).repeat(1 << 13)
        );
        c.send(format!("a2 APPEND INBOX {{{}+}}\r\n", body.len()).as_bytes());
        c.send(body.as_bytes());
        c.send(b"\r\n");
        c.until("a2");
        c.ok("a3", "SELECT INBOX");
        // ~64 MiB of answers: far more than the socket buffers hold.
        let mut fetches = Vec::new();
        for i in 0..100 {
            fetches.extend_from_slice(format!("f{i} FETCH 1 BODY.PEEK[]\r\n").as_bytes());
        }
        c.send(&fetches);
        // Never read `c`: wait until the server has let go of its slot.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the stalled session still holds the only slot"
            );
            let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut greeting = [0u8; 4];
            let mut s = std::io::BufReader::new(s);
            if s.read_exact(&mut greeting).is_ok() && &greeting == b"* OK" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(c);
    })
    .await
    .unwrap();
}
