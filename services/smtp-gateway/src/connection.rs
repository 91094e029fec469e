//! Socket I/O of one SMTP session: the bounded input buffer, reply batching
//! for PIPELINING, timeouts, shutdown, and streaming DATA into the body
//! writer. Everything protocol-shaped is delegated to `codec` and `session`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::listener::Handler;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::backend::{Backend, BackendError, BodyWriter};
use crate::codec::command;
use crate::codec::data::{DataDecoder, Progress};
use crate::codec::line::{LineEvent, LineReader};
use crate::codec::reply::{self, Reply};
use crate::gateway::Gateway;
use crate::session::{self, DataOutcome, Outcome, Session, Transaction};

/// Most bytes taken from the socket per read; with the line limit this
/// bounds the input buffer of a session.
const READ_CHUNK: usize = 16 * 1024;

impl<B: Backend> Handler for Gateway<B> {
    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        self.metrics.connections.inc();
        let _active = ActiveSession::new(&self);
        let mut connection = Connection::new(self.clone(), stream, peer, shutdown);
        match connection.run().await {
            Ok(()) => tracing::debug!("Session ended."),
            Err(error) => tracing::debug!(%error, "Session ended by an I/O error."),
        }
    }

    async fn refuse(self: Arc<Self>, mut stream: TcpStream) {
        self.metrics.refused.inc();
        let bytes = reply::too_many_connections().to_bytes();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.write_all(&bytes)).await;
        let _ = stream.shutdown().await;
    }
}

/// Keeps the sessions gauge right however the session task ends.
struct ActiveSession<B> {
    gw: Arc<Gateway<B>>,
}

impl<B> ActiveSession<B> {
    fn new(gw: &Arc<Gateway<B>>) -> Self {
        gw.metrics.sessions.inc();
        Self { gw: gw.clone() }
    }
}

impl<B> Drop for ActiveSession<B> {
    fn drop(&mut self) {
        self.gw.metrics.sessions.dec();
    }
}

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

struct Connection<B> {
    gw: Arc<Gateway<B>>,
    stream: TcpStream,
    shutdown: CancellationToken,
    input: BytesMut,
    /// Replies not yet written: flushed only before the session waits for
    /// input, so pipelined commands get their replies in one write.
    output: Vec<u8>,
    lines: LineReader,
    session: Session,
}

impl<B: Backend> Connection<B> {
    fn new(
        gw: Arc<Gateway<B>>,
        stream: TcpStream,
        peer: SocketAddr,
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
            session: Session::new(peer),
        }
    }

    async fn run(&mut self) -> io::Result<()> {
        let hostname = self.gw.settings.hostname.clone();
        self.push(reply::greeting(&hostname));
        let mut commands = 0usize;
        loop {
            if self.shutdown.is_cancelled() {
                return self.goodbye(reply::shutting_down(&hostname)).await;
            }
            let line = match self.next_line().await? {
                Input::Line(line) => line,
                Input::TooLong => {
                    commands += 1;
                    self.push(reply::line_too_long());
                    continue;
                }
                Input::Closed => return Ok(()),
                Input::TimedOut => return self.goodbye(reply::timeout(&hostname)).await,
                Input::ShuttingDown => {
                    return self.goodbye(reply::shutting_down(&hostname)).await;
                }
            };
            commands += 1;
            if commands > self.gw.settings.max_commands {
                return self.goodbye(reply::too_many_commands(&hostname)).await;
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
            match outcome {
                Outcome::Reply(reply) => self.push(reply),
                Outcome::Close(reply) => return self.goodbye(reply).await,
                Outcome::Data(tx) => {
                    if !self.receive_data(tx).instrument(span).await? {
                        return Ok(());
                    }
                }
            }
        }
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
                .get_or_create(&[("code", reply.code)])
                .inc();
        }
        reply.encode(&mut self.output);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let timeout = self.gw.settings.timeout;
        match tokio::time::timeout(timeout, self.stream.write_all(&self.output)).await {
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

    /// Flushes the pending replies, then waits for more input. Only the
    /// command loop is `interruptible` by shutdown: a transaction in DATA
    /// finishes first.
    async fn fill(&mut self, interruptible: bool) -> io::Result<Read> {
        self.flush().await?;
        let timeout = self.gw.settings.timeout;
        let Self {
            stream,
            input,
            shutdown,
            ..
        } = self;
        input.reserve(READ_CHUNK);
        let mut limited = input.limit(READ_CHUNK);
        let read = tokio::time::timeout(timeout, stream.read_buf(&mut limited));
        let result = if interruptible {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(Read::ShuttingDown),
                result = read => result,
            }
        } else {
            read.await
        };
        match result {
            Err(_) => Ok(Read::TimedOut),
            Ok(Ok(0)) => Ok(Read::Closed),
            Ok(Ok(_)) => Ok(Read::Data),
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

    /// Answers 354, streams the body into storage up to the terminator and
    /// answers the transaction. Returns false when the connection is over.
    async fn receive_data(&mut self, tx: Transaction) -> io::Result<bool> {
        let gw = self.gw.clone();
        let mut writer = gw.backend.body_writer();
        let mut store_error: Option<BackendError> = None;
        let header = tx.received_header(&gw.settings.hostname);
        if let Err(error) = writer.write(header.as_bytes()).await {
            store_error = Some(error);
        }
        self.push(reply::start_data());

        let max = gw.settings.max_message_size;
        let mut too_big = false;
        let mut decoder = DataDecoder::new();
        let mut out = Vec::with_capacity(READ_CHUNK + 2);
        loop {
            if !self.input.is_empty() {
                out.clear();
                let consumed = match decoder.decode(&self.input, &mut out) {
                    Progress::Done { consumed } => consumed,
                    Progress::NeedMore => self.input.len(),
                };
                self.input.advance(consumed);
                gw.metrics.bytes_received.inc_by(consumed as u64);
                // Past the limit the rest is read and dropped, so the reply
                // comes at the real end of the data.
                too_big |= decoder.decoded_len() > max;
                if !too_big
                    && store_error.is_none()
                    && !out.is_empty()
                    && let Err(error) = writer.write(&out).await
                {
                    store_error = Some(error);
                }
                if decoder.is_done() {
                    break;
                }
            }
            match self.fill(false).await {
                Ok(Read::Data) => {}
                Ok(Read::Closed | Read::ShuttingDown) => {
                    writer.abort().await;
                    return Ok(false);
                }
                Ok(Read::TimedOut) => {
                    writer.abort().await;
                    self.goodbye(reply::timeout(&gw.settings.hostname)).await?;
                    return Ok(false);
                }
                Err(error) => {
                    writer.abort().await;
                    return Err(error);
                }
            }
        }
        let outcome = if too_big {
            DataOutcome::TooBig
        } else if decoder.saw_bare_line_ending() {
            DataOutcome::BareLineEnding
        } else if let Some(error) = store_error {
            DataOutcome::StoreFailed(error)
        } else {
            DataOutcome::Complete
        };
        let reply = session::data_complete(tx, writer, outcome, &gw).await;
        self.push(reply);
        Ok(true)
    }
}
