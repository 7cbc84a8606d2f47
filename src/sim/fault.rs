//! The fault model of the network simulator: what a lossy, slow or partitioned link does to one
//! segment of a TCP connection, as `docs/network-semantics.md` describes it for Linux.
//!
//! Pure: no tokio, no turmoil, no clock. Time is a [`Duration`] since the start of the
//! simulation, and every random draw comes from a seeded RNG passed in or owned.
//!
//! # Pieces
//!
//! - [`Latency`]: a one-way delay distribution (also used for outage lengths).
//! - [`Loss`] and its running form [`LossProcess`]: no loss, independent loss, or Gilbert-Elliott
//!   bursts whose Good/Bad state evolves in **simulated time** (sojourns in seconds), so a faster
//!   sender does not shorten its own bursts.
//! - [`Timeline`]: sorted, merged intervals `[start, end)` during which a direction drops
//!   everything (partitions, a link down, flapping), scheduled or drawn from
//!   [`RandomOutages`].
//! - [`Direction`]: the faults of one direction between two hosts (latency, loss, outages), and
//!   with a [`LinkRate`] its bandwidth and the FIFO queue in front of it (netem's `rate` and
//!   `limit`): a packet is serialized after the ones queued before it, taking
//!   `(payload + HEADER_BYTES) × 8 / rate`, then takes the latency; one that finds the queue
//!   full is dropped (tail drop), which TCP sees as any other loss.
//! - [`Path`]: one direction of one connection: [`Path::carry`] tells when a packet sent at `t`
//!   arrives, if it is not lost; [`Path::syn`] plays out a whole connection attempt (SYNs and
//!   SYN-ACKs with their backoff).
//! - [`TcpConfig`]: the kernels' TCP settings. What the kernels do with each packet's fate
//!   (retransmission timers, probes, SACK recovery, delayed ACKs, timeouts) is
//!   [`super::tcp::TcpModel`].
//!
//! Because a packet's fate is decided when it is sent, every fault that can touch it must be
//! known by then: outages are scheduled or pre-sampled over a horizon before the run, and the
//! Gilbert-Elliott state is pre-sampled lazily from its own stream, so its timeline does not
//! depend on how often it is asked.
//!
//! A connection attempt sends its SYN at once and again at 1, 3, 7, 15 … s (initial RTO 1 s,
//! doubling) and gives up at the first timer `(2^(r+1) − 1)·1 s` after the first SYN for
//! `tcp_syn_retries = r` (127 s for 6). The server answers every SYN that reaches it with a
//! SYN-ACK and resends its SYN-ACK itself at 1, 3, 7 … s after the first one
//! (`tcp_synack_retries`). A partition never makes `connect` fail early.
//!
//! # Randomness
//!
//! Per-packet loss and latency draws come from the RNG passed to [`Path::carry`] (one stream
//! per connection direction, [`Purpose::Segments`]); each packet draws its loss first (always
//! exactly one `f64`, also under no loss), then its latency if it got through. A packet dropped
//! by a full queue draws nothing; the queue itself draws nothing, so without a rate the draws
//! are exactly what they were before links had one. The Gilbert-Elliott state
//! timeline owns its stream ([`Purpose::LossState`]) and random outages are drawn from
//! [`Purpose::Outages`], so a direction's bursts and outages do not depend on its traffic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::Range;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};
use statrs::function::erf::{erfc, erfc_inv};
use thiserror::Error;

use super::synthetic::{Purpose, stream};

/// The largest delay a [`Latency`] ever returns: heavy tails are cut here, so that a sample is
/// always a finite, usable [`Duration`].
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// How far before the latest send on a direction the loss process keeps its state history.
/// Sends on one direction may come slightly out of order; queries older than this are a caller
/// error.
pub const HISTORY: Duration = Duration::from_secs(600);

/// Bad fault parameters.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum FaultError {
    #[error("{dist} latency: {reason}")]
    Latency {
        dist: &'static str,
        reason: &'static str,
    },
    #[error("loss: {0}")]
    Loss(&'static str),
    #[error("outages: {0}")]
    Outages(&'static str),
    #[error("link rate: {0}")]
    Rate(&'static str),
}

// ---------------------------------------------------------------------------------------------
// Latency

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
fn from_ms(ms: f64) -> Duration {
    let s = ms / 1e3;
    if s.is_nan() || s <= 0.0 {
        Duration::ZERO
    } else if s >= MAX_DELAY.as_secs_f64() {
        MAX_DELAY
    } else {
        Duration::from_secs_f64(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Loss

/// How a direction loses transmissions (each attempt, a segment's first sending or a resend, and
/// each ACK, is one transmission).
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Loss {
    /// Nothing lost.
    #[default]
    None,
    /// Each transmission lost independently with probability `p`.
    Independent { p: f64 },
    /// Gilbert-Elliott: a Good and a Bad state with their own loss probabilities. The state
    /// changes in simulated time: a stay in Good lasts an exponential time with rate
    /// `p_good_to_bad_per_s` per second, a stay in Bad one with rate `p_bad_to_good_per_s`. A
    /// zero rate makes the state absorbing. The first state is drawn from the stationary
    /// distribution (Good if both rates are zero).
    GilbertElliott {
        p_good_to_bad_per_s: f64,
        p_bad_to_good_per_s: f64,
        loss_good: f64,
        loss_bad: f64,
    },
}

impl Loss {
    /// Checks that probabilities are in `[0, 1]` and rates finite and non-negative.
    pub fn validate(&self) -> Result<(), FaultError> {
        let prob = |p: f64| (0.0..=1.0).contains(&p);
        let rate = |r: f64| r.is_finite() && r >= 0.0;
        match *self {
            Loss::None => Ok(()),
            Loss::Independent { p } if !prob(p) => Err(FaultError::Loss("p outside [0, 1]")),
            Loss::GilbertElliott {
                p_good_to_bad_per_s,
                p_bad_to_good_per_s,
                ..
            } if !rate(p_good_to_bad_per_s) || !rate(p_bad_to_good_per_s) => {
                Err(FaultError::Loss("transition rates must be finite and >= 0"))
            }
            Loss::GilbertElliott {
                loss_good,
                loss_bad,
                ..
            } if !prob(loss_good) || !prob(loss_bad) => {
                Err(FaultError::Loss("loss_good or loss_bad outside [0, 1]"))
            }
            _ => Ok(()),
        }
    }

    /// The stationary probability of the Bad state (zero without bursts).
    pub fn bad_share(&self) -> f64 {
        match *self {
            Loss::GilbertElliott {
                p_good_to_bad_per_s: g,
                p_bad_to_good_per_s: b,
                ..
            } if g + b > 0.0 => g / (g + b),
            _ => 0.0,
        }
    }

    /// The long-run fraction of transmissions lost: `loss_good·π_good + loss_bad·π_bad` under
    /// Gilbert-Elliott.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Independent { p } => p,
            Loss::GilbertElliott {
                loss_good,
                loss_bad,
                ..
            } => {
                let bad = self.bad_share();
                (1.0 - bad) * loss_good + bad * loss_bad
            }
        }
    }
}

/// The Gilbert-Elliott state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeState {
    Good,
    Bad,
}

/// A [`Loss`] running in simulated time. Under Gilbert-Elliott it owns a random stream from
/// which it draws the state timeline, alternating exponential sojourns, extended lazily as later
/// times are asked about. It remembers the timeline back to [`LossProcess::forget_before`]
/// (which [`Path::carry`] calls with the send time less [`HISTORY`]); asking about an earlier
/// time is a caller error (debug builds panic; release builds answer with the oldest state
/// kept).
#[derive(Clone, Debug)]
pub struct LossProcess {
    loss: Loss,
    ge: Option<GeTimeline>,
}

#[derive(Clone, Debug)]
struct GeTimeline {
    /// Sojourn rates per second out of Good and out of Bad.
    leave_good: f64,
    leave_bad: f64,
    rng: ChaCha8Rng,
    /// State changes `(from, state)`, ascending: the state is `state` from `from` until the
    /// next change. Never empty.
    changes: VecDeque<(Duration, GeState)>,
    /// The last state lasts forever (a zero rate, or a sojourn beyond any simulation).
    absorbed: bool,
}

/// Sojourns longer than this (about 31,700 years) count as forever.
const FOREVER_S: f64 = 1e12;

impl GeTimeline {
    fn extend_past(&mut self, t: Duration) {
        while !self.absorbed {
            let &(from, state) = self.changes.back().expect("never empty");
            if from > t {
                return;
            }
            let rate = match state {
                GeState::Good => self.leave_good,
                GeState::Bad => self.leave_bad,
            };
            let e: f64 = Exp1.sample(&mut self.rng);
            let secs = e / rate; // +inf for a zero rate
            if secs.is_nan() || secs >= FOREVER_S {
                self.absorbed = true;
                return;
            }
            let next = match state {
                GeState::Good => GeState::Bad,
                GeState::Bad => GeState::Good,
            };
            let at = from.saturating_add(Duration::from_secs_f64(secs));
            self.changes.push_back((at, next));
        }
    }

    fn state_at(&mut self, t: Duration) -> GeState {
        self.extend_past(t);
        let i = self.changes.partition_point(|&(from, _)| from <= t);
        debug_assert!(i > 0, "loss state asked for {t:?}, before the history kept");
        self.changes[i.saturating_sub(1)].1
    }

    fn forget_before(&mut self, t: Duration) {
        while self.changes.len() > 1 && self.changes[1].0 <= t {
            self.changes.pop_front();
        }
    }
}

impl LossProcess {
    /// Starts `loss` at time zero; `rng` is the stream of its Gilbert-Elliott state (unused
    /// otherwise).
    pub fn new(loss: &Loss, mut rng: ChaCha8Rng) -> Result<LossProcess, FaultError> {
        loss.validate()?;
        let ge = match *loss {
            Loss::GilbertElliott {
                p_good_to_bad_per_s,
                p_bad_to_good_per_s,
                ..
            } => {
                let first = if rng.random::<f64>() < loss.bad_share() {
                    GeState::Bad
                } else {
                    GeState::Good
                };
                Some(GeTimeline {
                    leave_good: p_good_to_bad_per_s,
                    leave_bad: p_bad_to_good_per_s,
                    rng,
                    changes: VecDeque::from([(Duration::ZERO, first)]),
                    absorbed: false,
                })
            }
            _ => None,
        };
        Ok(LossProcess { loss: *loss, ge })
    }

    /// [`LossProcess::new`] with the stream `stream(master, Purpose::LossState, key)`; `key`
    /// names the direction (e.g. the two host ids in order).
    pub fn seeded(loss: &Loss, master: u64, key: &[u64]) -> Result<LossProcess, FaultError> {
        LossProcess::new(loss, stream(master, Purpose::LossState, key))
    }

    /// No loss.
    pub fn none() -> LossProcess {
        LossProcess {
            loss: Loss::None,
            ge: None,
        }
    }

    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// The Gilbert-Elliott state at `t`; `None` for other models.
    pub fn state_at(&mut self, t: Duration) -> Option<GeState> {
        self.ge.as_mut().map(|ge| ge.state_at(t))
    }

    /// The probability that a transmission at `t` is lost.
    pub fn loss_probability(&mut self, t: Duration) -> f64 {
        match self.loss {
            Loss::None => 0.0,
            Loss::Independent { p } => p,
            Loss::GilbertElliott {
                loss_good,
                loss_bad,
                ..
            } => match self.state_at(t) {
                Some(GeState::Bad) => loss_bad,
                _ => loss_good,
            },
        }
    }

    /// Whether one transmission at `t` is lost. Draws exactly one `f64` from `rng`, whatever the
    /// model, so that the draws of a direction stay aligned across loss settings.
    pub fn is_lost<R: Rng + ?Sized>(&mut self, t: Duration, rng: &mut R) -> bool {
        let u: f64 = rng.random();
        u < self.loss_probability(t)
    }

    /// Drops the state history before `t`: later queries must be at or after `t`.
    pub fn forget_before(&mut self, t: Duration) {
        if let Some(ge) = &mut self.ge {
            ge.forget_before(t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outages

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

// ---------------------------------------------------------------------------------------------
// Directions and the TCP model

/// The faults of one direction between two hosts, shared by every connection between them.
#[derive(Clone, Debug)]
pub struct Direction {
    latency: Latency,
    /// The latency's one value if it is constant: worked out once, since every packet needs it.
    constant: Option<Duration>,
    loss: LossProcess,
    outages: Timeline,
    /// Latency episodes (spikes, a slow "gray" peer): `[start, end)` with their own
    /// distribution, sorted by start; outside them `latency` applies.
    episodes: Vec<(Range<Duration>, Latency)>,
    /// The link's rate and queue; `None` = infinitely fast.
    queue: Option<LinkQueue>,
}

/// Bytes of headers each packet carries on the wire besides its payload: IPv4 (20), TCP (20)
/// and the timestamp option with its padding (12), as on a Linux connection.
pub const HEADER_BYTES: usize = 52;

/// A link's bandwidth and queue, as netem's `rate` and `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRate {
    /// Bits per second.
    pub bits_per_s: u64,
    /// Packets the queue holds, the one being sent included; one more is dropped (tail drop).
    pub queue: usize,
}

impl LinkRate {
    /// netem's default `limit`.
    pub const DEFAULT_QUEUE: usize = 1000;

    pub fn validate(&self) -> Result<(), FaultError> {
        if self.bits_per_s == 0 {
            return Err(FaultError::Rate("the rate must be at least 1 bit/s"));
        }
        if self.queue == 0 {
            return Err(FaultError::Rate("the queue must hold at least 1 packet"));
        }
        Ok(())
    }

    /// How long the link takes to send a packet of `payload` bytes (headers added), rounded up
    /// to a nanosecond.
    pub fn serialization(&self, payload: usize) -> Duration {
        let bits = (payload as u128 + HEADER_BYTES as u128) * 8;
        let ns = (bits * 1_000_000_000).div_ceil(u128::from(self.bits_per_s.max(1)));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// A FIFO queue in front of a link of finite rate: a packet waits for the ones before it, then
/// takes its serialization time; one arriving when the queue is full is dropped.
#[derive(Clone, Debug)]
struct LinkQueue {
    rate: LinkRate,
    /// When the link has sent the last bit of everything queued so far.
    busy_until: Duration,
    /// When each packet still queued (or being sent) leaves the link, oldest first.
    leaving: VecDeque<Duration>,
    drops: u64,
}

impl LinkQueue {
    /// A packet of `payload` bytes offered at `at`: when its last bit leaves, or `None` if the
    /// queue is full. Packets are taken in the order offered: the network's connections are
    /// run event by event, so offers come in time order up to the few events of one instant.
    fn offer(&mut self, at: Duration, payload: usize) -> Option<Duration> {
        while self.leaving.front().is_some_and(|&t| t <= at) {
            self.leaving.pop_front();
        }
        if self.leaving.len() >= self.rate.queue {
            self.drops += 1;
            return None;
        }
        let done = self
            .busy_until
            .max(at)
            .saturating_add(self.rate.serialization(payload));
        self.busy_until = done;
        self.leaving.push_back(done);
        Some(done)
    }
}

impl Direction {
    pub fn new(
        latency: Latency,
        loss: LossProcess,
        outages: Timeline,
    ) -> Result<Direction, FaultError> {
        latency.validate()?;
        let constant = match latency {
            Latency::Constant { value_ms } => Some(from_ms(value_ms)),
            _ => None,
        };
        Ok(Direction {
            constant,
            latency,
            loss,
            outages,
            episodes: Vec::new(),
            queue: None,
        })
    }

    /// The same direction with a finite rate and a queue in front of it.
    pub fn with_rate(mut self, rate: Option<LinkRate>) -> Result<Direction, FaultError> {
        if let Some(r) = &rate {
            r.validate()?;
        }
        self.queue = rate.map(|rate| LinkQueue {
            rate,
            busy_until: Duration::ZERO,
            leaving: VecDeque::new(),
            drops: 0,
        });
        Ok(self)
    }

    /// Packets dropped so far because the queue was full.
    pub fn queue_drops(&self) -> u64 {
        self.queue.as_ref().map_or(0, |q| q.drops)
    }

    /// The same direction with latency episodes: during each `[start, end)` one-way delays are
    /// drawn from its distribution instead (the first episode containing `t` wins).
    pub fn with_episodes(
        mut self,
        mut episodes: Vec<(Range<Duration>, Latency)>,
    ) -> Result<Direction, FaultError> {
        for (_, l) in &episodes {
            l.validate()?;
        }
        episodes.sort_by_key(|(r, _)| r.start);
        self.episodes = episodes;
        Ok(self)
    }

    /// One-way delay of a transmission at `t`: drawn from the episode in force then, if any,
    /// else from `latency` (a constant one draws nothing).
    fn delay_at<R: Rng + ?Sized>(&self, t: Duration, rng: &mut R) -> Duration {
        let episode = self
            .episodes
            .iter()
            .take_while(|(r, _)| r.start <= t)
            .find(|(r, _)| r.contains(&t));
        match (episode, self.constant) {
            (Some((_, l)), _) => l.sample(rng),
            (None, Some(d)) => d,
            (None, None) => self.latency.sample(rng),
        }
    }

    /// A direction with only latency: no loss, no outage.
    pub fn ideal(latency: Latency) -> Result<Direction, FaultError> {
        Direction::new(latency, LossProcess::none(), Timeline::empty())
    }

    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    pub fn loss(&self) -> &LossProcess {
        &self.loss
    }

    pub fn outages(&self) -> &Timeline {
        &self.outages
    }

    /// Whether a transmission at `t` is lost: one loss draw, then the outages.
    fn lost<R: Rng + ?Sized>(&mut self, t: Duration, rng: &mut R) -> bool {
        let lost = self.loss.is_lost(t, rng);
        lost || self.outages.blocked(t)
    }

    /// When a transmission sent at `t` arrives, or `None` if lost. With a rate, a packet of
    /// `payload` bytes first waits in the queue and is serialized (a full queue drops it before
    /// any draw); loss, outages and latency then apply from when its last bit leaves, since that
    /// is when it is on the wire. `payload: None` bypasses the queue (the handshake, which is
    /// played out ahead of time and must not book the link in the future).
    fn carry<R: Rng + ?Sized>(
        &mut self,
        t: Duration,
        payload: Option<usize>,
        rng: &mut R,
    ) -> Option<Duration> {
        let t = match (&mut self.queue, payload) {
            (Some(q), Some(bytes)) => q.offer(t, bytes)?,
            _ => t,
        };
        if self.lost(t, rng) {
            return None;
        }
        Some(t.saturating_add(self.delay_at(t, rng)))
    }
}

/// The kernel TCP settings that shape a connection's stalls (Linux defaults). The model that
/// uses them is [`super::tcp::TcpModel`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TcpConfig {
    /// The RTO floor, `rto_min` (200 ms).
    pub rto_min: Duration,
    /// The RTO cap (120 s).
    pub rto_max: Duration,
    /// Tail loss probes (RFC 8985; Linux `tcp_early_retrans = 3`).
    pub tail_loss_probe: bool,
    /// RACK loss detection from SACKs (Linux `tcp_recovery = 1`).
    pub rack: bool,
    /// The delayed-ACK timeout (`TCP_DELACK_MIN`, 40 ms).
    pub delayed_ack: Duration,
    /// Immediate ACKs at the start of a connection and after an idle gap (`TCP_MAX_QUICKACKS`).
    pub quickacks: u32,
    /// The kernel's timer frequency (`CONFIG_HZ`, 250): a jiffy is `1/hz` s.
    pub hz: u32,
    /// Timers fire on the kernel's timer wheel, late by up to their level's granularity (the
    /// default); `false` = exactly on time.
    pub timer_wheel: bool,
    /// The largest segment's payload (1448 bytes: a 1500-byte MTU less IP, TCP and timestamp
    /// headers): what an RTO retransmission collapses into one packet, and with `window` the
    /// most a packet carries.
    pub mss: usize,
    /// Segmentation at the MSS and a congestion window (`sim::tcp`). Off, the model sends
    /// whatever is written in one packet whatever its size, as on an infinitely fast link; the
    /// network turns it on when a link has a rate, so that links without one behave exactly as
    /// before.
    pub window: bool,
    /// The send buffer (`SO_SNDBUF`): bytes written and not yet acknowledged before writes
    /// block. Linux autotunes it (up to `tcp_wmem`'s 4 MiB maximum); fixed here at that
    /// maximum by default.
    pub send_buffer: usize,
    /// `TCP_USER_TIMEOUT`; `None` = the `tcp_retries2` budget.
    pub user_timeout: Option<Duration>,
    /// `tcp_retries2` (15).
    pub retries2: u32,
    /// The initial RTO, of a SYN and of a connection with no RTT sample yet (1 s).
    pub syn_rto: Duration,
    /// `tcp_syn_retries` (6).
    pub syn_retries: u32,
    /// `tcp_synack_retries` (5).
    pub synack_retries: u32,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            tail_loss_probe: true,
            rack: true,
            delayed_ack: Duration::from_millis(40),
            quickacks: 16,
            hz: 250,
            timer_wheel: true,
            mss: 1448,
            window: false,
            send_buffer: 4 << 20,
            user_timeout: None,
            retries2: 15,
            syn_rto: Duration::from_secs(1),
            syn_retries: 6,
            synack_retries: 5,
        }
    }
}

impl TcpConfig {
    /// The instants of a SYN's resends after the first: 1, 3, 7, 15 … s by default.
    pub fn syn_offsets(&self) -> Backoff {
        Backoff {
            at: Duration::ZERO,
            step: self.syn_rto,
            cap: self.rto_max,
            repeat_first: false,
        }
    }

    /// Linux's retransmission budget (`tcp_model_timeout`): `(2^(n+1) − 1)·base` with
    /// `n = min(retries, ⌊log2(rto_max/base)⌋)`, plus `rto_max` for each retry beyond that.
    /// 924.6 s for `retries2 = 15` and `base = 200 ms`; 127 s for 6 SYN retries and 1 s.
    pub fn budget(&self, base: Duration, retries: u32) -> Duration {
        let base_ns = base.as_nanos().max(1);
        let thresh = (self.rto_max.as_nanos() / base_ns)
            .checked_ilog2()
            .unwrap_or(0);
        let n = retries.min(thresh).min(100);
        let ns = base_ns.saturating_mul((2u128 << n) - 1).saturating_add(
            self.rto_max
                .as_nanos()
                .saturating_mul(u128::from(retries - n)),
        );
        u64::try_from(ns).map_or(Duration::MAX, Duration::from_nanos)
    }
}

/// Exponential backoff: yields the offsets `step, 3·step, 7·step …` (each step doubling, capped),
/// or with `repeat_first` `step, 2·step, 4·step …` (the first step taken twice).
#[derive(Clone, Debug)]
pub struct Backoff {
    at: Duration,
    step: Duration,
    cap: Duration,
    repeat_first: bool,
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.at = self.at.saturating_add(self.step);
        if self.repeat_first {
            self.repeat_first = false;
        } else {
            self.step = self.step.saturating_mul(2).min(self.cap);
        }
        Some(self.at)
    }
}

/// How a connection attempt ends for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The SYN-ACK arrived at this instant: the client is connected.
    Established(Duration),
    /// connect() failed with ETIMEDOUT at this instant.
    TimedOut(Duration),
}

/// One direction of one connection (`forward`, carrying its packets) with the reverse
/// direction (carrying the answers of a connection attempt), under `tcp`'s settings. Cheap: make
/// one per call if that is easier than keeping it.
#[derive(Debug)]
pub struct Path<'a> {
    forward: &'a mut Direction,
    reverse: &'a mut Direction,
    tcp: &'a TcpConfig,
}

/// A guard against endless resending (only reachable with absurd settings).
const MAX_ATTEMPTS: u32 = 100_000;

impl<'a> Path<'a> {
    pub fn new(
        forward: &'a mut Direction,
        reverse: &'a mut Direction,
        tcp: &'a TcpConfig,
    ) -> Path<'a> {
        Path {
            forward,
            reverse,
            tcp,
        }
    }

    /// One packet sent forward at `t`: when it arrives, or `None` if the direction is blocked
    /// or loses it. Draws one `f64` for the loss, then the latency if it got through.
    pub fn carry<R: Rng + ?Sized>(&mut self, t: Duration, rng: &mut R) -> Option<Duration> {
        self.carry_sized(t, 0, rng)
    }

    /// [`Path::carry`] for a packet of `payload` bytes, which a link with a rate queues and
    /// serializes first.
    pub fn carry_sized<R: Rng + ?Sized>(
        &mut self,
        t: Duration,
        payload: usize,
        rng: &mut R,
    ) -> Option<Duration> {
        self.forward.loss.forget_before(t.saturating_sub(HISTORY));
        self.forward.carry(t, Some(payload), rng)
    }

    /// A connection attempt from the forward direction's sender at `connect_at`: SYNs at
    /// `connect_at` and on the SYN backoff, SYN-ACKs from the server for every SYN that arrives
    /// plus its own SYN-ACK resends; established when the first SYN-ACK reaches the client,
    /// timed out at the first SYN timer past the `tcp_syn_retries` budget.
    pub fn syn<R: Rng + ?Sized>(&mut self, connect_at: Duration, rng: &mut R) -> ConnectOutcome {
        let floor = connect_at.saturating_sub(HISTORY);
        self.forward.loss.forget_before(floor);
        self.reverse.loss.forget_before(floor);

        let budget = self.tcp.budget(self.tcp.syn_rto, self.tcp.syn_retries);
        let deadline = connect_at.saturating_add(budget);
        let mut synacks: BinaryHeap<Reverse<Duration>> = BinaryHeap::new();
        let mut server_saw_syn = false;
        let mut established: Option<Duration> = None;
        let mut offsets = self.tcp.syn_offsets();
        let mut timer = connect_at;
        for k in 0..MAX_ATTEMPTS {
            // SYN-ACKs the server sends before this timer fires, in time order.
            while let Some(&Reverse(x)) = synacks.peek() {
                if x > timer {
                    break;
                }
                synacks.pop();
                if let Some(arrival) = self.reverse.carry(x, None, rng) {
                    established = Some(established.map_or(arrival, |e| e.min(arrival)));
                }
            }
            if k > 0 {
                if let Some(e) = established.filter(|&e| e <= timer) {
                    return ConnectOutcome::Established(e);
                }
                if timer >= deadline {
                    return ConnectOutcome::TimedOut(timer);
                }
            }
            if let Some(at_server) = self.forward.carry(timer, None, rng) {
                synacks.push(Reverse(at_server));
                if !server_saw_syn {
                    server_saw_syn = true;
                    let resends = Backoff {
                        at: Duration::ZERO,
                        step: self.tcp.syn_rto,
                        cap: self.tcp.rto_max,
                        repeat_first: false,
                    };
                    for off in resends.take(self.tcp.synack_retries as usize) {
                        synacks.push(Reverse(at_server.saturating_add(off)));
                    }
                }
            }
            timer = connect_at.saturating_add(offsets.next().expect("unbounded"));
        }
        ConnectOutcome::TimedOut(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: u64 = 0x5eed;

    fn us(x: u64) -> Duration {
        Duration::from_micros(x)
    }

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    fn secs(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    /// Equal within a microsecond (float milliseconds in the latency parameters).
    fn assert_close(a: Duration, b: Duration) {
        assert!(a.abs_diff(b) < Duration::from_micros(1), "{a:?} != {b:?}");
    }

    fn rng(key: u64) -> ChaCha8Rng {
        stream(MASTER, Purpose::Segments, &[key])
    }

    /// 1 ms each way, so srtt = 2 ms and the RTO 202 ms.
    fn lan(loss: Loss, outages: Timeline, key: u64) -> Direction {
        let loss = LossProcess::seeded(&loss, MASTER, &[key]).unwrap();
        Direction::new(Latency::constant(ms(1)), loss, outages).unwrap()
    }

    fn down(from: Duration, len: Duration) -> Timeline {
        Timeline::new([from..from + len])
    }

    #[test]
    fn budgets_and_syn_schedule_follow_linux() {
        let tcp = TcpConfig::default();
        assert_eq!(tcp.budget(tcp.rto_min, 15), ms(924_600));
        assert_eq!(tcp.budget(tcp.syn_rto, 6), secs(127.0));
        let syn: Vec<u64> = tcp.syn_offsets().take(4).map(|d| d.as_secs()).collect();
        assert_eq!(syn, [1, 3, 7, 15]);
    }

    #[test]
    fn connect_into_a_partition_times_out_after_the_syn_budget_never_refused() {
        let t0 = secs(5.0);
        let cut = down(Duration::ZERO, secs(1000.0));
        let tcp = TcpConfig::default();
        let (mut fwd, mut rev) = (lan(Loss::None, cut.clone(), 1), lan(Loss::None, cut, 2));
        let out = Path::new(&mut fwd, &mut rev, &tcp).syn(t0, &mut rng(1));
        assert_eq!(out, ConnectOutcome::TimedOut(t0 + secs(127.0)));
    }

    #[test]
    fn connect_during_a_partition_succeeds_at_the_first_syn_after_the_heal() {
        let t0 = secs(5.0);
        let cut = down(t0, secs(10.0));
        let tcp = TcpConfig::default();
        let (mut fwd, mut rev) = (lan(Loss::None, cut.clone(), 1), lan(Loss::None, cut, 2));
        let out = Path::new(&mut fwd, &mut rev, &tcp).syn(t0, &mut rng(1));
        // SYNs at 0, 1, 3, 7, 15 s.
        let ConnectOutcome::Established(at) = out else {
            panic!("{out:?}")
        };
        assert_close(at, t0 + secs(15.002));
    }

    #[test]
    fn server_synack_resends_complete_a_connection_whose_later_syns_are_lost() {
        let t0 = secs(5.0);
        // The first SYN gets through, every later one is dropped; SYN-ACKs are dropped for 2 s.
        let mut fwd = lan(Loss::None, down(t0 + ms(500), secs(1000.0)), 1);
        let mut rev = lan(Loss::None, down(t0, secs(2.0)), 2);
        let tcp = TcpConfig::default();
        let out = Path::new(&mut fwd, &mut rev, &tcp).syn(t0, &mut rng(1));
        // SYN-ACKs at 0.001, 1.001 (dropped) and 3.001 s.
        let ConnectOutcome::Established(at) = out else {
            panic!("{out:?}")
        };
        assert_close(at, t0 + secs(3.002));
    }

    fn ge(g2b: f64, b2g: f64, good: f64, bad: f64) -> Loss {
        Loss::GilbertElliott {
            p_good_to_bad_per_s: g2b,
            p_bad_to_good_per_s: b2g,
            loss_good: good,
            loss_bad: bad,
        }
    }

    /// Loss indicators of attempts every `step` for `horizon`.
    fn losses(loss: &Loss, step: Duration, horizon: Duration) -> Vec<bool> {
        let mut process = LossProcess::seeded(loss, MASTER, &[9]).unwrap();
        let mut r = rng(9);
        let n = (horizon.as_nanos() / step.as_nanos()) as u32;
        (0..n)
            .map(|i| {
                let t = step * i;
                process.forget_before(t.saturating_sub(HISTORY));
                process.is_lost(t, &mut r)
            })
            .collect()
    }

    #[test]
    fn gilbert_elliott_long_run_loss_matches_the_stationary_mix() {
        let loss = ge(0.2, 2.0, 0.01, 0.6);
        let expected = 0.01 * (2.0 / 2.2) + 0.6 * (0.2 / 2.2);
        assert!((loss.mean() - expected).abs() < 1e-12);
        let l = losses(&loss, ms(50), secs(50_000.0));
        let frac = l.iter().filter(|&&x| x).count() as f64 / l.len() as f64;
        assert!((frac - expected).abs() < 0.004, "{frac} vs {expected}");
    }

    /// P(lost | previous attempt lost) and P(lost).
    fn conditional_loss(l: &[bool]) -> (f64, f64) {
        let lost = l.iter().filter(|&&x| x).count();
        let both = l.windows(2).filter(|w| w[0] && w[1]).count();
        (both as f64 / lost as f64, lost as f64 / l.len() as f64)
    }

    #[test]
    fn gilbert_elliott_losses_come_in_bursts_and_independent_ones_do_not() {
        let bursty = ge(0.2, 2.0, 0.01, 0.6);
        let (after_loss, p) = conditional_loss(&losses(&bursty, ms(50), secs(20_000.0)));
        assert!(after_loss > 3.0 * p, "{after_loss} vs {p}");
        let flat = Loss::Independent { p: bursty.mean() };
        let (after_loss, p) = conditional_loss(&losses(&flat, ms(50), secs(20_000.0)));
        assert!((after_loss - p).abs() < 0.01, "{after_loss} vs {p}");
    }

    /// Mean duration in seconds of runs of consecutive losses.
    fn mean_burst_secs(l: &[bool], step: Duration) -> f64 {
        let (mut runs, mut total, mut cur) = (0u32, 0u32, 0u32);
        for &x in l.iter().chain([&false]) {
            if x {
                cur += 1;
            } else if cur > 0 {
                runs += 1;
                total += cur;
                cur = 0;
            }
        }
        f64::from(total) / f64::from(runs) * step.as_secs_f64()
    }

    #[test]
    fn gilbert_elliott_burst_durations_do_not_depend_on_the_attempt_rate() {
        // Bad loses everything, Good nothing: a burst is a stay in Bad, 1 s on average.
        let loss = ge(0.1, 1.0, 0.0, 1.0);
        let horizon = secs(40_000.0);
        let fast = mean_burst_secs(&losses(&loss, ms(10), horizon), ms(10));
        let slow = mean_burst_secs(&losses(&loss, ms(100), horizon), ms(100));
        assert!((fast - 1.0).abs() < 0.08, "{fast}");
        assert!((slow - fast).abs() < 0.08 * fast, "{slow} vs {fast}");
        // The state timeline itself does not depend on how often it is asked.
        let mut a = LossProcess::seeded(&loss, MASTER, &[3]).unwrap();
        let mut b = LossProcess::seeded(&loss, MASTER, &[3]).unwrap();
        for i in 0..100_000u32 {
            let t = ms(10) * i;
            let sa = a.state_at(t);
            if i % 10 == 0 {
                assert_eq!(sa, b.state_at(t), "at {t:?}");
            }
        }
    }

    #[test]
    fn loss_process_history_is_bounded() {
        let loss = ge(5.0, 5.0, 0.0, 1.0);
        let mut p = LossProcess::seeded(&loss, MASTER, &[4]).unwrap();
        let mut r = rng(4);
        for i in 0..100_000u32 {
            let t = ms(100) * i;
            p.forget_before(t.saturating_sub(secs(10.0)));
            p.is_lost(t, &mut r);
        }
        let kept = p.ge.as_ref().unwrap().changes.len();
        // About 10 s of history at 5 changes per second, plus the lookahead.
        assert!(kept < 200, "{kept}");
    }

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

    #[test]
    fn invalid_parameters_are_errors() {
        let bad = [
            Latency::Constant { value_ms: -1.0 },
            Latency::Uniform {
                min_ms: 5.0,
                max_ms: 2.0,
            },
            Latency::Normal {
                mean_ms: 1.0,
                sd_ms: -1.0,
                min_ms: 0.0,
            },
            Latency::Lognormal {
                min_ms: 0.0,
                median_ms: 0.0,
                sigma: 1.0,
            },
            Latency::Pareto {
                min_ms: 0.0,
                scale_ms: 1.0,
                shape: 0.0,
            },
            Latency::Exponential {
                min_ms: 0.0,
                mean_ms: f64::NAN,
            },
        ];
        for l in bad {
            assert!(l.validate().is_err(), "{l:?}");
            assert!(Direction::ideal(l).is_err(), "{l:?}");
        }
        let err = Latency::Uniform {
            min_ms: 5.0,
            max_ms: 2.0,
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.to_string(), "uniform latency: max_ms below min_ms");
        assert!(LossProcess::seeded(&Loss::Independent { p: 1.5 }, 1, &[]).is_err());
        assert!(LossProcess::seeded(&ge(-1.0, 1.0, 0.0, 1.0), 1, &[]).is_err());
        assert!(LossProcess::seeded(&ge(1.0, 1.0, 0.0, 2.0), 1, &[]).is_err());
        let outages = RandomOutages {
            rate_per_hour: f64::NAN,
            duration: Latency::Constant { value_ms: 1.0 },
        };
        assert!(outages.sample_seeded(secs(10.0), 1, &[]).is_err());
    }

    #[test]
    fn fault_parameters_deserialize_from_tagged_tables() {
        let l: Latency =
            serde_json::from_str(r#"{"dist":"lognormal","min_ms":2,"median_ms":3,"sigma":0.5}"#)
                .unwrap();
        assert_eq!(
            l,
            Latency::Lognormal {
                min_ms: 2.0,
                median_ms: 3.0,
                sigma: 0.5
            }
        );
        let loss: Loss = serde_json::from_str(
            r#"{"model":"gilbert-elliott","p_good_to_bad_per_s":0.1,"p_bad_to_good_per_s":1,
                "loss_good":0,"loss_bad":0.5}"#,
        )
        .unwrap();
        assert_eq!(loss, ge(0.1, 1.0, 0.0, 0.5));
        let o: RandomOutages = serde_json::from_str(
            r#"{"rate_per_hour":2,"duration":{"dist":"exponential","min_ms":100,"mean_ms":900}}"#,
        )
        .unwrap();
        assert_eq!(o.rate_per_hour, 2.0);
        assert!(serde_json::from_str::<Latency>(r#"{"dist":"constant","value":1}"#).is_err());
        assert!(serde_json::from_str::<Loss>(r#"{"model":"random","p":0.1}"#).is_err());
    }

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

    fn lossy_link(master: u64) -> (Direction, Direction) {
        let mk = |key: u64| {
            let loss = LossProcess::seeded(&ge(0.05, 0.5, 0.01, 0.5), master, &[key]).unwrap();
            let outages = RandomOutages {
                rate_per_hour: 20.0,
                duration: Latency::Exponential {
                    min_ms: 1000.0,
                    mean_ms: 5000.0,
                },
            }
            .sample_seeded(secs(15_000.0), master, &[key])
            .unwrap();
            let latency = Latency::Lognormal {
                min_ms: 5.0,
                median_ms: 10.0,
                sigma: 0.8,
            };
            Direction::new(latency, loss, outages).unwrap()
        };
        (mk(1), mk(2))
    }

    fn run(master: u64) -> (Vec<Option<Duration>>, Vec<ConnectOutcome>) {
        let (mut fwd, mut rev) = lossy_link(master);
        let tcp = TcpConfig::default();
        let mut r = stream(master, Purpose::Segments, &[1]);
        let mut path = Path::new(&mut fwd, &mut rev, &tcp);
        let data = (0..7000)
            .map(|i| path.carry(secs(f64::from(i)), &mut r))
            .collect();
        // Queries go forward in time (the loss state keeps only recent history).
        let syns = (0..100)
            .map(|i| path.syn(secs(7000.0 + f64::from(i) * 70.0), &mut r))
            .collect();
        (data, syns)
    }

    #[test]
    fn same_seed_gives_identical_outcomes() {
        let a = run(11);
        assert_eq!(a, run(11));
        assert_ne!(a, run(12));
        // The run exercised losses and deliveries.
        assert!(a.0.iter().any(Option::is_none));
        assert!(a.0.iter().any(Option::is_some));
    }

    /// A 5 ms link with `rate` one way and none back.
    fn rated(rate: LinkRate) -> (Direction, Direction) {
        let fwd = Direction::ideal(Latency::constant(ms(5)))
            .unwrap()
            .with_rate(Some(rate))
            .unwrap();
        (fwd, Direction::ideal(Latency::constant(ms(5))).unwrap())
    }

    #[test]
    fn a_link_with_a_rate_serializes_packets_back_to_back_then_adds_the_latency() {
        // 1 Mbit/s: a 1448-byte segment is 1500 bytes on the wire, 12 ms; a pure ACK 52 bytes,
        // 0.416 ms. Three offered at once leave one after the other; one offered after the
        // link went idle waits for nothing.
        let rate = LinkRate {
            bits_per_s: 1_000_000,
            queue: 1000,
        };
        let (mut fwd, mut rev) = rated(rate);
        let tcp = TcpConfig::default();
        let mut path = Path::new(&mut fwd, &mut rev, &tcp);
        let mut r = rng(1);
        let at = |p: &mut Path<'_>, t: Duration, bytes: usize, r: &mut ChaCha8Rng| {
            p.carry_sized(t, bytes, r).unwrap()
        };
        assert_eq!(at(&mut path, ms(0), 1448, &mut r), ms(12 + 5));
        assert_eq!(at(&mut path, ms(0), 1448, &mut r), ms(24 + 5));
        assert_eq!(at(&mut path, ms(1), 0, &mut r), ms(24) + us(416) + ms(5));
        assert_eq!(at(&mut path, ms(100), 1448, &mut r), ms(112 + 5));
        assert_eq!(rate.serialization(1448), ms(12));
    }

    #[test]
    fn a_full_queue_drops_what_arrives_until_a_packet_has_left() {
        let (mut fwd, mut rev) = rated(LinkRate {
            bits_per_s: 1_000_000,
            queue: 3,
        });
        let tcp = TcpConfig::default();
        let mut path = Path::new(&mut fwd, &mut rev, &tcp);
        let mut r = rng(1);
        // Three 12 ms packets fill the queue (the one being sent counts); the fourth is dropped.
        let sent: Vec<Option<Duration>> = (0..4)
            .map(|_| path.carry_sized(ms(0), 1448, &mut r))
            .collect();
        assert_eq!(sent, [Some(ms(17)), Some(ms(29)), Some(ms(41)), None]);
        // At 12 ms the first has left: room for one more, behind the other two.
        assert_eq!(path.carry_sized(ms(11), 1448, &mut r), None);
        assert_eq!(path.carry_sized(ms(12), 1448, &mut r), Some(ms(53)));
        assert_eq!(fwd.queue_drops(), 2);
    }

    #[test]
    fn without_a_rate_packet_sizes_change_nothing() {
        // The same draws and the same arrivals as before sizes existed, whatever the sizes.
        let (mut a_fwd, mut a_rev) = lossy_link(3);
        let (mut b_fwd, mut b_rev) = lossy_link(3);
        let tcp = TcpConfig::default();
        let mut ra = stream(3, Purpose::Segments, &[1]);
        let mut rb = stream(3, Purpose::Segments, &[1]);
        let mut a = Path::new(&mut a_fwd, &mut a_rev, &tcp);
        let mut b = Path::new(&mut b_fwd, &mut b_rev, &tcp);
        for i in 0..5000u32 {
            let t = ms(u64::from(i) * 7);
            let size = (i as usize * 7919) % 70_000;
            assert_eq!(a.carry(t, &mut ra), b.carry_sized(t, size, &mut rb), "{i}");
        }
    }

    #[test]
    fn a_rate_of_zero_or_an_empty_queue_is_refused() {
        let d = || Direction::ideal(Latency::constant(ms(1))).unwrap();
        for (bits_per_s, queue) in [(0, 10), (1000, 0)] {
            let rate = LinkRate { bits_per_s, queue };
            assert!(matches!(
                d().with_rate(Some(rate)),
                Err(FaultError::Rate(_))
            ));
        }
    }
}
