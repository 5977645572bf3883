//! How `/work` bounds its concurrency in each mode: nothing, a semaphore, or a spillway pool
//! (with, optionally, a runtime of its own).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use spillway::{BlockingPool, Pool};
use tokio::sync::Semaphore;

use super::{Mode, ServeArgs};

/// The mode's limiter.
#[derive(Debug)]
pub(crate) enum Limiter {
    /// Every request runs at once.
    Naive,
    /// A request first waits, without limit, for one of the permits.
    Semaphore(Arc<Semaphore>),
    /// `/work`'s job is submitted to the pool; what it has no room for is shed.
    Pool {
        pool: Pool,
        /// Wait this long for a queue slot before shedding (`--admission-wait`).
        admission_wait: Option<Duration>,
        /// The CPU lane: runs the jobs' CPU parts (`--cpu-threads`, `--cpu-queue`).
        cpu: BlockingPool,
        /// Keeps the pool's runtime (`--pool-threads`) alive as long as the pool.
        _runtime: PoolRuntime,
    },
}

impl Limiter {
    /// Builds the limiter of `args.mode`.
    ///
    /// # Errors
    ///
    /// Invalid pool settings (naming the flag), or a pool runtime that cannot start.
    pub(crate) fn build(args: &ServeArgs) -> anyhow::Result<Limiter> {
        Ok(match args.mode {
            Mode::Naive => Limiter::Naive,
            Mode::Semaphore => Limiter::Semaphore(Arc::new(Semaphore::new(args.pool.max_workers))),
            Mode::Pool => build_pool(args)?,
        })
    }

    /// The pool, in pool mode.
    pub(crate) fn pool(&self) -> Option<&Pool> {
        match self {
            Limiter::Pool { pool, .. } => Some(pool),
            _ => None,
        }
    }

    /// The CPU lane, in pool mode.
    pub(crate) fn cpu(&self) -> Option<&BlockingPool> {
        match self {
            Limiter::Pool { cpu, .. } => Some(cpu),
            _ => None,
        }
    }

    /// What bounds the concurrency, in words.
    pub(crate) fn describe(&self, args: &ServeArgs) -> String {
        match self {
            Limiter::Naive => "no concurrency limit".to_string(),
            Limiter::Semaphore(_) => {
                format!("{} permits, unbounded wait", args.pool.max_workers)
            }
            Limiter::Pool { cpu, .. } => format!(
                "pool of up to {} workers and a queue of {} under the {} limit, CPU parts on \
                 {} threads with a queue of {}, the rest answered 503",
                args.pool.max_workers,
                args.pool.queue,
                args.limit.name(),
                cpu.metrics().workers,
                args.cpu_queue
            ),
        }
    }
}

fn build_pool(args: &ServeArgs) -> anyhow::Result<Limiter> {
    args.pool.check()?;
    let settings = &args.pool;
    let mut builder = Pool::builder()
        .name("serve")
        .min_workers(settings.min_workers)
        .max_workers(settings.max_workers)
        .queue_capacity(settings.queue)
        .limit(args.limit.clone());
    if let Some(target) = args.queue_target {
        builder = builder.queue_target(target);
    }
    if let Some(timeout) = settings.queue_timeout {
        builder = builder.queue_timeout(timeout);
    }
    if let Some(timeout) = args.run_timeout {
        builder = builder.run_timeout(timeout);
    }
    let runtime = PoolRuntime::start(args.pool_threads)?;
    let mut cpu = BlockingPool::builder()
        .name("serve-cpu")
        .queue_capacity(args.cpu_queue);
    if let Some(threads) = args.cpu_threads {
        cpu = cpu.threads(threads);
    }
    if let Some(handle) = runtime.handle() {
        builder = builder.runtime(handle.clone());
        cpu = cpu.runtime(handle);
    }
    let invalid = |e: spillway::BuildError| {
        anyhow::anyhow!("invalid pool settings: {e} (see --{})", flag(e.setting()))
    };
    Ok(Limiter::Pool {
        pool: builder.build().map_err(invalid)?,
        admission_wait: args.admission_wait,
        cpu: cpu.build().map_err(invalid)?,
        _runtime: runtime,
    })
}

/// The command-line flag of a pool setting.
fn flag(setting: &str) -> String {
    match setting {
        "queue_capacity" => "queue".to_string(),
        "threads" => "cpu-threads".to_string(),
        other => other.replace('_', "-"),
    }
}

/// The pool's own runtime, if it has one. Dropped without blocking, so that a server dropped
/// inside an async context (a test) does not panic.
#[derive(Debug)]
pub(crate) struct PoolRuntime(Option<tokio::runtime::Runtime>);

impl PoolRuntime {
    /// A runtime of `threads` threads; none for 0 (jobs run on the server's runtime).
    fn start(threads: usize) -> anyhow::Result<PoolRuntime> {
        if threads == 0 {
            return Ok(PoolRuntime(None));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("spillway-pool")
            .enable_all()
            .build()
            .context("cannot start the pool's runtime (--pool-threads)")?;
        Ok(PoolRuntime(Some(runtime)))
    }

    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for PoolRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_settings_map_to_their_flags() {
        assert_eq!(flag("queue_capacity"), "queue");
        assert_eq!(flag("max_workers"), "max-workers");
    }
}
