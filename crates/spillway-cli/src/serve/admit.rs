//! Pool mode's `/work` admission: the request's job is admitted straight from the handler, and
//! what the pool says about a job it did not complete becomes the answer.
//!
//! Only the job itself (the workload) is the pool job; the router's future, the extractors and
//! the response stay on the connection's task. This is what `PoolLayer` around the route did,
//! without cloning the layered route for every request (axum clones a route's service per
//! call) and without moving the response through a boxed error.
//!
//! The handler awaits the job anyway, so (failing fast, the default) it is admitted with
//! `Pool::try_run_with`: when a worker slot is free and nothing is queued, the job runs on the
//! connection's own task, holding the slot (no hand-off to the pool's runtime, which cost a
//! cross-thread wake per request); under load it is queued for the pool's workers, whose runtime
//! keeps serving the work already taken while the server sheds the rest.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use spillway::{JobError, JobOptions, Pool, ShedReason, SubmitTimeoutError, TrySubmitError};

/// Admits `job` with `options` and runs it: at once or shed (no `wait`), or waiting up to `wait`
/// for room. Returns what the job returned, or the pool's error for an admitted job that did not
/// complete.
///
/// # Errors
///
/// Why the job was shed before it was admitted.
pub(super) async fn run<F>(
    pool: &Pool,
    options: JobOptions,
    wait: Option<Duration>,
    job: F,
) -> Result<Result<F::Output, JobError>, ShedReason>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let Some(wait) = wait else {
        return match pool.try_run_with(options, job) {
            Ok(run) => Ok(run.await),
            // A shed job is dropped here: it never ran.
            Err(err) => Err(shed_reason(&err)),
        };
    };
    // Waiting for room (`--admission-wait`): the job goes through the queue to a worker.
    // `submit_with` waits until the request's own deadline at most; `wait` bounds it too.
    match tokio::time::timeout(wait, pool.submit_with(options, job)).await {
        Ok(Ok(handle)) => Ok(handle.await),
        Ok(Err(SubmitTimeoutError::Closed(_))) => Err(ShedReason::Closed),
        Ok(Err(SubmitTimeoutError::Timeout(_))) | Err(_) => Err(ShedReason::WaitTimedOut),
    }
}

/// Why `try_run_with` refused a job.
fn shed_reason<F>(err: &TrySubmitError<F>) -> ShedReason {
    match err {
        TrySubmitError::Full(_) => ShedReason::QueueFull,
        TrySubmitError::Closed(_) => ShedReason::Closed,
        TrySubmitError::Expired(_) => ShedReason::DeadlinePassed,
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
