//! [`BlockingPool`]: the OS-thread lane for CPU-heavy closures. It is a [`Pool`] whose workers
//! hand their jobs to a thread each (`lane.rs`): admission, accounting, metrics and shutdown are
//! the pool's own, not copies.

mod builder;
mod lane;
mod wait;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinSet;

pub use self::builder::BlockingBuilder;
use self::lane::{Blocking, Lane};
use crate::config::Config;
use crate::error::{SubmitError, SubmitTimeoutError, TrySubmitError};
use crate::job::JobHandle;
use crate::metrics::Snapshot;
use crate::pool::{Pool, ShutdownReport};
use crate::priority::JobOptions;
use crate::state::Shared;
use crate::worker;

/// A bounded pool of OS threads for CPU-heavy closures, with the admission, handles and metrics
/// of a [`Pool`].
///
/// `tokio::task::spawn_blocking` queues without bound and starts up to 512 threads; `rayon::spawn`
/// queues without bound and gives no handle. A `BlockingPool` runs `threads` dedicated threads
/// (default: one per core) behind a queue of `queue_capacity` jobs, and sheds what does not fit:
/// [`try_submit`](Self::try_submit) hands the closure back. A job is a `FnOnce() -> T` closure;
/// its [`JobHandle`] is awaited from async code or [`wait`](JobHandle::wait)ed from sync code.
///
/// A job that panics ends as [`JobError::Panicked`](crate::JobError::Panicked) and its thread
/// keeps serving. A job whose handle is dropped or aborted while it is queued never runs.
/// **A running job cannot be interrupted**: cancelling it only drops its result, and a shutdown
/// whose deadline passes leaves its thread *detached* (it finishes the closure alone, and exits),
/// counted in [`ShutdownReport::detached`], never joined.
///
/// The threads get their jobs from tasks on a tokio runtime (one per thread, mostly waiting), so
/// `build` needs one, as [`Pool`] does; the closures themselves never run on it.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::BlockingPool;
///
/// let pool = BlockingPool::builder().threads(2).queue_capacity(100).build().unwrap();
/// let handle = pool.try_submit(|| (1..=10u64).product::<u64>()).unwrap();
/// assert_eq!(handle.await, Ok(3_628_800));
///
/// let report = pool.shutdown(std::time::Duration::from_secs(1)).await;
/// assert_eq!((report.abandoned, report.detached), (0, 0));
/// # }
/// ```
#[derive(Clone)]
pub struct BlockingPool {
    pool: Pool,
    detached: Arc<AtomicU64>,
}

impl BlockingPool {
    /// A [`BlockingBuilder`] with the defaults.
    pub fn builder() -> BlockingBuilder {
        BlockingBuilder::new()
    }

    fn start(config: Config, runtime: Handle, detached: Arc<AtomicU64>) -> BlockingPool {
        let counter = detached.clone();
        let start_worker = move |tasks: &mut JoinSet<()>, shared: Arc<Shared>, runtime: &Handle| {
            let name = format!("{}-blocking", shared.config().name);
            match Lane::spawn(name, counter.clone()) {
                Ok(lane) => tasks.spawn_on(lane.scope(worker::run(shared)), runtime),
                Err(error) => {
                    // Dropped unpolled, the worker closes the pool: no job waits for a thread
                    // that never came.
                    tracing::error!(%error, "spillway: cannot start a BlockingPool thread");
                    tasks.spawn_on(async move { drop(worker::run(shared)) }, runtime)
                }
            };
        };
        BlockingPool {
            pool: Pool::start_with(config, runtime, Box::new(start_worker)),
            detached,
        }
    }

    /// Admits `job` if there is room, without ever waiting; a refusal hands the closure back and
    /// allocates nothing. As [`Pool::try_submit`].
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], holding the closure.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::BlockingPool::builder().threads(1).queue_capacity(1).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let running = pool.try_submit(move || rx.recv()).unwrap();
    /// while pool.metrics().busy == 0 { tokio::task::yield_now().await; }
    /// let queued = pool.try_submit(|| ()).unwrap();
    /// let refused = pool.try_submit(|| "shed").unwrap_err();
    /// assert!(refused.is_full());
    /// assert_eq!(refused.into_inner()(), "shed");
    /// tx.send(()).unwrap();
    /// assert!(running.await.is_ok() && queued.await.is_ok());
    /// # }
    /// ```
    pub fn try_submit<F, T>(&self, job: F) -> Result<JobHandle<T>, TrySubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.try_submit_with(JobOptions::new(), job)
    }

    /// Admits `job` with a [`Priority`](crate::Priority) and a deadline, if there is room. As
    /// [`Pool::try_submit_with`].
    ///
    /// # Errors
    ///
    /// As [`Pool::try_submit_with`], holding the closure.
    pub fn try_submit_with<F, T>(
        &self,
        opts: impl Into<JobOptions>,
        job: F,
    ) -> Result<JobHandle<T>, TrySubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.pool
            .try_submit_with(opts, Blocking::new(job))
            .map_err(|refused| match refused {
                TrySubmitError::Full(job) => TrySubmitError::Full(job.into_inner()),
                TrySubmitError::Closed(job) => TrySubmitError::Closed(job.into_inner()),
                TrySubmitError::Expired(job) => TrySubmitError::Expired(job.into_inner()),
            })
    }

    /// Admits `job`, waiting for room while the queue is full. As [`Pool::submit`].
    ///
    /// # Errors
    ///
    /// [`SubmitError`], holding the closure, if the pool is or becomes closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropped before it returns, the job was not admitted.
    pub async fn submit<F, T>(&self, job: F) -> Result<JobHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.pool
            .submit(Blocking::new(job))
            .await
            .map_err(|refused| SubmitError(refused.into_inner().into_inner()))
    }

    /// Admits `job`, waiting at most `timeout` for room. As [`Pool::submit_timeout`].
    ///
    /// # Errors
    ///
    /// [`SubmitTimeoutError::Timeout`] (counted as shed) or [`SubmitTimeoutError::Closed`],
    /// holding the closure.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`submit`](Self::submit).
    pub async fn submit_timeout<F, T>(
        &self,
        job: F,
        timeout: Duration,
    ) -> Result<JobHandle<T>, SubmitTimeoutError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.pool
            .submit_timeout(Blocking::new(job), timeout)
            .await
            .map_err(|refused| match refused {
                SubmitTimeoutError::Timeout(job) => SubmitTimeoutError::Timeout(job.into_inner()),
                SubmitTimeoutError::Closed(job) => SubmitTimeoutError::Closed(job.into_inner()),
            })
    }

    /// Stops admission; queued and running jobs still finish, then the threads exit.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Whether [`close`](Self::close) or [`shutdown`](Self::shutdown) was called.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Stops admission, lets the threads run what is queued until `timeout` has passed, then
    /// ends every job still queued or running as abandoned and reports the counts, as
    /// [`Pool::shutdown`]. A thread still running a closure at the deadline cannot be stopped:
    /// it is detached (left to finish alone, then exit), counted in
    /// [`ShutdownReport::detached`], and never waited for.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`Pool::shutdown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use spillway::{BlockingPool, JobError};
    ///
    /// let pool = BlockingPool::builder().threads(1).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let stuck = pool.submit(move || rx.recv()).await.unwrap();
    /// let report = pool.shutdown(Duration::from_millis(50)).await;
    /// assert_eq!((report.abandoned, report.detached), (1, 1));
    /// assert_eq!(stuck.await, Err(JobError::Abandoned));
    /// # drop(tx);
    /// # }
    /// ```
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let before = self.detached.load(Ordering::Relaxed);
        let mut report = self.pool.shutdown(timeout).await;
        report.detached = self.detached.load(Ordering::Relaxed) - before;
        report
    }

    /// Current gauges, counters and latency percentiles, as [`Pool::metrics`]: `workers` are the
    /// threads, `busy` those running a job.
    pub fn metrics(&self) -> Snapshot {
        self.pool.metrics()
    }

    /// Registers this pool's metrics with a `prometheus-client` registry, labelled
    /// `pool="<name>"`, as [`Pool::register_metrics`].
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.pool.register_metrics(registry);
    }

    /// The pool that admits, counts and stops this one's jobs.
    #[cfg(feature = "prometheus")]
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool's name, as given to [`BlockingBuilder::name`].
    pub fn name(&self) -> &str {
        self.pool.name()
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("pool", &self.pool)
            .field("detached", &self.detached.load(Ordering::Relaxed))
            .finish()
    }
}
