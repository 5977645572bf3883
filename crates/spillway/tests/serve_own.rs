//! An awaited `JobHandle` runs its own job when it is still queued and a worker slot is free
//! ("served by its handle"), in the order a worker would have served it.

use std::time::Duration;

use spillway::{JobError, Limit, Pool, Priority};

/// A runtime that is never driven: the pool's workers, tasks on it, never run. (Also the
/// caller's runtime in these tests: a runtime cannot be dropped inside another.)
fn idle_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A pool whose workers never run: only handles can run its jobs.
fn stalled_pool(runtime: &tokio::runtime::Runtime) -> Pool {
    Pool::builder()
        .limit(Limit::fixed())
        .max_workers(2)
        .queue_capacity(8)
        .runtime(runtime.handle().clone())
        .build()
        .unwrap()
}

#[test]
fn a_handle_whose_job_no_worker_runs_runs_it_itself() {
    let idle = idle_runtime();
    let pool = stalled_pool(&idle);
    idle_runtime().block_on(async {
        let handle = pool.try_submit(async { 6 * 7 }).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), handle).await;
        assert_eq!(result, Ok(Ok(42)), "the handle ran its own job");
        let m = pool.metrics();
        assert_eq!((m.completed, m.busy, m.queued), (1, 0, 0));
        assert_eq!(m.unaccounted(), 0);
    });
}

#[test]
fn a_handle_does_not_go_ahead_of_a_job_a_worker_would_serve_first() {
    let idle = idle_runtime();
    let pool = stalled_pool(&idle);
    idle_runtime().block_on(async {
        let low = pool.try_submit_with(Priority::Low, async { 1 }).unwrap();
        let high = pool.try_submit_with(Priority::High, async { 2 }).unwrap();
        let mut low = Box::pin(low);
        let waited = tokio::time::timeout(Duration::from_millis(50), low.as_mut()).await;
        assert!(waited.is_err(), "a higher job is queued: the low one waits");
        assert_eq!(high.await, Ok(2));
        assert_eq!(low.await, Ok(1), "now it is next");
        let m = pool.metrics();
        assert_eq!((m.completed, m.unaccounted()), (2, 0));
    });
}

#[test]
fn a_job_its_handle_started_goes_on_alone_and_a_dropped_handle_cancels_it() {
    let pool_runtime = idle_runtime();
    let pool = stalled_pool(&pool_runtime);
    let caller = idle_runtime();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel();
    let handle = pool
        .try_submit(async move {
            let _ = wait.await;
            let _ = done.send(());
            std::future::pending::<()>().await;
        })
        .unwrap();
    let mut handle = Box::pin(handle);
    caller.block_on(async {
        let first = tokio::time::timeout(Duration::from_millis(20), handle.as_mut()).await;
        assert!(first.is_err(), "the job waits");
    });
    assert_eq!(
        pool.metrics().busy,
        1,
        "it holds a worker slot while it runs"
    );
    go.send(()).unwrap();
    // The job goes on in a task of its own on the pool's runtime, without its handle polled.
    pool_runtime.block_on(async {
        let reached = tokio::time::timeout(Duration::from_secs(5), finished).await;
        assert_eq!(reached, Ok(Ok(())), "the job went on without its handle");
    });
    drop(handle);
    pool_runtime.block_on(async {
        for _ in 0..100 {
            if pool.metrics().busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let m = pool.metrics();
    assert_eq!((m.busy, m.cancelled, m.unaccounted()), (0, 1, 0));
}

#[test]
fn a_job_run_by_its_handle_past_its_deadline_expires() {
    let idle = idle_runtime();
    let pool = stalled_pool(&idle);
    idle_runtime().block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_millis(10);
        let opts = spillway::JobOptions::new().deadline(deadline);
        let handle = pool.try_submit_with(opts, async { 1 }).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(handle.await, Err(JobError::Expired));
        let m = pool.metrics();
        assert_eq!((m.expired, m.busy, m.unaccounted()), (1, 0, 0));
    });
}
