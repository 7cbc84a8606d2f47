//! The TCP-schedule detector: a heartbeat late on a live TCP connection arrives on the
//! kernel's retransmission schedule, so the detector waits for a chosen number of resends of
//! the next heartbeat, timed from the round trips it measures, and no longer.
//!
//! # Why
//!
//! Over TCP a heartbeat is never lost, only late: when the segment carrying it is lost, the
//! sender's kernel resends it after a tail-loss probe (about `2·srtt + 200 ms` with one segment
//! in flight) and then on its retransmission timer (`RTO = srtt + max(4·rttvar, 200 ms)`,
//! doubling at each further loss), and everything written meanwhile waits behind it
//! (`../shared/docs/network-semantics.md`, `docs/kernel-reference.md`). A live peer's heartbeat is
//! therefore due at one of a few instants after its expected arrival: at once, or after the probe,
//! or after one, three, seven … RTOs more. A fixed timeout (k-miss) placed between two of those
//! instants waits for nothing: it suspects on exactly the stalls the earlier instant would have
//! caught, and detects later. This detector puts its deadline just after the instant at which the
//! `(k − 1)`-th resend of the next heartbeat would have arrived:
//!
//! ```text
//! deadline = last arrival + η + W(k) + δ0
//! W(1) = 0,  W(k) = PTO + (2^(k−2) − 1)·RTO  for k ≥ 2
//! PTO = 2·srtt + 200 ms,  RTO = srtt + max(4·rttvar, 200 ms)
//! ```
//!
//! so that `k` means "suspect when `k` transmissions of the next heartbeat in a row would all
//! have had to be lost for it to be this late" (k = 1: any loss is suspected). `srtt` and `rttvar`
//! are estimated from the heartbeat round trips the session measures ([`Detector::handle_rtt`]),
//! with RFC 6298's gains, and, as Karn's rule has the kernel do, a round trip longer than the
//! current RTO is not sampled: it must have waited for a resend, and would inflate the estimate
//! the kernel itself keeps.
//!
//! # Rules
//!
//! - Until the first round trip is measured the detector assumes the kernel's initial RTO
//!   (1 s) for both the probe and the RTO: slower, never more eager. A watcher that measures no
//!   round trips (the server in one-way mode) stays there.
//! - Trusting, it suspects when `handle_timeout(now)` sees `now ≥ deadline`; an arrival at the
//!   deadline handed in first re-arms it (the module-level tie rule). Suspecting, the next
//!   arrival restores trust.
//! - `k` above 12 is treated as 12 (a wait of 1,023 RTOs is no failure detector).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Detector, DetectorEvent, EventQueue, Silence, Time, Verdict, millis};

/// The kernel's floor on the RTO (Linux `TCP_RTO_MIN`) and the delayed-ACK allowance a tail-loss
/// probe adds when one segment is in flight (RFC 8985 §7.2, Linux).
const RTO_MIN: Duration = Duration::from_millis(200);
/// The RTO before any round trip is known (RFC 6298 §2.1).
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// The largest k honoured.
const MAX_K: u32 = 12;

/// Tunables of [`TcpSchedule`] beyond η and k.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpScheduleConfig {
    /// Grace δ0 added to the deadline, for delay jitter and the kernel's timer granularity.
    /// Written `grace_ms`.
    #[serde(rename = "grace_ms", with = "millis")]
    pub grace: Duration,
}

/// The TCP-schedule failure detector. See the module docs for its rules.
#[derive(Clone, Debug)]
pub struct TcpSchedule {
    config: TcpScheduleConfig,
    interval: Duration,
    miss_threshold: u32,
    /// Smoothed round trip and its mean deviation, once one has been measured.
    srtt: Option<(Duration, Duration)>,
    /// `η + W(k) + δ0`, recomputed when the estimate changes.
    timeout: Duration,
    silence: Silence,
}

impl TcpSchedule {
    /// The events not yet polled.
    #[inline]
    pub(crate) fn events(&self) -> &EventQueue {
        self.silence.events()
    }

    /// A detector created at `now`, trusting, with a virtual heartbeat at `now`.
    pub fn new(
        now: Time,
        interval: Duration,
        miss_threshold: u32,
        config: TcpScheduleConfig,
    ) -> TcpSchedule {
        let mut d = TcpSchedule {
            config,
            interval,
            miss_threshold,
            srtt: None,
            timeout: Duration::ZERO,
            silence: Silence::new(now, Duration::ZERO),
        };
        d.rearm();
        d
    }

    /// The kernel's retransmission timeout as estimated from the round trips seen so far.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            Some((srtt, var)) => srtt + (4 * var).max(RTO_MIN),
            None => INITIAL_RTO,
        }
    }

    /// The tail-loss probe's timeout with one segment in flight.
    pub fn pto(&self) -> Duration {
        match self.srtt {
            Some((srtt, _)) => 2 * srtt + RTO_MIN,
            None => INITIAL_RTO,
        }
    }

    /// The silence after the last heartbeat at which the detector suspects:
    /// `η + W(k) + δ0` (module docs).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `W(k)`: how late the next heartbeat is when its first `k − 1` resends were lost too.
    fn wait(&self) -> Duration {
        match self.miss_threshold.min(MAX_K) {
            0 | 1 => Duration::ZERO,
            k => self.pto() + self.rto() * ((1u32 << (k - 2)) - 1),
        }
    }

    fn set_timeout(&mut self) {
        self.timeout = self
            .interval
            .saturating_add(self.wait())
            .saturating_add(self.config.grace);
    }

    fn rearm(&mut self) {
        self.set_timeout();
        self.silence.rearm(self.timeout);
    }
}

impl Detector for TcpSchedule {
    fn handle_heartbeat(&mut self, now: Time) {
        self.silence.arrived(now, self.timeout);
    }

    fn handle_rtt(&mut self, rtt: Duration) {
        // Karn: a round trip past the RTO waited for a resend; the kernel would not sample it.
        if self.srtt.is_some() && rtt > self.rto() {
            return;
        }
        self.srtt = Some(match self.srtt {
            None => (rtt, rtt / 2),
            Some((srtt, var)) => {
                let err = srtt.abs_diff(rtt);
                ((srtt * 7 + rtt) / 8, (var * 3 + err) / 4)
            }
        });
        self.rearm();
    }

    fn handle_timeout(&mut self, now: Time) {
        self.silence.expire(now);
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.silence.poll_timeout()
    }

    fn poll_event(&mut self) -> Option<DetectorEvent> {
        self.silence.poll_event()
    }

    fn verdict(&self) -> Verdict {
        self.silence.verdict()
    }

    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32) {
        // The round-trip estimate belongs to the connection, not to η and k: it is kept.
        self.interval = interval;
        self.miss_threshold = miss_threshold;
        self.set_timeout();
        self.silence.restart(now, self.timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::detector::test_util::{ETA, at, drain};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn with_rtt(k: u32, rtt: Duration) -> TcpSchedule {
        let mut d = TcpSchedule::new(at(0), ETA, k, TcpScheduleConfig::default());
        for _ in 0..20 {
            d.handle_rtt(rtt);
        }
        d
    }

    #[test]
    fn before_any_round_trip_the_kernels_initial_rto_sets_the_wait() {
        let d = TcpSchedule::new(at(0), ETA, 3, TcpScheduleConfig::default());
        // η + PTO + 1·RTO, both 1 s.
        assert_eq!(d.timeout(), ms(3000));
    }

    #[test]
    fn the_deadline_sits_after_the_resend_that_k_allows() {
        // A steady 60 ms round trip: rttvar decays towards 0, so RTO = 60 + 200 ms, PTO = 320 ms.
        for (k, wait) in [
            (1, 0),
            (2, 320),
            (3, 320 + 260),
            (4, 320 + 3 * 260),
            (5, 320 + 7 * 260),
        ] {
            let d = with_rtt(k, ms(60));
            let got = d.timeout().as_millis() as i64 - 1000;
            assert!(
                (got - wait).abs() <= 2,
                "k = {k}: waited {got} ms, not {wait}"
            );
        }
    }

    #[test]
    fn a_round_trip_that_waited_for_a_resend_does_not_inflate_the_estimate() {
        let mut d = with_rtt(3, ms(60));
        let before = d.rto();
        d.handle_rtt(ms(900));
        assert_eq!(d.rto(), before);
        // A genuinely slower path is followed.
        for _ in 0..50 {
            d.handle_rtt(ms(150));
        }
        assert!(d.rto() > ms(340), "{:?}", d.rto());
    }

    #[test]
    fn silence_past_the_deadline_is_suspected_and_a_heartbeat_restores_trust() {
        let mut d = with_rtt(2, ms(60));
        d.handle_heartbeat(at(1000));
        let deadline = d.poll_timeout().unwrap();
        assert_eq!(deadline, at(1000) + d.timeout());
        d.handle_timeout(at(1000) + (d.timeout() - ms(1)));
        assert_eq!(d.verdict(), Verdict::Trust);
        d.handle_timeout(deadline);
        assert_eq!(
            drain(&mut d),
            vec![DetectorEvent::Suspect {
                silent: d.timeout()
            }]
        );
        assert_eq!(d.poll_timeout(), None);
        d.handle_heartbeat(deadline + ms(5));
        assert_eq!(drain(&mut d), vec![DetectorEvent::Trust]);
    }

    #[test]
    fn an_arrival_at_the_deadline_handed_in_first_prevents_the_suspicion() {
        let mut d = with_rtt(2, ms(60));
        let deadline = d.poll_timeout().unwrap();
        d.handle_heartbeat(deadline);
        d.handle_timeout(deadline);
        assert_eq!(d.verdict(), Verdict::Trust);
    }

    #[test]
    fn new_parameters_keep_the_round_trip_estimate() {
        let mut d = with_rtt(3, ms(60));
        let rto = d.rto();
        d.set_params(at(500), ms(500), 2);
        assert_eq!(d.rto(), rto);
        assert_eq!(d.poll_timeout(), Some(at(500) + ms(500) + d.pto()));
    }

    #[test]
    fn an_absurd_k_is_capped_rather_than_overflowing() {
        let d = with_rtt(u32::MAX, ms(60));
        assert!(d.timeout() < Duration::from_secs(3600));
    }
}
