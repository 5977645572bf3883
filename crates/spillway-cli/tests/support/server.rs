//! `spillway serve` running in this process on an ephemeral loopback port, with the two signals
//! a user can send it and the requests tests make of it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser as _;
use spillway_cli::serve::{DrainReport, ServeArgs, Server};
use spillway_cli::{Cli, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::PATIENCE;
use super::http::{Reply, get_at, send_to};

/// `serve`'s flags for a pool of exactly one worker and one queue slot, under a fixed limit: the
/// second request fills it, a third is shed.
pub(crate) const ONE_SLOT_POOL: [&str; 10] = [
    "--mode",
    "pool",
    "--limit",
    "fixed",
    "--min-workers",
    "1",
    "--max-workers",
    "1",
    "--queue",
    "1",
];

/// `spillway serve --addr 127.0.0.1:0` with `extra` flags, parsed.
///
/// # Panics
///
/// When the flags are not `serve`'s.
pub(crate) fn serve_args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec!["spillway", "serve", "--addr", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Serve(args) => args,
        other => panic!("parsed as another command: {other:?}"),
    }
}

/// A server running in this process until [`Running::drain`] or [`Running::force`].
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    /// The first signal: stop accepting and drain.
    stop: Option<oneshot::Sender<()>>,
    /// The second signal: end the drain at once.
    force: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<DrainReport>>,
}

impl Running {
    /// Binds `serve_args(extra)` and starts serving.
    ///
    /// # Panics
    ///
    /// When the flags are not `serve`'s, or the server cannot bind.
    pub(crate) async fn start(extra: &[&str]) -> Running {
        let server = Server::bind(&serve_args(extra))
            .await
            .expect("server binds");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let (force, forced) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_with_force(
            async move {
                let _ = stopped.await;
            },
            async move {
                if forced.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
        ));
        Running {
            addr,
            stop: Some(stop),
            force: Some(force),
            task,
        }
    }

    /// Sends the first signal: the server stops accepting and drains.
    pub(crate) fn stop(&mut self) {
        let _ = self.stop.take().expect("not stopped yet").send(());
    }

    /// Sends the first signal unless sent, and waits for the drain's report.
    pub(crate) async fn drain(mut self) -> DrainReport {
        if self.stop.is_some() {
            self.stop();
        }
        self.report(PATIENCE * 2, "the drain ends").await
    }

    /// Sends the second signal, and waits at most [`PATIENCE`] for the drain it ends.
    pub(crate) async fn force(mut self) -> DrainReport {
        let _ = self.force.take().expect("not forced yet").send(());
        self.report(PATIENCE, "the second signal ends the drain")
            .await
    }

    async fn report(self, limit: Duration, ends: &str) -> DrainReport {
        tokio::time::timeout(limit, self.task)
            .await
            .expect(ends)
            .expect("the server task did not panic")
            .expect("the server reports")
    }

    /// `GET path` on a new connection: the whole reply.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        get_at(self.addr, path).await
    }

    /// `GET path` from a task of its own, to be awaited later.
    pub(crate) fn spawn_get(&self, path: &str) -> JoinHandle<Reply> {
        let (addr, path) = (self.addr, path.to_string());
        tokio::spawn(async move { get_at(addr, &path).await })
    }

    /// Sends `raw` on a new connection: the whole reply.
    pub(crate) async fn send(&self, raw: &str) -> Reply {
        send_to(self.addr, raw).await
    }

    /// The value of one `/metrics` series, e.g. `spillway_http_shed_total`.
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.body;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.trim().parse::<f64>().expect("a number"))
            })
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    }

    /// Polls `/metrics` until `series` reaches `want` (bounded by [`PATIENCE`]).
    pub(crate) async fn wait_metric(&self, series: &str, want: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.metric(series).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed at {got}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts that the pool has admitted no job yet.
    pub(crate) async fn assert_no_job_submitted(&self) {
        let series = r#"spillway_jobs_submitted_total{pool="serve"}"#;
        assert_eq!(self.metric(series).await, 0.0, "{series}");
    }
}
