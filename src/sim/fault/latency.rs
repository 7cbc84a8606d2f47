//! [`Latency`]: a one-way delay distribution (also used for outage lengths), cut at
//! [`MAX_DELAY`].

use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};
use statrs::function::erf::{erfc, erfc_inv};

use super::FaultError;

/// The largest delay a [`Latency`] ever returns: heavy tails are cut here, so that a sample is
/// always a finite, usable [`Duration`].
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// A distribution of delays, in milliseconds. Every variant but `constant` and `uniform` has a
/// floor `min_ms` and a random part above it, so the mean is distinct from the minimum.
///
/// ```text
/// { dist = "lognormal", min_ms = 2, median_ms = 3, sigma = 0.5 }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Latency {
    /// Always `value_ms`.
    Constant { value_ms: f64 },
    /// Uniform on `[min_ms, max_ms]`.
    Uniform { min_ms: f64, max_ms: f64 },
    /// Normal with `mean_ms` and `sd_ms`, truncated below `min_ms` (redrawn, not clamped: no
    /// mass piles up at the minimum).
    Normal {
        mean_ms: f64,
        sd_ms: f64,
        min_ms: f64,
    },
    /// `min_ms` plus a lognormal part with median `median_ms` and log-scale `sigma`.
    Lognormal {
        min_ms: f64,
        median_ms: f64,
        sigma: f64,
    },
    /// `min_ms` plus a Pareto tail starting at zero (Lomax): `scale_ms·(U^(−1/shape) − 1)`,
    /// i.e. a Pareto(`scale_ms`, `shape`) sample minus `scale_ms`. The mean is finite only for
    /// `shape > 1`.
    Pareto {
        min_ms: f64,
        scale_ms: f64,
        shape: f64,
    },
    /// `min_ms` plus an exponential part with mean `mean_ms`.
    Exponential { min_ms: f64, mean_ms: f64 },
}

impl Latency {
    /// The same delay every time.
    pub fn constant(d: Duration) -> Latency {
        Latency::Constant {
            value_ms: d.as_secs_f64() * 1e3,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Latency::Constant { .. } => "constant",
            Latency::Uniform { .. } => "uniform",
            Latency::Normal { .. } => "normal",
            Latency::Lognormal { .. } => "lognormal",
            Latency::Pareto { .. } => "pareto",
            Latency::Exponential { .. } => "exponential",
        }
    }

    /// Checks the parameters: every duration finite and non-negative, `min ≤ max`, positive
    /// scales and shapes.
    pub fn validate(&self) -> Result<(), FaultError> {
        let dist = self.name();
        let err = |reason| Err(FaultError::Latency { dist, reason });
        let ms_ok = |x: f64| x.is_finite() && x >= 0.0;
        match *self {
            Latency::Constant { value_ms } if !ms_ok(value_ms) => err("bad value_ms"),
            Latency::Uniform { min_ms, max_ms } if !ms_ok(min_ms) || !ms_ok(max_ms) => {
                err("bad min_ms or max_ms")
            }
            Latency::Uniform { min_ms, max_ms } if max_ms < min_ms => err("max_ms below min_ms"),
            Latency::Normal {
                mean_ms,
                sd_ms,
                min_ms,
            } if !mean_ms.is_finite() || !ms_ok(sd_ms) || !ms_ok(min_ms) => {
                err("bad mean_ms, sd_ms or min_ms")
            }
            Latency::Lognormal {
                min_ms,
                median_ms,
                sigma,
            } if !ms_ok(min_ms) || !ms_ok(median_ms) || !ms_ok(sigma) => {
                err("bad min_ms, median_ms or sigma")
            }
            Latency::Lognormal { median_ms: 0.0, .. } => err("median_ms is zero"),
            Latency::Pareto {
                min_ms,
                scale_ms,
                shape,
            } if !ms_ok(min_ms) || !ms_ok(scale_ms) || !shape.is_finite() => {
                err("bad min_ms, scale_ms or shape")
            }
            Latency::Pareto { shape, .. } if shape <= 0.0 => err("shape not positive"),
            Latency::Exponential { min_ms, mean_ms } if !ms_ok(min_ms) || !ms_ok(mean_ms) => {
                err("bad min_ms or mean_ms")
            }
            _ => Ok(()),
        }
    }

    /// One delay, in `[min, MAX_DELAY]` (the parameters are assumed valid; see
    /// [`Latency::validate`]).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let ms = match *self {
            Latency::Constant { value_ms } => value_ms,
            Latency::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * rng.random::<f64>(),
            Latency::Normal {
                mean_ms,
                sd_ms,
                min_ms,
            } => {
                // Inverse CDF of the upper tail above min: one draw, exact in the far tail.
                let v = 1.0 - rng.random::<f64>(); // (0, 1]
                truncated_normal_quantile(mean_ms, sd_ms, min_ms, v)
            }
            Latency::Lognormal {
                min_ms,
                median_ms,
                sigma,
            } => {
                let z: f64 = StandardNormal.sample(rng);
                min_ms + median_ms * (sigma * z).exp()
            }
            Latency::Pareto {
                min_ms,
                scale_ms,
                shape,
            } => {
                // U^(−1/shape) = exp(E/shape) with E ~ Exp(1).
                let e: f64 = Exp1.sample(rng);
                min_ms + scale_ms * (e / shape).exp_m1()
            }
            Latency::Exponential { min_ms, mean_ms } => {
                let e: f64 = Exp1.sample(rng);
                min_ms + mean_ms * e
            }
        };
        from_ms(ms)
    }

    /// The mean (of the distribution, before the cut at [`MAX_DELAY`]); `None` if infinite
    /// (Pareto with `shape ≤ 1`).
    pub fn mean(&self) -> Option<Duration> {
        let ms = match *self {
            Latency::Constant { value_ms } => value_ms,
            Latency::Uniform { min_ms, max_ms } => (min_ms + max_ms) / 2.0,
            Latency::Normal {
                mean_ms,
                sd_ms,
                min_ms,
            } => {
                if sd_ms == 0.0 {
                    mean_ms.max(min_ms)
                } else {
                    let a = (min_ms - mean_ms) / sd_ms;
                    let tail = 0.5 * erfc(a / std::f64::consts::SQRT_2);
                    let pdf = (-0.5 * a * a).exp() / (2.0 * std::f64::consts::PI).sqrt();
                    if tail > 1e-300 {
                        (mean_ms + sd_ms * pdf / tail).max(min_ms)
                    } else {
                        min_ms
                    }
                }
            }
            Latency::Lognormal {
                min_ms,
                median_ms,
                sigma,
            } => min_ms + median_ms * (sigma * sigma / 2.0).exp(),
            Latency::Pareto {
                min_ms,
                scale_ms,
                shape,
            } => {
                if shape <= 1.0 {
                    return None;
                }
                min_ms + scale_ms / (shape - 1.0)
            }
            Latency::Exponential { min_ms, mean_ms } => min_ms + mean_ms,
        };
        Some(from_ms(ms))
    }

    /// The median.
    pub fn median(&self) -> Duration {
        let ms = match *self {
            Latency::Constant { value_ms } => value_ms,
            Latency::Uniform { min_ms, max_ms } => (min_ms + max_ms) / 2.0,
            Latency::Normal {
                mean_ms,
                sd_ms,
                min_ms,
            } => truncated_normal_quantile(mean_ms, sd_ms, min_ms, 0.5),
            Latency::Lognormal {
                min_ms, median_ms, ..
            } => min_ms + median_ms,
            Latency::Pareto {
                min_ms,
                scale_ms,
                shape,
            } => min_ms + scale_ms * (std::f64::consts::LN_2 / shape).exp_m1(),
            Latency::Exponential { min_ms, mean_ms } => min_ms + mean_ms * std::f64::consts::LN_2,
        };
        from_ms(ms)
    }

    /// The mean if finite, else the median: what a TCP sender's RTT estimate settles near.
    pub fn typical(&self) -> Duration {
        self.mean().unwrap_or_else(|| self.median())
    }
}

/// The point of a normal(mean, sd) truncated below `min` whose upper-tail probability, within
/// the truncated distribution, is `v ∈ (0, 1]`.
fn truncated_normal_quantile(mean: f64, sd: f64, min: f64, v: f64) -> f64 {
    if sd == 0.0 {
        return mean.max(min);
    }
    let a = (min - mean) / sd;
    let tail = 0.5 * erfc(a / std::f64::consts::SQRT_2);
    if tail.is_nan() || tail <= 0.0 {
        return min;
    }
    // Upper-tail quantile: 1 − Φ(z) = q ⇔ z = √2·erfc⁻¹(2q).
    let z = std::f64::consts::SQRT_2 * erfc_inv(2.0 * tail * v);
    (mean + sd * z).max(min)
}

/// Milliseconds to a [`Duration`] in `[0, MAX_DELAY]`; NaN counts as zero.
pub(super) fn from_ms(ms: f64) -> Duration {
    let s = ms / 1e3;
    if s.is_nan() || s <= 0.0 {
        Duration::ZERO
    } else if s >= MAX_DELAY.as_secs_f64() {
        MAX_DELAY
    } else {
        Duration::from_secs_f64(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fault::testing::{ms, rng};

    fn check_latency(l: Latency, min_ms: f64) {
        l.validate().unwrap();
        let mut r = rng(5);
        let n = 100_000;
        let mut xs: Vec<f64> = (0..n)
            .map(|_| l.sample(&mut r).as_secs_f64() * 1e3)
            .collect();
        assert!(
            xs.iter().all(|&x| x >= min_ms - 1e-6),
            "{l:?} below its minimum"
        );
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        if let Some(m) = l.mean() {
            let m = m.as_secs_f64() * 1e3;
            let se = (var / n as f64).sqrt();
            assert!(
                (mean - m).abs() <= 5.0 * se + 1e-6,
                "{l:?}: mean {mean} vs {m}"
            );
        }
        xs.sort_by(f64::total_cmp);
        let median = xs[n / 2];
        let m = l.median().as_secs_f64() * 1e3;
        assert!(
            (median - m).abs() <= 0.02 * m + 1e-6,
            "{l:?}: median {median} vs {m}"
        );
    }

    #[test]
    fn latency_samples_match_their_parameters_and_respect_the_minimum() {
        check_latency(Latency::Constant { value_ms: 5.0 }, 5.0);
        check_latency(
            Latency::Uniform {
                min_ms: 2.0,
                max_ms: 8.0,
            },
            2.0,
        );
        let normal = Latency::Normal {
            mean_ms: 10.0,
            sd_ms: 5.0,
            min_ms: 5.0,
        };
        // Truncation at one sd below the mean lifts the mean to 10 + 5·φ(1)/Φ(1).
        let m = normal.mean().unwrap().as_secs_f64() * 1e3;
        assert!((m - 11.438).abs() < 1e-3, "{m}");
        check_latency(normal, 5.0);
        check_latency(
            Latency::Lognormal {
                min_ms: 2.0,
                median_ms: 3.0,
                sigma: 0.5,
            },
            2.0,
        );
        check_latency(
            Latency::Pareto {
                min_ms: 1.0,
                scale_ms: 2.0,
                shape: 3.0,
            },
            1.0,
        );
        let heavy = Latency::Pareto {
            min_ms: 1.0,
            scale_ms: 2.0,
            shape: 0.8,
        };
        assert_eq!(heavy.mean(), None);
        check_latency(heavy, 1.0);
        check_latency(
            Latency::Exponential {
                min_ms: 1.0,
                mean_ms: 4.0,
            },
            1.0,
        );
        // A minimum far above the mean: every sample sits just above it, none is infinite.
        let far = Latency::Normal {
            mean_ms: 0.0,
            sd_ms: 1.0,
            min_ms: 50.0,
        };
        let mut r = rng(6);
        for _ in 0..1000 {
            let x = far.sample(&mut r);
            assert!(x >= ms(50) && x < ms(51), "{x:?}");
        }
    }
}
