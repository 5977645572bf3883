//! The routes, the `/work` handler of each mode, and the middleware every request passes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body::Body as _;
use prometheus_client::registry::Registry;
use spillway::JobOptions;

use super::ServeArgs;
use super::admit::{self, NotDone};
use super::balancer::{self, INSTANCE_HEADER, RetryAfter};
use super::classify;
use super::dashboard::{self, Dashboard, Observed};
use super::job::{CpuLane, JobFailure};
use super::limiter::Limiter;
use super::metrics::ServerMetrics;
use super::readiness::{Readiness, Reading};
use crate::workload::Profile;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) profile: Profile,
    pub(crate) limiter: Limiter,
    /// Where the jobs' CPU work runs, apart from the threads that answer requests.
    pub(crate) lane: CpuLane,
    pub(crate) metrics: ServerMetrics,
    pub(crate) registry: Registry,
    pub(crate) body_limit: u64,
    /// How long a client may take to send its headers, and then its body.
    pub(crate) header_timeout: Duration,
    pub(crate) retry_after: RetryAfter,
    /// `--instance`, sent on every response.
    pub(crate) instance: Option<HeaderValue>,
    /// What `/` says is running.
    pub(crate) summary: String,
    /// SIGINT/SIGTERM arrived: `/healthz` answers 503 so balancers stop sending.
    pub(crate) draining: AtomicBool,
    /// The drain deadline passed: requests dropped from now on were abandoned, not cancelled.
    pub(crate) abandoning: AtomicBool,
    /// The live dashboard (`/`, `/events`, `/snapshot`).
    pub(crate) live: Dashboard,
    /// `/readyz`'s past readings and `--ready-max-shed`.
    pub(crate) readiness: Readiness,
}

impl App {
    /// Builds the mode's limiter, the metrics registry and the handlers' settings.
    ///
    /// # Errors
    ///
    /// Invalid pool settings, naming the flag.
    pub(crate) fn new(args: &ServeArgs) -> anyhow::Result<App> {
        let limiter = Limiter::build(args)?;
        let metrics = ServerMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        if let (Some(pool), Some(cpu)) = (limiter.pool(), limiter.cpu()) {
            let pools = spillway::PoolMetrics::new();
            pools.add(pool);
            pools.add_blocking(cpu);
            pools.register(&mut registry);
        }
        if let Some(name) = &args.instance {
            balancer::register_instance(name, &mut registry);
        }
        let w = &args.workload;
        let summary = format!(
            "mode <b>{}</b>: /work waits {} ms, allocates {} KiB, burns {} ms of CPU; {}",
            args.mode.as_str(),
            w.wait_ms,
            w.alloc_kib,
            w.cpu_ms,
            limiter.describe(args)
        );
        let live = Dashboard::new(args, &summary, &mut registry);
        let readiness = Readiness::new(args.ready_max_shed, work_reading(&metrics));
        Ok(App {
            profile: w.profile(),
            limiter,
            lane: CpuLane::new(
                crate::memory::total_ram()
                    .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX)),
                args.faults,
            ),
            metrics,
            registry,
            body_limit: args.body_limit,
            header_timeout: args.header_timeout,
            retry_after: RetryAfter::new(args.retry_after),
            instance: args
                .instance
                .as_deref()
                .map(balancer::instance_header)
                .transpose()?,
            summary,
            draining: AtomicBool::new(false),
            abandoning: AtomicBool::new(false),
            live,
            readiness,
        })
    }
}

impl Observed for App {
    fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    fn pool(&self) -> Option<&spillway::Pool> {
        self.limiter.pool()
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn live(&self) -> &Dashboard {
        &self.live
    }
}

/// The service: `/work`, `/metrics`, `/healthz`, `/readyz` and the live dashboard, behind [`observe`].
pub(crate) fn router(app: Arc<App>) -> Router {
    let work = match &app.limiter {
        Limiter::Pool { .. } => get(pooled_work).post(pooled_work),
        Limiter::Naive | Limiter::Semaphore(_) => get(work).post(work),
    };
    Router::new()
        .route("/work", work)
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(dashboard::routes(&app.live, &app.summary))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(app)
}

/// `/work` in the naive and semaphore modes: the seed's job; in semaphore mode it first waits
/// for a permit.
async fn work(State(app): State<Arc<App>>, Extension(work): Extension<WorkRequest>) -> Response {
    let profile = work.profile;
    let _permit = match &app.limiter {
        Limiter::Semaphore(semaphore) => match semaphore.acquire().await {
            Ok(permit) => Some(permit),
            Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "closed\n").into_response(),
        },
        Limiter::Naive | Limiter::Pool { .. } => None,
    };
    ran(&app, app.lane.run(profile, app.limiter.cpu()).await)
}

/// `/work` in pool mode: the seed's job as a pool job, with the priority and deadline
/// `options` from the headers; shed with 503 when the pool has no room.
async fn pooled_work(
    State(app): State<Arc<App>>,
    Extension(work): Extension<WorkRequest>,
) -> Response {
    let WorkRequest { profile, options } = work;
    let Limiter::Pool {
        pool,
        admission_wait,
        ..
    } = &app.limiter
    else {
        unreachable!("the pool's /work route exists in pool mode only")
    };
    let job = {
        let app = Arc::clone(&app);
        async move { app.lane.run(profile, app.limiter.cpu()).await }
    };
    let outcome = match admit::run(pool, options, *admission_wait, job).await {
        Ok(outcome) => outcome,
        Err(reason) => return shed(&app, reason),
    };
    match outcome.map_err(admit::not_done) {
        Ok(result) => ran(&app, result),
        Err(NotDone::Shed(reason)) => shed(&app, reason),
        Err(NotDone::Failed(response)) => response,
    }
}

/// The answer to a job that ran.
fn ran(app: &App, result: Result<(), JobFailure>) -> Response {
    match result {
        Ok(()) => "ok\n".into_response(),
        Err(JobFailure::Shed) => shed(app, "the CPU lane is full"),
        Err(failure) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{failure}\n")).into_response(),
    }
}

/// 503 with `Retry-After`, counted as shed.
fn shed(app: &App, reason: impl fmt::Display) -> Response {
    app.metrics.shed.inc();
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("overloaded: {reason}; retry later\n"),
    )
        .into_response();
    if let Some(pool) = app.limiter.pool() {
        let value = app.retry_after.value(pool);
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = String::with_capacity(8 * 1024);
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {err}\n"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

/// 503 while draining, or while shedding more than `--ready-max-shed` of `/work`.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let draining = app.draining.load(Ordering::Relaxed);
    let now = work_reading(&app.metrics);
    app.readiness.check(draining, now).into_response()
}

/// The `/work` requests received and shed so far.
fn work_reading(metrics: &ServerMetrics) -> Reading {
    Reading {
        at: Instant::now(),
        requests: metrics.work_requests.get(),
        shed: metrics.shed.get(),
    }
}

/// Every request passes here: the body limit, the `/work` query, the in-flight gauge, the
/// per-status counters and duration histograms, and the count of requests whose client left.
async fn observe(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let is_work = req.uri().path() == "/work";
    if is_work {
        app.metrics.work_requests.inc();
    }
    let mut flight = InFlight::start(&app);
    let mut response = 'respond: {
        req = match limit_body(req, app.body_limit, app.header_timeout).await {
            Ok(req) => req,
            Err(response) => break 'respond response,
        };
        if is_work && let Err(message) = describe_work(&app, &mut req, started) {
            break 'respond (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response();
        }
        next.run(req).await
    };
    flight.responded(response.status().as_u16(), started.elapsed(), is_work);
    if let Some(name) = &app.instance {
        response.headers_mut().insert(INSTANCE_HEADER, name.clone());
    }
    response
}

/// What a `/work` request asks of its job: the profile (the query's overrides) and, in pool
/// mode, its priority and deadline (the headers). One request extension, so one insert and one
/// look-up per request (a second extension cost a rehash of the request's extension map).
#[derive(Debug, Clone, Copy)]
struct WorkRequest {
    profile: Profile,
    options: JobOptions,
}

/// Puts into a `/work` request what its job is: a [`WorkRequest`].
///
/// # Errors
///
/// A query parameter or header whose value is not allowed, naming it.
fn describe_work(app: &App, req: &mut Request, arrived: Instant) -> Result<(), String> {
    let profile = profile_from_query(req.uri().query(), app.profile)?;
    let options = if app.limiter.pool().is_some() {
        classify::job_options(req.headers(), arrived)?
    } else {
        JobOptions::new()
    };
    req.extensions_mut()
        .insert(WorkRequest { profile, options });
    Ok(())
}

/// Refuses a body over `limit` with 413: at once when `Content-Length` says so, else while
/// reading it; a body that takes longer than `timeout` gets 408.
async fn limit_body(req: Request, limit: u64, timeout: Duration) -> Result<Request, Response> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than the limit of {limit} bytes\n"),
        )
            .into_response()
    };
    if req.body().is_end_stream() {
        return Ok(req);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "request body not received within the header timeout\n",
        )
            .into_response()),
    }
}

/// Counts a request in flight; if it is dropped unanswered, its client left (cancelled) or the
/// drain deadline passed (abandoned).
struct InFlight<'a> {
    app: &'a App,
    answered: bool,
}

impl<'a> InFlight<'a> {
    fn start(app: &'a App) -> Self {
        app.metrics.requests_in_flight.inc();
        InFlight {
            app,
            answered: false,
        }
    }

    fn responded(&mut self, status: u16, elapsed: Duration, is_work: bool) {
        self.answered = true;
        self.app.metrics.responded(status, elapsed, is_work);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let metrics = &self.app.metrics;
        metrics.requests_in_flight.dec();
        if !self.answered {
            if self.app.abandoning.load(Ordering::Relaxed) {
                metrics.abandoned.inc();
            } else {
                metrics.cancelled.inc();
            }
        }
    }
}

/// Most a request may ask for with `?wait_ms=` (one minute).
const MAX_WAIT_MS: f64 = 60_000.0;
/// Most a request may ask for with `?cpu_ms=` (ten seconds).
const MAX_CPU_MS: f64 = 10_000.0;
/// Most a request may ask for with `?alloc_kib=` (1 GiB).
const MAX_ALLOC_KIB: u64 = 1 << 20;

/// The profile of one `/work` request: the server's, with the query's overrides. The error
/// names the parameter and what it allows.
pub(crate) fn profile_from_query(query: Option<&str>, default: Profile) -> Result<Profile, String> {
    let mut profile = default;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name)
            .ok_or_else(|| format!("invalid query parameter name {raw_name:?}: a bad %-escape"))?;
        let name = name.as_str();
        let value = percent_decode(raw_value).unwrap_or_else(|| raw_value.to_string());
        let value = value.as_str();
        let millis = |max: f64| match value.parse::<f64>() {
            Ok(ms) if ms.is_finite() && (0.0..=max).contains(&ms) => {
                Ok(Duration::from_secs_f64(ms / 1e3))
            }
            _ => Err(format!(
                "invalid {name} = {value:?}: must be a number of milliseconds from 0 to {max}"
            )),
        };
        match name {
            "wait_ms" => profile.wait = millis(MAX_WAIT_MS)?,
            "cpu_ms" => profile.cpu = millis(MAX_CPU_MS)?,
            "alloc_kib" => {
                profile.alloc = match value.parse::<u64>() {
                    Ok(kib) if kib <= MAX_ALLOC_KIB => (kib as usize) * 1024,
                    _ => {
                        return Err(format!(
                            "invalid alloc_kib = {value:?}: must be a whole number of KiB from 0 \
                             to {MAX_ALLOC_KIB}"
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "unknown query parameter {name:?}: /work takes wait_ms, alloc_kib and cpu_ms"
                ));
            }
        }
    }
    Ok(profile)
}

/// `text` with its `%XX` escapes decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Profile = Profile {
        wait: Duration::from_millis(10),
        alloc: 0,
        cpu: Duration::ZERO,
    };

    #[test]
    fn no_query_keeps_the_servers_profile() {
        assert_eq!(profile_from_query(None, BASE), Ok(BASE));
        assert_eq!(profile_from_query(Some(""), BASE), Ok(BASE));
    }

    #[test]
    fn query_overrides_each_field() {
        let p = profile_from_query(Some("wait_ms=2.5&alloc_kib=8&cpu_ms=1"), BASE).unwrap();
        assert_eq!(p.wait, Duration::from_micros(2500));
        assert_eq!(p.alloc, 8 * 1024);
        assert_eq!(p.cpu, Duration::from_millis(1));
    }

    #[test]
    fn bad_values_name_the_parameter_and_the_range() {
        let err = profile_from_query(Some("wait_ms=abc"), BASE).unwrap_err();
        assert_eq!(
            err,
            r#"invalid wait_ms = "abc": must be a number of milliseconds from 0 to 60000"#
        );
        let err = profile_from_query(Some("cpu_ms=-1"), BASE).unwrap_err();
        assert!(err.starts_with("invalid cpu_ms"), "{err}");
        let err = profile_from_query(Some("wait_ms=NaN"), BASE).unwrap_err();
        assert!(err.starts_with("invalid wait_ms"), "{err}");
        let err = profile_from_query(Some("alloc_kib=99999999"), BASE).unwrap_err();
        assert!(err.starts_with("invalid alloc_kib"), "{err}");
        let err = profile_from_query(Some("sleep=5"), BASE).unwrap_err();
        assert!(err.contains(r#"unknown query parameter "sleep""#), "{err}");
        let err = profile_from_query(Some("wait_ms"), BASE).unwrap_err();
        assert!(err.starts_with("invalid wait_ms"), "{err}");
    }

    #[test]
    fn query_names_and_values_are_percent_decoded() {
        let p = profile_from_query(Some("wait_ms=1%30&%63pu_ms=%32"), BASE).unwrap();
        assert_eq!(p.wait, Duration::from_millis(10));
        assert_eq!(p.cpu, Duration::from_millis(2));
        assert_eq!(percent_decode("a%2Fb%2f"), Some("a/b/".to_string()));
        assert_eq!(percent_decode("1%3"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
        let err = profile_from_query(Some("wait_ms=1%3"), BASE).unwrap_err();
        assert_eq!(
            err,
            r#"invalid wait_ms = "1%3": must be a number of milliseconds from 0 to 60000"#
        );
    }
}
