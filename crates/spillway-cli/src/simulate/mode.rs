//! One mode of the experiment, run in this process: an open-loop generator thread offers jobs on
//! schedule, and the calling thread samples memory, in-flight jobs and throughput until the
//! duration ends or memory passes its cap.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use spillway::{BlockingPool, Limit, Pool, Priority};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

use super::ledger::{Counts, Ledger, PriorityCounts};
use super::report::{LatencyMs, ModeReport, PriorityRow, SAMPLE_S, Sample};
use super::scenario::{Arrivals, Phase};
use crate::args::{FaultArgs, PoolArgs};
use crate::cpu_time::CpuTime;
use crate::histogram::quantile_ms;
use crate::memory::Rss;
use crate::priority::{self, PriorityMix};
use crate::workload::{self, Fault, Profile};

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
    /// spillway's defaults (the adaptive limit) with only the seed's ceilings: 5,000 workers
    /// and a queue of 100,000; nothing derived from the capacity.
    PoolAdaptive,
    /// The seed's ceilings with the port of Netflix's Gradient2 limit at its defaults.
    PoolGradient2,
    /// The seed's ceilings with the port of Netflix's Vegas limit at its defaults.
    PoolVegas,
    /// The seed's ceilings with the port of Netflix's AIMD limit at its defaults.
    PoolAimd,
    /// The CPU lane: a spillway `BlockingPool`, one thread per core, a queue of 25 ms of work
    /// (`--queue-timeout` if given), the rest shed. The whole job runs on its thread.
    Blocking,
    /// `tokio::task::spawn_blocking` per job: up to 512 threads, an unbounded queue.
    SpawnBlocking,
    /// `rayon::spawn` per job: one thread per core, an unbounded queue, no handle.
    Rayon,
}

impl ModeName {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeName::Naive => "naive",
            ModeName::Semaphore => "semaphore",
            ModeName::Pool => "pool",
            ModeName::PoolTuned => "pool-tuned",
            ModeName::PoolAdaptive => "pool-adaptive",
            ModeName::PoolGradient2 => "pool-gradient2",
            ModeName::PoolVegas => "pool-vegas",
            ModeName::PoolAimd => "pool-aimd",
            ModeName::Blocking => "blocking",
            ModeName::SpawnBlocking => "spawn-blocking",
            ModeName::Rayon => "rayon",
        }
    }

    /// The library's name of the concurrency limit the mode picks, if it picks one (the other
    /// pool modes keep `Limit::fixed()`: their settings are the experiment).
    pub(crate) fn limit(self) -> Option<&'static str> {
        match self {
            ModeName::PoolAdaptive => Some("adaptive"),
            ModeName::PoolGradient2 => Some("gradient2"),
            ModeName::PoolVegas => Some("vegas"),
            ModeName::PoolAimd => Some("aimd"),
            _ => None,
        }
    }
}

/// The seed's ceilings, the only settings the limit modes are given.
const SEED_MAX_WORKERS: usize = 5_000;
const SEED_QUEUE: usize = 100_000;

/// Everything one mode needs; handed to a child process as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModeConfig {
    pub(crate) mode: ModeName,
    /// What is offered when, and the job offered.
    pub(crate) phases: Vec<Phase>,
    pub(crate) duration: Duration,
    pub(crate) profile: Profile,
    pub(crate) deadline: Duration,
    pub(crate) memory_cap: u64,
    pub(crate) seed: u64,
    /// The seed-settings pool (`pool` mode) and the semaphore's permits (`--max-workers`).
    pub(crate) pool: PoolArgs,
    /// Measured or given capacity, jobs/s; `pool-tuned` derives its settings from it.
    pub(crate) capacity: Option<f64>,
    /// Faults injected into a fraction of the jobs.
    #[serde(default)]
    pub(crate) faults: FaultArgs,
    /// The priorities offered and their shares; `None` offers every job at normal priority
    /// through `try_submit`.
    pub(crate) mix: Option<PriorityMix>,
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
        ModeName::Naive
        | ModeName::Semaphore
        | ModeName::Blocking
        | ModeName::SpawnBlocking
        | ModeName::Rayon => None,
        ModeName::Pool => Some(cfg.pool.clone()),
        // The library's own minimum: `min_workers` is not applied to these modes.
        ModeName::PoolAdaptive
        | ModeName::PoolGradient2
        | ModeName::PoolVegas
        | ModeName::PoolAimd => Some(PoolArgs {
            min_workers: 0,
            max_workers: SEED_MAX_WORKERS,
            queue: SEED_QUEUE,
            queue_timeout: None,
        }),
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
            ModeName::Blocking => {
                let (threads, queue) = blocking_settings(cfg);
                format!("spillway BlockingPool, {threads} threads, queue {queue}")
            }
            ModeName::SpawnBlocking => "tokio spawn_blocking per job, unbounded queue".into(),
            ModeName::Rayon => "rayon::spawn per job, unbounded queue".into(),
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
    if let Some(limit) = cfg.mode.limit() {
        return format!(
            "spillway defaults, limit {limit}, ceilings {} workers, queue {}",
            pool.max_workers, pool.queue
        );
    }
    format!(
        "spillway {}-{} workers, queue {}{timeout}{origin}",
        pool.min_workers, pool.max_workers, pool.queue
    )
}

/// The CPU lane's threads (one per core) and queue: 25 ms of work, at least one job a thread.
fn blocking_settings(cfg: &ModeConfig) -> (usize, usize) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let job_s = cfg.profile.duration().as_secs_f64().max(0.000_01);
    let window = Duration::from_millis(25)
        .min(cfg.deadline / 4)
        .max(Duration::from_millis(1));
    let per_thread = (window.as_secs_f64() / job_s).floor().max(1.0);
    (threads, threads * per_thread as usize)
}

/// How a mode runs the jobs offered to it.
enum Runner {
    Naive(Handle),
    Semaphore(Handle, Arc<Semaphore>),
    Pool(Pool),
    /// The CPU modes: the whole job on a thread of theirs.
    Blocking(BlockingPool),
    SpawnBlocking(Handle),
    Rayon,
}

impl Runner {
    fn start(cfg: &ModeConfig, pool: Option<&PoolArgs>, handle: &Handle) -> anyhow::Result<Self> {
        let handle = handle.clone();
        Ok(match (cfg.mode, pool) {
            (ModeName::Semaphore, _) => {
                Runner::Semaphore(handle, Arc::new(Semaphore::new(cfg.pool.max_workers)))
            }
            (ModeName::Blocking, _) => Runner::Blocking(build_blocking(cfg, handle)?),
            (ModeName::SpawnBlocking, _) => Runner::SpawnBlocking(handle),
            (ModeName::Rayon, _) => Runner::Rayon,
            (_, Some(pool)) => Runner::Pool(build_pool(cfg.mode, pool, handle)?),
            (_, None) => Runner::Naive(handle),
        })
    }

    /// Whether the mode runs jobs on threads of its own (`offer_blocking`), not as futures.
    fn runs_threads(&self) -> bool {
        matches!(
            self,
            Runner::Blocking(_) | Runner::SpawnBlocking(_) | Runner::Rayon
        )
    }

    /// Offers one job to a CPU mode. Returns whether it was taken.
    fn offer_blocking(&self, job: impl FnOnce() + Send + 'static) -> bool {
        match self {
            Runner::Blocking(pool) => match pool.try_submit(job) {
                Ok(handle) => {
                    handle.detach();
                    true
                }
                Err(_) => false,
            },
            Runner::SpawnBlocking(handle) => {
                drop(handle.spawn_blocking(job));
                true
            }
            Runner::Rayon => {
                rayon::spawn(job);
                true
            }
            Runner::Naive(_) | Runner::Semaphore(..) | Runner::Pool(_) => {
                unreachable!("offer_blocking is for the CPU modes")
            }
        }
    }

    /// Offers one job, at `priority` if the run offers priorities (only a pool tells them
    /// apart). Returns whether it was taken.
    fn offer(
        &self,
        job: impl Future<Output = ()> + Send + 'static,
        priority: Option<Priority>,
    ) -> bool {
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
            Runner::Pool(pool) => {
                let submitted = match priority {
                    Some(priority) => pool.try_submit_with(priority, job),
                    None => pool.try_submit(job),
                };
                match submitted {
                    Ok(handle) => {
                        handle.detach();
                        true
                    }
                    Err(_) => false,
                }
            }
            Runner::Blocking(_) | Runner::SpawnBlocking(_) | Runner::Rayon => {
                unreachable!("the CPU modes take closures: offer_blocking")
            }
        }
    }

    fn expired(&self) -> u64 {
        match self {
            Runner::Pool(pool) => pool.metrics().expired,
            Runner::Blocking(pool) => pool.metrics().expired,
            _ => 0,
        }
    }

    /// Jobs pushed out of the queue by a job of higher priority.
    fn displaced(&self) -> u64 {
        match self {
            Runner::Pool(pool) => pool.metrics().displaced,
            _ => 0,
        }
    }

    /// The pool's counts for `priority`: (expired, displaced); none without a pool.
    fn ended_unrun(&self, priority: Priority) -> (u64, u64) {
        match self {
            Runner::Pool(pool) => {
                let counts = pool.metrics().by_priority[priority];
                (counts.expired, counts.displaced)
            }
            _ => (0, 0),
        }
    }

    /// The pool's concurrency limit now, if the mode runs a pool.
    fn limit(&self) -> Option<usize> {
        match self {
            Runner::Pool(pool) => Some(pool.metrics().limit),
            _ => None,
        }
    }
}

fn build_pool(mode: ModeName, settings: &PoolArgs, handle: Handle) -> anyhow::Result<Pool> {
    let mut builder = Pool::builder()
        .name(mode.as_str())
        .max_workers(settings.max_workers)
        .queue_capacity(settings.queue)
        .runtime(handle);
    builder = match mode.limit() {
        Some(limit) => with_limit(builder, limit)?,
        // The existing pool modes keep the settings they were given as the limit.
        None => builder
            .limit(Limit::fixed())
            .min_workers(settings.min_workers),
    };
    if let Some(timeout) = settings.queue_timeout {
        builder = builder.queue_timeout(timeout);
    }
    builder.build().context("invalid pool settings")
}

fn build_blocking(cfg: &ModeConfig, handle: Handle) -> anyhow::Result<BlockingPool> {
    let (threads, queue) = blocking_settings(cfg);
    let mut builder = BlockingPool::builder()
        .name("blocking")
        .threads(threads)
        .queue_capacity(queue)
        .runtime(handle);
    if let Some(timeout) = cfg.pool.queue_timeout {
        builder = builder.queue_timeout(timeout);
    }
    builder.build().context("invalid BlockingPool settings")
}

/// `builder` with the library's limit of that name, at its defaults.
fn with_limit(builder: spillway::Builder, name: &str) -> anyhow::Result<spillway::Builder> {
    let limit =
        Limit::by_name(name).with_context(|| format!("spillway has no limit named {name}"))?;
    Ok(builder.limit(limit))
}

fn runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the mode")
}

/// Runs one mode on this thread (which must not be a runtime thread), calling `progress` with
/// every sample.
pub(crate) fn run(
    cfg: &ModeConfig,
    progress: &mut dyn FnMut(&Sample),
) -> anyhow::Result<ModeReport> {
    let rt = runtime()?;
    let pool = pool_settings(cfg);
    let description = describe(cfg, pool.as_ref());
    let runner = Arc::new(Runner::start(cfg, pool.as_ref(), rt.handle())?);
    let ledger = Arc::new(Ledger::new(cfg.deadline));
    let start = Instant::now();
    let schedule = Schedule::of(cfg, start);
    let hog = Hog::spawn(&schedule)?;
    let generator = Generator::spawn(schedule, &runner, &ledger)?;
    let mut watched = watch(cfg, start, &runner, &ledger, progress);
    generator.stop()?;
    if let Some(hog) = hog {
        hog.stop();
    }
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
    series: Vec<Sample>,
    peak_rss: u64,
    peak_in_flight: u64,
    /// Seconds since the start when memory passed the cap.
    oom_at: Option<f64>,
}

/// How often the sampling loop reads memory and counts: often enough that a mode growing
/// by gigabytes a second passes the cap by little before it is stopped.
const TICK: Duration = Duration::from_millis(5);

/// Samples memory and counts every [`TICK`], one [`Sample`] every [`SAMPLE_S`], until the
/// duration ends or memory passes the cap.
fn watch(
    cfg: &ModeConfig,
    start: Instant,
    runner: &Runner,
    ledger: &Ledger,
    progress: &mut dyn FnMut(&Sample),
) -> Watched {
    let end = start + cfg.duration;
    let interval = Duration::from_secs_f64(SAMPLE_S);
    let mut rss = Rss::of_self();
    let mut watched = Watched::default();
    let mut last = (Counts::default(), 0, start);
    let mut last_cpu = CpuTime::of_self();
    let mut next_sample = start + interval;
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let memory = rss.read().unwrap_or(0);
        let counts = (ledger.counts(), runner.expired(), now);
        watched.peak_rss = watched.peak_rss.max(memory);
        watched.peak_in_flight = watched.peak_in_flight.max(counts.0.in_flight);
        let over_cap = memory > cfg.memory_cap;
        let done = now >= end || over_cap;
        if now >= next_sample || done {
            let t = watched.series.len() as u32 + 1;
            let cpu = CpuTime::of_self();
            let reading = Reading {
                rss: memory,
                p99_ms: ledger.take_sample_p99_ms(),
                limit: runner.limit(),
                cpu: cpu.zip(last_cpu).map(|(now, was)| now.since(was)),
            };
            last_cpu = cpu;
            let sample = one_sample(t, start, last, counts, reading);
            progress(&sample);
            watched.series.push(sample);
            last = counts;
            next_sample += interval;
        }
        if over_cap {
            watched.oom_at = Some(now.duration_since(start).as_secs_f64());
        }
        if done {
            return watched;
        }
    }
}

/// What a sample reads besides the counts.
struct Reading {
    rss: u64,
    p99_ms: f64,
    limit: Option<usize>,
    /// CPU (user, system) seconds of the interval.
    cpu: Option<(f64, f64)>,
}

/// Sample `t`: the change from `last` to `now` (ledger counts, expired jobs, time).
fn one_sample(
    t: u32,
    start: Instant,
    last: (Counts, u64, Instant),
    now: (Counts, u64, Instant),
    reading: Reading,
) -> Sample {
    let ((was, was_expired, from), (is, expired, to)) = (last, now);
    Sample {
        t,
        t_s: to.duration_since(start).as_secs_f64(),
        span_s: to.duration_since(from).as_secs_f64(),
        offered: is.offered - was.offered,
        completed: is.completed - was.completed,
        goodput: is.goodput - was.goodput,
        shed: is.shed - was.shed,
        expired: expired - was_expired,
        in_flight: is.in_flight,
        rss_bytes: reading.rss,
        p99_ms: reading.p99_ms,
        limit: reading.limit,
        cpu_user_s: reading.cpu.map(|(user, _)| user),
        cpu_system_s: reading.cpu.map(|(_, system)| system),
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
    let (counts, each) = ledger.counts_by_priority();
    ModeReport {
        mode: cfg.mode.as_str().to_owned(),
        description,
        offered: counts.offered,
        offered_per_s: counts.offered as f64 / elapsed,
        completed: counts.completed,
        goodput_per_s: counts.goodput as f64 / elapsed,
        shed: counts.shed,
        failed: counts.failed,
        expired: runner.expired(),
        displaced: runner.displaced(),
        in_flight_at_end: counts.in_flight,
        peak_rss_bytes: watched.peak_rss,
        peak_in_flight: watched.peak_in_flight,
        latency_ms: latency_ms(&ledger.latency()),
        job_body_mean_ms: ledger.body_mean_ms(),
        oom: watched.oom_at.is_some(),
        oom_at_s: watched.oom_at,
        elapsed_s: elapsed,
        series: watched.series,
        by_priority: by_priority(cfg, runner, &each, elapsed),
    }
}

/// Each priority offered (normal alone without a mix): its row, keyed by its name.
fn by_priority(
    cfg: &ModeConfig,
    runner: &Runner,
    each: &[PriorityCounts],
    elapsed: f64,
) -> std::collections::BTreeMap<String, PriorityRow> {
    let offered: Vec<Priority> = match &cfg.mix {
        Some(mix) => mix.shares().iter().map(|(p, _)| *p).collect(),
        None => vec![Priority::Normal],
    };
    offered
        .into_iter()
        .map(|p| {
            let counts = &each[priority::index(p)];
            let (expired, displaced) = runner.ended_unrun(p);
            let row = PriorityRow {
                expired,
                displaced,
                offered: counts.offered,
                offered_per_s: counts.offered as f64 / elapsed,
                completed: counts.completed,
                goodput_per_s: counts.goodput as f64 / elapsed,
                shed: counts.shed,
                latency_ms: latency_ms(&counts.latency),
            };
            (p.as_str().to_owned(), row)
        })
        .collect()
}

fn latency_ms(latency: &hdrhistogram::Histogram<u64>) -> LatencyMs {
    if latency.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        p50: quantile_ms(latency, 0.5),
        p99: quantile_ms(latency, 0.99),
        p999: quantile_ms(latency, 0.999),
        max: latency.max() as f64 / 1e3,
        mean: latency.mean() / 1e3,
    }
}

/// When jobs are due, and which job: the phases' arrivals from `start` to `end`.
#[derive(Debug, Clone)]
struct Schedule {
    start: Instant,
    end: Instant,
    seed: u64,
    phases: Vec<Phase>,
    /// The job offered during each phase.
    profiles: Vec<Profile>,
    faults: FaultArgs,
    /// The priorities offered, if any.
    mix: Option<PriorityMix>,
}

impl Schedule {
    fn of(cfg: &ModeConfig, start: Instant) -> Self {
        let profiles = cfg
            .phases
            .iter()
            .map(|p| Profile {
                wait: Duration::from_secs_f64(p.wait_ms / 1e3),
                ..cfg.profile
            })
            .collect();
        Schedule {
            start,
            end: start + cfg.duration,
            seed: cfg.seed,
            phases: cfg.phases.clone(),
            profiles,
            faults: cfg.faults,
            mix: cfg.mix.clone(),
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
            .spawn(move || generate(&schedule, &runner, &ledger, &stopped))
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
fn generate(schedule: &Schedule, runner: &Runner, ledger: &Arc<Ledger>, stop: &AtomicBool) {
    let due = |(at, phase): (f64, usize)| (schedule.start + Duration::from_secs_f64(at), phase);
    let mut arrivals = Arrivals::new(&schedule.phases, schedule.seed).map(due);
    let mut next = arrivals.next();
    let mut offered = 0u64;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || now >= schedule.end {
            return;
        }
        let mut batch = 0;
        while let Some((at, phase)) = next.filter(|n| n.0 <= now && batch < CATCH_UP) {
            let fault = schedule.faults.draw(workload::roll());
            let priority = schedule.mix.as_ref().map(|mix| mix.of(offered));
            offer(
                runner,
                ledger,
                at,
                schedule.profiles[phase],
                fault,
                priority,
            );
            offered += 1;
            next = arrivals.next();
            batch += 1;
        }
        let wake = next.map_or(schedule.end, |n| n.0);
        if wake > now {
            std::thread::sleep((wake - now).min(Duration::from_millis(1)));
        }
    }
}

/// The busy thread of a phase that takes a core: it spins through each such phase, outside
/// the runtime, until the phase ends or the mode stops.
struct Hog {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Hog {
    fn spawn(schedule: &Schedule) -> anyhow::Result<Option<Self>> {
        let spans: Vec<_> = schedule
            .phases
            .iter()
            .filter(|p| p.hog)
            .map(|p| (p.start_s, p.end_s))
            .collect();
        if spans.is_empty() {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (start, stopped) = (schedule.start, stop.clone());
        let thread = std::thread::Builder::new()
            .name("busy-core".into())
            .spawn(move || hog(start, &spans, &stopped))
            .context("cannot start the busy thread")?;
        Ok(Some(Hog { stop, thread }))
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn hog(start: Instant, spans: &[(f64, f64)], stop: &AtomicBool) {
    for &(from, to) in spans {
        let (from, to) = (
            start + Duration::from_secs_f64(from),
            start + Duration::from_secs_f64(to),
        );
        while Instant::now() < from {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(TICK);
        }
        workload::burn_unless(to.saturating_duration_since(Instant::now()), stop);
    }
}

/// Jobs the generator offers between two readings of its stop flag and the clock.
const CATCH_UP: u32 = 256;

/// Offers one job scheduled at `scheduled`, with its fault if it drew one (at `priority`, if
/// the run offers priorities), and counts it. The CPU modes run it on their threads (a fault
/// there only changes its memory: a thread can neither be hung nor unwound on purpose here).
fn offer(
    runner: &Runner,
    ledger: &Arc<Ledger>,
    scheduled: Instant,
    profile: Profile,
    fault: Option<Fault>,
    priority: Option<Priority>,
) {
    let index = priority::index(priority.unwrap_or(Priority::Normal));
    let ticket = ledger.offer(scheduled, index);
    let taken = if runner.runs_threads() {
        let profile = Fault::applied(fault, profile);
        runner.offer_blocking(move || {
            let started = Instant::now();
            workload::run_blocking(profile);
            ticket.completed(started);
        })
    } else {
        runner.offer(
            async move {
                let started = Instant::now();
                match workload::catch_panic(workload::run_with(profile, fault)).await {
                    Ok(()) => ticket.completed(started),
                    Err(panic) => {
                        ticket.failed();
                        // The runner sees the panic too (the pool counts it).
                        std::panic::resume_unwind(panic);
                    }
                }
            },
            priority,
        )
    };
    if !taken {
        ledger.shed(index);
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
