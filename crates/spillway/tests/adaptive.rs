//! The default pool (adaptive limit, only the ceilings set) against a model downstream: a
//! `Semaphore` of `PERMITS` permits, each held for a fixed time per job, so the downstream
//! completes `PERMITS / hold` jobs per second whatever the number in flight. On a paused clock,
//! so the figures are exact and the runs take no real time.
//!
//! * Under a 3x open-loop overload the pool sheds the excess and keeps admitted latency (queue
//!   wait + run, submission to end) near the hold time, while still delivering the downstream's
//!   capacity.
//! * When the downstream slows down tenfold at low load (0.3x of its slower capacity), nothing
//!   is shed: a latency rise alone is not an overload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spillway::{Pool, TrySubmitError};
use tokio::sync::Semaphore;
use tokio::time::Instant;

const PERMITS: usize = 50;
const HOLD: Duration = Duration::from_millis(10);

/// The model downstream: how long each call holds its permit, changeable mid-run.
#[derive(Clone)]
struct Downstream {
    permits: Arc<Semaphore>,
    hold: Arc<Mutex<Duration>>,
}

impl Downstream {
    fn new() -> Downstream {
        Downstream {
            permits: Arc::new(Semaphore::new(PERMITS)),
            hold: Arc::new(Mutex::new(HOLD)),
        }
    }

    async fn call(&self) {
        let _permit = self.permits.acquire().await.expect("never closed");
        let hold = *self.hold.lock().unwrap();
        tokio::time::sleep(hold).await;
    }
}

/// The default pool with the seed's ceilings only.
fn default_pool() -> Pool {
    Pool::builder()
        .max_workers(5_000)
        .queue_capacity(100_000)
        .build()
        .unwrap()
}

/// Completed jobs: (submitted at, latency from submission to the end of the job).
type Done = Arc<Mutex<Vec<(Instant, Duration)>>>;

/// Offers `per_ms` jobs every millisecond (or one every `every` for lower rates) until `until`,
/// each calling `downstream`; returns how many were shed.
async fn offer(
    pool: &Pool,
    downstream: &Downstream,
    done: &Done,
    (per_tick, tick): (usize, Duration),
    until: Instant,
) -> u64 {
    let mut shed = 0;
    let mut next = Instant::now();
    while next < until {
        for _ in 0..per_tick {
            let (downstream, done) = (downstream.clone(), done.clone());
            let submitted = Instant::now();
            let job = async move {
                downstream.call().await;
                done.lock().unwrap().push((submitted, submitted.elapsed()));
            };
            match pool.try_submit(job) {
                Ok(handle) => handle.detach(),
                Err(TrySubmitError::Full(_)) => shed += 1,
                Err(error) => panic!("the pool is open, no deadline: {error}"),
            }
        }
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    shed
}

/// The `q` quantile of the latencies of jobs submitted at or after `from`, and their count.
fn quantile_since(done: &Done, from: Instant, q: f64) -> (Duration, usize) {
    let mut latencies: Vec<Duration> = done
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= from)
        .map(|(_, latency)| *latency)
        .collect();
    latencies.sort();
    let n = latencies.len();
    assert!(n > 0, "no job completed since {from:?}");
    let index = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
    (latencies[index], n)
}

#[tokio::test(start_paused = true)]
async fn the_default_pool_sheds_a_3x_overload_and_keeps_latency_near_the_downstream_time() {
    let pool = default_pool();
    let downstream = Downstream::new();
    let done = Done::default();
    let start = Instant::now();
    let run = Duration::from_secs(6);
    // Capacity: 50 permits / 10 ms = 5 jobs per ms; offered 15 per ms.
    let shed = offer(
        &pool,
        &downstream,
        &done,
        (15, Duration::from_millis(1)),
        start + run,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // let the admitted ones finish
    let m = pool.metrics();
    let offered = 15 * run.as_millis() as u64;
    assert_eq!(m.shed_full, shed);
    assert!(
        shed > offered / 2,
        "a 3x overload sheds about two thirds: shed {shed} of {offered}; {m:?}"
    );
    // Once the limit has settled (the second half), admitted latency stays near the hold time...
    let half = start + run / 2;
    let (p90, completed) = quantile_since(&done, half, 0.9);
    assert!(
        p90 <= 2 * HOLD,
        "p90 latency {p90:?} over twice the downstream's {HOLD:?}; limit {}; {m:?}",
        m.limit
    );
    // ...and the downstream is still kept busy: at least 80% of its capacity is delivered.
    let capacity = 5 * (run / 2).as_millis() as usize;
    assert!(
        completed * 10 >= capacity * 8,
        "completed {completed} of a capacity of {capacity} in the second half; {m:?}"
    );
    assert!((1..=5_000).contains(&m.limit));
    assert_eq!(m.unaccounted(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_tenfold_slower_downstream_at_low_load_sheds_nothing() {
    let pool = default_pool();
    let downstream = Downstream::new();
    let done = Done::default();
    // Slowed, the downstream completes 50 / 100 ms = 500 jobs/s; offer 0.3 of that: 150/s,
    // 3 jobs every 20 ms. Two seconds at the normal speed first, so the limit has learned it.
    let tick = (3, Duration::from_millis(20));
    let start = Instant::now();
    let mut shed = offer(
        &pool,
        &downstream,
        &done,
        tick,
        start + Duration::from_secs(2),
    )
    .await;
    *downstream.hold.lock().unwrap() = HOLD * 10;
    shed += offer(
        &pool,
        &downstream,
        &done,
        tick,
        start + Duration::from_secs(8),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = pool.metrics();
    assert_eq!(shed, 0, "{m:?}");
    assert_eq!((m.shed_full, m.expired), (0, 0), "{m:?}");
    assert_eq!(m.completed, m.submitted);
    // Latency is the downstream's own: nothing waits in the pool.
    let (p99, _) = quantile_since(&done, start + Duration::from_secs(3), 0.99);
    assert!(p99 <= HOLD * 10 + Duration::from_millis(5), "p99 {p99:?}");
}

/// Under a peer's limit (no queue), a submitter waiting for room is woken by a job's end, not
/// only by a job leaving the queue.
#[tokio::test(start_paused = true)]
async fn a_waiting_submitter_is_admitted_when_a_job_under_the_limit_ends() {
    let pool = Pool::builder()
        .limit(spillway::Limit::aimd().initial_limit(1).min_limit(1))
        .build()
        .unwrap();
    let first = pool
        .try_submit(tokio::time::sleep(Duration::from_millis(10)))
        .expect("room for one");
    tokio::task::yield_now().await;
    assert!(
        pool.try_submit(async {}).is_err(),
        "the limit (1) is in use and there is no queue"
    );
    let second = tokio::time::timeout(Duration::from_secs(1), pool.submit(async { 2 }))
        .await
        .expect("woken when the first job ended")
        .expect("admitted");
    assert_eq!(first.await, Ok(()));
    assert_eq!(second.await, Ok(2));
}

/// Goal 5 ("no shed while the queue ceiling has room"): a cold burst larger than the initial
/// limit (1,000), and twice the cold limit a fresh pool starts with (750), submitted faster
/// than the workers start, waits for them instead of being shed for a queue bound. Nothing is
/// learned yet, so the limit itself still bounds what runs: at most the cold limit.
#[tokio::test(start_paused = true)]
async fn a_cold_burst_larger_than_the_initial_limit_is_admitted_whole() {
    let pool = default_pool();
    let downstream = Downstream::new();
    let done = Done::default();
    let burst = 1_500;
    let shed = offer(
        &pool,
        &downstream,
        &done,
        (burst, Duration::from_millis(1)),
        Instant::now() + Duration::from_millis(1),
    )
    .await;
    let during = pool.metrics();
    assert_eq!(during.limit, 750, "the cold limit: {during:?}");
    assert!(during.busy <= 750, "{during:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = pool.metrics();
    assert_eq!(shed, 0, "the queue ceiling (100,000) had room; {m:?}");
    assert_eq!(m.completed, burst as u64, "{m:?}");
    assert_eq!(m.unaccounted(), 0);
}

/// A closed loop of 1,000 clients (each submits with `submit`, which waits for room, awaits
/// its job and submits the next) never overflows the cold queue, so nothing is ever shed: the
/// cold limit (750) must still give way to the demand, not hold 250 jobs queued for good
/// (`serve` at its defaults under `wrk -c1000`, session 8's review).
#[tokio::test(start_paused = true)]
async fn a_closed_loop_above_the_cold_limit_is_not_held_at_it() {
    let pool = default_pool();
    let clients: Vec<_> = (0..1_000)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let until = Instant::now() + Duration::from_secs(3);
                while Instant::now() < until {
                    let job = tokio::time::sleep(Duration::from_millis(20));
                    let handle = pool.submit(job).await.expect("room");
                    handle.await.expect("the job ran");
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = pool.metrics();
    assert!(m.limit >= 1_000, "held at the cold limit: {m:?}");
    assert!(m.queued < 100, "{m:?}");
    for client in clients {
        client.await.unwrap();
    }
}
