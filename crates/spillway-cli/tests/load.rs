//! `spillway load` driven in-process against small test servers on loopback ports. Rates and
//! request counts are small; every run is bounded in time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use spillway_cli::load::{self, LoadArgs, LoadReport};
use spillway_cli::{Cli, Command};
use tokio::net::TcpListener;
use tokio::time::Instant;

fn args(url: &str, extra: &[&str]) -> LoadArgs {
    let mut argv = vec!["spillway", "load", url, "--quiet"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Load(args) => args,
        other => panic!("parsed as another command: {other:?}"),
    }
}

async fn run(url: &str, extra: &[&str]) -> LoadReport {
    tokio::time::timeout(Duration::from_secs(60), load::load(&args(url, extra)))
        .await
        .expect("the run ends")
        .expect("the run succeeds")
}

type Peers = Arc<std::sync::Mutex<std::collections::BTreeSet<std::net::IpAddr>>>;
type Arrivals = Arc<std::sync::Mutex<Vec<Instant>>>;

/// A test server on a loopback port: `/ok` answers 200; `/ok/paced` too, and notes when each
/// request arrived; `/hang` never answers; `/slow` answers 200 after 200 ms; `/mixed` answers request n (in arrival order) with
/// 503 when n % 4 == 0, 404 when n % 4 == 1, else 200; `/stall` holds every answer due between
/// 1 s and 2 s after its first request until 2 s; `/by-priority` answers `x-priority: critical`
/// with 200, `low` with 503, another value with 400 and none with 404.
struct TestServer {
    addr: SocketAddr,
    /// The source addresses its connections came from.
    peers: Peers,
    /// When each `/ok/paced` request arrived.
    arrivals: Arrivals,
}

async fn test_server() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers: Peers = Arc::default();
    let arrivals: Arrivals = Arc::default();
    let (seen, arrived) = (Arc::clone(&peers), Arc::clone(&arrivals));
    let counter = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::OnceLock::<Instant>::new());
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            seen.lock().unwrap().insert(peer.ip());
            let counter = Arc::clone(&counter);
            let first = Arc::clone(&first);
            let arrived = Arc::clone(&arrived);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let counter = Arc::clone(&counter);
                    let first = Arc::clone(&first);
                    let arrived = Arc::clone(&arrived);
                    async move {
                        let status = match req.uri().path() {
                            "/ok" => StatusCode::OK,
                            "/ok/paced" => {
                                arrived.lock().unwrap().push(Instant::now());
                                StatusCode::OK
                            }
                            "/hang" => std::future::pending().await,
                            "/slow" => {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                StatusCode::OK
                            }
                            "/mixed" => match counter.fetch_add(1, Ordering::SeqCst) % 4 {
                                0 => StatusCode::SERVICE_UNAVAILABLE,
                                1 => StatusCode::NOT_FOUND,
                                _ => StatusCode::OK,
                            },
                            "/by-priority" => match req.headers().get("x-priority") {
                                Some(v) if v == "critical" => StatusCode::OK,
                                Some(v) if v == "low" => StatusCode::SERVICE_UNAVAILABLE,
                                Some(_) => StatusCode::BAD_REQUEST,
                                None => StatusCode::NOT_FOUND,
                            },
                            "/stall" => {
                                let t0 = *first.get_or_init(Instant::now);
                                let now = Instant::now();
                                let (from, to) =
                                    (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
                                if now >= from && now < to {
                                    tokio::time::sleep_until(to).await;
                                }
                                StatusCode::OK
                            }
                            _ => StatusCode::IM_A_TEAPOT,
                        };
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"x")));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestServer {
        addr,
        peers,
        arrivals,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_achieved_rate_is_the_offered_rate() {
    let server = test_server().await;
    let r = run(
        &format!("http://{}/ok/paced", server.addr),
        &["--rate", "400", "--duration", "2s", "--connections", "8"],
    )
    .await;
    assert_eq!(r.scheduled, 800, "400/s for 2 s, exactly");
    assert_eq!(r.offered_rate, 400.0);
    assert_eq!(r.statuses.get(&200), Some(&800));
    // Answers that a busy machine delays past the end of the window are not counted in the
    // rate: a wide bound, which a generator that sent a fraction of the schedule still fails.
    assert!(
        (r.achieved_rate - 400.0).abs() / 400.0 < 0.2,
        "achieved {}",
        r.achieved_rate
    );
    // Paced, not bursted: the server saw about a quarter of the requests in each half second
    // (a burst would put them all in the first; a busy machine shifts a few between bins).
    let mut times = server.arrivals.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 800);
    let t0 = times[0];
    for quarter in 0..4u32 {
        let (from, to) = (
            t0 + Duration::from_millis(500) * quarter,
            t0 + Duration::from_millis(500) * (quarter + 1),
        );
        let n = times.iter().filter(|t| **t >= from && **t < to).count();
        assert!(
            (100..=300).contains(&n),
            "{n} arrivals in quarter {quarter}"
        );
    }
    assert_eq!(r.connections_established, 8);
    assert_eq!(r.connect_errors + r.timeouts + r.other_errors, 0);
    assert_eq!(r.series.len(), 2);
    assert_eq!(r.series.iter().map(|s| s.ok).sum::<u64>(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_classes_are_counted_apart_over_http1_and_http2() {
    for protocol in [
        &["--http1"][..],
        &["--http2", "--streams-per-connection", "4"][..],
    ] {
        let addr = test_server().await.addr;
        let mut extra = vec!["--rate", "400", "--duration", "1s", "--connections", "4"];
        extra.extend_from_slice(protocol);
        let r = run(&format!("http://{addr}/mixed"), &extra).await;
        assert_eq!(r.scheduled, 400);
        assert_eq!(
            r.statuses.get(&503),
            Some(&100),
            "{protocol:?}: {:?}",
            r.statuses
        );
        assert_eq!(r.statuses.get(&404), Some(&100));
        assert_eq!(r.statuses.get(&200), Some(&200));
        assert_eq!(r.class("2xx").count, 200);
        assert_eq!(r.class("503").count, 100);
        assert_eq!(r.class("other").count, 100);
        assert_eq!(
            r.protocol,
            if protocol[0] == "--http2" {
                "http2"
            } else {
                "http1"
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_the_latency_of_every_request_scheduled_during_it() {
    let addr = test_server().await.addr;
    // 3 s at 200/s over 4 connections; the server holds its answers for the second second.
    let r = run(
        &format!("http://{addr}/stall"),
        &["--rate", "200", "--duration", "3s", "--connections", "4"],
    )
    .await;
    let ok = r.class("2xx");
    assert_eq!(ok.count, 600);
    // About a third of the requests were due during the stall; they waited up to a second.
    // A closed-loop tool would charge the stall to only the 4 requests in flight, leaving
    // p90 near zero.
    assert!(
        ok.p90_ms > 300.0,
        "p90 {} ms: the stall is hidden",
        ok.p90_ms
    );
    assert!(ok.max_ms > 800.0, "max {} ms", ok.max_ms);
    // The two thirds due outside the stall keep the median well below it.
    assert!(ok.p50_ms < 500.0, "p50 {} ms", ok.p50_ms);
    // The per-second series puts the stall in second 1.
    assert!(r.series[1].p99_ok_ms > 800.0, "{:?}", r.series);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_costs_timeouts_not_an_endless_run() {
    let addr = test_server().await.addr;
    let started = Instant::now();
    // One connection, 50 requests due within a second, each given up 2 s after its due time:
    // the run ends about 3 s in. Without a budget from the due time, the requests would queue
    // behind each other's timeouts and take 50 x 2 s; the bound sits far from both.
    let r = run(
        &format!("http://{addr}/hang"),
        &[
            "--rate",
            "50",
            "--duration",
            "1s",
            "--connections",
            "1",
            "--timeout",
            "2s",
        ],
    )
    .await;
    assert_eq!(r.timeouts, 50);
    assert_eq!(r.achieved_rate, 0.0);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_error() {
    let parse = |extra: &[&str]| {
        let mut argv = vec!["spillway", "load"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap_err().to_string()
    };
    let e = parse(&["http://127.0.0.1:1/", "--rate", "0"]);
    assert!(
        e.contains("--rate") && e.contains("from 0.001 to 1e9"),
        "{e}"
    );
    let e = parse(&["http://127.0.0.1:1/", "--rate", "10", "--connections", "0"]);
    assert!(e.contains("--connections"), "{e}");
    let e = parse(&["http://127.0.0.1:1/", "--rate", "10", "--http1", "--http2"]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = parse(&[
        "http://127.0.0.1:1/",
        "--rate",
        "10",
        "--source-addrs",
        "1.2.3",
    ]);
    assert!(e.contains("--source-addrs"), "{e}");

    let mix = |mix: &str| parse(&["http://127.0.0.1:1/", "--rate", "10", "--priority-mix", mix]);
    let e = mix("critical=0.1,low=0.8");
    assert!(
        e.contains("--priority-mix") && e.contains("the shares sum to 0.9"),
        "{e}"
    );
    let e = mix("urgent=1");
    assert!(
        e.contains("--priority-mix")
            && e.contains(
                "unknown priority \"urgent\": must be one of critical, high, normal, low"
            ),
        "{e}"
    );
    let e = mix("low=0.5,low=0.5");
    assert!(e.contains("low is given twice"), "{e}");
    let e = mix("low");
    assert!(e.contains("is not NAME=SHARE"), "{e}");

    let e = parse(&["ftp://127.0.0.1/", "--rate", "10"]);
    assert!(e.contains("invalid URL") && e.contains("ftp"), "{e}");
    let e = parse(&["127.0.0.1:8080", "--rate", "10"]);
    assert!(e.contains("invalid URL"), "{e}");

    let err = load::load(&args(
        "http://127.0.0.1:1/",
        &["--rate", "10", "--source-addrs", "::1"],
    ))
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "invalid --source-addrs: ::1 is IPv6 but the target 127.0.0.1:1 is IPv4"
    );

    // Port 1 on loopback: nothing listens there.
    let err = load::load(&args(
        "http://127.0.0.1:1/",
        &["--rate", "10", "--duration", "1s"],
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("cannot connect to 127.0.0.1:1"), "{err}");
    let err = load::load(&args(
        "http://127.0.0.1:1/",
        &["--rate", "10", "--connections", "2", "--processes", "3"],
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("--processes = 3"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_source_addresses() {
    let server = test_server().await;
    let r = run(
        &format!("http://{}/ok", server.addr),
        &[
            "--rate",
            "200",
            "--duration",
            "1s",
            "--connections",
            "4",
            "--source-addrs",
            "127.0.0.2-127.0.0.3",
        ],
    )
    .await;
    assert_eq!(r.statuses.get(&200), Some(&200));
    assert_eq!(r.connections_established, 4);
    let seen: Vec<String> = server
        .peers
        .lock()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    // The probe connection comes from the default address; the four from the two given.
    assert!(seen.contains(&"127.0.0.2".to_string()), "{seen:?}");
    assert!(seen.contains(&"127.0.0.3".to_string()), "{seen:?}");
}

/// Issue 18, defect 24: with every lane busy, the report gave the offered rate as if it had
/// been sent; it gives the rate really sent, and the concurrency really open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_lane_is_busy_the_report_gives_the_rate_sent() {
    let server = test_server().await;
    let r = run(
        &format!("http://{}/slow", server.addr),
        &[
            "--rate",
            "100",
            "--duration",
            "1s",
            "--connections",
            "2",
            "--timeout",
            "1s",
        ],
    )
    .await;
    assert_eq!(r.offered_rate, 100.0);
    // Two lanes, 200 ms an answer: about 10 requests go out in the second, not 100.
    assert!(r.sent_rate > 0.0 && r.sent_rate <= 20.0, "{r:?}");
    assert_eq!((r.connections_opened, r.concurrency), (2, 2));
    // Each 200 carries a one-byte body, read and counted.
    assert_eq!(r.body_bytes, r.statuses[&200]);
    let text = load::render(&r);
    assert!(
        text.contains("2 connections open of 2 asked (2 concurrent)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("sent {:.1}/s", r.sent_rate)),
        "{text}"
    );
}

/// Issue 18, defect 23: an output path that cannot be written is found before anything is
/// sent, not after the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_json_path_fails_before_sending_anything() {
    let server = test_server().await;
    let cli = Cli::try_parse_from([
        "spillway",
        "load",
        &format!("http://{}/ok/paced", server.addr),
        "--quiet",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--json",
        "/nonexistent/x.json",
    ])
    .unwrap();
    let err = spillway_cli::run(cli).await.unwrap_err();
    assert!(err.is::<spillway_cli::UsageError>(), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot write --json /nonexistent/x.json"),
        "{err}"
    );
    assert!(
        server.arrivals.lock().unwrap().is_empty(),
        "requests were sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_mix_sends_the_header_and_reports_each_priority() {
    for protocol in [
        &["--http1"][..],
        &["--http2", "--streams-per-connection", "4"][..],
    ] {
        let addr = test_server().await.addr;
        let mut extra = vec![
            "--rate",
            "400",
            "--duration",
            "1s",
            "--connections",
            "4",
            "--priority-mix",
            "low=0.75,critical=0.25",
        ];
        extra.extend_from_slice(protocol);
        let r = run(&format!("http://{addr}/by-priority"), &extra).await;
        assert_eq!(r.scheduled, 400);
        let keys: Vec<&str> = r.by_priority.keys().map(String::as_str).collect();
        assert_eq!(keys, ["critical", "low"], "{protocol:?}");
        let (critical, low) = (&r.by_priority["critical"], &r.by_priority["low"]);
        // Every request carried a priority the server knew, and only those two.
        assert_eq!(critical.statuses.keys().collect::<Vec<_>>(), [&200]);
        assert_eq!(low.statuses.keys().collect::<Vec<_>>(), [&503]);
        assert_eq!(critical.requests + low.requests, 400);
        assert!(
            (70..=130).contains(&critical.requests),
            "a quarter of 400: {}",
            critical.requests
        );
        assert_eq!((critical.share, low.share), (0.25, 0.75));
        assert_eq!(critical.latency["2xx"].count, critical.requests);
        assert_eq!(low.latency["503"].count, low.requests);
        assert!(critical.goodput_per_s > 0.0 && low.goodput_per_s == 0.0);
        assert_eq!(critical.offered_rate, critical.requests as f64);
        // The JSON keys the priorities by their lowercase names.
        let json = serde_json::to_value(&r).unwrap();
        for field in [
            "share",
            "requests",
            "offered_rate",
            "goodput_per_s",
            "statuses",
            "latency",
        ] {
            assert!(
                !json["by_priority"]["critical"][field].is_null(),
                "{field} missing in {}",
                json["by_priority"]
            );
        }
        assert!(json["by_priority"]["low"]["latency"]["503"]["p99_ms"].is_number());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_mix_no_priority_is_sent_or_reported() {
    let addr = test_server().await.addr;
    let r = run(
        &format!("http://{addr}/by-priority"),
        &["--rate", "100", "--duration", "1s", "--connections", "2"],
    )
    .await;
    assert_eq!(r.statuses.get(&404), Some(&100), "{:?}", r.statuses);
    assert!(r.by_priority.is_empty());
}
