//! The serve-specific part of a live frame: the HTTP counters and the pool's
//! [`spillway::Snapshot`], copied into serde structs here (the library stays free of serde).
//! Every field is documented in `docs/live.md`.

use std::time::Duration;

use serde::Serialize;

/// What `serve` adds to each frame.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServeDetail {
    /// The HTTP server's counters since it started.
    pub(crate) http: HttpCounters,
    /// The pool's snapshot (pool mode; `null` in the other modes).
    pub(crate) pool: Option<PoolView>,
}

/// The HTTP server's counters, as in `/metrics` (`spillway_http_*`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct HttpCounters {
    /// Client connections open now.
    pub(crate) connections_open: i64,
    /// Client connections accepted.
    pub(crate) connections: u64,
    /// Failed accepts.
    pub(crate) accept_errors: u64,
    /// Requests received and not yet answered (any route; an `/events` stream counts until
    /// its headers are sent).
    pub(crate) requests_in_flight: i64,
    /// `/work` requests received.
    pub(crate) work_requests: u64,
    /// Requests answered (any route, any status).
    pub(crate) answered: u64,
    /// Requests answered 503 because the pool had no room.
    pub(crate) shed: u64,
    /// Requests whose client left before the answer.
    pub(crate) cancelled: u64,
    /// Requests still in flight when the drain deadline passed.
    pub(crate) abandoned: u64,
    /// `/events` streams open now.
    pub(crate) event_subscribers: i64,
    /// `/events` streams dropped for falling behind.
    pub(crate) event_subscribers_dropped: u64,
}

/// [`spillway::Snapshot`], field for field, with its latencies in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PoolView {
    /// The pool's name.
    pub(crate) name: String,
    /// Worker tasks alive.
    pub(crate) workers: usize,
    /// Workers running a job.
    pub(crate) busy: usize,
    /// Jobs admitted and waiting for a worker.
    pub(crate) queued: usize,
    /// The most jobs that can wait at once.
    pub(crate) queue_capacity: usize,
    /// Upper bound on workers.
    pub(crate) max_workers: usize,
    /// The concurrency limit now.
    pub(crate) limit: usize,
    /// Jobs admitted.
    pub(crate) submitted: u64,
    /// Jobs that returned a value.
    pub(crate) completed: u64,
    /// Jobs that panicked.
    pub(crate) panicked: u64,
    /// Jobs whose handle was dropped first.
    pub(crate) cancelled: u64,
    /// Jobs that waited longer than the queue timeout and were not run.
    pub(crate) expired: u64,
    /// Jobs dropped when a shutdown deadline passed.
    pub(crate) abandoned: u64,
    /// Submissions shed because the queue was full.
    pub(crate) shed_full: u64,
    /// Submissions shed because the pool was closed.
    pub(crate) shed_closed: u64,
    /// Admission to start, since the pool started.
    pub(crate) queue_wait: LatencyView,
    /// The job body, since the pool started.
    pub(crate) run_time: LatencyView,
    /// Admission to end, since the pool started.
    pub(crate) total: LatencyView,
}

impl From<&spillway::Snapshot> for PoolView {
    fn from(s: &spillway::Snapshot) -> Self {
        PoolView {
            name: s.name.clone(),
            workers: s.workers,
            busy: s.busy,
            queued: s.queued,
            queue_capacity: s.queue_capacity,
            max_workers: s.max_workers,
            limit: s.limit,
            submitted: s.submitted,
            completed: s.completed,
            panicked: s.panicked,
            cancelled: s.cancelled,
            expired: s.expired,
            abandoned: s.abandoned,
            shed_full: s.shed_full,
            shed_closed: s.shed_closed,
            queue_wait: (&s.queue_wait).into(),
            run_time: (&s.run_time).into(),
            total: (&s.total).into(),
        }
    }
}

/// [`spillway::Latency`] in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LatencyView {
    /// Samples.
    pub(crate) count: u64,
    /// Mean.
    pub(crate) mean_ms: f64,
    /// Median.
    pub(crate) p50_ms: f64,
    /// 90th percentile.
    pub(crate) p90_ms: f64,
    /// 99th percentile.
    pub(crate) p99_ms: f64,
    /// 99.9th percentile.
    pub(crate) p999_ms: f64,
    /// Largest.
    pub(crate) max_ms: f64,
}

impl From<&spillway::Latency> for LatencyView {
    fn from(l: &spillway::Latency) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        LatencyView {
            count: l.count,
            mean_ms: ms(l.mean),
            p50_ms: ms(l.p50),
            p90_ms: ms(l.p90),
            p99_ms: ms(l.p99),
            p999_ms: ms(l.p999),
            max_ms: ms(l.max),
        }
    }
}
