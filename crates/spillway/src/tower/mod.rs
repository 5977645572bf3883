//! Tower integration (feature `tower`): run a service's requests on a [`Pool`](crate::Pool) and
//! shed the overload.
//!
//! [`PoolLayer`](crate::PoolLayer) wraps any `tower` service (an axum `Router`, a hyper service,
//! a tonic server...) in a [`PoolService`](crate::PoolService). Each request is handed to the
//! inner service on the caller's task, and the future it returns becomes a pool job (run by the
//! response future itself when a worker slot is free, see
//! [`Pool::try_run`](crate::Pool::try_run)): at most the pool's concurrency limit (adaptive by
//! default, never above `max_workers`) run and at most `queue_capacity` wait in the queue,
//! whatever the traffic. (In [`wait`](crate::PoolLayer::wait) mode, requests waiting for a queue
//! slot are outside the queue: they are bounded only by the callers and connections.)
//!
//! * **Backpressure in `poll_ready`**: it is the inner service's, passed through.
//! * **Shedding in `call`**: a request the pool has no room for resolves to an
//!   [`Overloaded`](crate::Overloaded) error at once (or after a bounded wait, with
//!   [`PoolLayer::wait`](crate::PoolLayer::wait)), without running the inner future. Requests
//!   that expire in the queue (`queue_timeout`) or are abandoned by a shutdown are shed the same
//!   way. Each [`ShedReason`](crate::ShedReason) says which. A request that ran past the
//!   pool's [`run_timeout`](crate::Builder::run_timeout) was not shed: it resolves to
//!   [`JobError::TimedOut`](crate::JobError::TimedOut).
//! * **Capacity released on drop**: the job's handle lives in the
//!   [`ResponseFuture`](crate::ResponseFuture); when a client disconnects and the server drops
//!   it, the request is cancelled, queued or running, and its slot is freed.
//!
//! Errors are a [`BoxError`](crate::BoxError), as in tower: an `Overloaded` (answer 503), a
//! [`JobError::Panicked`](crate::JobError::Panicked) if the inner future panicked (answer 500),
//! or the inner service's own error, unchanged.
//!
//! See [`PoolLayer`](crate::PoolLayer) for examples with tower, axum and hyper.

mod error;
mod future;
mod layer;
mod service;

pub use self::error::{BoxError, Overloaded, ShedReason};
pub use self::future::ResponseFuture;
pub use self::layer::PoolLayer;
pub use self::service::{Classify, PoolService};
