//! The job every subcommand runs: it allocates and touches memory, waits (standing for a call
//! to something downstream) while holding it, then burns CPU.

use std::collections::TryReserveError;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Most KiB a job may allocate: 1 GiB, as `/work`'s `alloc_kib` query parameter.
pub(crate) const MAX_ALLOC_KIB: u64 = 1 << 20;

const PAGE: usize = 4096;

/// Runs the job; returns when it ended.
pub(crate) async fn run(profile: Profile) {
    let mut buffer = vec![0u8; profile.alloc];
    for page in buffer.iter_mut().step_by(PAGE) {
        *page = 1;
    }
    black_box(&mut buffer);
    if !profile.wait.is_zero() {
        tokio::time::sleep(profile.wait).await;
    }
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
