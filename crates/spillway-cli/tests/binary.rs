//! The built `spillway` binary, run as a user would.

mod support;

use std::process::Command;

use support::{Reaper, Reply, assert_every_job_accounted, get_request};

fn spillway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(args)
        .output()
        .expect("the spillway binary runs")
}

/// Runs `spillway simulate args --json <tmp>`, expects success; its stdout and JSON report.
fn simulate_json(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let mut argv = vec!["simulate", "--json", json.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = spillway(&argv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), report)
}

#[test]
fn version_names_the_package_version() {
    let out = spillway(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("spillway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_describes_the_tool() {
    let out = spillway(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage: spillway"), "{text}");
}

#[test]
fn rust_log_shows_why_the_adaptive_limit_moves_and_nothing_without_it() {
    let run = |log: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_spillway"));
        command.env_remove("RUST_LOG").args([
            "simulate",
            "--mode",
            "pool-adaptive",
            "--isolation",
            "inline",
            "--capacity",
            "2000",
            "--rate",
            "4000",
            "--duration",
            "1s",
        ]);
        if let Some(log) = log {
            command.env("RUST_LOG", log);
        }
        let out = command.output().expect("the spillway binary runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let logged = run(Some("spillway=debug"));
    assert!(
        logged.contains("initial limit") && logged.contains("algorithm=\"adaptive\""),
        "{logged}"
    );
    assert!(!run(None).contains("initial limit"));
}

#[test]
fn an_unknown_flag_is_a_clear_error() {
    let out = spillway(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("unexpected argument '--no-such-flag'"),
        "{text}"
    );
}

#[test]
fn simulate_runs_each_mode_in_its_own_process() {
    let (table, report) = simulate_json(&[
        "--mode",
        "pool",
        "--rate",
        "300",
        "--duration",
        "1s",
        "--capacity",
        "5000",
        "--alloc-kib",
        "16",
    ]);
    assert!(
        table.contains("goodput/s") && table.contains("pool"),
        "{table}"
    );
    let mode = &report["modes"][0];
    assert_eq!(mode["mode"], "pool");
    assert_every_job_accounted(mode);
}

/// `GET path` on a new connection, with a read deadline; the whole reply.
fn get(addr: &str, path: &str) -> Reply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(get_request(path).as_bytes()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    Reply::parse(&reply)
}

#[test]
fn serve_drains_on_sigterm_and_exits_zero() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let mut child = Reaper(
        Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["serve", "--addr", "127.0.0.1:0", "--wait-ms", "3000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the spillway binary starts"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    // A request in flight when the signal comes is still answered.
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(get_request("/work").as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(&addr, "/metrics")
        .body
        .contains("spillway_workers_busy{pool=\"serve\"} 1")
    {
        assert!(Instant::now() < deadline, "the request never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.signal("TERM");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let reply = Reply::parse(&reply);
    assert_eq!(reply.status, 200, "{reply:?}");

    let status = child.wait_at_most(Duration::from_secs(20));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("open files: soft limit"), "{stderr}");
    assert!(
        rest.contains("drained: 1 in flight at the signal, 1 answered while draining, 0 abandoned"),
        "{rest}"
    );
}

/// A `spillway serve --mode naive --wait-ms 1` on a free port; its `/work` URL.
fn naive_server() -> (Reaper, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut server = Reaper(
        Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--mode",
                "naive",
                "--wait-ms",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
        + "/work";
    (server, url)
}

#[test]
fn load_splits_over_processes_and_merges_their_counts() {
    let (server, url) = naive_server();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let out = spillway(&[
        "load",
        &url,
        "--rate",
        "300",
        "--duration",
        "1s",
        "--connections",
        "6",
        "--processes",
        "3",
        "--quiet",
        "--priority-mix",
        "critical=0.5,normal=0.5",
        "--json",
        json.to_str().unwrap(),
    ]);
    drop(server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 process(es)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["processes"], 3);
    assert_eq!(report["scheduled"], 300);
    assert_eq!(report["statuses"]["200"], 300);
    assert_eq!(report["latency"]["2xx"]["count"], 300);
    assert_eq!(report["connections_established"], 6);
    // The children's counts per priority merge too.
    let by = &report["by_priority"];
    let requests = |p: &str| by[p]["requests"].as_u64().unwrap();
    assert_eq!(requests("critical") + requests("normal"), 300, "{by}");
    assert_eq!(
        by["critical"]["statuses"]["200"].as_u64().unwrap(),
        requests("critical")
    );
    assert!(
        stdout.contains("priority") && stdout.contains("critical"),
        "{stdout}"
    );
}

/// Runs `spillway args`, expects exit 2, and returns its stderr.
fn bad_input(args: &[&str]) -> String {
    let out = spillway(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

/// Issue 18, defects 17 and 14 (flag part): sizes past what the program can honour are
/// refused at parse time with the allowed range, instead of panicking later.
#[test]
fn huge_values_are_refused_with_their_range() {
    let huge = "18446744073709551615s";
    let load = |flag, value| vec!["load", "http://127.0.0.1:1/", "--rate", "1", flag, value];
    let day = "at most 24h";
    for (args, flag, allowed) in [
        (
            vec!["serve", "--drain-timeout", huge],
            "--drain-timeout",
            day,
        ),
        (
            vec!["serve", "--header-timeout", huge],
            "--header-timeout",
            day,
        ),
        (
            vec!["serve", "--pool-threads", "200000"],
            "--pool-threads",
            "0..=1024",
        ),
        (
            vec!["serve", "--alloc-kib", "100000000000"],
            "--alloc-kib",
            "0..=1048576",
        ),
        (load("--duration", huge), "--duration", day),
        (load("--warmup", huge), "--warmup", day),
        (vec!["simulate", "--duration", huge], "--duration", day),
        (
            vec!["simulate", "--rate", "1e-20"],
            "--rate",
            "from 0.001 to 1e9",
        ),
        (
            vec!["simulate", "--queue", "100000000000"],
            "--queue",
            "1..=10000000",
        ),
    ] {
        let err = bad_input(&args);
        assert!(
            err.contains(flag) && err.contains(allowed),
            "{args:?}: {err}"
        );
    }
}

/// Issue 18, defect 21: a memory cap without a unit, too small or overflowing is refused.
#[test]
fn a_memory_cap_needs_a_unit_and_a_sane_size() {
    for (cap, says) in [
        ("2", "needs a unit"),
        ("0.5", "needs a unit"),
        ("1KiB", "below the smallest cap, 64MiB"),
        ("99999999999GiB", "too large"),
    ] {
        let err = bad_input(&["simulate", "--memory-cap", cap]);
        assert!(
            err.contains("--memory-cap") && err.contains(says),
            "{cap}: {err}"
        );
    }
}

/// Issue 18, defects 16 and 22: every bad input exits 2 and names the flag (or the URL's part)
/// and what is allowed, semantic errors and negative values included.
#[test]
fn every_bad_input_exits_2_naming_what_is_wrong() {
    for (args, says) in [
        (
            vec!["load", "http://127.0.0.1:99999/", "--rate", "1"],
            "port 99999 is out of range",
        ),
        (
            vec!["load", "http://127.0.0.1:65616/", "--rate", "1"],
            "port 65616 is out of range",
        ),
        (
            vec!["load", "ftp://127.0.0.1/", "--rate", "1"],
            "invalid URL",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "1",
                "--connections",
                "4",
                "--processes",
                "5",
            ],
            "--processes = 5",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "1",
                "--source-addrs",
                "::1",
            ],
            "--source-addrs",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "1",
                "--streams-per-connection",
                "4",
            ],
            "--http2",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "1",
                "--connections",
                "-1",
            ],
            "--connections",
        ),
        (
            vec![
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--min-workers",
                "10",
                "--max-workers",
                "5",
            ],
            "--min-workers = 10",
        ),
        (vec!["serve", "--min-workers", "-1"], "--min-workers"),
        (
            vec![
                "simulate",
                "--mode",
                "pool",
                "--min-workers",
                "10",
                "--max-workers",
                "5",
            ],
            "--min-workers = 10",
        ),
        (vec!["simulate", "--max-workers", "-3"], "--max-workers"),
        (vec!["simulate", "--alloc-kib", "2000000"], "--alloc-kib"),
    ] {
        let err = bad_input(&args);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
    }
}

/// Issue 18, defect 11, as reported: the naive mode at 2e7 jobs/s was killed by its parent
/// ("memory past 1.5x the cap") and wrote no JSON; its report must be the OOM, with the peak.
#[test]
fn the_naive_mode_stops_itself_at_its_memory_cap_at_any_rate() {
    let (_, report) = simulate_json(&[
        "--mode",
        "naive",
        "--rate",
        "2e7",
        "--duration",
        "2s",
        "--capacity",
        "30000",
        "--memory-cap",
        "128MiB",
    ]);
    let mode = &report["modes"][0];
    assert_eq!(mode["oom"], true, "{mode}");
    assert!(
        mode["peak_rss_bytes"].as_u64().unwrap() > 128 << 20,
        "{mode}"
    );
    assert_every_job_accounted(mode);
}

/// Issue 18, defect 15: `simulate ... | head -1` panicked on the closed pipe and wrote no
/// `--json`; the run succeeded, so it exits 0 with its file written.
#[test]
fn a_closed_stdout_costs_simulate_neither_its_file_nor_its_exit_status() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args([
            "simulate",
            "--mode",
            "semaphore",
            "--rate",
            "100",
            "--duration",
            "500ms",
            "--capacity",
            "5000",
            "--json",
            json.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        std::fs::read_to_string(&json)
            .unwrap()
            .contains("semaphore")
    );
}

/// Issue 18, defect 15 (load): a closed stdout costs neither the `--json` file nor the exit
/// status.
#[test]
fn a_closed_stdout_costs_load_neither_its_file_nor_its_exit_status() {
    use std::process::Stdio;
    let (server, url) = naive_server();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args([
            "load",
            &url,
            "--rate",
            "50",
            "--duration",
            "500ms",
            "--quiet",
        ])
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    drop(server);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["scheduled"], 25);
}

/// Issue 18, defect 24: with a low open-files limit, `load` said "30000 connections (30000
/// concurrent)" with far fewer open; it warns and reports what it opened.
#[test]
fn load_warns_when_fewer_connections_open_than_asked() {
    let (server, url) = naive_server();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let script = format!(
        "ulimit -n 48 && exec '{}' load '{url}' --rate 50 --duration 500ms --connections 200 \
         --timeout 2s --quiet --json '{}'",
        env!("CARGO_BIN_EXE_spillway"),
        json.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    drop(server);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stderr.contains("warning: only "), "{stderr}");
    assert!(
        stderr.contains("of 200 connections opened; open-files limit 48"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let opened = report["connections_opened"].as_u64().unwrap();
    assert!(opened > 0 && opened < 200, "{report}");
    assert_eq!(report["concurrency"].as_u64(), Some(opened));
}

/// Issue 18, defect 20: `load` buffered whole bodies (2 GB of RSS for a 1 GB body); it reads
/// and discards them as they arrive, and counts their bytes.
#[test]
fn load_does_not_hold_a_huge_body_in_memory() {
    use std::io::{BufRead, BufReader, Write};
    const BODY: u64 = 512 << 20;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                // The request head; the probe connection sends none.
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut out = &stream;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n");
                let chunk = vec![0u8; 1 << 20];
                let _ = out.write_all(head.as_bytes());
                for _ in 0..(BODY >> 20) {
                    if out.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let url = format!("http://{addr}/big");
    let mut child = Reaper(
        Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["load", &url, "--rate", "1", "--duration", "1s", "--quiet"])
            .args(["--connections", "1", "--timeout", "60s"])
            .args(["--json", json.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status_file = format!("/proc/{}/status", child.0.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        let rss_kib = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        peak_kib = peak_kib.max(rss_kib);
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    assert!(
        peak_kib < 128 << 10,
        "peak RSS {peak_kib} KiB for a 512 MiB body"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["body_bytes"].as_u64(), Some(BODY));
    assert_eq!(report["statuses"]["200"], 1);
}
