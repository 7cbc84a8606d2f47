//! [`TcpConfig`]: the kernels' TCP settings (Linux defaults), their retransmission budgets and
//! the SYN [`Backoff`].

use std::time::Duration;

/// The kernel TCP settings that shape a connection's stalls (Linux defaults). The model that
/// uses them is [`TcpModel`](crate::sim::tcp::TcpModel).
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
    /// The instants of a SYN's resends after the first: 1, 3, 7, 15 … s by default. A server
    /// resends its SYN-ACK on the same schedule from its first one.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fault::testing::{ms, secs};

    #[test]
    fn budgets_and_syn_schedule_follow_linux() {
        let tcp = TcpConfig::default();
        assert_eq!(tcp.budget(tcp.rto_min, 15), ms(924_600));
        assert_eq!(tcp.budget(tcp.syn_rto, 6), secs(127.0));
        let syn: Vec<u64> = tcp.syn_offsets().take(4).map(|d| d.as_secs()).collect();
        assert_eq!(syn, [1, 3, 7, 15]);
    }
}
