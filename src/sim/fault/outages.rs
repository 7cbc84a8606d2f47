//! Outages: a [`Timeline`] of intervals during which a direction drops everything (partitions,
//! a link down, flapping), scheduled or drawn from [`RandomOutages`].

use std::ops::Range;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp1};
use serde::{Deserialize, Serialize};

use super::{FaultError, Latency};
use crate::sim::synthetic::{Purpose, stream};

/// Outages arriving as a Poisson process (starts `rate_per_hour` per hour of simulated time),
/// each lasting a draw of `duration`. Overlapping outages merge into one.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RandomOutages {
    pub rate_per_hour: f64,
    pub duration: Latency,
}

impl RandomOutages {
    pub fn validate(&self) -> Result<(), FaultError> {
        if !(self.rate_per_hour.is_finite() && self.rate_per_hour >= 0.0) {
            return Err(FaultError::Outages("rate_per_hour must be finite and >= 0"));
        }
        self.duration.validate()
    }

    /// Draws the outages starting in `[0, horizon)` (the last may end after it).
    pub fn sample<R: Rng + ?Sized>(
        &self,
        horizon: Duration,
        rng: &mut R,
    ) -> Result<Timeline, FaultError> {
        self.validate()?;
        let mut intervals = Vec::new();
        if self.rate_per_hour > 0.0 {
            let mean_gap_s = 3600.0 / self.rate_per_hour;
            let mut t = 0.0;
            let end = horizon.as_secs_f64();
            loop {
                let e: f64 = Exp1.sample(rng);
                t += e * mean_gap_s;
                if t >= end {
                    break;
                }
                let start = Duration::from_secs_f64(t);
                intervals.push(start..start.saturating_add(self.duration.sample(rng)));
            }
        }
        Ok(Timeline::new(intervals))
    }

    /// [`RandomOutages::sample`] from the stream `stream(master, Purpose::Outages, key)`.
    pub fn sample_seeded(
        &self,
        horizon: Duration,
        master: u64,
        key: &[u64],
    ) -> Result<Timeline, FaultError> {
        self.sample(horizon, &mut stream(master, Purpose::Outages, key))
    }
}

/// Intervals `[start, end)` during which a direction drops everything: sorted, disjoint and not
/// touching (touching or overlapping intervals are merged, empty ones dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    intervals: Vec<Range<Duration>>,
}

impl Timeline {
    /// Never blocked.
    pub fn empty() -> Timeline {
        Timeline::default()
    }

    /// The union of `intervals`, in any order.
    pub fn new(intervals: impl IntoIterator<Item = Range<Duration>>) -> Timeline {
        let mut v: Vec<Range<Duration>> =
            intervals.into_iter().filter(|r| r.start < r.end).collect();
        v.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<Duration>> = Vec::with_capacity(v.len());
        for r in v {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        Timeline { intervals: merged }
    }

    /// A flapping link: down for `down` every `period`, from `first` until `until` (outages
    /// start before `until`).
    pub fn periodic(
        first: Duration,
        down: Duration,
        period: Duration,
        until: Duration,
    ) -> Timeline {
        let mut v = Vec::new();
        let mut t = first;
        while t < until && !period.is_zero() {
            v.push(t..t.saturating_add(down));
            t = t.saturating_add(period);
        }
        Timeline::new(v)
    }

    /// The union of two timelines.
    pub fn union(&self, other: &Timeline) -> Timeline {
        Timeline::new(self.intervals.iter().chain(&other.intervals).cloned())
    }

    /// The merged intervals, ascending.
    pub fn intervals(&self) -> &[Range<Duration>] {
        &self.intervals
    }

    /// The interval containing `t`, if any.
    fn containing(&self, t: Duration) -> Option<&Range<Duration>> {
        let i = self.intervals.partition_point(|r| r.end <= t);
        self.intervals.get(i).filter(|r| r.start <= t)
    }

    /// Whether the direction drops everything at `t`.
    pub fn blocked(&self, t: Duration) -> bool {
        self.containing(t).is_some()
    }

    /// The first instant at or after `t` that is not blocked.
    pub fn next_unblocked(&self, t: Duration) -> Duration {
        self.containing(t).map_or(t, |r| r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fault::testing::{MASTER, ms, rng, secs};

    #[test]
    fn timelines_merge_and_answer_queries() {
        let t = Timeline::new([
            ms(50)..ms(60),
            ms(10)..ms(20),
            ms(15)..ms(30),
            ms(30)..ms(40),
            ms(70)..ms(70),
        ]);
        assert_eq!(t.intervals(), &[ms(10)..ms(40), ms(50)..ms(60)]);
        assert!(!t.blocked(ms(9)) && t.blocked(ms(10)) && t.blocked(ms(39)) && !t.blocked(ms(40)));
        assert_eq!(t.next_unblocked(ms(12)), ms(40));
        assert_eq!(t.next_unblocked(ms(45)), ms(45));
        assert_eq!(t.next_unblocked(ms(50)), ms(60));
        let flap = Timeline::periodic(secs(1.0), ms(200), secs(1.0), secs(4.0));
        assert_eq!(flap.intervals().len(), 3);
        assert_eq!(flap.union(&t).intervals().len(), 5);
    }

    #[test]
    fn random_outages_arrive_at_their_rate_sorted_and_merged() {
        let o = RandomOutages {
            rate_per_hour: 10.0,
            duration: Latency::Exponential {
                min_ms: 500.0,
                mean_ms: 1000.0,
            },
        };
        let hours = 1000.0;
        let t = o.sample_seeded(secs(hours * 3600.0), MASTER, &[1]).unwrap();
        let n = t.intervals().len() as f64;
        let expected = 10.0 * hours;
        // Poisson: sd = √10000 = 100; merging removes a few dozen.
        assert!((n - expected).abs() < 500.0, "{n}");
        for w in t.intervals().windows(2) {
            assert!(w[0].start < w[0].end && w[0].end < w[1].start, "{w:?}");
        }
        // Queries agree with a linear scan.
        let mut r = rng(7);
        for _ in 0..2000 {
            let q = secs(r.random_range(0.0..hours * 3600.0));
            let hit = t.intervals().iter().find(|i| i.contains(&q));
            assert_eq!(t.blocked(q), hit.is_some());
            assert_eq!(t.next_unblocked(q), hit.map_or(q, |i| i.end));
        }
        // Probe every interval's edges.
        for i in t.intervals() {
            assert!(t.blocked(i.start) && !t.blocked(i.end));
        }
    }
}
