//! `spillway simulate`: the seed experiment, rerun honestly.
//!
//! Jobs are offered open-loop (Poisson arrivals) to each mode in turn, each allocating
//! `--alloc-kib` (every page touched), waiting `--wait-ms` and burning `--cpu-ms`: at `--rate`
//! for `--duration` in the `step` scenario, or following another `--scenario` (a spike, a
//! core taken away, a slower downstream, a trickle and a burst; see [`Scenario`]). Latency runs from a job's scheduled offer time to its end; goodput counts the jobs
//! that ended within `--deadline` of it. Each mode runs in its own child process (a re-exec of
//! this binary), so that its peak RSS is its own; a mode whose RSS passes `--memory-cap` is
//! stopped and reported as the OOM it would have been. The series has one [`Sample`] every
//! 100 ms, with the pool's concurrency limit; windowed figures (goodput and p99 during a
//! spike, after a drop) are computed from it over the report's `phases`, as
//! `scripts/bench_adaptive.py` does.

mod console;
mod html;
mod isolation;
mod ledger;
mod live;
mod mode;
mod report;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

pub use isolation::Isolation;
pub use mode::ModeName;
pub use report::{LatencyMs, ModeReport, PriorityRow, SAMPLE_S, Sample, Settings, SimReport};
pub use scenario::{Phase, Scenario};

use crate::args::{FaultArgs, PoolArgs, WorkloadArgs, memory_cap, positive_duration, rate};
use crate::memory::{Rss, total_ram};
use crate::output;
use crate::priority::PriorityMix;
use console::Progress;
use mode::ModeConfig;
use scenario::{Basis, peak_rate};

/// Which modes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeChoice {
    /// naive, semaphore, pool, pool-tuned and pool-adaptive, in that order.
    All,
    /// `tokio::spawn` per job.
    Naive,
    /// A tokio `Semaphore`, `try_acquire` or shed.
    Semaphore,
    /// spillway with the seed's settings.
    Pool,
    /// spillway with settings derived from the measured capacity.
    PoolTuned,
    /// spillway's defaults (the adaptive limit) with only the seed's ceilings.
    PoolAdaptive,
    /// The seed's ceilings with the Gradient2 limit at its defaults.
    PoolGradient2,
    /// The seed's ceilings with the Vegas limit at its defaults.
    PoolVegas,
    /// The seed's ceilings with the AIMD limit at its defaults.
    PoolAimd,
    /// The CPU lane: a spillway BlockingPool, one thread per core, a short queue.
    Blocking,
    /// tokio's spawn_blocking per job (unbounded queue, up to 512 threads).
    SpawnBlocking,
    /// rayon::spawn per job (unbounded queue).
    Rayon,
    /// blocking, spawn-blocking and rayon, in that order: the CPU lanes compared.
    Cpu,
}

impl ModeChoice {
    fn modes(self) -> Vec<ModeName> {
        match self {
            ModeChoice::All => vec![
                ModeName::Naive,
                ModeName::Semaphore,
                ModeName::Pool,
                ModeName::PoolTuned,
                ModeName::PoolAdaptive,
            ],
            ModeChoice::Naive => vec![ModeName::Naive],
            ModeChoice::Semaphore => vec![ModeName::Semaphore],
            ModeChoice::Pool => vec![ModeName::Pool],
            ModeChoice::PoolTuned => vec![ModeName::PoolTuned],
            ModeChoice::PoolAdaptive => vec![ModeName::PoolAdaptive],
            ModeChoice::PoolGradient2 => vec![ModeName::PoolGradient2],
            ModeChoice::PoolVegas => vec![ModeName::PoolVegas],
            ModeChoice::PoolAimd => vec![ModeName::PoolAimd],
            ModeChoice::Blocking => vec![ModeName::Blocking],
            ModeChoice::SpawnBlocking => vec![ModeName::SpawnBlocking],
            ModeChoice::Rayon => vec![ModeName::Rayon],
            ModeChoice::Cpu => vec![ModeName::Blocking, ModeName::SpawnBlocking, ModeName::Rayon],
        }
    }
}

/// The modes of a `--mode` list, in order.
///
/// # Errors
///
/// A mode chosen twice (`all` counts as the five modes it stands for).
fn modes_of(choices: &[ModeChoice]) -> anyhow::Result<Vec<ModeName>> {
    let mut modes = Vec::new();
    for mode in choices.iter().flat_map(|c| c.modes()) {
        if modes.contains(&mode) {
            return Err(crate::args::usage(format!(
                "invalid --mode: {} is chosen twice (`all` stands for naive, semaphore, pool, \
                 pool-tuned and pool-adaptive)",
                mode.as_str()
            )));
        }
        modes.push(mode);
    }
    Ok(modes)
}

/// Options of `spillway simulate`. Defaults: the seed's job and pool, offered well over this
/// kind of machine's capacity for 10 s a mode, with memory capped at a sixth of RAM.
#[derive(Debug, Clone, Args)]
#[command(
    allow_negative_numbers = true,
    mut_arg("wait_ms", |a| a.default_value("20")),
    mut_arg("alloc_kib", |a| a.default_value("500")),
    mut_arg("min_workers", |a| a.default_value("100")),
    mut_arg("max_workers", |a| a.default_value("5000")),
    mut_arg("queue", |a| a.default_value("100000")),
)]
pub struct SimulateArgs {
    /// Which modes to run, a comma list (e.g. pool-adaptive,semaphore), in that order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub mode: Vec<ModeChoice>,
    /// How the offered load, the job and the machine change over the run.
    #[arg(long, value_enum, default_value_t = Scenario::Step)]
    pub scenario: Scenario,
    /// Jobs offered per second in the step scenario (open loop: offered whatever the system
    /// does with them), from 0.001 to 1e9; default 400000. The other scenarios' rates follow
    /// the capacity.
    #[arg(long, value_parser = rate)]
    pub rate: Option<f64>,
    /// How long each mode is offered load (e.g. 10s, 500ms; at most 24h); default the
    /// scenario's: 12s for capacity-drop, 10s for the others.
    #[arg(long, value_parser = positive_duration)]
    pub duration: Option<Duration>,
    /// The job.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// The seed-settings pool (`pool` mode); `--max-workers` is the semaphore's permits too.
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Faults injected into a fraction of the jobs (a panicking job is counted failed; one
    /// that never finishes is still in flight at the end).
    #[command(flatten)]
    pub faults: FaultArgs,
    /// The latency a caller tolerates: later completions are not goodput (at most 24h).
    #[arg(long, default_value = "1s", value_parser = positive_duration)]
    pub deadline: Duration,
    /// Stop a mode whose resident memory passes this (e.g. 4GiB, 512MiB; a unit is required,
    /// at least 64MiB); default a sixth of RAM.
    #[arg(long, value_parser = memory_cap)]
    pub memory_cap: Option<u64>,
    /// Jobs/s this machine completes for this job (0.001 to 1e9); measured for 2 s when not
    /// given.
    #[arg(long, value_parser = rate)]
    pub capacity: Option<f64>,
    /// Write the results as JSON here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with charts here.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Seed of the arrival times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How modes are kept apart.
    #[arg(long, value_enum, default_value_t = Isolation::Process)]
    pub isolation: Isolation,
    /// Offer the jobs at these priorities, in these shares, e.g. critical=0.1,normal=0.3,low=0.6
    /// (critical, high, normal, low; shares from 0 to 1 that sum to 1), instead of the
    /// scenario's (10% critical, 30% normal, 60% low for `priorities`; all normal for the
    /// others). Pool modes submit each job at its priority; naive and semaphore treat all
    /// alike.
    #[arg(long, value_name = "MIX", value_parser = PriorityMix::parse)]
    pub priority_mix: Option<PriorityMix>,
    /// Serve a live dashboard of the running mode's series at this address (e.g.
    /// 127.0.0.1:8090; port 0 picks one; the address is printed); off by default.
    #[arg(long, value_name = "ADDR")]
    pub live: Option<std::net::SocketAddr>,
}

impl SimulateArgs {
    /// Checks what the parser cannot: the pool's settings where a pool runs them, and a memory
    /// reading where the naive mode must be stopped by it.
    fn check(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.json {
            output::check_writable("--json", path)?;
        }
        if let Some(path) = &self.html {
            output::check_writable("--html", path)?;
        }
        self.scenario.check(self.duration, self.rate.is_some())?;
        self.faults.check()?;
        if self.capacity.is_none() {
            mode::calibration_loops(self.workload.profile(), self.memory_cap())?;
        }
        let modes = modes_of(&self.mode)?;
        if modes.contains(&ModeName::Pool) {
            self.pool.check()?;
        }
        if modes.contains(&ModeName::Naive) {
            naive_needs_a_memory_reading(Rss::of_self().read())?;
        }
        Ok(())
    }

    fn memory_cap(&self) -> u64 {
        self.memory_cap
            .unwrap_or_else(|| total_ram().map_or(4 << 30, |ram| ram / 6))
    }

    fn duration(&self) -> Duration {
        self.duration
            .unwrap_or_else(|| self.scenario.default_duration())
    }

    /// The priorities offered: `--priority-mix`, else the scenario's.
    fn mix(&self) -> Option<PriorityMix> {
        self.priority_mix.clone().or_else(|| self.scenario.mix())
    }

    /// The scenario's phases on this machine.
    fn phases(&self, capacity: f64) -> Vec<scenario::Phase> {
        self.scenario.phases(Basis {
            rate: self.rate.unwrap_or(DEFAULT_RATE),
            capacity,
            wait_ms: self.workload.wait_ms,
            duration: self.duration(),
        })
    }

    fn mode_config(&self, mode: ModeName, capacity: Option<f64>) -> ModeConfig {
        ModeConfig {
            mode,
            phases: self.phases(capacity.unwrap_or(0.0)),
            duration: self.duration(),
            profile: self.workload.profile(),
            deadline: self.deadline,
            memory_cap: self.memory_cap(),
            seed: self.seed,
            pool: self.pool.clone(),
            capacity,
            faults: self.faults,
            mix: self.mix(),
        }
    }

    fn settings(&self, capacity: f64) -> Settings {
        let phases = self.phases(capacity);
        Settings {
            rate: peak_rate(&phases),
            duration_s: self.duration().as_secs_f64(),
            wait_ms: self.workload.wait_ms,
            alloc_kib: self.workload.alloc_kib,
            cpu_ms: self.workload.cpu_ms,
            deadline_ms: self.deadline.as_secs_f64() * 1e3,
            memory_cap_bytes: self.memory_cap(),
            seed: self.seed,
            scenario: self.scenario.as_str().to_owned(),
            phases,
            priority_mix: self.mix().map(|m| m.to_string()),
        }
    }
}

/// `--rate` of the step scenario when not given: well over this kind of machine's capacity.
const DEFAULT_RATE: f64 = 400_000.0;

/// The naive mode grows until `--memory-cap` stops it: without a reading of resident memory
/// (`rss`), nothing would.
fn naive_needs_a_memory_reading(rss: Option<u64>) -> anyhow::Result<()> {
    if rss.is_none() {
        bail!(
            "cannot run the naive mode: this system gives no reading of resident memory, so \
             --memory-cap could not stop it before it ran out; choose another --mode"
        );
    }
    Ok(())
}

/// Runs `spillway simulate`.
///
/// # Errors
///
/// Invalid settings, a mode that could not be run, or a report that could not be written.
pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    args.check()?;
    let live = match args.live {
        Some(addr) => Some(live::Live::start(addr).await?),
        None => None,
    };
    let view = live.clone();
    let code = tokio::task::spawn_blocking(move || run_blocking(&args, live))
        .await
        .context("the simulation thread panicked")?;
    if let Some(view) = view {
        view.wait_for_subscribers().await;
    }
    code
}

fn run_blocking(args: &SimulateArgs, live: Option<Arc<live::Live>>) -> anyhow::Result<ExitCode> {
    let report = run_modes(args, Progress::new(live))?;
    // The files first: a closed stdout must not cost them.
    write_reports(args, &report)?;
    output::print(&console::table(&report)).context("cannot print the table")?;
    Ok(ExitCode::SUCCESS)
}

fn write_reports(args: &SimulateArgs, report: &SimReport) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write --json {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), report)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(report)?)
            .with_context(|| format!("cannot write --html {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs the calibration and every chosen mode; returns the gathered report.
///
/// # Errors
///
/// Invalid settings, or a mode that could not be run.
pub fn simulate(args: &SimulateArgs) -> anyhow::Result<SimReport> {
    run_modes(args, Progress::new(None))
}

fn run_modes(args: &SimulateArgs, progress: Progress) -> anyhow::Result<SimReport> {
    args.check()?;
    let capacity = match args.capacity {
        Some(c) => c,
        None => {
            progress.say("measuring capacity: 2 s closed loop, nothing shed ...");
            args.isolation
                .measure_capacity(&args.mode_config(ModeName::Pool, None), &progress)?
        }
    };
    let settings = args.settings(capacity);
    let overload = settings.rate / capacity;
    let line = format!(
        "capacity {capacity:.0} jobs/s; {} scenario, offering up to {:.0}/s = {overload:.1}x that",
        settings.scenario, settings.rate
    );
    progress.say(&line);
    progress.summary(&line);
    let mut modes = Vec::new();
    for mode in modes_of(&args.mode)? {
        let report = args
            .isolation
            .run_mode(&args.mode_config(mode, Some(capacity)), &progress)?;
        progress.say(&format!("{}: {}", mode.as_str(), report.outcome()));
        modes.push(report);
    }
    progress.finish();
    Ok(SimReport {
        settings,
        capacity_per_s: Some(capacity),
        overload_factor: Some(overload),
        modes,
    })
}

/// Runs the task a parent `simulate` handed this child process.
///
/// # Errors
///
/// Settings that do not parse, or a mode that could not be run.
pub(crate) async fn run_as_child() -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(isolation::serve_parent)
        .await
        .context("the simulation thread panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_naive_mode_refuses_to_run_without_a_memory_reading() {
        let err = naive_needs_a_memory_reading(None).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot run the naive mode") && err.contains("--memory-cap"),
            "{err}"
        );
        assert!(naive_needs_a_memory_reading(Some(1 << 20)).is_ok());
    }
}
