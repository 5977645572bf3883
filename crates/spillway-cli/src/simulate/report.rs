//! What a simulation run produces: one [`ModeReport`] per mode, gathered in a [`SimReport`].
//! Serialized as the `--json` output; rendered as the table and the `--html` report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::scenario::Phase;

/// The whole run: settings, calibration and one report per mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// The settings the run used, as given on the command line (after defaults).
    pub settings: Settings,
    /// Jobs per second this machine completes for this job when nothing is shed, if measured.
    pub capacity_per_s: Option<f64>,
    /// `rate / capacity_per_s`: how far over its capacity the machine was driven.
    pub overload_factor: Option<f64>,
    /// One entry per mode, in the order they ran.
    pub modes: Vec<ModeReport>,
}

/// The run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Offered jobs per second: `--rate` in the step scenario, the highest phase's rate in
    /// the others.
    pub rate: f64,
    /// Seconds each mode is offered load.
    pub duration_s: f64,
    /// Milliseconds each job waits (an I/O-like sleep, standing for a downstream call).
    pub wait_ms: f64,
    /// KiB each job allocates and touches, one write per 4 KiB page.
    pub alloc_kib: u64,
    /// Milliseconds of busy CPU work per job.
    pub cpu_ms: f64,
    /// The latency a caller tolerates, in milliseconds: a job that completes later is not goodput.
    pub deadline_ms: f64,
    /// A mode whose resident memory passes this many bytes is stopped and reported as OOM.
    pub memory_cap_bytes: u64,
    /// Seed of the run's random choices.
    pub seed: u64,
    /// `step`, `spike`, `capacity-drop`, `slowdown`, `low-rate` or `priorities`.
    pub scenario: String,
    /// What each stretch of the run offered. Windowed figures (goodput and p99 during a spike,
    /// after a drop) are read from the series over these spans: `bench_adaptive.py` does.
    pub phases: Vec<Phase>,
    /// The priorities offered and their shares (`critical=0.1,normal=0.3,low=0.6`); `None`
    /// when every job was offered at normal priority through `try_submit`.
    pub priority_mix: Option<String>,
}

/// Latency percentiles in milliseconds, measured from each job's scheduled offer time to its
/// completion (so time spent queued, or waiting to be scheduled, is included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One interval of one mode's run: [`SAMPLE_S`] seconds (the last one may be shorter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The interval's number (1 for the first).
    pub t: u32,
    /// When the interval ended, in seconds since the mode started.
    pub t_s: f64,
    /// How long the interval lasted, in seconds: the counts below divided by it are rates.
    pub span_s: f64,
    /// Jobs offered during the interval.
    pub offered: u64,
    /// Jobs completed during the interval.
    pub completed: u64,
    /// Jobs completed during the interval within the deadline of their offer.
    pub goodput: u64,
    /// Jobs shed (refused at once) during the interval.
    pub shed: u64,
    /// Jobs that expired in the queue during the interval.
    pub expired: u64,
    /// Jobs offered and not yet ended (queued or running) at the end of the interval.
    pub in_flight: u64,
    /// Resident memory at the end of the interval, in bytes.
    pub rss_bytes: u64,
    /// 99th percentile latency of the jobs completed during the interval, in ms (0 if none).
    pub p99_ms: f64,
    /// The pool's concurrency limit at the end of the interval (`Snapshot::limit`); absent
    /// for the modes without a pool.
    pub limit: Option<usize>,
    /// CPU seconds the mode's process ran its own code during the interval (divided by
    /// `span_s`: cores busy); absent where the platform does not tell (only Linux does).
    #[serde(default)]
    pub cpu_user_s: Option<f64>,
    /// CPU seconds the kernel spent for the process during the interval (system calls, page
    /// faults of memory touched for the first time); absent where the platform does not tell.
    #[serde(default)]
    pub cpu_system_s: Option<f64>,
}

/// The series' resolution: one [`Sample`] every 100 ms, so recovery times can be read.
pub const SAMPLE_S: f64 = 0.1;

/// The result of one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeReport {
    /// The mode's name on the command line (`naive`, `pool-adaptive`, ...).
    pub mode: String,
    /// The mode's settings, in words ("5000 workers, queue 100000").
    pub description: String,
    /// Jobs offered.
    pub offered: u64,
    /// Achieved offered rate, jobs per second.
    pub offered_per_s: f64,
    /// Jobs completed (whatever their latency).
    pub completed: u64,
    /// Jobs completed within the deadline, per second of the run.
    pub goodput_per_s: f64,
    /// Jobs shed (refused at once).
    pub shed: u64,
    /// Jobs that panicked (`--fault-panic`): ended, not completed.
    #[serde(default)]
    pub failed: u64,
    /// Jobs that waited too long in the queue and were not run.
    pub expired: u64,
    /// Jobs pushed out of the queue by a job of higher priority, and not run (0 when every
    /// job had one priority).
    pub displaced: u64,
    /// Jobs still in flight (queued or running) when the mode ended, counted as they came and
    /// went: `offered == completed + failed + shed + expired + displaced + in_flight_at_end`
    /// unless a job was lost.
    pub in_flight_at_end: u64,
    /// Highest resident memory seen, in bytes.
    pub peak_rss_bytes: u64,
    /// Most jobs in flight (offered, not yet ended) at once.
    pub peak_in_flight: u64,
    /// End-to-end latency of completed jobs.
    pub latency_ms: LatencyMs,
    /// Mean time of the job body alone (the figure the seed article reports as latency).
    pub job_body_mean_ms: f64,
    /// Whether the mode was stopped for passing the memory cap.
    pub oom: bool,
    /// When it passed the cap, in seconds since its start.
    pub oom_at_s: Option<f64>,
    /// How long the mode ran, in seconds.
    pub elapsed_s: f64,
    /// One entry per [`SAMPLE_S`] seconds.
    pub series: Vec<Sample>,
    /// The same figures for each priority offered, keyed by its lowercase name (`critical`,
    /// `high`, `normal`, `low`); just `normal` when the run offered no mix.
    pub by_priority: BTreeMap<String, PriorityRow>,
}

/// One priority's part of a mode's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityRow {
    /// Jobs offered at this priority.
    pub offered: u64,
    /// Jobs offered at this priority per second of the run.
    pub offered_per_s: f64,
    /// Jobs of this priority completed (whatever their latency).
    pub completed: u64,
    /// Jobs of this priority completed within the deadline, per second of the run.
    pub goodput_per_s: f64,
    /// Jobs of this priority shed at once.
    pub shed: u64,
    /// Jobs of this priority that waited too long in the queue and were not run.
    pub expired: u64,
    /// Jobs of this priority pushed out of the queue by a job of higher priority.
    pub displaced: u64,
    /// End-to-end latency of this priority's completed jobs.
    pub latency_ms: LatencyMs,
}

impl ModeReport {
    /// The priorities of [`by_priority`](Self::by_priority), highest first.
    pub fn priorities(&self) -> Vec<(&'static str, &PriorityRow)> {
        spillway::Priority::ALL
            .into_iter()
            .filter_map(|p| Some((p.as_str(), self.by_priority.get(p.as_str())?)))
            .collect()
    }

    /// "completed" or "OOM at 9.5 s, 8.0 GiB".
    pub fn outcome(&self) -> String {
        match self.oom_at_s {
            Some(at) if self.oom => format!(
                "OOM at {at:.1} s, {:.1} GiB",
                self.peak_rss_bytes as f64 / GIB
            ),
            _ => "completed".to_owned(),
        }
    }
}

const KIB: f64 = 1024.0;
const MIB: f64 = KIB * 1024.0;
const GIB: f64 = MIB * 1024.0;

/// Bytes in binary units: "1.23 GiB", "412 MiB", "64 KiB", "512 B".
pub(crate) fn human_bytes(b: u64) -> String {
    let v = b as f64;
    if v >= GIB {
        format!("{:.2} GiB", v / GIB)
    } else if v >= MIB {
        format!("{:.0} MiB", v / MIB)
    } else if v >= KIB {
        format!("{:.0} KiB", v / KIB)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_humanly() {
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes(412 << 20), "412 MiB");
        assert_eq!(human_bytes(1_320_702_444), "1.23 GiB");
        assert_eq!(human_bytes(64 << 10), "64 KiB");
        assert_eq!(human_bytes(512), "512 B");
    }
}
