//! The live view's data, as other tools read it: `/snapshot` (one JSON frame) and `/events`
//! (Server-Sent Events of them) from `serve`, and from `simulate --live`.

mod support;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ONE_SLOT_POOL, Running, open_get};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(30);

/// The server's latest frame, once the first tick has made one.
async fn snapshot(server: &Running) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = server.get("/snapshot").await;
        if reply.status == 200 {
            assert_eq!(reply.header("content-type"), Some("application/json"));
            return serde_json::from_str(&reply.body).expect("a JSON snapshot");
        }
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(Instant::now() < deadline, "no snapshot in {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An open `/events` stream, read one frame at a time.
struct Events {
    lines: tokio::io::Lines<tokio::io::BufReader<TcpStream>>,
}

impl Events {
    async fn open(addr: SocketAddr) -> Events {
        let stream = open_get(addr, "/events").await;
        let mut lines = tokio::io::BufReader::new(stream).lines();
        let status = lines.next_line().await.unwrap().expect("a status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut head = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.is_empty() {
                break;
            }
            head.push(line.to_ascii_lowercase());
        }
        assert!(
            head.iter().any(|h| h == "content-type: text/event-stream"),
            "{head:?}"
        );
        Events { lines }
    }

    /// The next frame; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
                .await
                .expect("a frame in time")
                .ok()??;
            // Chunked encoding: the frames' lines sit between chunk-size lines.
            if let Some(json) = line.strip_prefix("data: ") {
                return Some(serde_json::from_str(json).expect("a JSON frame"));
            }
            if line == "0" {
                return None;
            }
        }
    }
}

#[tokio::test]
async fn the_snapshot_holds_the_pool_the_http_counters_and_the_tick_s_rates() {
    let server = Running::start(&["--mode", "pool", "--wait-ms", "1", "--limit", "fixed"]).await;
    let first = snapshot(&server).await;
    assert_eq!(first["state"], "serving");
    assert_eq!(first["mode"], "pool");
    assert!(
        first["summary"].as_str().unwrap().contains("fixed limit"),
        "{first}"
    );
    assert_eq!(first["pool"]["limit"], 1000);
    assert_eq!(first["limit"], 1000);
    assert_eq!(first["queued"], 0);
    for _ in 0..5 {
        assert_eq!(server.get("/work").await.status, 200);
    }
    let deadline = Instant::now() + PATIENCE;
    let later = loop {
        let now = snapshot(&server).await;
        if now["http"]["work_requests"] == 5 && now["pool"]["completed"] == 5 {
            break now;
        }
        assert!(Instant::now() < deadline, "the counts never arrived: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(later["t_s"].as_f64() > first["t_s"].as_f64());
    assert!(later["rss_bytes"].as_u64() > Some(0), "{later}");
    assert_eq!(later["pool"]["shed_full"], 0);
    assert_eq!(later["pool"]["total"]["count"], 5);
    let report = server.drain().await;
    assert_eq!(report.abandoned, 0);
}

#[tokio::test]
async fn events_stream_the_load_then_the_drain_and_end_so_the_drain_is_quick() {
    // One worker, no queue: of a burst of requests some are shed.
    let server = Running::start(&[&ONE_SLOT_POOL[..], &["--wait-ms", "50"]].concat()).await;
    let mut events = Events::open(server.addr).await;
    let first = events.next().await.expect("a first frame");
    assert_eq!(first["state"], "serving");
    let burst: Vec<_> = (0..8).map(|_| server.spawn_get("/work")).collect();
    let mut statuses = Vec::new();
    for request in burst {
        statuses.push(request.await.unwrap().status);
    }
    let shed = statuses.iter().filter(|s| **s == 503).count() as f64;
    assert!(shed > 0.0, "{statuses:?}");
    // The frames' counts, rebuilt from rate x span (within rounding), up to the burst's.
    let (mut shed_seen, mut completed_seen) = (0.0, 0.0);
    let deadline = Instant::now() + PATIENCE;
    while shed_seen < shed - 0.5 || completed_seen < 0.5 {
        assert!(
            Instant::now() < deadline,
            "frames counted {shed_seen} shed and {completed_seen} completed of {statuses:?}"
        );
        let frame = events.next().await.expect("frames while serving");
        let span = frame["rates"]["span_s"].as_f64().unwrap();
        shed_seen += frame["rates"]["shed_per_s"].as_f64().unwrap() * span;
        completed_seen += frame["rates"]["completed_per_s"].as_f64().unwrap() * span;
        if frame["latency_ms"]["shed"]["count"].as_u64() > Some(0) {
            let p99 = frame["latency_ms"]["shed"]["p99"].as_f64().unwrap();
            assert!(p99 < 50.0, "a shed answer does not wait for the job: {p99}");
        }
    }
    assert!((shed_seen - shed).abs() < 0.5, "{shed_seen} vs {shed}");

    let started = Instant::now();
    let stop = tokio::spawn(server.drain());
    let mut last = None;
    while let Some(frame) = events.next().await {
        last = Some(frame);
    }
    let last = last.expect("frames after the signal");
    assert_eq!(last["state"], "draining");
    assert_eq!(last["in_flight"], 0);
    let report = stop.await.unwrap();
    assert_eq!(report.abandoned, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the open stream did not hold up the drain: {:?}",
        started.elapsed()
    );
}

#[test]
fn simulate_live_serves_the_running_mode_s_series() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["simulate", "--live", "127.0.0.1:0", "--mode", "pool"])
        .args(["--rate", "300", "--duration", "3s", "--capacity", "5000"])
        .args(["--alloc-kib", "16", "--isolation", "inline"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the spillway binary starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("live view: http://") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no live address");
    }
    let addr: SocketAddr = line
        .trim()
        .trim_start_matches("live view: http://")
        .trim_end_matches('/')
        .parse()
        .expect("an address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let frames = runtime.block_on(async move {
        let mut events = Events::open(addr).await;
        let mut frames = Vec::new();
        while let Some(frame) = events.next().await {
            frames.push(frame);
        }
        frames
    });
    let status = child.wait().unwrap();
    assert!(status.success());
    let running: Vec<_> = frames.iter().filter(|f| f["state"] == "running").collect();
    assert!(running.len() >= 10, "{} frames of 100 ms", running.len());
    assert!(running.iter().all(|f| f["mode"] == "pool"));
    let offered: f64 = running
        .iter()
        .map(|f| {
            f["rates"]["offered_per_s"].as_f64().unwrap() * f["rates"]["span_s"].as_f64().unwrap()
        })
        .sum();
    assert!(
        offered > 300.0,
        "about 900 jobs offered over 3 s: {offered}"
    );
    assert!(running.iter().any(|f| f["limit"].as_u64() > Some(0)));
    assert_eq!(frames.last().unwrap()["state"], "finished");
}
