//! The [`Pool`] handle: what a user holds. The state it shares with the workers is in `state/`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::builder::Builder;
use crate::config::Config;
use crate::error::{RunError, SubmitError, SubmitTimeoutError, TrySubmitError};
use crate::job::JobHandle;
use crate::metrics::Snapshot;
use crate::priority::JobOptions;
use crate::run::Run;
use crate::state::{Refusal, Shared, StartWorker};
use crate::worker;

/// Closes the pool when the last [`Pool`] clone is dropped. Workers hold [`Shared`], not this.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// A bounded, adaptive pool of worker tasks on a tokio runtime.
///
/// Jobs are futures. A job is *admitted* into a queue of at most `queue_capacity` jobs, or refused
/// right away and handed back ([`try_submit`](Self::try_submit)), or its submitter waits for room
/// ([`submit`](Self::submit), [`submit_timeout`](Self::submit_timeout)). Between `min_workers` and
/// `max_workers` worker tasks run admitted jobs in order; the pool adds workers as soon as queued
/// jobs find none idle and retires them after `idle_timeout`. Every admitted job ends in exactly
/// one counted outcome (see [`Snapshot`]).
///
/// `Pool` is a cheap handle: clone it freely. When the last clone is dropped the pool closes, and
/// its workers finish the queued jobs and exit. [`shutdown`](Self::shutdown) does the same with a
/// deadline and a report.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{Pool, TrySubmitError};
///
/// let pool = Pool::builder().max_workers(4).queue_capacity(100).build().unwrap();
///
/// // Fail fast: the caller decides what to do with a shed job.
/// match pool.try_submit(async { 1 + 1 }) {
///     Ok(handle) => assert_eq!(handle.await, Ok(2)),
///     Err(TrySubmitError::Full(_job)) => { /* answer 503, retry later, ... */ }
///     Err(TrySubmitError::Closed(_job)) => { /* shutting down */ }
///     Err(TrySubmitError::Expired(_job)) => { /* only with a deadline: try_submit_with */ }
/// }
///
/// let report = pool.shutdown(std::time::Duration::from_secs(1)).await;
/// assert_eq!(report.abandoned, 0);
/// # }
/// ```
#[derive(Clone)]
pub struct Pool {
    owner: Arc<Owner>,
}

/// What [`Pool::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs that ended (any outcome but abandoned) while the shutdown waited for them.
    pub drained: u64,
    /// Jobs still queued or running at the deadline, dropped unfinished.
    pub abandoned: u64,
    /// Whether the deadline passed before the queue drained.
    pub timed_out: bool,
    /// How long the shutdown took.
    pub elapsed: Duration,
    /// Threads of a [`BlockingPool`](crate::BlockingPool) still running a job at the deadline:
    /// left to finish it alone (their jobs count as abandoned), never joined. Always 0 for a
    /// [`Pool`].
    pub detached: u64,
}

impl Pool {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(config: Config, runtime: Handle) -> Pool {
        // The state starts workers through this, so that it need not know the worker loop.
        fn start_worker(tasks: &mut JoinSet<()>, shared: Arc<Shared>, runtime: &Handle) {
            tasks.spawn_on(worker::run(shared), runtime);
        }
        Pool::start_with(config, runtime, Box::new(start_worker))
    }

    /// A pool whose workers are started by `start_worker` (see [`StartWorker`]).
    pub(crate) fn start_with(config: Config, runtime: Handle, start_worker: StartWorker) -> Pool {
        let shared = Shared::start(config, runtime, start_worker);
        Pool {
            owner: Arc::new(Owner { shared }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// Admits `job` if there is room, without ever waiting.
    ///
    /// It refuses only when the queue holds `queue_capacity` jobs at that instant, or the pool is
    /// closed; never while there is room. A refusal hands the job back untouched and allocates
    /// nothing: it costs a few atomic operations (see the benchmarks).
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], holding the job (never
    /// `Expired`: the job has no deadline).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().max_workers(1).queue_capacity(1).build().unwrap();
    /// let running = pool.try_submit(std::future::pending::<()>()).unwrap();
    /// tokio::task::yield_now().await; // let the worker take it
    /// let queued = pool.try_submit(async {}).unwrap();
    /// let refused = pool.try_submit(async { "shed" }).unwrap_err();
    /// assert!(refused.is_full());
    /// assert_eq!(refused.into_inner().await, "shed");
    /// # drop((running, queued));
    /// # }
    /// ```
    pub fn try_submit<F>(&self, job: F) -> Result<JobHandle<F::Output>, TrySubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.try_submit_with(JobOptions::new(), job)
    }

    /// Admits `job` with a [`Priority`](crate::Priority) and a deadline, if there is room,
    /// without ever waiting. `try_submit(job)` is `try_submit_with(Priority::Normal, job)`.
    ///
    /// Higher priorities are served first and shed last: when the queue is full, a job displaces
    /// the newest queued job of the lowest priority below its own (that job's handle resolves to
    /// [`JobError::Displaced`](crate::JobError::Displaced)); it never displaces a job of its own
    /// or a higher priority, and is refused as `Full` when there is none to displace. A job still
    /// queued at its deadline ends as [`JobError::Expired`](crate::JobError::Expired), unrun.
    /// The design is in the [crate docs](crate), under "Priorities and deadlines".
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`], [`TrySubmitError::Closed`], or [`TrySubmitError::Expired`] when
    /// the deadline has passed already (the job is not queued); each holds the job.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::{Duration, Instant};
    /// use spillway::{JobError, JobOptions, Pool, Priority};
    ///
    /// let pool = Pool::builder().max_workers(1).queue_capacity(1).build().unwrap();
    /// let running = pool.try_submit(std::future::pending::<()>()).unwrap();
    /// tokio::task::yield_now().await; // let the worker take it
    ///
    /// let low = pool.try_submit_with(Priority::Low, async {}).unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(1);
    /// let opts = JobOptions::new().priority(Priority::Critical).deadline(deadline);
    /// let critical = pool.try_submit_with(opts, async { "served" }).unwrap();
    /// assert_eq!(low.await, Err(JobError::Displaced));
    ///
    /// let late = JobOptions::new().deadline(Instant::now() - Duration::from_millis(1));
    /// assert!(pool.try_submit_with(late, async { "" }).unwrap_err().is_expired());
    /// # drop((running, critical));
    /// # }
    /// ```
    pub fn try_submit_with<F>(
        &self,
        opts: impl Into<JobOptions>,
        job: F,
    ) -> Result<JobHandle<F::Output>, TrySubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared()
            .try_admit(job, opts.into())
            .map_err(try_submit_error)
    }

    /// Admits `job`, waiting for room while the queue is full (backpressure).
    ///
    /// # Errors
    ///
    /// [`SubmitError`], holding the job, if the pool is or becomes closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if this future is dropped before it returns, the job was not admitted (and is
    /// dropped with it). Once it returns `Ok`, the job is admitted and its [`JobHandle`] decides
    /// its fate.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let handle = pool.submit(async { "hello" }).await.unwrap();
    /// assert_eq!(handle.await.unwrap(), "hello");
    /// # }
    /// ```
    pub async fn submit<F>(&self, job: F) -> Result<JobHandle<F::Output>, SubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.submit_until(job, None)
            .await
            .map_err(|e| SubmitError(e.into_inner()))
    }

    /// Admits `job` with a [`Priority`](crate::Priority) and a deadline, waiting for room while
    /// the queue is full, but never past the job's deadline (a job admitted later could only
    /// expire). Priorities work as for [`try_submit_with`](Self::try_submit_with): a job may
    /// displace a queued job of lower priority instead of waiting.
    ///
    /// # Errors
    ///
    /// [`SubmitTimeoutError::Timeout`] if the deadline passed before room came, or had passed
    /// already (then counted as `shed_expired`, else as `shed_full`);
    /// [`SubmitTimeoutError::Closed`] if the pool closed. Both hold the job. Without a deadline
    /// only `Closed` is possible, as for [`submit`](Self::submit).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::{Duration, Instant};
    /// use spillway::{JobOptions, Pool, Priority};
    ///
    /// let pool = Pool::builder().max_workers(1).queue_capacity(1).build().unwrap();
    /// let handle = pool.submit_with(Priority::High, async { 7 }).await.unwrap();
    /// assert_eq!(handle.await, Ok(7));
    ///
    /// let _busy = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// tokio::task::yield_now().await;
    /// let _queued = pool.submit(async {}).await.unwrap();
    /// let soon = JobOptions::new().deadline(Instant::now() + Duration::from_millis(10));
    /// let err = pool.submit_with(soon, async {}).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// # }
    /// ```
    pub async fn submit_with<F>(
        &self,
        opts: impl Into<JobOptions>,
        job: F,
    ) -> Result<JobHandle<F::Output>, SubmitTimeoutError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let opts = opts.into();
        let wait_until = opts.get_deadline().map(Instant::from_std);
        self.admit_with(job, opts, wait_until).await
    }

    /// Admits `job`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`SubmitTimeoutError::Timeout`] if the queue stayed full for `timeout` (counted as a
    /// `shed_full`), [`SubmitTimeoutError::Closed`] if the pool closed; both hold the job.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let pool = spillway::Pool::builder().max_workers(1).queue_capacity(1).build().unwrap();
    /// let _busy = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// tokio::task::yield_now().await;
    /// let _queued = pool.submit(async {}).await.unwrap();
    /// let err = pool.submit_timeout(async {}, Duration::from_millis(10)).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// # }
    /// ```
    pub async fn submit_timeout<F>(
        &self,
        job: F,
        timeout: Duration,
    ) -> Result<JobHandle<F::Output>, SubmitTimeoutError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // A timeout too large to add is no timeout.
        self.submit_until(job, Instant::now().checked_add(timeout))
            .await
    }

    /// Admits `job`, runs it and returns its value: the way to run a job whose result the
    /// caller awaits anyway.
    ///
    /// When the pool is open, nothing is queued and the concurrency limit has room, the job
    /// takes a worker slot and runs right here, on the caller's task: no worker is woken and
    /// nothing is handed between threads, so it costs about what awaiting the job directly
    /// does. It is a running job for everything else: it counts busy and within the limit, its
    /// run time and outcome are recorded as a worker's job's are (its queue wait is zero), a
    /// panic is caught and returned, the run timeout stops it, and a shutdown waits for it (and
    /// past its deadline counts it abandoned: it is not polled again). It never overtakes
    /// queued work: when anything is queued, or the limit is in use, the job is queued like
    /// [`submit`](Self::submit)'s and awaited. When its slot is freed a parked worker is woken
    /// for what is queued.
    ///
    /// Admission waits for room like [`submit`](Self::submit)'s (backpressure). To fail fast
    /// instead, use [`try_run`](Self::try_run) (or [`try_run_with`](Self::try_run_with), with a
    /// priority and a deadline): it admits or refuses at once, and its [`Run`] future runs the
    /// job the same way.
    ///
    /// # Errors
    ///
    /// [`RunError::Closed`], holding the job, if the pool is or becomes closed before admitting
    /// it; [`RunError::Job`] with the [`JobError`](crate::JobError) of a job that produced no
    /// value.
    ///
    /// # Cancel safety
    ///
    /// Dropping this future before it returns cancels the job: not yet admitted, it is dropped
    /// unrun; running or queued, it ends as cancelled, as when a [`JobHandle`] is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use spillway::{JobError, Pool, RunError};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// assert_eq!(pool.run(async { 2 + 2 }).await.unwrap(), 4);
    /// let panicked = pool.run(async { panic!("boom") }).await.unwrap_err();
    /// assert!(matches!(panicked, RunError::Job(JobError::Panicked(_))));
    /// let m = pool.metrics();
    /// assert_eq!((m.completed, m.panicked, m.busy), (1, 1, 0));
    /// # }
    /// ```
    pub async fn run<F>(&self, job: F) -> Result<F::Output, RunError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let admitted = self
            .shared()
            .admit_run_until(job, JobOptions::new(), None)
            .await
            .map_err(|(_, job)| RunError::Closed(job))?;
        Run::new(admitted).await.map_err(RunError::Job)
    }

    /// Admits `job` if there is room, without ever waiting, to be run by the caller: the
    /// fail-fast [`run`](Self::run). The returned [`Run`] runs the job on the awaiting task if
    /// it took a worker slot ([`Run::is_inline`]), or awaits it queued.
    ///
    /// Refused only when [`try_submit`](Self::try_submit) would refuse it: a refusal hands the
    /// job back untouched and allocates nothing.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], holding the job.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().max_workers(1).queue_capacity(1).build().unwrap();
    /// let running = pool.try_run(std::future::pending::<()>()).unwrap();
    /// assert!(running.is_inline(), "the only slot was free");
    /// let queued = pool.try_run(async { "later" }).unwrap();
    /// assert!(!queued.is_inline(), "the limit is in use: queued");
    /// assert!(pool.try_run(async {}).unwrap_err().is_full());
    /// drop(running); // cancels it: its slot goes to the queued job
    /// assert_eq!(queued.await, Ok("later"));
    /// # }
    /// ```
    pub fn try_run<F>(&self, job: F) -> Result<Run<F>, TrySubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.try_run_with(JobOptions::new(), job)
    }

    /// [`try_run`](Self::try_run) with a [`Priority`](crate::Priority) and a deadline, as for
    /// [`try_submit_with`](Self::try_submit_with). A job that runs inline never waits in the
    /// queue, so its deadline only matters if it is queued.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`], [`TrySubmitError::Closed`], or [`TrySubmitError::Expired`] when
    /// the deadline has passed already; each holds the job.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use spillway::{Pool, Priority};
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// let run = pool.try_run_with(Priority::High, async { 1 }).unwrap();
    /// assert_eq!(run.await, Ok(1));
    /// assert_eq!(pool.metrics().by_priority[Priority::High].completed, 1);
    /// # }
    /// ```
    pub fn try_run_with<F>(
        &self,
        opts: impl Into<JobOptions>,
        job: F,
    ) -> Result<Run<F>, TrySubmitError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared()
            .try_admit_run(job, opts.into())
            .map(Run::new)
            .map_err(try_submit_error)
    }

    /// Admits `job` with `opts` to be run by the caller, waiting for room until `wait_until`
    /// (forever if `None`).
    #[cfg(feature = "tower")]
    pub(crate) async fn admit_run_with<F>(
        &self,
        job: F,
        opts: JobOptions,
        wait_until: Option<Instant>,
    ) -> Result<Run<F>, SubmitTimeoutError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared()
            .admit_run_until(job, opts, wait_until)
            .await
            .map(Run::new)
            .map_err(submit_timeout_error)
    }

    /// Admits `job`, waiting for room until `deadline` (forever if `None`).
    async fn submit_until<F>(
        &self,
        job: F,
        deadline: Option<Instant>,
    ) -> Result<JobHandle<F::Output>, SubmitTimeoutError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.admit_with(job, JobOptions::new(), deadline).await
    }

    /// Admits `job` with `opts`, waiting for room until `wait_until` (forever if `None`).
    pub(crate) async fn admit_with<F>(
        &self,
        job: F,
        opts: JobOptions,
        wait_until: Option<Instant>,
    ) -> Result<JobHandle<F::Output>, SubmitTimeoutError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared()
            .admit_until(job, opts, wait_until)
            .await
            .map_err(submit_timeout_error)
    }

    /// Stops admission. Queued and running jobs still finish; workers exit when the queue is
    /// empty. Idempotent.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// pool.close();
    /// assert!(pool.is_closed());
    /// assert!(pool.try_submit(async {}).unwrap_err().is_closed());
    /// # }
    /// ```
    pub fn close(&self) {
        self.shared().close();
    }

    /// Whether [`close`](Self::close) or [`shutdown`](Self::shutdown) was called.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// Stops admission, lets workers run what is queued until `timeout` has passed, then drops
    /// every job still queued or running (their handles resolve to
    /// [`JobError::Abandoned`](crate::JobError::Abandoned)) and reports the counts.
    ///
    /// When it returns, no worker task of this pool is alive, and every job ever admitted has
    /// ended and been counted. Safe to call more than once and from several clones, at once or
    /// in turn; each report counts what ended during its own wait, so concurrent calls may
    /// report the same jobs. `ShutdownReport::timed_out` means the workers had not all finished
    /// by the deadline.
    ///
    /// Do not call it from inside one of this pool's own jobs: that job's worker is among those
    /// it waits for, so it can only time out and abort itself (with `Duration::MAX`, it waits
    /// forever).
    ///
    /// If the pool's runtime has shut down, the pool is already closed and its queued jobs
    /// abandoned; `shutdown` then returns at once. It honours its deadline in every case.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping this future never strands a job. Dropped before its deadline, it
    /// leaves the pool closed, and the workers run what is queued and exit, as after
    /// [`close`](Self::close). Dropped after its deadline, the workers it stopped still exit,
    /// and the last of them abandons whatever is still queued, so every handle resolves.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let pool = spillway::Pool::builder().max_workers(2).build().unwrap();
    /// let quick = pool.submit(tokio::time::sleep(Duration::from_millis(5))).await.unwrap();
    /// let stuck = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// let report = pool.shutdown(Duration::from_millis(50)).await;
    /// assert_eq!((report.drained, report.abandoned, report.timed_out), (1, 1, true));
    /// assert!(quick.await.is_ok());
    /// assert_eq!(stuck.await, Err(spillway::JobError::Abandoned));
    /// assert_eq!(pool.metrics().workers, 0);
    /// # }
    /// ```
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let started = Instant::now();
        let deadline = started.checked_add(timeout); // overflow: no deadline
        let stopped = self.shared().shutdown(deadline).await;
        ShutdownReport {
            drained: stopped.drained,
            abandoned: stopped.abandoned,
            timed_out: stopped.timed_out,
            elapsed: started.elapsed(),
            detached: 0,
        }
    }

    /// Current gauges, counters and latency percentiles.
    pub fn metrics(&self) -> Snapshot {
        self.shared().snapshot()
    }

    /// The pool's name, as given to [`Builder::name`].
    pub fn name(&self) -> &str {
        &self.shared().config().name
    }
}

/// What a job refused without waiting comes back as.
fn try_submit_error<F>((refused, job): (Refusal, F)) -> TrySubmitError<F> {
    match refused {
        Refusal::Full => TrySubmitError::Full(job),
        Refusal::Closed => TrySubmitError::Closed(job),
        Refusal::Late => TrySubmitError::Expired(job),
    }
}

/// What a job refused after waiting for room comes back as.
fn submit_timeout_error<F>((refused, job): (Refusal, F)) -> SubmitTimeoutError<F> {
    match refused {
        Refusal::Full | Refusal::Late => SubmitTimeoutError::Timeout(job),
        Refusal::Closed => SubmitTimeoutError::Closed(job),
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("Pool")
            .field("name", &shared.config().name)
            .field("workers", &shared.workers())
            .field("queued", &shared.queued())
            .field("closed", &shared.is_closed())
            .finish()
    }
}
