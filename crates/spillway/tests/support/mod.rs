//! Helpers the library's integration tests share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use spillway::{Builder, JobHandle, Pool};

/// A pool from `builder` with one worker blocked on a job that never ends (until its handle is
/// dropped or aborted), so that queued jobs stay queued.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub(crate) async fn blocked_pool(builder: Builder) -> (Pool, JobHandle<()>) {
    let pool = builder.min_workers(1).max_workers(1).build().unwrap();
    let blocker = pool.try_submit(std::future::pending::<()>()).unwrap();
    while pool.metrics().busy == 0 {
        tokio::task::yield_now().await;
    }
    (pool, blocker)
}

/// Sets a flag when dropped: proves a job's future was dropped (cancelled) rather than leaked.
#[derive(Debug)]
pub(crate) struct DropFlag(pub(crate) Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
