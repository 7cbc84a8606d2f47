//! A session: one side of an MCP conversation, outliving the TCP connections that carry it.
//!
//! # Calling protocol
//!
//! The driver owns the socket and the clock; the session owns everything else.
//!
//! - Client: create with [`Session::client`]; when a transport connects, call
//!   [`Session::handle_connected`] (it queues HELLO, with a resume request if the session has
//!   been established before). Server: sessions come from [`Registry::admit`](super::registry::Registry::admit)
//!   with WELCOME already queued.
//! - Feed every decoded frame to [`Session::handle_frame`]. A decode error goes to
//!   [`Session::handle_decode_error`]. Both queue a CLOSE with the right code on a violation.
//! - Call [`Session::handle_timeout`] when `now` reaches [`Session::poll_timeout`].
//! - After every input, drain [`Session::poll_transmit`] into the socket, then
//!   [`Session::poll_event`] for what happened. On [`Event::ConnectionClosed`] flush what
//!   `poll_transmit` still yields, close the socket, and call [`Session::handle_disconnect`].
//! - The application calls [`Session::send`] and [`Session::recv`]. `send` refuses with
//!   [`SendError::Full`] when the send queue is full: that is back-pressure.
//!
//! # Invariants
//!
//! - Memory is bounded: at most `send_queue` messages wait for the window, at most
//!   `window` sent messages wait for an ACK, at most `window` received messages wait for the
//!   application, and the control queue is capped (excess heartbeat replies are dropped).
//!   In bytes, all of it (received, unacknowledged, queued, and the receive space promised to
//!   the peer) stays under `max_held_bytes`: the window shrinks to fit and `send` refuses.
//! - DATA sequence numbers are 64-bit, start at 1 and continue across reconnects. Within a
//!   connection nothing is retransmitted: TCP already is reliable, and frames are lost only when
//!   a connection dies. On resume each side retransmits exactly what the peer's
//!   `last_received` says is missing, and the receiver drops duplicates, so every message is
//!   delivered exactly once and in order.
//! - Heartbeats, ACKs and control frames always go before DATA and ignore the window, so no
//!   amount of bulk data delays a heartbeat inside the session.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::detector::{AnyDetector, Detector, DetectorConfig, DetectorEvent, Verdict};
use super::error::{Error, ErrorCode};
use super::frame::{
    Body, Close, Data, Frame, GoAway, HeartbeatInfo, HeartbeatMode, HeartbeatParams, Hello, Load,
    MAX_PAYLOAD_LEN, Resume, TOKEN_LEN, Welcome, expand_seq,
};
use super::health::{HealthConfig, HealthEvaluator, HealthEvent, HealthState};
use super::server::Steer;
use super::time::{Time, earlier};

/// How a side's sessions leave when its process shuts down ([`Session::handle_shutdown`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Server: GOAWAY SHUTTING_DOWN, come back after this long; the session stays resumable.
    GoAway { retry_after: Duration },
    /// Client: CLOSE NORMAL, the session ends.
    Close,
}

/// Which end of the conversation a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Side {
    Client,
    Server,
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    /// No transport. A client waits for the driver to connect; a server session is detached.
    Disconnected,
    /// Client: HELLO sent, waiting for WELCOME.
    Handshaking,
    /// Heartbeats and data flow.
    Established,
    /// A CLOSE is queued; the connection ends once it is flushed.
    Closing,
    /// The session is over for good.
    Closed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Handshaking => "handshaking",
            State::Established => "established",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }
}

/// Tunables shared by both sides.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Received DATA frames the application may leave unread; advertised as the window.
    pub window: u32,
    /// Application messages that may wait for the peer's window before `send` refuses.
    pub send_queue: usize,
    /// Largest DATA payload (channel, priority and application bytes) this side accepts.
    pub max_payload: usize,
    /// How long an acknowledgement may be delayed to cover more frames: the latest an ACK may
    /// leave after the DATA it covers (§9.4).
    pub ack_delay: Duration,
    /// How late the driver's timers may fire. A deadline that is a promise to the peer (the
    /// ACK delay) is armed this much early so that the promise holds: tokio rounds a deadline
    /// up to its 1 ms tick, and the operating system's wait can add up to another millisecond.
    pub timer_slack: Duration,
    /// Health rules (degraded, suspect, dead). `None` derives them from the negotiated η and k
    /// with [`HealthConfig::for_params`], and again whenever they change.
    pub health: Option<HealthConfig>,
    /// The failure detector watching the peer.
    pub detector: DetectorConfig,
    /// Payload bytes a session may hold (§9.3): received and not yet taken by the application,
    /// sent and not yet acknowledged, queued for the peer's window, and the receive space
    /// promised to the peer (the window, at `max_payload` a frame). The receive side (messages
    /// and promise) takes at most half: the advertised window shrinks to fit, and a peer that
    /// sends past it is closed with WINDOW_VIOLATION. `send` refuses beyond the whole. At least
    /// twice `max_payload` for data to flow; the default (8 MiB) leaves the default window
    /// (256 frames of 16 KiB) whole.
    pub max_held_bytes: usize,
    /// A deliberate bug, for proving that a checker catches what it is meant to catch. No
    /// configuration file can set one.
    #[serde(skip)]
    #[doc(hidden)]
    pub sabotage: Option<Sabotage>,
}

/// Deliberate protocol bugs ([`SessionConfig::sabotage`]).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub enum Sabotage {
    /// At the first resume with DATA to send again, the oldest unacknowledged message is
    /// dropped and the ones behind it renumbered to close the gap, so the peer sees an unbroken
    /// sequence and the sender believes it delivered: a silent loss. The dropped payload is
    /// left in the cell.
    DropOneRetransmission(Arc<Mutex<Option<Bytes>>>),
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            window: 256,
            send_queue: 1024,
            max_payload: 16 * 1024,
            ack_delay: Duration::from_millis(10),
            timer_slack: Duration::from_millis(3),
            health: None,
            detector: DetectorConfig::default(),
            max_held_bytes: 8 * 1024 * 1024,
            sabotage: None,
        }
    }
}

/// What a client asks for when it connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub client_id: String,
    pub credential: Bytes,
    /// Heartbeat parameters to request; `None` lets the server choose.
    pub requested: Option<HeartbeatParams>,
    pub mode: Option<HeartbeatMode>,
    /// A connection that has not completed the handshake by then is closed.
    pub handshake_timeout: Duration,
    pub session: SessionConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: String::new(),
            credential: Bytes::new(),
            requested: None,
            mode: None,
            handshake_timeout: Duration::from_secs(5),
            session: SessionConfig::default(),
        }
    }
}

/// An application message, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub channel: u16,
    pub priority: u8,
    pub seq: u64,
    pub payload: Bytes,
}

/// Why [`Session::send`] refused a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Back-pressure: the send queue holds `queued` messages (its limit is
    /// `SessionConfig::send_queue`), or the message would take what the session holds,
    /// `held_bytes`, past `SessionConfig::max_held_bytes`.
    #[error("send queue full: {queued} messages queued, {held_bytes} bytes held")]
    Full { queued: usize, held_bytes: usize },
    #[error("payload of {len} bytes over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("session closed")]
    Closed,
}

/// Something the driver or application should know about.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Event {
    /// The handshake completed on a new connection.
    Established {
        session_id: u32,
        resumed: bool,
        params: (u32, u8),
        mode: HeartbeatMode,
        /// DATA frames this side is retransmitting because the old connection lost them.
        retransmitting: u64,
    },
    /// The detector went from trust to suspect.
    PeerSuspected { silent: Duration },
    /// The detector trusts the peer again.
    PeerTrusted,
    /// Suspicion lasted long enough: the connection is being dropped (the session survives).
    PeerDead { silent: Duration },
    /// A HEARTBEAT from the peer arrived (and is answered). `gap`: see [`Event::Rtt`]; the peer's
    /// heartbeats are liveness evidence for the server in one-way mode and for both sides in
    /// two-way mode, not for a one-way client (a probe from an adaptive server's detector).
    ///
    /// `load`: the peer's CPU and memory figures, when its heartbeat carried them.
    HeartbeatReceived {
        seq: u32,
        gap: Option<Duration>,
        load: Option<Load>,
    },
    /// The reply to our heartbeat `seq` arrived, `rtt` after we sent it. A reply to a heartbeat
    /// too old to be remembered reports nothing.
    ///
    /// `gap` is set when the frame was liveness evidence (it reached the detector: a reply in
    /// one-way mode on the client, a reply to a probe) and not the first on this connection:
    /// the time since the previous evidence on the same connection. Every connection starts
    /// afresh, so a gap never spans a reconnect.
    Rtt {
        rtt: Duration,
        seq: u32,
        gap: Option<Duration>,
        /// The peer's load figures, when its reply carried them.
        load: Option<Load>,
    },
    /// The server changed the heartbeat parameters.
    ParamsChanged {
        interval_ms: u32,
        miss_threshold: u8,
    },
    /// The server asked the client to go away and come back after `retry_after`.
    GoAway {
        code: ErrorCode,
        retry_after: Duration,
    },
    /// The connection is over. Flush `poll_transmit`, close the socket, call `handle_disconnect`.
    ConnectionClosed {
        code: ErrorCode,
        reason: String,
        by_peer: bool,
        /// False when the session itself has ended and must not be resumed.
        resumable: bool,
    },
    /// The peer's health changed (healthy, degraded, suspect, dead), with the reason.
    Health(HealthEvent),
    /// The session ended or the server lost it: these messages were sent but never
    /// acknowledged, or never sent at all, and will not be delivered. Nothing is dropped
    /// silently; the application decides whether to send them again.
    #[serde(skip)]
    Undelivered { messages: Vec<Message> },
}

/// Sender-side queues: one FIFO per channel, so a channel's messages keep their order. The
/// next message comes from the channel whose oldest message is the most urgent, round robin
/// among channels that tie. Priority orders channels, never messages within a channel.
#[derive(Debug, Default)]
struct Scheduler {
    channels: BTreeMap<u16, VecDeque<(u8, Bytes)>>,
    last_served: u16,
    len: usize,
    /// Payload bytes queued.
    bytes: usize,
}

impl Scheduler {
    fn push(&mut self, channel: u16, priority: u8, payload: Bytes) {
        self.bytes += payload.len();
        self.channels
            .entry(channel)
            .or_default()
            .push_back((priority, payload));
        self.len += 1;
    }

    fn pop(&mut self) -> Option<(u16, u8, Bytes)> {
        if self.len == 0 {
            return None;
        }
        let best = self
            .channels
            .values()
            .filter_map(|q| q.front().map(|m| m.0))
            .min()?;
        let ready = |(ch, q): (&u16, &VecDeque<(u8, Bytes)>)| {
            q.front().is_some_and(|m| m.0 == best).then_some(*ch)
        };
        // The first tied channel after the one served last, wrapping around.
        let after = self
            .channels
            .range(self.last_served.saturating_add(1)..)
            .find_map(ready);
        let channel = match after {
            Some(ch) if self.last_served != u16::MAX => ch,
            _ => self.channels.iter().find_map(ready)?,
        };
        let queue = self.channels.get_mut(&channel)?;
        let (priority, payload) = queue.pop_front()?;
        if queue.is_empty() {
            self.channels.remove(&channel);
        }
        self.last_served = channel;
        self.len -= 1;
        self.bytes -= payload.len();
        Some((channel, priority, payload))
    }
}

/// Running totals for metrics; they only grow, across connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// HEARTBEAT frames this side sent, probes included.
    pub heartbeats_sent: u64,
    /// HEARTBEAT frames received from the peer.
    pub heartbeats_received: u64,
    /// HEARTBEAT_ACK frames received that matched a heartbeat we sent.
    pub heartbeat_acks_received: u64,
}

/// Heartbeat send times kept for RTT measurement; older entries are forgotten.
const RTT_SLOTS: usize = 32;
/// Control frames that may wait for the socket; heartbeat replies beyond this are dropped.
const CONTROL_CAP: usize = 64;
/// A detector deadline handled this much after it fell due means this process was not running
/// (stopped, swapped out, its runtime starved): it was in no position to observe its peer
/// (§11.4).
pub const STARVED_LATENESS: Duration = Duration::from_millis(50);
/// How long such a watcher gives the frames that arrived meanwhile to be read before the
/// detector judges the silence.
pub const STARVED_RECHECK: Duration = Duration::from_millis(5);

/// What the last connection came to, as a client's reconnect logic needs it
/// ([`crate::proto::client::ClientEndpoint`]): kept from `handle_connected` until the next one,
/// so it can be read after `handle_disconnect`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionReport {
    /// The handshake completed: the server was reachable and answered.
    pub established: bool,
    /// The peer sent GOAWAY with this retry-after.
    pub go_away: Option<Duration>,
    /// The peer ended the connection (CLOSE, REJECT or GOAWAY).
    pub peer_close: Option<PeerClose>,
}

/// How the peer ended a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerClose {
    pub code: ErrorCode,
    pub reason: String,
    /// False when the session itself has ended and must not be resumed.
    pub resumable: bool,
}

/// One side of a session. See the module docs for the calling protocol.
#[derive(Debug)]
pub struct Session {
    side: Side,
    state: State,
    config: SessionConfig,
    client: Option<ClientConfig>,
    id: u32,
    token: Option<[u8; TOKEN_LEN]>,
    params: HeartbeatParams,
    mode: HeartbeatMode,
    handshake_deadline: Option<Time>,

    // Sending.
    scheduler: Scheduler,
    unacked: VecDeque<(u64, Data)>,
    /// Payload bytes in `unacked`.
    unacked_bytes: usize,
    next_seq: u64,
    peer_acked: u64,
    peer_window: u32,
    transmitted: u64,
    peer_max_payload: usize,

    // Receiving.
    last_received: u64,
    inbox: VecDeque<Message>,
    /// Payload bytes in `inbox`.
    inbox_bytes: usize,
    ack_sent: u64,
    window_sent: u32,
    ack_deadline: Option<Time>,
    ack_now: bool,

    // Heartbeats and detection.
    control: VecDeque<Frame>,
    /// A CLOSE for a peer's protocol violation, held back until the answers to the frames
    /// before the violation (control frames, an owed ACK, DATA the window lets out) have gone.
    close_last: Option<Frame>,
    hb_seq: u32,
    hb_deadline: Option<Time>,
    hb_sent: VecDeque<(u32, Time, bool)>,
    detector: Option<AnyDetector>,
    health: Option<HealthEvaluator>,
    last_heartbeat: Time,
    /// When this watcher, found to have been starved, lets its detector judge (§11.4).
    starved_recheck: Option<Time>,
    /// The last liveness evidence on this connection (see [`Event::Rtt`]'s `gap`).
    last_evidence: Option<Time>,

    events: VecDeque<Event>,
    counters: Counters,
    /// This side's load figures, carried by its heartbeats and replies when set.
    load: Option<Load>,
    /// Server: how far throttling has lengthened the negotiated interval (1: not at all), and
    /// the negotiated interval it lengthened.
    throttle_factor: u32,
    throttle_base: Option<u32>,
    report: ConnectionReport,
}

impl Session {
    /// A client session, not yet connected.
    pub fn client(config: ClientConfig) -> Session {
        let params = config.requested.unwrap_or(HeartbeatParams {
            interval_ms: 1000,
            miss_threshold: 3,
        });
        let mode = config.mode.unwrap_or(HeartbeatMode::OneWay);
        let session = config.session.clone();
        Session::new(Side::Client, session, Some(config), 0, None, params, mode)
    }

    /// A server session just admitted by the registry; WELCOME is queued.
    pub(crate) fn server(
        config: SessionConfig,
        now: Time,
        id: u32,
        token: [u8; TOKEN_LEN],
        params: HeartbeatParams,
        mode: HeartbeatMode,
    ) -> Session {
        Session::new(Side::Server, config, None, id, Some(token), params, mode).attach(now, None)
    }

    fn new(
        side: Side,
        config: SessionConfig,
        client: Option<ClientConfig>,
        id: u32,
        token: Option<[u8; TOKEN_LEN]>,
        params: HeartbeatParams,
        mode: HeartbeatMode,
    ) -> Session {
        let max_payload = config.max_payload.min(MAX_PAYLOAD_LEN);
        Session {
            side,
            state: State::Disconnected,
            config,
            client,
            id,
            token,
            params,
            mode,
            handshake_deadline: None,
            scheduler: Scheduler::default(),
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            next_seq: 1,
            peer_acked: 0,
            peer_window: 0,
            transmitted: 0,
            peer_max_payload: max_payload,
            last_received: 0,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            ack_sent: 0,
            window_sent: 0,
            ack_deadline: None,
            ack_now: false,
            control: VecDeque::new(),
            close_last: None,
            hb_seq: 0,
            hb_deadline: None,
            // Grown as heartbeats go unanswered (at most `RTT_SLOTS`), not reserved up front:
            // in steady state one or two are outstanding.
            hb_sent: VecDeque::new(),
            detector: None,
            health: None,
            last_heartbeat: Time::ZERO,
            starved_recheck: None,
            last_evidence: None,
            events: VecDeque::new(),
            counters: Counters::default(),
            load: None,
            throttle_factor: 1,
            throttle_base: None,
            report: ConnectionReport::default(),
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }
    pub fn state(&self) -> State {
        self.state
    }
    /// The session id, 0 until a server has assigned one.
    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn token(&self) -> Option<[u8; TOKEN_LEN]> {
        self.token
    }
    pub fn params(&self) -> HeartbeatParams {
        self.params
    }
    pub fn mode(&self) -> HeartbeatMode {
        self.mode
    }
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.params.interval_ms as u64)
    }
    /// Highest DATA sequence number received in order from the peer.
    pub fn last_received(&self) -> u64 {
        self.last_received
    }
    /// Messages waiting for the peer's window plus those sent and not yet acknowledged.
    pub fn queued(&self) -> usize {
        self.scheduler.len + self.unacked.len()
    }
    /// Highest DATA sequence number this side has assigned.
    pub fn next_seq_sent(&self) -> u64 {
        self.next_seq - 1
    }
    /// Messages sent and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.unacked.len()
    }
    /// How many more messages [`Session::send`] accepts right now.
    ///
    /// Zero once a message of the largest size the peer accepts would not fit under
    /// [`SessionConfig::max_held_bytes`], so that a message taken on the strength of a
    /// non-zero capacity is never refused.
    pub fn send_capacity(&self) -> usize {
        let largest = self
            .peer_max_payload
            .saturating_sub(super::frame::DATA_OVERHEAD);
        if self.held_bytes() + largest > self.config.max_held_bytes {
            return 0;
        }
        self.config.send_queue.saturating_sub(self.scheduler.len)
    }
    /// Running totals for metrics.
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// Time since the last sign of life from the peer on this connection (the detector's
    /// evidence, or the handshake): the silence a detection reports.
    pub fn silence(&self, now: Time) -> Duration {
        now.saturating_since(self.last_heartbeat)
    }
    /// What the current or last connection came to (see [`ConnectionReport`]).
    pub fn last_connection(&self) -> &ConnectionReport {
        &self.report
    }

    /// Is the peer currently suspected?
    pub fn peer_suspected(&self) -> bool {
        self.detector
            .as_ref()
            .is_some_and(|d| d.verdict() == Verdict::Suspect)
    }

    // ---- Connection lifecycle ---------------------------------------------------------------

    /// Client: a transport is up. Queues HELLO (a resume request if the session has an id).
    pub fn handle_connected(&mut self, now: Time) {
        if self.client.is_none() || self.state == State::Closed {
            return;
        }
        self.reset_connection();
        self.report = ConnectionReport::default();
        let Some(client) = &self.client else { return };
        let resume = self.token.map(|token| Resume {
            token,
            last_received: self.last_received as u32,
        });
        let hello = Hello {
            client_id: client.client_id.clone(),
            credential: client.credential.clone(),
            requested: client.requested,
            mode: client.mode,
            resume,
        };
        self.handshake_deadline = Some(now + client.handshake_timeout);
        self.control
            .push_back(Frame::new(self.id, 0, Body::Hello(hello)));
        self.state = State::Handshaking;
    }

    /// The transport is gone, for whatever reason. The session keeps its data for a resume.
    pub fn handle_disconnect(&mut self, _now: Time) {
        if self.state != State::Closed {
            self.state = State::Disconnected;
        }
        self.reset_connection();
    }

    /// Forgets everything that belonged to the last connection.
    fn reset_connection(&mut self) {
        self.control.clear();
        self.close_last = None;
        self.hb_deadline = None;
        self.hb_sent.clear();
        self.last_evidence = None;
        self.ack_deadline = None;
        self.ack_now = false;
        self.handshake_deadline = None;
    }

    /// Attaches a (server) session to a new connection and queues WELCOME.
    pub(crate) fn attach(mut self, now: Time, peer_last_received: Option<u64>) -> Session {
        self.reset_connection();
        self.report = ConnectionReport::default();
        let resumed = peer_last_received.is_some();
        let retransmitting = self.resume_from(peer_last_received.unwrap_or(self.peer_acked));
        // Until the client's first ACK we may not send it DATA.
        self.peer_window = 0;
        let window = self.window_available();
        self.ack_sent = self.last_received;
        self.window_sent = window;
        let welcome = Welcome {
            token: self.token.unwrap_or_default(),
            params: self.params,
            mode: self.mode,
            resumed,
            last_received: self.last_received as u32,
            window,
            max_payload: self.config.max_payload.min(MAX_PAYLOAD_LEN) as u16,
        };
        self.control
            .push_back(Frame::new(self.id, 0, Body::Welcome(welcome)));
        self.establish(now, resumed, retransmitting);
        self
    }

    /// Takes the peer's `last_received` as a cumulative ACK and rewinds transmission to it.
    /// Returns how many DATA frames will be sent again.
    fn resume_from(&mut self, peer_last_received: u64) -> u64 {
        let acked = peer_last_received.clamp(self.peer_acked, self.next_seq - 1);
        self.drop_acked(acked);
        self.peer_acked = acked;
        self.transmitted = acked;
        if let Some(Sabotage::DropOneRetransmission(dropped)) = &self.config.sabotage {
            let mut dropped = dropped.lock().unwrap_or_else(|e| e.into_inner());
            if dropped.is_none()
                && let Some((_, d)) = self.unacked.pop_front()
            {
                self.unacked_bytes -= d.payload.len();
                for (seq, _) in self.unacked.iter_mut() {
                    *seq -= 1;
                }
                self.next_seq -= 1;
                *dropped = Some(d.payload);
            }
        }
        self.unacked.len() as u64
    }

    /// Forgets the sent DATA the peer has acknowledged up to `acked`.
    fn drop_acked(&mut self, acked: u64) {
        while self.unacked.front().is_some_and(|(s, _)| *s <= acked) {
            if let Some((_, d)) = self.unacked.pop_front() {
                self.unacked_bytes -= d.payload.len();
            }
        }
    }

    /// Payload bytes held (see [`SessionConfig::max_held_bytes`]), the receive space promised
    /// to the peer included.
    pub fn held_bytes(&self) -> usize {
        let promised = (self.ack_sent + self.window_sent as u64).saturating_sub(self.last_received);
        self.inbox_bytes
            + self.unacked_bytes
            + self.scheduler.bytes
            + promised as usize * self.config.max_payload
    }

    fn establish(&mut self, now: Time, resumed: bool, retransmitting: u64) {
        self.state = State::Established;
        self.report.established = true;
        self.handshake_deadline = None;
        let interval = self.interval();
        let k = self.params.miss_threshold as u32;
        // A new connection arms a fresh detector: the handshake that just completed is a sign
        // of life, and a verdict left from the previous connection (a suspicion that closed
        // it) must not carry over, or a peer silent from the start of the new connection
        // would never be suspected (a suspecting detector waits for an arrival, not a timer).
        self.detector = Some(self.config.detector.build(now, interval, k));
        self.starved_recheck = None;
        self.reset_health(now);
        self.last_heartbeat = now;
        if self.sends_heartbeats() {
            self.hb_deadline = Some(now + interval);
        }
        self.events.push_back(Event::Established {
            session_id: self.id,
            resumed,
            params: (self.params.interval_ms, self.params.miss_threshold),
            mode: self.mode,
            retransmitting,
        });
    }

    /// A fresh health evaluator for the current parameters (history belongs to a connection).
    fn reset_health(&mut self, now: Time) {
        let config = self.config.health.unwrap_or_else(|| {
            HealthConfig::for_params(self.interval(), self.params.miss_threshold as u32)
        });
        self.health = Some(HealthEvaluator::new(now, config));
    }

    /// The peer's health as this side judges it.
    pub fn health(&self) -> HealthState {
        self.health
            .as_ref()
            .map_or(HealthState::Healthy, |h| h.state())
    }

    /// Does this side send heartbeats on a schedule?
    fn sends_heartbeats(&self) -> bool {
        self.side == Side::Client || self.mode == HeartbeatMode::TwoWay
    }

    /// Ends the session for good: queues CLOSE with `code` (NORMAL for an orderly close).
    pub fn close(&mut self, code: ErrorCode, reason: &str) {
        match self.state {
            State::Closed => {}
            State::Disconnected => self.state = State::Closed,
            _ => {
                self.close_connection(code, reason, false);
                self.state = State::Closed;
            }
        }
        self.report_undelivered();
    }

    /// Server: changes the heartbeat parameters at run time and tells the client (CONFIG).
    pub fn set_params(&mut self, now: Time, params: HeartbeatParams) {
        if self.side != Side::Server || params.interval_ms == 0 || params.miss_threshold == 0 {
            return;
        }
        self.params = params;
        if self.state == State::Established {
            self.control
                .push_back(Frame::new(self.id, 0, Body::Config(params)));
            self.rearm(now);
        }
    }

    /// Server: grants `factor` times the negotiated interval (1: the negotiated one), at most
    /// `cap_ms` (the server's longest), because of load (`super::throttle`), telling the client
    /// with CONFIG when it changes. k is kept.
    pub fn set_throttle(&mut self, now: Time, factor: u32, cap_ms: u32) {
        let factor = factor.max(1);
        if self.side != Side::Server || factor == self.throttle_factor {
            return;
        }
        let base = self.throttle_base.unwrap_or(self.params.interval_ms);
        self.throttle_factor = factor;
        self.throttle_base = (factor > 1).then_some(base);
        let interval_ms = if factor > 1 {
            base.saturating_mul(factor).min(cap_ms.max(base))
        } else {
            base
        };
        let params = HeartbeatParams {
            interval_ms,
            ..self.params
        };
        self.set_params(now, params);
    }

    /// Re-arms heartbeat timer and detector for the current parameters, counting from `now`.
    fn rearm(&mut self, now: Time) {
        let interval = self.interval();
        if self.sends_heartbeats() {
            self.hb_deadline = Some(now + interval);
        }
        if let Some(d) = &mut self.detector {
            d.set_params(now, interval, self.params.miss_threshold as u32);
        }
        self.drain_detector(now);
        self.reset_health(now);
        self.last_heartbeat = now;
    }

    /// This side's process is shutting down (protocol §12). A server's session ends its
    /// connection with GOAWAY SHUTTING_DOWN and stays resumable, the client asked to come back
    /// after `how`'s `retry_after`; a client's session closes with CLOSE NORMAL and ends.
    pub fn handle_shutdown(&mut self, how: Shutdown) {
        match how {
            Shutdown::GoAway { retry_after } => {
                self.go_away(ErrorCode::ShuttingDown, retry_after, "server shutting down")
            }
            Shutdown::Close => self.close(ErrorCode::Normal, "client shutting down"),
        }
    }

    /// Server: ends this connection with GOAWAY (e.g. shutting down); the session stays
    /// resumable and the client should come back after `retry_after`.
    pub fn go_away(&mut self, code: ErrorCode, retry_after: Duration, reason: &str) {
        if self.side != Side::Server || self.state != State::Established {
            return;
        }
        self.control.clear();
        let retry_after_ms = retry_after.as_millis().min(u32::MAX as u128) as u32;
        let frame = GoAway {
            code,
            retry_after_ms,
            reason: reason.to_string(),
        };
        self.control
            .push_back(Frame::new(self.id, 0, Body::GoAway(frame)));
        self.state = State::Closing;
        self.events.push_back(Event::ConnectionClosed {
            code,
            reason: reason.to_string(),
            by_peer: false,
            resumable: true,
        });
    }

    /// Server: a resume for this session arrived on another connection. This connection ends
    /// with SESSION_REPLACED; hand the session back to the registry once it is closed.
    pub fn handle_replaced(&mut self) {
        if matches!(self.state, State::Handshaking | State::Established) {
            self.close_connection(
                ErrorCode::SessionReplaced,
                "resumed on another connection",
                true,
            );
        }
    }

    /// The peer broke the protocol: CLOSE with `code`, but only after the answers to the frames
    /// it sent before the violation (WELCOME, HEARTBEAT_ACKs, an owed ACK, DATA the window lets
    /// out), so that a read's frames are answered in the order they came (§5).
    fn close_after_answers(&mut self, code: ErrorCode, reason: &str) {
        self.close_last = Some(self.closing(code, reason, true));
    }

    /// Queues CLOSE ahead of anything else and reports the connection's end.
    fn close_connection(&mut self, code: ErrorCode, reason: &str, resumable: bool) {
        self.control.clear();
        self.close_last = None;
        let close = self.closing(code, reason, resumable);
        self.control.push_back(close);
    }

    /// Enters `Closing`, reports the connection's end, and returns the CLOSE to send.
    fn closing(&mut self, code: ErrorCode, reason: &str, resumable: bool) -> Frame {
        self.state = State::Closing;
        self.events.push_back(Event::ConnectionClosed {
            code,
            reason: reason.to_string(),
            by_peer: false,
            resumable,
        });
        Frame::new(
            self.id,
            0,
            Body::Close(Close {
                code,
                reason: reason.to_string(),
            }),
        )
    }

    /// Client: the server sent GOAWAY. The connection ends, the session stays resumable.
    fn peer_went_away(&mut self, g: GoAway) -> Error {
        let retry_after = Duration::from_millis(g.retry_after_ms as u64);
        self.report.go_away = Some(retry_after);
        self.events.push_back(Event::GoAway {
            code: g.code,
            retry_after,
        });
        self.peer_closed(g.code, g.reason.clone(), true);
        Error::PeerClosed {
            code: g.code,
            reason: g.reason,
        }
    }

    /// The peer ended the connection (CLOSE, REJECT or GOAWAY).
    fn peer_closed(&mut self, code: ErrorCode, reason: String, resumable: bool) {
        self.control.clear();
        self.state = if resumable {
            State::Disconnected
        } else {
            State::Closed
        };
        if !resumable {
            self.report_undelivered();
        }
        self.report.peer_close = Some(PeerClose {
            code,
            reason: reason.clone(),
            resumable,
        });
        self.events.push_back(Event::ConnectionClosed {
            code,
            reason,
            by_peer: true,
            resumable,
        });
    }

    // ---- Inputs ---------------------------------------------------------------------------

    /// The driver's decoder failed: the stream is unusable. Queues CLOSE with the error's code.
    pub fn handle_decode_error(&mut self, err: &Error) {
        if matches!(self.state, State::Handshaking | State::Established) {
            self.close_after_answers(err.code(), &err.to_string());
        }
    }

    /// One frame from the peer. On a protocol violation a CLOSE is queued and the error returned.
    pub fn handle_frame(&mut self, now: Time, frame: Frame) -> Result<(), Error> {
        if !matches!(self.state, State::Handshaking | State::Established) {
            return Ok(());
        }
        // Ok, nearly always: then nothing is moved but the answer.
        let Err(e) = self.dispatch(now, frame) else {
            return Ok(());
        };
        match &e {
            Error::PeerClosed { .. } | Error::Rejected { .. } => {}
            e => self.close_after_answers(e.code(), &e.to_string()),
        }
        Err(e)
    }

    fn unexpected(&self, frame: &Frame) -> Error {
        Error::UnexpectedFrame {
            frame: frame.frame_type().name(),
            state: self.state.name(),
        }
    }

    fn dispatch(&mut self, now: Time, frame: Frame) -> Result<(), Error> {
        if self.state == State::Handshaking {
            return self.handle_handshake_reply(now, frame);
        }
        // A HELLO's session id names the session to resume, not this connection's: a HELLO
        // after the handshake is out of place whatever id it carries (§5 check 7, §6.3).
        if matches!(frame.body, Body::Hello(_)) {
            return Err(self.unexpected(&frame));
        }
        // A CLOSE ends the connection whatever session id it carries, and is never answered
        // (§5 check 7, §12): a peer that closes before it has taken our WELCOME says 0.
        if let Body::Close(c) = frame.body {
            let resumable = !c.code.ends_session();
            self.peer_closed(c.code, c.reason.clone(), resumable);
            return Err(Error::PeerClosed {
                code: c.code,
                reason: c.reason,
            });
        }
        if frame.session_id != self.id {
            return Err(Error::WrongSession {
                got: frame.session_id,
                expected: self.id,
            });
        }
        match frame.body {
            Body::Heartbeat(info) => {
                self.counters.heartbeats_received += 1;
                let reply = HeartbeatInfo {
                    timestamp_us: info.timestamp_us,
                    load: self.load,
                };
                if self.control.len() < CONTROL_CAP {
                    self.control.push_back(Frame::new(
                        self.id,
                        frame.seq,
                        Body::HeartbeatAck(reply),
                    ));
                }
                let evidence = self.mode == HeartbeatMode::TwoWay || self.side == Side::Server;
                // Reported before the detector acts on it, so that a trace shows the heartbeat
                // before the trust it restores.
                let gap = if evidence { self.evidence(now) } else { None };
                self.events.push_back(Event::HeartbeatReceived {
                    seq: frame.seq,
                    gap,
                    load: info.load,
                });
                if evidence {
                    self.heartbeat_arrived(now);
                }
            }
            Body::HeartbeatAck(info) => self.heartbeat_ack(now, frame.seq, info.load),
            Body::Data(data) => self.receive_data(now, frame.seq, data)?,
            Body::Ack { window } => self.receive_ack(frame.seq, window)?,
            Body::GoAway(g) if self.side == Side::Client => return Err(self.peer_went_away(g)),
            Body::Config(p) if self.side == Side::Client => {
                self.params = p;
                self.rearm(now);
                self.events.push_back(Event::ParamsChanged {
                    interval_ms: p.interval_ms,
                    miss_threshold: p.miss_threshold,
                });
            }
            _ => return Err(self.unexpected(&frame)),
        }
        Ok(())
    }

    fn handle_handshake_reply(&mut self, now: Time, frame: Frame) -> Result<(), Error> {
        match frame.body {
            Body::Welcome(w) if frame.session_id != 0 => {
                let asked_resume = self.token.is_some();
                if w.resumed != asked_resume {
                    return Err(Error::Protocol(
                        "WELCOME resumed flag differs from the request",
                    ));
                }
                if asked_resume && (frame.session_id != self.id || Some(w.token) != self.token) {
                    return Err(Error::WrongSession {
                        got: frame.session_id,
                        expected: self.id,
                    });
                }
                self.id = frame.session_id;
                self.token = Some(w.token);
                self.params = w.params;
                self.mode = w.mode;
                self.peer_max_payload = (w.max_payload as usize).min(MAX_PAYLOAD_LEN);
                let peer_last = expand_seq(w.last_received, self.next_seq - 1);
                if peer_last >= self.next_seq {
                    return Err(Error::AckBeyondSent {
                        acked: peer_last,
                        sent: self.next_seq - 1,
                    });
                }
                let retransmitting = self.resume_from(peer_last);
                self.peer_window = w.window.min(self.config.window.max(1));
                // Announce our receive window at once: the server sends no DATA before it.
                self.ack_now = true;
                self.establish(now, w.resumed, retransmitting);
                Ok(())
            }
            Body::Reject(c) => {
                if c.code == ErrorCode::UnknownSession {
                    self.lose_session();
                }
                let resumable = !matches!(c.code, ErrorCode::AuthFailed);
                self.peer_closed(c.code, c.reason.clone(), resumable);
                Err(Error::Rejected {
                    code: c.code,
                    reason: c.reason,
                })
            }
            Body::Close(c) => {
                self.peer_closed(c.code, c.reason.clone(), !c.code.ends_session());
                Err(Error::PeerClosed {
                    code: c.code,
                    reason: c.reason,
                })
            }
            Body::GoAway(g) => Err(self.peer_went_away(g)),
            _ => Err(self.unexpected(&frame)),
        }
    }

    /// Takes every message not known to be delivered: sent and unacknowledged (with their
    /// sequence numbers) and still queued (sequence number 0).
    pub(crate) fn take_undelivered(&mut self) -> Vec<Message> {
        let mut messages = self.drain_unacked();
        while let Some((channel, priority, payload)) = self.scheduler.pop() {
            messages.push(Message {
                channel,
                priority,
                seq: 0,
                payload,
            });
        }
        messages
    }

    /// Takes the sent, unacknowledged messages, in sequence order.
    fn drain_unacked(&mut self) -> Vec<Message> {
        self.unacked_bytes = 0;
        self.unacked
            .drain(..)
            .map(|(seq, d)| Message {
                channel: d.channel,
                priority: d.priority,
                seq,
                payload: d.payload,
            })
            .collect()
    }

    /// Hands every message not known to be delivered back to the application.
    fn report_undelivered(&mut self) {
        let messages = self.take_undelivered();
        if !messages.is_empty() {
            self.events.push_back(Event::Undelivered { messages });
        }
    }

    /// The server forgot us: hand unacknowledged messages back and start numbering afresh.
    /// Messages still waiting for the window stay queued for the next session.
    fn lose_session(&mut self) {
        let messages = self.drain_unacked();
        if !messages.is_empty() {
            self.events.push_back(Event::Undelivered { messages });
        }
        self.id = 0;
        self.token = None;
        self.next_seq = 1;
        self.peer_acked = 0;
        self.transmitted = 0;
        self.last_received = 0;
        self.ack_sent = 0;
    }

    fn heartbeat_arrived(&mut self, now: Time) {
        self.last_heartbeat = now;
        if let Some(d) = &mut self.detector {
            d.handle_heartbeat(now);
        }
        self.drain_detector(now);
        self.drain_health(now);
    }

    /// Liveness evidence arrived at `now`: the time since the previous evidence on this
    /// connection, if there was one.
    fn evidence(&mut self, now: Time) -> Option<Duration> {
        self.last_evidence.replace(now).map(|last| now - last)
    }

    fn heartbeat_ack(&mut self, now: Time, seq: u32, load: Option<Load>) {
        let Some(pos) = self.hb_sent.iter().position(|(s, _, _)| *s == seq) else {
            return; // too old to remember, or never sent: ignore
        };
        self.counters.heartbeat_acks_received += 1;
        let (_, sent, probe) = self.hb_sent[pos];
        // It and the older ones, unanswered, go; most often it is the only one.
        for _ in 0..=pos {
            self.hb_sent.pop_front();
        }
        let rtt = now - sent;
        let counts = probe || (self.side == Side::Client && self.mode == HeartbeatMode::OneWay);
        let gap = if counts { self.evidence(now) } else { None };
        self.events.push_back(Event::Rtt {
            rtt,
            seq,
            gap,
            load,
        });
        if let Some(d) = &mut self.detector {
            d.handle_rtt(rtt);
        }
        if let Some(h) = &mut self.health {
            h.handle_reply(now, seq as u64);
            h.handle_rtt(now, rtt);
        }
        if counts {
            self.heartbeat_arrived(now);
        }
        self.drain_health(now);
    }

    fn receive_data(&mut self, now: Time, wire_seq: u32, data: Data) -> Result<(), Error> {
        let seq = expand_seq(wire_seq, self.last_received + 1);
        if seq <= self.last_received {
            return Ok(()); // duplicate after a resume: already delivered
        }
        if seq > self.ack_sent + self.window_sent as u64 {
            return Err(Error::WindowViolation {
                seq,
                acked: self.ack_sent,
                window: self.window_sent,
            });
        }
        if seq != self.last_received + 1 {
            return Err(Error::SequenceGap {
                got: seq,
                expected: self.last_received + 1,
            });
        }
        self.last_received = seq;
        self.inbox_bytes += data.payload.len();
        self.inbox.push_back(Message {
            channel: data.channel,
            priority: data.priority,
            seq,
            payload: data.payload,
        });
        let unacked = self.last_received - self.ack_sent;
        if unacked >= (self.config.window as u64 / 4).max(1) {
            self.ack_now = true;
        } else if self.ack_deadline.is_none() {
            let delay = self
                .config
                .ack_delay
                .saturating_sub(self.config.timer_slack);
            self.ack_deadline = Some(now + delay);
        }
        Ok(())
    }

    fn receive_ack(&mut self, wire_seq: u32, window: u32) -> Result<(), Error> {
        // The highest DATA the peer can have: sent on this connection, or what the resume
        // rewound to. Frames of an earlier connection not yet sent again do not count (§9.3).
        let highest_sent = self.transmitted;
        let acked = expand_seq(wire_seq, highest_sent);
        if acked > highest_sent {
            return Err(Error::AckBeyondSent {
                acked,
                sent: highest_sent,
            });
        }
        if acked < self.peer_acked {
            return Ok(()); // stale
        }
        self.drop_acked(acked);
        self.peer_acked = acked;
        // A peer may advertise any window; we never keep more than our own bound in flight.
        self.peer_window = window.min(self.config.window.max(1));
        Ok(())
    }

    /// Frames the receiver will still accept, given what the application has not read.
    ///
    /// In bytes too: the received messages and the space promised to the peer (at
    /// `max_payload` a frame) take at most half of `max_held_bytes`, leaving the other half to
    /// what this side sends. Never less than what was already promised, because a window once
    /// advertised is not taken back (§9.3).
    fn window_available(&self) -> u32 {
        let frames = self.config.window.saturating_sub(self.inbox.len() as u32);
        let promised = (self.ack_sent + self.window_sent as u64).saturating_sub(self.last_received);
        let room = (self.config.max_held_bytes / 2).saturating_sub(self.inbox_bytes)
            / self.config.max_payload.max(1);
        frames
            .min(room.min(u32::MAX as usize) as u32)
            .max(promised.min(u32::MAX as u64) as u32)
    }

    /// The next time [`Session::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Time> {
        // Timers belong to a state: a closing or disconnected session has none.
        match self.state {
            State::Established => {}
            State::Handshaking => return self.handshake_deadline,
            _ => return None,
        }
        // Called after every turn of a driver: plain comparisons, no iterator chain.
        let mut t = earlier(self.handshake_deadline, self.hb_deadline);
        t = earlier(t, self.ack_deadline);
        t = earlier(t, self.health.as_ref().and_then(|h| h.poll_timeout()));
        if let Some(d) = self.detector.as_ref().and_then(|d| d.poll_timeout()) {
            t = earlier(t, Some(self.starved_recheck.map_or(d, |r| r.max(d))));
        }
        t
    }

    /// Time has reached `now`: send heartbeats, flush delayed ACKs, run the detector.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.handshake_deadline.is_some_and(|d| now >= d) && self.state == State::Handshaking {
            self.close_connection(ErrorCode::HandshakeTimeout, "no welcome in time", true);
            return;
        }
        if self.state != State::Established {
            return;
        }
        if self.hb_deadline.is_some_and(|d| now >= d) {
            self.send_heartbeat(now, false);
            // After a stall, send one heartbeat and carry on from now rather than a burst.
            let next = self.hb_deadline.unwrap_or(now) + self.interval();
            self.hb_deadline = Some(if next <= now {
                now + self.interval()
            } else {
                next
            });
        }
        if self.ack_deadline.is_some_and(|d| now >= d) {
            self.ack_deadline = None;
            self.ack_now = true;
        }
        if self.detector_may_judge(now)
            && let Some(d) = &mut self.detector
        {
            d.handle_timeout(now);
        }
        self.drain_detector(now);
        if let Some(h) = &mut self.health {
            h.handle_timeout(now);
        }
        self.drain_health(now);
    }

    /// Whether the detector may judge at `now`. A watcher that handles a deadline more than
    /// [`STARVED_LATENESS`] after it fell due was not running, and has not yet read what arrived
    /// while it was not: the detector judges [`STARVED_RECHECK`] later, after those frames
    /// (§11.4). A heartbeat read meanwhile re-arms the detector and ends the wait.
    fn detector_may_judge(&mut self, now: Time) -> bool {
        let Some(due) = self.detector.as_ref().and_then(|d| d.poll_timeout()) else {
            self.starved_recheck = None;
            return true;
        };
        if now < due {
            self.starved_recheck = None;
            return true;
        }
        match self.starved_recheck {
            Some(r) => {
                if now >= r {
                    self.starved_recheck = None;
                    true
                } else {
                    false
                }
            }
            None if now - due > STARVED_LATENESS => {
                self.starved_recheck = Some(now + STARVED_RECHECK);
                false
            }
            None => true,
        }
    }

    /// Reports the health evaluator's events; Dead ends the connection.
    #[inline]
    fn drain_health(&mut self, now: Time) {
        // Drained after every input, and a change of health is rare: settled without the call.
        if self.health.as_ref().is_some_and(|h| h.has_events()) {
            self.report_health(now);
        }
    }

    fn report_health(&mut self, now: Time) {
        let mut dead = false;
        while let Some(ev) = self.health.as_mut().and_then(|h| h.poll_event()) {
            dead |= ev.to == HealthState::Dead;
            self.events.push_back(Event::Health(ev));
        }
        if dead && self.state == State::Established {
            let silent = now - self.last_heartbeat;
            self.events.push_back(Event::PeerDead { silent });
            let reason = format!("no heartbeat for {} ms", silent.as_millis());
            self.close_connection(ErrorCode::HeartbeatTimeout, &reason, true);
        }
    }

    /// Acts on the detector's events: suspicion and trust go to the events and the health
    /// evaluator, a probe goes out.
    #[inline]
    fn drain_detector(&mut self, now: Time) {
        // Drained after every input, and the detector is mostly quiet: settled without the call.
        if self.detector.as_ref().is_some_and(|d| d.has_events()) {
            self.detector_events(now);
        }
    }

    fn detector_events(&mut self, now: Time) {
        while let Some(ev) = self.detector.as_mut().and_then(|d| d.poll_event()) {
            match ev {
                DetectorEvent::Suspect { silent } => {
                    self.events.push_back(Event::PeerSuspected { silent });
                    if let Some(h) = &mut self.health {
                        h.handle_verdict(now, Verdict::Suspect);
                    }
                }
                DetectorEvent::Trust => {
                    self.events.push_back(Event::PeerTrusted);
                    if let Some(h) = &mut self.health {
                        h.handle_verdict(now, Verdict::Trust);
                    }
                }
                DetectorEvent::Probe => self.send_heartbeat(now, true),
            }
        }
    }

    fn send_heartbeat(&mut self, now: Time, probe: bool) {
        self.counters.heartbeats_sent += 1;
        self.hb_seq = self.hb_seq.wrapping_add(1).max(1);
        if self.hb_sent.len() == RTT_SLOTS {
            self.hb_sent.pop_front();
        }
        self.hb_sent.push_back((self.hb_seq, now, probe));
        if let Some(h) = &mut self.health {
            h.handle_heartbeat_sent(now, self.hb_seq as u64);
        }
        // With load figures to report, the heartbeat carries them and its send time (§11.3).
        let frame = match self.load {
            Some(load) => Frame::new(
                self.id,
                self.hb_seq,
                Body::Heartbeat(HeartbeatInfo {
                    timestamp_us: Some(now.since_epoch().as_micros() as u64),
                    load: Some(load),
                }),
            ),
            None => Frame::heartbeat(self.id, self.hb_seq),
        };
        self.control.push_back(frame);
    }

    /// What its server tells every connection ([`Steer`]): the load figures to report and
    /// the throttle factor, applied at `now`.
    pub fn apply_steer(&mut self, now: Time, steer: &Steer) {
        self.set_load(steer.load);
        self.set_throttle(now, steer.factor, steer.cap_ms);
    }

    /// The load figures this side reports in its heartbeats and replies from now on (§11.3);
    /// `None`: plain heartbeats.
    pub fn set_load(&mut self, load: Option<Load>) {
        self.load = load;
    }

    // ---- Outputs --------------------------------------------------------------------------

    /// The next frame to write, control frames first, then an ACK, then DATA.
    pub fn poll_transmit(&mut self, _now: Time) -> Option<Frame> {
        if let Some(f) = self.control.pop_front() {
            return Some(f);
        }
        match self.state {
            State::Established => self.poll_ack_or_data(),
            State::Closing if self.close_last.is_some() => {
                // What the frames before the violation earned, then the CLOSE.
                if self.last_received > self.ack_sent {
                    self.ack_now = true;
                }
                self.poll_ack_or_data().or_else(|| self.close_last.take())
            }
            _ => None,
        }
    }

    /// An ACK if one is due, else the next DATA frame the peer's window allows.
    #[inline]
    fn poll_ack_or_data(&mut self) -> Option<Frame> {
        // Asked after every frame a turn writes, and most often nothing is owed: no ACK, nothing
        // to send again, nothing queued. That is settled here, without the call.
        if !self.ack_now && self.transmitted == self.next_seq - 1 && self.scheduler.len == 0 {
            return None;
        }
        self.ack_or_data()
    }

    fn ack_or_data(&mut self) -> Option<Frame> {
        if self.ack_now {
            self.ack_now = false;
            self.ack_deadline = None;
            let window = self.window_available();
            self.ack_sent = self.last_received;
            self.window_sent = window;
            return Some(Frame::new(
                self.id,
                self.last_received as u32,
                Body::Ack { window },
            ));
        }
        let limit = self.peer_acked + self.peer_window as u64;
        // Retransmissions after a resume come first, in order, within the peer's window.
        if self.transmitted < self.next_seq - 1 && self.transmitted < limit {
            let idx = (self.transmitted - self.peer_acked) as usize;
            if let Some((seq, data)) = self.unacked.get(idx) {
                self.transmitted = *seq;
                return Some(Frame::new(self.id, *seq as u32, Body::Data(data.clone())));
            }
        }
        if self.transmitted == self.next_seq - 1 && self.next_seq <= limit {
            let (channel, priority, payload) = self.scheduler.pop()?;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.transmitted = seq;
            let data = Data {
                channel,
                priority,
                payload,
            };
            self.unacked_bytes += data.payload.len();
            self.unacked.push_back((seq, data.clone()));
            return Some(Frame::new(self.id, seq as u32, Body::Data(data)));
        }
        None
    }

    /// The next thing that happened, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`Session::poll_event`] has anything to give.
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    // ---- Application ----------------------------------------------------------------------

    /// Queues an application message on `channel` (priority 0 is the most urgent).
    pub fn send(&mut self, channel: u16, priority: u8, payload: Bytes) -> Result<(), SendError> {
        if self.state == State::Closed {
            return Err(SendError::Closed);
        }
        let limit = self
            .peer_max_payload
            .saturating_sub(super::frame::DATA_OVERHEAD);
        if payload.len() > limit {
            return Err(SendError::TooLarge {
                len: payload.len(),
                limit,
            });
        }
        if self.scheduler.len >= self.config.send_queue
            || self.held_bytes() + payload.len() > self.config.max_held_bytes
        {
            return Err(SendError::Full {
                queued: self.scheduler.len,
                held_bytes: self.held_bytes(),
            });
        }
        self.scheduler.push(channel, priority, payload);
        Ok(())
    }

    /// Whether a received message waits for [`Session::recv`].
    #[inline]
    pub fn has_received(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// The next received message, in sequence order. Reading opens the window again.
    pub fn recv(&mut self) -> Option<Message> {
        let m = self.inbox.pop_front()?;
        self.inbox_bytes -= m.payload.len();
        // Tell the sender promptly once a quarter of the window has reopened, or at once if it
        // had been shut: otherwise a stalled sender would wait for the next ACK forever.
        let limit_sent = self.ack_sent + self.window_sent as u64;
        let limit_now = self.last_received + self.window_available() as u64;
        let step = (self.config.window as u64 / 4).max(1);
        let window_was_small = (self.window_sent as u64) < step;
        if self.state == State::Established && (limit_now >= limit_sent + step || window_was_small)
        {
            self.ack_now = true;
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An established client whose DATA counters have passed 2^32: it has sent up to
    /// 2^32 + 20 and the server has acknowledged up to 2^32 + 10.
    fn past_the_wrap() -> Session {
        let mut s = Session::client(ClientConfig::default());
        s.state = State::Established;
        s.id = 5;
        s.next_seq = (1 << 32) + 21;
        s.transmitted = (1 << 32) + 20;
        s.peer_acked = (1 << 32) + 10;
        s.peer_window = 64;
        s
    }

    fn ack(wire: u32) -> Frame {
        Frame::new(5, wire, Body::Ack { window: 64 })
    }

    #[test]
    fn an_ack_is_expanded_around_the_highest_sequence_number_sent() {
        // 2^31 + 15 on the wire is nearest to 2^32 + 2^31 + 15 from the highest sent
        // (2^32 + 20): beyond it, so a SEQUENCE_ERROR, not a stale ACK from 2^31 + 15.
        let mut s = past_the_wrap();
        let err = s.handle_frame(Time::ZERO, ack((1 << 31) + 15)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::SequenceError, "{err}");

        let mut s = past_the_wrap();
        assert_eq!(s.handle_frame(Time::ZERO, ack(15)), Ok(()));
        assert_eq!(s.peer_acked, (1 << 32) + 15);
    }

    #[test]
    fn the_heartbeat_counter_goes_from_its_largest_value_to_one_never_zero() {
        let mut s = past_the_wrap();
        s.hb_seq = u32::MAX - 1;
        s.send_heartbeat(Time::ZERO, false);
        s.send_heartbeat(Time::ZERO, false);
        let seqs: Vec<u32> = s.control.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [u32::MAX, 1]);
    }
}
