//! A port of Netflix concurrency-limits' `AIMDLimit` (loss based).
//!
//! Per sample: when the job was dropped or ran longer than `timeout`, the limit becomes
//! `floor(limit * backoff_ratio)`; otherwise, when at least half the limit was in use
//! (`in_flight * 2 >= limit`), it grows by one. The result is clamped to `[min_limit, max_limit]`.
//! Published defaults: initial 20, min 20, max 200, backoff ratio 0.9, timeout 5 s.
//!
//! Deviations: none in the rule. The range is further narrowed to the pool's
//! `min_workers..=max_workers`. The Java code compares `rtt > timeout` in nanoseconds; here the
//! sample's run time is compared as a [`Duration`], which cannot overflow.
//!
//! Known weakness (issue 10): AIMD never reacts to latency, only to drops, so under an overload
//! that does not time out it grows to `max_limit` like a fixed limit.

use std::time::Duration;

use super::{Bounds, Sample};
use crate::limit::config::AimdConfig;

/// The state of one AIMD limit.
#[derive(Debug, Clone)]
pub(crate) struct AimdLimit {
    limit: usize,
    bounds: Bounds,
    backoff_ratio: f64,
    timeout: Duration,
}

impl AimdLimit {
    pub(crate) fn new(config: &AimdConfig, bounds: Bounds) -> AimdLimit {
        let bounds = bounds.narrowed(config.min_limit, config.max_limit);
        AimdLimit {
            limit: config.initial_limit.clamp(bounds.min, bounds.max),
            bounds,
            backoff_ratio: config.backoff_ratio,
            timeout: config.timeout,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn on_sample(&mut self, sample: &Sample) {
        let limit = self.limit as f64;
        let next = if sample.dropped || sample.run > self.timeout {
            (limit * self.backoff_ratio).floor()
        } else if sample.in_flight.saturating_mul(2) >= self.limit {
            limit + 1.0
        } else {
            limit
        };
        self.limit = self.bounds.clamp(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aimd() -> AimdLimit {
        AimdLimit::new(&AimdConfig::default(), Bounds { min: 1, max: 5_000 })
    }

    fn sample(run_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample::ran(run_ms, in_flight).with_drop(dropped)
    }

    #[test]
    fn starts_at_the_published_initial_limit() {
        assert_eq!(aimd().limit(), 20);
    }

    #[test]
    fn grows_by_one_when_half_is_used() {
        let mut a = aimd();
        a.on_sample(&sample(10, 10, false));
        assert_eq!(a.limit(), 21);
        a.on_sample(&sample(10, 10, false)); // 20 < 21: app-limited
        assert_eq!(a.limit(), 21);
    }

    #[test]
    fn backs_off_on_drop_and_on_timeout_but_not_below_min() {
        let mut a = aimd();
        for _ in 0..30 {
            a.on_sample(&sample(10, 50, false));
        }
        assert_eq!(a.limit(), 50);
        a.on_sample(&sample(10, 50, true));
        assert_eq!(a.limit(), 45); // floor(50 * 0.9)
        a.on_sample(&sample(5_001, 50, false));
        assert_eq!(a.limit(), 40); // floor(45 * 0.9) = 40
        for _ in 0..40 {
            a.on_sample(&sample(0, 0, true));
        }
        assert_eq!(a.limit(), 20);
    }

    #[test]
    fn stays_within_the_published_max_and_the_pool_ceiling() {
        let mut a = aimd();
        for _ in 0..500 {
            a.on_sample(&sample(1, usize::MAX, false));
        }
        assert_eq!(a.limit(), 200);
        let mut small = AimdLimit::new(&AimdConfig::default(), Bounds { min: 1, max: 8 });
        small.on_sample(&sample(1, 100, false));
        assert_eq!(small.limit(), 8);
    }
}
