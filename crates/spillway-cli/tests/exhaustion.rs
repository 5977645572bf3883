//! Resource exhaustion, on the built binary in a child process with its own limits: at its
//! open-files limit `serve` keeps serving the connections it has and recovers when descriptors
//! free up.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Announced, Reaper, serve_on_a_free_port};

const PATIENCE: Duration = Duration::from_secs(10);

/// The child's open-files limit, soft and hard (serve raises its soft limit to the hard one).
const OPEN_FILES: u32 = 128;

/// Starts `spillway serve` under a hard open-files limit of [`OPEN_FILES`].
fn serve_with_few_descriptors() -> (Reaper, String) {
    let mut command = Command::new("bash");
    command.args([
        "-c",
        &format!("ulimit -n {OPEN_FILES} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_spillway"),
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--wait-ms",
        "0",
        "--header-timeout",
        "60s",
    ]);
    serve_on_a_free_port(command, Announced::OnStdout)
}

/// Sends a keep-alive `GET path` on `stream` and reads one whole response: (status, body).
fn keep_alive_get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = stream.read(&mut buf).expect("answered in time");
        assert!(n > 0, "closed before answering {path}");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .expect("a content length");
            if body.len() >= length {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, body.to_string());
            }
        }
    }
}

#[test]
fn at_its_open_files_limit_serve_keeps_its_connections_and_recovers() {
    let (mut child, addr) = serve_with_few_descriptors();
    let mut kept: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    for stream in &mut kept {
        assert_eq!(keep_alive_get(stream, "/healthz").0, 200);
    }
    // Idle connections past the limit: the server accepts until it is out of descriptors; the
    // rest wait in the listen backlog (or, once the backlog is full, may be reset: the kernel's
    // answer, not the server's, so only enough of them to run it out of descriptors must open).
    let idle: Vec<TcpStream> = (0..2 * OPEN_FILES)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(
        idle.len() > OPEN_FILES as usize,
        "only {} idle connections opened",
        idle.len()
    );
    let mut refused = 0.0;
    let deadline = Instant::now() + PATIENCE;
    while refused == 0.0 {
        assert!(Instant::now() < deadline, "accept never failed");
        std::thread::sleep(Duration::from_millis(50));
        let (_, metrics) = keep_alive_get(&mut kept[0], "/metrics");
        refused = metric(&metrics, "spillway_http_accept_errors_total");
    }
    // The connections it has are still served, jobs included.
    for stream in &mut kept {
        assert_eq!(keep_alive_get(stream, "/work").0, 200);
    }
    // A newcomer waits in the backlog while the descriptors are taken...
    let mut newcomer = TcpStream::connect(&addr).unwrap();
    write!(newcomer, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    newcomer
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        newcomer.read(&mut buf).is_err(),
        "answered while out of descriptors"
    );
    // ...and is served once they are given back.
    drop(idle);
    assert_eq!(keep_alive_get(&mut newcomer, "/healthz").0, 200);
    assert_eq!(keep_alive_get(&mut kept[0], "/healthz").0, 200);
    child.signal("TERM");
    assert_eq!(child.wait_at_most(PATIENCE * 2).code(), Some(0));
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// Runs `spillway simulate` (the pool mode, in a child process of its own, jobs of 50 MB held
/// for a second) under an address-space limit of `kib`; returns its exit code, stdout, stderr.
fn simulate_under_memory_limit(kib: u64, memory_cap: &str) -> (Option<i32>, String, String) {
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("ulimit -v {kib} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_spillway"),
            "simulate",
            "--mode",
            "pool",
            "--duration",
            "3s",
            "--rate",
            "100",
            "--wait-ms",
            "1000",
            "--alloc-kib",
            "50000",
            "--capacity",
            "1000",
            "--memory-cap",
            memory_cap,
        ])
        .output()
        .expect("bash starts");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn under_a_memory_limit_simulate_stops_a_mode_at_its_cap_or_reports_its_abort() {
    // The cap below the limit: the mode is stopped at the cap and reported as OOM.
    let (code, stdout, stderr) = simulate_under_memory_limit(2_000_000, "256MiB");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("OOM at"), "{stdout}");
    // The limit below the cap: the mode's process aborts at its first allocation past the
    // limit, and simulate says which mode and why, and fails.
    let (code, stdout, stderr) = simulate_under_memory_limit(1_000_000, "4GiB");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("mode pool failed")
            && stderr.contains("memory allocation of 51200000 bytes failed"),
        "{stderr}"
    );
}
