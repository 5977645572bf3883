//! The figures the dashboard charts, common to `serve` and `simulate`. Each producer adds
//! its own details beside them (flattened into the same JSON object).

use serde::Serialize;

/// One tick of the live view, as JSON. The fields are documented in `docs/live.md`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Frame<D> {
    /// Seconds since the producer started (the server, or the mode's run).
    pub(crate) t_s: f64,
    /// `serving` or `draining` (serve); `running` or `finished` (simulate).
    pub(crate) state: &'static str,
    /// The mode running (`pool`, `semaphore`, `naive`, `pool-adaptive`, ...).
    pub(crate) mode: String,
    /// The settings, in words, for the page's header.
    pub(crate) summary: String,
    /// Rates over the tick.
    pub(crate) rates: Rates,
    /// Requests (serve) or jobs (simulate) received and not yet answered.
    pub(crate) in_flight: u64,
    /// Jobs admitted and waiting for a worker (pool modes).
    pub(crate) queued: Option<u64>,
    /// The pool's concurrency limit now (pool modes).
    pub(crate) limit: Option<u64>,
    /// Worker tasks alive (pool modes).
    pub(crate) workers: Option<u64>,
    /// Latency percentiles over the tick.
    pub(crate) latency_ms: WindowLatency,
    /// Resident memory of the process, in bytes, where the platform tells it.
    pub(crate) rss_bytes: Option<u64>,
    /// The producer's own details.
    #[serde(flatten)]
    pub(crate) detail: D,
}

/// Per-second rates over one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Rates {
    /// Seconds the tick lasted: each rate is its count divided by this.
    pub(crate) span_s: f64,
    /// Requests or jobs offered.
    pub(crate) offered_per_s: f64,
    /// Completed successfully, whatever their latency.
    pub(crate) completed_per_s: f64,
    /// Completed within the deadline.
    pub(crate) goodput_per_s: f64,
    /// Shed: refused for lack of room.
    pub(crate) shed_per_s: f64,
}

impl Rates {
    /// The rates of these counts over `span_s` seconds.
    pub(crate) fn over(span_s: f64, offered: u64, completed: u64, goodput: u64, shed: u64) -> Self {
        let per_s = |n: u64| n as f64 / span_s.max(1e-3);
        Rates {
            span_s,
            offered_per_s: per_s(offered),
            completed_per_s: per_s(completed),
            goodput_per_s: per_s(goodput),
            shed_per_s: per_s(shed),
        }
    }
}

/// Latency percentiles of the requests answered during one tick, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct WindowLatency {
    /// Admitted and completed.
    pub(crate) admitted: Percentiles,
    /// Shed.
    pub(crate) shed: Percentiles,
}

/// Percentiles of one tick's latencies, in milliseconds; `null` when there were none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    /// Samples in the tick.
    pub(crate) count: u64,
    /// Median.
    pub(crate) p50: Option<f64>,
    /// 99th percentile.
    pub(crate) p99: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_divide_counts_by_the_span() {
        let r = Rates::over(0.5, 100, 40, 30, 60);
        assert_eq!(
            (
                r.offered_per_s,
                r.completed_per_s,
                r.goodput_per_s,
                r.shed_per_s
            ),
            (200.0, 80.0, 60.0, 120.0)
        );
        assert_eq!(
            Rates::over(0.0, 1, 0, 0, 0).offered_per_s,
            1000.0,
            "no division by zero"
        );
    }

    #[test]
    fn details_sit_beside_the_charted_fields() {
        #[derive(Serialize)]
        struct Detail {
            extra: u8,
        }
        let frame = Frame {
            t_s: 1.5,
            state: "serving",
            mode: "pool".into(),
            summary: String::new(),
            rates: Rates::default(),
            in_flight: 3,
            queued: None,
            limit: Some(8),
            workers: None,
            latency_ms: WindowLatency::default(),
            rss_bytes: None,
            detail: Detail { extra: 7 },
        };
        let json = serde_json::to_value(&frame).unwrap();
        assert_eq!(json["extra"], 7);
        assert_eq!(json["limit"], 8);
        assert!(json["queued"].is_null());
        assert!(json["latency_ms"]["shed"]["p99"].is_null());
    }
}
