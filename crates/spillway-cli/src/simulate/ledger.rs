//! The ledger every mode's jobs report to: what was offered, shed and completed, the jobs in
//! flight (counted as they come and go, not derived from the rest, so that a job lost without
//! being counted shows up as an imbalance), and the latencies; all of it in total and for each
//! priority.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::histogram::{FINE, micros, micros_histogram, quantile_ms};

/// Counts and latencies of one mode's run. Latency runs from the job's scheduled offer time (not
/// the moment the generator got round to it) to its end: free of coordinated omission.
#[derive(Debug)]
pub(crate) struct Ledger {
    deadline: Duration,
    offered: AtomicU64,
    shed: AtomicU64,
    /// Jobs whose ticket was dropped by a panic.
    failed: AtomicU64,
    /// Jobs offered whose [`Ticket`] is still alive: queued or running.
    in_flight: AtomicU64,
    /// Offered and shed, for each priority by its index in `Priority::ALL`.
    offered_at: [AtomicU64; PRIORITIES],
    shed_at: [AtomicU64; PRIORITIES],
    book: Mutex<Book>,
}

/// How many priorities there are.
const PRIORITIES: usize = spillway::Priority::ALL.len();

/// Completions of one priority.
#[derive(Debug)]
struct PriorityBook {
    completed: u64,
    goodput: u64,
    all: Histogram<u64>,
}

/// What a completion changes, kept under one lock with the in-flight count's decrement so that
/// a reading never sees a job both completed and in flight.
#[derive(Debug)]
struct Book {
    completed: u64,
    goodput: u64,
    body_nanos: u64,
    all: Histogram<u64>,
    this_sample: Histogram<u64>,
    by_priority: [PriorityBook; PRIORITIES],
}

/// A reading of the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) offered: u64,
    pub(crate) shed: u64,
    pub(crate) failed: u64,
    pub(crate) completed: u64,
    pub(crate) goodput: u64,
    pub(crate) in_flight: u64,
}

/// A reading of one priority's part of the ledger.
#[derive(Debug, Clone)]
pub(crate) struct PriorityCounts {
    pub(crate) offered: u64,
    pub(crate) shed: u64,
    pub(crate) completed: u64,
    pub(crate) goodput: u64,
    /// The latencies of its completed jobs (microseconds).
    pub(crate) latency: Histogram<u64>,
}

/// One offered job's place in the ledger. It travels inside the job: completing the job settles
/// it; dropping it unsettled (the job was shed, expired or dropped with its runtime) takes the
/// job out of flight without counting it completed.
#[derive(Debug)]
pub(crate) struct Ticket {
    ledger: Arc<Ledger>,
    scheduled: Instant,
    /// The job's priority, by its index in `Priority::ALL`.
    priority: usize,
    settled: bool,
}

impl Ledger {
    pub(crate) fn new(deadline: Duration) -> Self {
        Ledger {
            deadline,
            offered: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            offered_at: Default::default(),
            shed_at: Default::default(),
            book: Mutex::new(Book {
                completed: 0,
                goodput: 0,
                body_nanos: 0,
                all: micros_histogram(FINE),
                this_sample: micros_histogram(FINE),
                by_priority: std::array::from_fn(|_| PriorityBook {
                    completed: 0,
                    goodput: 0,
                    all: micros_histogram(FINE),
                }),
            }),
        }
    }

    /// A job of the priority at `priority` (its index in `Priority::ALL`), scheduled at
    /// `scheduled`, is offered now: its ticket.
    pub(crate) fn offer(self: &Arc<Self>, scheduled: Instant, priority: usize) -> Ticket {
        self.offered.fetch_add(1, Ordering::Relaxed);
        self.offered_at[priority].fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Ticket {
            ledger: Arc::clone(self),
            scheduled,
            priority,
            settled: false,
        }
    }

    /// The job just offered, of the priority at `priority`, was shed (its ticket dropped with
    /// it).
    pub(crate) fn shed(&self, priority: usize) {
        self.shed.fetch_add(1, Ordering::Relaxed);
        self.shed_at[priority].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts and latencies of the priority at `priority`.
    #[cfg(test)]
    fn priority(&self, priority: usize) -> PriorityCounts {
        self.priority_in(&self.book(), priority)
    }

    fn priority_in(&self, book: &Book, priority: usize) -> PriorityCounts {
        let part = &book.by_priority[priority];
        PriorityCounts {
            offered: self.offered_at[priority].load(Ordering::Relaxed),
            shed: self.shed_at[priority].load(Ordering::Relaxed),
            completed: part.completed,
            goodput: part.goodput,
            latency: part.all.clone(),
        }
    }

    /// The counts now, and those of each priority (by index in `Priority::ALL`), read under
    /// one lock so that completions agree.
    pub(crate) fn counts_by_priority(&self) -> (Counts, Vec<PriorityCounts>) {
        let book = self.book();
        let each = (0..PRIORITIES)
            .map(|p| self.priority_in(&book, p))
            .collect();
        (self.counts_in(&book), each)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counts now; completions are read with the in-flight count, under one lock.
    pub(crate) fn counts(&self) -> Counts {
        self.counts_in(&self.book())
    }

    fn counts_in(&self, book: &Book) -> Counts {
        Counts {
            offered: self.offered.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            completed: book.completed,
            goodput: book.goodput,
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// The 99th percentile of the latencies recorded since the last call (one sample of the series), in ms.
    pub(crate) fn take_sample_p99_ms(&self) -> f64 {
        let mut book = self.book();
        let second = std::mem::replace(&mut book.this_sample, micros_histogram(FINE));
        quantile_ms(&second, 0.99)
    }

    /// A copy of the whole run's latency histogram (microseconds).
    pub(crate) fn latency(&self) -> Histogram<u64> {
        self.book().all.clone()
    }

    /// Mean job-body time in ms.
    pub(crate) fn body_mean_ms(&self) -> f64 {
        let book = self.book();
        if book.completed == 0 {
            return 0.0;
        }
        book.body_nanos as f64 / book.completed as f64 / 1e6
    }
}

impl Ticket {
    /// The job, whose body started at `body_start`, has just ended.
    pub(crate) fn completed(mut self, body_start: Instant) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(self.scheduled);
        let body = now.saturating_duration_since(body_start);
        let ledger = &self.ledger;
        let in_time = u64::from(latency <= ledger.deadline);
        let mut book = ledger.book();
        book.completed += 1;
        book.goodput += in_time;
        let part = &mut book.by_priority[self.priority];
        part.completed += 1;
        part.goodput += in_time;
        part.all.saturating_record(micros(latency));
        book.body_nanos = book
            .body_nanos
            .saturating_add(u64::try_from(body.as_nanos()).unwrap_or(u64::MAX));
        book.all.saturating_record(micros(latency));
        book.this_sample.saturating_record(micros(latency));
        ledger.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.settled = true;
    }
}

impl Ticket {
    /// The job panicked: it ended without completing.
    pub(crate) fn failed(mut self) {
        let ledger = &self.ledger;
        let _book = ledger.book();
        ledger.failed.fetch_add(1, Ordering::Relaxed);
        ledger.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.settled = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.ledger.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_counts_from_the_scheduled_time() {
        let ledger = Arc::new(Ledger::new(Duration::from_millis(100)));
        let now = Instant::now();
        // Within the deadline, then late: completed, not goodput.
        ledger
            .offer(now - Duration::from_millis(50), 0)
            .completed(now);
        ledger
            .offer(now - Duration::from_millis(500), 3)
            .completed(now);
        let counts = ledger.counts();
        assert_eq!((counts.completed, counts.goodput), (2, 1));
        let (critical, low) = (ledger.priority(0), ledger.priority(3));
        assert_eq!(
            (critical.offered, critical.completed, critical.goodput),
            (1, 1, 1)
        );
        assert_eq!((low.offered, low.completed, low.goodput), (1, 1, 0));
        assert!(low.latency.min() >= 499_000);
        assert_eq!(ledger.priority(2).offered, 0);
        assert!(ledger.latency().max() >= 500_000);
        assert!(ledger.take_sample_p99_ms() >= 499.0);
        assert_eq!(ledger.take_sample_p99_ms(), 0.0, "the sample was taken");
    }

    #[test]
    fn a_failed_job_leaves_flight_counted_failed() {
        let ledger = Arc::new(Ledger::new(Duration::from_secs(1)));
        ledger.offer(Instant::now(), 2).failed();
        let counts = ledger.counts();
        assert_eq!((counts.offered, counts.failed, counts.in_flight), (1, 1, 0));
    }

    #[test]
    fn a_job_is_in_flight_from_its_offer_until_it_completes_or_is_dropped() {
        let ledger = Arc::new(Ledger::new(Duration::from_secs(1)));
        let running = ledger.offer(Instant::now(), 2);
        let refused = ledger.offer(Instant::now(), 3);
        let lost = ledger.offer(Instant::now(), 2);
        assert_eq!(ledger.counts().in_flight, 3);
        drop(refused);
        ledger.shed(3);
        assert_eq!(ledger.priority(3).shed, 1);
        assert_eq!(ledger.priority(2).shed, 0);
        running.completed(Instant::now());
        let counts = ledger.counts();
        assert_eq!(
            (
                counts.offered,
                counts.shed,
                counts.completed,
                counts.in_flight
            ),
            (3, 1, 1, 1)
        );
        // A job dropped without being counted anywhere: the books no longer balance.
        drop(lost);
        let counts = ledger.counts();
        assert_eq!(counts.in_flight, 0);
        assert_ne!(
            counts.offered,
            counts.completed + counts.shed + counts.in_flight
        );
    }
}
