//! Fault injection (`--fault-panic`, `--fault-hang`, `--fault-alloc`): every job still ends in
//! one counted outcome, and the server goes on serving.

mod support;

use clap::Parser;
use spillway_cli::simulate;
use spillway_cli::{Cli, Command};

use support::{Running, assert_every_job_accounted};

fn command(argv: &[&str]) -> Command {
    Cli::try_parse_from(argv).expect("valid arguments").command
}

#[test]
fn simulate_counts_panicked_jobs_failed_and_hung_ones_in_flight_in_every_mode() {
    let Command::Simulate(args) = command(&[
        "spillway",
        "simulate",
        "--isolation",
        "inline",
        "--mode",
        "naive,semaphore,pool",
        "--rate",
        "400",
        "--duration",
        "1s",
        "--capacity",
        "20000",
        "--alloc-kib",
        "16",
        "--max-workers",
        "200",
        "--queue",
        "400",
        "--min-workers",
        "10",
        "--fault-panic",
        "0.2",
        "--fault-hang",
        "0.1",
        "--fault-alloc",
        "0.1",
    ]) else {
        panic!("not simulate")
    };
    let report = simulate::simulate(&args).expect("the simulation runs");
    for m in &report.modes {
        assert_every_job_accounted(m);
        // 20% of ~400 panic, 10% never finish; the rest complete.
        assert!((40..=130).contains(&m.failed), "{}: {m:?}", m.mode);
        assert!(m.in_flight_at_end >= 15, "{}: {m:?}", m.mode);
        assert!(m.completed >= 200, "{}: {m:?}", m.mode);
    }
}

#[test]
fn fault_fractions_are_checked() {
    let err = Cli::try_parse_from(["spillway", "serve", "--fault-panic", "2"]).unwrap_err();
    assert!(err.to_string().contains("--fault-panic"), "{err}");
    assert!(err.to_string().contains("from 0 to 1"), "{err}");
}

#[tokio::test]
async fn a_pool_answers_a_panicked_job_500_and_goes_on_serving() {
    let server = Running::start(&["--wait-ms", "0", "--fault-panic", "1"]).await;
    for _ in 0..20 {
        let work = server.get("/work").await;
        assert_eq!(work.status, 500, "{work:?}");
        assert_eq!(
            work.body,
            "the job panicked: injected fault (--fault-panic)\n"
        );
    }
    assert_eq!(server.get("/healthz").await.status, 200);
    // The handle resolves as the job unwinds; the worker counts the outcome just after, so the
    // last panic may reach /metrics a moment after its 500.
    server
        .wait_metric(
            r#"spillway_jobs_ended_total{pool="serve",outcome="panicked"}"#,
            20.0,
        )
        .await;
    let answered_500 = r#"spillway_http_responses_total{status="500"}"#;
    assert_eq!(server.metric(answered_500).await, 20.0);
    assert_eq!(server.drain().await.abandoned, 0);
}
