//! Load-aware heartbeats: the server lengthens the interval it grants while it is overloaded.
//!
//! A saturated server answers late and sends late, so its peers see longer gaps and suspect it
//! although it is alive: a gray failure made worse by every heartbeat it must still handle.
//! [`Throttle`] decides, from the server's load samples, when to grant a longer interval (by
//! `factor`) and when to return to the configured one. Both moves wait until the load has stayed
//! past its threshold for `hold`, and the two thresholds differ (`high` > `low`), so a load
//! hovering around one threshold does not make the grant flap. The server tells every session
//! with CONFIG (§10), which re-arms both sides' timers and detectors for the new interval, so a
//! longer interval is never counted as misses.
//!
//! Sans-IO: load samples and time in, the interval to grant out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::frame::{HeartbeatParams, Load};
use super::time::Time;

/// When and how far to lengthen the granted interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThrottleConfig {
    /// CPU share (0 to 1) at or above which the interval is lengthened.
    pub high: f64,
    /// CPU share at or below which the configured interval is restored; below `high`.
    pub low: f64,
    /// The lengthened interval is the configured one times this (at least 2).
    pub factor: u32,
    /// How long the load must stay past a threshold before the grant changes.
    pub hold: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            high: 0.8,
            low: 0.5,
            factor: 2,
            hold: Duration::from_secs(2),
        }
    }
}

impl ThrottleConfig {
    /// What is wrong with it, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !(self.low > 0.0 && self.low < self.high && self.high <= 1.0) {
            return Err(format!(
                "needs 0 < low < high <= 1; found low {} and high {}",
                self.low, self.high
            ));
        }
        if self.factor < 2 {
            return Err(format!("factor must be at least 2; found {}", self.factor));
        }
        Ok(())
    }
}

/// The throttling decision for one server.
#[derive(Clone, Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    base: HeartbeatParams,
    throttled: bool,
    /// Since when the load has been past the threshold that would change the grant.
    past: Option<Time>,
}

impl Throttle {
    /// A throttle around the configured parameters `base`, not throttling.
    pub fn new(config: ThrottleConfig, base: HeartbeatParams) -> Throttle {
        Throttle {
            config,
            base,
            throttled: false,
            past: None,
        }
    }

    /// The parameters to grant now.
    pub fn granted(&self) -> HeartbeatParams {
        if self.throttled {
            HeartbeatParams {
                interval_ms: self.base.interval_ms.saturating_mul(self.config.factor),
                ..self.base
            }
        } else {
            self.base
        }
    }

    pub fn is_throttling(&self) -> bool {
        self.throttled
    }

    /// Takes a load sample at `now`; returns the new grant when it changes.
    pub fn handle_load(&mut self, now: Time, load: Load) -> Option<HeartbeatParams> {
        let cpu = f64::from(load.cpu_permille) / 1000.0;
        let past = if self.throttled {
            cpu <= self.config.low
        } else {
            cpu >= self.config.high
        };
        if !past {
            self.past = None;
            return None;
        }
        let since = *self.past.get_or_insert(now);
        if now.saturating_since(since) < self.config.hold {
            return None;
        }
        self.throttled = !self.throttled;
        self.past = None;
        Some(self.granted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    fn cpu(share: f64) -> Load {
        Load {
            cpu_permille: (share * 1000.0) as u16,
            mem_permille: 0,
        }
    }

    fn throttle() -> Throttle {
        Throttle::new(
            ThrottleConfig::default(),
            HeartbeatParams {
                interval_ms: 1000,
                miss_threshold: 3,
            },
        )
    }

    #[test]
    fn a_load_past_high_for_the_hold_doubles_the_interval_and_keeps_k() {
        let mut t = throttle();
        assert_eq!(t.handle_load(at(0), cpu(0.9)), None);
        assert_eq!(t.handle_load(at(1000), cpu(0.95)), None);
        let g = t
            .handle_load(at(2000), cpu(0.85))
            .expect("throttles after 2 s");
        assert_eq!((g.interval_ms, g.miss_threshold), (2000, 3));
        assert!(t.is_throttling());
    }

    #[test]
    fn a_dip_below_high_restarts_the_hold() {
        let mut t = throttle();
        t.handle_load(at(0), cpu(0.9));
        t.handle_load(at(1000), cpu(0.7));
        assert_eq!(t.handle_load(at(2000), cpu(0.9)), None);
        assert_eq!(t.handle_load(at(3000), cpu(0.9)), None);
        assert!(t.handle_load(at(4000), cpu(0.9)).is_some());
    }

    #[test]
    fn between_the_thresholds_the_grant_stays_as_it_is_either_way() {
        let mut t = throttle();
        for s in 0..10 {
            assert_eq!(t.handle_load(at(s * 1000), cpu(0.7)), None);
        }
        t.handle_load(at(10_000), cpu(0.9));
        t.handle_load(at(12_000), cpu(0.9));
        assert!(t.is_throttling());
        for s in 13..30 {
            assert_eq!(t.handle_load(at(s * 1000), cpu(0.6)), None);
        }
        assert!(t.is_throttling());
        t.handle_load(at(30_000), cpu(0.4));
        let g = t
            .handle_load(at(32_000), cpu(0.3))
            .expect("restores after 2 s");
        assert_eq!(g.interval_ms, 1000);
    }

    #[test]
    fn a_config_with_crossed_thresholds_or_a_factor_under_two_is_refused() {
        let bad = |high, low, factor| {
            ThrottleConfig {
                high,
                low,
                factor,
                hold: Duration::ZERO,
            }
            .check()
            .is_err()
        };
        assert!(bad(0.5, 0.8, 2));
        assert!(bad(1.5, 0.5, 2));
        assert!(bad(0.8, 0.5, 1));
        assert!(!bad(0.8, 0.5, 2));
    }
}
