//! The run deadline (`Builder::run_timeout`, issue 14 point 1): a job still running when it
//! passes is dropped at its next await, ends as `JobError::TimedOut`, and frees its worker.

mod support;

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use spillway::{JobError, Limit, Pool};
use support::DropFlag;

fn pool(run_timeout: Duration) -> Pool {
    Pool::builder()
        .limit(Limit::fixed())
        .min_workers(1)
        .max_workers(1)
        .run_timeout(run_timeout)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_job_that_never_finishes_times_out_and_frees_its_worker() {
    let pool = pool(Duration::from_secs(1));
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let stuck = pool
        .submit(async move {
            let _flag = flag;
            pending::<()>().await;
        })
        .await
        .unwrap();
    // Queued behind it on the only worker: it runs once the stuck job is gone.
    let next = pool.submit(async { 7 }).await.unwrap();
    assert_eq!(stuck.await, Err(JobError::TimedOut));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the timed-out future was dropped"
    );
    assert_eq!(next.await, Ok(7));
    let m = pool.metrics();
    assert_eq!((m.timed_out, m.completed, m.unaccounted()), (1, 1, 0));
    assert_eq!(m.by_priority[spillway::Priority::Normal].timed_out, 1);
    // It ran until the timeout: that is its run time.
    assert_eq!(m.run_time.count, 2);
    assert!(
        m.run_time.max >= Duration::from_millis(990),
        "{:?}",
        m.run_time
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_that_finishes_before_the_timeout_is_unaffected() {
    let pool = pool(Duration::from_secs(1));
    let job = pool
        .submit(async {
            tokio::time::sleep(Duration::from_millis(900)).await;
            "done"
        })
        .await
        .unwrap();
    assert_eq!(job.await, Ok("done"));
    let m = pool.metrics();
    assert_eq!((m.completed, m.timed_out, m.unaccounted()), (1, 0, 0));
}

/// Only the time running counts: a job queued longer than the timeout still gets all of it.
#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_start_not_the_admission() {
    let pool = pool(Duration::from_secs(1));
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        1
    };
    let first = pool.submit(slow()).await.unwrap();
    let second = pool.submit(slow()).await.unwrap();
    let third = pool.submit(slow()).await.unwrap();
    // The third waited 1.6 s, then ran 0.8 s of its 1 s.
    assert_eq!(
        (first.await, second.await, third.await),
        (Ok(1), Ok(1), Ok(1))
    );
    assert_eq!(pool.metrics().timed_out, 0);
}

/// A job woken after its deadline is not polled again: what follows its await never runs.
#[tokio::test(start_paused = true)]
async fn a_job_past_its_deadline_never_runs_further() {
    let pool = pool(Duration::from_millis(100));
    let went_on = Arc::new(AtomicBool::new(false));
    let flag = went_on.clone();
    let job = pool
        .submit(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
        })
        .await
        .unwrap();
    // The job's sleep and the deadline end at the same instant: the deadline wins.
    assert_eq!(job.await, Err(JobError::TimedOut));
    assert!(!went_on.load(Ordering::SeqCst), "it ran past its deadline");
}

/// The handle aborted first reports `Cancelled`: the job is counted so, not as timed out.
#[tokio::test(start_paused = true)]
async fn an_aborted_job_is_counted_cancelled_not_timed_out() {
    let pool = pool(Duration::from_secs(1));
    let job = pool.submit(pending::<()>()).await.unwrap();
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    job.abort();
    assert_eq!(job.await, Err(JobError::Cancelled));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = pool.metrics();
    assert_eq!((m.cancelled, m.timed_out, m.unaccounted()), (1, 0, 0));
}

#[tokio::test]
async fn a_zero_run_timeout_is_refused_by_name() {
    let err = Pool::builder()
        .run_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "run_timeout");
    assert_eq!(
        err.to_string(),
        "invalid run_timeout = 0s: must be greater than zero (leave it unset for no limit)"
    );
}

#[cfg(feature = "prometheus")]
#[tokio::test(start_paused = true)]
async fn prometheus_counts_timed_out_jobs_as_their_own_outcome() {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    let pool = Pool::builder()
        .name("stuck")
        .run_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let handle = pool.submit(pending::<()>()).await.unwrap();
    assert_eq!(handle.await, Err(JobError::TimedOut));
    let mut registry = Registry::default();
    pool.register_metrics(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for series in [
        r#"spillway_jobs_ended_total{pool="stuck",outcome="timed_out"} 1"#,
        r#"spillway_priority_jobs_ended_total{pool="stuck",priority="normal",outcome="timed_out"} 1"#,
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
}
