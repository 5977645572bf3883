//! [`Shared`]: the state the pool handles and the workers share, and every transition on it.
//!
//! The fields are private. Handles (`pool.rs`), workers (`worker.rs`) and the Prometheus
//! collector change the state only through the named transitions below, so each protocol is
//! argued in one place:
//!
//! * **Admission** ([`Shared::try_admit`], [`Shared::admit_until`]): one check, [`Shared::admit`],
//!   decides whether a job may be queued now (a concurrency limit adds its verdict there, and
//!   one on whether a queued job may start in [`Shared::take_next`]); a submitter that waits for
//!   room registers for the `room` wake-up *before* it looks, so a slot freed in between wakes it.
//! * **The counting protocols** on the queue and the worker counts (busy before release, parked
//!   before the last look, retire then reclaim, claim before start): in [`counts`], model-checked.
//!   This file adds the wake-ups that go with them: `work` wakes a parked worker (or all of them
//!   when nothing more can arrive), `room` a waiting submitter, `exited` a waiting shutdown.
//! * **Priorities and deadlines** (in [`Shared::admit`]): a job whose deadline has passed is
//!   refused before anything else; a job of a higher priority that finds no room displaces a
//!   queued one of lower priority (`queue.rs` argues the rules), which ends as displaced, counted
//!   once on its own priority. A queued job whose deadline passes ends as expired when a worker
//!   reaches it, never run. Every counter is kept per priority (`metrics.rs`); the totals are
//!   their sums.
//! * **Removal** ([`Unqueue::unqueue`]): a handle dropped or aborted while its job is queued
//!   takes the job out at once (or finds a worker took it first: then the job sees the
//!   cancellation at its next poll). Its slot is free for the next submission, and it is counted
//!   once, as cancelled.
//! * **A job's end** ([`Shared::job_ended`]): the one place its outcome, queue wait and run time
//!   are observed and recorded (and where a concurrency limit would learn from them). A job
//!   still running at its run deadline (`run_timeout`, `worker.rs`) ends there as timed out;
//!   one stopped by a shutdown ends in [`Shared::job_stopped`]. Either way it is counted as its
//!   handle reports it: a handle aborted first made it cancelled. Its worker still counts busy
//!   then, and passes that slot on to the next queued job ([`Shared::take_next_in_slot`], "the
//!   slot passes on" in [`counts`]) or counts out.
//! * **Inline jobs** ([`Shared::admit_run`], [`InlineSlot`]): a caller that awaits its job
//!   anyway ([`Pool::run`](crate::Pool::run)) runs it on its own task when the pool is open,
//!   nothing is queued and the limit has room: it takes a worker slot ("a freed slot goes to
//!   the queue", in [`counts`]) and is then a running job for everything else: counted busy,
//!   queue wait zero, its end observed in [`Shared::job_ended`]'s one place with the same
//!   samples for the limit. No worker is woken for it, which is the point (a cross-thread wake
//!   costs more than the job's whole bookkeeping). Its slot, once free, goes to the queue: a
//!   parked worker is woken if a job waits.
//! * **Shutdown** ([`Shared::shutdown`]): close, drain until the deadline (inline jobs
//!   included), stop starting workers and abort those left, count the inline jobs still running
//!   abandoned ("stop inline", in [`counts`]: each stops at its next poll), end what is still
//!   queued as abandoned.
//! * **No queued work without a worker** ([`Shared::abandon_if_orphaned`]): once no worker may
//!   start (a shutdown stopped them, or the runtime is gone), whoever may be the last to touch
//!   the queue abandons what it holds: the last worker to exit, a submitter after its push, the
//!   shutdown itself. So a shutdown dropped partway, or a runtime shut down under the pool,
//!   still resolves every handle. Each side writes (the worker count, or its push) before it
//!   reads the other's, as in "parked before the last look", so one of them sees the job.

mod counts;
mod limiter;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::counts::{Counts, ParkedCount};
use self::limiter::INLINE_BATCH;
use self::limiter::Limiter;
pub(crate) use self::limiter::Samples;
use crate::config::Config;
use crate::error::JobError;
use crate::job::{self, BoxJob, JobHandle, Meta, Outcome, Unqueue, drop_quietly};
use crate::limit::{Bounds, Sample};
use crate::metrics::{Latency, Metrics, PriorityCounts, Snapshot};
use crate::priority::{JobOptions, Priority};
use crate::queue::{Permit, Refused, Ticket};
use crate::scaler::{self, Decision};
use crate::sync::lock_std;

/// Starts one worker task for `shared` in `tasks`, on `runtime`. Given by whoever builds the pool,
/// so that this state does not depend on what a worker does: a [`Pool`](crate::Pool)'s workers
/// run their jobs on the runtime, a [`BlockingPool`](crate::BlockingPool)'s hand them to a
/// thread of their own (`blocking/lane.rs`). Either way the worker is a task in `tasks`, so
/// starting, stopping and accounting are the same.
pub(crate) type StartWorker = Box<dyn Fn(&mut JoinSet<()>, Arc<Shared>, &Handle) + Send + Sync>;

/// Everything the pool handles and its workers share.
pub(crate) struct Shared {
    config: Config,
    counts: Counts<BoxJob>,
    limiter: Limiter,
    /// Its shards also keep the samples of inline jobs for the limit, one batch per shard of
    /// threads, so that a caller's thread nearly always takes an uncontended lock, and one lock
    /// per job for both (see [`Shared::inline_ended`]). Unused under a fixed limit.
    metrics: Metrics<Samples<INLINE_BATCH>>,
    /// Wakes parked workers: a job was queued, or nothing more can arrive.
    work: Notify,
    /// Wakes submitters waiting for room: a slot was freed, or the pool closed.
    room: Notify,
    waiting_submitters: AtomicUsize,
    /// Notified whenever a worker exits.
    exited: Notify,
    tasks: Mutex<JoinSet<()>>,
    start_worker: StartWorker,
    runtime: Handle,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last growth, plus one; zero for never.
    last_growth: AtomicU64,
    /// Each queued job's handle holds a clone of one of these, the one of its submitter's shard
    /// of threads (as the metrics' shards): its way back to the queue. One per shard so that
    /// two submitters on two threads never count references on one cache line (a shared
    /// `Weak<Shared>` per handle cost a contended compare-and-swap per job and one more
    /// `fetch_sub` at the handle's drop).
    unqueuers: Box<[Arc<dyn Unqueue>]>,
}

/// A handle's way back to the queue, without keeping the pool's state alive.
struct Unqueuer(Weak<Shared>);

impl Unqueue for Unqueuer {
    fn unqueue(&self, ticket: Ticket) -> bool {
        self.0
            .upgrade()
            .is_some_and(|shared| shared.unqueue(ticket))
    }
}

/// Why a submission was refused: the queue's reasons, or a deadline that had passed already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    Closed,
    Late,
}

impl From<Refused> for Refusal {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Full => Refusal::Full,
            Refused::Closed => Refusal::Closed,
        }
    }
}

/// What a shutdown did, counted from its start.
pub(crate) struct Stopped {
    pub(crate) drained: u64,
    pub(crate) abandoned: u64,
    pub(crate) timed_out: bool,
}

impl Shared {
    /// Builds the state and starts `min_workers` workers.
    pub(crate) fn start(config: Config, runtime: Handle, start_worker: StartWorker) -> Arc<Self> {
        let policy = config.policy;
        let limiter = Limiter::new(
            &config.limit,
            Bounds::for_pool(
                &config.limit,
                policy.min_workers,
                policy.max_workers,
                runtime.metrics().num_workers(),
            ),
            config.queue_capacity,
        );
        let shared = Arc::new_cyclic(|me: &Weak<Shared>| Shared {
            counts: Counts::new(
                config.queue_capacity,
                policy.min_workers,
                policy.max_workers,
            ),
            limiter,
            config,
            metrics: Metrics::new(),
            work: Notify::new(),
            room: Notify::new(),
            waiting_submitters: AtomicUsize::new(0),
            exited: Notify::new(),
            tasks: Mutex::new(JoinSet::new()),
            start_worker,
            runtime,
            epoch: Instant::now(),
            last_growth: AtomicU64::new(0),
            unqueuers: (0..crate::metrics::shards())
                .map(|_| Arc::new(Unqueuer(me.clone())) as Arc<dyn Unqueue>)
                .collect(),
        });
        // Not a growth step: the cooldown starts with the first growth.
        shared.grow(policy.min_workers);
        shared
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    // ---- admission ----

    /// Admits `job` with `opts` if there is room now; counts a refusal as shed.
    pub(crate) fn try_admit<F>(
        self: &Arc<Self>,
        job: F,
        opts: JobOptions,
    ) -> Result<JobHandle<F::Output>, (Refusal, F)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.try_admit_by(job, opts, Self::admit)
    }

    /// Admits `job` with `opts`, waiting for room until `wait_until` (forever if `None`).
    /// `Refusal::Full` means the wait timed out. Counts a refusal as shed, once.
    pub(crate) async fn admit_until<F>(
        self: &Arc<Self>,
        job: F,
        opts: JobOptions,
        wait_until: Option<Instant>,
    ) -> Result<JobHandle<F::Output>, (Refusal, F)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.wait_for_room(job, opts, wait_until, Self::admit).await
    }

    /// [`admit_until`](Self::admit_until) for a job its caller will await: run by the caller if
    /// [`admit_run`](Self::admit_run) lets it, else queued.
    pub(crate) async fn admit_run_until<F>(
        self: &Arc<Self>,
        job: F,
        opts: JobOptions,
        wait_until: Option<Instant>,
    ) -> Result<Admitted<F>, (Refusal, F)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // Room now is the common case: look once before registering for a wake-up.
        match self.admit_run(job, opts) {
            Err((Refusal::Full, job)) => {
                self.wait_for_room(job, opts, wait_until, Self::admit_run)
                    .await
            }
            Err((refused, job)) => {
                self.count_shed(refused, opts.get_priority());
                Err((refused, job))
            }
            admitted => admitted,
        }
    }

    /// Tries `admit` until it admits `job` or refuses it for another reason than a full queue,
    /// waiting for room in between, until `wait_until` (forever if `None`).
    async fn wait_for_room<F, A>(
        self: &Arc<Self>,
        mut job: F,
        opts: JobOptions,
        wait_until: Option<Instant>,
        admit: impl Fn(&Arc<Self>, F, JobOptions) -> Result<A, (Refusal, F)>,
    ) -> Result<A, (Refusal, F)> {
        let priority = opts.get_priority();
        loop {
            // Register interest before looking, so that a slot freed in between wakes us.
            let room = self.room.notified();
            let mut room = pin!(room);
            room.as_mut().enable();
            let _waiting = Waiting::new(&self.waiting_submitters);
            match admit(self, job, opts) {
                Ok(handle) => return Ok(handle),
                Err((Refusal::Full, returned)) => job = returned,
                Err((refused, returned)) => {
                    self.count_shed(refused, priority);
                    return Err((refused, returned));
                }
            }
            let timed_out = match wait_until {
                None => {
                    room.await;
                    false
                }
                Some(deadline) => tokio::time::timeout_at(deadline, room).await.is_err(),
            };
            if timed_out {
                self.count_shed(Refusal::Full, priority);
                return Err((Refusal::Full, job));
            }
        }
    }

    /// The admission check: refuses a job whose deadline has passed, reserves a slot, or takes
    /// the slot of a job of lower priority from a full queue (nothing is allocated for a refused
    /// job), queues the job, wakes a parked worker if one waits, and lets the scaling policy
    /// start workers.
    fn admit<F>(
        self: &Arc<Self>,
        job: F,
        opts: JobOptions,
    ) -> Result<JobHandle<F::Output>, (Refusal, F)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let deadline = opts.get_deadline().map(Instant::from_std);
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return Err((Refusal::Late, job));
        }
        let priority = opts.get_priority();
        let permit = match self.reserve(priority) {
            Ok(permit) => permit,
            Err(Refused::Full) if priority > Priority::Low => match self.displace(priority) {
                Ok(permit) => permit,
                Err(refused) => return Err((refused.into(), job)),
            },
            Err(refused) => return Err((refused.into(), job)),
        };
        self.metrics.admitted(priority);
        let (job, mut handle) = job::new(job, meta(priority, deadline));
        let pushed = self.counts.push(permit, job, priority.index());
        if pushed.wake {
            self.work.notify_one();
        }
        self.maybe_grow();
        self.queued_at(&mut handle, pushed.ticket);
        Ok(handle)
    }

    /// Admits `job` if there is room now, for a caller that will await it; counts a refusal as
    /// shed.
    pub(crate) fn try_admit_run<F>(
        self: &Arc<Self>,
        job: F,
        opts: JobOptions,
    ) -> Result<Admitted<F>, (Refusal, F)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.try_admit_by(job, opts, Self::admit_run)
    }

    /// Admits `job` with `admit` if there is room now; counts a refusal as shed.
    fn try_admit_by<F, A>(
        self: &Arc<Self>,
        job: F,
        opts: JobOptions,
        admit: impl Fn(&Arc<Self>, F, JobOptions) -> Result<A, (Refusal, F)>,
    ) -> Result<A, (Refusal, F)> {
        let priority = opts.get_priority();
        admit(self, job, opts).inspect_err(|(refused, _)| self.count_shed(*refused, priority))
    }

    /// The admission check for a job its caller will await ("inline jobs"): while the pool is
    /// open, nothing is queued and fewer than the limit run, the job takes a worker slot and
    /// its caller runs it; otherwise it goes through [`admit`](Self::admit) and is queued.
    fn admit_run<F>(self: &Arc<Self>, job: F, opts: JobOptions) -> Result<Admitted<F>, (Refusal, F)>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.counts.is_closed() {
            return Err((Refusal::Closed, job));
        }
        let Some(in_flight) = self.counts.take_slot_within(self.limiter.limit()) else {
            return self.admit(job, opts).map(Admitted::Queued);
        };
        let deadline = opts.get_deadline().map(Instant::from_std);
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            self.free_slot();
            return Err((Refusal::Late, job));
        }
        let priority = opts.get_priority();
        self.metrics.admitted(priority);
        self.metrics.started(priority);
        if !self.counts.start_inline(priority.index()) {
            // A shutdown stopped inline jobs since the look at `closed`: admitted, and at once
            // abandoned, as a queued job would have been.
            self.metrics.stopped(priority, Outcome::Abandoned);
            self.free_slot();
            return Ok(Admitted::Abandoned(job));
        }
        let slot = InlineSlot {
            shared: self.clone(),
            priority,
            in_flight,
            ended: false,
        };
        Ok(Admitted::Inline(slot, job))
    }

    /// Gives back a worker slot taken by an inline job; wakes a parked worker if a job waits.
    fn free_slot(&self) {
        if self.counts.free_slot() {
            self.work.notify_one();
        }
    }

    /// Reserves a queue slot. Under a concurrency limit, a job beyond `limit + queue bound` in
    /// flight is refused as full first.
    #[inline]
    fn reserve(&self, priority: Priority) -> Result<Permit<'_, BoxJob>, Refused> {
        if self.limiter.bounds_queue()
            && !self
                .limiter
                .has_room(self.counts.busy(), self.counts.queued(), priority)
        {
            return Err(if self.counts.is_closed() {
                Refused::Closed
            } else {
                Refused::Full
            });
        }
        self.counts.try_reserve()
    }

    /// A full queue: takes out the newest queued job of the lowest priority below `priority`
    /// ("displacement", in `queue.rs`), ends it as displaced, and hands its slot over for the job
    /// that displaced it. Refused as full when there is no such job.
    #[inline]
    fn displace(&self, priority: Priority) -> Result<Permit<'_, BoxJob>, Refused> {
        let (displaced, permit) = self.counts.displace(priority.index())?;
        self.end_unrun(displaced, JobError::Displaced, Outcome::Displaced);
        Ok(permit)
    }

    /// Tells `handle` where its job waits, then abandons the job if no worker may take it.
    fn queued_at<T>(self: &Arc<Self>, handle: &mut JobHandle<T>, ticket: Ticket) {
        let unqueuer = &self.unqueuers[crate::metrics::shard(self.unqueuers.len())];
        handle.queued_at(unqueuer.clone(), ticket);
        // Read after the push: no worker may start and none is left to take the job.
        self.abandon_if_orphaned();
    }

    /// Ends a job that left the queue without reaching a worker, and counts it by its outcome
    /// (or as cancelled, if its handle was aborted first). Its future is user code: it is
    /// dropped outside every lock, quietly.
    fn end_unrun(&self, mut job: BoxJob, error: JobError, outcome: Outcome) {
        let outcome = job.as_mut().fail(error, outcome);
        self.metrics.count(job.priority(), outcome);
        drop_quietly(job);
    }

    #[inline]
    fn count_shed(&self, refused: Refusal, priority: Priority) {
        let lane = self.metrics.lane(priority);
        match refused {
            Refusal::Full => {
                lane.shed_full.inc();
                self.limiter.shed();
            }
            Refusal::Closed => lane.shed_closed.inc(),
            Refusal::Late => lane.shed_expired.inc(),
        }
    }

    // ---- workers: start and stop ----

    /// Starts workers if the policy asks for them.
    fn maybe_grow(self: &Arc<Self>) {
        if self.counts.workers() >= self.config.policy.max_workers {
            // The policy holds at `max_workers` whatever else it would see: spare the reads of
            // the busy count (a cache line the workers write per job) and of the clock.
            return;
        }
        let observation = self.counts.observe(self.since_last_growth());
        if let Decision::Grow(n) = scaler::decide(observation, &self.config.policy)
            && self.grow(self.within_limit(n, observation.workers)) > 0
        {
            self.record_growth();
        }
    }

    /// `n` more workers, fewer if the concurrency limit has no use for them (beyond the first
    /// `min_workers`, which always start).
    fn within_limit(&self, n: usize, workers: usize) -> usize {
        if self.limiter.is_fixed() || workers < self.config.policy.min_workers {
            return n;
        }
        n.min(self.limiter.limit().saturating_sub(workers))
    }

    /// Starts the cooldown, when one is configured.
    fn record_growth(&self) {
        if !self.config.policy.scale_up_cooldown.is_zero() {
            let at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.last_growth.store(at + 1, Ordering::Relaxed);
        }
    }

    /// Time since the last growth, when a cooldown is configured and the pool grew before.
    fn since_last_growth(&self) -> Option<Duration> {
        if self.config.policy.scale_up_cooldown.is_zero() {
            return None;
        }
        match self.last_growth.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(at - 1)),
            ),
        }
    }

    /// Starts up to `n` workers, never more than `max_workers` in all; returns how many.
    fn grow(self: &Arc<Self>, n: usize) -> usize {
        let started = self.counts.claim_workers(n);
        if started == 0 {
            return 0;
        }
        let mut tasks = lock_std(&self.tasks);
        if self.counts.is_stopping() {
            // A shutdown started abandoning between the claim and here: give the claim back.
            drop(tasks);
            self.workers_released(started);
            return 0;
        }
        while tasks.try_join_next().is_some() {} // reap retired workers
        for _ in 0..started {
            // On a runtime that is gone the task is dropped right here, unpolled: see
            // `worker_exited`. (It takes no lock of ours, so holding `tasks` is fine.)
            (self.start_worker)(&mut tasks, self.clone(), &self.runtime);
        }
        started
    }

    /// A worker task ended; `counted` if it still counted itself among the workers (it had not
    /// retired), `returned` if its loop returned rather than being dropped midway.
    ///
    /// A worker is dropped midway only by a shutdown's abort (after it stopped starting workers)
    /// or by its runtime shutting down. In the second case no worker can ever run again: the
    /// pool closes, stops starting workers, and abandons what is queued, so that every handle
    /// resolves and a shutdown does not wait for workers that cannot start.
    pub(crate) fn worker_exited(&self, counted: bool, returned: bool) {
        if !returned && !self.counts.is_stopping() {
            self.close();
            self.counts.stop_starting();
        }
        if counted {
            self.workers_released(1);
        } else {
            self.exited.notify_waiters();
        }
    }

    /// Workers no longer count (exited, or claimed and never started).
    fn workers_released(&self, n: usize) {
        self.counts.release_workers(n);
        self.abandon_if_orphaned();
        self.exited.notify_waiters();
    }

    /// Retires the calling worker, down to `min_workers`, unless a queued job needs it. Returns
    /// `true` if it no longer counts and must exit.
    pub(crate) fn retire(&self) -> bool {
        self.counts.retire()
    }

    pub(crate) fn workers(&self) -> usize {
        self.counts.workers()
    }

    // ---- workers: jobs ----

    /// Takes the next job and marks its worker busy, unless the concurrency limit is reached
    /// (the worker then parks; a rise of the limit, or an inline job's freed slot, wakes it).
    /// The job counts as queued until it counts as busy, never as neither. A fixed limit is
    /// `max_workers`: only inline jobs can fill it before the workers do.
    pub(crate) fn take_next(&self) -> Option<Taken> {
        let taken = self.counts.take_next_within(self.limiter.limit());
        self.started(taken)
    }

    /// [`take_next`](Self::take_next) for a worker whose job just ended ([`job_ended`]
    /// (Self::job_ended)) and that still counts busy: the next job takes its slot ("the slot
    /// passes on", in [`counts`]). If there is none to take, or the limit has no room for it,
    /// the worker counts out, and a submitter waiting for room under the limit is woken.
    pub(crate) fn take_next_in_slot(&self) -> Option<Taken> {
        let taken = self.counts.take_next_in_slot(self.limiter.limit());
        if taken.is_none() {
            self.wake_after_end(false);
        }
        self.started(taken)
    }

    fn started(&self, taken: Option<(BoxJob, usize)>) -> Option<Taken> {
        let (job, in_flight) = taken?;
        self.metrics.started(job.priority());
        self.left_queue();
        Some(Taken { job, in_flight })
    }

    /// Whether a job that waited `waited` is dropped when a worker takes it (the limit's CoDel
    /// rule); it then ends as expired. Only while other jobs still wait behind it: a job that
    /// leaves the queue empty was held up by the worker's wake-up, not by a standing queue, and
    /// dropping it would shed work that nothing else is waiting to use the slot for.
    pub(crate) fn drop_at_dequeue(&self, waited: Duration, priority: Priority) -> bool {
        self.counts.queued() > 0 && self.limiter.drop_at_dequeue(waited, priority)
    }

    /// A job left the queue (taken or removed): wakes whoever waits for that.
    fn left_queue(&self) {
        if self.counts.is_drained() {
            // The last job after a close: idle workers may exit now.
            self.work.notify_waiters();
        }
        if self.waiting_submitters.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
    }

    /// A worker with nothing to do: see [`Parked`].
    pub(crate) fn park(&self) -> Parked<'_> {
        Parked {
            wake: self.work.notified(),
            shared: self,
            count: None,
        }
    }

    /// Closed, and every admitted job taken: nothing can arrive any more.
    pub(crate) fn is_drained(&self) -> bool {
        self.counts.is_drained()
    }

    /// A job taken with [`take_next`](Self::take_next) ended at `ended`: counts its outcome and
    /// records its timings (`run_time` is `None` when its body did not finish). The one place
    /// where a job's queue wait and run time are observed, and where the concurrency limit
    /// learns from them (a job that expired is a dropped sample, one that timed out a dropped
    /// sample with its run time; a cancelled one says nothing). Its worker still counts busy:
    /// it must call [`take_next_in_slot`](Self::take_next_in_slot) next, which passes the slot
    /// on or counts it out (and then wakes a submitter waiting for room under the limit).
    pub(crate) fn job_ended(&self, ended: &Ended, samples: &mut Samples) {
        self.metrics
            .record(ended.priority, ended.outcome, ended.queue_wait, ended.run);
        let rose = self.keep_sample(ended, samples);
        if rose && !self.limiter.is_fixed() {
            // The workers parked at the old limit may take queued jobs now.
            self.work.notify_waiters();
        }
    }

    /// An inline job ended: counted and observed as [`job_ended`](Self::job_ended) does, its
    /// slot given to the queue, and a waiting shutdown told. Returns `false`, counting nothing,
    /// if a shutdown had stopped it and counted it abandoned ("stop inline").
    ///
    /// Its sample for the limit is kept in the calling thread's shard of the metrics, under the
    /// lock the timings take anyway (a second lock per job cost the adaptive limit a few percent
    /// of an inline round trip). So once per batch the algorithm runs, and logs its moves at
    /// debug level, under that lock: a `tracing` subscriber that read this pool's metrics from
    /// inside such an event, on the same thread, would wait for itself. The wake-ups wait until
    /// the slot is free: a submitter woken for room before that would find none, and wait again.
    fn inline_ended(&self, ended: &Ended) -> bool {
        if !self.counts.end_inline(ended.priority.index()) {
            return false;
        }
        let mut rose = false;
        self.metrics.record_with(
            ended.priority,
            ended.outcome,
            ended.queue_wait,
            ended.run,
            |samples| rose = self.keep_sample(ended, samples),
        );
        self.free_slot();
        self.wake_after_end(rose);
        if self.counts.is_closed() {
            self.exited.notify_waiters();
        }
        true
    }

    /// What the concurrency limit learns from a job's end (nothing, for a fixed limit): its
    /// sample, kept in `samples` until the batch is due. Returns `true` if the limit rose.
    fn keep_sample<const N: usize>(&self, ended: &Ended, samples: &mut Samples<N>) -> bool {
        if self.limiter.is_fixed() {
            return false;
        }
        // A job that timed out is a drop too, with the time it really ran.
        let dropped = matches!(ended.outcome, Outcome::Expired | Outcome::TimedOut);
        if ended.run.is_none() && !dropped {
            return false;
        }
        let sample = Sample {
            run: ended.run.unwrap_or_default(),
            queue_wait: ended.queue_wait,
            in_flight: ended.in_flight,
            dropped,
        };
        let now = ended.at.saturating_duration_since(self.epoch);
        self.limiter.on_sample(samples, now, &sample)
    }

    /// The wake-ups a job's end owes under a limit, once it no longer counts: a submitter
    /// waiting for room (`limit + queue bound`), and, if the limit `rose`, the workers parked
    /// at the old limit, which may take queued jobs now.
    fn wake_after_end(&self, rose: bool) {
        if self.limiter.is_fixed() {
            return;
        }
        if self.waiting_submitters.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
        if rose {
            self.work.notify_waiters();
        }
    }

    /// A taken job was dropped unfinished because its worker was stopped (shutdown deadline):
    /// counted by `outcome`, abandoned (or cancelled, if its handle was aborted first).
    pub(crate) fn job_stopped(&self, priority: Priority, outcome: Outcome) {
        self.metrics.stopped(priority, outcome);
        self.counts.end_job();
    }

    // ---- close and shutdown ----

    /// Stops admission; wakes every parked worker and waiting submitter to see it.
    pub(crate) fn close(&self) {
        self.counts.close();
        self.work.notify_waiters();
        self.room.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.counts.is_closed()
    }

    /// Closes, lets workers run what is queued until `deadline`, then stops them and ends what is
    /// left as abandoned. When it returns no worker is alive and every admitted job was counted.
    ///
    /// Cancel-safe: dropped before the deadline, the pool stays closed and its workers drain the
    /// queue as after [`close`](Self::close); dropped after, the last stopped worker to exit
    /// abandons what is queued (see [`abandon_if_orphaned`](Self::abandon_if_orphaned)).
    pub(crate) async fn shutdown(self: &Arc<Self>, deadline: Option<Instant>) -> Stopped {
        let (ended_before, abandoned_before) = self.metrics.ended();
        self.close();
        let timed_out = !self.wait_for_workers(deadline, true).await;
        {
            // From here on no worker may start; those alive are stopped (a no-op when the queue
            // drained in time). Set under the task lock, so `grow` either sees it or is aborted.
            let mut tasks = lock_std(&self.tasks);
            self.counts.stop_starting();
            tasks.abort_all();
        }
        self.abandon_inline();
        // No worker left to be the last one out: abandon now, before the first await.
        self.abandon_if_orphaned();
        self.wait_for_workers(None, false).await;
        self.abandon_queued().await;
        let mut tasks = std::mem::take(&mut *lock_std(&self.tasks));
        while tasks.join_next().await.is_some() {}
        while self.counts.busy() > 0 {
            // An inline job that ended just before the stop is still counting its end.
            tokio::task::yield_now().await;
        }
        let (ended_after, abandoned_after) = self.metrics.ended();
        let abandoned = abandoned_after - abandoned_before;
        Stopped {
            drained: ended_after - ended_before - abandoned,
            abandoned,
            timed_out,
        }
    }

    /// Waits until no worker is alive, or the deadline. With `restart`, a queue that still holds
    /// jobs with no worker left to run them gets one (possible only with `min_workers = 0`).
    async fn wait_for_workers(self: &Arc<Self>, deadline: Option<Instant>, restart: bool) -> bool {
        loop {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline)
                && (self.workers() > 0 || self.counts.inline_running() > 0)
            {
                return false; // checked here too, in case every wake-up below is ready at once
            }
            let exited = self.exited.notified();
            let mut exited = pin!(exited);
            exited.as_mut().enable();
            if self.counts.workers() == 0 {
                if restart && !self.counts.is_drained() && !self.counts.is_stopping() {
                    // Start one and wait for it like any other (no busy loop if it dies at
                    // once, for instance because its runtime is gone).
                    self.grow(1);
                } else if self.counts.inline_running() == 0 {
                    return true;
                }
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

    /// Stops inline jobs ("stop inline") and counts those still running abandoned: each returns
    /// `Abandoned` at its next poll, without running further.
    fn abandon_inline(&self) {
        let running = self.counts.stop_inline();
        for (priority, n) in Priority::ALL.into_iter().map(|p| (p, running[p.index()])) {
            for _ in 0..n {
                self.metrics.stopped(priority, Outcome::Abandoned);
                self.counts.end_job();
            }
        }
    }

    /// Ends every job still queued as abandoned. Only called once no worker is left.
    async fn abandon_queued(&self) {
        while !self.abandon_now() {
            // A submission reserved its slot before the close and is pushing right now (it
            // abandons its own job after its push, but the report counts it only if we wait).
            tokio::task::yield_now().await;
        }
    }

    /// If no worker may start and none is left, ends what is queued as abandoned. Called by each
    /// side that may be the last to touch the queue: a worker that exits (or a claim given back),
    /// after the worker count went down; a submitter, after its push.
    fn abandon_if_orphaned(&self) {
        if self.counts.is_orphaned() {
            self.abandon_now();
        }
    }

    /// Ends every job queued now as abandoned, each counted before its slot is released, whatever
    /// its drop does. Returns whether the queue is drained (see [`Counts::drain_unrun`]).
    fn abandon_now(&self) -> bool {
        // A handle aborted just before reports `Cancelled`, and is counted so.
        self.counts
            .drain_unrun(|job| self.end_unrun(job, JobError::Abandoned, Outcome::Abandoned))
    }

    // ---- readings ----

    pub(crate) fn snapshot(&self) -> Snapshot {
        // Read in the order a job moves (admitted, queued, busy, ended), each step recorded
        // before the previous one is undone, so a moving job is seen twice, never missed.
        let submitted_by = self.metrics.submitted();
        let queued = self.counts.queued();
        let busy = self.counts.busy();
        let queued_by = self.counts.queued_by_lane();
        let by_priority = self.metrics.by_priority(submitted_by, queued_by);
        let sum =
            |count: fn(&PriorityCounts) -> u64| by_priority.iter().map(|(_, c)| count(c)).sum();
        let timings = self.metrics.timings();
        Snapshot {
            name: self.config.name.clone(),
            workers: self.counts.workers(),
            busy,
            queued,
            queue_capacity: self.counts.capacity(),
            max_workers: self.config.policy.max_workers,
            limit: self.limiter.limit(),
            submitted: submitted_by.iter().sum(),
            completed: sum(|c| c.completed),
            panicked: sum(|c| c.panicked),
            cancelled: sum(|c| c.cancelled),
            expired: sum(|c| c.expired),
            displaced: sum(|c| c.displaced),
            abandoned: sum(|c| c.abandoned),
            timed_out: sum(|c| c.timed_out),
            shed_full: sum(|c| c.shed_full),
            shed_closed: sum(|c| c.shed_closed),
            shed_expired: sum(|c| c.shed_expired),
            by_priority,
            queue_wait: Latency::from_histogram(&timings.queue_wait),
            run_time: Latency::from_histogram(&timings.run),
            total: Latency::from_histogram(&timings.total),
        }
    }

    /// The latency histograms, merged.
    #[cfg(feature = "prometheus")]
    pub(crate) fn timings(&self) -> crate::metrics::Timings {
        self.metrics.timings()
    }

    pub(crate) fn queued(&self) -> usize {
        self.counts.queued()
    }
}

impl Unqueue for Shared {
    /// Removal: the job's handle cancels it while it is queued. It ends as cancelled at once,
    /// counted here before its slot is released, and its future is dropped outside every lock.
    fn unqueue(&self, ticket: Ticket) -> bool {
        let mut removed = None;
        let found = self.counts.remove(ticket, |mut job: BoxJob| {
            let _ = job.as_mut().fail(JobError::Cancelled, Outcome::Cancelled);
            self.metrics.lane(job.priority()).cancelled.inc();
            removed = Some(job);
        });
        if found {
            self.left_queue();
            job::drop_quietly(removed);
        }
        found
    }
}

pin_project! {
    /// A worker waiting for work. Its first poll registers it for a wake-up (with the task's
    /// waker, one lock of the `Notify`), counts it parked, *then* looks at the queue once more
    /// ("parked before the last look", in `counts.rs`) and at whether the pool drained; later
    /// polls wait for the wake-up. Dropping it uncounts the worker.
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct Parked<'a> {
        #[pin]
        wake: Notified<'a>,
        shared: &'a Shared,
        count: Option<ParkedCount<'a>>,
    }
}

/// What ended a worker's wait.
pub(crate) enum Woken {
    /// The last look found a job.
    Job(Taken),
    /// The pool closed and nothing can arrive any more.
    Drained,
    /// A wake-up: look again.
    Notified,
}

impl Future for Parked<'_> {
    type Output = Woken;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Woken> {
        let this = self.project();
        if this.wake.poll(cx).is_ready() {
            return Poll::Ready(Woken::Notified);
        }
        if this.count.is_none() {
            // Registered above: a job pushed or a drain from here on wakes this worker.
            *this.count = Some(this.shared.counts.park());
            if let Some(job) = this.shared.take_next() {
                return Poll::Ready(Woken::Job(job));
            }
            if this.shared.is_drained() {
                return Poll::Ready(Woken::Drained);
            }
        }
        Poll::Pending
    }
}

/// A job a worker took, and the number running with it (itself included) when it started.
pub(crate) struct Taken {
    pub(crate) job: BoxJob,
    pub(crate) in_flight: usize,
}

/// How a taken job ended, as [`Shared::job_ended`] records it.
pub(crate) struct Ended {
    pub(crate) priority: Priority,
    pub(crate) outcome: Outcome,
    /// When it ended (the worker's one clock read).
    pub(crate) at: Instant,
    pub(crate) queue_wait: Duration,
    /// `None` when its body did not finish.
    pub(crate) run: Option<Duration>,
    /// From [`Taken::in_flight`].
    pub(crate) in_flight: usize,
}

/// What admission did with a job its caller will await.
pub(crate) enum Admitted<F: Future> {
    /// A worker slot was free and nothing was queued: the caller runs the job in the slot.
    Inline(InlineSlot, F),
    /// Queued, as any submitted job.
    Queued(JobHandle<F::Output>),
    /// Admitted as a shutdown stopped inline jobs: counted abandoned, never to run.
    Abandoned(F),
}

/// A worker slot held by a job its caller runs ("inline jobs"). Ending it with
/// [`end`](Self::end) counts the job; dropping it unended counts it cancelled.
#[must_use = "the slot counts the job busy until it is ended or dropped"]
pub(crate) struct InlineSlot {
    shared: Arc<Shared>,
    priority: Priority,
    /// Jobs running when it took its slot, itself included.
    in_flight: usize,
    ended: bool,
}

impl InlineSlot {
    /// Whether a shutdown stopped the job and counted it abandoned: it must not run further.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.shared.counts.inline_stopped(self.priority.index())
    }

    /// The pool's run timeout.
    pub(crate) fn run_timeout(&self) -> Option<Duration> {
        self.shared.config.run_timeout
    }

    /// A timer for the run deadline `until`, on the pool's runtime (the caller's may have no
    /// timer).
    pub(crate) fn timer(&self, until: Instant) -> tokio::time::Sleep {
        let _runtime = self.shared.runtime.enter();
        tokio::time::sleep_until(until)
    }

    /// Counts the job's end: `outcome` at `at`, having run since `started` if its body
    /// finished (`ran`). Returns `false` if a shutdown had counted it abandoned already.
    pub(crate) fn end(
        mut self,
        outcome: Outcome,
        started: Instant,
        at: Instant,
        ran: bool,
    ) -> bool {
        self.ended = true;
        self.shared.inline_ended(&Ended {
            priority: self.priority,
            outcome,
            at,
            queue_wait: Duration::ZERO,
            run: ran.then(|| at.saturating_duration_since(started)),
            in_flight: self.in_flight,
        })
    }
}

impl Drop for InlineSlot {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped unended: its caller dropped the job's future.
            self.shared.inline_ended(&Ended {
                priority: self.priority,
                outcome: Outcome::Cancelled,
                at: Instant::now(),
                queue_wait: Duration::ZERO,
                run: None,
                in_flight: self.in_flight,
            });
        }
    }
}

/// What a job of `priority` admitted now carries.
fn meta(priority: Priority, deadline: Option<Instant>) -> Meta {
    Meta {
        admitted_at: Instant::now(),
        deadline,
        priority,
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
