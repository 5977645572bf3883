//! The pool as a `prometheus-client` collector: read at scrape time, nothing to update.

use std::sync::Weak;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::state::Shared;

/// Upper bounds, in seconds, of the exported latency buckets.
const BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Reads one pool at each scrape. Holds it weakly: the registry does not keep the pool alive.
#[derive(Debug)]
pub(crate) struct PoolCollector {
    shared: Weak<Shared>,
}

impl PoolCollector {
    pub(crate) fn new(shared: Weak<Shared>) -> Self {
        PoolCollector { shared }
    }
}

fn buckets(h: &Histogram<u64>) -> (f64, Vec<(f64, u64)>) {
    let mut counts: Vec<(f64, u64)> = BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .map(|le| (le, 0))
        .collect();
    let mut sum = 0.0;
    for v in h.iter_recorded() {
        let secs = h.highest_equivalent(v.value_iterated_to()) as f64 / 1e9;
        sum += secs * v.count_at_value() as f64;
        let slot = counts
            .iter()
            .position(|(le, _)| secs <= *le)
            .unwrap_or(BUCKETS.len());
        counts[slot].1 += v.count_at_value();
    }
    (sum, counts)
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let snap = shared.snapshot();
        let pool = [("pool", snap.name.as_str())];

        let gauges: [(&str, &str, usize); 5] = [
            ("spillway_workers", "Worker tasks alive.", snap.workers),
            ("spillway_workers_busy", "Workers running a job.", snap.busy),
            (
                "spillway_workers_max",
                "Upper bound on workers.",
                snap.max_workers,
            ),
            (
                "spillway_queue_depth",
                "Jobs waiting for a worker.",
                snap.queued,
            ),
            (
                "spillway_queue_capacity",
                "Most jobs that can wait.",
                snap.queue_capacity,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(family.encode_family(&pool)?)?;
        }

        let submitted = ConstCounter::new(snap.submitted);
        let mut family = encoder.encode_descriptor(
            "spillway_jobs_submitted",
            "Jobs admitted to the queue.",
            None,
            MetricType::Counter,
        )?;
        submitted.encode(family.encode_family(&pool)?)?;

        let mut family = encoder.encode_descriptor(
            "spillway_jobs_ended",
            "Admitted jobs that ended, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for (outcome, value) in [
            ("completed", snap.completed),
            ("panicked", snap.panicked),
            ("cancelled", snap.cancelled),
            ("expired", snap.expired),
            ("abandoned", snap.abandoned),
        ] {
            let labels = [("pool", snap.name.as_str()), ("outcome", outcome)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "spillway_jobs_shed",
            "Submissions shed (refused, never admitted), by reason: full or closed.",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [("full", snap.shed_full), ("closed", snap.shed_closed)] {
            let labels = [("pool", snap.name.as_str()), ("reason", reason)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }

        let timings = shared.timings();
        for (name, help, h) in [
            (
                "spillway_job_queue_wait_seconds",
                "Time from admission until a worker took the job.",
                &timings.queue_wait,
            ),
            (
                "spillway_job_run_seconds",
                "Time the job body ran.",
                &timings.run,
            ),
            (
                "spillway_job_total_seconds",
                "Time from admission to the end of the job: what the caller waits.",
                &timings.total,
            ),
        ] {
            let (sum, counts) = buckets(h);
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            family
                .encode_family(&pool)?
                .encode_histogram::<NoLabelSet>(sum, h.len(), &counts, None)?;
        }
        Ok(())
    }
}
