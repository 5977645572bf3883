//! Concurrency limits: how many jobs may run at once, moved by an algorithm fed one [`Sample`] per
//! finished job.
//!
//! Every algorithm here is a pure state machine: no clock, no thread, no atomic. The driver (the
//! pool) owns one [`LimitAlgorithm`], feeds it a [`Sample`] when a job ends and tells it when a
//! submission was shed, passing "now" as a [`Duration`] since the pool's epoch, and applies the
//! limit it returns. Tests drive time by hand.
//!
//! * [`adaptive`]: the default, designed for an in-process pool (its module docs argue the law).
//! * [`gradient2`], [`vegas`], [`aimd`]: faithful ports of Netflix concurrency-limits, kept as
//!   baselines a user can pick; each module says where and why it deviates from the Java code.
//! * fixed: the limit is the ceiling, `max_workers` (spillway's behaviour before limits existed).
//!
//! Whatever the algorithm, its limit stays within the driver's [`Bounds`]
//! (`min_workers..=max_workers`); a peer's own published minimum and maximum narrow that range
//! further.

pub(crate) mod adaptive;
pub(crate) mod aimd;
mod config;
pub(crate) mod ended;
pub(crate) mod gradient2;
mod measure;
#[cfg(test)]
mod model;
#[cfg(test)]
mod props;
#[cfg(test)]
mod scenarios;
mod standing;
pub(crate) mod vegas;

use std::time::Duration;

pub(crate) use config::InvalidLimit;
pub(crate) use config::Kind;
pub use config::{Adaptive, Aimd, Gradient2, Limit, Vegas};

/// What the pool observed about one job when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Start to end of the job's body (excludes the queue). Zero for a job dropped before it ran.
    pub(crate) run: Duration,
    /// Submission to start (or to the drop, for a job that never ran).
    pub(crate) queue_wait: Duration,
    /// Jobs running when this one started, itself included (Netflix's `inflight`, also taken at
    /// acquire time). For a job dropped before it ran: the jobs running when it was dropped.
    pub(crate) in_flight: usize,
    /// The job did not complete normally: it expired in the queue, was dropped at dequeue or hit
    /// a timeout (Netflix's `didDrop`).
    pub(crate) dropped: bool,
}

#[cfg(test)]
impl Sample {
    /// A job that ran `run_ms` and started with `in_flight` running, without queueing.
    pub(crate) fn ran(run_ms: u64, in_flight: usize) -> Sample {
        Sample {
            run: Duration::from_millis(run_ms),
            queue_wait: Duration::ZERO,
            in_flight,
            dropped: false,
        }
    }

    pub(crate) fn with_wait(self, wait_ms: u64) -> Sample {
        Sample {
            queue_wait: Duration::from_millis(wait_ms),
            ..self
        }
    }

    pub(crate) fn with_drop(self, dropped: bool) -> Sample {
        Sample { dropped, ..self }
    }
}

/// The driver's hard range for the limit: `min_workers..=max_workers` (see
/// [`Bounds::for_pool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) min: usize,
    pub(crate) max: usize,
}

impl Bounds {
    /// The range of a pool's `limit`: up to `max_workers`, and at least `min_workers` and one
    /// job (even with `min_workers = 0`). The adaptive limit also keeps one job per thread of
    /// the pool's runtime (`threads`, within `max_workers`): under that, a thread that a
    /// CPU-bound job could use stays idle, and the law cannot tell jobs that only slow each
    /// other down (a shared lock, a shared cache line: what empty jobs do) from a saturated
    /// CPU. The peers' ports keep their own floors.
    pub(crate) fn for_pool(
        limit: &Limit,
        min_workers: usize,
        max_workers: usize,
        threads: usize,
    ) -> Bounds {
        let least = min_workers.max(1);
        let min = match limit.kind() {
            Kind::Adaptive(_) => least.max(threads.min(max_workers)),
            _ => least,
        };
        Bounds {
            min,
            max: max_workers,
        }
    }

    /// The driver's range narrowed by an algorithm's own `[min, max]`, never leaving the driver's.
    /// Assumes `self.min <= self.max` (the builder validates it).
    pub(crate) fn narrowed(self, min: usize, max: usize) -> Bounds {
        let max = max.min(self.max).max(self.min);
        let min = min.max(self.min).min(max);
        Bounds { min, max }
    }

    /// `value` (any float, even NaN or infinite) clamped into the range, as a count.
    pub(crate) fn clamp(self, value: f64) -> usize {
        if value.is_nan() {
            return self.min;
        }
        // `as` saturates: infinities and huge values land on usize::MAX, then on max.
        (value.floor() as usize).clamp(self.min, self.max)
    }
}

/// The algorithm the driver holds: one variant per [`Limit`] kind, dispatched by `match`.
#[derive(Debug, Clone)]
// One per pool, behind the limiter's lock: boxing the large variant would only add an
// indirection to every window it closes.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LimitAlgorithm {
    Fixed(usize),
    Adaptive(adaptive::AdaptiveLimit),
    Gradient2(gradient2::Gradient2Limit),
    Vegas(vegas::VegasLimit),
    Aimd(aimd::AimdLimit),
}

impl LimitAlgorithm {
    /// The algorithm `limit` describes, its limit kept within `bounds`. `limit` must have passed
    /// [`Limit::validate`].
    pub(crate) fn new(limit: &Limit, bounds: Bounds) -> LimitAlgorithm {
        match limit.kind() {
            Kind::Fixed => LimitAlgorithm::Fixed(bounds.max),
            Kind::Adaptive(c) => LimitAlgorithm::Adaptive(adaptive::AdaptiveLimit::new(c, bounds)),
            Kind::Gradient2(c) => {
                LimitAlgorithm::Gradient2(gradient2::Gradient2Limit::new(c, bounds))
            }
            Kind::Vegas(c) => LimitAlgorithm::Vegas(vegas::VegasLimit::new(c, bounds)),
            Kind::Aimd(c) => LimitAlgorithm::Aimd(aimd::AimdLimit::new(c, bounds)),
        }
    }

    /// The current concurrency limit.
    pub(crate) fn limit(&self) -> usize {
        match self {
            LimitAlgorithm::Fixed(limit) => *limit,
            LimitAlgorithm::Adaptive(a) => a.limit(),
            LimitAlgorithm::Gradient2(a) => a.limit(),
            LimitAlgorithm::Vegas(a) => a.limit(),
            LimitAlgorithm::Aimd(a) => a.limit(),
        }
    }

    /// Why the adaptive limit last moved or held, for the driver's debug log (`None` for the
    /// other algorithms, whose rules are documented in their modules).
    pub(crate) fn reason(&self) -> Option<&'static str> {
        match self {
            LimitAlgorithm::Adaptive(a) => Some(a.reason().as_str()),
            _ => None,
        }
    }

    /// Feeds the sample of a job that ended at `now`; returns the new limit when it changed.
    pub(crate) fn on_sample(&mut self, now: Duration, sample: &Sample) -> Option<usize> {
        let before = self.limit();
        match self {
            LimitAlgorithm::Fixed(_) => {}
            LimitAlgorithm::Adaptive(a) => {
                a.on_sample(now, sample);
            }
            LimitAlgorithm::Gradient2(a) => a.on_sample(sample),
            LimitAlgorithm::Vegas(a) => a.on_sample(sample),
            LimitAlgorithm::Aimd(a) => a.on_sample(sample),
        }
        let after = self.limit();
        (after != before).then_some(after)
    }

    /// Feeds a batch of samples, each with its job's end; calls `moved` with the new limit and
    /// the reason for each move. The default law is fed directly, one match per batch instead of
    /// one per sample, and reads its limit only when a window closed: its batches are the hot
    /// ones.
    pub(crate) fn on_samples(
        &mut self,
        samples: &[(Duration, Sample)],
        mut moved: impl FnMut(usize, Option<&'static str>),
    ) {
        if let LimitAlgorithm::Adaptive(law) = self {
            let mut was = law.limit();
            for (now, sample) in samples {
                if law.on_sample(*now, sample) && law.limit() != was {
                    was = law.limit();
                    moved(was, Some(law.reason().as_str()));
                }
            }
            return;
        }
        for (now, sample) in samples {
            if let Some(after) = self.on_sample(*now, sample) {
                moved(after, self.reason());
            }
        }
    }

    /// Tells the algorithm that a submission was shed at `now` because of the limit or the queue
    /// bound (demand exceeded what it admitted). Only the adaptive law uses it: Netflix's
    /// limiters do not sample rejected requests. A window the shed closes may move the limit:
    /// `moved` is called as in [`on_samples`](Self::on_samples).
    pub(crate) fn on_shed(
        &mut self,
        now: Duration,
        moved: impl FnOnce(usize, Option<&'static str>),
    ) {
        if let LimitAlgorithm::Adaptive(law) = self {
            let was = law.limit();
            if law.on_shed(now) && law.limit() != was {
                moved(law.limit(), Some(law.reason().as_str()));
            }
        }
    }

    /// How many jobs may wait for a slot beyond the running ones, given the hard
    /// `queue_capacity`. Fixed: the capacity. Adaptive: see [`adaptive::AdaptiveLimit::queue_bound`].
    /// The peers: zero, as Netflix's `SimpleLimiter` rejects when no permit is free.
    pub(crate) fn queue_bound(&self, capacity: usize) -> usize {
        match self {
            LimitAlgorithm::Fixed(_) => capacity,
            LimitAlgorithm::Adaptive(a) => a.queue_bound(capacity),
            LimitAlgorithm::Gradient2(_) | LimitAlgorithm::Vegas(_) | LimitAlgorithm::Aimd(_) => 0,
        }
    }

    /// Whether the [`queue_bound`](Self::queue_bound) also bounds the queue alone, not only
    /// the jobs beyond the limit (see [`adaptive::AdaptiveLimit::bounds_queue_alone`]). The
    /// others: yes (for the peers' bound of zero the driver checks only the limit).
    pub(crate) fn bounds_queue_alone(&self) -> bool {
        match self {
            LimitAlgorithm::Adaptive(a) => a.bounds_queue_alone(),
            _ => true,
        }
    }

    /// The queue wait past which a job is dropped when a worker takes it (and reported as a
    /// dropped [`Sample`]), if any now. Only the adaptive law drops, CoDel-style.
    pub(crate) fn drop_after(&self) -> Option<Duration> {
        match self {
            LimitAlgorithm::Adaptive(a) => a.drop_after(),
            _ => None,
        }
    }

    /// Whether a job that waited `waited` in the queue should be dropped when a worker takes it.
    #[cfg(test)]
    pub(crate) fn drop_at_dequeue(&self, waited: Duration) -> bool {
        match self {
            LimitAlgorithm::Adaptive(a) => a.drop_at_dequeue(waited),
            _ => false,
        }
    }

    /// The adaptive law's uncongested run time `R0`, seconds (`None` before it is learned, and
    /// for the other algorithms).
    #[cfg(test)]
    pub(crate) fn baseline(&self) -> Option<f64> {
        match self {
            LimitAlgorithm::Adaptive(a) => a.baseline(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_narrow_within_the_driver_range_and_clamp_any_float() {
        let driver = Bounds { min: 1, max: 100 };
        assert_eq!(driver.narrowed(20, 200), Bounds { min: 20, max: 100 });
        assert_eq!(driver.narrowed(300, 400), Bounds { min: 100, max: 100 });
        let tight = Bounds { min: 50, max: 100 };
        assert_eq!(tight.narrowed(20, 30), Bounds { min: 50, max: 50 });
        assert_eq!(driver.clamp(f64::NAN), 1);
        assert_eq!(driver.clamp(f64::INFINITY), 100);
        assert_eq!(driver.clamp(-5.0), 1);
        assert_eq!(driver.clamp(42.9), 42);
    }

    #[test]
    fn dispatch_reports_changes_only() {
        let bounds = Bounds { min: 1, max: 5_000 };
        let mut fixed = LimitAlgorithm::new(&Limit::fixed(), bounds);
        assert_eq!(fixed.limit(), 5_000);
        assert_eq!(
            fixed.on_sample(Duration::ZERO, &Sample::ran(10, 5_000)),
            None
        );
        assert_eq!(fixed.queue_bound(77), 77);
        assert_eq!(fixed.reason(), None);
        let mut aimd = LimitAlgorithm::new(&Limit::aimd().into(), bounds);
        assert_eq!(
            aimd.on_sample(Duration::ZERO, &Sample::ran(10, 20)),
            Some(21)
        );
        assert_eq!(
            aimd.queue_bound(77),
            0,
            "Netflix's SimpleLimiter has no queue"
        );
        assert!(!aimd.drop_at_dequeue(Duration::MAX));
        let adaptive = LimitAlgorithm::new(&Limit::default(), bounds);
        assert_eq!(adaptive.limit(), 750);
        assert_eq!(adaptive.reason(), Some("initial"));
    }

    #[test]
    fn the_adaptive_limit_keeps_one_job_per_runtime_thread_within_max_workers() {
        let adaptive: Limit = Limit::adaptive().into();
        let min = |min_workers, max_workers, threads| {
            Bounds::for_pool(&adaptive, min_workers, max_workers, threads).min
        };
        assert_eq!(min(1, 10_000, 2), 2);
        assert_eq!(min(0, 10_000, 1), 1);
        assert_eq!(min(50, 10_000, 2), 50, "min_workers above it");
        assert_eq!(min(1, 3, 8), 3, "never past max_workers");
    }

    #[test]
    fn the_other_limits_keep_min_workers_and_at_least_one_job() {
        for limit in [
            Limit::fixed(),
            Limit::gradient2().into(),
            Limit::vegas().into(),
            Limit::aimd().into(),
        ] {
            let bounds = |min_workers| Bounds::for_pool(&limit, min_workers, 10_000, 2);
            assert_eq!(
                bounds(0),
                Bounds {
                    min: 1,
                    max: 10_000
                },
                "{limit:?}"
            );
            assert_eq!(bounds(4).min, 4, "{limit:?}");
        }
    }
}
