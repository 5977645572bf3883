//! The lanes that send the load. A lane sends its share of the schedule one request at a time:
//! an HTTP/1.1 connection is one lane; an HTTP/2 connection carries `streams` lanes.
//!
//! Open loop: request `i` of the run is due at `start + i / rate`, on lane `i % lanes`, whatever
//! happened to the requests before it. When a lane is still busy at a request's due time, the
//! request goes out late and its latency still counts from the due time, as wrk2 does, so a
//! stalled server shows its stall in the percentiles (no coordinated omission). When the lane
//! was free, latency counts from the moment the request was sent, so the generator's own timer
//! jitter is not blamed on the server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use spillway::Priority;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::stats::{Failure, Shards};
use super::target::Target;
use crate::net::socket_for;
use crate::priority::{self, PRIORITY_HEADER, PriorityMix};
use crate::status::StatusClass;

/// What every lane shares: the schedule and the request.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) target: Target,
    pub(crate) addr: SocketAddr,
    pub(crate) http2: bool,
    pub(crate) connections: usize,
    /// Lanes per connection: 1 for HTTP/1.1.
    pub(crate) streams: usize,
    pub(crate) rate: f64,
    /// When request 0 is due (the warm-up begins).
    pub(crate) start: Instant,
    /// Requests due from here on are measured.
    pub(crate) measure_from: Instant,
    /// The measured part's length; answers after `measure_from + duration` are not counted in
    /// the rates.
    pub(crate) duration: Duration,
    /// Requests in the whole schedule (warm-up included).
    pub(crate) total: u64,
    /// The index of the first measured request (the warm-up's count).
    pub(crate) first_measured: u64,
    pub(crate) timeout: Duration,
    pub(crate) sources: Vec<IpAddr>,
    /// The priorities to send in `x-priority`, and their shares; none sends no header.
    pub(crate) mix: Option<PriorityMix>,
}

impl Plan {
    pub(crate) fn lanes(&self) -> usize {
        self.connections * self.streams
    }

    /// When request `i` is due.
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// The priority request `i` is sent with, if the run sends priorities.
    fn priority(&self, i: u64) -> Option<Priority> {
        self.mix.as_ref().map(|mix| mix.of(i))
    }

    /// Request `i`, to `uri`, with its `x-priority` header if it has one.
    fn request(&self, uri: &str, i: u64) -> Result<http::Request<Empty<Bytes>>, Failure> {
        let mut request = http::Request::get(uri);
        if !self.http2 {
            request = request.header(http::header::HOST, self.target.authority.as_str());
        }
        if let Some(priority) = self.priority(i) {
            request = request.header(PRIORITY_HEADER, priority.as_str());
        }
        request
            .body(Empty::<Bytes>::new())
            .map_err(|_| Failure::Other)
    }
}

/// Counters the progress line reads while the run goes on.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) sent: AtomicU64,
    pub(crate) responses: [AtomicU64; 3],
    pub(crate) errors: AtomicU64,
    pub(crate) established: AtomicU64,
    pub(crate) open: AtomicI64,
    /// Bytes of response bodies read (and discarded).
    pub(crate) body_bytes: AtomicU64,
}

/// Connections opened at once before the schedule starts.
const CONNECTING_AT_ONCE: usize = 256;

/// What [`run`] reports: when measuring began and how many connections were open when the
/// schedule started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ran {
    pub(crate) measure_from: Instant,
    pub(crate) opened: u64,
}

/// Opens every connection, then runs every lane to the end of the schedule, which starts once
/// the connections are open (so a connect storm is not measured as the server's latency).
/// `opened` reports, as soon as it is known, how many connections could be opened.
pub(crate) async fn run(
    mut plan: Plan,
    warmup: Duration,
    shards: Arc<Shards>,
    live: Arc<Live>,
    opened: impl FnOnce(u64),
) -> Ran {
    let connections = preconnect(&plan, &live).await;
    let open = connections.iter().filter(|c| c.is_some()).count() as u64;
    opened(open);
    plan.start = Instant::now() + Duration::from_millis(20);
    plan.measure_from = plan.start + warmup;
    let measure_from = plan.measure_from;
    let plan = Arc::new(plan);
    let mut tasks = tokio::task::JoinSet::new();
    for (c, conn) in connections.into_iter().enumerate() {
        let (h1, h2) = match conn {
            Some(Sender::H1(s)) => (Some(s), SharedH2::default()),
            Some(Sender::H2(s)) => (None, SharedH2::with(s)),
            None => (None, SharedH2::default()),
        };
        let h2 = Arc::new(h2);
        let mut h1 = h1;
        for s in 0..plan.streams {
            let lane = Lane {
                index: c * plan.streams + s,
                connection: c,
                h1: h1.take(),
                h2: Arc::clone(&h2),
                plan: Arc::clone(&plan),
                shards: Arc::clone(&shards),
                live: Arc::clone(&live),
                free_at: plan.start,
            };
            tasks.spawn(lane.run());
        }
    }
    while tasks.join_next().await.is_some() {}
    Ran {
        measure_from,
        opened: open,
    }
}

/// An open connection, ready for requests.
enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// Opens every connection, a bounded number at a time; `None` where one failed (its lanes
/// retry when their requests are due, and count connect errors).
async fn preconnect(plan: &Plan, live: &Arc<Live>) -> Vec<Option<Sender>> {
    let mut out: Vec<Option<Sender>> = (0..plan.connections).map(|_| None).collect();
    let mut next = 0;
    let mut opening = tokio::task::JoinSet::new();
    let shared = Arc::new(PlanForConnect {
        addr: plan.addr,
        sources: plan.sources.clone(),
        timeout: plan.timeout,
        http2: plan.http2,
    });
    loop {
        while next < plan.connections && opening.len() < CONNECTING_AT_ONCE {
            let (c, p, live) = (next, Arc::clone(&shared), Arc::clone(live));
            opening.spawn(async move { (c, open(&p, c, &live).await.ok()) });
            next += 1;
        }
        match opening.join_next().await {
            Some(Ok((c, sender))) => out[c] = sender,
            Some(Err(_)) => {}
            None => break,
        }
    }
    out
}

/// What opening a connection needs.
#[derive(Debug)]
struct PlanForConnect {
    addr: SocketAddr,
    sources: Vec<IpAddr>,
    timeout: Duration,
    http2: bool,
}

async fn open(p: &PlanForConnect, connection: usize, live: &Arc<Live>) -> Result<Sender, Failure> {
    let stream = connect_to(p.addr, &p.sources, p.timeout, connection).await?;
    if p.http2 {
        let (s, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        drive(live, conn);
        Ok(Sender::H2(s))
    } else {
        let (s, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        drive(live, conn);
        Ok(Sender::H1(s))
    }
}

/// One HTTP/2 connection, shared by its lanes; the first lane to find it missing or closed
/// (re)opens it.
#[derive(Debug, Default)]
struct SharedH2 {
    sender: tokio::sync::Mutex<Option<http2::SendRequest<Empty<Bytes>>>>,
}

impl SharedH2 {
    fn with(sender: http2::SendRequest<Empty<Bytes>>) -> Self {
        SharedH2 {
            sender: tokio::sync::Mutex::new(Some(sender)),
        }
    }
}

/// One lane: its share of the schedule, sent one request at a time.
struct Lane {
    index: usize,
    connection: usize,
    /// The lane's own HTTP/1.1 connection, when it has one.
    h1: Option<http1::SendRequest<Empty<Bytes>>>,
    /// The HTTP/2 connection it shares with the connection's other lanes.
    h2: Arc<SharedH2>,
    plan: Arc<Plan>,
    shards: Arc<Shards>,
    live: Arc<Live>,
    /// When the lane's last request ended.
    free_at: Instant,
}

/// When one request was due, went out and ended.
#[derive(Debug, Clone, Copy)]
struct Sent {
    due: Instant,
    sent: Instant,
    /// Latency, and the timeout, run from here: the due time when the lane held the request
    /// back, else the send (the generator's own lag is reported apart).
    begin: Instant,
    done: Instant,
    lane_was_free: bool,
    /// Whether the request went out at all (not when it was overdue past its timeout).
    went_out: bool,
}

impl Lane {
    /// Sends requests `index`, `index + lanes`, ... of the schedule, each at its due time.
    async fn run(mut self) {
        let lanes = self.plan.lanes() as u64;
        let mut i = self.index as u64;
        while i < self.plan.total {
            self.send(i).await;
            i += lanes;
        }
    }

    /// Sends request `i` once it is due, and records what came of it.
    async fn send(&mut self, i: u64) {
        let due = self.plan.due(i);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let sent = Instant::now();
        let lane_was_free = self.free_at <= due;
        let begin = if lane_was_free { sent } else { due };
        let budget = self.plan.timeout.saturating_sub(sent - begin);
        let outcome = self.attempt(i, budget).await;
        let done = Instant::now();
        self.free_at = done;
        match outcome {
            Ok(status) => {
                self.live.responses[StatusClass::of(status).index()].fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => self.live.errors.fetch_add(1, Ordering::Relaxed),
        };
        if i >= self.plan.first_measured {
            let times = Sent {
                due,
                sent,
                begin,
                done,
                lane_was_free,
                went_out: !budget.is_zero(),
            };
            self.record(times, self.plan.priority(i), outcome);
        }
    }

    /// One request within `budget`, a (re)connect included.
    async fn attempt(&mut self, i: u64, budget: Duration) -> Result<u16, Failure> {
        if budget.is_zero() {
            // Overdue by more than the timeout before it could be sent: the caller gave up.
            return Err(Failure::Timeout);
        }
        self.live.sent.fetch_add(1, Ordering::Relaxed);
        let plan = &self.plan;
        let attempt = async {
            if plan.http2 {
                request_h2(plan, i, self.connection, &self.h2, &self.live, budget).await
            } else {
                request_h1(plan, i, self.connection, &mut self.h1, &self.live, budget).await
            }
        };
        match tokio::time::timeout(budget, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // Whatever was in progress on the HTTP/1.1 connection cannot be reused.
                self.h1 = None;
                Err(Failure::Timeout)
            }
        }
    }

    /// Records a measured request, sent at `priority`, in the lane's shard.
    fn record(&self, t: Sent, priority: Option<Priority>, outcome: Result<u16, Failure>) {
        let plan = &self.plan;
        let second = usize::try_from(t.due.saturating_duration_since(plan.measure_from).as_secs())
            .unwrap_or(0);
        let window_end = plan.measure_from + plan.duration;
        let in_window = t.done <= window_end;
        self.shards.with(self.index, |tally| {
            if t.lane_was_free {
                tally.sent_late_by(t.sent.saturating_duration_since(t.due));
            }
            if t.went_out && t.sent <= window_end {
                tally.sent_in_window += 1;
            }
            match outcome {
                Ok(status) => tally.response(status, t.done - t.begin, second, in_window),
                Err(failure) => tally.failure(failure, second),
            }
            if let Some(p) = priority.map(priority::index) {
                match outcome {
                    Ok(status) => tally.priority_response(p, status, t.done - t.begin, in_window),
                    Err(_) => tally.priority_failure(p),
                }
            }
        });
    }
}

async fn connect(plan: &Plan, connection: usize) -> Result<TcpStream, Failure> {
    connect_to(plan.addr, &plan.sources, plan.timeout, connection).await
}

async fn connect_to(
    addr: SocketAddr,
    sources: &[IpAddr],
    timeout: Duration,
    connection: usize,
) -> Result<TcpStream, Failure> {
    let source = (!sources.is_empty()).then(|| sources[connection % sources.len()]);
    let socket = socket_for(addr, source).map_err(|_| Failure::Connect)?;
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| Failure::Connect)?
        .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Counts a connection open until its driver ends.
fn drive<F>(live: &Arc<Live>, conn: F)
where
    F: std::future::Future + Send + 'static,
{
    live.established.fetch_add(1, Ordering::Relaxed);
    live.open.fetch_add(1, Ordering::Relaxed);
    let live = Arc::clone(live);
    tokio::spawn(async move {
        let _ = conn.await;
        live.open.fetch_sub(1, Ordering::Relaxed);
    });
}

async fn request_h1(
    plan: &Plan,
    i: u64,
    connection: usize,
    sender: &mut Option<http1::SendRequest<Empty<Bytes>>>,
    live: &Arc<Live>,
    budget: Duration,
) -> Result<u16, Failure> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = None;
        let stream = connect(plan, connection).await?;
        let (s, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        drive(live, conn);
        *sender = Some(s);
    }
    let s = sender.as_mut().expect("connected above");
    let request = plan.request(plan.target.path.as_str(), i)?;
    let exchange = async {
        s.ready().await?;
        read_status(s.send_request(request).await?, live).await
    };
    match tokio::time::timeout(budget, exchange).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(_)) => {
            *sender = None;
            Err(Failure::Other)
        }
        Err(_) => {
            // The answer may still come on this connection: it cannot be reused.
            *sender = None;
            Err(Failure::Timeout)
        }
    }
}

async fn request_h2(
    plan: &Plan,
    i: u64,
    connection: usize,
    shared: &SharedH2,
    live: &Arc<Live>,
    budget: Duration,
) -> Result<u16, Failure> {
    let mut sender = {
        let mut guard = shared.sender.lock().await;
        if guard.as_ref().is_none_or(|s| s.is_closed()) {
            *guard = None;
            let stream = connect(plan, connection).await?;
            let (s, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|_| Failure::Connect)?;
            drive(live, conn);
            *guard = Some(s);
        }
        guard.as_ref().expect("connected above").clone()
    };
    let uri = format!("http://{}{}", plan.target.authority, plan.target.path);
    let request = plan.request(&uri, i)?;
    let exchange = async {
        sender.ready().await?;
        read_status(sender.send_request(request).await?, live).await
    };
    match tokio::time::timeout(budget, exchange).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(_)) => Err(Failure::Other),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The response's status, once its whole body has been read (so the connection is free
/// again). The body is discarded frame by frame as it arrives, and its bytes counted: a huge
/// or endless body costs no memory.
async fn read_status(
    response: http::Response<hyper::body::Incoming>,
    live: &Live,
) -> Result<u16, hyper::Error> {
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            live.body_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(status)
}
