//! [`JobHandle::wait`]: a handle's result for sync callers, by parking the calling thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crate::error::JobError;
use crate::job::JobHandle;

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl<T> JobHandle<T> {
    /// Blocks the calling thread until the job ends, and returns what awaiting the handle would.
    /// For sync callers, such as a [`BlockingPool`](crate::BlockingPool) job waiting for another.
    ///
    /// Call it from a thread that is not a tokio runtime's: it blocks that thread, so awaiting
    /// the handle is the way from async code (on a current-thread runtime, `wait` from the
    /// runtime's own thread never returns: the pool's workers need that thread).
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() {
    /// let pool = spillway::BlockingPool::builder().threads(1).build().unwrap();
    /// let handle = pool.try_submit(|| 6 * 7).unwrap();
    /// let answer = std::thread::spawn(move || handle.wait()).join().unwrap();
    /// assert_eq!(answer, Ok(42));
    /// # }
    /// ```
    pub fn wait(mut self) -> Result<T, JobError> {
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(result) = Pin::new(&mut self).poll(&mut cx) {
                return result;
            }
            thread::park();
        }
    }
}
