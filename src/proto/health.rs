//! Connection health: folds round-trip times, heartbeat losses and the failure detector's verdict
//! into one state that users and the simulator report, with a reason for every change.
//!
//! # States and rules
//!
//! `Healthy < Degraded < Suspect < Dead`; the worst state whose condition holds wins.
//!
//! - **Degraded (rtt)**: `rtt_consecutive` consecutive RTT samples over `rtt_limit`. It clears after
//!   `rtt_consecutive` consecutive samples at or under the limit; the same count both ways keeps
//!   one noisy sample from flapping the state.
//! - **Degraded (loss)**: on `loss_consecutive` consecutive evaluations, more than `loss_limit`
//!   of the last `loss_window` heartbeats sent were lost. The loss is evaluated once per heartbeat
//!   sent (after counting as lost those whose reply is overdue), so an evaluation is one
//!   heartbeat interval. It clears after `loss_consecutive` consecutive evaluations at or under
//!   the limit. A heartbeat is lost when no reply arrived within `reply_timeout` of sending it; a
//!   reply after that still leaves it lost. The fraction's denominator is the window size, so a
//!   fresh connection cannot reach, say, 100% loss from a single lost heartbeat.
//! - **Suspect**: the failure detector suspects the peer.
//! - **Dead**: the suspicion has lasted `dead_after`. With the default of zero, Dead comes in the
//!   same call as Suspect: the peer is declared dead at the instant the detector suspects it
//!   (`docs/protocol.md` §11.6). Dead is terminal: every input is ignored until
//!   [`HealthEvaluator::reset`] starts over for a new connection.
//!
//! # Defaults
//!
//! The protocol's seed values ([`HealthConfig::for_params`]): Degraded when the RTT is over
//! 500 ms three times in a row, or the loss over 5% (of the last 20 heartbeats, a heartbeat
//! without a reply within η being lost) on two consecutive evaluations; Dead at suspicion.
//!
//! # Calling protocol
//!
//! Like the detectors: `handle_*(now, …)` for inputs, [`HealthEvaluator::handle_timeout`] when
//! `now` reaches [`HealthEvaluator::poll_timeout`], and drain [`HealthEvaluator::poll_event`] after
//! each call. A reply at exactly its deadline counts as in time if it is handled before the
//! timeout, as for heartbeats in the detectors.
//!
//! Memory is bounded: loss tracking is a ring of `loss_window` heartbeats (at most
//! [`MAX_LOSS_WINDOW`]), and at most [`MAX_PENDING_EVENTS`] undrained events are kept.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::detector::{Verdict, millis};
use super::time::{Time, earlier};

/// The largest loss window honoured; larger configured windows are clamped to it.
pub const MAX_LOSS_WINDOW: usize = 4096;
/// Undrained events beyond this drop the oldest.
pub const MAX_PENDING_EVENTS: usize = 16;

/// How a connection is doing, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum HealthState {
    Healthy,
    Degraded,
    Suspect,
    Dead,
}

impl HealthState {
    /// A lowercase name for reports and traces.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Suspect => "suspect",
            HealthState::Dead => "dead",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A change of [`HealthState`], with a short human-readable reason
/// (e.g. `"rtt 312ms over 250ms for 3 beats"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthEvent {
    pub from: HealthState,
    pub to: HealthState,
    pub reason: String,
}

/// Thresholds of the [`HealthEvaluator`]. Durations are written as `*_ms` integers; omitted
/// fields take the values of [`HealthConfig::default`], which is
/// `HealthConfig::for_params(1 s, 3)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// RTT above this is a bad sample. Written `rtt_limit_ms`.
    #[serde(rename = "rtt_limit_ms", with = "millis")]
    pub rtt_limit: Duration,
    /// Consecutive bad samples to degrade, and good ones to recover (at least 1).
    pub rtt_consecutive: u32,
    /// A lost fraction of the window strictly above this is a bad evaluation (0.05 = 5%).
    pub loss_limit: f64,
    /// Consecutive bad evaluations to degrade, and good ones to recover (at least 1).
    pub loss_consecutive: u32,
    /// How many of the most recent heartbeats the loss fraction covers (1 to 4096).
    pub loss_window: u32,
    /// A heartbeat without a reply after this long is lost. Written `reply_timeout_ms`.
    #[serde(rename = "reply_timeout_ms", with = "millis")]
    pub reply_timeout: Duration,
    /// Suspicion lasting this long means Dead; zero (the default) declares the peer dead at
    /// the instant of suspicion. Written `dead_after_ms`.
    #[serde(rename = "dead_after_ms", with = "millis")]
    pub dead_after: Duration,
}

impl HealthConfig {
    /// The protocol's seed values for heartbeat interval η (`docs/protocol.md` §13): RTT over
    /// 500 ms for 3 beats in a row, loss over 5% of the last 20 heartbeats on 2 consecutive
    /// evaluations, reply timeout η, dead at the instant of suspicion. The miss threshold is
    /// the detector's business; it is accepted so that callers need not know which rule uses it.
    pub fn for_params(interval: Duration, miss_threshold: u32) -> HealthConfig {
        let _ = miss_threshold;
        HealthConfig {
            rtt_limit: Duration::from_millis(500),
            rtt_consecutive: 3,
            loss_limit: 0.05,
            loss_consecutive: 2,
            loss_window: 20,
            reply_timeout: interval,
            dead_after: Duration::ZERO,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig::for_params(Duration::from_secs(1), 3)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Replied,
    Lost,
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    seq: u64,
    at: Time,
    outcome: Outcome,
}

/// The health state machine. See the module docs for its rules and calling protocol.
#[derive(Clone, Debug)]
pub struct HealthEvaluator {
    config: HealthConfig,
    state: HealthState,
    rtt_bad: u32,
    rtt_good: u32,
    rtt_degraded: bool,
    /// The last `loss_window` heartbeats sent, oldest first.
    window: VecDeque<Sent>,
    window_cap: usize,
    lost: usize,
    /// Heartbeats in `window` still waiting for a reply: none is the common case between a
    /// reply and the next send, and needs no scan of the window.
    pending: usize,
    /// How many heartbeats at the front of `window` are no longer pending: the first pending
    /// one, if any, comes right after them. An outcome never goes back to pending, so this only
    /// moves on (or back by one when the oldest leaves the window), and finding the next
    /// deadline reads one entry instead of scanning the window.
    settled: usize,
    loss_degraded: bool,
    /// Consecutive evaluations on the other side of the loss limit from `loss_degraded`.
    loss_streak: u32,
    suspect_since: Option<Time>,
    events: VecDeque<HealthEvent>,
}

impl HealthEvaluator {
    /// A Healthy evaluator. `now` is accepted for symmetry with the other inputs; nothing is
    /// timed until a heartbeat is sent or the detector suspects.
    pub fn new(now: Time, config: HealthConfig) -> HealthEvaluator {
        let _ = now;
        let window_cap = usize::try_from(config.loss_window)
            .unwrap_or(MAX_LOSS_WINDOW)
            .clamp(1, MAX_LOSS_WINDOW);
        HealthEvaluator {
            config,
            state: HealthState::Healthy,
            rtt_bad: 0,
            rtt_good: 0,
            rtt_degraded: false,
            window: VecDeque::with_capacity(window_cap),
            window_cap,
            lost: 0,
            pending: 0,
            settled: 0,
            loss_degraded: false,
            loss_streak: 0,
            suspect_since: None,
            events: VecDeque::new(),
        }
    }

    /// Starts over for a new connection: Healthy, no history. Emits no event; the owner knows it
    /// reset.
    pub fn reset(&mut self, now: Time) {
        let events = std::mem::take(&mut self.events);
        *self = HealthEvaluator::new(now, self.config);
        self.events = events;
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// The fraction of the loss window currently counted as lost.
    pub fn loss(&self) -> f64 {
        self.lost as f64 / self.window_cap as f64
    }

    /// A round-trip time sample (typically from a heartbeat reply).
    pub fn handle_rtt(&mut self, now: Time, rtt: Duration) {
        let _ = now;
        if self.state == HealthState::Dead {
            return;
        }
        let need = self.config.rtt_consecutive.max(1);
        let limit = self.config.rtt_limit;
        if rtt > limit {
            self.rtt_bad = self.rtt_bad.saturating_add(1);
            self.rtt_good = 0;
            if !self.rtt_degraded && self.rtt_bad >= need {
                self.rtt_degraded = true;
                self.settle(|| format!("rtt {} over {} for {need} beats", show(rtt), show(limit)));
            }
        } else {
            self.rtt_good = self.rtt_good.saturating_add(1);
            self.rtt_bad = 0;
            if self.rtt_degraded && self.rtt_good >= need {
                self.rtt_degraded = false;
                self.settle(|| format!("rtt under {} for {need} beats", show(limit)));
            }
        }
    }

    /// A heartbeat with sequence number `seq` was sent at `now`.
    pub fn handle_heartbeat_sent(&mut self, now: Time, seq: u64) {
        if self.state == HealthState::Dead {
            return;
        }
        self.sweep(now);
        if self.window.len() == self.window_cap
            && let Some(old) = self.window.pop_front()
        {
            match old.outcome {
                Outcome::Lost => self.lost -= 1,
                Outcome::Pending => self.pending -= 1,
                Outcome::Replied => {}
            }
            if old.outcome != Outcome::Pending {
                self.settled -= 1;
            }
            // A pending heartbeat that left uncovers the settled ones behind it.
            self.settle_front();
        }
        self.window.push_back(Sent {
            seq,
            at: now,
            outcome: Outcome::Pending,
        });
        self.pending += 1;
        self.evaluate_loss();
    }

    /// The reply to heartbeat `seq` arrived at `now`. Unknown, duplicate and too old sequence
    /// numbers are ignored.
    pub fn handle_reply(&mut self, now: Time, seq: u64) {
        if self.state == HealthState::Dead {
            return;
        }
        let timeout = self.config.reply_timeout;
        let awaited = |s: &Sent| s.seq == seq && s.outcome == Outcome::Pending;
        // The newest that matches; most often that is the last heartbeat sent.
        let i = match self.window.len().checked_sub(1) {
            Some(last) if awaited(&self.window[last]) => last,
            _ => match self.window.iter().rposition(awaited) {
                Some(i) => i,
                None => return,
            },
        };
        let sent = &mut self.window[i];
        self.pending -= 1;
        if now <= sent.at + timeout {
            sent.outcome = Outcome::Replied;
        } else {
            sent.outcome = Outcome::Lost;
            self.lost += 1;
        }
        self.settle_front();
    }

    /// Moves `settled` past the heartbeats at the front that are no longer pending.
    fn settle_front(&mut self) {
        while self
            .window
            .get(self.settled)
            .is_some_and(|s| s.outcome != Outcome::Pending)
        {
            self.settled += 1;
        }
    }

    /// The failure detector's current verdict (after each of its events, or every time; repeats
    /// are harmless).
    pub fn handle_verdict(&mut self, now: Time, verdict: Verdict) {
        if self.state == HealthState::Dead {
            return;
        }
        match verdict {
            Verdict::Suspect => {
                if self.suspect_since.is_none() {
                    self.suspect_since = Some(now);
                    self.settle(|| "missed beats".to_owned());
                }
                self.check_dead(now);
            }
            Verdict::Trust => {
                if self.suspect_since.take().is_some() {
                    self.settle(|| "heartbeat arrived".to_owned());
                }
            }
        }
    }

    /// Sweeps lost heartbeats and checks for Dead. Harmless to call early or often.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.state == HealthState::Dead {
            return;
        }
        self.sweep(now);
        self.check_dead(now);
    }

    /// When [`HealthEvaluator::handle_timeout`] next has work: the earliest pending reply
    /// deadline, or when an ongoing suspicion turns into Dead.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.state == HealthState::Dead {
            return None;
        }
        // Sent in time order, so the first pending one is due first: the one after the settled.
        let reply = match self.pending {
            0 => None,
            _ => {
                let first = self.window.get(self.settled);
                debug_assert!(first.is_some_and(|s| s.outcome == Outcome::Pending));
                first.map(|s| s.at + self.config.reply_timeout)
            }
        };
        let dead = self.suspect_since.map(|t| t + self.config.dead_after);
        earlier(reply, dead)
    }

    /// Whether [`HealthEvaluator::poll_event`] has anything to give.
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next state change, oldest first.
    pub fn poll_event(&mut self) -> Option<HealthEvent> {
        self.events.pop_front()
    }

    fn sweep(&mut self, now: Time) {
        if self.pending == 0 {
            return;
        }
        let timeout = self.config.reply_timeout;
        let from = self.settled.min(self.window.len());
        for s in self.window.range_mut(from..) {
            if s.outcome == Outcome::Pending && now >= s.at + timeout {
                s.outcome = Outcome::Lost;
                self.lost += 1;
                self.pending -= 1;
            }
        }
        self.settle_front();
    }

    /// One loss evaluation (at each heartbeat sent): the state flips after `loss_consecutive`
    /// evaluations in a row on the other side of the limit.
    fn evaluate_loss(&mut self) {
        let loss = self.loss();
        let limit = self.config.loss_limit;
        let over = loss > limit;
        if over == self.loss_degraded {
            self.loss_streak = 0;
            return;
        }
        self.loss_streak = self.loss_streak.saturating_add(1);
        let need = self.config.loss_consecutive.max(1);
        if self.loss_streak < need {
            return;
        }
        self.loss_streak = 0;
        self.loss_degraded = over;
        let (pct, lim) = (loss * 100.0, limit * 100.0);
        if over {
            self.settle(|| format!("loss {pct:.0}% over {lim:.0}% for {need} evaluations"));
        } else {
            self.settle(|| format!("loss {pct:.0}% within {lim:.0}% for {need} evaluations"));
        }
    }

    fn check_dead(&mut self, now: Time) {
        if let Some(since) = self.suspect_since
            && now >= since + self.config.dead_after
        {
            self.state_change(
                HealthState::Dead,
                format!("suspected for {}", show(now - since)),
            );
        }
    }

    /// Recomputes the state from the conditions and records a change with `reason`.
    fn settle(&mut self, reason: impl FnOnce() -> String) {
        let to = if self.suspect_since.is_some() {
            HealthState::Suspect
        } else if self.rtt_degraded || self.loss_degraded {
            HealthState::Degraded
        } else {
            HealthState::Healthy
        };
        if to != self.state {
            self.state_change(to, reason());
        }
    }

    fn state_change(&mut self, to: HealthState, reason: String) {
        if self.events.len() == MAX_PENDING_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(HealthEvent {
            from: self.state,
            to,
            reason,
        });
        self.state = to;
    }
}

/// A duration as people write it in a reason: `312ms`, `6s`, `1500ms`, `250µs`.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        format!("{}µs", d.as_micros())
    } else if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETA: Duration = Duration::from_secs(1);

    fn at(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn evaluator() -> HealthEvaluator {
        HealthEvaluator::new(at(0), HealthConfig::for_params(ETA, 3))
    }

    fn drain(h: &mut HealthEvaluator) -> Vec<(HealthState, HealthState, String)> {
        std::iter::from_fn(|| h.poll_event())
            .map(|e| (e.from, e.to, e.reason))
            .collect()
    }

    use HealthState::*;

    #[test]
    fn the_next_reply_deadline_is_the_oldest_pending_one_whatever_order_replies_and_losses_come_in()
    {
        // Replies out of order, late, duplicated or never, sends and sweeps at random; a window
        // of 4 so that heartbeats leave it pending, replied and lost: after every input, the
        // deadline read from the settled front is the one a scan of the window finds.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut config = HealthConfig::for_params(ETA, 3);
        config.loss_window = 4;
        let mut h = HealthEvaluator::new(at(0), config);
        let (mut now, mut seq) = (0u64, 0u64);
        for _ in 0..5_000 {
            now += rng.random_range(0..700);
            match rng.random_range(0..3) {
                0 => {
                    seq += 1;
                    h.handle_heartbeat_sent(at(now), seq);
                }
                1 if seq > 0 => {
                    h.handle_reply(at(now), rng.random_range(seq.saturating_sub(6)..=seq))
                }
                _ => h.handle_timeout(at(now)),
            }
            let scanned = h
                .window
                .iter()
                .find(|s| s.outcome == Outcome::Pending)
                .map(|s| s.at + h.config.reply_timeout);
            let dead = h.suspect_since.map(|t| t + h.config.dead_after);
            let want = match (scanned, dead) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            assert_eq!(h.poll_timeout(), want, "at {now} ms");
            assert_eq!(
                h.pending,
                h.window
                    .iter()
                    .filter(|s| s.outcome == Outcome::Pending)
                    .count()
            );
        }
    }

    #[test]
    fn for_params_gives_the_protocol_seed_values() {
        let c = HealthConfig::for_params(Duration::from_secs(2), 3);
        assert_eq!((c.rtt_limit, c.rtt_consecutive), (ms(500), 3));
        assert_eq!(
            (c.loss_limit, c.loss_consecutive, c.loss_window),
            (0.05, 2, 20)
        );
        assert_eq!(c.reply_timeout, Duration::from_secs(2));
        assert_eq!(c.dead_after, Duration::ZERO);
        assert_eq!(HealthConfig::default(), HealthConfig::for_params(ETA, 3));
    }

    #[test]
    fn slow_rtt_for_consecutive_beats_degrades_with_reason() {
        let mut h = evaluator();
        h.handle_rtt(at(0), ms(600));
        h.handle_rtt(at(1000), ms(700));
        assert_eq!(h.state(), Healthy);
        h.handle_rtt(at(2000), ms(612));
        assert_eq!(
            drain(&mut h),
            [(Healthy, Degraded, "rtt 612ms over 500ms for 3 beats".into())]
        );
    }

    #[test]
    fn one_good_rtt_resets_the_bad_streak() {
        let mut h = evaluator();
        for (i, rtt) in [600, 600, 100, 600, 600].into_iter().enumerate() {
            h.handle_rtt(at(i as u64 * 1000), ms(rtt));
        }
        assert_eq!(h.state(), Healthy);
    }

    #[test]
    fn rtt_recovers_after_consecutive_good_beats() {
        let mut h = evaluator();
        for i in 0..3 {
            h.handle_rtt(at(i * 1000), ms(600));
        }
        drain(&mut h);
        h.handle_rtt(at(3000), ms(100));
        h.handle_rtt(at(4000), ms(500));
        assert_eq!(h.state(), Degraded);
        h.handle_rtt(at(5000), ms(100));
        assert_eq!(
            drain(&mut h),
            [(Degraded, Healthy, "rtt under 500ms for 3 beats".into())]
        );
    }

    /// Sends heartbeat `seq` at `seq` seconds; `replied` says whether it gets a reply 100 ms
    /// later. Every send is a loss evaluation.
    fn beat(h: &mut HealthEvaluator, seq: u64, replied: bool) {
        let t = seq * 1000;
        h.handle_heartbeat_sent(at(t), seq);
        if replied {
            h.handle_reply(at(t + 100), seq);
        }
        h.handle_timeout(at(t + 100));
    }

    #[test]
    fn loss_over_five_percent_on_two_consecutive_evaluations_degrades() {
        let mut h = evaluator();
        // Heartbeats 0 and 1 get no reply; each is lost one reply timeout (1 s) after it left,
        // which is the next send.
        beat(&mut h, 0, false);
        beat(&mut h, 1, false);
        // At the send of 1 one loss in 20 is 5%, not over the limit.
        assert_eq!(h.loss(), 0.05);
        // The send of 2 is the first evaluation over the limit (10%), the send of 3 the second.
        beat(&mut h, 2, true);
        assert_eq!(h.loss(), 0.10);
        assert_eq!(
            h.state(),
            Healthy,
            "one evaluation over the limit is not enough"
        );
        beat(&mut h, 3, true);
        assert_eq!(
            drain(&mut h),
            [(
                Healthy,
                Degraded,
                "loss 10% over 5% for 2 evaluations".into()
            )]
        );
    }

    #[test]
    fn loss_clears_after_two_consecutive_evaluations_within_the_limit() {
        let mut h = HealthEvaluator::new(
            at(0),
            HealthConfig {
                loss_window: 4,
                loss_limit: 0.3,
                ..HealthConfig::for_params(ETA, 3)
            },
        );
        // Two lost of four (50%), then the window slides over replied heartbeats.
        for (seq, replied) in [(0, false), (1, false), (2, true), (3, true), (4, true)] {
            beat(&mut h, seq, replied);
        }
        // Evaluations: 1/4 at 1 (0 overdue at 1000), 2/4 at 2, 2/4 at 3 → Degraded at 3;
        // 1/4 at 4 (heartbeat 0 slid out).
        assert_eq!(h.state(), Degraded);
        beat(&mut h, 5, true);
        assert_eq!(
            drain(&mut h),
            [
                (
                    Healthy,
                    Degraded,
                    "loss 50% over 30% for 2 evaluations".into()
                ),
                (
                    Degraded,
                    Healthy,
                    "loss 0% within 30% for 2 evaluations".into()
                ),
            ]
        );
    }

    #[test]
    fn one_evaluation_within_the_limit_resets_the_bad_streak() {
        let mut h = HealthEvaluator::new(
            at(0),
            HealthConfig {
                loss_window: 2,
                loss_limit: 0.0,
                ..HealthConfig::for_params(ETA, 3)
            },
        );
        // Every other heartbeat lost: evaluations alternate over and within, never two over
        // in a row.
        for seq in 0..6 {
            beat(&mut h, seq, seq % 2 == 1);
        }
        assert_eq!(h.state(), Healthy);
        // Two lost in a row are two evaluations over (at the sends of 7 and 8).
        for (seq, replied) in [(6, false), (7, false), (8, true)] {
            beat(&mut h, seq, replied);
        }
        assert_eq!(h.state(), Degraded);
    }

    #[test]
    fn reply_after_the_timeout_still_counts_as_lost() {
        let mut h = HealthEvaluator::new(
            at(0),
            HealthConfig {
                loss_window: 4,
                ..HealthConfig::for_params(ETA, 3)
            },
        );
        h.handle_heartbeat_sent(at(0), 7);
        h.handle_reply(at(1001), 7);
        assert_eq!(h.loss(), 0.25);
        h.handle_heartbeat_sent(at(1000), 8);
        h.handle_reply(at(2000), 8);
        assert_eq!(h.loss(), 0.25, "a reply exactly at the deadline is in time");
    }

    #[test]
    fn poll_timeout_is_the_earliest_reply_deadline() {
        let mut h = evaluator();
        assert_eq!(h.poll_timeout(), None);
        h.handle_heartbeat_sent(at(0), 1);
        h.handle_heartbeat_sent(at(500), 2);
        assert_eq!(h.poll_timeout(), Some(at(1000)));
        h.handle_reply(at(100), 1);
        assert_eq!(h.poll_timeout(), Some(at(1500)));
        h.handle_timeout(at(1500));
        assert_eq!(h.poll_timeout(), None);
        assert_eq!(h.loss(), 0.05);
    }

    #[test]
    fn by_default_the_peer_is_dead_in_the_same_call_as_the_suspicion() {
        let mut h = evaluator();
        h.handle_verdict(at(3000), Verdict::Suspect);
        assert_eq!(
            drain(&mut h),
            [
                (Healthy, Suspect, "missed beats".into()),
                (Suspect, Dead, "suspected for 0ms".into()),
            ]
        );
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn suspicion_then_dead_after_dead_after() {
        let mut h = HealthEvaluator::new(
            at(0),
            HealthConfig {
                dead_after: Duration::from_secs(3),
                ..HealthConfig::for_params(ETA, 3)
            },
        );
        h.handle_verdict(at(3000), Verdict::Suspect);
        assert_eq!(drain(&mut h), [(Healthy, Suspect, "missed beats".into())]);
        assert_eq!(h.poll_timeout(), Some(at(6000)));
        h.handle_timeout(at(5999));
        assert_eq!(h.state(), Suspect);
        // A repeated verdict keeps the original start of the suspicion.
        h.handle_verdict(at(5000), Verdict::Suspect);
        h.handle_timeout(at(6000));
        assert_eq!(drain(&mut h), [(Suspect, Dead, "suspected for 3s".into())]);
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn dead_is_terminal_until_reset() {
        let mut h = evaluator();
        h.handle_verdict(at(0), Verdict::Suspect);
        h.handle_timeout(at(3000));
        drain(&mut h);
        h.handle_verdict(at(4000), Verdict::Trust);
        h.handle_rtt(at(4000), ms(10));
        h.handle_heartbeat_sent(at(4000), 1);
        assert_eq!(h.state(), Dead);
        assert!(drain(&mut h).is_empty());
        h.reset(at(5000));
        assert_eq!(h.state(), Healthy);
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn trust_returns_to_the_worst_remaining_condition() {
        let mut h = HealthEvaluator::new(
            at(0),
            HealthConfig {
                dead_after: Duration::from_secs(10),
                ..HealthConfig::for_params(ETA, 3)
            },
        );
        for i in 0..3 {
            h.handle_rtt(at(i * 1000), ms(600));
        }
        h.handle_verdict(at(3000), Verdict::Suspect);
        h.handle_verdict(at(4000), Verdict::Trust);
        assert_eq!(
            drain(&mut h),
            [
                (Healthy, Degraded, "rtt 600ms over 500ms for 3 beats".into()),
                (Degraded, Suspect, "missed beats".into()),
                (Suspect, Degraded, "heartbeat arrived".into()),
            ]
        );
        for i in 5..8 {
            h.handle_rtt(at(i * 1000), ms(100));
        }
        assert_eq!(h.state(), Healthy);
    }

    #[test]
    fn loss_window_memory_is_bounded() {
        let mut h = HealthEvaluator::new(
            at(0),
            HealthConfig {
                loss_window: u32::MAX,
                ..HealthConfig::default()
            },
        );
        for seq in 0..10_000u64 {
            h.handle_heartbeat_sent(at(seq), seq);
        }
        assert!(h.window.len() <= MAX_LOSS_WINDOW);
    }

    #[test]
    fn reasons_show_durations_readably() {
        assert_eq!(show(ms(312)), "312ms");
        assert_eq!(show(Duration::from_secs(6)), "6s");
        assert_eq!(show(ms(1500)), "1500ms");
        assert_eq!(show(Duration::from_micros(250)), "250µs");
    }
}
