//! The server's own counters, exported beside the pool's in `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::window::{GOODPUT_DEADLINE, Window};
use crate::status::StatusClass;

/// A response status, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    pub(crate) status: u16,
}

/// A class of response statuses, as a label: `2xx`, `503` or `other`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClassLabel {
    pub(crate) class: &'static str,
}

fn duration_histogram() -> Histogram {
    // 50 us .. ~6.4 s in steps of 1.5x, fine enough to tell a 1 ms shed from a 10 ms job.
    Histogram::new(exponential_buckets(0.000_05, 1.5, 30))
}

/// Counters of connections and requests. Cheap to update from every request.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    pub(crate) connections_open: Gauge,
    pub(crate) connections_total: Counter,
    pub(crate) accept_errors: Counter,
    pub(crate) requests_in_flight: Gauge,
    /// `/work` requests received: the live view's offered load.
    pub(crate) work_requests: Counter,
    pub(crate) responses: Family<StatusLabel, Counter>,
    pub(crate) shed: Counter,
    /// `/work` answered 2xx within the goodput deadline.
    pub(crate) goodput: Counter,
    pub(crate) cancelled: Counter,
    pub(crate) abandoned: Counter,
    pub(crate) duration: Family<ClassLabel, Histogram, fn() -> Histogram>,
    /// Requests that produced a response (any status), for the drain report.
    completed: AtomicU64,
    /// The `/work` answers of the live view's current tick.
    pub(crate) window: Window,
}

impl ServerMetrics {
    pub(crate) fn new() -> Self {
        ServerMetrics {
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            accept_errors: Counter::default(),
            requests_in_flight: Gauge::default(),
            work_requests: Counter::default(),
            responses: Family::default(),
            shed: Counter::default(),
            goodput: Counter::default(),
            cancelled: Counter::default(),
            abandoned: Counter::default(),
            duration: Family::new_with_constructor(duration_histogram),
            completed: AtomicU64::new(0),
            window: Window::default(),
        }
    }

    /// A request got its response; the duration histogram holds `/work` requests only.
    pub(crate) fn responded(&self, status: u16, elapsed: Duration, is_work: bool) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.responses.get_or_create(&StatusLabel { status }).inc();
        if is_work {
            self.window.record(status, elapsed);
            if StatusClass::of(status) == StatusClass::Ok && elapsed <= GOODPUT_DEADLINE {
                self.goodput.inc();
            }
            self.duration
                .get_or_create(&ClassLabel {
                    class: StatusClass::of(status).name(),
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Requests answered so far.
    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Responses with this status so far.
    #[cfg(test)]
    pub(crate) fn responses_with(&self, status: u16) -> u64 {
        self.responses.get_or_create(&StatusLabel { status }).get()
    }

    /// Adds every series, prefixed `spillway_http_`, to `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let http = registry.sub_registry_with_prefix("spillway_http");
        http.register(
            "connections_open",
            "Client connections open now",
            self.connections_open.clone(),
        );
        http.register(
            "connections",
            "Client connections accepted",
            self.connections_total.clone(),
        );
        http.register(
            "accept_errors",
            "Failed accepts (e.g. out of file descriptors)",
            self.accept_errors.clone(),
        );
        http.register(
            "requests_in_flight",
            "Requests received and not yet answered",
            self.requests_in_flight.clone(),
        );
        http.register(
            "work_requests",
            "Requests to /work received",
            self.work_requests.clone(),
        );
        http.register(
            "responses",
            "Responses produced (counted when the handler returns), by status",
            self.responses.clone(),
        );
        http.register(
            "shed",
            "Requests answered 503 because the pool was full",
            self.shed.clone(),
        );
        http.register(
            "goodput",
            "Requests to /work answered 2xx within 1 s of their arrival",
            self.goodput.clone(),
        );
        http.register(
            "cancelled",
            "Requests whose client left before the answer; their work was cancelled",
            self.cancelled.clone(),
        );
        http.register(
            "abandoned",
            "Requests still in flight when the drain deadline passed",
            self.abandoned.clone(),
        );
        http.register(
            "request_duration_seconds",
            "Time from a /work request's arrival to its response, by status class",
            self.duration.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_by_status_and_exported() {
        let m = ServerMetrics::new();
        m.responded(200, Duration::from_millis(10), true);
        m.responded(200, Duration::from_millis(12), true);
        m.responded(503, Duration::from_micros(300), true);
        m.responded(503, Duration::from_micros(300), false); // /healthz while draining
        m.responded(200, Duration::from_secs(2), true); // too late for goodput
        assert_eq!(m.completed(), 5);
        assert_eq!(m.responses_with(200), 3);
        assert_eq!(m.goodput.get(), 2);
        assert_eq!(m.responses_with(503), 2);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"spillway_http_responses_total{status="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"spillway_http_request_duration_seconds_count{class="503"} 1"#),
            "{text}"
        );
        assert!(text.contains("spillway_http_goodput_total 2"), "{text}");
    }
}
