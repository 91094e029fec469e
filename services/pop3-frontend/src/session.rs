//! One POP3 connection: greeting, command loop, goodbye.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::listener::Handler;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Metrics;
use crate::line::{Line, read_line};
use crate::reply;

pub(crate) struct Pop3 {
    pub max_line: usize,
    pub idle_timeout: Duration,
    pub metrics: Metrics,
}

/// Keeps the open-sessions gauge right however the session ends.
struct Open(Metrics);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.sessions.dec();
    }
}

impl Handler for Pop3 {
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        _peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        self.metrics.connections.inc();
        self.metrics.sessions.inc();
        let _open = Open(self.metrics.clone());
        if let Err(error) = self.session(stream, shutdown).await {
            tracing::debug!(%error, "POP3 session ended with an I/O error.");
        }
    }

    async fn refuse(self: Arc<Self>, mut stream: TcpStream) {
        let _ = stream.write_all(reply::TOO_MANY.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

impl Pop3 {
    async fn session(&self, stream: TcpStream, shutdown: CancellationToken) -> std::io::Result<()> {
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader);
        writer.write_all(reply::GREETING.as_bytes()).await?;
        let mut buf = Vec::new();
        loop {
            let read = tokio::select! {
                _ = shutdown.cancelled() => {
                    writer.write_all(reply::SHUTDOWN.as_bytes()).await?;
                    break;
                }
                read = tokio::time::timeout(self.idle_timeout, read_line(&mut reader, &mut buf, self.max_line)) => read,
            };
            let text = match read {
                Err(_elapsed) => {
                    writer.write_all(reply::IDLE.as_bytes()).await?;
                    break;
                }
                Ok(line) => match line? {
                    Line::Eof => break,
                    Line::TooLong => reply::TOO_LONG.to_owned(),
                    Line::Complete => {
                        self.metrics.commands.inc();
                        let answer = reply::answer(&buf);
                        if answer.close {
                            writer.write_all(answer.text.as_bytes()).await?;
                            break;
                        }
                        answer.text
                    }
                },
            };
            writer.write_all(text.as_bytes()).await?;
        }
        writer.shutdown().await
    }
}
