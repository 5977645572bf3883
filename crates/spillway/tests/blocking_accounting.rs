//! Property: the CPU lane keeps the pools' accounting. Random `BlockingPool`s (threads, queue,
//! queue timeout) run random sequences of try_submit / submit / submit_timeout of closures that
//! return, sleep, panic or block until a gate opens; handle drops, aborts and detaches, closes,
//! gate openings and shutdowns with short deadlines (so threads are detached with a closure
//! still running), on a multi-threaded runtime with real time. Afterwards:
//!
//! * `submitted == completed + panicked + cancelled + expired + abandoned`, nothing queued or
//!   busy, no worker left;
//! * admissions and sheds seen by the caller match the counters exactly;
//! * every handle still held resolves, to a result its closure could produce;
//! * the threads detached, over all shutdowns, are at most the pool's threads.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use spillway::{BlockingPool, JobError, JobHandle};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ready,
    Sleep(u64),
    Panic,
    /// Waits until the gate opens (at most two seconds), then returns.
    Gate,
}

#[derive(Debug, Clone)]
enum Op {
    TrySubmit(Kind),
    Submit(Kind),
    SubmitTimeout(Kind, u64),
    Drop(usize),
    Abort(usize),
    Detach(usize),
    Open,
    Close,
    Shutdown(u64),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Ready),
        (0u64..4).prop_map(Kind::Sleep),
        Just(Kind::Panic),
        Just(Kind::Gate),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => kind().prop_map(Op::TrySubmit),
        2 => kind().prop_map(Op::Submit),
        2 => (kind(), 0u64..5).prop_map(|(k, ms)| Op::SubmitTimeout(k, ms)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::Abort),
        1 => any::<usize>().prop_map(Op::Detach),
        1 => Just(Op::Open),
        1 => Just(Op::Close),
        1 => (0u64..10).prop_map(Op::Shutdown),
    ]
}

/// A gate closures wait at, opened once.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let open = self.0.0.lock().unwrap();
        let _ = self
            .0
            .1
            .wait_timeout_while(open, Duration::from_secs(2), |open| !*open)
            .unwrap();
    }
}

fn job(kind: Kind, gate: &Gate) -> impl FnOnce() -> u32 + Send + 'static {
    let gate = gate.clone();
    move || match kind {
        Kind::Ready => 1,
        Kind::Sleep(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            2
        }
        Kind::Panic => panic!("planned"),
        Kind::Gate => {
            gate.wait();
            3
        }
    }
}

fn plausible(kind: Kind, result: &Result<u32, JobError>) -> bool {
    match (kind, result) {
        (Kind::Ready, Ok(1)) | (Kind::Sleep(_), Ok(2)) | (Kind::Gate, Ok(3)) => true,
        (Kind::Panic, Err(JobError::Panicked(msg))) => msg == "planned",
        (_, Err(JobError::Cancelled | JobError::Expired | JobError::Abandoned)) => true,
        _ => false,
    }
}

/// What the caller saw.
#[derive(Default)]
struct Seen {
    admitted: u64,
    shed_full: u64,
    shed_closed: u64,
    detached: u64,
}

async fn run(
    threads: usize,
    queue: usize,
    timeout: Option<u64>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut builder = BlockingPool::builder()
        .threads(threads)
        .queue_capacity(queue);
    if let Some(ms) = timeout {
        builder = builder.queue_timeout(Duration::from_millis(ms));
    }
    let pool = builder.build().unwrap();
    let gate = Gate::default();
    let mut held: Vec<(Kind, JobHandle<u32>)> = Vec::new();
    let mut seen = Seen::default();
    for op in ops {
        let admitted = match op {
            Op::TrySubmit(kind) => match pool.try_submit(job(kind, &gate)) {
                Ok(handle) => Some((kind, handle)),
                Err(e) if e.is_full() => {
                    seen.shed_full += 1;
                    None
                }
                Err(_) => {
                    seen.shed_closed += 1;
                    None
                }
            },
            Op::Submit(kind) => {
                let submit = pool.submit(job(kind, &gate));
                match tokio::time::timeout(Duration::from_millis(5), submit).await {
                    Ok(Ok(handle)) => Some((kind, handle)),
                    Ok(Err(_)) => {
                        seen.shed_closed += 1;
                        None
                    }
                    Err(_) => None, // gave up waiting: never admitted, never counted
                }
            }
            Op::SubmitTimeout(kind, ms) => {
                match pool
                    .submit_timeout(job(kind, &gate), Duration::from_millis(ms))
                    .await
                {
                    Ok(handle) => Some((kind, handle)),
                    Err(e) if e.is_timeout() => {
                        seen.shed_full += 1;
                        None
                    }
                    Err(_) => {
                        seen.shed_closed += 1;
                        None
                    }
                }
            }
            Op::Drop(i) if !held.is_empty() => {
                drop(held.swap_remove(i % held.len()));
                None
            }
            Op::Abort(i) if !held.is_empty() => {
                let n = held.len();
                held[i % n].1.abort();
                None
            }
            Op::Detach(i) if !held.is_empty() => {
                held.swap_remove(i % held.len()).1.detach();
                None
            }
            Op::Open => {
                gate.open();
                None
            }
            Op::Close => {
                pool.close();
                None
            }
            Op::Shutdown(ms) => {
                seen.detached += pool.shutdown(Duration::from_millis(ms)).await.detached;
                None
            }
            Op::Drop(_) | Op::Abort(_) | Op::Detach(_) => None,
        };
        if let Some(admitted) = admitted {
            seen.admitted += 1;
            held.push(admitted);
        }
    }
    seen.detached += pool.shutdown(Duration::from_millis(20)).await.detached;
    gate.open();
    for (kind, handle) in held {
        let result = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .map_err(|_| TestCaseError::fail("a handle never resolved"))?;
        prop_assert!(plausible(kind, &result), "{kind:?} ended as {result:?}");
    }
    let m = pool.metrics();
    let ended = m.completed + m.panicked + m.cancelled + m.expired + m.abandoned;
    prop_assert_eq!(m.submitted, ended, "{:?}", m);
    prop_assert_eq!(m.submitted, seen.admitted);
    prop_assert_eq!(
        (m.shed_full, m.shed_closed),
        (seen.shed_full, seen.shed_closed)
    );
    prop_assert_eq!((m.queued, m.busy, m.workers), (0, 0, 0));
    prop_assert!(
        seen.detached <= threads as u64,
        "{} detached",
        seen.detached
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_admitted_closure_ends_in_exactly_one_counted_outcome(
        threads in 1usize..4,
        queue in 1usize..6,
        timeout in proptest::option::of(1u64..10),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        std::panic::set_hook(Box::new(|_| {})); // the planned panics are reported, not printed
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            tokio::time::timeout(Duration::from_secs(60), run(threads, queue, timeout, ops))
                .await
                .map_err(|_| TestCaseError::fail("the case never finished"))?
        })?;
    }
}
