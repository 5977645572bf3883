//! What one job costs through a spillway [`Pool`], next to what people write without one: a bare
//! `tokio::spawn`, and `tokio::spawn` bounded by a [`Semaphore`].
//!
//! Run it with
//!
//! ```text
//! cargo bench -p spillway --bench round_trip
//! cargo bench -p spillway --bench round_trip -- shed     # one group (a criterion filter)
//! ```
//!
//! Every variant runs in the same criterion run, so the ratios between them are comparable. The
//! groups:
//!
//! * `round_trip`: one empty job at a time is submitted, run and awaited before the next one
//!   (`spillway`, `tokio_spawn`, `semaphore_spawn`). This is the fixed cost a pool adds to a job.
//!   `spillway` is the default pool (the adaptive limit) through `Pool::run`, the call for a job
//!   its caller awaits: with a worker slot free it runs on the calling task.
//!   `spillway_handle` is the same pool through `try_submit` and awaiting the `JobHandle`, so
//!   a worker runs the job: the hand-off `run` saves. `spillway_fixed` is `spillway` with
//!   `Limit::fixed()`: their ratio is what the adaptive bookkeeping costs per job (goal: at most
//!   1.10). `spillway_priority` is the default pool through `try_run_with(Priority::Normal,
//!   ..)`: its ratio to `spillway` is what the priority API costs on the fast path (goal: at
//!   most 1.05).
//! * `batched`: 1,000 empty jobs are submitted, then all 1,000 results awaited, by one producer
//!   task or by two producer tasks at once (500 each). Criterion reports the time per batch and,
//!   through `Throughput::Elements(1000)`, jobs per second; the time per job is the batch time
//!   divided by 1,000. The queue (1,024 slots) and the semaphore (1,024 permits) never fill, so no
//!   submission waits. On a busy machine the default pool may drop a few jobs of a burst at
//!   dequeue (`JobError::Expired`, its queue-wait rule): they count as ended round trips.
//! * `shed`: the load-shedding path. A pool with one worker and a one-slot queue is filled with
//!   two jobs that never end, then `try_submit` is measured failing with `Full`; next to it,
//!   `Semaphore::try_acquire_owned` (and the borrowing `try_acquire`) failing on a semaphore with
//!   no permits. The goal is shedding a job in well under 100 ns.
//! * `blocking`: the CPU lane. `blocking` submits an empty closure to a `BlockingPool` of two
//!   threads and awaits its handle, one at a time; `spawn_blocking` does the same with tokio's
//!   `spawn_blocking` (goal: `blocking` within 1.2x of it). `blocking_shed` is `try_submit` on a
//!   full `BlockingPool`, refused (goal: under 10 ns, no allocation: the closure is handed back).
//!
//! # Why the round trips are measured from a task
//!
//! The submit/await loops run inside a task spawned on a two-thread multi-thread runtime
//! (`rt.block_on(tokio::spawn(loop))`), never in `Runtime::block_on`'s own future. A future driven
//! by `block_on` runs on the benchmark's thread, which is not one of the runtime's workers: every
//! `await` that is not ready at once parks that thread and needs a cross-thread wake-up to
//! resume, which costs about 17 us per job and would hide everything else. From a task, the
//! waiting and the waking stay on the runtime's workers, as they do in a real service, and
//! `tokio::spawn(..).await` costs well under a microsecond. The shedding loops never wait, so
//! they run on the benchmark thread directly.
//!
//! # Reading the numbers
//!
//! Quote ratios between variants of one run (spillway / `tokio_spawn`), not absolute times: those
//! depend on the machine, on how many cores it has (the reference runs had two) and on what else
//! is running at the time.

use std::future::{Future, pending};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use spillway::{BlockingPool, JobError, JobHandle, Limit, Pool, Priority, TrySubmitError};
use tokio::runtime::Runtime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Worker threads of every benchmark runtime, and the pool's `max_workers`.
const THREADS: usize = 2;
/// The pool's queue capacity, and the permits of the semaphore it is compared with.
const CAPACITY: usize = 1024;
/// Jobs per batch in the `batched` group.
const BATCH: usize = 1000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The pool the `round_trip` and `batched` groups use, started on `rt`: the default limit.
fn pool(rt: &Runtime) -> Pool {
    pool_with(rt, Limit::default())
}

fn pool_with(rt: &Runtime, limit: Limit) -> Pool {
    Pool::builder()
        .name("bench")
        .limit(limit)
        .max_workers(THREADS)
        .queue_capacity(CAPACITY)
        .runtime(rt.handle().clone())
        .build()
        .expect("valid pool settings")
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// Runs `measure` as a task on `rt` and returns the time it measured.
fn in_task<F>(rt: &Runtime, measure: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    rt.block_on(async {
        tokio::spawn(measure)
            .await
            .expect("benchmark task panicked")
    })
}

/// Admits one empty job: `try_submit` (or `try_submit_with(priority, ..)`), or `submit`
/// (waiting for room) if the queue is full.
async fn spillway_submit(pool: &Pool, priority: Option<Priority>) -> JobHandle<()> {
    let job = async {};
    let tried = match priority {
        None => pool.try_submit(job),
        Some(priority) => pool.try_submit_with(priority, job),
    };
    match tried {
        Ok(handle) => handle,
        Err(TrySubmitError::Full(job)) => pool.submit(job).await.expect("pool open"),
        Err(error) => panic!("{error} during the benchmark"),
    }
}

/// Takes a permit (waiting if none is left) and spawns an empty task that holds it.
async fn semaphore_spawn(semaphore: &Arc<Semaphore>) -> JoinHandle<()> {
    let permit: OwnedSemaphorePermit = match semaphore.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open"),
    };
    tokio::spawn(async move {
        let _permit = permit;
    })
}

/// Admits one empty job and runs it with `Pool::run` (or `try_run_with(priority, ..)`).
async fn spillway_run(pool: &Pool, priority: Option<Priority>) {
    let ran = match priority {
        None => pool.run(async {}).await.map_err(|e| e.to_string()),
        Some(priority) => match pool.try_run_with(priority, async {}) {
            Ok(run) => run.await.map_err(|e| e.to_string()),
            Err(error) => panic!("{error} during the benchmark"),
        },
    };
    black_box(ran).expect("job ran");
}

/// One way of running a job, and the state it needs.
#[derive(Clone)]
enum Runner {
    /// A pool, submitted to with `try_submit`, or `try_submit_with` if a priority is given.
    Spillway(Pool, Option<Priority>),
    /// A pool, run with `Pool::run`, or `try_run_with` if a priority is given.
    SpillwayRun(Pool, Option<Priority>),
    TokioSpawn,
    SemaphoreSpawn(Arc<Semaphore>),
}

impl Runner {
    const NAMES: [&'static str; 3] = ["spillway", "tokio_spawn", "semaphore_spawn"];

    fn new(name: &str, pool: &Pool) -> Runner {
        match name {
            "spillway" => Runner::Spillway(pool.clone(), None),
            "tokio_spawn" => Runner::TokioSpawn,
            "semaphore_spawn" => Runner::SemaphoreSpawn(Arc::new(Semaphore::new(CAPACITY))),
            other => unreachable!("unknown runner {other}"),
        }
    }

    /// `iters` times: submit one empty job and await its result.
    async fn round_trips(&self, iters: u64) {
        match self {
            Runner::Spillway(pool, priority) => {
                for _ in 0..iters {
                    let handle = spillway_submit(pool, *priority).await;
                    black_box(handle.await).expect("job ran");
                }
            }
            Runner::SpillwayRun(pool, priority) => {
                for _ in 0..iters {
                    spillway_run(pool, *priority).await;
                }
            }
            Runner::TokioSpawn => {
                for _ in 0..iters {
                    black_box(tokio::spawn(async {}).await).expect("task ran");
                }
            }
            Runner::SemaphoreSpawn(semaphore) => {
                for _ in 0..iters {
                    let handle = semaphore_spawn(semaphore).await;
                    black_box(handle.await).expect("task ran");
                }
            }
        }
    }

    /// `rounds` times: submit `size` empty jobs, then await all their results.
    async fn batches(&self, rounds: u64, size: usize) {
        match self {
            Runner::Spillway(pool, priority) => {
                let mut handles = Vec::with_capacity(size);
                for _ in 0..rounds {
                    for _ in 0..size {
                        handles.push(spillway_submit(pool, *priority).await);
                    }
                    for handle in handles.drain(..) {
                        ended(black_box(handle.await));
                    }
                }
            }
            Runner::SpillwayRun(..) => unreachable!("a batch awaits its jobs after submitting"),
            Runner::TokioSpawn => {
                let mut handles = Vec::with_capacity(size);
                for _ in 0..rounds {
                    for _ in 0..size {
                        handles.push(tokio::spawn(async {}));
                    }
                    for handle in handles.drain(..) {
                        black_box(handle.await).expect("task ran");
                    }
                }
            }
            Runner::SemaphoreSpawn(semaphore) => {
                let mut handles = Vec::with_capacity(size);
                for _ in 0..rounds {
                    for _ in 0..size {
                        handles.push(semaphore_spawn(semaphore).await);
                    }
                    for handle in handles.drain(..) {
                        black_box(handle.await).expect("task ran");
                    }
                }
            }
        }
    }
}

/// A batched job's outcome: it ran, or the adaptive limit's queue-wait rule dropped it at
/// dequeue (`Expired`) because the burst queued longer than the target on a busy machine. Both
/// are a finished round trip of the default pool; anything else is a bug.
fn ended(result: Result<(), JobError>) {
    match result {
        Ok(()) | Err(JobError::Expired) => {}
        Err(other) => panic!("job ended {other:?}"),
    }
}

/// Measures `rounds` batches of [`BATCH`] jobs, split evenly between `producers` tasks that run
/// at once. One producer runs in the measuring task itself.
async fn measure_batches(runner: Runner, producers: usize, rounds: u64) -> Duration {
    let size = BATCH / producers;
    let start = Instant::now();
    if producers == 1 {
        runner.batches(rounds, size).await;
    } else {
        let tasks: Vec<_> = (0..producers)
            .map(|_| {
                let runner = runner.clone();
                tokio::spawn(async move { runner.batches(rounds, size).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("producer panicked");
        }
    }
    start.elapsed()
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let pool = pool(&rt);
    let fixed = pool_with(&rt, Limit::fixed());
    let mut group = c.benchmark_group("round_trip");
    configure(&mut group);
    for name in [
        "spillway_fixed",
        "spillway",
        "spillway_handle",
        "spillway_priority",
        "tokio_spawn",
        "semaphore_spawn",
    ] {
        let runner = match name {
            "spillway" => Runner::SpillwayRun(pool.clone(), None),
            "spillway_fixed" => Runner::SpillwayRun(fixed.clone(), None),
            "spillway_priority" => Runner::SpillwayRun(pool.clone(), Some(Priority::Normal)),
            "spillway_handle" => Runner::Spillway(pool.clone(), None),
            other => Runner::new(other, &pool),
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let runner = runner.clone();
                in_task(&rt, async move {
                    let start = Instant::now();
                    runner.round_trips(iters).await;
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    rt.block_on(pool.shutdown(Duration::from_secs(5)));
    rt.block_on(fixed.shutdown(Duration::from_secs(5)));
}

fn batched(c: &mut Criterion) {
    let rt = runtime();
    let pool = pool(&rt);
    let mut group = c.benchmark_group("batched");
    configure(&mut group);
    group.throughput(Throughput::Elements(BATCH as u64));
    for name in Runner::NAMES {
        let runner = Runner::new(name, &pool);
        for (producers, label) in [(1, "1_producer"), (2, "2_producers")] {
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|rounds| {
                    in_task(&rt, measure_batches(runner.clone(), producers, rounds))
                });
            });
        }
    }
    group.finish();
    rt.block_on(pool.shutdown(Duration::from_secs(5)));
}

fn shed(c: &mut Criterion) {
    let rt = runtime();
    let pool = Pool::builder()
        .name("full")
        .max_workers(1)
        .min_workers(1)
        .queue_capacity(1)
        .runtime(rt.handle().clone())
        .build()
        .expect("valid pool settings");
    // Occupy the only worker, then the only queue slot, with jobs that never end. The handles
    // must live until the end: dropping one cancels its job.
    let (running, queued) = rt.block_on(async {
        let running = pool
            .try_submit(pending::<()>())
            .expect("room for the first job");
        let waited = Instant::now();
        while pool.metrics().busy == 0 {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "the worker never took the first job"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let queued = pool
            .try_submit(pending::<()>())
            .expect("room for the second job");
        (running, queued)
    });
    assert!(pool.try_submit(async {}).is_err_and(|e| e.is_full()));

    let semaphore = Arc::new(Semaphore::new(0));
    assert!(semaphore.try_acquire().is_err());

    let mut group = c.benchmark_group("shed");
    configure(&mut group);
    group.bench_function("spillway_try_submit", |b| {
        b.iter(|| black_box(pool.try_submit(black_box(async {}))).is_err());
    });
    group.bench_function("semaphore_try_acquire_owned", |b| {
        b.iter(|| black_box(black_box(&semaphore).clone().try_acquire_owned()).is_err());
    });
    group.bench_function("semaphore_try_acquire", |b| {
        b.iter(|| black_box(black_box(&semaphore).try_acquire()).is_err());
    });
    group.finish();

    // Every try_submit above was shed (none at all if a filter skipped the group): nothing
    // was admitted, and the pool is as we left it.
    let after = pool.metrics();
    assert_eq!((after.submitted, after.busy, after.queued), (2, 1, 1));
    drop((running, queued));
    rt.block_on(pool.shutdown(Duration::from_secs(5)));
}

/// A `BlockingPool` of [`THREADS`] threads whose tasks live on `rt`.
fn blocking_pool(rt: &Runtime, threads: usize, queue: usize) -> BlockingPool {
    BlockingPool::builder()
        .name("bench-blocking")
        .threads(threads)
        .queue_capacity(queue)
        .runtime(rt.handle().clone())
        .build()
        .expect("valid pool settings")
}

fn blocking(c: &mut Criterion) {
    let rt = runtime();
    let pool = blocking_pool(&rt, THREADS, CAPACITY);
    let mut group = c.benchmark_group("blocking");
    configure(&mut group);
    let lane = pool.clone();
    group.bench_function("blocking", |b| {
        b.iter_custom(|iters| {
            let pool = lane.clone();
            in_task(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let handle = pool.try_submit(|| ()).expect("room in the queue");
                    handle.await.expect("the job ran");
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("spawn_blocking", |b| {
        b.iter_custom(|iters| {
            in_task(&rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    tokio::task::spawn_blocking(|| ())
                        .await
                        .expect("the job ran");
                }
                start.elapsed()
            })
        });
    });
    // One thread, held, and a one-slot queue, filled: every further try_submit is shed.
    let full = blocking_pool(&rt, 1, 1);
    let (release, held) = std::sync::mpsc::channel::<()>();
    let running = full
        .try_submit(move || held.recv().is_ok())
        .expect("room for the first job");
    while full.metrics().busy == 0 {
        std::thread::yield_now();
    }
    let queued = full.try_submit(|| ()).expect("room for the second job");
    group.bench_function("blocking_shed", |b| {
        b.iter(|| black_box(full.try_submit(black_box(|| ()))).is_err());
    });
    group.finish();
    assert_eq!(
        full.metrics().submitted,
        2,
        "every later try_submit was shed"
    );
    let _ = release.send(());
    drop((running, queued));
    rt.block_on(full.shutdown(Duration::from_secs(5)));
    rt.block_on(pool.shutdown(Duration::from_secs(5)));
}

criterion_group!(benches, round_trip, batched, shed, blocking);
criterion_main!(benches);
