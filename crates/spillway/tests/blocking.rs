//! Behaviour of the CPU lane, `BlockingPool`: admission, hand-back, panics, cancellation,
//! expiry and shutdown accounting with a stuck job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use spillway::{BlockingBuilder, BlockingPool, JobError, JobHandle};

/// A pool of one thread from `builder`, blocked on a closure until the returned sender sends
/// (or is dropped).
async fn blocked_with(builder: BlockingBuilder) -> (BlockingPool, JobHandle<()>, mpsc::Sender<()>) {
    let pool = builder.threads(1).build().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let blocker = pool
        .try_submit(move || {
            let _ = rx.recv();
        })
        .unwrap();
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    (pool, blocker, tx)
}

/// A pool of one thread, blocked, and a queue of `queue_capacity`.
async fn blocked(queue_capacity: usize) -> (BlockingPool, JobHandle<()>, mpsc::Sender<()>) {
    blocked_with(BlockingPool::builder().queue_capacity(queue_capacity)).await
}

#[tokio::test]
async fn runs_closures_on_its_own_threads() {
    let pool = BlockingPool::builder()
        .threads(2)
        .name("crunch")
        .build()
        .unwrap();
    let runtime_thread = std::thread::current().id();
    let handle = pool
        .submit(|| std::thread::current().name().map(str::to_owned))
        .await
        .unwrap();
    assert_eq!(handle.await, Ok(Some("crunch-blocking".to_owned())));
    let other = pool
        .try_submit(move || std::thread::current().id() != runtime_thread)
        .unwrap();
    assert_eq!(other.await, Ok(true));
    let m = pool.metrics();
    assert_eq!((m.workers, m.completed, m.submitted), (2, 2, 2));
}

#[tokio::test]
async fn a_full_queue_sheds_and_hands_the_closure_back() {
    let (pool, blocker, tx) = blocked(2).await;
    let queued: Vec<_> = (0..2)
        .map(|i| pool.try_submit(move || i).unwrap())
        .collect();
    let refused = pool.try_submit(|| 99).unwrap_err();
    assert!(refused.is_full());
    assert_eq!(refused.into_inner()(), 99);
    let timed_out = pool
        .submit_timeout(|| 7, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(timed_out.is_timeout());
    assert_eq!(pool.metrics().shed_full, 2);
    tx.send(()).unwrap();
    assert_eq!(blocker.await, Ok(()));
    for (i, handle) in queued.into_iter().enumerate() {
        assert_eq!(handle.await, Ok(i));
    }
    pool.close();
    assert!(pool.try_submit(|| 0).unwrap_err().is_closed());
    assert_eq!(pool.metrics().shed_closed, 1);
}

#[tokio::test]
async fn a_panic_is_reported_and_the_thread_keeps_serving() {
    let pool = BlockingPool::builder().threads(1).build().unwrap();
    let handle = pool.try_submit(|| -> u8 { panic!("boom") }).unwrap();
    assert_eq!(handle.await, Err(JobError::Panicked("boom".into())));
    assert_eq!(pool.try_submit(|| 5).unwrap().await, Ok(5));
    let m = pool.metrics();
    assert_eq!((m.panicked, m.completed, m.workers), (1, 1, 1));
}

#[tokio::test]
async fn a_job_cancelled_before_it_starts_never_runs() {
    let (pool, blocker, tx) = blocked(4).await;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let dropped = pool
        .try_submit(move || flag.store(true, Ordering::SeqCst))
        .unwrap();
    let flag = ran.clone();
    let aborted = pool
        .try_submit(move || flag.store(true, Ordering::SeqCst))
        .unwrap();
    drop(dropped);
    aborted.abort();
    assert_eq!(aborted.await, Err(JobError::Cancelled));
    assert_eq!(
        pool.metrics().queued,
        0,
        "cancelled jobs leave the queue at once"
    );
    tx.send(()).unwrap();
    assert_eq!(blocker.await, Ok(()));
    let report = pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(pool.metrics().cancelled, 2);
}

#[tokio::test]
async fn a_job_that_waited_past_queue_timeout_expires_unrun() {
    let builder = BlockingPool::builder().queue_timeout(Duration::from_millis(20));
    let (pool, blocker, tx) = blocked_with(builder).await;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let late = pool
        .try_submit(move || flag.store(true, Ordering::SeqCst))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    tx.send(()).unwrap();
    assert_eq!(blocker.await, Ok(()));
    assert_eq!(late.await, Err(JobError::Expired));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(pool.metrics().expired, 1);
}

#[tokio::test]
async fn shutdown_detaches_a_stuck_thread_and_counts_every_job() {
    let (pool, stuck, tx) = blocked(4).await;
    let queued = pool.try_submit(|| ()).unwrap();
    let report = pool.shutdown(Duration::from_millis(50)).await;
    assert!(report.timed_out);
    assert_eq!((report.abandoned, report.detached), (2, 1));
    assert_eq!(stuck.await, Err(JobError::Abandoned));
    assert_eq!(queued.await, Err(JobError::Abandoned));
    let m = pool.metrics();
    assert_eq!((m.submitted, m.abandoned, m.workers, m.busy), (2, 2, 0, 0));
    // The detached thread finishes its closure later: nothing more is counted.
    tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(pool.metrics().completed, 0);
}

#[tokio::test]
async fn shutdown_in_time_drains_and_detaches_nothing() {
    let pool = BlockingPool::builder().threads(2).build().unwrap();
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            pool.try_submit(move || (0..=i * 1000).sum::<u64>())
                .unwrap()
        })
        .collect();
    let report = pool.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        (report.drained, report.abandoned, report.detached),
        (8, 0, 0)
    );
    for (i, handle) in handles.into_iter().enumerate() {
        let i = i as u64 * 1000;
        assert_eq!(handle.await, Ok(i * (i + 1) / 2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_caller_waits_for_its_result() {
    let pool = BlockingPool::builder().threads(1).build().unwrap();
    let handle = pool.try_submit(|| "from a thread").unwrap();
    let result = tokio::task::spawn_blocking(move || handle.wait())
        .await
        .unwrap();
    assert_eq!(result, Ok("from a thread"));
}

#[test]
fn build_errors_name_the_setting() {
    let err = BlockingPool::builder().threads(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid threads = 0: must be from 1 to 100000"
    );
    let err = BlockingPool::builder()
        .queue_capacity(0)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "queue_capacity");
    let err = BlockingPool::builder().name("").build().unwrap_err();
    assert_eq!(err.setting(), "name");
    // No runtime here.
    assert_eq!(
        BlockingPool::builder().build().unwrap_err().setting(),
        "runtime"
    );
}

#[tokio::test]
async fn a_job_cancelled_while_running_holds_its_thread_until_it_returns() {
    let pool = BlockingPool::builder().threads(1).build().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let running = pool
        .try_submit(move || {
            let _ = rx.recv();
            flag.store(true, Ordering::SeqCst);
        })
        .unwrap();
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    running.abort();
    assert_eq!(running.await, Err(JobError::Cancelled));
    let flag = finished.clone();
    let next = pool
        .try_submit(move || flag.load(Ordering::SeqCst))
        .unwrap();
    tx.send(()).unwrap();
    assert_eq!(
        next.await,
        Ok(true),
        "the next job ran only after the cancelled one returned"
    );
    assert_eq!(pool.metrics().cancelled, 1);
}
