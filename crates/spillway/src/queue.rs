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
//! storage itself is a `Mutex<VecDeque>`, short critical sections only, and model-checked together
//! with the counter (`loom_*` tests below).

use std::collections::VecDeque;

use crossbeam_utils::CachePadded;

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
    items: CachePadded<Mutex<VecDeque<T>>>,
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
            items: CachePadded::new(Mutex::new(VecDeque::new())),
        }
    }

    /// Reserves one slot, or says why not. Never waits, never allocates.
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
        lock(&self.items).pop_front()
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

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// Closed, and every slot ever reserved has been popped and released.
    pub(crate) fn is_drained(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CLOSED
    }

    /// Reserved slots: items queued plus items being pushed right now.
    pub(crate) fn len(&self) -> usize {
        self.state.load(Ordering::SeqCst) >> 1
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T> Permit<'_, T> {
    /// Stores the item in the reserved slot. Cannot fail: the slot was reserved while open.
    pub(crate) fn push(self, item: T) {
        lock(&self.queue.items).push_back(item);
        std::mem::forget(self);
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

    #[test]
    fn admits_exactly_capacity_then_full() {
        let q = Queue::new(3);
        for i in 0..3 {
            q.try_reserve().expect("room").push(i);
        }
        assert_eq!(q.try_reserve().err(), Some(Refused::Full));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(0));
        // Popped but not released: the slot is still counted.
        assert_eq!(q.try_reserve().err(), Some(Refused::Full));
        q.release();
        q.try_reserve().expect("room after release").push(3);
    }

    #[test]
    fn close_refuses_new_but_keeps_reserved() {
        let q = Queue::new(2);
        let permit = q.try_reserve().expect("room");
        assert!(q.close());
        assert!(!q.close(), "second close reports it was already closed");
        assert_eq!(q.try_reserve().err(), Some(Refused::Closed));
        assert!(!q.is_drained(), "a reservation is outstanding");
        permit.push(7);
        assert_eq!(q.pop(), Some(7));
        q.release();
        assert!(q.is_drained());
    }

    #[test]
    fn dropped_permit_returns_its_slot() {
        let q: Queue<u8> = Queue::new(1);
        drop(q.try_reserve().expect("room"));
        assert_eq!(q.len(), 0);
        q.try_reserve().expect("slot came back").push(1);
    }

    #[test]
    fn closed_wins_over_full() {
        let q = Queue::new(1);
        q.try_reserve().expect("room").push(1);
        q.close();
        assert_eq!(q.try_reserve().err(), Some(Refused::Closed));
    }
}

#[cfg(all(test, spillway_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

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
                            p.push(i);
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
                    thread::spawn(move || q.try_reserve().map(|p| p.push(i)).is_ok())
                })
                .collect();
            for h in handles {
                assert!(h.join().unwrap(), "refused although the queue had room");
            }
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
                                p.push(i);
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
