//! A short-lived cache of mailstore's recipient answers, so a busy MX does
//! not make one gRPC call (and one Postgres query) per RCPT for the same
//! few addresses.
//!
//! An answer is kept for its TTL (`smtp_recipient_cache_ttl`) at most, and only while the directory
//! events of mailstore flow ([`watch`]): every domain, account or alias
//! change committed in mailstore empties the cache, so an account deleted or
//! an alias removed is refused as soon as its event has arrived, and within
//! the TTL should the event be lost. While the event consumer is down the
//! cache answers nothing. Answers that depend on the size and the usage of
//! the moment (a recipient with a quota) are never kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mailfleet_proto::v1::DirectoryEvent;
use mailfleet_runtime::CancellationToken;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use prost::Message;

use crate::backend::Resolution;

/// Most addresses held; a full cache starts again empty.
pub const MAX_ENTRIES: usize = 10_000;
/// Wait before reconnecting the event consumer.
const RETRY: Duration = Duration::from_secs(1);

/// One cached answer: the resolution and the accounts it delivers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub resolution: Resolution,
    pub accounts: Vec<String>,
}

struct Entry {
    answer: Answer,
    at: Instant,
}

struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every invalidation: an answer asked for before it is not
    /// stored after it.
    generation: u64,
}

/// The cache, shared by every session of the process.
pub struct RecipientCache {
    inner: Mutex<Inner>,
    /// How long an answer is served without asking mailstore again: the
    /// bound on staleness should a directory event be lost. Zero: off.
    ttl: Duration,
    /// Whether the directory event consumer is up.
    live: AtomicBool,
    hits: Counter,
    misses: Counter,
    invalidations: Counter,
    live_gauge: Gauge,
    /// The `seq` of the last directory event (per mailstore process).
    last_seq: Gauge,
    last_seq_raw: AtomicU64,
}

impl Default for RecipientCache {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl RecipientCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                generation: 0,
            }),
            live: AtomicBool::new(false),
            hits: Counter::default(),
            misses: Counter::default(),
            invalidations: Counter::default(),
            live_gauge: Gauge::default(),
            last_seq: Gauge::default(),
            last_seq_raw: AtomicU64::new(0),
        }
    }
}

fn key(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

impl RecipientCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds plain data; a panic elsewhere cannot leave it torn.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("mailfleet_smtp_recipient_cache");
        r.register(
            "hits",
            "RCPT answers served from the cache",
            self.hits.clone(),
        );
        r.register(
            "misses",
            "RCPT answers asked of mailstore",
            self.misses.clone(),
        );
        r.register(
            "invalidations",
            "Directory events received (each empties the cache)",
            self.invalidations.clone(),
        );
        r.register(
            "live",
            "1 while directory events flow and the cache answers",
            self.live_gauge.clone(),
        );
        r.register(
            "last_event_seq",
            "The seq of the last directory event received",
            self.last_seq.clone(),
        );
    }

    /// The cached answer for `address`, if fresh; with the generation to
    /// hand back to [`RecipientCache::put`] otherwise.
    pub fn get(&self, address: &str) -> Result<Answer, u64> {
        let mut inner = self.lock();
        if !self.live.load(Ordering::Acquire) {
            self.misses.inc();
            return Err(inner.generation);
        }
        let k = key(address);
        match inner.entries.get(&k) {
            Some(e) if e.at.elapsed() < self.ttl => {
                self.hits.inc();
                Ok(e.answer.clone())
            }
            Some(_) => {
                inner.entries.remove(&k);
                self.misses.inc();
                Err(inner.generation)
            }
            None => {
                self.misses.inc();
                Err(inner.generation)
            }
        }
    }

    /// Keeps an answer obtained after [`RecipientCache::get`] returned
    /// `generation`, unless the directory changed in between.
    pub fn put(&self, address: &str, generation: u64, answer: Answer) {
        let mut inner = self.lock();
        if inner.generation != generation
            || !self.live.load(Ordering::Acquire)
            || self.ttl.is_zero()
        {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.retain(|_, e| e.at.elapsed() < self.ttl);
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
        }
        inner.entries.insert(
            key(address),
            Entry {
                answer,
                at: Instant::now(),
            },
        );
    }

    /// Drops every answer (a directory change, or the event feed going up or down).
    fn invalidate(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.generation = inner.generation.wrapping_add(1);
    }

    fn set_live(&self, live: bool) {
        self.invalidate();
        self.live.store(live, Ordering::Release);
        self.live_gauge.set(i64::from(live));
    }

    fn event(&self, seq: u64) {
        self.invalidate();
        self.invalidations.inc();
        let last = self.last_seq_raw.fetch_max(seq, Ordering::AcqRel).max(seq);
        self.last_seq.set(i64::try_from(last).unwrap_or(i64::MAX));
    }
}

/// Consumes mailstore's directory events until `shutdown`, emptying the
/// cache on each, and reconnecting after a failure (the cache answers
/// nothing meanwhile).
pub async fn watch(
    cache: std::sync::Arc<RecipientCache>,
    amqp_url: String,
    prefix: String,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            result = consume(&cache, &amqp_url, &prefix) => {
                if let Err(error) = result {
                    tracing::warn!(%error, "Directory events interrupted; the recipient cache is off until they are back.");
                }
            }
        }
        cache.set_live(false);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
    cache.set_live(false);
}

async fn consume(
    cache: &RecipientCache,
    amqp_url: &str,
    prefix: &str,
) -> Result<(), mailfleet_queue::QueueError> {
    let exchange = mailfleet_queue::names(prefix).directory;
    let mut sub = mailfleet_queue::subscribe(amqp_url, prefix, &exchange, "").await?;
    // Bound before live: no change from here on goes unseen.
    cache.set_live(true);
    tracing::info!("Consuming directory events; the recipient cache is on.");
    while let Some(delivery) = sub.consumer.next().await {
        let delivery = delivery?;
        // An event that does not decode still means "something changed".
        let seq = DirectoryEvent::decode(delivery.data.as_slice())
            .map(|e| e.seq)
            .unwrap_or(0);
        cache.event(seq);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn local() -> Answer {
        Answer {
            resolution: Resolution::Local,
            accounts: vec!["u@x.test".into()],
        }
    }

    #[test]
    fn serves_only_while_live_and_forgets_on_events() {
        let c = RecipientCache::default();
        let g = c.get("u@x.test").unwrap_err();
        c.put("u@x.test", g, local());
        // Not live yet: nothing kept, nothing served.
        assert!(c.get("u@x.test").is_err());
        c.set_live(true);
        let g = c.get("u@x.test").unwrap_err();
        c.put("<U@X.test>", g, local());
        assert_eq!(c.get("u@x.test").unwrap(), local());
        c.event(7);
        assert!(c.get("u@x.test").is_err());
        assert_eq!(c.last_seq.get(), 7);
    }

    #[test]
    fn an_answer_asked_before_a_change_is_not_kept() {
        let c = RecipientCache::default();
        c.set_live(true);
        let g = c.get("u@x.test").unwrap_err();
        c.event(1);
        c.put("u@x.test", g, local());
        assert!(c.get("u@x.test").is_err());
    }

    #[test]
    fn stays_bounded() {
        let c = RecipientCache::default();
        c.set_live(true);
        for i in 0..MAX_ENTRIES + 10 {
            let a = format!("u{i}@x.test");
            let g = c.get(&a).unwrap_err();
            c.put(&a, g, local());
        }
        assert!(c.lock().entries.len() <= MAX_ENTRIES);
    }
}
