//! The error a [`PoolService`](crate::PoolService) sheds a request with, and why.

use std::fmt;

/// The boxed error a [`PoolService`](crate::PoolService) returns: the same type as
/// `tower::BoxError` and `axum::BoxError`.
///
/// It holds an [`Overloaded`] when the request was shed, a [`JobError`](crate::JobError) when
/// the inner service's future panicked, or the inner service's own error, unchanged. Tell them
/// apart with `downcast_ref`.
///
/// # Examples
///
/// ```
/// use spillway::{BoxError, Overloaded};
///
/// let err: BoxError = "inner failure".into();
/// assert!(!err.is::<Overloaded>());
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request was shed instead of served.
///
/// # Examples
///
/// ```
/// use spillway::ShedReason;
///
/// assert_eq!(ShedReason::QueueFull.to_string(), "queue full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShedReason {
    /// The pool's queue was full when the request arrived (fail-fast mode).
    QueueFull,
    /// The queue stayed full for the whole wait (wait mode, [`PoolLayer::wait`](crate::PoolLayer::wait)).
    WaitTimedOut,
    /// The pool was closed or shut down.
    Closed,
    /// The request waited in the queue longer than the pool's `queue_timeout` and was not run.
    Expired,
    /// The pool's shutdown deadline passed before the request finished.
    Abandoned,
    /// The queue was full and a request of higher [priority](crate::Priority) took this one's
    /// place before it ran.
    Displaced,
    /// The request's deadline (set by [`PoolLayer::classify`](crate::PoolLayer::classify)) had
    /// passed already when it arrived.
    DeadlinePassed,
}

impl fmt::Display for ShedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShedReason::QueueFull => "queue full",
            ShedReason::WaitTimedOut => "queue full until the wait timed out",
            ShedReason::Closed => "pool closed",
            ShedReason::Expired => "expired in the queue",
            ShedReason::Abandoned => "abandoned at shutdown",
            ShedReason::Displaced => "displaced by a request of higher priority",
            ShedReason::DeadlinePassed => "deadline already passed",
        })
    }
}

/// The request was shed: the pool could not (or can no longer) run it.
///
/// A [`PoolService`](crate::PoolService) returns it boxed in a [`BoxError`]; find it with
/// `err.is::<Overloaded>()` or `err.downcast_ref::<Overloaded>()` and answer, say, `503 Service
/// Unavailable` with a `retry-after` header.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{Overloaded, Pool, PoolService, ShedReason};
/// use tower::{ServiceExt, service_fn};
///
/// let pool = Pool::builder().build().unwrap();
/// pool.close();
/// let echo = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
/// let service = PoolService::new(echo, pool);
///
/// let err = service.oneshot(1).await.unwrap_err();
/// let overloaded = err.downcast_ref::<Overloaded>().expect("shed");
/// assert_eq!(overloaded.reason(), ShedReason::Closed);
/// assert_eq!(overloaded.to_string(), "service overloaded: pool closed");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overloaded {
    reason: ShedReason,
}

impl Overloaded {
    pub(crate) fn new(reason: ShedReason) -> Self {
        Overloaded { reason }
    }

    /// Why the request was shed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use spillway::{Overloaded, Pool, PoolService, ShedReason};
    /// # use tower::{ServiceExt, service_fn};
    /// # let pool = Pool::builder().build().unwrap();
    /// # pool.close();
    /// # let unit = service_fn(|()| async { Ok::<_, std::convert::Infallible>(()) });
    /// # let service = PoolService::new(unit, pool);
    /// let err = service.oneshot(()).await.unwrap_err();
    /// match err.downcast_ref::<Overloaded>().map(Overloaded::reason) {
    ///     Some(ShedReason::Closed) => { /* shutting down: answer 503 and close the connection */ }
    ///     Some(_) => { /* busy: answer 503 with retry-after */ }
    ///     None => unreachable!("a closed pool sheds everything"),
    /// }
    /// # }
    /// ```
    pub fn reason(&self) -> ShedReason {
        self.reason
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service overloaded: {}", self.reason)
    }
}

impl std::error::Error for Overloaded {}
