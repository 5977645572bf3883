//! The pool's admission, cancellation and shutdown, driven by fuzz input: a small pool (sizes
//! and limit from the first bytes) on a paused-clock runtime runs a sequence of submissions of
//! jobs that end, sleep, never end or panic, handle drops, aborts and detaches, clock advances,
//! a close and a shutdown. Afterwards every admitted job has ended in exactly one counted
//! outcome, nothing is queued or busy, every held handle resolves, and admissions and sheds
//! match what the caller saw. The property test `tests/accounting.rs`, coverage-guided.
#![no_main]

use std::time::Duration;

use spillway::{JobError, JobHandle, Limit, Pool};

/// The input, read a byte at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    fn ms(&mut self) -> Duration {
        Duration::from_millis(u64::from(self.below(40)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ready,
    Sleep(Duration),
    Pending,
    Panic,
}

fn kind(input: &mut Input<'_>) -> Kind {
    match input.below(8) {
        0..=2 => Kind::Ready,
        3..=5 => Kind::Sleep(input.ms()),
        6 => Kind::Pending,
        _ => Kind::Panic,
    }
}

async fn body(kind: Kind) -> u32 {
    match kind {
        Kind::Ready => 1,
        Kind::Sleep(d) => {
            tokio::time::sleep(d).await;
            2
        }
        Kind::Pending => std::future::pending().await,
        Kind::Panic => panic!("planned"),
    }
}

fn pool(input: &mut Input<'_>) -> Pool {
    let max_workers = usize::from(input.below(4)) + 1;
    let min_workers = usize::from(input.below(4)).min(max_workers);
    let limit: Limit = match input.below(3) {
        0 => Limit::fixed(),
        1 => Limit::default(),
        _ => Limit::adaptive()
            .initial_limit(1)
            .queue_target(Duration::from_millis(2))
            .into(),
    };
    let mut builder = Pool::builder()
        .limit(limit)
        .min_workers(min_workers)
        .max_workers(max_workers)
        .queue_capacity(usize::from(input.below(6)) + 1)
        .idle_timeout(Duration::from_millis(15));
    if input.below(2) == 1 {
        builder = builder.queue_timeout(input.ms() + Duration::from_millis(1));
    }
    builder.build().expect("valid settings")
}

/// Runs the sequence; returns the handles still held, and the admissions and sheds seen.
async fn drive(pool: &Pool, input: &mut Input<'_>) -> (Vec<(Kind, JobHandle<u32>)>, u64, u64) {
    let mut held: Vec<(Kind, JobHandle<u32>)> = Vec::new();
    let (mut admitted, mut shed) = (0u64, 0u64);
    while !input.0.is_empty() {
        let pick = |input: &mut Input<'_>, len: usize| usize::from(input.byte()) % len.max(1);
        match input.below(10) {
            0..=3 => {
                let k = kind(input);
                match pool.try_submit(body(k)) {
                    Ok(handle) => {
                        admitted += 1;
                        held.push((k, handle));
                    }
                    Err(_) => shed += 1,
                }
            }
            4 if !held.is_empty() => drop(held.swap_remove(pick(input, held.len()))),
            5 if !held.is_empty() => held[pick(input, held.len())].1.abort(),
            6 if !held.is_empty() => held.swap_remove(pick(input, held.len())).1.detach(),
            7 => tokio::time::advance(input.ms()).await,
            8 => tokio::task::yield_now().await,
            _ => match input.below(4) {
                0 => pool.close(),
                1 => drop(pool.shutdown(input.ms()).await),
                _ => tokio::task::yield_now().await,
            },
        }
    }
    (held, admitted, shed)
}

/// Every held handle resolves to what its job could produce; then the books balance.
async fn check(pool: &Pool, held: Vec<(Kind, JobHandle<u32>)>, admitted: u64, shed: u64) {
    for (kind, handle) in held {
        let result = tokio::time::timeout(Duration::from_secs(1), handle)
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: a handle never resolved"));
        assert!(plausible(kind, &result), "{kind:?} ended as {result:?}");
    }
    // Let the ends of the jobs whose handles were let go be counted.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let m = pool.metrics();
    assert_eq!(m.submitted, admitted, "{m:?}");
    assert_eq!(m.shed_full + m.shed_closed, shed, "{m:?}");
    assert_eq!(
        m.submitted,
        m.completed + m.panicked + m.cancelled + m.expired + m.abandoned,
        "every admitted job ends in one counted outcome: {m:?}"
    );
    assert_eq!((m.queued, m.busy), (0, 0), "{m:?}");
}

/// What a handle may resolve to, given its job (an abort may turn any into `Cancelled`).
fn plausible(kind: Kind, result: &Result<u32, JobError>) -> bool {
    match result {
        Ok(1) => matches!(kind, Kind::Ready),
        Ok(2) => matches!(kind, Kind::Sleep(_)),
        Ok(_) => false,
        Err(JobError::Panicked(_)) => matches!(kind, Kind::Panic),
        Err(_) => true,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quiet_planned_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut input = Input(data);
        let pool = pool(&mut input);
        let (held, admitted, shed) = drive(&pool, &mut input).await;
        pool.shutdown(Duration::from_millis(50)).await;
        check(&pool, held, admitted, shed).await;
    });
});

/// Keeps the planned panics of jobs off stderr; other panics still print.
fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"planned") {
                default(info);
            }
        }));
    });
}
