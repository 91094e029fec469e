//! One POP3 connection's I/O: implicit TLS (995) or STLS (110), reading
//! bounded command lines with an idle timeout, writing replies (batched
//! while pipelined commands are waiting), streaming RETR/TOP bodies from
//! mailstore with byte-stuffing, and the goodbye on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_proto::v1 as pb;
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::listener::Handler;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic::Code;
use tracing::Instrument;

use crate::Shared;
use crate::line::{Line, read_line};
use crate::proto::{self, Stuffer, TopCut};
use crate::session::{self, Action, Session};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Replies are written once this much is pending even while pipelining.
const FLUSH_AT: usize = 64 * 1024;

/// The handler of one listener: plain (with STLS) or implicit TLS.
pub(crate) struct Pop3Listener {
    pub shared: Arc<Shared>,
    pub implicit_tls: bool,
}

/// Keeps the open-sessions gauge right however the session ends.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics.sessions.dec();
    }
}

impl Handler for Pop3Listener {
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let shared = self.shared.clone();
        shared.metrics.connections.inc();
        shared.metrics.sessions.inc();
        let _open = Open(shared.clone());
        let mut session = Session::new(shared.clone(), peer, self.implicit_tls);
        let result = if self.implicit_tls {
            match handshake(&shared, stream).await {
                Some(tls) => drive(&mut session, tls, &shutdown, true).await.map(|_| ()),
                None => Ok(()),
            }
        } else {
            match drive(&mut session, stream, &shutdown, true).await {
                Ok(Some(plain)) => match handshake(&shared, plain).await {
                    Some(tls) => {
                        session.tls = true;
                        drive(&mut session, tls, &shutdown, false).await.map(|_| ())
                    }
                    None => Ok(()),
                },
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "POP3 connection ended with an I/O error.");
        }
        // A connection that ends without QUIT deletes nothing (RFC 1939 6).
        session.abandon().await;
    }

    async fn refuse(self: Arc<Self>, mut stream: TcpStream) {
        let refusal = stream.write_all(session::TOO_MANY.as_bytes());
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, refusal).await;
        let _ = stream.shutdown().await;
    }
}

async fn handshake(
    shared: &Shared,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let tls = shared.tls.as_ref()?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(error)) => {
            tracing::debug!(%error, "POP3 TLS handshake failed.");
            None
        }
        Err(_) => {
            tracing::debug!("POP3 TLS handshake timed out.");
            None
        }
    }
}

/// The reply buffer and the stream, with writes bounded by the idle timeout
/// so a client that stops reading cannot hold a session forever.
struct Io<S> {
    stream: BufReader<S>,
    out: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    async fn write_now(&mut self, data: &[u8]) -> std::io::Result<()> {
        let timeout = self.timeout;
        let inner = self.stream.get_mut();
        let write = async {
            inner.write_all(data).await?;
            inner.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let result = self.write_now(&out).await;
        self.out = out;
        self.out.clear();
        result
    }
}

/// Runs the command loop on `stream`. Returns the stream when the client
/// asked for STLS (the caller does the handshake and calls again).
async fn drive<S: AsyncRead + AsyncWrite + Unpin + Send>(
    session: &mut Session,
    stream: S,
    shutdown: &CancellationToken,
    greet: bool,
) -> std::io::Result<Option<S>> {
    let shared = session.shared.clone();
    let mut io = Io {
        stream: BufReader::new(stream),
        out: Vec::new(),
        timeout: shared.idle_timeout,
    };
    if greet {
        io.out.extend_from_slice(session::GREETING.as_bytes());
        io.flush().await?;
    }
    let mut line = Vec::new();
    loop {
        // Replies wait while pipelined commands are already buffered.
        if io.stream.buffer().is_empty() || io.out.len() >= FLUSH_AT {
            io.flush().await?;
        }
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                io.out.extend_from_slice(session::SHUTDOWN.as_bytes());
                io.flush().await?;
                return Ok(None);
            }
            read = tokio::time::timeout(shared.idle_timeout, read_line(&mut io.stream, &mut line, shared.max_line)) => read,
        };
        let Ok(read) = read else {
            io.out.extend_from_slice(session::IDLE.as_bytes());
            io.flush().await?;
            return Ok(None);
        };
        match read? {
            Line::Eof => return Ok(None),
            Line::TooLong => {
                io.out.extend_from_slice(session::TOO_LONG.as_bytes());
                continue;
            }
            Line::Complete => {}
        }
        let command = match proto::parse(&line) {
            Ok(c) => c,
            Err(e) => {
                shared.metrics.command("invalid");
                io.out.extend_from_slice(e.text().as_bytes());
                continue;
            }
        };
        let name = command.name();
        let span = tracing::debug_span!("command", command = name);
        let mut action = session.handle(command).instrument(span).await;
        if let Action::SaslChallenge = action {
            io.out.extend_from_slice(b"+ \r\n");
            io.flush().await?;
            let read = tokio::time::timeout(
                shared.idle_timeout,
                read_line(&mut io.stream, &mut line, shared.max_line),
            )
            .await;
            action = match read {
                Err(_) | Ok(Ok(Line::Eof)) => return Ok(None),
                Ok(Ok(Line::TooLong)) => {
                    Action::Reply("-ERR [AUTH] SASL response too long\r\n".into())
                }
                Ok(Ok(Line::Complete)) => session.sasl_response(&line).await,
                Ok(Err(e)) => return Err(e),
            };
        }
        match action {
            Action::Reply(text) => io.out.extend_from_slice(text.as_bytes()),
            Action::Close(text) => {
                io.out.extend_from_slice(text.as_bytes());
                io.flush().await?;
                let _ = io.stream.get_mut().shutdown().await;
                return Ok(None);
            }
            Action::StartTls => {
                io.out.extend_from_slice(b"+OK begin TLS negotiation\r\n");
                io.flush().await?;
                // Anything the client pipelined after STLS was sent in the
                // clear and is dropped (RFC 2595 / the STARTTLS injection
                // attack): only the handshake may follow.
                return Ok(Some(io.stream.into_inner()));
            }
            Action::Send { uid, size, top } => {
                send_message(session, &mut io, uid, size, top).await?;
            }
            Action::SaslChallenge => {
                io.out
                    .extend_from_slice(b"-ERR [AUTH] unexpected SASL state\r\n");
            }
        }
    }
}

/// RETR/TOP: opens the body stream first so a failure can still be a
/// `-ERR`, then streams it with byte-stuffing. A failure mid-stream closes
/// the connection (a partial response must not look complete).
async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(
    session: &Session,
    io: &mut Io<S>,
    uid: u32,
    size: u64,
    top: Option<u32>,
) -> std::io::Result<()> {
    let session::State::Transaction(drop) = &session.state else {
        io.out
            .extend_from_slice(b"-ERR command not valid in this state\r\n");
        return Ok(());
    };
    let shared = &session.shared;
    let mut client = shared.client.clone();
    let request = pb::GetBodyRequest {
        account: drop.account.clone(),
        mailbox: String::new(),
        uid,
        offset: 0,
        length: 0,
        include_expunged: false,
    };
    let mut stream = match client.get_body(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            io.out.extend_from_slice(body_error(&status).as_bytes());
            return Ok(());
        }
    };
    let first = match stream.message().await {
        Ok(Some(chunk)) => chunk,
        Ok(None) => pb::BodyChunk::default(),
        Err(status) => {
            io.out.extend_from_slice(body_error(&status).as_bytes());
            return Ok(());
        }
    };
    match top {
        None => {
            io.out
                .extend_from_slice(format!("+OK {size} octets\r\n").as_bytes());
        }
        Some(_) => io.out.extend_from_slice(b"+OK top of message follows\r\n"),
    }
    let mut stuffer = Stuffer::default();
    let mut cut = top.map(TopCut::new);
    let mut chunk = Some(first);
    let mut sent: u64 = 0;
    while let Some(c) = chunk.take() {
        let data: &[u8] = match cut.as_mut() {
            Some(cut) => cut.take(&c.data),
            None => &c.data,
        };
        sent += data.len() as u64;
        stuffer.feed(data, &mut io.out);
        if io.out.len() >= FLUSH_AT {
            io.flush().await?;
        }
        if cut.as_ref().is_some_and(TopCut::done) {
            // The rest of the body is not needed: dropping the stream
            // cancels it.
            break;
        }
        chunk = match stream.message().await {
            Ok(c) => c,
            Err(status) => {
                tracing::warn!(%status, uid, "Body stream failed during RETR; closing.");
                io.flush().await?;
                return Err(std::io::Error::other("body stream failed"));
            }
        };
    }
    stuffer.finish(&mut io.out);
    shared.metrics.retrieved_bytes.inc_by(sent);
    if top.is_none() && sent != size {
        tracing::warn!(
            uid,
            sent,
            size,
            "RETR sent a different size than LIST reported."
        );
    }
    Ok(())
}

fn body_error(status: &tonic::Status) -> String {
    if status.code() == Code::NotFound {
        // Another session (IMAP) expunged it since the snapshot.
        return "-ERR message was removed by another session\r\n".into();
    }
    tracing::warn!(%status, "Failed to read a message body.");
    "-ERR [SYS/TEMP] mail storage temporarily unavailable, try again later\r\n".into()
}
