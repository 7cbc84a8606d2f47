//! Failure detectors: pure state machines that turn heartbeat arrivals into trust and suspicion.
//!
//! # Calling protocol
//!
//! - [`Detector::handle_heartbeat`] for every heartbeat (or probe reply) from the peer.
//! - [`Detector::handle_timeout`] whenever `now` reaches [`Detector::poll_timeout`]; calling it
//!   early or more often is harmless.
//! - Drain [`Detector::poll_event`] after either call: `Suspect`, `Trust` and `Probe` requests,
//!   oldest first. A `Probe` asks the owner to send one extra heartbeat now (adaptive probing).
//! - [`Detector::set_params`] when the heartbeat interval or miss threshold changes (handshake,
//!   CONFIG frame). The detector re-arms as if a heartbeat had arrived at `now`: it trusts and
//!   counts silence from `now`.
//!
//! A detector starts trusting and counts silence from its creation time, as if a heartbeat had
//! arrived then, so that a peer silent from the handshake on is still suspected. For the timing
//! only: the phi detector does not take the creation or `set_params` instant as a heartbeat when
//! it estimates inter-arrival times (see [`phi`]).
//!
//! # Ties
//!
//! When a heartbeat arrives at exactly the instant a timeout is due, drivers must call
//! `handle_heartbeat` first. Every detector here treats a deadline as reached only by
//! `handle_timeout`, so an arrival processed first at the deadline re-arms it and no suspicion
//! happens. The simulator orders same-instant arrivals before timers for this reason.
//!
//! # Choosing a detector
//!
//! [`DetectorConfig`] names a detector and its tunables (it is what scenario files carry);
//! [`DetectorConfig::build`] turns it into an [`AnyDetector`], which dispatches statically so that
//! the simulator's inner loop pays no virtual call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::Time;

/// What a detector currently believes about its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Verdict {
    Trust,
    Suspect,
}

/// An output of a detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DetectorEvent {
    /// Trust → suspect. `silent` is the time since the last heartbeat.
    Suspect { silent: Duration },
    /// Suspect → trust: a heartbeat arrived.
    Trust,
    /// Send one extra heartbeat to the peer now (its reply counts as a heartbeat).
    Probe,
}

/// The interface every failure detector implements.
pub trait Detector {
    fn handle_heartbeat(&mut self, now: Time);
    fn handle_timeout(&mut self, now: Time);
    fn poll_timeout(&self) -> Option<Time>;
    fn poll_event(&mut self) -> Option<DetectorEvent>;
    fn verdict(&self) -> Verdict;
    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32);
    /// A heartbeat round trip was measured on this connection. Detectors that do not use round
    /// trips ignore it.
    fn handle_rtt(&mut self, _rtt: Duration) {}
}

/// A detector chosen at run time, dispatching by `match` rather than through a vtable: the
/// simulator updates millions of detectors per second and the match inlines.
#[derive(Clone, Debug)]
pub enum AnyDetector {
    KMiss(KMiss),
    Phi(PhiAccrual),
    Adaptive(AdaptiveProbing),
    Tcp(TcpSchedule),
}

impl AnyDetector {
    /// Whether [`Detector::poll_event`] has anything to give.
    #[inline]
    pub(crate) fn has_events(&self) -> bool {
        match self {
            AnyDetector::KMiss(d) => !d.events().is_empty(),
            AnyDetector::Phi(d) => !d.events().is_empty(),
            AnyDetector::Adaptive(d) => !d.events().is_empty(),
            AnyDetector::Tcp(d) => !d.events().is_empty(),
        }
    }

    /// The detector's name in reports: `"k-miss"`, `"phi"`, `"adaptive"` or `"tcp"`.
    pub fn name(&self) -> &'static str {
        match self {
            AnyDetector::KMiss(_) => "k-miss",
            AnyDetector::Phi(_) => "phi",
            AnyDetector::Adaptive(_) => "adaptive",
            AnyDetector::Tcp(_) => "tcp",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            AnyDetector::KMiss($d) => $e,
            AnyDetector::Phi($d) => $e,
            AnyDetector::Adaptive($d) => $e,
            AnyDetector::Tcp($d) => $e,
        }
    };
}

impl Detector for AnyDetector {
    #[inline]
    fn handle_heartbeat(&mut self, now: Time) {
        dispatch!(self, d => d.handle_heartbeat(now))
    }
    #[inline]
    fn handle_timeout(&mut self, now: Time) {
        dispatch!(self, d => d.handle_timeout(now))
    }
    #[inline]
    fn poll_timeout(&self) -> Option<Time> {
        dispatch!(self, d => d.poll_timeout())
    }
    #[inline]
    fn poll_event(&mut self) -> Option<DetectorEvent> {
        dispatch!(self, d => d.poll_event())
    }
    #[inline]
    fn verdict(&self) -> Verdict {
        dispatch!(self, d => d.verdict())
    }
    #[inline]
    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32) {
        dispatch!(self, d => d.set_params(now, interval, miss_threshold))
    }
    #[inline]
    fn handle_rtt(&mut self, rtt: Duration) {
        dispatch!(self, d => d.handle_rtt(rtt))
    }
}

/// Which detector to run, with its own tunables, as written in a scenario or config file.
///
/// The heartbeat interval η and miss threshold k are not here: they are protocol parameters
/// negotiated in the handshake and passed to [`DetectorConfig::build`] and
/// [`Detector::set_params`]. Durations are written as integer milliseconds in fields named
/// `*_ms`; omitted fields take their defaults.
///
/// For phi, k never changes the threshold. A pairing such as `phi:1s/3` (a scenario grid, the
/// `[heartbeat]` configuration, `mcpsim sweep`) means η = 1 s and an acceptable heartbeat pause
/// of (k − 1)·η = 2 s unless `[heartbeat.phi] acceptable_pause` is given
/// ([`PhiConfig::pause_for_miss_threshold`]), so that phi tolerates about as many missing
/// heartbeats as k-miss; the threshold is [`PhiConfig::threshold`] (8 by default) whatever k
/// is. A `PhiConfig` written out, as below, carries its own pause (Akka's 3 s if omitted).
/// For example (TOML):
///
/// ```toml
/// [detector]
/// kind = "phi"
/// threshold = 10.0
/// acceptable_heartbeat_pause_ms = 2000
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DetectorConfig {
    KMiss(KMissConfig),
    Phi(PhiConfig),
    Adaptive(AdaptiveConfig),
    Tcp(TcpScheduleConfig),
}

impl Default for DetectorConfig {
    /// The seed's design: a plain k-miss detector without grace.
    fn default() -> Self {
        DetectorConfig::KMiss(KMissConfig::default())
    }
}

impl DetectorConfig {
    /// A detector created at `now` for a peer heartbeating every `interval`, with miss
    /// threshold `miss_threshold`.
    pub fn build(&self, now: Time, interval: Duration, miss_threshold: u32) -> AnyDetector {
        match self {
            DetectorConfig::KMiss(c) => {
                AnyDetector::KMiss(KMiss::new(now, interval, miss_threshold, *c))
            }
            DetectorConfig::Phi(c) => {
                AnyDetector::Phi(PhiAccrual::new(now, interval, miss_threshold, *c))
            }
            DetectorConfig::Adaptive(c) => {
                AnyDetector::Adaptive(AdaptiveProbing::new(now, interval, miss_threshold, *c))
            }
            DetectorConfig::Tcp(c) => {
                AnyDetector::Tcp(TcpSchedule::new(now, interval, miss_threshold, *c))
            }
        }
    }

    /// The detector's name in reports: `"k-miss"`, `"phi"`, `"adaptive"` or `"tcp"`.
    pub fn name(&self) -> &'static str {
        match self {
            DetectorConfig::KMiss(_) => "k-miss",
            DetectorConfig::Phi(_) => "phi",
            DetectorConfig::Adaptive(_) => "adaptive",
            DetectorConfig::Tcp(_) => "tcp",
        }
    }
}

/// A small FIFO of pending detector events with a fixed capacity, so a detector never allocates
/// on its hot path and never grows without bound if its owner forgets to drain it. On overflow
/// the oldest event is dropped: the owner is expected to drain after every call, and at most
/// two or three events can be produced by one call.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventQueue {
    buf: [Option<DetectorEvent>; EventQueue::CAPACITY],
    head: u8,
    len: u8,
}

impl EventQueue {
    const CAPACITY: usize = 8;

    #[inline]
    pub(crate) fn push(&mut self, e: DetectorEvent) {
        if usize::from(self.len) == Self::CAPACITY {
            self.head = ((usize::from(self.head) + 1) % Self::CAPACITY) as u8;
            self.len -= 1;
        }
        let tail = (usize::from(self.head) + usize::from(self.len)) % Self::CAPACITY;
        self.buf[tail] = Some(e);
        self.len += 1;
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<DetectorEvent> {
        if self.len == 0 {
            return None;
        }
        let e = self.buf[usize::from(self.head)].take();
        self.head = ((usize::from(self.head) + 1) % Self::CAPACITY) as u8;
        self.len -= 1;
        e
    }
}

/// What every fixed-timeout detector keeps: the last arrival, the deadline a timeout after it,
/// the verdict and the events not yet polled. k-miss and tcp differ only in how long the
/// timeout is; both follow the tie rule of the module docs through it.
#[derive(Clone, Debug)]
pub(crate) struct Silence {
    last_arrival: Time,
    deadline: Time,
    verdict: Verdict,
    events: EventQueue,
}

impl Silence {
    /// Trusting, as if a heartbeat had arrived at `now`.
    pub(crate) fn new(now: Time, timeout: Duration) -> Silence {
        Silence {
            last_arrival: now,
            deadline: now + timeout,
            verdict: Verdict::Trust,
            events: EventQueue::default(),
        }
    }

    /// A heartbeat at `now`: the deadline moves to `now + timeout` (never backwards, for a
    /// reordered older arrival), and a suspicion ends.
    #[inline]
    pub(crate) fn arrived(&mut self, now: Time, timeout: Duration) {
        if now >= self.last_arrival {
            self.last_arrival = now;
            self.deadline = now + timeout;
        }
        self.trust();
    }

    /// Suspects if trusting and `now` has reached the deadline.
    #[inline]
    pub(crate) fn expire(&mut self, now: Time) {
        if self.verdict == Verdict::Trust && now >= self.deadline {
            self.verdict = Verdict::Suspect;
            self.events.push(DetectorEvent::Suspect {
                silent: now - self.last_arrival,
            });
        }
    }

    /// The deadline while trusting; suspecting, only an arrival can change anything.
    #[inline]
    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        match self.verdict {
            Verdict::Trust => Some(self.deadline),
            Verdict::Suspect => None,
        }
    }

    /// The timeout changed: the deadline is `timeout` after the last arrival.
    pub(crate) fn rearm(&mut self, timeout: Duration) {
        self.deadline = self.last_arrival + timeout;
    }

    /// New parameters at `now`, treated as a heartbeat: re-armed from `now`, trusting.
    pub(crate) fn restart(&mut self, now: Time, timeout: Duration) {
        self.last_arrival = self.last_arrival.max(now);
        self.rearm(timeout);
        self.trust();
    }

    fn trust(&mut self) {
        if self.verdict == Verdict::Suspect {
            self.verdict = Verdict::Trust;
            self.events.push(DetectorEvent::Trust);
        }
    }

    #[inline]
    pub(crate) fn poll_event(&mut self) -> Option<DetectorEvent> {
        self.events.pop()
    }

    #[inline]
    pub(crate) fn events(&self) -> &EventQueue {
        &self.events
    }

    #[inline]
    pub(crate) fn verdict(&self) -> Verdict {
        self.verdict
    }
}

/// `interval · k`, saturating instead of panicking on absurd parameters.
pub(crate) fn times(interval: Duration, k: u32) -> Duration {
    interval.checked_mul(k).unwrap_or(Duration::MAX)
}

/// Serde helper: a [`Duration`] written as whole milliseconds (sub-millisecond parts are
/// truncated on output), so config files stay plain integers without a duration-parsing crate.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }

    /// The same for `Option<Duration>`, where `None` means "derive from η and k".
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
        }
    }
}

pub mod adaptive;
pub mod kmiss;
pub mod phi;
pub mod tcp;

pub use adaptive::{AdaptiveConfig, AdaptiveProbing};
pub use kmiss::{KMiss, KMissConfig};
pub use phi::{PhiAccrual, PhiConfig};
pub use tcp::{TcpSchedule, TcpScheduleConfig};

/// Helpers shared by the detectors' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::time::Duration;

    use super::{Detector, DetectorEvent, Time};

    pub const ETA: Duration = Duration::from_secs(1);

    /// `ms` milliseconds after the epoch.
    pub fn at(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    /// Every event the detector has queued, oldest first.
    pub fn drain(d: &mut impl Detector) -> Vec<DetectorEvent> {
        std::iter::from_fn(|| d.poll_event()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_kind_tag_and_millisecond_fields() {
        let c: DetectorConfig =
            serde_json::from_str(r#"{"kind":"k-miss","grace_ms":250}"#).unwrap();
        assert_eq!(
            c,
            DetectorConfig::KMiss(KMissConfig {
                grace: Duration::from_millis(250)
            })
        );
        let c: DetectorConfig = serde_json::from_str(
            r#"{"kind":"phi","threshold":10.0,"acceptable_heartbeat_pause_ms":2000}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            DetectorConfig::Phi(PhiConfig {
                threshold: 10.0,
                acceptable_heartbeat_pause: Duration::from_secs(2),
                ..PhiConfig::default()
            })
        );
        let c: DetectorConfig =
            serde_json::from_str(r#"{"kind":"adaptive","probe_interval_ms":100,"probes":3}"#)
                .unwrap();
        assert_eq!(
            c,
            DetectorConfig::Adaptive(AdaptiveConfig {
                grace: Duration::ZERO,
                probe_interval: Some(Duration::from_millis(100)),
                probes: Some(3),
            })
        );
    }

    #[test]
    fn config_rejects_unknown_kinds_and_fields() {
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"kind":"magic"}"#).is_err());
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"kind":"k-miss","grace":5}"#).is_err());
    }

    #[test]
    fn config_round_trips_through_its_serialized_form() {
        for c in [
            DetectorConfig::default(),
            DetectorConfig::Phi(PhiConfig::default()),
            DetectorConfig::Adaptive(AdaptiveConfig::default()),
        ] {
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(
                serde_json::from_str::<DetectorConfig>(&text).unwrap(),
                c,
                "{text}"
            );
        }
    }

    #[test]
    fn build_gives_the_named_detector_with_its_parameters() {
        let eta = Duration::from_secs(1);
        for (c, name, first_deadline_ms) in [
            (DetectorConfig::default(), "k-miss", 3000),
            (
                DetectorConfig::Adaptive(AdaptiveConfig::default()),
                "adaptive",
                1000,
            ),
        ] {
            let d = c.build(Time::ZERO, eta, 3);
            assert_eq!((c.name(), d.name()), (name, name));
            assert_eq!(
                d.poll_timeout(),
                Some(Time::from_epoch(Duration::from_millis(first_deadline_ms)))
            );
        }
        let phi = DetectorConfig::Phi(PhiConfig::default()).build(Time::ZERO, eta, 3);
        assert_eq!(phi.name(), "phi");
        assert!(phi.poll_timeout() > Some(Time::from_epoch(Duration::from_secs(4))));
    }

    #[test]
    fn any_detector_forwards_every_call() {
        let mut d = DetectorConfig::default().build(Time::ZERO, Duration::from_secs(1), 1);
        d.handle_timeout(Time::from_epoch(Duration::from_secs(1)));
        assert_eq!(d.verdict(), Verdict::Suspect);
        assert_eq!(
            d.poll_event(),
            Some(DetectorEvent::Suspect {
                silent: Duration::from_secs(1)
            })
        );
        d.set_params(
            Time::from_epoch(Duration::from_secs(2)),
            Duration::from_secs(2),
            1,
        );
        assert_eq!(d.poll_event(), Some(DetectorEvent::Trust));
        d.handle_heartbeat(Time::from_epoch(Duration::from_secs(3)));
        assert_eq!(d.poll_event(), None);
        assert_eq!(
            d.poll_timeout(),
            Some(Time::from_epoch(Duration::from_secs(5)))
        );
    }

    #[test]
    fn event_queue_keeps_the_newest_events_when_full() {
        let mut q = EventQueue::default();
        for i in 0..(EventQueue::CAPACITY as u64 + 2) {
            q.push(DetectorEvent::Suspect {
                silent: Duration::from_secs(i),
            });
        }
        let kept: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(kept.len(), EventQueue::CAPACITY);
        assert_eq!(
            kept[0],
            DetectorEvent::Suspect {
                silent: Duration::from_secs(2)
            }
        );
        assert_eq!(q.pop(), None);
    }
}
