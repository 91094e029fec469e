//! The commands of the connection itself: CAPABILITY, STARTTLS, LOGIN,
//! AUTHENTICATE (RFC 3501 6.2.2, PLAIN with SASL-IR, RFC 4959) and LOGOUT.
//! A successful login is the move from NotAuthenticated to Authenticated.

use base64::Engine;
use imap_codec::AuthenticateDataCodec;
use imap_codec::decode::Decoder;
use mailfleet_proto::v1 as pb;
use tokio::io::BufReader;

use crate::conn::{Conn, MaybeTls};
use crate::errors::rpc;
use crate::session::{Reply, Session, State};

/// CAPABILITY.
pub(crate) fn capability(s: &mut Session) -> Reply {
    let caps = s.capabilities();
    s.untagged(&format!("CAPABILITY {caps}"));
    Reply::Ok("CAPABILITY completed".into())
}

/// LOGOUT: BYE now, the tagged OK closes the connection.
pub(crate) fn logout(s: &mut Session) -> Reply {
    s.state = State::Logout;
    s.untagged("BYE mailfleet IMAP logging out");
    Reply::Logout
}

/// LOGIN: user and password as the client sent them.
pub(crate) async fn login_command(
    s: &mut Session,
    user: &[u8],
    password: &[u8],
) -> std::io::Result<Reply> {
    let user = String::from_utf8_lossy(user).into_owned();
    let pass = String::from_utf8_lossy(password).into_owned();
    login(s, &user, &pass).await
}

/// AUTHENTICATE (RFC 3501 6.2.2) with SASL-IR (RFC 4959): PLAIN only.
pub(crate) async fn authenticate(
    s: &mut Session,
    mechanism: &str,
    initial: Option<Vec<u8>>,
) -> std::io::Result<Reply> {
    if mechanism != "PLAIN" {
        return Ok(Reply::No(
            "[CANNOT] Only AUTHENTICATE PLAIN is supported".into(),
        ));
    }
    // An empty initial response (`=`, RFC 4959) carries no PLAIN
    // message, which cannot be empty: ask for it.
    let data = match initial {
        Some(b64) if !b64.is_empty() => {
            match base64::engine::general_purpose::STANDARD.decode(&b64) {
                Ok(d) => Some(d),
                Err(_) => return Ok(Reply::Bad("Initial response is not base64".into())),
            }
        }
        _ => auth_continuation(s).await?,
    };
    let Some(d) = data else {
        return Ok(Reply::Bad("AUTHENTICATE cancelled".into()));
    };
    let mut parts = d.split(|&b| b == 0);
    let _authz = parts.next();
    match (parts.next(), parts.next()) {
        (Some(u), Some(p)) => {
            let u = String::from_utf8_lossy(u).into_owned();
            let p = String::from_utf8_lossy(p).into_owned();
            login(s, &u, &p).await
        }
        _ => Ok(Reply::Bad("Malformed PLAIN response".into())),
    }
}

/// STARTTLS: the tagged OK is written here, before the handshake.
pub(crate) async fn starttls(s: &mut Session, tag: &str) -> std::io::Result<Reply> {
    let Some(tls) = s.shared.tls.clone() else {
        return Ok(Reply::Bad("STARTTLS not available".into()));
    };
    if s.io.get_ref().get_ref().is_tls() {
        return Ok(Reply::Bad("TLS already active".into()));
    }
    s.out
        .extend_from_slice(format!("{tag} OK Begin TLS negotiation now\r\n").as_bytes());
    s.flush().await?;
    // Anything the client pipelined after STARTTLS is discarded (RFC 3501 6.2.1).
    let Some(tcp) = s.io.get_mut().get_mut().take_plain() else {
        return Err(std::io::Error::other("STARTTLS on a non-plain stream"));
    };
    // A client that never starts (or never finishes) the handshake is
    // dropped like a silent one before login.
    let tls_stream = tokio::time::timeout(s.pre_auth_timeout(), tls.acceptor().accept(tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    let timeout = s.shared.idle_timeout;
    s.io = BufReader::new(Conn::new(MaybeTls::Tls(Box::new(tls_stream)), timeout));
    s.shared.metrics.tls_upgrades.inc();
    Ok(Reply::Sent)
}

async fn login(s: &mut Session, user: &str, pass: &str) -> std::io::Result<Reply> {
    if !s.login_allowed() {
        return Ok(Reply::No(
            "[PRIVACYREQUIRED] Use STARTTLS or port 993 before logging in".into(),
        ));
    }
    let r = rpc!(s.client.authenticate(pb::AuthenticateRequest {
        username: user.to_owned(),
        password: pass.to_owned(),
        remote_ip: s.peer.ip().to_string(),
        protocol: "imap".into(),
    }));
    // mailstore's login guard has already delayed a failed answer.
    if r.locked {
        return Ok(Reply::No(
            "[UNAVAILABLE] Too many failed logins; try again later".into(),
        ));
    }
    if !r.ok {
        return Ok(Reply::No(
            "[AUTHENTICATIONFAILED] Invalid credentials".into(),
        ));
    }
    tracing::info!(user = %r.address, "IMAP login.");
    s.state = State::Authenticated { user: r.address };
    Ok(Reply::Ok(format!(
        "[CAPABILITY {}] Logged in",
        s.capabilities()
    )))
}

/// Asks for the SASL response; `None` when the client cancels.
async fn auth_continuation(s: &mut Session) -> std::io::Result<Option<Vec<u8>>> {
    s.out.extend_from_slice(b"+ \r\n");
    s.flush().await?;
    let mut line = Vec::new();
    match s.read_line_timed(&mut line).await? {
        Some(true) => {}
        _ => return Ok(None),
    }
    if line.starts_with(b"*") {
        return Ok(None);
    }
    Ok(match AuthenticateDataCodec::default().decode(&line) {
        Ok((_, data)) => Some(data.0.declassify().clone()),
        Err(_) => None,
    })
}
