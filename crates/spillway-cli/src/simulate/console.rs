//! What `simulate` prints: the live progress line and the final table.

use std::io::IsTerminal;
use std::time::Duration;

use super::report::{Second, SimReport, human_bytes};

/// The live progress line: an indicatif spinner on a terminal, plain lines otherwise.
#[derive(Debug)]
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(super) fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar }
    }

    pub(super) fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(super) fn second(&self, label: &str, s: &Second) {
        let line = format!(
            "{label:>10} {:>3}s  offered {:>8}/s  completed {:>7}/s  shed {:>8}/s  in flight {:>8}  RSS {:>9}  p99 {:>8.1} ms",
            s.t,
            s.offered,
            s.completed,
            s.shed,
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
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The results table on stdout, with the settings above it and the modes' settings below.
pub(super) fn print_table(report: &SimReport) {
    print_settings(report);
    print_rows(report);
    println!();
    for m in &report.modes {
        println!("{:<11} {}", m.mode, m.description);
    }
}

fn print_settings(report: &SimReport) {
    let s = &report.settings;
    println!(
        "\noffered {:.0} jobs/s for {:.0} s a mode; job = {} ms wait + {} KiB touched + {} ms CPU; deadline {} ms",
        s.rate, s.duration_s, s.wait_ms, s.alloc_kib, s.cpu_ms, s.deadline_ms
    );
    if let (Some(c), Some(f)) = (report.capacity_per_s, report.overload_factor) {
        println!("machine capacity for this job: {c:.0} jobs/s (offered {f:.1}x that)");
    }
    println!();
}

fn print_rows(report: &SimReport) {
    println!(
        "{:<11} {:>10} {:>9} {:>10} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  outcome",
        "mode",
        "offered/s",
        "completed",
        "goodput/s",
        "shed",
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
            m.shed,
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
}
