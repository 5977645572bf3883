//! [`Priority`] and [`JobOptions`]: what a submitter says about a job besides the job itself.
//!
//! How the pool uses them (lanes, displacement, the anti-starvation share, deadlines) is argued
//! in `queue.rs`, the one owner of capacity.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// How important a job is. Under overload the pool serves higher priorities first and sheds
/// lower ones first; see [`Pool::try_submit_with`](crate::Pool::try_submit_with).
///
/// Ordered: `Critical > High > Normal > Low`. [`Default`] is `Normal`, the priority of
/// [`Pool::try_submit`](crate::Pool::try_submit) and [`Pool::submit`](crate::Pool::submit).
///
/// # Examples
///
/// ```
/// use spillway::Priority;
///
/// assert!(Priority::Critical > Priority::Low);
/// assert_eq!(Priority::default(), Priority::Normal);
/// assert_eq!("high".parse::<Priority>(), Ok(Priority::High));
/// assert_eq!(Priority::Low.to_string(), "low");
/// assert_eq!(
///     "urgent".parse::<Priority>().unwrap_err().to_string(),
///     "unknown priority `urgent`: expected one of critical, high, normal, low"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Shed last: work whose loss is an outage (a checkout, a health check).
    Critical = 3,
    /// Shed after `Normal`.
    High = 2,
    /// The default.
    #[default]
    Normal = 1,
    /// Shed first: work that can be retried later (a batch re-index, a prefetch).
    Low = 0,
}

/// The number of priorities.
pub(crate) const PRIORITIES: usize = 4;

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; PRIORITIES] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The lowercase name: `"critical"`, `"high"`, `"normal"` or `"low"` (the Prometheus
    /// `priority` label, and what [`FromStr`] accepts).
    ///
    /// ```
    /// assert_eq!(spillway::Priority::Critical.as_str(), "critical");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// `Low` is 0, `Critical` is 3: the lane of the queue, and the index of per-priority arrays.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// How many times the adaptive limit's standing queue a job of this priority tolerates:
    /// `Critical` 4, `High` 2, `Normal` and `Low` 1. While the limit is saturated, a job is
    /// admitted while fewer than `limit + tolerance x queue bound` are in flight, and dropped
    /// at dequeue once it waited more than `tolerance x 2 x queue_target` (CoDel's rule). So the
    /// queue's bound and its drops reach the lower priorities first: at the default 5 ms target
    /// a critical job is dropped only after 40 ms in the queue, within a 100 ms budget, and a
    /// queue filled by critical jobs alone still stands at most four targets deep.
    pub(crate) const fn queue_tolerance(self) -> u32 {
        match self {
            Priority::Critical => 4,
            Priority::High => 2,
            Priority::Normal | Priority::Low => 1,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ParsePriorityError;

    /// Parses a lowercase name, as [`as_str`](Priority::as_str) writes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParsePriorityError {
                given: s.to_owned(),
            })
    }
}

/// A string is not the name of a [`Priority`]. Its message says what is allowed.
///
/// ```
/// let err = "URGENT".parse::<spillway::Priority>().unwrap_err();
/// assert_eq!(err.given(), "URGENT");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePriorityError {
    given: String,
}

impl ParsePriorityError {
    /// The string that was not a priority.
    pub fn given(&self) -> &str {
        &self.given
    }
}

impl fmt::Display for ParsePriorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown priority `{}`: expected one of critical, high, normal, low",
            self.given
        )
    }
}

impl std::error::Error for ParsePriorityError {}

/// A job's priority and deadline, for [`Pool::try_submit_with`](crate::Pool::try_submit_with)
/// and [`Pool::submit_with`](crate::Pool::submit_with).
///
/// A [`Priority`] converts into options with no deadline, so `pool.try_submit_with(Priority::Low,
/// job)` works as well.
///
/// The deadline is the moment after which the job's result is of no use (its caller has given
/// up). A job still queued at its deadline ends as [`JobError::Expired`](crate::JobError) without
/// running, when a worker reaches it (until then it keeps its queue slot, unless a job of
/// higher priority displaces it); a job whose deadline has passed already is refused at
/// submission. A running job is not interrupted by its deadline.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use spillway::{JobOptions, Priority};
///
/// let deadline = Instant::now() + Duration::from_millis(200);
/// let opts = JobOptions::new().priority(Priority::High).deadline(deadline);
/// assert_eq!(opts.get_priority(), Priority::High);
/// assert_eq!(opts.get_deadline(), Some(deadline));
///
/// let low: JobOptions = Priority::Low.into();
/// assert_eq!((low.get_priority(), low.get_deadline()), (Priority::Low, None));
/// assert_eq!(JobOptions::default(), JobOptions::new());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct JobOptions {
    priority: Priority,
    deadline: Option<Instant>,
}

impl JobOptions {
    /// `Normal` priority, no deadline: what [`Pool::try_submit`](crate::Pool::try_submit) uses.
    pub const fn new() -> Self {
        JobOptions {
            priority: Priority::Normal,
            deadline: None,
        }
    }

    /// Sets the priority.
    #[must_use]
    pub const fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the deadline: a job still queued then ends as expired, unrun.
    #[must_use]
    pub const fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The priority.
    pub const fn get_priority(&self) -> Priority {
        self.priority
    }

    /// The deadline, if one was set.
    pub const fn get_deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl From<Priority> for JobOptions {
    fn from(priority: Priority) -> Self {
        JobOptions::new().priority(priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_highest_first_and_names_round_trip() {
        let mut sorted = Priority::ALL;
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(sorted, Priority::ALL);
        let indices: Vec<usize> = Priority::ALL.iter().map(|p| p.index()).collect();
        assert_eq!(indices, [3, 2, 1, 0], "higher lanes are served first");
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        }
    }

    #[test]
    fn parse_is_exact() {
        assert!("Normal".parse::<Priority>().is_err());
        assert!(" low".parse::<Priority>().is_err());
        assert!("".parse::<Priority>().is_err());
    }
}
