//! [`Builder`]: every setting, validated once in [`Builder::build`].

use std::time::Duration;

use tokio::runtime::Handle;

use crate::config::Config;
use crate::error::BuildError;
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

/// Configures and builds a [`Pool`]. Start from [`Pool::builder`].
///
/// | setting | default | allowed |
/// |---|---|---|
/// | [`min_workers`](Self::min_workers) | 1 | `0..=max_workers` |
/// | [`max_workers`](Self::max_workers) | available parallelism | `1..=`[`MAX_WORKERS`] |
/// | [`queue_capacity`](Self::queue_capacity) | 1000 | `1..=usize::MAX / 4` |
/// | [`scale_up_threshold`](Self::scale_up_threshold) | 0.7 | `0.0..=1.0` |
/// | [`scale_up_cooldown`](Self::scale_up_cooldown) | zero | any |
/// | [`idle_timeout`](Self::idle_timeout) | 30 s | more than zero |
/// | [`queue_timeout`](Self::queue_timeout) | none | more than zero |
/// | [`name`](Self::name) | `"default"` | not empty |
/// | [`runtime`](Self::runtime) | the current one | a tokio runtime handle |
///
/// Nothing is checked until [`build`](Self::build), which reports the first invalid setting by
/// name; no setter panics.
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
    queue_capacity: usize,
    scale_up_threshold: f64,
    scale_up_cooldown: Duration,
    idle_timeout: Duration,
    queue_timeout: Option<Duration>,
    runtime: Option<Handle>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: "default".to_owned(),
            min_workers: 1,
            max_workers: None,
            queue_capacity: 1000,
            scale_up_threshold: 0.7,
            scale_up_cooldown: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
            queue_timeout: None,
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

    /// Most jobs running at once. Default: the machine's available parallelism. At most
    /// [`MAX_WORKERS`].
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Most jobs waiting for a worker. A submission beyond it is refused (`try_submit`) or waits
    /// (`submit`). Default 1000.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
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
    /// outside `0.0..=1.0`, a zero `idle_timeout` or `queue_timeout`, an empty `name`; or no tokio
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
        Ok(Pool::start(config, runtime))
    }

    fn validate(&self) -> Result<Config, BuildError> {
        if self.name.is_empty() {
            return Err(BuildError::invalid("name", "\"\"", "must not be empty"));
        }
        if self.queue_capacity == 0 {
            return Err(BuildError::invalid(
                "queue_capacity",
                0,
                "must be at least 1",
            ));
        }
        if self.queue_capacity > MAX_CAPACITY {
            return Err(BuildError::invalid(
                "queue_capacity",
                self.queue_capacity,
                format!("must be at most {MAX_CAPACITY}"),
            ));
        }
        let max_workers = self.max_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
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
        Ok(Config {
            name: self.name.clone(),
            queue_capacity: self.queue_capacity,
            queue_timeout: self.queue_timeout,
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
        assert_eq!(err(b().name("")), "invalid name = \"\": must not be empty");
        assert!(err(b().queue_capacity(usize::MAX)).starts_with("invalid queue_capacity"));
    }

    #[test]
    fn defaults_are_valid() {
        let config = Builder::new().validate().unwrap();
        assert_eq!(config.queue_capacity, 1000);
        assert_eq!(config.policy.min_workers, 1);
        assert!(config.policy.max_workers >= 1);
        assert_eq!(config.queue_timeout, None);
    }
}
