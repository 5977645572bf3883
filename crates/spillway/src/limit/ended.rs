//! [`Ended`]: one job's [`Sample`] as the adaptive law's per-sample code reads it, in integer
//! nanoseconds, converted once per job.
//!
//! The law adds every job to two sets of sums (the window's, `adaptive.rs`, and the standing
//! queue's interval, `standing.rs`). Kept in `Duration`s, each subtraction, comparison and
//! conversion to seconds took a dozen instructions (a `Duration` is seconds and nanoseconds, and
//! every operation carries between them), about 220 per job in all. In nanoseconds since the
//! pool's epoch they are single instructions, and the sums are converted to seconds once per
//! window.

use std::time::Duration;

use super::Sample;

/// A job's end, run time and queue wait in nanoseconds (saturating at `u64::MAX`, 584 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    /// When the job ended, since the pool's epoch.
    pub(crate) now: u64,
    pub(crate) run: u64,
    pub(crate) wait: u64,
    /// Jobs running when it started, itself included ([`Sample::in_flight`]).
    pub(crate) in_flight: usize,
    /// It started with the limit in use.
    pub(crate) at_limit: bool,
    /// It did not complete normally ([`Sample::dropped`]).
    pub(crate) dropped: bool,
}

impl Ended {
    /// `sample` of a job that ended at `now`, under `limit`.
    #[inline]
    pub(crate) fn new(now: Duration, sample: &Sample, limit: usize) -> Ended {
        Ended {
            now: nanos(now),
            run: nanos(sample.run),
            wait: nanos(sample.queue_wait),
            in_flight: sample.in_flight,
            at_limit: sample.in_flight >= limit,
            dropped: sample.dropped,
        }
    }

    /// When the job started: its end minus its run time (0 if that would be negative).
    #[inline]
    pub(crate) fn started(&self) -> u64 {
        self.now.saturating_sub(self.run)
    }

    /// When the job arrived (was admitted): its start minus its queue wait (0 if negative).
    #[inline]
    pub(crate) fn arrived(&self) -> u64 {
        self.started().saturating_sub(self.wait)
    }
}

/// `d` in nanoseconds, saturating at `u64::MAX`.
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `ns` nanoseconds in seconds, as [`Duration::as_secs_f64`] computes them.
pub(crate) fn secs(ns: u64) -> f64 {
    Duration::from_nanos(ns).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_once_and_saturates() {
        let sample = Sample::ran(20, 7).with_wait(5);
        let ended = Ended::new(Duration::from_millis(100), &sample, 7);
        assert_eq!(ended.now, 100_000_000);
        assert_eq!(ended.run, 20_000_000);
        assert_eq!(ended.wait, 5_000_000);
        assert_eq!(ended.started(), 80_000_000);
        assert_eq!(ended.arrived(), 75_000_000);
        assert!(ended.at_limit);
        assert!(!Ended::new(Duration::ZERO, &sample, 8).at_limit);
        let early = Ended::new(Duration::from_millis(1), &sample, 8);
        assert_eq!((early.started(), early.arrived()), (0, 0));
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(secs(1_500_000_000), 1.5);
    }
}
