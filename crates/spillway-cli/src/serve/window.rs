//! The `/work` answers of the current tick of the live view: their latencies by outcome and
//! how many came within the goodput deadline. The ticker takes them, leaving an empty window.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::histogram::{COARSE, micros, micros_histogram, quantile_ms};
use crate::live::{Percentiles, WindowLatency};
use crate::status::StatusClass;

/// A 2xx answered within this of the request's arrival is goodput: `simulate`'s default
/// `--deadline`.
pub(crate) const GOODPUT_DEADLINE: Duration = Duration::from_secs(1);

/// The `/work` answers since the last [`Window::take`].
#[derive(Debug)]
pub(crate) struct Window {
    inner: Mutex<Answers>,
}

#[derive(Debug, Clone)]
struct Answers {
    admitted: Histogram<u64>,
    shed: Histogram<u64>,
    goodput: u64,
}

impl Answers {
    fn new() -> Self {
        Answers {
            admitted: micros_histogram(COARSE),
            shed: micros_histogram(COARSE),
            goodput: 0,
        }
    }
}

/// What a window held when it was taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Taken {
    /// 2xx answers, and their latencies.
    pub(crate) latency: WindowLatency,
    /// 2xx answers within [`GOODPUT_DEADLINE`].
    pub(crate) goodput: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            inner: Mutex::new(Answers::new()),
        }
    }
}

impl Window {
    /// A `/work` request was answered `status` after `elapsed`; other statuses than 2xx and
    /// 503 (shed) are not charted.
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        let class = StatusClass::of(status);
        if class == StatusClass::Other {
            return;
        }
        let mut answers = self.lock();
        let histogram = match class {
            StatusClass::Ok => {
                answers.goodput += u64::from(elapsed <= GOODPUT_DEADLINE);
                &mut answers.admitted
            }
            StatusClass::Shed | StatusClass::Other => &mut answers.shed,
        };
        histogram.saturating_record(micros(elapsed));
    }

    /// The answers so far; the window starts again empty.
    pub(crate) fn take(&self) -> Taken {
        let answers = std::mem::replace(&mut *self.lock(), Answers::new());
        Taken {
            latency: WindowLatency {
                admitted: percentiles(&answers.admitted),
                shed: percentiles(&answers.shed),
            },
            goodput: answers.goodput,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let any = !h.is_empty();
    Percentiles {
        count: h.len(),
        p50: any.then(|| quantile_ms(h, 0.5)),
        p99: any.then(|| quantile_ms(h, 0.99)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split_by_outcome_and_the_window_starts_again() {
        let w = Window::default();
        for ms in 1..=100 {
            w.record(200, Duration::from_millis(ms));
        }
        w.record(200, Duration::from_secs(2));
        w.record(503, Duration::from_micros(40));
        w.record(400, Duration::from_micros(40));
        let taken = w.take();
        assert_eq!(taken.latency.admitted.count, 101);
        assert_eq!(taken.goodput, 100, "the 2 s answer missed the deadline");
        let p50 = taken.latency.admitted.p50.unwrap();
        assert!((49.0..=52.0).contains(&p50), "{p50}");
        assert_eq!(taken.latency.shed.count, 1);
        assert!(taken.latency.shed.p99.unwrap() < 0.05);
        let empty = w.take();
        assert_eq!(empty.latency.admitted, Percentiles::default());
        assert_eq!(empty.goodput, 0);
    }
}
