//! What a load run records: latency histograms per status class, counts, errors and a
//! per-second series; how shards and processes are merged (exactly); and the report's JSON.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::histogram::{COARSE, FINE, micros, micros_histogram, quantile_ms};
use crate::status::StatusClass;

/// Why a scheduled request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection could not be opened.
    Connect,
    /// No response within `--timeout`.
    Timeout,
    /// The connection broke or the response was malformed.
    Other,
}

/// The totals' histograms.
fn histogram() -> Histogram<u64> {
    micros_histogram(FINE)
}

/// Per-second histograms need less precision.
fn coarse_histogram() -> Histogram<u64> {
    micros_histogram(COARSE)
}

/// One second of the run.
#[derive(Debug, Clone)]
pub(crate) struct SecondTally {
    pub(crate) responses: [u64; 3],
    pub(crate) errors: u64,
    pub(crate) latency: [Histogram<u64>; 3],
}

impl SecondTally {
    fn new() -> Self {
        SecondTally {
            responses: [0; 3],
            errors: 0,
            latency: [coarse_histogram(), coarse_histogram(), coarse_histogram()],
        }
    }
}

/// Everything recorded, by one shard or merged.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) latency: [Histogram<u64>; 3],
    /// How late requests went out on lanes that were free at their due time: the generator's
    /// own lag, in microseconds.
    pub(crate) send_lag: Histogram<u64>,
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Responses per class that arrived before the measured part ended: the rates.
    pub(crate) in_window: [u64; 3],
    /// Measured requests that went out before the measured part ended: the rate really sent.
    pub(crate) sent_in_window: u64,
    pub(crate) connect_errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) other_errors: u64,
    pub(crate) seconds: Vec<SecondTally>,
    /// The same counts for each priority sent (`--priority-mix`), by its index in
    /// `Priority::ALL`; empty without a mix.
    pub(crate) by_priority: BTreeMap<usize, PriorityTally>,
}

/// What the requests of one priority recorded: their latency by status class (two significant
/// digits: four priorities times 64 shards of the finer histograms would cost far more memory),
/// their statuses and their errors.
#[derive(Debug, Clone)]
pub(crate) struct PriorityTally {
    pub(crate) latency: [Histogram<u64>; 3],
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) in_window: [u64; 3],
    pub(crate) errors: u64,
}

impl Default for PriorityTally {
    fn default() -> Self {
        PriorityTally::new()
    }
}

impl PriorityTally {
    fn new() -> Self {
        PriorityTally {
            latency: [coarse_histogram(), coarse_histogram(), coarse_histogram()],
            statuses: BTreeMap::new(),
            in_window: [0; 3],
            errors: 0,
        }
    }

    fn merge(&mut self, other: &PriorityTally) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.add(theirs).expect("histograms of the same bounds add");
        }
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (mine, theirs) in self.in_window.iter_mut().zip(other.in_window) {
            *mine += theirs;
        }
        self.errors += other.errors;
    }

    fn encode(&self) -> EncodedPriority {
        EncodedPriority {
            latency: self.latency.iter().map(encode_histogram).collect(),
            statuses: self.statuses.clone(),
            in_window: self.in_window,
            errors: self.errors,
        }
    }

    fn decode(e: &EncodedPriority) -> Result<Self, String> {
        if e.latency.len() != 3 {
            return Err("a child's priority tally has the wrong number of classes".into());
        }
        let mut t = PriorityTally::new();
        for (h, pairs) in t.latency.iter_mut().zip(&e.latency) {
            decode_into(h, pairs);
        }
        t.statuses = e.statuses.clone();
        t.in_window = e.in_window;
        t.errors = e.errors;
        Ok(t)
    }
}

impl Tally {
    pub(crate) fn new() -> Self {
        Tally {
            latency: [histogram(), histogram(), histogram()],
            send_lag: coarse_histogram(),
            statuses: BTreeMap::new(),
            in_window: [0; 3],
            sent_in_window: 0,
            connect_errors: 0,
            timeouts: 0,
            other_errors: 0,
            seconds: Vec::new(),
            by_priority: BTreeMap::new(),
        }
    }

    /// The tally of the priority at `index` in `Priority::ALL`.
    fn priority(&mut self, index: usize) -> &mut PriorityTally {
        self.by_priority.entry(index).or_default()
    }

    /// A response to a request of the priority at `index`, as [`response`](Self::response).
    pub(crate) fn priority_response(
        &mut self,
        index: usize,
        status: u16,
        latency: Duration,
        in_window: bool,
    ) {
        let tally = self.priority(index);
        let class = StatusClass::of(status).index();
        tally.in_window[class] += u64::from(in_window);
        tally.latency[class].saturating_record(micros(latency));
        *tally.statuses.entry(status).or_default() += 1;
    }

    /// A request of the priority at `index` that got no response.
    pub(crate) fn priority_failure(&mut self, index: usize) {
        self.priority(index).errors += 1;
    }

    fn second(&mut self, index: usize) -> &mut SecondTally {
        while self.seconds.len() <= index {
            self.seconds.push(SecondTally::new());
        }
        &mut self.seconds[index]
    }

    /// A response with `status`, `latency` after its due (or send) time, due in second `at`;
    /// `in_window` when it arrived before the measured part ended.
    pub(crate) fn response(&mut self, status: u16, latency: Duration, at: usize, in_window: bool) {
        let class = StatusClass::of(status).index();
        self.in_window[class] += u64::from(in_window);
        let us = micros(latency);
        self.latency[class].saturating_record(us);
        *self.statuses.entry(status).or_default() += 1;
        let second = self.second(at);
        second.responses[class] += 1;
        second.latency[class].saturating_record(us);
    }

    /// A request went out `lag` after its due time on a lane that was free.
    pub(crate) fn sent_late_by(&mut self, lag: Duration) {
        self.send_lag.saturating_record(micros(lag));
    }

    /// A request scheduled in second `at` that failed.
    pub(crate) fn failure(&mut self, failure: Failure, at: usize) {
        match failure {
            Failure::Connect => self.connect_errors += 1,
            Failure::Timeout => self.timeouts += 1,
            Failure::Other => self.other_errors += 1,
        }
        self.second(at).errors += 1;
    }

    /// Adds `other` into `self`, exactly: histograms of the same configuration add bucket by
    /// bucket.
    pub(crate) fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.add(theirs).expect("histograms of the same bounds add");
        }
        self.send_lag
            .add(&other.send_lag)
            .expect("histograms of the same bounds add");
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (mine, theirs) in self.in_window.iter_mut().zip(other.in_window) {
            *mine += theirs;
        }
        self.sent_in_window += other.sent_in_window;
        self.connect_errors += other.connect_errors;
        self.timeouts += other.timeouts;
        self.other_errors += other.other_errors;
        for (i, s) in other.seconds.iter().enumerate() {
            let mine = self.second(i);
            for c in 0..3 {
                mine.responses[c] += s.responses[c];
                mine.latency[c]
                    .add(&s.latency[c])
                    .expect("histograms of the same bounds add");
            }
            mine.errors += s.errors;
        }
        for (index, theirs) in &other.by_priority {
            self.priority(*index).merge(theirs);
        }
    }

    /// The tally as plain data, for a child process to hand to its parent.
    pub(crate) fn encode(&self) -> EncodedTally {
        EncodedTally {
            latency: self.latency.iter().map(encode_histogram).collect(),
            send_lag: encode_histogram(&self.send_lag),
            statuses: self.statuses.clone(),
            in_window: self.in_window,
            sent_in_window: self.sent_in_window,
            connect_errors: self.connect_errors,
            timeouts: self.timeouts,
            other_errors: self.other_errors,
            seconds: self
                .seconds
                .iter()
                .map(|s| EncodedSecond {
                    responses: s.responses,
                    errors: s.errors,
                    latency: s.latency.iter().map(encode_histogram).collect(),
                })
                .collect(),
            by_priority: self
                .by_priority
                .iter()
                .map(|(i, p)| (*i, p.encode()))
                .collect(),
        }
    }

    /// Rebuilds a tally [`encode`](Self::encode)d by another process.
    pub(crate) fn decode(e: &EncodedTally) -> Result<Tally, String> {
        let mut t = Tally::new();
        if e.latency.len() != 3 {
            return Err("a child's tally has the wrong number of classes".into());
        }
        for (h, pairs) in t.latency.iter_mut().zip(&e.latency) {
            decode_into(h, pairs);
        }
        decode_into(&mut t.send_lag, &e.send_lag);
        t.statuses = e.statuses.clone();
        t.in_window = e.in_window;
        t.sent_in_window = e.sent_in_window;
        t.connect_errors = e.connect_errors;
        t.timeouts = e.timeouts;
        t.other_errors = e.other_errors;
        for (i, s) in e.seconds.iter().enumerate() {
            let second = t.second(i);
            second.responses = s.responses;
            second.errors = s.errors;
            for (h, pairs) in second.latency.iter_mut().zip(&s.latency) {
                decode_into(h, pairs);
            }
        }
        for (index, p) in &e.by_priority {
            t.by_priority.insert(*index, PriorityTally::decode(p)?);
        }
        Ok(t)
    }
}

/// A histogram as (value, count) pairs, one per non-empty bucket. Each value is its bucket's
/// highest equivalent value, so recording it again in a histogram of the same configuration
/// lands in the same bucket: the round trip is exact.
fn encode_histogram(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

fn decode_into(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(value, count) in pairs {
        h.saturating_record_n(value, count);
    }
}

/// A [`Tally`] as plain data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EncodedTally {
    latency: Vec<Vec<(u64, u64)>>,
    send_lag: Vec<(u64, u64)>,
    statuses: BTreeMap<u16, u64>,
    in_window: [u64; 3],
    sent_in_window: u64,
    connect_errors: u64,
    timeouts: u64,
    other_errors: u64,
    seconds: Vec<EncodedSecond>,
    by_priority: BTreeMap<usize, EncodedPriority>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EncodedPriority {
    latency: Vec<Vec<(u64, u64)>>,
    statuses: BTreeMap<u16, u64>,
    in_window: [u64; 3],
    errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EncodedSecond {
    responses: [u64; 3],
    errors: u64,
    latency: Vec<Vec<(u64, u64)>>,
}

/// Shards of a [`Tally`], so that thousands of connections record without fighting over one
/// lock.
#[derive(Debug)]
pub(crate) struct Shards {
    shards: Vec<Mutex<Tally>>,
}

impl Shards {
    pub(crate) fn new(shards: usize) -> Self {
        Shards {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Tally::new()))
                .collect(),
        }
    }

    /// Records into the shard of `lane`.
    pub(crate) fn with<R>(&self, lane: usize, f: impl FnOnce(&mut Tally) -> R) -> R {
        let shard = &self.shards[lane % self.shards.len()];
        let mut tally = shard.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut tally)
    }

    /// All shards merged.
    pub(crate) fn total(&self) -> Tally {
        let mut total = Tally::new();
        for shard in &self.shards {
            total.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }
}

/// Latency percentiles of one status class, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Responses in the class.
    pub count: u64,
    /// Responses per second that arrived within the measured part: in-window count / duration.
    pub rate: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>, in_window: u64, seconds: f64) -> Self {
        let q = |q: f64| quantile_ms(h, q);
        Percentiles {
            count: h.len(),
            rate: in_window as f64 / seconds,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1e3
            },
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1e3 },
        }
    }
}

/// One second of the run in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondReport {
    /// Seconds since measuring began (after the warm-up).
    pub second: usize,
    /// 2xx responses to requests scheduled in this second.
    pub ok: u64,
    /// 503 responses.
    pub shed: u64,
    /// Other statuses.
    pub other: u64,
    /// Requests that got no response.
    pub errors: u64,
    /// p99 of the 2xx latencies, ms.
    pub p99_ok_ms: f64,
    /// p99 of the 503 latencies, ms.
    pub p99_shed_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random latencies, 1 us .. ~2 s.
    fn latencies(seed: u64, n: usize) -> Vec<Duration> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Duration::from_micros(1 + (x >> 33) % 2_000_000)
            })
            .collect()
    }

    #[test]
    fn merging_encoded_shards_equals_recording_everything_in_one() {
        let mut whole = Tally::new();
        let mut parts = [Tally::new(), Tally::new(), Tally::new()];
        for (i, l) in latencies(7, 30_000).into_iter().enumerate() {
            let status = [200, 503, 404, 200][i % 4];
            let second = i % 5;
            whole.response(status, l, second, i % 2 == 0);
            parts[i % 3].response(status, l, second, i % 2 == 0);
            whole.sent_late_by(l / 100);
            parts[i % 3].sent_late_by(l / 100);
            whole.priority_response(i % 4, status, l, i % 2 == 0);
            parts[i % 3].priority_response(i % 4, status, l, i % 2 == 0);
            if i % 97 == 0 {
                whole.failure(Failure::Timeout, second);
                parts[i % 3].failure(Failure::Timeout, second);
                whole.priority_failure(3);
                parts[i % 3].priority_failure(3);
            }
        }
        // Through the wire format, as from child processes.
        let mut merged = Tally::new();
        for part in &parts {
            let json = serde_json::to_string(&part.encode()).unwrap();
            let back: EncodedTally = serde_json::from_str(&json).unwrap();
            merged.merge(&Tally::decode(&back).unwrap());
        }
        for c in 0..3 {
            assert_eq!(merged.latency[c], whole.latency[c], "class {c}");
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(
                    merged.latency[c].value_at_quantile(q),
                    whole.latency[c].value_at_quantile(q)
                );
            }
        }
        assert_eq!(merged.send_lag, whole.send_lag);
        assert_eq!(merged.in_window, whole.in_window);
        assert_eq!(merged.statuses, whole.statuses);
        assert_eq!(merged.timeouts, whole.timeouts);
        assert_eq!(merged.by_priority.len(), 4);
        for (i, w) in &whole.by_priority {
            let m = &merged.by_priority[i];
            assert_eq!((&m.latency, &m.statuses), (&w.latency, &w.statuses), "{i}");
            assert_eq!((m.in_window, m.errors), (w.in_window, w.errors), "{i}");
        }
        assert!(merged.by_priority[&3].errors > 0);
        assert_eq!(merged.seconds.len(), 5);
        for (m, w) in merged.seconds.iter().zip(&whole.seconds) {
            assert_eq!(m.responses, w.responses);
            assert_eq!(m.errors, w.errors);
            assert_eq!(m.latency[0], w.latency[0]);
        }
    }

    #[test]
    fn percentiles_are_in_milliseconds_per_second_of_run() {
        let mut t = Tally::new();
        for ms in 1..=100 {
            t.response(200, Duration::from_millis(ms), 0, true);
        }
        let p = Percentiles::of(&t.latency[0], t.in_window[0], 2.0);
        assert_eq!(p.count, 100);
        assert_eq!(p.rate, 50.0);
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99_ms - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        let empty = Percentiles::of(&t.latency[1], t.in_window[1], 2.0);
        assert_eq!(empty.count, 0);
        assert_eq!(empty.p99_ms, 0.0);
    }
}
