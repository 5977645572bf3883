//! A port of Netflix concurrency-limits' `VegasLimit` (TCP Vegas applied to concurrency).
//!
//! The no-load time `rtt_noload` is the smallest sample seen, re-taken from a single sample every
//! `jitter * probe_multiplier * limit` samples (`jitter` uniform in `[0.5, 1)`). For every other
//! sample at least as slow as `rtt_noload`, with `log = max(1, floor(log10(limit)))`:
//!
//! ```text
//! queue = ceil(limit * (1 - rtt_noload / rtt))     // estimated jobs queued downstream
//! dropped                    => limit - log
//! in_flight * 2 < limit      => keep                 // app-limited
//! queue <= log               => limit + 6 log        // (threshold; beta)
//! queue < 3 log              => limit + log          // (alpha)
//! queue > 6 log              => limit - log          // (beta)
//! otherwise                  => keep
//! limit = (1 - smoothing) limit + smoothing clamp(next, 1, max_limit)
//! ```
//!
//! Published defaults: initial 20, max 1000, smoothing 1.0, probe multiplier 30, alpha `3 log`,
//! beta `6 log`, threshold `log`, increase and decrease by `log`.
//!
//! Deviations: the sample's time is the job's run time (as for [`super::gradient2`]). A zero run
//! time is ignored (the Java code throws). The probe jitter comes from a small deterministic
//! generator instead of `ThreadLocalRandom`, so runs repeat. The range is further narrowed to
//! the pool's `min_workers..=max_workers` (Netflix's minimum is 1).

use std::time::Duration;

use super::measure::{log10_int, splitmix_unit};
use super::{Bounds, Sample};
use crate::limit::config::VegasConfig;

/// The state of one Vegas limit.
#[derive(Debug, Clone)]
pub(crate) struct VegasLimit {
    estimated: f64,
    rtt_noload: Duration,
    bounds: Bounds,
    smoothing: f64,
    probe_multiplier: f64,
    probe_count: u64,
    probe_jitter: f64,
    rng: u64,
}

impl VegasLimit {
    pub(crate) fn new(config: &VegasConfig, bounds: Bounds) -> VegasLimit {
        let bounds = bounds.narrowed(1, config.max_limit);
        let mut vegas = VegasLimit {
            estimated: config.initial_limit.clamp(bounds.min, bounds.max) as f64,
            rtt_noload: Duration::ZERO,
            bounds,
            smoothing: config.smoothing,
            probe_multiplier: f64::from(config.probe_multiplier),
            probe_count: 0,
            probe_jitter: 0.0,
            rng: 0x9E37_79B9_7F4A_7C15,
        };
        vegas.reset_probe_jitter();
        vegas
    }

    pub(crate) fn limit(&self) -> usize {
        self.bounds.clamp(self.estimated)
    }

    pub(crate) fn on_sample(&mut self, sample: &Sample) {
        let rtt = sample.run;
        if rtt.is_zero() {
            return;
        }
        self.probe_count += 1;
        if self.probe_jitter * self.probe_multiplier * self.estimated <= self.probe_count as f64 {
            self.reset_probe_jitter();
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return;
        }
        if self.rtt_noload.is_zero() || rtt < self.rtt_noload {
            self.rtt_noload = rtt;
            return;
        }
        if let Some(next) = self.next_estimate(rtt, sample) {
            let next = next.clamp(self.bounds.min as f64, self.bounds.max as f64);
            self.estimated = (1.0 - self.smoothing) * self.estimated + self.smoothing * next;
        }
    }

    /// The un-smoothed next limit, or `None` to keep the current one.
    fn next_estimate(&self, rtt: Duration, sample: &Sample) -> Option<f64> {
        let limit = self.estimated;
        let log = log10_int(limit as usize) as f64;
        let ratio = self.rtt_noload.as_secs_f64() / rtt.as_secs_f64();
        let queue = (limit * (1.0 - ratio)).ceil();
        if sample.dropped {
            Some(limit - log)
        } else if (sample.in_flight as f64) * 2.0 < limit {
            None
        } else if queue <= log {
            Some(limit + 6.0 * log)
        } else if queue < 3.0 * log {
            Some(limit + log)
        } else if queue > 6.0 * log {
            Some(limit - log)
        } else {
            None
        }
    }

    /// A new jitter in `[0.5, 1)`, as Java's `nextDouble(0.5, 1)`.
    fn reset_probe_jitter(&mut self) {
        self.probe_jitter = 0.5 + 0.5 * splitmix_unit(&mut self.rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vegas() -> VegasLimit {
        let mut v = VegasLimit::new(&VegasConfig::default(), Bounds { min: 1, max: 5_000 });
        v.probe_jitter = 1.0; // no probe within the first 600 samples
        v
    }

    fn sample(run_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample::ran(run_ms, in_flight).with_drop(dropped)
    }

    #[test]
    fn first_sample_sets_the_no_load_time() {
        let mut v = vegas();
        assert_eq!(v.limit(), 20);
        v.on_sample(&sample(10, 20, false));
        assert_eq!(v.rtt_noload, Duration::from_millis(10));
        assert_eq!(v.limit(), 20);
    }

    #[test]
    fn no_queueing_grows_by_beta() {
        let mut v = vegas();
        v.on_sample(&sample(10, 20, false));
        v.on_sample(&sample(10, 20, false));
        // queue = ceil(20 * 0) = 0 <= log10 = 1 => 20 + 6
        assert_eq!(v.limit(), 26);
    }

    #[test]
    fn small_queue_grows_by_log_and_large_queue_shrinks_by_log() {
        let mut v = vegas();
        v.on_sample(&sample(10, 20, false));
        v.on_sample(&sample(11, 20, false));
        // queue = ceil(20 * (1 - 10/11)) = ceil(1.818) = 2; 1 < 2 < 3 => 21
        assert_eq!(v.limit(), 21);
        v.on_sample(&sample(20, 21, false));
        // queue = ceil(21 * 0.5) = 11 > 6 => 20
        assert_eq!(v.limit(), 20);
        v.on_sample(&sample(14, 20, false));
        // queue = ceil(20 * (1 - 10/14)) = ceil(5.71) = 6: between alpha and beta => keep
        assert_eq!(v.limit(), 20);
    }

    #[test]
    fn drop_shrinks_and_app_limited_keeps() {
        let mut v = vegas();
        v.on_sample(&sample(10, 20, false));
        v.on_sample(&sample(10, 1, false));
        assert_eq!(v.limit(), 20);
        v.on_sample(&sample(10, 1, true));
        assert_eq!(v.limit(), 19);
    }

    #[test]
    fn probe_retakes_the_no_load_time_from_one_sample() {
        let mut v = vegas();
        v.probe_jitter = 0.5; // probe after 0.5 * 30 * 20 = 300 samples
        v.on_sample(&sample(10, 1, false));
        for _ in 0..298 {
            v.on_sample(&sample(50, 1, false));
        }
        assert_eq!(v.rtt_noload, Duration::from_millis(10));
        v.on_sample(&sample(50, 1, false));
        assert_eq!(v.rtt_noload, Duration::from_millis(50));
        assert!((0.5..1.0).contains(&v.probe_jitter));
    }

    #[test]
    fn zero_run_time_is_ignored() {
        let mut v = vegas();
        v.on_sample(&sample(0, 20, false));
        assert_eq!(v.rtt_noload, Duration::ZERO);
        assert_eq!(v.probe_count, 0);
    }
}
