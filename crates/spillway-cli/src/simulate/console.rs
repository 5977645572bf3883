//! What `simulate` prints: the live progress line and the final table.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use super::live::Live;
use super::report::{ModeReport, SAMPLE_S, Sample, SimReport, human_bytes};
use super::scenario::describe_phases;

/// Samples in a second: the console shows one a second.
const SAMPLES_A_SECOND: u32 = 10;

/// The live progress line: an indicatif spinner on a terminal, plain lines otherwise.
#[derive(Debug)]
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// `--live`: every sample goes to the dashboard too.
    live: Option<Arc<Live>>,
}

impl Progress {
    pub(super) fn new(live: Option<Arc<Live>>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar, live }
    }

    /// The run's settings in words, for the live view's header.
    pub(super) fn summary(&self, line: &str) {
        if let Some(live) = &self.live {
            live.summary(line);
        }
    }

    pub(super) fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// One sample of a mode's series: to the live view, and, once a second and for a short
    /// last sample, to the console with its counts as rates.
    pub(super) fn sample(&self, label: &str, s: &Sample) {
        if let Some(live) = &self.live {
            live.sample(label, s);
        }
        let whole_second = s.t.is_multiple_of(SAMPLES_A_SECOND);
        if !whole_second && s.span_s >= SAMPLE_S * 0.9 {
            return;
        }
        let per_s = |n: u64| n as f64 / s.span_s.max(1e-3);
        let limit = s.limit.map_or(String::new(), |l| format!("  limit {l:>6}"));
        let line = format!(
            "{label:>14} {:>5.1}s  offered {:>8.0}/s  completed {:>7.0}/s  shed {:>8.0}/s  in flight {:>8}  RSS {:>9}  p99 {:>8.1} ms{limit}",
            s.t_s,
            per_s(s.offered),
            per_s(s.completed),
            per_s(s.shed),
            s.in_flight,
            human_bytes(s.rss_bytes),
            s.p99_ms
        );
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("{line}"),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(live) = &self.live {
            live.finish();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The results table for stdout, with the settings above it and the modes' settings below.
pub(super) fn table(report: &SimReport) -> String {
    let mut s = String::new();
    settings(&mut s, report);
    rows(&mut s, report);
    s.push('\n');
    for m in &report.modes {
        let _ = writeln!(s, "{:<14} {}", m.mode, m.description);
    }
    s
}

/// A duration given in seconds, as the flag would be written (`10s`, `10ms`).
fn human_duration(seconds: f64) -> String {
    let micros = (seconds * 1e6).round().max(0.0) as u64;
    humantime::format_duration(Duration::from_micros(micros)).to_string()
}

fn settings(out: &mut String, report: &SimReport) {
    let s = &report.settings;
    let _ = writeln!(
        out,
        "\noffered {:.0} jobs/s for {} a mode; job = {} ms wait + {} KiB touched + {} ms CPU; deadline {} ms",
        s.rate,
        human_duration(s.duration_s),
        s.wait_ms,
        s.alloc_kib,
        s.cpu_ms,
        s.deadline_ms
    );
    if s.scenario != "step" {
        let _ = writeln!(
            out,
            "{} scenario: {}",
            s.scenario,
            describe_phases(&s.phases)
        );
    }
    if let Some(mix) = &s.priority_mix {
        let _ = writeln!(out, "priorities offered: {mix}");
    }
    if let (Some(c), Some(f)) = (report.capacity_per_s, report.overload_factor) {
        let _ = writeln!(
            out,
            "machine capacity for this job: {c:.0} jobs/s (offered {f:.1}x that)"
        );
    }
    out.push('\n');
}

fn rows(out: &mut String, report: &SimReport) {
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>9} {:>10} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  outcome",
        "mode",
        "offered/s",
        "completed",
        "goodput/s",
        "shed",
        "expired",
        "displaced",
        "peak RSS",
        "in flight",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "body ms"
    );
    for m in &report.modes {
        let _ = writeln!(
            out,
            "{:<14} {:>10.0} {:>9} {:>10.0} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.1}  {}",
            m.mode,
            m.offered_per_s,
            m.completed,
            m.goodput_per_s,
            m.shed,
            m.expired,
            m.displaced,
            human_bytes(m.peak_rss_bytes),
            m.peak_in_flight,
            m.latency_ms.p50,
            m.latency_ms.p99,
            m.latency_ms.p999,
            m.latency_ms.max,
            m.job_body_mean_ms,
            m.outcome()
        );
        if report.settings.priority_mix.is_some() {
            priority_rows(out, m);
        }
    }
}

/// One line per priority under a mode's row, in the columns they share with it.
fn priority_rows(out: &mut String, m: &ModeReport) {
    for (name, p) in m.priorities() {
        let _ = writeln!(
            out,
            "{:<14} {:>10.0} {:>9} {:>10.0} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            format!("  {name}"),
            p.offered_per_s,
            p.completed,
            p.goodput_per_s,
            p.shed,
            p.expired,
            p.displaced,
            "",
            "",
            p.latency_ms.p50,
            p.latency_ms.p99,
            p.latency_ms.p999,
            p.latency_ms.max,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Settings;

    /// Issue 18, defect 25: `--duration 10ms` was printed as "for 0 s a mode".
    #[test]
    fn a_short_duration_is_printed_as_written() {
        let report = SimReport {
            settings: Settings {
                rate: 100.0,
                duration_s: 0.01,
                wait_ms: 1.0,
                alloc_kib: 0,
                cpu_ms: 0.0,
                deadline_ms: 1000.0,
                memory_cap_bytes: 1 << 30,
                seed: 1,
                scenario: "step".into(),
                phases: Vec::new(),
                priority_mix: None,
            },
            capacity_per_s: None,
            overload_factor: None,
            modes: Vec::new(),
        };
        let text = table(&report);
        assert!(
            text.contains("offered 100 jobs/s for 10ms a mode"),
            "{text}"
        );
        assert_eq!(human_duration(10.0), "10s");
        assert_eq!(human_duration(1.5), "1s 500ms");
    }
}
