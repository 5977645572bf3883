//! `spillway load`: an open-loop HTTP load generator.
//!
//! wrk and hey are closed-loop: each connection waits for its answer before sending again, so a
//! slow server slows the load and hides its own latency. `load` offers a fixed rate whatever the
//! server does, measures latency from the request's due time whenever the server held it back
//! (from the send when the generator itself was late, which is reported apart), keeps 2xx, 503 and
//! other statuses apart, and can spread its connections over several source addresses and
//! processes, so that neither the ephemeral ports of one address nor the open-files limit of one
//! process caps the total.

mod lane;
mod report;
mod stats;
mod target;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::args::{duration_or_zero, positive_duration, rate, usage};
use crate::child::{self, ChildOf, ChildProcess};
use crate::net::socket_for;
use crate::output;
use crate::priority::PriorityMix;
use lane::{Live, Plan};
use report::Recorded;
pub use report::{LoadReport, PriorityReport, render};
use stats::{EncodedTally, Shards, Tally};
pub use stats::{Percentiles, SecondReport};
use target::Target;
pub(crate) use target::{parse_source_addrs, parse_url};

/// Options of `spillway load`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[command(allow_negative_numbers = true)]
pub struct LoadArgs {
    /// The URL to load, `http://host[:port]/path` (HTTP/1.1, or h2c with --http2).
    #[arg(value_parser = checked_url)]
    pub url: String,
    /// Requests per second offered, whatever the server does with them (0.001 to 1e9).
    #[arg(long, value_parser = rate)]
    pub rate: f64,
    /// How long the measured part of the run lasts (e.g. 10s; at most 24h).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
    /// Connections to open (over all processes), at most a million.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_CONNECTIONS))]
    pub connections: u64,
    /// Speak HTTP/1.1: one request at a time per connection (the default).
    #[arg(long, conflicts_with = "http2")]
    pub http1: bool,
    /// Speak HTTP/2 over cleartext (prior knowledge): several requests at once per connection.
    #[arg(long)]
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection (with --http2 only).
    #[arg(
        long,
        default_value_t = 10,
        requires = "http2",
        value_parser = clap::value_parser!(u64).range(1..=10_000)
    )]
    pub streams_per_connection: u64,
    /// Spread connections over these source addresses, e.g. 127.0.0.1-127.0.0.16 or a comma
    /// list; each address has its own ~28k ephemeral ports.
    #[arg(long, value_parser = parse_sources)]
    pub source_addrs: Option<SourceAddrs>,
    /// A request without an answer after this long counts as a timeout (at most 24h).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub timeout: Duration,
    /// Offer the load this long before measuring (e.g. 2s; at most 24h); not counted.
    #[arg(long, default_value = "0s", value_parser = duration_or_zero)]
    pub warmup: Duration,
    /// Write the report as JSON here (with a per-second series).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Split the connections and the rate over this many child processes, so that one
    /// process's open-files limit does not cap the total; their histograms merge exactly.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub processes: u32,
    /// No progress line each second.
    #[arg(long)]
    pub quiet: bool,
    /// Send an `x-priority` header on these shares of the requests, e.g.
    /// critical=0.1,normal=0.3,low=0.6 (critical, high, normal, low; shares from 0 to 1 that
    /// sum to 1); the report then gives latency, statuses and goodput per priority. Without
    /// it no header is sent (the server takes that as normal).
    #[arg(long, value_name = "MIX", value_parser = PriorityMix::parse)]
    pub priority_mix: Option<PriorityMix>,
}

/// Most `--connections`.
const MAX_CONNECTIONS: u64 = 1_000_000;

/// Most lanes (`--connections` times `--streams-per-connection`): one task each.
const MAX_LANES: u64 = 1_000_000;

/// The addresses of `--source-addrs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAddrs(pub Vec<IpAddr>);

fn checked_url(s: &str) -> Result<String, String> {
    parse_url(s).map(|_| s.to_string())
}

fn parse_sources(s: &str) -> Result<SourceAddrs, String> {
    parse_source_addrs(s).map(SourceAddrs)
}

/// What a child process hands its parent: exact tallies, not percentiles.
#[derive(Debug, Serialize, Deserialize)]
struct ChildOutput {
    scheduled: u64,
    established: u64,
    opened: u64,
    body_bytes: u64,
    elapsed_s: f64,
    tally: EncodedTally,
}

/// Runs `spillway load`: prints the report, and writes it as JSON if asked.
///
/// # Errors
///
/// A bad URL, an unreachable host, or a child process that failed.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let report = load(&args).await?;
    // The file first: a closed stdout must not cost it.
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    output::print(&render(&report)).context("cannot print the report")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the load (in this process, or split over `--processes`) and returns the report.
///
/// # Errors
///
/// A bad URL, an unreachable host, or a child process that failed.
pub async fn load(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    // Before anything is sent: a bad path must not cost the run.
    if let Some(path) = &args.json {
        output::check_writable("--json", path)?;
    }
    let recorded = if args.processes > 1 {
        run_children(args).await?
    } else {
        run_here(args).await?
    };
    Ok(report::build(args, &recorded))
}

/// Runs the share of the load a parent `load` handed this child process, and prints its tally.
///
/// # Errors
///
/// Settings that do not parse, or a run that failed.
pub(crate) async fn run_as_child() -> anyhow::Result<ExitCode> {
    let args: LoadArgs = tokio::task::spawn_blocking(child::settings).await??;
    let Recorded {
        scheduled,
        established,
        opened,
        body_bytes,
        elapsed_s,
        tally,
    } = run_here(&args).await?;
    child::emit(&ChildOutput {
        scheduled,
        established,
        opened,
        body_bytes,
        elapsed_s,
        tally: tally.encode(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Checks what the parser cannot: the URL (for callers that built `args` themselves) and the
/// flags that depend on each other.
fn check(args: &LoadArgs) -> anyhow::Result<Target> {
    let target = parse_url(&args.url).map_err(usage)?;
    if args.connections < u64::from(args.processes) {
        return Err(usage(format!(
            "invalid --processes = {}: must be at most --connections ({})",
            args.processes, args.connections
        )));
    }
    let lanes = args.connections.saturating_mul(streams(args) as u64);
    if lanes > MAX_LANES {
        return Err(usage(format!(
            "invalid --connections = {} with --streams-per-connection = {}: at most {MAX_LANES} \
             requests in flight",
            args.connections, args.streams_per_connection
        )));
    }
    Ok(target)
}

/// Requests one connection carries at once.
fn streams(args: &LoadArgs) -> usize {
    if args.http2 {
        usize::try_from(args.streams_per_connection).unwrap_or(1)
    } else {
        1
    }
}

/// Requests due in `[0, seconds)` at `rate`: those with `i / rate < seconds`. A product within
/// rounding error of a whole number is that number (700/s for 1.1 s is 770 requests, not 771).
fn due_before(seconds: f64, rate: f64) -> u64 {
    let x = seconds * rate;
    if (x - x.round()).abs() < 1e-6 {
        x.round() as u64
    } else {
        x.ceil() as u64
    }
}

/// Runs the whole load in this process.
async fn run_here(args: &LoadArgs) -> anyhow::Result<Recorded> {
    let target = check(args)?;
    let addr = target::resolve(&target).await.map_err(anyhow::Error::msg)?;
    let sources = source_addrs(args, addr)?;
    reach(args, &target, addr, sources.first().copied()).await?;
    let plan = plan(args, target, addr, sources)?;
    let (start, lanes) = (plan.start, plan.lanes());
    let scheduled = plan.total - plan.first_measured;
    let shards = Arc::new(Shards::new(64));
    let live = Arc::new(Live::default());
    let progress =
        (!args.quiet).then(|| tokio::spawn(progress(Arc::clone(&live), start, args.warmup, lanes)));
    let connections = args.connections;
    let ran = lane::run(
        plan,
        args.warmup,
        Arc::clone(&shards),
        Arc::clone(&live),
        |opened| warn_if_short(opened, connections),
    )
    .await;
    let elapsed_s = ran.measure_from.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(Recorded {
        scheduled,
        established: live.established.load(Ordering::Relaxed),
        opened: ran.opened,
        body_bytes: live.body_bytes.load(Ordering::Relaxed),
        elapsed_s,
        tally: shards.total(),
    })
}

/// Says so on stderr when fewer connections opened than asked (the open-files limit, the
/// ephemeral ports, a server that refuses): the run's concurrency is lower than asked.
fn warn_if_short(opened: u64, asked: u64) {
    if opened < asked {
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map_or(String::new(), |(soft, _)| {
                format!("; open-files limit {soft}")
            });
        eprintln!(
            "warning: only {opened} of {asked} connections opened{limit}; the others are \
             retried when their requests are due, and count as connect errors"
        );
    }
}

/// `--source-addrs`, each of the target's family.
fn source_addrs(args: &LoadArgs, addr: SocketAddr) -> anyhow::Result<Vec<IpAddr>> {
    let sources = args
        .source_addrs
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    if let Some(wrong) = sources.iter().find(|ip| ip.is_ipv4() != addr.is_ipv4()) {
        return Err(usage(format!(
            "invalid --source-addrs: {wrong} is {} but the target {addr} is {}",
            if wrong.is_ipv4() { "IPv4" } else { "IPv6" },
            if addr.is_ipv4() { "IPv4" } else { "IPv6" }
        )));
    }
    Ok(sources)
}

/// One connection first, from `source`: an unreachable host is an error, not a run of connect
/// errors.
async fn reach(
    args: &LoadArgs,
    target: &Target,
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> anyhow::Result<()> {
    let probe = async { socket_for(addr, source)?.connect(addr).await.map(drop) };
    match tokio::time::timeout(args.timeout, probe).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => bail!("cannot connect to {addr} ({}): {e}", target.url),
        Err(_) => bail!(
            "cannot connect to {addr} ({}): no answer within --timeout {}",
            target.url,
            humantime::format_duration(args.timeout)
        ),
    }
}

/// The schedule and what every lane shares.
fn plan(
    args: &LoadArgs,
    target: Target,
    addr: SocketAddr,
    sources: Vec<IpAddr>,
) -> anyhow::Result<Plan> {
    let connections = usize::try_from(args.connections)
        .with_context(|| format!("invalid --connections = {}: too many", args.connections))?;
    let streams = streams(args);
    let warmup = args.warmup.as_secs_f64();
    // The schedule's start is set once the connections are open.
    let start = Instant::now();
    Ok(Plan {
        target,
        addr,
        http2: args.http2,
        connections,
        streams,
        rate: args.rate,
        start,
        measure_from: start + args.warmup,
        duration: args.duration,
        total: due_before(warmup + args.duration.as_secs_f64(), args.rate),
        first_measured: due_before(warmup, args.rate),
        timeout: args.timeout,
        sources,
        mix: args.priority_mix.clone(),
    })
}

/// A line a second on stderr: what was sent and answered in that second.
async fn progress(live: Arc<Live>, start: Instant, warmup: Duration, lanes: usize) {
    let mut last = [0u64; 5];
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut stderr = std::io::stderr();
    for second in 1.. {
        tick.tick().await;
        // Outcomes first, then sends: a request is sent before it ends, so this order never
        // sees more ended than sent.
        let (ok, shed, other, errors) = (
            live.responses[0].load(Ordering::SeqCst),
            live.responses[1].load(Ordering::SeqCst),
            live.responses[2].load(Ordering::SeqCst),
            live.errors.load(Ordering::SeqCst),
        );
        let now = [live.sent.load(Ordering::SeqCst), ok, shed, other, errors];
        let d: Vec<u64> = now
            .iter()
            .zip(&last)
            .map(|(n, l)| n.saturating_sub(*l))
            .collect();
        last = now;
        let phase = if Duration::from_secs(second) <= warmup {
            " (warm-up)"
        } else {
            ""
        };
        let _ = writeln!(
            stderr,
            "[{second:>3}s] sent {}/s  2xx {}/s  503 {}/s  other {}/s  errors {}/s  in flight {}  \
             connections open {}/{}{phase}",
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            now[0].saturating_sub(now[1] + now[2] + now[3] + now[4]),
            live.open.load(Ordering::Relaxed),
            lanes,
        );
    }
}

/// Runs `--processes` children of this program, each with its share of the connections and
/// the rate, and merges what they recorded.
async fn run_children(args: &LoadArgs) -> anyhow::Result<Recorded> {
    check(args)?;
    let n = u64::from(args.processes);
    let children = (0..n)
        .map(|p| {
            ChildProcess::spawn(ChildOf::Load, &share(args, p))
                .with_context(|| format!("cannot start load process {p}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !args.quiet {
        eprintln!(
            "running {n} processes for {} (+{} warm-up)...",
            humantime::format_duration(args.duration),
            humantime::format_duration(args.warmup)
        );
    }
    tokio::task::spawn_blocking(move || merge(children)).await?
}

/// Process `p`'s share of the load: its connections, and the rate in proportion.
fn share(args: &LoadArgs, p: u64) -> LoadArgs {
    let n = u64::from(args.processes);
    let connections = args.connections / n + u64::from(p < args.connections % n);
    LoadArgs {
        rate: args.rate * connections as f64 / args.connections as f64,
        connections,
        processes: 1,
        quiet: true,
        json: None,
        ..args.clone()
    }
}

/// Waits for every child and merges their tallies, exactly.
fn merge(children: Vec<ChildProcess>) -> anyhow::Result<Recorded> {
    let mut all = Recorded {
        scheduled: 0,
        established: 0,
        opened: 0,
        body_bytes: 0,
        elapsed_s: 0.0,
        tally: Tally::new(),
    };
    for (p, child) in children.into_iter().enumerate() {
        // The exit status and stderr of a failed child say more than its missing result.
        let output = child.last::<ChildOutput>();
        let output = child
            .finish()
            .and(output)
            .with_context(|| format!("load process {p} failed"))?;
        all.scheduled += output.scheduled;
        all.established += output.established;
        all.opened += output.opened;
        all.body_bytes += output.body_bytes;
        all.elapsed_s = all.elapsed_s.max(output.elapsed_s);
        all.tally
            .merge(&Tally::decode(&output.tally).map_err(anyhow::Error::msg)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_counts_requests_due_before_the_end_exactly() {
        assert_eq!(due_before(1.1, 700.0), 770);
        assert_eq!(due_before(2.0, 400.0), 800);
        assert_eq!(due_before(1.0, 3.0), 3);
        assert_eq!(due_before(0.5, 3.0), 2); // due at 0 s and 0.333 s
        assert_eq!(due_before(0.0, 1000.0), 0);
    }
}
