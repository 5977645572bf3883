//! The accept loop, the connections, and the drain on shutdown.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use spillway::ShutdownReport;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use super::app::{self, App};
use super::dashboard;
use super::{Protocol, ServeArgs};
use crate::net::socket_for;

/// Backlog of the listening socket; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// Stands for "never" where a deadline must be an instant: about thirty years.
const NO_DEADLINE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// How connections are told to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the requests in flight, then close.
    Draining,
    /// The drain deadline passed: close now.
    Abort,
}

/// A bound server, not yet accepting. [`Server::run`] serves until its signal resolves.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use clap::Parser;
/// use spillway_cli::{Cli, Command};
///
/// let Command::Serve(args) = Cli::parse_from(["spillway", "serve", "--addr", "127.0.0.1:0"])
///     .command
/// else {
///     unreachable!()
/// };
/// let server = spillway_cli::serve::Server::bind(&args).await?;
/// println!("listening on {}", server.local_addr());
/// let report = server.run(tokio::time::sleep(std::time::Duration::from_secs(1))).await?;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Arc<App>,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    max_connections: Option<Arc<Semaphore>>,
    drain_timeout: Duration,
    connections: Arc<Connections>,
}

/// What the drain after SIGINT/SIGTERM did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Requests in flight when the signal came.
    pub in_flight_at_signal: u64,
    /// Requests answered while draining.
    pub drained: u64,
    /// Requests still in flight at the drain deadline, dropped unanswered.
    pub abandoned: u64,
    /// Whether the deadline passed before every connection closed.
    pub timed_out: bool,
    /// Whether a second signal ended the drain at once.
    pub forced: bool,
    /// How long the drain took.
    pub elapsed: Duration,
    /// The pool's own shutdown, in pool mode.
    pub pool: Option<ShutdownReport>,
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drained: {} in flight at the signal, {} answered while draining, {} abandoned{} in {:.3}s",
            self.in_flight_at_signal,
            self.drained,
            self.abandoned,
            if self.forced {
                " (forced by a second signal)"
            } else if self.timed_out {
                " (drain timeout reached)"
            } else {
                ""
            },
            self.elapsed.as_secs_f64()
        )?;
        if let Some(pool) = &self.pool {
            write!(
                f,
                "; pool: {} jobs drained, {} abandoned",
                pool.drained, pool.abandoned
            )?;
        }
        Ok(())
    }
}

impl Server {
    /// Checks the settings, builds the mode's limiter, and binds the address.
    ///
    /// # Errors
    ///
    /// Invalid settings (naming the flag), or an address that cannot be bound.
    pub async fn bind(args: &ServeArgs) -> anyhow::Result<Server> {
        args.faults.check()?;
        let app = Arc::new(App::new(args)?);
        let router = app::router(Arc::clone(&app));
        let listener =
            listen(args.addr).with_context(|| format!("cannot listen on --addr {}", args.addr))?;
        let local_addr = listener.local_addr()?;
        dashboard::spawn_ticker(&app);
        Ok(Server {
            listener,
            local_addr,
            app,
            router,
            builder: Arc::new(connection_builder(args)),
            max_connections: args
                .max_connections
                .map(|n| Arc::new(Semaphore::new(usize::try_from(n).unwrap_or(usize::MAX)))),
            drain_timeout: args.drain_timeout,
            connections: Arc::new(Connections::default()),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `signal` resolves, then stops accepting, lets the requests in flight finish
    /// within the drain timeout, and reports.
    ///
    /// # Errors
    ///
    /// None at present; the `Result` leaves room for fatal listener errors.
    pub async fn run(self, signal: impl Future<Output = ()>) -> anyhow::Result<DrainReport> {
        self.run_with_force(signal, std::future::pending()).await
    }

    /// As [`Server::run`], and once draining, `force` resolving (a second signal) abandons
    /// what is still in flight at once instead of waiting for the drain timeout.
    ///
    /// # Errors
    ///
    /// None at present; the `Result` leaves room for fatal listener errors.
    pub async fn run_with_force(
        self,
        signal: impl Future<Output = ()>,
        force: impl Future<Output = ()>,
    ) -> anyhow::Result<DrainReport> {
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let Server {
            listener,
            app,
            router,
            builder,
            max_connections,
            drain_timeout,
            connections,
            ..
        } = self;
        let accept = Acceptor {
            app: &app,
            router: &router,
            builder: &builder,
            connections: &connections,
            phase: phase_rx,
        };
        accept
            .until(listener, max_connections.as_ref(), signal)
            .await;
        // A drain timeout too large for the clock is no deadline at all.
        let deadline = Instant::now()
            .checked_add(drain_timeout)
            .unwrap_or_else(|| Instant::now() + NO_DEADLINE);
        Ok(drain(&app, &connections, &phase_tx, deadline, force).await)
    }
}

/// Most header fields in one HTTP/1.1 request head; more get 431 (hyper's default, 100, made
/// explicit: the byte limit alone would let a head of 64 KiB carry thousands of tiny fields,
/// each parsed and stored).
const MAX_HEADER_FIELDS: usize = 100;

/// HTTP/2 streams the client may reset before the server took them, per connection, before the
/// connection is closed with `ENHANCE_YOUR_CALM` (rapid reset, CVE-2023-44487): each such stream
/// costs the server a request it never answers. h2's default, 20, made explicit.
const MAX_PENDING_RESETS: usize = 20;

/// HTTP/2 streams the server may reset for a client's protocol errors, per connection, before it
/// closes the connection (the "MadeYouReset" variant of rapid reset, CVE-2025-8671). hyper's
/// default, made explicit.
const MAX_ERROR_RESETS: usize = 1024;

/// Bytes of responses buffered per HTTP/2 stream for a client that does not open its window
/// (window-update stall): the handler's future waits instead of the buffer growing. hyper's
/// default, made explicit.
const MAX_SEND_BUFFER: usize = 400 << 10;

/// The HTTP/1.1 and HTTP/2 connection settings, with each of hyper's protections against a
/// hostile client set explicitly.
fn connection_builder(args: &ServeArgs) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = args.max_header_bytes;
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris on headers: the whole head within the timeout, else the connection closes.
        .header_read_timeout(args.header_timeout)
        .keep_alive(!args.no_keep_alive)
        // Oversized headers: the read buffer holds a whole head; past it hyper answers 431 and
        // closes, instead of buffering a head of any size (hyper's own default is ~400 KiB).
        .max_buf_size(usize::try_from(header_bytes).unwrap_or(usize::MAX))
        .max_headers(MAX_HEADER_FIELDS);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Many requests on one connection: each stream is a request in flight.
        .max_concurrent_streams(args.h2_max_streams)
        // Oversized headers: the decoded header list past the limit gets 431 (h2 answers it);
        // this also caps the CONTINUATION frames of one header block (CONTINUATION flood).
        .max_header_list_size(header_bytes)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(MAX_ERROR_RESETS))
        .max_send_buf_size(MAX_SEND_BUFFER)
        // Idle and dead connections: a ping each interval; a connection that does not answer
        // one within the same time (a peer gone, or a client that stopped reading) is closed,
        // freeing its descriptor and its streams.
        .keep_alive_interval(Some(args.h2_keep_alive))
        .keep_alive_timeout(args.h2_keep_alive);
    match args.protocol {
        Protocol::Auto => builder,
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    }
}

/// What every accepted connection is served with.
struct Acceptor<'a> {
    app: &'a Arc<App>,
    router: &'a Router,
    builder: &'a Arc<auto::Builder<TokioExecutor>>,
    connections: &'a Arc<Connections>,
    phase: watch::Receiver<Phase>,
}

impl Acceptor<'_> {
    /// Accepts and serves connections (at most `max_connections` open) until `signal`
    /// resolves; then closes the listener.
    async fn until(
        &self,
        listener: TcpListener,
        max_connections: Option<&Arc<Semaphore>>,
        signal: impl Future<Output = ()>,
    ) {
        let mut signal = pin!(signal);
        let mut accept_log = AcceptLog::default();
        loop {
            let permit = match max_connections {
                Some(limit) => tokio::select! {
                    biased;
                    () = &mut signal => break,
                    permit = Arc::clone(limit).acquire_owned() => permit.ok(),
                },
                None => None,
            };
            let accepted = tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _peer)) => self.serve(stream, permit),
                Err(err) => self.failed(&err, &mut accept_log).await,
            }
        }
        drop(listener);
    }

    /// Serves an accepted connection in a task of its own, holding its connection permit and
    /// counted open until it closes.
    fn serve(&self, stream: TcpStream, permit: Option<OwnedSemaphorePermit>) {
        self.app.metrics.connections_total.inc();
        let _ = stream.set_nodelay(true);
        let open = Open::new(Arc::clone(self.app), Arc::clone(self.connections));
        let connection = serve_connection(
            stream,
            TowerToHyperService::new(self.router.clone()),
            Arc::clone(self.builder),
            self.app.header_timeout,
            self.phase.clone(),
        );
        tokio::spawn(async move {
            let (_permit, _open) = (permit, open);
            connection.await;
        });
    }

    /// Counts and logs a failed accept; out of descriptors, waits for a connection to close.
    async fn failed(&self, err: &std::io::Error, log: &mut AcceptLog) {
        let metrics = &self.app.metrics;
        metrics.accept_errors.inc();
        if let Some(times) = log.note(Instant::now()) {
            eprintln!(
                "accept failed: {err} ({times} time(s) since the last report); \
                 still serving {} open connections",
                metrics.connections_open.get()
            );
        }
        if out_of_descriptors(err) {
            // Retrying at once would spin: wait for a connection to close.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How the wait for the connections to close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrainEnd {
    Closed,
    TimedOut,
    Forced,
}

/// Lets the requests in flight finish until `deadline` (or until `force` resolves), then
/// abandons the rest and shuts the pool down.
async fn drain(
    app: &App,
    connections: &Connections,
    phase: &watch::Sender<Phase>,
    deadline: Instant,
    force: impl Future<Output = ()>,
) -> DrainReport {
    let started = Instant::now();
    app.draining.store(true, Ordering::SeqCst);
    let in_flight_at_signal = gauge_value(app.metrics.requests_in_flight.get());
    let completed_at_signal = app.metrics.completed();
    let _ = phase.send(Phase::Draining);
    let end = tokio::select! {
        biased;
        () = force => DrainEnd::Forced,
        closed = tokio::time::timeout_at(deadline, connections.closed()) => match closed {
            Ok(()) => DrainEnd::Closed,
            Err(_) => DrainEnd::TimedOut,
        },
    };
    let abandoned = match end {
        DrainEnd::Closed => 0,
        DrainEnd::TimedOut | DrainEnd::Forced => abandon(app, connections, phase).await,
    };
    let pool_deadline = match end {
        DrainEnd::Forced => Duration::ZERO,
        DrainEnd::Closed | DrainEnd::TimedOut => deadline.saturating_duration_since(Instant::now()),
    };
    let pool = match app.limiter.pool() {
        Some(pool) => Some(pool.shutdown(pool_deadline).await),
        None => None,
    };
    DrainReport {
        in_flight_at_signal,
        drained: app.metrics.completed() - completed_at_signal,
        abandoned,
        timed_out: end == DrainEnd::TimedOut,
        forced: end == DrainEnd::Forced,
        elapsed: started.elapsed(),
        pool,
    }
}

/// The drain deadline passed: closes every connection; returns the requests abandoned.
async fn abandon(app: &App, connections: &Connections, phase: &watch::Sender<Phase>) -> u64 {
    app.abandoning.store(true, Ordering::SeqCst);
    let abandoned = gauge_value(app.metrics.requests_in_flight.get());
    let _ = phase.send(Phase::Abort);
    // Connections end at their next poll; give them a moment to be dropped.
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.closed()).await;
    abandoned
}

fn gauge_value(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket_for(addr, None)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Whether an accept failed for lack of file descriptors or kernel memory: the listener is fine
/// and will accept again once connections close.
fn out_of_descriptors(err: &std::io::Error) -> bool {
    // EMFILE (24), ENFILE (23), ENOBUFS (105), ENOMEM (12) on Linux.
    matches!(err.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Serves one connection until it closes, or the drain phase ends it.
///
/// Its first request head (the protocol preface or first line, and the headers) must arrive
/// within `header_timeout` of the accept: one budget for the whole head. hyper's own header
/// timer covers the later requests of a keep-alive connection. Waiting for bytes is readiness,
/// not polling: a client that leaves is noticed at once.
async fn serve_connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    header_timeout: Duration,
    mut phase: watch::Receiver<Phase>,
) {
    let first_head = Arc::new(HeadArrival::default());
    let service = FirstHead {
        inner: service,
        arrival: Arc::clone(&first_head),
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    let head_deadline = tokio::time::sleep(header_timeout);
    let mut head_deadline = pin!(head_deadline);
    let mut head_arrived = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = &mut head_deadline, if !head_arrived => {
                if !first_head.has_arrived() {
                    return;
                }
                head_arrived = true;
            }
            () = first_head.notify.notified(), if !head_arrived => head_arrived = true,
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Serving => {}
                    // Nothing in flight before the first head: close at once.
                    Phase::Draining if !first_head.has_arrived() => return,
                    // Closes idle connections at once, busy ones after their response.
                    Phase::Draining => conn.as_mut().graceful_shutdown(),
                    Phase::Abort => return,
                }
            }
        }
    }
}

/// The connection's service, telling the connection when its first request head has arrived.
#[derive(Debug, Clone)]
struct FirstHead<S> {
    inner: S,
    arrival: Arc<HeadArrival>,
}

/// Whether a connection's first request head has arrived, and a wake-up when it does.
#[derive(Debug, Default)]
struct HeadArrival {
    arrived: AtomicBool,
    notify: Notify,
}

impl HeadArrival {
    fn mark(&self) {
        self.arrived.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn has_arrived(&self) -> bool {
        self.arrived.load(Ordering::SeqCst)
    }
}

impl<S, R> hyper::service::Service<R> for FirstHead<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: R) -> Self::Future {
        self.arrival.mark();
        self.inner.call(req)
    }
}

/// Open connections, and a wake-up for when the last one closes.
#[derive(Debug, Default)]
struct Connections {
    open: std::sync::atomic::AtomicUsize,
    none_open: Notify,
}

impl Connections {
    /// Resolves once no connection is open.
    async fn closed(&self) {
        loop {
            let notified = self.none_open.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection, counted for the drain and in `/metrics`.
struct Open {
    app: Arc<App>,
    connections: Arc<Connections>,
}

impl Open {
    fn new(app: Arc<App>, connections: Arc<Connections>) -> Self {
        connections.open.fetch_add(1, Ordering::SeqCst);
        app.metrics.connections_open.inc();
        Open { app, connections }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.app.metrics.connections_open.dec();
        if self.connections.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.connections.none_open.notify_waiters();
        }
    }
}

/// Rate-limits the accept-error log to one line a second, with the count of the failures it
/// stands for.
#[derive(Debug, Default)]
struct AcceptLog {
    last: Option<Instant>,
    since_last: u64,
}

impl AcceptLog {
    /// Notes a failure at `now`; returns how many failures to report if a line is due.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.since_last += 1;
        match self.last {
            Some(last) if now.saturating_duration_since(last) < Duration::from_secs(1) => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.since_last))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_logged_once_a_second_with_their_count() {
        let t0 = Instant::now();
        let mut log = AcceptLog::default();
        assert_eq!(
            log.note(t0),
            Some(1),
            "the first failure is reported at once"
        );
        for ms in 1..1000 {
            assert_eq!(log.note(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.note(t0 + Duration::from_secs(1)), Some(1000));
        assert_eq!(log.note(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(5)), Some(2));
    }

    #[test]
    fn descriptor_exhaustion_is_told_apart_from_other_accept_errors() {
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(24)));
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(23)));
        assert!(!out_of_descriptors(&std::io::Error::from_raw_os_error(103)));
        assert!(!out_of_descriptors(&std::io::Error::other("x")));
    }
}
