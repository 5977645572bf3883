//! The live view that `serve` and `simulate --live` share: a [`Hub`] that hands each tick's
//! JSON snapshot to every subscriber, the [`Frame`] the dashboard charts, and the routes of the
//! page (`/`, its embedded scripts, `/events`, `/snapshot`).
//!
//! A snapshot is made and serialised once per tick by its producer, whatever the number of
//! subscribers; each subscriber's stream only copies a shared buffer. A subscriber that falls
//! [`hub::LAG_LIMIT`] frames behind is dropped, so nothing is ever buffered for it without bound.

mod frame;
mod hub;
mod page;
mod server;

pub(crate) use frame::{Frame, Percentiles, Rates, WindowLatency};
pub(crate) use hub::Hub;
pub(crate) use page::routes;
pub(crate) use server::spawn;

/// Locks `mutex`, through a poisoning: the live view's state stays usable after a panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How often the producers publish a frame: five times a second.
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_millis(200);
