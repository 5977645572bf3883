//! The scenarios `simulate` offers each mode: how the offered rate, the job and the machine
//! change over a run, as a list of [`Phase`]s, and the arrival times they give.
//!
//! | scenario        | default | phases (times since the mode started)                          |
//! |-----------------|---------|----------------------------------------------------------------|
//! | `step`          | 10 s    | `steady`: `--rate` throughout                                  |
//! | `spike`         | 10 s    | `before` 0.7x capacity; `spike` 1.4x for 2 s mid-run; `after` 0.7x |
//! | `capacity-drop` | 12 s    | 2x capacity; `drop` from 4 s to 8 s a thread spins on one core |
//! | `slowdown`      | 10 s    | 0.3x capacity; `slow` from 5 s the job waits 10x `--wait-ms`   |
//! | `low-rate`      | 10 s    | 10 jobs/s; `idle` from 3 s to 8 s; `burst` of 1,000 at 8 s     |
//! | `priorities`    | 10 s    | `overload`: 3x capacity, 10% critical, 30% normal, 60% low     |
//!
//! Every scenario but `priorities` offers all its jobs at one priority (normal, submitted with
//! `try_submit`); `--priority-mix` replaces any scenario's mix.
//!
//! The busy thread of `capacity-drop` runs in the mode's own process (its child process, or
//! this one with `--isolation inline`), spinning outside the runtime, so the runtime's worker
//! threads share the machine's cores with it: on two cores it takes one.

use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::args::usage;
use crate::priority::PriorityMix;
use spillway::Priority;

/// How the offered load, the job and the machine change over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `--rate` throughout (the seed's experiment).
    Step,
    /// 0.7x capacity, 1.4x for 2 s mid-run, then 0.7x again.
    Spike,
    /// 2x capacity; from 4 s to 8 s a busy thread takes one of the cores.
    CapacityDrop,
    /// 0.3x capacity; from 5 s the job waits ten times longer (a slower service downstream).
    Slowdown,
    /// 10 jobs/s, idle from 3 s to 8 s, then a burst of 1,000 jobs at once.
    LowRate,
    /// 3x capacity throughout: 10% of the jobs critical, 30% normal, 60% low.
    Priorities,
}

/// One phase of a run: from `start_s` to `end_s` seconds since the mode started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `steady`, `before`, `spike`, `after`, `drop`, `slow`, `trickle`, `idle`, `burst` or
    /// `overload`.
    pub name: String,
    /// When it starts, seconds since the mode started.
    pub start_s: f64,
    /// When it ends.
    pub end_s: f64,
    /// Jobs offered per second (Poisson arrivals) during the phase.
    pub rate: f64,
    /// Jobs offered all at once when the phase starts.
    pub burst: u64,
    /// Milliseconds each job offered during the phase waits.
    pub wait_ms: f64,
    /// Whether a busy thread takes one core during the phase.
    pub hog: bool,
}

/// What the phases are made from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Basis {
    /// `--rate`, for `step`.
    pub(crate) rate: f64,
    /// Jobs/s the machine completes for this job.
    pub(crate) capacity: f64,
    /// `--wait-ms`.
    pub(crate) wait_ms: f64,
    pub(crate) duration: Duration,
}

/// The spike's length.
const SPIKE: f64 = 2.0;
/// When the capacity drop starts and ends.
const DROP: (f64, f64) = (4.0, 8.0);
/// When the slowdown starts, and how much longer the job waits from then on.
const SLOW_AT: f64 = 5.0;
const SLOW_FACTOR: f64 = 10.0;
/// `low-rate`: the trickle's rate, when it goes idle, when the burst comes, and its size.
const TRICKLE: f64 = 10.0;
const IDLE: (f64, f64) = (3.0, 8.0);
const BURST: u64 = 1_000;
/// `priorities`: the overload, and the shares of critical, normal and low work.
const PRIORITY_OVERLOAD: f64 = 3.0;
const PRIORITY_SHARES: [(Priority, f64); 3] = [
    (Priority::Critical, 0.1),
    (Priority::Normal, 0.3),
    (Priority::Low, 0.6),
];

impl Scenario {
    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Step => "step",
            Scenario::Spike => "spike",
            Scenario::CapacityDrop => "capacity-drop",
            Scenario::Slowdown => "slowdown",
            Scenario::LowRate => "low-rate",
            Scenario::Priorities => "priorities",
        }
    }

    /// The priorities the scenario offers, and their shares; `None` offers every job at
    /// normal priority through `try_submit`, as before priorities existed.
    pub(crate) fn mix(self) -> Option<PriorityMix> {
        match self {
            Scenario::Priorities => {
                Some(PriorityMix::new(PRIORITY_SHARES.to_vec()).expect("the shares sum to 1"))
            }
            _ => None,
        }
    }

    /// How long a mode runs when `--duration` is not given.
    pub fn default_duration(self) -> Duration {
        Duration::from_secs(match self {
            Scenario::CapacityDrop => 12,
            _ => 10,
        })
    }

    /// The shortest `--duration` that holds the scenario's events with a second after them
    /// (half a second either side of the spike), and what they are.
    fn shortest(self) -> (f64, &'static str) {
        match self {
            Scenario::Step | Scenario::Priorities => (0.0, ""),
            Scenario::Spike => (SPIKE + 1.0, "its 2s spike with 0.5s either side"),
            Scenario::CapacityDrop => (DROP.1 + 1.0, "the drop from 4s to 8s and 1s after"),
            Scenario::Slowdown => (SLOW_AT + 1.0, "the slowdown at 5s and 1s after"),
            Scenario::LowRate => (IDLE.1 + 1.0, "the burst at 8s and 1s after"),
        }
    }

    /// Checks `--duration` and `--rate` against the scenario.
    ///
    /// # Errors
    ///
    /// A duration too short for the scenario's events, or `--rate` given to a scenario whose
    /// rates follow the capacity.
    pub(crate) fn check(self, duration: Option<Duration>, rate_given: bool) -> Result<()> {
        let (shortest, events) = self.shortest();
        if let Some(d) = duration.filter(|d| d.as_secs_f64() < shortest) {
            return Err(usage(format!(
                "invalid --duration {}: the {} scenario needs at least {shortest}s ({events})",
                humantime::format_duration(d),
                self.as_str(),
            )));
        }
        if rate_given && self != Scenario::Step {
            return Err(usage(format!(
                "--rate sets the step scenario's rate only: the {} scenario's rates are set \
                 by the capacity (give --capacity to fix them); drop --rate or use \
                 --scenario step",
                self.as_str()
            )));
        }
        Ok(())
    }

    /// The scenario's phases for `basis`.
    pub(crate) fn phases(self, b: Basis) -> Vec<Phase> {
        let end = b.duration.as_secs_f64();
        let (c, w) = (b.capacity, b.wait_ms);
        let phase = |name: &str, start_s: f64, end_s: f64, rate: f64| Phase {
            name: name.to_owned(),
            start_s,
            end_s,
            rate,
            burst: 0,
            wait_ms: w,
            hog: false,
        };
        match self {
            Scenario::Step => vec![phase("steady", 0.0, end, b.rate)],
            Scenario::Spike => {
                let at = (end - SPIKE) / 2.0;
                vec![
                    phase("before", 0.0, at, 0.7 * c),
                    phase("spike", at, at + SPIKE, 1.4 * c),
                    phase("after", at + SPIKE, end, 0.7 * c),
                ]
            }
            Scenario::CapacityDrop => vec![
                phase("before", 0.0, DROP.0, 2.0 * c),
                Phase {
                    hog: true,
                    ..phase("drop", DROP.0, DROP.1, 2.0 * c)
                },
                phase("after", DROP.1, end, 2.0 * c),
            ],
            Scenario::Slowdown => vec![
                phase("before", 0.0, SLOW_AT, 0.3 * c),
                Phase {
                    wait_ms: w * SLOW_FACTOR,
                    ..phase("slow", SLOW_AT, end, 0.3 * c)
                },
            ],
            Scenario::Priorities => vec![phase("overload", 0.0, end, PRIORITY_OVERLOAD * c)],
            Scenario::LowRate => vec![
                phase("trickle", 0.0, IDLE.0, TRICKLE),
                phase("idle", IDLE.0, IDLE.1, 0.0),
                Phase {
                    burst: BURST,
                    ..phase("burst", IDLE.1, end, TRICKLE)
                },
            ],
        }
    }
}

/// The phases in words: "spike 4-6s 1400/s, wait 20 ms; ...".
pub(crate) fn describe_phases(phases: &[Phase]) -> String {
    let one = |p: &Phase| {
        let burst = if p.burst > 0 {
            format!(" + {} at once", p.burst)
        } else {
            String::new()
        };
        let hog = if p.hog { ", one core busy" } else { "" };
        format!(
            "{} {}-{}s {:.0}/s{burst}, wait {} ms{hog}",
            p.name, p.start_s, p.end_s, p.rate, p.wait_ms
        )
    };
    phases.iter().map(one).collect::<Vec<_>>().join("; ")
}

/// The highest rate any phase offers.
pub(crate) fn peak_rate(phases: &[Phase]) -> f64 {
    phases.iter().map(|p| p.rate).fold(0.0, f64::max)
}

/// The arrival times of `phases`, in order: each phase's burst at its start, then Poisson
/// arrivals at its rate until its end. Yields (seconds since the start, index of the phase).
#[derive(Debug)]
pub(crate) struct Arrivals<'a> {
    phases: &'a [Phase],
    phase: usize,
    t: f64,
    burst_left: u64,
    rng: SmallRng,
}

impl<'a> Arrivals<'a> {
    pub(crate) fn new(phases: &'a [Phase], seed: u64) -> Self {
        Arrivals {
            phases,
            phase: 0,
            t: phases.first().map_or(0.0, |p| p.start_s),
            burst_left: phases.first().map_or(0, |p| p.burst),
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

impl Iterator for Arrivals<'_> {
    type Item = (f64, usize);

    fn next(&mut self) -> Option<(f64, usize)> {
        loop {
            let phase = self.phases.get(self.phase)?;
            if self.burst_left > 0 {
                self.burst_left -= 1;
                return Some((phase.start_s, self.phase));
            }
            if phase.rate > 0.0 {
                // Exponential gaps; memoryless, so a phase's end restarts them at its rate.
                let t = self.t - (1.0 - self.rng.random::<f64>()).ln() / phase.rate;
                if t < phase.end_s {
                    self.t = t;
                    return Some((t, self.phase));
                }
            }
            self.phase += 1;
            if let Some(next) = self.phases.get(self.phase) {
                self.t = next.start_s;
                self.burst_left = next.burst;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basis(duration_s: u64) -> Basis {
        Basis {
            rate: 500.0,
            capacity: 1_000.0,
            wait_ms: 20.0,
            duration: Duration::from_secs(duration_s),
        }
    }

    #[test]
    fn phases_cover_the_run_without_gaps() {
        for s in Scenario::value_variants() {
            let d = s.default_duration();
            let phases = s.phases(basis(d.as_secs()));
            assert_eq!(phases[0].start_s, 0.0, "{s:?}");
            assert_eq!(phases.last().unwrap().end_s, d.as_secs_f64(), "{s:?}");
            for w in phases.windows(2) {
                assert_eq!(w[0].end_s, w[1].start_s, "{s:?}");
            }
            assert!(s.check(Some(d), false).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn the_spike_sits_mid_run_and_the_drop_takes_a_core() {
        let spike = Scenario::Spike.phases(basis(10));
        assert_eq!((spike[1].start_s, spike[1].end_s), (4.0, 6.0));
        assert_eq!((spike[0].rate, spike[1].rate), (700.0, 1_400.0));
        let drop = Scenario::CapacityDrop.phases(basis(12));
        assert!(drop[1].hog && !drop[0].hog && !drop[2].hog);
        let slow = Scenario::Slowdown.phases(basis(10));
        assert_eq!((slow[0].wait_ms, slow[1].wait_ms), (20.0, 200.0));
        assert_eq!(peak_rate(&slow), 300.0);
        assert_eq!(
            describe_phases(&Scenario::LowRate.phases(basis(10))[1..]),
            "idle 3-8s 0/s, wait 20 ms; burst 8-10s 10/s + 1000 at once, wait 20 ms"
        );
        assert!(describe_phases(&drop).contains("drop 4-8s 2000/s, wait 20 ms, one core busy"));
        let overload = Scenario::Priorities.phases(basis(10));
        assert_eq!(overload.len(), 1);
        assert_eq!(overload[0].rate, 3_000.0);
    }

    #[test]
    fn only_the_priorities_scenario_mixes_priorities() {
        let mix = Scenario::Priorities.mix().unwrap();
        assert_eq!(mix.to_string(), "critical=0.1,normal=0.3,low=0.6");
        for s in Scenario::value_variants() {
            assert_eq!(s.mix().is_some(), *s == Scenario::Priorities, "{s:?}");
        }
    }

    #[test]
    fn arrivals_follow_each_phase_and_its_burst() {
        let phases = Scenario::LowRate.phases(basis(10));
        let arrivals: Vec<_> = Arrivals::new(&phases, 3).collect();
        assert!(arrivals.windows(2).all(|w| w[0].0 <= w[1].0), "in order");
        let in_phase = |i| arrivals.iter().filter(|a| a.1 == i).count();
        assert!((10..=50).contains(&in_phase(0)), "{}", in_phase(0));
        assert_eq!(in_phase(1), 0, "idle");
        let at_burst = arrivals.iter().filter(|a| a.0 == 8.0).count();
        assert_eq!(at_burst, 1_000);
        assert!(arrivals.iter().all(|a| a.0 < 10.0));
    }

    #[test]
    fn a_duration_too_short_or_a_rate_given_is_refused_naming_the_flag() {
        let short = Scenario::CapacityDrop
            .check(Some(Duration::from_secs(5)), false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            short,
            "invalid --duration 5s: the capacity-drop scenario needs at least 9s (the drop \
             from 4s to 8s and 1s after)"
        );
        let rate = Scenario::Spike.check(None, true).unwrap_err().to_string();
        assert!(
            rate.starts_with("--rate sets the step scenario's rate only"),
            "{rate}"
        );
        assert!(
            Scenario::Step
                .check(Some(Duration::from_millis(10)), true)
                .is_ok()
        );
    }
}
