//! One POP3 connection's I/O: implicit TLS (995) or STLS (110), reading
//! bounded command lines with an idle timeout, writing replies (batched
//! while pipelined commands are waiting), streaming RETR/TOP bodies from
//! object storage with byte-stuffing, and the goodbye on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_blob::{BlobError, READ_CHUNK};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::listener::Handler;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use crate::Shared;
use crate::line::{Line, read_line};
use crate::maildrop::{self, Maildrop};
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
    /// Body chunks of RETR and TOP: allocated by the first, on the
    /// session's thread, and reused by the next.
    chunk: Vec<u8>,
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
        chunk: Vec::new(),
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
        let idle_until = Instant::now() + shared.idle_timeout;
        // Waiting for the next command is where a long session renews its
        // maildrop lease: only the wait for its first octets is cut short
        // for that (a buffered read can resume; a half-read line could not).
        while io.stream.buffer().is_empty() {
            let renew_at = session.renew_at();
            let until = renew_at.map_or(idle_until, |at| at.min(idle_until));
            let ready = tokio::select! {
                _ = shutdown.cancelled() => {
                    io.out.extend_from_slice(session::SHUTDOWN.as_bytes());
                    io.flush().await?;
                    return Ok(None);
                }
                ready = tokio::time::timeout_at(until, io.stream.fill_buf()) => ready.map(|r| r.map(|_| ())),
            };
            match ready {
                // Data, or the end of the stream, which read_line reports.
                Ok(r) => {
                    r?;
                    break;
                }
                Err(_) if until < idle_until => session.renew_lease().await,
                Err(_) => {
                    io.out.extend_from_slice(session::IDLE.as_bytes());
                    io.flush().await?;
                    return Ok(None);
                }
            }
        }
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                io.out.extend_from_slice(session::SHUTDOWN.as_bytes());
                io.flush().await?;
                return Ok(None);
            }
            read = tokio::time::timeout_at(idle_until, read_line(&mut io.stream, &mut line, shared.max_line)) => read,
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

/// RETR/TOP: reads the body's first chunk from object storage first so a
/// failure can still be a `-ERR`, then streams the served prefix (the
/// Return-Path line) and the body with byte-stuffing, chunk by chunk,
/// through one buffer the session allocates on its own thread and reuses
/// for every chunk (the blocking pool that reads local files allocates
/// nothing). A failure mid-stream closes the connection (a partial response
/// must not look complete). A body that takes longer than a lease renewal
/// period to send renews the lease between chunks.
async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    io: &mut Io<S>,
    uid: u32,
    size: u64,
    top: Option<u32>,
) -> std::io::Result<()> {
    let shared = &session.shared;
    let session::State::Transaction(drop) = &mut session.state else {
        io.out
            .extend_from_slice(b"-ERR command not valid in this state\r\n");
        return Ok(());
    };
    let Maildrop {
        account,
        messages,
        lock,
        ..
    } = &mut **drop;
    let Ok(i) = messages.binary_search_by_key(&uid, |m| m.uid) else {
        io.out.extend_from_slice(b"-ERR no such message\r\n");
        return Ok(());
    };
    let message = &messages[i];
    let body_len = size.saturating_sub(message.prefix.len() as u64);
    let want = usize::try_from(body_len).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
    io.chunk.clear();
    io.chunk.reserve(want);
    let mut body = match shared.blobs.reader(&message.blob_id) {
        Ok(b) => b,
        Err(error) => {
            io.out.extend_from_slice(body_error(&error).as_bytes());
            return Ok(());
        }
    };
    if let Err(error) = body.read(&mut io.chunk).await {
        io.out.extend_from_slice(body_error(&error).as_bytes());
        return Ok(());
    }
    match top {
        None => {
            io.out
                .extend_from_slice(format!("+OK {size} octets\r\n").as_bytes());
        }
        Some(_) => io.out.extend_from_slice(b"+OK top of message follows\r\n"),
    }
    let mut out = Emit {
        stuffer: Stuffer::default(),
        cut: top.map(TopCut::new),
        sent: 0,
    };
    let mut done = out.feed(&message.prefix, &mut io.out) || out.feed(&io.chunk, &mut io.out);
    while !done {
        if io.out.len() >= FLUSH_AT {
            io.flush().await?;
        }
        if lock.renew_due() {
            maildrop::renew(&shared.client, account, lock).await;
        }
        // TOP stops here once it has its lines.
        done = match body.read(&mut io.chunk).await {
            Ok(true) => out.feed(&io.chunk, &mut io.out),
            Ok(false) => true,
            Err(error) => {
                tracing::warn!(%error, uid, "Body read failed during RETR; closing.");
                io.flush().await?;
                return Err(std::io::Error::other("body read failed"));
            }
        };
    }
    let Emit { stuffer, sent, .. } = out;
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

/// The octets of a RETR or TOP on their way out: TOP's cut, then
/// byte-stuffing.
struct Emit {
    stuffer: Stuffer,
    cut: Option<TopCut>,
    sent: u64,
}

impl Emit {
    /// Appends the part of `data` that goes out; true once TOP has all it
    /// wants.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        let data = match self.cut.as_mut() {
            Some(cut) => cut.take(data),
            None => data,
        };
        self.sent += data.len() as u64;
        self.stuffer.feed(data, out);
        self.cut.as_ref().is_some_and(TopCut::done)
    }
}

fn body_error(error: &BlobError) -> String {
    if error.is_not_found() {
        tracing::warn!(%error, "A message body is missing from object storage.");
        return "-ERR message was removed\r\n".into();
    }
    tracing::warn!(%error, "Failed to read a message body.");
    "-ERR [SYS/TEMP] mail storage temporarily unavailable, try again later\r\n".into()
}
