//! Time as the protocol core sees it: a point on a monotonic clock owned by the driver.
//!
//! The core never reads a clock. A driver picks an epoch (its start, or the simulation's start)
//! and passes `Time::ZERO + elapsed` into every `handle_*` call. Differences between two `Time`s
//! are exact and deterministic, which is what the simulator needs.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time, measured from an epoch chosen by the driver: nanoseconds since it, up to
/// about 584 years (later instants saturate there). One machine word, so that comparing and
/// moving deadlines, which a session does on every frame and timer, is one instruction.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

/// `d` in nanoseconds, saturating at about 584 years (without the 128-bit product of
/// `Duration::as_nanos`): how the protocol core and the simulator count time in one word.
pub const fn nanos(d: Duration) -> u64 {
    match d.as_secs().checked_mul(1_000_000_000) {
        Some(n) => n.saturating_add(d.subsec_nanos() as u64),
        None => u64::MAX,
    }
}

impl Time {
    /// The driver's epoch.
    pub const ZERO: Time = Time(0);

    /// A time `since` after the epoch.
    pub const fn from_epoch(since: Duration) -> Time {
        Time(nanos(since))
    }

    /// How long after the epoch this is.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// A time `ns` nanoseconds after the epoch.
    pub const fn from_nanos(ns: u64) -> Time {
        Time(ns)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Seconds since the epoch, for reports and traces.
    pub fn as_secs_f64(self) -> f64 {
        self.since_epoch().as_secs_f64()
    }
}

impl std::fmt::Debug for Time {
    /// As the [`Duration`] since the epoch: `Time(1.5s)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Time").field(&self.since_epoch()).finish()
    }
}

/// The earlier of two optional instants (or durations): either, if only one is set.
pub fn earlier<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(nanos(d));
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturates at zero: the core never needs negative durations.
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_past_584_years_saturate_and_print_as_durations() {
        let last = Time::from_epoch(Duration::MAX);
        assert_eq!(last.since_epoch(), Duration::from_nanos(u64::MAX));
        assert_eq!(last + Duration::from_secs(1), last);
        assert_eq!(Time::from_epoch(Duration::from_secs(u64::MAX / 4)), last);
        let t = Time::from_epoch(Duration::from_millis(1500));
        assert_eq!(format!("{t:?}"), "Time(1.5s)");
        assert_eq!(t.since_epoch(), Duration::from_millis(1500));
    }

    #[test]
    fn subtraction_saturates_at_zero() {
        let a = Time::from_epoch(Duration::from_secs(1));
        let b = Time::from_epoch(Duration::from_secs(2));
        assert_eq!(b - a, Duration::from_secs(1));
        assert_eq!(a - b, Duration::ZERO);
    }
}
