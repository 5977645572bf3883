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
mod stats;
mod target;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::args::{positive_duration, positive_f64};
use lane::{Live, Plan};
use stats::{CLASSES, EncodedTally, Recorder, Tally};
pub use stats::{Percentiles, SecondReport};
use target::{Target, parse_source_addrs, parse_url};

/// Options of `spillway load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The URL to load, `http://host[:port]/path` (HTTP/1.1, or h2c with --http2).
    pub url: String,
    /// Requests per second offered, whatever the server does with them.
    #[arg(long, value_parser = positive_f64, allow_negative_numbers = true)]
    pub rate: f64,
    /// How long the measured part of the run lasts (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
    /// Connections to open (over all processes).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Speak HTTP/1.1: one request at a time per connection (the default).
    #[arg(long, conflicts_with = "http2")]
    pub http1: bool,
    /// Speak HTTP/2 over cleartext (prior knowledge): several requests at once per connection.
    #[arg(long)]
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub streams_per_connection: u64,
    /// Spread connections over these source addresses, e.g. 127.0.0.1-127.0.0.16 or a comma
    /// list; each address has its own ~28k ephemeral ports.
    #[arg(long, value_parser = parse_sources)]
    pub source_addrs: Option<SourceAddrs>,
    /// A request without an answer after this long counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub timeout: Duration,
    /// Offer the load this long before measuring (e.g. 2s); not counted.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
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
    /// Internal: run as one of `--processes` and print the raw tally as JSON.
    #[arg(long, hide = true)]
    pub child: bool,
}

/// The addresses of `--source-addrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<IpAddr>);

fn parse_sources(s: &str) -> Result<SourceAddrs, String> {
    parse_source_addrs(s).map(SourceAddrs)
}

/// The figures of a load run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The URL loaded.
    pub url: String,
    /// `http1` or `http2`.
    pub protocol: String,
    /// Connections asked for.
    pub connections: u64,
    /// Concurrent requests the connections can carry (connections x streams for HTTP/2).
    pub concurrency: u64,
    /// Processes the load ran in.
    pub processes: u32,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds before.
    pub warmup_s: f64,
    /// Requests scheduled in the measured part.
    pub scheduled: u64,
    /// Requests offered per second: scheduled / duration.
    pub offered_rate: f64,
    /// Responses (any status) per second that arrived within the measured part.
    pub achieved_rate: f64,
    /// Seconds from the end of the warm-up until every measured request was answered or timed
    /// out (at least `duration_s`).
    pub elapsed_s: f64,
    /// The generator's own lag: how late the 99th percentile of requests went out on lanes
    /// that were free at their due time, ms. Large values mean the generator, not the server,
    /// is the bottleneck. `None` when no lane was ever free at a due time (the server was
    /// behind all along).
    pub send_lag_p99_ms: Option<f64>,
    /// Connections opened, reconnections included.
    pub connections_established: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Latency by status class (`2xx`, `503`, `other`): from the due time when the lane was
    /// still busy with an earlier request, else from the send.
    pub latency: BTreeMap<String, Percentiles>,
    /// Connections that could not be opened (one per request that needed it).
    pub connect_errors: u64,
    /// Requests without an answer within `--timeout`.
    pub timeouts: u64,
    /// Requests whose connection broke.
    pub other_errors: u64,
    /// One line per measured second.
    pub series: Vec<SecondReport>,
}

impl LoadReport {
    /// The percentiles of one class (`2xx`, `503` or `other`).
    pub fn class(&self, class: &str) -> &Percentiles {
        &self.latency[class]
    }
}

/// What a child process hands its parent: exact tallies, not percentiles.
#[derive(Debug, Serialize, Deserialize)]
struct ChildOutput {
    scheduled: u64,
    established: u64,
    elapsed_s: f64,
    tally: EncodedTally,
}

/// Runs `spillway load`: prints the report, and writes it as JSON if asked.
///
/// # Errors
///
/// A bad URL, an unreachable host, or a child process that failed.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    if args.child {
        let Outcome {
            scheduled,
            established,
            elapsed_s,
            tally,
        } = run_here(&args).await?;
        let out = ChildOutput {
            scheduled,
            established,
            elapsed_s,
            tally: tally.encode(),
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report = load(&args).await?;
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the load (in this process, or split over `--processes`) and returns the report.
///
/// # Errors
///
/// A bad URL, an unreachable host, or a child process that failed.
pub async fn load(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    let outcome = if args.processes > 1 {
        run_children(args).await?
    } else {
        run_here(args).await?
    };
    Ok(report(args, &outcome))
}

/// What one process, or all of them merged, recorded.
#[derive(Debug)]
struct Outcome {
    scheduled: u64,
    established: u64,
    elapsed_s: f64,
    tally: Tally,
}

fn check(args: &LoadArgs) -> anyhow::Result<Target> {
    let target = parse_url(&args.url).map_err(anyhow::Error::msg)?;
    if args.connections < u64::from(args.processes) {
        bail!(
            "invalid --processes = {}: must be at most --connections ({})",
            args.processes,
            args.connections
        );
    }
    Ok(target)
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

async fn run_here(args: &LoadArgs) -> anyhow::Result<Outcome> {
    let target = check(args)?;
    let addr = target::resolve(&target).await.map_err(anyhow::Error::msg)?;
    let sources = args
        .source_addrs
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    if let Some(wrong) = sources.iter().find(|ip| ip.is_ipv4() != addr.is_ipv4()) {
        bail!(
            "invalid --source-addrs: {wrong} is {} but the target {addr} is {}",
            if wrong.is_ipv4() { "IPv4" } else { "IPv6" },
            if addr.is_ipv4() { "IPv4" } else { "IPv6" }
        );
    }
    // One connection first, from the first source address: an unreachable host is an error,
    // not a run of connect errors.
    let probe = tokio::time::timeout(args.timeout, probe(addr, sources.first().copied())).await;
    match probe {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("cannot connect to {addr} ({}): {e}", target.url),
        Err(_) => bail!(
            "cannot connect to {addr} ({}): no answer within --timeout {}",
            target.url,
            humantime::format_duration(args.timeout)
        ),
    }
    let connections = usize::try_from(args.connections)
        .with_context(|| format!("invalid --connections = {}: too many", args.connections))?;
    let streams = if args.http2 {
        usize::try_from(args.streams_per_connection).unwrap_or(1)
    } else {
        1
    };
    let warmup = args.warmup.as_secs_f64();
    let total = due_before(warmup + args.duration.as_secs_f64(), args.rate);
    let first_measured = due_before(warmup, args.rate);
    let scheduled = total - first_measured;
    // The schedule's start is set once the connections are open.
    let start = Instant::now();
    let plan = Plan {
        target,
        addr,
        http2: args.http2,
        connections,
        streams,
        rate: args.rate,
        start,
        measure_from: start + args.warmup,
        duration: args.duration,
        total,
        first_measured,
        timeout: args.timeout,
        sources,
    };
    let recorder = Arc::new(Recorder::new(64));
    let live = Arc::new(Live::default());
    let progress = (!args.quiet && !args.child).then(|| {
        tokio::spawn(progress(
            Arc::clone(&live),
            start,
            args.warmup,
            connections * streams,
        ))
    });
    let measure_from = lane::run(plan, args.warmup, Arc::clone(&recorder), Arc::clone(&live)).await;
    let elapsed_s = measure_from.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(Outcome {
        scheduled,
        established: live.established.load(Ordering::Relaxed),
        elapsed_s,
        tally: recorder.total(),
    })
}

/// Opens one connection to `addr`, from `source` if given.
async fn probe(addr: std::net::SocketAddr, source: Option<IpAddr>) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket
            .bind(std::net::SocketAddr::new(source, 0))
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot bind source address {source}: {e}"),
                )
            })?;
    }
    socket.connect(addr).await.map(drop)
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
async fn run_children(args: &LoadArgs) -> anyhow::Result<Outcome> {
    check(args)?;
    let exe = std::env::current_exe().context("cannot find this program to re-run it")?;
    let n = u64::from(args.processes);
    let mut children = Vec::new();
    for p in 0..n {
        let connections = args.connections / n + u64::from(p < args.connections % n);
        let rate = args.rate * connections as f64 / args.connections as f64;
        let mut cmd = Command::new(&exe);
        cmd.args(["load", &args.url, "--child", "--quiet"])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", &format!("{}ns", args.duration.as_nanos())])
            .args(["--connections", &connections.to_string()])
            .args([
                "--streams-per-connection",
                &args.streams_per_connection.to_string(),
            ])
            .args(["--timeout", &format!("{}ns", args.timeout.as_nanos())])
            .args(["--warmup", &format!("{}ns", args.warmup.as_nanos())]);
        if args.http2 {
            cmd.arg("--http2");
        }
        if let Some(sources) = &args.source_addrs {
            let list: Vec<String> = sources.0.iter().map(ToString::to_string).collect();
            cmd.args(["--source-addrs", &list.join(",")]);
        }
        match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(e) => {
                for mut started in children {
                    let _ = started.kill();
                    let _ = started.wait();
                }
                bail!("cannot start load process {p} ({}): {e}", exe.display());
            }
        }
    }
    if !args.quiet {
        eprintln!(
            "running {n} processes for {} (+{} warm-up)...",
            humantime::format_duration(args.duration),
            humantime::format_duration(args.warmup)
        );
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output())
            .collect::<Vec<_>>()
    })
    .await?;
    let mut all = Outcome {
        scheduled: 0,
        established: 0,
        elapsed_s: 0.0,
        tally: Tally::new(),
    };
    for (p, output) in outputs.into_iter().enumerate() {
        let output = output.context("a load process could not be waited for")?;
        if !output.status.success() {
            bail!(
                "load process {p} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let line = BufReader::new(&output.stdout[..])
            .lines()
            .map_while(Result::ok)
            .last()
            .unwrap_or_default();
        let child: ChildOutput = serde_json::from_str(&line)
            .with_context(|| format!("load process {p} printed no result"))?;
        all.scheduled += child.scheduled;
        all.established += child.established;
        all.elapsed_s = all.elapsed_s.max(child.elapsed_s);
        all.tally
            .merge(&Tally::decode(&child.tally).map_err(anyhow::Error::msg)?);
    }
    Ok(all)
}

fn report(args: &LoadArgs, outcome: &Outcome) -> LoadReport {
    let Outcome {
        scheduled,
        established,
        elapsed_s,
        tally,
    } = outcome;
    let (scheduled, established) = (*scheduled, *established);
    let seconds = args.duration.as_secs_f64();
    let elapsed_s = elapsed_s.max(seconds);
    let latency = CLASSES
        .iter()
        .zip(&tally.latency)
        .zip(tally.in_window)
        .map(|((name, h), in_window)| (name.to_string(), Percentiles::of(h, in_window, seconds)))
        .collect();
    let whole_seconds = args.duration.as_secs_f64().ceil() as usize;
    let series = tally
        .seconds
        .iter()
        .take(whole_seconds)
        .enumerate()
        .map(|(i, s)| {
            let p99 = |h: &hdrhistogram::Histogram<u64>| {
                if h.is_empty() {
                    0.0
                } else {
                    h.value_at_quantile(0.99) as f64 / 1e3
                }
            };
            SecondReport {
                second: i,
                ok: s.responses[0],
                shed: s.responses[1],
                other: s.responses[2],
                errors: s.errors,
                p99_ok_ms: p99(&s.latency[0]),
                p99_shed_ms: p99(&s.latency[1]),
            }
        })
        .collect();
    LoadReport {
        url: args.url.clone(),
        protocol: if args.http2 { "http2" } else { "http1" }.into(),
        connections: args.connections,
        concurrency: if args.http2 {
            args.connections * args.streams_per_connection
        } else {
            args.connections
        },
        processes: args.processes,
        duration_s: seconds,
        warmup_s: args.warmup.as_secs_f64(),
        scheduled,
        offered_rate: scheduled as f64 / seconds,
        achieved_rate: tally.in_window.iter().sum::<u64>() as f64 / seconds,
        elapsed_s,
        send_lag_p99_ms: (!tally.send_lag.is_empty())
            .then(|| tally.send_lag.value_at_quantile(0.99) as f64 / 1e3),
        connections_established: established,
        statuses: tally.statuses.clone(),
        latency,
        connect_errors: tally.connect_errors,
        timeouts: tally.timeouts,
        other_errors: tally.other_errors,
        series,
    }
}

/// The report as the table `load` prints.
pub fn render(r: &LoadReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nspillway load {}: {}, {} connections ({} concurrent), {} process(es), {}s after {}s \
         of warm-up",
        r.url,
        if r.protocol == "http2" {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        },
        r.connections,
        r.concurrency,
        r.processes,
        r.duration_s,
        r.warmup_s
    );
    let _ = writeln!(
        s,
        "offered {:.1}/s  achieved {:.1}/s (last answer after {:.2}s)  scheduled {}  connections \
         established {}  generator lag p99 {}",
        r.offered_rate,
        r.achieved_rate,
        r.elapsed_s,
        r.scheduled,
        r.connections_established,
        r.send_lag_p99_ms
            .map_or("- (every lane was busy)".to_string(), |ms| format!(
                "{ms:.2} ms"
            ))
    );
    let _ = writeln!(
        s,
        "{:<6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "class", "count", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for class in CLASSES {
        let p = &r.latency[class];
        let _ = writeln!(
            s,
            "{:<6} {:>10} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            class, p.count, p.rate, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
        );
    }
    let statuses: Vec<String> = r
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect();
    let _ = writeln!(s, "statuses: {}", statuses.join(", "));
    let _ = writeln!(
        s,
        "errors: connect {}, timeout {}, other {}",
        r.connect_errors, r.timeouts, r.other_errors
    );
    if std::io::stdout().is_terminal() {
        let _ = writeln!(
            s,
            "(latency counts from each request's due time when its lane was busy, else from its \
             send; the generator's own lag is reported apart)"
        );
    }
    s
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
