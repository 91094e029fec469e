//! Input a client can send before or after login that must not cost the
//! server more than a bound: commands as a whole, not only their lines.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use crate::support::*;

/// Reads lines until the server closes the connection (EOF or reset).
fn lines_until_closed(raw: &mut Raw) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        match raw.reader.read_line(&mut l) {
            Ok(0) | Err(_) => return lines,
            Ok(_) => lines.push(l),
        }
    }
}

/// Issue 15: many lines joined by empty literals (`{0+}`) once made one
/// command grow without limit before login. The whole command is bounded
/// (64 KiB before login): the server answers BAD and BYE and closes long
/// before the client has sent much more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_login_command_of_empty_literals_is_bounded() {
    let env = start().await;
    // A small, fixed send buffer: what the client manages to send is then
    // close to what the server took in, not what loopback buffers absorb.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    let stream = socket
        .connect(([127, 0, 0, 1], env.imap).into())
        .await
        .unwrap()
        .into_std()
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut raw = Raw {
            reader: std::io::BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(raw.line().starts_with("* OK"));
        let mut writer = raw.writer.try_clone().unwrap();
        const CAP: usize = 2 * 1024 * 1024;
        let sender = std::thread::spawn(move || {
            let line = format!("{} {{0+}}\r\n", " a".repeat(3990)).into_bytes();
            let mut accepted = 0usize;
            let mut data = b"a X {0+}\r\n".to_vec();
            while accepted < CAP {
                let mut rest = data.as_slice();
                while !rest.is_empty() {
                    match writer.write(rest) {
                        Ok(0) | Err(_) => return accepted,
                        Ok(n) => {
                            accepted += n;
                            rest = &rest[n..];
                        }
                    }
                }
                data = line.clone();
            }
            // A server that took it all gets the command's end and a
            // LOGOUT: their answers are the marker that it did.
            let _ = writer.write_all(b"\r\nz LOGOUT\r\n");
            accepted
        });
        let lines = lines_until_closed(&mut raw);
        let accepted = sender.join().unwrap();
        assert!(lines.iter().any(|l| l.starts_with("a BAD ")), "{lines:?}");
        assert!(
            lines.last().is_some_and(|l| l.starts_with("* BYE ")),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("z ")), "{lines:?}");
        // The bound, one line and what the sockets buffer.
        assert!(accepted < 1024 * 1024, "server accepted {accepted} octets");
    })
    .await
    .unwrap();
}

/// Small literals before login (LOGIN with a literal user and password,
/// synchronising and not) still work within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_login_literals_still_work() {
    let env = start().await;
    let port = env.imap;
    tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port);
        // A literal announced without a tag: nothing to wait for.
        raw.send(b"{5}\r\n");
        assert!(raw.line().starts_with("* BAD"));
        raw.send(format!("a1 LOGIN {{{}}}\r\n", USER.len()).as_bytes());
        assert!(raw.line().starts_with("+ "));
        raw.send(format!("{USER} {{{}}}\r\n", PASS.len()).as_bytes());
        assert!(raw.line().starts_with("+ "));
        raw.send(format!("{PASS}\r\n").as_bytes());
        let lines = raw.until("a1");
        assert!(lines.last().unwrap().starts_with("a1 OK "), "{lines:?}");
        raw.ok("a2", "LOGOUT");

        let mut raw = Raw::connect(port);
        raw.send(
            format!(
                "b1 LOGIN {{{}+}}\r\n{USER} {{{}+}}\r\n{PASS}\r\n",
                USER.len(),
                PASS.len()
            )
            .as_bytes(),
        );
        let lines = raw.until("b1");
        assert!(lines.last().unwrap().starts_with("b1 OK "), "{lines:?}");
        raw.ok("b2", "NOOP");
    })
    .await
    .unwrap();
}

/// Issue 16 item 10: a client that leaves during a SEARCH whose BODY key
/// reads every body ends the work in mailstore as well: the frontend drops
/// the call, and mailstore stops reading bodies (on the old code the search
/// ran to its end for nobody, reading all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_stops_in_mailstore_when_the_client_leaves() {
    const MESSAGES: usize = 40;
    let env = start().await;
    let port = env.imap;
    let raw = tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port);
        raw.ok("a", &format!("LOGIN {USER} {PASS}"));
        // 1 MiB of text each, none holding what is searched for.
        let mut message = String::from(
            "From: a@example.test\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n",
        );
        while message.len() < 1024 * 1024 {
            message.push_str("the quick brown fox jumps over the lazy dog 0123456789\r\n");
        }
        for i in 0..MESSAGES {
            raw.send(format!("b{i} APPEND INBOX {{{}+}}\r\n", message.len()).as_bytes());
            raw.send(message.as_bytes());
            raw.send(b"\r\n");
            let lines = raw.until(&format!("b{i}"));
            assert!(lines.last().unwrap().contains(" OK "), "{lines:?}");
        }
        raw.ok("c", "SELECT INBOX");
        raw.send(b"d SEARCH BODY \"not-in-any-message\"\r\n");
        raw
    })
    .await
    .unwrap();

    let reads = "mailfleet_store_search_reads_total";
    let cancelled = "mailfleet_store_search_cancelled_total";
    let deadline = Instant::now() + Duration::from_secs(60);
    // The search has started reading bodies; then the client leaves.
    while metric(env.store_http, reads).await < 1.0 {
        assert!(Instant::now() < deadline, "the search never read a body");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(raw);
    while metric(env.store_http, cancelled).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "mailstore's search was not cancelled; {} bodies read",
            metric(env.store_http, reads).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let read = metric(env.store_http, reads).await;
    assert!(
        read < MESSAGES as f64,
        "{read} of {MESSAGES} bodies read for a client that left"
    );
}
