//! The adaptive limit: spillway's default. Finds the concurrency past which more jobs in flight
//! no longer bring more throughput, and keeps the queue short only while that is so.
//!
//! # What it observes
//!
//! An in-process pool knows, for every job, its run time `R` (start to end, excluding our own
//! queue), its queue wait, and the number of jobs in flight `N` when it started. By Little's law
//! the throughput is `X = N / R`. Samples are aggregated into windows of at least 10 ms, 16
//! completed jobs and one mean run time, so each window holds jobs that started under about the
//! same limit; the law below runs once per window, on the means of `N` and `R` over the jobs
//! that completed in it (dropped jobs are counted, never averaged in: they did not run).
//!
//! # The law
//!
//! A window *binds* when demand met the limit: a submission was shed, jobs waited in the queue
//! (mean wait of 1 ms or more), or a job started with the limit fully in use. Only binding windows
//! can say anything about the limit; the others teach the uncongested run time `R0` (an average
//! over windows that did not bind) and leave the limit alone (no drift upward while app-limited).
//!
//! In a binding window the question is causal: *did more concurrency make the jobs slower?*
//! Between two consecutive binding windows whose `N` differs by 5% or more, the elasticity
//! `e = dln R / dln N` answers it. `e` near 0: more jobs in flight ran as fast, so throughput
//! grew with `N` (productive). `e` near 1: `R` followed `N`, so `X` stayed flat: a resource is
//! saturated (the CPU, a downstream with a fixed number of permits). Then:
//!
//! * `R <= (1 + tolerance) R0`: room to grow. Double the limit while no knee is known (or the
//!   limit is far below it); near the last knee seen, grow by 10%.
//! * `R` inflated and `e >= 0.5`: saturated. Shrink in proportion to the excess,
//!   `L * (1 + tolerance) R0 / R`, at most halving (Breakwater's decrease). The knee is noted.
//!   If `R0` was never confirmed (cold start straight into overload: no uncongested window was
//!   ever seen), step down by 30% per window instead, until a step down leaves `R` flat (`e <
//!   0.5`): that `R` is the uncongested one, and the proportional rule takes over.
//! * `R` inflated and `e < 0.5`: the rise was not caused by us (a slower downstream): `R0`
//!   becomes the new `R`, the knee is forgotten, and the limit grows.
//! * `R` inflated and `e` unknown (`N` did not move): probe by +25% so that the next windows can
//!   tell; no second probe while the samples at the new limit are still in flight.
//!
//! The limit settles where the run time is about `1 + tolerance` times the uncongested one: for
//! a job bound by a downstream of `P` permits, at about `(1 + tolerance) P`; for the seed job on
//! a saturated CPU, at `(1 + tolerance)` times the knee `X_max R0`.
//!
//! # The queue
//!
//! While the pool is *saturated* (from a saturated verdict until a window that does not bind or a
//! productive growth), the queue holds at most what the pool completes within `queue_target`
//! (`L * target / R`, Little's law again), and a job that waited over twice the target is
//! dropped when a worker takes it (CoDel's rule). Otherwise the queue is bounded only by
//! `queue_capacity`: a slower downstream or a burst is absorbed while the limit grows, never shed.
//! The default target is 5 ms, CoDel's: far below the seed job's 20 ms, so it adds little to
//! admitted latency, yet enough jobs (`X * 5 ms`, 200 at 40k jobs/s) to keep every worker fed
//! between two submissions.
//!
//! # Cold start
//!
//! The limit starts at `initial_limit` (1,000): a burst of that many jobs after idleness starts at
//! once without shedding. A step overload from cold therefore puts at most `initial_limit` jobs in
//! flight (plus one +25% probe) before the first verdict, which is the bound on the overshoot in
//! memory; from there the limit descends to the knee in a few windows.
//!
//! # Failure modes of the published limiters, and what this law does instead
//!
//! * *Creeping up under modest overload* (Gradient2's `+ queue_size` every sample): growth needs
//!   `R <= (1 + tolerance) R0` or proof that more concurrency ran as fast; past the knee neither
//!   holds.
//! * *Growing to max while latency is flat* (every request timing out alike): dropped jobs are not
//!   averaged into `R`, and growth past a known knee is 10% per window, undone by the next
//!   saturated verdict.
//! * *Dropped requests recording near-zero latency*: dropped samples only count as binding.
//! * *Windows skewed by cheap requests at low rates*: windows that do not bind never move the
//!   limit; they only refresh `R0`.
//! * *Slow ramp-up from a small initial limit*: the limit starts high and doubles while growth is
//!   productive.
//! * *minRTT re-measurement bursts* (Envoy pins the limit to 3): `R0` is learned from windows that
//!   do not bind, or from a step that proved productive; the limit is never pinned low.
//! * *Baseline drift in long incidents* (failsafe-go): `R0` only moves on an uncongested window or
//!   a causal verdict, never from windows where the limit binds and `R` follows `N`.
//! * *Shedding on a latency rise alone* (Vegas and Gradient shed 56% and 59% when a downstream
//!   merely slowed down): a rise of `R` at constant `N` is not taken as overload; the limit probes
//!   up and grows as long as `R` does not follow, and the queue does not shed until then.

use std::time::Duration;

use super::config::AdaptiveConfig;
use super::{Bounds, Sample};

/// A window closes after at least this long...
const MIN_WINDOW: Duration = Duration::from_millis(10);
/// ...and this many completed jobs...
const MIN_SAMPLES: u32 = 32;
/// ...and one mean run time of the previous window, at most this long.
const MAX_WINDOW: Duration = Duration::from_secs(1);
/// A mean queue wait at least this long means the limit binds.
const BINDING_WAIT: f64 = 0.001;
/// `N` must move by this much (in ln) between windows for `e` to be measured.
const MIN_DLN_N: f64 = 0.05;
/// A binding window is settled (its jobs started under the current limit) when its mean `N` is
/// within this (in ln) of the limit.
const SETTLED_DLN_N: f64 = 0.1;
/// At or above this elasticity, `R` follows `N`.
const SATURATED_E: f64 = 0.5;
/// Below this elasticity, over a move of `N` of at least `FLAT_DLN_N`, `R` did not follow `N`.
const FLAT_E: f64 = 0.25;
const FLAT_DLN_N: f64 = 0.15;
const FAST_GROWTH: f64 = 1.5;
const GENTLE_GROWTH: f64 = 1.1;
const PROBE: f64 = 1.25;
const BLIND_DESCENT: f64 = 0.6;

/// What one window saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// Mean run time of the completed jobs, in seconds.
    pub(crate) run: f64,
    /// Mean number in flight when they started.
    pub(crate) in_flight: f64,
    /// Whether demand met the limit during the window.
    pub(crate) binding: bool,
}

/// Why the limit last moved (or did not), for debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Initial,
    NotBinding,
    Room,
    Saturated,
    BlindDescent,
    Productive,
    Probe,
    Settling,
    Ceiling,
}

/// The state of one adaptive limit.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveLimit {
    limit: f64,
    bounds: Bounds,
    tolerance: f64,
    queue_target: Duration,
    acc: Accumulator,
    law: Law,
}

/// The control law's memory between windows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Law {
    /// Uncongested run time `R0`, seconds.
    pub(crate) baseline: Option<f64>,
    /// Whether `R0` was seen uncongested (a steady window that did not bind, or a step that left
    /// `R` flat), not just assumed.
    pub(crate) confirmed: bool,
    /// The last settled binding window: the point the next one is compared with.
    pub(crate) measured: Option<Window>,
    /// The window before this one.
    pub(crate) last: Option<Window>,
    /// Lowest `N` of the last saturated verdict.
    pub(crate) knee: Option<f64>,
    pub(crate) saturated: bool,
    /// Mean run time of the last window, seconds (for the queue bound and the window length).
    pub(crate) last_run: f64,
    pub(crate) reason: Reason,
}

impl Law {
    fn new() -> Law {
        Law {
            baseline: None,
            confirmed: false,
            measured: None,
            last: None,
            knee: None,
            saturated: false,
            last_run: 0.0,
            reason: Reason::Initial,
        }
    }
}

impl AdaptiveLimit {
    pub(crate) fn new(config: &AdaptiveConfig, bounds: Bounds) -> AdaptiveLimit {
        AdaptiveLimit {
            limit: config.initial_limit.clamp(bounds.min, bounds.max) as f64,
            bounds,
            tolerance: config.tolerance,
            queue_target: config.queue_target,
            acc: Accumulator::default(),
            law: Law::new(),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.bounds.clamp(self.limit)
    }

    /// Why the limit last moved or held.
    pub(crate) fn reason(&self) -> Reason {
        self.law.reason
    }

    pub(crate) fn on_sample(&mut self, now: Duration, sample: &Sample) {
        self.acc.add(sample, self.limit());
        self.maybe_close(now);
    }

    pub(crate) fn on_shed(&mut self, now: Duration) {
        self.acc.shed = self.acc.shed.saturating_add(1);
        self.maybe_close(now);
    }

    /// See the module docs, "The queue".
    pub(crate) fn queue_bound(&self, capacity: usize) -> usize {
        if !self.law.saturated || self.law.last_run <= 0.0 {
            return capacity;
        }
        let drained = self.limit() as f64 * self.queue_target.as_secs_f64() / self.law.last_run;
        // `as` saturates; at least one job may wait so a worker never idles between submissions.
        (drained.ceil() as usize).clamp(1, capacity.max(1))
    }

    /// See the module docs, "The queue".
    pub(crate) fn drop_at_dequeue(&self, waited: Duration) -> bool {
        self.law.saturated && waited > self.queue_target.saturating_mul(2)
    }

    fn maybe_close(&mut self, now: Duration) {
        let Some(window) = self.acc.close(now, self.law.last_run) else {
            return;
        };
        if window.run > 0.0 {
            self.law.last_run = window.run;
        }
        let bounds = (self.bounds.min as f64, self.bounds.max as f64);
        let next = self
            .law
            .update(self.limit, &window, self.tolerance, bounds.1);
        if std::env::var_os("LAWTRACE").is_some() {
            eprintln!(
                "t={:.3} w={:?} limit {:.0} -> {:.0} {:?} base={:?} conf={} sat={} knee={:?}",
                now.as_secs_f64(),
                window,
                self.limit,
                next,
                self.law.reason,
                self.law.baseline,
                self.law.confirmed,
                self.law.saturated,
                self.law.knee
            );
        }
        self.limit = next.clamp(bounds.0, bounds.1);
    }
}

impl Law {
    /// One step of the control law: the limit after `window`, given the limit during it and
    /// the highest allowed.
    pub(crate) fn update(&mut self, limit: f64, w: &Window, tolerance: f64, max: f64) -> f64 {
        let last = self.last.replace(*w);
        let next = if !w.binding {
            self.not_binding(limit, w, last)
        } else if (w.in_flight / limit).ln().abs() <= SETTLED_DLN_N {
            let next = self.settled(limit, w, tolerance);
            self.measured = Some(*w);
            next
        } else {
            // Most jobs in this window started before the last move (or before demand rose).
            self.reason = Reason::Settling;
            limit
        };
        if next > limit && limit >= max {
            self.reason = Reason::Ceiling;
        }
        next.clamp(1.0, max.max(1.0))
    }

    fn not_binding(&mut self, limit: f64, w: &Window, last: Option<Window>) -> f64 {
        self.saturated = false;
        self.measured = None;
        self.reason = Reason::NotBinding;
        let steady = last.is_some_and(|l| !l.binding && same_n(&l, w));
        if steady && w.run > 0.0 {
            self.baseline = Some(match self.baseline.filter(|_| self.confirmed) {
                Some(r0) => r0 + 0.5 * (w.run - r0),
                None => w.run,
            });
            self.confirmed = true;
        }
        limit
    }

    /// A binding window whose jobs started under the current limit.
    fn settled(&mut self, limit: f64, w: &Window, tolerance: f64) -> f64 {
        let step = self.measured.and_then(|m| Step::between(&m, w));
        if let Some(step) = step.filter(|s| s.is_flat()) {
            return self.productive(limit, w, step);
        }
        if let Some(r0) = self.baseline.filter(|&r0| w.run < r0) {
            self.baseline = Some(w.run.min(r0)); // a mean below R0 proves R0 too high
        }
        let inflation = match self.baseline {
            Some(r0) if self.confirmed => w.run / r0,
            _ => return self.unconfirmed(limit, step),
        };
        match step {
            _ if inflation <= 1.0 + tolerance => self.grow(limit, Reason::Room),
            // R rose at a constant N: a slower downstream (grow) or less capacity (shrink)?
            // Unless already saturated, move N to find out.
            None if !self.saturated => self.probe(limit),
            _ => {
                self.knee = Some(w.in_flight);
                self.saturated = true;
                self.reason = Reason::Saturated;
                limit * ((1.0 + tolerance) / inflation).max(0.5)
            }
        }
    }

    /// No uncongested run time seen yet (cold start straight into overload).
    fn unconfirmed(&mut self, limit: f64, step: Option<Step>) -> f64 {
        match step {
            Some(step) if step.e >= SATURATED_E => {
                self.knee = Some(step.low_n);
                self.saturated = true;
                self.reason = Reason::BlindDescent;
                limit * BLIND_DESCENT
            }
            _ => self.probe(limit),
        }
    }

    fn probe(&mut self, limit: f64) -> f64 {
        self.reason = Reason::Probe;
        limit * PROBE
    }

    /// `R` stayed flat while `N` moved: the run time at this `N` is uncongested; grow.
    fn productive(&mut self, limit: f64, w: &Window, step: Step) -> f64 {
        self.baseline = Some(step.low_run);
        self.confirmed = true;
        self.saturated = false;
        if self.knee.is_some_and(|knee| w.in_flight > knee) {
            self.knee = None; // productive past the old knee: it moved
        }
        self.grow(limit, Reason::Productive)
    }

    fn grow(&mut self, limit: f64, reason: Reason) -> f64 {
        self.reason = reason;
        match self.knee {
            Some(knee) if limit * GENTLE_GROWTH >= knee => limit * GENTLE_GROWTH,
            Some(knee) => (limit * FAST_GROWTH).min(knee),
            None => limit * FAST_GROWTH,
        }
    }
}

/// What moving from one settled window to the next showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// `dln R / dln N`.
    pub(crate) e: f64,
    pub(crate) dln_n: f64,
    /// The lower of the two `N`, and of the two `R`.
    pub(crate) low_n: f64,
    pub(crate) low_run: f64,
}

impl Step {
    /// The step between two windows, when `N` moved enough to tell.
    pub(crate) fn between(prev: &Window, cur: &Window) -> Option<Step> {
        let positive = [prev.run, cur.run, prev.in_flight, cur.in_flight];
        if positive.iter().any(|v| !(*v > 0.0)) {
            return None;
        }
        let dln_n = (cur.in_flight / prev.in_flight).ln();
        if dln_n.abs() < MIN_DLN_N {
            return None;
        }
        Some(Step {
            e: (cur.run / prev.run).ln() / dln_n,
            dln_n,
            low_n: prev.in_flight.min(cur.in_flight),
            low_run: prev.run.min(cur.run),
        })
    }

    /// `R` did not follow a large enough move of `N`.
    fn is_flat(&self) -> bool {
        self.e < FLAT_E && self.dln_n.abs() >= FLAT_DLN_N
    }
}

/// Whether two windows saw about the same number in flight.
fn same_n(a: &Window, b: &Window) -> bool {
    let (lo, hi) = (a.in_flight.min(b.in_flight), a.in_flight.max(b.in_flight));
    hi <= 1.25 * lo + 1.0
}

/// Sums over the current window.
#[derive(Debug, Clone, Default)]
struct Accumulator {
    start: Option<Duration>,
    completed: u32,
    run_sum: f64,
    in_flight_sum: f64,
    wait_sum: f64,
    full: bool,
    dropped: u32,
    shed: u32,
}

impl Accumulator {
    fn add(&mut self, sample: &Sample, limit: usize) {
        if sample.dropped {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.completed = self.completed.saturating_add(1);
        self.run_sum += sample.run.as_secs_f64();
        self.in_flight_sum += sample.in_flight as f64;
        self.wait_sum += sample.queue_wait.as_secs_f64();
        self.full |= sample.in_flight >= limit;
    }

    /// The window, if it is long and full enough to close at `now`; then starts the next one.
    fn close(&mut self, now: Duration, last_run: f64) -> Option<Window> {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_sub(start);
        let min_len = MIN_WINDOW
            .max(Duration::try_from_secs_f64(last_run).unwrap_or(MAX_WINDOW))
            .min(MAX_WINDOW);
        let enough = self.completed >= MIN_SAMPLES || (elapsed >= MAX_WINDOW && self.completed > 0);
        if elapsed < min_len || !enough {
            return None;
        }
        let n = f64::from(self.completed);
        let wait = self.wait_sum / n;
        let window = Window {
            run: self.run_sum / n,
            in_flight: self.in_flight_sum / n,
            binding: self.shed > 0 || self.dropped > 0 || wait >= BINDING_WAIT || self.full,
        };
        *self = Accumulator {
            start: Some(now),
            ..Accumulator::default()
        };
        Some(window)
    }
}
