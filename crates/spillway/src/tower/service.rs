//! [`PoolService`]: runs each response future of an inner service as a pool job.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::error::{BoxError, ShedReason};
use super::future::ResponseFuture;
use crate::error::{SubmitTimeoutError, TrySubmitError};
use crate::pool::Pool;
use crate::priority::JobOptions;
use crate::run::Run;

/// A [`Service`] that runs the inner service's response futures as jobs of a [`Pool`], and sheds
/// requests the pool has no room for. Usually made by a [`PoolLayer`](crate::PoolLayer).
///
/// * `poll_ready` is the inner service's: its backpressure passes through unchanged.
/// * `call` calls the inner service on the caller's task, then admits the future it returns as
///   a job with [`Pool::try_run_with`]: when a worker slot is free and nothing is queued, the
///   job runs in the [`ResponseFuture`] itself, on the task that awaits it, holding the slot
///   (no hand-off to a worker); otherwise it is queued for a worker. By default admission fails
///   fast: a full queue sheds the request with [`Overloaded`](crate::Overloaded)
///   ([`ShedReason::QueueFull`]) without waiting. With [`wait`](Self::wait), the response
///   future instead waits up to a timeout for room ([`ShedReason::WaitTimedOut`] after it).
/// * The [`ResponseFuture`] resolves when the job ends; dropping it cancels the job.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{Pool, PoolService};
/// use tower::{ServiceExt, service_fn};
///
/// let pool = Pool::builder().max_workers(8).queue_capacity(100).build().unwrap();
/// let service = PoolService::new(
///     service_fn(|name: &'static str| async move {
///         Ok::<_, std::convert::Infallible>(format!("hello, {name}"))
///     }),
///     pool.clone(),
/// );
/// assert_eq!(service.oneshot("pool").await.unwrap(), "hello, pool");
/// assert_eq!(pool.metrics().completed, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct PoolService<S, C = ()> {
    inner: S,
    pool: Pool,
    wait: Option<Duration>,
    classify: C,
}

/// How a [`PoolService`] picks each request's [`JobOptions`] (its [`Priority`](crate::Priority)
/// and deadline), from the request, before the inner service sees it. Set it with
/// [`PoolLayer::classify`](crate::PoolLayer::classify) or [`PoolService::classify`].
///
/// Implemented for `()` (every request `Normal`, no deadline: the default) and for every
/// `Fn(&Req) -> JobOptions`.
///
/// # Examples
///
/// ```
/// use spillway::{Classify, JobOptions, Priority};
///
/// let by_path = |path: &&str| {
///     if path.starts_with("/checkout") {
///         JobOptions::new().priority(Priority::Critical)
///     } else {
///         JobOptions::new()
///     }
/// };
/// assert_eq!(by_path.classify(&"/checkout/1").get_priority(), Priority::Critical);
/// assert_eq!(Classify::<&str>::classify(&(), &"/checkout/1"), JobOptions::new());
/// ```
pub trait Classify<Req> {
    /// The options of the job that will serve `request`.
    fn classify(&self, request: &Req) -> JobOptions;
}

impl<Req> Classify<Req> for () {
    fn classify(&self, _request: &Req) -> JobOptions {
        JobOptions::new()
    }
}

impl<Req, F> Classify<Req> for F
where
    F: Fn(&Req) -> JobOptions,
{
    fn classify(&self, request: &Req) -> JobOptions {
        self(request)
    }
}

impl<S: fmt::Debug, C> fmt::Debug for PoolService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolService")
            .field("inner", &self.inner)
            .field("pool", &self.pool)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl<S> PoolService<S> {
    /// Wraps `inner`, running its response futures on `pool` and failing fast when the pool's
    /// queue is full.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let service = spillway::PoolService::new(
    ///     tower::service_fn(|()| async { Ok::<_, std::convert::Infallible>(()) }),
    ///     pool,
    /// );
    /// # let _ = service;
    /// # }
    /// ```
    pub fn new(inner: S, pool: Pool) -> Self {
        PoolService {
            inner,
            pool,
            wait: None,
            classify: (),
        }
    }
}

impl<S, C> PoolService<S, C> {
    /// Picks each request's [`JobOptions`] (priority and deadline) with `classify`, instead of
    /// running every request as `Normal` with no deadline. See
    /// [`PoolLayer::classify`](crate::PoolLayer::classify).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use spillway::{JobOptions, Priority};
    /// use tower::ServiceExt;
    ///
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let service = spillway::PoolService::new(
    ///     tower::service_fn(|n: u8| async move { Ok::<_, std::convert::Infallible>(n) }),
    ///     pool.clone(),
    /// )
    /// .classify(|n: &u8| JobOptions::new().priority(if *n > 9 { Priority::High } else { Priority::Low }));
    /// assert_eq!(service.oneshot(10).await.unwrap(), 10);
    /// assert_eq!(pool.metrics().by_priority[Priority::High].completed, 1);
    /// # }
    /// ```
    pub fn classify<C2>(self, classify: C2) -> PoolService<S, C2> {
        PoolService {
            inner: self.inner,
            pool: self.pool,
            wait: self.wait,
            classify,
        }
    }

    /// Instead of failing fast, waits up to `timeout` for room in the queue, then sheds with
    /// [`ShedReason::WaitTimedOut`]. The wait happens in the response future, and its budget
    /// starts at `call`: a response future first polled late waits only for what is left.
    ///
    /// Waiting costs one allocation per request (the wait holds the request's future), which the
    /// fail-fast mode does not.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let service = spillway::PoolService::new(
    ///     tower::service_fn(|()| async { Ok::<_, std::convert::Infallible>(()) }),
    ///     pool,
    /// )
    /// .wait(Duration::from_millis(100));
    /// # let _ = service;
    /// # }
    /// ```
    pub fn wait(mut self, timeout: Duration) -> Self {
        self.wait = Some(timeout);
        self
    }

    /// The inner service.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let service = spillway::PoolService::new(7_u8, pool);
    /// assert_eq!(*service.get_ref(), 7);
    /// # }
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let mut service = spillway::PoolService::new(7_u8, pool);
    /// *service.get_mut() += 1;
    /// assert_eq!(*service.get_ref(), 8);
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let service = spillway::PoolService::new(7_u8, pool);
    /// assert_eq!(service.into_inner(), 7);
    /// # }
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for PoolService<S, C>
where
    C: Classify<Req>,
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let opts = self.classify.classify(&req);
        let job = run(self.inner.call(req));
        match self.wait {
            None => match self.pool.try_run_with(opts, job) {
                Ok(run) => ResponseFuture::admitted(run.boxed()),
                // The shed job is dropped here: the inner future never ran.
                Err(TrySubmitError::Full(_)) => ResponseFuture::shed(ShedReason::QueueFull),
                Err(TrySubmitError::Closed(_)) => ResponseFuture::shed(ShedReason::Closed),
                Err(TrySubmitError::Expired(_)) => ResponseFuture::shed(ShedReason::DeadlinePassed),
            },
            Some(timeout) => {
                let pool = self.pool.clone();
                // The budget starts now, however late the server first polls the response, and
                // never runs past the request's own deadline.
                let deadline = match (
                    Instant::now().checked_add(timeout),
                    opts.get_deadline().map(Instant::from_std),
                ) {
                    (Some(wait), Some(job)) => Some(wait.min(job)),
                    (wait, job) => wait.or(job),
                };
                ResponseFuture::admitting(Box::pin(async move {
                    pool.admit_run_with(job, opts, deadline)
                        .await
                        .map(Run::boxed)
                        .map_err(|error| match error {
                            SubmitTimeoutError::Timeout(_) => ShedReason::WaitTimedOut,
                            SubmitTimeoutError::Closed(_) => ShedReason::Closed,
                        })
                }))
            }
        }
    }
}

/// The job for one request: the inner service's future, its error boxed on the worker.
async fn run<F, T, E>(future: F) -> Result<T, BoxError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    future.await.map_err(Into::into)
}
