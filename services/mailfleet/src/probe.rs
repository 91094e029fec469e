//! Small network probes for `dev` and `bench`: is a TCP port open, and what
//! does an HTTP health endpoint answer. Hand-written to keep the binary free
//! of an HTTP client stack for two GET requests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether something accepts TCP connections at `addr`.
pub async fn port_open(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// `GET path` over HTTP/1.1; returns the status code and the body (at most
/// 64 KiB, which is plenty for /readyz).
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no HTTP answer"))??;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `mailfleet health`: 0 when `GET path` answers 200, 1 otherwise.
pub async fn health_command(addr: SocketAddr, path: &str) -> std::process::ExitCode {
    match http_get(addr, path).await {
        Ok((200, _)) => std::process::ExitCode::SUCCESS,
        Ok((status, body)) => {
            eprintln!("{addr}{path}: {status} {}", body.trim());
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{addr}{path}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
