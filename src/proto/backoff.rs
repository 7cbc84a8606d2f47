//! Reconnection policy: exponential backoff with jitter, a circuit breaker, and the two combined.
//!
//! This is hand-written rather than taken from a backoff crate because those draw their jitter
//! from a global RNG of their own, which would break the simulator's promise that the same seed
//! gives an identical trace.
//!
//! # Pieces
//!
//! - [`Backoff`]: the delay before the next reconnection attempt. Exponential growth
//!   `min(cap, base · factor^n)` or a fixed delay, optionally jittered. The jitter variants
//!   (full, equal, decorrelated) are the ones defined in the AWS Architecture Blog post
//!   "Exponential Backoff And Jitter" (Marc Brooker, 2015).
//! - [`CircuitBreaker`]: after `failure_threshold` consecutive failures it opens and refuses
//!   attempts for a cooldown, then lets exactly one probe through (half-open).
//! - [`ReconnectPolicy`]: owns one of each and answers "what next?" after a failed attempt.
//!
//! # Invariants
//!
//! - Nothing here reads a clock or a global RNG: time is a [`Time`] argument and every random
//!   draw comes from the `rng` argument, so the same seeded RNG yields the same delays.
//! - Every delay is at most the configured cap, for any attempt count; nothing overflows or
//!   panics. Invalid configurations are refused by the constructors with a [`ConfigError`].
//!
//! # Durations in configuration
//!
//! Configured durations are whole milliseconds (`base_ms`, `cap_ms`, `cooldown_ms`) so that the
//! serialized form is a plain integer in every format. Delays handed out are [`Duration`]s with
//! nanosecond resolution: jitter is drawn uniformly over nanoseconds, not milliseconds.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::time::Time;

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The upper bound of a decorrelated draw is the previous delay times this, as in the AWS post.
const DECORRELATED_MULTIPLIER: u128 = 3;

/// A configuration that would make a [`Backoff`] or [`CircuitBreaker`] meaningless.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("backoff base is zero")]
    ZeroBase,
    #[error("backoff base {base_ms} ms over cap {cap_ms} ms")]
    BaseOverCap { base_ms: u64, cap_ms: u64 },
    #[error("backoff factor {0} is not a finite number >= 1")]
    BadFactor(f64),
    #[error("max_attempts is zero")]
    ZeroMaxAttempts,
    #[error("decorrelated jitter needs an exponential policy")]
    DecorrelatedWithFixed,
    #[error("breaker failure threshold is zero")]
    ZeroFailureThreshold,
    #[error("breaker cooldown is zero")]
    ZeroCooldown,
    #[error("breaker cooldown jitter {jitter} is not in [0, 1]")]
    BadCooldownJitter { jitter: f64 },
}

/// How the un-jittered delay grows with the attempt number `n` (0 for the first delay).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Policy {
    /// Always `base`.
    Fixed,
    /// `min(cap, base · factor^n)`. `factor` must be finite and at least 1.
    Exponential { factor: f64 },
}

/// How a delay is randomised around (below) its un-jittered value `d`.
///
/// Definitions follow the AWS Architecture Blog post "Exponential Backoff And Jitter" (2015).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// `d/2` plus uniform in `[0, d/2]`: never less than half the un-jittered delay.
    Equal,
    /// `min(cap, uniform[base, 3 · previous])`, with `previous = base` before the first delay.
    /// This replaces the policy's growth: the exponential `factor` is not used. It needs an
    /// exponential policy, since a fixed delay that grows is a contradiction.
    Decorrelated,
}

/// Configuration of a [`Backoff`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    pub policy: Policy,
    /// The first un-jittered delay, in milliseconds. Must be non-zero.
    pub base_ms: u64,
    /// No delay is ever longer than this, in milliseconds. Must be at least `base_ms`.
    pub cap_ms: u64,
    pub jitter: Jitter,
    /// How many delays [`Backoff::next_delay`] hands out before it says `None` (give up).
    /// `None` retries forever. `Some(0)` is refused: use no backoff at all instead.
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            policy: Policy::Exponential { factor: 2.0 },
            base_ms: 100,
            cap_ms: 30_000,
            jitter: Jitter::Full,
            max_attempts: Some(10),
        }
    }
}

impl BackoffConfig {
    /// Checks the configuration; [`Backoff::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.base_ms == 0 {
            return Err(ConfigError::ZeroBase);
        }
        if self.base_ms > self.cap_ms {
            return Err(ConfigError::BaseOverCap {
                base_ms: self.base_ms,
                cap_ms: self.cap_ms,
            });
        }
        match self.policy {
            // `!(f >= 1.0)` also catches NaN.
            Policy::Exponential { factor } if !(factor.is_finite() && factor >= 1.0) => {
                return Err(ConfigError::BadFactor(factor));
            }
            Policy::Fixed if self.jitter == Jitter::Decorrelated => {
                return Err(ConfigError::DecorrelatedWithFixed);
            }
            _ => {}
        }
        if self.max_attempts == Some(0) {
            return Err(ConfigError::ZeroMaxAttempts);
        }
        Ok(())
    }

    /// The un-jittered delay before attempt `n` (0-based), in nanoseconds: `min(cap, base · factor^n)`.
    ///
    /// Computed by square-and-multiply in `f64` with an early exit at the cap, so it takes
    /// O(log n) steps, cannot overflow (an infinite intermediate compares as over the cap), and
    /// uses only IEEE multiplication, which rounds identically on every platform (unlike `powf`).
    fn ceiling_nanos(&self, n: u32) -> u128 {
        let base = u128::from(self.base_ms) * NANOS_PER_MILLI;
        let cap = u128::from(self.cap_ms) * NANOS_PER_MILLI;
        let factor = match self.policy {
            Policy::Fixed => return base.min(cap),
            Policy::Exponential { factor } => factor,
        };
        let cap_f = cap as f64;
        let mut value = base as f64;
        let mut square = factor;
        let mut exp = n;
        while exp > 0 {
            if exp & 1 == 1 {
                value *= square;
                // factor >= 1, so the value never shrinks: once at the cap, it stays there.
                // Never NaN: base > 0 and factor is finite, so the worst case is +inf.
                if value >= cap_f {
                    return cap;
                }
            }
            exp >>= 1;
            if exp > 0 {
                square *= square;
            }
        }
        // `as` saturates; the min guards against rounding in the u128 -> f64 -> u128 trip.
        (value as u128).min(cap)
    }
}

/// Reconnection delays for one connection, from a [`BackoffConfig`].
///
/// Call [`Backoff::next_delay`] after each failed attempt and wait that long before the next;
/// call [`Backoff::reset`] once a connection succeeds.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    /// Delays handed out since the last reset.
    attempts: u32,
    /// The last delay handed out, in nanoseconds: decorrelated jitter's state.
    prev_nanos: u128,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Result<Backoff, ConfigError> {
        config.validate()?;
        Ok(Backoff {
            config,
            attempts: 0,
            prev_nanos: Self::base_nanos(&config),
        })
    }

    fn base_nanos(config: &BackoffConfig) -> u128 {
        u128::from(config.base_ms) * NANOS_PER_MILLI
    }

    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// How many delays were handed out since creation or the last [`Backoff::reset`]
    /// (saturates at `u32::MAX` when retrying forever).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the first delay, after a successful connection.
    pub fn reset(&mut self) {
        self.attempts = 0;
        self.prev_nanos = Self::base_nanos(&self.config);
    }

    /// The delay before the next attempt, or `None` once `max_attempts` delays were handed out.
    ///
    /// Draws from `rng` only when jitter is on; with [`Jitter::None`] the RNG is untouched.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<Duration> {
        if let Some(max) = self.config.max_attempts
            && self.attempts >= max
        {
            return None;
        }
        let cap = u128::from(self.config.cap_ms) * NANOS_PER_MILLI;
        let nanos = match self.config.jitter {
            Jitter::None => self.config.ceiling_nanos(self.attempts),
            Jitter::Full => rng.random_range(0..=self.config.ceiling_nanos(self.attempts)),
            Jitter::Equal => {
                let d = self.config.ceiling_nanos(self.attempts);
                let half = d / 2;
                // `d - half` rather than `half` so that an odd `d` is still reachable.
                half + rng.random_range(0..=d - half)
            }
            Jitter::Decorrelated => {
                let base = Self::base_nanos(&self.config);
                // prev >= base always, so the range is never empty.
                let high = self.prev_nanos.saturating_mul(DECORRELATED_MULTIPLIER);
                rng.random_range(base..=high).min(cap)
            }
        };
        self.prev_nanos = nanos;
        self.attempts = self.attempts.saturating_add(1);
        Some(nanos_to_duration(nanos))
    }
}

/// Exact for every value this module produces (at most `u64::MAX` ms).
fn nanos_to_duration(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, which fits in a u32.
    let sub = (nanos % NANOS_PER_SEC) as u32;
    Duration::new(secs, sub)
}

/// Configuration of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Must be non-zero.
    pub failure_threshold: u32,
    /// How long an open breaker refuses attempts at most, in milliseconds. Must be non-zero.
    pub cooldown_ms: u64,
    /// Each opening lasts a duration drawn uniformly from
    /// `[cooldown · (1 − cooldown_jitter), cooldown]`, so that clients refused together do not
    /// all come back together. In [0, 1]; 0 opens for exactly the cooldown.
    pub cooldown_jitter: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown_ms: 30_000,
            cooldown_jitter: 0.5,
        }
    }
}

impl BreakerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::ZeroFailureThreshold);
        }
        if self.cooldown_ms == 0 {
            return Err(ConfigError::ZeroCooldown);
        }
        if !(0.0..=1.0).contains(&self.cooldown_jitter) {
            return Err(ConfigError::BadCooldownJitter {
                jitter: self.cooldown_jitter,
            });
        }
        Ok(())
    }

    fn cooldown(&self) -> Duration {
        Duration::from_millis(self.cooldown_ms)
    }
}

/// Where a [`CircuitBreaker`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum BreakerState {
    /// Attempts go through; consecutive failures are counted.
    Closed,
    /// Attempts are refused until the cooldown has passed.
    Open,
    /// The cooldown has passed; one probe attempt may go through.
    HalfOpen,
}

/// A state change of a [`CircuitBreaker`], for the driver to log or trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct BreakerEvent {
    pub from: BreakerState,
    pub to: BreakerState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Time },
    HalfOpen { probe_in_flight: bool },
}

impl Inner {
    fn state(self) -> BreakerState {
        match self {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// A circuit breaker over connection attempts.
///
/// # Calling protocol
///
/// - [`CircuitBreaker::allow`] right before each attempt; attempt only if it says `true`.
/// - [`CircuitBreaker::record_success`] or [`CircuitBreaker::record_failure`] with each
///   attempt's outcome.
/// - [`CircuitBreaker::handle_timeout`] when `now` reaches [`CircuitBreaker::poll_timeout`]
///   (optional: `allow` makes the same transition).
/// - Drain [`CircuitBreaker::poll_event`] after any of these; events come oldest first.
///
/// # Transitions
///
/// - Closed → Open on the `failure_threshold`-th consecutive failure; the cooldown starts then.
/// - Open → HalfOpen at the first `allow` or `handle_timeout` at or after the cooldown's end.
///   Until then [`CircuitBreaker::state`] still says Open.
/// - HalfOpen lets exactly one probe through: `allow` is `true` once, then `false` until that
///   probe's outcome is recorded. Probe success → Closed; probe failure → Open with a fresh
///   cooldown from the failure's `now`.
/// - A success in any state closes the breaker and clears the failure count: it is evidence the
///   peer is up, even if the attempt started before the breaker opened. A failure recorded while
///   Open (a late result of such an attempt) changes nothing and does not extend the cooldown.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Inner,
    events: VecDeque<BreakerEvent>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Result<CircuitBreaker, ConfigError> {
        config.validate()?;
        Ok(CircuitBreaker {
            config,
            inner: Inner::Closed { failures: 0 },
            events: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    pub fn state(&self) -> BreakerState {
        self.inner.state()
    }

    /// Consecutive failures counted while closed (zero in the other states).
    pub fn consecutive_failures(&self) -> u32 {
        match self.inner {
            Inner::Closed { failures } => failures,
            _ => 0,
        }
    }

    /// When an open breaker becomes half-open; `None` in the other states.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.inner {
            Inner::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Moves an open breaker whose cooldown has passed to half-open. Harmless at any time.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Inner::Open { until } = self.inner
            && now >= until
        {
            self.transition(Inner::HalfOpen {
                probe_in_flight: false,
            });
        }
    }

    /// Whether an attempt may start at `now`. In half-open, a `true` answer is the probe.
    pub fn allow(&mut self, now: Time) -> bool {
        self.handle_timeout(now);
        match self.inner {
            Inner::Closed { .. } => true,
            Inner::Open { .. } => false,
            Inner::HalfOpen { probe_in_flight } => {
                if probe_in_flight {
                    false
                } else {
                    self.inner = Inner::HalfOpen {
                        probe_in_flight: true,
                    };
                    true
                }
            }
        }
    }

    /// An attempt succeeded: closed, with the failure count cleared.
    pub fn record_success(&mut self, _now: Time) {
        self.transition(Inner::Closed { failures: 0 });
    }

    /// Whether a failure recorded now would open the breaker.
    pub fn opens_on_failure(&self) -> bool {
        match self.inner {
            Inner::Closed { failures } => {
                failures.saturating_add(1) >= self.config.failure_threshold
            }
            Inner::HalfOpen { .. } => true,
            Inner::Open { .. } => false,
        }
    }

    /// An attempt failed at `now`. An opening lasts the whole cooldown; see
    /// [`CircuitBreaker::record_failure_jittered`] for the jittered one.
    pub fn record_failure(&mut self, now: Time) {
        self.record_failure_jittered(now, 0.0);
    }

    /// An attempt failed at `now`; `u` in [0, 1) places an opening's length in
    /// `[cooldown · (1 − cooldown_jitter), cooldown]` (0: the whole cooldown).
    pub fn record_failure_jittered(&mut self, now: Time, u: f64) {
        let cut =
            self.config.cooldown().as_secs_f64() * self.config.cooldown_jitter * u.clamp(0.0, 1.0);
        let cooldown = self
            .config
            .cooldown()
            .saturating_sub(Duration::from_secs_f64(cut));
        let open = Inner::Open {
            until: now + cooldown,
        };
        match self.inner {
            Inner::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.transition(open);
                } else {
                    self.inner = Inner::Closed { failures };
                }
            }
            Inner::HalfOpen { .. } => self.transition(open),
            Inner::Open { .. } => {}
        }
    }

    /// The oldest state change not yet drained.
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop_front()
    }

    fn transition(&mut self, to: Inner) {
        let from = self.inner.state();
        self.inner = to;
        if from != to.state() {
            self.events.push_back(BreakerEvent {
                from,
                to: to.state(),
            });
        }
    }
}

/// Configuration of a [`ReconnectPolicy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectConfig {
    pub backoff: BackoffConfig,
    pub breaker: BreakerConfig,
}

/// What the driver should do after a failed connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Try again `after` this long from the failure.
    Retry { after: Duration },
    /// The breaker is open: make the next attempt (the half-open probe) at `until`.
    WaitForBreaker { until: Time },
    /// Stop reconnecting: `attempts` consecutive attempts failed.
    GiveUp { attempts: u32 },
}

/// Backoff and circuit breaker combined: the answer to "what next?" after each failure.
///
/// # Calling protocol
///
/// - [`ReconnectPolicy::allow`] right before each attempt (it is the breaker's gate).
/// - [`ReconnectPolicy::handle_failure`] after a failed attempt; obey the [`Action`].
/// - [`ReconnectPolicy::handle_success`] once connected: everything starts over.
/// - Drain [`ReconnectPolicy::poll_event`] for breaker transitions to log.
///
/// # How backoff and breaker interact
///
/// On each failure at `now`, the failure is counted and recorded in the breaker, then:
///
/// 1. If `backoff.max_attempts` is `Some(m)` and this is failure number `m + 1` since the last
///    success, the answer is [`Action::GiveUp`]. Every failed attempt counts, half-open probes
///    included, so `m` bounds the number of retries however they were timed. Without this a
///    breaker that keeps re-opening would probe forever and `max_attempts` would never apply.
/// 2. Otherwise, if the breaker is open (it just opened, or a probe failed), the answer is
///    [`Action::WaitForBreaker`] with the cooldown's end. The backoff is not advanced: the
///    cooldown takes the place of a backoff delay, so no delay is drawn and no RNG is used.
/// 3. Otherwise, the answer is [`Action::Retry`] with the backoff's next delay.
///
/// Since the breaker only closes on a success, which also resets the backoff, the backoff is
/// consulted only between the first failure and the breaker opening. With a
/// `failure_threshold` of `k`, the first `k - 1` failures get backoff delays.
#[derive(Clone, Debug)]
pub struct ReconnectPolicy {
    backoff: Backoff,
    breaker: CircuitBreaker,
    max_attempts: Option<u32>,
    /// Consecutive failed attempts since the last success.
    failures: u32,
}

impl ReconnectPolicy {
    pub fn new(config: ReconnectConfig) -> Result<ReconnectPolicy, ConfigError> {
        config.backoff.validate()?;
        // The policy enforces max_attempts itself, over all attempts (see the type's docs).
        let backoff = Backoff::new(BackoffConfig {
            max_attempts: None,
            ..config.backoff
        })?;
        Ok(ReconnectPolicy {
            backoff,
            breaker: CircuitBreaker::new(config.breaker)?,
            max_attempts: config.backoff.max_attempts,
            failures: 0,
        })
    }

    /// Whether an attempt may start at `now` (see [`CircuitBreaker::allow`]).
    pub fn allow(&mut self, now: Time) -> bool {
        self.breaker.allow(now)
    }

    /// An attempt failed at `now`: what to do next.
    pub fn handle_failure<R: Rng + ?Sized>(&mut self, now: Time, rng: &mut R) -> Action {
        self.failures = self.failures.saturating_add(1);
        // A draw only when the breaker opens, so that the backoff's draws before it opens are
        // the same with or without jitter.
        let u = if self.breaker.opens_on_failure() && self.breaker.config().cooldown_jitter > 0.0 {
            rng.random::<f64>()
        } else {
            0.0
        };
        self.breaker.record_failure_jittered(now, u);
        if let Some(max) = self.max_attempts
            && self.failures > max
        {
            return Action::GiveUp {
                attempts: self.failures,
            };
        }
        if let Some(until) = self.breaker.poll_timeout() {
            return Action::WaitForBreaker { until };
        }
        match self.backoff.next_delay(rng) {
            Some(after) => Action::Retry { after },
            // Unreachable: the inner backoff retries forever. Giving up is the safe answer.
            None => Action::GiveUp {
                attempts: self.failures,
            },
        }
    }

    /// Connected at `now`: the breaker closes, the backoff and failure count start over.
    pub fn handle_success(&mut self, now: Time) {
        self.failures = 0;
        self.backoff.reset();
        self.breaker.record_success(now);
    }

    /// Consecutive failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// See [`CircuitBreaker::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Time) {
        self.breaker.handle_timeout(now);
    }

    /// See [`CircuitBreaker::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        self.breaker.poll_timeout()
    }

    /// The breaker's oldest undrained transition.
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.breaker.poll_event()
    }

    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn at(v: u64) -> Time {
        Time::from_epoch(ms(v))
    }

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    fn config(jitter: Jitter) -> BackoffConfig {
        BackoffConfig {
            jitter,
            ..BackoffConfig::default()
        }
    }

    fn drain<R: Rng>(backoff: &mut Backoff, rng: &mut R) -> Vec<Duration> {
        std::iter::from_fn(|| backoff.next_delay(rng)).collect()
    }

    #[test]
    fn exponential_without_jitter_doubles_from_base_up_to_cap() {
        let mut b = Backoff::new(BackoffConfig {
            cap_ms: 3_000,
            ..config(Jitter::None)
        })
        .unwrap();
        let got = drain(&mut b, &mut rng(0));
        let want: Vec<_> = [100, 200, 400, 800, 1_600, 3_000, 3_000, 3_000, 3_000, 3_000]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn fractional_factor_grows_geometrically() {
        let mut b = Backoff::new(BackoffConfig {
            policy: Policy::Exponential { factor: 1.5 },
            max_attempts: Some(4),
            ..config(Jitter::None)
        })
        .unwrap();
        let got = drain(&mut b, &mut rng(0));
        assert_eq!(
            got,
            [ms(100), ms(150), ms(225), Duration::from_micros(337_500)]
        );
    }

    #[test]
    fn fixed_policy_always_waits_base() {
        let mut b = Backoff::new(BackoffConfig {
            policy: Policy::Fixed,
            max_attempts: Some(3),
            ..config(Jitter::None)
        })
        .unwrap();
        assert_eq!(drain(&mut b, &mut rng(0)), [ms(100); 3]);
    }

    #[test]
    fn no_jitter_leaves_the_rng_untouched() {
        let mut r = rng(7);
        let mut b = Backoff::new(config(Jitter::None)).unwrap();
        drain(&mut b, &mut r);
        assert_eq!(r, rng(7));
    }

    /// The un-jittered delays for the default config: 100 ms doubling, capped at 30 s.
    fn ceiling(n: u32) -> Duration {
        let c = BackoffConfig::default();
        nanos_to_duration(c.ceiling_nanos(n))
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_unjittered_delay() {
        for seed in 0..200 {
            let mut b = Backoff::new(config(Jitter::Full)).unwrap();
            for (n, d) in drain(&mut b, &mut rng(seed)).into_iter().enumerate() {
                assert!(d <= ceiling(n as u32), "seed {seed} attempt {n}: {d:?}");
            }
        }
    }

    #[test]
    fn equal_jitter_stays_within_half_and_the_unjittered_delay() {
        for seed in 0..200 {
            let mut b = Backoff::new(config(Jitter::Equal)).unwrap();
            for (n, d) in drain(&mut b, &mut rng(seed)).into_iter().enumerate() {
                let c = ceiling(n as u32);
                assert!(c / 2 <= d && d <= c, "seed {seed} attempt {n}: {d:?}");
            }
        }
    }

    #[test]
    fn decorrelated_jitter_stays_between_base_and_three_times_previous_and_cap() {
        let c = BackoffConfig {
            cap_ms: 5_000,
            max_attempts: Some(30),
            ..config(Jitter::Decorrelated)
        };
        let mut reached_cap = false;
        for seed in 0..200 {
            let mut b = Backoff::new(c).unwrap();
            let mut prev = ms(c.base_ms);
            for d in drain(&mut b, &mut rng(seed)) {
                assert!(ms(c.base_ms) <= d, "seed {seed}: {d:?} under base");
                assert!(
                    d <= (prev * 3).min(ms(c.cap_ms)),
                    "seed {seed}: {d:?} after {prev:?}"
                );
                reached_cap |= d == ms(c.cap_ms);
                prev = d;
            }
        }
        assert!(reached_cap, "the cap should bind in 30 draws");
    }

    #[test]
    fn full_jitter_mean_is_half_the_unjittered_delay() {
        // Uniform on [0, d] has mean d/2 and standard deviation d/sqrt(12); the mean of n
        // independent draws has standard deviation d/sqrt(12 n). Five of those is a bound a
        // correct implementation misses with probability under 1e-6, while a wrong range
        // (say [0, d/2], mean d/4) misses it by far.
        const N: u32 = 20_000;
        let d = 1_000.0_f64;
        let c = BackoffConfig {
            policy: Policy::Fixed,
            base_ms: 1_000,
            cap_ms: 1_000,
            max_attempts: None,
            ..config(Jitter::Full)
        };
        let mut b = Backoff::new(c).unwrap();
        let mut r = rng(42);
        let sum: f64 = (0..N)
            .map(|_| b.next_delay(&mut r).unwrap().as_secs_f64() * 1_000.0)
            .sum();
        let mean = sum / f64::from(N);
        let bound = 5.0 * d / (12.0 * f64::from(N)).sqrt();
        assert!(
            (mean - d / 2.0).abs() < bound,
            "mean {mean} ms, want {} ± {bound}",
            d / 2.0
        );
    }

    #[test]
    fn same_seed_gives_identical_delays() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let run = |seed| drain(&mut Backoff::new(config(jitter)).unwrap(), &mut rng(seed));
            assert_eq!(run(3), run(3), "{jitter:?}");
            assert_ne!(run(3), run(4), "{jitter:?}: different seeds should differ");
        }
    }

    #[test]
    fn max_attempts_delays_then_none() {
        let mut b = Backoff::new(config(Jitter::Full)).unwrap();
        let mut r = rng(1);
        for n in 0..10 {
            assert_eq!(b.attempts(), n);
            assert!(b.next_delay(&mut r).is_some());
        }
        assert_eq!(b.next_delay(&mut r), None);
        assert_eq!(b.next_delay(&mut r), None);
        assert_eq!(b.attempts(), 10);
    }

    #[test]
    fn reset_restarts_the_sequence() {
        let mut b = Backoff::new(config(Jitter::None)).unwrap();
        let first = drain(&mut b, &mut rng(0));
        assert_eq!(b.next_delay(&mut rng(0)), None);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(drain(&mut b, &mut rng(0)), first);
    }

    #[test]
    fn reset_restarts_decorrelated_from_base() {
        let c = BackoffConfig {
            max_attempts: None,
            ..config(Jitter::Decorrelated)
        };
        let mut b = Backoff::new(c).unwrap();
        let mut r = rng(9);
        for _ in 0..50 {
            b.next_delay(&mut r);
        }
        b.reset();
        let d = b.next_delay(&mut r).unwrap();
        assert!(
            d <= ms(3 * c.base_ms),
            "{d:?} not drawn from [base, 3 base]"
        );
    }

    #[test]
    fn huge_attempt_counts_stay_at_cap_without_overflow() {
        let c = BackoffConfig {
            max_attempts: None,
            ..config(Jitter::None)
        };
        for n in [64, 1_000, 1 << 20, u32::MAX - 1, u32::MAX] {
            assert_eq!(nanos_to_duration(c.ceiling_nanos(n)), ms(30_000), "n = {n}");
        }
        // A factor that squares to infinity and the largest representable cap.
        let wide = BackoffConfig {
            policy: Policy::Exponential { factor: f64::MAX },
            base_ms: 1,
            cap_ms: u64::MAX,
            ..c
        };
        assert_eq!(
            nanos_to_duration(wide.ceiling_nanos(u32::MAX)),
            ms(u64::MAX)
        );
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            let mut b = Backoff::new(BackoffConfig { jitter, ..wide }).unwrap();
            b.attempts = u32::MAX;
            let mut r = rng(0);
            for _ in 0..3 {
                let d = b.next_delay(&mut r).unwrap();
                assert!(d <= ms(u64::MAX));
            }
            assert_eq!(b.attempts(), u32::MAX, "the counter saturates");
        }
    }

    #[test]
    fn factor_one_is_a_constant_delay() {
        let c = BackoffConfig {
            policy: Policy::Exponential { factor: 1.0 },
            ..config(Jitter::None)
        };
        assert_eq!(nanos_to_duration(c.ceiling_nanos(u32::MAX)), ms(100));
    }

    #[test]
    fn invalid_backoff_configs_are_errors() {
        let ok = config(Jitter::Full);
        let cases = [
            (BackoffConfig { base_ms: 0, ..ok }, ConfigError::ZeroBase),
            (
                BackoffConfig {
                    base_ms: 2_000,
                    cap_ms: 1_000,
                    ..ok
                },
                ConfigError::BaseOverCap {
                    base_ms: 2_000,
                    cap_ms: 1_000,
                },
            ),
            (
                BackoffConfig {
                    policy: Policy::Exponential { factor: 0.5 },
                    ..ok
                },
                ConfigError::BadFactor(0.5),
            ),
            (
                BackoffConfig {
                    policy: Policy::Exponential {
                        factor: f64::INFINITY,
                    },
                    ..ok
                },
                ConfigError::BadFactor(f64::INFINITY),
            ),
            (
                BackoffConfig {
                    max_attempts: Some(0),
                    ..ok
                },
                ConfigError::ZeroMaxAttempts,
            ),
            (
                BackoffConfig {
                    policy: Policy::Fixed,
                    jitter: Jitter::Decorrelated,
                    ..ok
                },
                ConfigError::DecorrelatedWithFixed,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(Backoff::new(c).unwrap_err(), want, "{c:?}");
        }
        let nan = BackoffConfig {
            policy: Policy::Exponential { factor: f64::NAN },
            ..ok
        };
        assert!(matches!(Backoff::new(nan), Err(ConfigError::BadFactor(f)) if f.is_nan()));
        assert!(Backoff::new(ok).is_ok());
        assert!(
            Backoff::new(BackoffConfig {
                base_ms: 1_000,
                cap_ms: 1_000,
                ..ok
            })
            .is_ok(),
            "base equal to cap is allowed"
        );
    }

    #[test]
    fn invalid_breaker_configs_are_errors() {
        let zero_threshold = BreakerConfig {
            failure_threshold: 0,
            ..BreakerConfig::default()
        };
        let zero_cooldown = BreakerConfig {
            cooldown_ms: 0,
            ..BreakerConfig::default()
        };
        assert_eq!(
            CircuitBreaker::new(zero_threshold).unwrap_err(),
            ConfigError::ZeroFailureThreshold
        );
        assert_eq!(
            CircuitBreaker::new(zero_cooldown).unwrap_err(),
            ConfigError::ZeroCooldown
        );
        let bad_backoff = ReconnectConfig {
            backoff: BackoffConfig {
                base_ms: 0,
                ..BackoffConfig::default()
            },
            ..ReconnectConfig::default()
        };
        assert_eq!(
            ReconnectPolicy::new(bad_backoff).unwrap_err(),
            ConfigError::ZeroBase
        );
    }

    fn breaker(threshold: u32, cooldown_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            cooldown_ms,
            cooldown_jitter: 0.0,
        })
        .unwrap()
    }

    fn events(b: &mut CircuitBreaker) -> Vec<(BreakerState, BreakerState)> {
        std::iter::from_fn(|| b.poll_event())
            .map(|e| (e.from, e.to))
            .collect()
    }

    use BreakerState::{Closed, HalfOpen, Open};

    #[test]
    fn breaker_opens_after_threshold_consecutive_failures() {
        let mut b = breaker(3, 1_000);
        b.record_failure(at(0));
        b.record_failure(at(10));
        assert_eq!((b.state(), b.consecutive_failures()), (Closed, 2));
        assert!(events(&mut b).is_empty());
        b.record_failure(at(20));
        assert_eq!(b.state(), Open);
        assert_eq!(b.poll_timeout(), Some(at(1_020)));
        assert_eq!(events(&mut b), [(Closed, Open)]);
    }

    #[test]
    fn success_clears_the_consecutive_failure_count() {
        let mut b = breaker(3, 1_000);
        b.record_failure(at(0));
        b.record_failure(at(1));
        b.record_success(at(2));
        b.record_failure(at(3));
        b.record_failure(at(4));
        assert_eq!(b.state(), Closed);
        assert!(
            events(&mut b).is_empty(),
            "closed to closed is not a transition"
        );
    }

    #[test]
    fn open_breaker_refuses_until_cooldown_then_half_opens() {
        let mut b = breaker(1, 1_000);
        b.record_failure(at(500));
        events(&mut b);
        assert!(!b.allow(at(500)));
        assert!(!b.allow(at(1_499)));
        assert_eq!(b.state(), Open);
        assert!(b.allow(at(1_500)), "the cooldown ends at exactly 1500 ms");
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(events(&mut b), [(Open, HalfOpen)]);
    }

    #[test]
    fn half_open_allows_exactly_one_probe() {
        let mut b = breaker(1, 1_000);
        b.record_failure(at(0));
        b.handle_timeout(at(999));
        assert_eq!(b.state(), Open, "early timeouts are harmless");
        b.handle_timeout(at(1_000));
        assert_eq!(b.state(), HalfOpen);
        assert!(b.allow(at(1_000)));
        assert!(!b.allow(at(1_000)));
        assert!(
            !b.allow(at(60_000)),
            "still waiting for the probe's outcome"
        );
    }

    #[test]
    fn failed_probe_reopens_with_a_fresh_cooldown() {
        let mut b = breaker(2, 1_000);
        b.record_failure(at(0));
        b.record_failure(at(0));
        assert!(b.allow(at(1_000)));
        b.record_failure(at(1_250));
        assert_eq!(b.state(), Open);
        assert_eq!(b.poll_timeout(), Some(at(2_250)));
        assert!(!b.allow(at(2_249)));
        assert!(b.allow(at(2_250)));
        assert_eq!(
            events(&mut b),
            [
                (Closed, Open),
                (Open, HalfOpen),
                (HalfOpen, Open),
                (Open, HalfOpen)
            ]
        );
    }

    #[test]
    fn successful_probe_closes_the_breaker() {
        let mut b = breaker(1, 1_000);
        b.record_failure(at(0));
        assert!(b.allow(at(1_000)));
        b.record_success(at(1_100));
        assert_eq!((b.state(), b.consecutive_failures()), (Closed, 0));
        assert!(b.allow(at(1_100)));
        assert!(b.allow(at(1_100)), "closed lets every attempt through");
        assert_eq!(
            events(&mut b),
            [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
    }

    #[test]
    fn late_failure_while_open_does_not_extend_the_cooldown() {
        let mut b = breaker(1, 1_000);
        b.record_failure(at(0));
        b.record_failure(at(900));
        assert_eq!(b.poll_timeout(), Some(at(1_000)));
        assert_eq!(events(&mut b), [(Closed, Open)]);
    }

    fn policy(max_attempts: Option<u32>, threshold: u32) -> ReconnectPolicy {
        ReconnectPolicy::new(ReconnectConfig {
            backoff: BackoffConfig {
                max_attempts,
                ..config(Jitter::None)
            },
            breaker: BreakerConfig {
                failure_threshold: threshold,
                cooldown_ms: 10_000,
                cooldown_jitter: 0.0,
            },
        })
        .unwrap()
    }

    #[test]
    fn a_jittered_breaker_opens_for_between_half_and_all_of_its_cooldown() {
        let config = |jitter| ReconnectConfig {
            backoff: config(Jitter::Full),
            breaker: BreakerConfig {
                failure_threshold: 3,
                cooldown_ms: 30_000,
                cooldown_jitter: jitter,
            },
        };
        let mut openings = Vec::new();
        for seed in 0..200 {
            let (mut jittered, mut plain) = (
                ReconnectPolicy::new(config(0.5)).unwrap(),
                ReconnectPolicy::new(config(0.0)).unwrap(),
            );
            let (mut r1, mut r2) = (rng(seed), rng(seed));
            let now = at(1_000);
            // The backoff's delays before the breaker opens do not move with the jitter.
            for _ in 0..2 {
                assert_eq!(
                    jittered.handle_failure(now, &mut r1),
                    plain.handle_failure(now, &mut r2)
                );
            }
            let Action::WaitForBreaker { until } = jittered.handle_failure(now, &mut r1) else {
                panic!("the third failure opens the breaker");
            };
            openings.push(until - now);
        }
        let (lo, hi) = (
            *openings.iter().min().unwrap(),
            *openings.iter().max().unwrap(),
        );
        assert!(lo >= ms(15_000) && hi <= ms(30_000), "{lo:?} .. {hi:?}");
        // Spread over the range, not bunched: 200 draws cover most of the 15 s.
        assert!(hi - lo > ms(13_000), "{lo:?} .. {hi:?}");
    }

    #[test]
    fn a_cooldown_jitter_outside_zero_to_one_is_refused() {
        for jitter in [-0.1, 1.5, f64::NAN] {
            let c = BreakerConfig {
                cooldown_jitter: jitter,
                ..BreakerConfig::default()
            };
            assert!(
                matches!(c.validate(), Err(ConfigError::BadCooldownJitter { .. })),
                "{jitter}"
            );
        }
    }

    #[test]
    fn policy_retries_with_backoff_until_the_breaker_opens() {
        let mut p = policy(None, 4);
        let mut r = rng(0);
        let mut now = at(0);
        let mut actions = Vec::new();
        for _ in 0..4 {
            assert!(p.allow(now));
            let a = p.handle_failure(now, &mut r);
            if let Action::Retry { after } = a {
                now += after;
            }
            actions.push(a);
        }
        assert_eq!(
            actions,
            [
                Action::Retry { after: ms(100) },
                Action::Retry { after: ms(200) },
                Action::Retry { after: ms(400) },
                // The fourth failure, at 700 ms, opens the breaker for 10 s.
                Action::WaitForBreaker { until: at(10_700) },
            ]
        );
        assert!(!p.allow(at(10_699)));
        assert_eq!(p.poll_event().map(|e| (e.from, e.to)), Some((Closed, Open)));
    }

    #[test]
    fn breaker_waits_do_not_consume_backoff_attempts() {
        let mut p = policy(None, 2);
        let mut r = rng(0);
        assert_eq!(
            p.handle_failure(at(0), &mut r),
            Action::Retry { after: ms(100) }
        );
        assert_eq!(
            p.handle_failure(at(100), &mut r),
            Action::WaitForBreaker { until: at(10_100) }
        );
        assert!(p.allow(at(10_100)));
        assert_eq!(
            p.handle_failure(at(10_200), &mut r),
            Action::WaitForBreaker { until: at(20_200) }
        );
        assert_eq!(
            p.backoff().attempts(),
            1,
            "only the first failure drew a delay"
        );
        assert_eq!(p.failures(), 3);
    }

    #[test]
    fn policy_gives_up_after_max_attempts_counting_probes() {
        let mut p = policy(Some(3), 2);
        let mut r = rng(0);
        assert_eq!(
            p.handle_failure(at(0), &mut r),
            Action::Retry { after: ms(100) }
        );
        assert_eq!(
            p.handle_failure(at(100), &mut r),
            Action::WaitForBreaker { until: at(10_100) }
        );
        assert!(p.allow(at(10_100)));
        assert_eq!(
            p.handle_failure(at(10_100), &mut r),
            Action::WaitForBreaker { until: at(20_100) }
        );
        assert!(p.allow(at(20_100)));
        assert_eq!(
            p.handle_failure(at(20_100), &mut r),
            Action::GiveUp { attempts: 4 }
        );
    }

    #[test]
    fn policy_gives_up_with_a_closed_breaker_too() {
        let mut p = policy(Some(2), 100);
        let mut r = rng(0);
        assert_eq!(
            p.handle_failure(at(0), &mut r),
            Action::Retry { after: ms(100) }
        );
        assert_eq!(
            p.handle_failure(at(100), &mut r),
            Action::Retry { after: ms(200) }
        );
        assert_eq!(
            p.handle_failure(at(300), &mut r),
            Action::GiveUp { attempts: 3 }
        );
    }

    #[test]
    fn success_resets_backoff_breaker_and_attempt_count() {
        let mut p = policy(Some(3), 2);
        let mut r = rng(0);
        p.handle_failure(at(0), &mut r);
        p.handle_failure(at(100), &mut r);
        assert!(p.allow(at(10_100)));
        p.handle_success(at(10_150));
        assert_eq!(p.breaker().state(), Closed);
        assert_eq!((p.failures(), p.backoff().attempts()), (0, 0));
        assert_eq!(
            p.handle_failure(at(20_000), &mut r),
            Action::Retry { after: ms(100) },
            "the backoff starts again from base"
        );
        let log: Vec<_> = std::iter::from_fn(|| p.poll_event())
            .map(|e| (e.from, e.to))
            .collect();
        assert_eq!(log, [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
    }
}
