//! [`Builder`]: every setting, validated once in [`Builder::build`].

use std::time::Duration;

use tokio::runtime::Handle;

use crate::config::Config;
use crate::error::BuildError;
use crate::limit::{InvalidLimit, Limit};
use crate::pool::Pool;
use crate::queue::MAX_CAPACITY;
use crate::scaler::Policy;

/// The most workers a pool may have: the largest [`Builder::max_workers`] (and so
/// [`Builder::min_workers`]) that [`Builder::build`] accepts.
///
/// Every worker is a tokio task of about a kilobyte, and a pool may start all of them at once
/// (`min_workers` at build, or a burst with a `scale_up_threshold` of 0.0), so the limit keeps
/// every accepted configuration one that starts in well under a second and a few hundred
/// megabytes. It is far above what a pool of tasks on one machine can keep busy.
pub const MAX_WORKERS: usize = 100_000;

/// The default `max_workers` under a moving limit: a ceiling, not a target (see [`Builder`]).
const DEFAULT_MAX_WORKERS: usize = 10_000;

/// The default `queue_capacity` under a moving limit.
const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// The default `queue_capacity` with [`Limit::fixed`] (spillway's default before limits existed).
const FIXED_QUEUE_CAPACITY: usize = 1_000;

/// Configures and builds a [`Pool`]. Start from [`Pool::builder`].
///
/// | setting | default | allowed |
/// |---|---|---|
/// | [`limit`](Self::limit) | [`Limit::adaptive`] | a [`Limit`] with valid parameters |
/// | [`queue_target`](Self::queue_target) | 5 ms | more than zero; adaptive limit only |
/// | [`min_workers`](Self::min_workers) | 1 | `0..=max_workers` |
/// | [`max_workers`](Self::max_workers) | 10,000 (fixed: available parallelism) | `1..=`[`MAX_WORKERS`] |
/// | [`queue_capacity`](Self::queue_capacity) | 10,000 (fixed: 1,000) | `1..=usize::MAX / 4` |
/// | [`scale_up_threshold`](Self::scale_up_threshold) | 0.7 | `0.0..=1.0` |
/// | [`scale_up_cooldown`](Self::scale_up_cooldown) | zero | any |
/// | [`idle_timeout`](Self::idle_timeout) | 30 s | more than zero |
/// | [`queue_timeout`](Self::queue_timeout) | none | more than zero |
/// | [`run_timeout`](Self::run_timeout) | none | more than zero |
/// | [`name`](Self::name) | `"default"` | not empty |
/// | [`runtime`](Self::runtime) | the current one | a tokio runtime handle |
///
/// Nothing is checked until [`build`](Self::build), which reports the first invalid setting by
/// name; no setter panics.
///
/// # Ceilings and the limit
///
/// By default the number of jobs running at once is a [`Limit::adaptive`] concurrency limit that
/// the pool finds and follows by itself, between `min_workers` (and at least one job per
/// thread of the pool's runtime, so that no thread a CPU-bound job could use is kept idle) and
/// `max_workers`; jobs beyond
/// what it completes within [`queue_target`](Self::queue_target) are shed while it is
/// saturated. `max_workers` and `queue_capacity` are then only ceilings, for memory safety, and
/// their defaults are generous so that no job profile needs them set:
///
/// * `max_workers` 10,000: a worker is a tokio task of about a kilobyte, and only as many start
///   as the limit lets run. An I/O-bound job of 20 ms can then reach 500,000 jobs/s; a CPU-bound
///   job never gets that many, because the limit stops where run times start to follow the
///   number in flight.
/// * `queue_capacity` 10,000: what waits while the pool is *not* saturated (a burst, a slower
///   downstream that the limit is still growing for). Each queued job holds only its boxed
///   future (typically well under a kilobyte before it runs), so about 10 MiB at worst.
///
/// With [`Limit::fixed`] the limit is `max_workers` and nothing moves (spillway's behaviour
/// before limits existed), so the defaults are the previous ones: the available parallelism
/// and a queue of 1,000.
///
/// # Examples
///
/// A pool for a burst-heavy service: up to 5,000 workers, a 100,000-job queue, and queued jobs
/// that expire after half a second rather than run late.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
///
/// let pool = spillway::Pool::builder()
///     .name("jobs")
///     .min_workers(100)
///     .max_workers(5_000)
///     .queue_capacity(100_000)
///     .queue_timeout(Duration::from_millis(500))
///     .build()
///     .unwrap();
/// assert_eq!(pool.metrics().queue_capacity, 100_000);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    name: String,
    min_workers: usize,
    max_workers: Option<usize>,
    queue_capacity: Option<usize>,
    limit: Limit,
    queue_target: Option<Duration>,
    scale_up_threshold: f64,
    scale_up_cooldown: Duration,
    idle_timeout: Duration,
    queue_timeout: Option<Duration>,
    run_timeout: Option<Duration>,
    runtime: Option<Handle>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: "default".to_owned(),
            min_workers: 1,
            max_workers: None,
            queue_capacity: None,
            limit: Limit::default(),
            queue_target: None,
            scale_up_threshold: 0.7,
            scale_up_cooldown: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
            queue_timeout: None,
            run_timeout: None,
            runtime: None,
        }
    }
}

impl Builder {
    /// The defaults; same as [`Pool::builder`].
    pub fn new() -> Self {
        Builder::default()
    }

    /// Workers kept alive even when idle. Default 1; may be 0 (the pool then starts a worker on
    /// the first submission).
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n;
        self
    }

    /// Most jobs running at once: a hard ceiling for the concurrency limit. Default 10,000 (with
    /// [`Limit::fixed`]: the machine's available parallelism); see "Ceilings and the limit".
    /// At most [`MAX_WORKERS`].
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Most jobs waiting for a worker, a hard ceiling. A submission beyond it is refused
    /// (`try_submit`) or waits (`submit`). Default 10,000 (with [`Limit::fixed`]: 1,000).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = Some(n);
        self
    }

    /// How the pool chooses how many jobs run at once. Default [`Limit::adaptive`]; see
    /// [`Limit`] for the others.
    ///
    /// Under any limit but [`Limit::fixed`], a worker only takes a queued job while fewer than
    /// the limit run (workers above it park, and retire after `idle_timeout`), and a submission
    /// is refused as full ([`TrySubmitError::Full`](crate::TrySubmitError::Full), counted in
    /// `shed_full`) once `limit + queue bound` jobs are in flight, the queue bound being the
    /// algorithm's (see [`queue_target`](Self::queue_target)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use spillway::{Limit, Pool};
    ///
    /// let adaptive = Pool::builder().build().unwrap();
    /// assert!(adaptive.metrics().limit <= adaptive.metrics().max_workers);
    ///
    /// let fixed = Pool::builder().limit(Limit::fixed()).max_workers(8).build().unwrap();
    /// assert_eq!(fixed.metrics().limit, 8);
    ///
    /// let vegas = Pool::builder().limit(Limit::vegas().max_limit(500)).build().unwrap();
    /// assert!(vegas.metrics().limit <= 500);
    /// # }
    /// ```
    pub fn limit(mut self, limit: impl Into<Limit>) -> Self {
        self.limit = limit.into();
        self
    }

    /// The queue wait the adaptive limit aims at while the pool is saturated: it then admits
    /// only what the pool completes within this time (`limit * target / run time` queued), and a
    /// worker drops a job that waited more than twice as long (it ends as
    /// [`JobError::Expired`](crate::JobError::Expired)). While not saturated only
    /// `queue_capacity` bounds the queue. Default 5 ms, CoDel's target: small against the
    /// run time of a typical I/O-bound job (20 ms), so admitted latency stays near the job's own,
    /// yet long enough that at tens of thousands of jobs per second hundreds are queued and no
    /// worker idles between two submissions. Only for [`Limit::adaptive`] (the default):
    /// [`build`](Self::build) refuses it with another limit. Same as
    /// [`Adaptive::queue_target`](crate::Adaptive::queue_target).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use spillway::{Limit, Pool};
    ///
    /// let pool = Pool::builder().queue_target(Duration::from_millis(2)).build();
    /// assert!(pool.is_ok());
    ///
    /// let err = Pool::builder()
    ///     .limit(Limit::fixed())
    ///     .queue_target(Duration::from_millis(2))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.setting(), "queue_target");
    /// # }
    /// ```
    pub fn queue_target(mut self, target: Duration) -> Self {
        self.queue_target = Some(target);
        self
    }

    /// How much headroom growth leaves. The pool grows when a queued job finds no idle worker,
    /// and then starts enough workers to bring utilization, `(busy + queued) / workers`, down
    /// to this value. Default 0.7; 1.0 starts exactly as many as needed, 0.0 goes straight to
    /// `max_workers`.
    pub fn scale_up_threshold(mut self, threshold: f64) -> Self {
        self.scale_up_threshold = threshold;
        self
    }

    /// Least time between two growth steps. Default zero: the pool follows the queue at once.
    pub fn scale_up_cooldown(mut self, cooldown: Duration) -> Self {
        self.scale_up_cooldown = cooldown;
        self
    }

    /// How long a worker above `min_workers` may find no job before it retires. Default 30 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// A job that waited in the queue longer than this is not run; it ends as
    /// [`JobError::Expired`](crate::JobError::Expired). Default: no limit.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = Some(timeout);
        self
    }

    /// A job still running this long after it started is dropped at its next `.await` and ends
    /// as [`JobError::TimedOut`](crate::JobError::TimedOut) (counted in
    /// [`Snapshot::timed_out`](crate::Snapshot::timed_out)); its worker takes the next job.
    /// Default: no limit, a job may run forever and hold its worker forever.
    ///
    /// Only the time running counts (the queue has [`queue_timeout`](Self::queue_timeout)). Under
    /// a concurrency limit a timed-out job is a dropped sample with its real run time, as a
    /// request that timed out downstream would be.
    ///
    /// A future is only ever stopped between two polls: a job that computes without awaiting
    /// (a CPU-bound loop, a blocking call) keeps its worker and its thread until its poll
    /// returns. If that poll returns pending after the deadline, the job ends as timed out
    /// there; if it returns a value, the job completed. Work on an OS thread (the CPU lane,
    /// [`tokio::task::spawn_blocking`]) cannot be interrupted at all: a timeout there only stops
    /// the waiting, the thread runs the closure to its end.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use spillway::{JobError, Pool};
    ///
    /// let pool = Pool::builder().run_timeout(Duration::from_secs(1)).build().unwrap();
    /// let stuck = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// assert_eq!(stuck.await, Err(JobError::TimedOut));
    /// assert_eq!(pool.metrics().timed_out, 1);
    /// # }
    /// ```
    pub fn run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }

    /// The pool's name, used as the `pool` label of its metrics. Default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The runtime that runs the workers. Default: the runtime `build` is called from.
    ///
    /// If that runtime shuts down while the pool lives, the pool closes: queued and running jobs
    /// end as [`JobError::Abandoned`](crate::JobError::Abandoned), later submissions are refused
    /// as closed, and [`Pool::shutdown`] returns at once. (With no worker alive at that moment,
    /// the pool learns of it at the next submission, whose job is then abandoned.)
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Checks every setting and starts the pool with `min_workers` workers.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting, its value and what is allowed: a zero
    /// `queue_capacity`, a `max_workers` of zero or above [`MAX_WORKERS`],
    /// `min_workers > max_workers`, a `scale_up_threshold`
    /// outside `0.0..=1.0`, a zero `idle_timeout`, `queue_timeout` or `run_timeout`, an empty
    /// `name`; or no tokio
    /// runtime, when none was given and `build` is not called from within one.
    ///
    /// ```
    /// let err = spillway::Pool::builder().queue_capacity(0).build().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid queue_capacity = 0: must be at least 1");
    ///
    /// // No runtime here:
    /// let err = spillway::Pool::builder().build().unwrap_err();
    /// assert_eq!(err.setting(), "runtime");
    /// ```
    pub fn build(self) -> Result<Pool, BuildError> {
        let (config, runtime) = self.prepare()?;
        Ok(Pool::start(config, runtime))
    }

    /// Checks every setting and finds the runtime: what `build` does before it starts a pool.
    pub(crate) fn prepare(self) -> Result<(Config, Handle), BuildError> {
        let config = self.validate()?;
        let runtime = match self.runtime {
            Some(handle) => handle,
            None => Handle::try_current().map_err(|_| BuildError::no_runtime())?,
        };
        // Workers keep idle timers; a runtime built without `enable_time` would make each of them
        // panic on its first poll, leaving admitted jobs to hang. tokio offers no query for it,
        // so probe (creating a timer there panics at once, and that panic is caught here).
        let has_timers = {
            let _entered = runtime.enter();
            std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
        };
        if !has_timers {
            return Err(BuildError::no_timers());
        }
        Ok((config, runtime))
    }

    fn validate(&self) -> Result<Config, BuildError> {
        if self.name.is_empty() {
            return Err(BuildError::invalid("name", "\"\"", "must not be empty"));
        }
        let limit = self.validate_limit()?;
        let fixed = limit == Limit::fixed();
        let queue_capacity = self.queue_capacity.unwrap_or(if fixed {
            FIXED_QUEUE_CAPACITY
        } else {
            DEFAULT_QUEUE_CAPACITY
        });
        if queue_capacity == 0 {
            return Err(BuildError::invalid(
                "queue_capacity",
                0,
                "must be at least 1",
            ));
        }
        if queue_capacity > MAX_CAPACITY {
            return Err(BuildError::invalid(
                "queue_capacity",
                queue_capacity,
                format!("must be at most {MAX_CAPACITY}"),
            ));
        }
        let max_workers = self.max_workers.unwrap_or_else(|| {
            if fixed {
                std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
            } else {
                DEFAULT_MAX_WORKERS
            }
        });
        if !(1..=MAX_WORKERS).contains(&max_workers) {
            return Err(BuildError::invalid(
                "max_workers",
                max_workers,
                format!("must be from 1 to {MAX_WORKERS}"),
            ));
        }
        if self.min_workers > max_workers {
            return Err(BuildError::invalid(
                "min_workers",
                self.min_workers,
                format!("must be at most max_workers ({max_workers})"),
            ));
        }
        if !(0.0..=1.0).contains(&self.scale_up_threshold) {
            return Err(BuildError::invalid(
                "scale_up_threshold",
                self.scale_up_threshold,
                "must be a number from 0.0 to 1.0",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(BuildError::invalid(
                "idle_timeout",
                "0s",
                "must be greater than zero",
            ));
        }
        if self.queue_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BuildError::invalid(
                "queue_timeout",
                "0s",
                "must be greater than zero (leave it unset for no limit)",
            ));
        }
        if self.run_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BuildError::invalid(
                "run_timeout",
                "0s",
                "must be greater than zero (leave it unset for no limit)",
            ));
        }
        Ok(Config {
            name: self.name.clone(),
            limit,
            queue_capacity,
            queue_timeout: self.queue_timeout,
            run_timeout: self.run_timeout,
            policy: Policy {
                min_workers: self.min_workers,
                max_workers,
                scale_up_threshold: self.scale_up_threshold,
                scale_up_cooldown: self.scale_up_cooldown,
                idle_timeout: self.idle_timeout,
            },
        })
    }
}

impl Builder {
    /// The limit with the queue target applied, its parameters checked.
    fn validate_limit(&self) -> Result<Limit, BuildError> {
        let limit = match self.queue_target {
            None => self.limit.clone(),
            Some(target) if target.is_zero() => {
                return Err(BuildError::invalid(
                    "queue_target",
                    "0s",
                    "must be greater than zero",
                ));
            }
            Some(target) => self.limit.with_queue_target(target).ok_or_else(|| {
                BuildError::invalid(
                    "queue_target",
                    format!("{target:?}"),
                    format!(
                        "applies to the adaptive limit only (this pool's is {})",
                        self.limit.name()
                    ),
                )
            })?,
        };
        limit.validate().map_err(
            |InvalidLimit {
                 setting,
                 value,
                 allowed,
             }| BuildError::invalid(setting, value, allowed),
        )?;
        Ok(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(b: Builder) -> String {
        b.validate().unwrap_err().to_string()
    }

    #[test]
    fn every_bad_setting_is_named() {
        let b = Builder::new;
        assert_eq!(
            err(b().max_workers(0)),
            "invalid max_workers = 0: must be from 1 to 100000"
        );
        assert_eq!(
            err(b().max_workers(usize::MAX)),
            format!(
                "invalid max_workers = {}: must be from 1 to 100000",
                usize::MAX
            )
        );
        assert_eq!(
            err(b().min_workers(3).max_workers(2)),
            "invalid min_workers = 3: must be at most max_workers (2)"
        );
        assert_eq!(
            err(b().scale_up_threshold(1.5)),
            "invalid scale_up_threshold = 1.5: must be a number from 0.0 to 1.0"
        );
        assert_eq!(
            err(b().scale_up_threshold(f64::NAN)),
            "invalid scale_up_threshold = NaN: must be a number from 0.0 to 1.0"
        );
        assert_eq!(
            err(b().idle_timeout(Duration::ZERO)),
            "invalid idle_timeout = 0s: must be greater than zero"
        );
        assert!(err(b().queue_timeout(Duration::ZERO)).starts_with("invalid queue_timeout = 0s"));
        assert_eq!(
            err(b().run_timeout(Duration::ZERO)),
            "invalid run_timeout = 0s: must be greater than zero (leave it unset for no limit)"
        );
        assert_eq!(err(b().name("")), "invalid name = \"\": must not be empty");
        assert!(err(b().queue_capacity(usize::MAX)).starts_with("invalid queue_capacity"));
        assert_eq!(
            err(b().queue_target(Duration::ZERO)),
            "invalid queue_target = 0s: must be greater than zero"
        );
        assert_eq!(
            err(b()
                .limit(Limit::vegas())
                .queue_target(Duration::from_millis(3))),
            "invalid queue_target = 3ms: applies to the adaptive limit only (this pool's is vegas)"
        );
        assert!(
            err(b().limit(Limit::vegas().smoothing(7.0))).starts_with("invalid vegas.smoothing")
        );
    }

    #[test]
    fn defaults_are_valid() {
        let config = Builder::new().validate().unwrap();
        assert_eq!(config.queue_capacity, 10_000);
        assert_eq!(config.policy.max_workers, 10_000);
        assert_eq!(config.limit, Limit::default());
        let fixed = Builder::new().limit(Limit::fixed()).validate().unwrap();
        assert_eq!(fixed.queue_capacity, 1000);
        assert!(fixed.policy.max_workers <= MAX_WORKERS);
        assert_eq!(config.policy.min_workers, 1);
        assert!(config.policy.max_workers >= 1);
        assert_eq!(config.queue_timeout, None);
        assert_eq!(config.run_timeout, None);
    }
}
