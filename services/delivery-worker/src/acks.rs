//! Which delivery tags of one channel can be acked, and how cheaply.
//!
//! Batches usually finish in tag order, so most acks are one `basic.ack` with
//! `multiple` on the highest tag below every tag still held. A tag finished
//! out of order (an earlier job is still in a batch or waiting to be
//! requeued) is acked on its own, so it never waits behind a slow job and the
//! prefetch window keeps moving. Pure bookkeeping: no I/O here.

use std::collections::BTreeSet;

/// The tags one channel holds unsettled.
#[derive(Debug, Default)]
pub struct AckTracker {
    held: BTreeSet<u64>,
}

/// The acks that settle a set of finished tags.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AckPlan {
    /// `basic.ack(tag, multiple = true)`: settles every finished tag up to it.
    pub multiple: Option<u64>,
    /// `basic.ack(tag, multiple = false)` each.
    pub single: Vec<u64>,
}

impl AckTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A delivery arrived and is now held.
    pub fn received(&mut self, tag: u64) {
        self.held.insert(tag);
    }

    /// The tag was settled some other way (rejected or nacked).
    pub fn forget(&mut self, tag: u64) {
        self.held.remove(&tag);
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The tags are finished: returns how to ack them. Every tag below the
    /// `multiple` tag is either in `done` or was settled before, so the
    /// multiple ack never touches a job still in progress.
    pub fn complete(&mut self, done: &[u64]) -> AckPlan {
        for tag in done {
            self.held.remove(tag);
        }
        let lowest_held = self.held.first().copied();
        let mut plan = AckPlan::default();
        for &tag in done {
            match lowest_held {
                Some(low) if tag > low => plan.single.push(tag),
                _ => plan.multiple = Some(plan.multiple.map_or(tag, |m| m.max(tag))),
            }
        }
        plan.single.sort_unstable();
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(tags: impl IntoIterator<Item = u64>) -> AckTracker {
        let mut t = AckTracker::new();
        for tag in tags {
            t.received(tag);
        }
        t
    }

    #[test]
    fn in_order_batches_ack_with_multiple() {
        let mut t = tracker(1..=6);
        assert_eq!(
            t.complete(&[1, 2, 3]),
            AckPlan {
                multiple: Some(3),
                single: vec![]
            }
        );
        assert_eq!(t.complete(&[4, 5, 6]).multiple, Some(6));
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn out_of_order_batch_acks_singly() {
        let mut t = tracker(1..=6);
        assert_eq!(
            t.complete(&[4, 5, 6]),
            AckPlan {
                multiple: None,
                single: vec![4, 5, 6]
            }
        );
        assert_eq!(t.complete(&[1, 2, 3]).multiple, Some(3));
    }

    #[test]
    fn a_held_job_splits_the_batch() {
        let mut t = tracker(1..=5);
        // Tag 3 failed temporarily and waits to be requeued.
        assert_eq!(
            t.complete(&[1, 2, 4, 5]),
            AckPlan {
                multiple: Some(2),
                single: vec![4, 5]
            }
        );
        t.forget(3);
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn rejected_tags_do_not_block() {
        let mut t = tracker(1..=3);
        t.forget(1);
        assert_eq!(t.complete(&[2, 3]).multiple, Some(3));
    }
}
