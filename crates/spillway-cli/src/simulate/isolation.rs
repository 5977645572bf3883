//! How modes are kept apart: each in a child process of its own (through [`crate::child`]), or
//! all in this one.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::console::Progress;
use super::mode::{self, ModeConfig};
use super::report::{ModeReport, Sample};
use crate::child::{self, ChildOf, ChildProcess, Next};
use crate::memory::Rss;

/// How modes are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Each mode in its own child process: peak RSS is the mode's own (the default).
    Process,
    /// All modes in this process, one after another: quicker to start, but memory a mode leaves
    /// behind counts against the next (for tests and quick looks).
    Inline,
}

/// Seconds the calibration counts completions for.
const CALIBRATION_S: f64 = 2.0;

/// What a parent asks a child to do.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Task {
    /// Measure the capacity for this mode's job.
    Capacity(ModeConfig),
    /// Run this mode.
    Mode(ModeConfig),
}

/// One line a child prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChildLine {
    Sample(Sample),
    Report(Box<ModeReport>),
    Capacity(f64),
}

impl Isolation {
    /// Measures the machine's capacity for `cfg`'s job.
    pub(super) fn measure_capacity(
        self,
        cfg: &ModeConfig,
        progress: &Progress,
    ) -> anyhow::Result<f64> {
        match self {
            Isolation::Inline => mode::measure_capacity(cfg.profile, CALIBRATION_S, cfg.memory_cap),
            Isolation::Process => match in_child(&Task::Capacity(cfg.clone()), progress)? {
                ChildLine::Capacity(c) => Ok(c),
                _ => bail!("the capacity child did not report a capacity"),
            },
        }
    }

    /// Runs one mode, relaying its progress to `progress`.
    pub(super) fn run_mode(
        self,
        cfg: &ModeConfig,
        progress: &Progress,
    ) -> anyhow::Result<ModeReport> {
        let label = cfg.mode.as_str();
        match self {
            Isolation::Inline => mode::run(cfg, &mut |s| progress.sample(label, s)),
            Isolation::Process => match in_child(&Task::Mode(cfg.clone()), progress)? {
                ChildLine::Report(r) => Ok(*r),
                _ => bail!("mode {label} did not report"),
            },
        }
    }
}

/// Runs `task` in a child process, relaying its progress, and returns its final line. A child
/// that overshoots the memory cap by half (it should have stopped itself) or runs far over time
/// is killed.
fn in_child(task: &Task, progress: &Progress) -> anyhow::Result<ChildLine> {
    let (Task::Capacity(cfg) | Task::Mode(cfg)) = task;
    let label = match task {
        Task::Capacity(_) => "capacity",
        Task::Mode(cfg) => cfg.mode.as_str(),
    };
    let mut child = ChildProcess::spawn(ChildOf::Simulate, task)?;
    let mut rss = Rss::of(child.id());
    let started = Instant::now();
    let limit = cfg.duration + Duration::from_secs(120);
    // The safety net for a mode that failed to stop itself at the cap. Twice the cap: a mode
    // offered millions of jobs a second overshoots the cap by its sampling interval's worth of
    // allocations before it stops, more so on a busy machine (1.5x killed well-behaved runs).
    let hard_cap = cfg.memory_cap.saturating_mul(2);
    let mut last = None;
    let mut peak = 0;
    loop {
        match child.next::<ChildLine>(Duration::from_millis(50))? {
            Next::Line(ChildLine::Sample(s)) => progress.sample(label, &s),
            Next::Line(other) => last = Some(other),
            Next::Quiet => {}
            Next::Ended => break,
        }
        let memory = rss.read().unwrap_or(0);
        peak = peak.max(memory);
        let over_cap = memory > hard_cap;
        if over_cap || started.elapsed() > limit {
            child.kill();
            bail!(
                "mode {label} was killed: {} after {:.1} s (it should have stopped itself)",
                if over_cap {
                    "memory past 2x the cap"
                } else {
                    "still running"
                },
                started.elapsed().as_secs_f64()
            );
        }
    }
    child
        .finish()
        .map_err(|e| anyhow::anyhow!("mode {label} failed: {e:#}"))?;
    match last {
        // The child's memory as this process saw it counts towards its peak too.
        Some(ChildLine::Report(mut report)) => {
            report.peak_rss_bytes = report.peak_rss_bytes.max(peak);
            Ok(ChildLine::Report(report))
        }
        Some(line) => Ok(line),
        None => bail!("mode {label} exited without a report"),
    }
}

/// In a child process: runs the task the parent handed over, printing its lines.
pub(super) fn serve_parent() -> anyhow::Result<std::process::ExitCode> {
    match child::settings::<Task>()? {
        Task::Capacity(cfg) => {
            let capacity = mode::measure_capacity(cfg.profile, CALIBRATION_S, cfg.memory_cap)?;
            child::emit(&ChildLine::Capacity(capacity))?;
        }
        Task::Mode(cfg) => {
            let report = mode::run(&cfg, &mut |s| {
                let _ = child::emit(&ChildLine::Sample(s.clone()));
            })?;
            child::emit(&ChildLine::Report(Box::new(report)))?;
            // Leave at once: the runtime's leftover tasks (millions, in naive mode) die with us.
            std::process::exit(0);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
