//! The job every subcommand runs: it allocates and touches memory, waits (standing for a call
//! to something downstream) while holding it, then burns CPU.

use std::collections::TryReserveError;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What one job does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Profile {
    /// Time the job waits (an I/O-like sleep), holding its memory.
    pub(crate) wait: Duration,
    /// Bytes allocated and touched, one write per 4 KiB page.
    pub(crate) alloc: usize,
    /// Busy CPU time, after the wait.
    pub(crate) cpu: Duration,
}

impl Profile {
    /// How long the job takes when nothing holds it back: its wait plus its CPU time.
    pub(crate) fn duration(&self) -> Duration {
        self.wait + self.cpu
    }
}

/// A fault injected into one job (`--fault-panic`, `--fault-hang`, `--fault-alloc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The job panics after its wait.
    Panic,
    /// The job never finishes: after its wait it waits forever.
    Hang,
    /// The job allocates ten times its memory.
    Alloc,
}

impl Fault {
    /// The job as the fault changes its profile.
    pub(crate) fn applied(fault: Option<Fault>, profile: Profile) -> Profile {
        match fault {
            Some(Fault::Alloc) => Profile {
                alloc: profile.alloc.saturating_mul(10),
                ..profile
            },
            _ => profile,
        }
    }

    /// Strikes, if the fault is one that ends the job: panics, or never returns.
    pub(crate) async fn strike(fault: Option<Fault>) {
        match fault {
            Some(Fault::Panic) => {
                quiet_injected_panics();
                std::panic::panic_any(INJECTED_PANIC)
            }
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::Alloc) | None => {}
        }
    }
}

/// The message of a `--fault-panic` panic.
pub(crate) const INJECTED_PANIC: &str = "injected fault (--fault-panic)";

/// Leaves injected panics out of the panic message on stderr (thousands a second under load);
/// every other panic is still reported by the hook that was there before.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// Runs `job`, catching a panic in any of its polls: `Err` with the panic's payload.
pub(crate) async fn catch_panic(job: impl Future<Output = ()>) -> std::thread::Result<()> {
    let mut job = std::pin::pin!(job);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.as_mut().poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}

/// A number in 0..1, a different one on each call (a SplitMix64 sequence shared by the
/// process): which jobs get a fault.
pub(crate) fn roll() -> f64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut z = NEXT
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Most KiB a job may allocate: 1 GiB, as `/work`'s `alloc_kib` query parameter.
pub(crate) const MAX_ALLOC_KIB: u64 = 1 << 20;

const PAGE: usize = 4096;

/// Runs the job; returns when it ended.
pub(crate) async fn run(profile: Profile) {
    run_with(profile, None).await;
}

/// Runs the job with `fault` (which may panic, or never return, after the wait).
pub(crate) async fn run_with(profile: Profile, fault: Option<Fault>) {
    let profile = Fault::applied(fault, profile);
    let mut buffer = vec![0u8; profile.alloc];
    for page in buffer.iter_mut().step_by(PAGE) {
        *page = 1;
    }
    black_box(&mut buffer);
    if !profile.wait.is_zero() {
        tokio::time::sleep(profile.wait).await;
    }
    Fault::strike(fault).await;
    burn(profile.cpu);
    drop(black_box(buffer));
}

/// Runs the job on the calling thread, as a CPU lane runs it: its wait is a thread sleep there,
/// as a blocking call would be.
pub(crate) fn run_blocking(profile: Profile) {
    let mut buffer = vec![0u8; profile.alloc];
    for page in buffer.iter_mut().step_by(PAGE) {
        *page = 1;
    }
    black_box(&mut buffer);
    if !profile.wait.is_zero() {
        std::thread::sleep(profile.wait);
    }
    burn(profile.cpu);
    drop(black_box(buffer));
}

/// Allocates `bytes` and touches every page, or fails without aborting the process.
///
/// # Errors
///
/// When the allocator cannot provide `bytes`.
pub(crate) fn try_hold(bytes: usize) -> Result<Vec<u8>, TryReserveError> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(bytes)?;
    buffer.resize(bytes, 0);
    for page in buffer.iter_mut().step_by(PAGE) {
        *page = 1;
    }
    Ok(black_box(buffer))
}

/// Keeps this thread busy for `cpu`.
fn burn(cpu: Duration) {
    burn_unless(cpu, &AtomicBool::new(false));
}

/// Keeps this thread busy for `cpu`, or until `cancelled` is set.
pub(crate) fn burn_unless(cpu: Duration, cancelled: &AtomicBool) {
    if cpu.is_zero() {
        return;
    }
    let until = Instant::now().checked_add(cpu);
    let mut x = 0u64;
    while until.is_none_or(|until| Instant::now() < until) && !cancelled.load(Ordering::Relaxed) {
        for _ in 0..1_000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_spread_over_zero_to_one() {
        let rolls: Vec<f64> = (0..10_000).map(|_| roll()).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let low = rolls.iter().filter(|&&r| r < 0.1).count();
        assert!((700..1300).contains(&low), "{low} of 10000 below 0.1");
    }

    #[tokio::test]
    async fn an_alloc_fault_holds_ten_times_and_a_hang_never_ends() {
        let profile = Profile {
            wait: Duration::ZERO,
            alloc: 4096,
            cpu: Duration::ZERO,
        };
        assert_eq!(Fault::applied(Some(Fault::Alloc), profile).alloc, 40_960);
        assert_eq!(Fault::applied(Some(Fault::Hang), profile), profile);
        let hung = tokio::time::timeout(
            Duration::from_millis(50),
            run_with(profile, Some(Fault::Hang)),
        );
        assert!(hung.await.is_err());
        let panicked = catch_panic(run_with(profile, Some(Fault::Panic))).await;
        let payload = panicked.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&INJECTED_PANIC));
        assert_eq!(catch_panic(run_with(profile, None)).await.ok(), Some(()));
    }

    #[tokio::test]
    async fn the_job_holds_its_memory_for_its_wait_and_cpu_time() {
        let profile = Profile {
            wait: Duration::from_millis(20),
            alloc: 64 * 1024,
            cpu: Duration::from_millis(2),
        };
        assert_eq!(profile.duration(), Duration::from_millis(22));
        let start = Instant::now();
        run(profile).await;
        assert!(start.elapsed() >= profile.duration());
    }
}
