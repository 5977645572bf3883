//! The adaptive limit's queue-growth bound: a queue that stands while the limit does not bind.
//!
//! The law bounds the queue once it has a verdict on settled windows (the pool is saturated).
//! That verdict needs jobs that started at the limit, and waits for them: when the queue grows
//! while fewer than `limit` run (the workers lag the limit, their tasks polled late on a busy
//! machine, or a stall of the whole machine), no window settles, and a spike run queued 12,900
//! jobs for 1.5 s at 0.7x load before any verdict.
//!
//! This detector needs no verdict. Over each interval of [`INTERVAL_NS`] (CoDel's) it takes the
//! smallest queue wait among the jobs that completed in it and notes whether any of them could
//! have waited for the limit: one that started with the limit in use, or one that arrived before
//! the limit last rose and started within an interval of the raise (it waited under a lower
//! limit; one that still waited for an interval after the raise waited for the workers). An interval of at least [`MIN_SAMPLES`]
//! jobs whose every job waited longer than the target, none of them for the limit, means a queue
//! stands although the limit has room: the pool takes jobs slower than they come, and more
//! concurrency cannot be what is missing. The queue is then bounded at once (what the pool
//! completes within the target, at the rate counted in that interval) and a job that waited over
//! twice the target is dropped at dequeue, as while saturated. It ends with the first interval
//! whose smallest wait is within the target, or in which a job waited for the limit (then the
//! law's own rules apply: a limit that binds is the law's to judge).
//!
//! A slower downstream does not trigger it: there the queue stands *because* the limit binds
//! (every job starts with the limit in use, or arrived before the probe that raised it and
//! started right after it), and the law grows the limit instead. A machine starved of CPU does:
//! the law reads its inflated run times at the limit as a slower downstream and probes up, but
//! the workers then cannot reach the new limit and the backlog still waits an interval after
//! the raise (a real run at a load average of 10: 52,000 queued behind a probe to 2,000).

use std::time::Duration;

use super::ended::Ended;

/// The interval over which the smallest wait is taken (CoDel's), in nanoseconds: 100 ms.
const INTERVAL_NS: u64 = 100_000_000;
/// Fewer completed jobs in an interval say nothing (a wake-up on a quiet pool).
const MIN_SAMPLES: u32 = 8;

/// Sums over the current interval, and the verdict of the last one. Times are nanoseconds
/// since the pool's epoch (see `ended.rs`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Standing {
    /// When the current interval started; `None` before the first job.
    start: Option<u64>,
    /// The smallest wait of a completed job in the interval (`u64::MAX` while none).
    min_wait: u64,
    completed: u32,
    /// A job in this interval may have waited for the limit.
    limited: bool,
    /// The last closed interval showed a queue standing below the limit.
    active: bool,
    /// Completions per second counted in that interval.
    rate: f64,
}

impl Default for Standing {
    fn default() -> Standing {
        Standing {
            start: None,
            min_wait: u64::MAX,
            completed: 0,
            limited: false,
            active: false,
            rate: 0.0,
        }
    }
}

impl Standing {
    /// Whether a queue stands below the limit (module docs).
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// The queue bound while active: the jobs the pool completes within `target`, at least one.
    pub(crate) fn bound(&self, target: Duration) -> usize {
        // `as` saturates; at least one job may wait so a worker never idles between submissions.
        ((self.rate * target.as_secs_f64()).ceil() as usize).max(1)
    }

    /// Closes the interval when it is over, then adds `job` (run under a limit that last rose
    /// at `raised`, nanoseconds). `target` is the queue target in nanoseconds.
    #[inline]
    pub(crate) fn add(&mut self, job: &Ended, raised: u64, target: u64) {
        let start = *self.start.get_or_insert(job.now);
        let elapsed = job.now.saturating_sub(start);
        if elapsed >= INTERVAL_NS {
            self.close(job.now, elapsed, target);
        }
        if !job.dropped {
            self.completed = self.completed.saturating_add(1);
            self.min_wait = self.min_wait.min(job.wait);
            // Queued under a lower limit and started soon after the raise: the old limit's wait.
            let raised_for_it =
                job.arrived() < raised && job.started() < raised.saturating_add(INTERVAL_NS);
            self.limited |= job.at_limit || raised_for_it;
        }
    }

    /// Ends the interval that started `elapsed` before `now` with its verdict; starts the next.
    #[cold]
    fn close(&mut self, now: u64, elapsed: u64, target: u64) {
        let waited = self.completed > 0 && self.min_wait > target;
        if self.completed >= MIN_SAMPLES || !waited {
            self.active = waited && !self.limited;
            self.rate = f64::from(self.completed) / super::ended::secs(elapsed);
        }
        *self = Standing {
            start: Some(now),
            active: self.active,
            rate: self.rate,
            ..Standing::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Sample;
    use crate::limit::ended::nanos;

    const TARGET: Duration = Duration::from_millis(5);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Feeds one interval of `n` jobs (run 20 ms, waited `wait_ms`, started with `in_flight`
    /// running under a limit of 1,000 that last rose at `raised`), ending from `from` on.
    fn interval(s: &mut Standing, from: u64, n: u64, wait_ms: u64, in_flight: usize, raised: u64) {
        for i in 0..n {
            let at = ms(from)
                + Duration::from_nanos(INTERVAL_NS) * u32::try_from(i).unwrap()
                    / u32::try_from(n).unwrap();
            let sample = Sample::ran(20, in_flight).with_wait(wait_ms);
            let job = Ended::new(at, &sample, 1_000);
            s.add(&job, nanos(ms(raised)), nanos(TARGET));
        }
    }

    #[test]
    fn a_queue_standing_below_the_limit_is_bounded_within_one_interval() {
        let mut s = Standing::default();
        interval(&mut s, 0, 100, 1, 500, 0);
        interval(&mut s, 100, 100, 30, 500, 0);
        assert!(!s.is_active(), "the interval is not over yet");
        interval(&mut s, 200, 100, 1, 500, 0);
        assert!(
            s.is_active(),
            "every job of the last interval waited 30 ms below the limit"
        );
        // 100 jobs per 100 ms: 1,000/s, 5 jobs within 5 ms
        assert_eq!(s.bound(TARGET), 5);
        interval(&mut s, 300, 100, 1, 500, 0);
        assert!(!s.is_active(), "the smallest wait fell within the target");
    }

    #[test]
    fn a_queue_behind_the_limit_is_the_laws_to_judge() {
        // a slower downstream: jobs wait because the limit binds
        let mut s = Standing::default();
        interval(&mut s, 0, 100, 30, 1_000, 0);
        interval(&mut s, 100, 1, 0, 500, 0);
        assert!(!s.is_active(), "started with the limit in use");
        // the law raised the limit at 280 ms: the backlog that waited under the old one
        // starts below the new one, but arrived before the raise
        interval(&mut s, 200, 100, 30, 900, 280);
        interval(&mut s, 300, 1, 0, 500, 0);
        assert!(!s.is_active(), "arrived before the raise");
        // ...but a backlog that still waits an interval after the raise waits for the workers
        interval(&mut s, 400, 100, 200, 900, 250);
        interval(&mut s, 500, 1, 0, 500, 0);
        assert!(s.is_active(), "started over an interval after the raise");
        // a lone job that waited is a wake-up, not a standing queue
        let mut s = Standing::default();
        interval(&mut s, 400, 3, 30, 10, 0);
        interval(&mut s, 500, 1, 0, 10, 0);
        assert!(!s.is_active(), "too few jobs to tell");
    }
}
