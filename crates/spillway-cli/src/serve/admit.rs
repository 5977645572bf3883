//! `/work` in pool mode: the request's job is submitted to the pool straight from its handler,
//! and the handler answers from the job's outcome.
//!
//! Only the job itself (the workload) runs as the pool job; the router's future, the extractors
//! and the response stay on the connection's task. This is what `PoolLayer` around the route
//! did, without cloning the layered route for every request (axum clones a route's service per
//! call) and without moving the response through a boxed error.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use spillway::{
    JobError, JobHandle, JobOptions, Pool, ShedReason, SubmitTimeoutError, TrySubmitError,
};

use super::app::{App, shed};
use super::job::JobFailure;
use super::limiter::Limiter;
use crate::workload::Profile;

/// `/work`, pool mode: the request's job (`profile`, with the priority and deadline `options`
/// from its headers) runs as a pool job, or is shed with 503 when the pool has no room.
pub(crate) async fn work(
    State(app): State<Arc<App>>,
    Extension(profile): Extension<Profile>,
    Extension(options): Extension<JobOptions>,
) -> Response {
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
    match admit(pool, options, *admission_wait, job).await {
        Ok(handle) => answer(&app, handle.await),
        Err(reason) => shed(&app, &reason.to_string()),
    }
}

/// Submits `job`: at once or shed (no `wait`), or waiting up to `wait` for room.
async fn admit<F>(
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

/// The answer to an admitted job's outcome.
fn answer(app: &App, outcome: Result<Result<(), JobFailure>, JobError>) -> Response {
    let reason = match outcome {
        Ok(Ok(())) => return "ok\n".into_response(),
        Ok(Err(JobFailure::Shed)) => return shed(app, "the CPU lane is full"),
        Ok(Err(failure)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{failure}\n")).into_response();
        }
        Err(JobError::TimedOut) => {
            let message = "the job ran past --run-timeout and was stopped\n";
            return (StatusCode::GATEWAY_TIMEOUT, message).into_response();
        }
        Err(JobError::Panicked(msg)) => {
            let message = format!("the job panicked: {msg}\n");
            return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
        }
        Err(JobError::Expired) => ShedReason::Expired,
        Err(JobError::Abandoned) => ShedReason::Abandoned,
        Err(JobError::Displaced) => ShedReason::Displaced,
        // Cancelled needs the handle gone, so it is never seen here.
        Err(err) => {
            let message = format!("internal error: {err}\n");
            return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
        }
    };
    shed(app, &reason.to_string())
}
