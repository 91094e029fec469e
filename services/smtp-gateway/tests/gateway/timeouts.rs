//! Timers that bound a whole step, not each byte: a client that trickles a
//! command line or a DATA body a byte at a time cannot keep a session.

use std::time::Duration;

use crate::support::*;

/// Sends `bytes` one at a time, `pause` apart, until they are all sent or
/// the server has closed the connection.
fn trickle(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    bytes: &'static [u8],
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        for b in bytes {
            if writer.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    })
}

async fn reply(reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), reader.read_line(&mut line))
        .await
        .expect("a reply within 20s")
        .unwrap();
    line
}

/// RFC 5321 4.5.3.2.7: the command timeout bounds the whole line. Each byte
/// comes well within it, the line as a whole does not: 421 and closed.
#[tokio::test]
async fn command_line_sent_a_byte_at_a_time_times_out() {
    let server = Server::start(
        &config(&[("smtp_timeout", "300ms")]),
        FakeBackend::default(),
    )
    .await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (read, write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    assert!(reply(&mut reader).await.starts_with("220 "));
    let writer = trickle(
        write,
        b"EHLO a-rather-long-client-name.trickle.example\r\n",
        Duration::from_millis(50),
    );
    let answer = reply(&mut reader).await;
    assert!(answer.starts_with("421 4.4.2"), "{answer}");
    assert_eq!(reply(&mut reader).await, "", "closed after the 421");
    writer.abort();
    server.stop().await;
}

/// RFC 5321 4.5.3.2.5: the DATA timeout bounds each data block, so a body
/// that trickles in a byte at a time times out too.
#[tokio::test]
async fn data_sent_a_byte_at_a_time_times_out() {
    let backend = FakeBackend::default();
    let server = Server::start(
        &config(&[("smtp_timeout", "30s"), ("smtp_data_timeout", "300ms")]),
        backend.clone(),
    )
    .await;
    let mut client = Raw::greeted(server.port).await;
    for line in [
        "EHLO c.example",
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<x@local.test>",
    ] {
        assert!(client.cmd(line).await.starts_with("250"));
    }
    assert!(client.cmd("DATA").await.starts_with("354"));
    let (read, write) = client.into_stream().into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let writer = trickle(
        write,
        b"Subject: slow\r\n\r\nThis body arrives one byte at a time, forever.\r\n.\r\n",
        Duration::from_millis(50),
    );
    let answer = reply(&mut reader).await;
    assert!(answer.starts_with("421 4.4.2"), "{answer}");
    assert_eq!(reply(&mut reader).await, "", "closed after the 421");
    writer.abort();
    assert!(backend.0.jobs.lock().unwrap().is_empty());
    server.stop().await;
}
