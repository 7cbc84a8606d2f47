//! Time as the protocol core sees it: a point on a monotonic clock owned by the driver.
//!
//! The core never reads a clock. A driver picks an epoch (its start, or the simulation's start)
//! and passes `Time::ZERO + elapsed` into every `handle_*` call. Differences between two `Time`s
//! are exact and deterministic, which is what the simulator needs.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time, measured from an epoch chosen by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The driver's epoch.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// A time `since` after the epoch.
    pub const fn from_epoch(since: Duration) -> Time {
        Time(since)
    }

    /// How long after the epoch this is.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Seconds since the epoch, for reports and traces.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
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
        Time(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d);
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
    fn subtraction_saturates_at_zero() {
        let a = Time::from_epoch(Duration::from_secs(1));
        let b = Time::from_epoch(Duration::from_secs(2));
        assert_eq!(b - a, Duration::from_secs(1));
        assert_eq!(a - b, Duration::ZERO);
    }
}
