//! When a connection gives up on its writes: the rule both drivers follow (`net::conn::drive`
//! on sockets, the simulator's event engine on its own), with time as an argument.
//!
//! Bytes wait in a driver's write buffer until the socket takes them. A buffer that makes no
//! progress for the write timeout means the peer has stopped reading (or the path is gone) and
//! the connection ends (`WriteStalled`). Progress is a write the socket took, or the buffer
//! being empty when the session encodes into it: a first write after a quiet spell longer than
//! the timeout is not a stall. A session taken over by another connection gives this one
//! [`REPLACED_FLUSH`] to get its CLOSE out, written or not.

use std::time::Duration;

use super::Time;

/// How long a connection whose session was taken over elsewhere may take to flush its CLOSE
/// SESSION_REPLACED; well under the server's one second of waiting for the session.
pub const REPLACED_FLUSH: Duration = Duration::from_millis(250);

/// The progress of one connection's writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteProgress {
    timeout: Duration,
    last: Time,
    replaced_by: Option<Time>,
}

impl WriteProgress {
    /// A connection whose writes may wait `timeout` without progress, starting `now`.
    pub fn new(now: Time, timeout: Duration) -> WriteProgress {
        WriteProgress {
            timeout,
            last: now,
            replaced_by: None,
        }
    }

    /// The session encodes into the buffer: if it is empty, nothing is late.
    pub fn encoding(&mut self, now: Time, buffer_empty: bool) {
        if buffer_empty {
            self.last = now;
        }
    }

    /// The socket took bytes.
    pub fn wrote(&mut self, now: Time) {
        self.last = now;
    }

    /// When bytes still waiting count as stalled.
    pub fn stall_deadline(&self) -> Time {
        self.last + self.timeout
    }

    /// Whether the connection must end now because bytes have waited too long.
    pub fn stalled(&self, now: Time, waiting: bool) -> bool {
        waiting && now >= self.stall_deadline()
    }

    /// The session was taken over by another connection at `now` (the first time counts).
    pub fn replaced(&mut self, now: Time) {
        self.replaced_by.get_or_insert(now + REPLACED_FLUSH);
    }

    /// When a replaced connection ends, written out or not.
    pub fn replaced_deadline(&self) -> Option<Time> {
        self.replaced_by
    }

    /// The earliest of these deadlines that applies (the stall only while bytes wait).
    pub fn next_deadline(&self, waiting: bool) -> Option<Time> {
        match (waiting, self.replaced_by) {
            (false, r) => r,
            (true, None) => Some(self.stall_deadline()),
            (true, Some(r)) => Some(r.min(self.stall_deadline())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    #[test]
    fn bytes_that_wait_past_the_timeout_without_progress_are_a_stall() {
        let mut w = WriteProgress::new(t(0), Duration::from_secs(10));
        w.encoding(t(1_000), true);
        assert!(!w.stalled(t(10_999), true));
        assert!(w.stalled(t(11_000), true));
        assert!(!w.stalled(t(11_000), false), "an empty buffer never stalls");
        w.wrote(t(10_500));
        assert!(!w.stalled(t(20_499), true));
        assert_eq!(w.next_deadline(true), Some(t(20_500)));
        assert_eq!(w.next_deadline(false), None);
    }

    #[test]
    fn encoding_behind_waiting_bytes_is_not_progress() {
        let mut w = WriteProgress::new(t(0), Duration::from_secs(10));
        w.encoding(t(5_000), false);
        assert!(w.stalled(t(10_000), true));
    }

    #[test]
    fn a_replaced_connection_ends_a_flush_time_after_the_first_takeover() {
        let mut w = WriteProgress::new(t(0), Duration::from_secs(10));
        w.replaced(t(100));
        w.replaced(t(200));
        assert_eq!(w.replaced_deadline(), Some(t(350)));
        assert_eq!(w.next_deadline(true), Some(t(350)));
    }
}
