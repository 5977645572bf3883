//! The hand-off between one job and its [`JobHandle`](crate::JobHandle).
//!
//! Both sides share one small state machine behind a mutex. The job side reports how the job
//! ended; the handle side waits for that, or gives up (drop, [`abort`]), or lets go ([`detach`]).
//! Whatever the interleaving, the handle sees exactly one result and the job learns of a
//! cancellation at its next poll: the handle wakes the job's task when it cancels.
//!
//! [`abort`]: crate::JobHandle::abort
//! [`detach`]: crate::JobHandle::detach

use std::task::{Poll, Waker};

use crate::error::JobError;
use crate::sync::{AtomicBool, Mutex, Ordering, lock};

pub(crate) struct Handoff<T> {
    /// Set, under the lock, when the handle cancels. The job reads it without the lock before
    /// each poll: the common case (nobody cancelled) costs one load.
    cancelled: AtomicBool,
    state: Mutex<State<T>>,
}

struct State<T> {
    handle: Handle,
    /// The job side has reported its end.
    finished: bool,
    /// The result, until the handle takes it.
    result: Option<Result<T, JobError>>,
    handle_waker: Option<Waker>,
    job_waker: Option<Waker>,
    /// The handle was aborted before the job ended: it reports `Cancelled`, whatever the job did.
    aborted: bool,
}

/// What [`Handoff::finish`] did with a job's report.
#[must_use = "an unwanted result must be dropped by the caller, panics caught"]
pub(crate) struct Finished<T> {
    /// The result nobody wants (the handle is gone, or aborted), for the caller to drop.
    pub(crate) unwanted: Option<Result<T, JobError>>,
    /// The handle was aborted first: it reports `Cancelled`, so the job must be counted so.
    pub(crate) aborted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handle {
    /// Someone holds the handle and wants the result.
    Attached,
    /// The handle was detached: run to completion, nobody listens.
    Detached,
    /// The handle was dropped or aborted: stop the job at its next poll.
    Cancelled,
}

fn replace_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(existing) if existing.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

impl<T> Handoff<T> {
    pub(crate) fn new() -> Self {
        Handoff {
            cancelled: AtomicBool::new(false),
            state: Mutex::new(State {
                handle: Handle::Attached,
                finished: false,
                result: None,
                handle_waker: None,
                job_waker: None,
                aborted: false,
            }),
        }
    }

    // ---- job side ----

    /// Whether the handle asked the job to stop. Lock-free.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Called when the job body is pending: arranges for the job to be woken if the handle
    /// cancels later. Returns `true` if it has cancelled already (the job should stop now).
    pub(crate) fn park_job(&self, waker: &Waker) -> bool {
        let mut state = lock(&self.state);
        if state.handle == Handle::Cancelled {
            return true;
        }
        replace_waker(&mut state.job_waker, waker);
        false
    }

    /// Reports how the job ended. The first report wins; a handle that is gone or already has
    /// its result (abort) ignores it, and the result nobody wants is handed back, so that the
    /// caller drops it where a panicking destructor cannot hurt (outside the lock, and caught).
    /// It also says whether the handle was aborted first, decided under the same lock as the
    /// abort: the job is then counted cancelled, as its handle reports it.
    pub(crate) fn finish(&self, result: Result<T, JobError>) -> Finished<T> {
        let mut state = lock(&self.state);
        if state.finished {
            return Finished {
                unwanted: Some(result),
                aborted: state.aborted,
            };
        }
        state.finished = true;
        let job_waker = state.job_waker.take();
        if state.handle != Handle::Attached || state.result.is_some() {
            let aborted = state.aborted;
            drop(state);
            drop(job_waker);
            return Finished {
                unwanted: Some(result),
                aborted,
            };
        }
        state.result = Some(result);
        let waker = state.handle_waker.take();
        drop(state);
        drop(job_waker);
        if let Some(waker) = waker {
            waker.wake();
        }
        Finished {
            unwanted: None,
            aborted: false,
        }
    }

    // ---- handle side ----

    /// The result if the job ended; otherwise registers `waker` for when it does.
    pub(crate) fn poll_result(&self, waker: &Waker) -> Poll<Result<T, JobError>> {
        let mut state = lock(&self.state);
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        replace_waker(&mut state.handle_waker, waker);
        Poll::Pending
    }

    /// Marks the job cancelled and returns its waker, if the handle still wants it and it has
    /// not ended.
    fn cancel(&self, state: &mut State<T>) -> Option<Waker> {
        if state.handle != Handle::Attached || state.finished {
            return None;
        }
        state.handle = Handle::Cancelled;
        self.cancelled.store(true, Ordering::Release);
        state.job_waker.take()
    }

    /// Cancels the job; the handle resolves to `Cancelled` at once unless the job had already
    /// ended.
    pub(crate) fn abort(&self) {
        let mut state = lock(&self.state);
        if state.finished {
            return;
        }
        let job = self.cancel(&mut state);
        state.result = Some(Err(JobError::Cancelled));
        state.aborted = true;
        let handle = state.handle_waker.take();
        drop(state);
        job.into_iter().chain(handle).for_each(Waker::wake);
    }

    /// The handle goes away without detaching: cancel the job unless it already ended.
    pub(crate) fn drop_handle(&self) {
        let mut state = lock(&self.state);
        let result = state.result.take();
        let job = self.cancel(&mut state);
        drop(state);
        drop(result);
        if let Some(waker) = job {
            waker.wake();
        }
    }

    /// The handle goes away and the job keeps running.
    pub(crate) fn detach(&self) {
        let mut state = lock(&self.state);
        if state.handle == Handle::Attached {
            state.handle = Handle::Detached;
        }
        let result = state.result.take();
        drop(state);
        drop(result);
    }

    pub(crate) fn is_finished(&self) -> bool {
        let state = lock(&self.state);
        state.finished || state.result.is_some()
    }
}

#[cfg(all(test, spillway_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The handle is dropped while the job finishes: the job either completes (and the value is
    /// dropped, nobody listens) or sees the cancellation; never both, never neither.
    #[test]
    fn loom_drop_races_finish() {
        loom::model(|| {
            let handoff = Arc::new(Handoff::<u32>::new());
            let job = {
                let handoff = handoff.clone();
                thread::spawn(move || {
                    if handoff.is_cancelled() || handoff.park_job(Waker::noop()) {
                        let _ = handoff.finish(Err(JobError::Cancelled));
                        false
                    } else {
                        let _ = handoff.finish(Ok(1));
                        true
                    }
                })
            };
            handoff.drop_handle();
            let _ran = job.join().unwrap();
            assert!(handoff.is_finished());
            let state = lock(&handoff.state);
            assert!(
                state.result.is_none(),
                "a dropped handle must not keep a result"
            );
        });
    }

    /// Abort races completion: the handle gets exactly one result, `Ok` or `Cancelled`, and the
    /// job side is told `aborted` exactly when the handle reports `Cancelled` (so the outcome
    /// counted is the one the handle reports).
    #[test]
    fn loom_abort_races_finish() {
        loom::model(|| {
            let handoff = Arc::new(Handoff::<u32>::new());
            let job = {
                let handoff = handoff.clone();
                thread::spawn(move || handoff.finish(Ok(7)).aborted)
            };
            handoff.abort();
            let aborted = job.join().unwrap();
            match handoff.poll_result(Waker::noop()) {
                Poll::Ready(Ok(7)) => assert!(!aborted, "counted cancelled, reported Ok"),
                Poll::Ready(Err(JobError::Cancelled)) => {
                    assert!(aborted, "reported Cancelled, counted completed")
                }
                other => panic!("unexpected result {other:?}"),
            }
        });
    }

    /// Detach races completion: the job's result is never delivered and the job is never told to
    /// stop.
    #[test]
    fn loom_detach_never_cancels() {
        loom::model(|| {
            let handoff = Arc::new(Handoff::<u32>::new());
            let job = {
                let handoff = handoff.clone();
                thread::spawn(move || {
                    let cancelled = handoff.is_cancelled() || handoff.park_job(Waker::noop());
                    let _ = handoff.finish(Ok(1));
                    cancelled
                })
            };
            handoff.detach();
            handoff.drop_handle();
            assert!(!job.join().unwrap(), "a detached job was cancelled");
        });
    }
}

#[cfg(all(test, not(spillway_loom)))]
mod tests {
    use super::*;

    #[test]
    fn result_is_delivered_once() {
        let handoff = Handoff::new();
        assert!(handoff.poll_result(Waker::noop()).is_pending());
        let _ = handoff.finish(Ok(5));
        let _ = handoff.finish(Err(JobError::Abandoned)); // ignored: the first report wins
        assert_eq!(handoff.poll_result(Waker::noop()), Poll::Ready(Ok(5)));
        assert!(
            handoff.poll_result(Waker::noop()).is_pending(),
            "delivered once"
        );
    }

    #[test]
    fn abort_resolves_at_once_and_cancels_job() {
        let handoff = Handoff::<()>::new();
        handoff.abort();
        assert!(handoff.is_cancelled());
        assert!(handoff.park_job(Waker::noop()));
        assert_eq!(
            handoff.poll_result(Waker::noop()),
            Poll::Ready(Err(JobError::Cancelled))
        );
    }

    #[test]
    fn a_finish_after_abort_is_told_so() {
        let handoff = Handoff::new();
        handoff.abort();
        let finished = handoff.finish(Ok(1));
        assert!(finished.aborted);
        assert_eq!(finished.unwanted, Some(Ok(1)));
        let other = Handoff::<u8>::new();
        other.drop_handle();
        assert!(
            !other.finish(Ok(1)).aborted,
            "a dropped handle reports nothing"
        );
    }

    #[test]
    fn abort_after_finish_keeps_the_result() {
        let handoff = Handoff::new();
        let _ = handoff.finish(Ok(1));
        handoff.abort();
        assert_eq!(handoff.poll_result(Waker::noop()), Poll::Ready(Ok(1)));
    }

    #[test]
    fn drop_cancels_but_detach_does_not() {
        let dropped = Handoff::<()>::new();
        dropped.drop_handle();
        assert!(dropped.is_cancelled());

        let detached = Handoff::<()>::new();
        detached.detach();
        detached.drop_handle();
        assert!(!detached.is_cancelled());
        assert!(!detached.park_job(Waker::noop()));
    }
}
