//! One mode of the experiment, run in this process: an open-loop generator thread offers jobs on
//! schedule, and the calling thread samples memory, in-flight jobs and throughput until the
//! duration ends or memory passes its cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use spillway::Pool;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

use super::job::{self, Profile, Recorder};
use super::report::{LatencyMs, ModeReport, Second};

/// The ways of running the jobs that the experiment compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeName {
    /// `tokio::spawn` per job, unbounded: the seed's "just spawn and hope".
    Naive,
    /// Seed 001's pattern: a tokio `Semaphore` of `--max-workers` permits, `try_acquire` or
    /// reject.
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

/// Everything one mode needs.
#[derive(Debug, Clone)]
pub(crate) struct ModeConfig {
    pub(crate) mode: ModeName,
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) profile: Profile,
    pub(crate) deadline: Duration,
    pub(crate) memory_cap: u64,
    pub(crate) seed: u64,
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) queue: usize,
    pub(crate) queue_timeout: Option<Duration>,
    /// Measured or given capacity, jobs/s; `pool-tuned` derives its settings from it.
    pub(crate) capacity: Option<f64>,
}

/// Pool settings for `pool-tuned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuned {
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) queue: usize,
    pub(crate) queue_timeout: Duration,
}

/// Derives `pool-tuned`'s settings from the machine's capacity for this job. Pure.
///
/// Little's law: to complete `capacity` jobs/s that each take `job` seconds, about
/// `capacity * job` must run at once; 20% more keeps the CPUs fed while some workers wait. The
/// queue holds 25 ms of work and a job that waited longer is dropped, so a caller waits at most
/// 25 ms more than the job itself, far inside any sensible deadline. Anything beyond that is
/// shed at once, which costs a few nanoseconds and no memory.
pub(crate) fn tuned(capacity: f64, profile: &Profile, deadline: Duration) -> Tuned {
    let job_s = (profile.work + profile.cpu).as_secs_f64().max(0.000_1);
    let max_workers = ((capacity * job_s * 1.2).ceil() as usize).clamp(2, 100_000);
    let queue_timeout = Duration::from_millis(25)
        .min(deadline / 4)
        .max(Duration::from_millis(1));
    let queue = ((capacity * queue_timeout.as_secs_f64()).ceil() as usize).max(1);
    Tuned {
        min_workers: max_workers.min(100),
        max_workers,
        queue,
        queue_timeout,
    }
}

enum Target {
    Naive(Handle),
    Semaphore(Handle, Arc<Semaphore>),
    Pool(Pool),
}

impl Target {
    /// Offers one job scheduled at `scheduled`. Returns whether it was accepted.
    fn offer(&self, scheduled: Instant, profile: Profile, recorder: &Arc<Recorder>) -> bool {
        let recorder = recorder.clone();
        let body = async move {
            let started = Instant::now();
            job::run(profile).await;
            recorder.completed(scheduled, started);
        };
        match self {
            Target::Naive(handle) => {
                drop(handle.spawn(body));
                true
            }
            Target::Semaphore(handle, semaphore) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => {
                    drop(handle.spawn(async move {
                        body.await;
                        drop(permit);
                    }));
                    true
                }
                Err(_) => false,
            },
            Target::Pool(pool) => match pool.try_submit(body) {
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
            Target::Pool(pool) => pool.metrics().expired,
            _ => 0,
        }
    }
}

fn runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the mode")
}

fn describe(cfg: &ModeConfig) -> (String, Option<Tuned>) {
    match cfg.mode {
        ModeName::Naive => ("tokio::spawn per job, unbounded".into(), None),
        ModeName::Semaphore => (
            format!("Semaphore({}), try_acquire or reject", cfg.max_workers),
            None,
        ),
        ModeName::Pool => {
            let timeout = cfg
                .queue_timeout
                .map_or(String::new(), |t| format!(", queue timeout {t:?}"));
            (
                format!(
                    "spillway {}-{} workers, queue {}{timeout}",
                    cfg.min_workers, cfg.max_workers, cfg.queue
                ),
                None,
            )
        }
        ModeName::PoolTuned => {
            let capacity = cfg.capacity.unwrap_or(1_000.0);
            let t = tuned(capacity, &cfg.profile, cfg.deadline);
            (
                format!(
                    "spillway {}-{} workers, queue {}, queue timeout {:?} (from capacity {:.0}/s)",
                    t.min_workers, t.max_workers, t.queue, t.queue_timeout, capacity
                ),
                Some(t),
            )
        }
    }
}

/// Runs one mode on this thread (which must not be a runtime thread), calling `progress` once
/// a second.
pub(crate) fn run(
    cfg: &ModeConfig,
    progress: &mut dyn FnMut(&Second),
) -> anyhow::Result<ModeReport> {
    let rt = runtime()?;
    let (description, tuned) = describe(cfg);
    let target = match cfg.mode {
        ModeName::Naive => Target::Naive(rt.handle().clone()),
        ModeName::Semaphore => Target::Semaphore(
            rt.handle().clone(),
            Arc::new(Semaphore::new(cfg.max_workers)),
        ),
        ModeName::Pool | ModeName::PoolTuned => {
            let (min, max, queue, timeout) = match tuned {
                Some(t) => (t.min_workers, t.max_workers, t.queue, Some(t.queue_timeout)),
                None => (
                    cfg.min_workers,
                    cfg.max_workers,
                    cfg.queue,
                    cfg.queue_timeout,
                ),
            };
            let mut builder = Pool::builder()
                .name(cfg.mode.as_str())
                .min_workers(min)
                .max_workers(max)
                .queue_capacity(queue)
                .runtime(rt.handle().clone());
            if let Some(timeout) = timeout {
                builder = builder.queue_timeout(timeout);
            }
            Target::Pool(builder.build().context("invalid pool settings")?)
        }
    };
    let target = Arc::new(target);
    let recorder = Arc::new(Recorder::new(cfg.deadline));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let end = start + cfg.duration;

    let generator = {
        let (target, recorder, stop) = (target.clone(), recorder.clone(), stop.clone());
        let (rate, seed, profile) = (cfg.rate, cfg.seed, cfg.profile);
        std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || generate(&target, &recorder, &stop, start, end, rate, seed, profile))
            .context("cannot start the generator thread")?
    };

    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (mut peak_rss, mut peak_in_flight) = (0u64, 0u64);
    let mut oom_at = None;
    let mut series = Vec::new();
    let mut last = [0u64; 5]; // offered, completed, goodput, rejected, expired at the last second
    let mut next_second = start + Duration::from_secs(1);
    let tick = Duration::from_millis(50);
    loop {
        std::thread::sleep(tick);
        let now = Instant::now();
        let rss = job::rss_bytes();
        peak_rss = peak_rss.max(rss);
        let expired = target.expired();
        let counts = [
            load(&recorder.offered),
            load(&recorder.completed),
            load(&recorder.goodput),
            load(&recorder.rejected),
            expired,
        ];
        let in_flight = counts[0].saturating_sub(counts[1] + counts[3] + counts[4]);
        peak_in_flight = peak_in_flight.max(in_flight);
        let over_cap = rss > cfg.memory_cap;
        let done = now >= end || over_cap;
        if now >= next_second || done {
            let second = Second {
                t: series.len() as u32 + 1,
                offered: counts[0] - last[0],
                completed: counts[1] - last[1],
                goodput: counts[2] - last[2],
                rejected: counts[3] - last[3],
                expired: counts[4] - last[4],
                in_flight,
                rss_bytes: rss,
                p99_ms: recorder.take_second_p99_ms(),
            };
            progress(&second);
            series.push(second);
            last = counts;
            next_second += Duration::from_secs(1);
        }
        if over_cap {
            oom_at = Some(now.duration_since(start).as_secs_f64());
        }
        if done {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;

    let elapsed = start
        .elapsed()
        .as_secs_f64()
        .min(cfg.duration.as_secs_f64());
    let elapsed = oom_at.unwrap_or(elapsed).max(0.001);
    let offered = load(&recorder.offered);
    let completed = load(&recorder.completed);
    let rejected = load(&recorder.rejected);
    let expired = target.expired();
    let latency = recorder.latency();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e3;
    let report = ModeReport {
        mode: cfg.mode.as_str().to_owned(),
        description,
        offered,
        offered_per_s: offered as f64 / elapsed,
        completed,
        goodput_per_s: load(&recorder.goodput) as f64 / elapsed,
        rejected,
        expired,
        in_flight_at_end: offered.saturating_sub(completed + rejected + expired),
        peak_rss_bytes: peak_rss,
        peak_in_flight,
        latency_ms: if latency.is_empty() {
            LatencyMs::default()
        } else {
            LatencyMs {
                p50: ms(0.5),
                p99: ms(0.99),
                p999: ms(0.999),
                max: latency.max() as f64 / 1e3,
                mean: latency.mean() / 1e3,
            }
        },
        job_body_mean_ms: recorder.body_mean_ms(),
        oom: oom_at.is_some(),
        oom_at_s: oom_at,
        elapsed_s: elapsed,
        series,
    };
    // Jobs still in flight are dropped with the runtime, without waiting for them.
    drop(target);
    rt.shutdown_background();
    Ok(report)
}

/// The open-loop generator: offers jobs at Poisson arrival times averaging `rate` per second,
/// whatever happens to them. When it falls behind it catches up without skipping any, and each
/// job keeps its scheduled time, so a slow system shows up as latency, not as a lower rate.
#[allow(clippy::too_many_arguments)]
fn generate(
    target: &Target,
    recorder: &Arc<Recorder>,
    stop: &AtomicBool,
    start: Instant,
    end: Instant,
    rate: f64,
    seed: u64,
    profile: Profile,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut gap = || Duration::from_secs_f64(-(1.0 - rng.random::<f64>()).ln() / rate);
    let mut next = start + gap();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        while next <= now && next < end {
            recorder.offered.fetch_add(1, Ordering::Relaxed);
            if !target.offer(next, profile, recorder) {
                recorder.rejected.fetch_add(1, Ordering::Relaxed);
            }
            next += gap();
        }
        if next > now {
            std::thread::sleep((next - now).min(Duration::from_millis(1)));
        }
    }
}

/// Measures what this machine completes per second for `profile` when nothing is shed: enough
/// closed-loop workers to keep the CPUs busy, counted for `seconds` after a short warm-up.
pub(crate) fn measure_capacity(profile: Profile, seconds: f64) -> anyhow::Result<f64> {
    let rt = runtime()?;
    let job_s = (profile.work + profile.cpu).as_secs_f64();
    let loops = ((60_000.0 * job_s).ceil() as usize).clamp(64, 4_000);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..loops {
        let (done, stop) = (done.clone(), stop.clone());
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                job::run(profile).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = done.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let counted = done.load(Ordering::Relaxed) - before;
    let capacity = counted as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    rt.shutdown_background();
    Ok(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuned_settings_follow_littles_law() {
        let profile = Profile {
            work: Duration::from_millis(20),
            alloc_bytes: 500 * 1024,
            cpu: Duration::ZERO,
        };
        let t = tuned(30_000.0, &profile, Duration::from_secs(1));
        assert_eq!(t.max_workers, 720); // 30k/s * 20 ms * 1.2
        assert_eq!(t.queue, 750); // 25 ms of work
        assert_eq!(t.queue_timeout, Duration::from_millis(25));
        assert_eq!(t.min_workers, 100);
        // A tight deadline shortens the queue.
        let tight = tuned(30_000.0, &profile, Duration::from_millis(40));
        assert_eq!(tight.queue_timeout, Duration::from_millis(10));
        assert_eq!(tight.queue, 300);
    }
}
