//! Prometheus export: [`PoolMetrics`], one `prometheus-client` collector for any number of pools,
//! read at scrape time, nothing to update.
//!
//! A text exposition declares each metric family once (`# HELP`, `# TYPE`) and then lists its
//! samples; a strict OpenMetrics parser rejects a family declared twice. So the pools of one
//! registry share one collector, which writes each family once with one series per pool,
//! labelled `pool="<name>"`.

use std::sync::{Arc, Mutex, Weak};

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::metrics::{PriorityCounts, Snapshot, Timings};
use crate::pool::Pool;
use crate::state::Shared;
use crate::sync::lock_std;

/// Upper bounds, in seconds, of the exported latency buckets.
const BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Reads one gauge's value off a snapshot.
type Read = fn(&Snapshot) -> usize;

/// The gauges: name, help, reading.
const GAUGES: [(&str, &str, Read); 6] = [
    ("spillway_workers", "Worker tasks alive.", |s| s.workers),
    (
        "spillway_workers_busy",
        "Jobs running: on workers, or inline on their callers' tasks.",
        |s| s.busy,
    ),
    ("spillway_workers_max", "Upper bound on workers.", |s| {
        s.max_workers
    }),
    ("spillway_queue_depth", "Jobs waiting for a worker.", |s| {
        s.queued
    }),
    ("spillway_queue_capacity", "Most jobs that can wait.", |s| {
        s.queue_capacity
    }),
    (
        "spillway_limit",
        "The concurrency limit: most jobs running at once now.",
        |s| s.limit,
    ),
];

/// Reads one counter of a priority.
type ReadCount = fn(&PriorityCounts) -> u64;

/// A family of counters per priority: name, help, the label that tells its series apart (none
/// if empty), and each series' label value and reading.
type PriorityFamily = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, ReadCount)],
);

/// The counters per priority, beside the totals.
const PRIORITY_FAMILIES: [PriorityFamily; 3] = [
    (
        "spillway_priority_jobs_submitted",
        "Jobs admitted to the queue, by priority.",
        "",
        &[("", |c| c.submitted)],
    ),
    (
        "spillway_priority_jobs_ended",
        "Admitted jobs that ended, by priority and outcome.",
        "outcome",
        &[
            ("completed", |c| c.completed),
            ("panicked", |c| c.panicked),
            ("cancelled", |c| c.cancelled),
            ("expired", |c| c.expired),
            ("displaced", |c| c.displaced),
            ("timed_out", |c| c.timed_out),
            ("abandoned", |c| c.abandoned),
        ],
    ),
    (
        "spillway_priority_jobs_shed",
        "Submissions shed, by priority and reason: full, closed, or expired.",
        "reason",
        &[
            ("full", |c| c.shed_full),
            ("closed", |c| c.shed_closed),
            ("expired", |c| c.shed_expired),
        ],
    ),
];

/// The Prometheus metrics of a set of pools, exported through one `prometheus-client` registry:
/// each metric family is declared once, with one series per pool labelled `pool="<name>"` (give
/// the pools distinct [names](crate::Builder::name)).
///
/// Register it once; pools added later (before or after registration) join the same families.
/// It holds the pools weakly: the registry does not keep a pool alive, and a dropped pool's
/// series disappear. For a registry with a single pool, [`Pool::register_metrics`] is a shortcut.
///
/// Series: `spillway_workers`, `spillway_workers_busy`, `spillway_workers_max`,
/// `spillway_queue_depth`, `spillway_queue_capacity`, `spillway_limit` (gauges, saturating at `i64::MAX`);
/// `spillway_jobs_submitted_total`, `spillway_jobs_ended_total{outcome}`,
/// `spillway_jobs_shed_total{reason}` (counters), and the same per priority:
/// `spillway_priority_jobs_submitted_total{priority}`,
/// `spillway_priority_jobs_ended_total{priority,outcome}`,
/// `spillway_priority_jobs_shed_total{priority,reason}`; `spillway_job_queue_wait_seconds`,
/// `spillway_job_run_seconds`, `spillway_job_total_seconds` (histograms).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use prometheus_client::{encoding::text::encode, registry::Registry};
/// use spillway::{Pool, PoolMetrics};
///
/// let api = Pool::builder().name("api").build().unwrap();
/// let batch = Pool::builder().name("batch").build().unwrap();
/// let metrics = PoolMetrics::new();
/// metrics.add(&api);
/// metrics.add(&batch);
/// let mut registry = Registry::default();
/// metrics.register(&mut registry);
///
/// let mut text = String::new();
/// encode(&mut text, &registry).unwrap();
/// assert_eq!(text.matches("# TYPE spillway_workers gauge").count(), 1);
/// assert!(text.contains(r#"spillway_workers{pool="api"}"#));
/// assert!(text.contains(r#"spillway_workers{pool="batch"}"#));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PoolMetrics {
    pools: Arc<Mutex<Vec<Weak<Shared>>>>,
}

impl PoolMetrics {
    /// An empty set of pools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `pool` to the set (its series appear at the next scrape).
    pub fn add(&self, pool: &Pool) {
        let mut pools = lock_std(&self.pools);
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool.shared()));
    }

    /// Adds a [`BlockingPool`](crate::BlockingPool) to the set, as [`add`](Self::add).
    pub fn add_blocking(&self, pool: &crate::BlockingPool) {
        self.add(pool.pool());
    }

    /// Registers the set with `registry`, as one collector. Register it once per registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(PoolsCollector {
            pools: self.pools.clone(),
        }));
    }
}

impl Pool {
    /// Registers this pool's metrics with a `prometheus-client` registry, labelled
    /// `pool="<name>"` (the series are listed at [`PoolMetrics`]). They are read at scrape time;
    /// the registry does not keep the pool alive.
    ///
    /// Each call declares every family anew, so call it for one pool per registry: to export
    /// several pools from one registry, add them to one [`PoolMetrics`] instead.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    ///
    /// let pool = spillway::Pool::builder().name("api").build().unwrap();
    /// pool.submit(async {}).await.unwrap().await.unwrap();
    ///
    /// let mut registry = Registry::default();
    /// pool.register_metrics(&mut registry);
    /// let mut text = String::new();
    /// encode(&mut text, &registry).unwrap();
    /// assert!(text.contains(r#"spillway_jobs_ended_total{pool="api",outcome="completed"} 1"#));
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn register_metrics(&self, registry: &mut Registry) {
        let metrics = PoolMetrics::new();
        metrics.add(self);
        metrics.register(registry);
    }
}

/// Reads every live pool of a [`PoolMetrics`] at each scrape.
#[derive(Debug)]
struct PoolsCollector {
    pools: Arc<Mutex<Vec<Weak<Shared>>>>,
}

/// A gauge's value: counts beyond `i64::MAX` saturate instead of wrapping negative.
fn gauge(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
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

/// One pool as read at a scrape.
struct Reading {
    snap: Snapshot,
    timings: Timings,
}

impl Reading {
    fn pool(&self) -> [(&'static str, &str); 1] {
        [("pool", self.snap.name.as_str())]
    }
}

impl PoolsCollector {
    fn read(&self) -> Vec<Reading> {
        let pools: Vec<Arc<Shared>> = lock_std(&self.pools)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        pools
            .iter()
            .map(|shared| Reading {
                snap: shared.snapshot(),
                timings: shared.timings(),
            })
            .collect()
    }
}

fn encode_gauges(encoder: &mut DescriptorEncoder<'_>, pools: &[Reading]) -> std::fmt::Result {
    for (name, help, read) in GAUGES {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for pool in pools {
            ConstGauge::new(gauge(read(&pool.snap))).encode(family.encode_family(&pool.pool())?)?;
        }
    }
    Ok(())
}

fn encode_counters(encoder: &mut DescriptorEncoder<'_>, pools: &[Reading]) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(
        "spillway_jobs_submitted",
        "Jobs admitted to the queue.",
        None,
        MetricType::Counter,
    )?;
    for pool in pools {
        ConstCounter::new(pool.snap.submitted).encode(family.encode_family(&pool.pool())?)?;
    }

    let mut family = encoder.encode_descriptor(
        "spillway_jobs_ended",
        "Admitted jobs that ended, by outcome.",
        None,
        MetricType::Counter,
    )?;
    for pool in pools {
        let s = &pool.snap;
        for (outcome, value) in [
            ("completed", s.completed),
            ("panicked", s.panicked),
            ("cancelled", s.cancelled),
            ("expired", s.expired),
            ("displaced", s.displaced),
            ("timed_out", s.timed_out),
            ("abandoned", s.abandoned),
        ] {
            let labels = [("pool", s.name.as_str()), ("outcome", outcome)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
    }

    let mut family = encoder.encode_descriptor(
        "spillway_jobs_shed",
        "Submissions shed (refused, never admitted), by reason: full, closed, or expired \
         (deadline already passed).",
        None,
        MetricType::Counter,
    )?;
    for pool in pools {
        let s = &pool.snap;
        for (reason, value) in [
            ("full", s.shed_full),
            ("closed", s.shed_closed),
            ("expired", s.shed_expired),
        ] {
            let labels = [("pool", s.name.as_str()), ("reason", reason)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The same three counters, per priority (`priority="critical"|"high"|"normal"|"low"`).
fn encode_priority_counters(
    encoder: &mut DescriptorEncoder<'_>,
    pools: &[Reading],
) -> std::fmt::Result {
    for (name, help, key, series) in PRIORITY_FAMILIES {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for pool in pools {
            for (priority, counts) in pool.snap.by_priority.iter() {
                for (value, read) in series {
                    let mut labels = vec![("pool", pool.snap.name.as_str())];
                    labels.push(("priority", priority.as_str()));
                    if !key.is_empty() {
                        labels.push((key, value));
                    }
                    ConstCounter::new(read(counts)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
    }
    Ok(())
}

fn encode_histograms(encoder: &mut DescriptorEncoder<'_>, pools: &[Reading]) -> std::fmt::Result {
    type Pick = fn(&Timings) -> &Histogram<u64>;
    let histograms: [(&str, &str, Pick); 3] = [
        (
            "spillway_job_queue_wait_seconds",
            "Time from admission until a worker took the job.",
            |t| &t.queue_wait,
        ),
        ("spillway_job_run_seconds", "Time the job body ran.", |t| {
            &t.run
        }),
        (
            "spillway_job_total_seconds",
            "Time from admission to the end of the job: what the caller waits.",
            |t| &t.total,
        ),
    ];
    for (name, help, pick) in histograms {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for pool in pools {
            let h = pick(&pool.timings);
            let (sum, counts) = buckets(h);
            family
                .encode_family(&pool.pool())?
                .encode_histogram::<NoLabelSet>(sum, h.len(), &counts, None)?;
        }
    }
    Ok(())
}

impl Collector for PoolsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let pools = self.read();
        if pools.is_empty() {
            return Ok(()); // no family without a series
        }
        encode_gauges(&mut encoder, &pools)?;
        encode_counters(&mut encoder, &pools)?;
        encode_priority_counters(&mut encoder, &pools)?;
        encode_histograms(&mut encoder, &pools)
    }
}

#[cfg(all(test, not(spillway_loom)))]
mod tests {
    use super::*;

    #[test]
    fn gauges_saturate_instead_of_going_negative() {
        assert_eq!(gauge(usize::MAX), i64::MAX);
        assert_eq!(gauge(7), 7);
    }
}
