//! [`PoolLayer`]: wraps services in a [`PoolService`].

use std::fmt;
use std::time::Duration;

use tower_layer::Layer;

use super::service::PoolService;
use crate::pool::Pool;

/// A [`Layer`] that runs a service's requests as jobs of a [`Pool`] and sheds what the pool has
/// no room for, with [`Overloaded`](crate::Overloaded). It makes [`PoolService`]s.
///
/// By default a request that finds the queue full is shed at once ([`new`](Self::new)); with
/// [`wait`](Self::wait) it waits up to a timeout for a slot. Every service the layer makes shares
/// the one pool, so its `max_workers` and `queue_capacity` bound the whole stack, and its
/// concurrency limit ([`Limit::adaptive`](crate::Limit::adaptive) by default) decides how many
/// requests run at once and how long the queue may grow while it is saturated.
///
/// # Examples
///
/// With [`tower::ServiceBuilder`](https://docs.rs/tower/latest/tower/struct.ServiceBuilder.html):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use spillway::{Pool, PoolLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// let pool = Pool::builder().max_workers(16).queue_capacity(64).build().unwrap();
/// let service = ServiceBuilder::new()
///     .layer(PoolLayer::new(pool))
///     .service_fn(|n: u64| async move { Ok::<_, std::convert::Infallible>(n + 1) });
///
/// assert_eq!(service.oneshot(41).await.unwrap(), 42);
/// # }
/// ```
///
/// With [axum](https://docs.rs/axum): turn a shed request into `503 Service Unavailable` with
/// `HandleErrorLayer`, and a panicking handler into `500`:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use axum::{
///     BoxError, Router, body::Body, error_handling::HandleErrorLayer, http::Request,
///     http::StatusCode, response::IntoResponse, routing::get,
/// };
/// use spillway::{Overloaded, Pool, PoolLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// async fn handler() -> &'static str {
///     "done"
/// }
///
/// async fn shed(err: BoxError) -> axum::response::Response {
///     if err.is::<Overloaded>() {
///         (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "overloaded").into_response()
///     } else {
///         (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
///     }
/// }
///
/// let pool = Pool::builder().max_workers(64).queue_capacity(256).build().unwrap();
/// let app = Router::new().route("/work", get(handler)).layer(
///     ServiceBuilder::new()
///         .layer(HandleErrorLayer::new(shed))
///         .layer(PoolLayer::new(pool)),
/// );
///
/// let request = Request::get("/work").body(Body::empty()).unwrap();
/// let response = app.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::OK);
/// // Serve it with `axum::serve` (features "tokio" and "http1") as any other router.
/// # }
/// ```
///
/// With plain hyper, through `hyper_util`'s `TowerToHyperService`; shed requests are answered
/// with 503 by `map_result`, since hyper itself would just close the connection on an error:
///
/// ```no_run
/// use std::convert::Infallible;
///
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use hyper::{body::Incoming, server::conn::http1};
/// use hyper_util::{rt::TokioIo, service::TowerToHyperService};
/// use spillway::{BoxError, Overloaded, Pool, PoolLayer};
/// use tower::ServiceBuilder;
///
/// async fn handler(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
///     Ok(Response::new(Full::new(Bytes::from_static(b"done"))))
/// }
///
/// type Answer = Result<Response<Full<Bytes>>, BoxError>;
///
/// fn answer(result: Answer) -> Answer {
///     let status = match result {
///         Ok(response) => return Ok(response),
///         Err(err) if err.is::<Overloaded>() => StatusCode::SERVICE_UNAVAILABLE,
///         Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
///     };
///     let mut response = Response::new(Full::new(Bytes::from(status.as_str().to_owned())));
///     *response.status_mut() = status;
///     Ok(response)
/// }
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let pool = Pool::builder().max_workers(64).queue_capacity(256).build().unwrap();
/// let service = ServiceBuilder::new()
///     .map_result(answer)
///     .layer(PoolLayer::new(pool))
///     .service_fn(handler);
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// loop {
///     let (stream, _) = listener.accept().await?;
///     let service = TowerToHyperService::new(service.clone());
///     tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct PoolLayer<C = ()> {
    pool: Pool,
    wait: Option<Duration>,
    classify: C,
}

impl<C> fmt::Debug for PoolLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolLayer")
            .field("pool", &self.pool)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl PoolLayer {
    /// A layer that runs requests on `pool` and sheds at once ([`ShedReason::QueueFull`]) when
    /// its queue is full.
    ///
    /// [`ShedReason::QueueFull`]: crate::ShedReason::QueueFull
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let layer = spillway::PoolLayer::new(pool);
    /// # let _ = layer;
    /// # }
    /// ```
    pub fn new(pool: Pool) -> Self {
        PoolLayer {
            pool,
            wait: None,
            classify: (),
        }
    }
}

impl<C> PoolLayer<C> {
    /// Picks each request's [`JobOptions`](crate::JobOptions), its
    /// [`Priority`](crate::Priority) and deadline, with `classify` (any
    /// `Fn(&Request) -> JobOptions`; see [`Classify`](crate::Classify)). Without it every
    /// request runs as `Normal`, with no deadline.
    ///
    /// Under overload the pool then serves critical requests first and sheds low ones first
    /// (a low request may even be [displaced](crate::ShedReason::Displaced) from the queue by a
    /// higher one), and a request still queued at its deadline is shed with
    /// [`ShedReason::Expired`](crate::ShedReason::Expired) instead of running for a caller that
    /// has given up. Priorities read from a request header must come from a trusted proxy that
    /// sets or strips that header, or any client can claim `critical`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::{Duration, Instant};
    /// use axum::{
    ///     BoxError, Router, body::Body, error_handling::HandleErrorLayer, http::Request,
    ///     http::StatusCode, routing::get,
    /// };
    /// use spillway::{JobOptions, Pool, PoolLayer, Priority};
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// fn classify(request: &Request<Body>) -> JobOptions {
    ///     let priority = request
    ///         .headers()
    ///         .get("x-priority")
    ///         .and_then(|value| value.to_str().ok()?.parse().ok())
    ///         .unwrap_or(Priority::Normal);
    ///     // The caller gives up after 200 ms: do not start its work after that.
    ///     JobOptions::new()
    ///         .priority(priority)
    ///         .deadline(Instant::now() + Duration::from_millis(200))
    /// }
    ///
    /// let pool = Pool::builder().build().unwrap();
    /// let app = Router::new().route("/checkout", get(|| async { "paid" })).layer(
    ///     ServiceBuilder::new()
    ///         .layer(HandleErrorLayer::new(|_: BoxError| async { StatusCode::SERVICE_UNAVAILABLE }))
    ///         .layer(PoolLayer::new(pool.clone()).classify(classify)),
    /// );
    ///
    /// let request = Request::get("/checkout")
    ///     .header("x-priority", "critical")
    ///     .body(Body::empty())
    ///     .unwrap();
    /// let response = app.oneshot(request).await.unwrap();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(pool.metrics().by_priority[Priority::Critical].completed, 1);
    /// # }
    /// ```
    pub fn classify<C2>(self, classify: C2) -> PoolLayer<C2> {
        PoolLayer {
            pool: self.pool,
            wait: self.wait,
            classify,
        }
    }

    /// Instead of shedding at once, the response future waits up to `timeout` for a slot in the
    /// queue, then sheds with [`ShedReason::WaitTimedOut`]. Waiting costs one allocation per
    /// request, which failing fast does not.
    ///
    /// [`ShedReason::WaitTimedOut`]: crate::ShedReason::WaitTimedOut
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// let pool = spillway::Pool::builder().build().unwrap();
    /// let service = ServiceBuilder::new()
    ///     .layer(spillway::PoolLayer::new(pool).wait(Duration::from_millis(50)))
    ///     .service_fn(|()| async { Ok::<_, std::convert::Infallible>("ok") });
    /// assert_eq!(service.oneshot(()).await.unwrap(), "ok");
    /// # }
    /// ```
    pub fn wait(mut self, timeout: Duration) -> Self {
        self.wait = Some(timeout);
        self
    }
}

impl<S, C: Clone> Layer<S> for PoolLayer<C> {
    type Service = PoolService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let service = PoolService::new(inner, self.pool.clone()).classify(self.classify.clone());
        match self.wait {
            Some(timeout) => service.wait(timeout),
            None => service,
        }
    }
}
