//! `simulate --live`: the running mode's series, one frame per 100 ms sample, on the same
//! dashboard as `serve`'s (`/`, `/events`, `/snapshot`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::report::Sample;
use crate::live::{Frame, Hub, Percentiles, Rates, WindowLatency, lock};

/// What `simulate` adds to each frame.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SimDetail {
    /// The sample's number in the mode's series (1 for the first).
    pub(super) sample: u32,
    /// Jobs that expired in the queue, per second of the sample.
    pub(super) expired_per_s: f64,
}

type SimFrame = Frame<SimDetail>;

/// The live view of a run.
#[derive(Debug)]
pub(super) struct Live {
    hub: Arc<Hub>,
    /// The run's settings in words, once the capacity is known.
    summary: Mutex<String>,
    last: Mutex<Option<SimFrame>>,
}

impl Live {
    /// Serves the live view on `addr` and prints its address.
    ///
    /// # Errors
    ///
    /// An address that cannot be bound (naming `--live`).
    pub(super) async fn start(addr: SocketAddr) -> anyhow::Result<Arc<Live>> {
        let hub = Arc::new(Hub::default());
        let router = crate::live::routes(
            Arc::clone(&hub),
            "spillway simulate",
            "waiting for the first mode",
        );
        let bound = crate::live::spawn(addr, "--live", router).await?;
        eprintln!("live view: http://{bound}/");
        Ok(Arc::new(Live {
            hub,
            summary: Mutex::new(String::new()),
            last: Mutex::new(None),
        }))
    }

    /// Sets the header line of the frames to come.
    pub(super) fn summary(&self, text: &str) {
        *lock(&self.summary) = text.to_owned();
    }

    /// Publishes one sample of mode `label`.
    pub(super) fn sample(&self, label: &str, s: &Sample) {
        let frame = frame(label, &lock(&self.summary), s);
        self.hub.publish(&frame);
        *lock(&self.last) = Some(frame);
    }

    /// Gives the streams up to a second to send their last frames and end, so that the
    /// process does not exit under them.
    pub(super) async fn wait_for_subscribers(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        while self.hub.subscribers.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The run is over: the last frame again, `finished`, and the streams end.
    pub(super) fn finish(&self) {
        if let Some(mut last) = lock(&self.last).take() {
            last.state = "finished";
            self.hub.publish(&last);
        }
        self.hub.close();
    }
}

fn frame(label: &str, summary: &str, s: &Sample) -> SimFrame {
    let span = s.span_s.max(1e-3);
    let any = s.completed > 0;
    Frame {
        t_s: s.t_s,
        state: "running",
        mode: label.to_owned(),
        summary: summary.to_owned(),
        rates: Rates::over(span, s.offered, s.completed, s.goodput, s.shed),
        in_flight: s.in_flight,
        queued: None,
        limit: s.limit.map(|l| l as u64),
        workers: None,
        latency_ms: WindowLatency {
            admitted: Percentiles {
                count: s.completed,
                p50: None,
                p99: any.then_some(s.p99_ms),
            },
            shed: Percentiles::default(),
        },
        rss_bytes: Some(s.rss_bytes),
        detail: SimDetail {
            sample: s.t,
            expired_per_s: s.expired as f64 / span,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_becomes_a_frame_of_rates() {
        let s = Sample {
            t: 3,
            t_s: 0.3,
            span_s: 0.1,
            offered: 100,
            completed: 40,
            goodput: 30,
            shed: 50,
            expired: 2,
            in_flight: 9,
            rss_bytes: 1 << 20,
            p99_ms: 12.5,
            limit: Some(16),
            cpu_user_s: Some(0.05),
            cpu_system_s: Some(0.01),
        };
        let f = frame("pool-adaptive", "step", &s);
        assert_eq!(f.rates.offered_per_s, 1000.0);
        assert_eq!(f.rates.shed_per_s, 500.0);
        assert_eq!(f.latency_ms.admitted.p99, Some(12.5));
        assert_eq!((f.limit, f.in_flight), (Some(16), 9));
        assert_eq!(f.detail.expired_per_s, 20.0);
        let idle = frame("naive", "", &Sample { completed: 0, ..s });
        assert_eq!(idle.latency_ms.admitted.p99, None, "no completions, no p99");
    }
}
