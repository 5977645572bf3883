//! `/readyz`: whether a load balancer should send this instance more work now. Not ready while
//! it drains; with `--ready-max-shed F`, also not ready while it sheds more than F of its
//! `/work` requests over the last second. `/healthz` stays "alive": 503 only while draining.
//!
//! It reads the counters every request already updates (received and shed `/work` requests),
//! so the hot path pays nothing: each check keeps a reading, and the fraction is taken against
//! the newest reading at least [`WINDOW`] old (or the oldest kept, early on).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// How far back a check looks.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// Fewer `/work` requests than this in the window say nothing about shedding: ready.
const MIN_REQUESTS: u64 = 20;

/// A check this soon after the last kept reading is answered without keeping its own, so that
/// however often balancers check, at most `WINDOW / SPACING` + 1 readings are kept.
const SPACING: Duration = Duration::from_millis(10);

/// `--ready-max-shed`: a fraction above 0 and at most 1.
pub(crate) fn max_shed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err("must be a fraction of the /work requests above 0 and at most 1, e.g. 0.5".into()),
    }
}

/// The `/work` counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub(crate) at: Instant,
    /// `/work` requests received so far.
    pub(crate) requests: u64,
    /// `/work` requests shed so far.
    pub(crate) shed: u64,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    Ready,
    Draining,
    /// This fraction of the window's `/work` requests was shed, more than allowed.
    Shedding(f64),
}

impl IntoResponse for Verdict {
    fn into_response(self) -> Response {
        let unready = StatusCode::SERVICE_UNAVAILABLE;
        match self {
            Verdict::Ready => "ready\n".into_response(),
            Verdict::Draining => (unready, "draining\n").into_response(),
            Verdict::Shedding(f) => (
                unready,
                format!("shedding {:.0}% of /work requests\n", f * 100.0),
            )
                .into_response(),
        }
    }
}

/// The readings of past checks and the threshold.
#[derive(Debug)]
pub(crate) struct Readiness {
    max_shed: Option<f64>,
    readings: Mutex<VecDeque<Reading>>,
}

impl Readiness {
    /// `max_shed`: `--ready-max-shed`, or `None` (ready unless draining).
    pub(crate) fn new(max_shed: Option<f64>, start: Reading) -> Readiness {
        Readiness {
            max_shed,
            readings: Mutex::new(VecDeque::from([start])),
        }
    }

    /// The answer for a check now.
    pub(crate) fn check(&self, draining: bool, now: Reading) -> Verdict {
        if draining {
            return Verdict::Draining;
        }
        let Some(max) = self.max_shed else {
            return Verdict::Ready;
        };
        let mut readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        let since = baseline(&mut readings, now);
        match shed_fraction(since, now) {
            Some(f) if f > max => Verdict::Shedding(f),
            _ => Verdict::Ready,
        }
    }
}

/// Returns the newest reading at least [`WINDOW`] before `now` (the oldest one while none is),
/// dropping older ones, and keeps `now` unless the last kept one is under [`SPACING`] old.
fn baseline(readings: &mut VecDeque<Reading>, now: Reading) -> Reading {
    while readings.len() > 1 && now.at.duration_since(readings[1].at) >= WINDOW {
        readings.pop_front();
    }
    let since = readings[0];
    if readings
        .back()
        .is_none_or(|last| now.at.duration_since(last.at) >= SPACING)
    {
        readings.push_back(now);
    }
    since
}

/// The fraction of the `/work` requests between two readings that was shed; `None` when there
/// were too few to tell.
fn shed_fraction(since: Reading, now: Reading) -> Option<f64> {
    let requests = now.requests.saturating_sub(since.requests);
    let shed = now.shed.saturating_sub(since.shed);
    (requests >= MIN_REQUESTS).then(|| (shed as f64 / requests as f64).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64, requests: u64, shed: u64) -> Reading {
        Reading {
            at: start + Duration::from_millis(ms),
            requests,
            shed,
        }
    }

    #[test]
    fn ready_unless_more_than_the_allowed_fraction_was_shed_over_the_window() {
        let t = Instant::now();
        let r = Readiness::new(Some(0.5), at(t, 0, 0, 0));
        assert_eq!(r.check(false, at(t, 500, 100, 50)), Verdict::Ready);
        assert_eq!(
            r.check(false, at(t, 1000, 300, 200)),
            Verdict::Shedding(2.0 / 3.0)
        );
        // The window is the last second: from the reading at 500 ms on, 20 of 400 were shed.
        assert_eq!(r.check(false, at(t, 1500, 500, 70)), Verdict::Ready);
        assert_eq!(r.check(true, at(t, 1600, 500, 70)), Verdict::Draining);
    }

    #[test]
    fn too_few_requests_or_no_threshold_mean_ready() {
        let t = Instant::now();
        let r = Readiness::new(Some(0.1), at(t, 0, 0, 0));
        assert_eq!(r.check(false, at(t, 900, 19, 19)), Verdict::Ready);
        let off = Readiness::new(None, at(t, 0, 0, 0));
        assert_eq!(off.check(false, at(t, 900, 1000, 1000)), Verdict::Ready);
        assert_eq!(off.check(true, at(t, 900, 1000, 1000)), Verdict::Draining);
    }

    #[test]
    fn frequent_checks_keep_a_bounded_history() {
        let t = Instant::now();
        let mut readings = VecDeque::from([at(t, 0, 0, 0)]);
        for ms in 1..2000 {
            baseline(&mut readings, at(t, ms, ms, 0));
            assert!(readings.len() <= 102, "{}", readings.len());
        }
        // Still a whole second back.
        let since = baseline(&mut readings, at(t, 2000, 2000, 0));
        assert!((990..=1000).contains(&since.requests), "{since:?}");
    }

    #[test]
    fn the_flag_takes_a_fraction_above_zero() {
        assert_eq!(max_shed("0.5"), Ok(0.5));
        assert_eq!(max_shed("1"), Ok(1.0));
        for bad in ["0", "-0.1", "1.5", "half", "NaN"] {
            assert!(max_shed(bad).unwrap_err().contains("fraction"), "{bad}");
        }
    }
}
