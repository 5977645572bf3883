//! One switch for every primitive the loom models cover.
//!
//! Built normally this is `std`; built with `RUSTFLAGS="--cfg spillway_loom"` the same names come
//! from `loom`, so the queue's admission and close protocol, the job/handle hand-off and the
//! workers' park and retire protocols can be model-checked exhaustively (see `queue.rs`,
//! `handoff.rs` and `state/counts.rs`). We use our own cfg name rather than `loom` because tokio
//! reserves that one for its own internal models.

#[cfg(spillway_loom)]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicUsize, Ordering, fence},
};
#[cfg(not(spillway_loom))]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicUsize, Ordering, fence},
};

/// Locks a mutex of this switch (`std`, or `loom` in the models), ignoring poisoning.
///
/// spillway never panics while holding one of its own locks (user code runs outside them and
/// behind `catch_unwind`), so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Locks a plain `std` mutex, ignoring poisoning: for the mutexes the models do not cover
/// (metrics shards, the worker task set). Named apart from [`lock`] so a call site says which.
pub(crate) fn lock_std<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
