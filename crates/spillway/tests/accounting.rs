//! Property: whatever callers do, every admitted job ends in exactly one counted outcome, and
//! the concurrency limit stays within its range.
//!
//! Random pools (sizes, concurrency limit, queue and run timeouts, scale-up threshold and
//! cooldown) run random sequences of
//! submit / try_submit / submit_timeout, try_run (a job run by a task that awaits it, on that
//! task when a worker slot is free), and try_submit_with / submit_with with random
//! priorities and deadlines (some already past, some passing while the job is queued), so that
//! jobs displace each other from full queues and expire unrun; handle drops, aborts and detaches, panicking, slow,
//! never-ending jobs and jobs that panic when dropped, closes and shutdowns: on a paused-clock
//! runtime (so time-dependent paths run without real waiting), and on a multi-threaded runtime
//! with real time (workers and the test race for real). Afterwards:
//!
//! * `submitted == completed + panicked + cancelled + expired + displaced + timed_out +
//!   abandoned`, nothing
//!   queued or busy, and the same for each priority, whose counts add up to the totals;
//! * admissions and sheds seen by the caller match the counters exactly;
//! * every handle still held resolves (no job is lost), to a result its job could produce;
//! * the outcome counted for each job is the one its handle reports: per outcome, the counter is
//!   at least the number of held handles reporting it, exactly that when no handle was let go;
//! * no worker task is left;
//! * after every operation, whatever the limit algorithm observed, the limit is within
//!   `max(min_workers, 1)..=max_workers` (`Limit::fixed`: exactly `max_workers`), and no more
//!   jobs run than it allows plus those started before it fell.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use spillway::{JobError, JobHandle, JobOptions, Limit, Pool, Priority};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ready,
    Sleep(u64),
    Pending,
    Panic,
    SleepThenPanic(u64),
    /// Sleeps, returns 3, and its future panics when dropped after its first poll (after it
    /// ended, or cancelled or abandoned while it runs).
    PanicOnDrop(u64),
    /// Aborts its own handle in its only poll, then returns 4: an abort during the final poll.
    AbortsItself,
}

#[derive(Debug, Clone)]
enum Op {
    TrySubmit(Kind),
    Submit(Kind),
    SubmitTimeout(Kind, u64),
    TrySubmitWith(Kind, Priority, Option<u64>),
    SubmitWith(Kind, Priority, Option<u64>),
    /// `try_run_with`, its `Run` awaited by a task of its own.
    TryRun(Kind, Priority),
    Drop(usize),
    /// Aborts the task awaiting a `Run`: drops it, cancelling the job.
    DropRun(usize),
    Abort(usize),
    Detach(usize),
    Advance(u64),
    Yield,
    Close,
    Shutdown(u64),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Ready),
        3 => (1u64..30).prop_map(Kind::Sleep),
        1 => Just(Kind::Pending),
        1 => Just(Kind::Panic),
        1 => (1u64..30).prop_map(Kind::SleepThenPanic),
        1 => (0u64..30).prop_map(Kind::PanicOnDrop),
        1 => Just(Kind::AbortsItself),
    ]
}

fn priority() -> impl Strategy<Value = Priority> {
    prop::sample::select(Priority::ALL.to_vec())
}

/// A deadline this many milliseconds ahead (0: passed already), or none.
fn deadline() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(0u64..40)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => kind().prop_map(Op::TrySubmit),
        6 => (kind(), priority(), deadline()).prop_map(|(k, p, d)| Op::TrySubmitWith(k, p, d)),
        2 => (kind(), priority(), deadline()).prop_map(|(k, p, d)| Op::SubmitWith(k, p, d)),
        2 => kind().prop_map(Op::Submit),
        2 => (kind(), 0u64..20).prop_map(|(k, t)| Op::SubmitTimeout(k, t)),
        4 => (kind(), priority()).prop_map(|(k, p)| Op::TryRun(k, p)),
        2 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::DropRun),
        1 => any::<usize>().prop_map(Op::Abort),
        2 => any::<usize>().prop_map(Op::Detach),
        3 => (0u64..40).prop_map(Op::Advance),
        3 => Just(Op::Yield),
        1 => Just(Op::Close),
        1 => (0u64..40).prop_map(Op::Shutdown),
    ]
}

#[derive(Debug, Clone)]
struct Settings {
    min_workers: usize,
    max_workers: usize,
    queue_capacity: usize,
    queue_timeout: Option<u64>,
    run_timeout: Option<u64>,
    scale_up_threshold: f64,
    scale_up_cooldown: Option<u64>,
    limit: Limit,
}

/// Every algorithm, the adaptive one also with tiny initial limits and queue targets so that it
/// moves within a short case.
fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        Just(Limit::fixed()),
        Just(Limit::default()),
        (1usize..4, 1u64..10).prop_map(|(initial, target)| Limit::adaptive()
            .initial_limit(initial)
            .queue_target(Duration::from_millis(target))
            .into()),
        Just(Limit::gradient2().into()),
        Just(Limit::vegas().into()),
        Just(Limit::aimd().into()),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        (1usize..4, 0usize..4, 1usize..6),
        (
            proptest::option::of(1u64..25),
            proptest::option::of(1u64..40),
        ),
        prop_oneof![Just(0.0), Just(0.5), Just(0.7), Just(1.0)],
        proptest::option::of(1u64..30),
        limit(),
    )
        .prop_map(
            |(
                (max_workers, min, queue_capacity),
                (queue_timeout, run_timeout),
                threshold,
                cooldown,
                limit,
            )| {
                Settings {
                    min_workers: min.min(max_workers),
                    max_workers,
                    queue_capacity,
                    queue_timeout,
                    run_timeout,
                    scale_up_threshold: threshold,
                    scale_up_cooldown: cooldown,
                    limit,
                }
            },
        )
}

/// Keeps the planned panics of jobs out of the test output; other panics still print.
fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.starts_with("planned"))
                || info
                    .payload()
                    .downcast_ref::<String>()
                    .is_some_and(|m| m.starts_with("planned"));
            if !planned {
                default(info);
            }
        }));
    });
}

/// A job's future; one of kind `PanicOnDrop` panics when it is dropped, queued or after a poll.
struct Job {
    body: Pin<Box<dyn Future<Output = u32> + Send>>,
    panic_on_drop: bool,
}

impl Future for Job {
    type Output = u32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.body.as_mut().poll(cx)
    }
}

std::thread_local! {
    /// Set while this thread drops jobs the pool gave back (refused, or a submission given up):
    /// those are the caller's own, and a panic there would be the caller's, not the pool's.
    static GIVEN_BACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.panic_on_drop && !std::thread::panicking() && !GIVEN_BACK.with(|g| g.get()) {
            panic!("planned drop");
        }
    }
}

/// Runs `f`, during which jobs dropped on this thread are the caller's (see `GIVEN_BACK`).
fn given_back<T>(f: impl FnOnce() -> T) -> T {
    GIVEN_BACK.with(|g| g.set(true));
    let out = f();
    GIVEN_BACK.with(|g| g.set(false));
    out
}

/// Drops a refused job as its caller would.
fn drop_given_back<T>(job: T) {
    given_back(|| drop(job));
}

/// Where a held handle lives, shared with its job (for `AbortsItself`); `None` once let go.
type Slot = Arc<Mutex<Option<JobHandle<u32>>>>;

fn job(kind: Kind, clock: Clock, slot: &Slot) -> Job {
    Job {
        body: Box::pin(body(kind, clock, slot.clone())),
        panic_on_drop: matches!(kind, Kind::PanicOnDrop(_)),
    }
}

async fn body(kind: Kind, clock: Clock, slot: Slot) -> u32 {
    match kind {
        Kind::Ready => 1,
        Kind::Sleep(ms) => {
            tokio::time::sleep(clock.ms(ms)).await;
            2
        }
        Kind::Pending => std::future::pending().await,
        Kind::Panic => panic!("planned"),
        Kind::SleepThenPanic(ms) => {
            tokio::time::sleep(clock.ms(ms)).await;
            panic!("planned later")
        }
        Kind::PanicOnDrop(ms) => {
            tokio::time::sleep(clock.ms(ms)).await;
            3
        }
        Kind::AbortsItself => {
            if let Some(handle) = slot.lock().unwrap().as_ref() {
                handle.abort();
            }
            4
        }
    }
}

/// How the case's milliseconds pass: virtual (paused clock, one thread), or real but shortened
/// (a tenth, on a multi-threaded runtime), where an abort may race the job's end.
#[derive(Debug, Clone, Copy)]
enum Clock {
    Paused,
    Real,
}

impl Clock {
    fn ms(self, ms: u64) -> Duration {
        match self {
            Clock::Paused => Duration::from_millis(ms),
            Clock::Real => Duration::from_micros(ms * 100),
        }
    }
}

/// What a handle may legitimately resolve to, given the job it was for. With a real clock an
/// abort races the job's end, so an aborted job may also have ended as it would have anyway.
fn plausible(kind: Kind, aborted: bool, clock: Clock, result: &Result<u32, JobError>) -> bool {
    let aborted = aborted && matches!(clock, Clock::Paused);
    match result {
        Ok(1) => matches!(kind, Kind::Ready) && !aborted,
        Ok(2) => matches!(kind, Kind::Sleep(_)) && !aborted,
        Ok(3) => matches!(kind, Kind::PanicOnDrop(_)) && !aborted,
        // On threads a worker may run it before its handle is stored for it to abort.
        Ok(4) => matches!((kind, clock), (Kind::AbortsItself, Clock::Real)),
        // Its handle is aborted before the job ends, so it never reports the value.
        Err(JobError::Cancelled) if matches!(kind, Kind::AbortsItself) => true,
        Ok(_) => false,
        Err(JobError::Panicked(_)) => {
            matches!(kind, Kind::Panic | Kind::SleepThenPanic(_)) && !aborted
        }
        Err(JobError::Cancelled) => aborted || matches!(clock, Clock::Real),
        // A job that awaits can outlive the run timeout; on threads any job may (the deadline
        // is checked before its first poll, and a thread may be descheduled before that).
        Err(JobError::TimedOut) => {
            let awaits = matches!(
                kind,
                Kind::Sleep(_) | Kind::Pending | Kind::SleepThenPanic(_) | Kind::PanicOnDrop(_)
            );
            (awaits || matches!(clock, Clock::Real)) && !aborted
        }
        Err(JobError::Expired | JobError::Abandoned | JobError::Displaced)
            if matches!(kind, Kind::AbortsItself) =>
        {
            true
        }
        Err(JobError::Expired | JobError::Abandoned | JobError::Displaced) => !aborted,
        Err(_) => false,
    }
}

struct Held {
    kind: Kind,
    aborted: bool,
    handle: Slot,
}

impl Held {
    /// Lets go of the handle, outside the slot's lock.
    fn take(&self) -> JobHandle<u32> {
        let handle = self.handle.lock().unwrap().take();
        handle.expect("a held handle is in its slot")
    }
}

async fn run(settings: Settings, ops: Vec<Op>, clock: Clock) -> Result<(), TestCaseError> {
    let mut builder = Pool::builder()
        .limit(settings.limit.clone())
        .min_workers(settings.min_workers)
        .max_workers(settings.max_workers)
        .queue_capacity(settings.queue_capacity)
        .scale_up_threshold(settings.scale_up_threshold)
        .idle_timeout(clock.ms(15));
    if let Some(ms) = settings.queue_timeout {
        builder = builder.queue_timeout(clock.ms(ms));
    }
    if let Some(ms) = settings.run_timeout {
        builder = builder.run_timeout(clock.ms(ms));
    }
    if let Some(ms) = settings.scale_up_cooldown {
        builder = builder.scale_up_cooldown(clock.ms(ms));
    }
    let pool = builder.build().unwrap();
    let mut held: Vec<Held> = Vec::new();
    let mut runs: Vec<(Kind, JoinHandle<Result<u32, JobError>>)> = Vec::new();
    let (mut admitted, mut shed) = (0u64, 0u64);
    let (mut runs_admitted, mut runs_shed) = (0u64, 0u64); // `admit` holds the two above
    let mut let_go = 0u64; // handles dropped or detached: their outcomes are not reported

    let mut admit =
        |result: Result<JobHandle<u32>, ()>, kind, slot: Slot, held: &mut Vec<Held>| match result {
            Ok(handle) => {
                admitted += 1;
                *slot.lock().unwrap() = Some(handle);
                held.push(Held {
                    kind,
                    aborted: false,
                    handle: slot,
                });
            }
            Err(()) => shed += 1,
        };

    for op in ops {
        match op {
            Op::TrySubmit(k) => {
                let slot = Slot::default();
                let result = pool
                    .try_submit(job(k, clock, &slot))
                    .map_err(drop_given_back);
                admit(result, k, slot, &mut held);
            }
            Op::Submit(k) => {
                // Waits for room; bounded so that a full queue of never-ending jobs cannot hang.
                // Gave up waiting: never admitted, and not counted as shed either.
                let slot = Slot::default();
                let wait = tokio::time::timeout(clock.ms(50), pool.submit(job(k, clock, &slot)));
                let mut wait = Box::pin(wait);
                let waited = std::future::poll_fn(|cx| given_back(|| wait.as_mut().poll(cx))).await;
                // A wait given up still holds the job: the caller's to drop.
                drop_given_back(wait);
                if let Ok(result) = waited {
                    admit(result.map_err(drop_given_back), k, slot, &mut held);
                }
            }
            Op::SubmitTimeout(k, ms) => {
                let slot = Slot::default();
                let result = pool
                    .submit_timeout(job(k, clock, &slot), clock.ms(ms))
                    .await
                    .map_err(drop_given_back);
                admit(result, k, slot, &mut held);
            }
            Op::TrySubmitWith(k, p, d) => {
                let slot = Slot::default();
                let result = pool
                    .try_submit_with(options(p, d, clock), job(k, clock, &slot))
                    .map_err(drop_given_back);
                admit(result, k, slot, &mut held);
            }
            Op::SubmitWith(k, p, d) => {
                let slot = Slot::default();
                // Without a deadline it may wait forever: bounded as `Submit` is.
                let wait = tokio::time::timeout(
                    clock.ms(50),
                    pool.submit_with(options(p, d, clock), job(k, clock, &slot)),
                );
                let mut wait = Box::pin(wait);
                let waited = std::future::poll_fn(|cx| given_back(|| wait.as_mut().poll(cx))).await;
                drop_given_back(wait);
                if let Ok(result) = waited {
                    admit(result.map_err(drop_given_back), k, slot, &mut held);
                }
            }
            Op::TryRun(k, p) => {
                // It has no handle to abort itself with.
                let k = if matches!(k, Kind::AbortsItself) {
                    Kind::Ready
                } else {
                    k
                };
                match pool.try_run_with(p, job(k, clock, &Slot::default())) {
                    Ok(run) => {
                        runs_admitted += 1;
                        runs.push((k, tokio::spawn(run)));
                    }
                    Err(refused) => {
                        runs_shed += 1;
                        drop_given_back(refused);
                    }
                }
            }
            Op::Drop(i) if !held.is_empty() => {
                drop(held.remove(i % held.len()).take());
                let_go += 1;
            }
            Op::DropRun(i) if !runs.is_empty() => {
                runs.remove(i % runs.len()).1.abort();
                let_go += 1;
            }
            Op::Abort(i) if !held.is_empty() => {
                let n = held.len();
                let h = &mut held[i % n];
                let handle = h.handle.lock().unwrap();
                let handle = handle.as_ref().expect("a held handle is in its slot");
                // Aborting a job that already ended changes nothing.
                h.aborted |= !handle.is_finished();
                handle.abort();
            }
            Op::Detach(i) if !held.is_empty() => {
                held.remove(i % held.len()).take().detach();
                let_go += 1;
            }
            Op::Advance(ms) => tokio::time::sleep(clock.ms(ms)).await,
            Op::Yield => tokio::task::yield_now().await,
            Op::Close => pool.close(),
            Op::Shutdown(ms) => {
                pool.shutdown(clock.ms(ms)).await;
            }
            Op::Drop(_) | Op::Abort(_) | Op::Detach(_) | Op::DropRun(_) => {}
        }
        check_limit(&settings, &pool.metrics())?;
    }

    let report = pool.shutdown(clock.ms(20)).await;
    let m = pool.metrics();
    prop_assert_eq!(
        m.submitted,
        admitted + runs_admitted,
        "admissions seen by callers"
    );
    prop_assert_eq!(m.shed(), shed + runs_shed, "sheds seen by callers");
    prop_assert_eq!((m.queued, m.busy, m.workers), (0, 0, 0));
    prop_assert_eq!(m.unaccounted(), 0, "{:?}", m);
    prop_assert_eq!(m.ended(), m.submitted);
    prop_assert!(report.drained + report.abandoned <= m.submitted);
    check_priorities(&m)?;

    // completed, panicked, cancelled, expired, abandoned, displaced, timed out
    let mut reported = [0u64; 7];
    for h in held {
        // Every job has ended, so every handle resolves without waiting.
        let result = tokio::time::timeout(Duration::from_secs(1), h.take())
            .await
            .map_err(|_| TestCaseError::fail("a handle never resolved: its job was lost"))?;
        prop_assert!(
            plausible(h.kind, h.aborted, clock, &result),
            "{:?} (aborted: {}) resolved to {:?}",
            h.kind,
            h.aborted,
            result
        );
        reported[outcome(&result)] += 1;
    }
    for (kind, task) in runs {
        let result = ran(kind, clock, task).await?;
        prop_assert!(
            plausible(kind, false, clock, &result),
            "{:?} run resolved to {:?}",
            kind,
            result
        );
        reported[outcome(&result)] += 1;
    }
    let counted = [
        m.completed,
        m.panicked,
        m.cancelled,
        m.expired,
        m.abandoned,
        m.displaced,
        m.timed_out,
    ];
    let names = [
        "completed",
        "panicked",
        "cancelled",
        "expired",
        "abandoned",
        "displaced",
        "timed_out",
    ];
    for (i, name) in names.into_iter().enumerate() {
        prop_assert!(
            counted[i] >= reported[i],
            "{} handles report {}, {} counted: {:?}",
            reported[i],
            name,
            counted[i],
            m
        );
        if let_go == 0 {
            prop_assert_eq!(counted[i], reported[i], "{} counted vs reported", name);
        }
    }
    Ok(())
}

/// What the task awaiting a `Run` returned, once every job has ended. A job a shutdown counted
/// abandoned while it ran on that task returns `Abandoned` at its next poll; one never woken
/// again (`Pending`) is not polled again, and its task is aborted here: it reports what it was
/// counted as.
async fn ran(
    kind: Kind,
    clock: Clock,
    mut task: JoinHandle<Result<u32, JobError>>,
) -> Result<Result<u32, JobError>, TestCaseError> {
    let wait = match (kind, clock) {
        (Kind::Pending, Clock::Real) => Duration::from_millis(50),
        _ => Duration::from_secs(1),
    };
    match tokio::time::timeout(wait, &mut task).await {
        Ok(joined) => joined.map_err(|e| TestCaseError::fail(format!("a run's task failed: {e}"))),
        Err(_) if matches!(kind, Kind::Pending) => {
            task.abort();
            Ok(Err(JobError::Abandoned))
        }
        Err(_) => Err(TestCaseError::fail(
            "a run never resolved: its job was lost",
        )),
    }
}

/// The limit is within its range (see the module docs).
fn check_limit(settings: &Settings, m: &spillway::Snapshot) -> Result<(), TestCaseError> {
    let low = settings.min_workers.max(1);
    prop_assert!(
        (low..=settings.max_workers).contains(&m.limit),
        "limit {} outside {}..={}",
        m.limit,
        low,
        settings.max_workers
    );
    if settings.limit == Limit::fixed() {
        prop_assert_eq!(m.limit, settings.max_workers);
    }
    Ok(())
}

/// The counter a handle's result belongs to (the order of `counted` above).
fn outcome(result: &Result<u32, JobError>) -> usize {
    match result {
        Ok(_) => 0,
        Err(JobError::Panicked(_)) => 1,
        Err(JobError::Cancelled) => 2,
        Err(JobError::Expired) => 3,
        Err(JobError::Displaced) => 5,
        Err(JobError::TimedOut) => 6,
        Err(_) => 4,
    }
}

/// The options of a `*_with` submission: a deadline `ms` ahead on the runtime's clock.
fn options(priority: Priority, ms: Option<u64>, clock: Clock) -> JobOptions {
    let opts = JobOptions::new().priority(priority);
    match ms {
        // The runtime's clock (virtual when paused), as the pool reads it.
        Some(ms) => opts.deadline(tokio::time::Instant::now().into_std() + clock.ms(ms)),
        None => opts,
    }
}

/// The accounting identity holds per priority at rest, and the priorities add up to the totals.
fn check_priorities(m: &spillway::Snapshot) -> Result<(), TestCaseError> {
    let mut sums = [0u64; 6];
    for (priority, c) in m.by_priority.iter() {
        prop_assert_eq!((c.queued, c.busy), (0, 0), "{}", priority);
        prop_assert_eq!(c.unaccounted(), 0, "{}: {:?}", priority, c);
        for (sum, value) in sums.iter_mut().zip([
            c.submitted,
            c.ended(),
            c.displaced,
            c.expired,
            c.timed_out,
            c.shed_full + c.shed_closed + c.shed_expired,
        ]) {
            *sum += value;
        }
    }
    prop_assert_eq!(
        sums,
        [
            m.submitted,
            m.ended(),
            m.displaced,
            m.expired,
            m.timed_out,
            m.shed()
        ]
    );
    Ok(())
}

/// Runs one case on `rt`; a case still running after `limit` (of the runtime's clock) fails as a
/// lost wake-up instead of hanging.
fn check(
    rt: tokio::runtime::Runtime,
    settings: Settings,
    ops: Vec<Op>,
    clock: Clock,
    limit: Duration,
) -> Result<(), TestCaseError> {
    quiet_planned_panics();
    rt.block_on(async {
        tokio::time::timeout(limit, run(settings, ops, clock))
            .await
            .map_err(|_| TestCaseError::fail("the case never finished: a lost wake-up"))?
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_admitted_job_ends_in_exactly_one_counted_outcome(
        settings in settings(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        // Virtual time: a case that waits forever fails (and shrinks) instead of hanging.
        check(rt, settings, ops, Clock::Paused, Duration::from_secs(600))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The same on a multi-threaded runtime with real (shortened) time: workers run in parallel
    /// with the test's own calls, so cancellations, aborts and shutdowns race jobs for real.
    #[test]
    fn every_admitted_job_ends_in_one_counted_outcome_on_threads(
        settings in settings(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        check(rt, settings, ops, Clock::Real, Duration::from_secs(30))?;
    }
}

/// The same invariant with real threads and real time: four producers race shutdown.
#[test]
fn shutdown_racing_producers_loses_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for round in 0..20 {
            let pool = Pool::builder()
                .max_workers(3)
                .queue_capacity(8)
                .build()
                .unwrap();
            let producers: Vec<_> = (0..4)
                .map(|p| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let mut handles = Vec::new();
                        let (mut ok, mut refused) = (0u64, 0u64);
                        for i in 0..300u32 {
                            match pool.try_submit(async move {
                                if i % 7 == 0 {
                                    tokio::task::yield_now().await;
                                }
                                i
                            }) {
                                Ok(h) if (i + p) % 3 == 0 => {
                                    ok += 1;
                                    h.detach();
                                }
                                Ok(h) => {
                                    ok += 1;
                                    handles.push(h);
                                }
                                Err(_) => refused += 1,
                            }
                        }
                        (ok, refused, handles)
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            let report = pool.shutdown(Duration::from_millis(round % 3)).await;
            let (mut ok, mut refused) = (0, 0);
            for p in producers {
                let (o, r, handles) = p.await.unwrap();
                ok += o;
                refused += r;
                for h in handles {
                    let result = tokio::time::timeout(Duration::from_secs(1), h)
                        .await
                        .expect("a handle never resolved: its job was lost");
                    assert!(
                        matches!(result, Ok(_) | Err(JobError::Abandoned)),
                        "{result:?}"
                    );
                }
            }
            let m = pool.metrics();
            assert_eq!((m.submitted, m.shed()), (ok, refused));
            assert_eq!((m.unaccounted(), m.workers, m.queued, m.busy), (0, 0, 0, 0));
            assert!(report.abandoned <= m.submitted);
        }
    });
}
