//! The k-miss detector: a fixed timeout of `k·η + δ0` after the last heartbeat.
//!
//! This is the seed's design, and the detector of BFD, MQTT keep-alive and gRPC keepalive. In the
//! vocabulary of Chen, Toueg and Aguilera (2002) it is NFD-S with freshness offset
//! `δ = (k−1)·η + δ0`.
//!
//! # Rules
//!
//! - Trusting, the detector suspects when `handle_timeout(now)` sees
//!   `now ≥ last_arrival + k·η + δ0`.
//! - Tie rule: an arrival at exactly that deadline, handed to `handle_heartbeat` before the
//!   timeout (as the module-level calling protocol requires), re-arms the deadline and prevents
//!   the suspicion. With heartbeats every η and no delay this makes the detector suspect only
//!   after k *consecutive* heartbeats are missing, which is what the closed forms assume.
//! - Suspecting, the next arrival restores trust.
//! - Worst-case detection time: `k·η + δ0` after the peer's last heartbeat (plus the maximum
//!   one-way delay in a real network).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Detector, DetectorEvent, EventQueue, Silence, Time, Verdict, millis, times};

/// Tunables of [`KMiss`] beyond the protocol's η and k.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KMissConfig {
    /// Grace δ0 added to `k·η`, to absorb delay and jitter. Written `grace_ms`.
    #[serde(rename = "grace_ms", with = "millis")]
    pub grace: Duration,
}

/// The k-miss (fixed timeout) failure detector. See the module docs for its rules.
#[derive(Clone, Debug)]
pub struct KMiss {
    config: KMissConfig,
    interval: Duration,
    miss_threshold: u32,
    /// `k·η + δ0`, kept so that an arrival costs one addition.
    timeout: Duration,
    silence: Silence,
}

impl KMiss {
    /// The events not yet polled.
    #[inline]
    pub(crate) fn events(&self) -> &EventQueue {
        self.silence.events()
    }

    /// A detector created at `now`, trusting, with a virtual heartbeat at `now`.
    pub fn new(now: Time, interval: Duration, miss_threshold: u32, config: KMissConfig) -> KMiss {
        let timeout = times(interval, miss_threshold).saturating_add(config.grace);
        KMiss {
            config,
            interval,
            miss_threshold,
            timeout,
            silence: Silence::new(now, timeout),
        }
    }

    /// The silence after which the detector suspects: `k·η + δ0`. It is also the worst-case
    /// detection time measured from the peer's last heartbeat.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The heartbeat interval η in use.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The miss threshold k in use.
    pub fn miss_threshold(&self) -> u32 {
        self.miss_threshold
    }
}

impl Detector for KMiss {
    #[inline]
    fn handle_heartbeat(&mut self, now: Time) {
        self.silence.arrived(now, self.timeout);
    }

    #[inline]
    fn handle_timeout(&mut self, now: Time) {
        self.silence.expire(now);
    }

    #[inline]
    fn poll_timeout(&self) -> Option<Time> {
        self.silence.poll_timeout()
    }

    #[inline]
    fn poll_event(&mut self) -> Option<DetectorEvent> {
        self.silence.poll_event()
    }

    #[inline]
    fn verdict(&self) -> Verdict {
        self.silence.verdict()
    }

    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32) {
        // The parameter change is treated as a heartbeat, so a suspicion ends with it.
        self.interval = interval;
        self.miss_threshold = miss_threshold;
        self.timeout = times(interval, miss_threshold).saturating_add(self.config.grace);
        self.silence.restart(now, self.timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proto::detector::test_util::{ETA, at, drain};

    #[test]
    fn k_miss_suspects_after_k_missed_beats() {
        let mut d = KMiss::new(at(0), ETA, 3, KMissConfig::default());
        d.handle_heartbeat(at(1000));
        assert_eq!(d.poll_timeout(), Some(at(4000)));
        d.handle_timeout(at(3999));
        assert_eq!(d.verdict(), Verdict::Trust);
        assert!(drain(&mut d).is_empty());
        d.handle_timeout(at(4000));
        assert_eq!(d.verdict(), Verdict::Suspect);
        assert_eq!(
            drain(&mut d),
            [DetectorEvent::Suspect {
                silent: Duration::from_secs(3)
            }]
        );
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn grace_delays_suspicion_by_exactly_the_grace() {
        let grace = Duration::from_millis(250);
        let mut d = KMiss::new(at(0), ETA, 2, KMissConfig { grace });
        assert_eq!(d.poll_timeout(), Some(at(2250)));
        assert_eq!(d.timeout(), Duration::from_millis(2250));
        d.handle_timeout(at(2249));
        assert_eq!(d.verdict(), Verdict::Trust);
        d.handle_timeout(at(2250));
        assert_eq!(d.verdict(), Verdict::Suspect);
    }

    #[test]
    fn arrival_exactly_at_the_deadline_prevents_suspicion() {
        let mut d = KMiss::new(at(0), ETA, 2, KMissConfig::default());
        d.handle_heartbeat(at(2000));
        d.handle_timeout(at(2000));
        assert_eq!(d.verdict(), Verdict::Trust);
        assert_eq!(d.poll_timeout(), Some(at(4000)));
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn late_timeout_reports_the_whole_silence() {
        let mut d = KMiss::new(at(0), ETA, 1, KMissConfig::default());
        d.handle_timeout(at(1700));
        assert_eq!(
            drain(&mut d),
            [DetectorEvent::Suspect {
                silent: Duration::from_millis(1700)
            }]
        );
    }

    #[test]
    fn next_arrival_restores_trust_and_rearms() {
        let mut d = KMiss::new(at(0), ETA, 2, KMissConfig::default());
        d.handle_timeout(at(2000));
        drain(&mut d);
        d.handle_heartbeat(at(5500));
        assert_eq!(d.verdict(), Verdict::Trust);
        assert_eq!(drain(&mut d), [DetectorEvent::Trust]);
        assert_eq!(d.poll_timeout(), Some(at(7500)));
        // A second arrival while trusting emits nothing.
        d.handle_heartbeat(at(6000));
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn set_params_rearms_from_now_with_the_new_interval() {
        let mut d = KMiss::new(at(0), ETA, 3, KMissConfig::default());
        d.set_params(at(500), Duration::from_millis(200), 2);
        assert_eq!(d.poll_timeout(), Some(at(900)));
        assert_eq!(d.interval(), Duration::from_millis(200));
        assert_eq!(d.miss_threshold(), 2);
        d.handle_timeout(at(900));
        assert_eq!(d.verdict(), Verdict::Suspect);
        drain(&mut d);
        d.set_params(at(1000), ETA, 1);
        assert_eq!(d.verdict(), Verdict::Trust);
        assert_eq!(drain(&mut d), [DetectorEvent::Trust]);
        assert_eq!(d.poll_timeout(), Some(at(2000)));
    }

    #[test]
    fn reordered_old_arrival_does_not_move_the_deadline_back() {
        let mut d = KMiss::new(at(0), ETA, 2, KMissConfig::default());
        d.handle_heartbeat(at(3000));
        d.handle_heartbeat(at(1000));
        assert_eq!(d.poll_timeout(), Some(at(5000)));
    }

    #[test]
    fn absurd_parameters_saturate_instead_of_panicking() {
        let mut d = KMiss::new(
            at(0),
            Duration::MAX,
            u32::MAX,
            KMissConfig {
                grace: Duration::MAX,
            },
        );
        d.handle_heartbeat(at(1));
        d.handle_timeout(Time::from_epoch(Duration::MAX));
        let mut z = KMiss::new(at(0), Duration::ZERO, 0, KMissConfig::default());
        z.handle_timeout(at(0));
        assert_eq!(z.verdict(), Verdict::Suspect);
    }
}
