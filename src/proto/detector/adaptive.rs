//! Adaptive probing, the seed's design: after a first missed heartbeat, probe the peer faster
//! before declaring it failed.
//!
//! # Rules
//!
//! With heartbeat interval η, grace δ, probe interval π (default η/4) and `n` probes
//! (default k − 1, at least 1):
//!
//! - Trusting, with the last arrival at `a`: at `m = a + η + δ` (the first miss) the detector
//!   emits [`DetectorEvent::Probe`] and starts probing.
//! - Probing: it emits another `Probe` at `m + i·π` for `i = 1 … n−1`, so `n` probes in all, and
//!   suspects at `m + n·π + δ` if nothing arrived.
//! - Any arrival (heartbeat or probe reply) returns it to trusting with `a` = that arrival, and
//!   emits [`DetectorEvent::Trust`] if it had suspected.
//! - Ties: an arrival at exactly a deadline, processed before the timeout, wins (see the
//!   calling protocol in the parent module).
//! - A late `handle_timeout` catches up on the nominal schedule: probe slots that have already
//!   passed produce a single `Probe` (several stale probes at once would tell the peer nothing
//!   more), and the suspicion is raised if its instant has passed.
//!
//! # Detection time
//!
//! If the peer fails right after its last heartbeat, the detector suspects
//!
//! ```text
//! T_D,max = η + n·π + 2·δ
//! ```
//!
//! later (η(1 + (k−1)/4) with the defaults and δ = 0). A crash at a uniformly random phase of the
//! heartbeat period, with no loss and no delay, gives a mean detection time `T_D,max − η/2`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Detector, DetectorEvent, EventQueue, Time, Verdict, millis};

/// Tunables of [`AdaptiveProbing`]; `None` fields are derived from η and k.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Grace δ, added both to the first-miss deadline and to the final suspicion deadline.
    /// Written `grace_ms`.
    #[serde(rename = "grace_ms", with = "millis")]
    pub grace: Duration,
    /// Time between probes; default η/4. Written `probe_interval_ms`.
    #[serde(
        rename = "probe_interval_ms",
        with = "millis::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub probe_interval: Option<Duration>,
    /// Number of probes before suspecting; default k − 1, and at least 1 either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trusting,
    /// `sent` probes have been emitted since the first miss at `first_miss`.
    Probing {
        first_miss: Time,
        sent: u32,
    },
    Suspecting,
}

/// The adaptive probing detector. See the module docs for its rules.
#[derive(Clone, Debug)]
pub struct AdaptiveProbing {
    config: AdaptiveConfig,
    interval: Duration,
    probe_interval: Duration,
    probes: u32,
    last_arrival: Time,
    state: State,
    events: EventQueue,
}

impl AdaptiveProbing {
    /// The events not yet polled.
    #[inline]
    pub(crate) fn events(&self) -> &EventQueue {
        &self.events
    }

    /// A detector created at `now`, trusting, with a virtual heartbeat at `now`.
    pub fn new(now: Time, interval: Duration, miss_threshold: u32, config: AdaptiveConfig) -> Self {
        let mut d = AdaptiveProbing {
            config,
            interval,
            probe_interval: Duration::ZERO,
            probes: 1,
            last_arrival: now,
            state: State::Trusting,
            events: EventQueue::default(),
        };
        d.derive(interval, miss_threshold);
        d
    }

    fn derive(&mut self, interval: Duration, miss_threshold: u32) {
        self.interval = interval;
        self.probe_interval = self.config.probe_interval.unwrap_or(interval / 4);
        self.probes = self
            .config
            .probes
            .unwrap_or(miss_threshold.saturating_sub(1))
            .max(1);
    }

    /// The time between probes π in use.
    pub fn probe_interval(&self) -> Duration {
        self.probe_interval
    }

    /// The number of probes n sent before suspecting.
    pub fn probes(&self) -> u32 {
        self.probes
    }

    /// `η + n·π + 2·δ`: the worst-case detection time after the peer's last heartbeat.
    pub fn worst_case_detection(&self) -> Duration {
        self.interval
            .saturating_add(self.probing_span())
            .saturating_add(self.config.grace)
            .saturating_add(self.config.grace)
    }

    fn probing_span(&self) -> Duration {
        super::times(self.probe_interval, self.probes)
    }

    fn first_miss(&self) -> Time {
        self.last_arrival + self.interval.saturating_add(self.config.grace)
    }

    fn suspect_at(&self, first_miss: Time) -> Time {
        first_miss + self.probing_span().saturating_add(self.config.grace)
    }

    /// The instant of probe number `sent` (counting from 0) after the first miss.
    fn probe_at(&self, first_miss: Time, sent: u32) -> Time {
        first_miss + super::times(self.probe_interval, sent)
    }
}

impl Detector for AdaptiveProbing {
    #[inline]
    fn handle_heartbeat(&mut self, now: Time) {
        if now >= self.last_arrival {
            self.last_arrival = now;
        }
        if self.state == State::Suspecting {
            self.events.push(DetectorEvent::Trust);
        }
        self.state = State::Trusting;
    }

    fn handle_timeout(&mut self, now: Time) {
        if self.state == State::Trusting {
            let first_miss = self.first_miss();
            if now < first_miss {
                return;
            }
            self.state = State::Probing {
                first_miss,
                sent: 0,
            };
        }
        if let State::Probing { first_miss, sent } = self.state {
            // Every probe slot already due counts as sent, but only one Probe goes out.
            // Slots are at first_miss + i·π, so (now − first_miss)/π + 1 of them are due; counted
            // by division rather than a loop so absurd probe counts cost nothing.
            let elapsed = (now - first_miss).as_nanos();
            let slots = match self.probe_interval.as_nanos() {
                0 => u128::from(self.probes),
                pi => elapsed / pi + 1,
            };
            let due = u32::try_from(slots)
                .unwrap_or(u32::MAX)
                .min(self.probes)
                .max(sent);
            if due > sent {
                self.events.push(DetectorEvent::Probe);
            }
            self.state = State::Probing {
                first_miss,
                sent: due,
            };
            if now >= self.suspect_at(first_miss) {
                self.state = State::Suspecting;
                self.events.push(DetectorEvent::Suspect {
                    silent: now - self.last_arrival,
                });
            }
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            State::Trusting => Some(self.first_miss()),
            State::Probing { first_miss, sent } => {
                let suspect = self.suspect_at(first_miss);
                if sent < self.probes {
                    Some(self.probe_at(first_miss, sent).min(suspect))
                } else {
                    Some(suspect)
                }
            }
            State::Suspecting => None,
        }
    }

    #[inline]
    fn poll_event(&mut self) -> Option<DetectorEvent> {
        self.events.pop()
    }

    #[inline]
    fn verdict(&self) -> Verdict {
        match self.state {
            State::Suspecting => Verdict::Suspect,
            State::Trusting | State::Probing { .. } => Verdict::Trust,
        }
    }

    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32) {
        self.derive(interval, miss_threshold);
        // Treated as a heartbeat at `now`, as the calling protocol says.
        self.handle_heartbeat(now);
        self.last_arrival = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proto::detector::test_util::{ETA, at, drain};

    /// Runs the detector by its own timeouts until `end`, recording (time, event).
    fn run_until(d: &mut AdaptiveProbing, end: Time) -> Vec<(Time, DetectorEvent)> {
        let mut out = Vec::new();
        while let Some(t) = d.poll_timeout() {
            if t > end {
                break;
            }
            d.handle_timeout(t);
            out.extend(std::iter::from_fn(|| d.poll_event()).map(|e| (t, e)));
        }
        out
    }

    #[test]
    fn defaults_derive_from_interval_and_miss_threshold() {
        let d = AdaptiveProbing::new(at(0), ETA, 3, AdaptiveConfig::default());
        assert_eq!(d.probe_interval(), Duration::from_millis(250));
        assert_eq!(d.probes(), 2);
        assert_eq!(d.worst_case_detection(), Duration::from_millis(1500));
        let one = AdaptiveProbing::new(at(0), ETA, 1, AdaptiveConfig::default());
        assert_eq!(one.probes(), 1);
    }

    #[test]
    fn first_miss_probes_then_reprobes_then_suspects_on_schedule() {
        let grace = Duration::from_millis(100);
        let config = AdaptiveConfig {
            grace,
            ..AdaptiveConfig::default()
        };
        let mut d = AdaptiveProbing::new(at(0), ETA, 4, config);
        d.handle_heartbeat(at(1000));
        let events = run_until(&mut d, at(10_000));
        let probe = DetectorEvent::Probe;
        assert_eq!(
            events,
            [
                (at(2100), probe),
                (at(2350), probe),
                (at(2600), probe),
                (
                    at(2950),
                    DetectorEvent::Suspect {
                        silent: Duration::from_millis(1950)
                    }
                ),
            ]
        );
        assert_eq!(d.worst_case_detection(), Duration::from_millis(1950));
        assert_eq!(d.verdict(), Verdict::Suspect);
    }

    #[test]
    fn probe_reply_returns_to_trusting_without_suspicion() {
        let mut d = AdaptiveProbing::new(at(0), ETA, 3, AdaptiveConfig::default());
        d.handle_timeout(at(1000));
        assert_eq!(drain(&mut d), [DetectorEvent::Probe]);
        assert_eq!(d.poll_timeout(), Some(at(1250)));
        d.handle_heartbeat(at(1040));
        assert!(drain(&mut d).is_empty());
        assert_eq!(d.verdict(), Verdict::Trust);
        assert_eq!(d.poll_timeout(), Some(at(2040)));
    }

    #[test]
    fn arrival_after_suspicion_emits_trust() {
        let mut d = AdaptiveProbing::new(at(0), ETA, 2, AdaptiveConfig::default());
        run_until(&mut d, at(5000));
        assert_eq!(d.verdict(), Verdict::Suspect);
        assert_eq!(d.poll_timeout(), None);
        d.handle_heartbeat(at(6000));
        assert_eq!(drain(&mut d), [DetectorEvent::Trust]);
        assert_eq!(d.poll_timeout(), Some(at(7000)));
    }

    #[test]
    fn heartbeat_exactly_at_first_miss_prevents_the_probe() {
        let mut d = AdaptiveProbing::new(at(0), ETA, 3, AdaptiveConfig::default());
        d.handle_heartbeat(at(1000));
        d.handle_timeout(at(1000));
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn late_timeout_sends_one_probe_and_suspects_if_due() {
        let mut d = AdaptiveProbing::new(at(0), ETA, 5, AdaptiveConfig::default());
        d.handle_timeout(at(1600));
        assert_eq!(drain(&mut d), [DetectorEvent::Probe]);
        assert_eq!(d.poll_timeout(), Some(at(1750)));
        d.handle_timeout(at(9000));
        assert_eq!(
            drain(&mut d),
            [
                DetectorEvent::Probe,
                DetectorEvent::Suspect {
                    silent: Duration::from_secs(9)
                }
            ]
        );
    }

    #[test]
    fn set_params_rederives_defaults_and_rearms() {
        let mut d = AdaptiveProbing::new(at(0), ETA, 3, AdaptiveConfig::default());
        run_until(&mut d, at(5000));
        drain(&mut d);
        d.set_params(at(5000), Duration::from_millis(400), 5);
        assert_eq!(drain(&mut d), [DetectorEvent::Trust]);
        assert_eq!(d.probe_interval(), Duration::from_millis(100));
        assert_eq!(d.probes(), 4);
        assert_eq!(d.poll_timeout(), Some(at(5400)));
    }

    #[test]
    fn zero_intervals_do_not_loop_or_panic() {
        let config = AdaptiveConfig {
            probe_interval: Some(Duration::ZERO),
            probes: Some(u32::MAX),
            ..AdaptiveConfig::default()
        };
        let mut d = AdaptiveProbing::new(at(0), Duration::ZERO, 0, config);
        d.handle_timeout(at(0));
        assert_eq!(d.verdict(), Verdict::Suspect);
    }
}
