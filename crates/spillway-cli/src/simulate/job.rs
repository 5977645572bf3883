//! The seed job and the recorder every mode's jobs report to.

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one job does: the seed's 20 ms of waiting and 500 KB of memory, plus optional CPU work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Profile {
    /// Time the job waits (an I/O-like sleep), holding its memory.
    pub(crate) work: Duration,
    /// Bytes allocated and touched, one write per 4 KiB page.
    pub(crate) alloc_bytes: usize,
    /// Busy CPU time.
    pub(crate) cpu: Duration,
}

const PAGE: usize = 4096;

/// Runs the job body; returns when it ended.
pub(crate) async fn run(profile: Profile) {
    let mut buffer = vec![0u8; profile.alloc_bytes];
    for page in buffer.iter_mut().step_by(PAGE) {
        *page = 1;
    }
    black_box(&mut buffer);
    if !profile.work.is_zero() {
        tokio::time::sleep(profile.work).await;
    }
    if !profile.cpu.is_zero() {
        let until = Instant::now() + profile.cpu;
        let mut x = 0u64;
        while Instant::now() < until {
            for _ in 0..1_000 {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }
    drop(black_box(buffer));
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to an hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Counts and latencies of one mode's run. Latency runs from the job's scheduled offer time (not
/// the moment the generator got round to it) to its end: free of coordinated omission.
#[derive(Debug)]
pub(crate) struct Recorder {
    deadline: Duration,
    pub(crate) offered: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) goodput: AtomicU64,
    body_nanos: AtomicU64,
    latency: Mutex<Latencies>,
}

#[derive(Debug)]
struct Latencies {
    all: Histogram<u64>,
    this_second: Histogram<u64>,
}

impl Recorder {
    pub(crate) fn new(deadline: Duration) -> Self {
        Recorder {
            deadline,
            offered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            goodput: AtomicU64::new(0),
            body_nanos: AtomicU64::new(0),
            latency: Mutex::new(Latencies {
                all: histogram(),
                this_second: histogram(),
            }),
        }
    }

    /// A job offered at `scheduled` whose body started at `body_start` has just ended.
    pub(crate) fn completed(&self, scheduled: Instant, body_start: Instant) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(scheduled);
        let body = now.saturating_duration_since(body_start);
        self.completed.fetch_add(1, Ordering::Relaxed);
        if latency <= self.deadline {
            self.goodput.fetch_add(1, Ordering::Relaxed);
        }
        self.body_nanos.fetch_add(
            u64::try_from(body.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.all.saturating_record(micros(latency));
        l.this_second.saturating_record(micros(latency));
    }

    /// The 99th percentile of the latencies recorded since the last call, in ms.
    pub(crate) fn take_second_p99_ms(&self) -> f64 {
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let second = std::mem::replace(&mut l.this_second, histogram());
        if second.is_empty() {
            0.0
        } else {
            second.value_at_quantile(0.99) as f64 / 1e3
        }
    }

    /// A copy of the whole run's latency histogram (microseconds).
    pub(crate) fn latency(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all
            .clone()
    }

    /// Mean job-body time in ms.
    pub(crate) fn body_mean_ms(&self) -> f64 {
        let n = self.completed.load(Ordering::Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.body_nanos.load(Ordering::Relaxed) as f64 / n as f64 / 1e6
    }
}

/// Resident memory of this process, in bytes (Linux `/proc/self/statm`), or 0 if unknown.
pub(crate) fn rss_bytes() -> u64 {
    rss_of("self")
}

/// Resident memory of process `pid` (`"self"` for this one), in bytes, or 0 if unknown.
pub(crate) fn rss_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_job_holds_its_memory_for_its_work_time() {
        let profile = Profile {
            work: Duration::from_millis(20),
            alloc_bytes: 64 * 1024,
            cpu: Duration::from_millis(2),
        };
        let start = Instant::now();
        run(profile).await;
        assert!(start.elapsed() >= Duration::from_millis(22));
    }

    #[test]
    fn latency_counts_from_the_scheduled_time() {
        let r = Recorder::new(Duration::from_millis(100));
        let now = Instant::now();
        r.completed(now - Duration::from_millis(50), now); // within the deadline
        r.completed(now - Duration::from_millis(500), now); // late: completed, not goodput
        assert_eq!(r.completed.load(Ordering::Relaxed), 2);
        assert_eq!(r.goodput.load(Ordering::Relaxed), 1);
        assert!(r.latency().max() >= 500_000);
        assert!(r.take_second_p99_ms() >= 499.0);
        assert_eq!(r.take_second_p99_ms(), 0.0, "the second was taken");
    }

    #[test]
    fn rss_is_read() {
        assert!(rss_bytes() > 0);
    }
}
