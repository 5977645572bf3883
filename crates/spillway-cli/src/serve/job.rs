//! The `/work` job as the server runs it: its CPU parts (touching its memory, burning) on a
//! bounded lane of blocking threads, so that they never hold the threads that accept and answer
//! other requests; its memory allocated without aborting when the machine cannot hold it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use spillway::{BlockingPool, JobError};
use tokio::sync::Semaphore;

use crate::args::FaultArgs;
use crate::workload::{self, Fault, Profile};

/// Why a job could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobFailure {
    /// Its memory could not be allocated.
    Alloc { kib: usize, reason: String },
    /// The CPU lane is closed (the server is going away).
    LaneClosed,
    /// The CPU lane's queue was full (pool mode): shed.
    Shed,
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobFailure::Alloc { kib, reason } => write!(f, "cannot allocate {kib} KiB: {reason}"),
            JobFailure::LaneClosed => f.write_str("the CPU lane is closed"),
            JobFailure::Shed => f.write_str("the CPU lane is full"),
        }
    }
}

/// Blocking threads for the jobs' CPU work, at most one per core at once; further CPU work
/// waits (asynchronously) for a turn. Dropping a job stops its CPU work at the next check.
#[derive(Debug)]
pub(crate) struct CpuLane {
    turns: Arc<Semaphore>,
    /// Most bytes one job may hold: the machine's memory.
    max_alloc: usize,
    /// Faults injected into a fraction of the jobs.
    faults: FaultArgs,
}

impl CpuLane {
    /// A lane of one thread per core; jobs may hold at most `max_alloc` bytes each, and a
    /// fraction of them get the `faults`.
    pub(crate) fn new(max_alloc: usize, faults: FaultArgs) -> CpuLane {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        CpuLane {
            turns: Arc::new(Semaphore::new(cores)),
            max_alloc,
            faults,
        }
    }

    /// Runs `profile`: allocates and touches its memory, waits holding it, then burns its CPU,
    /// on `cpu` when given (pool mode), else on this lane; or, for a fraction of the jobs, the
    /// fault drawn for it.
    ///
    /// # Errors
    ///
    /// When its memory cannot be allocated, the lane is closed, or `cpu` sheds the CPU part.
    ///
    /// # Panics
    ///
    /// When the job drew `--fault-panic`.
    pub(crate) async fn run(
        &self,
        profile: Profile,
        cpu: Option<&BlockingPool>,
    ) -> Result<(), JobFailure> {
        let fault = self.faults.draw(workload::roll());
        let profile = Fault::applied(fault, profile);
        let memory = self.hold(profile.alloc).await?;
        if !profile.wait.is_zero() {
            tokio::time::sleep(profile.wait).await;
        }
        Fault::strike(fault).await;
        if !profile.cpu.is_zero() {
            let burn = move |cancelled: &AtomicBool| workload::burn_unless(profile.cpu, cancelled);
            match cpu {
                Some(pool) => on_pool(pool, burn).await?,
                None => self.on_lane(burn).await?,
            }
        }
        drop(memory);
        Ok(())
    }

    /// Allocates and touches `bytes` on the lane.
    async fn hold(&self, bytes: usize) -> Result<Vec<u8>, JobFailure> {
        let failure = |reason: String| JobFailure::Alloc {
            kib: bytes / 1024,
            reason,
        };
        if bytes == 0 {
            return Ok(Vec::new());
        }
        if bytes > self.max_alloc {
            return Err(failure(format!(
                "more than this machine's {} KiB of memory",
                self.max_alloc / 1024
            )));
        }
        self.on_lane(move |_| workload::try_hold(bytes))
            .await?
            .map_err(|err| failure(err.to_string()))
    }

    /// Runs `work` on a blocking thread once a turn is free; `work` is told when the caller
    /// has gone, and keeps its turn until it returns.
    async fn on_lane<T: Send + 'static>(
        &self,
        work: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> Result<T, JobFailure> {
        let turn = Arc::clone(&self.turns)
            .acquire_owned()
            .await
            .map_err(|_| JobFailure::LaneClosed)?;
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let cancelled = Arc::clone(&cancel.0);
        let task = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(&cancelled)
        });
        task.await.map_err(|_| JobFailure::LaneClosed)
    }
}

/// Runs `work` on the BlockingPool `pool` if it has room; `work` is told when the caller has
/// gone (a running closure cannot be interrupted otherwise).
async fn on_pool<T: Send + 'static>(
    pool: &BlockingPool,
    work: impl FnOnce(&AtomicBool) -> T + Send + 'static,
) -> Result<T, JobFailure> {
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let cancelled = Arc::clone(&cancel.0);
    let handle = pool
        .try_submit(move || work(&cancelled))
        .map_err(|refused| {
            if refused.is_closed() {
                JobFailure::LaneClosed
            } else {
                JobFailure::Shed
            }
        })?;
    handle.await.map_err(|err| match err {
        JobError::Expired | JobError::Displaced => JobFailure::Shed,
        _ => JobFailure::LaneClosed,
    })
}

/// Tells the lane's work that its caller has gone, when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOTHING: Profile = Profile {
        wait: Duration::ZERO,
        alloc: 0,
        cpu: Duration::ZERO,
    };

    #[tokio::test]
    async fn memory_past_the_machine_is_refused_without_trying() {
        let lane = CpuLane::new(1 << 20, FaultArgs::default());
        let err = lane
            .run(
                Profile {
                    alloc: 2 << 20,
                    ..NOTHING
                },
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot allocate 2048 KiB: more than this machine's 1024 KiB of memory"
        );
        let held = Profile {
            alloc: 64 << 10,
            ..NOTHING
        };
        assert_eq!(lane.run(held, None).await, Ok(()));
    }

    #[tokio::test]
    async fn a_dropped_job_stops_burning() {
        let lane = CpuLane::new(usize::MAX, FaultArgs::default());
        let burn = Profile {
            cpu: Duration::from_secs(60),
            ..NOTHING
        };
        let job = lane.run(burn, None);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), job)
                .await
                .is_err()
        );
        // Every turn comes back once the burn has seen its caller leave, long before 60 s.
        let turns = std::thread::available_parallelism().map_or(1, |n| n.get());
        let all = lane.turns.acquire_many(u32::try_from(turns).unwrap());
        let all = tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("the burn stopped");
        assert!(all.is_ok());
    }
}
