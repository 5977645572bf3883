//! How a `/work` request's headers set its job's priority and deadline, in pool mode.
//!
//! * `x-priority: critical|high|normal|low` (absent means normal): under overload the pool
//!   sheds lower priorities first. Any client can send this header, so in production a
//!   trusted proxy in front of the server must set it (or strip it) from what it knows of the
//!   caller; otherwise every client would call itself critical.
//! * `grpc-timeout: 200m` (gRPC's format: 1 to 8 digits and a unit, `H`, `M`, `S`, `m`, `u`
//!   or `n`): how long the caller waits for the answer, from when the request arrived. A job
//!   still queued at that deadline ends without running; one already past it is refused at
//!   once. A job that started runs to its end.
//!
//! The naive and semaphore modes have no queue to order and nothing to shed: they ignore both
//! headers, as they would have without them.

use std::time::Instant;

use axum::http::{HeaderMap, HeaderName};
use spillway::{JobOptions, Priority};

use crate::priority::{PRIORITY_HEADER, TIMEOUT_HEADER, priority_header, timeout_header};

/// The headers by their parsed names: a look-up by `&str` parses the name on every request.
const PRIORITY: HeaderName = HeaderName::from_static(PRIORITY_HEADER);
const TIMEOUT: HeaderName = HeaderName::from_static(TIMEOUT_HEADER);

/// The job options a `/work` request that arrived at `arrived` asks for with its headers.
///
/// # Errors
///
/// A header whose value is not allowed, naming the header and what it allows.
pub(crate) fn job_options(headers: &HeaderMap, arrived: Instant) -> Result<JobOptions, String> {
    let priority = match headers.get(&PRIORITY) {
        Some(value) => priority_header(value.as_bytes())?,
        None => Priority::Normal,
    };
    let mut options = JobOptions::new().priority(priority);
    if let Some(value) = headers.get(&TIMEOUT) {
        let timeout = timeout_header(value.as_bytes())?;
        // A timeout past what the clock can hold is no deadline at all.
        if let Some(deadline) = arrived.checked_add(timeout) {
            options = options.deadline(deadline);
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn no_headers_mean_normal_without_a_deadline() {
        let options = job_options(&HeaderMap::new(), Instant::now()).unwrap();
        assert_eq!(options, JobOptions::new());
        assert_eq!(options.get_priority(), Priority::Normal);
    }

    #[test]
    fn the_headers_set_the_priority_and_the_deadline_from_the_arrival() {
        let arrived = Instant::now();
        let options = job_options(
            &headers(&[("x-priority", "critical"), ("grpc-timeout", "200m")]),
            arrived,
        )
        .unwrap();
        assert_eq!(options.get_priority(), Priority::Critical);
        assert_eq!(
            options.get_deadline(),
            Some(arrived + Duration::from_millis(200))
        );
        let far = job_options(&headers(&[("grpc-timeout", "99999999H")]), arrived).unwrap();
        assert!(far.get_deadline().is_none_or(|d| d > arrived));
    }

    #[test]
    fn bad_values_name_the_header() {
        let err = job_options(&headers(&[("x-priority", "urgent")]), Instant::now()).unwrap_err();
        assert!(
            err.starts_with("invalid x-priority header \"urgent\""),
            "{err}"
        );
        let err = job_options(&headers(&[("grpc-timeout", "200ms")]), Instant::now()).unwrap_err();
        assert!(
            err.starts_with("invalid grpc-timeout header \"200ms\""),
            "{err}"
        );
    }
}
