//! What a load run reports: the figures, built from the merged tally, and the table `load`
//! prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;

use serde::{Deserialize, Serialize};

use hdrhistogram::Histogram;

use super::LoadArgs;
use super::stats::{Percentiles, PriorityTally, SecondReport, Tally};
use crate::histogram::quantile_ms;
use crate::priority;
use crate::status::StatusClass;

/// The figures of a load run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The URL loaded.
    pub url: String,
    /// `http1` or `http2`.
    pub protocol: String,
    /// Connections asked for.
    pub connections: u64,
    /// Connections open when the schedule started: fewer than asked when the open-files
    /// limit, the ports or the server refused some.
    pub connections_opened: u64,
    /// Concurrent requests the open connections can carry (connections x streams for HTTP/2).
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
    /// Requests that went out per second within the measured part: below the offered rate
    /// when every lane was still busy.
    pub sent_rate: f64,
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
    /// Bytes of response bodies read (and discarded as they arrived), warm-up included.
    pub body_bytes: u64,
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
    /// The same figures for each priority sent (`--priority-mix`), keyed by its lowercase
    /// name (`critical`, `high`, `normal`, `low`); empty when no priorities were sent.
    pub by_priority: BTreeMap<String, PriorityReport>,
}

/// The figures of the requests sent at one priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityReport {
    /// The priority's share of the requests, as `--priority-mix` gave it.
    pub share: f64,
    /// Measured requests sent at this priority (answered or not).
    pub requests: u64,
    /// Those requests per second of the measured part.
    pub offered_rate: f64,
    /// 2xx responses per second that arrived within the measured part.
    pub goodput_per_s: f64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Latency by status class (`2xx`, `503`, `other`), as the run's (two significant
    /// digits).
    pub latency: BTreeMap<String, Percentiles>,
    /// Requests without a response (connect errors, timeouts, broken connections).
    pub errors: u64,
}

impl LoadReport {
    /// The percentiles of one class (`2xx`, `503` or `other`).
    pub fn class(&self, class: &str) -> &Percentiles {
        &self.latency[class]
    }
}

/// What one process, or all of them merged, recorded.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) scheduled: u64,
    pub(crate) established: u64,
    /// Connections open when the schedule started.
    pub(crate) opened: u64,
    pub(crate) body_bytes: u64,
    pub(crate) elapsed_s: f64,
    pub(crate) tally: Tally,
}

/// The report of a run with `args` that recorded `recorded`.
pub(crate) fn build(args: &LoadArgs, recorded: &Recorded) -> LoadReport {
    let Recorded {
        scheduled,
        established,
        opened,
        body_bytes,
        elapsed_s,
        tally,
    } = recorded;
    let seconds = args.duration.as_secs_f64();
    LoadReport {
        url: args.url.clone(),
        protocol: if args.http2 { "http2" } else { "http1" }.into(),
        connections: args.connections,
        connections_opened: *opened,
        concurrency: if args.http2 {
            opened * args.streams_per_connection
        } else {
            *opened
        },
        processes: args.processes,
        duration_s: seconds,
        warmup_s: args.warmup.as_secs_f64(),
        scheduled: *scheduled,
        offered_rate: *scheduled as f64 / seconds,
        sent_rate: tally.sent_in_window as f64 / seconds,
        achieved_rate: tally.in_window.iter().sum::<u64>() as f64 / seconds,
        elapsed_s: elapsed_s.max(seconds),
        send_lag_p99_ms: (!tally.send_lag.is_empty()).then(|| quantile_ms(&tally.send_lag, 0.99)),
        connections_established: *established,
        body_bytes: *body_bytes,
        statuses: tally.statuses.clone(),
        latency: latency_by_class(&tally.latency, &tally.in_window, seconds),
        connect_errors: tally.connect_errors,
        timeouts: tally.timeouts,
        other_errors: tally.other_errors,
        series: series(tally, seconds),
        by_priority: by_priority(args, tally, seconds),
    }
}

/// The figures of each priority `args` sent, keyed by its name.
fn by_priority(args: &LoadArgs, tally: &Tally, seconds: f64) -> BTreeMap<String, PriorityReport> {
    let Some(mix) = &args.priority_mix else {
        return BTreeMap::new();
    };
    let empty = PriorityTally::default();
    mix.shares()
        .iter()
        .map(|&(priority, share)| {
            let t = tally
                .by_priority
                .get(&priority::index(priority))
                .unwrap_or(&empty);
            let requests = t.statuses.values().sum::<u64>() + t.errors;
            let latency = latency_by_class(&t.latency, &t.in_window, seconds);
            let report = PriorityReport {
                share,
                requests,
                offered_rate: requests as f64 / seconds,
                goodput_per_s: latency[StatusClass::Ok.name()].rate,
                statuses: t.statuses.clone(),
                latency,
                errors: t.errors,
            };
            (priority.as_str().to_string(), report)
        })
        .collect()
}

/// Percentiles of each status class, rates over `seconds`.
fn latency_by_class(
    latency: &[Histogram<u64>; 3],
    in_window: &[u64; 3],
    seconds: f64,
) -> BTreeMap<String, Percentiles> {
    StatusClass::ALL
        .iter()
        .map(|class| {
            let c = class.index();
            let p = Percentiles::of(&latency[c], in_window[c], seconds);
            (class.name().to_string(), p)
        })
        .collect()
}

/// One line per second of the measured `seconds` (a started second counts).
fn series(tally: &Tally, seconds: f64) -> Vec<SecondReport> {
    let (ok, shed, other) = (
        StatusClass::Ok.index(),
        StatusClass::Shed.index(),
        StatusClass::Other.index(),
    );
    tally
        .seconds
        .iter()
        .take(seconds.ceil() as usize)
        .enumerate()
        .map(|(i, s)| SecondReport {
            second: i,
            ok: s.responses[ok],
            shed: s.responses[shed],
            other: s.responses[other],
            errors: s.errors,
            p99_ok_ms: quantile_ms(&s.latency[ok], 0.99),
            p99_shed_ms: quantile_ms(&s.latency[shed], 0.99),
        })
        .collect()
}

/// The report as the table `load` prints.
pub fn render(r: &LoadReport) -> String {
    let mut s = String::new();
    render_run(&mut s, r);
    render_classes(&mut s, r);
    render_errors(&mut s, r);
    render_priorities(&mut s, r);
    if std::io::stdout().is_terminal() {
        let _ = writeln!(
            s,
            "(latency counts from each request's due time when its lane was busy, else from its \
             send; the generator's own lag is reported apart)"
        );
    }
    s
}

/// What was run, and the rates.
fn render_run(s: &mut String, r: &LoadReport) {
    let _ = writeln!(
        s,
        "\nspillway load {}: {}, {} connections open of {} asked ({} concurrent), {} process(es), \
         {}s after {}s of warm-up",
        r.url,
        if r.protocol == "http2" {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        },
        r.connections_opened,
        r.connections,
        r.concurrency,
        r.processes,
        r.duration_s,
        r.warmup_s
    );
    let _ = writeln!(
        s,
        "offered {:.1}/s  sent {:.1}/s  achieved {:.1}/s (last answer after {:.2}s)  scheduled {}  \
         connections established {}  body bytes {}  generator lag p99 {}",
        r.offered_rate,
        r.sent_rate,
        r.achieved_rate,
        r.elapsed_s,
        r.scheduled,
        r.connections_established,
        r.body_bytes,
        r.send_lag_p99_ms
            .map_or("- (every lane was busy)".to_string(), |ms| format!(
                "{ms:.2} ms"
            ))
    );
}

/// One line of percentiles per status class.
fn render_classes(s: &mut String, r: &LoadReport) {
    let _ = writeln!(
        s,
        "{:<6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "class", "count", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for class in StatusClass::ALL.map(StatusClass::name) {
        let p = &r.latency[class];
        let _ = writeln!(
            s,
            "{:<6} {:>10} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            class, p.count, p.rate, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
        );
    }
}

/// The count of each status, and of each kind of error.
fn render_errors(s: &mut String, r: &LoadReport) {
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
}

/// One line per priority sent: its requests, goodput, statuses and 2xx latency.
fn render_priorities(s: &mut String, r: &LoadReport) {
    if r.by_priority.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "{:<9} {:>6} {:>9} {:>11} {:>8} {:>8} {:>8} {:>7} {:>10} {:>10}",
        "priority",
        "share",
        "requests",
        "goodput/s",
        "2xx",
        "503",
        "other",
        "errors",
        "2xx p50 ms",
        "2xx p99 ms"
    );
    let order = spillway::Priority::ALL.map(spillway::Priority::as_str);
    for name in order.iter().filter(|n| r.by_priority.contains_key(**n)) {
        let p = &r.by_priority[*name];
        let class = |c: StatusClass| p.latency[c.name()].count;
        let ok = &p.latency[StatusClass::Ok.name()];
        let _ = writeln!(
            s,
            "{:<9} {:>6} {:>9} {:>11.1} {:>8} {:>8} {:>8} {:>7} {:>10.2} {:>10.2}",
            name,
            p.share,
            p.requests,
            p.goodput_per_s,
            class(StatusClass::Ok),
            class(StatusClass::Shed),
            class(StatusClass::Other),
            p.errors,
            ok.p50_ms,
            ok.p99_ms
        );
    }
}
