//! The worker loop: take a job, run it with panics caught, retire when idle for too long.
//!
//! The worker only runs jobs and decides when it is idle; every count it moves and every wake-up
//! it relies on is a transition of [`Shared`], where its protocol is argued.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::JobError;
use crate::job::{BoxJob, Job, Outcome, drop_quietly};
use crate::scaler;
use crate::state::{Ended, Samples, Shared, Taken, Woken};

/// Counts the worker out when the task ends, however it ends: return, abort, or abort before its
/// first poll (it is created outside the task's future and moved into it for that), or the drop
/// of every task when its runtime shuts down.
struct Alive {
    shared: Arc<Shared>,
    /// Still counted among the workers (it has not retired).
    counted: bool,
    /// The loop returned; otherwise the task was dropped midway.
    returned: bool,
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.shared.worker_exited(self.counted, self.returned);
    }
}

/// A job a worker has taken. If the worker is stopped while it runs (shutdown deadline), dropping
/// this ends the job as abandoned, and counts it as its handle reports it: abandoned, or
/// cancelled if the handle was aborted first (it returned `Cancelled` already, before the worker
/// could poll the job again to see the abort).
struct Running<'a> {
    shared: &'a Shared,
    job: Option<BoxJob>,
    /// Jobs running when it started, itself included.
    in_flight: usize,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(mut job) = self.job.take() {
            let priority = job.priority();
            let outcome = job.as_mut().fail(JobError::Abandoned, Outcome::Abandoned);
            drop_quietly(job);
            self.shared.job_stopped(priority, outcome);
        }
    }
}

impl Running<'_> {
    /// Runs the job to its end and counts it; returns when it ended. `started` is now, or the
    /// end of the job this worker finished just before (no clock read needed).
    async fn run(mut self, started: Instant, samples: &mut Samples) -> Instant {
        let shared = self.shared;
        let job = self
            .job
            .as_mut()
            .expect("a running job is present until it ends");
        let queue_wait = started.saturating_duration_since(job.admitted_at());
        let too_late = shared
            .config()
            .queue_timeout
            .is_some_and(|t| queue_wait > t)
            || job.deadline().is_some_and(|deadline| started >= deadline);
        let priority = job.priority();
        let (outcome, ran) = if too_late || shared.drop_at_dequeue(queue_wait, priority) {
            (
                job.as_mut().fail(JobError::Expired, Outcome::Expired),
                false,
            )
        } else {
            let until = shared
                .config()
                .run_timeout
                .map(|limit| later(started, limit));
            let outcome = run_body(job.as_mut(), until).await;
            (outcome, outcome != Outcome::Cancelled)
        };
        let ended = Instant::now();
        if let Some(job) = self.job.take() {
            // A job body's destructor may panic too; it must not take the worker down.
            drop_quietly(job);
        }
        let end = Ended {
            priority,
            outcome,
            at: ended,
            queue_wait,
            run: ran.then(|| ended.saturating_duration_since(started)),
            in_flight: self.in_flight,
        };
        shared.job_ended(&end, samples);
        ended
    }
}

/// Polls the job's body to its end; with a run deadline `until`, a job still running then ends
/// as timed out and is not polled again (it is dropped where it awaits). The deadline is looked
/// at before each poll of the body, so a job woken after it never runs further; a body that
/// never returns from a poll cannot be interrupted (no future can).
async fn run_body(mut job: Pin<&mut dyn Job>, until: Option<Instant>) -> Outcome {
    let Some(until) = until else {
        return poll_fn(|cx| job.as_mut().poll_run(cx)).await;
    };
    let mut deadline = pin!(tokio::time::sleep_until(until));
    poll_fn(|cx| {
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(job.as_mut().fail(JobError::TimedOut, Outcome::TimedOut));
        }
        job.as_mut().poll_run(cx)
    })
    .await
}

/// `at + after`, or about thirty years from `at` if that overflows (as tokio's own far future).
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| at + Duration::from_secs(30 * 365 * 86_400))
}

/// The worker task. The worker was counted by whoever spawned it.
pub(crate) fn run(shared: Arc<Shared>) -> impl Future<Output = ()> + Send + 'static {
    let alive = Alive {
        shared,
        counted: true,
        returned: false,
    };
    work(alive)
}

/// What an idle worker found.
enum Idle {
    /// A job arrived just before it parked.
    Job(Taken),
    /// Woken, or its idle timer moved on: look again.
    LookAgain,
    /// It retired: it no longer counts and exits.
    Retired,
    /// The pool closed and nothing can arrive any more.
    Drained,
}

async fn work(mut alive: Alive) {
    let shared = alive.shared.clone();
    let mut last_active = Instant::now();
    // One timer for the worker's whole life, moved forward lazily, so that going idle between
    // two jobs costs no timer registration.
    let idle = tokio::time::sleep_until(later(last_active, shared.config().policy.idle_timeout));
    let mut idle = pin!(idle);
    // When the previous job just ended, its end is the next one's start, and its worker slot
    // the next one's ("the slot passes on").
    let mut now = None;
    // This worker's samples for the concurrency limit, handed over in batches.
    let mut samples = Samples::default();
    loop {
        let next = match now {
            Some(_) => shared.take_next_in_slot(),
            None => shared.take_next(),
        };
        let (job, started) = match next {
            Some(job) => (job, now.unwrap_or_else(Instant::now)),
            None => match wait_idle(&shared, idle.as_mut(), last_active).await {
                Idle::Job(job) => (job, Instant::now()),
                Idle::LookAgain => {
                    now = None;
                    continue;
                }
                Idle::Retired => {
                    alive.counted = false;
                    alive.returned = true;
                    return;
                }
                Idle::Drained => {
                    alive.returned = true;
                    return;
                }
            },
        };
        let running = Running {
            shared: &shared,
            job: Some(job.job),
            in_flight: job.in_flight,
        };
        last_active = running.run(started, &mut samples).await;
        now = Some(last_active);
    }
}

/// Parks until woken, or until the idle timer says to retire (then retires if allowed).
async fn wait_idle(shared: &Shared, mut idle: Pin<&mut Sleep>, last_active: Instant) -> Idle {
    let policy = shared.config().policy;
    // At min_workers nobody may retire, so the idle timer need not even be polled.
    let may_retire = shared.workers() > policy.min_workers;
    // Polled first (biased): it registers, counts the worker parked and takes a last look.
    let parked = pin!(shared.park());
    tokio::select! {
        biased;
        woken = parked => match woken {
            Woken::Job(job) => Idle::Job(job),
            Woken::Drained => Idle::Drained,
            Woken::Notified => Idle::LookAgain,
        },
        () = &mut idle, if may_retire => {
            let idle_for = last_active.elapsed();
            if scaler::should_retire(idle_for, shared.workers(), &policy) && shared.retire() {
                return Idle::Retired;
            }
            let next = if idle_for >= policy.idle_timeout {
                later(Instant::now(), policy.idle_timeout)
            } else {
                later(last_active, policy.idle_timeout)
            };
            idle.as_mut().reset(next);
            Idle::LookAgain
        }
    }
}
