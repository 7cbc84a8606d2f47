//! [`Loss`] and its running form [`LossProcess`]: no loss, independent loss, or
//! Gilbert-Elliott bursts whose Good/Bad state evolves in simulated time.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1};
use serde::{Deserialize, Serialize};

use super::FaultError;
use crate::sim::synthetic::{Purpose, stream};

/// How far before the latest send on a direction the loss process keeps its state history.
/// Sends on one direction may come slightly out of order; queries older than this are a caller
/// error.
pub const HISTORY: Duration = Duration::from_secs(600);

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
/// (which [`Path::carry`](super::Path::carry) calls with the send time less [`HISTORY`]); asking about an earlier
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
        // Asked about the present, almost always: the change in force is then one of the last
        // few (the last is later than `t`). The history kept behind them is searched only for
        // an older instant.
        let n = self.changes.len();
        for i in (n.saturating_sub(4)..n).rev() {
            if self.changes[i].0 <= t {
                return self.changes[i].1;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fault::testing::{MASTER, ge, ms, rng, secs};

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
}
