//! Pool mode's `/work` admission: the request's job is submitted to the pool straight from
//! the handler, and what the pool says about a job it did not complete becomes the answer.
//!
//! Only the job itself (the workload) runs as the pool job; the router's future, the extractors
//! and the response stay on the connection's task. This is what `PoolLayer` around the route
//! did, without cloning the layered route for every request (axum clones a route's service per
//! call) and without moving the response through a boxed error.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use spillway::{
    JobError, JobHandle, JobOptions, Pool, ShedReason, SubmitTimeoutError, TrySubmitError,
};

/// Submits `job` with `options`: at once or shed (no `wait`), or waiting up to `wait` for room.
///
/// # Errors
///
/// Why the job was shed.
pub(super) async fn admit<F>(
    pool: &Pool,
    options: JobOptions,
    wait: Option<Duration>,
    job: F,
) -> Result<JobHandle<F::Output>, ShedReason>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let Some(wait) = wait else {
        // A shed job is dropped here: it never ran.
        return pool.try_submit_with(options, job).map_err(|err| match err {
            TrySubmitError::Full(_) => ShedReason::QueueFull,
            TrySubmitError::Closed(_) => ShedReason::Closed,
            TrySubmitError::Expired(_) => ShedReason::DeadlinePassed,
        });
    };
    // `submit_with` waits until the request's own deadline at most; `wait` bounds it too.
    match tokio::time::timeout(wait, pool.submit_with(options, job)).await {
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(SubmitTimeoutError::Closed(_))) => Err(ShedReason::Closed),
        Ok(Err(SubmitTimeoutError::Timeout(_))) | Err(_) => Err(ShedReason::WaitTimedOut),
    }
}

/// How an admitted job that did not complete is answered.
pub(super) enum NotDone {
    /// 503 with `Retry-After`, for this reason.
    Shed(ShedReason),
    /// This answer (504 past `--run-timeout`, 500 for a panic).
    Failed(Response),
}

/// What the pool's `err` for an admitted job means for its request.
pub(super) fn not_done(err: JobError) -> NotDone {
    let failed =
        |status: StatusCode, message: String| NotDone::Failed((status, message).into_response());
    match err {
        JobError::Expired => NotDone::Shed(ShedReason::Expired),
        JobError::Abandoned => NotDone::Shed(ShedReason::Abandoned),
        JobError::Displaced => NotDone::Shed(ShedReason::Displaced),
        JobError::TimedOut => failed(
            StatusCode::GATEWAY_TIMEOUT,
            "the job ran past --run-timeout and was stopped\n".to_string(),
        ),
        JobError::Panicked(msg) => failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the job panicked: {msg}\n"),
        ),
        // Cancelled needs the handle gone, so it is never seen here.
        other => failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {other}\n"),
        ),
    }
}
