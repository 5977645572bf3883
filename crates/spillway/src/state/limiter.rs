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
//! A job's end already reads the clock once. Each worker keeps its samples in its own
//! [`Samples`] batch and hands them to the algorithm (one lock, the algorithm's few additions per
//! sample, its law once per window) when the batch is full or its oldest sample is
//! [`MAX_BATCH_AGE`] old. So at a high rate a job's end costs a few stores into memory of its
//! own, and the shared lock and the algorithm's state move between cores once per batch, not once
//! per job (handing over at every park would undo that: at a moderate rate a worker parks after
//! every job). Jobs that run inline (`Pool::run`) keep theirs in one batch per shard of threads,
//! inside the metrics' shard, under the lock a job's end takes for its timings anyway. At a low
//! rate, where jobs end more than a millisecond apart, every sample is handed over as it comes.
//! The samples of a worker's last jobs before it parks wait for its next job: a pool whose
//! workers park is not saturated, so they hold nothing the law is waiting for, and its windows
//! last at least 10 ms anyway. A shed submission only sets a flag (a load, when it is set
//! already, as under a standing overload: no read-modify-write on the refusal path); the next
//! batch delivers it.
//!
//! [`Counts::take_next_within`]: super::counts::Counts::take_next_within

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::limit::{Bounds, Limit, LimitAlgorithm, Sample};
use crate::priority::Priority;

/// Samples a worker keeps before it hands them to the algorithm.
const BATCH: usize = 16;

/// Samples a shard of inline jobs keeps before it hands them to the algorithm: more than a
/// worker, as there are at most 16 such batches (not one per worker, up to `max_workers`), and
/// an inline job's whole bookkeeping is cheap enough for the hand-over to show.
pub(crate) const INLINE_BATCH: usize = 64;

/// The oldest a kept sample may get before the batch is handed over.
pub(crate) const MAX_BATCH_AGE: Duration = Duration::from_millis(1);

/// One worker's samples (or one shard's, of inline jobs) not yet handed to the algorithm, each
/// with its job's end (since the pool's epoch); at most `N`.
#[derive(Debug)]
pub(crate) struct Samples<const N: usize = BATCH> {
    kept: [(Duration, Sample); N],
    len: usize,
}

impl<const N: usize> Default for Samples<N> {
    fn default() -> Samples<N> {
        let none = Sample {
            run: Duration::ZERO,
            queue_wait: Duration::ZERO,
            in_flight: 0,
            dropped: false,
        };
        Samples {
            kept: [(Duration::ZERO, none); N],
            len: 0,
        }
    }
}

impl<const N: usize> Samples<N> {
    fn is_due(&self, now: Duration) -> bool {
        self.len == N || now.saturating_sub(self.kept[0].0) >= MAX_BATCH_AGE
    }
}

/// The driver: the algorithm behind a lock, its verdicts in atomics.
pub(crate) struct Limiter {
    /// `None` for [`Limit::fixed`]. Padded: the workers write its lock on every sample, the
    /// submitters read the atomics below on every admission.
    algorithm: Option<CachePadded<Mutex<LimitAlgorithm>>>,
    capacity: usize,
    limit: AtomicUsize,
    queue_bound: AtomicUsize,
    /// `queue_bound < capacity`: otherwise the queue's own capacity is the whole check.
    queue_bounded: AtomicBool,
    /// The queue bound applies to the queue alone too, not only to the jobs beyond the limit
    /// (not for the adaptive law's cold bound: a cold burst waits for workers not started yet).
    queue_alone: AtomicBool,
    /// Nanoseconds a queued job may wait before a worker drops it; `u64::MAX` for never.
    drop_after: AtomicU64,
    /// A submission was shed since the algorithm last heard of it (the algorithm wants to know
    /// whether, not how many).
    shed: CachePadded<AtomicBool>,
}

impl Limiter {
    pub(crate) fn new(limit: &Limit, bounds: Bounds, capacity: usize) -> Limiter {
        let algorithm = LimitAlgorithm::new(limit, bounds);
        let limiter = Limiter {
            capacity,
            limit: AtomicUsize::new(algorithm.limit()),
            queue_bound: AtomicUsize::new(algorithm.queue_bound(capacity)),
            queue_bounded: AtomicBool::new(
                !matches!(algorithm, LimitAlgorithm::Fixed(_))
                    && algorithm.queue_bound(capacity) < capacity,
            ),
            queue_alone: AtomicBool::new(algorithm.bounds_queue_alone()),
            drop_after: AtomicU64::new(u64::MAX),
            shed: CachePadded::new(AtomicBool::new(false)),
            algorithm: match algorithm {
                LimitAlgorithm::Fixed(_) => None,
                other => Some(CachePadded::new(Mutex::new(other))),
            },
        };
        tracing::debug!(
            limit = limiter.limit(),
            algorithm = limit.name(),
            "initial limit"
        );
        limiter
    }

    #[inline]
    pub(crate) fn is_fixed(&self) -> bool {
        self.algorithm.is_none()
    }

    /// The current concurrency limit.
    #[inline]
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether admission must check [`has_room`](Self::has_room): the algorithm bounds the queue
    /// below its capacity (never for [`Limit::fixed`]). Otherwise, as at most `limit` run, the
    /// queue's capacity alone decides.
    #[inline]
    pub(crate) fn bounds_queue(&self) -> bool {
        self.queue_bounded.load(Ordering::Relaxed)
    }

    /// Whether one more job of `priority` may be admitted when `busy` run and `queued` wait:
    /// fewer than `tolerance x queue bound` queued (unless the bound is zero, or the algorithm
    /// bounds only what waits beyond the limit) and fewer than `limit + tolerance x queue
    /// bound` in flight, the tolerance being [`Priority::queue_tolerance`]. The first matters
    /// when the workers lag the limit (`busy` below it): the queue bound bounds the queue,
    /// whatever part of the limit is idle. (Read without a lock, so racing submitters may pass
    /// together; `queue_capacity` stays the hard ceiling.)
    #[inline]
    pub(crate) fn has_room(&self, busy: usize, queued: usize, priority: Priority) -> bool {
        let bound = self.queue_bound.load(Ordering::Relaxed);
        let tolerance = priority.queue_tolerance() as usize;
        let queue = bound.saturating_mul(tolerance);
        // A bound of zero (the peers: no queue) leaves the jobs on their way to a worker alone.
        let queue_room = queue == 0 || queued < queue || !self.queue_alone.load(Ordering::Relaxed);
        queue_room && busy.saturating_add(queued) < self.limit().saturating_add(queue)
    }

    /// Whether a job of `priority` that waited `waited` must be dropped at dequeue (CoDel's
    /// rule, its age divided by [`Priority::queue_tolerance`]).
    pub(crate) fn drop_at_dequeue(&self, waited: Duration, priority: Priority) -> bool {
        let after = self.drop_after.load(Ordering::Relaxed);
        let age = waited / priority.queue_tolerance();
        after != u64::MAX && u64::try_from(age.as_nanos()).unwrap_or(u64::MAX) > after
    }

    /// A submission was shed (the limit's bound or the queue was full).
    #[inline]
    pub(crate) fn shed(&self) {
        if !self.is_fixed() && !self.shed.load(Ordering::Relaxed) {
            self.shed.store(true, Ordering::Relaxed);
        }
    }

    /// Keeps the sample of a job that ended `now` (since the pool's epoch) in `batch`, and
    /// hands the batch over when it is due (see "Cost"). Returns `true` if the limit rose, so
    /// parked workers may now take queued jobs.
    pub(crate) fn on_sample<const N: usize>(
        &self,
        batch: &mut Samples<N>,
        now: Duration,
        sample: &Sample,
    ) -> bool {
        if self.is_fixed() {
            return false;
        }
        batch.kept[batch.len] = (now, *sample);
        batch.len += 1;
        batch.is_due(now) && self.flush(batch)
    }

    /// Hands `batch` to the algorithm and empties it. Returns `true` if the limit rose.
    pub(crate) fn flush<const N: usize>(&self, batch: &mut Samples<N>) -> bool {
        let Some(algorithm) = &self.algorithm else {
            return false;
        };
        let kept = std::mem::take(&mut batch.len);
        if kept == 0 {
            return false;
        }
        let mut algorithm = crate::sync::lock_std(algorithm);
        if self.shed.swap(false, Ordering::Relaxed) {
            algorithm.on_shed(batch.kept[0].0, moved);
        }
        let before = self.limit();
        algorithm.on_samples(&batch.kept[..kept], moved);
        self.publish(&algorithm);
        algorithm.limit() > before
    }

    /// Stores the algorithm's verdicts where the hot paths read them; only those that changed,
    /// so that the submitters' cached copies stay valid between two moves.
    fn publish(&self, algorithm: &LimitAlgorithm) {
        let drop_after = algorithm.drop_after().map_or(u64::MAX, |after| {
            u64::try_from(after.as_nanos()).unwrap_or(u64::MAX - 1)
        });
        store_if_changed(&self.limit, algorithm.limit());
        let queue_bound = algorithm.queue_bound(self.capacity);
        store_if_changed(&self.queue_bound, queue_bound);
        let bounded = queue_bound < self.capacity;
        if self.queue_bounded.load(Ordering::Relaxed) != bounded {
            self.queue_bounded.store(bounded, Ordering::Relaxed);
        }
        let alone = algorithm.bounds_queue_alone();
        if self.queue_alone.load(Ordering::Relaxed) != alone {
            self.queue_alone.store(alone, Ordering::Relaxed);
        }
        if self.drop_after.load(Ordering::Relaxed) != drop_after {
            self.drop_after.store(drop_after, Ordering::Relaxed);
        }
    }
}

/// The debug log of a move of the limit to `after`, for `reason`.
fn moved(after: usize, reason: Option<&'static str>) {
    tracing::debug!(
        after,
        reason = reason.unwrap_or("the algorithm's rule"),
        "concurrency limit moved"
    );
}

fn store_if_changed(cell: &AtomicUsize, value: usize) {
    if cell.load(Ordering::Relaxed) != value {
        cell.store(value, Ordering::Relaxed);
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
        assert!(!limiter.bounds_queue());
        assert_eq!(limiter.limit(), 8);
        assert!(limiter.has_room(8, 99, Priority::Normal));
        assert!(!limiter.has_room(8, 100, Priority::Normal));
        assert!(!limiter.drop_at_dequeue(Duration::MAX, Priority::Normal));
        let mut batch: Samples = Samples::default();
        assert!(!limiter.on_sample(&mut batch, Duration::ZERO, &Sample::ran(1, 1)));
        assert_eq!(batch.len, 0);
    }

    #[test]
    fn higher_priorities_tolerate_a_deeper_and_older_standing_queue() {
        let limiter = Limiter::new(&Limit::default(), Bounds { min: 1, max: 100 }, 1_000);
        let limit = limiter.limit();
        // a standing queue: its bound applies to the queue alone too
        limiter.queue_bound.store(10, Ordering::Relaxed);
        limiter.queue_alone.store(true, Ordering::Relaxed);
        limiter.drop_after.store(10_000_000, Ordering::Relaxed);
        let full = limit + 10;
        assert!(
            !limiter.has_room(0, 10, Priority::Normal),
            "the bound is on the queue, however few run"
        );
        assert!(limiter.has_room(0, 9, Priority::Normal));
        assert!(!limiter.has_room(full, 0, Priority::Low));
        assert!(!limiter.has_room(full, 0, Priority::Normal));
        assert!(limiter.has_room(full, 0, Priority::High));
        assert!(!limiter.has_room(limit + 20, 0, Priority::High));
        assert!(limiter.has_room(limit + 39, 0, Priority::Critical));
        assert!(!limiter.has_room(limit + 40, 0, Priority::Critical));
        let waited = Duration::from_millis(15);
        assert!(limiter.drop_at_dequeue(waited, Priority::Low));
        assert!(limiter.drop_at_dequeue(waited, Priority::Normal));
        assert!(!limiter.drop_at_dequeue(waited, Priority::High));
        assert!(limiter.drop_at_dequeue(Duration::from_millis(21), Priority::High));
        assert!(!limiter.drop_at_dequeue(Duration::from_millis(40), Priority::Critical));
        assert!(limiter.drop_at_dequeue(Duration::from_millis(41), Priority::Critical));
    }

    #[test]
    fn the_cold_bound_counts_only_what_waits_beyond_the_limit() {
        // a cold burst, submitted before the workers started: 1,500 queued, none running yet
        let limiter = Limiter::new(&Limit::default(), Bounds { min: 1, max: 5_000 }, 100_000);
        assert_eq!(limiter.limit(), 750, "the cold limit");
        assert!(
            limiter.bounds_queue(),
            "cold: 1,000 (the initial limit) may wait beyond the limit"
        );
        assert!(limiter.has_room(0, 1_500, Priority::Normal));
        assert!(limiter.has_room(0, 1_749, Priority::Normal));
        assert!(!limiter.has_room(0, 1_750, Priority::Normal));
        assert!(!limiter.has_room(750, 1_000, Priority::Normal));
    }

    #[test]
    fn a_peer_admits_only_up_to_its_limit_and_publishes_its_moves() {
        let limiter = Limiter::new(&Limit::aimd().into(), Bounds { min: 1, max: 1_000 }, 100);
        let start = limiter.limit();
        assert!(limiter.bounds_queue());
        assert!(limiter.has_room(start - 1, 0, Priority::Normal));
        assert!(
            !limiter.has_room(start, 0, Priority::Normal),
            "no queue for Netflix's limiters"
        );
        let mut batch: Samples = Samples::default();
        assert!(
            !limiter.on_sample(&mut batch, Duration::ZERO, &Sample::ran(10, start)),
            "kept: the batch is fresh and not full"
        );
        assert_eq!(limiter.limit(), start);
        assert!(
            limiter.flush(&mut batch),
            "handed over at the worker's park"
        );
        assert_eq!(limiter.limit(), start + 1);
        for i in 0..BATCH as u64 {
            let rose = limiter.on_sample(&mut batch, Duration::from_micros(i), &Sample::ran(10, 1));
            assert_eq!(
                batch.len == 0,
                i + 1 == BATCH as u64,
                "handed over when full"
            );
            assert!(!rose, "at most half used: AIMD holds");
        }
        limiter.on_sample(&mut batch, Duration::ZERO, &Sample::ran(10, 1));
        limiter.on_sample(&mut batch, MAX_BATCH_AGE, &Sample::ran(10, 1));
        assert_eq!(batch.len, 0, "handed over when the oldest is old enough");
    }

    #[test]
    fn an_inline_batch_holds_more_samples_than_a_workers() {
        let limiter = Limiter::new(&Limit::aimd().into(), Bounds { min: 1, max: 1_000 }, 100);
        let mut batch: Samples<INLINE_BATCH> = Samples::default();
        for i in 0..INLINE_BATCH {
            limiter.on_sample(&mut batch, Duration::ZERO, &Sample::ran(10, 1));
            assert_eq!(
                batch.len,
                (i + 1) % INLINE_BATCH,
                "handed over only when full"
            );
        }
    }
}
