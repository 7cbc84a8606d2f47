//! The delivery checker: what became of every application message of a run.
//!
//! In the spirit of Jepsen's queue checkers. Every message the traffic generators
//! ([`super::traffic`]) hand to a session carries its id (a stream and an index within it) in
//! its payload, and the [`Log`] records each message's send, every delivery to the receiving
//! application, every report back to the sender that it will not be delivered (§12), and the
//! death of the sending process. At the end of the run [`check`] decides each message's fate:
//!
//! - **delivered**: exactly once, in order within its channel;
//! - **reported**: not delivered, and the sender was told so when its session ended (a message
//!   reported and also delivered before the report is allowed: "not delivered" means *not known
//!   to be delivered*, §12);
//! - **died with its sender**: not delivered, and the sending process was killed or its machine
//!   crashed after the send (its memory, queues included, is gone; nobody is left to tell);
//! - **in flight at the end**: not delivered and not reported, no later message of its channel
//!   delivered, and the run ended before it could be: it was sent during the last `drain` of the
//!   run, or the two ends did not hold an established connection throughout that last `drain`,
//!   or its stream was still delivering during it (a backlog, such as a bulk transfer's queue,
//!   still on its way). Censored, not lost.
//!
//! Anything else is a violation:
//!
//! - **lost**: neither delivered nor reported, although a later message of its channel was
//!   delivered (a channel delivers in order: a gap is a loss whatever happened to the sender);
//!   or its sender alive, sent before the last `drain`, both ends connected throughout it, and
//!   nothing of its stream delivered in it (stuck);
//! - **duplicated**: delivered more than once (counted once per message);
//! - **reordered**: delivered after a later message of the same stream and channel;
//! - **unaccounted**: a delivery the senders cannot account for: a payload that carries no id of
//!   a message sent, or a delivery after the sender was told the message would not be delivered.
//!
//! Each violation keeps the message id, when it happened and the trace lines around it, so a
//! failing run says which message and where to look.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::histogram::LogHistogram;
use super::runner::TraceLine;

/// Bytes of a message id at the start of every generated payload: stream, then index.
pub const ID_LEN: usize = 16;

/// The server-origin bit of a stream id.
const FROM_SERVER: u64 = 1 << 63;

/// A stream: one sender's messages to one receiver, numbered from 0. A client's stream is its
/// process life (a restarted client starts a new one); a server's is one session of one server
/// process life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl StreamId {
    /// The stream of client `index`'s process life `life`.
    pub fn client(index: u32, life: u32) -> StreamId {
        StreamId((u64::from(life & 0x7fff_ffff) << 32) | u64::from(index))
    }

    /// The stream of session `session_id` of server process life `life`.
    pub fn server(life: u32, session_id: u32) -> StreamId {
        StreamId(FROM_SERVER | (u64::from(life & 0x7fff_ffff) << 32) | u64::from(session_id))
    }

    pub fn from_server(self) -> bool {
        self.0 & FROM_SERVER != 0
    }

    /// The session id of a server's stream; the client's index of a client's.
    pub fn session_or_client(self) -> u32 {
        self.0 as u32
    }
}

/// A message's id, as its payload carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MessageId {
    pub stream: StreamId,
    pub index: u64,
}

impl MessageId {
    /// Writes the id at the start of `payload` (at least [`ID_LEN`] bytes).
    pub fn write(self, payload: &mut [u8]) {
        payload[..8].copy_from_slice(&self.stream.0.to_be_bytes());
        payload[8..ID_LEN].copy_from_slice(&self.index.to_be_bytes());
    }

    /// The id a payload carries; `None` if it is too short to carry one.
    pub fn read(payload: &[u8]) -> Option<MessageId> {
        let stream = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
        let index = u64::from_be_bytes(payload.get(8..ID_LEN)?.try_into().ok()?);
        Some(MessageId {
            stream: StreamId(stream),
            index,
        })
    }
}

/// One stream's record.
#[derive(Clone, Debug, Default)]
struct Stream {
    /// The sending node (`client-3`, `server`) and its host.
    sender: String,
    host: String,
    /// The receiving node.
    receiver: String,
    /// Process life of the sender, for the message id's text.
    life: u32,
    /// Per index: channel and when it was handed to the session.
    sent: Vec<(u16, Duration)>,
    /// Indices handed over but taken back unsent (left in the application's queue when the
    /// session ended).
    withdrawn: BTreeSet<u64>,
    /// Deliveries in the order they happened: index and time.
    delivered: Vec<(u64, Duration)>,
    /// Index → when the sender was told it would not be delivered.
    reported: BTreeMap<u64, Duration>,
    /// When the sending process died.
    died: Option<Duration>,
}

/// Everything that happened to the messages of a run, as it happened. Shared by the
/// generators and applications of every simulated process.
#[derive(Debug, Default)]
pub struct Log {
    streams: BTreeMap<StreamId, Stream>,
    /// Deliveries of payloads that carry no id of a sent message: receiver, time.
    foreign: Vec<(String, Duration)>,
}

impl Log {
    /// A new stream from `sender` on `host` to `receiver`.
    pub fn open(&mut self, id: StreamId, sender: &str, host: &str, receiver: &str, life: u32) {
        self.streams.entry(id).or_insert_with(|| Stream {
            sender: sender.into(),
            host: host.into(),
            receiver: receiver.into(),
            life,
            ..Stream::default()
        });
    }

    /// Message `index` of `stream` was handed to the session at `at`. Indices come in order.
    pub fn sent(&mut self, stream: StreamId, index: u64, channel: u16, at: Duration) {
        if let Some(s) = self.streams.get_mut(&stream) {
            debug_assert_eq!(s.sent.len() as u64, index);
            s.sent.push((channel, at));
        }
    }

    /// Message `index` was handed over but taken back before the session had it.
    pub fn withdrawn(&mut self, stream: StreamId, index: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.withdrawn.insert(index);
        }
    }

    /// A payload reached the application of `receiver` at `at`.
    pub fn delivered(&mut self, receiver: &str, payload: &[u8], at: Duration) {
        let known = MessageId::read(payload).and_then(|id| {
            let s = self.streams.get_mut(&id.stream)?;
            (id.index < s.sent.len() as u64).then_some((s, id.index))
        });
        match known {
            Some((s, index)) => s.delivered.push((index, at)),
            None => self.foreign.push((receiver.into(), at)),
        }
    }

    /// The sender was told at `at` that the message in `payload` will not be delivered.
    pub fn reported(&mut self, payload: &[u8], at: Duration) {
        if let Some(id) = MessageId::read(payload)
            && let Some(s) = self.streams.get_mut(&id.stream)
        {
            s.reported.entry(id.index).or_insert(at);
        }
    }

    /// Every process on `host` died at `at`: their streams' undelivered messages died with them.
    pub fn host_died(&mut self, host: &str, at: Duration) {
        for s in self.streams.values_mut() {
            if s.host == host && s.died.is_none() {
                s.died = Some(at);
            }
        }
    }
}

/// What kind of violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    Lost,
    Duplicated,
    Reordered,
    Unaccounted,
}

impl ViolationKind {
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::Lost => "lost",
            ViolationKind::Duplicated => "duplicated",
            ViolationKind::Reordered => "reordered",
            ViolationKind::Unaccounted => "unaccounted",
        }
    }
}

/// One broken promise, with what is needed to look at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    /// `client-3@0>server#17`: sender, its process life, receiver, index in the stream.
    pub message: String,
    pub channel: Option<u16>,
    /// When: the send of a lost message, the offending delivery otherwise, µs.
    pub at_us: u64,
    /// What the checker saw.
    pub detail: String,
    /// The trace lines of the sender and receiver around `at`.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {:.3}s: {}",
            self.kind.name(),
            self.message,
            self.at_us as f64 / 1e6,
            self.detail
        )
    }
}

/// Violations kept per run; the counts cover them all.
pub const MAX_VIOLATIONS_KEPT: usize = 8;

/// Trace lines kept around a violation.
const TRACE_AROUND: Duration = Duration::from_secs(1);
const TRACE_LINES: usize = 12;
/// A loss's lines run from its send to where it should have been delivered: more of them.
const TRACE_LINES_LOST: usize = 30;

/// How many messages met each fate: the same counts in a run's tally and in the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fates {
    /// Messages handed to a session.
    pub sent: u64,
    /// Of those, from the server.
    pub sent_by_server: u64,
    /// Delivered at least once.
    pub delivered: u64,
    /// Not delivered and reported to the sender as not delivered.
    pub reported: u64,
    /// Reported as not delivered, yet delivered before the report (allowed, §12).
    pub reported_but_delivered: u64,
    /// Not delivered: the sending process died.
    pub died_with_sender: u64,
    /// Not delivered when the run ended, and not yet due (censored).
    pub in_flight: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub unaccounted: u64,
}

impl Fates {
    /// Lost, duplicated, reordered and unaccounted messages.
    pub fn violations(&self) -> u64 {
        self.lost + self.duplicated + self.reordered + self.unaccounted
    }

    fn merge(&mut self, o: &Fates) {
        self.sent += o.sent;
        self.sent_by_server += o.sent_by_server;
        self.delivered += o.delivered;
        self.reported += o.reported;
        self.reported_but_delivered += o.reported_but_delivered;
        self.died_with_sender += o.died_with_sender;
        self.in_flight += o.in_flight;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.unaccounted += o.unaccounted;
    }
}

/// The fates of a run's messages, or of many runs merged ([`Delivery::merge`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(flatten)]
    pub fates: Fates,
    /// From the hand-over to the session to the first delivery, µs.
    pub latency: LogHistogram,
    /// The first few violations, by run (seed) where merged.
    pub violations: Vec<(u64, Violation)>,
}

impl Delivery {
    /// Adds another run's (or runs') figures.
    pub fn merge(&mut self, o: &Delivery) {
        self.fates.merge(&o.fates);
        self.latency.merge(&o.latency);
        for v in &o.violations {
            if self.violations.len() < MAX_VIOLATIONS_KEPT {
                self.violations.push(v.clone());
            }
        }
    }
}

/// Per `(watcher, peer)`: when the watcher held an established connection to the peer.
pub type Connected = BTreeMap<(String, String), Vec<Range<Duration>>>;

/// What the checker needs to know about the run besides the log.
pub struct RunFacts<'a> {
    pub seed: u64,
    pub end: Duration,
    /// Messages sent during the last `drain` of the run may still be on their way.
    pub drain: Duration,
    /// Per `(watcher, peer)`: when the watcher held an established connection to the peer.
    pub connected: &'a Connected,
    /// The run's trace, sorted by time.
    pub trace: &'a [TraceLine],
    /// Which host each node runs on.
    pub hosts: &'a BTreeMap<String, String>,
}

/// Decides every message's fate.
pub fn check(log: &Log, facts: &RunFacts<'_>) -> Delivery {
    let mut d = Delivery::default();
    let mut found: Vec<(ViolationKind, MessageId, Option<u16>, Duration, String)> = Vec::new();
    let settled = facts.end.saturating_sub(facts.drain);
    let held_throughout = |a: &str, b: &str| {
        facts
            .connected
            .get(&(a.to_string(), b.to_string()))
            .is_some_and(|r| r.iter().any(|r| r.start <= settled && r.end >= facts.end))
    };
    for (&stream, s) in &log.streams {
        let up_to_end =
            held_throughout(&s.sender, &s.receiver) && held_throughout(&s.receiver, &s.sender);
        let mut times = vec![0u32; s.sent.len()];
        let mut highest: BTreeMap<u16, u64> = BTreeMap::new();
        for &(index, at) in &s.delivered {
            let i = index as usize;
            let (channel, sent_at) = s.sent[i];
            let id = MessageId { stream, index };
            times[i] += 1;
            if times[i] == 1 {
                d.latency
                    .record(at.saturating_sub(sent_at).as_micros() as u64);
            } else if times[i] == 2 {
                d.fates.duplicated += 1;
                found.push((
                    ViolationKind::Duplicated,
                    id,
                    Some(channel),
                    at,
                    "delivered a second time".into(),
                ));
            }
            if let Some(&r) = s.reported.get(&index)
                && r <= at
            {
                d.fates.unaccounted += 1;
                found.push((
                    ViolationKind::Unaccounted,
                    id,
                    Some(channel),
                    at,
                    format!(
                        "delivered after its sender was told at {:.3}s it would not be",
                        r.as_secs_f64()
                    ),
                ));
            }
            let top = highest.entry(channel).or_insert(index);
            if index < *top {
                d.fates.reordered += 1;
                found.push((
                    ViolationKind::Reordered,
                    id,
                    Some(channel),
                    at,
                    format!("delivered after #{} of the same channel", *top),
                ));
            }
            *top = (*top).max(index);
        }
        // Still delivering during the drain: what is left at the end may be a backlog
        // (a bulk transfer's queue) still on its way, not a loss.
        let moving = s.delivered.iter().any(|&(_, at)| at >= settled);
        for (i, &(channel, sent_at)) in s.sent.iter().enumerate() {
            let index = i as u64;
            let mut lost = |detail: String| {
                d.fates.lost += 1;
                let id = MessageId { stream, index };
                found.push((ViolationKind::Lost, id, Some(channel), sent_at, detail));
            };
            if s.withdrawn.contains(&index) {
                continue;
            }
            d.fates.sent += 1;
            if stream.from_server() {
                d.fates.sent_by_server += 1;
            }
            let reported = s.reported.contains_key(&index);
            if times[i] > 0 {
                d.fates.delivered += 1;
                if reported {
                    d.fates.reported_but_delivered += 1;
                }
            } else if reported {
                d.fates.reported += 1;
            } else if let Some(&later) = highest.get(&channel).filter(|&&h| h > index) {
                // A channel delivers in order: a later message through means this one was lost.
                lost(format!(
                    "never delivered nor reported, though #{later} of its channel was"
                ));
            } else if s.died.is_some_and(|t| t >= sent_at) {
                d.fates.died_with_sender += 1;
            } else if sent_at > settled || !up_to_end || moving {
                d.fates.in_flight += 1;
            } else {
                lost(format!(
                    "never delivered nor reported, and nothing of its stream was delivered \
                     in the last {:.3}s of the run, though {} and {} were connected throughout",
                    facts.drain.as_secs_f64(),
                    s.sender,
                    s.receiver,
                ));
            }
        }
    }
    for (receiver, at) in &log.foreign {
        d.fates.unaccounted += 1;
        found.push((
            ViolationKind::Unaccounted,
            MessageId {
                stream: StreamId(u64::MAX),
                index: 0,
            },
            None,
            *at,
            format!("{receiver} got a message no sender sent"),
        ));
    }
    // The earliest violations first: a later one is often the consequence.
    found.sort_by_key(|(kind, id, _, at, _)| (*at, *kind, *id));
    for (kind, id, channel, at, detail) in found.into_iter().take(MAX_VIOLATIONS_KEPT) {
        let s = log.streams.get(&id.stream);
        let message = match s {
            Some(s) => format!("{}@{}>{}#{}", s.sender, s.life, s.receiver, id.index),
            None => "(no id)".into(),
        };
        // The two ends, and their hosts (where faults are written).
        let mut nodes: Vec<&str> = Vec::new();
        for n in s
            .iter()
            .flat_map(|s| [s.sender.as_str(), s.receiver.as_str()])
        {
            nodes.push(n);
            nodes.extend(facts.hosts.get(n).map(String::as_str));
        }
        // A loss happens after the send, where the message should have gone (a reconnect, a
        // resume): its lines run from the send on. Other violations happen at their delivery.
        let until = match kind {
            ViolationKind::Lost => Duration::MAX,
            _ => at + TRACE_AROUND,
        };
        let trace = facts
            .trace
            .iter()
            .filter(|l| {
                l.at + TRACE_AROUND >= at
                    && l.at <= until
                    && (nodes.is_empty() || nodes.contains(&l.node.as_str()))
            })
            .take(match kind {
                ViolationKind::Lost => TRACE_LINES_LOST,
                _ => TRACE_LINES,
            })
            .map(|l| format!("{:>10.3}s  {:<10} {}", l.at.as_secs_f64(), l.node, l.text))
            .collect();
        d.violations.push((
            facts.seed,
            Violation {
                kind,
                message,
                channel,
                at_us: at.as_micros() as u64,
                detail,
                trace,
            },
        ));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(stream: StreamId, index: u64) -> Vec<u8> {
        let mut p = vec![0; 24];
        MessageId { stream, index }.write(&mut p);
        p
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A client stream of `n` messages on channel 0, sent 10 ms apart, both ends connected
    /// throughout a 10 s run.
    fn setup(n: u64) -> (Log, StreamId, Connected) {
        let mut log = Log::default();
        let s = StreamId::client(3, 0);
        log.open(s, "client-3", "clients", "server", 0);
        for i in 0..n {
            log.sent(s, i, 0, ms(10 * i));
        }
        let mut connected = BTreeMap::new();
        for pair in [("client-3", "server"), ("server", "client-3")] {
            connected.insert(
                (pair.0.to_string(), pair.1.to_string()),
                vec![Duration::ZERO..ms(10_000)],
            );
        }
        (log, s, connected)
    }

    fn run(log: &Log, connected: &Connected) -> Delivery {
        check(
            log,
            &RunFacts {
                seed: 7,
                end: ms(10_000),
                drain: ms(2_000),
                connected,
                trace: &[],
                hosts: &BTreeMap::new(),
            },
        )
    }

    #[test]
    fn a_message_id_survives_the_payload_round_trip() {
        let id = MessageId {
            stream: StreamId::server(2, 0xdead_beef),
            index: 41,
        };
        let mut p = [0u8; 20];
        id.write(&mut p);
        assert_eq!(MessageId::read(&p), Some(id));
        assert!(id.stream.from_server());
        assert!(!StreamId::client(1, 1).from_server());
        assert_eq!(MessageId::read(&p[..15]), None);
    }

    #[test]
    fn messages_delivered_once_in_order_are_no_violation() {
        let (mut log, s, connected) = setup(5);
        for i in 0..5 {
            log.delivered("server", &payload(s, i), ms(10 * i + 3));
        }
        let d = run(&log, &connected);
        assert_eq!(
            (d.fates.sent, d.fates.delivered, d.fates.violations()),
            (5, 5, 0)
        );
        assert_eq!(d.latency.count(), 5);
        assert_eq!(d.latency.max(), Some(3_000));
    }

    #[test]
    fn a_gap_in_the_deliveries_is_a_lost_message_named_by_its_id() {
        let (mut log, s, connected) = setup(5);
        for i in [0, 1, 3, 4] {
            log.delivered("server", &payload(s, i), ms(10 * i + 3));
        }
        let d = run(&log, &connected);
        assert_eq!(d.fates.lost, 1);
        let (seed, v) = &d.violations[0];
        assert_eq!(*seed, 7);
        assert_eq!(v.kind, ViolationKind::Lost);
        assert_eq!(v.message, "client-3@0>server#2");
    }

    #[test]
    fn a_reported_message_is_accounted_for_and_a_late_delivery_of_it_is_not() {
        let (mut log, s, connected) = setup(3);
        log.delivered("server", &payload(s, 0), ms(5));
        log.reported(&payload(s, 1), ms(100));
        log.reported(&payload(s, 2), ms(100));
        log.delivered("server", &payload(s, 2), ms(150));
        let d = run(&log, &connected);
        assert_eq!((d.fates.reported, d.fates.lost), (1, 0));
        assert_eq!(d.fates.unaccounted, 1);
        assert_eq!(d.violations[0].1.message, "client-3@0>server#2");
    }

    #[test]
    fn duplicates_and_reordering_are_each_counted_once_per_message() {
        let (mut log, s, connected) = setup(3);
        for i in [0, 2, 1, 2, 2] {
            log.delivered("server", &payload(s, i), ms(100 + i));
        }
        let d = run(&log, &connected);
        assert_eq!(
            (d.fates.duplicated, d.fates.reordered, d.fates.lost),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_message_undelivered_at_the_end_is_censored_unless_it_was_long_due() {
        let (mut log, s, mut connected) = setup(2);
        log.sent(s, 2, 0, ms(9_000));
        log.delivered("server", &payload(s, 0), ms(5));
        // #1 was due (sent long before the drain, connected throughout); #2 was sent in the
        // drain.
        let d = run(&log, &connected);
        assert_eq!((d.fates.lost, d.fates.in_flight), (1, 1));
        // Without a connection through the drain neither was due.
        connected.insert(
            ("server".into(), "client-3".into()),
            vec![Duration::ZERO..ms(9_500)],
        );
        let d = run(&log, &connected);
        assert_eq!((d.fates.lost, d.fates.in_flight), (0, 2));
    }

    #[test]
    fn a_tail_still_draining_at_the_end_is_in_flight_and_a_gap_is_lost_even_when_the_ends_are_apart()
     {
        let (mut log, s, mut connected) = setup(5);
        // #0 at once, #1 and #2 in the drain (a backlog moving): #3 and #4 are on their way.
        log.delivered("server", &payload(s, 0), ms(5));
        log.delivered("server", &payload(s, 1), ms(8_500));
        log.delivered("server", &payload(s, 2), ms(9_000));
        let d = run(&log, &connected);
        assert_eq!((d.fates.lost, d.fates.in_flight), (0, 2));
        // A gap: #3 missing behind a delivered #4 is lost, connected at the end or not.
        log.delivered("server", &payload(s, 4), ms(9_500));
        connected.clear();
        let d = run(&log, &connected);
        assert_eq!((d.fates.lost, d.fates.in_flight), (1, 0));
        assert_eq!(d.violations[0].1.message, "client-3@0>server#3");
    }

    #[test]
    fn messages_of_a_sender_that_died_are_not_lost_and_foreign_payloads_are_unaccounted() {
        let (mut log, s, connected) = setup(3);
        log.delivered("server", &payload(s, 0), ms(5));
        log.host_died("clients", ms(15));
        log.delivered("server", b"short", ms(20));
        let d = run(&log, &connected);
        assert_eq!(
            (d.fates.died_with_sender, d.fates.lost, d.fates.unaccounted),
            (1, 1, 1)
        );
    }
}
