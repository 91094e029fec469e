//! The connection stream: plain TCP or TLS (implicit, or after STARTTLS),
//! with every write bounded (a client that stops reading is dropped).

pub(crate) use mailfleet_runtime::stream::MaybeTls;
pub(crate) type Conn = mailfleet_runtime::stream::WriteDeadline<MaybeTls>;
