//! A bounded, adaptive worker pool for tokio that sheds load explicitly.
//!
//! A spillway lets a dam shed water it cannot hold instead of breaking. `spillway` lets a service
//! shed work it cannot finish instead of eating memory until the OS kills it: jobs go through a
//! bounded queue to a bounded, adaptive set of worker tasks, and when both are full a submission
//! is refused at once (or waits, with a deadline if you like) and the job is handed back to you.
//!
//! * **Bounded**: at most `queue_capacity` jobs wait and at most `max_workers` run.
//! * **Adaptive limit** (the default, [`Limit::adaptive`]): the pool finds by itself how many
//!   jobs may run at once, the point past which more in flight no longer bring more throughput,
//!   and follows it as the machine and the services downstream change; while saturated it keeps
//!   the queue to what completes within [`Builder::queue_target`] (5 ms) and sheds the rest as
//!   `Full`. `max_workers` (default 10,000) and `queue_capacity` (default 10,000) are then only
//!   memory-safety ceilings, so `Pool::builder().build()` suits I/O-bound and CPU-bound jobs
//!   alike; [`Limit::fixed`] keeps `max_workers` as the limit. The limit is in
//!   [`Snapshot::limit`].
//! * **Adaptive workers**: workers start as soon as queued jobs find none idle (never more than
//!   the limit lets run), and retire after `idle_timeout`; the scaling policy is a pure function
//!   ([`Builder::scale_up_threshold`]).
//! * **Explicit backpressure**: [`Pool::try_submit`] fails fast without allocating, and never while
//!   there is room; [`Pool::submit`] and [`Pool::submit_timeout`] wait.
//! * **Run where you await**: [`Pool::run`] (waiting for room) and [`Pool::try_run`] (failing
//!   fast) admit a job whose result the caller awaits anyway; when a worker slot is free and
//!   nothing is queued it runs on the caller's own task, with no hand-off to a worker (cheaper
//!   than a `tokio::spawn`), and otherwise it is queued like any job. Either way it counts
//!   busy, stays within the limit, and ends in one counted outcome like a worker's job.
//! * **Typed results and cancellation**: a [`JobHandle`] resolves to the job's value or a
//!   [`JobError`]; dropping it cancels the job, [`JobHandle::detach`] lets it run on.
//! * **Panic isolation**: a panicking job is reported to its handle; its worker keeps serving.
//! * **Accounted shutdown**: [`Pool::shutdown`] drains until a deadline, then abandons, and reports
//!   both counts; every admitted job ends in exactly one counted outcome ([`Snapshot`]).
//! * **Run deadlines**: with [`Builder::run_timeout`], a job that never finishes does not hold
//!   its worker forever: still running at the deadline, it is dropped at its next await and ends
//!   as [`JobError::TimedOut`].
//! * **Metrics**: [`Pool::metrics`] gives counters and latency percentiles (queue wait, run time,
//!   and the total the caller waits); with the `prometheus` feature (default)
//!   [`Pool::register_metrics`] (one pool) or [`PoolMetrics`] (several pools in one registry)
//!   export them through `prometheus-client`.
//! * **Priorities and deadlines**: [`Pool::try_submit_with`] and [`Pool::submit_with`] take
//!   [`JobOptions`]: a [`Priority`] (`Critical`, `High`, `Normal`, `Low`) and a deadline. Under
//!   overload higher priorities are served first and shed last: a full queue lets a job displace
//!   the newest queued job of the lowest lower priority ([`JobError::Displaced`]); one dequeue in
//!   16 goes to waiting lower work, so it is never starved; a job offered alone at one priority
//!   has the whole capacity. A job still queued at its deadline ends as [`JobError::Expired`]
//!   without running; one whose deadline has passed at submission is refused at once.
//!   [`Snapshot::by_priority`] counts every outcome per priority. (The design and the failure
//!   modes it is argued against are in the source, `queue.rs`.)
//! * **CPU-heavy work**: [`BlockingPool`] runs `FnOnce() -> T` closures on a bounded set of
//!   dedicated OS threads (one per core by default), with the same admission, [`JobHandle`]s
//!   (awaited, or [`JobHandle::wait`]ed from sync code), metrics and shutdown report; unlike
//!   `spawn_blocking` or `rayon::spawn`, it sheds what does not fit.
//! * **Tower**: with the `tower` feature, `PoolLayer` runs a `tower` service's requests (axum,
//!   hyper, tonic...) as jobs and sheds the overload with an `Overloaded` error;
//!   `PoolLayer::classify` gives each request its priority and deadline.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use spillway::{Pool, TrySubmitError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pool = Pool::builder()
//!     .max_workers(64)
//!     .queue_capacity(1_000)
//!     .queue_timeout(Duration::from_millis(500))
//!     .build()
//!     .expect("valid settings");
//!
//! let handle = match pool.try_submit(async { 2 + 2 }) {
//!     Ok(handle) => handle,
//!     Err(TrySubmitError::Full(_job)) => return, // shed: answer "busy", retry later...
//!     Err(TrySubmitError::Closed(_job)) => return,
//!     Err(TrySubmitError::Expired(_job)) => return, // only with a deadline
//! };
//! assert_eq!(handle.await, Ok(4));
//!
//! let report = pool.shutdown(Duration::from_secs(5)).await;
//! assert_eq!(report.abandoned, 0);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod blocking;
mod builder;
mod config;
mod error;
mod handoff;
mod job;
mod limit;
mod metrics;
mod pool;
mod priority;
#[cfg(feature = "prometheus")]
mod prometheus;
mod queue;
mod run;
mod scaler;
mod state;
mod sync;
#[cfg(feature = "tower")]
mod tower;
mod worker;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use self::tower::{
    BoxError, Classify, Overloaded, PoolLayer, PoolService, ResponseFuture, ShedReason,
};
pub use blocking::{BlockingBuilder, BlockingPool};
pub use builder::{Builder, MAX_WORKERS};
pub use error::{BuildError, JobError, RunError, SubmitError, SubmitTimeoutError, TrySubmitError};
pub use job::JobHandle;
pub use limit::{Adaptive, Aimd, Gradient2, Limit, Vegas};
pub use metrics::{ByPriority, Latency, PriorityCounts, Snapshot};
pub use pool::{Pool, ShutdownReport};
pub use priority::{JobOptions, ParsePriorityError, Priority};
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use prometheus::PoolMetrics;
pub use run::Run;

/// The README's examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "tower"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
