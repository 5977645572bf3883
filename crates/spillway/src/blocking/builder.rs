//! [`BlockingBuilder`]: a [`BlockingPool`]'s settings, validated by the pools' one [`Builder`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::runtime::Handle;

use super::BlockingPool;
use crate::builder::{Builder, MAX_WORKERS};
use crate::error::BuildError;
use crate::limit::Limit;

/// Settings for a [`BlockingPool`], from [`BlockingPool::builder`].
///
/// | setting | default | allowed |
/// |---|---|---|
/// | [`threads`](Self::threads) | available parallelism | 1 to [`MAX_WORKERS`] |
/// | [`queue_capacity`](Self::queue_capacity) | 1,000 | at least 1 |
/// | [`queue_timeout`](Self::queue_timeout) | none | greater than zero |
/// | [`name`](Self::name) | `"blocking"` | not empty |
/// | [`runtime`](Self::runtime) | the current one | a tokio runtime handle |
///
/// There is no adaptive limit and no `queue_target`: a CPU-bound job's best concurrency is the
/// number of cores, known before the first job, and all threads start at `build`. What bounds
/// the latency is the queue: `queue_capacity` (at most `queue_capacity / threads` job lengths of
/// wait) and `queue_timeout` (a job that waited longer ends as expired, unrun).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = spillway::BlockingPool::builder().threads(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "invalid threads = 0: must be from 1 to 100000");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BlockingBuilder {
    threads: Option<usize>,
    inner: Builder,
}

impl Default for BlockingBuilder {
    fn default() -> Self {
        BlockingBuilder {
            threads: None,
            inner: Builder::new().limit(Limit::fixed()).name("blocking"),
        }
    }
}

impl BlockingBuilder {
    /// The defaults; same as [`BlockingPool::builder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// OS threads that run the jobs, all started by `build`. Default: the available parallelism.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Jobs that may wait for a thread; beyond that a submission is shed. Default 1,000.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.inner = self.inner.queue_capacity(n);
        self
    }

    /// A job that waited longer than this for a thread ends as expired, without running.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self.inner.queue_timeout(timeout);
        self
    }

    /// The pool's name, in its metrics and its threads' names. Default `"blocking"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.inner = self.inner.name(name);
        self
    }

    /// The runtime whose tasks hand the jobs to the threads and wake the handles. Default: the
    /// runtime `build` is called from.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.inner = self.inner.runtime(handle);
        self
    }

    /// Checks every setting and starts the pool with all its threads.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting, as [`Builder::build`] does: `threads`
    /// of zero or above [`MAX_WORKERS`], a zero `queue_capacity` or `queue_timeout`, an empty
    /// `name`; or no tokio runtime.
    pub fn build(self) -> Result<BlockingPool, BuildError> {
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
        });
        if !(1..=MAX_WORKERS).contains(&threads) {
            return Err(BuildError::invalid(
                "threads",
                threads,
                format!("must be from 1 to {MAX_WORKERS}"),
            ));
        }
        let (config, runtime) = self
            .inner
            .min_workers(threads)
            .max_workers(threads)
            .prepare()?;
        Ok(BlockingPool::start(
            config,
            runtime,
            Arc::new(AtomicU64::new(0)),
        ))
    }
}
