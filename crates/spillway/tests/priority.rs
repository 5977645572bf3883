//! Priorities and deadlines through the public API: displacement, service order, the
//! anti-starvation share, deadlines, and the accounting per priority.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spillway::{
    JobError, JobHandle, JobOptions, Limit, Pool, Priority, SubmitTimeoutError, TrySubmitError,
};
use support::DropFlag;

/// A pool with a fixed limit of one worker, blocked on a job that never ends, so that queued
/// jobs stay queued until the blocker is aborted.
async fn blocked_pool(queue: usize) -> (Pool, JobHandle<()>) {
    let builder = Pool::builder().limit(Limit::fixed()).queue_capacity(queue);
    support::blocked_pool(builder).await
}

/// The order in which jobs ran, by their labels.
type Log = Arc<Mutex<Vec<&'static str>>>;

fn logged(log: &Log, label: &'static str) -> impl Future<Output = &'static str> + use<> {
    let log = log.clone();
    async move {
        log.lock().unwrap().push(label);
        label
    }
}

#[tokio::test]
async fn a_full_queue_displaces_the_newest_job_of_the_lowest_lower_priority() {
    let (pool, blocker) = blocked_pool(4).await;
    let log = Log::default();
    let submit = |p: Priority, label| pool.try_submit_with(p, logged(&log, label));
    let low_old = submit(Priority::Low, "low old").unwrap();
    let low_new = submit(Priority::Low, "low new").unwrap();
    let normal = submit(Priority::Normal, "normal").unwrap();
    let high = submit(Priority::High, "high").unwrap();

    let critical_1 = submit(Priority::Critical, "critical 1").unwrap();
    assert_eq!(
        low_new.await,
        Err(JobError::Displaced),
        "newest of the lowest"
    );
    let critical_2 = submit(Priority::Critical, "critical 2").unwrap();
    assert_eq!(low_old.await, Err(JobError::Displaced));
    let high_2 = submit(Priority::High, "high 2").unwrap();
    assert_eq!(
        normal.await,
        Err(JobError::Displaced),
        "the lowest lower, not Low"
    );

    // Queued now: critical 1, critical 2, high, high 2. Nothing below High is left.
    for p in [Priority::High, Priority::Normal, Priority::Low] {
        let refused = pool.try_submit_with(p, async { "shed" }).unwrap_err();
        assert!(
            refused.is_full(),
            "{p} displaced its own or a higher priority"
        );
        assert_eq!(refused.into_inner().await, "shed", "handed back");
    }
    let critical_3 = submit(Priority::Critical, "critical 3").unwrap();
    assert_eq!(high_2.await, Err(JobError::Displaced), "the newest High");

    blocker.abort();
    for handle in [critical_1, critical_2, critical_3, high] {
        handle.await.unwrap();
    }
    let order = log.lock().unwrap().clone();
    assert_eq!(order, ["critical 1", "critical 2", "critical 3", "high"]);

    let m = pool.metrics();
    assert_eq!((m.displaced, m.shed_full, m.unaccounted()), (4, 3, 0));
    let by = &m.by_priority;
    assert_eq!(
        (by[Priority::Low].displaced, by[Priority::Normal].displaced),
        (2, 1)
    );
    assert_eq!(
        (by[Priority::High].displaced, by[Priority::High].completed),
        (1, 1)
    );
    assert_eq!(
        (
            by[Priority::Critical].completed,
            by[Priority::Critical].shed_full
        ),
        (3, 0)
    );
}

#[tokio::test]
async fn work_never_displaces_its_own_or_a_higher_priority() {
    let (pool, _blocker) = blocked_pool(2).await;
    let queued: Vec<_> = (0..2)
        .map(|_| pool.try_submit_with(Priority::High, async {}).unwrap())
        .collect();
    for p in [Priority::High, Priority::Normal, Priority::Low] {
        assert!(pool.try_submit_with(p, async {}).unwrap_err().is_full());
    }
    let m = pool.metrics();
    assert_eq!((m.displaced, m.queued), (0, 2));
    assert!(queued.iter().all(|h| !h.is_finished()));
}

#[tokio::test]
async fn higher_priorities_are_served_first_and_fifo_within_one() {
    let (pool, blocker) = blocked_pool(8).await;
    let log = Log::default();
    let labels = [
        (Priority::Low, "low 1"),
        (Priority::Normal, "normal 1"),
        (Priority::Critical, "critical 1"),
        (Priority::Low, "low 2"),
        (Priority::High, "high 1"),
        (Priority::Critical, "critical 2"),
        (Priority::Normal, "normal 2"),
    ];
    let handles: Vec<_> = labels
        .into_iter()
        .map(|(p, label)| pool.try_submit_with(p, logged(&log, label)).unwrap())
        .collect();
    blocker.abort();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(
        *log.lock().unwrap(),
        [
            "critical 1",
            "critical 2",
            "high 1",
            "normal 1",
            "normal 2",
            "low 1",
            "low 2"
        ]
    );
}

#[tokio::test]
async fn a_waiting_lower_priority_gets_a_share_of_the_dequeues() {
    // 40 critical jobs queued ahead of 4 low ones: strict priority would run every critical
    // job first; the share runs a low one within every 16 dequeues.
    let (pool, blocker) = blocked_pool(44).await;
    let log = Log::default();
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(
            pool.try_submit_with(Priority::Low, logged(&log, "low"))
                .unwrap(),
        );
    }
    for _ in 0..40 {
        handles.push(
            pool.try_submit_with(Priority::Critical, logged(&log, "critical"))
                .unwrap(),
        );
    }
    blocker.abort();
    for handle in handles {
        handle.await.unwrap();
    }
    let order = log.lock().unwrap().clone();
    let lows: Vec<usize> = (0..order.len()).filter(|&i| order[i] == "low").collect();
    assert!(
        lows[0] < 16,
        "the first low job waited past 16 dequeues: {lows:?}"
    );
    assert!(lows[1] < 32, "the second low job waited too long: {lows:?}");
    let critical_before_first_low = lows[0];
    assert!(
        critical_before_first_low >= 8,
        "critical work comes first: {lows:?}"
    );
}

#[tokio::test]
async fn one_priority_alone_gets_the_whole_capacity() {
    for p in Priority::ALL {
        let (pool, _blocker) = blocked_pool(5).await;
        let admitted: Vec<_> = (0..5)
            .map(|_| {
                pool.try_submit_with(p, async {})
                    .expect("room for every job")
            })
            .collect();
        assert!(
            pool.try_submit_with(p, async {}).unwrap_err().is_full(),
            "{p}"
        );
        let m = pool.metrics();
        assert_eq!((m.queued, m.displaced, m.shed_full), (5, 0, 1), "{p}");
        assert_eq!(m.by_priority[p].queued, 5, "{p}");
        drop(admitted);
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_queued_past_its_deadline_expires_without_running() {
    let (pool, blocker) = blocked_pool(2).await;
    let ran = Arc::new(Mutex::new(false));
    let deadline = tokio::time::Instant::now().into_std() + Duration::from_millis(10);
    let flag = ran.clone();
    let dropped = Arc::new(AtomicBool::new(false));
    let drop_flag = DropFlag(dropped.clone());
    let late = pool
        .try_submit_with(
            JobOptions::new()
                .priority(Priority::High)
                .deadline(deadline),
            async move {
                let _drop_flag = drop_flag;
                *flag.lock().unwrap() = true;
            },
        )
        .unwrap();
    let in_time = pool
        .try_submit_with(
            JobOptions::new().deadline(deadline + Duration::from_secs(1)),
            async { 1 },
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    blocker.abort();
    assert_eq!(late.await, Err(JobError::Expired));
    assert_eq!(
        in_time.await,
        Ok(1),
        "a deadline not reached does not matter"
    );
    assert!(!*ran.lock().unwrap(), "the expired job never ran");
    assert!(
        dropped.load(Ordering::SeqCst),
        "its future was dropped, not leaked"
    );
    let m = pool.metrics();
    assert_eq!((m.expired, m.by_priority[Priority::High].expired), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_past_is_refused_at_once() {
    let pool = Pool::builder().build().unwrap();
    let now = tokio::time::Instant::now().into_std();
    let past = JobOptions::new().priority(Priority::Low).deadline(now);
    let refused = pool.try_submit_with(past, async { "mine" }).unwrap_err();
    assert!(matches!(refused, TrySubmitError::Expired(_)));
    assert_eq!(refused.to_string(), "deadline already passed");
    assert_eq!(format!("{refused:?}"), "Expired(..)");
    assert_eq!(refused.into_inner().await, "mine");

    let refused = pool.submit_with(past, async {}).await.unwrap_err();
    assert!(matches!(refused, SubmitTimeoutError::Timeout(_)));

    let m = pool.metrics();
    assert_eq!((m.submitted, m.shed_expired, m.shed()), (0, 2, 2));
    assert_eq!(m.by_priority[Priority::Low].shed_expired, 2);
}

#[tokio::test(start_paused = true)]
async fn submit_with_waits_for_room_only_until_the_deadline() {
    let (pool, blocker) = blocked_pool(1).await;
    let _queued = pool.try_submit_with(Priority::Critical, async {}).unwrap();
    let deadline = tokio::time::Instant::now().into_std() + Duration::from_millis(30);
    let opts = JobOptions::new()
        .priority(Priority::High)
        .deadline(deadline);
    let started = tokio::time::Instant::now();
    let refused = pool.submit_with(opts, async {}).await.unwrap_err();
    assert!(refused.is_timeout());
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(pool.metrics().by_priority[Priority::High].shed_full, 1);

    // With room, it is admitted at once, and may displace a lower priority instead of waiting.
    let low = pool.try_submit_with(Priority::Low, async {});
    assert!(low.unwrap_err().is_full());
    blocker.abort();
    let handle = pool.submit_with(Priority::Low, async { 5 }).await.unwrap();
    assert_eq!(handle.await, Ok(5));
}

#[tokio::test]
async fn every_priority_accounts_for_each_of_its_jobs() {
    let (pool, blocker) = blocked_pool(3).await;
    let mut handles = Vec::new();
    for p in [Priority::Low, Priority::Low, Priority::Normal] {
        handles.push(pool.try_submit_with(p, async {}).unwrap());
    }
    handles.push(pool.try_submit_with(Priority::Critical, async {}).unwrap()); // displaces a low
    handles.push(pool.try_submit_with(Priority::High, async {}).unwrap()); // displaces a low
    let _ = pool.try_submit_with(Priority::Low, async {}); // shed: nothing lower
    drop(handles.remove(2)); // the normal job, cancelled while queued
    let m = pool.metrics();
    for (p, counts) in m.by_priority.iter() {
        assert_eq!(counts.unaccounted(), 0, "{p} while queued: {counts:?}");
    }
    blocker.abort();
    let report = pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    let m = pool.metrics();
    let low = m.by_priority[Priority::Low];
    assert_eq!((low.submitted, low.displaced, low.shed_full), (2, 2, 1));
    let normal = m.by_priority[Priority::Normal];
    assert_eq!(
        (normal.submitted, normal.cancelled),
        (2, 2),
        "the blocker is Normal too"
    );
    for (p, counts) in m.by_priority.iter() {
        assert_eq!(
            (counts.unaccounted(), counts.queued, counts.busy),
            (0, 0, 0),
            "{p}"
        );
    }
    assert_eq!(m.unaccounted(), 0);
}
