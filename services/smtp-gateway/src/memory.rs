//! One budget for the message bytes that all SMTP sessions of a gateway hold
//! in memory at once: a body kept whole for DKIM verification on the MX
//! role, the copy without forged `Authentication-Results`, and what the body
//! writer buffers before storing (a small body kept for one PUT, the part of
//! a multipart upload being filled).
//!
//! Each limit alone is per session, so many sessions that stop before the
//! final dot would add up to whatever the pod has; the budget bounds their
//! sum (`smtp_body_memory`). A session reserves bytes before it takes a chunk
//! and gives back what it no longer holds; one that finds the budget spent
//! waits, without reading more from its client (TCP pushes back), until
//! other sessions finish, for at most the data timeout, and then fails the
//! message with a 4xx. Giving up DKIM under pressure instead would not help:
//! the held bytes would only move into the body writer's buffer, and a
//! verdict taken on part of a message is a verdict an attacker can steer.
//!
//! A tokio semaphore with one permit per byte does the counting, fairly (the
//! first session to wait is the first served). A session holding part of a
//! body and waiting for more can wait for others that wait too; the data
//! timeout ends that (the waiter's message fails and its memory goes back),
//! and a message at its final dot never waits (see `Intake::finish`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The gateway's budget, shared by every session.
pub struct BodyMemory {
    semaphore: Arc<Semaphore>,
    limit: usize,
    /// `mailfleet_smtp_body_memory_bytes`.
    held_gauge: Gauge,
    /// `mailfleet_smtp_body_memory_waiting`.
    waiting: Gauge,
    /// `mailfleet_smtp_body_memory_waits_total`.
    waits: Counter,
}

impl std::fmt::Debug for BodyMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyMemory")
            .field("limit", &self.limit)
            .field("held", &self.held())
            .finish()
    }
}

impl BodyMemory {
    pub fn new(limit: u64, metrics: &Metrics) -> Arc<Self> {
        // tokio's ceiling for the permits of one semaphore.
        let limit = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        metrics.body_memory_limit.set(limit as i64);
        Arc::new(Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
            held_gauge: metrics.body_memory_bytes.clone(),
            waiting: metrics.body_memory_waiting.clone(),
            waits: metrics.body_memory_waits.clone(),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved by all sessions now.
    pub fn held(&self) -> usize {
        self.limit - self.semaphore.available_permits()
    }

    fn publish(&self) {
        self.held_gauge.set(self.held() as i64);
    }
}

/// What one message holds of the budget; given back when dropped.
pub struct Charge {
    memory: Arc<BodyMemory>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    pub fn new(memory: Arc<BodyMemory>) -> Self {
        Self {
            memory,
            permit: None,
        }
    }

    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Grows the charge to `bytes`, waiting up to `wait` for other sessions
    /// to give some back. `false` when the wait ran out (or `bytes` exceeds
    /// the whole budget); the charge is then unchanged.
    pub async fn reserve(&mut self, bytes: usize, wait: Duration) -> bool {
        let more = bytes.saturating_sub(self.bytes());
        if more == 0 {
            return true;
        }
        let memory = &self.memory;
        let Some(more) = u32::try_from(more)
            .ok()
            .filter(|m| *m as usize <= memory.limit)
        else {
            return false;
        };
        let permit = match memory.semaphore.clone().try_acquire_many_owned(more) {
            Ok(permit) => permit,
            Err(_) => {
                memory.waits.inc();
                memory.waiting.inc();
                let acquired =
                    tokio::time::timeout(wait, memory.semaphore.clone().acquire_many_owned(more))
                        .await;
                memory.waiting.dec();
                match acquired {
                    Ok(Ok(permit)) => permit,
                    // Timed out, or the semaphore closed (it never is).
                    _ => return false,
                }
            }
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.memory.publish();
        true
    }

    /// Grows the charge to `bytes` if the budget has room now; never waits.
    pub fn reserve_now(&mut self, bytes: usize) -> bool {
        let more = bytes.saturating_sub(self.bytes());
        if more == 0 {
            return true;
        }
        let Ok(more) = u32::try_from(more) else {
            return false;
        };
        let Ok(permit) = self.memory.semaphore.clone().try_acquire_many_owned(more) else {
            return false;
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.memory.publish();
        true
    }

    /// Gives back everything above `bytes`.
    pub fn trim(&mut self, bytes: usize) {
        let extra = self.bytes().saturating_sub(bytes);
        if extra == 0 {
            return;
        }
        if let Some(held) = &mut self.permit {
            drop(held.split(extra));
        }
        self.memory.publish();
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.memory.publish();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_charge_waits_for_bytes_another_gives_back() {
        let metrics = Metrics::default();
        let memory = BodyMemory::new(100, &metrics);
        let mut a = Charge::new(memory.clone());
        assert!(a.reserve(80, Duration::from_secs(5)).await);
        assert_eq!(memory.held(), 80);
        let mut b = Charge::new(memory.clone());
        assert!(!b.reserve(30, Duration::ZERO).await, "over the budget");
        assert!(
            !b.reserve(101, Duration::from_secs(5)).await,
            "over the whole budget"
        );
        a.trim(50);
        assert_eq!((a.bytes(), memory.held()), (50, 50));
        assert!(b.reserve(30, Duration::ZERO).await);
        let waiter = {
            let memory = memory.clone();
            tokio::spawn(async move {
                let mut c = Charge::new(memory);
                let ok = c.reserve(60, Duration::from_secs(60)).await;
                (ok, c.bytes())
            })
        };
        while metrics.body_memory_waiting.get() == 0 {
            tokio::task::yield_now().await;
        }
        drop(a);
        assert_eq!(waiter.await.unwrap(), (true, 60));
        // The zero-length wait above counts as one.
        assert_eq!(metrics.body_memory_waits.get(), 2);
        assert_eq!(memory.held(), 30, "the waiter's charge went with it");
        assert_eq!(metrics.body_memory_bytes.get(), 30);
    }
}
