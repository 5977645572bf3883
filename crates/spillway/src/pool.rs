//! The [`Pool`] handle and the state its workers share.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crossbeam_utils::CachePadded;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::builder::{Builder, Config};
use crate::error::{JobError, SubmitError, SubmitTimeoutError, TrySubmitError};
use crate::job::{self, BoxJob, JobHandle};
use crate::metrics::{Latency, Metrics, Snapshot};
use crate::queue::{Queue, Refused};
use crate::scaler::{self, Decision, Observation};
use crate::sync::lock_std;
use crate::worker;

/// Everything the pool handles and its workers share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) queue: Queue<BoxJob>,
    pub(crate) metrics: Metrics,
    /// Worker tasks alive.
    pub(crate) workers: CachePadded<AtomicUsize>,
    /// Workers running a job.
    pub(crate) busy: CachePadded<AtomicUsize>,
    /// Wakes idle workers: a job was queued, or nothing more can arrive.
    pub(crate) work: Notify,
    /// Workers parked on `work`, or about to park. A submitter that sees none skips the
    /// notification: a worker counts itself here *before* its last look at the queue, and a
    /// submitter reads this *after* its push (the items mutex orders the push with the worker's
    /// pop; the counter and the state word are `SeqCst`), so either the worker sees the job or
    /// the submitter sees the worker.
    pub(crate) parked: CachePadded<AtomicUsize>,
    /// Wakes submitters waiting for room: a slot was freed, or the pool closed.
    room: Notify,
    waiting_submitters: AtomicUsize,
    /// Notified whenever a worker exits.
    pub(crate) exited: Notify,
    tasks: Mutex<JoinSet<()>>,
    /// A shutdown is stopping the workers: start no more.
    stopping: AtomicBool,
    runtime: Handle,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last growth, plus one; zero for never.
    last_growth: AtomicU64,
}

impl Shared {
    /// Takes the next job and marks its worker busy. The job counts as queued until it counts as
    /// busy, never as neither.
    pub(crate) fn next_job(&self) -> Option<BoxJob> {
        let job = self.queue.pop()?;
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.queue.release();
        if self.queue.is_drained() {
            // The last job after a close: idle workers may exit now.
            self.work.notify_waiters();
        }
        if self.waiting_submitters.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
        Some(job)
    }

    pub(crate) fn close(&self) {
        self.queue.close();
        self.work.notify_waiters();
        self.room.notify_waiters();
    }

    /// Starts workers if the policy asks for them.
    fn maybe_grow(self: &Arc<Self>) {
        let policy = &self.config.policy;
        let since_last_growth = if policy.scale_up_cooldown.is_zero() {
            None
        } else {
            match self.last_growth.load(Ordering::Relaxed) {
                0 => None,
                at => Some(
                    self.epoch
                        .elapsed()
                        .saturating_sub(Duration::from_nanos(at - 1)),
                ),
            }
        };
        let observation = Observation {
            workers: self.workers.load(Ordering::SeqCst),
            busy: self.busy.load(Ordering::SeqCst),
            queued: self.queue.len(),
            since_last_growth,
        };
        if let Decision::Grow(n) = scaler::decide(observation, policy) {
            self.grow(n);
        }
    }

    /// Starts up to `n` workers, never more than `max_workers` in all.
    pub(crate) fn grow(self: &Arc<Self>, n: usize) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let max = self.config.policy.max_workers;
        let Ok(before) = self
            .workers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < max).then(|| w.saturating_add(n).min(max))
            })
        else {
            return;
        };
        let started = before.saturating_add(n).min(max) - before;
        if !self.config.policy.scale_up_cooldown.is_zero() {
            let at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.last_growth.store(at + 1, Ordering::Relaxed);
        }
        let mut tasks = lock_std(&self.tasks);
        if self.stopping.load(Ordering::SeqCst) {
            // A shutdown started abandoning between the claim and here: give the claim back.
            drop(tasks);
            self.workers.fetch_sub(started, Ordering::SeqCst);
            self.exited.notify_waiters();
            return;
        }
        while tasks.try_join_next().is_some() {} // reap retired workers
        for _ in 0..started {
            tasks.spawn_on(worker::run(self.clone()), &self.runtime);
        }
    }

    /// Counts a retiring worker back in, if that stays within `max_workers` and no shutdown
    /// is abandoning work.
    pub(crate) fn reclaim(&self) -> bool {
        let max = self.config.policy.max_workers;
        !self.stopping.load(Ordering::SeqCst)
            && self
                .workers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                    (w < max).then(|| w + 1)
                })
                .is_ok()
    }

    /// Retires one worker if more than `min_workers` are alive.
    pub(crate) fn try_retire(&self) -> bool {
        let min = self.config.policy.min_workers;
        self.workers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w > min).then(|| w - 1)
            })
            .is_ok()
    }

    /// Waits until no worker is alive, or the deadline. With `restart`, a queue that still holds
    /// jobs with no worker left to run them gets one (possible only with `min_workers = 0`).
    async fn wait_for_workers(self: &Arc<Self>, deadline: Option<Instant>, restart: bool) -> bool {
        loop {
            let exited = self.exited.notified();
            let mut exited = pin!(exited);
            exited.as_mut().enable();
            if self.workers.load(Ordering::SeqCst) == 0 {
                if !restart || self.queue.is_drained() || self.stopping.load(Ordering::SeqCst) {
                    return true;
                }
                // Start one and wait for it like any other (no busy loop if it dies at once,
                // for instance because its runtime is gone).
                self.grow(1);
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, exited).await.is_err() {
                        return false;
                    }
                }
                None => exited.await,
            }
        }
    }

    /// Ends every job still queued as abandoned. Only called once no worker is left.
    async fn abandon_queued(&self) {
        loop {
            while let Some(mut job) = self.queue.pop() {
                job.as_mut().fail(JobError::Abandoned);
                self.metrics.abandoned.inc();
                self.queue.release();
            }
            if self.queue.is_drained() {
                return;
            }
            // A submission reserved its slot before the close and is pushing right now.
            tokio::task::yield_now().await;
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        // Read in the order a job moves (admitted, queued, busy, ended), each step recorded
        // before the previous one is undone, so a moving job is seen twice, never missed.
        let m = &self.metrics;
        let submitted = m.submitted.get();
        let queued = self.queue.len();
        let busy = self.busy.load(Ordering::SeqCst);
        let (completed, panicked, cancelled, expired, abandoned) = (
            m.completed.get(),
            m.panicked.get(),
            m.cancelled.get(),
            m.expired.get(),
            m.abandoned.get(),
        );
        let timings = self.metrics.timings();
        Snapshot {
            name: self.config.name.clone(),
            workers: self.workers.load(Ordering::SeqCst),
            busy,
            queued,
            queue_capacity: self.queue.capacity(),
            max_workers: self.config.policy.max_workers,
            submitted,
            completed,
            panicked,
            cancelled,
            expired,
            abandoned,
            shed_full: m.shed_full.get(),
            shed_closed: m.shed_closed.get(),
            queue_wait: Latency::from_histogram(&timings.queue_wait),
            run_time: Latency::from_histogram(&timings.run),
            total: Latency::from_histogram(&timings.total),
        }
    }
}

/// Counts a submitter waiting for room while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

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
}

impl Pool {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(config: Config, runtime: Handle) -> Pool {
        let min_workers = config.policy.min_workers;
        let shared = Arc::new(Shared {
            queue: Queue::new(config.queue_capacity),
            config,
            metrics: Metrics::new(),
            workers: CachePadded::new(AtomicUsize::new(0)),
            busy: CachePadded::new(AtomicUsize::new(0)),
            work: Notify::new(),
            parked: CachePadded::new(AtomicUsize::new(0)),
            room: Notify::new(),
            waiting_submitters: AtomicUsize::new(0),
            exited: Notify::new(),
            tasks: Mutex::new(JoinSet::new()),
            stopping: AtomicBool::new(false),
            runtime,
            epoch: Instant::now(),
            last_growth: AtomicU64::new(0),
        });
        if min_workers > 0 {
            shared.grow(min_workers);
        }
        Pool {
            owner: Arc::new(Owner { shared }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
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
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], holding the job.
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
        let metrics = &self.shared().metrics;
        self.admit(job).map_err(|(refused, job)| match refused {
            Refused::Full => {
                metrics.shed_full.inc();
                TrySubmitError::Full(job)
            }
            Refused::Closed => {
                metrics.shed_closed.inc();
                TrySubmitError::Closed(job)
            }
        })
    }

    fn admit<F>(&self, job: F) -> Result<JobHandle<F::Output>, (Refused, F)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shared = self.shared();
        let permit = match shared.queue.try_reserve() {
            Ok(permit) => permit,
            Err(refused) => return Err((refused, job)),
        };
        shared.metrics.submitted.inc();
        let (job, handle) = job::new(job, Instant::now());
        permit.push(job);
        if shared.parked.load(Ordering::SeqCst) > 0 {
            shared.work.notify_one();
        }
        shared.maybe_grow();
        Ok(handle)
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

    async fn submit_until<F>(
        &self,
        mut job: F,
        deadline: Option<Instant>,
    ) -> Result<JobHandle<F::Output>, SubmitTimeoutError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shared = self.shared();
        loop {
            // Register interest before looking, so that a slot freed in between wakes us.
            let room = shared.room.notified();
            let mut room = pin!(room);
            room.as_mut().enable();
            let _waiting = Waiting::new(&shared.waiting_submitters);
            match self.admit(job) {
                Ok(handle) => return Ok(handle),
                Err((Refused::Closed, returned)) => {
                    shared.metrics.shed_closed.inc();
                    return Err(SubmitTimeoutError::Closed(returned));
                }
                Err((Refused::Full, returned)) => job = returned,
            }
            match deadline {
                None => room.await,
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        shared.metrics.shed_full.inc();
                        return Err(SubmitTimeoutError::Timeout(job));
                    }
                }
            }
        }
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
        self.shared().queue.is_closed()
    }

    /// Stops admission, lets workers run what is queued until `timeout` has passed, then drops
    /// every job still queued or running (their handles resolve to
    /// [`JobError::Abandoned`]) and reports the counts.
    ///
    /// When it returns, no worker task of this pool is alive, and every job ever admitted has
    /// ended and been counted. Safe to call more than once and from several clones, at once or
    /// in turn; each report counts what ended during its own wait, so concurrent calls may
    /// report the same jobs. `ShutdownReport::timed_out` means the workers had not all finished
    /// by the deadline.
    ///
    /// Do not call it from inside one of this pool's own jobs: that job's worker is among those
    /// it waits for, so it can only time out and abort itself.
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
        let shared = self.shared();
        let started = Instant::now();
        let deadline = started.checked_add(timeout); // overflow: no deadline
        let (ended_before, abandoned_before) = shared.metrics.ended();
        shared.close();
        let timed_out = !shared.wait_for_workers(deadline, true).await;
        {
            // From here on no worker may start; those alive are stopped (a no-op when the queue
            // drained in time). Set under the task lock, so `grow` either sees it or is aborted.
            let mut tasks = lock_std(&shared.tasks);
            shared.stopping.store(true, Ordering::SeqCst);
            tasks.abort_all();
        }
        shared.wait_for_workers(None, false).await;
        shared.abandon_queued().await;
        let mut tasks = std::mem::take(&mut *lock_std(&shared.tasks));
        while tasks.join_next().await.is_some() {}
        let (ended_after, abandoned_after) = shared.metrics.ended();
        let abandoned = abandoned_after - abandoned_before;
        ShutdownReport {
            drained: ended_after - ended_before - abandoned,
            abandoned,
            timed_out,
            elapsed: started.elapsed(),
        }
    }

    /// Current gauges, counters and latency percentiles.
    pub fn metrics(&self) -> Snapshot {
        self.shared().snapshot()
    }

    /// The pool's name, as given to [`Builder::name`].
    pub fn name(&self) -> &str {
        &self.shared().config.name
    }

    /// Registers this pool's metrics with a `prometheus-client` registry, labelled
    /// `pool="<name>"`. They are read at scrape time; the registry does not keep the pool alive.
    ///
    /// Series: `spillway_workers`, `spillway_workers_busy`, `spillway_workers_max`,
    /// `spillway_queue_depth`, `spillway_queue_capacity` (gauges);
    /// `spillway_jobs_submitted_total`, `spillway_jobs_ended_total{outcome}`,
    /// `spillway_jobs_shed_total{reason}` (counters); `spillway_job_queue_wait_seconds`,
    /// `spillway_job_run_seconds`, `spillway_job_total_seconds` (histograms).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    ///
    /// let pool = spillway::Pool::builder().name("api").build().unwrap();
    /// pool.submit(async {}).await.unwrap().await.unwrap();
    ///
    /// let mut registry = Registry::default();
    /// pool.register_metrics(&mut registry);
    /// let mut text = String::new();
    /// encode(&mut text, &registry).unwrap();
    /// assert!(text.contains(r#"spillway_jobs_ended_total{pool="api",outcome="completed"} 1"#));
    /// # }
    /// ```
    #[cfg(feature = "prometheus")]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(crate::metrics::prometheus::PoolCollector {
            shared: Arc::downgrade(self.shared()),
        }));
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("Pool")
            .field("name", &shared.config.name)
            .field("workers", &shared.workers.load(Ordering::Relaxed))
            .field("queued", &shared.queue.len())
            .field("closed", &shared.queue.is_closed())
            .finish()
    }
}
