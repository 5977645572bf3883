//! One mode of the experiment, run in this process: an open-loop generator thread offers jobs on
//! schedule, and the calling thread samples memory, in-flight jobs and throughput until the
//! duration ends or memory passes its cap.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use spillway::{Limit, Pool};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

use super::ledger::{Counts, Ledger};
use super::report::{LatencyMs, ModeReport, Second};
use crate::args::PoolArgs;
use crate::histogram::quantile_ms;
use crate::memory::Rss;
use crate::workload::{self, Profile};

/// The ways of running the jobs that the experiment compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeName {
    /// `tokio::spawn` per job, unbounded: the seed's "just spawn and hope".
    Naive,
    /// Seed 001's pattern: a tokio `Semaphore` of `--max-workers` permits, `try_acquire` or
    /// shed.
    Semaphore,
    /// spillway with the seed's settings (`--min-workers`, `--max-workers`, `--queue`).
    Pool,
    /// spillway with settings derived from the measured capacity: a queue of 25 ms of work, a
    /// 25 ms queue timeout, and just enough workers to keep the CPUs busy.
    PoolTuned,
}

impl ModeName {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeName::Naive => "naive",
            ModeName::Semaphore => "semaphore",
            ModeName::Pool => "pool",
            ModeName::PoolTuned => "pool-tuned",
        }
    }
}

/// Everything one mode needs; handed to a child process as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModeConfig {
    pub(crate) mode: ModeName,
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) profile: Profile,
    pub(crate) deadline: Duration,
    pub(crate) memory_cap: u64,
    pub(crate) seed: u64,
    /// The seed-settings pool (`pool` mode) and the semaphore's permits (`--max-workers`).
    pub(crate) pool: PoolArgs,
    /// Measured or given capacity, jobs/s; `pool-tuned` derives its settings from it.
    pub(crate) capacity: Option<f64>,
}

/// Derives `pool-tuned`'s settings from the machine's capacity for this job. Pure.
///
/// Little's law: to complete `capacity` jobs/s that each take `job` seconds, about
/// `capacity * job` must run at once; 20% more keeps the CPUs fed while some workers wait. The
/// queue holds 25 ms of work and a job that waited longer is dropped, so a caller waits at most
/// 25 ms more than the job itself, far inside any sensible deadline. Anything beyond that is
/// shed at once, which costs a few nanoseconds and no memory.
pub(crate) fn tuned(capacity: f64, profile: &Profile, deadline: Duration) -> PoolArgs {
    let job_s = profile.duration().as_secs_f64().max(0.000_1);
    let max_workers = ((capacity * job_s * 1.2).ceil() as usize).clamp(2, 100_000);
    let queue_timeout = Duration::from_millis(25)
        .min(deadline / 4)
        .max(Duration::from_millis(1));
    let queue = ((capacity * queue_timeout.as_secs_f64()).ceil() as usize)
        .clamp(1, crate::args::MAX_QUEUE as usize);
    PoolArgs {
        min_workers: max_workers.min(100),
        max_workers,
        queue,
        queue_timeout: Some(queue_timeout),
    }
}

/// The pool a mode runs, if it runs one.
fn pool_settings(cfg: &ModeConfig) -> Option<PoolArgs> {
    match cfg.mode {
        ModeName::Naive | ModeName::Semaphore => None,
        ModeName::Pool => Some(cfg.pool.clone()),
        ModeName::PoolTuned => Some(tuned(
            cfg.capacity.unwrap_or(1_000.0),
            &cfg.profile,
            cfg.deadline,
        )),
    }
}

/// The mode's settings, in words.
fn describe(cfg: &ModeConfig, pool: Option<&PoolArgs>) -> String {
    let Some(pool) = pool else {
        return match cfg.mode {
            ModeName::Semaphore => {
                format!("Semaphore({}), try_acquire or shed", cfg.pool.max_workers)
            }
            _ => "tokio::spawn per job, unbounded".into(),
        };
    };
    let timeout = pool
        .queue_timeout
        .map_or(String::new(), |t| format!(", queue timeout {t:?}"));
    let origin = match (cfg.mode, cfg.capacity) {
        (ModeName::PoolTuned, capacity) => {
            format!(" (from capacity {:.0}/s)", capacity.unwrap_or(1_000.0))
        }
        _ => String::new(),
    };
    format!(
        "spillway {}-{} workers, queue {}{timeout}{origin}",
        pool.min_workers, pool.max_workers, pool.queue
    )
}

/// How a mode runs the jobs offered to it.
enum Runner {
    Naive(Handle),
    Semaphore(Handle, Arc<Semaphore>),
    Pool(Pool),
}

impl Runner {
    fn start(cfg: &ModeConfig, pool: Option<&PoolArgs>, handle: &Handle) -> anyhow::Result<Self> {
        let handle = handle.clone();
        Ok(match (cfg.mode, pool) {
            (ModeName::Semaphore, _) => {
                Runner::Semaphore(handle, Arc::new(Semaphore::new(cfg.pool.max_workers)))
            }
            (_, Some(pool)) => Runner::Pool(build_pool(cfg.mode, pool, handle)?),
            (_, None) => Runner::Naive(handle),
        })
    }

    /// Offers one job. Returns whether it was taken.
    fn offer(&self, job: impl Future<Output = ()> + Send + 'static) -> bool {
        match self {
            Runner::Naive(handle) => {
                drop(handle.spawn(job));
                true
            }
            Runner::Semaphore(handle, semaphore) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => {
                    drop(handle.spawn(async move {
                        job.await;
                        drop(permit);
                    }));
                    true
                }
                Err(_) => false,
            },
            Runner::Pool(pool) => match pool.try_submit(job) {
                Ok(handle) => {
                    handle.detach();
                    true
                }
                Err(_) => false,
            },
        }
    }

    fn expired(&self) -> u64 {
        match self {
            Runner::Pool(pool) => pool.metrics().expired,
            _ => 0,
        }
    }
}

fn build_pool(mode: ModeName, settings: &PoolArgs, handle: Handle) -> anyhow::Result<Pool> {
    // The existing pool modes keep the settings they were given as the limit; the adaptive
    // default gets modes of its own (issue 10's `pool-adaptive`).
    let mut builder = Pool::builder()
        .name(mode.as_str())
        .limit(Limit::fixed())
        .min_workers(settings.min_workers)
        .max_workers(settings.max_workers)
        .queue_capacity(settings.queue)
        .runtime(handle);
    if let Some(timeout) = settings.queue_timeout {
        builder = builder.queue_timeout(timeout);
    }
    builder.build().context("invalid pool settings")
}

fn runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the mode")
}

/// Runs one mode on this thread (which must not be a runtime thread), calling `progress` once
/// a second.
pub(crate) fn run(
    cfg: &ModeConfig,
    progress: &mut dyn FnMut(&Second),
) -> anyhow::Result<ModeReport> {
    let rt = runtime()?;
    let pool = pool_settings(cfg);
    let description = describe(cfg, pool.as_ref());
    let runner = Arc::new(Runner::start(cfg, pool.as_ref(), rt.handle())?);
    let ledger = Arc::new(Ledger::new(cfg.deadline));
    let start = Instant::now();
    let generator = Generator::spawn(Schedule::of(cfg, start), &runner, &ledger)?;
    let mut watched = watch(cfg, start, &runner, &ledger, progress);
    generator.stop()?;
    let ran_for = start.elapsed();
    // Memory still grew while the generator stopped: the figure reported is the peak.
    let memory = Rss::of_self().read().unwrap_or(0);
    watched.peak_rss = watched.peak_rss.max(memory);
    let report = summarize(cfg, description, ran_for, &runner, &ledger, watched);
    // Jobs still in flight are dropped with the runtime, without waiting for them.
    drop(runner);
    rt.shutdown_background();
    Ok(report)
}

/// What the sampling loop saw.
#[derive(Debug, Default)]
struct Watched {
    series: Vec<Second>,
    peak_rss: u64,
    peak_in_flight: u64,
    /// Seconds since the start when memory passed the cap.
    oom_at: Option<f64>,
}

/// How often the sampling loop reads memory and counts: often enough that a mode growing
/// by gigabytes a second passes the cap by little before it is stopped.
const TICK: Duration = Duration::from_millis(5);

/// Samples memory and counts every [`TICK`], one [`Second`] a second, until the duration ends
/// or memory passes the cap.
fn watch(
    cfg: &ModeConfig,
    start: Instant,
    runner: &Runner,
    ledger: &Ledger,
    progress: &mut dyn FnMut(&Second),
) -> Watched {
    let end = start + cfg.duration;
    let mut rss = Rss::of_self();
    let mut watched = Watched::default();
    let mut last = (Counts::default(), 0);
    let mut next_second = start + Duration::from_secs(1);
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let memory = rss.read().unwrap_or(0);
        let counts = (ledger.counts(), runner.expired());
        watched.peak_rss = watched.peak_rss.max(memory);
        watched.peak_in_flight = watched.peak_in_flight.max(counts.0.in_flight);
        let over_cap = memory > cfg.memory_cap;
        let done = now >= end || over_cap;
        if now >= next_second || done {
            let t = watched.series.len() as u32 + 1;
            let second = one_second(t, last, counts, memory, ledger.take_second_p99_ms());
            progress(&second);
            watched.series.push(second);
            last = counts;
            next_second += Duration::from_secs(1);
        }
        if over_cap {
            watched.oom_at = Some(now.duration_since(start).as_secs_f64());
        }
        if done {
            return watched;
        }
    }
}

/// Second `t`: the change from `last` to `now` (ledger counts and expired jobs).
fn one_second(t: u32, last: (Counts, u64), now: (Counts, u64), rss: u64, p99_ms: f64) -> Second {
    let ((was, was_expired), (is, expired)) = (last, now);
    Second {
        t,
        offered: is.offered - was.offered,
        completed: is.completed - was.completed,
        goodput: is.goodput - was.goodput,
        shed: is.shed - was.shed,
        expired: expired - was_expired,
        in_flight: is.in_flight,
        rss_bytes: rss,
        p99_ms,
    }
}

/// The mode's report, from the ledger once the generator has stopped `ran_for` after the start.
/// The rates count over the time the generator ran (to the memory cap, or the duration), so
/// that they agree with the totals, which count every job it offered.
fn summarize(
    cfg: &ModeConfig,
    description: String,
    ran_for: Duration,
    runner: &Runner,
    ledger: &Ledger,
    watched: Watched,
) -> ModeReport {
    let elapsed = ran_for.min(cfg.duration).as_secs_f64().max(0.001);
    let counts = ledger.counts();
    ModeReport {
        mode: cfg.mode.as_str().to_owned(),
        description,
        offered: counts.offered,
        offered_per_s: counts.offered as f64 / elapsed,
        completed: counts.completed,
        goodput_per_s: counts.goodput as f64 / elapsed,
        shed: counts.shed,
        expired: runner.expired(),
        in_flight_at_end: counts.in_flight,
        peak_rss_bytes: watched.peak_rss,
        peak_in_flight: watched.peak_in_flight,
        latency_ms: latency_ms(ledger),
        job_body_mean_ms: ledger.body_mean_ms(),
        oom: watched.oom_at.is_some(),
        oom_at_s: watched.oom_at,
        elapsed_s: elapsed,
        series: watched.series,
    }
}

fn latency_ms(ledger: &Ledger) -> LatencyMs {
    let latency = ledger.latency();
    if latency.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        p50: quantile_ms(&latency, 0.5),
        p99: quantile_ms(&latency, 0.99),
        p999: quantile_ms(&latency, 0.999),
        max: latency.max() as f64 / 1e3,
        mean: latency.mean() / 1e3,
    }
}

/// When jobs are due: Poisson arrivals averaging `rate` per second from `start` to `end`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    end: Instant,
    rate: f64,
    seed: u64,
    profile: Profile,
}

impl Schedule {
    fn of(cfg: &ModeConfig, start: Instant) -> Self {
        Schedule {
            start,
            end: start + cfg.duration,
            rate: cfg.rate,
            seed: cfg.seed,
            profile: cfg.profile,
        }
    }
}

/// The open-loop generator thread.
struct Generator {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Generator {
    fn spawn(
        schedule: Schedule,
        runner: &Arc<Runner>,
        ledger: &Arc<Ledger>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (runner, ledger, stopped) = (Arc::clone(runner), Arc::clone(ledger), stop.clone());
        let thread = std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || generate(schedule, &runner, &ledger, &stopped))
            .context("cannot start the generator thread")?;
        Ok(Generator { stop, thread })
    }

    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the generator thread panicked"))
    }
}

/// Offers jobs on `schedule`, whatever happens to them. When it falls behind it catches up
/// without skipping any, and each job keeps its scheduled time, so a slow system shows up as
/// latency, not as a lower rate. It catches up [`CATCH_UP`] jobs at a time, re-reading the
/// stop flag and the clock in between: at a rate it cannot keep up with, it would otherwise
/// never stop, neither at the memory cap nor at the end of the schedule.
fn generate(schedule: Schedule, runner: &Runner, ledger: &Arc<Ledger>, stop: &AtomicBool) {
    let mut rng = SmallRng::seed_from_u64(schedule.seed);
    let mut gap = || Duration::from_secs_f64(-(1.0 - rng.random::<f64>()).ln() / schedule.rate);
    let mut next = schedule.start + gap();
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || now >= schedule.end {
            return;
        }
        let mut batch = 0;
        while next <= now && batch < CATCH_UP {
            offer(runner, ledger, next, schedule.profile);
            next += gap();
            batch += 1;
        }
        if next > now {
            std::thread::sleep((next - now).min(Duration::from_millis(1)));
        }
    }
}

/// Jobs the generator offers between two readings of its stop flag and the clock.
const CATCH_UP: u32 = 256;

/// Offers one job scheduled at `scheduled`, and counts it.
fn offer(runner: &Runner, ledger: &Arc<Ledger>, scheduled: Instant, profile: Profile) {
    let ticket = ledger.offer(scheduled);
    let job = async move {
        let started = Instant::now();
        workload::run(profile).await;
        ticket.completed(started);
    };
    if !runner.offer(job) {
        ledger.shed();
    }
}

/// Measures what this machine completes per second for `profile` when nothing is shed: enough
/// closed-loop workers to keep the CPUs busy, counted for `seconds` after a short warm-up.
/// The workers together hold at most half of `memory_cap`, and the measurement stops if
/// memory passes the cap all the same.
///
/// # Errors
///
/// One job's memory is more than half the cap, or memory passed the cap.
pub(crate) fn measure_capacity(
    profile: Profile,
    seconds: f64,
    memory_cap: u64,
) -> anyhow::Result<f64> {
    let loops = calibration_loops(profile, memory_cap)?;
    let rt = runtime()?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..loops {
        let (done, stop) = (done.clone(), stop.clone());
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                workload::run(profile).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let counted = count_within_cap(&done, seconds, memory_cap);
    stop.store(true, Ordering::Relaxed);
    rt.shutdown_background();
    counted
}

/// Closed-loop workers for the calibration: enough to keep the CPUs busy, no more than half
/// the memory cap holds.
pub(crate) fn calibration_loops(profile: Profile, memory_cap: u64) -> anyhow::Result<usize> {
    let job_s = profile.duration().as_secs_f64();
    let wanted = ((60_000.0 * job_s).ceil() as usize).clamp(64, 4_000);
    let fit = usize::try_from(memory_cap / 2 / (profile.alloc.max(1) as u64)).unwrap_or(usize::MAX);
    if fit == 0 {
        return Err(crate::args::usage(format!(
            "cannot measure the capacity: one job's --alloc-kib ({} KiB) is more than half \
             --memory-cap ({} MiB); give --capacity, or a larger --memory-cap",
            profile.alloc / 1024,
            memory_cap >> 20
        )));
    }
    Ok(wanted.min(fit))
}

/// Completions per second of the workers counting into `done`, over `seconds` after half a
/// second of warm-up, reading memory every [`TICK`].
fn count_within_cap(done: &AtomicU64, seconds: f64, memory_cap: u64) -> anyhow::Result<f64> {
    let mut rss = Rss::of_self();
    let warm = Instant::now() + Duration::from_millis(500);
    let mut started: Option<(Instant, u64)> = None;
    loop {
        std::thread::sleep(TICK);
        if let Some(bytes) = rss.read().filter(|b| *b > memory_cap) {
            anyhow::bail!(
                "cannot measure the capacity: memory reached {} MiB, past --memory-cap ({} MiB); \
                 give --capacity, a larger --memory-cap or a smaller --alloc-kib",
                bytes >> 20,
                memory_cap >> 20
            );
        }
        let now = Instant::now();
        match started {
            None if now >= warm => started = Some((now, done.load(Ordering::Relaxed))),
            Some((from, before)) if now.duration_since(from).as_secs_f64() >= seconds => {
                let counted = done.load(Ordering::Relaxed) - before;
                return Ok(counted as f64 / now.duration_since(from).as_secs_f64());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calibration_runs_no_more_jobs_than_half_the_cap_holds() {
        let job = |alloc| Profile {
            wait: Duration::from_millis(20),
            alloc,
            cpu: Duration::ZERO,
        };
        // 60k/s * 20 ms = 1,200 loops when memory is no concern.
        assert_eq!(calibration_loops(job(0), 64 << 20).unwrap(), 1_200);
        assert_eq!(calibration_loops(job(16 << 20), 1 << 30).unwrap(), 32);
        let err = calibration_loops(job(64 << 20), 64 << 20).unwrap_err();
        assert!(err.to_string().contains("--memory-cap (64 MiB)"), "{err}");
    }

    #[test]
    fn tuned_settings_follow_littles_law() {
        let profile = Profile {
            wait: Duration::from_millis(20),
            alloc: 500 * 1024,
            cpu: Duration::ZERO,
        };
        let t = tuned(30_000.0, &profile, Duration::from_secs(1));
        assert_eq!(t.max_workers, 720); // 30k/s * 20 ms * 1.2
        assert_eq!(t.queue, 750); // 25 ms of work
        assert_eq!(t.queue_timeout, Some(Duration::from_millis(25)));
        assert_eq!(t.min_workers, 100);
        // A tight deadline shortens the queue.
        let tight = tuned(30_000.0, &profile, Duration::from_millis(40));
        assert_eq!(tight.queue_timeout, Some(Duration::from_millis(10)));
        assert_eq!(tight.queue, 300);
    }
}
