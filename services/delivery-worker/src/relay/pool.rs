//! Outbound SMTP connections per destination host: a concurrency limit per
//! host (a semaphore) and idle connections kept for the next message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::{ClientError, ClientSettings, Connection};

/// An idle connection older than this is closed rather than reused: the peer
/// has probably timed it out already (RFC 5321 4.5.3.2 lets it after 5 min).
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// A connection in use, holding one of its host's slots.
pub struct Lease {
    conn: Connection,
    key: String,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

#[derive(Default)]
struct Host {
    slots: Option<Arc<Semaphore>>,
    idle: Vec<Connection>,
}

pub struct Pool {
    settings: ClientSettings,
    per_host: usize,
    per_connection: usize,
    hosts: Mutex<HashMap<String, Host>>,
}

impl Pool {
    pub fn new(settings: ClientSettings, per_host: usize, per_connection: usize) -> Self {
        Self {
            settings,
            per_host: per_host.max(1),
            per_connection: per_connection.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn slots(&self, key: &str) -> Option<Arc<Semaphore>> {
        let mut hosts = self.hosts.lock().ok()?;
        let host = hosts.entry(key.to_owned()).or_default();
        Some(
            host.slots
                .get_or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone(),
        )
    }

    fn take_idle(&self, key: &str) -> (Option<Connection>, Vec<Connection>) {
        let Ok(mut hosts) = self.hosts.lock() else {
            return (None, Vec::new());
        };
        let Some(host) = hosts.get_mut(key) else {
            return (None, Vec::new());
        };
        let (fresh, stale): (Vec<_>, Vec<_>) = host
            .idle
            .drain(..)
            .partition(|c| c.last_used.elapsed() < IDLE_LIMIT);
        host.idle = fresh;
        (host.idle.pop(), stale)
    }

    /// A connection to `host` at `addr`: an idle one if there is one, else a
    /// new one, once a slot of the host is free.
    pub async fn acquire(&self, host: &str, addr: SocketAddr) -> Result<Lease, ClientError> {
        let key = format!("{host}|{addr}");
        let slots = self
            .slots(&key)
            .ok_or_else(|| ClientError::Io("connection pool poisoned".into()))?;
        let permit = slots
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Io("connection pool closed".into()))?;
        let (idle, stale) = self.take_idle(&key);
        for c in stale {
            tokio::spawn(c.quit());
        }
        let conn = match idle {
            Some(c) => c,
            None => Connection::open(addr, host, &self.settings).await?,
        };
        Ok(Lease {
            conn,
            key,
            _permit: permit,
        })
    }

    /// Returns a connection after use: kept for the next message when it is
    /// in a clean state and has not carried too many, closed otherwise.
    pub async fn release(&self, lease: Lease) {
        let Lease { conn, key, _permit } = lease;
        if conn.reusable
            && conn.transactions < self.per_connection
            && let Ok(mut hosts) = self.hosts.lock()
        {
            hosts.entry(key).or_default().idle.push(conn);
            return;
        }
        tokio::spawn(conn.quit());
    }
}
