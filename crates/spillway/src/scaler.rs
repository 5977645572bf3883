//! Worker lifecycle policy: pure functions of what the pool observes, unit-tested without timers.
//!
//! # Why it looks at every submission
//!
//! A pool that samples its queue periodically (say once a second, then a cooldown of several
//! seconds) keeps `min_workers` busy after a step from idle to overload, and sheds for seconds
//! while the other workers it is allowed never start. Here the decision is taken by the submitter, right after it
//! queued a job, from four numbers the pool keeps anyway (a few atomic loads, no clock read unless a
//! cooldown is set). Growing therefore follows the queue within one submission: a burst of `n`
//! jobs that no idle worker can take starts up to `n` workers, and the pool reaches
//! `max_workers` in the time it takes to submit that many jobs (microseconds to milliseconds).
//!
//! # The rule
//!
//! * Below `min_workers` (start-up), start the missing ones.
//! * Otherwise grow only when a queued job has no idle worker to take it (`queued > idle`), and
//!   then by enough that utilization, `(busy + queued) / workers`, falls back to
//!   `scale_up_threshold`. With the default 0.7 the pool keeps some headroom so that the next
//!   jobs of a burst find a worker already running; with 1.0 it starts exactly as many as the
//!   queue asks for.
//! * Never above `max_workers`; never sooner than `scale_up_cooldown` after the previous growth
//!   (default zero: the proportional target does not overshoot, so no cooldown is needed). The
//!   cooldown starts with the first growth (starting `min_workers` is not one), and never holds
//!   back the first worker: queued work with no worker at all always starts one.
//! * Shrink lazily: a worker that has found no job for `idle_timeout` retires, down to
//!   `min_workers`. Retiring is never urgent, so it is the worker's own decision, not the
//!   submitter's.

use std::time::Duration;

/// The numbers a decision is based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    /// Worker tasks alive (starting, idle or busy).
    pub(crate) workers: usize,
    /// Workers running a job.
    pub(crate) busy: usize,
    /// Jobs admitted and not yet taken by a worker.
    pub(crate) queued: usize,
    /// Time since the pool last grew, when a cooldown is configured and it grew before.
    pub(crate) since_last_growth: Option<Duration>,
}

/// The policy's settings, validated by the builder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) scale_up_threshold: f64,
    pub(crate) scale_up_cooldown: Duration,
    pub(crate) idle_timeout: Duration,
}

/// What to do about the number of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Hold,
    /// Start this many more workers.
    Grow(usize),
}

/// Decides whether to start workers, given a fresh observation.
pub(crate) fn decide(obs: Observation, policy: &Policy) -> Decision {
    let Observation {
        workers,
        busy,
        queued,
        since_last_growth,
    } = obs;
    if workers < policy.min_workers {
        return Decision::Grow(policy.min_workers - workers);
    }
    if workers >= policy.max_workers {
        return Decision::Hold;
    }
    let idle = workers.saturating_sub(busy);
    if queued <= idle {
        return Decision::Hold;
    }
    // The cooldown limits growth beyond the first worker only: queued work with no worker at
    // all would wait for nobody.
    if workers > 0 && since_last_growth.is_some_and(|elapsed| elapsed < policy.scale_up_cooldown) {
        return Decision::Hold;
    }
    let demand = busy.saturating_add(queued);
    let target = if policy.scale_up_threshold > 0.0 {
        // f64 is exact for any worker count this machine can hold; the cast saturates.
        (demand as f64 / policy.scale_up_threshold).ceil() as usize
    } else {
        policy.max_workers
    };
    let target = target.clamp(workers + 1, policy.max_workers);
    Decision::Grow(target - workers)
}

/// Whether a worker that has been idle for `idle_for` should retire, with `workers` alive.
pub(crate) fn should_retire(idle_for: Duration, workers: usize, policy: &Policy) -> bool {
    idle_for >= policy.idle_timeout && workers > policy.min_workers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_workers: 1,
            max_workers: 100,
            scale_up_threshold: 0.7,
            scale_up_cooldown: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
        }
    }

    fn obs(workers: usize, busy: usize, queued: usize) -> Observation {
        Observation {
            workers,
            busy,
            queued,
            since_last_growth: None,
        }
    }

    #[test]
    fn starts_the_minimum() {
        let p = Policy {
            min_workers: 4,
            ..policy()
        };
        assert_eq!(decide(obs(0, 0, 0), &p), Decision::Grow(4));
        assert_eq!(decide(obs(3, 0, 0), &p), Decision::Grow(1));
    }

    #[test]
    fn idle_workers_absorb_queued_jobs() {
        assert_eq!(decide(obs(4, 1, 3), &policy()), Decision::Hold);
        assert_eq!(decide(obs(1, 0, 1), &policy()), Decision::Hold);
    }

    #[test]
    fn grows_to_threshold_when_no_worker_is_free() {
        // 10 busy, 4 queued: demand 14, target ceil(14 / 0.7) = 20.
        assert_eq!(decide(obs(10, 10, 4), &policy()), Decision::Grow(10));
        let exact = Policy {
            scale_up_threshold: 1.0,
            ..policy()
        };
        assert_eq!(decide(obs(10, 10, 4), &exact), Decision::Grow(4));
    }

    #[test]
    fn a_step_from_idle_to_overload_reaches_max_at_once() {
        // One submission sees a deep queue: start everything that is allowed.
        assert_eq!(decide(obs(1, 1, 10_000), &policy()), Decision::Grow(99));
    }

    #[test]
    fn never_exceeds_max() {
        assert_eq!(decide(obs(100, 100, 50), &policy()), Decision::Hold);
        assert_eq!(decide(obs(99, 99, 50), &policy()), Decision::Grow(1));
    }

    #[test]
    fn always_grows_by_at_least_one_when_starved() {
        let lax = Policy {
            scale_up_threshold: 1.0,
            ..policy()
        };
        assert_eq!(decide(obs(2, 2, 1), &lax), Decision::Grow(1));
    }

    #[test]
    fn zero_threshold_means_straight_to_max() {
        let eager = Policy {
            scale_up_threshold: 0.0,
            ..policy()
        };
        assert_eq!(decide(obs(5, 5, 1), &eager), Decision::Grow(95));
    }

    #[test]
    fn cooldown_holds_growth_but_not_the_minimum() {
        let p = Policy {
            min_workers: 2,
            scale_up_cooldown: Duration::from_millis(100),
            ..policy()
        };
        let recent = Observation {
            since_last_growth: Some(Duration::from_millis(10)),
            ..obs(4, 4, 8)
        };
        assert_eq!(decide(recent, &p), Decision::Hold);
        let later = Observation {
            since_last_growth: Some(Duration::from_millis(100)),
            ..recent
        };
        assert!(matches!(decide(later, &p), Decision::Grow(_)));
        let below_min = Observation {
            since_last_growth: Some(Duration::ZERO),
            ..obs(1, 1, 0)
        };
        assert_eq!(decide(below_min, &p), Decision::Grow(1));
    }

    #[test]
    fn cooldown_never_holds_back_the_first_worker() {
        let p = Policy {
            min_workers: 0,
            scale_up_cooldown: Duration::from_secs(3600),
            ..policy()
        };
        let nobody = Observation {
            since_last_growth: Some(Duration::ZERO),
            ..obs(0, 0, 1)
        };
        assert_eq!(decide(nobody, &p), Decision::Grow(2));
        let one = Observation {
            since_last_growth: Some(Duration::ZERO),
            ..obs(1, 1, 1)
        };
        assert_eq!(decide(one, &p), Decision::Hold);
    }

    #[test]
    fn retires_only_after_idle_timeout_and_above_min() {
        let p = policy();
        assert!(!should_retire(Duration::from_secs(29), 5, &p));
        assert!(should_retire(Duration::from_secs(30), 5, &p));
        assert!(!should_retire(Duration::from_secs(60), 1, &p));
    }
}
