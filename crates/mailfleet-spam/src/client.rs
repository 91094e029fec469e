//! The HTTP/1.1 transport to rspamd's normal worker (port 11333): one
//! connection per request, so an rspamd restart never leaves a dead pooled
//! connection behind, and one timeout around connect, request and answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{CONTENT_LENGTH, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::SpamError;
use crate::protocol::Check;

/// Largest answer read from rspamd (a check answer lists symbols: small).
const MAX_ANSWER: usize = 1024 * 1024;

/// rspamd at one URL.
#[derive(Clone)]
pub struct Rspamd {
    /// `host:port`, for connecting and for the Host header.
    authority: String,
    /// Path prefix (a reverse proxy in front), without the trailing slash.
    prefix: String,
    timeout: Duration,
    /// The controller's password, sent with learn requests (`Password`).
    password: Option<String>,
}

impl std::fmt::Debug for Rspamd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Rspamd")
            .field("authority", &self.authority)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The SMTP envelope and client rspamd is told about with a check.
#[derive(Debug, Clone, Default)]
pub struct Envelope<'a> {
    /// The envelope sender; empty for the null sender.
    pub from: &'a str,
    pub recipients: Vec<&'a str>,
    pub client_ip: String,
    pub helo: &'a str,
    /// The authenticated account, if any.
    pub user: Option<&'a str>,
    pub queue_id: &'a str,
    /// Our own host name (rspamd's `MTA-Name`).
    pub hostname: &'a str,
}

/// What a message teaches rspamd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    Spam,
    Ham,
}

impl Learn {
    fn path(self) -> &'static str {
        match self {
            Self::Spam => "/learnspam",
            Self::Ham => "/learnham",
        }
    }
}

/// How a learn request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// rspamd learned the message now.
    Now,
    /// rspamd had learned it before (HTTP 208): nothing more to do.
    Already,
    /// rspamd found nothing to learn in it (HTTP 204, e.g. too few words).
    Nothing,
}

impl Rspamd {
    /// rspamd at `url` (`http://host[:port][/prefix]`, port 11333 when
    /// missing); plain HTTP only, as rspamd itself serves it.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, SpamError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| SpamError::Url(url.to_owned()))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') || authority.contains(' ') {
            return Err(SpamError::Url(url.to_owned()));
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:11333")
        };
        HeaderValue::from_str(&authority).map_err(|_| SpamError::Url(url.to_owned()))?;
        Ok(Self {
            authority,
            prefix: prefix.trim_end_matches('/').to_owned(),
            timeout,
            password: None,
        })
    }

    /// Sends `password` (rspamd's controller `password`/`enable_password`,
    /// in clear: rspamd compares it with its stored hash) with every learn
    /// request; an empty one sends none.
    pub fn with_password(mut self, password: &str) -> Result<Self, SpamError> {
        self.password = if password.is_empty() {
            None
        } else {
            HeaderValue::from_str(password).map_err(|_| SpamError::Password)?;
            Some(password.to_owned())
        };
        Ok(self)
    }

    /// `host:port` this client talks to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Asks rspamd about `message` (`/checkv2`).
    pub async fn check(&self, envelope: &Envelope<'_>, message: Bytes) -> Result<Check, SpamError> {
        let mut headers: Vec<(&'static str, String)> = vec![
            (
                "From",
                if envelope.from.is_empty() {
                    "<>".to_owned()
                } else {
                    envelope.from.to_owned()
                },
            ),
            ("IP", envelope.client_ip.clone()),
            ("Helo", envelope.helo.to_owned()),
            ("Queue-Id", envelope.queue_id.to_owned()),
            ("MTA-Name", envelope.hostname.to_owned()),
        ];
        for rcpt in &envelope.recipients {
            headers.push(("Rcpt", (*rcpt).to_owned()));
        }
        if let Some(user) = envelope.user {
            headers.push(("User", user.to_owned()));
        }
        let (status, body) = self.post("/checkv2", &headers, message).await?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        Check::parse(&body).map_err(SpamError::Answer)
    }

    /// Teaches rspamd that `message` is spam or ham.
    pub async fn learn(&self, kind: Learn, message: Bytes) -> Result<Learned, SpamError> {
        let headers = match &self.password {
            Some(password) => vec![("Password", password.clone())],
            None => Vec::new(),
        };
        let (status, body) = self.post(kind.path(), &headers, message).await?;
        match status {
            200 => Ok(Learned::Now),
            204 => Ok(Learned::Nothing),
            208 => Ok(Learned::Already),
            _ => Err(status_error(status, &body)),
        }
    }

    /// Whether rspamd answers `/ping`.
    pub async fn ping(&self) -> bool {
        matches!(
            self.request("GET", "/ping", &[], Bytes::new()).await,
            Ok((200, _))
        )
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(u16, Bytes), SpamError> {
        self.request("POST", path, headers, body).await
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(u16, Bytes), SpamError> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, headers, body))
            .await
            .map_err(|_| SpamError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(u16, Bytes), SpamError> {
        let transport = |e: &dyn std::fmt::Display| SpamError::Transport(e.to_string());
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.prefix, path))
            .header(HOST, self.authority.as_str())
            .header(CONTENT_LENGTH, body.len());
        for (name, value) in headers {
            // A value HTTP cannot carry (a control character in a HELO)
            // is left out rather than failing the check.
            if let Ok(mut value) = HeaderValue::from_str(value) {
                value.set_sensitive(*name == "Password");
                request = request.header(*name, value);
            }
        }
        let request = request.body(Full::new(body)).map_err(|e| transport(&e))?;
        let stream = TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| transport(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(&e))?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| transport(&e))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| transport(&*e))?
                .to_bytes();
            // `sender` drops here, which lets `connection` end.
            Ok::<_, SpamError>((status, body))
        };
        let (answer, _) = tokio::join!(exchange, connection);
        answer
    }
}

fn status_error(status: u16, body: &[u8]) -> SpamError {
    let detail: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    SpamError::Status { status, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Duration::from_secs(1);
        assert_eq!(
            Rspamd::new("http://127.0.0.1:11333", t)
                .unwrap()
                .authority(),
            "127.0.0.1:11333"
        );
        assert_eq!(
            Rspamd::new("http://rspamd", t).unwrap().authority(),
            "rspamd:11333"
        );
        assert_eq!(
            Rspamd::new("http://[::1]", t).unwrap().authority(),
            "[::1]:11333"
        );
        let proxied = Rspamd::new("http://rspamd:80/spam/", t).unwrap();
        assert_eq!(proxied.prefix, "/spam");
        assert!(Rspamd::new("https://rspamd", t).is_err());
        assert!(Rspamd::new("http://", t).is_err());
    }
}
