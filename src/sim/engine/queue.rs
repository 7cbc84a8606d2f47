//! The engine's event queue: one binary heap of events in simulated time.
//!
//! # Same-instant order
//!
//! Events pop in order of time; events of one instant pop in the order they were pushed. Every
//! push takes the next number of a sequence that only grows, and the heap orders by
//! `(time, sequence)`, so this is the engine's whole definition of what happens first within
//! an instant: whatever was scheduled first. It depends on nothing but the order of the
//! engine's own pushes, which is deterministic.
//!
//! # Timers that move
//!
//! A deadline that moves is not searched for and removed from the heap. A [`Timer`] keeps the
//! deadline and the entry filed for it: a deadline moved later keeps its entry, which pops
//! early, finds the deadline not yet due and is filed again at it ([`Timer::fire`]); a deadline
//! moved earlier is filed anew under a new generation number, and the entry of an older
//! generation, when it pops, is stale and skipped. At most one live entry per timer is in the
//! heap, plus stale ones that drain as their time comes.
//!
//! # Memory
//!
//! The heap's buffer is kept across pops and grows only to the largest number of entries
//! pending at once: pushing and popping allocate nothing once it has.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// One pending event. Its key is the time in nanoseconds in the high 64 bits and the push
/// sequence number in the low 64: one comparison orders by time, then by push.
#[derive(Debug)]
struct Entry<E> {
    key: u128,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: the heap is a max-heap, and the earliest key must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

fn key(at: Duration, seq: u64) -> u128 {
    let ns = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
    (u128::from(ns) << 64) | u128::from(seq)
}

fn time(key: u128) -> Duration {
    Duration::from_nanos((key >> 64) as u64)
}

/// Events by simulated time; see the module docs for the order within an instant.
#[derive(Debug)]
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue::with_capacity(0)
    }
}

impl<E> Queue<E> {
    /// An empty queue with room for `n` entries before it grows.
    pub fn with_capacity(n: usize) -> Queue<E> {
        Queue {
            heap: BinaryHeap::with_capacity(n),
            seq: 0,
        }
    }

    /// Schedules `event` at `at` (to the nanosecond, at most about 584 years), after every
    /// event already scheduled for that instant.
    pub fn push(&mut self, at: Duration, event: E) {
        self.seq += 1;
        let key = key(at, self.seq);
        self.heap.push(Entry { key, event });
    }

    /// The earliest event, first scheduled among those of its instant.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        self.heap.pop().map(|e| (time(e.key), e.event))
    }

    /// When the earliest event is due.
    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| time(e.key))
    }

    /// Entries pending, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A deadline that may move, filed in a [`Queue`] as at most one live entry (see the module
/// docs). The owner puts the generation [`Timer::arm`] returns into the event it pushes, and
/// hands it back to [`Timer::fire`] when the event pops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timer {
    deadline: Option<Duration>,
    /// When the live entry is filed for, if one is.
    filed: Option<Duration>,
    generation: u32,
}

impl Timer {
    /// The deadline is now `deadline` (`None`: none). Returns `Some((at, generation))` when an
    /// entry must be pushed: there is none yet, or the deadline moved before it.
    #[must_use]
    pub fn arm(&mut self, deadline: Option<Duration>) -> Option<(Duration, u32)> {
        self.deadline = deadline;
        let d = deadline?;
        if self.filed.is_some_and(|f| f <= d) {
            return None;
        }
        self.generation = self.generation.wrapping_add(1);
        self.filed = Some(d);
        Some((d, self.generation))
    }

    /// The entry of `generation` filed for this timer popped at `now`. Returns whether the
    /// deadline is due; if the entry is current but early (the deadline moved later), also the
    /// entry to push again, at the deadline.
    #[must_use]
    pub fn fire(&mut self, generation: u32, now: Duration) -> (bool, Option<(Duration, u32)>) {
        if generation != self.generation || self.filed.is_none() {
            return (false, None); // stale: a later arm filed an earlier entry
        }
        self.filed = None;
        match self.deadline {
            Some(d) if d <= now => (true, None),
            later => (false, self.arm(later)),
        }
    }

    /// The deadline, as last armed.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    #[test]
    fn events_of_one_instant_pop_in_the_order_they_were_pushed() {
        let mut q = Queue::default();
        q.push(ms(5), "b1");
        q.push(ms(1), "a");
        q.push(ms(5), "b2");
        q.push(ms(3), "c");
        q.push(ms(5), "b3");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            [
                (ms(1), "a"),
                (ms(3), "c"),
                (ms(5), "b1"),
                (ms(5), "b2"),
                (ms(5), "b3")
            ]
        );
    }

    #[test]
    fn a_deadline_moved_later_keeps_its_entry_which_files_itself_again_when_it_pops_early() {
        let mut t = Timer::default();
        let (at, g) = t.arm(Some(ms(10))).unwrap();
        assert_eq!(at, ms(10));
        assert_eq!(t.arm(Some(ms(20))), None, "no second entry");
        let (due, again) = t.fire(g, ms(10));
        assert!(!due);
        let (at, g) = again.unwrap();
        assert_eq!(at, ms(20));
        assert_eq!(t.fire(g, ms(20)), (true, None));
    }

    #[test]
    fn a_deadline_moved_earlier_is_filed_anew_and_the_old_entry_is_skipped_as_stale() {
        let mut t = Timer::default();
        let (_, old) = t.arm(Some(ms(10))).unwrap();
        let (at, new) = t.arm(Some(ms(4))).unwrap();
        assert_eq!(at, ms(4));
        assert_eq!(t.fire(new, ms(4)), (true, None));
        assert_eq!(t.fire(old, ms(10)), (false, None), "stale");
    }

    #[test]
    fn a_cancelled_deadline_lets_its_entry_pop_without_firing() {
        let mut t = Timer::default();
        let (_, g) = t.arm(Some(ms(10))).unwrap();
        assert_eq!(t.arm(None), None);
        assert_eq!(t.fire(g, ms(10)), (false, None));
        // Armed again, it files a fresh entry.
        assert!(t.arm(Some(ms(30))).is_some());
    }

    #[test]
    fn pushing_and_popping_reuses_the_heap_once_it_has_grown() {
        let mut q = Queue::with_capacity(4);
        let cap = q.heap.capacity();
        for round in 0..100u64 {
            for i in 0..4 {
                q.push(ms(round * 10 + i), i);
            }
            while q.pop().is_some() {}
        }
        assert_eq!(q.heap.capacity(), cap);
    }
}
