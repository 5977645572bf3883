//! The adaptive law's windows: the sums over the jobs that ended in one ([`Accumulator`]),
//! and what a closed window saw ([`Window`]), the law's only input. See the parent module's
//! docs, "What it observes".

use std::time::Duration;

#[cfg(test)]
use crate::limit::Sample;
use crate::limit::ended::{Ended, nanos, secs};

/// A window closes after at least this long...
pub(super) const MIN_WINDOW: Duration = Duration::from_millis(10);
/// ...and this many completed jobs...
pub(super) const MIN_SAMPLES: u32 = 64;
/// ...and one mean run time of the previous window, at most this long...
pub(super) const MAX_WINDOW: Duration = Duration::from_secs(1);
pub(super) const MAX_WINDOW_NS: u64 = MAX_WINDOW.as_nanos() as u64;
/// ...and enough jobs that their mean run time is known within 5% (one standard error), unless
/// it reached `MAX_WINDOW`.
const MAX_RELATIVE_ERROR: f64 = 0.05;
/// What one window saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// Mean run time of the completed jobs, in seconds.
    pub(crate) run: f64,
    /// Mean number in flight when they started.
    pub(crate) in_flight: f64,
    /// Whether demand met the limit during the window.
    pub(crate) binding: bool,
    /// Whether demand overflowed what was admitted: a submission was shed or a job dropped
    /// (not only the limit full, which a burst that fits the cold queue also makes).
    pub(crate) overflowed: bool,
    /// Whether its jobs queued (a mean wait over the queue target), bound or not: its run times
    /// are then no uncongested baseline, even though a wait alone is not the limit binding.
    pub(crate) queued: bool,
    /// Completions per second, as counted (not `N / R`: a noisy `R` cannot fake it).
    pub(crate) rate: f64,
    /// The rate at which jobs arrived (were admitted), counted against their arrival times
    /// (end - run - wait) over this window and the last; zero when unknown (the first window,
    /// or jobs were shed or dropped: the demand was more than what was admitted). While a
    /// backlog drains it is below the completion rate.
    pub(crate) arrivals: f64,
}

impl Window {
    /// The completion rate by Little's law, `N / R`: unlike the counted `rate`, it does not
    /// swing with the phase of cohorts (jobs that started together end together).
    pub(super) fn throughput(&self) -> f64 {
        if self.run > 0.0 {
            self.in_flight / self.run
        } else {
            0.0
        }
    }
}

/// Sums over the current window, in integer nanoseconds (`ended.rs`): converted to seconds once
/// per window, not once per job.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Accumulator {
    /// When the window started, nanoseconds since the pool's epoch.
    pub(super) start: Option<u64>,
    completed: u32,
    run_sum: u128,
    /// Saturates (only run times of centuries could reach it).
    run_sq_sum: u128,
    in_flight_sum: u128,
    wait_sum: u128,
    /// Sum of the ends of the completed jobs: their arrival times (end - run - wait) are this
    /// minus the two sums above.
    end_sum: u128,
    /// The mean arrival time (seconds since the epoch) and the number of completed jobs of the
    /// last window.
    previous: Option<(f64, u32)>,
    full: bool,
    dropped: u32,
    pub(super) shed: u32,
}

impl Accumulator {
    #[inline]
    pub(super) fn add(&mut self, job: &Ended) {
        if job.dropped {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        let run = u128::from(job.run);
        self.completed = self.completed.saturating_add(1);
        self.run_sum += run;
        self.run_sq_sum = self.run_sq_sum.saturating_add(run * run);
        self.in_flight_sum += job.in_flight as u128;
        self.wait_sum += u128::from(job.wait);
        self.end_sum += u128::from(job.now);
        self.full |= job.at_limit;
    }

    /// The mean of a sum of nanoseconds over `n` jobs, in seconds.
    fn mean_secs(sum: u128, n: f64) -> f64 {
        sum as f64 / n / 1e9
    }

    /// The mean arrival time of the window's completed jobs (end - run - wait), in seconds.
    fn mean_arrival(&self, n: f64) -> f64 {
        // Exact in integers (each sum is at most 2^32 jobs, `completed`, of 2^64 ns: 2^96, well
        // inside `i128`), rounded once.
        let arrived = self.end_sum.cast_signed() - self.run_sum.cast_signed();
        let arrived = arrived - self.wait_sum.cast_signed();
        arrived as f64 / n / 1e9
    }

    /// The arrival rate of a window whose completed jobs arrived, on average, at `arrived`
    /// (see [`Window::arrivals`]; 0 if unknown). Jobs start in arrival order, so the jobs that
    /// completed in two consecutive windows arrived one after the other: `n1 + n2` of them over
    /// twice the distance between their mean arrival times. Counted against when they arrived,
    /// not when they completed, this does not swing with cohorts (jobs that started together
    /// and end together make the count of a window swing twofold with its phase, and the
    /// arrivals with it when they were that count times the trend of the wait); means, not the
    /// first and last arrival, so that a spread of run times does not widen the span.
    fn arrival_rate(&self, arrived: f64) -> f64 {
        match self.previous {
            Some((before, n)) if arrived > before && self.shed == 0 && self.dropped == 0 => {
                let jobs = f64::from(n) + f64::from(self.completed);
                (jobs / (2.0 * (arrived - before))).max(f64::MIN_POSITIVE)
            }
            _ => 0.0,
        }
    }

    /// Whether the open window has lasted `MAX_WINDOW` at `now` (nanoseconds since the epoch)
    /// with jobs completed, too few to close it, and none of them at the limit, shed, dropped
    /// or queued for longer than `queued_wait` (nanoseconds) on average: a low rate, with room.
    pub(super) fn quiet_through(&self, now: u64, queued_wait: u64) -> bool {
        let long = self
            .start
            .is_some_and(|start| now.saturating_sub(start) >= MAX_WINDOW_NS);
        let unqueued = self.wait_sum <= u128::from(queued_wait) * u128::from(self.completed);
        let room = !self.full && self.shed == 0 && self.dropped == 0;
        long && self.completed > 0 && room && unqueued
    }

    /// The standard error of the mean run time, relative to it.
    fn relative_error(&self, n: f64) -> f64 {
        let mean = self.run_sum as f64 / n;
        let variance = (self.run_sq_sum as f64 / n - mean * mean).max(0.0);
        if mean > 0.0 {
            (variance / n).sqrt() / mean
        } else {
            0.0
        }
    }

    /// The window, if it is long and full enough to close at `now` (nanoseconds since the
    /// epoch), given the mean run time of the last window (`last_run`, seconds); then starts
    /// the next one. A mean wait over `queued_wait` (seconds) marks the window as
    /// [`Window::queued`].
    pub(super) fn close(&mut self, now: u64, last_run: f64, queued_wait: f64) -> Option<Window> {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_sub(start);
        if elapsed < min_len(last_run) || self.completed < MIN_SAMPLES {
            return None;
        }
        let n = f64::from(self.completed);
        // A queue wait alone is not the limit binding: below the limit a job waits only for a
        // worker to take it (a wake-up, a busy machine), and reading that as demand met the limit
        // made an idle pool descend at 0.3x load. A queue that stands below the limit is
        // bounded by `Standing` instead.
        let overflowed = self.shed > 0 || self.dropped > 0;
        let binding = overflowed || self.full;
        // Only binding windows are compared with each other, so only they need precision.
        let precise = !binding || self.relative_error(n) <= MAX_RELATIVE_ERROR;
        if !precise && elapsed < nanos(MAX_WINDOW) {
            return None;
        }
        let (wait, arrived) = (Self::mean_secs(self.wait_sum, n), self.mean_arrival(n));
        let window = Window {
            run: Self::mean_secs(self.run_sum, n),
            in_flight: self.in_flight_sum as f64 / n,
            binding,
            overflowed,
            queued: wait > queued_wait,
            rate: n / secs(elapsed),
            arrivals: self.arrival_rate(arrived),
        };
        *self = Accumulator {
            start: Some(now),
            previous: Some((arrived, self.completed)),
            ..Accumulator::default()
        };
        Some(window)
    }

    /// [`add`](Self::add) with the sample as the driver gives it.
    #[cfg(test)]
    fn add_sample(&mut self, now: Duration, sample: &Sample, limit: usize) {
        self.add(&Ended::new(now, sample, limit));
    }

    /// [`close`](Self::close) at `now` as a `Duration`.
    #[cfg(test)]
    fn close_at(&mut self, now: Duration, last_run: f64, queued_wait: f64) -> Option<Window> {
        self.close(nanos(now), last_run, queued_wait)
    }
}

/// The shortest a window may be, nanoseconds: one mean run time of the last window
/// (`last_run`, seconds), within `MIN_WINDOW..=MAX_WINDOW`.
pub(super) fn min_len(last_run: f64) -> u64 {
    let run = Duration::try_from_secs_f64(last_run).unwrap_or(MAX_WINDOW);
    nanos(run.clamp(MIN_WINDOW, MAX_WINDOW))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    fn sample(run_ms: u64, wait_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample::ran(run_ms, in_flight)
            .with_wait(wait_ms)
            .with_drop(dropped)
    }

    #[test]
    fn window_closes_after_enough_jobs_and_time_and_ignores_dropped_run_times() {
        let mut acc = Accumulator::default();
        let at = Duration::from_millis;
        assert_eq!(acc.close_at(at(0), 0.0, 0.005), None);
        for _ in 1..MIN_SAMPLES {
            acc.add_sample(Duration::ZERO, &sample(20, 0, 10, false), 1_000);
        }
        acc.add_sample(Duration::ZERO, &sample(0, 50, 10, true), 1_000);
        assert_eq!(
            acc.close_at(at(50), 0.0, 0.005),
            None,
            "one completed job short"
        );
        acc.add_sample(Duration::ZERO, &sample(20, 0, 10, false), 1_000);
        assert_eq!(
            acc.close_at(at(15), 0.020, 0.005),
            None,
            "shorter than a run time"
        );
        let w = acc.close_at(at(25), 0.020, 0.005).expect("closes");
        assert!(close(w.run, 0.020));
        assert_eq!(w.in_flight, 10.0);
        assert!(w.binding, "a dropped job means demand met the limit");
        assert_eq!(acc.completed, 0);
    }

    #[test]
    fn arrivals_are_counted_against_when_jobs_arrived_and_are_unknown_after_a_shed() {
        let at = Duration::from_millis;
        // 100 jobs (run 20 ms, waited `wait` ms) ending evenly over the 100 ms from `from`
        let fill = |acc: &mut Accumulator, from: u64, wait| {
            for i in 1..=100 {
                acc.add_sample(at(from + i), &sample(20, wait, 10, false), 1_000);
            }
        };
        let mut acc = Accumulator::default();
        acc.close_at(at(0), 0.0, 0.005);
        fill(&mut acc, 0, 0);
        let first = acc.close_at(at(100), 0.0, 0.005).unwrap();
        assert_eq!(first.arrivals, 0.0, "nothing to compare with yet");
        // steady: the mean arrival moved by 100 ms for 100 jobs a window
        fill(&mut acc, 100, 0);
        let steady = acc.close_at(at(200), 0.0, 0.005).unwrap();
        assert!(close(steady.arrivals, 1_000.0), "{}", steady.arrivals);
        // the wait grew by 50 ms: those 100 jobs arrived within 50 ms of the last 100
        fill(&mut acc, 200, 50);
        let growing = acc.close_at(at(300), 0.0, 0.005).unwrap();
        assert!(close(growing.rate, 1_000.0));
        assert!(close(growing.arrivals, 2_000.0), "{}", growing.arrivals);
        // the backlog drains (the wait fell by 30 ms): fewer arrive than complete
        fill(&mut acc, 300, 20);
        let draining = acc.close_at(at(400), 0.0, 0.005).unwrap();
        assert!(
            close(draining.arrivals, 1_000.0 / 1.3),
            "{}",
            draining.arrivals
        );
        // a shed submission: the demand is more than what was admitted, unknown
        fill(&mut acc, 400, 20);
        acc.shed = 1;
        assert_eq!(acc.close_at(at(500), 0.0, 0.005).unwrap().arrivals, 0.0);
    }

    #[test]
    fn arrivals_do_not_swing_with_cohorts() {
        // 7,450 jobs/s arrive; a limit that binds lets them start in cohorts, so one 200 ms
        // window counts 1,760 completions and the next 230: counted rates of 8,800 and 1,150/s
        let mut acc = Accumulator::default();
        let mut next_arrival = 0.0;
        let mut cohort = |acc: &mut Accumulator, end: f64, jobs: u32| {
            for _ in 0..jobs {
                let wait = end - 0.2 - next_arrival;
                let job = Sample {
                    run: Duration::from_millis(200),
                    queue_wait: Duration::from_secs_f64(wait),
                    in_flight: 10,
                    dropped: false,
                };
                acc.add_sample(Duration::from_secs_f64(end), &job, 1_000);
                next_arrival += 1.0 / 7_450.0;
            }
        };
        let at = Duration::from_secs_f64;
        acc.close_at(at(0.6), 0.0, 0.005);
        cohort(&mut acc, 0.8, 1_760);
        acc.close_at(at(0.8), 0.0, 0.005).unwrap();
        cohort(&mut acc, 1.0, 230);
        let low = acc.close_at(at(1.0), 0.0, 0.005).unwrap();
        cohort(&mut acc, 1.2, 1_760);
        let high = acc.close_at(at(1.2), 0.0, 0.005).unwrap();
        assert!(low.rate < 1_200.0 && high.rate > 8_700.0);
        for w in [low, high] {
            assert!((w.arrivals / 7_450.0 - 1.0).abs() < 0.01, "{}", w.arrivals);
        }
    }

    #[test]
    fn a_binding_window_stays_open_until_its_mean_is_precise() {
        let mut acc = Accumulator::default();
        let at = Duration::from_millis;
        acc.close_at(at(0), 0.0, 0.005);
        // run times of 1 and 39 ms alternate: mean 20, standard deviation 19
        let add = |acc: &mut Accumulator, n: u32| {
            for i in 0..n {
                let run = if i % 2 == 0 { 1 } else { 39 };
                acc.add_sample(Duration::ZERO, &sample(run, 5, 1_000, false), 1_000);
            }
        };
        add(&mut acc, MIN_SAMPLES);
        assert_eq!(
            acc.close_at(at(100), 0.0, 0.005),
            None,
            "19 / 20 / sqrt(64) = 12% error"
        );
        // (19 / 20) / sqrt(n) <= 5% from n = 361 on
        add(&mut acc, 360 - MIN_SAMPLES);
        assert_eq!(acc.close_at(at(200), 0.0, 0.005), None);
        add(&mut acc, 2);
        let w = acc.close_at(at(300), 0.0, 0.005).expect("precise enough");
        assert!(w.binding);
        assert!(close(w.run, 0.020));
        // the same spread without binding closes at once: only binding windows are compared
        let mut quiet = Accumulator::default();
        quiet.close_at(at(0), 0.0, 0.005);
        for i in 0..MIN_SAMPLES {
            let run = if i % 2 == 0 { 1 } else { 39 };
            quiet.add_sample(Duration::ZERO, &sample(run, 0, 10, false), 1_000);
        }
        assert!(!quiet.close_at(at(100), 0.0, 0.005).expect("closes").binding);
    }

    #[test]
    fn sheds_and_a_full_limit_make_a_window_bind_but_a_wait_alone_does_not() {
        let at = Duration::from_millis;
        let fill = |acc: &mut Accumulator, wait, in_flight| {
            for _ in 0..MIN_SAMPLES {
                acc.add_sample(Duration::ZERO, &sample(20, wait, in_flight, false), 100);
            }
        };
        let mut acc = Accumulator::default();
        acc.close_at(at(0), 0.0, 0.005);
        fill(&mut acc, 0, 10);
        assert!(!acc.close_at(at(100), 0.0, 0.005).unwrap().binding);
        fill(&mut acc, 2, 10);
        assert!(
            !acc.close_at(at(200), 0.0, 0.005).unwrap().binding,
            "waited for a worker, below the limit"
        );
        fill(&mut acc, 0, 100);
        assert!(acc.close_at(at(300), 0.0, 0.005).unwrap().binding);
        fill(&mut acc, 0, 10);
        acc.shed = 1;
        assert!(acc.close_at(at(400), 0.0, 0.005).unwrap().binding);
    }
}
