//! The worker loop: take a job, run it with panics caught, retire when idle for too long.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::JobError;
use crate::job::{BoxJob, drop_quietly};
use crate::metrics::Outcome;
use crate::pool::Shared;
use crate::scaler;

/// Decrements the worker count when the task ends, however it ends: return, abort, or abort
/// before its first poll (it is created outside the task's future and moved into it for that).
struct Alive {
    shared: Arc<Shared>,
    counted: bool,
}

impl Drop for Alive {
    fn drop(&mut self) {
        if self.counted {
            self.shared.workers.fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.exited.notify_waiters();
    }
}

/// A job a worker has taken. If the worker is stopped while it runs (shutdown deadline), dropping
/// this counts the job as abandoned and its handle learns so from the job's own drop.
struct Running<'a> {
    shared: &'a Shared,
    job: Option<BoxJob>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            drop_quietly(job);
            self.shared.metrics.abandoned.inc();
            self.shared.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Counts a worker as parked while it waits for work.
struct Parked<'a>(&'a Shared);

impl<'a> Parked<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.parked.fetch_add(1, Ordering::SeqCst);
        Parked(shared)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Running<'_> {
    /// Runs the job to its end and counts it; returns when it ended. `started` is now, or the
    /// end of the job this worker finished just before (no clock read needed).
    async fn run(mut self, started: Instant) -> Instant {
        let shared = self.shared;
        let job = self
            .job
            .as_mut()
            .expect("a running job is present until it ends");
        let queue_wait = started.saturating_duration_since(job.admitted_at());
        let (outcome, ran) = if shared.config.queue_timeout.is_some_and(|t| queue_wait > t) {
            job.as_mut().fail(JobError::Expired);
            (Outcome::Expired, false)
        } else {
            let outcome = poll_fn(|cx| job.as_mut().poll_run(cx)).await;
            (outcome, outcome != Outcome::Cancelled)
        };
        let ended = Instant::now();
        if let Some(job) = self.job.take() {
            // A job body's destructor may panic too; it must not take the worker down.
            drop_quietly(job);
        }
        let run_time = ran.then(|| ended.saturating_duration_since(started));
        shared.metrics.record(outcome, queue_wait, run_time);
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        ended
    }
}

/// `at + after`, or about thirty years from `at` if that overflows (as tokio's own far future).
pub(crate) fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| at + Duration::from_secs(30 * 365 * 86_400))
}

/// The worker task. The worker was counted by whoever spawned it.
pub(crate) fn run(shared: Arc<Shared>) -> impl Future<Output = ()> + Send + 'static {
    let alive = Alive {
        shared,
        counted: true,
    };
    work(alive)
}

async fn work(mut alive: Alive) {
    let shared = alive.shared.clone();
    let policy = shared.config.policy;
    let mut last_active = Instant::now();
    // One timer for the worker's whole life, moved forward lazily, so that going idle between
    // two jobs costs no timer registration.
    let idle = tokio::time::sleep_until(later(last_active, policy.idle_timeout));
    let mut idle = pin!(idle);
    // When the previous job just ended, its end is the next one's start.
    let mut now = None;
    loop {
        if let Some(job) = shared.next_job() {
            let started = now.unwrap_or_else(Instant::now);
            let running = Running {
                shared: &shared,
                job: Some(job),
            };
            last_active = running.run(started).await;
            now = Some(last_active);
            continue;
        }
        now = None;
        let work = shared.work.notified();
        let mut work = pin!(work);
        work.as_mut().enable();
        let parked = Parked::new(&shared);
        if let Some(job) = shared.next_job() {
            drop(parked);
            let running = Running {
                shared: &shared,
                job: Some(job),
            };
            last_active = running.run(Instant::now()).await;
            now = Some(last_active);
            continue;
        }
        if shared.queue.is_drained() {
            return; // closed, and nothing can arrive any more
        }
        // At min_workers nobody may retire, so the idle timer need not even be polled.
        let may_retire = shared.workers.load(Ordering::Relaxed) > policy.min_workers;
        tokio::select! {
            biased;
            () = &mut work => {}
            () = &mut idle, if may_retire => {
                let idle_for = last_active.elapsed();
                let workers = shared.workers.load(Ordering::SeqCst);
                if scaler::should_retire(idle_for, workers, &policy) && shared.try_retire() {
                    // A job may have been queued while we decided, by a submitter that still
                    // counted us as idle and so started nobody. Both sides are SeqCst (it
                    // reserved, then read `workers`; we decremented, then read the queue), so
                    // one of us sees the other: stay if there is work and room to stay.
                    if shared.queue.len() == 0 || !shared.reclaim() {
                        alive.counted = false;
                        return;
                    }
                    continue;
                }
                let next = if idle_for >= policy.idle_timeout {
                    later(Instant::now(), policy.idle_timeout)
                } else {
                    later(last_active, policy.idle_timeout)
                };
                idle.as_mut().reset(next);
            }
        }
    }
}
