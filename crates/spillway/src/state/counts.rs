//! [`Counts`]: the queue and the worker counts, and the transitions the worker protocols are
//! made of.
//!
//! Everything here is built from the [`sync`](crate::sync) switch and is generic over the queued
//! item, so the loom models at the bottom run these very functions. The protocols:
//!
//! * **Busy before release** ([`Counts::take_next_within`]): a taken job counts as busy before
//!   its queue slot is given back, so it is counted as queued, busy, or (briefly) both, never
//!   neither. The worker counts itself busy first, with a compare-and-swap bounded by the
//!   concurrency limit (`max_workers` for a fixed one), and only then pops (uncounting itself if
//!   the queue was empty): so at most `limit` ever run at once, inline jobs included.
//! * **The slot passes on** ([`Counts::take_next_in_slot`]): a worker whose job ended still
//!   counts busy, and takes the next job in that slot, without counting out and in again (two
//!   read-modify-writes on a line every worker and submitter touches, per job), if the limit
//!   still has room for it (`busy <= limit`, the slot being its own: what counting out and in
//!   again would have allowed). Otherwise, or if nothing is stored, it counts out. The slot is
//!   held until the next job's queue slot is released, so "busy before release" holds for it
//!   too, and nobody can take the slot meanwhile, so at most `limit` run as before.
//! * **Parked before the last look** ([`Counts::park`], [`Counts::push`]): a worker counts itself
//!   parked *before* its last look at the queue, and a submitter reads that count *after* its push,
//!   each side with a `SeqCst` fence between its write and its read (the store-buffering pattern:
//!   of two fences one comes first, and the side after it sees the other's write). So either the
//!   worker sees the job or the submitter sees the worker (and wakes it); a worker that locked the
//!   items before the push was counted before the submitter's read, by the mutex. A submitter
//!   that sees nobody parked skips the wake-up, which keeps the busy path free of notifications.
//! * **Retire, then look, then reclaim** ([`Counts::retire`]): a submitter that queued a job while
//!   this worker still counted as idle may have started nobody. The worker leaves the count, then
//!   fences and looks at the queue; the submitter reserved, fenced (in `push`) and reads the count
//!   after ([`Counts::observe`]), so one of them sees the other: either the submitter starts a
//!   worker, or the retiring one finds the job and counts itself back in.
//! * **Claim before start** ([`Counts::claim_workers`]): growth claims worker slots with one
//!   compare-and-swap bounded by `max_workers` before starting anything, so submitters growing at
//!   once never start more than `max_workers` in all.
//! * **Removal** ([`Counts::remove`]): a cancelled job is taken out of the queue by its handle
//!   before a worker pops it; the queue's lock makes exactly one of them take it (see `queue.rs`).
//!   Removal ends the job without a worker, so it never counts busy; its slot is released after
//!   the caller counted it, as for a pop.
//! * **Stop starting** ([`Counts::stop_starting`]): once a shutdown abandons work, neither growth nor
//!   a retiring worker may add to the count again.
//! * **A freed slot goes to the queue** ([`Counts::take_slot_within`], [`Counts::free_slot`]):
//!   a job run on its caller's task ("inline") takes a worker slot (`busy`, bounded by the
//!   limit) only while nothing is queued, so it never overtakes queued work. A worker that
//!   found every slot taken parks ("parked before the last look"); the inline job gives its slot
//!   back, fences, and then reads the queue and the parked count: either the worker's last look
//!   saw the slot free, or the inline job sees the worker parked and wakes it for the queued
//!   job (the store-buffering pattern again). A worker that never ends its own job is woken by
//!   nobody else: workers take the next job themselves.
//! * **Stop inline** ([`Counts::start_inline`], [`Counts::stop_inline`]): inline jobs are
//!   counted per lane in one word, `count << 1 | STOPPED`. A shutdown sets `STOPPED` with one
//!   `fetch_or` once its deadline passed and counts the jobs still there abandoned; from then on
//!   no inline job starts, and one that ends finds `STOPPED` and knows it was counted already.
//!   So each inline job is counted once, by itself or by the shutdown, never both.
//! * **Orphans are abandoned** ([`Counts::is_orphaned`]): once stopping, the last worker out
//!   looks at the queue after counting itself out, and a submitter looks at the worker count
//!   after its push; both are `SeqCst`, so one of them sees the job and abandons it (if the
//!   worker's drain ran first, the submitter's push came after it, and so did its read).

use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::queue::{LANES, Permit, Queue, Refused, Ticket};
use crate::scaler::Observation;
use crate::sync::{AtomicBool, AtomicUsize, Ordering, fence};

/// The queue and the worker counts, which submitters and workers move together.
pub(crate) struct Counts<T> {
    queue: Queue<T>,
    min_workers: usize,
    max_workers: usize,
    /// Worker tasks alive (or claimed and about to start).
    workers: CachePadded<AtomicUsize>,
    /// Jobs running: on workers, or inline on their callers' tasks (worker slots in use).
    busy: CachePadded<AtomicUsize>,
    /// Workers parked waiting for work, or about to park.
    parked: CachePadded<AtomicUsize>,
    /// A shutdown is abandoning work: start no more workers.
    stopping: AtomicBool,
    /// Inline jobs running, per lane: `count << 1 | STOPPED` (see "stop inline").
    inline: [CachePadded<AtomicUsize>; LANES],
}

/// The flag of an inline word: a shutdown counted its jobs abandoned, none may start.
const STOPPED: usize = 1;
/// One inline job in an inline word.
const ONE_INLINE: usize = 1 << 1;

/// What a push did.
#[must_use = "a parked worker may need waking"]
pub(crate) struct Pushed {
    /// Where the item waits, for its [removal](Counts::remove).
    pub(crate) ticket: Ticket,
    /// A worker is parked: wake one for the item.
    pub(crate) wake: bool,
}

/// A worker counted as parked; dropping it uncounts the worker.
#[must_use = "the worker counts as parked only while this lives"]
pub(crate) struct ParkedCount<'a>(&'a AtomicUsize);

impl Drop for ParkedCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T> Counts<T> {
    pub(crate) fn new(capacity: usize, min_workers: usize, max_workers: usize) -> Self {
        Counts {
            queue: Queue::new(capacity),
            min_workers,
            max_workers,
            workers: CachePadded::new(AtomicUsize::new(0)),
            busy: CachePadded::new(AtomicUsize::new(0)),
            parked: CachePadded::new(AtomicUsize::new(0)),
            stopping: AtomicBool::new(false),
            inline: std::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
        }
    }

    // ---- submitters ----

    /// Reserves a queue slot, or says why not. Never waits, never allocates.
    #[inline]
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_, T>, Refused> {
        self.queue.try_reserve()
    }

    /// Stores an admitted item in its slot. Says whether a parked worker must be woken for it
    /// (read after the push: see "parked before the last look").
    pub(crate) fn push(&self, permit: Permit<'_, T>, item: T, lane: usize) -> Pushed {
        let ticket = permit.push(item, lane);
        fence(Ordering::SeqCst); // pairs with the fences in `park` and `retire`
        Pushed {
            ticket,
            wake: self.parked.load(Ordering::SeqCst) > 0,
        }
    }

    /// Takes the newest item of the lowest lane below `lane` out of a full queue and hands its
    /// slot over ("displacement", in `queue.rs`): push the displacing item with the permit, after
    /// the displaced one is counted. The queue count does not move.
    #[inline]
    pub(crate) fn displace(&self, lane: usize) -> Result<(T, Permit<'_, T>), Refused> {
        self.queue.displace(lane)
    }

    /// Takes a queued item back out ("removal") and ends it with `end` before its slot is
    /// released. Returns `false` if a worker or a shutdown took it first.
    pub(crate) fn remove(&self, ticket: Ticket, end: impl FnOnce(T)) -> bool {
        let Some(item) = self.queue.remove(ticket) else {
            return false;
        };
        end(item);
        self.queue.release();
        true
    }

    /// The numbers the scaling policy decides on. Read after a [`push`](Self::push), whose fence
    /// orders them after the reservation (see "retire, then look").
    pub(crate) fn observe(&self, since_last_growth: Option<Duration>) -> Observation {
        Observation {
            workers: self.workers.load(Ordering::SeqCst),
            busy: self.busy.load(Ordering::SeqCst),
            queued: self.queue.len(),
            since_last_growth,
        }
    }

    /// Claims up to `n` more workers, never more than `max_workers` in all, none once stopping.
    /// Returns how many were claimed: the caller starts exactly that many, or gives them back.
    pub(crate) fn claim_workers(&self, n: usize) -> usize {
        if self.stopping.load(Ordering::SeqCst) {
            return 0;
        }
        let max = self.max_workers;
        match self
            .workers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < max).then(|| w.saturating_add(n).min(max))
            }) {
            Ok(before) => before.saturating_add(n).min(max) - before,
            Err(_) => 0,
        }
    }

    /// Gives back claimed workers that were not started, or counts out a worker that exited.
    pub(crate) fn release_workers(&self, n: usize) {
        self.workers.fetch_sub(n, Ordering::SeqCst);
    }

    // ---- workers ----

    /// Takes the next job and counts its worker busy ("busy before release"), within a
    /// concurrency limit: the worker counts itself busy first, only while fewer than `limit`
    /// are, then pops (and uncounts itself if the queue was empty). So at most `limit` jobs run
    /// at once, inline jobs included, and a job still counts as queued until its worker counts
    /// as busy. Also returns the number busy with it, itself included.
    pub(crate) fn take_next_within(&self, limit: usize) -> Option<(T, usize)> {
        if self.queue.len() == 0 {
            return None; // nothing reserved, so nothing to take: skip counting in and out
        }
        let busy = self.count_busy_within(limit)?;
        let Some(item) = self.queue.pop() else {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return None;
        };
        self.queue.release();
        Some((item, busy))
    }

    /// The caller's job (taken with [`take_next_within`](Self::take_next_within) or this) ended
    /// and it still counts busy: takes the next job in the same slot while the limit has room
    /// for it ("the slot passes on"), with the number busy with it, itself included. Returns
    /// `None` having counted the caller out, if the limit has no room or nothing is stored.
    pub(crate) fn take_next_in_slot(&self, limit: usize) -> Option<(T, usize)> {
        let busy = self.busy.load(Ordering::SeqCst);
        if busy <= limit
            && self.queue.len() > 0
            && let Some(item) = self.queue.pop()
        {
            self.queue.release();
            return Some((item, busy));
        }
        self.end_job();
        None
    }

    /// A job taken with [`take_next_within`](Self::take_next_within) ended, however it ended.
    pub(crate) fn end_job(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    // ---- inline jobs ----

    /// Takes a worker slot for a job that its caller runs: only while nothing is queued (so it
    /// never overtakes queued work) and fewer than `limit` run. Returns the number running with
    /// it, itself included; `None` if the job must be queued.
    pub(crate) fn take_slot_within(&self, limit: usize) -> Option<usize> {
        if self.queue.len() != 0 {
            return None;
        }
        self.count_busy_within(limit)
    }

    /// Counts one more job busy if fewer than `limit` are; returns the number busy with it.
    /// The one place where "at most `limit` run" is enforced, for workers and inline jobs alike.
    fn count_busy_within(&self, limit: usize) -> Option<usize> {
        self.busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b < limit).then_some(b + 1)
            })
            .ok()
            .map(|before| before + 1)
    }

    /// Gives back a slot taken with [`take_slot_within`](Self::take_slot_within). Returns whether
    /// a parked worker must be woken for a queued job ("a freed slot goes to the queue").
    pub(crate) fn free_slot(&self) -> bool {
        self.busy.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst); // pairs with the fence in `park`
        self.queue.len() > 0 && self.parked.load(Ordering::SeqCst) > 0
    }

    /// Counts an inline job of `lane` running. Returns `false` once a shutdown stopped inline
    /// jobs ("stop inline"): the job must not run.
    pub(crate) fn start_inline(&self, lane: usize) -> bool {
        self.inline[lane]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w & STOPPED == 0).then_some(w + ONE_INLINE)
            })
            .is_ok()
    }

    /// An inline job of `lane` ended: uncounts it and returns `true`, or returns `false` if a
    /// shutdown stopped it and counted it abandoned already.
    pub(crate) fn end_inline(&self, lane: usize) -> bool {
        self.inline[lane]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w & STOPPED == 0).then(|| w - ONE_INLINE)
            })
            .is_ok()
    }

    /// Whether a shutdown stopped the inline jobs of `lane`.
    pub(crate) fn inline_stopped(&self, lane: usize) -> bool {
        self.inline[lane].load(Ordering::SeqCst) & STOPPED != 0
    }

    /// Stops inline jobs: none starts from now on, and those running are the caller's to count
    /// abandoned. Returns how many were running in each lane (none, if stopped before).
    pub(crate) fn stop_inline(&self) -> [usize; LANES] {
        std::array::from_fn(|lane| {
            let word = self.inline[lane].fetch_or(STOPPED, Ordering::SeqCst);
            if word & STOPPED == 0 { word >> 1 } else { 0 }
        })
    }

    /// Inline jobs running and not stopped.
    pub(crate) fn inline_running(&self) -> usize {
        self.inline
            .iter()
            .map(|word| word.load(Ordering::SeqCst))
            .filter(|word| word & STOPPED == 0)
            .map(|word| word >> 1)
            .sum()
    }

    /// Counts the calling worker parked until the returned count is dropped. Call it before the
    /// last look at the queue ("parked before the last look").
    pub(crate) fn park(&self) -> ParkedCount<'_> {
        self.parked.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst); // pairs with the fence in `push`
        ParkedCount(&self.parked)
    }

    /// Retires the calling worker if more than `min_workers` are alive, unless a job arrived
    /// that nobody else may run ("retire, then look, then reclaim"). Returns `true` if the worker
    /// is no longer counted and must exit; `false` if it stays.
    pub(crate) fn retire(&self) -> bool {
        let min = self.min_workers;
        let left = self
            .workers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w > min).then(|| w - 1)
            })
            .is_ok();
        if !left {
            return false;
        }
        fence(Ordering::SeqCst); // pairs with the fence in `push`
        self.queue.len() == 0 || !self.reclaim()
    }

    /// Counts a retiring worker back in, if that stays within `max_workers` and no shutdown is
    /// abandoning work.
    fn reclaim(&self) -> bool {
        let max = self.max_workers;
        !self.stopping.load(Ordering::SeqCst)
            && self
                .workers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                    (w < max).then(|| w + 1)
                })
                .is_ok()
    }

    // ---- close and shutdown ----

    /// Stops admission. Returns `true` for the call that closed it.
    pub(crate) fn close(&self) -> bool {
        self.queue.close()
    }

    /// From now on no worker may be started or reclaimed.
    pub(crate) fn stop_starting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// No worker may start and none is left, yet jobs are queued: whoever sees this abandons
    /// them ("orphans are abandoned"). Read after the write that may have made it so.
    pub(crate) fn is_orphaned(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
            && self.workers.load(Ordering::SeqCst) == 0
            && self.queue.len() > 0
    }

    /// Ends every job still queued with `end`, each counted there before its slot is released.
    /// Returns whether the queue is drained; if not, a submission that reserved its slot before
    /// the close is still pushing, and the caller tries again.
    pub(crate) fn drain_unrun(&self, mut end: impl FnMut(T)) -> bool {
        while let Some(item) = self.queue.pop() {
            end(item);
            self.queue.release();
        }
        self.queue.is_drained()
    }

    // ---- readings ----

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Closed, and every admitted job has been taken: nothing can arrive any more.
    pub(crate) fn is_drained(&self) -> bool {
        self.queue.is_drained()
    }

    #[inline]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Items stored per lane.
    pub(crate) fn queued_by_lane(&self) -> [usize; LANES] {
        self.queue.stored_by_lane()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers.load(Ordering::SeqCst)
    }

    #[inline]
    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }
}

#[cfg(all(test, not(spillway_loom)))]
mod tests {
    use super::*;

    /// A worker's take under a fixed limit (`max_workers`).
    fn take<T>(counts: &Counts<T>) -> Option<(T, usize)> {
        counts.take_next_within(counts.max_workers)
    }

    #[test]
    fn a_taken_job_counts_busy_until_it_ends() {
        let counts = Counts::new(2, 0, 1);
        let permit = counts.try_reserve().expect("room");
        assert!(!counts.push(permit, 1, 1).wake, "nobody parked: no wake-up");
        assert_eq!(take(&counts), Some((1, 1)));
        assert_eq!((counts.queued(), counts.busy()), (0, 1));
        counts.end_job();
        assert_eq!(counts.busy(), 0);
    }

    #[test]
    fn a_push_wakes_only_when_someone_is_parked() {
        let counts = Counts::new(2, 0, 1);
        let parked = counts.park();
        assert!(counts.push(counts.try_reserve().expect("room"), 1, 1).wake);
        drop(parked);
        assert!(!counts.push(counts.try_reserve().expect("room"), 2, 1).wake);
    }

    #[test]
    fn a_removed_job_never_counts_busy() {
        let counts = Counts::new(1, 0, 1);
        let pushed = counts.push(counts.try_reserve().expect("room"), 3, 1);
        let mut ended = None;
        assert!(counts.remove(pushed.ticket, |job| ended = Some(job)));
        assert_eq!(ended, Some(3));
        assert_eq!((counts.queued(), counts.busy()), (0, 0));
        assert!(!counts.remove(pushed.ticket, |_| unreachable!("removed once")));
        assert_eq!(take(&counts), None);
    }

    #[test]
    fn claims_stay_within_max_and_stop_when_stopping() {
        let counts: Counts<u8> = Counts::new(1, 0, 3);
        assert_eq!(counts.claim_workers(2), 2);
        assert_eq!(counts.claim_workers(5), 1);
        assert_eq!(counts.claim_workers(1), 0);
        counts.release_workers(3);
        counts.stop_starting();
        assert_eq!(counts.claim_workers(1), 0);
    }

    #[test]
    fn retires_down_to_min_and_stays_for_a_queued_job() {
        let counts = Counts::new(1, 1, 2);
        assert_eq!(counts.claim_workers(2), 2);
        assert!(counts.retire(), "above the minimum, nothing queued");
        assert!(!counts.retire(), "at the minimum");
        assert_eq!(counts.claim_workers(1), 1);
        assert!(!counts.push(counts.try_reserve().expect("room"), 7, 1).wake);
        assert!(
            !counts.retire(),
            "a job is queued: the worker counts itself back in"
        );
        assert_eq!(counts.workers(), 2);
    }

    #[test]
    fn an_inline_slot_never_overtakes_the_queue_nor_the_limit() {
        let counts = Counts::new(2, 0, 2);
        assert_eq!(counts.take_slot_within(2), Some(1));
        assert_eq!(counts.take_slot_within(2), Some(2));
        assert_eq!(counts.take_slot_within(2), None, "the limit is in use");
        assert!(!counts.free_slot(), "nothing queued: nobody to wake");
        let parked = counts.park();
        let _ = counts.push(counts.try_reserve().expect("room"), 1, 1);
        assert_eq!(counts.take_slot_within(2), None, "a job is queued");
        assert!(counts.free_slot(), "a queued job and a parked worker");
        drop(parked);
        assert_eq!(counts.take_next_within(2), Some((1, 1)));
    }

    #[test]
    fn a_stopped_inline_job_is_counted_by_the_stop_not_by_its_end() {
        let counts: Counts<u8> = Counts::new(1, 0, 1);
        assert!(counts.start_inline(1) && counts.start_inline(1) && counts.start_inline(3));
        assert!(counts.end_inline(1));
        assert_eq!(counts.inline_running(), 2);
        assert_eq!(counts.stop_inline(), [0, 1, 0, 1]);
        assert!(counts.inline_stopped(1));
        assert!(!counts.end_inline(1), "counted by the stop");
        assert!(!counts.start_inline(0), "none starts once stopped");
        assert_eq!(counts.inline_running(), 0);
        assert_eq!(counts.stop_inline(), [0; LANES], "counted once");
    }
}

#[cfg(all(test, spillway_loom))]
mod loom_tests {
    //! What these models cover: the counting protocols above, run on loom's atomics and mutex.
    //! tokio's `Notify` is not built on the `sync` switch, so the wake-up is modelled with
    //! `loom::sync::Notify`, which keeps a permit when nobody waits yet, as tokio's does for a
    //! worker that registered (its first poll of `Notified`) before counting itself parked. A
    //! model in which a needed wake-up is skipped leaves the worker waiting forever, and loom
    //! fails it as a deadlock.

    use super::*;
    use loom::sync::{Arc, Notify};
    use loom::thread;

    use crate::scaler::{self, Decision, Policy};

    /// A worker's take under a fixed limit (`max_workers`).
    fn take<T>(counts: &Counts<T>) -> Option<(T, usize)> {
        counts.take_next_within(counts.max_workers)
    }

    /// Two workers race for two queued jobs under a limit of one: at most one runs at a time,
    /// a worker that finds the limit in use takes nothing and leaves `busy` as it was, and every
    /// job is either taken or still queued.
    #[test]
    fn loom_take_within_a_limit_never_runs_more() {
        loom::model(|| {
            let counts = Arc::new(Counts::new(2, 0, 2));
            for job in [1, 2] {
                let _ = counts.push(counts.try_reserve().expect("room"), job, 1);
            }
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let counts = counts.clone();
                    thread::spawn(move || {
                        let taken = counts.take_next_within(1);
                        if let Some((_, busy)) = taken {
                            assert_eq!(busy, 1, "alone under the limit");
                            assert!(counts.busy() <= 1);
                            counts.end_job();
                        }
                        usize::from(taken.is_some())
                    })
                })
                .collect();
            let taken: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
            assert!(taken >= 1, "the first to count itself busy takes a job");
            assert_eq!(counts.queued() + taken, 2);
            assert_eq!(counts.busy(), 0);
        });
    }

    /// A worker goes idle while a submitter pushes a job: the worker either finds the job in its
    /// last look or is woken for it. Never stranded.
    #[test]
    fn loom_a_slot_passed_on_never_runs_more_than_the_limit() {
        // Limit 1: a worker ends its job and passes its slot on while an inline job tries to
        // take a slot and a submitter queues a second job. Never two at once, and every job
        // runs (here: the passed-on take or a later plain take gets the queued job).
        loom::model(|| {
            let counts = Arc::new(Counts::<u8>::new(2, 1, 2));
            let _ = counts.push(counts.try_reserve().expect("room"), 1, 1);
            let (job, busy) = take(&counts).expect("the first job");
            assert_eq!((job, busy), (1, 1));
            let running = Arc::new(AtomicUsize::new(1));
            let inline = {
                let (counts, running) = (counts.clone(), running.clone());
                thread::spawn(move || {
                    if counts.take_slot_within(1).is_some() {
                        assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "over the limit");
                        running.fetch_sub(1, Ordering::SeqCst);
                        let _ = counts.free_slot();
                    }
                })
            };
            let submitter = {
                let counts = counts.clone();
                thread::spawn(move || {
                    let _ = counts.push(counts.try_reserve().expect("room"), 2, 1);
                })
            };
            running.fetch_sub(1, Ordering::SeqCst);
            let mut ran = 0;
            if let Some((job, busy)) = counts.take_next_in_slot(1) {
                assert_eq!((job, busy), (2, 1));
                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "over the limit");
                running.fetch_sub(1, Ordering::SeqCst);
                ran += 1;
                assert!(counts.take_next_in_slot(1).is_none());
            }
            inline.join().unwrap();
            submitter.join().unwrap();
            if ran == 0 {
                // The job came after the pass: a plain take (the worker's next look) gets it.
                let (job, _) = take(&counts).expect("the queued job");
                assert_eq!(job, 2);
                counts.end_job();
            }
            assert_eq!((counts.busy(), counts.queued()), (0, 0));
        });
    }

    #[test]
    fn loom_parked_worker_is_woken_for_a_pushed_job() {
        loom::model(|| {
            let counts = Arc::new(Counts::new(1, 1, 1));
            let work = Arc::new(Notify::new());
            let worker = {
                let (counts, work) = (counts.clone(), work.clone());
                thread::spawn(move || {
                    loop {
                        if let Some(job) = take(&counts).map(|(job, _)| job) {
                            counts.end_job();
                            return job;
                        }
                        let parked = counts.park();
                        if let Some(job) = take(&counts).map(|(job, _)| job) {
                            drop(parked);
                            counts.end_job();
                            return job;
                        }
                        work.wait(); // blocks for good if the submitter skipped the wake-up
                        drop(parked);
                    }
                })
            };
            let permit = counts.try_reserve().expect("an empty queue has room");
            if counts.push(permit, 42, 1).wake {
                work.notify();
            }
            assert_eq!(worker.join().unwrap(), 42);
            assert_eq!((counts.queued(), counts.busy()), (0, 0));
        });
    }

    /// The only worker retires (`min_workers = 0`) while a submitter queues a job and asks the
    /// policy whether to start one: the job is taken exactly once, by the retiring worker that
    /// counted itself back in (and then looks and parks as any worker) or by a worker the
    /// submitter started; never by nobody, and never with more than `max_workers` counted.
    ///
    /// A worker that stayed may find the job already taken by one started meanwhile (it looked
    /// while the slot was still counted): it then parks, as an idle worker does until its next
    /// idle timeout. The model ends by waking it with `done` set; the wake-up for the job itself
    /// is the submitter's own, as in the model above.
    #[test]
    fn loom_retiring_worker_or_a_new_one_runs_the_job() {
        loom::model(|| retiring_worker_or_a_new_one_runs_the_job(None));
    }

    /// The same race with a cooldown that has not passed since the last growth: the cooldown
    /// must not hold back the first worker (issue 18, defect 3).
    #[test]
    fn loom_retiring_worker_or_a_new_one_runs_the_job_under_a_cooldown() {
        loom::model(|| retiring_worker_or_a_new_one_runs_the_job(Some(Duration::ZERO)));
    }

    fn retiring_worker_or_a_new_one_runs_the_job(since_last_growth: Option<Duration>) {
        {
            let counts = Arc::new(Counts::new(1, 0, 1));
            let work = Arc::new(Notify::new());
            let done = Arc::new(AtomicBool::new(false));
            assert_eq!(counts.claim_workers(1), 1);
            let retiring = {
                let (counts, work, done) = (counts.clone(), work.clone(), done.clone());
                thread::spawn(move || {
                    if counts.retire() {
                        return 0;
                    }
                    let taken = loop {
                        let finishing = done.load(Ordering::SeqCst);
                        if take(&counts).is_some() {
                            break 1;
                        }
                        if finishing {
                            break 0;
                        }
                        let parked = counts.park();
                        if take(&counts).is_some() {
                            break 1;
                        }
                        work.wait();
                        drop(parked);
                    };
                    if taken == 1 {
                        counts.end_job();
                    }
                    counts.release_workers(1);
                    taken
                })
            };
            let permit = counts.try_reserve().expect("an empty queue has room");
            if counts.push(permit, 7, 1).wake {
                work.notify();
            }
            let policy = Policy {
                min_workers: 0,
                max_workers: 1,
                scale_up_threshold: 1.0,
                scale_up_cooldown: Duration::from_secs(3600),
                idle_timeout: Duration::from_secs(1),
            };
            let started = match scaler::decide(counts.observe(since_last_growth), &policy) {
                Decision::Grow(n) => counts.claim_workers(n),
                Decision::Hold => 0,
            };
            assert!(
                counts.workers() <= 1,
                "more workers counted than max_workers"
            );
            let by_new = (0..started)
                .map(|_| {
                    let counts = counts.clone();
                    // Started after the push, with the retiring worker gone for good.
                    thread::spawn(move || {
                        let taken = usize::from(take(&counts).is_some());
                        counts.end_job();
                        counts.release_workers(1);
                        taken
                    })
                })
                .map(|worker| worker.join().unwrap())
                .sum::<usize>();
            done.store(true, Ordering::SeqCst);
            work.notify();
            let by_retiring = retiring.join().unwrap();
            assert_eq!(by_retiring + by_new, 1, "the job was stranded or run twice");
            assert_eq!((counts.queued(), counts.workers()), (0, 0));
        }
    }

    /// A worker parks while an inline job holds the only slot under a limit of one and a job is
    /// queued: when the inline job gives its slot back, either the worker's last look finds the
    /// slot free or the inline job sees it parked and wakes it. The queued job is never
    /// stranded behind a slot freed by a job no worker ran.
    #[test]
    fn loom_a_slot_freed_inline_goes_to_the_queued_job() {
        loom::model(|| freed_slot_goes_to_the_queued_job(false));
    }

    /// The same, with the job pushed while the inline job ends (its submitter wakes a parked
    /// worker too).
    #[test]
    fn loom_a_slot_freed_inline_goes_to_a_job_pushed_meanwhile() {
        loom::model(|| freed_slot_goes_to_the_queued_job(true));
    }

    fn freed_slot_goes_to_the_queued_job(push_meanwhile: bool) {
        let counts = Arc::new(Counts::new(1, 1, 1));
        let work = Arc::new(Notify::new());
        assert_eq!(counts.take_slot_within(1), Some(1));
        if !push_meanwhile {
            let _ = counts.push(counts.try_reserve().expect("room"), 5, 1);
        }
        let worker = {
            let (counts, work) = (counts.clone(), work.clone());
            thread::spawn(move || {
                loop {
                    if let Some((job, _)) = counts.take_next_within(1) {
                        counts.end_job();
                        return job;
                    }
                    let parked = counts.park();
                    if let Some((job, _)) = counts.take_next_within(1) {
                        drop(parked);
                        counts.end_job();
                        return job;
                    }
                    work.wait(); // blocks for good if both sides skipped the wake-up
                    drop(parked);
                }
            })
        };
        let submitter = push_meanwhile.then(|| {
            let (counts, work) = (counts.clone(), work.clone());
            thread::spawn(move || {
                if counts.push(counts.try_reserve().expect("room"), 5, 1).wake {
                    work.notify();
                }
            })
        });
        if counts.free_slot() {
            work.notify();
        }
        if let Some(submitter) = submitter {
            submitter.join().unwrap();
        }
        assert_eq!(worker.join().unwrap(), 5);
        assert_eq!((counts.queued(), counts.busy()), (0, 0));
    }

    /// A shutdown stops inline jobs while one ends and another starts: each job that started is
    /// counted exactly once, by its own end or by the stop.
    #[test]
    fn loom_stop_inline_counts_each_job_once() {
        loom::model(|| {
            let counts: Arc<Counts<u8>> = Arc::new(Counts::new(1, 0, 1));
            assert!(counts.start_inline(1));
            let ending = {
                let counts = counts.clone();
                thread::spawn(move || usize::from(counts.end_inline(1)))
            };
            let starting = {
                let counts = counts.clone();
                thread::spawn(move || {
                    if !counts.start_inline(1) {
                        return (0, 0);
                    }
                    (1, usize::from(counts.end_inline(1)))
                })
            };
            let stopped: usize = counts.stop_inline().iter().sum();
            let ended = ending.join().unwrap();
            let (started, ended_late) = starting.join().unwrap();
            assert_eq!(
                stopped + ended + ended_late,
                1 + started,
                "an inline job was counted twice or never"
            );
            assert_eq!(counts.inline_running(), 0);
        });
    }

    /// Abandons what is queued if the pool is orphaned; returns how many jobs it abandoned.
    fn abandon_if_orphaned(counts: &Counts<u8>) -> usize {
        let mut abandoned = 0;
        if counts.is_orphaned() {
            counts.drain_unrun(|_| abandoned += 1);
        }
        abandoned
    }

    /// A shutdown stops the workers while a submission races the close: refused, or admitted and
    /// still pushing. The last worker out (counting itself out after the shutdown stopped
    /// starting workers, or itself stopping them because its runtime is gone) and the submitter
    /// each look for orphans after their own write: every queued job is abandoned exactly once.
    #[test]
    fn loom_abandon_races_a_push() {
        for runtime_lost in [false, true] {
            loom::model(move || {
                let counts = Arc::new(Counts::new(2, 0, 1));
                assert_eq!(counts.claim_workers(1), 1);
                assert!(!counts.push(counts.try_reserve().expect("room"), 1, 1).wake);
                let pusher = {
                    let counts = counts.clone();
                    thread::spawn(move || match counts.try_reserve() {
                        Ok(permit) => {
                            let _ = counts.push(permit, 2, 1);
                            (1, abandon_if_orphaned(&counts))
                        }
                        Err(_) => (0, 0),
                    })
                };
                counts.close();
                let mut abandoned = 0;
                if !runtime_lost {
                    // The shutdown: stop starting, abort, look (no worker out yet here).
                    counts.stop_starting();
                    abandoned += abandon_if_orphaned(&counts);
                }
                let last_worker = {
                    let counts = counts.clone();
                    thread::spawn(move || {
                        if runtime_lost {
                            counts.stop_starting();
                        }
                        counts.release_workers(1);
                        abandon_if_orphaned(&counts)
                    })
                };
                let (admitted, by_pusher) = pusher.join().unwrap();
                abandoned += last_worker.join().unwrap() + by_pusher;
                assert_eq!(abandoned, 1 + admitted, "a queued job was stranded");
                assert!(counts.is_drained());
            });
        }
    }

    /// Growth claims a worker while a shutdown stops starting them and aborts those started
    /// (both under the task lock, as `Shared::grow` and `Shared::shutdown` do): either the
    /// worker is started before the stop and then aborted, or growth sees the stop and gives
    /// its claim back. Either way no worker outlives the shutdown and the queued job is
    /// abandoned once.
    #[test]
    fn loom_growth_rechecks_stopping_under_the_task_lock() {
        loom::model(|| {
            let counts = Arc::new(Counts::new(1, 0, 1));
            let tasks = Arc::new(crate::sync::Mutex::new(0usize)); // workers started
            assert!(!counts.push(counts.try_reserve().expect("room"), 1, 1).wake);
            counts.close();
            let grower = {
                let (counts, tasks) = (counts.clone(), tasks.clone());
                thread::spawn(move || {
                    let claimed = counts.claim_workers(1);
                    if claimed == 0 {
                        return 0;
                    }
                    let mut started = crate::sync::lock(&tasks);
                    if counts.is_stopping() {
                        drop(started);
                        counts.release_workers(claimed);
                        return abandon_if_orphaned(&counts);
                    }
                    *started += claimed;
                    0
                })
            };
            let aborted = {
                let mut started = crate::sync::lock(&tasks);
                counts.stop_starting();
                std::mem::take(&mut *started)
            };
            let mut abandoned = abandon_if_orphaned(&counts);
            // The aborted workers exit, each looking for orphans once it is counted out.
            for _ in 0..aborted {
                counts.release_workers(1);
                abandoned += abandon_if_orphaned(&counts);
            }
            abandoned += grower.join().unwrap();
            assert_eq!(
                *crate::sync::lock(&tasks),
                0,
                "a worker started after the stop"
            );
            assert_eq!(counts.workers(), 0);
            assert_eq!(
                abandoned, 1,
                "the queued job was stranded or abandoned twice"
            );
            assert!(counts.is_drained());
        });
    }

    /// A job of higher priority displaces a queued one while a worker takes it: the low job
    /// ends once (run or displaced), the high one is queued only if it displaced it, and the
    /// queue count never moves for the displacement, so a reader never sees a job nowhere.
    #[test]
    fn loom_displacement_races_a_workers_take() {
        loom::model(|| {
            let counts = Arc::new(Counts::new(1, 1, 1));
            let _ = counts.push(counts.try_reserve().expect("room"), 1, 0);
            let worker = {
                let counts = counts.clone();
                thread::spawn(move || {
                    let taken = take(&counts).map(|(job, _)| job);
                    if taken.is_some() {
                        counts.end_job();
                    }
                    taken
                })
            };
            let displaced = match counts.displace(3) {
                Ok((low, permit)) => {
                    assert_eq!(counts.queued(), 1, "the slot is handed over, not freed");
                    let _ = counts.push(permit, 2, 3);
                    Some(low)
                }
                Err(refused) => {
                    assert_eq!(refused, Refused::Full);
                    None
                }
            };
            let taken = worker.join().unwrap();
            let mut ended: Vec<i32> = taken.into_iter().chain(displaced).collect();
            ended.extend(take(&counts).map(|(job, _)| job));
            ended.sort_unstable();
            let expected: &[i32] = if displaced.is_some() { &[1, 2] } else { &[1] };
            assert_eq!(ended, expected, "a job was lost or ended twice");
        });
    }

    /// A handle removes its job while a worker takes it: the job ends once, by one of them; it
    /// counts busy only if the worker took it, and is counted queued, busy or ended throughout.
    #[test]
    fn loom_removal_races_a_workers_take() {
        loom::model(|| {
            let counts = Arc::new(Counts::new(1, 1, 1));
            let pushed = counts.push(counts.try_reserve().expect("room"), 9, 1);
            let worker = {
                let counts = counts.clone();
                thread::spawn(move || {
                    let taken = take(&counts).map(|(job, _)| job);
                    if taken.is_some() {
                        assert_eq!(counts.busy(), 1);
                        counts.end_job();
                    }
                    taken
                })
            };
            let ended = AtomicUsize::new(0);
            let removed = counts.remove(pushed.ticket, |_| {
                // Counted before the slot is released: a reader never sees it nowhere.
                ended.fetch_add(1, Ordering::SeqCst);
                assert_eq!(counts.queued(), 1);
            });
            let taken = worker.join().unwrap();
            assert_eq!(usize::from(removed) + usize::from(taken.is_some()), 1);
            assert_eq!(ended.load(Ordering::SeqCst), usize::from(removed));
            assert_eq!((counts.queued(), counts.busy()), (0, 0));
        });
    }
}
