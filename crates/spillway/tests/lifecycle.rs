//! Worker lifecycle and shutdown through the public API: a lost runtime, panicking drops, a
//! dropped shutdown, the cooldown and the size limits (issue 18's defects 1, 2, 3, 4, 8, 10).

use std::future::{Future, pending};
use std::pin::pin;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use spillway::{JobError, JobHandle, Pool};

/// Runs `f` on its own thread and fails the test if it has not returned within ten seconds: a
/// hang, or a busy loop that never yields (which no `tokio::time::timeout` can interrupt).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(Duration::from_secs(10))
        .expect("hung or spinning for 10 s")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A pool with one worker blocked on a job that never ends, so queued jobs stay queued.
async fn blocked_pool(queue: usize) -> (Pool, JobHandle<()>) {
    let pool = Pool::builder()
        .max_workers(1)
        .queue_capacity(queue)
        .build()
        .unwrap();
    let blocker = pool.try_submit(pending::<()>()).unwrap();
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    (pool, blocker)
}

/// Panics when dropped (unless already unwinding).
struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("planned: a job's future panics when dropped");
        }
    }
}

/// A job that never ends and panics when dropped.
fn bomb_job() -> impl Future<Output = ()> + Send + 'static {
    let bomb = Bomb;
    async move {
        pending::<()>().await;
        drop(bomb);
    }
}

// ---- defect 1: the runtime is gone ----

#[test]
fn a_pool_whose_runtime_is_gone_refuses_work_and_shuts_down_in_time() {
    for min_workers in [0, 1, 2] {
        let rt = current_thread();
        let pool = Pool::builder()
            .runtime(rt.handle().clone())
            .min_workers(min_workers)
            .max_workers(2)
            .build()
            .unwrap();
        // Queued, never run: nobody drives `rt`.
        let queued = pool.try_submit(async { 1 }).unwrap();
        drop(rt);
        let m = within_10s(move || {
            current_thread().block_on(async {
                assert_eq!(queued.await, Err(JobError::Abandoned), "{min_workers}");
                let refused = pool.try_submit(async {}).unwrap_err();
                assert!(refused.is_closed(), "min_workers {min_workers}");
                let report = pool.shutdown(Duration::from_millis(100)).await;
                assert!(report.elapsed < Duration::from_secs(5), "{report:?}");
                pool.metrics()
            })
        });
        assert_eq!(
            (m.workers, m.queued, m.abandoned, m.unaccounted()),
            (0, 0, 1, 0),
            "min_workers {min_workers}: {m:?}"
        );
    }
}

#[test]
fn a_submission_after_the_runtime_went_away_idle_resolves() {
    // No worker alive when the runtime goes: the loss is found by the next submission.
    let rt = current_thread();
    let pool = Pool::builder()
        .runtime(rt.handle().clone())
        .min_workers(0)
        .build()
        .unwrap();
    drop(rt);
    let m = within_10s(move || {
        current_thread().block_on(async {
            match pool.try_submit(async { 1 }) {
                Ok(handle) => assert_eq!(handle.await, Err(JobError::Abandoned)),
                Err(refused) => assert!(refused.is_closed()),
            }
            assert!(pool.try_submit(async {}).unwrap_err().is_closed());
            let report = pool.shutdown(Duration::from_millis(100)).await;
            assert!(report.elapsed < Duration::from_secs(5), "{report:?}");
            pool.metrics()
        })
    });
    assert_eq!((m.workers, m.queued, m.unaccounted()), (0, 0, 0), "{m:?}");
}

// ---- defect 2: a queued job panics when dropped ----

#[tokio::test]
async fn a_queued_job_that_panics_when_dropped_is_abandoned_with_the_rest() {
    let (pool, blocker) = blocked_pool(3).await;
    let queued = [
        pool.try_submit(bomb_job()).unwrap(),
        pool.try_submit(bomb_job()).unwrap(),
        pool.try_submit(pending::<()>()).unwrap(),
    ];
    let shutdown = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.shutdown(Duration::ZERO).await })
    };
    let report = shutdown.await.expect("shutdown must not panic");
    assert_eq!((report.abandoned, report.timed_out), (4, true));
    assert_eq!(blocker.await, Err(JobError::Abandoned));
    for handle in queued {
        assert_eq!(handle.await, Err(JobError::Abandoned));
    }
    let m = pool.metrics();
    assert_eq!(
        (m.workers, m.queued, m.abandoned, m.unaccounted()),
        (0, 0, 4, 0)
    );
}

// ---- defect 3: never queued work with no worker ----

#[tokio::test(start_paused = true)]
async fn the_last_worker_retiring_never_strands_a_job_under_a_cooldown() {
    let pool = Pool::builder()
        .min_workers(0)
        .max_workers(2)
        .idle_timeout(Duration::from_millis(10))
        .scale_up_cooldown(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert_eq!(pool.submit(async { 1 }).await.unwrap().await, Ok(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.metrics().workers, 0, "the only worker retired");
    let handle = pool.submit(async { 2 }).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), handle).await;
    assert_eq!(result.expect("stranded with no worker"), Ok(2));
}

// ---- defect 4: a dropped shutdown ----

#[tokio::test(start_paused = true)]
async fn a_dropped_shutdown_still_abandons_the_queued_jobs() {
    let (pool, blocker) = blocked_pool(2).await;
    let queued = [
        pool.try_submit(pending::<()>()).unwrap(),
        pool.try_submit(pending::<()>()).unwrap(),
    ];
    {
        // One poll gets it past its (zero) deadline, to the point where the workers are
        // stopped and it waits for them; then it is dropped.
        let mut shutdown = pin!(pool.shutdown(Duration::ZERO));
        let first = std::future::poll_fn(|cx| Poll::Ready(shutdown.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "the shutdown finished in one poll");
    }
    let results = tokio::time::timeout(Duration::from_secs(60), async {
        let blocked = blocker.await;
        let [a, b] = queued;
        (blocked, a.await, b.await)
    })
    .await
    .expect("queued handles never resolved");
    let abandoned = Err(JobError::Abandoned);
    assert_eq!(results, (abandoned.clone(), abandoned.clone(), abandoned));
    let m = pool.metrics();
    assert_eq!((m.workers, m.queued, m.unaccounted()), (0, 0, 0));
}

// ---- defect 8: sizes a pool cannot honour ----

#[tokio::test]
async fn sizes_beyond_the_documented_maximum_are_refused_by_name() {
    let err = Pool::builder()
        .min_workers(usize::MAX)
        .max_workers(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "max_workers");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid max_workers = {}: must be from 1 to {}",
            usize::MAX,
            spillway::MAX_WORKERS
        )
    );
    let err = Pool::builder()
        .max_workers(spillway::MAX_WORKERS + 1)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "max_workers");
}

#[tokio::test]
async fn the_largest_pool_accepted_starts_and_shuts_down() {
    // Fixed: a moving limit would start only as many as it lets run.
    let pool = Pool::builder()
        .limit(spillway::Limit::fixed())
        .min_workers(0)
        .max_workers(spillway::MAX_WORKERS)
        .scale_up_threshold(0.0)
        .build()
        .unwrap();
    let handle = pool.try_submit(async { 1 }).unwrap();
    assert_eq!(pool.metrics().workers, spillway::MAX_WORKERS);
    assert_eq!(handle.await, Ok(1));
    let report = pool.shutdown(Duration::from_secs(30)).await;
    assert!(!report.timed_out);
    assert_eq!(pool.metrics().workers, 0);
}

// ---- defect 10: the cooldown starts with the first growth ----

#[tokio::test]
async fn the_cooldown_starts_with_the_first_growth_not_the_start() {
    let pool = Pool::builder()
        .min_workers(1)
        .max_workers(4)
        .scale_up_threshold(1.0)
        .scale_up_cooldown(Duration::from_secs(3600))
        .build()
        .unwrap();
    // Nothing has run yet (no await): the one worker has not even taken a job.
    let _first = pool.try_submit(pending::<()>()).unwrap();
    let _second = pool.try_submit(pending::<()>()).unwrap();
    assert_eq!(pool.metrics().workers, 2, "a burst right after build grows");
    let _third = pool.try_submit(pending::<()>()).unwrap();
    assert_eq!(pool.metrics().workers, 2, "then the cooldown holds growth");
}

// ---- issue 14: an abort racing a shutdown's deadline ----

/// A running job whose handle was aborted is stopped by a shutdown before its worker polls it
/// again (the deadline passed first). The handle already reported `Cancelled`, so the pool counts
/// it cancelled too, never abandoned. (The accounting property test on threads found this race:
/// "a handle reports Cancelled but the pool counted 0 cancelled".)
#[tokio::test(start_paused = true)]
async fn an_aborted_running_job_stopped_by_shutdown_is_counted_cancelled() {
    let (pool, running) = blocked_pool(1).await;
    running.abort();
    // No yield in between: the worker, woken by the abort, is stopped before it runs again.
    let report = pool.shutdown(Duration::ZERO).await;
    assert_eq!(running.await, Err(JobError::Cancelled));
    let m = pool.metrics();
    assert_eq!((m.cancelled, m.abandoned, m.unaccounted()), (1, 0, 0));
    assert_eq!((report.drained, report.abandoned), (1, 0));
}
