//! `spillway serve`: seed 001's HTTP service, in each of its three concurrency modes, built
//! so that overload is shed instead of queued without bound.
//!
//! * `naive`: the handler runs in the connection's own task, like Go's goroutine per request.
//! * `semaphore`: the handler first waits for one of `--max-workers` permits (tokio's
//!   `Semaphore`), as seed 001 does with a buffered channel. Nothing is ever refused.
//! * `pool`: `/work` runs as a [`spillway::Pool`] job; when the queue is full the request is
//!   answered `503` with `Retry-After` at once, and a client that leaves cancels its job. The
//!   `x-priority` and `grpc-timeout` headers set each job's priority and deadline (a trusted
//!   proxy must set or strip `x-priority` in production); the other modes ignore them.
//!
//! The server itself ([`Server`]) is mode-independent: an accept loop over hyper's HTTP/1.1 and
//! HTTP/2 (h2c prior knowledge) connections with a header read timeout, a body limit, an
//! optional connection limit and a graceful drain.

mod admit;
mod app;
mod balancer;
mod classify;
mod dashboard;
mod job;
mod limiter;
mod limits;
mod metrics;
mod readiness;
mod server;
mod snapshot;
mod window;

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::sync::oneshot;

use spillway::Limit;

use crate::args::{
    FaultArgs, PoolArgs, WorkloadArgs, duration_or_zero, parse_bytes, parse_header_bytes,
    parse_limit, positive_duration,
};

pub(crate) use app::profile_from_query;
pub use server::{DrainReport, Server};

/// How `/work` bounds its concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// No bound: every request runs at once, however many there are.
    Naive,
    /// At most `--max-workers` at once; the rest wait, without limit, for a permit.
    Semaphore,
    /// The spillway pool: `--max-workers` running, `--queue` waiting, the rest shed with 503.
    Pool,
}

impl Mode {
    /// The mode's name, as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::Semaphore => "semaphore",
            Mode::Pool => "pool",
        }
    }
}

/// Which HTTP versions connections may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1, and HTTP/2 for clients that open with its preface (h2c prior knowledge).
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 (h2c prior knowledge) only.
    Http2,
}

/// Options of `spillway serve`. The defaults serve seed 001's handler (10 ms of waiting) with
/// the seed's 1,000 slots of concurrency, on loopback.
#[derive(Debug, Clone, Args)]
#[command(
    allow_negative_numbers = true,
    mut_arg("wait_ms", |a| a.default_value("10")),
    mut_arg("alloc_kib", |a| a.default_value("0")),
    mut_arg("min_workers", |a| a.default_value("16")),
    mut_arg("max_workers", |a| a.default_value("1000")),
    mut_arg("queue", |a| a.default_value("1000")),
)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// How `/work` bounds its concurrency.
    #[arg(long, value_enum, default_value_t = Mode::Pool)]
    pub mode: Mode,
    /// The job of each `/work` request; the query's `wait_ms`, `alloc_kib` and `cpu_ms`
    /// override it.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Faults injected into a fraction of the `/work` jobs (a panic is answered 500 in pool
    /// mode, and closes the connection in the others).
    #[command(flatten)]
    pub faults: FaultArgs,
    /// The pool (pool mode); `--max-workers` is the semaphore's permits too.
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Threads of the pool's own runtime, which runs the queued jobs apart from the
    /// connections, so that a flood of requests to shed cannot starve the work already taken
    /// (a job admitted while a slot is free runs on its connection's task); 0 runs the workers
    /// on the server's runtime (pool mode); at most 1024.
    #[arg(
        long,
        default_value_t = 1,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1024)
    )]
    pub pool_threads: usize,
    /// OS threads of the CPU lane (pool mode): a `/work` job's `cpu_ms` part runs on a
    /// spillway BlockingPool of this many threads, its wait part on the pool; a CPU part that
    /// finds the lane's queue full is shed with 503 too. Default: the number of cores.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub cpu_threads: Option<usize>,
    /// CPU parts that may wait for a thread of the CPU lane (pool mode); the rest are shed.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub cpu_queue: usize,
    /// The pool's concurrency limit (pool mode): adaptive (the library's default: finds how
    /// many jobs may run at once, within --min-workers..=--max-workers, and keeps the queue
    /// short), fixed (always --max-workers), or Netflix's gradient2, vegas or aimd.
    #[arg(long, default_value = "adaptive", value_parser = parse_limit)]
    pub limit: Limit,
    /// The queue wait the adaptive limit aims at while the pool is saturated (pool mode,
    /// adaptive limit only; the library's default, 5ms, when not given).
    #[arg(long, value_parser = positive_duration)]
    pub queue_target: Option<Duration>,
    /// Wait up to this long for a queue slot before shedding, instead of failing fast (pool
    /// mode).
    #[arg(long, value_parser = positive_duration)]
    pub admission_wait: Option<Duration>,
    /// Stop a `/work` job still running this long after it started and answer 504 (pool mode;
    /// none by default; at most 24h). The job is dropped at its next await: its wait ends at
    /// once, and its CPU work, on a blocking thread that nothing can interrupt, stops at its
    /// next check of a cancellation flag (the job's burn checks it as it goes).
    #[arg(long, value_parser = positive_duration)]
    pub run_timeout: Option<Duration>,
    /// Least seconds a shed client is told to wait, in `Retry-After`; it says more when the
    /// jobs queued and running would take longer to get through (their count, at the pool's
    /// mean run time, divided by its limit; rounded up, at most 60).
    #[arg(long, default_value_t = 1)]
    pub retry_after: u32,
    /// This instance's name, for a load balancer's pool of several: sent on every response as
    /// `x-spillway-instance` and exported as `spillway_instance_info{instance="NAME"}`.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// `/readyz` answers 503 while more than this fraction of the `/work` requests of the last
    /// second were shed (e.g. 0.5), as well as while draining. Off by default (`/readyz` is
    /// then 503 only while draining): when every instance is overloaded, all turn unready at
    /// once (see the README's "Running several instances").
    #[arg(long, value_name = "FRACTION", value_parser = readiness::max_shed)]
    pub ready_max_shed: Option<f64>,
    /// Drop a connection whose first request head (first line and headers, or the HTTP/2
    /// preface and first request) has not all arrived within this of the accept (slowloris);
    /// a later request on a keep-alive connection gets as long from the previous response, and
    /// a request body must arrive within it too (else 408). At most 24h.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,
    /// Largest request head accepted (the HTTP/1.1 request line and headers, or the decoded
    /// HTTP/2 header list), from 8KiB to 16MiB; larger ones get 431.
    #[arg(long, default_value = "64KiB", value_parser = parse_header_bytes)]
    pub max_header_bytes: u32,
    /// Largest request body accepted (e.g. 64KiB); larger ones get 413.
    #[arg(long, default_value = "64KiB", value_parser = parse_bytes)]
    pub body_limit: u64,
    /// Most connections open at once; further ones wait in the listen backlog (no limit by
    /// default beyond the open-files limit).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Close each HTTP/1.1 connection after one response instead of keeping it alive.
    #[arg(long)]
    pub no_keep_alive: bool,
    /// HTTP versions accepted.
    #[arg(long, value_enum, default_value_t = Protocol::Auto)]
    pub protocol: Protocol,
    /// Most concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_streams: u32,
    /// How often an HTTP/2 connection is pinged, and how long it has to answer before it is
    /// closed (a peer gone, or a client that stopped reading its responses); at most 24h.
    #[arg(long, default_value = "20s", value_parser = positive_duration)]
    pub h2_keep_alive: Duration,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish before they are
    /// abandoned (0s to 24h); idle connections are closed at once. A second signal ends the
    /// drain at once, abandoning what is still in flight.
    #[arg(long, default_value = "10s", value_parser = duration_or_zero)]
    pub drain_timeout: Duration,
}

/// Runs `spillway serve` until SIGINT or SIGTERM, then drains; a second signal abandons what
/// is still in flight at once.
///
/// # Errors
///
/// Invalid settings, or an address that cannot be bound.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    match limits::raise_open_files() {
        Ok((before, after, hard)) => {
            eprintln!("open files: soft limit {before} -> {after} (hard limit {hard})")
        }
        Err(err) => eprintln!("open files: cannot raise the soft limit: {err}"),
    }
    let server = Server::bind(&args).await?;
    say(&format!(
        "spillway serve: listening on http://{} mode={} wait={}ms max_workers={}{}",
        server.local_addr(),
        args.mode.as_str(),
        args.workload.wait_ms,
        args.pool.max_workers,
        if args.mode == Mode::Pool {
            format!(
                " queue={} limit={} pool_threads={}",
                args.pool.queue,
                args.limit.name(),
                args.pool_threads
            )
        } else {
            String::new()
        }
    ));
    let (first, second) = signals();
    let report = server.run_with_force(first, second).await?;
    say(&report.to_string());
    Ok(ExitCode::SUCCESS)
}

/// Prints a line on stdout; a closed stdout (`serve | true`) is noted on stderr instead of
/// ending the server or changing its exit status.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        eprintln!("{line} (stdout: {err})");
    }
}

/// Two futures: the first resolves on the first SIGINT or SIGTERM, the second on the next one
/// (never, if signals cannot be watched).
fn signals() -> (impl Future<Output = ()>, impl Future<Output = ()>) {
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let (second_tx, second_rx) = oneshot::channel::<()>();
    let mut signals = Signals::new();
    tokio::spawn(async move {
        signals.next().await;
        eprintln!(
            "signal received: no longer accepting, draining in-flight requests \
             (a second signal abandons them at once)"
        );
        let _ = first_tx.send(());
        signals.next().await;
        eprintln!("second signal received: abandoning what is still in flight");
        let _ = second_tx.send(());
    });
    let resolve = |rx: oneshot::Receiver<()>| async move {
        if rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    (resolve(first_rx), resolve(second_rx))
}

/// SIGINT (Ctrl-C) and SIGTERM, watched from the moment this is made, one after another.
struct Signals {
    #[cfg(unix)]
    watched: Vec<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let kinds = [SignalKind::interrupt(), SignalKind::terminate()];
            Signals {
                watched: kinds.into_iter().filter_map(|k| signal(k).ok()).collect(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves on the next SIGINT or SIGTERM (never, if none can be watched).
    async fn next(&mut self) {
        #[cfg(unix)]
        std::future::poll_fn(|cx| {
            let arrived = self
                .watched
                .iter_mut()
                .any(|signal| signal.poll_recv(cx) == std::task::Poll::Ready(Some(())));
            if arrived {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
