//! The tower integration (feature `tower`): `PoolLayer`, `PoolService` and their response future.

mod support;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Router};
use spillway::{JobError, Overloaded, Pool, PoolLayer, PoolService, ShedReason, Snapshot};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

use support::DropFlag;

/// A pool with `max_workers` workers and room for `queue` waiting jobs.
fn pool(max_workers: usize, queue: usize) -> Pool {
    Pool::builder()
        .max_workers(max_workers)
        .queue_capacity(queue)
        .build()
        .unwrap()
}

/// Lets the pool's workers run until `done` holds of its metrics.
async fn until(pool: &Pool, done: impl Fn(&Snapshot) -> bool) {
    for _ in 0..10_000 {
        if done(&pool.metrics()) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the pool never got there: {:?}", pool.metrics());
}

/// The reason a request was shed, or `None` if its error is something else.
fn shed_reason(err: &BoxError) -> Option<ShedReason> {
    err.downcast_ref::<Overloaded>().map(Overloaded::reason)
}

/// An inner service's own error type, to show it comes back unchanged.
#[derive(Debug, PartialEq)]
struct Teapot;
impl fmt::Display for Teapot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("i'm a teapot")
    }
}
impl std::error::Error for Teapot {}

#[tokio::test]
async fn a_request_passes_through_and_returns_the_response() {
    let pool = pool(4, 16);
    let (mut service, mut handle) = mock::spawn_layer(PoolLayer::new(pool.clone()));
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let response = service.call("hello");

    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request, "hello");
    send.send_response("world");
    assert_eq!(response.await.unwrap(), "world");

    let m = pool.metrics();
    assert_eq!((m.submitted, m.completed, m.shed()), (1, 1, 0));
}

#[tokio::test]
async fn a_full_queue_sheds_at_once_and_counts_the_shed_job() {
    let pool = pool(1, 1);
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(PoolLayer::new(pool.clone()));

    assert!(service.poll_ready().is_ready());
    let running = service.call(1);
    let (_, send_running) = handle.next_request().await.unwrap();
    until(&pool, |m| m.busy == 1).await;
    assert!(service.poll_ready().is_ready());
    let queued = service.call(2);
    let (_, send_queued) = handle.next_request().await.unwrap();
    assert_eq!(pool.metrics().queued, 1);

    assert!(service.poll_ready().is_ready());
    let shed = service.call(3);
    let err = shed.await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::QueueFull));
    assert_eq!(err.to_string(), "service overloaded: queue full");
    let m = pool.metrics();
    assert_eq!((m.submitted, m.shed_full, m.shed_closed), (2, 1, 0));

    // The admitted requests are unaffected.
    send_running.send_response(10);
    send_queued.send_response(20);
    assert_eq!(running.await.unwrap(), 10);
    assert_eq!(queued.await.unwrap(), 20);
    assert_eq!(pool.metrics().completed, 2);
}

/// A pool of one worker running a job until `release` fires, with its one queue slot free.
async fn busy_pool() -> (Pool, oneshot::Sender<()>) {
    let pool = pool(1, 1);
    let (release, released) = oneshot::channel::<()>();
    pool.try_submit(async move {
        let _ = released.await;
    })
    .unwrap()
    .detach();
    until(&pool, |m| m.busy == 1).await;
    (pool, release)
}

/// A pool of one worker running a job until `release` fires, with its one queue slot taken.
async fn full_pool() -> (Pool, oneshot::Sender<()>) {
    let (pool, release) = busy_pool().await;
    pool.try_submit(async {}).unwrap().detach();
    assert_eq!(pool.metrics().queued, 1);
    (pool, release)
}

/// An inner service that answers at once.
fn doubler()
-> impl Service<u64, Response = u64, Error = Infallible, Future: Send + 'static> + Clone + fmt::Debug
{
    service_fn(|n: u64| async move { Ok::<_, Infallible>(n * 2) })
}

#[tokio::test(start_paused = true)]
async fn wait_mode_admits_when_a_slot_frees_within_the_wait() {
    let (pool, release) = full_pool().await;
    let service = PoolService::new(doubler(), pool.clone()).wait(Duration::from_millis(100));

    let response = tokio::spawn(service.oneshot(21));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!response.is_finished(), "still waiting for a slot");

    release.send(()).unwrap();
    assert_eq!(response.await.unwrap().unwrap(), 42);
    let m = pool.metrics();
    assert_eq!((m.submitted, m.completed, m.shed_full), (3, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn wait_mode_sheds_when_no_slot_frees_within_the_wait() {
    let (pool, _release) = full_pool().await;
    let layer = PoolLayer::new(pool.clone()).wait(Duration::from_millis(100));
    let service = ServiceBuilder::new().layer(layer).service(doubler());

    let started = Instant::now();
    let err = service.oneshot(21).await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::WaitTimedOut));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    let m = pool.metrics();
    assert_eq!((m.submitted, m.shed_full), (2, 1));
}

#[tokio::test]
async fn dropping_the_response_future_cancels_the_job_and_frees_its_slot() {
    let pool = pool(1, 1);
    let mut service = PoolService::new(
        service_fn(|flag: Option<Arc<AtomicBool>>| async move {
            match flag {
                Some(flag) => {
                    let _guard = DropFlag(flag);
                    std::future::pending().await
                }
                None => Ok::<_, Infallible>("admitted"),
            }
        }),
        pool.clone(),
    );
    let first_dropped = Arc::new(AtomicBool::new(false));
    let second_dropped = Arc::new(AtomicBool::new(false));

    let mut running = service
        .ready()
        .await
        .unwrap()
        .call(Some(first_dropped.clone()));
    until(&pool, |m| m.busy == 1).await;
    // The server polls the response: the request runs on its task (the slot was free).
    let polled = tokio::time::timeout(Duration::from_millis(5), &mut running).await;
    assert!(polled.is_err(), "it never ends by itself");
    let queued = service
        .ready()
        .await
        .unwrap()
        .call(Some(second_dropped.clone()));
    let err = service.ready().await.unwrap().call(None).await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::QueueFull), "pool full");

    // The client of the running request goes away: its job is dropped, the queued one runs.
    drop(running);
    until(&pool, |m| m.cancelled == 1 && m.busy == 1 && m.queued == 0).await;
    assert!(first_dropped.load(Ordering::SeqCst));
    assert!(!second_dropped.load(Ordering::SeqCst));

    // The freed slot admits the next request; dropping the other frees the worker for it.
    let next = service.ready().await.unwrap().call(None);
    drop(queued);
    assert_eq!(next.await.unwrap(), "admitted");
    assert!(second_dropped.load(Ordering::SeqCst));
    let m = pool.metrics();
    assert_eq!((m.cancelled, m.completed, m.shed_full), (2, 1, 1));
}

#[tokio::test]
async fn a_panicking_request_yields_a_boxed_job_error_and_the_service_keeps_serving() {
    let pool = pool(1, 4);
    let mut service = PoolService::new(
        service_fn(|fail: bool| async move {
            assert!(!fail, "boom");
            Ok::<_, Infallible>("fine")
        }),
        pool.clone(),
    );

    let err = service.ready().await.unwrap().call(true).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<JobError>(),
        Some(&JobError::Panicked("boom".into()))
    );
    assert_eq!(shed_reason(&err), None, "a panic is not overload");
    assert_eq!(
        service.ready().await.unwrap().call(false).await.unwrap(),
        "fine"
    );
    let m = pool.metrics();
    assert_eq!((m.panicked, m.completed), (1, 1));
}

#[tokio::test]
async fn an_inner_error_passes_through_unchanged() {
    let pool = pool(1, 4);
    let service = PoolService::new(
        service_fn(|()| async { Err::<(), _>(Teapot) }),
        pool.clone(),
    );
    let err = service.oneshot(()).await.unwrap_err();
    assert_eq!(err.downcast::<Teapot>().map(|e| *e).ok(), Some(Teapot));
    assert_eq!(pool.metrics().completed, 1, "the job itself ran to its end");

    // The mock's errors are boxed already; they are not boxed again.
    let (mut service, mut handle) = mock::spawn_layer::<(), (), _>(PoolLayer::new(pool.clone()));
    assert!(service.poll_ready().is_ready());
    let response = service.call(());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(Teapot);
    let err = response.await.unwrap_err();
    assert_eq!(err.downcast_ref::<Teapot>(), Some(&Teapot));
}

#[tokio::test]
async fn a_closed_pool_sheds_with_closed_in_both_modes_without_running_the_request() {
    let pool = pool(1, 4);
    pool.close();
    let ran = Arc::new(AtomicBool::new(false));
    let inner = {
        let ran = ran.clone();
        service_fn(move |()| {
            let ran = ran.clone();
            async move {
                ran.store(true, Ordering::SeqCst);
                Ok::<_, Infallible>(())
            }
        })
    };

    let fail_fast = PoolService::new(inner.clone(), pool.clone());
    let err = fail_fast.oneshot(()).await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::Closed));
    assert_eq!(err.to_string(), "service overloaded: pool closed");

    let waiting = PoolService::new(inner, pool.clone()).wait(Duration::from_secs(60));
    let err = waiting.oneshot(()).await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::Closed));

    assert!(!ran.load(Ordering::SeqCst), "a shed request never runs");
    let m = pool.metrics();
    assert_eq!((m.submitted, m.shed_closed), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_expires_in_the_queue_is_shed_as_expired() {
    let pool = Pool::builder()
        .max_workers(1)
        .queue_capacity(1)
        .queue_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(PoolLayer::new(pool.clone()));
    assert!(service.poll_ready().is_ready());
    let running = service.call(1);
    let (_, send) = handle.next_request().await.unwrap();
    until(&pool, |m| m.busy == 1).await;
    assert!(service.poll_ready().is_ready());
    let stale = service.call(2);

    tokio::time::advance(Duration::from_millis(20)).await;
    send.send_response(1);
    assert_eq!(running.await.unwrap(), 1);
    let err = stale.await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::Expired));
    assert_eq!(pool.metrics().expired, 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_abandoned_by_shutdown_is_shed_as_abandoned() {
    let pool = pool(1, 1);
    let mut service = PoolService::new(
        service_fn(|()| std::future::pending::<Result<(), Infallible>>()),
        pool.clone(),
    );
    let response = service.ready().await.unwrap().call(());
    until(&pool, |m| m.busy == 1).await;

    let report = pool.shutdown(Duration::from_millis(10)).await;
    assert_eq!(report.abandoned, 1);
    let err = response.await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::Abandoned));
}

#[tokio::test]
async fn poll_ready_is_the_inner_services() {
    let pool = pool(1, 1);
    let (mut service, mut handle) = mock::spawn_layer::<(), (), _>(PoolLayer::new(pool.clone()));

    handle.allow(0);
    assert!(service.poll_ready().is_pending(), "inner not ready");
    handle.allow(1);
    assert!(service.is_woken(), "the inner's wakeup reaches the caller");
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));

    // The pool's capacity is not consulted in poll_ready: that is `call`'s business.
    handle.send_error(Teapot);
    let Poll::Ready(Err(err)) = service.poll_ready() else {
        panic!("the inner's error comes through");
    };
    assert!(err.is::<Teapot>());
    assert_eq!(pool.metrics().submitted, 0);
}

#[tokio::test]
async fn clones_share_the_pool() {
    let pool = pool(2, 2);
    let service = PoolService::new(doubler(), pool.clone());
    let clone = service.clone();
    assert!(format!("{clone:?}").starts_with("PoolService"));

    let (a, b) = tokio::join!(service.oneshot(1), clone.oneshot(2));
    assert_eq!((a.unwrap(), b.unwrap()), (2, 4));
    assert_eq!(pool.metrics().completed, 2);

    let layer = PoolLayer::new(pool.clone());
    let from_clone = layer.clone().layer(doubler());
    assert_eq!(from_clone.oneshot(5).await.unwrap(), 10);
    assert_eq!(pool.metrics().completed, 3);
}

#[tokio::test]
async fn the_response_future_is_send_and_debug() {
    fn assert_send<T: Send>(_: &T) {}
    let pool = pool(1, 1);
    let mut service = PoolService::new(doubler(), pool.clone());
    let response = service.call(1);
    assert_send(&response);
    assert_eq!(
        format!("{response:?}").split_whitespace().next(),
        Some("ResponseFuture")
    );
    assert_eq!(response.await.unwrap(), 2);

    pool.close();
    let shed = service.call(1);
    assert_eq!(format!("{shed:?}"), "ResponseFuture { shed: Closed }");
    drop(shed);
}

async fn shed(err: BoxError) -> Response {
    if err.is::<Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "overloaded",
        )
            .into_response()
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
    }
}

fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn body_text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn axum_answers_200_then_503_with_retry_after_when_full() {
    let pool = pool(1, 1);
    let gate = Arc::new(Semaphore::new(0));
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get({
                let gate = gate.clone();
                move || async move {
                    gate.acquire().await.unwrap().forget();
                    "slow"
                }
            }),
        )
        .route(
            "/panic",
            get(|| async {
                // `black_box` keeps the compiler from seeing the rest as dead code.
                assert!(std::hint::black_box(false), "handler failed");
                "unreachable"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(shed))
                .layer(PoolLayer::new(pool.clone())),
        );

    let response = app.clone().oneshot(get_request("/fast")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "fast");

    let response = app.clone().oneshot(get_request("/panic")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body_text(response).await, "job panicked: handler failed");

    let running = tokio::spawn(app.clone().oneshot(get_request("/slow")));
    until(&pool, |m| m.busy == 1).await;
    let queued = tokio::spawn(app.clone().oneshot(get_request("/slow")));
    until(&pool, |m| m.queued == 1).await;

    let response = app.clone().oneshot(get_request("/fast")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(body_text(response).await, "overloaded");

    gate.add_permits(2);
    for slow in [running, queued] {
        let response = slow.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, "slow");
    }
    let response = app.oneshot(get_request("/fast")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let m = pool.metrics();
    assert_eq!((m.completed, m.panicked, m.shed_full), (4, 1, 1));
}

/// Issue 18, defect 5: a dropped queued request frees its queue slot at once, so the next
/// request is admitted instead of shed behind dead work.
#[tokio::test]
async fn a_dropped_queued_request_frees_its_slot_for_the_next_one() {
    let (pool, _release) = busy_pool().await;
    let mut service = PoolService::new(doubler(), pool.clone());
    let queued = service.ready().await.unwrap().call(1);
    assert_eq!(pool.metrics().queued, 1);

    drop(queued); // the client went away while its request waited
    let m = pool.metrics();
    assert_eq!(
        (m.queued, m.cancelled),
        (0, 1),
        "slot freed and counted at once"
    );
    let next = service.ready().await.unwrap().call(2);
    let m = pool.metrics();
    assert_eq!(
        (m.queued, m.shed_full),
        (1, 0),
        "the next request took the freed slot"
    );
    drop(next);
}

/// Issue 18, defect 9: in wait mode the wait budget starts at `call`, not at the first poll.
#[tokio::test(start_paused = true)]
async fn wait_mode_budget_starts_at_call_not_at_first_poll() {
    let (pool, _release) = full_pool().await;
    let mut service = PoolService::new(doubler(), pool.clone()).wait(Duration::from_millis(100));

    let called = Instant::now();
    let response = service.ready().await.unwrap().call(21);
    tokio::time::sleep(Duration::from_millis(90)).await; // the server polls it late
    let err = response.await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::WaitTimedOut));
    assert_eq!(
        called.elapsed(),
        Duration::from_millis(100),
        "budget counted from call"
    );
}

/// Classifies `n` as `Low` when odd, `Critical` when even; 0 has a deadline that has passed.
fn by_parity(n: &u64) -> spillway::JobOptions {
    use spillway::{JobOptions, Priority};
    let opts = JobOptions::new().priority(if n.is_multiple_of(2) {
        Priority::Critical
    } else {
        Priority::Low
    });
    match n {
        0 => opts.deadline(std::time::Instant::now() - Duration::from_millis(1)),
        _ => opts,
    }
}

#[tokio::test]
async fn classify_sets_each_requests_priority_and_deadline() {
    use spillway::Priority;
    let (pool, release) = busy_pool().await;
    let mut service = PoolLayer::new(pool.clone())
        .classify(by_parity)
        .layer(doubler());
    let low = service.call(3);
    let critical = service.call(4); // the queue is full: it displaces the low request
    let err = low.await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::Displaced));
    let err = service.call(0).await.unwrap_err();
    assert_eq!(shed_reason(&err), Some(ShedReason::DeadlinePassed));
    release.send(()).unwrap();
    assert_eq!(critical.await.unwrap(), 8);
    let m = pool.metrics();
    assert_eq!(m.by_priority[Priority::Low].displaced, 1);
    assert_eq!(m.by_priority[Priority::Critical].shed_expired, 1);
    assert_eq!(m.by_priority[Priority::Critical].completed, 1);
}
