//! The public choice of a concurrency limit ([`Limit`]) and each algorithm's settings.

use std::fmt;
use std::time::Duration;

/// How the pool chooses how many jobs run at once.
///
/// The pool's `max_workers` and `queue_capacity` stay hard ceilings whatever the choice; the
/// limit moves between `min_workers` (or 1, if that is 0) and `max_workers`; the adaptive limit
/// also keeps at least one job per thread of the pool's runtime (within `max_workers`), so its
/// `cold_limit` and `initial_limit` are raised to that when lower. Choose it with
/// [`Builder::limit`](crate::Builder::limit); the pool reports it in
/// [`Snapshot::limit`](crate::Snapshot::limit) and logs each move with its reason at `tracing`'s
/// debug level.
///
/// * [`Limit::adaptive`] (the default): finds the concurrency past which more jobs in flight no
///   longer bring more throughput, follows it as it moves, and keeps the queue short.
/// * [`Limit::fixed`]: always `max_workers` (spillway's behaviour before limits existed).
/// * [`Limit::gradient2`], [`Limit::vegas`], [`Limit::aimd`]: ports of Netflix
///   concurrency-limits' algorithms with their published defaults, as baselines.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use spillway::Limit;
///
/// let default = Limit::default();
/// assert_eq!(default.name(), "adaptive");
/// let vegas: Limit = Limit::vegas().max_limit(5_000).into();
/// assert_eq!(vegas.name(), "vegas");
/// assert_eq!(Limit::by_name("aimd").map(|l| l.name()), Some("aimd"));
/// let tight: Limit = Limit::adaptive().queue_target(Duration::from_millis(2)).into();
/// assert_eq!(tight.name(), "adaptive");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Limit(Kind);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Fixed,
    Adaptive(Adaptive),
    Gradient2(Gradient2),
    Vegas(Vegas),
    Aimd(Aimd),
}

impl Limit {
    /// The adaptive limit with its defaults (see [`Adaptive`]).
    pub fn adaptive() -> Adaptive {
        Adaptive::default()
    }

    /// No adaptation: the limit is `max_workers`.
    pub fn fixed() -> Limit {
        Limit(Kind::Fixed)
    }

    /// A port of Netflix's `Gradient2Limit` with its published defaults (see [`Gradient2`]).
    pub fn gradient2() -> Gradient2 {
        Gradient2::default()
    }

    /// A port of Netflix's `VegasLimit` with its published defaults (see [`Vegas`]).
    pub fn vegas() -> Vegas {
        Vegas::default()
    }

    /// A port of Netflix's `AIMDLimit` with its published defaults (see [`Aimd`]).
    pub fn aimd() -> Aimd {
        Aimd::default()
    }

    /// The limit of that name with its defaults: `adaptive`, `fixed`, `gradient2`, `vegas` or
    /// `aimd`.
    pub fn by_name(name: &str) -> Option<Limit> {
        match name {
            "adaptive" => Some(Limit::adaptive().into()),
            "fixed" => Some(Limit::fixed()),
            "gradient2" => Some(Limit::gradient2().into()),
            "vegas" => Some(Limit::vegas().into()),
            "aimd" => Some(Limit::aimd().into()),
            _ => None,
        }
    }

    /// The algorithm's name, as accepted by [`Limit::by_name`].
    pub fn name(&self) -> &'static str {
        match self.0 {
            Kind::Fixed => "fixed",
            Kind::Adaptive(_) => "adaptive",
            Kind::Gradient2(_) => "gradient2",
            Kind::Vegas(_) => "vegas",
            Kind::Aimd(_) => "aimd",
        }
    }

    /// The adaptive limit with its queue target set to `target`; `None` for the other kinds,
    /// which have no target.
    pub(crate) fn with_queue_target(&self, target: Duration) -> Option<Limit> {
        match &self.0 {
            Kind::Adaptive(c) => Some(c.clone().queue_target(target).into()),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.0
    }

    /// Checks every parameter; the error names the first invalid one.
    pub(crate) fn validate(&self) -> Result<(), InvalidLimit> {
        match &self.0 {
            Kind::Fixed => Ok(()),
            Kind::Adaptive(c) => c.validate(),
            Kind::Gradient2(c) => c.validate(),
            Kind::Vegas(c) => c.validate(),
            Kind::Aimd(c) => c.validate(),
        }
    }
}

impl Default for Limit {
    /// [`Limit::adaptive`].
    fn default() -> Limit {
        Limit::adaptive().into()
    }
}

/// A limit parameter out of its range. The builder turns it into a `BuildError` for `setting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidLimit {
    /// `<algorithm>.<parameter>`, e.g. `"vegas.smoothing"`.
    pub(crate) setting: &'static str,
    pub(crate) value: String,
    pub(crate) allowed: &'static str,
}

impl fmt::Display for InvalidLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} = {}: {}",
            self.setting, self.value, self.allowed
        )
    }
}

fn check(
    ok: bool,
    setting: &'static str,
    value: impl fmt::Debug,
    allowed: &'static str,
) -> Result<(), InvalidLimit> {
    if ok {
        Ok(())
    } else {
        Err(InvalidLimit {
            setting,
            value: format!("{value:?}"),
            allowed,
        })
    }
}

fn is_fraction(value: f64) -> bool {
    value > 0.0 && value <= 1.0
}

macro_rules! into_limit {
    ($($config:ident),*) => {$(
        impl From<$config> for Limit {
            fn from(config: $config) -> Limit {
                Limit(Kind::$config(config))
            }
        }
    )*};
}

into_limit!(Adaptive, Gradient2, Vegas, Aimd);

/// Settings of the adaptive limit, spillway's default. Start from [`Limit::adaptive`].
///
/// | parameter | default | allowed |
/// |---|---|---|
/// | [`cold_limit`](Self::cold_limit) | 750 | `1..` |
/// | [`initial_limit`](Self::initial_limit) | 1,000 | `1..` |
/// | [`tolerance`](Self::tolerance) | 0.25 | `0.05..=4.0` |
/// | [`queue_target`](Self::queue_target) | 5 ms | more than zero |
///
/// A cold pool (nothing learned yet) starts at `cold_limit` (capped by `initial_limit` and
/// `max_workers`; a `cold_limit` at or above `initial_limit` turns the cold start off: the pool
/// starts at `initial_limit`): a step overload from cold runs at most that many jobs (and holds their
/// memory) before the first verdict. Once the jobs' uncongested run time is learned with the
/// limit having room (two steady windows that did not bind), the limit rises to
/// `initial_limit` (doubling per such window while the jobs run that fast), as it does after a
/// whole second of jobs too few to measure, none at the limit (a low rate): a pool that has
/// run below its limit keeps `initial_limit` as its headroom, so a burst of that many jobs
/// after idleness starts at once. While the cold limit is in use with nothing shed, it rises to
/// `initial_limit` at once if the jobs run no slower than before (demand simply above it, e.g.
/// a closed loop of clients, which never overflows the cold queue), and no verdict is taken
/// for up to 16 windows if they run slower (a cold start's own first-touch stall is not an
/// overload). A limit that the law
/// later learned relaxes no lower than `initial_limit` while demand is low (it is never raised
/// to it). Until the pool has seen its jobs' uncongested run time at most `initial_limit` jobs
/// wait beyond the limit (within `queue_capacity`): a cold burst of `cold_limit +
/// initial_limit` jobs is admitted whole.
/// Past the concurrency where the jobs'
/// run time starts to follow the number in flight, the limit settles where the run time is
/// `1 + tolerance` times its uncongested value. While the pool is saturated, and while a queue
/// stands although the limit has room (every job of a 100 ms interval waited longer than
/// `queue_target`, none of them for the limit: the workers cannot keep up), jobs that would
/// wait in the queue longer than `queue_target` are shed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use spillway::Limit;
///
/// let limit: Limit = Limit::adaptive()
///     .cold_limit(100)
///     .initial_limit(200)
///     .queue_target(Duration::from_millis(10))
///     .into();
/// assert_eq!(limit.name(), "adaptive");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Adaptive {
    pub(crate) cold_limit: usize,
    pub(crate) initial_limit: usize,
    pub(crate) tolerance: f64,
    pub(crate) queue_target: Duration,
}

impl Default for Adaptive {
    fn default() -> Adaptive {
        Adaptive {
            cold_limit: 750,
            initial_limit: 1_000,
            tolerance: 0.25,
            queue_target: Duration::from_millis(5),
        }
    }
}

impl Adaptive {
    /// The limit a cold pool starts with, before anything is learned (capped by
    /// `initial_limit` and `max_workers`): what a step overload from cold runs at once, and the
    /// memory its jobs hold, before the first verdict. Default 750.
    pub fn cold_limit(mut self, limit: usize) -> Adaptive {
        self.cold_limit = limit;
        self
    }

    /// The headroom of a pool that has run below its limit (capped by `max_workers`): the cold
    /// limit rises to it once the limit has room (see the table above), and a learned limit
    /// relaxes no lower while demand is low. Also the most jobs that may wait beyond the limit
    /// until the uncongested run time is learned (capped by `queue_capacity`). Default 1,000.
    pub fn initial_limit(mut self, limit: usize) -> Adaptive {
        self.initial_limit = limit;
        self
    }

    /// How much slower than uncongested a job may run, as a fraction, before the limit counts as
    /// past the knee. Default 0.25.
    pub fn tolerance(mut self, tolerance: f64) -> Adaptive {
        self.tolerance = tolerance;
        self
    }

    /// The longest a job should wait in the queue while the pool is saturated. Default 5 ms
    /// (CoDel's target).
    pub fn queue_target(mut self, target: Duration) -> Adaptive {
        self.queue_target = target;
        self
    }

    fn validate(&self) -> Result<(), InvalidLimit> {
        let tol = self.tolerance;
        check(
            self.cold_limit >= 1,
            "adaptive.cold_limit",
            self.cold_limit,
            "at least 1",
        )?;
        check(
            self.initial_limit >= 1,
            "adaptive.initial_limit",
            self.initial_limit,
            "at least 1",
        )?;
        check(
            (0.05..=4.0).contains(&tol),
            "adaptive.tolerance",
            tol,
            "between 0.05 and 4.0",
        )?;
        check(
            !self.queue_target.is_zero(),
            "adaptive.queue_target",
            self.queue_target,
            "more than zero",
        )
    }
}

/// Settings of the Gradient2 port. Start from [`Limit::gradient2`].
///
/// A port of Netflix concurrency-limits' `Gradient2Limit` with its published defaults:
/// initial limit 20, min 20, max 200, smoothing 0.2, queue size 4, long window 600 samples,
/// RTT tolerance 1.5. The pool's `min_workers..=max_workers` narrows that range further; raise
/// [`max_limit`](Self::max_limit) to let it use more of the pool.
///
/// # Examples
///
/// ```
/// use spillway::Limit;
///
/// let limit: Limit = Limit::gradient2().max_limit(5_000).smoothing(0.5).into();
/// assert_eq!(limit.name(), "gradient2");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient2 {
    pub(crate) initial_limit: usize,
    pub(crate) min_limit: usize,
    pub(crate) max_limit: usize,
    pub(crate) smoothing: f64,
    pub(crate) queue_size: usize,
    pub(crate) long_window: u32,
    pub(crate) tolerance: f64,
}

impl Default for Gradient2 {
    fn default() -> Gradient2 {
        Gradient2 {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            smoothing: 0.2,
            queue_size: 4,
            long_window: 600,
            tolerance: 1.5,
        }
    }
}

impl Gradient2 {
    /// The starting limit. Default 20.
    pub fn initial_limit(mut self, limit: usize) -> Gradient2 {
        self.initial_limit = limit;
        self
    }

    /// The lowest limit. Default 20.
    pub fn min_limit(mut self, limit: usize) -> Gradient2 {
        self.min_limit = limit;
        self
    }

    /// The highest limit (Netflix's `maxConcurrency`). Default 200.
    pub fn max_limit(mut self, limit: usize) -> Gradient2 {
        self.max_limit = limit;
        self
    }

    /// Weight of each new estimate, in `(0, 1]`. Default 0.2.
    pub fn smoothing(mut self, smoothing: f64) -> Gradient2 {
        self.smoothing = smoothing;
        self
    }

    /// How much the limit may grow per sample while latency is steady. Default 4.
    pub fn queue_size(mut self, size: usize) -> Gradient2 {
        self.queue_size = size;
        self
    }

    /// Samples in the long-term average run time. Default 600.
    pub fn long_window(mut self, samples: u32) -> Gradient2 {
        self.long_window = samples;
        self
    }

    /// How much slower than the long-term average a sample may be before the limit shrinks,
    /// at least 1.0. Default 1.5.
    pub fn tolerance(mut self, tolerance: f64) -> Gradient2 {
        self.tolerance = tolerance;
        self
    }

    fn validate(&self) -> Result<(), InvalidLimit> {
        check(
            self.initial_limit >= 1,
            "gradient2.initial_limit",
            self.initial_limit,
            "at least 1",
        )?;
        check(
            self.min_limit <= self.max_limit,
            "gradient2.min_limit",
            self.min_limit,
            "at most gradient2.max_limit",
        )?;
        check(
            self.max_limit >= 1,
            "gradient2.max_limit",
            self.max_limit,
            "at least 1",
        )?;
        check(
            is_fraction(self.smoothing),
            "gradient2.smoothing",
            self.smoothing,
            "more than 0 and at most 1",
        )?;
        check(
            self.long_window >= 1,
            "gradient2.long_window",
            self.long_window,
            "at least 1",
        )?;
        check(
            self.tolerance >= 1.0 && self.tolerance.is_finite(),
            "gradient2.tolerance",
            self.tolerance,
            "at least 1.0 and finite",
        )
    }
}

/// Settings of the Vegas port. Start from [`Limit::vegas`].
///
/// A port of Netflix concurrency-limits' `VegasLimit` with its published defaults: initial
/// limit 20, max 1000, smoothing 1.0, probe multiplier 30 (alpha `3 log10(limit)`, beta
/// `6 log10(limit)`, threshold, increase and decrease `log10(limit)`, as in Java). The pool's
/// `min_workers..=max_workers` narrows that range further.
///
/// # Examples
///
/// ```
/// use spillway::Limit;
///
/// let limit: Limit = Limit::vegas().initial_limit(100).into();
/// assert_eq!(limit.name(), "vegas");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Vegas {
    pub(crate) initial_limit: usize,
    pub(crate) max_limit: usize,
    pub(crate) smoothing: f64,
    pub(crate) probe_multiplier: u32,
}

impl Default for Vegas {
    fn default() -> Vegas {
        Vegas {
            initial_limit: 20,
            max_limit: 1_000,
            smoothing: 1.0,
            probe_multiplier: 30,
        }
    }
}

impl Vegas {
    /// The starting limit. Default 20.
    pub fn initial_limit(mut self, limit: usize) -> Vegas {
        self.initial_limit = limit;
        self
    }

    /// The highest limit (Netflix's `maxConcurrency`). Default 1000.
    pub fn max_limit(mut self, limit: usize) -> Vegas {
        self.max_limit = limit;
        self
    }

    /// Weight of each new estimate, in `(0, 1]`. Default 1.0.
    pub fn smoothing(mut self, smoothing: f64) -> Vegas {
        self.smoothing = smoothing;
        self
    }

    /// The no-load time is re-taken every `jitter * multiplier * limit` samples. Default 30.
    pub fn probe_multiplier(mut self, multiplier: u32) -> Vegas {
        self.probe_multiplier = multiplier;
        self
    }

    fn validate(&self) -> Result<(), InvalidLimit> {
        check(
            self.initial_limit >= 1,
            "vegas.initial_limit",
            self.initial_limit,
            "at least 1",
        )?;
        check(
            self.max_limit >= 1,
            "vegas.max_limit",
            self.max_limit,
            "at least 1",
        )?;
        check(
            is_fraction(self.smoothing),
            "vegas.smoothing",
            self.smoothing,
            "more than 0 and at most 1",
        )?;
        check(
            self.probe_multiplier >= 1,
            "vegas.probe_multiplier",
            self.probe_multiplier,
            "at least 1",
        )
    }
}

/// Settings of the AIMD port. Start from [`Limit::aimd`].
///
/// A port of Netflix concurrency-limits' `AIMDLimit` with its published defaults: initial
/// limit 20, min 20, max 200, backoff ratio 0.9, timeout 5 s. The pool's
/// `min_workers..=max_workers` narrows that range further.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use spillway::Limit;
///
/// let limit: Limit = Limit::aimd().timeout(Duration::from_millis(100)).into();
/// assert_eq!(limit.name(), "aimd");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Aimd {
    pub(crate) initial_limit: usize,
    pub(crate) min_limit: usize,
    pub(crate) max_limit: usize,
    pub(crate) backoff_ratio: f64,
    pub(crate) timeout: Duration,
}

impl Default for Aimd {
    fn default() -> Aimd {
        Aimd {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Aimd {
    /// The starting limit. Default 20.
    pub fn initial_limit(mut self, limit: usize) -> Aimd {
        self.initial_limit = limit;
        self
    }

    /// The lowest limit. Default 20.
    pub fn min_limit(mut self, limit: usize) -> Aimd {
        self.min_limit = limit;
        self
    }

    /// The highest limit. Default 200.
    pub fn max_limit(mut self, limit: usize) -> Aimd {
        self.max_limit = limit;
        self
    }

    /// The factor applied on a drop or timeout, in `[0.5, 1)`. Default 0.9.
    pub fn backoff_ratio(mut self, ratio: f64) -> Aimd {
        self.backoff_ratio = ratio;
        self
    }

    /// A job running longer than this counts as a drop. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Aimd {
        self.timeout = timeout;
        self
    }

    fn validate(&self) -> Result<(), InvalidLimit> {
        check(
            self.initial_limit >= 1,
            "aimd.initial_limit",
            self.initial_limit,
            "at least 1",
        )?;
        check(
            self.min_limit <= self.max_limit,
            "aimd.min_limit",
            self.min_limit,
            "at most aimd.max_limit",
        )?;
        check(
            self.max_limit >= 1,
            "aimd.max_limit",
            self.max_limit,
            "at least 1",
        )?;
        check(
            (0.5..1.0).contains(&self.backoff_ratio),
            "aimd.backoff_ratio",
            self.backoff_ratio,
            "at least 0.5 and less than 1",
        )?;
        check(
            !self.timeout.is_zero(),
            "aimd.timeout",
            self.timeout,
            "more than zero",
        )
    }
}

pub(crate) type Gradient2Config = Gradient2;
pub(crate) type VegasConfig = Vegas;
pub(crate) type AimdConfig = Aimd;
pub(crate) type AdaptiveConfig = Adaptive;

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(limit: impl Into<Limit>) -> &'static str {
        limit.into().validate().expect_err("invalid").setting
    }

    #[test]
    fn defaults_are_valid_and_named() {
        for name in ["adaptive", "fixed", "gradient2", "vegas", "aimd"] {
            let limit = Limit::by_name(name).expect("known name");
            assert_eq!(limit.name(), name);
            assert_eq!(limit.validate(), Ok(()));
        }
        assert_eq!(Limit::by_name("bbr"), None);
        assert_eq!(Limit::default().name(), "adaptive");
    }

    #[test]
    fn each_bad_parameter_is_named() {
        assert_eq!(
            invalid(Limit::adaptive().tolerance(f64::NAN)),
            "adaptive.tolerance"
        );
        assert_eq!(
            invalid(Limit::adaptive().initial_limit(0)),
            "adaptive.initial_limit"
        );
        assert_eq!(
            invalid(Limit::adaptive().cold_limit(0)),
            "adaptive.cold_limit"
        );
        assert_eq!(
            invalid(Limit::adaptive().queue_target(Duration::ZERO)),
            "adaptive.queue_target"
        );
        assert_eq!(
            invalid(Limit::gradient2().smoothing(0.0)),
            "gradient2.smoothing"
        );
        assert_eq!(
            invalid(Limit::gradient2().tolerance(0.9)),
            "gradient2.tolerance"
        );
        assert_eq!(
            invalid(Limit::gradient2().min_limit(300)),
            "gradient2.min_limit"
        );
        assert_eq!(
            invalid(Limit::gradient2().long_window(0)),
            "gradient2.long_window"
        );
        assert_eq!(invalid(Limit::vegas().smoothing(1.5)), "vegas.smoothing");
        assert_eq!(invalid(Limit::vegas().max_limit(0)), "vegas.max_limit");
        assert_eq!(
            invalid(Limit::vegas().probe_multiplier(0)),
            "vegas.probe_multiplier"
        );
        assert_eq!(
            invalid(Limit::aimd().backoff_ratio(1.0)),
            "aimd.backoff_ratio"
        );
        assert_eq!(
            invalid(Limit::aimd().timeout(Duration::ZERO)),
            "aimd.timeout"
        );
    }

    #[test]
    fn error_message_names_the_setting_value_and_range() {
        let err = Limit::from(Limit::vegas().smoothing(2.0))
            .validate()
            .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "invalid vegas.smoothing = 2.0: more than 0 and at most 1"
        );
    }
}
