//! The phi accrual failure detector (Hayashibara, Défago, Yared, Katayama, "The φ Accrual Failure
//! Detector", SRDS 2004), with the parameter values, normal-CDF approximation and history rules
//! of Akka's `PhiAccrualFailureDetector`.
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
//! This is the approximation Akka uses (its error in F is at most about 1.4·10⁻⁴), and the same
//! function: Akka evaluates `−log10(e/(1 + e))` or `−log10(1 − 1/(1 + e))` with `e = e^(−g)`
//! depending on the sign of `y`, both of which equal `ln(1 + e^g) / ln 10`. The last form is the
//! softplus of `g`, evaluated as `g + ln(1 + e^−g)` for `g > 0` and `ln(1 + e^g)` otherwise, so it
//! is finite and accurate in both tails: no `1 − F` that rounds to zero for long silences (phi
//! would be +inf) and no `log10(1)` cancellation for short ones.
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
//! # The history
//!
//! As in Akka, the history starts with two bootstrap samples `η − η/4` and `η + η/4` (Akka's
//! "first heartbeat estimate", here the heartbeat interval η): mean η and standard deviation η/4.
//! Real intervals are appended after them, and the oldest samples (bootstrap first) leave once
//! `max_sample_size` are held. Mean and variance come from exact integer running sums over that
//! window, updated as a sample enters and as one leaves.
//!
//! - The first heartbeat records no interval: it only sets the last arrival. Neither the
//!   detector's creation nor [`Detector::set_params`] is a heartbeat, so the time from either to
//!   the next arrival is never a sample.
//! - An interval is recorded only if phi at the arrival instant, computed before the arrival
//!   changes anything, is below the threshold, i.e. only if the silence it ends is shorter than
//!   `t*`. A heartbeat that ends an outage (or arrives exactly at the deadline) still restores
//!   trust and restarts the silence, but its interval stays out of the statistics, so one outage
//!   does not widen σ and slow the detection of every later crash. Akka and Pekko do the same.
//!
//! # Before the first heartbeat: one deliberate difference from Akka
//!
//! Akka's detector reports phi 0 until the first heartbeat, so a peer that never sends one is
//! never suspected. Here the handshake is the sign of life: until the first heartbeat, silence
//! is measured from the detector's creation (or from the last [`Detector::set_params`]) against
//! the bootstrap distribution, and a peer that goes silent right after the handshake is suspected
//! after `η + pause + (η/4)·y*`. Only the timing differs; the history is as in Akka.
//!
//! Other differences are of resolution only: Akka measures in whole milliseconds, this detector
//! in nanoseconds.
//!
//! # Parameters η and k
//!
//! The heartbeat interval η gives the bootstrap samples. The miss threshold k is ignored by the
//! detector itself, and phi's threshold does not depend on it. What k means for phi is decided
//! where the configuration is built (the `[heartbeat]` stack configuration, `mcpsim sweep`): a
//! pairing such as `phi:1s/3` is η = 1 s with an acceptable heartbeat pause of (k − 1)·η = 2 s
//! ([`PhiConfig::pause_for_miss_threshold`]) unless the configuration gives the pause, so that
//! phi tolerates about as many missing heartbeats as k-miss does. [`PhiConfig::default`] itself
//! keeps Akka's 3 s.
//!
//! [`Detector::set_params`] re-arms the detector as if the handshake had just happened: silence
//! counts from `now`, the verdict is trust, and the next heartbeat records no interval. If η
//! changes, the history is discarded and re-seeded from the new η, because intervals measured
//! under the old η say nothing about the new one; if η is unchanged (only k changed, or the same
//! parameters were sent again), the history is kept, since its intervals still describe the
//! peer.

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
    /// k-miss: (k − 1)·η of silence beyond the expected interval. The threshold is unaffected.
    pub fn pause_for_miss_threshold(interval: Duration, miss_threshold: u32) -> Duration {
        interval * miss_threshold.saturating_sub(1)
    }
}

/// The last `capacity` inter-arrival intervals, in nanoseconds, with exact running sums.
#[derive(Clone, Debug)]
struct History {
    /// Ring buffer; the oldest sample is at `head`.
    samples: Box<[u64]>,
    head: usize,
    len: usize,
    /// Sum and sum of squares of the samples held, kept exact so that no drift accumulates
    /// over a long run.
    sum: u128,
    sum_sq: u128,
}

impl History {
    fn new(capacity: usize) -> Self {
        History {
            samples: vec![0; capacity.clamp(1, MAX_SAMPLES)].into_boxed_slice(),
            head: 0,
            len: 0,
            sum: 0,
            sum_sq: 0,
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.sum = 0;
        self.sum_sq = 0;
    }

    /// Appends a sample, dropping the oldest one (from the sums too) if the window is full.
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

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// The mean of the samples held (0 if there are none).
    fn mean(&self) -> f64 {
        self.sum as f64 / self.len.max(1) as f64
    }

    /// The population variance of the samples held, `E[x²] − E[x]²`.
    fn variance(&self) -> f64 {
        let n = self.len.max(1) as f64;
        let mean = self.mean();
        // In f64 from exact integer sums; rounding can make it slightly negative.
        (self.sum_sq as f64 / n - mean * mean).max(0.0)
    }
}

/// The phi accrual detector. See the module docs for the model, the suspicion instant and what
/// enters the history.
#[derive(Clone, Debug)]
pub struct PhiAccrual {
    config: PhiConfig,
    interval: Duration,
    /// `y*`: where phi crosses the threshold, in standard deviations past `μ + pause`.
    y_star: f64,
    history: History,
    mean_s: f64,
    sigma_s: f64,
    /// `t*`, the silence at which phi reaches the threshold; `None` if it never does.
    suspect_after: Option<Duration>,
    /// Where silence is measured from: the last heartbeat, or, until a heartbeat follows them,
    /// the creation or the last `set_params`.
    last_arrival: Time,
    /// Whether `last_arrival` is a heartbeat, so that the next arrival ends a real interval.
    last_is_heartbeat: bool,
    verdict: Verdict,
    events: EventQueue,
}

impl PhiAccrual {
    /// The events not yet polled.
    #[inline]
    pub(crate) fn events(&self) -> &EventQueue {
        &self.events
    }

    /// A detector created at `now`, trusting, with a history seeded from `interval`. Silence
    /// counts from `now`, but `now` is not a heartbeat: the first heartbeat records no interval.
    /// `miss_threshold` is ignored (see the module docs).
    pub fn new(now: Time, interval: Duration, miss_threshold: u32, config: PhiConfig) -> Self {
        let _ = miss_threshold;
        let mut d = PhiAccrual {
            config,
            interval,
            y_star: y_star(config.threshold),
            history: History::new(config.max_sample_size),
            mean_s: 0.0,
            sigma_s: 0.0,
            suspect_after: None,
            last_arrival: now,
            last_is_heartbeat: false,
            verdict: Verdict::Trust,
            events: EventQueue::default(),
        };
        d.seed(interval);
        d
    }

    /// phi after a silence up to `now`, for reports and traces. Before the first heartbeat the
    /// silence counts from the creation or the last `set_params` (Akka reports 0 there).
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

    /// Whether phi at `now` is below the threshold: the same comparison `handle_timeout` makes.
    fn available_at(&self, now: Time) -> bool {
        self.suspect_after
            .is_none_or(|after| now - self.last_arrival < after)
    }

    /// Replaces the history with the two bootstrap samples for `interval`.
    fn seed(&mut self, interval: Duration) {
        let eta = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        let quarter = eta / 4;
        self.history.clear();
        self.history.push(eta - quarter);
        self.history.push(eta.saturating_add(quarter));
        self.update_estimate();
    }

    #[inline]
    fn update_estimate(&mut self) {
        self.mean_s = self.history.mean() * 1e-9;
        self.sigma_s = (self.history.variance().sqrt() * 1e-9)
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

    fn trust(&mut self) {
        if self.verdict == Verdict::Suspect {
            self.verdict = Verdict::Trust;
            self.events.push(DetectorEvent::Trust);
        }
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
    // Cubed by multiplication: `powi`'s rounding may differ between builds (its docs say so),
    // and this root decides when the detector suspects.
    let c = p / 3.0;
    let u = (h + (h * h + c * c * c).sqrt()).cbrt();
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
            // Phi is judged before this arrival changes anything: an interval that ends with
            // phi at or over the threshold is an outage, not a sample of the peer's rhythm.
            if self.last_is_heartbeat && self.available_at(now) {
                let gap = u64::try_from((now - self.last_arrival).as_nanos()).unwrap_or(u64::MAX);
                self.history.push(gap);
                self.update_estimate();
            }
            self.last_arrival = now;
            self.last_is_heartbeat = true;
        }
        self.trust();
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

    /// Re-arms at `now` without recording an interval; re-seeds the history only if `interval`
    /// changed (see the module docs).
    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32) {
        let _ = miss_threshold;
        if interval != self.interval {
            self.interval = interval;
            self.seed(interval);
        }
        self.last_arrival = now;
        self.last_is_heartbeat = false;
        self.trust();
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

    /// The configuration of the tests in Akka's `AccrualFailureDetectorSpec`: threshold 8, 1000
    /// samples, min σ 100 ms, no acceptable pause; its first heartbeat estimate of 1 s is our η.
    fn akka_spec_config() -> PhiConfig {
        PhiConfig {
            acceptable_heartbeat_pause: Duration::ZERO,
            ..PhiConfig::default()
        }
    }

    /// phi after a silence `time_diff` when intervals are N(`mean`, `std_dev`), in any one unit.
    fn phi_for(time_diff: f64, mean: f64, std_dev: f64) -> f64 {
        phi_of((time_diff - mean) / std_dev)
    }

    /// The value of the normal CDF that a phi stands for.
    fn cdf(phi: f64) -> f64 {
        1.0 - 10f64.powf(-phi)
    }

    fn within(x: f64, expected: f64, tolerance: f64) -> bool {
        (x - expected).abs() <= tolerance
    }

    /// Whether the detector trusts its peer at `now`, once `handle_timeout` has seen `now`.
    /// This is Akka's `isAvailable` (phi below the threshold), which it is checked against.
    fn available(d: &mut PhiAccrual, now: Time) -> bool {
        d.handle_timeout(now);
        let trusting = d.verdict() == Verdict::Trust;
        assert_eq!(trusting, d.phi(now) < d.config.threshold, "at {now:?}");
        trusting
    }

    /// A detector created at 0 ms that heard heartbeats at each of `ms`.
    fn heard(config: PhiConfig, ms: impl IntoIterator<Item = u64>) -> PhiAccrual {
        let mut d = PhiAccrual::new(at(0), ETA, 3, config);
        for ms in ms {
            d.handle_heartbeat(at(ms));
        }
        d
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
            if y > 0.0 {
                let upper_tail = -(e / (1.0 + e)).log10();
                assert!((phi_of(y) - upper_tail).abs() < 1e-9, "y {y}");
            }
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

    // Akka's AccrualFailureDetectorSpec, expectation by expectation.

    #[test]
    fn phi_stands_for_a_good_enough_normal_cdf() {
        for (time_diff, expected) in [
            (0.0, 0.5),
            (6.0, 0.7257),
            (15.0, 0.9332),
            (20.0, 0.97725),
            (25.0, 0.99379),
            (35.0, 0.99977),
        ] {
            let f = cdf(phi_for(time_diff, 0.0, 10.0));
            assert!(within(f, expected, 0.001), "{time_diff}: {f}");
        }
        assert!(within(cdf(phi_for(40.0, 0.0, 10.0)), 0.99997, 0.0001));
        for x in 0..40 {
            let x = f64::from(x);
            assert!(phi_for(x, 0.0, 10.0) < phi_for(x + 1.0, 0.0, 10.0));
        }
        assert!(within(cdf(phi_for(22.0, 20.0, 3.0)), 0.7475, 0.001));
    }

    #[test]
    fn phi_handles_outliers_without_losing_precision() {
        assert!(within(phi_for(10.0, 0.0, 1.0), 38.0, 1.0));
        assert_eq!(phi_for(-25.0, 0.0, 1.0), 0.0);
    }

    #[test]
    fn phi_has_realistic_values_for_a_one_second_mean() {
        for (time_diff, expected) in [
            (0.0, 0.0),
            (500.0, 0.1),
            (1000.0, 0.3),
            (1200.0, 1.6),
            (1400.0, 4.7),
            (1600.0, 10.8),
            (1700.0, 15.3),
        ] {
            let phi = phi_for(time_diff, 1000.0, 100.0);
            assert!(within(phi, expected, 0.1), "{time_diff} ms: {phi}");
        }
        // A larger standard deviation gives a lower phi.
        assert!(phi_for(1100.0, 1000.0, 500.0) < phi_for(1100.0, 1000.0, 100.0));
    }

    #[test]
    fn phi_is_about_zero_at_creation_but_a_peer_that_never_heartbeats_is_suspected() {
        // Akka reports exactly 0 until the first heartbeat, and so never suspects a peer that
        // sends none. Here silence counts from the creation (see the module docs).
        let mut d = PhiAccrual::new(at(0), ETA, 3, akka_spec_config());
        assert!(d.phi(at(0)) < 1e-4);
        assert_eq!(d.phi(at(0)), d.phi(at(0)));
        let after = Duration::from_secs_f64(1.0 + 0.25 * y_star(8.0));
        assert_eq!(d.poll_timeout(), Some(at(0) + after));
        assert!(available(&mut d, at(2000)));
        d.handle_timeout(at(0) + after);
        assert_eq!(d.verdict(), Verdict::Suspect);
        assert_eq!(drain(&mut d), [DetectorEvent::Suspect { silent: after }]);
        assert_eq!(d.history.len(), 2, "only the bootstrap samples");
    }

    #[test]
    fn one_heartbeat_gives_phi_from_the_first_heartbeat_estimate() {
        let d = heard(akka_spec_config(), [0]);
        assert!(within(d.phi(at(1000)), 0.3, 0.2));
        assert!(within(d.phi(at(2000)), 4.5, 0.3));
        assert!(d.phi(at(3000)) > 15.0);
    }

    #[test]
    fn phi_is_positive_after_the_first_and_after_the_second_heartbeat() {
        let mut d = heard(akka_spec_config(), [0]);
        assert!(d.phi(at(100)) > 0.0);
        d.handle_heartbeat(at(200));
        assert!(d.phi(at(300)) > 0.0);
    }

    #[test]
    fn phi_is_about_zero_right_after_a_heartbeat_and_grows_with_silence() {
        let d = heard(akka_spec_config(), (0..=20).map(|i| i * 1000));
        assert!(d.phi(at(20_000)) < 1e-6);
        for ms in (20_000..25_000).step_by(100) {
            assert!(d.phi(at(ms)) < d.phi(at(ms + 100)), "at {ms} ms");
        }
    }

    #[test]
    fn a_series_of_heartbeats_leaves_the_peer_available() {
        let mut d = heard(akka_spec_config(), [0, 1000, 1100]);
        assert!(available(&mut d, at(1200)));
    }

    #[test]
    fn missed_heartbeats_mark_the_peer_dead() {
        let config = PhiConfig {
            threshold: 3.0,
            ..akka_spec_config()
        };
        let mut d = heard(config, [0, 1000, 1100]);
        assert!(available(&mut d, at(1200)));
        assert!(!available(&mut d, at(8200)));
    }

    #[test]
    fn a_peer_that_heartbeats_again_after_a_detected_failure_is_available_until_it_pauses_again() {
        // 1000 heartbeats a second apart, a 5 minute pause, then a 7 s pause that must be
        // detected again: it is only if the 5 minutes stayed out of the history.
        let config = PhiConfig {
            acceptable_heartbeat_pause: Duration::from_secs(3),
            ..akka_spec_config()
        };
        let mut d = heard(config, (0..1000).map(|i| i * 1000));
        let last = 999_000;
        assert!(!available(&mut d, at(last + 300_000)));
        d.handle_heartbeat(at(last + 300_100));
        assert!(available(&mut d, at(last + 301_000)));
        d.handle_heartbeat(at(last + 301_100));
        assert!(!available(&mut d, at(last + 308_100)));
        d.handle_heartbeat(at(last + 308_200));
        assert!(available(&mut d, at(last + 309_100)));
        d.handle_heartbeat(at(last + 309_200));
        assert!(available(&mut d, at(last + 310_100)));
        assert_eq!(
            drain(&mut d),
            [
                DetectorEvent::Suspect {
                    silent: Duration::from_secs(300)
                },
                DetectorEvent::Trust,
                DetectorEvent::Suspect {
                    silent: Duration::from_secs(7)
                },
                DetectorEvent::Trust,
            ]
        );
        assert!(d.mean() < Duration::from_millis(1001), "{:?}", d.mean());
    }

    #[test]
    fn the_acceptable_pause_accepts_some_missing_heartbeats() {
        let config = PhiConfig {
            acceptable_heartbeat_pause: Duration::from_secs(3),
            ..akka_spec_config()
        };
        let mut d = heard(config, [0, 1000, 2000, 3000]);
        assert!(available(&mut d, at(7000)));
        d.handle_heartbeat(at(8000));
        assert!(available(&mut d, at(9000)));
    }

    #[test]
    fn silence_beyond_the_acceptable_pause_fails() {
        let config = PhiConfig {
            acceptable_heartbeat_pause: Duration::from_secs(3),
            ..akka_spec_config()
        };
        let mut d = heard(config, [0, 1000, 2000, 3000, 4000, 5000]);
        assert!(available(&mut d, at(5500)));
        d.handle_heartbeat(at(6000));
        assert!(!available(&mut d, at(11_000)));
    }

    #[test]
    fn only_the_last_max_sample_size_intervals_count() {
        let config = PhiConfig {
            max_sample_size: 3,
            ..akka_spec_config()
        };
        let mut d = heard(config, [0, 100, 200, 300]);
        let phi_at_100_ms_intervals = d.phi(at(400));
        for ms in [1000, 1500, 2000, 2500] {
            d.handle_heartbeat(at(ms));
        }
        // The 100 ms intervals have left the window, and the 700 ms silence that ended at
        // 1000 ms (phi over 8) never entered it.
        let phi_at_500_ms_intervals = d.phi(at(3000));
        assert!(within(
            phi_at_500_ms_intervals,
            phi_at_100_ms_intervals,
            0.001
        ));
        assert_eq!(d.mean(), Duration::from_millis(500));
    }

    #[test]
    fn history_mean_and_variance_are_correct() {
        let mut h = History::new(20);
        for x in [100, 200, 125, 340, 130] {
            h.push(x);
        }
        assert!(within(h.mean(), 179.0, 1e-5));
        assert!(within(h.variance(), 7584.0, 1e-5));
    }

    #[test]
    fn one_sample_has_zero_variance() {
        let mut h = History::new(600);
        h.push(1000);
        assert!(within(h.variance(), 0.0, 1e-5));
    }

    #[test]
    fn the_history_is_capped_by_max_sample_size() {
        let mut h = History::new(3);
        for x in [100, 110, 90] {
            h.push(x);
        }
        assert!(within(h.mean(), 100.0, 1e-5));
        assert!(within(h.variance(), 66.6666667, 1e-5));
        h.push(140);
        assert!(within(h.mean(), 113.333333, 1e-5));
        assert!(within(h.variance(), 422.222222, 1e-5));
        h.push(80);
        assert!(within(h.mean(), 103.333333, 1e-5));
        assert!(within(h.variance(), 688.88888889, 1e-5));
    }

    // Our own behaviour.

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
    fn the_first_heartbeat_records_no_interval() {
        let mut d = PhiAccrual::new(at(0), ETA, 3, PhiConfig::default());
        let bootstrap = d.suspect_after();
        d.handle_heartbeat(at(700));
        assert_eq!(d.history.len(), 2);
        assert_eq!(d.suspect_after(), bootstrap);
        assert_eq!(d.poll_timeout(), Some(at(700) + bootstrap.unwrap()));
        d.handle_heartbeat(at(1700));
        assert_eq!(d.history.len(), 3);
        assert_eq!(d.mean(), ETA);
    }

    #[test]
    fn an_outage_does_not_poison_the_statistics() {
        // Heartbeats every second from 1 s to 10 s, a 10 s outage, then every second from 20 s
        // to 28 s. Had the 10 s interval been recorded (and the creation counted as a
        // heartbeat), μ would be 1,429 ms and σ 1,918 ms, and a crash right after the 28 s
        // heartbeat would be suspected after 14.45 s instead of 4.52 s.
        let config = PhiConfig::default();
        let mut d = heard(config, (1..=10).chain(20..=28).map(|s| s * 1000));
        assert_eq!(
            drain(&mut d),
            [],
            "the outage was never suspected: no timeout was run"
        );
        assert_eq!(d.history.len(), 2 + 9 + 8);
        assert_eq!(d.mean(), ETA);
        // The bootstrap samples' spread over 19 samples: √(2·250²/19) ≈ 81 ms, floored.
        let sigma_ms = d.history.variance().sqrt() * 1e-6;
        assert!(within(sigma_ms, 81.11, 0.01), "{sigma_ms}");
        assert_eq!(d.std_deviation(), Duration::from_millis(100));

        // The same heartbeats without the outage leave the same history.
        let steady = heard(config, (1..=18).map(|s| s * 1000));
        assert_eq!(d.suspect_after(), steady.suspect_after());
        let after = d.suspect_after().unwrap();
        assert!(within(after.as_secs_f64(), 4.5226, 0.0001), "{after:?}");

        // The peer crashes after its 28 s heartbeat.
        let deadline = d.poll_timeout().unwrap();
        assert_eq!(deadline, at(28_000) + after);
        d.handle_timeout(deadline);
        assert_eq!(drain(&mut d), [DetectorEvent::Suspect { silent: after }]);
    }

    #[test]
    fn a_heartbeat_exactly_at_the_deadline_rearms_but_records_no_interval() {
        let mut d = heard(PhiConfig::default(), [1000, 2000, 3000]);
        let samples = d.history.len();
        let deadline = d.poll_timeout().unwrap();
        d.handle_heartbeat(deadline);
        d.handle_timeout(deadline);
        assert_eq!(d.verdict(), Verdict::Trust);
        assert_eq!(d.history.len(), samples, "phi was at the threshold");
        assert_eq!(
            d.poll_timeout(),
            Some(deadline + d.suspect_after().unwrap())
        );
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
        let d = heard(config, [1000, 2000]);
        for ms in [2000, 2500, 3000, 3001, 10_000, u64::MAX / 2] {
            let phi = d.phi(at(ms));
            assert!(phi.is_finite(), "at {ms}: {phi}");
        }
        let deadline = d.poll_timeout().unwrap();
        assert!(deadline >= at(3000) && deadline <= at(3001));
    }

    /// A hundred years: gaps of a century, then of the centuries up to the last instant a
    /// [`Time`] holds (`Duration::MAX` saturates there).
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

    #[test]
    fn huge_gaps_do_not_break_the_estimate() {
        // Only a threshold phi never reaches lets such gaps into the history.
        let config = PhiConfig {
            threshold: f64::INFINITY,
            ..PhiConfig::default()
        };
        let mut d = heard(config, [0]);
        d.handle_heartbeat(Time::from_epoch(CENTURY));
        d.handle_heartbeat(Time::from_epoch(Duration::MAX));
        assert_eq!(d.history.len(), 4);
        assert!(d.mean() < Duration::from_nanos(MAX_INTERVAL_NS));
        assert!(d.phi(Time::from_epoch(Duration::MAX)).is_finite());
        assert_eq!(d.suspect_after(), None);
        d.handle_timeout(Time::from_epoch(Duration::MAX));

        let mut d = heard(PhiConfig::default(), [0]);
        d.handle_heartbeat(Time::from_epoch(CENTURY));
        d.handle_heartbeat(Time::from_epoch(Duration::MAX));
        assert_eq!(d.mean(), ETA, "gaps with phi over 8 stay out");
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
        assert_eq!(d.history.len(), 2);
        assert_eq!(d.mean(), Duration::from_millis(200));
        assert_eq!(d.std_deviation(), Duration::from_millis(100));
        let t = 0.2 + 3.0 + 0.1 * y_star(8.0);
        assert_eq!(
            d.poll_timeout(),
            Some(at(10_500) + Duration::from_secs_f64(t))
        );
        // The 100 ms from set_params to the next heartbeat is no interval.
        d.handle_heartbeat(at(10_600));
        assert_eq!(d.history.len(), 2);
        d.handle_heartbeat(at(10_800));
        assert_eq!(d.history.len(), 3);
    }

    #[test]
    fn set_params_with_an_unchanged_interval_keeps_the_history_and_adds_no_sample() {
        let mut d = heard(PhiConfig::default(), (1..=10).map(|s| s * 1000));
        let (samples, after) = (d.history.len(), d.suspect_after());
        d.handle_timeout(at(20_000));
        assert_eq!(d.verdict(), Verdict::Suspect);
        d.set_params(at(20_000), ETA, 5);
        assert_eq!(drain(&mut d).last(), Some(&DetectorEvent::Trust));
        assert_eq!((d.history.len(), d.suspect_after()), (samples, after));
        assert_eq!(d.poll_timeout(), Some(at(20_000) + after.unwrap()));
        d.handle_heartbeat(at(20_300));
        assert_eq!(d.history.len(), samples);
        d.handle_heartbeat(at(21_300));
        assert_eq!(d.history.len(), samples + 1);
    }
}
