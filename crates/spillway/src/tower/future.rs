//! The response future of [`PoolService`](crate::PoolService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::error::{BoxError, Overloaded, ShedReason};
use crate::error::JobError;
use crate::run::{BoxBody, Run};

/// The job of one request: the inner service's future, boxed once admitted to run inline (the
/// response future's type does not name the inner future's).
pub(crate) type RequestJob<T> = BoxBody<Result<T, BoxError>>;

/// Waits for room in the queue (wait mode): the job inside, its admission or why it was shed
/// out.
pub(crate) type Admission<T> =
    Pin<Box<dyn Future<Output = Result<Run<RequestJob<T>>, ShedReason>> + Send>>;

/// The response of a [`PoolService`](crate::PoolService): the inner service's response once
/// the pool has run its future, or why not.
///
/// # Errors
///
/// Resolves to a [`BoxError`] holding one of:
///
/// * [`Overloaded`]: the request was shed (queue full, wait timed out, pool closed, expired in
///   the queue, or abandoned at shutdown; see [`ShedReason`]);
/// * [`JobError::Panicked`]: the inner service's future panicked (the pool caught it);
/// * [`JobError::TimedOut`]: it ran past the pool's
///   [`run_timeout`](crate::Builder::run_timeout) and was stopped (a gateway would answer 504);
/// * the inner service's own error, passed through unchanged.
///
/// # Panics
///
/// Polling it again after it returned its result panics, as for any future.
///
/// # Cancel safety
///
/// Dropping this future cancels the request: if it is still waiting for room, it never enters
/// the queue; if it is queued, it never runs; if it runs on this task (a worker slot was free
/// at admission), it is dropped with this future; if it runs on a worker, its future is dropped
/// at its next `.await` (a future that computes without awaiting keeps its worker until it
/// does). A queued request's slot is freed at once; a running one's when its future is
/// dropped. This is what happens when a client disconnects and the server drops the response
/// future.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{Pool, PoolService};
/// use tower::{Service, ServiceExt, service_fn};
///
/// let pool = Pool::builder().build().unwrap();
/// let mut service = PoolService::new(
///     service_fn(|n: u64| async move { Ok::<_, std::convert::Infallible>(n * 2) }),
///     pool,
/// );
/// let future = service.ready().await.unwrap().call(21); // admitted (or shed) here
/// assert_eq!(future.await.unwrap(), 42);
/// # }
/// ```
#[must_use = "futures do nothing unless polled, and dropping this one cancels its request"]
pub struct ResponseFuture<T> {
    state: State<T>,
}

enum State<T> {
    /// Shed before it was admitted; `None` once reported.
    Shed(Option<ShedReason>),
    /// Waiting for room in the queue.
    Admitting(Admission<T>),
    /// Admitted: running on this task (inline), queued, or running on a worker.
    Admitted(Run<RequestJob<T>>),
    /// Returned its result.
    Done,
}

impl<T> ResponseFuture<T> {
    pub(crate) fn shed(reason: ShedReason) -> Self {
        ResponseFuture {
            state: State::Shed(Some(reason)),
        }
    }

    pub(crate) fn admitting(admission: Admission<T>) -> Self {
        ResponseFuture {
            state: State::Admitting(admission),
        }
    }

    pub(crate) fn admitted(run: Run<RequestJob<T>>) -> Self {
        ResponseFuture {
            state: State::Admitted(run),
        }
    }
}

/// What the caller sees of a job that produced no value.
fn job_error(error: JobError) -> BoxError {
    match error {
        JobError::Expired => Box::new(Overloaded::new(ShedReason::Expired)),
        JobError::Abandoned => Box::new(Overloaded::new(ShedReason::Abandoned)),
        JobError::Displaced => Box::new(Overloaded::new(ShedReason::Displaced)),
        // Panicked and TimedOut: the request ran, so it was not shed. Cancelled needs the handle
        // gone, so is never seen here.
        error @ (JobError::Panicked(_) | JobError::TimedOut | JobError::Cancelled) => {
            Box::new(error)
        }
    }
}

impl<T> Future for ResponseFuture<T> {
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Shed(reason) => {
                    let reason = reason
                        .take()
                        .expect("ResponseFuture polled after it returned its result");
                    this.state = State::Done;
                    return Poll::Ready(Err(Box::new(Overloaded::new(reason))));
                }
                State::Admitting(admission) => match ready!(admission.as_mut().poll(cx)) {
                    Ok(run) => this.state = State::Admitted(run),
                    Err(reason) => this.state = State::Shed(Some(reason)),
                },
                State::Admitted(run) => {
                    let result = ready!(Pin::new(run).poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(result.unwrap_or_else(|error| Err(job_error(error))));
                }
                State::Done => panic!("ResponseFuture polled after it returned its result"),
            }
        }
    }
}

impl<T> fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ResponseFuture");
        match &self.state {
            State::Shed(Some(reason)) => f.field("shed", reason),
            State::Admitting(_) => f.field("state", &"admitting"),
            State::Admitted(run) => f.field("job", run),
            State::Shed(None) | State::Done => f.field("state", &"done"),
        }
        .finish()
    }
}
