//! A submitted future, type-erased for the queue, and the handle its submitter keeps.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

use pin_project_lite::pin_project;

use crate::error::JobError;
use crate::handoff::Handoff;
use crate::priority::Priority;
use crate::queue::Ticket;
use crate::sync::Arc;

/// How a job that reached a worker ended. (A job that never reaches one is abandoned at shutdown.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Cancelled,
    Expired,
    /// Pushed out of a full queue by a job of higher priority.
    Displaced,
    /// Dropped unfinished by a shutdown.
    Abandoned,
    /// Dropped unfinished at the run timeout.
    TimedOut,
}

/// A queued job, seen by a worker.
pub(crate) trait Job: Send {
    fn admitted_at(&self) -> Instant;

    fn priority(&self) -> Priority;

    /// When a job still queued ends as expired, unrun.
    fn deadline(&self) -> Option<Instant>;

    /// Runs the job until it ends. Checks for cancellation before each poll of the body, so a
    /// job whose handle is gone never starts, and a running one stops at its next poll.
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome>;

    /// Ends the job without running (more of) it. Returns the outcome to count: `outcome`, or
    /// `Cancelled` if the handle was aborted first and reports that.
    fn fail(self: Pin<&mut Self>, error: JobError, outcome: Outcome) -> Outcome;
}

pub(crate) type BoxJob = Pin<Box<dyn Job>>;

/// Where a queued job can be taken back out by its handle, before a worker pops it.
pub(crate) trait Unqueue: Send + Sync {
    /// Removes the job queued with `ticket` and ends it as cancelled, freeing its slot at once.
    /// Returns `false` if it had left the queue already (a worker or a shutdown took it).
    fn unqueue(&self, ticket: Ticket) -> bool;
}

/// A handle's way back to its job in the queue.
struct Queued {
    /// `std`'s `Arc`: the queue side is not in the loom models.
    queue: std::sync::Arc<dyn Unqueue>,
    ticket: Ticket,
}

impl Queued {
    /// Takes the job out of the queue if it is still there (see [`Unqueue`]).
    fn unqueue(&self) -> bool {
        self.queue.unqueue(self.ticket)
    }
}

pin_project! {
    struct Task<F: Future> {
        #[pin]
        future: F,
        handoff: Arc<Handoff<F::Output>>,
        admitted_at: Instant,
        deadline: Option<Instant>,
        priority: Priority,
        done: bool,
    }

    impl<F: Future> PinnedDrop for Task<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before it ended: its worker was stopped by a shutdown deadline, or the
            // runtime went away. Either way the job was abandoned.
            let this = this.project();
            if !*this.done {
                drop_quietly(this.handoff.finish(Err(JobError::Abandoned)).unwanted);
            }
        }
    }
}

/// Reports the job's end to its handle and returns the outcome to count: `outcome`, unless the
/// handle was aborted first (it then reports `Cancelled`, and so do the counts).
fn settle<T>(handoff: &Handoff<T>, result: Result<T, JobError>, outcome: Outcome) -> Outcome {
    let finished = handoff.finish(result);
    drop_quietly(finished.unwanted);
    if finished.aborted {
        Outcome::Cancelled
    } else {
        outcome
    }
}

/// Drops a value whose destructor is user code: a panic there must not take the worker down.
pub(crate) fn drop_quietly<T>(value: T) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

impl<F> Job for Task<F>
where
    F: Future + Send,
    F::Output: Send,
{
    fn admitted_at(&self) -> Instant {
        self.admitted_at
    }

    fn priority(&self) -> Priority {
        self.priority
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut this = self.project();
        if this.handoff.is_cancelled() {
            *this.done = true;
            drop_quietly(this.handoff.finish(Err(JobError::Cancelled)).unwanted);
            return Poll::Ready(Outcome::Cancelled);
        }
        match catch_unwind(AssertUnwindSafe(|| this.future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => {
                // Only a job that waits needs waking on cancellation; one that finishes in its
                // first poll never takes this lock.
                if this.handoff.park_job(cx.waker()) {
                    *this.done = true;
                    drop_quietly(this.handoff.finish(Err(JobError::Cancelled)).unwanted);
                    return Poll::Ready(Outcome::Cancelled);
                }
                Poll::Pending
            }
            Ok(Poll::Ready(value)) => {
                *this.done = true;
                Poll::Ready(settle(this.handoff, Ok(value), Outcome::Completed))
            }
            Err(payload) => {
                *this.done = true;
                let message = panic_message(&*payload);
                drop_quietly(payload);
                let error = JobError::Panicked(message);
                Poll::Ready(settle(this.handoff, Err(error), Outcome::Panicked))
            }
        }
    }

    fn fail(self: Pin<&mut Self>, error: JobError, outcome: Outcome) -> Outcome {
        let this = self.project();
        *this.done = true;
        settle(this.handoff, Err(error), outcome)
    }
}

/// What the queue and the counts need to know of a job besides its future.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) admitted_at: Instant,
    pub(crate) deadline: Option<Instant>,
    pub(crate) priority: Priority,
}

/// Boxes `future` for the queue and makes its handle.
pub(crate) fn new<F>(future: F, meta: Meta) -> (BoxJob, JobHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handoff = Arc::new(Handoff::new());
    let task = Box::pin(Task {
        future,
        handoff: handoff.clone(),
        admitted_at: meta.admitted_at,
        deadline: meta.deadline,
        priority: meta.priority,
        done: false,
    });
    (
        task,
        JobHandle {
            handoff,
            queued: None,
            settled: false,
        },
    )
}

/// The submitter's side of an admitted job: await it for the job's result.
///
/// A `JobHandle` resolves to `Ok(value)` when the job returns, or to a [`JobError`] saying why it
/// did not: it panicked, it was cancelled, it expired in the queue, a job of higher priority
/// displaced it from a full queue, it ran past the pool's run timeout, or a shutdown abandoned
/// it.
///
/// **Dropping the handle cancels the job**: a queued job leaves the queue at once (its slot is
/// free for the next submission, and it counts as cancelled) and never runs; a running one is
/// dropped at its next `.await` (its task is woken for that at once). Use
/// [`detach`](Self::detach) to let it finish without anyone waiting (fire and forget). Either way
/// the job's lifetime is the pool's business, never the submitter's scope: a request handler that
/// returns does not cancel a detached job, so work that was accepted is not silently thrown away
/// halfway.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{JobError, Pool};
///
/// let pool = Pool::builder().build().unwrap();
/// let handle = pool.submit(async { 6 * 7 }).await.unwrap();
/// assert_eq!(handle.await, Ok(42));
///
/// let handle = pool.submit(async { panic!("boom") }).await.unwrap();
/// assert_eq!(handle.await, Err(JobError::Panicked("boom".into())));
/// # }
/// ```
///
/// # Panics
///
/// Polling the handle again after it returned its result panics, as for any future.
#[must_use = "dropping a JobHandle cancels its job: await it, or call .detach()"]
pub struct JobHandle<T> {
    handoff: Arc<Handoff<T>>,
    /// Where the job was queued, to take it back out on cancellation.
    queued: Option<Queued>,
    /// This handle returned its result or was detached: nothing more to tell the job.
    settled: bool,
}

impl<T> JobHandle<T> {
    /// Records where the job was queued, so that a cancellation can take it back out.
    pub(crate) fn queued_at(&mut self, queue: std::sync::Arc<dyn Unqueue>, ticket: Ticket) {
        self.queued = Some(Queued { queue, ticket });
    }

    /// Lets the job run to completion with nobody waiting for it; its result is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// pool.submit(async move { tx.send("done").unwrap() }).await.unwrap().detach();
    /// assert_eq!(rx.await, Ok("done"));
    /// # }
    /// ```
    pub fn detach(mut self) {
        if !self.settled {
            self.handoff.detach();
            self.settled = true;
        }
    }

    /// Cancels the job: if it has not ended yet, it will not run (further), and this handle
    /// resolves to [`JobError::Cancelled`] at once. A queued job leaves the queue at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use spillway::JobError;
    ///
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let handle = pool.submit(std::future::pending::<()>()).await.unwrap();
    /// handle.abort();
    /// assert_eq!(handle.await, Err(JobError::Cancelled));
    /// # }
    /// ```
    pub fn abort(&self) {
        if !self.settled {
            // Taken out of the queue, the job ends cancelled there; otherwise tell it to stop.
            if !self.queued.as_ref().is_some_and(Queued::unqueue) {
                self.handoff.abort();
            }
        }
    }

    /// Whether this handle has its result (it may still be waiting to be read).
    ///
    /// After [`abort`](Self::abort) this is `true` at once: the handle resolves to
    /// [`JobError::Cancelled`] without waiting, while a job that was already running still holds
    /// its worker until its next poll, where it stops.
    pub fn is_finished(&self) -> bool {
        self.settled || self.handoff.is_finished()
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.settled,
            "JobHandle polled after it returned its result"
        );
        let poll = this.handoff.poll_result(cx.waker());
        this.settled = poll.is_ready();
        poll
    }
}

impl<T> Drop for JobHandle<T> {
    fn drop(&mut self) {
        if !self.settled {
            if let Some(queued) = self.queued.take() {
                queued.unqueue();
            }
            self.handoff.drop_handle();
        }
    }
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
