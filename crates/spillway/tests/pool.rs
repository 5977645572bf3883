//! Behaviour of the pool through its public API.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use spillway::{JobError, Pool, SubmitTimeoutError, TrySubmitError};
use tokio::sync::oneshot;

use support::DropFlag;

/// A pool with one worker blocked on a job that never ends, so queued jobs stay queued.
async fn blocked_pool(queue: usize) -> (Pool, spillway::JobHandle<()>) {
    support::blocked_pool(Pool::builder().queue_capacity(queue)).await
}

#[tokio::test]
async fn try_submit_admits_exactly_the_capacity_and_returns_the_rest() {
    let (pool, _blocker) = blocked_pool(5).await;
    let handles: Vec<_> = (0..5)
        .map(|i| {
            pool.try_submit(async move { i })
                .expect("room in the queue")
        })
        .collect();
    let refused = pool.try_submit(async { 99 }).unwrap_err();
    assert!(matches!(refused, TrySubmitError::Full(_)));
    assert_eq!(format!("{refused:?}"), "Full(..)");
    assert_eq!(refused.to_string(), "queue full");
    assert_eq!(
        refused.into_inner().await,
        99,
        "the shed job comes back intact"
    );
    let m = pool.metrics();
    assert_eq!((m.queued, m.submitted, m.shed_full), (5, 6, 1));
    drop(handles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_rejects_while_there_is_room_under_contention() {
    // Capacity is large enough for every submission: any refusal would be spurious. A fixed
    // limit: the queue's own capacity is what is tested, not an adaptive bound below it.
    let pool = Pool::builder()
        .limit(spillway::Limit::fixed())
        .max_workers(2)
        .queue_capacity(40_000)
        .build()
        .unwrap();
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut handles = Vec::with_capacity(10_000);
                for _ in 0..10_000 {
                    handles.push(pool.try_submit(async {}).expect("spurious rejection"));
                }
                for h in handles {
                    h.await.unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    // A handle resolves just before its worker counts the outcome: on two threads, read the
    // counts once the workers are gone.
    let report = pool.shutdown(Duration::from_secs(10)).await;
    let m = pool.metrics();
    assert_eq!((m.submitted, m.completed, m.shed()), (40_000, 40_000, 0));
    assert_eq!((m.unaccounted(), report.abandoned), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_shedding_accounts_for_every_attempt() {
    let pool = Pool::builder()
        .max_workers(4)
        .queue_capacity(16)
        .build()
        .unwrap();
    let attempts = 4 * 5_000;
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut admitted = 0u64;
                for _ in 0..5_000 {
                    match pool.try_submit(tokio::task::yield_now()) {
                        Ok(h) => {
                            h.detach();
                            admitted += 1;
                        }
                        Err(e) => assert!(e.is_full()),
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for p in producers {
        admitted += p.await.unwrap();
    }
    let report = pool.shutdown(Duration::from_secs(10)).await;
    let m = pool.metrics();
    assert_eq!(m.submitted, admitted);
    assert_eq!(m.submitted + m.shed_full, attempts);
    assert_eq!(m.completed, admitted);
    assert_eq!((m.unaccounted(), report.abandoned, m.workers), (0, 0, 0));
}

#[tokio::test]
async fn submit_waits_for_room() {
    let (pool, blocker) = blocked_pool(1).await;
    let first = pool.submit(async { 1 }).await.unwrap();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.submit(async { 2 }).await.unwrap().await })
    };
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "the queue is full: submit must wait"
    );
    blocker.abort(); // frees the worker, which takes `first`, which frees a slot
    assert_eq!(first.await, Ok(1));
    assert_eq!(waiting.await.unwrap(), Ok(2));
    assert_eq!(pool.metrics().shed(), 0);
}

#[tokio::test]
async fn submit_timeout_hands_the_job_back() {
    let (pool, _blocker) = blocked_pool(1).await;
    let _queued = pool.submit(async {}).await.unwrap();
    let err = pool
        .submit_timeout(async { "mine" }, Duration::from_millis(20))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitTimeoutError::Timeout(_)));
    assert_eq!(err.into_inner().await, "mine");
    assert_eq!(pool.metrics().shed_full, 1);
}

#[tokio::test]
async fn waiting_submitters_learn_of_close() {
    let (pool, _blocker) = blocked_pool(1).await;
    let _queued = pool.submit(async {}).await.unwrap();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.submit(async { 5 }).await.map(drop) })
    };
    tokio::task::yield_now().await;
    pool.close();
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(err.into_inner().await, 5);
    assert_eq!(pool.metrics().shed_closed, 1);
}

#[tokio::test]
async fn dropping_the_handle_of_a_queued_job_means_it_never_runs() {
    let (pool, blocker) = blocked_pool(1).await;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let handle = pool
        .try_submit(async move { flag.store(true, Ordering::SeqCst) })
        .unwrap();
    drop(handle);
    blocker.abort();
    pool.shutdown(Duration::from_secs(5)).await;
    assert!(!ran.load(Ordering::SeqCst));
    let m = pool.metrics();
    assert_eq!((m.cancelled, m.completed, m.unaccounted()), (2, 0, 0));
}

#[tokio::test]
async fn dropping_the_handle_of_a_running_job_drops_it_promptly() {
    let pool = Pool::builder().max_workers(1).build().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(dropped.clone());
    let handle = pool
        .try_submit(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        })
        .unwrap();
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    drop(handle);
    // The job is never woken by its own future; the handle's drop must wake it.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the running job was not cancelled");
    // And the worker is free for the next job.
    assert_eq!(pool.submit(async { 3 }).await.unwrap().await, Ok(3));
    assert_eq!(pool.metrics().cancelled, 1);
}

#[tokio::test]
async fn a_detached_job_outlives_its_submitter() {
    let pool = Pool::builder().build().unwrap();
    let (tx, rx) = oneshot::channel();
    // The submitting task ends long before the job does.
    tokio::spawn({
        let pool = pool.clone();
        async move {
            let job = async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send("finished").unwrap();
            };
            pool.submit(job).await.unwrap().detach();
        }
    })
    .await
    .unwrap();
    assert_eq!(rx.await, Ok("finished"));
    assert_eq!(pool.metrics().completed, 1);
}

#[tokio::test]
async fn abort_resolves_the_handle_at_once() {
    let (pool, _blocker) = blocked_pool(2).await;
    let handle = pool.try_submit(async { 1 }).unwrap();
    assert!(!handle.is_finished());
    handle.abort();
    assert!(handle.is_finished());
    assert_eq!(handle.await, Err(JobError::Cancelled));
}

#[tokio::test]
async fn a_panic_is_reported_and_the_worker_keeps_serving() {
    let pool = Pool::builder().max_workers(1).build().unwrap();
    let err = pool
        .submit(async { panic!("job {} failed", 7) })
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err, JobError::Panicked("job 7 failed".into()));
    assert_eq!(err.panic_message(), Some("job 7 failed"));
    assert_eq!(
        pool.submit(async { "alive" }).await.unwrap().await,
        Ok("alive")
    );
    let m = pool.metrics();
    assert_eq!((m.panicked, m.completed, m.workers), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_job_that_waited_too_long_expires_without_running() {
    let pool = Pool::builder()
        .max_workers(1)
        .queue_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let slow = pool
        .submit(tokio::time::sleep(Duration::from_millis(50)))
        .await
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let late = pool
        .submit(async move { flag.store(true, Ordering::SeqCst) })
        .await
        .unwrap();
    assert_eq!(slow.await, Ok(()));
    assert_eq!(late.await, Err(JobError::Expired));
    assert!(!ran.load(Ordering::SeqCst));
    let m = pool.metrics();
    assert_eq!((m.expired, m.completed), (1, 1));
    assert!(m.queue_wait.max >= Duration::from_millis(49));
}

#[tokio::test(start_paused = true)]
async fn latency_counts_the_time_spent_queued() {
    let pool = Pool::builder().max_workers(1).build().unwrap();
    // `async` blocks, so that each sleep starts when its job starts, not when it is submitted.
    let job = || async { tokio::time::sleep(Duration::from_millis(30)).await };
    let a = pool.submit(job()).await.unwrap();
    let b = pool.submit(job()).await.unwrap();
    a.await.unwrap();
    b.await.unwrap();
    let m = pool.metrics();
    assert_eq!(m.total.count, 2);
    // The job body never takes much more than 30 ms, but the second job waited ~30 ms first.
    assert!(m.run_time.max < Duration::from_millis(40));
    assert!(m.total.max >= Duration::from_millis(59), "{:?}", m.total);
    assert!(m.queue_wait.max >= Duration::from_millis(29));
}

#[tokio::test]
async fn shutdown_drains_queued_work() {
    let pool = Pool::builder()
        .max_workers(2)
        .queue_capacity(100)
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let done = done.clone();
        pool.try_submit(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            done.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap()
        .detach();
    }
    let report = pool.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        (report.drained, report.abandoned, report.timed_out),
        (20, 0, false)
    );
    assert_eq!(done.load(Ordering::SeqCst), 20);
    let m = pool.metrics();
    assert_eq!((m.workers, m.busy, m.queued, m.unaccounted()), (0, 0, 0, 0));
    assert!(pool.try_submit(async {}).unwrap_err().is_closed());
}

#[tokio::test(start_paused = true)]
async fn shutdown_deadline_abandons_running_and_queued_jobs() {
    let (pool, blocker) = blocked_pool(3).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(dropped.clone());
    let queued: Vec<_> = (0..3).map(|_| pool.try_submit(async {}).unwrap()).collect();
    let detached = pool
        .try_submit(async move {
            let _guard = guard;
        })
        .unwrap_err(); // queue full: this one was never admitted
    drop(detached);
    let report = pool.shutdown(Duration::from_millis(100)).await;
    assert!(report.timed_out);
    assert_eq!((report.drained, report.abandoned), (0, 4));
    assert_eq!(blocker.await, Err(JobError::Abandoned));
    for h in queued {
        assert_eq!(h.await, Err(JobError::Abandoned));
    }
    assert!(dropped.load(Ordering::SeqCst));
    let m = pool.metrics();
    assert_eq!((m.workers, m.busy, m.queued), (0, 0, 0));
    assert_eq!((m.abandoned, m.unaccounted()), (4, 0));
}

#[tokio::test]
async fn dropping_every_pool_clone_drains_detached_work() {
    let pool = Pool::builder().build().unwrap();
    let (tx, rx) = oneshot::channel();
    pool.submit(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(()).unwrap();
    })
    .await
    .unwrap()
    .detach();
    drop(pool);
    assert_eq!(rx.await, Ok(()));
}

#[tokio::test]
async fn a_step_to_overload_starts_max_workers_at_once() {
    let pool = Pool::builder()
        .min_workers(1)
        .max_workers(64)
        .queue_capacity(1_000)
        .build()
        .unwrap();
    assert_eq!(pool.metrics().workers, 1);
    let handles: Vec<_> = (0..500)
        .map(|_| {
            pool.try_submit(tokio::time::sleep(Duration::from_millis(10)))
                .unwrap()
        })
        .collect();
    // Growth is decided by the submitters themselves: no tick, no cooldown to wait for.
    assert_eq!(pool.metrics().workers, 64);
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn idle_workers_retire_down_to_the_minimum() {
    let pool = Pool::builder()
        .min_workers(2)
        .max_workers(8)
        .idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..32)
        .map(|_| {
            pool.try_submit(tokio::time::sleep(Duration::from_millis(5)))
                .unwrap()
        })
        .collect();
    assert_eq!(pool.metrics().workers, 8);
    for h in handles {
        h.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.metrics().workers, 8, "not idle for long enough yet");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pool.metrics().workers, 2);
    // And it grows again on demand.
    let again: Vec<_> = (0..16)
        .map(|_| {
            pool.try_submit(tokio::time::sleep(Duration::from_millis(5)))
                .unwrap()
        })
        .collect();
    assert_eq!(pool.metrics().workers, 8);
    drop(again);
}

#[tokio::test]
async fn min_workers_zero_starts_on_demand() {
    let pool = Pool::builder()
        .min_workers(0)
        .max_workers(2)
        .build()
        .unwrap();
    assert_eq!(pool.metrics().workers, 0);
    assert_eq!(pool.submit(async { 1 }).await.unwrap().await, Ok(1));
}

#[test]
fn build_without_a_runtime_is_an_error_not_a_panic() {
    let err = Pool::builder().build().unwrap_err();
    assert_eq!(err.setting(), "runtime");
    assert!(err.to_string().starts_with("no tokio runtime"));
}

#[test]
fn build_with_an_explicit_runtime_works_from_outside() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder()
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let handle = pool.try_submit(async { 40 + 2 }).unwrap();
    assert_eq!(rt.block_on(handle), Ok(42));
}

#[cfg(feature = "prometheus")]
#[tokio::test]
async fn prometheus_export_is_registered_and_labelled() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    let pool = Pool::builder()
        .name("checkout")
        .max_workers(2)
        .build()
        .unwrap();
    for _ in 0..3 {
        pool.submit(async {}).await.unwrap().await.unwrap();
    }
    pool.submit(async { panic!("x") })
        .await
        .unwrap()
        .await
        .unwrap_err();
    let mut registry = Registry::default();
    pool.register_metrics(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for line in [
        r#"spillway_jobs_submitted_total{pool="checkout"} 4"#,
        r#"spillway_jobs_ended_total{pool="checkout",outcome="completed"} 3"#,
        r#"spillway_jobs_ended_total{pool="checkout",outcome="panicked"} 1"#,
        r#"spillway_jobs_shed_total{pool="checkout",reason="full"} 0"#,
        r#"spillway_queue_capacity{pool="checkout"} 10000"#,
        r#"spillway_workers_max{pool="checkout"} 2"#,
        r#"spillway_job_total_seconds_count{pool="checkout"} 4"#,
        r#"spillway_job_total_seconds_bucket{le="+Inf",pool="checkout"} 4"#,
        "# TYPE spillway_job_queue_wait_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // The registry does not keep the pool alive; a scrape after it is gone is empty, not an error.
    pool.shutdown(Duration::from_secs(5)).await;
    drop(pool);
    let mut after = String::new();
    encode(&mut after, &registry).unwrap();
    assert!(
        !after.contains("spillway_"),
        "a dropped pool still exported:
{after}"
    );
}

#[tokio::test]
async fn shutdown_before_a_worker_ever_ran_does_not_hang() {
    // Found by the property test: a worker aborted before its first poll must still be counted
    // out, or shutdown waits for it forever.
    let pool = Pool::builder()
        .min_workers(0)
        .max_workers(1)
        .build()
        .unwrap();
    let handle = pool.try_submit(async { 1 }).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), pool.shutdown(Duration::ZERO))
        .await
        .expect("shutdown hung");
    // Whether the worker got to run the job before the (zero) deadline is up to the scheduler;
    // either way the job is accounted for exactly once and nothing is left running.
    assert_eq!(report.drained + report.abandoned, 1);
    let result = handle.await;
    assert!(
        matches!(result, Ok(1) | Err(JobError::Abandoned)),
        "{result:?}"
    );
    let m = pool.metrics();
    assert_eq!((m.workers, m.unaccounted()), (0, 0));
}

/// Panics when dropped.
struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("planned: output dropped");
        }
    }
}

#[tokio::test]
async fn a_panic_dropping_an_unwanted_output_does_not_kill_the_worker() {
    // Found in review: a detached job's output is dropped by the worker; its destructor's panic
    // must be caught like the job's own.
    let pool = Pool::builder().max_workers(1).build().unwrap();
    pool.submit(async { Bomb }).await.unwrap().detach();
    assert_eq!(pool.submit(async { 7 }).await.unwrap().await, Ok(7));
    let m = pool.metrics();
    assert_eq!((m.completed, m.abandoned, m.workers), (2, 0, 1));
}

#[tokio::test]
async fn huge_durations_mean_no_deadline_not_a_panic() {
    let pool = Pool::builder().idle_timeout(Duration::MAX).build().unwrap();
    let handle = pool
        .submit_timeout(async { 1 }, Duration::MAX)
        .await
        .unwrap();
    assert_eq!(handle.await, Ok(1));
    let report = pool.shutdown(Duration::MAX).await;
    assert_eq!(
        (report.drained, report.abandoned, report.timed_out),
        (0, 0, false)
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_shutdowns_do_not_restart_workers() {
    // Found in review: a second, longer shutdown restarted a worker after the first one had
    // abandoned, which then ran a job that should have been abandoned.
    let (pool, _blocker) = blocked_pool(4).await;
    let queued: Vec<_> = (0..3)
        .map(|_| pool.try_submit(std::future::pending::<()>()).unwrap())
        .collect();
    let long = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.shutdown(Duration::from_secs(100)).await })
    };
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    let short = pool.shutdown(Duration::from_millis(10)).await;
    assert!(short.timed_out);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    long.await.unwrap();
    for h in queued {
        assert_eq!(h.await, Err(JobError::Abandoned));
    }
    let m = pool.metrics();
    assert_eq!((m.workers, m.abandoned, m.unaccounted()), (0, 4, 0));
}

#[test]
fn a_runtime_without_timers_is_a_build_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = Pool::builder()
        .runtime(rt.handle().clone())
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "runtime");
    assert!(err.to_string().contains("enable_time"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_never_misses_a_moving_job() {
    let pool = Pool::builder()
        .max_workers(2)
        .queue_capacity(64)
        .build()
        .unwrap();
    let producer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..20_000 {
                if let Ok(h) = pool.try_submit(tokio::task::yield_now()) {
                    h.detach();
                }
            }
        })
    };
    while !producer.is_finished() {
        // A job may be seen in two places for an instant, never in none.
        let m = pool.metrics();
        assert!(m.unaccounted() <= 0, "{m:?}");
        tokio::task::yield_now().await;
    }
    producer.await.unwrap();
}

/// Issue 18, defect 5: a dropped queued handle frees its slot at once and is counted once, as
/// cancelled; the queue no longer counts it.
#[tokio::test]
async fn a_dropped_queued_handle_frees_its_slot_at_once() {
    let (pool, _blocker) = blocked_pool(1).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let queued = pool.try_submit(async move { drop(flag) }).unwrap();
    assert!(pool.try_submit(async {}).unwrap_err().is_full());

    drop(queued);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the job's future is dropped at once"
    );
    let m = pool.metrics();
    assert_eq!((m.queued, m.cancelled, m.unaccounted()), (0, 1, 0));
    let next = pool.try_submit(async { 7 }).expect("the slot was freed");
    assert_eq!(pool.metrics().queued, 1);
    next.detach();
}

/// Issue 18, defects 5 and 6: an aborted queued job frees its slot at once; it is counted
/// cancelled, as its handle says, even when it would have expired in the queue.
#[tokio::test(start_paused = true)]
async fn an_aborted_queued_job_is_counted_cancelled_as_its_handle_says() {
    let pool = Pool::builder()
        .max_workers(1)
        .queue_capacity(1)
        .queue_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let (release, released) = oneshot::channel::<()>();
    pool.try_submit(async move {
        let _ = released.await;
    })
    .unwrap()
    .detach();
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    let queued = pool.try_submit(async { 1 }).unwrap();
    queued.abort();
    assert_eq!(
        pool.metrics().queued,
        0,
        "an aborted job leaves the queue at once"
    );
    tokio::time::sleep(Duration::from_millis(20)).await; // past the queue timeout
    release.send(()).unwrap();
    assert_eq!(queued.await, Err(JobError::Cancelled));
    pool.shutdown(Duration::from_secs(1)).await;
    let m = pool.metrics();
    assert_eq!((m.cancelled, m.expired, m.completed), (1, 0, 1));
}

/// Issue 18, defect 6: an abort during the job's final poll gives the handle `Cancelled`, so the
/// job is counted cancelled, not completed.
#[tokio::test]
async fn an_abort_during_the_final_poll_is_counted_as_the_handle_reports() {
    let pool = Pool::builder().max_workers(1).build().unwrap();
    let slot: Arc<std::sync::Mutex<Option<spillway::JobHandle<u32>>>> = Arc::default();
    let in_job = slot.clone();
    let handle = pool
        .try_submit(async move {
            let guard = in_job.lock().unwrap();
            guard
                .as_ref()
                .expect("handle stored before the job runs")
                .abort();
            5
        })
        .unwrap();
    *slot.lock().unwrap() = Some(handle);
    pool.shutdown(Duration::from_secs(1)).await;
    let handle = slot.lock().unwrap().take().unwrap();
    assert_eq!(handle.await, Err(JobError::Cancelled));
    let m = pool.metrics();
    assert_eq!((m.cancelled, m.completed), (1, 0));
}

/// Checks a text exposition the way a strict OpenMetrics parser does: each family is declared
/// (`# TYPE`, `# HELP`) once, every sample belongs to a declared family, a family's samples are
/// contiguous, and no gauge is negative. Returns the declared families.
#[cfg(feature = "prometheus")]
fn strict_exposition_check(text: &str) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps = HashSet::new();
    let mut families = Vec::new();
    let mut closed = HashSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "clashing name {name}:\n{text}"
            );
            if let Some(previous) = current.replace(name.into()) {
                closed.insert(previous);
            }
            families.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                helps.insert(name.to_owned()),
                "HELP twice for {name}:\n{text}"
            );
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_total", "_bucket", "_count", "_sum", "_created"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(name);
            assert!(
                types.contains_key(family),
                "sample of an undeclared family: {line}"
            );
            assert!(
                !closed.contains(family),
                "family {family} interleaved:\n{text}"
            );
            assert_eq!(
                current.as_deref(),
                Some(family),
                "sample outside its family: {line}"
            );
            let value: f64 = line.rsplit(' ').next().unwrap().parse().expect("a number");
            if types[family] == "gauge" {
                assert!(value >= 0.0, "negative gauge: {line}");
            }
        }
    }
    families
}

/// Issue 18, defect 7: two pools in one registry give one family per metric, each pool a
/// labelled series of it, valid for a strict OpenMetrics parser.
#[cfg(feature = "prometheus")]
#[tokio::test]
async fn two_pools_in_one_registry_share_each_family() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    let api = Pool::builder().name("api").max_workers(2).build().unwrap();
    let batch = Pool::builder()
        .name("batch")
        .max_workers(3)
        .build()
        .unwrap();
    api.submit(async {}).await.unwrap().await.unwrap();
    let metrics = spillway::PoolMetrics::new();
    metrics.add(&api);
    metrics.add(&batch);
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();

    let families = strict_exposition_check(&text);
    assert_eq!(families.len(), 15, "{text}");
    for line in [
        r#"spillway_workers_max{pool="api"} 2"#,
        r#"spillway_limit{pool="api"} 2"#,
        r#"spillway_workers_max{pool="batch"} 3"#,
        r#"spillway_jobs_ended_total{pool="api",outcome="completed"} 1"#,
        r#"spillway_jobs_ended_total{pool="batch",outcome="completed"} 0"#,
        r#"spillway_priority_jobs_ended_total{pool="api",priority="normal",outcome="completed"} 1"#,
        r#"spillway_priority_jobs_ended_total{pool="api",priority="low",outcome="displaced"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // A pool added after registration joins the same families.
    let late = Pool::builder().name("late").build().unwrap();
    metrics.add(&late);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    assert_eq!(strict_exposition_check(&text).len(), 15);
    assert!(
        text.contains(r#"spillway_queue_capacity{pool="late"} 10000"#),
        "{text}"
    );
}

/// The strict check itself rejects what two separately registered collectors used to produce.
#[cfg(feature = "prometheus")]
#[test]
#[should_panic(expected = "twice for spillway_workers")]
fn the_strict_check_rejects_a_family_declared_twice() {
    let block = |pool| {
        format!(
            "# HELP spillway_workers Workers.\n# TYPE spillway_workers gauge\n\
             spillway_workers{{pool=\"{pool}\"}} 1\n"
        )
    };
    strict_exposition_check(&(block("a") + &block("b") + "# EOF\n"));
}

/// The adaptive limit keeps one job per thread of the pool's runtime: with empty jobs from two
/// producers (jobs that only slow each other down through the queue) the law alone settled at
/// one job on a two-thread runtime, leaving a thread idle (session 8, the `batched` benchmark).
/// A cold and initial limit of 1 shows the floor at once.
fn least_limit(runtime: tokio::runtime::Handle) -> usize {
    Pool::builder()
        .limit(spillway::Limit::adaptive().cold_limit(1).initial_limit(1))
        .runtime(runtime)
        .build()
        .unwrap()
        .metrics()
        .limit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_adaptive_limit_keeps_one_job_per_thread_of_a_multi_thread_runtime() {
    assert_eq!(least_limit(tokio::runtime::Handle::current()), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn the_adaptive_limit_keeps_one_job_on_a_current_thread_runtime() {
    assert_eq!(least_limit(tokio::runtime::Handle::current()), 1);
    // The pool's own runtime counts, not the caller's.
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    assert_eq!(least_limit(other.handle().clone()), 3);
    other.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_floor_never_passes_max_workers_nor_binds_the_other_limits() {
    let pool = |limit: spillway::Limit, max: usize| {
        Pool::builder()
            .limit(limit)
            .max_workers(max)
            .build()
            .unwrap()
            .metrics()
            .limit
    };
    assert_eq!(
        pool(
            spillway::Limit::adaptive()
                .cold_limit(1)
                .initial_limit(1)
                .into(),
            2
        ),
        2
    );
    assert_eq!(
        pool(
            spillway::Limit::aimd().min_limit(1).initial_limit(1).into(),
            100
        ),
        1
    );
}
