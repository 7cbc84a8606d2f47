//! [`Direction`]: the faults of one direction between two hosts (latency, loss, outages, latency
//! episodes) and, with a [`LinkRate`], the link's bandwidth and the FIFO queue in front of it.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::latency::from_ms;
use super::{FaultError, HISTORY, Latency, LossProcess, Timeline};

/// The faults of one direction between two hosts, shared by every connection between them.
#[derive(Clone, Debug)]
pub struct Direction {
    latency: Latency,
    /// The latency's one value if it is constant: worked out once, since every packet needs it.
    constant: Option<Duration>,
    pub(super) loss: LossProcess,
    outages: Timeline,
    /// Latency episodes (spikes, a slow "gray" peer): `[start, end)` with their own
    /// distribution, sorted by start; outside them `latency` applies.
    episodes: Vec<(Range<Duration>, Latency)>,
    /// The link's rate and queue; `None` = infinitely fast.
    queue: Option<LinkQueue>,
}

/// Bytes of headers each packet carries on the wire besides its payload: IPv4 (20), TCP (20)
/// and the timestamp option with its padding (12), as on a Linux connection.
pub const HEADER_BYTES: usize = 52;

/// A link's bandwidth and queue, as netem's `rate` and `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRate {
    /// Bits per second.
    pub bits_per_s: u64,
    /// Packets the queue holds, the one being sent included; one more is dropped (tail drop).
    pub queue: usize,
}

impl LinkRate {
    /// netem's default `limit`.
    pub const DEFAULT_QUEUE: usize = 1000;

    pub fn validate(&self) -> Result<(), FaultError> {
        if self.bits_per_s == 0 {
            return Err(FaultError::Rate("the rate must be at least 1 bit/s"));
        }
        if self.queue == 0 {
            return Err(FaultError::Rate("the queue must hold at least 1 packet"));
        }
        Ok(())
    }

    /// How long the link takes to send a packet of `payload` bytes (headers added), rounded up
    /// to a nanosecond.
    pub fn serialization(&self, payload: usize) -> Duration {
        let bits = (payload as u128 + HEADER_BYTES as u128) * 8;
        let ns = (bits * 1_000_000_000).div_ceil(u128::from(self.bits_per_s.max(1)));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// A FIFO queue in front of a link of finite rate: a packet waits for the ones before it, then
/// takes its serialization time; one arriving when the queue is full is dropped.
#[derive(Clone, Debug)]
struct LinkQueue {
    rate: LinkRate,
    /// When the link has sent the last bit of everything queued so far.
    busy_until: Duration,
    /// When each packet still queued (or being sent) leaves the link, oldest first.
    leaving: VecDeque<Duration>,
    drops: u64,
}

impl LinkQueue {
    /// A packet of `payload` bytes offered at `at`: when its last bit leaves, or `None` if the
    /// queue is full. Packets are taken in the order offered: the network's connections are
    /// run event by event, so offers come in time order up to the few events of one instant.
    fn offer(&mut self, at: Duration, payload: usize) -> Option<Duration> {
        while self.leaving.front().is_some_and(|&t| t <= at) {
            self.leaving.pop_front();
        }
        if self.leaving.len() >= self.rate.queue {
            self.drops += 1;
            return None;
        }
        let done = self
            .busy_until
            .max(at)
            .saturating_add(self.rate.serialization(payload));
        self.busy_until = done;
        self.leaving.push_back(done);
        Some(done)
    }
}

impl Direction {
    pub fn new(
        latency: Latency,
        loss: LossProcess,
        outages: Timeline,
    ) -> Result<Direction, FaultError> {
        latency.validate()?;
        let constant = match latency {
            Latency::Constant { value_ms } => Some(from_ms(value_ms)),
            _ => None,
        };
        Ok(Direction {
            constant,
            latency,
            loss,
            outages,
            episodes: Vec::new(),
            queue: None,
        })
    }

    /// The same direction with a finite rate and a queue in front of it.
    pub fn with_rate(mut self, rate: Option<LinkRate>) -> Result<Direction, FaultError> {
        if let Some(r) = &rate {
            r.validate()?;
        }
        self.queue = rate.map(|rate| LinkQueue {
            rate,
            busy_until: Duration::ZERO,
            leaving: VecDeque::new(),
            drops: 0,
        });
        Ok(self)
    }

    /// Packets dropped so far because the queue was full.
    pub fn queue_drops(&self) -> u64 {
        self.queue.as_ref().map_or(0, |q| q.drops)
    }

    /// The same direction with latency episodes: during each `[start, end)` one-way delays are
    /// drawn from its distribution instead (the first episode containing `t` wins).
    pub fn with_episodes(
        mut self,
        mut episodes: Vec<(Range<Duration>, Latency)>,
    ) -> Result<Direction, FaultError> {
        for (_, l) in &episodes {
            l.validate()?;
        }
        episodes.sort_by_key(|(r, _)| r.start);
        self.episodes = episodes;
        Ok(self)
    }

    /// One-way delay of a transmission at `t`: drawn from the episode in force then, if any,
    /// else from `latency` (a constant one draws nothing).
    fn delay_at<R: Rng + ?Sized>(&self, t: Duration, rng: &mut R) -> Duration {
        let episode = self
            .episodes
            .iter()
            .take_while(|(r, _)| r.start <= t)
            .find(|(r, _)| r.contains(&t));
        match (episode, self.constant) {
            (Some((_, l)), _) => l.sample(rng),
            (None, Some(d)) => d,
            (None, None) => self.latency.sample(rng),
        }
    }

    /// A direction with only latency: no loss, no outage.
    pub fn ideal(latency: Latency) -> Result<Direction, FaultError> {
        Direction::new(latency, LossProcess::none(), Timeline::empty())
    }

    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    pub fn loss(&self) -> &LossProcess {
        &self.loss
    }

    pub fn outages(&self) -> &Timeline {
        &self.outages
    }

    /// Whether a transmission at `t` is lost: one loss draw, then the outages.
    fn lost<R: Rng + ?Sized>(&mut self, t: Duration, rng: &mut R) -> bool {
        let lost = self.loss.is_lost(t, rng);
        lost || self.outages.blocked(t)
    }

    /// One connection's packet of `payload` bytes sent at `t`, carried as `carry` carries it
    /// (through the queue), once the loss state has dropped what is older than [`HISTORY`]
    /// before `t`.
    pub fn carry_packet<R: Rng + ?Sized>(
        &mut self,
        t: Duration,
        payload: usize,
        rng: &mut R,
    ) -> Option<Duration> {
        self.loss.forget_before(t.saturating_sub(HISTORY));
        self.carry(t, Some(payload), rng)
    }

    /// When a transmission sent at `t` arrives, or `None` if lost. With a rate, a packet of
    /// `payload` bytes first waits in the queue and is serialized (a full queue drops it before
    /// any draw); loss, outages and latency then apply from when its last bit leaves, since that
    /// is when it is on the wire. `payload: None` bypasses the queue (the handshake, which is
    /// played out ahead of time and must not book the link in the future).
    pub(super) fn carry<R: Rng + ?Sized>(
        &mut self,
        t: Duration,
        payload: Option<usize>,
        rng: &mut R,
    ) -> Option<Duration> {
        let t = match (&mut self.queue, payload) {
            (Some(q), Some(bytes)) => q.offer(t, bytes)?,
            _ => t,
        };
        if self.lost(t, rng) {
            return None;
        }
        Some(t.saturating_add(self.delay_at(t, rng)))
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::sim::fault::testing::{ms, rng};
    use crate::sim::fault::{Path, TcpConfig};

    fn us(x: u64) -> Duration {
        Duration::from_micros(x)
    }

    /// A 5 ms link with `rate` one way and none back.
    fn rated(rate: LinkRate) -> (Direction, Direction) {
        let fwd = Direction::ideal(Latency::constant(ms(5)))
            .unwrap()
            .with_rate(Some(rate))
            .unwrap();
        (fwd, Direction::ideal(Latency::constant(ms(5))).unwrap())
    }

    #[test]
    fn a_link_with_a_rate_serializes_packets_back_to_back_then_adds_the_latency() {
        // 1 Mbit/s: a 1448-byte segment is 1500 bytes on the wire, 12 ms; a pure ACK 52 bytes,
        // 0.416 ms. Three offered at once leave one after the other; one offered after the
        // link went idle waits for nothing.
        let rate = LinkRate {
            bits_per_s: 1_000_000,
            queue: 1000,
        };
        let (mut fwd, mut rev) = rated(rate);
        let tcp = TcpConfig::default();
        let mut path = Path::new(&mut fwd, &mut rev, &tcp);
        let mut r = rng(1);
        let at = |p: &mut Path<'_>, t: Duration, bytes: usize, r: &mut ChaCha8Rng| {
            p.carry_sized(t, bytes, r).unwrap()
        };
        assert_eq!(at(&mut path, ms(0), 1448, &mut r), ms(12 + 5));
        assert_eq!(at(&mut path, ms(0), 1448, &mut r), ms(24 + 5));
        assert_eq!(at(&mut path, ms(1), 0, &mut r), ms(24) + us(416) + ms(5));
        assert_eq!(at(&mut path, ms(100), 1448, &mut r), ms(112 + 5));
        assert_eq!(rate.serialization(1448), ms(12));
    }

    #[test]
    fn a_full_queue_drops_what_arrives_until_a_packet_has_left() {
        let (mut fwd, mut rev) = rated(LinkRate {
            bits_per_s: 1_000_000,
            queue: 3,
        });
        let tcp = TcpConfig::default();
        let mut path = Path::new(&mut fwd, &mut rev, &tcp);
        let mut r = rng(1);
        // Three 12 ms packets fill the queue (the one being sent counts); the fourth is dropped.
        let sent: Vec<Option<Duration>> = (0..4)
            .map(|_| path.carry_sized(ms(0), 1448, &mut r))
            .collect();
        assert_eq!(sent, [Some(ms(17)), Some(ms(29)), Some(ms(41)), None]);
        // At 12 ms the first has left: room for one more, behind the other two.
        assert_eq!(path.carry_sized(ms(11), 1448, &mut r), None);
        assert_eq!(path.carry_sized(ms(12), 1448, &mut r), Some(ms(53)));
        assert_eq!(fwd.queue_drops(), 2);
    }

    #[test]
    fn a_rate_of_zero_or_an_empty_queue_is_refused() {
        let d = || Direction::ideal(Latency::constant(ms(1))).unwrap();
        for (bits_per_s, queue) in [(0, 10), (1000, 0)] {
            let rate = LinkRate { bits_per_s, queue };
            assert!(matches!(
                d().with_rate(Some(rate)),
                Err(FaultError::Rate(_))
            ));
        }
    }
}
