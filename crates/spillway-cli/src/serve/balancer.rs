//! What a load balancer in front of several instances reads from one of them: the instance's
//! name on every response (`x-spillway-instance`) and in `/metrics`
//! (`spillway_instance_info{instance="..."} 1`), and a `Retry-After` that says how long the
//! work already accepted will take.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use spillway::{Pool, Snapshot};

/// The response header that names the instance.
pub(crate) const INSTANCE_HEADER: HeaderName = HeaderName::from_static("x-spillway-instance");

/// Longest `Retry-After` the server ever sends, in seconds.
const MAX_RETRY_AFTER: u64 = 60;

/// How long one computed `Retry-After` is reused: reading the pool's latency histograms on
/// every shed request would cost more than the shedding.
const REFRESH: Duration = Duration::from_millis(100);

/// The instance's name, as a header value, or an error naming `--instance`.
pub(crate) fn instance_header(name: &str) -> anyhow::Result<HeaderValue> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "invalid --instance {name:?}: must be 1 to 64 visible ASCII characters, no spaces"
        );
    }
    Ok(HeaderValue::from_str(name)?)
}

/// Adds `spillway_instance_info{instance="NAME"} 1` to `registry`.
pub(crate) fn register_instance(name: &str, registry: &mut Registry) {
    registry.register(
        "spillway_instance",
        "The name this instance was given with --instance",
        Info::new(vec![("instance".to_string(), name.to_string())]),
    );
}

/// Seconds a shed client should wait before the work already accepted is through: the jobs
/// queued and running, at the pool's mean run time, `limit` at a time; rounded up, never
/// under `floor` (`--retry-after`) nor over a minute.
pub(crate) fn retry_after_secs(snapshot: &Snapshot, floor: u32) -> u64 {
    let ahead = (snapshot.queued + snapshot.busy) as f64;
    seconds_through(ahead, snapshot.limit, snapshot.run_time.mean, floor)
}

/// `ahead` jobs of `mean` each, `limit` at a time, in whole seconds within `floor..=60`.
fn seconds_through(ahead: f64, limit: usize, mean: Duration, floor: u32) -> u64 {
    let through = ahead / limit.max(1) as f64 * mean.as_secs_f64();
    (through.ceil() as u64).clamp(u64::from(floor), MAX_RETRY_AFTER.max(u64::from(floor)))
}

/// The `Retry-After` of shed responses, recomputed from the pool at most every [`REFRESH`].
#[derive(Debug)]
pub(crate) struct RetryAfter {
    floor: u32,
    last: Mutex<Option<(Instant, HeaderValue)>>,
}

impl RetryAfter {
    pub(crate) fn new(floor: u32) -> RetryAfter {
        RetryAfter {
            floor,
            last: Mutex::new(None),
        }
    }

    /// The header value for a response shed now.
    pub(crate) fn value(&self, pool: &Pool) -> HeaderValue {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((at, value)) if at.elapsed() < REFRESH => value.clone(),
            _ => {
                let value = HeaderValue::from(retry_after_secs(&pool.metrics(), self.floor));
                *last = Some((Instant::now(), value.clone()));
                value
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(ahead: usize, limit: usize, mean_ms: u64, floor: u32) -> u64 {
        seconds_through(ahead as f64, limit, Duration::from_millis(mean_ms), floor)
    }

    #[test]
    fn retry_after_is_the_time_to_get_through_what_is_ahead() {
        // 400 jobs ahead, 100 at a time, 1.5 s each: 6 s.
        assert_eq!(secs(400, 100, 1500, 1), 6);
        // A short queue of 10 ms jobs is through within the floor.
        assert_eq!(secs(30, 10, 10, 1), 1);
        assert_eq!(secs(30, 10, 10, 3), 3);
        // Nothing measured yet: the floor.
        assert_eq!(secs(6, 1, 0, 2), 2);
        // Never more than a minute, unless the floor says so.
        assert_eq!(secs(1001, 1, 10_000, 1), 60);
        assert_eq!(secs(1001, 1, 10_000, 90), 90);
    }

    #[test]
    fn instance_names_must_be_header_safe() {
        assert_eq!(instance_header("web-1").unwrap(), "web-1");
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            let err = instance_header(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid --instance"), "{err}");
        }
    }
}
