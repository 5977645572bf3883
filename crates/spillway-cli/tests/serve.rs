//! `spillway serve` driven in-process on ephemeral loopback ports. Every wait is bounded, and
//! no assertion depends on how fast the machine is.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use spillway_cli::Cli;
use spillway_cli::serve::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use support::{
    ONE_SLOT_POOL, PATIENCE, Reply, Running, get_raw, get_request, get_with, open_get, read_reply,
    serve_args, spawn_send,
};

#[tokio::test]
async fn each_mode_answers_every_route() {
    for mode in ["naive", "semaphore", "pool"] {
        let server = Running::start(&["--mode", mode, "--wait-ms", "1"]).await;
        let work = server.get("/work").await;
        assert_eq!(work.status, 200, "{mode}: {work:?}");
        assert_eq!(work.body, "ok\n");
        let work = server.get("/work?wait_ms=0&alloc_kib=64&cpu_ms=0.1").await;
        assert_eq!(work.status, 200, "{mode}: {work:?}");
        assert_eq!(server.get("/healthz").await.status, 200);
        let index = server.get("/").await;
        assert_eq!(index.status, 200);
        assert!(
            index.body.contains(&format!("mode <b>{mode}</b>")),
            "{index:?}"
        );
        assert_eq!(server.get("/nowhere").await.status, 404);
        assert_eq!(
            server
                .metric(r#"spillway_http_responses_total{status="200"}"#)
                .await,
            4.0,
            "{mode}"
        );
        let report = server.drain().await;
        assert_eq!(report.abandoned, 0);
        assert_eq!(report.pool.is_some(), mode == "pool");
    }
}

/// A server in pool mode with one worker and one queue slot, its jobs waiting `wait_ms`, and the
/// two requests that fill it: the first runs, the second waits in the queue.
async fn filled_one_slot_pool(
    wait_ms: &str,
    extra: &[&str],
) -> (Running, JoinHandle<Reply>, JoinHandle<Reply>) {
    let mut argv = ONE_SLOT_POOL.to_vec();
    argv.extend_from_slice(&["--wait-ms", wait_ms]);
    argv.extend_from_slice(extra);
    let server = Running::start(&argv).await;
    let first = server.spawn_get("/work");
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve"}"#, 1.0)
        .await;
    let second = server.spawn_get("/work");
    server
        .wait_metric(r#"spillway_queue_depth{pool="serve"}"#, 1.0)
        .await;
    (server, first, second)
}

#[tokio::test]
async fn a_saturated_pool_sheds_with_503_and_retry_after_while_admitted_requests_succeed() {
    let (server, first, second) = filled_one_slot_pool("4000", &["--retry-after", "3"]).await;
    // Everything else is shed at once, without touching the queue.
    for _ in 0..5 {
        let shed = server.get("/work").await;
        assert_eq!(shed.status, 503, "{shed:?}");
        assert_eq!(shed.header("retry-after"), Some("3"));
        assert_eq!(shed.body, "overloaded: queue full; retry later\n");
    }
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!(server.metric("spillway_http_shed_total").await, 5.0);
    assert_eq!(
        server
            .metric(r#"spillway_jobs_shed_total{pool="serve",reason="full"}"#)
            .await,
        5.0
    );
    assert_eq!(
        server
            .metric(r#"spillway_jobs_ended_total{pool="serve",outcome="completed"}"#)
            .await,
        2.0
    );
    server.drain().await;
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_its_running_and_its_queued_job() {
    let server = Running::start(&[
        "--mode",
        "pool",
        "--min-workers",
        "1",
        "--max-workers",
        "1",
        "--queue",
        "4",
        "--wait-ms",
        "60000",
    ])
    .await;
    let running = open_get(server.addr, "/work").await;
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve"}"#, 1.0)
        .await;
    let queued = open_get(server.addr, "/work").await;
    server
        .wait_metric(r#"spillway_queue_depth{pool="serve"}"#, 1.0)
        .await;

    drop(queued);
    drop(running);
    server
        .wait_metric(
            r#"spillway_jobs_ended_total{pool="serve",outcome="cancelled"}"#,
            2.0,
        )
        .await;
    server
        .wait_metric("spillway_http_cancelled_total", 2.0)
        .await;
    assert_eq!(
        server
            .metric(r#"spillway_workers_busy{pool="serve"}"#)
            .await,
        0.0
    );
    assert_eq!(
        server.metric(r#"spillway_queue_depth{pool="serve"}"#).await,
        0.0
    );
    // The pool is free again at once: a 60 s job did not hold it.
    assert_eq!(server.get("/work?wait_ms=0").await.status, 200);
    let report = server.drain().await;
    assert_eq!(report.abandoned, 0);
}

#[tokio::test]
async fn a_client_that_disconnects_in_naive_mode_is_counted_too() {
    let server = Running::start(&["--mode", "naive", "--wait-ms", "60000"]).await;
    let stream = open_get(server.addr, "/work").await;
    server
        .wait_metric("spillway_http_requests_in_flight", 2.0)
        .await; // it and the scrape
    drop(stream);
    server
        .wait_metric("spillway_http_cancelled_total", 1.0)
        .await;
    server.drain().await;
}

#[tokio::test]
async fn a_slow_client_that_never_finishes_its_headers_is_dropped() {
    let server = Running::start(&["--header-timeout", "300ms"]).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /work HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection instead of waiting forever");
    // Closed (EOF, or a reset), and not before the timeout.
    assert!(
        read.is_err() || buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
        "{buf:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    server
        .wait_metric("spillway_http_connections_open", 1.0)
        .await; // the scrape's own
    server.drain().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413_whether_declared_or_streamed() {
    let server = Running::start(&["--body-limit", "1KiB", "--wait-ms", "0"]).await;
    let declared = server
        .send("POST /work HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5000\r\n\r\n")
        .await;
    assert_eq!(declared.status, 413, "{declared:?}");
    assert_eq!(
        declared.body,
        "request body larger than the limit of 1024 bytes\n"
    );
    let chunk = "x".repeat(3000);
    let streamed = server
        .send(&format!(
            "POST /work HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        ))
        .await;
    assert_eq!(streamed.status, 413, "{streamed:?}");
    let small = server
        .send(
            "POST /work HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
    assert_eq!(small.status, 200, "{small:?}");
    server.drain().await;
}

#[tokio::test]
async fn bad_query_values_get_400_naming_the_parameter_without_using_the_pool() {
    let server = Running::start(&["--mode", "pool"]).await;
    let bad = server.get("/work?wait_ms=soon").await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body,
        "invalid wait_ms = \"soon\": must be a number of milliseconds from 0 to 60000\n"
    );
    let bad = server.get("/work?alloc_kib=-3").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.starts_with("invalid alloc_kib"), "{bad:?}");
    let bad = server.get("/work?sleep=1").await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("unknown query parameter \"sleep\""),
        "{bad:?}"
    );
    server.assert_no_job_submitted().await;
    server.drain().await;
}

#[tokio::test]
async fn metrics_export_the_pool_and_the_server_series() {
    let server = Running::start(&["--mode", "pool", "--wait-ms", "0"]).await;
    assert_eq!(server.get("/work").await.status, 200);
    let metrics = server.get("/metrics").await;
    assert_eq!(
        metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    for series in [
        r#"spillway_workers_max{pool="serve"} 1000"#,
        r#"spillway_queue_capacity{pool="serve"} 1000"#,
        r#"spillway_limit{pool="serve"} "#,
        r#"spillway_jobs_submitted_total{pool="serve"} 1"#,
        r#"spillway_jobs_ended_total{pool="serve",outcome="completed"} 1"#,
        r#"spillway_job_total_seconds_count{pool="serve"} 1"#,
        "spillway_http_connections_open ",
        "spillway_http_shed_total 0",
        "spillway_http_cancelled_total 0",
        r#"spillway_http_responses_total{status="200"} 1"#,
        r#"spillway_http_request_duration_seconds_count{class="2xx"} 1"#,
    ] {
        assert!(
            metrics.body.contains(series),
            "{series} missing:\n{}",
            metrics.body
        );
    }
    server.drain().await;
}

#[tokio::test]
async fn one_http2_connection_carries_many_concurrent_requests() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let server = Running::start(&["--mode", "pool", "--wait-ms", "300"]).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c prior-knowledge handshake");
    tokio::spawn(conn);
    let requests = (0..50).map(|_| {
        let mut sender = sender.clone();
        let uri = format!("http://{}/work", server.addr);
        async move {
            let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
            let resp = sender.send_request(req).await.expect("a response");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    });
    let replies = tokio::time::timeout(PATIENCE, futures_join_all(requests))
        .await
        .expect("all 50 answered");
    assert!(
        replies.iter().all(|(s, b)| *s == 200 && b == "ok\n"),
        "{replies:?}"
    );
    assert_eq!(
        server
            .metric(r#"spillway_http_responses_total{status="200"}"#)
            .await,
        50.0
    );
    // The 50 came over one connection; the metrics scrape is the second.
    assert_eq!(server.metric("spillway_http_connections_total").await, 3.0);
    server.drain().await;
}

/// Runs futures concurrently, each in its own task, and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("the request task did not panic"));
    }
    out
}

/// A keep-alive connection that has had one `/healthz` answered `200`, now idle.
async fn keep_alive_healthz(addr: SocketAddr) -> TcpStream {
    let mut stream = open_get(addr, "/healthz").await;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    stream
}

#[tokio::test]
async fn max_connections_holds_further_connections_in_the_backlog() {
    let server = Running::start(&["--max-connections", "1", "--wait-ms", "0"]).await;
    // A keep-alive connection takes the only slot.
    let first = keep_alive_healthz(server.addr).await;
    let mut buf = [0u8; 256];
    // A second connection is accepted by the kernel but not served while the first is open.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    second
        .write_all(get_request("/healthz").as_bytes())
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "served while the limit was taken");
    drop(first);
    let reply = read_reply(&mut second).await;
    assert_eq!(reply.status, 200);
    server.drain().await;
}

#[tokio::test]
async fn draining_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let server = Running::start(&["--mode", "pool", "--wait-ms", "3000"]).await;
    let addr = server.addr;
    let in_flight = server.spawn_get("/work");
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve"}"#, 1.0)
        .await;
    let report = server.drain().await;
    assert_eq!(in_flight.await.unwrap().status, 200);
    assert_eq!(report.in_flight_at_signal, 1);
    assert_eq!(report.drained, 1);
    assert_eq!(report.abandoned, 0);
    assert!(!report.timed_out);
    assert_eq!(report.pool.unwrap().abandoned, 0);
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn the_drain_deadline_abandons_what_is_still_running() {
    let server = Running::start(&[
        "--mode",
        "pool",
        "--wait-ms",
        "60000",
        "--drain-timeout",
        "200ms",
    ])
    .await;
    let addr = server.addr;
    let in_flight = tokio::spawn(get_raw(addr, "/work"));
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve"}"#, 1.0)
        .await;
    let report = server.drain().await;
    assert!(report.timed_out);
    assert_eq!(report.in_flight_at_signal, 1);
    assert_eq!(report.abandoned, 1);
    assert_eq!(report.drained, 0);
    assert!(
        in_flight.await.unwrap().is_empty(),
        "the abandoned request's connection closes without an answer"
    );
    assert!(
        report
            .to_string()
            .contains("1 abandoned (drain timeout reached)"),
        "{report}"
    );
}

#[tokio::test]
async fn bad_settings_name_the_flag() {
    let err = Cli::try_parse_from(["spillway", "serve", "--max-workers", "0"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--max-workers"), "{err}");
    let err = Cli::try_parse_from(["spillway", "serve", "--mode", "threads"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("possible values: naive, semaphore, pool"),
        "{err}"
    );
    let err = Cli::try_parse_from(["spillway", "serve", "--header-timeout", "0s"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be longer than zero"), "{err}");
    let err = Cli::try_parse_from(["spillway", "serve", "--body-limit", "lots"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--body-limit"), "{err}");
    let err = Server::bind(&serve_args(&["--min-workers", "20", "--max-workers", "10"]))
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "invalid --min-workers = 20: must be at most --max-workers (10)"
    );
    // A semaphore has no minimum: the same flags are not checked against it.
    let semaphore = Running::start(&[
        "--mode",
        "semaphore",
        "--min-workers",
        "20",
        "--max-workers",
        "10",
    ])
    .await;
    semaphore.drain().await;
    let taken = Running::start(&[]).await;
    let addr = taken.addr.to_string();
    let err = Server::bind(&serve_args(&["--addr", &addr]))
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.starts_with(&format!("cannot listen on --addr {addr}: ")),
        "{message}"
    );
    taken.drain().await;
}

#[tokio::test]
async fn the_limit_flag_selects_the_pool_limit() {
    for (limit, extra) in [("fixed", None), ("vegas", None), ("adaptive", Some("2ms"))] {
        let mut flags = vec!["--mode", "pool", "--wait-ms", "1", "--limit", limit];
        if let Some(target) = extra {
            flags.extend(["--queue-target", target]);
        }
        let server = Running::start(&flags).await;
        for _ in 0..3 {
            assert_eq!(server.get("/work").await.status, 200, "{limit}");
        }
        let now = server.metric(r#"spillway_limit{pool="serve"}"#).await;
        match limit {
            "fixed" => assert_eq!(now, 1000.0, "fixed: the limit is --max-workers"),
            _ => assert!((1.0..=1000.0).contains(&now), "{limit}: limit {now}"),
        }
        let index = server.get("/").await;
        assert!(index.body.contains(&format!("{limit} limit")), "{index:?}");
        let report = server.drain().await;
        assert_eq!(report.abandoned, 0);
    }
}

#[tokio::test]
async fn bad_limit_settings_name_the_flag() {
    for (argv, flag, says) in [
        (
            ["--limit", "bogus"],
            "--limit",
            "must be one of adaptive, fixed, gradient2, vegas, aimd",
        ),
        (
            ["--queue-target", "0s"],
            "--queue-target",
            "longer than zero",
        ),
        (["--queue-target", "soon"], "--queue-target", "e.g. 10s"),
    ] {
        let err = Cli::try_parse_from(["spillway", "serve"].into_iter().chain(argv)).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        let err = err.to_string();
        assert!(err.contains(flag) && err.contains(says), "{err}");
    }
    // A queue target is the adaptive limit's: refused with another, naming the flag.
    let err = Server::bind(&serve_args(&["--limit", "fixed", "--queue-target", "2ms"]))
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("applies to the adaptive limit only")
            && message.contains("--queue-target"),
        "{message}"
    );
}

// Regression tests of issue 18's serve defects (numbered as in the issue).

/// Waits until `server` counts `open` connections (its scrape's own included).
async fn wait_open_connections(server: &Running, open: f64) {
    server
        .wait_metric("spillway_http_connections_open", open)
        .await;
}

/// Defect 12: a client that sends part of its first line and leaves is dropped at once, not
/// held (and polled) until the header timeout.
#[tokio::test]
async fn a_client_that_leaves_mid_first_line_is_dropped_at_once() {
    let server = Running::start(&["--header-timeout", "60s"]).await;
    let mut half_line = TcpStream::connect(server.addr).await.unwrap();
    half_line.write_all(b"GET /").await.unwrap();
    let silent = TcpStream::connect(server.addr).await.unwrap();
    wait_open_connections(&server, 3.0).await;
    drop(half_line);
    drop(silent);
    wait_open_connections(&server, 1.0).await;
    server.drain().await;
}

/// Defect 19: the first line and the headers share one `--header-timeout`: a client that
/// sends its first line late and then trickles headers is cut at the timeout, not twice it.
#[tokio::test]
async fn the_header_timeout_is_one_budget_for_the_whole_request_head() {
    let server = Running::start(&["--header-timeout", "2s"]).await;
    let started = tokio::time::Instant::now();
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1800)).await;
        if write.write_all(b"GET /work HTTP/1.1\r\n").await.is_err() {
            return;
        }
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let header = format!("X-Slow-{i}: 1\r\n");
            if write.write_all(header.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, read.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection instead of waiting forever");
    let cut_at = started.elapsed();
    trickle.abort();
    assert!(
        read.is_err() || buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
        "{buf:?}"
    );
    assert!(
        cut_at >= Duration::from_millis(1900),
        "cut early, at {cut_at:?}"
    );
    assert!(
        cut_at < Duration::from_millis(3300),
        "cut at {cut_at:?}: the headers got a second budget of 2 s"
    );
    server.drain().await;
}

/// Sends `GET path` and gives it `limit` to be answered.
async fn answered_within(server: &Running, path: &str, limit: Duration) -> Reply {
    tokio::time::timeout(limit, server.get(path))
        .await
        .unwrap_or_else(|_| panic!("{path} was not answered within {limit:?}"))
}

/// Defect 13: a long `cpu_ms` request runs apart from the threads that accept and answer the
/// others: `/healthz` and a short `/work` answer while it burns, in every mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_cpu_request_does_not_stall_the_others() {
    for mode in ["pool", "naive"] {
        let server = Running::start(&["--mode", mode, "--wait-ms", "0"]).await;
        let mut burning = Vec::new();
        for _ in 0..2 {
            burning.push(open_get(server.addr, "/work?cpu_ms=10000").await);
        }
        server
            .wait_metric("spillway_http_requests_in_flight", 3.0)
            .await; // the two and the scrape
        let limit = Duration::from_secs(4);
        assert_eq!(
            answered_within(&server, "/healthz", limit).await.status,
            200
        );
        let short = answered_within(&server, "/work?wait_ms=1", limit).await;
        assert_eq!(short.status, 200, "{mode}: {short:?}");
        drop(burning);
        server
            .wait_metric("spillway_http_cancelled_total", 2.0)
            .await;
        let report = server.drain().await;
        assert_eq!(report.abandoned, 0, "{mode}");
    }
}

/// Defect 14: an allocation the machine cannot hold never reaches a job: the flag is refused at
/// parse time naming its range (the runtime check behind it is unit-tested in `serve::job`), and
/// the largest the query allows is refused per request as a 400, not an abort.
#[tokio::test]
async fn an_allocation_that_cannot_be_held_is_an_error_not_an_abort() {
    for mode in ["naive", "pool"] {
        let argv = [
            "spillway",
            "serve",
            "--mode",
            mode,
            "--alloc-kib",
            "1073741824",
        ];
        let err = Cli::try_parse_from(argv).expect_err("1 TiB is past the flag's range");
        let text = err.to_string();
        assert!(
            text.contains("--alloc-kib") && text.contains("1048576"),
            "{text}"
        );

        let server = Running::start(&["--mode", mode]).await;
        let work = server.get("/work?wait_ms=0&alloc_kib=1073741824").await;
        assert_eq!(work.status, 400, "{mode}: {work:?}");
        assert!(work.body.contains("alloc_kib"), "{work:?}");
        assert_eq!(server.get("/healthz").await.status, 200);
        assert_eq!(
            server.get("/work?wait_ms=0&alloc_kib=4").await.status,
            200,
            "{mode}: a request that asks for less still runs"
        );
        server.drain().await;
    }
}

/// Defect 18: connections that never sent a byte, sit idle between keep-alive requests, or
/// have sent only part of their first request head, are closed at once on shutdown instead of
/// holding the drain.
#[tokio::test]
async fn shutdown_closes_idle_connections_at_once() {
    let server = Running::start(&["--header-timeout", "60s", "--drain-timeout", "60s"]).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut idle = keep_alive_healthz(server.addr).await;
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(b"GET /work HTTP/1.1\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    wait_open_connections(&server, 4.0).await;
    let report = server.drain().await;
    assert!(!report.timed_out, "{report}");
    assert_eq!(report.abandoned, 0);
    for stream in [&mut silent, &mut idle, &mut partial] {
        let closed = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "still open: {closed:?}"
        );
    }
}

/// Defect 18: a second signal ends the drain at once, abandoning what is in flight.
#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once() {
    let mut server = Running::start(&[
        "--mode",
        "pool",
        "--wait-ms",
        "60000",
        "--drain-timeout",
        "60s",
    ])
    .await;
    let addr = server.addr;
    let in_flight = tokio::spawn(get_raw(addr, "/work"));
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve"}"#, 1.0)
        .await;
    server.stop();
    // Draining: the listener is closed.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = server.force().await;
    assert!(report.forced, "{report}");
    assert_eq!(report.abandoned, 1);
    assert!(
        report.to_string().contains("forced by a second signal"),
        "{report}"
    );
    assert!(
        in_flight.await.unwrap().is_empty(),
        "answered though abandoned"
    );
}

/// Defect 18: `--help` says what a second signal does.
#[test]
fn help_says_a_second_signal_exits_at_once() {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    let serve = cli
        .find_subcommand_mut("serve")
        .expect("a serve subcommand");
    let help = serve.render_long_help().to_string();
    assert!(help.contains("A second signal"), "{help}");
}

/// Defect 25: `/work` query values are percent-decoded; a bad escape names the parameter.
#[tokio::test]
async fn query_values_are_percent_decoded() {
    let server = Running::start(&["--wait-ms", "0"]).await;
    assert_eq!(server.get("/work?wait_ms=1%30").await.status, 200);
    assert_eq!(server.get("/work?%77ait_ms=1").await.status, 200);
    let bad = server.get("/work?wait_ms=1%3").await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body.starts_with("invalid wait_ms"), "{bad:?}");
    let big = server.get("/work?wait_ms=6%30000%30").await;
    assert_eq!(big.status, 400, "decoded to 600000: {big:?}");
    server.drain().await;
}

/// Starts the `spillway` binary's `serve` with `extra` flags on a port the kernel picks and
/// waits until it says it listens; its stdout is closed at once when `close_stdout`.
fn spawn_serve(extra: &[&str], close_stdout: bool) -> (support::Reaper, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spillway"));
    command.args(["serve", "--addr", "127.0.0.1:0"]).args(extra);
    let announced = if close_stdout {
        support::Announced::OnStderrWithStdoutClosed
    } else {
        support::Announced::OnStdout
    };
    support::serve_on_a_free_port(command, announced)
}

/// Defect 15: `serve ... | true`: a closed stdout neither crashes the server nor changes the
/// status of a clean SIGTERM exit.
#[test]
fn serve_with_a_closed_stdout_exits_zero_on_sigterm() {
    let (mut child, addr) = spawn_serve(&[], true);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "serve stopped listening"
    );
    child.signal("TERM");
    let status = child.wait_at_most(PATIENCE * 2);
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Defect 18: the binary exits at once on a second signal, with a request still in flight.
#[test]
fn serve_exits_at_once_on_a_second_signal() {
    use std::io::Write;
    let (mut child, addr) = spawn_serve(&["--wait-ms", "60000", "--drain-timeout", "60s"], false);
    let mut in_flight = std::net::TcpStream::connect(&addr).unwrap();
    in_flight
        .write_all(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.signal("TERM");
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(std::time::Instant::now() < deadline, "still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.signal("INT");
    let status = child.wait_at_most(PATIENCE);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn an_instance_name_is_on_every_response_and_in_the_metrics() {
    let server = Running::start(&["--instance", "web-2", "--wait-ms", "1"]).await;
    for path in ["/work", "/healthz", "/metrics"] {
        let response = server.get(path).await;
        assert_eq!(
            response.header("x-spillway-instance"),
            Some("web-2"),
            "{path}"
        );
    }
    assert_eq!(
        server
            .metric(r#"spillway_instance_info{instance="web-2"}"#)
            .await,
        1.0
    );
}

/// `/readyz` turns 503 once most `/work` requests of the last second were shed
/// (`--ready-max-shed`), while `/healthz` stays 200.
#[tokio::test]
async fn readyz_is_503_while_the_instance_sheds_more_than_allowed() {
    let (server, first, second) = filled_one_slot_pool("3000", &["--ready-max-shed", "0.5"]).await;
    // Two /work requests so far, none shed: fewer than a check needs to say anything.
    let ready = server.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    for _ in 0..30 {
        assert_eq!(server.get("/work").await.status, 503);
    }
    let unready = server.get("/readyz").await;
    assert_eq!(unready.status, 503, "{unready:?}");
    assert_eq!(unready.body, "shedding 94% of /work requests\n");
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    server.drain().await;
}

// ---- issue 14: run deadlines ----

/// A request whose job runs past `--run-timeout` is answered 504; its worker is free again for
/// the next request, and the pool counts the job as timed out.
#[tokio::test]
async fn a_job_past_the_run_timeout_is_answered_504() {
    let server = Running::start(&[
        "--run-timeout",
        "100ms",
        "--min-workers",
        "1",
        "--max-workers",
        "1",
        "--limit",
        "fixed",
    ])
    .await;
    let stuck = server.get("/work?wait_ms=60000").await;
    assert_eq!(stuck.status, 504, "{stuck:?}");
    assert_eq!(
        stuck.body,
        "the job ran past --run-timeout and was stopped\n"
    );
    let next = server.get("/work?wait_ms=1").await;
    assert_eq!(next.status, 200, "the only worker was freed: {next:?}");
    server
        .wait_metric(
            r#"spillway_jobs_ended_total{pool="serve",outcome="timed_out"}"#,
            1.0,
        )
        .await;
    let report = server.drain().await;
    assert_eq!(report.abandoned, 0);
}

#[test]
fn a_zero_run_timeout_is_refused_naming_the_flag() {
    let argv = ["spillway", "serve", "--run-timeout", "0s"];
    let err = Cli::try_parse_from(argv).unwrap_err().to_string();
    assert!(err.contains("--run-timeout"), "{err}");
    assert!(err.contains("longer than zero"), "{err}");
}

/// A pool of one worker, with `extra` settings.
async fn one_worker(extra: &[&str]) -> Running {
    let mut argv = vec!["--mode", "pool", "--min-workers", "1", "--max-workers", "1"];
    argv.extend_from_slice(extra);
    Running::start(&argv).await
}

#[tokio::test]
async fn bad_priority_and_timeout_headers_get_400_naming_the_header_without_using_the_pool() {
    let server = Running::start(&["--mode", "pool", "--wait-ms", "0"]).await;
    for (header, message) in [
        (
            "x-priority: urgent",
            "invalid x-priority header \"urgent\": must be one of critical, high, normal, low \
             (absent means normal)\n",
        ),
        (
            "x-priority: Critical",
            "invalid x-priority header \"Critical\": must be one of critical, high, normal, \
             low (absent means normal)\n",
        ),
        (
            "grpc-timeout: 200ms",
            "invalid grpc-timeout header \"200ms\": must be 1 to 8 digits followed by a unit, \
             H, M, S, m, u or n (e.g. 200m, 1S)\n",
        ),
    ] {
        let bad = server.send(&get_with("/work", &[header])).await;
        assert_eq!(bad.status, 400, "{header}: {bad:?}");
        assert_eq!(bad.body, message, "{header}");
    }
    for header in [
        "grpc-timeout: 123456789m",
        "grpc-timeout: 1s",
        "grpc-timeout: -5S",
    ] {
        let bad = server.send(&get_with("/work", &[header])).await;
        assert_eq!(bad.status, 400, "{header}: {bad:?}");
        assert!(
            bad.body.starts_with("invalid grpc-timeout header"),
            "{bad:?}"
        );
    }
    server.assert_no_job_submitted().await;
    // Good values pass.
    let good = get_with("/work", &["x-priority: high", "grpc-timeout: 5S"]);
    assert_eq!(server.send(&good).await.status, 200);
    server.drain().await;
}

#[tokio::test]
async fn modes_without_a_pool_ignore_the_priority_headers() {
    for mode in ["naive", "semaphore"] {
        let server = Running::start(&["--mode", mode, "--wait-ms", "0"]).await;
        let raw = get_with("/work", &["x-priority: urgent", "grpc-timeout: soon"]);
        let reply = server.send(&raw).await;
        assert_eq!(reply.status, 200, "{mode}: {reply:?}");
        server.drain().await;
    }
}

#[tokio::test]
async fn each_requests_priority_reaches_the_pool() {
    let server = Running::start(&["--mode", "pool", "--wait-ms", "0"]).await;
    for (priority, times) in [("critical", 3), ("low", 2)] {
        for _ in 0..times {
            let header = format!("x-priority: {priority}");
            assert_eq!(
                server.send(&get_with("/work", &[&header])).await.status,
                200
            );
        }
    }
    assert_eq!(server.get("/work").await.status, 200);
    for (priority, completed) in [
        ("critical", 3.0),
        ("high", 0.0),
        ("normal", 1.0),
        ("low", 2.0),
    ] {
        let series = format!(
            r#"spillway_priority_jobs_ended_total{{pool="serve",priority="{priority}",outcome="completed"}}"#
        );
        assert_eq!(server.metric(&series).await, completed, "{priority}");
    }
    server.drain().await;
}

#[tokio::test]
async fn a_request_past_its_grpc_timeout_is_shed_without_running() {
    let server = one_worker(&["--queue", "4"]).await;
    // A deadline that has passed by the time the request is submitted: refused at once.
    let late = server
        .send(&get_with("/work?wait_ms=0", &["grpc-timeout: 0n"]))
        .await;
    assert_eq!(late.status, 503, "{late:?}");
    assert_eq!(
        late.body,
        "overloaded: deadline already passed; retry later\n"
    );
    // A request queued behind a long one: its deadline passes before a worker is free.
    let long = spawn_send(server.addr, get_with("/work?wait_ms=1000", &[]));
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve"}"#, 1.0)
        .await;
    let queued = server
        .send(&get_with(
            "/work?wait_ms=0",
            &["x-priority: critical", "grpc-timeout: 50m"],
        ))
        .await;
    assert_eq!(queued.status, 503, "{queued:?}");
    assert_eq!(
        queued.body,
        "overloaded: expired in the queue; retry later\n"
    );
    assert_eq!(long.await.unwrap().status, 200);
    let critical_expired =
        r#"spillway_priority_jobs_ended_total{pool="serve",priority="critical",outcome="expired"}"#;
    assert_eq!(server.metric(critical_expired).await, 1.0);
    let refused =
        r#"spillway_priority_jobs_shed_total{pool="serve",priority="normal",reason="expired"}"#;
    assert_eq!(server.metric(refused).await, 1.0);
    server.drain().await;
}

#[tokio::test]
async fn a_critical_request_displaces_a_queued_low_one_from_a_full_queue() {
    let server = one_worker(&["--queue", "1", "--limit", "fixed"]).await;
    let running = spawn_send(server.addr, get_with("/work?wait_ms=500", &[]));
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve"}"#, 1.0)
        .await;
    let low = spawn_send(
        server.addr,
        get_with("/work?wait_ms=0", &["x-priority: low"]),
    );
    server
        .wait_metric(r#"spillway_queue_depth{pool="serve"}"#, 1.0)
        .await;
    let critical = spawn_send(
        server.addr,
        get_with("/work?wait_ms=0", &["x-priority: critical"]),
    );
    let low = low.await.unwrap();
    assert_eq!(low.status, 503, "{low:?}");
    assert_eq!(
        low.body,
        "overloaded: displaced by a request of higher priority; retry later\n"
    );
    assert_eq!(critical.await.unwrap().status, 200);
    assert_eq!(running.await.unwrap().status, 200);
    let displaced =
        r#"spillway_priority_jobs_ended_total{pool="serve",priority="low",outcome="displaced"}"#;
    assert_eq!(server.metric(displaced).await, 1.0);
    server.drain().await;
}

/// Issue 12: in pool mode a `/work` request's CPU part runs on the CPU lane (a BlockingPool of
/// `--cpu-threads` threads and a queue of `--cpu-queue`); a CPU part that finds it full is shed
/// with 503 and `Retry-After`, and the lane's series are exported beside the pool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_lane_runs_cpu_parts_and_sheds_them_when_full() {
    let server = Running::start(&[
        "--mode",
        "pool",
        "--wait-ms",
        "0",
        "--cpu-threads",
        "1",
        "--cpu-queue",
        "1",
        "--retry-after",
        "2",
    ])
    .await;
    let running = server.spawn_get("/work?cpu_ms=3000");
    server
        .wait_metric(r#"spillway_workers_busy{pool="serve-cpu"}"#, 1.0)
        .await;
    let queued = server.spawn_get("/work?cpu_ms=1");
    server
        .wait_metric(r#"spillway_queue_depth{pool="serve-cpu"}"#, 1.0)
        .await;
    let shed = server.get("/work?cpu_ms=1").await;
    assert_eq!(shed.status, 503, "{shed:?}");
    assert_eq!(shed.header("retry-after"), Some("2"));
    assert_eq!(shed.body, "overloaded: the CPU lane is full; retry later\n");
    // A request without CPU work does not touch the lane.
    assert_eq!(server.get("/work?wait_ms=1").await.status, 200);
    assert_eq!(running.await.unwrap().status, 200);
    assert_eq!(queued.await.unwrap().status, 200);
    assert_eq!(
        server
            .metric(r#"spillway_jobs_shed_total{pool="serve-cpu",reason="full"}"#)
            .await,
        1.0
    );
    assert_eq!(server.metric("spillway_http_shed_total").await, 1.0);
    server.drain().await;
}

#[tokio::test]
async fn bad_cpu_lane_flags_are_named() {
    for (flag, value) in [
        ("--cpu-threads", "0"),
        ("--cpu-threads", "2000"),
        ("--cpu-queue", "0"),
    ] {
        let err = Cli::try_parse_from(["spillway", "serve", flag, value])
            .unwrap_err()
            .to_string();
        assert!(err.contains(flag), "{err}");
    }
}
