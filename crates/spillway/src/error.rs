//! Small error types, one per operation.
//!
//! Every refusal gives the submitted future back (`into_inner`), and no `Debug` output prints
//! the payload, so that a shed job can be retried, answered or logged without cloning it.

use std::fmt;

/// `try_submit` could not admit the job. The job is returned untouched.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{Pool, TrySubmitError};
///
/// let pool = Pool::builder().queue_capacity(1).max_workers(1).build().unwrap();
/// pool.close();
/// match pool.try_submit(async { 1 }) {
///     Err(TrySubmitError::Closed(job)) => assert_eq!(job.await, 1), // we still own the job
///     _ => unreachable!(),
/// }
/// # }
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySubmitError<F> {
    /// The queue holds `queue_capacity` jobs already.
    Full(F),
    /// The pool was closed or shut down.
    Closed(F),
    /// The job's [deadline](crate::JobOptions::deadline) had passed already: it could not be
    /// met, so it was not queued. Only [`Pool::try_submit_with`](crate::Pool::try_submit_with)
    /// returns it.
    Expired(F),
}

impl<F> TrySubmitError<F> {
    /// Takes the job back.
    pub fn into_inner(self) -> F {
        match self {
            TrySubmitError::Full(job)
            | TrySubmitError::Closed(job)
            | TrySubmitError::Expired(job) => job,
        }
    }

    /// Whether the job's deadline had passed already.
    pub fn is_expired(&self) -> bool {
        matches!(self, TrySubmitError::Expired(_))
    }

    /// Whether the queue was full (as opposed to the pool being closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySubmitError::Full(_))
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySubmitError::Closed(_))
    }
}

impl<F> fmt::Debug for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("Full(..)"),
            TrySubmitError::Closed(_) => f.write_str("Closed(..)"),
            TrySubmitError::Expired(_) => f.write_str("Expired(..)"),
        }
    }
}

impl<F> fmt::Display for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("queue full"),
            TrySubmitError::Closed(_) => f.write_str("pool closed"),
            TrySubmitError::Expired(_) => f.write_str("deadline already passed"),
        }
    }
}

impl<F> std::error::Error for TrySubmitError<F> {}

/// `submit` could not admit the job because the pool closed. The job is returned untouched.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SubmitError<F>(pub F);

impl<F> SubmitError<F> {
    /// Takes the job back.
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubmitError(..)")
    }
}

impl<F> fmt::Display for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pool closed")
    }
}

impl<F> std::error::Error for SubmitError<F> {}

/// `submit_timeout` could not admit the job in time, or the pool closed. The job is returned.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SubmitTimeoutError<F> {
    /// The queue stayed full for the whole timeout (for
    /// [`Pool::submit_with`](crate::Pool::submit_with): until the job's deadline, or the deadline
    /// had passed already).
    Timeout(F),
    /// The pool was closed or shut down.
    Closed(F),
}

impl<F> SubmitTimeoutError<F> {
    /// Takes the job back.
    pub fn into_inner(self) -> F {
        match self {
            SubmitTimeoutError::Timeout(job) | SubmitTimeoutError::Closed(job) => job,
        }
    }

    /// Whether the wait timed out (as opposed to the pool being closed).
    pub fn is_timeout(&self) -> bool {
        matches!(self, SubmitTimeoutError::Timeout(_))
    }
}

impl<F> fmt::Debug for SubmitTimeoutError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SubmitTimeoutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<F> fmt::Display for SubmitTimeoutError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitTimeoutError::Timeout(_) => f.write_str("queue full until the timeout"),
            SubmitTimeoutError::Closed(_) => f.write_str("pool closed"),
        }
    }
}

impl<F> std::error::Error for SubmitTimeoutError<F> {}

/// [`Pool::run`](crate::Pool::run) got no value from the job: the pool closed before admitting
/// it (the job is handed back, unrun), or the job ran, or was queued, and ended without one.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{JobError, Pool, RunError};
///
/// let pool = Pool::builder().build().unwrap();
/// let err = pool.run(async { panic!("boom") }).await.unwrap_err();
/// assert!(matches!(err, RunError::Job(JobError::Panicked(_))));
///
/// pool.close();
/// match pool.run(async { 1 }).await {
///     Err(RunError::Closed(job)) => assert_eq!(job.await, 1), // we still own the job
///     _ => unreachable!(),
/// }
/// # }
/// ```
#[derive(PartialEq, Eq, Clone)]
pub enum RunError<F> {
    /// The pool was closed or shut down: the job was not admitted.
    Closed(F),
    /// The job was admitted and produced no value.
    Job(JobError),
}

impl<F> RunError<F> {
    /// The job, if it was not admitted.
    pub fn into_inner(self) -> Option<F> {
        match self {
            RunError::Closed(job) => Some(job),
            RunError::Job(_) => None,
        }
    }

    /// Whether the pool was closed before the job was admitted.
    pub fn is_closed(&self) -> bool {
        matches!(self, RunError::Closed(_))
    }
}

impl<F> fmt::Debug for RunError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Closed(_) => f.write_str("Closed(..)"),
            RunError::Job(error) => f.debug_tuple("Job").field(error).finish(),
        }
    }
}

impl<F> fmt::Display for RunError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Closed(_) => f.write_str("pool closed"),
            RunError::Job(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl<F> std::error::Error for RunError<F> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Closed(_) => None,
            RunError::Job(error) => Some(error),
        }
    }
}

/// Why an admitted job produced no value. Returned by awaiting a [`JobHandle`](crate::JobHandle).
///
/// Each admitted job ends in exactly one outcome, counted once in [`Snapshot`](crate::Snapshot):
/// a value (`completed`) or one of these, and the count is the one its handle reports: a handle
/// aborted before the job ended returns `Cancelled` at once, and the job is counted `cancelled`
/// even if it then completes, times out or is abandoned by a shutdown before it sees the abort.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked; the pool caught it and its worker kept serving. Holds the panic message.
    Panicked(String),
    /// The handle was dropped or aborted before the job finished.
    Cancelled,
    /// The job waited in the queue longer than the pool's `queue_timeout`, or past its
    /// [deadline](crate::JobOptions::deadline), and was not run.
    Expired,
    /// The queue was full and a job of higher [priority](crate::Priority) took this job's place;
    /// it was not run.
    Displaced,
    /// Shutdown's deadline passed before the job could finish, so it was dropped.
    Abandoned,
    /// The job was still running when the pool's
    /// [`run_timeout`](crate::Builder::run_timeout) passed, and was dropped at its next `.await`
    /// (its worker is free again).
    TimedOut,
}

impl JobError {
    /// The panic message, if the job panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JobError::Panicked(message) => Some(message),
            _ => None,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Panicked(message) => write!(f, "job panicked: {message}"),
            JobError::Cancelled => f.write_str("job cancelled"),
            JobError::Expired => f.write_str("job expired in the queue"),
            JobError::Displaced => f.write_str("job displaced by a job of higher priority"),
            JobError::Abandoned => f.write_str("job abandoned at shutdown"),
            JobError::TimedOut => f.write_str("job ran past the run timeout"),
        }
    }
}

impl std::error::Error for JobError {}

/// A setting given to [`Builder`](crate::Builder) is invalid, or no runtime is available.
///
/// The message names the setting, the value given and what is allowed:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = spillway::Pool::builder().min_workers(8).max_workers(2).build().unwrap_err();
/// assert_eq!(err.setting(), "min_workers");
/// assert_eq!(
///     err.to_string(),
///     "invalid min_workers = 8: must be at most max_workers (2)"
/// );
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    kind: BuildErrorKind,
}

/// What went wrong, privately: each kind renders its own message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BuildErrorKind {
    /// A setting's value is out of range.
    Invalid {
        setting: &'static str,
        value: String,
        allowed: String,
    },
    /// `build` was called outside a tokio runtime and none was given.
    NoRuntime,
    /// The runtime was built without its time driver.
    NoTimers,
}

impl BuildError {
    pub(crate) fn invalid(
        setting: &'static str,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        BuildError {
            kind: BuildErrorKind::Invalid {
                setting,
                value: value.to_string(),
                allowed: allowed.into(),
            },
        }
    }

    pub(crate) fn no_runtime() -> Self {
        BuildError {
            kind: BuildErrorKind::NoRuntime,
        }
    }

    pub(crate) fn no_timers() -> Self {
        BuildError {
            kind: BuildErrorKind::NoTimers,
        }
    }

    /// The setting at fault, as named on [`Builder`](crate::Builder) (`"runtime"` when no tokio
    /// runtime was available).
    pub fn setting(&self) -> &'static str {
        match &self.kind {
            BuildErrorKind::Invalid { setting, .. } => setting,
            BuildErrorKind::NoRuntime | BuildErrorKind::NoTimers => "runtime",
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BuildErrorKind::Invalid {
                setting,
                value,
                allowed,
            } => write!(f, "invalid {setting} = {value}: {allowed}"),
            BuildErrorKind::NoRuntime => f.write_str(
                "no tokio runtime: call build() from inside a tokio runtime, \
                 or pass one with Builder::runtime",
            ),
            BuildErrorKind::NoTimers => f.write_str(
                "tokio runtime without timers: the runtime needs its time driver: \
                 build it with enable_time() or enable_all()",
            ),
        }
    }
}

impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::BuildError;

    #[test]
    fn build_errors_name_their_setting() {
        let invalid = BuildError::invalid("max_workers", 0, "must be at least 1");
        assert_eq!(invalid.setting(), "max_workers");
        assert_eq!(
            invalid.to_string(),
            "invalid max_workers = 0: must be at least 1"
        );
        let no_runtime = BuildError::no_runtime();
        assert_eq!(no_runtime.setting(), "runtime");
        assert_eq!(
            no_runtime.to_string(),
            "no tokio runtime: call build() from inside a tokio runtime, or pass one with \
             Builder::runtime"
        );
        let no_timers = BuildError::no_timers();
        assert_eq!(no_timers.setting(), "runtime");
        assert_eq!(
            no_timers.to_string(),
            "tokio runtime without timers: the runtime needs its time driver: build it with \
             enable_time() or enable_all()"
        );
    }
}
