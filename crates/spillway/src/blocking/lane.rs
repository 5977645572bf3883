//! A worker's own OS thread, and the job future that runs its closure there.
//!
//! A [`BlockingPool`](super::BlockingPool) worker is an ordinary worker task (`worker.rs`): it
//! takes jobs through the same transitions of `Shared`, is counted, stopped and aborted the same
//! way. What differs is its job: a [`Blocking`] future, whose first poll sends the closure to the
//! worker's [`Lane`] (a thread of its own, found through a task-local) and then waits for the
//! answer. So the closure runs on a dedicated thread while the task only waits, and the
//! runtime's threads never run CPU-bound code.
//!
//! The hand-off is built of standard parts, no new protocol: a one-permit semaphore says the
//! thread is free, closures go to the thread through an `mpsc` channel, each answer comes back
//! through a `oneshot`. A job takes the permit before it sends its closure, and the closure
//! gives it back on the thread when it has run, so a thread never has more than one closure and
//! a worker whose last job was cancelled while running waits for its thread before it runs the
//! next. Whoever drops its end first decides nothing: a closure that is running always runs to
//! its end (a thread cannot be interrupted); if nobody waits for its answer any more (its job
//! was cancelled, or a shutdown's deadline aborted the worker task), the answer is dropped on
//! the thread. A thread exits when its worker task is gone and its last closure has run: a
//! worker ended while its thread is busy leaves that thread *detached*, counted at that moment.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, ready};
use std::thread;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, oneshot};

use crate::job::drop_quietly;

/// A closure on its way to a lane's thread; it reports its own answer.
type Work = Box<dyn FnOnce() + Send>;

tokio::task_local! {
    /// The lane of the worker task polling a [`Blocking`] job.
    static LANE: Lane;
}

/// A worker task's thread. Dropped with the task: the thread then exits after its last closure.
pub(super) struct Lane {
    sender: mpsc::Sender<Work>,
    /// One permit while the thread is free; a closure holds it until it has run.
    free: Arc<Semaphore>,
    /// The pool's count of threads left running a closure when their worker task ended.
    detached: Arc<AtomicU64>,
}

impl Lane {
    /// Starts the thread, named `name`.
    pub(super) fn spawn(name: String, detached: Arc<AtomicU64>) -> std::io::Result<Lane> {
        let (sender, receiver) = mpsc::channel::<Work>();
        thread::Builder::new()
            .name(name)
            .spawn(move || serve(&receiver))?;
        Ok(Lane {
            sender,
            free: Arc::new(Semaphore::new(1)),
            detached,
        })
    }

    /// Runs `future` (a worker task) with this lane as the one its [`Blocking`] jobs use.
    pub(super) fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        LANE.scope(self, future)
    }

    fn send(&self, work: Work) {
        // The thread ends only once this sender is gone: the send cannot fail.
        let sent = self.sender.send(work);
        debug_assert!(sent.is_ok(), "a lane's thread outlives its sender");
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if self.free.available_permits() == 0 {
            self.detached.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The thread's loop: run each closure sent, until the sender is gone.
fn serve(receiver: &mpsc::Receiver<Work>) {
    while let Ok(work) = receiver.recv() {
        work();
    }
}

/// Waiting for a busy thread: only after a job was cancelled while it ran.
type Acquiring = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A closure as a job: its first poll sends it to the worker's lane, later polls wait for its
/// answer. A panic in the closure is caught on the thread and resumed here, where the job's own
/// `catch_unwind` reports it as [`JobError::Panicked`](crate::JobError::Panicked).
pub(super) struct Blocking<F, T> {
    job: Option<F>,
    acquiring: Option<Acquiring>,
    answer: Option<oneshot::Receiver<thread::Result<T>>>,
}

// `F` is moved out by value and never pinned, and the receiver is `Unpin`.
impl<F, T> Unpin for Blocking<F, T> {}

impl<F, T> Blocking<F, T> {
    /// Wraps `job` without allocating.
    pub(super) fn new(job: F) -> Self {
        Blocking {
            job: Some(job),
            acquiring: None,
            answer: None,
        }
    }

    /// The closure, as given: only called on a job refused before it was ever polled.
    pub(super) fn into_inner(self) -> F {
        self.job.expect("a refused job was never polled")
    }
}

impl<F, T> Blocking<F, T> {
    /// Takes the lane's permit: at once when the thread is free (always, unless the previous
    /// job was cancelled while it ran), else when its closure has run.
    fn poll_free(&mut self, cx: &mut Context<'_>) -> Poll<OwnedSemaphorePermit> {
        let acquiring = match &mut self.acquiring {
            Some(acquiring) => acquiring,
            None => {
                let free = LANE.with(|lane| lane.free.clone());
                match free.clone().try_acquire_owned() {
                    Ok(permit) => return Poll::Ready(permit),
                    Err(_) => self.acquiring.insert(Box::pin(free.acquire_owned())),
                }
            }
        };
        let permit = ready!(acquiring.as_mut().poll(cx));
        self.acquiring = None;
        Poll::Ready(permit.expect("a lane's semaphore is never closed"))
    }
}

impl<F, T> Future for Blocking<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if this.answer.is_none() {
            let permit = ready!(this.poll_free(cx));
            let job = this.job.take().expect("a job is sent once");
            let (tx, rx) = oneshot::channel();
            this.answer = Some(rx);
            let work: Work = Box::new(move || {
                let answer = catch_unwind(AssertUnwindSafe(job));
                drop(permit); // the thread is free again
                // Nobody waits any more: the answer (user code) is dropped here, quietly.
                if let Err(unwanted) = tx.send(answer) {
                    drop_quietly(unwanted);
                }
            });
            LANE.with(|lane| lane.send(work));
        }
        let answer = this.answer.as_mut().expect("polled after it returned");
        match ready!(Pin::new(answer).poll(cx)) {
            Ok(Ok(value)) => Poll::Ready(value),
            Ok(Err(payload)) => resume_unwind(payload),
            Err(_) => unreachable!("a lane's thread answers every closure it is sent"),
        }
    }
}
