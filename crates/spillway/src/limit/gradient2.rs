//! A port of Netflix concurrency-limits' `Gradient2Limit`.
//!
//! Per sample, with `short` the sample's time and `long` an `ExpAvgMeasurement` over
//! `long_window` samples (warm-up 10):
//!
//! ```text
//! if long / short > 2 { long *= 0.95 }              // recover quickly after an incident
//! if in_flight < limit / 2 { keep the limit }       // app-limited: do not grow
//! gradient = clamp(tolerance * long / short, 0.5, 1.0)
//! next     = limit * gradient + queue_size
//! limit    = clamp(limit * (1 - smoothing) + next * smoothing, min_limit, max_limit)
//! ```
//!
//! The limit is kept as a float and reported truncated, as in Java. Published defaults: initial
//! 20, min 20, max 200, smoothing 0.2, queue size 4, long window 600, tolerance 1.5.
//!
//! Deviations: the sample's time is the job's run time (Netflix measures acquire to release,
//! which for its `SimpleLimiter` is the same thing: it has no queue). A zero run time (the Java
//! code would divide by zero and, with a zero average, turn the limit into NaN and then 0) counts
//! as a gradient of 1, i.e. "no queueing". Times are taken as `f64` seconds, so no `Duration`
//! arithmetic can overflow (the Rust port `congestion-limiter` panicked with "overflow when
//! subtracting durations"). Like the Java code, `didDrop` is ignored. The range is further
//! narrowed to the pool's `min_workers..=max_workers`.

use super::measure::ExpAvg;
use super::{Bounds, Sample};
use crate::limit::config::Gradient2Config;

/// The state of one Gradient2 limit.
#[derive(Debug, Clone)]
pub(crate) struct Gradient2Limit {
    estimated: f64,
    long_rtt: ExpAvg,
    bounds: Bounds,
    smoothing: f64,
    queue_size: f64,
    tolerance: f64,
}

impl Gradient2Limit {
    pub(crate) fn new(config: &Gradient2Config, bounds: Bounds) -> Gradient2Limit {
        let bounds = bounds.narrowed(config.min_limit, config.max_limit);
        Gradient2Limit {
            estimated: config.initial_limit.clamp(bounds.min, bounds.max) as f64,
            long_rtt: ExpAvg::new(config.long_window, 10),
            bounds,
            smoothing: config.smoothing,
            queue_size: config.queue_size as f64,
            tolerance: config.tolerance,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.bounds.clamp(self.estimated)
    }

    pub(crate) fn on_sample(&mut self, sample: &Sample) {
        let short = sample.run.as_secs_f64();
        let long = self.long_rtt.add(short);
        if long > 2.0 * short {
            self.long_rtt.set(long * 0.95);
        }
        if (sample.in_flight as f64) < self.estimated / 2.0 {
            return;
        }
        let gradient = if short > 0.0 {
            (self.tolerance * long / short).clamp(0.5, 1.0)
        } else {
            1.0
        };
        let next = self.estimated * gradient + self.queue_size;
        let next = self.estimated * (1.0 - self.smoothing) + next * self.smoothing;
        self.estimated = next.clamp(self.bounds.min as f64, self.bounds.max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient2() -> Gradient2Limit {
        Gradient2Limit::new(&Gradient2Config::default(), Bounds { min: 1, max: 5_000 })
    }

    fn sample(run_ms: u64, in_flight: usize) -> Sample {
        Sample::ran(run_ms, in_flight)
    }

    #[test]
    fn steady_latency_grows_by_smoothing_times_queue_size() {
        let mut g = gradient2();
        g.on_sample(&sample(10, 20));
        // gradient = clamp(1.5 * 10 / 10) = 1; next = 20 + 4; 0.8 * 20 + 0.2 * 24 = 20.8
        assert!((g.estimated - 20.8).abs() < 1e-9);
        assert_eq!(g.limit(), 20);
        for _ in 0..5 {
            g.on_sample(&sample(10, 30));
        }
        assert!((g.estimated - 24.8).abs() < 1e-9);
        assert_eq!(g.limit(), 24);
    }

    #[test]
    fn latency_far_above_the_long_average_halves_the_next_estimate() {
        let mut g = gradient2();
        for _ in 0..10 {
            g.on_sample(&sample(10, 1)); // app-limited: the average learns 10 ms
        }
        assert_eq!(g.estimated, 20.0);
        g.on_sample(&sample(100, 20));
        // long = 10 * (1 - 2/601) + 100 * 2/601; gradient = max(0.5, 1.5 * long / 100) = 0.5
        // next = 20 * 0.5 + 4 = 14; limit = 0.8 * 20 + 0.2 * 14 = 18.8, then min 20
        assert_eq!(g.estimated, 20.0);
        let mut low_min = Gradient2Limit::new(
            &Gradient2Config {
                min_limit: 1,
                ..Gradient2Config::default()
            },
            Bounds { min: 1, max: 5_000 },
        );
        for _ in 0..10 {
            low_min.on_sample(&sample(10, 1));
        }
        low_min.on_sample(&sample(100, 20));
        assert!((low_min.estimated - 18.8).abs() < 1e-9);
    }

    #[test]
    fn long_average_decays_when_far_above_the_sample() {
        let mut g = gradient2();
        for _ in 0..10 {
            g.on_sample(&sample(100, 1));
        }
        g.on_sample(&sample(10, 1));
        let long = 100.0 * (1.0 - 2.0 / 601.0) + 10.0 * (2.0 / 601.0);
        assert!((g.long_rtt.get() * 1_000.0 - long * 0.95).abs() < 1e-9);
    }

    #[test]
    fn app_limited_samples_do_not_move_the_limit() {
        let mut g = gradient2();
        g.on_sample(&sample(10, 9));
        assert_eq!(g.estimated, 20.0);
    }

    #[test]
    fn zero_run_time_counts_as_no_queueing() {
        let mut g = gradient2();
        g.on_sample(&sample(0, 20));
        assert!((g.estimated - 20.8).abs() < 1e-9);
    }

    #[test]
    fn stays_within_the_published_max() {
        let mut g = gradient2();
        for _ in 0..10_000 {
            g.on_sample(&sample(10, 1_000));
        }
        assert_eq!(g.limit(), 200);
    }
}
