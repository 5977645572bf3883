//! `Pool::run` and `Pool::try_run`: a job its caller awaits runs on the caller's task when a
//! worker slot is free, and is then a running job for everything the pool counts.

mod support;

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use spillway::{JobError, Limit, Pool, Priority, RunError};
use tokio::sync::oneshot;

use support::DropFlag;

/// A pool of at most `slots` jobs at once (a fixed limit), with no worker until one is needed.
fn pool(slots: usize) -> Pool {
    Pool::builder()
        .limit(Limit::fixed())
        .min_workers(0)
        .max_workers(slots)
        .queue_capacity(8)
        .build()
        .unwrap()
}

/// Polls `future` once, with a waker that does nothing.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut cx)
}

#[tokio::test]
async fn an_inline_job_runs_on_the_callers_task_and_counts_busy() {
    tokio::spawn(inline_job_runs_on_the_callers_task_and_counts_busy())
        .await
        .unwrap();
}

async fn inline_job_runs_on_the_callers_task_and_counts_busy() {
    let pool = pool(2);
    let caller = tokio::task::id();
    let (release, released) = oneshot::channel::<()>();
    let mut run = Box::pin(
        pool.try_run_with(Priority::High, async move {
            released.await.unwrap();
            tokio::task::id()
        })
        .unwrap(),
    );
    assert!(run.is_inline());
    assert!(poll_once(&mut run).is_pending());
    let m = pool.metrics();
    assert_eq!((m.busy, m.queued, m.submitted), (1, 0, 1));
    assert_eq!(m.by_priority[Priority::High].busy, 1);
    assert_eq!(m.workers, 0, "no worker was started for it");
    release.send(()).unwrap();
    assert_eq!(run.await, Ok(caller), "it ran on the awaiting task");
    let m = pool.metrics();
    assert_eq!((m.busy, m.completed, m.unaccounted()), (0, 1, 0));
    assert_eq!((m.queue_wait.count, m.run_time.count), (1, 1));
    assert_eq!(
        m.queue_wait.max,
        Duration::ZERO,
        "an inline job never waits in the queue"
    );
}

#[tokio::test]
async fn run_returns_the_value_or_the_job_error_and_the_caller_survives_a_panic() {
    let pool = pool(1);
    assert_eq!(pool.run(async { 7 }).await.unwrap(), 7);
    let err = pool.run(async { panic!("boom") }).await.unwrap_err();
    assert!(matches!(&err, RunError::Job(JobError::Panicked(m)) if m == "boom"));
    assert_eq!(err.to_string(), "job panicked: boom");
    assert_eq!(
        pool.run(async { 8 }).await.unwrap(),
        8,
        "the caller carries on"
    );
    let m = pool.metrics();
    assert_eq!(
        (m.completed, m.panicked, m.busy, m.unaccounted()),
        (2, 1, 0, 0)
    );
}

#[tokio::test]
async fn a_closed_pool_hands_the_job_back() {
    let pool = pool(1);
    pool.close();
    let err = pool.run(async { "back" }).await.unwrap_err();
    assert!(err.is_closed());
    assert_eq!(format!("{err:?}"), "Closed(..)");
    assert_eq!(err.into_inner().expect("not admitted").await, "back");
    assert!(pool.try_run(async {}).unwrap_err().is_closed());
    let m = pool.metrics();
    assert_eq!((m.submitted, m.shed_closed), (0, 2));
}

#[tokio::test]
async fn a_job_never_overtakes_queued_work() {
    // On this one-thread runtime the worker cannot take A before we yield.
    let pool = pool(2);
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = |name: &'static str| {
        let order = order.clone();
        async move { order.lock().unwrap().push(name) }
    };
    let queued = pool.try_submit(log("A")).unwrap();
    let run = pool.try_run(log("B")).unwrap();
    assert!(!run.is_inline(), "A is queued: B must queue behind it");
    assert_eq!(pool.metrics().queued, 2);
    run.await.unwrap();
    queued.await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["A", "B"]);
}

#[tokio::test]
async fn inline_jobs_stay_within_the_limit_and_then_queue() {
    let pool = pool(2);
    let mut first = Box::pin(pool.try_run(std::future::pending::<()>()).unwrap());
    let mut second = Box::pin(pool.try_run(std::future::pending::<()>()).unwrap());
    assert!(first.is_inline() && second.is_inline());
    assert!(poll_once(&mut first).is_pending() && poll_once(&mut second).is_pending());
    let third = pool.try_run(async { 3 }).unwrap();
    assert!(!third.is_inline(), "the limit is in use");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let m = pool.metrics();
    assert_eq!((m.busy, m.queued), (2, 1), "no worker runs past the limit");
    drop(first);
    assert_eq!(third.await, Ok(3), "the freed slot went to the queued job");
    drop(second);
    let m = pool.metrics();
    assert_eq!(
        (m.completed, m.cancelled, m.busy, m.unaccounted()),
        (1, 2, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_behind_an_inline_job_starts_when_it_ends() {
    let pool = Pool::builder()
        .limit(Limit::fixed())
        .max_workers(1)
        .min_workers(1)
        .build()
        .unwrap();
    for _ in 0..200 {
        let (release, released) = oneshot::channel::<()>();
        let inline = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(async move { released.await.unwrap() }).await }
        });
        while pool.metrics().busy == 0 {
            tokio::task::yield_now().await;
        }
        let queued = pool.try_submit(async { 5 }).unwrap();
        release.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), queued).await;
        assert_eq!(result.expect("the queued job was stranded"), Ok(5));
        inline.await.unwrap().unwrap();
    }
    // A worker hands the result over before it counts the job's end: the last one may still
    // count busy for an instant after its handle resolved.
    let settled = tokio::time::timeout(Duration::from_secs(5), async {
        while pool.metrics().busy > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(settled.is_ok(), "a job stayed busy: {:?}", pool.metrics());
    let m = pool.metrics();
    assert_eq!((m.completed, m.busy, m.unaccounted()), (400, 0, 0));
}

#[tokio::test]
async fn dropping_a_running_inline_job_cancels_it_once() {
    let pool = pool(1);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let mut run = Box::pin(
        pool.try_run(async move {
            let _flag = flag;
            std::future::pending::<()>().await
        })
        .unwrap(),
    );
    assert!(poll_once(&mut run).is_pending());
    drop(run);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the job's future was dropped"
    );
    let unpolled = pool.try_run(async {}).unwrap();
    assert!(
        unpolled.is_inline(),
        "the dropped job's slot is free at once"
    );
    drop(unpolled);
    let m = pool.metrics();
    assert_eq!((m.submitted, m.cancelled, m.busy), (2, 2, 0));
    assert_eq!((m.completed, m.unaccounted()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_inline_job_stops_at_the_run_timeout() {
    let pool = Pool::builder()
        .run_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let err = pool.run(std::future::pending::<()>()).await.unwrap_err();
    assert!(matches!(err, RunError::Job(JobError::TimedOut)), "{err:?}");
    let m = pool.metrics();
    assert_eq!((m.timed_out, m.busy, m.unaccounted()), (1, 0, 0));
    assert!(m.run_time.max >= Duration::from_millis(50));
}

#[tokio::test]
async fn shutdown_waits_for_inline_jobs() {
    let pool = pool(1);
    let running = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.run(tokio::time::sleep(Duration::from_millis(30)))
                .await
        }
    });
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    let report = pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (report.drained, report.abandoned, report.timed_out),
        (1, 0, false)
    );
    running.await.unwrap().expect("it ran to its end");
    let m = pool.metrics();
    assert_eq!((m.completed, m.busy, m.unaccounted()), (1, 0, 0));
}

#[tokio::test]
async fn shutdown_abandons_inline_jobs_at_its_deadline() {
    let pool = pool(2);
    let polls = Arc::new(Mutex::new(0u32));
    // Woken every millisecond: it sees the shutdown at its next poll, and is not polled again.
    let ticking = tokio::spawn({
        let (pool, polls) = (pool.clone(), polls.clone());
        async move {
            pool.run(async move {
                loop {
                    *polls.lock().unwrap() += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
        }
    });
    // Never woken again: the shutdown counts it all the same, and its drop counts nothing.
    let stuck = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(std::future::pending::<()>()).await }
    });
    while pool.metrics().busy < 2 {
        tokio::task::yield_now().await;
    }
    let report = pool.shutdown(Duration::from_millis(20)).await;
    assert_eq!((report.abandoned, report.timed_out), (2, true));
    let m = pool.metrics();
    assert_eq!((m.abandoned, m.busy, m.unaccounted()), (2, 0, 0));
    let err = ticking.await.unwrap().unwrap_err();
    assert!(matches!(err, RunError::Job(JobError::Abandoned)), "{err:?}");
    let polled = *polls.lock().unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        *polls.lock().unwrap(),
        polled,
        "not polled after it returned"
    );
    stuck.abort();
    assert!(stuck.await.unwrap_err().is_cancelled());
    let m = pool.metrics();
    assert_eq!((m.abandoned, m.cancelled, m.unaccounted()), (2, 0, 0));
}

#[tokio::test]
async fn run_waits_for_room_like_submit() {
    let (pool, blocker) = support::blocked_pool(Pool::builder().queue_capacity(1)).await;
    let filler = pool.try_submit(async {}).unwrap();
    let mut waiting = Box::pin(pool.run(async { "admitted" }));
    assert!(
        poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx)))
            .await
            .is_pending()
    );
    assert_eq!(pool.metrics().shed_full, 0, "waiting is not shedding");
    drop(blocker);
    assert_eq!(waiting.await.unwrap(), "admitted");
    filler.await.unwrap();
}
