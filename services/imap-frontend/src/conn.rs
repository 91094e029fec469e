//! The connection stream: plain TCP or TLS (implicit, or after STARTTLS).

pub(crate) use mailfleet_runtime::stream::MaybeTls as Conn;
