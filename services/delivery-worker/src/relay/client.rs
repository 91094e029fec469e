//! A small async SMTP client for relaying (RFC 5321): EHLO (HELO fallback),
//! opportunistic STARTTLS (RFC 3207), PIPELINING (RFC 2920), DSN parameters
//! (RFC 3461) and several transactions per connection.
//!
//! Hand-written because no maintained crate fits our stack: lettre owns its
//! own connection pool and TLS setup and cannot stream a body from object
//! storage with per-recipient RCPT results, which a relay needs.
//!
//! TLS is opportunistic (RFC 7435): the peer's certificate is not checked
//! (MX hosts rarely present one valid for their name, and without DANE or
//! MTA-STS there is nothing to check it against), but a peer that offers
//! STARTTLS and then fails the handshake is not retried in plaintext: that
//! would let anyone on the path strip encryption.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_rustls::client::TlsStream;

use super::reply::{Capabilities, Parsed, Reply, parse};
use mailfleet_blob::BlobError;

/// Why a connection or transaction failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("{0}")]
    Io(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused a step that concerns every recipient (greeting,
    /// EHLO, MAIL, DATA, end of data).
    #[error("{}", .0.one_line())]
    Rejected(Reply),
    #[error("reading the message body: {0}")]
    Body(#[from] BlobError),
}

impl ClientError {
    /// A permanent refusal (5xx) ends delivery; everything else may succeed later.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Rejected(r) => r.is_permanent(),
            ClientError::Body(e) => e.is_not_found(),
            _ => false,
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e.to_string())
    }
}

/// How connections behave.
#[derive(Clone)]
pub struct ClientSettings {
    /// Our name in EHLO.
    pub hostname: String,
    /// Limit of each connect, command and data step.
    pub timeout: Duration,
    /// `None` disables STARTTLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One transaction's envelope.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    /// Empty for the null sender.
    pub from: String,
    pub recipients: Vec<Recipient>,
    /// Octets of the message as sent (for SIZE).
    pub size: u64,
    /// RFC 3461 RET (`FULL` / `HDRS`) and ENVID, passed on when the peer
    /// supports DSN.
    pub ret: Option<&'static str>,
    pub envid: String,
}

#[derive(Clone, Debug, Default)]
pub struct Recipient {
    pub address: String,
    /// RFC 3461 NOTIFY value (`SUCCESS,FAILURE`), empty when unspecified.
    pub notify: String,
    pub orcpt: String,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while upgrading.
    Gone,
}

/// An open, greeted SMTP connection.
pub struct Connection {
    io: Transport,
    buf: Vec<u8>,
    caps: Capabilities,
    settings: ClientSettings,
    /// The name used for TLS and logs.
    pub host: String,
    pub tls: bool,
    /// Transactions completed on this connection.
    pub transactions: usize,
    pub last_used: Instant,
    /// False once the connection is in an unknown state.
    pub reusable: bool,
}

impl Connection {
    /// Connects, reads the greeting, says EHLO and upgrades with STARTTLS
    /// when the peer offers it.
    pub async fn open(
        addr: SocketAddr,
        host: &str,
        settings: &ClientSettings,
    ) -> Result<Self, ClientError> {
        let stream = timeout(settings.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect(format!("{addr}: timed out")))?
            .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            io: Transport::Plain(stream),
            buf: Vec::with_capacity(1024),
            caps: Capabilities::default(),
            settings: settings.clone(),
            host: host.to_owned(),
            tls: false,
            transactions: 0,
            last_used: Instant::now(),
            reusable: true,
        };
        let greeting = conn.read_reply("waiting for the greeting").await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected(greeting));
        }
        conn.ehlo().await?;
        if conn.caps.starttls
            && let Some(tls) = settings.tls.clone()
        {
            conn.command("STARTTLS\r\n").await?;
            let reply = conn.read_reply("after STARTTLS").await?;
            if reply.code != 220 {
                // Offered but refused: the peer is misconfigured; try later
                // rather than send in plaintext.
                return Err(ClientError::Rejected(reply));
            }
            conn.upgrade(tls).await?;
            conn.ehlo().await?;
        }
        Ok(conn)
    }

    async fn ehlo(&mut self) -> Result<(), ClientError> {
        let name = self.settings.hostname.clone();
        self.command(&format!("EHLO {name}\r\n")).await?;
        let reply = self.read_reply("after EHLO").await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.is_permanent() {
            // An old server without ESMTP.
            self.command(&format!("HELO {name}\r\n")).await?;
            let reply = self.read_reply("after HELO").await?;
            if reply.code == 250 {
                self.caps = Capabilities::default();
                return Ok(());
            }
            return Err(ClientError::Rejected(reply));
        }
        Err(ClientError::Rejected(reply))
    }

    async fn upgrade(&mut self, tls: Arc<rustls::ClientConfig>) -> Result<(), ClientError> {
        let Transport::Plain(tcp) = std::mem::replace(&mut self.io, Transport::Gone) else {
            return Err(ClientError::Protocol("STARTTLS on a TLS connection".into()));
        };
        if !self.buf.is_empty() {
            // Bytes after the 220 would be injected plaintext (CVE-2011-0411 class).
            return Err(ClientError::Protocol(
                "data after the STARTTLS reply".into(),
            ));
        }
        let name = ServerName::try_from(self.host.clone())
            .or_else(|_| ServerName::try_from("mx.invalid".to_owned()))
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        let stream = timeout(self.settings.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout("in the TLS handshake"))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        self.io = Transport::Tls(Box::new(stream));
        self.tls = true;
        Ok(())
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let t = self.settings.timeout;
        let fut = async {
            match &mut self.io {
                Transport::Plain(s) => s.write_all(data).await,
                Transport::Tls(s) => s.write_all(data).await,
                Transport::Gone => Err(std::io::Error::other("connection closed")),
            }
        };
        timeout(t, fut)
            .await
            .map_err(|_| ClientError::Timeout("writing"))??;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        let t = self.settings.timeout;
        let fut = async {
            match &mut self.io {
                Transport::Plain(s) => s.flush().await,
                Transport::Tls(s) => s.flush().await,
                Transport::Gone => Ok(()),
            }
        };
        timeout(t, fut)
            .await
            .map_err(|_| ClientError::Timeout("writing"))??;
        Ok(())
    }

    async fn command(&mut self, line: &str) -> Result<(), ClientError> {
        self.write(line.as_bytes()).await?;
        self.flush().await
    }

    async fn read_reply(&mut self, what: &'static str) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + self.settings.timeout;
        loop {
            match parse(&self.buf) {
                Parsed::Complete(reply, used) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Parsed::Malformed(m) => {
                    self.reusable = false;
                    return Err(ClientError::Protocol(m));
                }
                Parsed::Incomplete => {}
            }
            let mut chunk = [0u8; 4096];
            let read = async {
                match &mut self.io {
                    Transport::Plain(s) => s.read(&mut chunk).await,
                    Transport::Tls(s) => s.read(&mut chunk).await,
                    Transport::Gone => Ok(0),
                }
            };
            let n = tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| {
                    self.reusable = false;
                    ClientError::Timeout(what)
                })??;
            if n == 0 {
                self.reusable = false;
                return Err(ClientError::Io(format!("connection closed {what}")));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One transaction: MAIL, RCPT for each recipient, DATA with `prefix`
    /// (e.g. a DKIM-Signature header) and the streamed body. Returns each
    /// recipient's result in order: `Ok(final reply)` when accepted, `Err`
    /// with the RCPT refusal otherwise. A failure of the whole transaction is
    /// an `Err`; the connection stays reusable when the server is still in
    /// a known state.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        prefix: &[u8],
        body: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<Vec<Result<Reply, Reply>>, ClientError> {
        let result = self.transaction(envelope, prefix, body).await;
        self.last_used = Instant::now();
        if result.is_ok() {
            self.transactions += 1;
        }
        result
    }

    async fn transaction(
        &mut self,
        envelope: &Envelope,
        prefix: &[u8],
        mut body: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<Vec<Result<Reply, Reply>>, ClientError> {
        let mut mail = format!("MAIL FROM:<{}>", envelope.from);
        if self.caps.size > 0 {
            mail.push_str(&format!(" SIZE={}", envelope.size));
        }
        if self.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if self.caps.dsn {
            if let Some(ret) = envelope.ret {
                mail.push_str(&format!(" RET={ret}"));
            }
            if !envelope.envid.is_empty() {
                mail.push_str(&format!(" ENVID={}", xtext(&envelope.envid)));
            }
        }
        mail.push_str("\r\n");
        let rcpts: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| {
                let mut line = format!("RCPT TO:<{}>", r.address);
                if self.caps.dsn {
                    if !r.notify.is_empty() {
                        line.push_str(&format!(" NOTIFY={}", r.notify));
                    }
                    if !r.orcpt.is_empty() {
                        line.push_str(&format!(" ORCPT={}", r.orcpt));
                    }
                }
                line.push_str("\r\n");
                line
            })
            .collect();

        let mut results: Vec<Result<Reply, Reply>> = Vec::with_capacity(rcpts.len());
        let data_reply;
        if self.caps.pipelining {
            // RFC 2920: MAIL, every RCPT and DATA go in one write.
            let mut batch = mail;
            for r in &rcpts {
                batch.push_str(r);
            }
            batch.push_str("DATA\r\n");
            self.command(&batch).await?;
            let mail_reply = self.read_reply("after MAIL FROM").await?;
            for _ in &rcpts {
                let reply = self.read_reply("after RCPT TO").await?;
                results.push(if reply.code == 250 || reply.code == 251 {
                    Ok(reply)
                } else {
                    Err(reply)
                });
            }
            data_reply = self.read_reply("after DATA").await?;
            if mail_reply.code != 250 {
                if data_reply.code == 354 {
                    // Should not happen; end the empty message and forget it.
                    self.reusable = false;
                }
                return Err(ClientError::Rejected(mail_reply));
            }
        } else {
            self.command(&mail).await?;
            let mail_reply = self.read_reply("after MAIL FROM").await?;
            if mail_reply.code != 250 {
                self.reset().await;
                return Err(ClientError::Rejected(mail_reply));
            }
            for r in &rcpts {
                self.command(r).await?;
                let reply = self.read_reply("after RCPT TO").await?;
                results.push(if reply.code == 250 || reply.code == 251 {
                    Ok(reply)
                } else {
                    Err(reply)
                });
            }
            if results.iter().all(|r| r.is_err()) {
                self.reset().await;
                return Ok(results);
            }
            self.command("DATA\r\n").await?;
            data_reply = self.read_reply("after DATA").await?;
        }
        if results.iter().all(|r| r.is_err()) {
            if data_reply.code == 354 {
                // A server that accepts DATA without recipients gets an empty
                // message ended at once, then we reset.
                self.command(".\r\n").await?;
                let _ = self.read_reply("after an empty message").await?;
            }
            self.reset().await;
            return Ok(results);
        }
        if data_reply.code != 354 {
            self.reset().await;
            return Err(ClientError::Rejected(data_reply));
        }

        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(64 * 1024);
        stuffer.push(prefix, &mut out);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // The server is mid-DATA: the connection cannot be reused.
                    self.reusable = false;
                    return Err(ClientError::Body(e));
                }
            };
            stuffer.push(&chunk, &mut out);
            if out.len() >= 32 * 1024 {
                self.write(&out)
                    .await
                    .inspect_err(|_| self.reusable = false)?;
                out.clear();
            }
        }
        stuffer.finish(&mut out);
        self.write(&out).await?;
        self.flush().await?;
        let end = self.read_reply("after the end of data").await?;
        if end.code != 250 {
            return Err(ClientError::Rejected(end));
        }
        Ok(results
            .into_iter()
            .map(|r| r.map(|_| end.clone()))
            .collect())
    }

    /// RSET after a failed transaction, so the connection can carry the next.
    async fn reset(&mut self) {
        let ok = async {
            self.command("RSET\r\n").await?;
            self.read_reply("after RSET").await
        }
        .await;
        if !matches!(ok, Ok(ref r) if r.code == 250) {
            self.reusable = false;
        }
    }

    /// Says goodbye; errors do not matter any more.
    pub async fn quit(mut self) {
        let short = Duration::from_secs(5).min(self.settings.timeout);
        let _ = timeout(short, async {
            let _ = self.command("QUIT\r\n").await;
            let _ = self.read_reply("after QUIT").await;
        })
        .await;
    }
}

/// RFC 3461 4 xtext: `+XX` for `+`, `=` and anything outside `!`..`~`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Dot-stuffing (RFC 5321 4.5.2) and line-end repair across chunk borders,
/// then the terminating `.CRLF`. Every bare CR and bare LF becomes CRLF, so
/// what leaves has CRLF line ends only and each line that starts with a dot
/// gets its extra dot: no `\r.\r` or `\n.\n` ever reaches the next server,
/// whichever way a receiver reads line ends (SMTP smuggling).
#[derive(Default)]
pub struct DotStuffer {
    /// Something was written on the current line (a dot here is not at a
    /// line start).
    mid_line: bool,
    /// The last byte was a CR whose LF (or its absence) decides what it is.
    pending_cr: bool,
}

impl DotStuffer {
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for &b in data {
            if self.pending_cr {
                self.pending_cr = false;
                // CRLF, or a bare CR made one: the line ends either way.
                out.extend_from_slice(b"\r\n");
                self.mid_line = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    // A bare LF becomes CRLF.
                    out.extend_from_slice(b"\r\n");
                    self.mid_line = false;
                }
                _ => {
                    if !self.mid_line && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.mid_line = true;
                }
            }
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || self.mid_line {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.mid_line = false;
        self.pending_cr = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn dots_are_stuffed_across_chunks_and_the_end_is_added() {
        assert_eq!(stuff(&[b".a\r\n", b"b\r\n."]), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(stuff(&[b"x\r", b"\n.y\r\n"]), b"x\r\n..y\r\n.\r\n");
        assert_eq!(stuff(&[b"bare\nlf"]), b"bare\r\nlf\r\n.\r\n");
        assert_eq!(stuff(&[]), b".\r\n");
    }

    /// Bare CR and bare LF, alone or next to dots, anywhere and across
    /// chunk borders: only CRLF line ends leave, every dot line is stuffed,
    /// and the one `CRLF.CRLF` is the real end (issue 16, SMTP smuggling).
    #[test]
    fn bare_cr_and_lf_leave_as_crlf_and_never_smuggle_an_end() {
        let attacks: [&[&[u8]]; 6] = [
            &[b"a\r.\rMAIL FROM:<x@y>\r\n"],
            &[b"a\n.\nMAIL FROM:<x@y>\r\n"],
            &[b"a\r", b".", b"\r", b"b"],
            &[b"a\r\n.\r", b"b\r\n"],
            &[b"\r\r\n\n.\r"],
            &[b"x\r.\r\n"],
        ];
        for chunks in attacks {
            let out = stuff(chunks);
            // Every CR is followed by LF and every LF follows a CR.
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(out.get(i + 1), Some(&b'\n'), "{chunks:?} -> {out:?}");
                }
                if b == b'\n' {
                    assert!(i > 0 && out[i - 1] == b'\r', "{chunks:?} -> {out:?}");
                }
            }
            // The end of data appears once, at the end.
            let ends = out.windows(5).filter(|w| w == b"\r\n.\r\n").count();
            assert_eq!(ends, 1, "{chunks:?} -> {:?}", String::from_utf8_lossy(&out));
            assert!(out.ends_with(b"\r\n.\r\n"));
        }
        assert_eq!(
            stuff(&[b"a\r.\rb\n.\nc"]),
            b"a\r\n..\r\nb\r\n..\r\nc\r\n.\r\n"
        );
        assert_eq!(stuff(&[b"a\r", b"\n.b\r"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(&[b".\r"]), b"..\r\n.\r\n");
    }

    #[test]
    fn xtext_escapes() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
