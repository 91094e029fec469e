//! One ManageSieve connection's I/O: the greeting (capabilities), reading
//! bounded commands with idle timeouts (short before login), STARTTLS in
//! place, the SASL exchange, and the goodbye on shutdown.

use std::time::Duration;

use mailfleet_runtime::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::proto::{self, Bounds, Decoded};
use super::response;
use super::session::{Action, Session};
use crate::conn::{Conn, MaybeTls};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Before login a client may stay silent this long at most.
const PRE_AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest command line outside literals.
const MAX_LINE: usize = 8 * 1024;
/// Largest literal before login (SASL responses only).
const PRE_AUTH_LITERAL: usize = 8 * 1024;
/// Bytes read at once.
const READ_CHUNK: usize = 16 * 1024;

enum Next {
    Command(Vec<proto::Token>),
    /// The session is over (EOF, timeout, shutdown, or a fatal error sent).
    End,
}

struct Io {
    conn: Conn,
    buf: Vec<u8>,
}

impl Io {
    async fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.conn.write_all(data).await?;
        self.conn.flush().await
    }

    /// Reads until the buffer holds a whole command, answering malformed
    /// lines on the way. `End` after EOF, a timeout, shutdown, or a fatal
    /// error already answered with BYE.
    async fn next(
        &mut self,
        bounds: Bounds,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Next> {
        // Pipelined commands are bounded too: one command at most, plus
        // what one read brings.
        let max_buffer = bounds.max_line * 2 + bounds.max_literal + READ_CHUNK;
        loop {
            match proto::decode(&self.buf, bounds) {
                Decoded::Line(tokens, used) => {
                    self.buf.drain(..used);
                    return Ok(Next::Command(tokens));
                }
                Decoded::Malformed { skip, reason } => {
                    self.buf.drain(..skip.min(self.buf.len()));
                    self.send(&response::no(None, reason)).await?;
                    continue;
                }
                Decoded::LiteralTooLarge(n) => {
                    let text = format!(
                        "A literal of {n} octets is over the limit of {} octets",
                        bounds.max_literal
                    );
                    self.send(&response::bye(&text)).await?;
                    return Ok(Next::End);
                }
                Decoded::LineTooLong => {
                    self.send(&response::bye("Command line too long")).await?;
                    return Ok(Next::End);
                }
                Decoded::Incomplete if self.buf.len() > max_buffer => {
                    self.send(&response::bye("Command too long")).await?;
                    return Ok(Next::End);
                }
                Decoded::Incomplete => {}
            }
            let mut chunk = vec![0u8; READ_CHUNK];
            let read = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.send(&response::bye("Server shutting down")).await?;
                    return Ok(Next::End);
                }
                read = tokio::time::timeout(timeout, self.conn.read(&mut chunk)) => read,
            };
            let Ok(n) = read else {
                self.send(&response::bye("Idle for too long")).await?;
                return Ok(Next::End);
            };
            let n = n?;
            if n == 0 {
                return Ok(Next::End);
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}

/// Runs the session on `conn` until it ends.
pub(crate) async fn drive(
    session: &mut Session,
    conn: Conn,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut io = Io {
        conn,
        buf: Vec::new(),
    };
    let mut greeting = session.capabilities();
    greeting.extend_from_slice(&response::ok("mailfleet ManageSieve ready"));
    io.send(&greeting).await?;
    loop {
        let (bounds, timeout) = if session.authenticated() {
            (
                Bounds {
                    max_line: MAX_LINE,
                    max_literal: session.shared.max_script_size,
                },
                session.shared.idle_timeout,
            )
        } else {
            (
                Bounds {
                    max_line: MAX_LINE,
                    max_literal: PRE_AUTH_LITERAL,
                },
                PRE_AUTH_TIMEOUT.min(session.shared.idle_timeout),
            )
        };
        let tokens = match io.next(bounds, timeout, shutdown).await? {
            Next::Command(t) => t,
            Next::End => break,
        };
        let command = match proto::parse(tokens) {
            Ok(c) => c,
            Err(invalid) => {
                session.shared.command("invalid");
                io.send(&response::no(None, &invalid.0)).await?;
                continue;
            }
        };
        let span = tracing::debug_span!("command", command = command.name());
        let mut action = tracing::Instrument::instrument(session.handle(command), span).await;
        if let Action::SaslChallenge = action {
            io.send(b"\"\"\r\n").await?;
            let tokens = match io.next(bounds, timeout, shutdown).await? {
                Next::Command(t) => t,
                Next::End => break,
            };
            action = match proto::parse_sasl_response(tokens) {
                Ok(answer) => session.sasl_response(answer).await,
                Err(invalid) => Action::Reply(response::no(None, &invalid.0)),
            };
        }
        match action {
            Action::Reply(out) => io.send(&out).await?,
            Action::Close(out) => {
                io.send(&out).await?;
                break;
            }
            Action::SaslChallenge => {
                io.send(&response::no(None, "unexpected SASL state"))
                    .await?;
            }
            Action::StartTls => {
                io.send(&response::ok("Begin TLS negotiation now")).await?;
                // Anything pipelined after STARTTLS came in the clear and
                // is dropped: only the handshake may follow.
                io.buf.clear();
                let (Some(tls), Some(tcp)) =
                    (session.shared.tls.clone(), io.conn.get_mut().take_plain())
                else {
                    return Err(std::io::Error::other("STARTTLS on a non-plain stream"));
                };
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp));
                let stream = handshake.await.map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
                io.conn = Conn::new(MaybeTls::Tls(Box::new(stream)), session.shared.idle_timeout);
                session.tls = true;
                // RFC 5804 2.2: the capabilities again, now over TLS.
                let mut caps = session.capabilities();
                caps.extend_from_slice(&response::ok("TLS negotiation successful"));
                io.send(&caps).await?;
            }
        }
    }
    let _ = io.conn.shutdown().await;
    Ok(())
}
