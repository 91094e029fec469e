//! A small SMTP client for the load generator: EHLO, then transactions with
//! MAIL, RCPT and DATA pipelined (RFC 2920) when the server offers it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
    ReadHalf, WriteHalf,
};
use tokio::net::{TcpSocket, TcpStream};

/// A plain or TLS connection.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

/// Longest reply line accepted from the server.
const MAX_LINE: usize = 4096;
/// Longest wait for any one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed reply {0:?}")]
    Malformed(String),
    #[error("unexpected reply {0} {1}")]
    Refused(u16, String),
    #[error("the server does not offer STARTTLS")]
    NoStartTls,
}

/// The last line of a (possibly multi-line) reply, and the code.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

pub struct Client {
    reader: BufReader<ReadHalf<Stream>>,
    writer: BufWriter<WriteHalf<Stream>>,
    pipelining: bool,
    line: Vec<u8>,
}

/// The bench measures the server, not the PKI: it accepts any certificate
/// (dev and test stacks use self-signed ones).
fn tls_connector() -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(mailfleet_runtime::tls::unauthenticated_client_config())
}

impl Client {
    /// Connects, reads the greeting and says EHLO; with `starttls`, upgrades
    /// the session (RFC 3207) and says EHLO again.
    pub async fn connect(target: &str, ehlo: &str, starttls: bool) -> Result<Client, ClientError> {
        Self::connect_from(target, None, ehlo, starttls).await
    }

    /// As [`Client::connect`], from a chosen local address (the idle bench
    /// spreads its sessions over several loopback addresses so the server's
    /// per-IP connection limit stays in force).
    pub async fn connect_from(
        target: &str,
        source: Option<IpAddr>,
        ehlo: &str,
        starttls: bool,
    ) -> Result<Client, ClientError> {
        let stream = match source {
            None => TcpStream::connect(target).await?,
            Some(ip) => {
                let remote = tokio::net::lookup_host(target)
                    .await?
                    .find(|a| a.is_ipv4() == ip.is_ipv4())
                    .ok_or_else(|| std::io::Error::other(format!("{target}: no address")))?;
                let socket = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(remote).await?
            }
        };
        stream.set_nodelay(true)?;
        let mut client = Self::over(Box::new(stream));
        let greeting = client.reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Refused(
                greeting.code,
                greeting.lines.join(" "),
            ));
        }
        let offers = client.ehlo(ehlo).await?;
        if starttls {
            if !offers.iter().any(|k| k.eq_ignore_ascii_case("STARTTLS")) {
                return Err(ClientError::NoStartTls);
            }
            client.command("STARTTLS\r\n").await?;
            let ready = client.reply().await?;
            if ready.code != 220 {
                return Err(ClientError::Refused(ready.code, ready.lines.join(" ")));
            }
            let plain = client
                .reader
                .into_inner()
                .unsplit(client.writer.into_inner());
            let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
            let name = ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
            let tls = tls_connector().connect(name, plain).await?;
            client = Self::over(Box::new(tls));
            client.ehlo(ehlo).await?;
        }
        Ok(client)
    }

    fn over(stream: Stream) -> Client {
        let (r, w) = tokio::io::split(stream);
        Client {
            reader: BufReader::new(r),
            writer: BufWriter::new(w),
            pipelining: false,
            line: Vec::new(),
        }
    }

    /// Says EHLO and returns the offered extension keywords.
    async fn ehlo(&mut self, name: &str) -> Result<Vec<String>, ClientError> {
        self.command(&format!("EHLO {name}\r\n")).await?;
        let ehlo = self.reply().await?;
        if ehlo.code != 250 {
            return Err(ClientError::Refused(ehlo.code, ehlo.lines.join(" ")));
        }
        let offers: Vec<String> = ehlo
            .lines
            .iter()
            .skip(1)
            .filter_map(|l| l.get(4..))
            .map(|k| k.split_whitespace().next().unwrap_or_default().to_owned())
            .collect();
        self.pipelining = offers.iter().any(|k| k.eq_ignore_ascii_case("PIPELINING"));
        Ok(offers)
    }

    /// One transaction to every address of `to`; `message` is the complete
    /// message, CRLF line ends, already dot-stuffed. Returns the code that
    /// decided its fate: the first refusal of MAIL or of any RCPT, else the
    /// DATA end reply.
    pub async fn send(
        &mut self,
        from: &str,
        to: &[String],
        message: &[u8],
    ) -> Result<u16, ClientError> {
        let mail = format!("MAIL FROM:<{from}>\r\n");
        let mut codes = Vec::with_capacity(to.len() + 2);
        if self.pipelining {
            self.writer.write_all(mail.as_bytes()).await?;
            for rcpt in to {
                self.writer
                    .write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
                    .await?;
            }
            self.command("DATA\r\n").await?;
            for _ in 0..to.len() + 2 {
                codes.push(self.reply().await?.code);
            }
        } else {
            self.command(&mail).await?;
            let mail = self.reply().await?.code;
            if mail != 250 {
                return self.reset(mail).await;
            }
            codes.push(mail);
            for rcpt in to {
                self.command(&format!("RCPT TO:<{rcpt}>\r\n")).await?;
                let code = self.reply().await?.code;
                if !matches!(code, 250 | 251) {
                    return self.reset(code).await;
                }
                codes.push(code);
            }
            self.command("DATA\r\n").await?;
            codes.push(self.reply().await?.code);
        }
        let (data, envelope) = match codes.split_last() {
            Some((data, envelope)) => (*data, envelope),
            None => return Err(ClientError::Malformed("no reply to DATA".into())),
        };
        let first_refusal = envelope.iter().copied().find(|c| !matches!(c, 250 | 251));
        if data == 354 {
            self.writer.write_all(message).await?;
            self.command(".\r\n").await?;
            let end = self.reply().await?.code;
            // A 354 after a refused MAIL or RCPT would be a server bug (or a
            // partly refused fan-out); the refusal still decides.
            return Ok(first_refusal.unwrap_or(end));
        }
        self.reset(first_refusal.unwrap_or(data)).await
    }

    async fn reset(&mut self, code: u16) -> Result<u16, ClientError> {
        self.command("RSET\r\n").await?;
        self.reply().await?;
        Ok(code)
    }

    pub async fn quit(mut self) {
        if self.command("QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }

    async fn command(&mut self, line: &str) -> Result<(), ClientError> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.flush().await?;
        Ok(())
    }

    async fn reply(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        loop {
            self.line.clear();
            let mut limited = (&mut self.reader).take(MAX_LINE as u64);
            let read = limited.read_until(b'\n', &mut self.line);
            let n = tokio::time::timeout(REPLY_TIMEOUT, read)
                .await
                .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT))??;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            let text = String::from_utf8_lossy(&self.line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            let code = text
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| ClientError::Malformed(text.clone()))?;
            let last = text.as_bytes().get(3) != Some(&b'-');
            lines.push(text);
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A scripted SMTP server: refuses RCPT for addresses starting with
    /// "nobody", records the envelope of each message it takes.
    async fn server(pipelining: bool) -> (String, tokio::sync::mpsc::Receiver<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = BufReader::new(s);
            s.get_mut().write_all(b"220 hi\r\n").await.unwrap();
            let mut envelope = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                if s.read_line(&mut line).await.unwrap() == 0 {
                    return;
                }
                let cmd = line.trim_end().to_owned();
                let reply: &[u8] = if cmd.starts_with("EHLO") {
                    if pipelining {
                        b"250-hi\r\n250 PIPELINING\r\n"
                    } else {
                        b"250 hi\r\n"
                    }
                } else if cmd.starts_with("RCPT TO:<nobody") {
                    b"550 5.1.1 no such user\r\n"
                } else if cmd.starts_with("MAIL") || cmd.starts_with("RCPT") {
                    envelope.push(cmd);
                    b"250 ok\r\n"
                } else if cmd == "DATA" {
                    s.get_mut().write_all(b"354 go\r\n").await.unwrap();
                    loop {
                        line.clear();
                        s.read_line(&mut line).await.unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                    }
                    tx.send(std::mem::take(&mut envelope)).await.unwrap();
                    b"250 queued\r\n"
                } else if cmd == "RSET" {
                    envelope.clear();
                    b"250 ok\r\n"
                } else {
                    b"221 bye\r\n"
                };
                s.get_mut().write_all(reply).await.unwrap();
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn a_fan_out_is_one_transaction_with_every_recipient() {
        for pipelining in [true, false] {
            let (addr, mut seen) = server(pipelining).await;
            let mut c = Client::connect(&addr, "t", false).await.unwrap();
            let to: Vec<String> = (1..=3).map(|i| format!("b{i}@x.test")).collect();
            assert_eq!(c.send("s@y.test", &to, b"a\r\n").await.unwrap(), 250);
            assert_eq!(
                seen.recv().await.unwrap(),
                [
                    "MAIL FROM:<s@y.test>",
                    "RCPT TO:<b1@x.test>",
                    "RCPT TO:<b2@x.test>",
                    "RCPT TO:<b3@x.test>"
                ]
            );
            // One refused recipient decides the message's fate, whatever
            // the server did with the others.
            let partly = vec!["b1@x.test".to_owned(), "nobody@x.test".to_owned()];
            assert_eq!(c.send("s@y.test", &partly, b"a\r\n").await.unwrap(), 550);
            // The session is still in step: the next transaction is whole.
            assert_eq!(c.send("s@y.test", &to[..1], b"a\r\n").await.unwrap(), 250);
            let one = ["MAIL FROM:<s@y.test>", "RCPT TO:<b1@x.test>"];
            if pipelining {
                // The server took the partly refused message for b1 (354
                // came before the client knew of the refusal).
                assert_eq!(seen.recv().await.unwrap(), one);
            }
            assert_eq!(seen.recv().await.unwrap(), one);
            c.quit().await;
        }
    }
}
