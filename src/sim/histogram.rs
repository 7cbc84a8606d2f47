//! A log-bucketed histogram of whole microseconds: cheap to record, exact to merge.
//!
//! Values below 256 µs have a bucket each. Above, each octave `[2^m, 2^(m+1))` is cut into 128
//! buckets of equal width, so a bucket is narrower than 1/128 (0.78%) of any value in it: the
//! layout of an HdrHistogram with two significant digits. A quantile is reported as the highest
//! value of its bucket (never above the exact maximum, which is kept), so it is at most 0.78%
//! above the true one and never below it.
//!
//! The buckets are fixed, so merging adds counts: exact, whatever the grouping and order of the
//! merges, like the rest of [`super::metrics::RunSummary`]. Only buckets with a count are kept,
//! in order: a run's heartbeat round trips on a steady link take a handful of entries.
//!
//! Why not a crate: `hdrhistogram` keeps a dense counts array sized to the largest value (about
//! 11 KB for values up to 0.1 s, 26 KB up to an hour), per side of every run summary, and
//! `mcpsim merge` holds thousands of summaries at once; it has no serde form (its V2 encoding is
//! binary) and no `Eq`. `sketches-ddsketch` (already in the lock file, through `metrics-util`)
//! keeps a floating-point sum and collapses its lowest bins past a limit, so its merges depend on
//! their grouping.
//!
//! In JSON a histogram is its exact maximum and its non-empty buckets, each as the lowest value
//! it holds and its count: `{"max_us": 10412, "buckets": [[9984, 3], [10048, 57], [10368, 1]]}`.

use serde::{Deserialize, Serialize};

/// Buckets per octave, as a power of two: 2^7 = 128.
const SUB_BITS: u32 = 7;
/// Values below this have a bucket of their own.
const EXACT: u64 = 2 << SUB_BITS;

/// Counts of microsecond values in fixed log-spaced buckets. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Raw", into = "Raw")]
pub struct LogHistogram {
    /// `(bucket, count)`, ascending by bucket, every count above zero.
    buckets: Vec<(u32, u64)>,
    count: u64,
    max: u64,
}

/// The bucket of `us`.
fn bucket(us: u64) -> u32 {
    if us < EXACT {
        return us as u32;
    }
    let shift = (63 - us.leading_zeros()) - SUB_BITS;
    (shift << SUB_BITS) + (us >> shift) as u32
}

/// The lowest and highest values of bucket `b`.
fn bounds(b: u32) -> (u64, u64) {
    if u64::from(b) < EXACT {
        return (b.into(), b.into());
    }
    let shift = (b >> SUB_BITS) - 1;
    let low = u64::from(b - (shift << SUB_BITS)) << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl LogHistogram {
    /// Counts one value.
    pub fn record(&mut self, us: u64) {
        let b = bucket(us);
        // Most values land in the last bucket touched or near it; the list is short anyway.
        match self.buckets.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (b, 1)),
        }
        self.count += 1;
        self.max = self.max.max(us);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &LogHistogram) {
        if other.count == 0 {
            return;
        }
        let (a, b) = (&self.buckets, &other.buckets);
        let mut merged = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        loop {
            let next = match (a.get(i), b.get(j)) {
                (Some(&x), Some(&y)) if x.0 == y.0 => {
                    (i, j) = (i + 1, j + 1);
                    (x.0, x.1 + y.1)
                }
                (Some(&x), y) if y.is_none_or(|y| x.0 < y.0) => {
                    i += 1;
                    x
                }
                (_, Some(&y)) => {
                    j += 1;
                    y
                }
                _ => break,
            };
            merged.push(next);
        }
        self.buckets = merged;
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded, exactly; `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The nearest-rank `q`-quantile (`0 < q ≤ 1`): the highest value of the bucket holding the
    /// value of rank ⌈q·n⌉, capped at the maximum. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for &(b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(bounds(b).1.min(self.max));
            }
        }
        Some(self.max)
    }
}

/// The serialized form: see the module docs.
#[derive(Serialize, Deserialize)]
struct Raw {
    max_us: u64,
    /// `[lowest value of the bucket, count]`, ascending.
    buckets: Vec<(u64, u64)>,
}

impl From<LogHistogram> for Raw {
    fn from(h: LogHistogram) -> Raw {
        Raw {
            max_us: h.max,
            buckets: h.buckets.iter().map(|&(b, n)| (bounds(b).0, n)).collect(),
        }
    }
}

impl TryFrom<Raw> for LogHistogram {
    type Error = String;

    fn try_from(raw: Raw) -> Result<LogHistogram, String> {
        let mut h = LogHistogram {
            max: raw.max_us,
            ..LogHistogram::default()
        };
        for (low, n) in raw.buckets {
            let b = bucket(low);
            if bounds(b).0 != low {
                return Err(format!("{low} µs does not start a histogram bucket"));
            }
            if n == 0 || h.buckets.last().is_some_and(|(last, _)| *last >= b) {
                return Err("histogram buckets must be ascending, each with a count".into());
            }
            if low > raw.max_us {
                return Err(format!(
                    "a histogram bucket at {low} µs is above its maximum"
                ));
            }
            h.buckets.push((b, n));
            h.count += n;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[u64]) -> LogHistogram {
        let mut h = LogHistogram::default();
        values.iter().for_each(|v| h.record(*v));
        h
    }

    #[test]
    fn every_value_falls_in_a_bucket_less_than_one_percent_wide() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            for x in [v, v + 1, v * 3 / 2, 2 * v - 1] {
                let (low, high) = bounds(bucket(x));
                assert!(low <= x && x <= high, "{x} in [{low}, {high}]");
                assert!(
                    (high - low) as f64 <= x as f64 / 128.0,
                    "{x}: [{low}, {high}]"
                );
            }
            v *= 2;
        }
        assert_eq!(bounds(bucket(u64::MAX)).1, u64::MAX);
    }

    #[test]
    fn buckets_follow_each_other_without_a_hole() {
        for b in 0..(64 << SUB_BITS) - 1 {
            let (_, high) = bounds(b);
            if high == u64::MAX {
                break;
            }
            assert_eq!(bucket(high + 1), b + 1, "after bucket {b}");
            assert_eq!(bounds(b + 1).0, high + 1);
        }
    }

    #[test]
    fn small_values_are_exact() {
        let h = of(&[3, 1, 2, 255]);
        assert_eq!(h.quantile(0.5), Some(2));
        assert_eq!(h.quantile(0.75), Some(3));
        assert_eq!(h.max(), Some(255));
        assert_eq!(LogHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn quantiles_are_nearest_rank_at_most_one_percent_high_and_never_above_the_maximum() {
        // 1 ms … 1000 ms: the p50 is 500 ms, the p99 990 ms, the p99.9 999 ms.
        let h = of(&(1..=1000).map(|ms| ms * 1000).collect::<Vec<_>>());
        for (q, exact) in [(0.5, 500_000), (0.99, 990_000), (0.999, 999_000)] {
            let got = h.quantile(q).unwrap();
            assert!(
                got >= exact && (got - exact) as f64 <= exact as f64 / 128.0,
                "{q}: {got}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(1_000_000));
        assert_eq!(h.max(), Some(1_000_000));
        // A lone value reports itself, not the top of its bucket.
        assert_eq!(of(&[10_001]).quantile(0.5), Some(10_001));
    }

    #[test]
    fn merging_in_any_grouping_and_order_gives_the_same_histogram() {
        let parts: Vec<LogHistogram> = (0..6u64)
            .map(|i| {
                of(&(0..50)
                    .map(|j| (i * 7919 + j * 104_729) % 3_000_000)
                    .collect::<Vec<_>>())
            })
            .collect();
        let whole = of(&(0..6u64)
            .flat_map(|i| (0..50).map(move |j| (i * 7919 + j * 104_729) % 3_000_000))
            .collect::<Vec<_>>());
        let mut left = LogHistogram::default();
        parts.iter().for_each(|p| left.merge(p));
        let mut right = LogHistogram::default();
        parts.iter().rev().for_each(|p| right.merge(p));
        let (mut a, mut b) = (parts[0].clone(), parts[3].clone());
        parts[1..3].iter().for_each(|p| a.merge(p));
        parts[4..].iter().for_each(|p| b.merge(p));
        a.merge(&b);
        assert_eq!(left, whole);
        assert_eq!(right, whole);
        assert_eq!(a, whole);
        assert_eq!(whole.count(), 300);
    }

    #[test]
    fn a_histogram_survives_json_and_a_bad_bucket_is_refused() {
        let h = of(&[10, 9_990, 10_000, 10_000, 10_412]);
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(
            text,
            r#"{"max_us":10412,"buckets":[[10,1],[9984,3],[10368,1]]}"#
        );
        let back: LogHistogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
        let empty: LogHistogram = serde_json::from_str(r#"{"max_us":0,"buckets":[]}"#).unwrap();
        assert_eq!(empty, LogHistogram::default());
        assert!(
            serde_json::from_str::<LogHistogram>(r#"{"max_us":9999,"buckets":[[9985,1]]}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<LogHistogram>(r#"{"max_us":99,"buckets":[[20,1],[10,1]]}"#)
                .is_err()
        );
    }
}
