//! `serve`'s live view: a ticker that makes one [`Frame`] every [`TICK`] from the server's
//! counters, the `/work` answers of the tick and the pool's snapshot, and publishes it to the
//! [`Hub`] behind `/`, `/events` and `/snapshot`. After SIGTERM the frames say `draining`;
//! once nothing is in flight the last one is sent and the streams end, so that they do not
//! hold up the drain.

use std::sync::{Arc, Weak};
use std::time::Instant;

use axum::Router;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::MissedTickBehavior;

use super::ServeArgs;
use super::metrics::ServerMetrics;
use super::snapshot::{HttpCounters, PoolView, ServeDetail};
use crate::live::{Frame, Hub, Rates, TICK};
use crate::memory::Rss;

/// A frame of `serve`'s live view.
pub(crate) type ServeFrame = Frame<ServeDetail>;

/// The live view's state in the [`App`].
#[derive(Debug)]
pub(crate) struct Dashboard {
    pub(crate) hub: Arc<Hub>,
    /// The server's resident memory, read each tick, exported in `/metrics` too.
    rss: Gauge,
    mode: &'static str,
    /// The settings in words, for the page's header.
    summary: String,
    started: Instant,
}

impl Dashboard {
    /// The live view of a server started with `args`, whose settings read `summary` (HTML);
    /// its subscriber counts join `registry`.
    pub(crate) fn new(args: &ServeArgs, summary: &str, registry: &mut Registry) -> Self {
        let hub = Arc::new(Hub::default());
        let rss = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the server process, read five times a second",
            rss.clone(),
        );
        let http = registry.sub_registry_with_prefix("spillway_http");
        http.register(
            "event_subscribers",
            "Open /events streams of the live dashboard",
            hub.subscribers.clone(),
        );
        http.register(
            "event_subscribers_dropped",
            "/events streams dropped for falling behind",
            hub.dropped.clone(),
        );
        Dashboard {
            hub,
            rss,
            mode: args.mode.as_str(),
            summary: summary.replace("<b>", "").replace("</b>", ""),
            started: Instant::now(),
        }
    }
}

/// What the ticker reads: the server's state (the app).
pub(crate) trait Observed: Send + Sync + 'static {
    /// The server's counters.
    fn metrics(&self) -> &ServerMetrics;
    /// The pool, in pool mode.
    fn pool(&self) -> Option<&spillway::Pool>;
    /// Whether SIGINT/SIGTERM has arrived.
    fn draining(&self) -> bool;
    /// The live view.
    fn live(&self) -> &Dashboard;
}

/// `/`, `/events`, `/snapshot` and the page's assets; `summary` (HTML) heads the page.
pub(crate) fn routes<S>(live: &Dashboard, summary: &str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    crate::live::routes(Arc::clone(&live.hub), "spillway serve", summary)
}

/// Starts the ticker; it stops when the app is dropped, or once a drain has nothing left in
/// flight.
pub(crate) fn spawn_ticker<A: Observed>(app: &Arc<A>) {
    let app = Arc::downgrade(app);
    tokio::spawn(async move { tick(app).await });
}

async fn tick<A: Observed>(app: Weak<A>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sampler = Sampler::new();
    loop {
        interval.tick().await;
        let Some(app) = app.upgrade() else { return };
        let frame = sampler.frame(&*app);
        app.live().hub.publish(&frame);
        if frame.state == DRAINING && frame.in_flight == 0 {
            app.live().hub.close();
            return;
        }
    }
}

const DRAINING: &str = "draining";

/// What the ticker remembers from one tick to the next.
struct Sampler {
    rss: Rss,
    last_at: Instant,
    last_work_requests: u64,
}

impl Sampler {
    fn new() -> Self {
        Sampler {
            rss: Rss::of_self(),
            last_at: Instant::now(),
            last_work_requests: 0,
        }
    }

    /// The frame of the tick that ends now.
    fn frame(&mut self, app: &impl Observed) -> ServeFrame {
        let now = Instant::now();
        let span_s = now.duration_since(self.last_at).as_secs_f64();
        let taken = app.metrics().window.take();
        let http = http_counters(app.metrics(), &app.live().hub);
        let offered = http.work_requests.saturating_sub(self.last_work_requests);
        (self.last_at, self.last_work_requests) = (now, http.work_requests);
        let pool = app.pool().map(spillway::Pool::metrics);
        let live = app.live();
        let rss_bytes = self.rss.read();
        live.rss
            .set(rss_bytes.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)));
        Frame {
            t_s: now.duration_since(live.started).as_secs_f64(),
            state: if app.draining() { DRAINING } else { "serving" },
            mode: live.mode.to_string(),
            summary: live.summary.clone(),
            rates: Rates::over(
                span_s,
                offered,
                taken.latency.admitted.count,
                taken.goodput,
                taken.latency.shed.count,
            ),
            in_flight: u64::try_from(http.requests_in_flight).unwrap_or(0),
            queued: pool.as_ref().map(|p| p.queued as u64),
            limit: pool.as_ref().map(|p| p.limit as u64),
            workers: pool.as_ref().map(|p| p.workers as u64),
            latency_ms: taken.latency,
            rss_bytes,
            detail: ServeDetail {
                http,
                pool: pool.as_ref().map(PoolView::from),
            },
        }
    }
}

fn http_counters(m: &ServerMetrics, hub: &Hub) -> HttpCounters {
    HttpCounters {
        connections_open: m.connections_open.get(),
        connections: m.connections_total.get(),
        accept_errors: m.accept_errors.get(),
        requests_in_flight: m.requests_in_flight.get(),
        work_requests: m.work_requests.get(),
        answered: m.completed(),
        shed: m.shed.get(),
        cancelled: m.cancelled.get(),
        abandoned: m.abandoned.get(),
        event_subscribers: hub.subscribers.get(),
        event_subscribers_dropped: hub.dropped.get(),
    }
}
