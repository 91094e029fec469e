//! Socket I/O of one SMTP session: TLS (implicit on submissions, STARTTLS
//! elsewhere), the bounded input buffer, reply batching for PIPELINING,
//! timeouts, shutdown, and streaming DATA and BDAT chunks into the body
//! intake. Everything protocol-shaped is delegated to `codec` and `session`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::listener::Handler;
use mailfleet_runtime::stream::MaybeTls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use crate::backend::Backend;
use crate::codec::command::{self, BodyType};
use crate::codec::data::{DataDecoder, LineEndingCheck, Progress};
use crate::codec::line::{LineEvent, LineReader};
use crate::codec::reply::{self, Reply};
use crate::gateway::{Endpoint, Gateway};
use crate::metrics::OutcomeLabel;
use crate::role::Role;
use crate::session::{
    self, ChunkStep, DataOutcome, Intake, Outcome, Session, TlsInfo, Transaction,
};

/// Most bytes taken from the socket per read; with the line limit this
/// bounds the input buffer of a session.
const READ_CHUNK: usize = 16 * 1024;

/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A data block (RFC 5321 4.5.3.2.5): this many body octets must arrive
/// within the DATA timeout, so a body cannot trickle in a byte at a time.
const DATA_BLOCK: usize = READ_CHUNK;

impl<B: Backend> Handler for Endpoint<B> {
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        serve(self.gateway.clone(), self.role, stream, peer, shutdown).await;
    }

    async fn refuse(self: Arc<Self>, stream: TcpStream) {
        refuse(&self.gateway, self.role, stream).await;
    }
}

/// A bare gateway serves the MX role (what tests and older callers use).
impl<B: Backend> Handler for Gateway<B> {
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        serve(self, Role::Mx, stream, peer, shutdown).await;
    }

    async fn refuse(self: Arc<Self>, stream: TcpStream) {
        refuse(&self, Role::Mx, stream).await;
    }
}

async fn serve<B: Backend>(
    gw: Arc<Gateway<B>>,
    role: Role,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let label = gw.metrics.listener(role);
    gw.metrics.connections.get_or_create(&label).inc();
    let _active = ActiveSession::new(&gw, role);
    let (stream, tls) = if role == Role::Submissions {
        // RFC 8314: TLS from the first byte.
        match handshake(&gw, role, stream).await {
            Some((stream, info)) => (Stream::Tls(Box::new(stream)), Some(info)),
            None => {
                ended(&gw, role, "tls_failed");
                return;
            }
        }
    } else {
        (Stream::Plain(stream), None)
    };
    let mut connection = Connection::new(gw.clone(), stream, peer, role, tls, shutdown);
    let outcome = match connection.run().await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::debug!(%error, "Session ended by an I/O error.");
            "error"
        }
    };
    tracing::debug!(outcome, "Session ended.");
    ended(&gw, role, outcome);
}

async fn refuse<B>(gw: &Gateway<B>, role: Role, mut stream: TcpStream) {
    gw.metrics
        .refused
        .get_or_create(&gw.metrics.listener(role))
        .inc();
    if role == Role::Submissions {
        // No TLS for a refused connection: just close it.
        return;
    }
    let bytes = reply::too_many_connections().to_bytes();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.write_all(&bytes)).await;
    let _ = stream.shutdown().await;
}

fn ended<B>(gw: &Gateway<B>, role: Role, outcome: &'static str) {
    gw.metrics
        .sessions_ended
        .get_or_create(&OutcomeLabel {
            listener: role.name(),
            outcome,
        })
        .inc();
}

/// Runs the server side of a TLS handshake, counting the result.
async fn handshake<B>(
    gw: &Gateway<B>,
    role: Role,
    stream: TcpStream,
) -> Option<(TlsStream<TcpStream>, TlsInfo)> {
    let Some(tls) = &gw.tls else {
        return None;
    };
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await;
    let outcome = |o: &'static str| OutcomeLabel {
        listener: role.name(),
        outcome: o,
    };
    match result {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let info = TlsInfo {
                // "TLSv1_3" as rustls names it, "TLSv1.3" as people write it.
                version: conn
                    .protocol_version()
                    .and_then(|v| v.as_str())
                    .unwrap_or("TLS")
                    .replace('_', "."),
                cipher: conn
                    .negotiated_cipher_suite()
                    .and_then(|c| c.suite().as_str())
                    .unwrap_or("unknown")
                    .to_owned(),
            };
            let version = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "tls1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "tls1.2",
                _ => "other",
            };
            gw.metrics.tls.get_or_create(&outcome(version)).inc();
            Some((stream, info))
        }
        Ok(Err(error)) => {
            gw.metrics.tls.get_or_create(&outcome("failed")).inc();
            tracing::info!(%error, "TLS handshake failed.");
            None
        }
        Err(_) => {
            gw.metrics.tls.get_or_create(&outcome("failed")).inc();
            tracing::info!("TLS handshake timed out.");
            None
        }
    }
}

/// Keeps the sessions gauge right however the session task ends.
struct ActiveSession<B> {
    gw: Arc<Gateway<B>>,
    role: Role,
}

impl<B> ActiveSession<B> {
    fn new(gw: &Arc<Gateway<B>>, role: Role) -> Self {
        gw.metrics
            .sessions
            .get_or_create(&gw.metrics.listener(role))
            .inc();
        Self {
            gw: gw.clone(),
            role,
        }
    }
}

impl<B> Drop for ActiveSession<B> {
    fn drop(&mut self) {
        self.gw
            .metrics
            .sessions
            .get_or_create(&self.gw.metrics.listener(self.role))
            .dec();
    }
}

/// The client connection, plain or encrypted.
type Stream = MaybeTls;

/// The next thing the client sent, seen from the command loop.
enum Input {
    Line(Vec<u8>),
    TooLong,
    Closed,
    TimedOut,
    ShuttingDown,
}

/// The result of waiting for more bytes.
enum Read {
    Data,
    Closed,
    TimedOut,
    ShuttingDown,
}

/// A BDAT body being received across chunks.
struct Chunked<W> {
    tx: Transaction,
    intake: Intake<W>,
    size: u64,
    too_big: bool,
    /// The DATA rule on line endings (bare CR or LF refused at the end);
    /// `None` for BODY=BINARYMIME, whose octets are binary (RFC 3030 3).
    line_endings: Option<LineEndingCheck>,
}

struct Connection<B: Backend> {
    gw: Arc<Gateway<B>>,
    stream: Stream,
    shutdown: CancellationToken,
    input: BytesMut,
    /// Replies not yet written: flushed only before the session waits for
    /// input, so pipelined commands get their replies in one write.
    output: Vec<u8>,
    lines: LineReader,
    session: Session,
    chunked: Option<Chunked<B::Writer>>,
    /// When the command line being read is due: set when the session starts
    /// waiting for it, so the timeout bounds the whole line, not each byte.
    line_deadline: Option<tokio::time::Instant>,
    /// When the current data block is due, and its octets so far.
    block: Option<(tokio::time::Instant, usize)>,
}

impl<B: Backend> Connection<B> {
    fn new(
        gw: Arc<Gateway<B>>,
        stream: Stream,
        peer: SocketAddr,
        role: Role,
        tls: Option<TlsInfo>,
        shutdown: CancellationToken,
    ) -> Self {
        let lines = LineReader::new(gw.settings.max_line_length);
        Self {
            gw,
            stream,
            shutdown,
            input: BytesMut::with_capacity(READ_CHUNK),
            output: Vec::with_capacity(512),
            lines,
            session: Session::with_role(peer, role, tls),
            chunked: None,
            line_deadline: None,
            block: None,
        }
    }

    /// Runs the session; returns how it ended, for the metrics.
    async fn run(&mut self) -> io::Result<&'static str> {
        let hostname = self.gw.settings.hostname.clone();
        self.push(reply::greeting(&hostname));
        let mut commands = 0usize;
        let outcome = loop {
            if self.shutdown.is_cancelled() {
                self.goodbye(reply::shutting_down(&hostname)).await?;
                break "shutdown";
            }
            let line = match self.next_line().await? {
                Input::Line(line) => line,
                Input::TooLong => {
                    commands += 1;
                    self.session.cancel_auth();
                    self.push(reply::line_too_long());
                    continue;
                }
                Input::Closed => break "closed",
                Input::TimedOut => {
                    self.goodbye(reply::timeout(&hostname)).await?;
                    break "timeout";
                }
                Input::ShuttingDown => {
                    self.goodbye(reply::shutting_down(&hostname)).await?;
                    break "shutdown";
                }
            };
            commands += 1;
            if commands > self.gw.settings.max_commands {
                self.goodbye(reply::too_many_commands(&hostname)).await?;
                break "limit";
            }
            if self.session.awaiting_auth_response() {
                let reply = self.session.auth_response(&line, &self.gw).await;
                self.push(reply);
                continue;
            }
            let command = match command::parse(&line) {
                Ok(command) => command,
                Err(reply) => {
                    self.push(reply);
                    continue;
                }
            };
            let span = tracing::info_span!("command", name = command.name());
            let outcome = self
                .session
                .apply(command, &self.gw)
                .instrument(span.clone())
                .await;
            // RSET, EHLO or an error ended a BDAT transaction: drop its body.
            if !self.session.is_chunking()
                && !matches!(outcome, Outcome::Chunk { .. })
                && let Some(chunked) = self.chunked.take()
            {
                chunked.intake.abort().await;
            }
            match outcome {
                Outcome::Reply(reply) => self.push(reply),
                Outcome::Close(reply) => {
                    self.goodbye(reply).await?;
                    break "quit";
                }
                Outcome::Data(tx) => {
                    if !self.receive_data(*tx).instrument(span).await? {
                        break "closed";
                    }
                }
                Outcome::StartTls => {
                    if !self.start_tls().await? {
                        break "tls_failed";
                    }
                }
                Outcome::Chunk { size, last, step } => {
                    if !self
                        .receive_chunk(size, last, step)
                        .instrument(span)
                        .await?
                    {
                        break "closed";
                    }
                }
            }
        };
        if let Some(chunked) = self.chunked.take() {
            chunked.intake.abort().await;
        }
        Ok(outcome)
    }

    /// Sends the last reply and closes.
    async fn goodbye(&mut self, reply: Reply) -> io::Result<()> {
        self.push(reply);
        self.flush().await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    fn push(&mut self, reply: Reply) {
        if reply.is_negative() {
            self.gw
                .metrics
                .rejected
                .get_or_create(&crate::metrics::CodeLabel {
                    listener: self.session.role.name(),
                    code: reply.code,
                })
                .inc();
        }
        reply.encode(&mut self.output);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let timeout = self.gw.settings.timeout;
        let write = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client does not read its replies",
                ));
            }
        }
        self.output.clear();
        Ok(())
    }

    /// RFC 3207: answer 220, throw away whatever the client sent after the
    /// command (CVE-2011-0411: commands injected in plaintext must never be
    /// run as if they came over TLS), then the handshake. False when the
    /// connection is over.
    async fn start_tls(&mut self) -> io::Result<bool> {
        self.push(reply::ready_for_tls());
        self.flush().await?;
        self.input.clear();
        self.lines = LineReader::new(self.gw.settings.max_line_length);
        let Some(tcp) = self.stream.take_plain() else {
            return Ok(false);
        };
        match handshake(&self.gw, self.session.role, tcp).await {
            Some((tls, info)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.session.tls_started(info);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Flushes the pending replies, then waits for more input. Only the
    /// command loop is `interruptible` by shutdown: a transaction in DATA
    /// finishes first, unless the drain deadline is about to expire. The
    /// timeout is the one of the step the session is in.
    async fn fill(&mut self, interruptible: bool) -> io::Result<Read> {
        self.flush().await?;
        let settings = &self.gw.settings;
        // RFC 5321 4.5.3.2: one timer per step. Only the command loop is
        // interruptible, so that is where the session waits for a command.
        let now = tokio::time::Instant::now();
        let deadline = if !interruptible {
            self.block.get_or_insert((now + settings.data_timeout, 0)).0
        } else {
            let timeout = if self.session.role.is_submission() && self.session.account.is_none() {
                settings.preauth_timeout
            } else {
                settings.timeout
            };
            *self.line_deadline.get_or_insert(now + timeout)
        };
        let drain_expired = self.gw.drain_expired.clone();
        let Self {
            stream,
            input,
            shutdown,
            ..
        } = self;
        input.reserve(READ_CHUNK);
        let mut limited = input.limit(READ_CHUNK);
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut limited));
        let result = if interruptible {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(Read::ShuttingDown),
                result = read => result,
            }
        } else {
            tokio::select! {
                _ = drain_expired.cancelled() => return Ok(Read::ShuttingDown),
                result = read => result,
            }
        };
        match result {
            Err(_) => Ok(Read::TimedOut),
            Ok(Ok(0)) => Ok(Read::Closed),
            Ok(Ok(n)) => {
                if !interruptible && let Some((_, got)) = &mut self.block {
                    *got += n;
                    if *got >= DATA_BLOCK {
                        // A whole block arrived in time: the next one starts.
                        self.block = None;
                    }
                }
                Ok(Read::Data)
            }
            Ok(Err(error)) => Err(error),
        }
    }

    async fn next_line(&mut self) -> io::Result<Input> {
        loop {
            let (consumed, event) = self.lines.poll(&self.input);
            let event = event.map(|event| match event {
                LineEvent::Line(line) => Input::Line(line.to_vec()),
                LineEvent::TooLong => Input::TooLong,
            });
            self.input.advance(consumed);
            if let Some(event) = event {
                // The next line gets its own deadline.
                self.line_deadline = None;
                return Ok(event);
            }
            match self.fill(true).await? {
                Read::Data => {}
                Read::Closed => return Ok(Input::Closed),
                Read::TimedOut => return Ok(Input::TimedOut),
                Read::ShuttingDown => return Ok(Input::ShuttingDown),
            }
        }
    }

    /// Waits for body bytes inside DATA or BDAT; `None` when the connection
    /// is over (after the goodbye on a timeout).
    async fn fill_body(&mut self) -> io::Result<Option<()>> {
        match self.fill(false).await? {
            Read::Data => Ok(Some(())),
            Read::Closed => Ok(None),
            Read::ShuttingDown => {
                // RFC 5321 3.8: 421 may be sent at any time; the client
                // keeps the message and tries again later.
                let hostname = self.gw.settings.hostname.clone();
                self.goodbye(reply::shutting_down(&hostname)).await?;
                Ok(None)
            }
            Read::TimedOut => {
                let hostname = self.gw.settings.hostname.clone();
                self.goodbye(reply::timeout(&hostname)).await?;
                Ok(None)
            }
        }
    }

    /// Answers 354, streams the body into storage up to the terminator and
    /// answers the transaction. Returns false when the connection is over.
    async fn receive_data(&mut self, tx: Transaction) -> io::Result<bool> {
        let gw = self.gw.clone();
        let label = gw.metrics.listener(tx.role);
        let mut intake = Intake::open(&tx, &gw).await;
        self.push(reply::start_data());
        self.block = None;

        let max = gw.settings.max_message_size;
        let mut too_big = false;
        let mut decoder = DataDecoder::new().with_max_line(gw.settings.max_text_line);
        let mut out = Vec::with_capacity(READ_CHUNK + 2);
        loop {
            if !self.input.is_empty() {
                out.clear();
                let consumed = match decoder.decode(&self.input, &mut out) {
                    Progress::Done { consumed } => consumed,
                    Progress::NeedMore => self.input.len(),
                };
                self.input.advance(consumed);
                gw.metrics
                    .bytes_received
                    .get_or_create(&label)
                    .inc_by(consumed as u64);
                // Past the limit the rest is read and dropped, so the reply
                // comes at the real end of the data.
                too_big |= decoder.decoded_len() > max;
                if !too_big {
                    intake.push(&out, &tx, &gw).await;
                }
                if decoder.is_done() {
                    break;
                }
            }
            match self.fill_body().await {
                Ok(Some(())) => {}
                Ok(None) => {
                    intake.abort().await;
                    return Ok(false);
                }
                Err(error) => {
                    intake.abort().await;
                    return Err(error);
                }
            }
        }
        let outcome = if too_big {
            DataOutcome::TooBig
        } else if decoder.saw_bare_line_ending() {
            DataOutcome::BareLineEnding
        } else if decoder.saw_long_line() {
            DataOutcome::LineTooLong
        } else if let Some(error) = intake.take_error() {
            DataOutcome::StoreFailed(error)
        } else {
            DataOutcome::Complete
        };
        let reply = session::data_complete(tx, intake, outcome, &gw).await;
        self.push(reply);
        Ok(true)
    }

    /// Reads the `size` octets of one BDAT chunk (RFC 3030) and answers it.
    /// The octets are taken verbatim (no dot-stuffing). A 7BIT or 8BITMIME
    /// body follows DATA's rule on line endings: a bare CR or LF anywhere
    /// gets `550 5.6.11` after the last chunk, so no `\r.\r` is ever
    /// queued whichever command carried it; BINARYMIME bodies are stored
    /// byte for byte. Returns false when the connection is over.
    async fn receive_chunk(&mut self, size: u64, last: bool, step: ChunkStep) -> io::Result<bool> {
        let gw = self.gw.clone();
        let max = gw.settings.max_message_size;
        if size > max.saturating_add(READ_CHUNK as u64) {
            // Reading that much only to drop it would tie the session up;
            // the stream cannot be resynchronised without it, so close.
            if let Some(chunked) = self.chunked.take() {
                chunked.intake.abort().await;
            }
            self.session.reset();
            self.goodbye(reply::message_too_big()).await?;
            return Ok(false);
        }
        let refusal = match step {
            ChunkStep::Start(tx) => {
                let intake = Intake::open(&tx, &gw).await;
                let line_endings =
                    (tx.envelope.body != BodyType::BinaryMime).then(LineEndingCheck::default);
                self.chunked = Some(Chunked {
                    tx: *tx,
                    intake,
                    size: 0,
                    too_big: false,
                    line_endings,
                });
                None
            }
            ChunkStep::Continue => None,
            ChunkStep::Discard(reply) => Some(reply),
        };
        let label = gw.metrics.listener(self.session.role);
        self.block = None;
        let mut remaining = size;
        while remaining > 0 {
            if self.input.is_empty() {
                match self.fill_body().await {
                    Ok(Some(())) => {}
                    Ok(None) => {
                        if let Some(chunked) = self.chunked.take() {
                            chunked.intake.abort().await;
                        }
                        return Ok(false);
                    }
                    Err(error) => {
                        if let Some(chunked) = self.chunked.take() {
                            chunked.intake.abort().await;
                        }
                        return Err(error);
                    }
                }
            }
            let take = (self.input.len() as u64).min(remaining) as usize;
            let data = self.input.split_to(take);
            remaining -= take as u64;
            gw.metrics
                .bytes_received
                .get_or_create(&label)
                .inc_by(take as u64);
            if refusal.is_some() {
                continue;
            }
            if let Some(chunked) = &mut self.chunked {
                chunked.size += take as u64;
                chunked.too_big |= chunked.size > max;
                let bare = match &mut chunked.line_endings {
                    Some(check) => {
                        check.push(&data);
                        check.saw_bare(false)
                    }
                    None => false,
                };
                // A refused body is still read to its end, not stored.
                if !chunked.too_big && !bare {
                    chunked.intake.push(&data, &chunked.tx, &gw).await;
                }
            }
        }
        if let Some(reply) = refusal {
            self.push(reply);
            return Ok(true);
        }
        let Some(chunked) = self.chunked.as_mut() else {
            self.push(reply::bad_sequence("Need MAIL and RCPT before BDAT"));
            return Ok(true);
        };
        if chunked.too_big && !last {
            // Refuse now and end the transaction: later chunks get 503.
            if let Some(chunked) = self.chunked.take() {
                chunked.intake.abort().await;
            }
            self.session.reset();
            self.push(reply::message_too_big());
            return Ok(true);
        }
        if !last {
            let size = chunked.size;
            self.push(reply::chunk_ok(size));
            return Ok(true);
        }
        let Some(mut chunked) = self.chunked.take() else {
            return Ok(true);
        };
        let outcome = if chunked.too_big {
            DataOutcome::TooBig
        } else if chunked
            .line_endings
            .as_ref()
            .is_some_and(|check| check.saw_bare(true))
        {
            DataOutcome::BareLineEnding
        } else if let Some(error) = chunked.intake.take_error() {
            DataOutcome::StoreFailed(error)
        } else {
            DataOutcome::Complete
        };
        let reply = session::data_complete(chunked.tx, chunked.intake, outcome, &gw).await;
        self.push(reply);
        Ok(true)
    }
}
