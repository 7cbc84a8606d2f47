//! Detectors side by side: for each detector, the lowest detection p99 it reaches at a given
//! false-suspicion rate, read off its frontier over the grid, on common seeds.
//!
//! # The figure
//!
//! Every pairing of a detector gives a point: the worse side's false-suspicion rate λ_M (per
//! connection-hour) and the worse side's detection p99 (infinite when a failure went undetected).
//! The detector's frontier is the points no other of its points beats on both. At a target rate
//! R the figure is the frontier's p99 at R: between the frontier point of highest rate ≤ R and
//! the next (faster, noisier) one, linearly interpolated in rate, so that a grid whose points
//! straddle R is not judged by whichever point happens to sit below it. No point at or below R:
//! the detector does not reach R on this grid. Only the points at or below R count when none
//! lies above it.
//!
//! # Intervals
//!
//! The pairings share their seeds, and a seed's failures and loss bursts are the same for every
//! pairing, so the figures of one seed are not independent across pairings. The interval
//! resamples whole seeds (a seed bootstrap, 400 resamples drawn from a ChaCha stream keyed by the
//! seeds): each resample merges the chosen seeds' runs for every pairing, rebuilds every
//! detector's frontier and reads it at R. The interval is the 2.5th and 97.5th percentiles of the
//! resamples that reach R; `reached` says in what share of resamples R was reached at all.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::sim::metrics::{Metrics, RunSummary, SideMetrics};

/// Resamples of the seed bootstrap.
pub const RESAMPLES: usize = 400;

/// One pairing's point: false-suspicion rate and detection p99 (seconds; infinite when a
/// failure was missed). `None` when the runs had no exposure or no failure to measure.
pub fn point(m: &Metrics) -> Option<(f64, f64)> {
    let rate = |s: &SideMetrics| s.mistake_rate_per_hour;
    let p99 = |s: &SideMetrics| {
        if s.missed > 0 {
            Some(f64::INFINITY)
        } else {
            s.detection.p99
        }
    };
    let r = super::worse(rate(&m.client), rate(&m.server))?;
    let d = super::worse(p99(&m.client), p99(&m.server))?;
    Some((r, d))
}

/// The frontier's p99 at `target` (module docs), with the frontier points it was read from
/// (indices into `points`): one when read at a point, two when interpolated between them.
pub fn p99_at(points: &[Option<(f64, f64)>], target: f64) -> Option<(f64, Vec<usize>)> {
    let mut pts: Vec<(usize, f64, f64)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|(r, d)| (i, r, d)))
        .collect();
    // By rate, then detection: each point's frontier test needs only those before it.
    pts.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
    let mut frontier: Vec<(usize, f64, f64)> = Vec::new();
    for p in pts {
        if frontier.last().is_none_or(|f| p.2 < f.2) {
            frontier.push(p);
        }
    }
    let below = frontier.iter().rposition(|f| f.1 <= target)?;
    let lo = frontier[below];
    match frontier.get(below + 1) {
        Some(hi) if lo.2.is_finite() && hi.2.is_finite() => {
            let t = (target - lo.1) / (hi.1 - lo.1);
            Some((lo.2 + t * (hi.2 - lo.2), vec![lo.0, hi.0]))
        }
        _ => Some((lo.2, vec![lo.0])),
    }
}

/// One detector's figure in one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct DetectorFigure {
    pub detector: String,
    /// Detection p99 at the target rate, seconds; `None` when no pairing reaches the rate.
    pub p99_at_rate_s: Option<f64>,
    /// The pairings it was read from (one, or two it was interpolated between).
    pub from: Vec<String>,
    /// 95% seed-bootstrap interval (module docs).
    pub lower_s: Option<f64>,
    pub upper_s: Option<f64>,
    /// Share of bootstrap resamples in which the detector reached the rate.
    pub reached: f64,
    /// Whether any of its runs had a failure to detect (without one there is no detection
    /// time, and nothing to compare).
    pub failures: bool,
}

/// The comparison of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub target_rate_per_hour: f64,
    pub seeds: Vec<u64>,
    pub detectors: Vec<DetectorFigure>,
}

/// Compares the detectors of one scenario's grid. `pairings[i]` names pairing `i` and its
/// detector; `runs[i][s]` is pairing `i`'s summary for seed `seeds[s]` (every pairing ran every
/// seed).
pub fn compare(
    scenario: &str,
    pairings: &[(String, String)],
    seeds: &[u64],
    runs: &[Vec<RunSummary>],
    target: f64,
    confidence: f64,
) -> Comparison {
    let mut detectors: Vec<String> = Vec::new();
    for (_, d) in pairings {
        if !detectors.contains(d) {
            detectors.push(d.clone());
        }
    }
    let of = |d: &str| -> Vec<usize> {
        (0..pairings.len())
            .filter(|&i| pairings[i].1 == d)
            .collect()
    };
    let merged_points = |pick: &[usize]| -> Vec<Option<(f64, f64)>> {
        runs.iter()
            .map(|by_seed| {
                let mut s = RunSummary::default();
                for &k in pick {
                    s.merge(&by_seed[k]);
                }
                point(&s.metrics(confidence))
            })
            .collect()
    };
    let all: Vec<usize> = (0..seeds.len()).collect();
    let full = merged_points(&all);
    let had_failures: Vec<bool> = runs
        .iter()
        .map(|by_seed| {
            by_seed
                .iter()
                .any(|s| s.client.failures + s.server.failures > 0)
        })
        .collect();
    // Resamples of whole seeds, the same for every detector.
    let mut rng = ChaCha8Rng::seed_from_u64(seeds.iter().fold(0x6d63_7073, |h, s| {
        h.rotate_left(7) ^ s.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }));
    let boot: Vec<Vec<Option<(f64, f64)>>> = (0..RESAMPLES)
        .map(|_| {
            let pick: Vec<usize> = (0..seeds.len())
                .map(|_| rng.random_range(0..seeds.len()))
                .collect();
            merged_points(&pick)
        })
        .collect();
    let figures = detectors
        .iter()
        .map(|d| {
            let idx = of(d);
            let sub = |pts: &[Option<(f64, f64)>]| -> Vec<Option<(f64, f64)>> {
                idx.iter().map(|&i| pts[i]).collect()
            };
            let at = p99_at(&sub(&full), target);
            let mut samples: Vec<f64> = boot
                .iter()
                .filter_map(|pts| p99_at(&sub(pts), target).map(|(v, _)| v))
                .collect();
            samples.sort_by(f64::total_cmp);
            let q = |p: f64| -> Option<f64> {
                (!samples.is_empty())
                    .then(|| samples[((samples.len() - 1) as f64 * p).round() as usize])
            };
            DetectorFigure {
                detector: d.clone(),
                p99_at_rate_s: at.as_ref().map(|(v, _)| *v),
                from: at
                    .map(|(_, from)| from.iter().map(|&j| pairings[idx[j]].0.clone()).collect())
                    .unwrap_or_default(),
                lower_s: q(0.025),
                upper_s: q(0.975),
                reached: samples.len() as f64 / RESAMPLES as f64,
                failures: idx.iter().any(|&i| had_failures[i]),
            }
        })
        .collect();
    Comparison {
        scenario: scenario.to_string(),
        target_rate_per_hour: target,
        seeds: seeds.to_vec(),
        detectors: figures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Option<(f64, f64)>> {
        v.iter().map(|&p| Some(p)).collect()
    }

    #[test]
    fn a_target_between_two_frontier_points_is_read_by_interpolation() {
        // Rates 1.0 and 0.2 straddle 0.6: halfway between p99s 2 s and 4 s.
        let (v, from) = p99_at(&pts(&[(1.0, 2.0), (0.2, 4.0), (0.1, 5.0)]), 0.6).unwrap();
        assert!((v - 3.0).abs() < 1e-9, "{v}");
        assert_eq!(from, vec![1, 0]);
    }

    #[test]
    fn a_point_beaten_on_both_measures_is_not_on_the_frontier() {
        // (0.5, 6.0) is slower and noisier than (0.2, 4.0): the reading ignores it.
        let (v, _) = p99_at(&pts(&[(1.0, 2.0), (0.5, 6.0), (0.2, 4.0)]), 0.6).unwrap();
        assert!((v - 3.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn with_no_point_above_the_target_the_fastest_point_below_it_is_the_figure() {
        let (v, from) = p99_at(&pts(&[(0.0, 2.5), (0.1, 2.0)]), 0.5).unwrap();
        assert_eq!((v, from), (2.0, vec![1]));
    }

    #[test]
    fn a_detector_with_every_point_above_the_target_does_not_reach_it() {
        assert!(p99_at(&pts(&[(1.0, 2.0), (0.9, 3.0)]), 0.5).is_none());
        assert!(p99_at(&[None, None], 0.5).is_none());
    }

    #[test]
    fn a_missed_failure_makes_a_point_infinitely_slow_and_it_is_not_interpolated() {
        let (v, _) = p99_at(&pts(&[(1.0, 2.0), (0.2, f64::INFINITY)]), 0.6).unwrap();
        assert!(v.is_infinite());
    }
}
