//! Bounded admission and storage: the one owner of queue capacity.
//!
//! Capacity and the closed flag live together in one atomic word, `count << 1 | CLOSED`, so that
//! admission is a single compare-and-swap that sees both at once:
//!
//! * a reservation succeeds exactly when the queue is open and `count < capacity` at the moment of
//!   the swap. There is no `select` and no randomness: `try_reserve` never reports `Full` while
//!   there is room (a choice among ready channels at random could);
//! * `close` sets the flag with one `fetch_or`; from then on no reservation can succeed, and the
//!   set of reserved slots is fixed. A reservation taken before the close is still pushed and still
//!   counted, so a job that was admitted is never lost and nothing is ever "sent on a closed
//!   channel": the close does not race with the push, it only races with the reservation, and the
//!   CAS orders the two;
//! * `count` includes slots that are reserved but not yet pushed, so a consumer that sees the queue
//!   closed and `count == 0` ([`Queue::is_drained`]) knows that no item can still arrive.
//!
//! A refusal touches one atomic word and allocates nothing: the caller still owns its item. The
//! storage itself is a mutex over [`Items`], short critical sections only, and model-checked
//! together with the counter (`loom_*` tests below).
//!
//! **Removal.** A stored item gets a [`Ticket`]; its owner may take it back out with
//! [`Queue::remove`] before a consumer pops it (a cancelled job leaves the queue at once instead
//! of holding its slot until a worker reaches it). Removal and pop both take the item under the
//! lock, so exactly one of them gets it; whoever does releases its slot. A removed item leaves a
//! stale ticket in the arrival order, skipped by `pop` and swept out by the next push once stale
//! tickets outnumber stored items, so the order stays within twice the stored items (plus a few)
//! and the sweep costs O(1) per push, amortized. No user code runs under the lock: removed and
//! popped items are dropped by the caller.
//!
//! # Priorities
//!
//! Capacity stays one count for all priorities; the storage keeps one arrival order ("lane") per
//! priority. Three rules decide who is served and who is shed, all under the one lock:
//!
//! * **Service order**: the oldest item of the highest non-empty lane, FIFO within a lane (a
//!   queue stands only for as long as the limit's queue target lets it, so LIFO would buy little
//!   and would reorder work of one priority, which callers notice).
//! * **Displacement** ([`Queue::displace`]): when the count is at its bound, an item of a higher
//!   priority takes the slot of the *newest* item of the *lowest* lane below its own. The newest,
//!   because it has waited least (the oldest is closest to being served, and dropping it would
//!   waste its wait); the lowest, so that shedding goes strictly bottom up. An item never
//!   displaces one of its own or a higher lane: with a single priority offered nothing is ever
//!   displaced, and that priority has the whole capacity, exactly as without priorities. The
//!   displaced item's slot passes to the new one as a reserved [`Permit`], so the count does not
//!   move and no capacity is held back for priorities that are absent. The caller ends the
//!   displaced item (outside the lock) before it pushes the new one: counted in its slot until
//!   then, it is seen in two places for an instant, never in none. The new item is built only
//!   once a victim is sure, so a refusal still allocates nothing. A worker's pop and a
//!   displacement take items under the same lock, so an item is popped or displaced, never both
//!   (`loom_displacement_races_a_take`).
//! * **Anti-starvation share**: every [`SHARE`]th pop (1 in 16) serves the oldest item of a
//!   lower lane that waits, the lanes below the top taking turns, instead of the top lane. With
//!   the scenario (3x capacity offered, of which critical and normal alone are 1.2x),
//!   strict priority would give low work nothing at all, however long it waited; the share gives
//!   it at least 1/16 of the dequeues while it waits, and costs the top lane at most 1/16 of its
//!   service (critical work is 0.3x capacity there, far below the 15/16 it keeps).
//! * **The limit's standing queue, by priority** (in `state/limiter.rs`, not here): while the
//!   adaptive limit is saturated it bounds the queue to what drains within its target and drops
//!   jobs that waited twice the target. Both rules scale with `Priority::queue_tolerance`
//!   (critical 4x, high 2x, normal and low 1x), so a critical job is neither refused by the
//!   bound while only critical work fills it nor dropped for a wait that lower work would be
//!   dropped for: shedding by the limit, too, starts at the bottom.
//!
//! The failure modes these rules are argued against:
//!
//! * *Starvation of low work when there is room*: no capacity is reserved per priority and
//!   nothing is displaced below the bound, so while the queue has room every priority is admitted
//!   alike, and the share serves waiting low work even under a standing overload of higher work.
//! * *Priority inversion in the queue*: a critical item never waits behind lower items, except
//!   for the one pop in 16 the share gives away (a bounded inversion of one job per 16), and is
//!   never refused while a lower item holds a slot: it displaces it.
//! * *Oscillation*: there is no threshold or controller on the priority mix (as Cinnamon's PID
//!   on the rejection threshold), so nothing here can overshoot or hunt: each decision looks at
//!   the queue as it is. The only controller is the adaptive limit, which sees in-flight counts
//!   and latencies, not priorities, and so behaves as with a single priority.

use std::collections::VecDeque;

use crossbeam_utils::CachePadded;

use crate::priority::PRIORITIES;
use crate::sync::{AtomicUsize, Mutex, Ordering, lock};

const CLOSED: usize = 1;
const ONE: usize = 1 << 1;

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// The largest capacity the packed state word can count.
pub(crate) const MAX_CAPACITY: usize = usize::MAX >> 2;

pub(crate) struct Queue<T> {
    // Submitters and workers both write these; keep them off each other's cache lines.
    state: CachePadded<AtomicUsize>,
    capacity: usize,
    items: CachePadded<Mutex<Items<T>>>,
    /// Bit `l` set while lane `l` stores an item, written under the `items` lock after each
    /// change. Read without the lock by [`displace`](Queue::displace) so that a refusal with no
    /// lower item to displace (the common overload: one priority) stays off the lock. A hint:
    /// a lower item stored an instant after the read is missed, as if the job had come an
    /// instant earlier.
    occupied: AtomicUsize,
}

/// Where a stored item waits: lets its owner [remove](Queue::remove) it before it is popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    index: usize,
    generation: u64,
}

/// The number of lanes: one per priority.
pub(crate) const LANES: usize = PRIORITIES;

/// One dequeue in this many goes to a waiting lower lane (see "anti-starvation share").
pub(crate) const SHARE: u32 = 16;

/// The stored items: a slab of slots, and their tickets in arrival order, one order per lane.
struct Items<T> {
    /// Tickets in arrival order per lane (lane `LANES - 1` is served first); a ticket whose item
    /// was removed is stale and skipped.
    lanes: [VecDeque<Ticket>; LANES],
    /// Items stored per lane (the fresh tickets in `lanes[lane]`).
    stored: [usize; LANES],
    slots: Vec<Slot<T>>,
    /// Indices of empty slots.
    free: Vec<usize>,
    /// Items popped, counting towards the next anti-starvation share.
    pops: u32,
    /// The lower lane the next share looks at first, so that the lanes below the top take
    /// their turns.
    share_turn: usize,
}

struct Slot<T> {
    /// Bumped each time the slot is emptied, so that an old ticket never takes a new item.
    generation: u64,
    lane: usize,
    item: Option<T>,
}

/// Below this many stored items, stale tickets are swept only past this many (keeps tiny
/// queues from sweeping on every push).
const SWEEP_FLOOR: usize = 8;

impl<T> Items<T> {
    fn new() -> Self {
        Items {
            lanes: Default::default(),
            stored: [0; LANES],
            slots: Vec::new(),
            free: Vec::new(),
            pops: 0,
            share_turn: 0,
        }
    }

    fn insert(&mut self, item: T, lane: usize) -> Ticket {
        if self.lanes[lane].len() >= 2 * self.stored[lane].max(SWEEP_FLOOR) {
            let slots = &self.slots;
            self.lanes[lane].retain(|ticket| slots[ticket.index].generation == ticket.generation);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    lane,
                    item: None,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.item = Some(item);
        slot.lane = lane;
        let ticket = Ticket {
            index,
            generation: slot.generation,
        };
        self.lanes[lane].push_back(ticket);
        self.stored[lane] += 1;
        ticket
    }

    /// Takes the item of `ticket` if it is still stored.
    fn take(&mut self, ticket: Ticket) -> Option<T> {
        let slot = self.slots.get_mut(ticket.index)?;
        if slot.generation != ticket.generation {
            return None;
        }
        let item = slot.item.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.stored[slot.lane] -= 1;
        self.free.push(ticket.index);
        Some(item)
    }

    /// The highest lane holding an item.
    fn top(&self) -> Option<usize> {
        (0..LANES).rev().find(|&lane| self.stored[lane] > 0)
    }

    /// The next item to serve: the oldest of the highest lane, except that every [`SHARE`]th
    /// pop goes to a waiting lower lane, the lanes below the top taking turns.
    fn pop_next(&mut self) -> Option<T> {
        let top = self.top()?;
        self.pops = self.pops.wrapping_add(1);
        let lane = if self.pops.is_multiple_of(SHARE) {
            self.share_lane(top)
        } else {
            top
        };
        self.pop_front(lane)
    }

    /// The next waiting lane below `top`, in turn; `top` if none waits.
    fn share_lane(&mut self, top: usize) -> usize {
        for k in 0..top {
            let lane = (self.share_turn + k) % top;
            if self.stored[lane] > 0 {
                self.share_turn = lane + 1;
                return lane;
            }
        }
        top
    }

    fn pop_front(&mut self, lane: usize) -> Option<T> {
        while let Some(ticket) = self.lanes[lane].pop_front() {
            if let Some(item) = self.take(ticket) {
                return Some(item);
            }
        }
        None
    }

    /// Takes the newest item of the lowest lane below `lane`, if any.
    fn pop_newest_below(&mut self, lane: usize) -> Option<T> {
        let victim = (0..lane).find(|&l| self.stored[l] > 0)?;
        while let Some(ticket) = self.lanes[victim].pop_back() {
            if let Some(item) = self.take(ticket) {
                return Some(item);
            }
        }
        None
    }
}

/// A reserved slot. Push into it with [`Permit::push`]; dropping it unused gives the slot back.
#[must_use = "a permit holds a queue slot until it is pushed or dropped"]
pub(crate) struct Permit<'a, T> {
    queue: &'a Queue<T>,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(
            (1..=MAX_CAPACITY).contains(&capacity),
            "queue capacity validated by the builder"
        );
        Queue {
            state: CachePadded::new(AtomicUsize::new(0)),
            capacity,
            items: CachePadded::new(Mutex::new(Items::new())),
            occupied: AtomicUsize::new(0),
        }
    }

    /// Publishes which lanes of `items` store an item (called with the lock held).
    fn publish(&self, items: &Items<T>) {
        let mask = (0..LANES)
            .filter(|&lane| items.stored[lane] > 0)
            .fold(0, |mask, lane| mask | 1 << lane);
        // Written only when it changes (rarely, under a steady load): a store would take the
        // cache line away from every submitter's next read.
        if self.occupied.load(Ordering::Relaxed) != mask {
            self.occupied.store(mask, Ordering::Relaxed);
        }
    }

    /// Reserves one slot, or says why not. Never waits, never allocates.
    #[inline]
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_, T>, Refused> {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            if current & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            if current >> 1 >= self.capacity {
                return Err(Refused::Full);
            }
            match self.state.compare_exchange_weak(
                current,
                current + ONE,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(Permit { queue: self }),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes the oldest item. Its slot stays counted until [`Queue::release`], so that the caller
    /// can account for the item elsewhere first and the total never dips.
    pub(crate) fn pop(&self) -> Option<T> {
        if self.len() == 0 {
            return None; // nothing reserved, so nothing stored: skip the lock
        }
        let mut items = lock(&self.items);
        let item = items.pop_next();
        self.publish(&items);
        item
    }

    /// Takes the newest item of the lowest lane below `lane` out ("displacement") and hands its
    /// slot over as a [`Permit`], for the item that displaces it: the count does not move. Or
    /// says why not: `Closed`, or `Full` when no lower item is stored.
    #[inline]
    pub(crate) fn displace(&self, lane: usize) -> Result<(T, Permit<'_, T>), Refused> {
        if self.occupied.load(Ordering::Relaxed) & ((1 << lane) - 1) == 0 && !self.is_closed() {
            return Err(Refused::Full); // the common refusal: inlined, off the lock
        }
        self.displace_locked(lane)
    }

    /// [`displace`](Self::displace) once a lower item may be stored: looks under the lock.
    fn displace_locked(&self, lane: usize) -> Result<(T, Permit<'_, T>), Refused> {
        let mut items = lock(&self.items);
        if self.is_closed() {
            return Err(Refused::Closed);
        }
        let displaced = items.pop_newest_below(lane).ok_or(Refused::Full)?;
        self.publish(&items);
        Ok((displaced, Permit { queue: self }))
    }

    /// Items stored per lane (not counting slots reserved and not yet pushed).
    pub(crate) fn stored_by_lane(&self) -> [usize; LANES] {
        lock(&self.items).stored
    }

    /// Takes back the item stored with `ticket`, if no one popped or removed it yet. As with
    /// [`pop`](Self::pop), its slot stays counted until [`Queue::release`].
    pub(crate) fn remove(&self, ticket: Ticket) -> Option<T> {
        let mut items = lock(&self.items);
        let item = items.take(ticket);
        self.publish(&items);
        item
    }

    /// Gives back the slot of one popped item.
    pub(crate) fn release(&self) {
        let previous = self.state.fetch_sub(ONE, Ordering::SeqCst);
        debug_assert!(previous >> 1 > 0, "released more slots than were reserved");
    }

    /// Stops admission. Returns `true` for the call that closed it.
    pub(crate) fn close(&self) -> bool {
        self.state.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// Closed, and every slot ever reserved has been popped and released.
    pub(crate) fn is_drained(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CLOSED
    }

    /// Reserved slots: items queued plus items being pushed right now.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.state.load(Ordering::SeqCst) >> 1
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T> Permit<'_, T> {
    /// Stores the item in the reserved slot, in `lane`. Cannot fail: the slot was reserved while
    /// open.
    pub(crate) fn push(self, item: T, lane: usize) -> Ticket {
        let mut items = lock(&self.queue.items);
        let ticket = items.insert(item, lane);
        self.queue.publish(&items);
        drop(items);
        std::mem::forget(self);
        ticket
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.queue.release();
    }
}

#[cfg(all(test, not(spillway_loom)))]
mod tests {
    use super::*;

    const NORMAL: usize = 1;

    #[test]
    fn admits_exactly_capacity_then_full() {
        let q = Queue::new(3);
        for i in 0..3 {
            q.try_reserve().expect("room").push(i, NORMAL);
        }
        assert_eq!(q.try_reserve().err(), Some(Refused::Full));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(0));
        // Popped but not released: the slot is still counted.
        assert_eq!(q.try_reserve().err(), Some(Refused::Full));
        q.release();
        q.try_reserve().expect("room after release").push(3, NORMAL);
    }

    #[test]
    fn close_refuses_new_but_keeps_reserved() {
        let q = Queue::new(2);
        let permit = q.try_reserve().expect("room");
        assert!(q.close());
        assert!(!q.close(), "second close reports it was already closed");
        assert_eq!(q.try_reserve().err(), Some(Refused::Closed));
        assert!(!q.is_drained(), "a reservation is outstanding");
        permit.push(7, NORMAL);
        assert_eq!(q.pop(), Some(7));
        q.release();
        assert!(q.is_drained());
    }

    #[test]
    fn dropped_permit_returns_its_slot() {
        let q: Queue<u8> = Queue::new(1);
        drop(q.try_reserve().expect("room"));
        assert_eq!(q.len(), 0);
        q.try_reserve().expect("slot came back").push(1, NORMAL);
    }

    #[test]
    fn a_removed_item_is_never_popped_and_its_ticket_goes_stale() {
        let q = Queue::new(3);
        let first = q.try_reserve().expect("room").push(1, NORMAL);
        let second = q.try_reserve().expect("room").push(2, NORMAL);
        assert_eq!(q.remove(first), Some(1));
        q.release();
        assert_eq!(q.len(), 1);
        assert_eq!(q.remove(first), None, "removed once");
        let third = q.try_reserve().expect("room").push(3, NORMAL); // reuses the first slot
        assert_eq!(
            q.remove(first),
            None,
            "an old ticket never takes a new item"
        );
        assert_eq!(q.pop(), Some(2));
        q.release();
        assert_eq!(q.remove(second), None, "popped already");
        assert_eq!(q.remove(third), Some(3));
        q.release();
        assert_eq!((q.pop(), q.len()), (None, 0));
    }

    #[test]
    fn stale_tickets_are_swept_so_the_order_stays_bounded() {
        let q = Queue::new(2);
        let _kept = q.try_reserve().expect("room").push(0, NORMAL);
        for i in 1..1_000 {
            let ticket = q.try_reserve().expect("room").push(i, NORMAL);
            assert_eq!(q.remove(ticket), Some(i));
            q.release();
            let order = lock(&q.items).lanes[NORMAL].len();
            assert!(order <= 2 * SWEEP_FLOOR + 1, "{order} tickets for 1 item");
        }
        assert_eq!(q.pop(), Some(0));
    }

    #[test]
    fn displacement_takes_the_newest_of_the_lowest_lower_lane_and_keeps_the_count() {
        let q = Queue::new(4);
        for (item, lane) in [(10, 0), (11, 0), (20, 1), (30, 2)] {
            q.try_reserve().expect("room").push(item, lane);
        }
        assert_eq!(q.try_reserve().err(), Some(Refused::Full));
        let (displaced, permit) = q.displace(3).expect("a lower item");
        permit.push(40, 3);
        assert_eq!(
            (displaced, q.len()),
            (11, 4),
            "the newest of lane 0; count unchanged"
        );
        let (displaced, permit) = q.displace(3).expect("a lower item");
        permit.push(41, 3);
        assert_eq!(displaced, 10);
        assert_eq!(q.displace(1).err(), Some(Refused::Full));
        let (displaced, permit) = q.displace(2).expect("a lower item");
        permit.push(31, 2);
        assert_eq!(displaced, 20);
        assert_eq!(q.stored_by_lane(), [0, 0, 2, 2]);
        let popped: Vec<_> = std::iter::from_fn(|| q.pop().inspect(|_| q.release())).collect();
        assert_eq!(
            popped,
            [40, 41, 30, 31],
            "highest lane first, FIFO within a lane"
        );
    }

    #[test]
    fn a_closed_queue_displaces_nothing() {
        let q = Queue::new(1);
        q.try_reserve().expect("room").push(1, 0);
        q.close();
        assert_eq!(q.displace(3).err(), Some(Refused::Closed));
        assert_eq!(q.stored_by_lane(), [1, 0, 0, 0]);
    }

    #[test]
    fn every_sixteenth_pop_serves_a_waiting_lower_lane_in_turn() {
        let q = Queue::new(64);
        for i in 0..40 {
            q.try_reserve().expect("room").push(i, 3);
        }
        for (item, lane) in [(100, 0), (101, 0), (200, 1)] {
            q.try_reserve().expect("room").push(item, lane);
        }
        let popped: Vec<_> = std::iter::from_fn(|| q.pop().inspect(|_| q.release())).collect();
        let shared: Vec<_> = popped
            .iter()
            .enumerate()
            .filter(|(_, v)| **v >= 100)
            .collect();
        // Pops 16 and 32 (indices 15 and 31) go to the lanes below the top, in turn; the rest
        // is strict priority.
        assert_eq!(shared[..2], [(15, &100), (31, &200)]);
        assert_eq!(popped[..15], (0..15).collect::<Vec<_>>()[..]);
        assert_eq!(popped.len(), 43);
    }

    #[test]
    fn closed_wins_over_full() {
        let q = Queue::new(1);
        q.try_reserve().expect("room").push(1, NORMAL);
        q.close();
        assert_eq!(q.try_reserve().err(), Some(Refused::Closed));
    }
}

#[cfg(all(test, spillway_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    const NORMAL: usize = 1;

    /// A consumer thread that pops one item (if any) and releases its slot.
    fn pop_one(q: &Arc<Queue<i32>>) -> thread::JoinHandle<Option<i32>> {
        let q = q.clone();
        thread::spawn(move || {
            let popped = q.pop();
            if popped.is_some() {
                q.release();
            }
            popped
        })
    }

    /// Two producers race for one slot while a consumer frees it: capacity is never exceeded, and
    /// a producer is refused only when the other one holds the slot at that moment.
    #[test]
    fn loom_capacity_is_never_exceeded() {
        loom::model(|| {
            let q = Arc::new(Queue::new(1));
            let producers: Vec<_> = (0..2)
                .map(|i| {
                    let q = q.clone();
                    thread::spawn(move || match q.try_reserve() {
                        Ok(p) => {
                            assert!(q.len() <= 1);
                            p.push(i, NORMAL);
                            true
                        }
                        Err(refused) => {
                            assert_eq!(refused, Refused::Full);
                            false
                        }
                    })
                })
                .collect();
            let admitted = producers
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|ok| *ok)
                .count();
            assert!(admitted >= 1, "the first reservation always finds room");
            let mut popped = 0;
            while q.pop().is_some() {
                q.release();
                popped += 1;
            }
            assert_eq!(popped, admitted);
            assert_eq!(q.len(), 0);
        });
    }

    /// No spurious rejection: with room for both, both producers are admitted whatever the
    /// interleaving.
    #[test]
    fn loom_no_rejection_while_room() {
        loom::model(|| {
            let q = Arc::new(Queue::new(2));
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let q = q.clone();
                    thread::spawn(move || q.try_reserve().map(|p| p.push(i, NORMAL)).is_ok())
                })
                .collect();
            for h in handles {
                assert!(h.join().unwrap(), "refused although the queue had room");
            }
        });
    }

    /// The owner removes an item while a consumer pops: exactly one of them gets it and releases
    /// its slot, whatever the interleaving.
    #[test]
    fn loom_remove_races_pop() {
        loom::model(|| {
            let q = Arc::new(Queue::new(1));
            let ticket = q.try_reserve().expect("room").push(5, NORMAL);
            let consumer = pop_one(&q);
            let removed = q.remove(ticket);
            if removed.is_some() {
                q.release();
            }
            let popped = consumer.join().unwrap();
            assert_eq!(
                usize::from(removed.is_some()) + usize::from(popped.is_some()),
                1,
                "taken twice or by nobody"
            );
            assert_eq!(q.len(), 0);
            assert_eq!(
                q.try_reserve().map(|p| p.push(6, NORMAL)).err(),
                None,
                "slot freed"
            );
        });
    }

    /// Removal races a close and the drain after it (a shutdown abandoning what is queued):
    /// each item ends once, and the queue is drained when both are done.
    #[test]
    fn loom_remove_races_close_and_drain() {
        loom::model(|| {
            let q = Arc::new(Queue::new(2));
            let first = q.try_reserve().expect("room").push(1, NORMAL);
            q.try_reserve().expect("room").push(2, NORMAL);
            let drainer = {
                let q = q.clone();
                thread::spawn(move || {
                    q.close();
                    let mut drained = Vec::new();
                    while let Some(item) = q.pop() {
                        q.release();
                        drained.push(item);
                    }
                    drained
                })
            };
            let removed = q.remove(first);
            if removed.is_some() {
                q.release();
            }
            let mut ended = drainer.join().unwrap();
            ended.extend(removed);
            ended.sort_unstable();
            assert_eq!(ended, [1, 2], "an item was lost or ended twice");
            assert!(q.is_drained());
        });
    }

    /// A higher-priority item displaces a lower one while a consumer pops: the lower item ends
    /// once, popped or displaced; the new one is stored only if it displaced something, and the
    /// count never moves for a displacement.
    #[test]
    fn loom_displacement_races_a_take() {
        loom::model(|| {
            let q = Arc::new(Queue::new(1));
            q.try_reserve().expect("room").push(1, 0);
            let consumer = pop_one(&q);
            let displaced = match q.displace(3) {
                Ok((low, permit)) => {
                    assert_eq!(q.len(), 1, "the slot is handed over, not freed");
                    permit.push(2, 3);
                    Some(low)
                }
                Err(refused) => {
                    assert_eq!(refused, Refused::Full, "nothing left to displace");
                    None
                }
            };
            let popped = consumer.join().unwrap();
            assert!(!(popped == Some(1) && displaced.is_some()), "taken twice");
            let mut ended: Vec<i32> = popped.into_iter().chain(displaced).collect();
            while let Some(item) = q.pop() {
                q.release();
                ended.push(item);
            }
            ended.sort_unstable();
            let expected: &[i32] = if displaced.is_some() { &[1, 2] } else { &[1] };
            assert_eq!(ended, expected, "an item was lost or ended twice");
            assert_eq!(q.len(), 0);
        });
    }

    /// Close races a producer and a draining consumer. Every admitted item is consumed exactly
    /// once, the consumer stops only when nothing can arrive any more, and a refusal after the
    /// close says `Closed`.
    #[test]
    fn loom_close_races_push_and_drain() {
        loom::model(|| {
            let q = Arc::new(Queue::new(2));
            let producer = {
                let q = q.clone();
                thread::spawn(move || {
                    let mut admitted = 0;
                    for i in 0..2 {
                        match q.try_reserve() {
                            Ok(p) => {
                                p.push(i, NORMAL);
                                admitted += 1;
                            }
                            Err(Refused::Closed) => break,
                            Err(Refused::Full) => unreachable!("capacity 2 with 2 items"),
                        }
                    }
                    admitted
                })
            };
            let consumer = {
                let q = q.clone();
                thread::spawn(move || {
                    let mut seen = 0;
                    loop {
                        if let Some(_item) = q.pop() {
                            q.release();
                            seen += 1;
                        } else if q.is_drained() {
                            return seen;
                        } else {
                            thread::yield_now();
                        }
                    }
                })
            };
            q.close();
            let admitted = producer.join().unwrap();
            let seen = consumer.join().unwrap();
            assert_eq!(admitted, seen, "an admitted item was lost or duplicated");
            assert!(q.is_drained());
        });
    }
}
