//! Property: whatever callers do, every admitted job ends in exactly one counted outcome.
//!
//! Random pools run random sequences of submit / try_submit / submit_timeout, handle drops,
//! aborts and detaches, panicking, slow and never-ending jobs, closes and shutdowns, on a
//! paused-clock runtime (so time-dependent paths run without real waiting). Afterwards:
//!
//! * `submitted == completed + panicked + cancelled + expired + abandoned`, nothing queued or busy;
//! * admissions and sheds seen by the caller match the counters exactly;
//! * every handle still held resolves (no job is lost), to a result its job could produce;
//! * no worker task is left.

use std::time::Duration;

use proptest::prelude::*;
use spillway::{JobError, JobHandle, Pool};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ready,
    Sleep(u64),
    Pending,
    Panic,
    SleepThenPanic(u64),
}

#[derive(Debug, Clone)]
enum Op {
    TrySubmit(Kind),
    Submit(Kind),
    SubmitTimeout(Kind, u64),
    Drop(usize),
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
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => kind().prop_map(Op::TrySubmit),
        2 => kind().prop_map(Op::Submit),
        2 => (kind(), 0u64..20).prop_map(|(k, t)| Op::SubmitTimeout(k, t)),
        2 => any::<usize>().prop_map(Op::Drop),
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
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        1usize..4,
        0usize..4,
        1usize..6,
        proptest::option::of(1u64..25),
    )
        .prop_map(
            |(max_workers, min, queue_capacity, queue_timeout)| Settings {
                min_workers: min.min(max_workers),
                max_workers,
                queue_capacity,
                queue_timeout,
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
                .is_some_and(|m| m.starts_with("planned"));
            if !planned {
                default(info);
            }
        }));
    });
}

async fn job(kind: Kind) -> u32 {
    match kind {
        Kind::Ready => 1,
        Kind::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            2
        }
        Kind::Pending => std::future::pending().await,
        Kind::Panic => panic!("planned"),
        Kind::SleepThenPanic(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            panic!("planned later")
        }
    }
}

/// What a handle may legitimately resolve to, given the job it was for.
fn plausible(kind: Kind, aborted: bool, result: &Result<u32, JobError>) -> bool {
    match result {
        Ok(1) => matches!(kind, Kind::Ready) && !aborted,
        Ok(2) => matches!(kind, Kind::Sleep(_)) && !aborted,
        Ok(_) => false,
        Err(JobError::Panicked(_)) => {
            matches!(kind, Kind::Panic | Kind::SleepThenPanic(_)) && !aborted
        }
        Err(JobError::Cancelled) => aborted,
        Err(JobError::Expired | JobError::Abandoned) => !aborted,
        Err(_) => false,
    }
}

struct Held {
    kind: Kind,
    aborted: bool,
    handle: JobHandle<u32>,
}

async fn run(settings: Settings, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut builder = Pool::builder()
        .min_workers(settings.min_workers)
        .max_workers(settings.max_workers)
        .queue_capacity(settings.queue_capacity)
        .idle_timeout(Duration::from_millis(15));
    if let Some(ms) = settings.queue_timeout {
        builder = builder.queue_timeout(Duration::from_millis(ms));
    }
    let pool = builder.build().unwrap();
    let mut held: Vec<Held> = Vec::new();
    let (mut admitted, mut shed) = (0u64, 0u64);

    let mut admit = |result: Result<JobHandle<u32>, ()>, kind, held: &mut Vec<Held>| match result {
        Ok(handle) => {
            admitted += 1;
            held.push(Held {
                kind,
                aborted: false,
                handle,
            });
        }
        Err(()) => shed += 1,
    };

    for op in ops {
        match op {
            Op::TrySubmit(k) => admit(pool.try_submit(job(k)).map_err(drop), k, &mut held),
            Op::Submit(k) => {
                // Waits for room; bounded so that a full queue of never-ending jobs cannot hang.
                // Gave up waiting: never admitted, and not counted as shed either.
                let wait = tokio::time::timeout(Duration::from_millis(50), pool.submit(job(k)));
                if let Ok(result) = wait.await {
                    admit(result.map_err(drop), k, &mut held);
                }
            }
            Op::SubmitTimeout(k, ms) => admit(
                pool.submit_timeout(job(k), Duration::from_millis(ms))
                    .await
                    .map_err(drop),
                k,
                &mut held,
            ),
            Op::Drop(i) if !held.is_empty() => {
                held.remove(i % held.len());
            }
            Op::Abort(i) if !held.is_empty() => {
                let i = i % held.len();
                // Aborting a job that already ended changes nothing.
                held[i].aborted |= !held[i].handle.is_finished();
                held[i].handle.abort();
            }
            Op::Detach(i) if !held.is_empty() => held.remove(i % held.len()).handle.detach(),
            Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Op::Yield => tokio::task::yield_now().await,
            Op::Close => pool.close(),
            Op::Shutdown(ms) => {
                pool.shutdown(Duration::from_millis(ms)).await;
            }
            Op::Drop(_) | Op::Abort(_) | Op::Detach(_) => {}
        }
    }

    let report = pool.shutdown(Duration::from_millis(20)).await;
    let m = pool.metrics();
    prop_assert_eq!(m.submitted, admitted, "admissions seen by callers");
    prop_assert_eq!(m.shed(), shed, "sheds seen by callers");
    prop_assert_eq!((m.queued, m.busy, m.workers), (0, 0, 0));
    prop_assert_eq!(m.unaccounted(), 0, "{:?}", m);
    prop_assert_eq!(m.ended(), m.submitted);
    prop_assert!(report.drained + report.abandoned <= m.submitted);

    for h in held {
        // Every job has ended, so every handle resolves without waiting.
        let result = tokio::time::timeout(Duration::from_secs(1), h.handle)
            .await
            .map_err(|_| TestCaseError::fail("a handle never resolved: its job was lost"))?;
        prop_assert!(
            plausible(h.kind, h.aborted, &result),
            "{:?} (aborted: {}) resolved to {:?}",
            h.kind,
            h.aborted,
            result
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_admitted_job_ends_in_exactly_one_counted_outcome(
        settings in settings(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        quiet_planned_panics();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        // Virtual time: a case that waits forever fails here (and shrinks) instead of hanging.
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(600), run(settings, ops))
                .await
                .map_err(|_| TestCaseError::fail("the case never finished: a lost wake-up"))?
        })?;
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
