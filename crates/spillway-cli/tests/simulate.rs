//! `spillway simulate` driven in-process at a tiny scale, plus one run of the built binary.

mod support;

use clap::Parser;
use spillway_cli::simulate::{self, SimReport, SimulateArgs};
use spillway_cli::{Cli, Command};
use support::assert_every_job_accounted;

fn args(extra: &[&str]) -> SimulateArgs {
    let mut argv = vec!["spillway", "simulate", "--isolation", "inline"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Simulate(args) => args,
        other => panic!("parsed as another command: {other:?}"),
    }
}

fn parse_error(extra: &[&str]) -> String {
    let mut argv = vec!["spillway", "simulate"];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).unwrap_err().to_string()
}

/// A quick run: low rate, one second a mode, capacity given so that nothing is calibrated.
fn small(extra: &[&str]) -> SimReport {
    let mut a = vec![
        "--rate",
        "400",
        "--duration",
        "1s",
        "--capacity",
        "20000",
        "--alloc-kib",
        "64",
        "--max-workers",
        "200",
        "--queue",
        "400",
        "--min-workers",
        "10",
    ];
    a.extend_from_slice(extra);
    simulate::simulate(&args(&a)).expect("the simulation runs")
}

#[test]
fn every_offered_job_is_accounted_for_in_every_mode() {
    let report = small(&[]);
    let names: Vec<_> = report.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(
        names,
        ["naive", "semaphore", "pool", "pool-tuned", "pool-adaptive"]
    );
    for m in &report.modes {
        assert_every_job_accounted(m);
        // Open loop: about 400 offers in the second, whatever the mode does with them.
        assert!(
            (300..=500).contains(&m.offered),
            "{}: offered {}",
            m.mode,
            m.offered
        );
        assert!(!m.oom);
        assert!(m.completed > 0 && m.latency_ms.p50 >= 20.0, "{m:?}");
        assert!(m.latency_ms.p99 >= m.latency_ms.p50);
        assert!(!m.series.is_empty());
        let series_offered: u64 = m.series.iter().map(|s| s.offered).sum();
        assert_eq!(series_offered, m.offered, "{}: the series adds up", m.mode);
        // No mix: every job is normal.
        assert_eq!(m.by_priority.keys().collect::<Vec<_>>(), ["normal"]);
        let normal = &m.by_priority["normal"];
        assert_eq!(
            (normal.offered, normal.completed, normal.shed),
            (m.offered, m.completed, m.shed)
        );
        assert_eq!(normal.goodput_per_s, m.goodput_per_s);
    }
    assert_eq!(report.capacity_per_s, Some(20_000.0));
    assert_eq!(report.overload_factor, Some(400.0 / 20_000.0));
}

#[test]
fn a_pool_that_is_too_small_sheds_and_counts_it() {
    let report = small(&[
        "--mode",
        "pool",
        "--max-workers",
        "2",
        "--min-workers",
        "1",
        "--queue",
        "2",
    ]);
    let m = &report.modes[0];
    // Two workers for 20 ms jobs complete at most ~100/s; the rest is shed at once.
    assert!(m.shed > 100, "{m:?}");
    assert!(m.completed <= 150, "{m:?}");
    assert_every_job_accounted(m);
}

#[test]
fn the_memory_cap_stops_a_mode_and_reports_it_as_oom() {
    let rss_now = rss_now();
    let cap = format!("{}B", rss_now + (64 << 20));
    // 5,000 jobs/s each holding 256 KiB for 500 ms: about 600 MiB if nothing stopped it.
    let report = simulate::simulate(&args(&[
        "--mode",
        "naive",
        "--rate",
        "5000",
        "--duration",
        "5s",
        "--wait-ms",
        "500",
        "--alloc-kib",
        "256",
        "--capacity",
        "1000",
        "--memory-cap",
        &cap,
    ]))
    .unwrap();
    let m = &report.modes[0];
    assert!(m.oom, "{m:?}");
    let at = m.oom_at_s.expect("when it hit the cap");
    assert!(at < 4.0, "stopped at {at} s");
    assert!(m.outcome().starts_with("OOM at"), "{}", m.outcome());
    assert!(m.peak_rss_bytes > rss_now + (64 << 20));
}

fn rss_now() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

/// Issue 18, defect 11: at a rate the generator cannot keep up with, its catch-up loop never
/// looked at the stop flag or the clock, so the naive mode ran past its memory cap and its
/// duration, and its totals counted jobs offered after the time its rates were measured over.
#[test]
fn the_memory_cap_stops_the_naive_mode_at_any_rate() {
    let cap = rss_now() + (96 << 20);
    let started = std::time::Instant::now();
    let report = simulate::simulate(&args(&[
        "--mode",
        "naive",
        "--rate",
        "1e8",
        "--duration",
        "2s",
        "--wait-ms",
        "1000",
        "--alloc-kib",
        "64",
        "--capacity",
        "1000",
        "--memory-cap",
        &format!("{cap}B"),
    ]))
    .unwrap();
    let ran = started.elapsed().as_secs_f64();
    let m = &report.modes[0];
    let at = m.oom_at_s.expect("it hit the cap");
    assert!(m.oom && at < 2.0, "{m:?}");
    // Stopped at the cap, not at the end of a schedule it could not keep up with.
    assert!(
        ran < at + 1.5,
        "ran {ran} s after hitting the cap at {at} s"
    );
    assert!(
        m.elapsed_s >= at && m.elapsed_s < at + 0.5,
        "rates over {} s, cap at {at} s",
        m.elapsed_s
    );
    let offered_over_elapsed = m.offered as f64 / m.elapsed_s;
    assert!((offered_over_elapsed - m.offered_per_s).abs() < 1e-6 * m.offered_per_s);
    assert!(
        m.peak_rss_bytes > cap,
        "the peak, {} > {cap}",
        m.peak_rss_bytes
    );
    assert_every_job_accounted(m);
}

/// Issue 18, defect 25: the calibration ran up to 4,000 jobs at once whatever each held.
#[test]
fn the_calibration_keeps_within_the_memory_cap() {
    let err = simulate::simulate(&args(&[
        "--mode",
        "pool",
        "--alloc-kib",
        "65536",
        "--memory-cap",
        "64MiB",
    ]))
    .unwrap_err();
    assert!(err.is::<spillway_cli::UsageError>(), "{err}");
    let err = err.to_string();
    assert!(
        err.starts_with("cannot measure the capacity") && err.contains("--memory-cap (64 MiB)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_html_reports_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let html = dir.path().join("run.html");
    let cli = Cli::try_parse_from([
        "spillway",
        "simulate",
        "--isolation",
        "inline",
        "--mode",
        "semaphore",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--capacity",
        "5000",
        "--alloc-kib",
        "16",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ])
    .unwrap();
    let code = spillway_cli::run(cli).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);

    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mode = &value["modes"][0];
    for field in [
        "mode",
        "offered",
        "completed",
        "goodput_per_s",
        "shed",
        "expired",
        "peak_rss_bytes",
        "peak_in_flight",
        "oom",
        "series",
    ] {
        assert!(!mode[field].is_null(), "missing {field} in {mode}");
    }
    for p in ["p50", "p99", "p999", "max"] {
        assert!(mode["latency_ms"][p].is_number(), "missing latency_ms.{p}");
    }
    assert_eq!(mode["mode"], "semaphore");
    assert_every_job_accounted(mode);
    assert_eq!(mode["oom"], false);
    assert!(mode["series"][0]["rss_bytes"].as_u64().unwrap() > 0);
    if cfg!(target_os = "linux") {
        for sample in mode["series"].as_array().unwrap() {
            for field in ["cpu_user_s", "cpu_system_s"] {
                let cpu = sample[field].as_f64();
                assert!(cpu.is_some_and(|s| s >= 0.0), "{field} in {sample}");
            }
        }
    }

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") || page.starts_with("<!doctype html>"));
    assert_eq!(page.matches("<svg").count(), 7, "seven charts");
    assert!(page.contains("semaphore"));
}

#[test]
fn bad_flags_are_clear_errors() {
    let e = parse_error(&["--rate", "-5"]);
    assert!(
        e.contains("'--rate <RATE>'") && e.contains("from 0.001 to 1e9"),
        "{e}"
    );
    let e = parse_error(&["--rate", "0"]);
    assert!(e.contains("from 0.001 to 1e9"), "{e}");
    let e = parse_error(&["--duration", "0s"]);
    assert!(
        e.contains("--duration") && e.contains("must be longer than zero"),
        "{e}"
    );
    let e = parse_error(&["--duration", "soon"]);
    assert!(e.contains("--duration") && e.contains("e.g. 10s"), "{e}");
    let e = parse_error(&["--mode", "bogus"]);
    assert!(
        e.contains("invalid value 'bogus' for '--mode <MODE>'")
            && e.contains("naive, semaphore, pool, pool-tuned, pool-adaptive, pool-gradient2"),
        "{e}"
    );
    let e = parse_error(&["--memory-cap", "4 parsecs"]);
    assert!(
        e.contains("--memory-cap") && e.contains("unknown unit"),
        "{e}"
    );
    let e = parse_error(&["--queue", "0"]);
    assert!(e.contains("--queue"), "{e}");
    let e = parse_error(&["--wait-ms", "-1"]);
    assert!(
        e.contains("must be a number of milliseconds from 0 to 3600000"),
        "{e}"
    );
    let e = parse_error(&["--wait-ms", "1e30"]);
    assert!(e.contains("--wait-ms"), "{e}");
    let e = parse_error(&["--alloc-kib", "2000000000"]);
    assert!(
        e.contains("--alloc-kib") && e.contains("0..=1048576"),
        "{e}"
    );
    let e = parse_error(&["--max-workers", "0"]);
    assert!(e.contains("--max-workers"), "{e}");

    let err = simulate::simulate(&args(&["--min-workers", "10", "--max-workers", "5"]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid --min-workers = 10: must be at most --max-workers (5)"
    );
    // The semaphore has no minimum: --min-workers is not checked against its permits.
    let only_semaphore = args(&[
        "--mode",
        "semaphore",
        "--min-workers",
        "10",
        "--max-workers",
        "5",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--capacity",
        "1000",
    ]);
    assert!(simulate::simulate(&only_semaphore).is_ok());
}

#[test]
fn bad_modes_and_scenarios_are_clear_errors_naming_the_flag() {
    let e = parse_error(&["--mode", "pool-adaptive,bogus"]);
    assert!(
        e.contains("invalid value 'bogus' for '--mode <MODE>'") && e.contains("pool-vegas"),
        "{e}"
    );
    let e = parse_error(&["--scenario", "tsunami"]);
    assert!(
        e.contains("invalid value 'tsunami' for '--scenario <SCENARIO>'")
            && e.contains("step, spike, capacity-drop, slowdown, low-rate"),
        "{e}"
    );
    let usage = |extra: &[&str]| {
        let err = simulate::simulate(&args(extra)).unwrap_err();
        assert!(err.is::<spillway_cli::UsageError>(), "{err}");
        err.to_string()
    };
    assert_eq!(
        usage(&["--mode", "semaphore,pool-vegas,semaphore"]),
        "invalid --mode: semaphore is chosen twice (`all` stands for naive, semaphore, pool, \
         pool-tuned and pool-adaptive)"
    );
    assert!(usage(&["--mode", "all,pool"]).starts_with("invalid --mode: pool is chosen twice"));
    assert_eq!(
        usage(&["--scenario", "slowdown", "--duration", "3s"]),
        "invalid --duration 3s: the slowdown scenario needs at least 6s (the slowdown at 5s \
         and 1s after)"
    );
    for (mix, want) in [
        ("critical=0.5,low=0.6", "the shares sum to 1.1"),
        ("vip=1", "unknown priority \"vip\""),
    ] {
        let e = parse_error(&["--priority-mix", mix]);
        assert!(e.contains("--priority-mix") && e.contains(want), "{e}");
    }
    assert!(
        usage(&["--scenario", "priorities", "--rate", "100"])
            .starts_with("--rate sets the step scenario's rate only: the priorities scenario's"),
    );
    assert!(
        usage(&["--scenario", "spike", "--rate", "100"])
            .starts_with("--rate sets the step scenario's rate only: the spike scenario's"),
    );
}

/// Runs `spillway simulate --isolation inline` with `extra` in-process, which must succeed
/// and write its report to the `--json` path among them; that report.
async fn run_to_json(extra: &[&str]) -> serde_json::Value {
    let mut argv = vec!["spillway", "simulate", "--isolation", "inline"];
    argv.extend_from_slice(extra);
    let at = argv
        .iter()
        .position(|a| *a == "--json")
        .expect("a --json path");
    let json = std::path::PathBuf::from(argv[at + 1]);
    let cli = Cli::try_parse_from(argv).unwrap();
    assert_eq!(
        spillway_cli::run(cli).await.unwrap(),
        std::process::ExitCode::SUCCESS
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// A spike run of two modes: the series comes every 100 ms, the pool mode reports its limit
/// in every sample and the semaphore none, and the JSON lists the phases the run offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_run_has_a_100ms_series_with_the_pools_limit() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("spike.json");
    let value = run_to_json(&[
        "--scenario",
        "spike",
        "--mode",
        "pool-adaptive,semaphore",
        "--duration",
        "3s",
        "--capacity",
        "200",
        "--alloc-kib",
        "16",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    let settings = &value["settings"];
    assert_eq!(settings["scenario"], "spike");
    let phases: Vec<_> = settings["phases"].as_array().unwrap().iter().collect();
    assert_eq!(phases.len(), 3);
    assert_eq!(phases[1]["name"], "spike");
    assert_eq!(phases[1]["start_s"], 0.5);
    assert_eq!(phases[1]["rate"], 280.0);
    let modes = value["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 2);
    assert_eq!(modes[0]["mode"], "pool-adaptive");
    for mode in modes {
        assert_every_job_accounted(mode);
        let series = mode["series"].as_array().unwrap();
        // 3 s at 100 ms; the sampler may run a tick late, never a sample short.
        assert!(
            (29..=31).contains(&series.len()),
            "{} samples",
            series.len()
        );
        let t: Vec<f64> = series.iter().map(|s| s["t_s"].as_f64().unwrap()).collect();
        assert!((t[0] - 0.1).abs() < 0.05, "first sample at {}", t[0]);
        assert!(t.windows(2).all(|w| w[1] - w[0] < 0.15), "{t:?}");
        let offered: u64 = series.iter().map(|s| s["offered"].as_u64().unwrap()).sum();
        assert_eq!(offered, mode["offered"].as_u64().unwrap());
    }
    let limits = |i: usize| -> Vec<serde_json::Value> {
        modes[i]["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["limit"].clone())
            .collect()
    };
    // The pool's live limit, between one and the seed's ceiling of 5,000 workers.
    assert!(
        limits(0)
            .iter()
            .all(|l| l.as_u64().is_some_and(|l| (1..=5_000).contains(&l))),
        "{:?}",
        limits(0)
    );
    assert!(limits(1).iter().all(serde_json::Value::is_null));
}

/// A short priorities run: 3x the given capacity, 10% critical, 30% normal, 60% low; every
/// mode's JSON row has `by_priority` with the row's fields, and the table and the HTML report
/// have one line per priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_priorities_scenario_reports_each_priority_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("p.json"), dir.path().join("p.html"));
    let value = run_to_json(&[
        "--scenario",
        "priorities",
        "--mode",
        "pool-adaptive,semaphore",
        "--duration",
        "2s",
        "--capacity",
        "300",
        "--alloc-kib",
        "16",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    let settings = &value["settings"];
    assert_eq!(settings["scenario"], "priorities");
    assert_eq!(settings["priority_mix"], "critical=0.1,normal=0.3,low=0.6");
    assert_eq!(settings["phases"][0]["rate"], 900.0, "3x capacity");
    for mode in value["modes"].as_array().unwrap() {
        assert_every_job_accounted(mode);
        let by = mode["by_priority"].as_object().unwrap();
        let keys: Vec<&str> = by.keys().map(String::as_str).collect();
        assert_eq!(keys, ["critical", "low", "normal"], "{}", mode["mode"]);
        let mut offered = 0;
        for (name, row) in by {
            for field in [
                "offered",
                "offered_per_s",
                "goodput_per_s",
                "completed",
                "shed",
            ] {
                assert!(row[field].is_number(), "{name}.{field} in {row}");
            }
            for q in ["p50", "p99"] {
                assert!(row["latency_ms"][q].is_number(), "{name} latency {q}");
            }
            offered += row["offered"].as_u64().unwrap();
        }
        assert_eq!(offered, mode["offered"].as_u64().unwrap());
        let share = |p: &str| by[p]["offered"].as_f64().unwrap() / offered as f64;
        assert!(
            (0.05..0.15).contains(&share("critical")),
            "{}",
            share("critical")
        );
        assert!((0.5..0.7).contains(&share("low")), "{}", share("low"));
    }
    let page = std::fs::read_to_string(&html).unwrap();
    for row in ["critical work of pool-adaptive", "low work of semaphore"] {
        assert!(page.contains(row), "no row {row:?} in the HTML report");
    }
}

#[test]
fn the_table_has_a_line_per_priority_and_everything_at_one_priority_is_counted_there() {
    let report = small(&["--mode", "pool", "--priority-mix", "low=1"]);
    let m = &report.modes[0];
    assert_every_job_accounted(m);
    assert_eq!(m.by_priority.keys().collect::<Vec<_>>(), ["low"]);
    assert_eq!(m.by_priority["low"].offered, m.offered);
    assert_eq!(m.by_priority["low"].completed, m.completed);
    assert_eq!(report.settings.priority_mix.as_deref(), Some("low=1"));
}

/// Issue 12: `--mode cpu` runs the CPU lanes one after another in one run: spillway's
/// BlockingPool, tokio's spawn_blocking and rayon::spawn, each job accounted for.
#[test]
fn the_cpu_lanes_are_compared_in_one_run() {
    let report = small(&[
        "--mode",
        "cpu",
        "--wait-ms",
        "0",
        "--cpu-ms",
        "1",
        "--rate",
        "200",
    ]);
    let names: Vec<_> = report.modes.iter().map(|m| m.mode.as_str()).collect();
    assert_eq!(names, ["blocking", "spawn-blocking", "rayon"]);
    for m in &report.modes {
        assert_every_job_accounted(m);
        assert!(m.completed > 0, "{m:?}");
        assert!(
            m.latency_ms.p50 >= 1.0,
            "{}: a job burns 1 ms: {m:?}",
            m.mode
        );
    }
    assert!(report.modes[0].description.contains("BlockingPool"));
    let err = simulate::simulate(&args(&["--mode", "blocking,cpu"])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid --mode: blocking is chosen twice"),
        "{err}"
    );
}
