//! Counters, latency histograms and [`Snapshot`] (exported to Prometheus by `prometheus.rs`).
//!
//! Recording is cheap and nearly contention-free. The counters every job moves (submitted,
//! started, ended after it started, completed) are sharded by OS thread like the histograms
//! (threads take shards in turn), so a submitter and a worker on two threads never write one
//! cache line: a contended `fetch_add` costs a cache-line transfer, several times an
//! uncontended one. The rarer counters (shed, cancelled, expired, ...) each sit on a cache line
//! of their own. Latencies go into HDR histograms sharded the same way, so a tokio worker
//! thread nearly always takes an uncontended lock (one per job, for all three timings).
//! Reading ([`Snapshot`]) sums and merges the shards.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;

use crate::job::Outcome;
use crate::limit::ended::nanos;
use crate::priority::{PRIORITIES, Priority};
use crate::sync::lock_std;

/// Highest latency the histograms resolve (one hour); longer ones count as one hour.
const MAX_NANOS: u64 = 3_600 * 1_000_000_000;

#[derive(Debug, Default)]
pub(crate) struct Counter(CachePadded<AtomicU64>);

impl Counter {
    // SeqCst so that `Shared::snapshot` can order its reads; on x86 the increment is a locked
    // add either way and the load a plain move.
    #[inline]
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Timings {
    pub(crate) queue_wait: Histogram<u64>,
    pub(crate) run: Histogram<u64>,
    pub(crate) total: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NANOS, 2).expect("static histogram bounds are valid")
}

impl Timings {
    fn new() -> Self {
        Timings {
            queue_wait: histogram(),
            run: histogram(),
            total: histogram(),
        }
    }

    fn add(&mut self, other: &Timings) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.queue_wait.add(&other.queue_wait);
        let _ = self.run.add(&other.run);
        let _ = self.total.add(&other.total);
    }
}

/// One priority's rarer counters: outcomes other than completed, and shed submissions. The
/// counters every job moves are in [`Hot`].
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub(crate) panicked: Counter,
    pub(crate) cancelled: Counter,
    pub(crate) expired: Counter,
    pub(crate) displaced: Counter,
    pub(crate) abandoned: Counter,
    pub(crate) timed_out: Counter,
    pub(crate) shed_full: Counter,
    pub(crate) shed_closed: Counter,
    pub(crate) shed_expired: Counter,
    /// Jobs that ended otherwise than completed after they started (a worker took them, or
    /// they ran inline): with [`Hot`]'s counts, what tells how many run now.
    stopped: Counter,
}

/// One priority's counters that every job moves, in one shard: summed over the shards at read
/// time. Each only grows (wrapping), so a sum read at any instant is a count some instant had.
#[derive(Debug, Default)]
struct Hot {
    submitted: AtomicU64,
    completed: AtomicU64,
    /// Jobs taken by a worker or run inline: `started - completed - Lane::stopped` run now.
    started: AtomicU64,
}

/// What a read of the hot counters of one priority needs.
type HotField = fn(&Hot) -> &AtomicU64;

impl Lane {
    /// Counts `outcome`, except `Completed`: that one is a [`Hot`] counter.
    fn count(&self, outcome: Outcome) {
        match outcome {
            Outcome::Completed => {}
            Outcome::Panicked => self.panicked.inc(),
            Outcome::Cancelled => self.cancelled.inc(),
            Outcome::Expired => self.expired.inc(),
            Outcome::Displaced => self.displaced.inc(),
            Outcome::Abandoned => self.abandoned.inc(),
            Outcome::TimedOut => self.timed_out.inc(),
        }
    }

    /// Jobs of this priority that ended, given `completed`, and how many of them were
    /// abandoned.
    fn ended(&self, completed: u64) -> (u64, u64) {
        let abandoned = self.abandoned.get();
        let others = completed
            + self.panicked.get()
            + self.cancelled.get()
            + self.expired.get()
            + self.displaced.get()
            + self.timed_out.get();
        (others + abandoned, abandoned)
    }

    /// The counts, given `submitted` (read first), `queued` (read next), `busy` and then
    /// `completed` (read next, in the order a job moves): the rest is read after them, so a
    /// moving job may be seen twice.
    fn read(&self, submitted: u64, queued: usize, busy: usize, completed: u64) -> PriorityCounts {
        PriorityCounts {
            queued,
            busy,
            submitted,
            completed,
            panicked: self.panicked.get(),
            cancelled: self.cancelled.get(),
            expired: self.expired.get(),
            displaced: self.displaced.get(),
            abandoned: self.abandoned.get(),
            timed_out: self.timed_out.get(),
            shed_full: self.shed_full.get(),
            shed_closed: self.shed_closed.get(),
            shed_expired: self.shed_expired.get(),
        }
    }
}

/// `X`: what the pool keeps per shard besides the timings (the concurrency limit's samples of
/// inline jobs), under the same lock, so that a job's end takes one lock for both.
#[derive(Debug)]
pub(crate) struct Metrics<X = ()> {
    /// Indexed by [`Priority::index`].
    lanes: [Lane; PRIORITIES],
    /// The counters every job moves, per shard of threads, each indexed by [`Priority::index`].
    hot: Box<[CachePadded<[Hot; PRIORITIES]>]>,
    shards: Box<[CachePadded<Mutex<Shard<X>>>]>,
}

/// One shard: the timings of the jobs that ended on its threads, and the pool's own `X`.
#[derive(Debug)]
struct Shard<X> {
    timings: Timings,
    kept: X,
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD: Cell<usize> = Cell::new(NEXT_SHARD.fetch_add(1, Ordering::Relaxed));
}

/// How many shards per-thread state is split into: one per core, 1 to 16, rounded up to a power
/// of two so that [`shard`] is a mask, not a division (several per job: a division costs tens of
/// cycles).
pub(crate) fn shards() -> usize {
    std::thread::available_parallelism()
        .map_or(4, usize::from)
        .clamp(1, 16)
        .next_power_of_two()
}

/// The shard of the calling thread among `len`, a power of two from [`shards`] (threads take
/// shards in turn).
#[inline]
pub(crate) fn shard(len: usize) -> usize {
    debug_assert!(len.is_power_of_two(), "shard counts come from shards()");
    SHARD.with(Cell::get) & (len - 1)
}

impl<X: Default> Metrics<X> {
    pub(crate) fn new() -> Self {
        let shards = shards();
        Metrics {
            lanes: Default::default(),
            hot: (0..shards).map(|_| CachePadded::default()).collect(),
            shards: (0..shards)
                .map(|_| {
                    CachePadded::new(Mutex::new(Shard {
                        timings: Timings::new(),
                        kept: X::default(),
                    }))
                })
                .collect(),
        }
    }

    /// The counters of `priority`.
    #[inline]
    pub(crate) fn lane(&self, priority: Priority) -> &Lane {
        &self.lanes[priority.index()]
    }

    /// The calling thread's shard of the hot counters of `priority`.
    #[inline]
    fn hot(&self, priority: Priority) -> &Hot {
        &self.hot[shard(self.hot.len())][priority.index()]
    }

    /// The sum over the shards of one hot counter of the lane `index`.
    fn sum(&self, index: usize, field: HotField) -> u64 {
        self.hot.iter().fold(0, |sum, shard| {
            sum.wrapping_add(field(&shard[index]).load(Ordering::SeqCst))
        })
    }

    /// A job of `priority` was admitted.
    #[inline]
    pub(crate) fn admitted(&self, priority: Priority) {
        self.hot(priority).submitted.fetch_add(1, Ordering::SeqCst);
    }

    /// A job of `priority` was taken by a worker: it counts busy until [`record`](Self::record)
    /// or [`stopped`](Self::stopped).
    pub(crate) fn started(&self, priority: Priority) {
        self.hot(priority).started.fetch_add(1, Ordering::SeqCst);
    }

    /// A started job of `priority` ended with `outcome`: counted, and so no longer busy. One
    /// increment for a completed job, the common end.
    fn left(&self, priority: Priority, outcome: Outcome) {
        if outcome == Outcome::Completed {
            self.hot(priority).completed.fetch_add(1, Ordering::SeqCst);
        } else {
            let lane = self.lane(priority);
            lane.stopped.inc();
            lane.count(outcome);
        }
    }

    /// Counts a job that reached a worker, and its timings. `run` is `None` when the job body
    /// did not run (expired, cancelled): then only its queue wait is recorded. A job that timed
    /// out ran until the timeout: that is its run time.
    pub(crate) fn record(
        &self,
        priority: Priority,
        outcome: Outcome,
        queue_wait: Duration,
        run: Option<Duration>,
    ) {
        self.record_with(priority, outcome, queue_wait, run, |_| ());
    }

    /// [`record`](Self::record), and `with` the calling thread's shard of `X`, under the lock
    /// the timings take anyway (run before the job is counted).
    pub(crate) fn record_with(
        &self,
        priority: Priority,
        outcome: Outcome,
        queue_wait: Duration,
        run: Option<Duration>,
        with: impl FnOnce(&mut X),
    ) {
        {
            let mut shard = lock_std(&self.shards[shard(self.shards.len())]);
            let timings = &mut shard.timings;
            timings.queue_wait.saturating_record(nanos(queue_wait));
            if let Some(run) = run {
                timings.run.saturating_record(nanos(run));
                timings.total.saturating_record(nanos(queue_wait + run));
            }
            with(&mut shard.kept);
        }
        self.left(priority, outcome);
    }

    /// A taken job of `priority` was dropped unfinished by a shutdown; counted by `outcome`.
    pub(crate) fn stopped(&self, priority: Priority, outcome: Outcome) {
        self.left(priority, outcome);
    }

    /// Counts one job of `priority` that ended without reaching a worker, by its outcome.
    pub(crate) fn count(&self, priority: Priority, outcome: Outcome) {
        debug_assert_ne!(
            outcome,
            Outcome::Completed,
            "a job completes only once started"
        );
        self.lane(priority).count(outcome);
    }

    pub(crate) fn timings(&self) -> Timings {
        let mut merged = Timings::new();
        for shard in self.shards.iter() {
            merged.add(&lock_std(shard).timings);
        }
        merged
    }

    /// Jobs that ended, and how many of them were abandoned.
    pub(crate) fn ended(&self) -> (u64, u64) {
        self.lanes
            .iter()
            .enumerate()
            .map(|(i, lane)| lane.ended(self.sum(i, |h| &h.completed)))
            .fold((0, 0), |(e, a), (le, la)| (e + le, a + la))
    }

    /// Jobs admitted per priority (indexed as the lanes): read first in a snapshot.
    pub(crate) fn submitted(&self) -> [u64; PRIORITIES] {
        std::array::from_fn(|i| self.sum(i, |h| &h.submitted))
    }

    /// Jobs of the lane `index` running: the ends are read before the starts, so a job that
    /// ends meanwhile may be seen busy, never one that runs missed.
    fn busy(&self, index: usize) -> usize {
        let left = self.lanes[index]
            .stopped
            .get()
            .wrapping_add(self.sum(index, |h| &h.completed));
        let started = self.sum(index, |h| &h.started);
        usize::try_from(started.wrapping_sub(left)).unwrap_or(usize::MAX)
    }

    /// The counts per priority, given what was read before them (indexed as the lanes).
    pub(crate) fn by_priority(
        &self,
        submitted: [u64; PRIORITIES],
        queued: [usize; PRIORITIES],
    ) -> ByPriority {
        ByPriority::new(std::array::from_fn(|i| {
            let busy = self.busy(i);
            let completed = self.sum(i, |h| &h.completed);
            self.lanes[i].read(submitted[i], queued[i], busy, completed)
        }))
    }
}

/// A latency distribution: percentiles, not only a mean.
///
/// Values are accurate to two significant digits (HDR histogram); an empty distribution reports
/// zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let at = |q: f64| Duration::from_nanos(h.value_at_quantile(q));
        Latency {
            count: h.len(),
            mean: Duration::from_nanos(h.mean() as u64),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_nanos(h.max()),
        }
    }
}

/// A point-in-time view of a pool's gauges, counters and latencies. See [`Pool::metrics`].
///
/// Every admitted job is counted exactly once when it ends, so once the pool is quiet
///
/// ```text
/// submitted == completed + panicked + cancelled + expired + displaced + timed_out + abandoned
///              + queued + busy
/// ```
///
/// and the same holds for each priority in [`Snapshot::by_priority`].
///
/// ([`Snapshot::unaccounted`] is the difference, and is zero then). Shed submissions were
/// never admitted and are counted apart. While jobs move, a snapshot can show a job in two places
/// for an instant, never in none.
///
/// The three latency distributions are measured from the moment the job was admitted: `queue_wait`
/// until a worker took it, `run_time` for the job body, `total` for both. `total` is the figure a
/// caller feels: a pool that reports only the job body hides the time spent queued.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = spillway::Pool::builder().build().unwrap();
/// pool.submit(async {}).await.unwrap().await.unwrap();
/// let m = pool.metrics();
/// assert_eq!((m.submitted, m.completed, m.unaccounted()), (1, 1, 0));
/// assert_eq!(m.total.count, 1);
/// # }
/// ```
///
/// [`Pool::metrics`]: crate::Pool::metrics
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The pool's name (the `pool` label in Prometheus).
    pub name: String,
    /// Worker tasks alive.
    pub workers: usize,
    /// Jobs running: on a worker, or inline on the task that awaits them
    /// ([`Pool::run`](crate::Pool::run)). At most the concurrency limit.
    pub busy: usize,
    /// Jobs admitted and waiting for a worker.
    pub queued: usize,
    /// The most jobs that can wait at once.
    pub queue_capacity: usize,
    /// Upper bound on workers.
    pub max_workers: usize,
    /// The concurrency limit now: at most this many jobs run at once. It moves within
    /// `min_workers..=max_workers`, and is at least 1 (the adaptive limit: at least one job per
    /// thread of the pool's runtime, within `max_workers`; see [`Limit`](crate::Limit));
    /// `max_workers` for [`Limit::fixed`](crate::Limit::fixed).
    pub limit: usize,
    /// Jobs admitted.
    pub submitted: u64,
    /// Jobs that returned a value.
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs whose handle was dropped or aborted first.
    pub cancelled: u64,
    /// Jobs that waited longer than `queue_timeout`, or past their deadline, and were not run.
    pub expired: u64,
    /// Jobs dropped when a shutdown deadline passed.
    pub abandoned: u64,
    /// Jobs still running when the [run timeout](crate::Builder::run_timeout) passed, dropped
    /// unfinished.
    pub timed_out: u64,
    /// Submissions shed because the queue was full (including `submit_timeout` timeouts).
    pub shed_full: u64,
    /// Submissions shed because the pool was closed.
    pub shed_closed: u64,
    /// Submissions refused because their deadline had passed already (never admitted).
    pub shed_expired: u64,
    /// Queued jobs pushed out of a full queue by a job of higher priority (each also counted in
    /// `submitted`, and ended by this outcome).
    pub displaced: u64,
    /// The same counts, and the queued and busy gauges, per [`Priority`].
    pub by_priority: ByPriority,
    /// Admission to start.
    pub queue_wait: Latency,
    /// Start to end of the job body.
    pub run_time: Latency,
    /// Admission to end: what the caller waits.
    pub total: Latency,
}

impl Snapshot {
    /// Jobs admitted and not yet ended: `queued + busy`.
    pub fn in_flight(&self) -> u64 {
        (self.queued + self.busy) as u64
    }

    /// Jobs that ended, whatever the outcome (the sum over the priorities).
    pub fn ended(&self) -> u64 {
        self.by_priority.iter().map(|(_, c)| c.ended()).sum()
    }

    /// Submissions shed (refused, never admitted), for any reason.
    pub fn shed(&self) -> u64 {
        self.shed_full + self.shed_closed + self.shed_expired
    }

    /// `submitted - ended - in_flight`: zero whenever the pool is quiet. A job is never lost, so a
    /// non-zero value at rest is a bug.
    pub fn unaccounted(&self) -> i64 {
        self.submitted as i64 - self.ended() as i64 - self.in_flight() as i64
    }
}

/// One priority's share of a [`Snapshot`]: the same counters and gauges, for its jobs only.
///
/// The accounting identity holds per priority: once the pool is quiet,
/// [`unaccounted`](Self::unaccounted) is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PriorityCounts {
    /// Jobs of this priority waiting for a worker.
    pub queued: usize,
    /// Jobs of this priority running.
    pub busy: usize,
    /// Jobs admitted.
    pub submitted: u64,
    /// Jobs that returned a value.
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs whose handle was dropped or aborted first.
    pub cancelled: u64,
    /// Jobs that waited past `queue_timeout` or their deadline and were not run.
    pub expired: u64,
    /// Jobs pushed out of a full queue by a job of higher priority.
    pub displaced: u64,
    /// Jobs dropped when a shutdown deadline passed.
    pub abandoned: u64,
    /// Jobs still running when the run timeout passed.
    pub timed_out: u64,
    /// Submissions shed because the queue was full.
    pub shed_full: u64,
    /// Submissions shed because the pool was closed.
    pub shed_closed: u64,
    /// Submissions refused because their deadline had passed already.
    pub shed_expired: u64,
}

impl PriorityCounts {
    /// Jobs that ended, whatever the outcome.
    pub fn ended(&self) -> u64 {
        self.completed
            + self.panicked
            + self.cancelled
            + self.expired
            + self.displaced
            + self.timed_out
            + self.abandoned
    }

    /// Jobs admitted and not yet ended: `queued + busy`.
    pub fn in_flight(&self) -> u64 {
        (self.queued + self.busy) as u64
    }

    /// `submitted - ended - in_flight`: zero whenever the pool is quiet.
    pub fn unaccounted(&self) -> i64 {
        self.submitted as i64 - self.ended() as i64 - self.in_flight() as i64
    }
}

/// [`PriorityCounts`] for each [`Priority`]: index it with a priority.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{Pool, Priority};
///
/// let pool = Pool::builder().build().unwrap();
/// pool.try_submit_with(Priority::Low, async {}).unwrap().await.unwrap();
/// let m = pool.metrics();
/// assert_eq!(m.by_priority[Priority::Low].completed, 1);
/// assert_eq!(m.by_priority[Priority::Critical].submitted, 0);
/// for (priority, counts) in m.by_priority.iter() {
///     assert_eq!(counts.unaccounted(), 0, "{priority}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByPriority([PriorityCounts; PRIORITIES]);

impl ByPriority {
    pub(crate) fn new(counts: [PriorityCounts; PRIORITIES]) -> Self {
        ByPriority(counts)
    }

    /// Each priority with its counts, highest first.
    pub fn iter(&self) -> impl Iterator<Item = (Priority, &PriorityCounts)> + '_ {
        Priority::ALL.into_iter().map(|p| (p, &self[p]))
    }
}

impl std::ops::Index<Priority> for ByPriority {
    type Output = PriorityCounts;

    fn index(&self, priority: Priority) -> &PriorityCounts {
        &self.0[priority.index()]
    }
}
