//! The phi accrual failure detector (Hayashibara, Défago, Yared, Katayama, "The φ Accrual Failure
//! Detector", SRDS 2004), with the parameter values and normal-CDF approximation that Akka
//! documents for its cluster failure detector.
//!
//! # Model
//!
//! Inter-arrival times of heartbeats are modelled as normal with mean μ and standard deviation σ,
//! estimated over the last `max_sample_size` intervals. After a silence of `t` since the last
//! arrival,
//!
//! ```text
//! y   = (t − μ − acceptable_heartbeat_pause) / max(σ, min_std_deviation)
//! F   ≈ 1 / (1 + e^(−g)),  g = y·(1.5976 + 0.070566·y²)     (logistic approximation of Φ(y))
//! phi = −log10(1 − F) = ln(1 + e^g) / ln 10
//! ```
//!
//! The last form is the softplus of `g`, evaluated as `g + ln(1 + e^−g)` for `g > 0` and
//! `ln(1 + e^g)` otherwise, so it is finite and accurate in both tails: no `1 − F` that rounds to
//! zero for long silences (phi would be +inf) and no `log10(1)` cancellation for short ones.
//!
//! # Suspicion instant
//!
//! `g` is strictly increasing in `y` (its derivative `1.5976 + 0.211698·y²` is positive) and
//! softplus is increasing, so phi is strictly increasing in the silence `t`, and crosses the
//! threshold at exactly one silence `t* = μ + pause + σ·y*`. `y*` depends only on the threshold:
//! `g* = ln(e^(threshold·ln 10) − 1)`, then `y*` is the single real root of the monotone cubic
//! `0.070566·y³ + 1.5976·y − g* = 0`, found in closed form (Cardano). The detector suspects when
//! `handle_timeout` sees a silence `≥ t*`, and [`Detector::poll_timeout`] returns
//! `last_arrival + t*`: computing the decision and the wake-up from the same number means a driver
//! woken at the deadline always finds the suspicion due, never a phi a rounding error short.
//!
//! Worst-case detection time after the peer's last heartbeat is that `t*`, evaluated with the
//! statistics at the crash. With steady heartbeats every η, σ falls to `min_std_deviation` and
//! `t* = η + acceptable_heartbeat_pause + min_std_deviation·y*` (about η + 3.52 s with Akka's
//! defaults and η = 1 s).
//!
//! # Parameters η and k
//!
//! The heartbeat interval η seeds the history before any real interval is known: as Akka does, two
//! samples `η − η/4` and `η + η/4`, i.e. mean η and standard deviation η/4. The miss threshold k
//! is ignored. [`Detector::set_params`] discards the history and re-seeds it from the new η,
//! because intervals measured under the old η say nothing about the new one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Detector, DetectorEvent, EventQueue, Time, Verdict, millis};

/// Coefficients of the logistic approximation of the standard normal CDF that Akka documents.
const A: f64 = 0.070566;
const B: f64 = 1.5976;

/// Intervals are stored as nanoseconds and clamped here (about 52 days), so that the exact
/// integer sum of squares of up to [`MAX_SAMPLES`] of them fits in a `u128`.
const MAX_INTERVAL_NS: u64 = 1 << 52;
/// The history never holds more than this, whatever the config says (2^16 · (2^52)² = 2^120).
const MAX_SAMPLES: usize = 1 << 16;
/// A floor on σ in seconds, so that a zero `min_std_deviation` with identical intervals gives a
/// finite, steep phi instead of a division by zero.
const MIN_SIGMA_S: f64 = 1e-9;

/// Tunables of [`PhiAccrual`]. `Default` gives Akka's values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhiConfig {
    /// Suspect when phi reaches this. Akka and Cassandra use 8. A threshold that is not positive
    /// (or NaN) suspects at once; `+inf` never suspects.
    pub threshold: f64,
    /// How many inter-arrival intervals the estimate uses (at least 1, at most 65536).
    pub max_sample_size: usize,
    /// A floor on σ, so that very regular heartbeats do not make phi hair-trigger.
    /// Written `min_std_deviation_ms`.
    #[serde(rename = "min_std_deviation_ms", with = "millis")]
    pub min_std_deviation: Duration,
    /// Silence tolerated on top of the mean interval, e.g. for GC pauses.
    /// Written `acceptable_heartbeat_pause_ms`.
    #[serde(rename = "acceptable_heartbeat_pause_ms", with = "millis")]
    pub acceptable_heartbeat_pause: Duration,
}

impl Default for PhiConfig {
    /// Akka's cluster failure detector defaults: threshold 8, 1000 samples, min std deviation
    /// 100 ms, acceptable heartbeat pause 3 s.
    fn default() -> Self {
        PhiConfig {
            threshold: 8.0,
            max_sample_size: 1000,
            min_std_deviation: Duration::from_millis(100),
            acceptable_heartbeat_pause: Duration::from_secs(3),
        }
    }
}

impl PhiConfig {
    /// The acceptable pause that makes a miss threshold k mean for phi what it means for
    /// k-miss: (k − 1)·η of silence beyond the expected interval.
    pub fn pause_for_miss_threshold(interval: Duration, miss_threshold: u32) -> Duration {
        interval * miss_threshold.saturating_sub(1)
    }
}

/// The phi accrual detector. See the module docs for the model and the suspicion instant.
#[derive(Clone, Debug)]
pub struct PhiAccrual {
    config: PhiConfig,
    interval: Duration,
    /// `y*`: where phi crosses the threshold, in standard deviations past `μ + pause`.
    y_star: f64,
    /// Ring buffer of inter-arrival intervals in nanoseconds.
    samples: Box<[u64]>,
    head: usize,
    len: usize,
    /// Exact running sums over the ring, so that no drift accumulates over a long run.
    sum: u128,
    sum_sq: u128,
    mean_s: f64,
    sigma_s: f64,
    /// `t*`, the silence at which phi reaches the threshold; `None` if it never does.
    suspect_after: Option<Duration>,
    last_arrival: Time,
    verdict: Verdict,
    events: EventQueue,
}

impl PhiAccrual {
    /// A detector created at `now`, trusting, with a virtual heartbeat at `now` and a history
    /// seeded from `interval`. `miss_threshold` is ignored (see the module docs).
    pub fn new(now: Time, interval: Duration, miss_threshold: u32, config: PhiConfig) -> Self {
        let _ = miss_threshold;
        let cap = config.max_sample_size.clamp(1, MAX_SAMPLES);
        let mut d = PhiAccrual {
            config,
            interval,
            y_star: y_star(config.threshold),
            samples: vec![0; cap].into_boxed_slice(),
            head: 0,
            len: 0,
            sum: 0,
            sum_sq: 0,
            mean_s: 0.0,
            sigma_s: 0.0,
            suspect_after: None,
            last_arrival: now,
            verdict: Verdict::Trust,
            events: EventQueue::default(),
        };
        d.seed(interval);
        d
    }

    /// phi after a silence up to `now`, for reports and traces.
    pub fn phi(&self, now: Time) -> f64 {
        let t = (now - self.last_arrival).as_secs_f64();
        phi_of(self.y(t))
    }

    /// The silence after which the detector suspects, with the current history; `None` if phi
    /// can never reach the threshold. This is the worst-case detection time if the peer crashes
    /// right after its last heartbeat.
    pub fn suspect_after(&self) -> Option<Duration> {
        self.suspect_after
    }

    /// The estimated mean inter-arrival time μ.
    pub fn mean(&self) -> Duration {
        Duration::from_secs_f64(self.mean_s)
    }

    /// The standard deviation in use, `max(σ, min_std_deviation)`.
    pub fn std_deviation(&self) -> Duration {
        Duration::from_secs_f64(self.sigma_s)
    }

    fn y(&self, t: f64) -> f64 {
        (t - self.mean_s - self.config.acceptable_heartbeat_pause.as_secs_f64()) / self.sigma_s
    }

    fn seed(&mut self, interval: Duration) {
        let eta = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        let quarter = eta / 4;
        self.head = 0;
        self.len = 0;
        self.sum = 0;
        self.sum_sq = 0;
        self.push(eta - quarter);
        self.push(eta.saturating_add(quarter));
        self.update_estimate();
    }

    #[inline]
    fn push(&mut self, interval_ns: u64) {
        let x = interval_ns.min(MAX_INTERVAL_NS);
        let cap = self.samples.len();
        if self.len == cap {
            let old = u128::from(self.samples[self.head]);
            self.sum -= old;
            self.sum_sq -= old * old;
            self.samples[self.head] = x;
            self.head = (self.head + 1) % cap;
        } else {
            self.samples[(self.head + self.len) % cap] = x;
            self.len += 1;
        }
        let x = u128::from(x);
        self.sum += x;
        self.sum_sq += x * x;
    }

    #[inline]
    fn update_estimate(&mut self) {
        let n = self.len.max(1) as f64;
        let mean_ns = self.sum as f64 / n;
        // E[x²] − E[x]² in f64 from exact integer sums; rounding can make it slightly negative.
        let var_ns = (self.sum_sq as f64 / n - mean_ns * mean_ns).max(0.0);
        self.mean_s = mean_ns * 1e-9;
        self.sigma_s = (var_ns.sqrt() * 1e-9)
            .max(self.config.min_std_deviation.as_secs_f64())
            .max(MIN_SIGMA_S);
        let t = self.mean_s
            + self.config.acceptable_heartbeat_pause.as_secs_f64()
            + self.sigma_s * self.y_star;
        self.suspect_after = if t <= 0.0 {
            Some(Duration::ZERO)
        } else {
            // +inf (threshold +inf) or beyond Duration's range: phi never gets there.
            Duration::try_from_secs_f64(t).ok()
        };
    }
}

/// phi for a standardized silence `y`: softplus(g(y)) / ln 10, stable in both tails.
fn phi_of(y: f64) -> f64 {
    let g = y * (B + A * y * y);
    let softplus = if g > 0.0 {
        g + (-g).exp().ln_1p()
    } else {
        g.exp().ln_1p()
    };
    softplus / std::f64::consts::LN_10
}

/// The standardized silence at which phi equals `threshold` (see the module docs).
fn y_star(threshold: f64) -> f64 {
    if threshold.is_nan() || threshold <= 0.0 {
        // phi is always positive, so such a threshold is reached at once.
        return f64::NEG_INFINITY;
    }
    let s = threshold * std::f64::consts::LN_10;
    // Inverse softplus ln(e^s − 1), written to stay accurate for small and large s.
    let g = s + (-(-s).exp_m1()).ln();
    // Depressed cubic y³ + p·y − q = 0 with p > 0: one real root. Cardano's formula in the form
    // u − p/(3u), taken on |q| and mirrored, avoids the cancellation of the textbook form.
    let p = B / A;
    let q = g / A;
    let h = q.abs() / 2.0;
    let u = (h + (h * h + (p / 3.0).powi(3)).sqrt()).cbrt();
    let root = if u.is_infinite() {
        u
    } else {
        u - p / (3.0 * u)
    };
    root.copysign(q)
}

impl Detector for PhiAccrual {
    #[inline]
    fn handle_heartbeat(&mut self, now: Time) {
        // A reordered, older timestamp carries no interval information.
        if now >= self.last_arrival {
            let gap = u64::try_from((now - self.last_arrival).as_nanos()).unwrap_or(u64::MAX);
            self.push(gap);
            self.update_estimate();
            self.last_arrival = now;
        }
        if self.verdict == Verdict::Suspect {
            self.verdict = Verdict::Trust;
            self.events.push(DetectorEvent::Trust);
        }
    }

    #[inline]
    fn handle_timeout(&mut self, now: Time) {
        if self.verdict == Verdict::Trust
            && let Some(after) = self.suspect_after
        {
            let silent = now - self.last_arrival;
            if silent >= after {
                self.verdict = Verdict::Suspect;
                self.events.push(DetectorEvent::Suspect { silent });
            }
        }
    }

    #[inline]
    fn poll_timeout(&self) -> Option<Time> {
        match self.verdict {
            Verdict::Trust => self.suspect_after.map(|after| self.last_arrival + after),
            Verdict::Suspect => None,
        }
    }

    #[inline]
    fn poll_event(&mut self) -> Option<DetectorEvent> {
        self.events.pop()
    }

    #[inline]
    fn verdict(&self) -> Verdict {
        self.verdict
    }

    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32) {
        let _ = miss_threshold;
        self.interval = interval;
        self.last_arrival = now;
        self.seed(interval);
        // Treated as a heartbeat, as the calling protocol says.
        if self.verdict == Verdict::Suspect {
            self.verdict = Verdict::Trust;
            self.events.push(DetectorEvent::Trust);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proto::detector::test_util::{ETA, at, drain};

    /// phi by bisection on the definition, to check the closed form against.
    fn y_star_by_bisection(threshold: f64) -> f64 {
        let (mut lo, mut hi) = (-100.0f64, 100.0f64);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if phi_of(mid) < threshold {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    #[test]
    fn closed_form_crossing_matches_bisection() {
        for threshold in [0.01, 0.3, 1.0, 3.0, 8.0, 12.0, 16.0, 100.0] {
            let closed = y_star(threshold);
            let bisected = y_star_by_bisection(threshold);
            assert!(
                (closed - bisected).abs() < 1e-9,
                "threshold {threshold}: {closed} vs {bisected}"
            );
            assert!((phi_of(closed) - threshold).abs() < 1e-9 * threshold.max(1.0));
        }
    }

    #[test]
    fn phi_matches_the_logistic_approximation_where_it_is_well_conditioned() {
        for y in [-3.0f64, -1.0, 0.0, 0.5, 2.0, 4.0] {
            let e = (-y * (B + A * y * y)).exp();
            let naive = -(1.0 - 1.0 / (1.0 + e)).log10();
            assert!((phi_of(y) - naive).abs() < 1e-9, "y {y}");
        }
    }

    #[test]
    fn phi_is_finite_and_monotone_in_both_tails() {
        let mut prev = 0.0;
        for y in [-1e30, -1e10, -40.0, -5.0, 0.0, 5.0, 40.0, 1e10, 1e30] {
            let phi = phi_of(y);
            assert!(phi.is_finite() && phi >= 0.0, "y {y}: {phi}");
            assert!(phi >= prev);
            prev = phi;
        }
    }

    #[test]
    fn fresh_detector_uses_interval_as_first_estimate() {
        let d = PhiAccrual::new(at(0), ETA, 3, PhiConfig::default());
        assert_eq!(d.mean(), ETA);
        assert_eq!(d.std_deviation(), Duration::from_millis(250));
        let t = 1.0 + 3.0 + 0.25 * y_star(8.0);
        let expect = Duration::from_secs_f64(t);
        assert_eq!(d.suspect_after(), Some(expect));
        assert_eq!(d.poll_timeout(), Some(at(0) + expect));
    }

    #[test]
    fn phi_suspects_exactly_at_poll_timeout() {
        let mut d = PhiAccrual::new(at(0), ETA, 3, PhiConfig::default());
        for i in 1..=20 {
            d.handle_heartbeat(at(i * 1000));
        }
        let deadline = d.poll_timeout().unwrap();
        assert!(d.phi(deadline) >= 8.0 - 1e-6);
        let before = Time::from_epoch(deadline.since_epoch() - Duration::from_micros(1));
        assert!(d.phi(before) < 8.0);
        d.handle_timeout(before);
        assert_eq!(d.verdict(), Verdict::Trust);
        d.handle_timeout(deadline);
        assert_eq!(d.verdict(), Verdict::Suspect);
        assert_eq!(
            drain(&mut d),
            [DetectorEvent::Suspect {
                silent: deadline - at(20_000)
            }]
        );
        assert_eq!(d.poll_timeout(), None);
        d.handle_heartbeat(deadline + ETA);
        assert_eq!(d.verdict(), Verdict::Trust);
        assert_eq!(drain(&mut d), [DetectorEvent::Trust]);
    }

    #[test]
    fn regular_heartbeats_shrink_sigma_to_the_floor() {
        let mut d = PhiAccrual::new(at(0), ETA, 3, PhiConfig::default());
        for i in 1..=2000 {
            d.handle_heartbeat(at(i * 1000));
        }
        // The two seed samples have left the 1000-sample window.
        assert_eq!(d.mean(), ETA);
        assert_eq!(d.std_deviation(), Duration::from_millis(100));
    }

    #[test]
    fn zero_variance_with_zero_floor_stays_finite() {
        let config = PhiConfig {
            min_std_deviation: Duration::ZERO,
            acceptable_heartbeat_pause: Duration::ZERO,
            max_sample_size: 1,
            ..PhiConfig::default()
        };
        let mut d = PhiAccrual::new(at(0), ETA, 3, config);
        d.handle_heartbeat(at(1000));
        for ms in [1000, 1500, 2000, 2001, 10_000, u64::MAX / 2] {
            let phi = d.phi(at(ms));
            assert!(phi.is_finite(), "at {ms}: {phi}");
        }
        let deadline = d.poll_timeout().unwrap();
        assert!(deadline >= at(2000) && deadline <= at(2001));
    }

    #[test]
    fn huge_gaps_do_not_break_the_estimate() {
        let mut d = PhiAccrual::new(at(0), ETA, 3, PhiConfig::default());
        d.handle_heartbeat(Time::from_epoch(Duration::from_secs(u64::MAX / 4)));
        d.handle_heartbeat(Time::from_epoch(Duration::MAX));
        assert!(d.phi(Time::from_epoch(Duration::MAX)).is_finite());
        assert!(d.suspect_after().is_some());
        d.handle_timeout(Time::from_epoch(Duration::MAX));
    }

    #[test]
    fn degenerate_thresholds_neither_panic_nor_misbehave() {
        let mut now_ = PhiAccrual::new(
            at(0),
            ETA,
            3,
            PhiConfig {
                threshold: f64::NAN,
                ..PhiConfig::default()
            },
        );
        assert_eq!(now_.poll_timeout(), Some(at(0)));
        now_.handle_timeout(at(0));
        assert_eq!(now_.verdict(), Verdict::Suspect);
        let never = PhiAccrual::new(
            at(0),
            ETA,
            3,
            PhiConfig {
                threshold: f64::INFINITY,
                ..PhiConfig::default()
            },
        );
        assert_eq!(never.poll_timeout(), None);
    }

    #[test]
    fn set_params_reseeds_the_history_and_rearms() {
        let mut d = PhiAccrual::new(at(0), ETA, 3, PhiConfig::default());
        for i in 1..=10 {
            d.handle_heartbeat(at(i * 1000));
        }
        d.set_params(at(10_500), Duration::from_millis(200), 5);
        assert_eq!(d.mean(), Duration::from_millis(200));
        assert_eq!(d.std_deviation(), Duration::from_millis(100));
        let t = 0.2 + 3.0 + 0.1 * y_star(8.0);
        assert_eq!(
            d.poll_timeout(),
            Some(at(10_500) + Duration::from_secs_f64(t))
        );
    }
}
