//! The engine's event queue: a timing wheel of millisecond slots over the next few seconds,
//! and a binary heap for the rest.
//!
//! # Same-instant order
//!
//! Events pop in order of time; events of one instant pop in the order they were pushed. Every
//! push takes the next number of a sequence that only grows, and every pop takes the entry with
//! the least `(time, sequence)`, so this is the engine's whole definition of what happens first
//! within an instant: whatever was scheduled first. It depends on nothing but the order of the
//! engine's own pushes, which is deterministic.
//!
//! # Wheel and heap
//!
//! Almost everything the engine files falls on a whole millisecond (`wake_at`) within seconds:
//! such an event goes into its millisecond's slot of the wheel, behind the events pushed
//! before it for that millisecond, so a slot is in push order by construction and costs no
//! comparison. An event further ahead than the wheel reaches, off the millisecond grid, or
//! behind the wheel's cursor goes into the heap, keyed by `(time, sequence)`. A pop compares the
//! first entry of the first non-empty slot with the top of the heap by that same key, so the
//! order is exactly the heap-only order whichever structure holds an event. An event popped
//! from the heap takes the wheel's cursor along, so the wheel keeps covering the seconds ahead
//! of now after a stretch with nothing in it (before, everything went to the heap from then on).
//!
//! # Timers that move
//!
//! A deadline that moves is not searched for and removed from the queue. A [`Timer`] keeps the
//! deadline and the entry filed for it: a deadline moved later keeps its entry, which pops
//! early, finds the deadline not yet due and is filed again at it ([`Timer::fire`]); a deadline
//! moved earlier is filed anew under a new generation number, and the entry of an older
//! generation, when it pops, is stale and skipped. At most one live entry per timer is in the
//! queue, plus stale ones that drain as their time comes.
//!
//! # Memory
//!
//! The slots' and the heap's buffers are kept across pops and grow only to the largest number
//! of entries pending at once: pushing and popping allocate nothing once they have.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::proto::time::nanos;

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

fn key(ns: u64, seq: u64) -> u128 {
    (u128::from(ns) << 64) | u128::from(seq)
}

/// The millisecond of a key's time, rounded down.
fn key_ms(key: u128) -> u64 {
    ((key >> 64) as u64) / MS
}

fn time(key: u128) -> Duration {
    Duration::from_nanos((key >> 64) as u64)
}

const MS: u64 = 1_000_000;

/// Milliseconds the wheel covers from its cursor: a heartbeat interval, a retransmission
/// timeout or a handshake deadline ahead, in one slot each.
const SLOTS: u64 = 4096;

/// No node: the end of a slot's list, or of the free list.
const NIL: u32 = u32::MAX;

/// An event in a slot's list, or a free node.
#[derive(Debug)]
struct Node<E> {
    seq: u64,
    event: Option<E>,
    next: u32,
}

/// Events by simulated time; see the module docs for the order within an instant.
#[derive(Debug)]
pub struct Queue<E> {
    /// Slot `ms % SLOTS` lists the events of millisecond `ms` in `cursor .. cursor + SLOTS`
    /// in push order: `(first, last)` node, or `NIL`.
    slots: Vec<(u32, u32)>,
    /// Every slot's events, in one arena, so that memory follows the events pending at once
    /// rather than the most any one slot ever held; freed nodes are reused.
    nodes: Vec<Node<E>>,
    free: u32,
    /// The millisecond the wheel starts at: no slot holds an earlier one.
    cursor: u64,
    /// Entries in the slots.
    in_slots: usize,
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue::with_capacity(0)
    }
}

impl<E> Queue<E> {
    /// An empty queue with room for about `n` entries before it grows.
    pub fn with_capacity(n: usize) -> Queue<E> {
        Queue {
            slots: vec![(NIL, NIL); SLOTS as usize],
            nodes: Vec::with_capacity(n),
            free: NIL,
            cursor: 0,
            in_slots: 0,
            heap: BinaryHeap::with_capacity(n / 8),
            seq: 0,
        }
    }

    /// Schedules `event` at `at` (to the nanosecond, at most about 584 years), after every
    /// event already scheduled for that instant.
    pub fn push(&mut self, at: Duration, event: E) {
        self.push_ns(nanos(at), event);
    }

    /// [`Queue::push`] at `ns` nanoseconds.
    pub fn push_ns(&mut self, ns: u64, event: E) {
        self.seq += 1;
        let ms = ns / MS;
        if ns.is_multiple_of(MS) && ms >= self.cursor && ms < self.cursor + SLOTS {
            let node = Node {
                seq: self.seq,
                event: Some(event),
                next: NIL,
            };
            let i = match self.free {
                NIL => {
                    self.nodes.push(node);
                    (self.nodes.len() - 1) as u32
                }
                i => {
                    self.free = self.nodes[i as usize].next;
                    self.nodes[i as usize] = node;
                    i
                }
            };
            let slot = &mut self.slots[(ms % SLOTS) as usize];
            match slot.1 {
                NIL => slot.0 = i,
                last => self.nodes[last as usize].next = i,
            }
            slot.1 = i;
            self.in_slots += 1;
        } else {
            let key = key(ns, self.seq);
            self.heap.push(Entry { key, event });
        }
    }

    /// The key of the first entry of the wheel, the cursor moved to its millisecond.
    fn wheel_front(&mut self) -> Option<u128> {
        if self.in_slots == 0 {
            return None;
        }
        loop {
            let first = self.slots[(self.cursor % SLOTS) as usize].0;
            if first != NIL {
                let seq = self.nodes[first as usize].seq;
                return Some((u128::from(self.cursor * MS) << 64) | u128::from(seq));
            }
            self.cursor += 1;
        }
    }

    /// The earliest event, first scheduled among those of its instant.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        self.pop_until(u64::MAX)
            .map(|(ns, event)| (Duration::from_nanos(ns), event))
    }

    /// The earliest event if it is due at or before `until` (nanoseconds), with its time in
    /// nanoseconds: a [`Queue::peek_time`] and a [`Queue::pop`] in one look at the fronts.
    pub fn pop_until(&mut self, until: u64) -> Option<(u64, E)> {
        let wheel = self.wheel_front();
        let heap = self.heap.peek().map(|e| e.key);
        let (from_wheel, first) = match (wheel, heap) {
            (None, None) => return None,
            (Some(w), Some(h)) => (w < h, w.min(h)),
            (Some(w), None) => (true, w),
            (None, Some(h)) => (false, h),
        };
        if (first >> 64) as u64 > until {
            return None;
        }
        if from_wheel {
            let slot = &mut self.slots[(self.cursor % SLOTS) as usize];
            let i = slot.0;
            let node = &mut self.nodes[i as usize];
            let event = node.event.take().expect("a listed node holds its event");
            slot.0 = node.next;
            if slot.0 == NIL {
                slot.1 = NIL;
            }
            node.next = self.free;
            self.free = i;
            self.in_slots -= 1;
            Some((self.cursor * MS, event))
        } else {
            let e = self.heap.pop().expect("the top was just seen");
            // Nothing in the wheel is earlier, so its cursor may follow: the wheel goes on
            // covering the seconds ahead of now after a stretch with nothing in it.
            self.cursor = self.cursor.max(key_ms(e.key));
            Some(((e.key >> 64) as u64, e.event))
        }
    }

    /// The events filed for the wheel's current millisecond that have not popped yet, in the
    /// order they will pop: a look ahead for prefetching, which may miss an earlier event of
    /// the heap.
    pub fn upcoming(&self) -> impl Iterator<Item = &E> {
        let mut i = self.slots[(self.cursor % SLOTS) as usize].0;
        std::iter::from_fn(move || {
            let node = self.nodes.get(i as usize)?;
            i = node.next;
            node.event.as_ref()
        })
    }

    /// When the earliest event is due.
    pub fn peek_time(&mut self) -> Option<Duration> {
        let wheel = self.wheel_front();
        let heap = self.heap.peek().map(|e| e.key);
        match (wheel, heap) {
            (Some(w), Some(h)) => Some(time(w.min(h))),
            (w, h) => w.or(h).map(time),
        }
    }

    /// Entries pending, stale ones included.
    pub fn len(&self) -> usize {
        self.in_slots + self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A deadline that may move, filed in a [`Queue`] as at most one live entry (see the module
/// docs). The owner puts the generation [`Timer::arm`] returns into the event it pushes, and
/// hands it back to [`Timer::fire`] when the event pops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timer {
    /// In nanoseconds, as the queue keys its entries.
    deadline: Option<u64>,
    /// When the live entry is filed for, if one is.
    filed: Option<u64>,
    generation: u32,
}

impl Timer {
    /// The deadline is now `deadline` (`None`: none). Returns `Some((at, generation))` when an
    /// entry must be pushed: there is none yet, or the deadline moved before it.
    #[must_use]
    pub fn arm(&mut self, deadline: Option<Duration>) -> Option<(Duration, u32)> {
        self.arm_ns(deadline.map(nanos))
            .map(|(at, generation)| (Duration::from_nanos(at), generation))
    }

    /// [`Timer::arm`] in nanoseconds, for [`Queue::push_ns`].
    #[must_use]
    pub fn arm_ns(&mut self, deadline: Option<u64>) -> Option<(u64, u32)> {
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
            Some(d) if d <= nanos(now) => (true, None),
            later => (
                false,
                self.arm_ns(later)
                    .map(|(at, generation)| (Duration::from_nanos(at), generation)),
            ),
        }
    }

    /// The deadline, as last armed.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline.map(Duration::from_nanos)
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
    fn upcoming_lists_what_is_left_of_the_current_millisecond_in_the_order_it_pops() {
        let mut q = Queue::default();
        q.push(ms(6), "later");
        q.push(ms(5), "b1");
        q.push(ms(5), "b2");
        q.push(ms(5), "b3");
        assert_eq!(q.pop(), Some((ms(5), "b1")));
        let ahead: Vec<_> = q.upcoming().copied().collect();
        assert_eq!(ahead, ["b2", "b3"]);
        let popped: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(
            popped[..2],
            ahead[..],
            "the look ahead is the order of the pops"
        );
        assert_eq!(q.upcoming().count(), 0, "nothing is left");
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
    fn the_wheel_holds_as_many_nodes_as_events_were_ever_pending_at_once() {
        let mut q = Queue::with_capacity(4);
        // A burst of 1,000 in one millisecond, then two a millisecond over two turns of the
        // wheel: the arena keeps the burst's nodes and grows no more.
        for i in 0..1000 {
            q.push(ms(3), i);
        }
        while q.pop().is_some() {}
        let (nodes, cap) = (q.nodes.len(), q.nodes.capacity());
        for m in 4..4 + 2 * SLOTS {
            q.push(ms(m), m);
            q.push(ms(m + 1), m);
            q.pop();
            q.pop();
        }
        while q.pop().is_some() {}
        assert_eq!((q.nodes.len(), q.nodes.capacity()), (nodes, cap));
        assert_eq!(nodes, 1000);
        assert_eq!(q.heap.capacity(), 0);
    }

    #[test]
    fn after_a_stretch_beyond_the_wheels_reach_near_events_go_to_the_wheel_again() {
        let mut q = Queue::default();
        let far = Duration::from_millis(3 * SLOTS);
        q.push(far, "far");
        assert_eq!(q.heap.len(), 1);
        assert_eq!(q.pop(), Some((far, "far")));
        q.push(far + ms(5), "near");
        q.push(far + ms(1), "nearer");
        assert_eq!((q.in_slots, q.heap.len()), (2, 0));
        assert_eq!(q.pop(), Some((far + ms(1), "nearer")));
        assert_eq!(q.pop(), Some((far + ms(5), "near")));
    }

    #[test]
    fn the_next_event_is_found_across_the_wheels_wrap() {
        let mut q = Queue::default();
        // The cursor near the end of the wheel's slots, then events on both sides of the wrap.
        let base = Duration::from_millis(SLOTS - 3);
        q.push(base, 0);
        assert_eq!(q.pop(), Some((base, 0)));
        for (i, ahead) in [70, 2, 200, 1, 4000].into_iter().enumerate() {
            q.push(base + ms(ahead), i);
        }
        let order: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|(t, i)| (t - base, i))
            .collect();
        assert_eq!(
            order,
            [
                (ms(1), 3),
                (ms(2), 1),
                (ms(70), 0),
                (ms(200), 2),
                (ms(4000), 4)
            ]
        );
        assert_eq!(q.heap.capacity(), 0, "all of them in the wheel");
    }

    #[test]
    fn wheel_and_heap_pop_in_exactly_the_order_of_time_then_push() {
        // Whole milliseconds near and far (beyond the wheel), instants off the millisecond,
        // times behind the cursor, many ties: against a plain sort by (time, push).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut q = Queue::default();
        let mut pending: Vec<(Duration, u64)> = Vec::new();
        let mut now = Duration::ZERO;
        let mut n = 0u64;
        for _ in 0..20_000 {
            if rng.random_bool(0.55) || pending.is_empty() {
                let ahead = match rng.random_range(0..4) {
                    0 => Duration::from_millis(rng.random_range(0..3)),
                    1 => Duration::from_millis(rng.random_range(0..3 * SLOTS)),
                    2 => Duration::from_nanos(rng.random_range(0..5_000_000)),
                    _ => Duration::ZERO,
                };
                n += 1;
                q.push(now + ahead, n);
                pending.push((now + ahead, n));
            } else {
                pending.sort();
                let want = pending.remove(0);
                assert_eq!(q.peek_time(), Some(want.0));
                // Bounded just before the next event, the queue keeps it; at it, it gives it.
                if let Some(before) = nanos(want.0).checked_sub(1) {
                    assert_eq!(q.pop_until(before), None);
                }
                let got = q.pop_until(nanos(want.0));
                assert_eq!(got.map(|(t, i)| (Duration::from_nanos(t), i)), Some(want));
                now = want.0;
            }
            assert_eq!(q.len(), pending.len());
        }
    }
}
