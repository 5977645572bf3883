//! [`Run`]: a job its caller awaits, run on the caller's own task when a worker slot is free.
//!
//! A job handed to a worker costs a wake-up of that worker's thread, which on tokio's
//! multi-thread scheduler costs more than the rest of the job's bookkeeping (an eventfd write,
//! an `epoll_wait`). A caller that awaits the job anyway can run it itself: admission gives it a
//! worker slot ([`Admitted::Inline`], argued in `state/`), and this future polls the job's body
//! right there, with everything a worker does around it: panics caught, the run timeout, the
//! end counted once. When the pool has no free slot, or work is queued, the job is queued like
//! any other and this future awaits its [`JobHandle`].

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::JobError;
use crate::job::{JobHandle, Outcome, drop_quietly, panic_message};
use crate::state::{Admitted, InlineSlot};

pin_project! {
    /// A job admitted by [`Pool::try_run`](crate::Pool::try_run): await it for the job's value.
    ///
    /// When the pool had a worker slot free and nothing queued, the job runs *inline*: on the
    /// task that awaits this future, as it is polled, holding the slot (it counts busy, and
    /// within the concurrency limit, as a job on a worker does). Otherwise it was queued and a
    /// worker runs it; this future then waits for it as a [`JobHandle`] does. Either way it
    /// resolves to the job's value or to the [`JobError`] that says why there is none
    /// (`Panicked`, `TimedOut` past the pool's run timeout, `Abandoned` by a shutdown; a queued
    /// job may also end `Expired` or `Displaced`).
    ///
    /// A job running inline stops where a worker's would: a shutdown past its deadline counts
    /// it abandoned, and this future returns [`JobError::Abandoned`] at its next poll without
    /// polling the job again; past the run timeout it returns [`JobError::TimedOut`].
    ///
    /// # Cancel safety
    ///
    /// Dropping it cancels the job, queued or running, as dropping a [`JobHandle`] does; a job
    /// running inline is dropped with it, and its slot is free at once. It counts as cancelled.
    ///
    /// # Panics
    ///
    /// Polling it again after it returned its result panics, as for any future.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let run = pool.try_run(async { 6 * 7 }).expect("room");
    /// assert_eq!(pool.metrics().busy, 1, "it holds a worker slot");
    /// assert_eq!(run.await, Ok(42));
    /// assert_eq!(pool.metrics().completed, 1);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled, and dropping this one cancels its job"]
    #[project = RunProj]
    pub struct Run<F: Future> {
        // Declared first: dropped before the slot, so that a job's end is counted after its
        // body is gone, as on a worker.
        #[pin]
        body: Option<F>,
        state: State<F::Output>,
        // A job running inline that went pending under a run timeout: its deadline.
        timer: Option<Pin<Box<Sleep>>>,
        // When the inline job was first polled.
        started: Option<Instant>,
    }

    impl<F: Future> PinnedDrop for Run<F> {
        fn drop(this: Pin<&mut Self>) {
            // The job's destructor is user code: it must not unwind into the caller here, any
            // more than into a worker. The slot then counts the job cancelled.
            let mut body = this.project().body;
            let _ = catch_unwind(AssertUnwindSafe(|| body.set(None)));
        }
    }
}

/// A job's body, boxed: see [`Run::boxed`].
#[cfg(feature = "tower")]
pub(crate) type BoxBody<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum State<T> {
    /// Running on the caller's task, in this slot.
    Inline(InlineSlot),
    /// Queued: a worker runs it.
    Queued(JobHandle<T>),
    /// Admitted as a shutdown stopped inline jobs: counted abandoned.
    Abandoned,
    /// Returned its result.
    Done,
}

impl<F: Future> Run<F> {
    pub(crate) fn new(admitted: Admitted<F>) -> Self {
        let (body, state) = match admitted {
            Admitted::Inline(slot, job) => (Some(job), State::Inline(slot)),
            Admitted::Queued(handle) => (None, State::Queued(handle)),
            Admitted::Abandoned(job) => {
                drop_quietly(job);
                (None, State::Abandoned)
            }
        };
        Run {
            body,
            state,
            timer: None,
            started: None,
        }
    }

    /// The same job with its body boxed, for a caller whose type cannot name `F` (the tower
    /// response future). Allocates only for a job that runs inline, never polled yet.
    #[cfg(feature = "tower")]
    pub(crate) fn boxed(mut self) -> Run<BoxBody<F::Output>>
    where
        F: Send + 'static,
    {
        debug_assert!(self.started.is_none(), "boxed before its first poll");
        let body = self
            .body
            .take()
            .map(|body| Box::pin(body) as BoxBody<F::Output>);
        let state = std::mem::replace(&mut self.state, State::Done);
        Run {
            body,
            state,
            timer: None,
            started: None,
        }
    }

    /// Whether the job runs on the caller's task (it took a worker slot at admission), rather
    /// than queued for a worker. `false` once it has returned its result.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let run = pool.try_run(async {}).unwrap();
    /// assert!(run.is_inline());
    /// # drop(run);
    /// # }
    /// ```
    pub fn is_inline(&self) -> bool {
        matches!(self.state, State::Inline(_))
    }
}

impl<F: Future> Future for Run<F> {
    type Output = Result<F::Output, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let slot = match this.state {
            State::Inline(slot) => slot,
            State::Queued(handle) => {
                let result = std::task::ready!(Pin::new(handle).poll(cx));
                *this.state = State::Done;
                return Poll::Ready(result);
            }
            State::Abandoned => {
                *this.state = State::Done;
                return Poll::Ready(Err(JobError::Abandoned));
            }
            State::Done => panic!("Run polled after it returned its result"),
        };
        if slot.is_abandoned() {
            // A shutdown counted it abandoned: not polled again.
            let _ = catch_unwind(AssertUnwindSafe(|| this.body.set(None)));
            forget_slot(this.state);
            return Poll::Ready(Err(JobError::Abandoned));
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        if let Some(timer) = this.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(finish(this, Err(JobError::TimedOut), Outcome::TimedOut));
        }
        let body = this
            .body
            .as_mut()
            .as_pin_mut()
            .expect("an inline job has its body");
        let (result, outcome) = match catch_unwind(AssertUnwindSafe(|| body.poll(cx))) {
            Ok(Poll::Ready(value)) => (Ok(value), Outcome::Completed),
            Ok(Poll::Pending) => {
                return match arm_timer(slot, this.timer, started, cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(finish(this, Err(JobError::TimedOut), Outcome::TimedOut))
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            Err(payload) => {
                let message = panic_message(&*payload);
                drop_quietly(payload);
                (Err(JobError::Panicked(message)), Outcome::Panicked)
            }
        };
        Poll::Ready(finish(this, result, outcome))
    }
}

/// Sets the run deadline's timer once the job first waits, under a run timeout (a job that
/// finishes in its first poll never needs one). `Ready` if the deadline has passed already.
fn arm_timer(
    slot: &InlineSlot,
    timer: &mut Option<Pin<Box<Sleep>>>,
    started: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if timer.is_none() {
        let Some(limit) = slot.run_timeout() else {
            return Poll::Pending;
        };
        let Some(until) = started.checked_add(limit) else {
            return Poll::Pending; // beyond any clock: no deadline
        };
        *timer = Some(Box::pin(slot.timer(until)));
    }
    match timer.as_mut() {
        Some(timer) => timer.as_mut().poll(cx),
        None => Poll::Pending,
    }
}

/// Ends an inline job with `result`: drops its body, counts its end (one clock read), and
/// returns what its caller sees (`Abandoned` if a shutdown counted it so in the meantime).
fn finish<F: Future>(
    this: RunProj<'_, F>,
    result: Result<F::Output, JobError>,
    outcome: Outcome,
) -> Result<F::Output, JobError> {
    let mut body = this.body;
    let _ = catch_unwind(AssertUnwindSafe(|| body.set(None)));
    *this.timer = None;
    let started = this.started.unwrap_or_else(Instant::now);
    let State::Inline(slot) = std::mem::replace(this.state, State::Done) else {
        unreachable!("only an inline job is finished here");
    };
    let ran = outcome != Outcome::Cancelled;
    if slot.end(outcome, started, Instant::now(), ran) {
        result
    } else {
        drop_quietly(result);
        Err(JobError::Abandoned)
    }
}

/// Lets go of the slot of a job a shutdown counted already: its drop finds the stop and
/// counts nothing.
fn forget_slot<T>(state: &mut State<T>) {
    *state = State::Done;
}

impl<F: Future> fmt::Debug for Run<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inline(_) => "inline",
            State::Queued(_) => "queued",
            State::Abandoned | State::Done => "done",
        };
        f.debug_struct("Run").field("state", &state).finish()
    }
}
