//! [`Limiter`]: the driver of the pool's concurrency limit. It owns the pure algorithm of
//! [`crate::limit`], feeds it one [`Sample`] per ended job, and publishes what admission and the
//! workers read on their hot paths in atomics, so that they never lock:
//!
//! * the **limit** (at most that many jobs run at once: [`Counts::take_next_within`]);
//! * the **queue bound** (how many may wait beyond the running ones: [`Limiter::has_room`]);
//! * the **drop age** (a queued job older than this is dropped when a worker takes it, CoDel).
//!
//! With [`Limit::fixed`] there is no algorithm at all: the limit is `max_workers`, the queue is
//! bounded by `queue_capacity` alone, and the hot paths take the pool's original branch.
//!
//! # Cost
//!
//! A job's end already reads the clock once; the driver adds one `try_lock` of an uncontended
//! mutex and the algorithm's few additions (its law runs once per window). When another worker
//! holds the lock, the sample is skipped: the algorithm works on window means over at least 64
//! jobs, so a lost sample under contention changes nothing it decides on. A shed submission only
//! increments an atomic; the next sample delivers it.
//!
//! [`Counts::take_next_within`]: super::counts::Counts::take_next_within

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::limit::{Bounds, Limit, LimitAlgorithm, Sample};

/// The driver: the algorithm behind a lock, its verdicts in atomics.
pub(crate) struct Limiter {
    /// `None` for [`Limit::fixed`].
    algorithm: Option<Mutex<LimitAlgorithm>>,
    capacity: usize,
    limit: AtomicUsize,
    queue_bound: AtomicUsize,
    /// Nanoseconds a queued job may wait before a worker drops it; `u64::MAX` for never.
    drop_after: AtomicU64,
    /// Submissions shed since the algorithm last heard of it.
    shed: AtomicU64,
}

impl Limiter {
    pub(crate) fn new(limit: &Limit, bounds: Bounds, capacity: usize) -> Limiter {
        let algorithm = LimitAlgorithm::new(limit, bounds);
        let limiter = Limiter {
            capacity,
            limit: AtomicUsize::new(algorithm.limit()),
            queue_bound: AtomicUsize::new(algorithm.queue_bound(capacity)),
            drop_after: AtomicU64::new(u64::MAX),
            shed: AtomicU64::new(0),
            algorithm: match algorithm {
                LimitAlgorithm::Fixed(_) => None,
                other => Some(Mutex::new(other)),
            },
        };
        tracing::debug!(
            limit = limiter.limit(),
            algorithm = limit.name(),
            "initial limit"
        );
        limiter
    }

    pub(crate) fn is_fixed(&self) -> bool {
        self.algorithm.is_none()
    }

    /// The current concurrency limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether one more job may be admitted when `busy` run and `queued` wait: fewer than
    /// `limit + queue bound` in flight. (Read without a lock, so racing submitters may pass
    /// together; `queue_capacity` stays the hard ceiling.)
    pub(crate) fn has_room(&self, busy: usize, queued: usize) -> bool {
        let room = self
            .limit()
            .saturating_add(self.queue_bound.load(Ordering::Relaxed));
        busy.saturating_add(queued) < room
    }

    /// Whether a job that waited `waited` must be dropped at dequeue (CoDel's rule).
    pub(crate) fn drop_at_dequeue(&self, waited: Duration) -> bool {
        let after = self.drop_after.load(Ordering::Relaxed);
        after != u64::MAX && u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX) > after
    }

    /// A submission was shed (the limit's bound or the queue was full).
    pub(crate) fn shed(&self) {
        if !self.is_fixed() {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Feeds the sample of a job that ended `now` (since the pool's epoch). Returns `true` if the
    /// limit rose, so parked workers may now take queued jobs.
    pub(crate) fn on_sample(&self, now: Duration, sample: &Sample) -> bool {
        let Some(algorithm) = &self.algorithm else {
            return false;
        };
        let Ok(mut algorithm) = algorithm.try_lock() else {
            return false; // another worker is feeding it: skip this sample (see "Cost")
        };
        if self.shed.load(Ordering::Relaxed) > 0 {
            self.shed.store(0, Ordering::Relaxed);
            algorithm.on_shed(now);
        }
        let before = self.limit();
        let changed = algorithm.on_sample(now, sample);
        self.publish(&algorithm);
        match changed {
            Some(after) => {
                tracing::debug!(
                    before,
                    after,
                    reason = algorithm.reason().unwrap_or("algorithm rule"),
                    "concurrency limit moved"
                );
                after > before
            }
            None => false,
        }
    }

    /// Stores the algorithm's verdicts where the hot paths read them.
    fn publish(&self, algorithm: &LimitAlgorithm) {
        self.limit.store(algorithm.limit(), Ordering::Relaxed);
        self.queue_bound
            .store(algorithm.queue_bound(self.capacity), Ordering::Relaxed);
        let drop_after = algorithm.drop_after().map_or(u64::MAX, |after| {
            u64::try_from(after.as_nanos()).unwrap_or(u64::MAX - 1)
        });
        self.drop_after.store(drop_after, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit())
            .field("queue_bound", &self.queue_bound.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_has_no_algorithm_and_the_full_room() {
        let limiter = Limiter::new(&Limit::fixed(), Bounds { min: 1, max: 8 }, 100);
        assert!(limiter.is_fixed());
        assert_eq!(limiter.limit(), 8);
        assert!(limiter.has_room(8, 99));
        assert!(!limiter.has_room(8, 100));
        assert!(!limiter.drop_at_dequeue(Duration::MAX));
        assert!(!limiter.on_sample(Duration::ZERO, &Sample::ran(1, 1)));
    }

    #[test]
    fn a_peer_admits_only_up_to_its_limit_and_publishes_its_moves() {
        let limiter = Limiter::new(&Limit::aimd().into(), Bounds { min: 1, max: 1_000 }, 100);
        let start = limiter.limit();
        assert!(limiter.has_room(start - 1, 0));
        assert!(
            !limiter.has_room(start, 0),
            "no queue for Netflix's limiters"
        );
        assert!(limiter.on_sample(Duration::ZERO, &Sample::ran(10, start)));
        assert_eq!(limiter.limit(), start + 1);
    }
}
