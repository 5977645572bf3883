//! `spillway simulate`: the seed experiment, rerun honestly.
//!
//! Jobs are offered open-loop at `--rate` (Poisson arrivals) for `--duration`, each allocating
//! `--alloc-kib` (every page touched), waiting `--work-ms` and burning `--cpu-ms`, to each mode in
//! turn. Latency runs from a job's scheduled offer time to its end; goodput counts the jobs that
//! ended within `--deadline` of it. Each mode runs in its own child process (a re-exec of this
//! binary), so that its peak RSS is its own; a mode whose RSS passes `--memory-cap` is stopped
//! and reported as the OOM it would have been.

mod html;
pub(crate) mod job;
mod mode;
mod report;

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

pub use mode::ModeName;
pub use report::{LatencyMs, ModeReport, Second, Settings, SimReport};

use crate::args::{millis, parse_bytes, positive_duration, positive_f64};
use job::Profile;
use mode::ModeConfig;

/// Which modes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeChoice {
    /// naive, semaphore, pool and pool-tuned, in that order.
    All,
    /// `tokio::spawn` per job.
    Naive,
    /// A tokio `Semaphore`, `try_acquire` or reject.
    Semaphore,
    /// spillway with the seed's settings.
    Pool,
    /// spillway with settings derived from the measured capacity.
    PoolTuned,
}

impl ModeChoice {
    fn modes(self) -> Vec<ModeName> {
        match self {
            ModeChoice::All => vec![
                ModeName::Naive,
                ModeName::Semaphore,
                ModeName::Pool,
                ModeName::PoolTuned,
            ],
            ModeChoice::Naive => vec![ModeName::Naive],
            ModeChoice::Semaphore => vec![ModeName::Semaphore],
            ModeChoice::Pool => vec![ModeName::Pool],
            ModeChoice::PoolTuned => vec![ModeName::PoolTuned],
        }
    }
}

/// How modes are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Each mode in its own child process: peak RSS is the mode's own (the default).
    Process,
    /// All modes in this process, one after another: quicker to start, but memory a mode leaves
    /// behind counts against the next (for tests and quick looks).
    Inline,
}

/// Options of `spillway simulate`. Defaults: the seed's job and pool, offered well over this
/// kind of machine's capacity for 10 s a mode, with memory capped at a sixth of RAM.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Which modes to run.
    #[arg(long, value_enum, default_value_t = ModeChoice::All)]
    pub mode: ModeChoice,
    /// Jobs offered per second (open loop: offered whatever the system does with them).
    #[arg(long, default_value = "400000", value_parser = positive_f64, allow_negative_numbers = true)]
    pub rate: f64,
    /// How long each mode is offered load (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
    /// Milliseconds each job waits (an I/O-like sleep), holding its memory.
    #[arg(long, default_value = "20", value_parser = millis, allow_negative_numbers = true)]
    pub work_ms: f64,
    /// KiB each job allocates and touches (one write per 4 KiB page).
    #[arg(long, default_value_t = 500)]
    pub alloc_kib: u64,
    /// Milliseconds of busy CPU work per job, after its wait.
    #[arg(long, default_value = "0", value_parser = millis, allow_negative_numbers = true)]
    pub cpu_ms: f64,
    /// Workers the seed-settings pool keeps alive.
    #[arg(long, default_value_t = 100)]
    pub min_workers: usize,
    /// Most workers of the seed-settings pool; permits of the semaphore.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_workers: u64,
    /// Queue capacity of the seed-settings pool.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub queue: u64,
    /// Queue timeout of the seed-settings pool (none by default, as in the seed).
    #[arg(long, value_parser = positive_duration)]
    pub queue_timeout: Option<Duration>,
    /// The latency a caller tolerates: later completions are not goodput.
    #[arg(long, default_value = "1s", value_parser = positive_duration)]
    pub deadline: Duration,
    /// Stop a mode whose resident memory passes this (e.g. 4GiB, 512MiB); default a sixth of RAM.
    #[arg(long, value_parser = parse_bytes)]
    pub memory_cap: Option<u64>,
    /// Jobs/s this machine completes for this job; measured for 2 s when not given.
    #[arg(long, value_parser = positive_f64)]
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
    /// Internal: run one mode and print JSON lines (used for process isolation).
    #[arg(long, hide = true)]
    pub child: Option<ModeName>,
    /// Internal: measure capacity and print it as a JSON line.
    #[arg(long, hide = true)]
    pub child_capacity: bool,
}

fn total_ram() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl SimulateArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.min_workers as u64 > self.max_workers {
            bail!(
                "--min-workers ({}) must be at most --max-workers ({})",
                self.min_workers,
                self.max_workers
            );
        }
        if self.alloc_kib > 1 << 30 {
            bail!("--alloc-kib ({}) must be at most 1 TiB", self.alloc_kib);
        }
        Ok(())
    }

    fn memory_cap(&self) -> u64 {
        self.memory_cap
            .unwrap_or_else(|| total_ram().map_or(4 << 30, |ram| ram / 6))
    }

    fn profile(&self) -> Profile {
        Profile {
            work: Duration::from_secs_f64(self.work_ms / 1e3),
            alloc_bytes: (self.alloc_kib * 1024) as usize,
            cpu: Duration::from_secs_f64(self.cpu_ms / 1e3),
        }
    }

    fn mode_config(&self, mode: ModeName, capacity: Option<f64>) -> ModeConfig {
        ModeConfig {
            mode,
            rate: self.rate,
            duration: self.duration,
            profile: self.profile(),
            deadline: self.deadline,
            memory_cap: self.memory_cap(),
            seed: self.seed,
            min_workers: self.min_workers,
            max_workers: self.max_workers as usize,
            queue: self.queue as usize,
            queue_timeout: self.queue_timeout,
            capacity,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            rate: self.rate,
            duration_s: self.duration.as_secs_f64(),
            work_ms: self.work_ms,
            alloc_kib: self.alloc_kib,
            cpu_ms: self.cpu_ms,
            deadline_ms: self.deadline.as_secs_f64() * 1e3,
            memory_cap_bytes: self.memory_cap(),
            seed: self.seed,
        }
    }

    /// The command line a child process gets: the same settings, spelled out.
    fn child_args(&self, capacity: Option<f64>) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        let mut a = vec![
            "simulate".to_owned(),
            format!("--rate={}", self.rate),
            format!("--duration={}", ms(self.duration)),
            format!("--work-ms={}", self.work_ms),
            format!("--alloc-kib={}", self.alloc_kib),
            format!("--cpu-ms={}", self.cpu_ms),
            format!("--min-workers={}", self.min_workers),
            format!("--max-workers={}", self.max_workers),
            format!("--queue={}", self.queue),
            format!("--deadline={}", ms(self.deadline)),
            format!("--memory-cap={}", self.memory_cap()),
            format!("--seed={}", self.seed),
        ];
        if let Some(t) = self.queue_timeout {
            a.push(format!("--queue-timeout={}", ms(t)));
        }
        if let Some(c) = capacity {
            a.push(format!("--capacity={c}"));
        }
        a
    }
}

/// One line a child prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChildLine {
    Second(Second),
    Report(Box<ModeReport>),
    Capacity(f64),
}

fn emit(line: &ChildLine) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Runs `spillway simulate`.
///
/// # Errors
///
/// Invalid settings, a mode that could not be run, or a report that could not be written.
pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    args.check()?;
    tokio::task::spawn_blocking(move || run_blocking(&args))
        .await
        .context("the simulation thread panicked")?
}

fn run_blocking(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.child_capacity {
        emit(&ChildLine::Capacity(mode::measure_capacity(
            args.profile(),
            2.0,
        )?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(mode) = args.child {
        let cfg = args.mode_config(mode, args.capacity);
        let report = mode::run(&cfg, &mut |s| {
            let _ = emit(&ChildLine::Second(s.clone()));
        })?;
        emit(&ChildLine::Report(Box::new(report)))?;
        // Leave at once: the runtime's leftover tasks (millions, in naive mode) die with us.
        std::process::exit(0);
    }

    let report = simulate(args)?;
    print_table(&report);
    if let Some(path) = &args.json {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write --json {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), &report)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&report)?)
            .with_context(|| format!("cannot write --html {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the calibration and every chosen mode; returns the gathered report.
pub fn simulate(args: &SimulateArgs) -> anyhow::Result<SimReport> {
    args.check()?;
    let progress = Progress::new();
    let capacity = match args.capacity {
        Some(c) => c,
        None => {
            progress.say("measuring capacity: 2 s closed loop, nothing shed ...");
            match args.isolation {
                Isolation::Inline => mode::measure_capacity(args.profile(), 2.0)?,
                Isolation::Process => {
                    let mut child_args = args.child_args(None);
                    child_args.push("--child-capacity".into());
                    match run_child(&child_args, args, &progress, "capacity")? {
                        ChildLine::Capacity(c) => c,
                        _ => bail!("the capacity child did not report a capacity"),
                    }
                }
            }
        }
    };
    let overload = args.rate / capacity;
    progress.say(&format!(
        "capacity {capacity:.0} jobs/s; offering {:.0}/s = {overload:.1}x that",
        args.rate
    ));

    let mut modes = Vec::new();
    for mode in args.mode.modes() {
        let label = mode.as_str();
        let report = match args.isolation {
            Isolation::Inline => mode::run(&args.mode_config(mode, Some(capacity)), &mut |s| {
                progress.second(label, s)
            })?,
            Isolation::Process => {
                let mut child_args = args.child_args(Some(capacity));
                child_args.push(format!("--child={label}"));
                match run_child(&child_args, args, &progress, label)? {
                    ChildLine::Report(r) => *r,
                    _ => bail!("mode {label} did not report"),
                }
            }
        };
        progress.say(&format!("{label}: {}", report.outcome()));
        modes.push(report);
    }
    progress.finish();
    Ok(SimReport {
        settings: args.settings(),
        capacity_per_s: Some(capacity),
        overload_factor: Some(overload),
        modes,
    })
}

/// Runs this binary as a child with `child_args`, relaying its progress, and returns its final
/// line. A child that overshoots the memory cap by half (it should have stopped itself) or runs
/// far over time is killed.
fn run_child(
    child_args: &[String],
    args: &SimulateArgs,
    progress: &Progress,
    label: &str,
) -> anyhow::Result<ChildLine> {
    let exe = std::env::current_exe().context("cannot find this program to re-run it")?;
    let mut child = Command::new(&exe)
        .args(child_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {} for mode {label}", exe.display()))?;
    let pid = child.id().to_string();
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<ChildLine>(&line) {
                Ok(parsed) => {
                    if tx.send(parsed).is_err() {
                        break;
                    }
                }
                Err(_) => eprintln!("{line}"),
            }
        }
    });
    let started = Instant::now();
    let limit = args.duration + Duration::from_secs(120);
    let hard_cap = args.memory_cap().saturating_mul(3) / 2;
    let mut seconds = Vec::new();
    let mut last = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ChildLine::Second(s)) => {
                progress.second(label, &s);
                seconds.push(s);
            }
            Ok(other) => last = Some(other),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let rss = job::rss_of(&pid);
        if rss > hard_cap || started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            bail!(
                "mode {label} was killed: {} after {:.1} s (it should have stopped itself)",
                if rss > hard_cap {
                    "memory past 1.5x the cap"
                } else {
                    "still running"
                },
                started.elapsed().as_secs_f64()
            );
        }
    }
    let status = child.wait()?;
    let _ = reader.join();
    match last {
        Some(line) => Ok(line),
        None => bail!("mode {label} exited ({status}) without a report"),
    }
}

/// The live progress line: an indicatif spinner on a terminal, plain lines otherwise.
#[derive(Debug)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn second(&self, label: &str, s: &Second) {
        let line = format!(
            "{label:>10} {:>3}s  offered {:>8}/s  completed {:>7}/s  rejected {:>8}/s  in flight {:>8}  RSS {:>9}  p99 {:>8.1} ms",
            s.t,
            s.offered,
            s.completed,
            s.rejected,
            s.in_flight,
            human_bytes(s.rss_bytes),
            s.p99_ms
        );
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// "1.23 GiB", "412 MiB", "800 KiB".
pub(crate) fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn print_table(report: &SimReport) {
    let s = &report.settings;
    println!(
        "\noffered {:.0} jobs/s for {:.0} s a mode; job = {} ms wait + {} KiB touched + {} ms CPU; deadline {} ms",
        s.rate, s.duration_s, s.work_ms, s.alloc_kib, s.cpu_ms, s.deadline_ms
    );
    if let (Some(c), Some(f)) = (report.capacity_per_s, report.overload_factor) {
        println!("machine capacity for this job: {c:.0} jobs/s (offered {f:.1}x that)");
    }
    println!();
    println!(
        "{:<11} {:>10} {:>9} {:>10} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  outcome",
        "mode",
        "offered/s",
        "completed",
        "goodput/s",
        "rejected",
        "expired",
        "peak RSS",
        "in flight",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "body ms"
    );
    for m in &report.modes {
        println!(
            "{:<11} {:>10.0} {:>9} {:>10.0} {:>9} {:>8} {:>10} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.1}  {}",
            m.mode,
            m.offered_per_s,
            m.completed,
            m.goodput_per_s,
            m.rejected,
            m.expired,
            human_bytes(m.peak_rss_bytes),
            m.peak_in_flight,
            m.latency_ms.p50,
            m.latency_ms.p99,
            m.latency_ms.p999,
            m.latency_ms.max,
            m.job_body_mean_ms,
            m.outcome()
        );
    }
    println!();
    for m in &report.modes {
        println!("{:<11} {}", m.mode, m.description);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(
            parse_bytes("4 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(positive_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(
            positive_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(positive_duration("soon").is_err());
    }

    #[test]
    fn bytes_read_humanly() {
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes(412 << 20), "412 MiB");
    }
}
