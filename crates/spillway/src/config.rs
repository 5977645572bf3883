//! [`Config`]: the settings a [`Builder`](crate::Builder) validated, as the pool reads them.

use std::time::Duration;

use crate::limit::Limit;
use crate::scaler::Policy;

/// Validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) queue_capacity: usize,
    pub(crate) queue_timeout: Option<Duration>,
    pub(crate) run_timeout: Option<Duration>,
    pub(crate) policy: Policy,
    pub(crate) limit: Limit,
}
