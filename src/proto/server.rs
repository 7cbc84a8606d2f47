//! The server endpoint, sans-IO: every decision a server makes outside a session.
//!
//! A [`ServerEndpoint`] owns the session [`Registry`], the connection limit, each new
//! connection's handshake deadline, who holds each attached session (for a takeover), and the
//! load-aware [`Throttle`]. It decides whether an accepted connection is served or refused,
//! what a connection's first frame gets (its session, a REJECT, a CLOSE), what a resume of a
//! session still attached elsewhere does, when a detached session expires, and how far
//! throttling lengthens every session's interval. A driver only carries its decisions out: it
//! accepts, reads the first frame by the deadline, writes what it is told, runs the connection
//! loop on the session it is handed, and reports each connection's end.
//!
//! # Calling protocol
//!
//! - [`ServerEndpoint::handle_started`] when a listener starts serving.
//! - [`ServerEndpoint::handle_accept`] for each accepted connection, with the driver's handle
//!   for it (what the driver needs to reach that connection: its task's notifier, an index):
//!   [`Opening::Open`] with the connection's id and handshake deadline, or [`Opening::Refuse`].
//! - The connection's first frame (or the decoder's error) to
//!   [`ServerEndpoint::handle_first_frame`]; obey the [`Greeting`]. No frame by the deadline:
//!   [`ServerEndpoint::handle_handshake_timeout`].
//! - [`ServerEndpoint::handle_closed`] when the connection is over, with its session if it was
//!   handed one: the session is parked for a resume, or has ended.
//! - Timers: [`ServerEndpoint::poll_timeout`] (resume windows and load samples), then
//!   [`ServerEndpoint::handle_timeout`], then [`ServerEndpoint::poll_event`] for the sessions
//!   that expired.
//! - Load: when [`ServerEndpoint::sample_due`], take a sample and pass it to
//!   [`ServerEndpoint::handle_load`]; hand the [`Steer`] it returns to every connection.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;

use super::error::{Error, ErrorCode};
use super::frame::{Body, Close, Frame, HeartbeatParams, Load};
use super::registry::{Admission, Registry, RegistryEvent, ServerConfig};
use super::session::{Session, State};
use super::throttle::{Throttle, ThrottleConfig};
use super::time::{Time, earlier};

/// How often a resume offers itself again while the connection that still holds its session
/// lets go.
pub const TAKEOVER_RETRY: Duration = Duration::from_millis(20);
/// How many times a resume offers itself before it is refused with SERVER_BUSY.
pub const TAKEOVER_TRIES: u32 = 50;
/// How often load is sampled, when throttling or reporting it.
pub const LOAD_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a server endpoint decides with.
#[derive(Clone, Debug)]
pub struct ServerEndpointConfig {
    pub server: ServerConfig,
    /// Connections served at once; more are refused with SERVER_BUSY.
    pub max_connections: usize,
    /// A connection without a complete valid HELLO by then is closed.
    pub handshake_timeout: Duration,
    /// Load-aware heartbeats: lengthen the granted interval while the load is high.
    pub throttle: Option<ThrottleConfig>,
    /// Heartbeats and replies carry this server's load figures.
    pub report_load: bool,
}

/// What the server tells its connections about itself: how far throttling lengthens the
/// granted interval (1: not at all), and the load its heartbeats report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steer {
    pub factor: u32,
    /// The longest interval the server grants, throttled or not, in milliseconds.
    pub cap_ms: u32,
    pub load: Option<Load>,
}

impl Default for Steer {
    fn default() -> Steer {
        Steer {
            factor: 1,
            cap_ms: u32::MAX,
            load: None,
        }
    }
}

/// A connection, as the endpoint names it.
pub type ConnId = u64;

/// What becomes of an accepted connection.
#[derive(Debug, PartialEq)]
pub enum Opening {
    /// Serve it: read its first frame by `deadline`.
    Open { conn: ConnId, deadline: Time },
    /// At the connection limit: write `reject`, close.
    Refuse { reject: Frame, reason: &'static str },
}

/// What a connection's first frame gets.
#[derive(Debug)]
pub enum Greeting<H> {
    /// Run this session on the connection (WELCOME is queued).
    Serve(Box<Session>),
    /// Write `frame` if there is one, then close. `error`, if any, is what to report, about
    /// `session_id` (0: none).
    Close {
        frame: Option<Frame>,
        error: Option<Error>,
        session_id: u32,
    },
    /// The session is still attached to another connection: tell `owner` (its driver handle,
    /// when that connection is still known) to let go, then offer the same first frame again at
    /// `retry_at`.
    TakeOver { owner: Option<H>, retry_at: Time },
}

/// A registry event, or the throttle's.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    Registry(RegistryEvent),
    /// Throttling turned on or off: every session is now granted `interval_ms`.
    Throttle {
        interval_ms: u32,
        cpu_permille: u16,
        throttling: bool,
    },
}

#[derive(Debug)]
struct Conn<H> {
    handle: H,
    /// Times a resume on this connection has offered itself for a takeover.
    tries: u32,
    /// The session it serves, once it has one.
    session: Option<u32>,
}

/// A server's decisions, sans-IO (see the module documentation). `H` is the driver's handle
/// for a connection, handed back when a takeover needs that connection to let go.
#[derive(Debug)]
pub struct ServerEndpoint<H> {
    config: ServerEndpointConfig,
    registry: Registry,
    conns: BTreeMap<ConnId, Conn<H>>,
    /// Which connection holds each attached session.
    owners: BTreeMap<u32, ConnId>,
    next_conn: ConnId,
    throttle: Option<Throttle>,
    next_sample: Option<Time>,
    events: std::collections::VecDeque<ServerEvent>,
}

impl<H: Clone> ServerEndpoint<H> {
    /// A server drawing session ids and resume tokens from `rng` (seeded from the operating
    /// system in production: tokens must be unguessable; from the master seed in simulation).
    pub fn new(config: ServerEndpointConfig, rng: ChaCha20Rng) -> ServerEndpoint<H> {
        ServerEndpoint {
            registry: Registry::new(config.server.clone(), rng),
            conns: BTreeMap::new(),
            owners: BTreeMap::new(),
            next_conn: 0,
            throttle: None,
            next_sample: None,
            events: std::collections::VecDeque::new(),
            config,
        }
    }

    pub fn config(&self) -> &ServerEndpointConfig {
        &self.config
    }

    /// Sessions known, attached or detached.
    pub fn sessions(&self) -> usize {
        self.registry.len()
    }

    /// Connections open (served, or reading their first frame).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A listener starts serving at `now`: throttling starts untriggered, load is sampled at
    /// once, and no connection of an earlier run is left. Sessions detached before survive,
    /// for a resume.
    pub fn handle_started(&mut self, now: Time) {
        self.conns.clear();
        self.owners.clear();
        let base = HeartbeatParams {
            interval_ms: self.config.server.default_interval_ms,
            miss_threshold: self.config.server.default_miss_threshold,
        };
        self.throttle = self.config.throttle.clone().map(|c| Throttle::new(c, base));
        self.next_sample = self.samples_load().then_some(now);
    }

    /// A connection was accepted at `now`; `handle` is how the driver reaches it.
    pub fn handle_accept(&mut self, now: Time, handle: H) -> Opening {
        if self.conns.len() >= self.config.max_connections {
            return Opening::Refuse {
                reject: refusal(ErrorCode::ServerBusy, "connection limit"),
                reason: "connection limit",
            };
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                handle,
                tries: 0,
                session: None,
            },
        );
        Opening::Open {
            conn,
            deadline: now + self.config.handshake_timeout,
        }
    }

    /// The connection's first frame, or the error its decoder met instead.
    pub fn handle_first_frame(
        &mut self,
        now: Time,
        conn: ConnId,
        first: Result<&Frame, Error>,
    ) -> Greeting<H> {
        let hello = match first {
            Ok(frame) => frame,
            Err(error) => {
                let frame = closing(error.code(), error.to_string());
                return Greeting::Close {
                    frame: Some(frame),
                    error: Some(error),
                    session_id: 0,
                };
            }
        };
        match self.registry.admit(now, hello) {
            Admission::Accepted(session) => {
                let id = session.id();
                self.owners.insert(id, conn);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = Some(id);
                }
                Greeting::Serve(session)
            }
            Admission::Rejected {
                frame,
                code,
                reason,
            } => Greeting::Close {
                frame: Some(frame),
                error: Some(Error::Rejected { code, reason }),
                session_id: hello.session_id,
            },
            Admission::Unexpected { close, error } => Greeting::Close {
                frame: close,
                error: Some(error),
                session_id: 0,
            },
            Admission::Attached { session_id } => {
                // The client resumed before we noticed its old connection died: take over.
                let owner = self
                    .owners
                    .get(&session_id)
                    .and_then(|o| self.conns.get(o))
                    .map(|c| c.handle.clone());
                let Some(c) = self.conns.get_mut(&conn) else {
                    return busy();
                };
                c.tries += 1;
                if c.tries > TAKEOVER_TRIES {
                    return busy();
                }
                Greeting::TakeOver {
                    owner,
                    retry_at: now + TAKEOVER_RETRY,
                }
            }
        }
    }

    /// No complete first frame by the deadline: the CLOSE to write before closing.
    pub fn handle_handshake_timeout(&mut self, _conn: ConnId) -> Frame {
        closing(ErrorCode::HandshakeTimeout, "no hello in time".into())
    }

    /// The connection is over at `now`. Its session, if it was handed one, is parked for a
    /// resume. Returns whether that session has ended for good (closed, not resumable).
    pub fn handle_closed(&mut self, now: Time, conn: ConnId, session: Option<Session>) -> bool {
        self.conns.remove(&conn);
        let Some(session) = session else {
            return false;
        };
        let id = session.id();
        if self.owners.get(&id) == Some(&conn) {
            self.owners.remove(&id);
        }
        let ended = session.state() == State::Closed;
        self.registry.detach(now, session);
        ended
    }

    /// When the endpoint next needs the driver: the next detached session expires, or a load
    /// sample is due ([`ServerEndpoint::sample_due`]).
    pub fn poll_timeout(&self) -> Option<Time> {
        earlier(self.registry.poll_timeout(), self.next_sample)
    }

    /// Expires the detached sessions whose resume window is over by `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.registry.handle_timeout(now);
        while let Some(ev) = self.registry.poll_event() {
            self.events.push_back(ServerEvent::Registry(ev));
        }
    }

    /// What happened since the last call, oldest first.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Whether a load sample is due at `now` (never when neither throttling nor reporting).
    pub fn sample_due(&self, now: Time) -> bool {
        self.next_sample.is_some_and(|t| now >= t)
    }

    /// A load sample taken at `now`: what every connection should now be told.
    pub fn handle_load(&mut self, now: Time, sample: Load) -> Steer {
        self.next_sample = Some(now + LOAD_SAMPLE_INTERVAL);
        let factor = match &mut self.throttle {
            Some(t) => {
                if let Some(p) = t.handle_load(now, sample) {
                    self.events.push_back(ServerEvent::Throttle {
                        interval_ms: p.interval_ms,
                        cpu_permille: sample.cpu_permille,
                        throttling: t.is_throttling(),
                    });
                }
                match (&self.config.throttle, t.is_throttling()) {
                    (Some(c), true) => c.factor,
                    _ => 1,
                }
            }
            None => 1,
        };
        Steer {
            factor,
            cap_ms: self.config.server.max_interval_ms,
            load: self.config.report_load.then_some(sample),
        }
    }

    /// Sessions waiting for a resume.
    pub fn detached(&self) -> usize {
        self.registry.detached()
    }

    fn samples_load(&self) -> bool {
        self.config.throttle.is_some() || self.config.report_load
    }
}

fn busy<H>() -> Greeting<H> {
    Greeting::Close {
        frame: Some(refusal(ErrorCode::ServerBusy, "session busy")),
        error: None,
        session_id: 0,
    }
}

/// A REJECT for a connection the server will not serve.
fn refusal(code: ErrorCode, reason: &str) -> Frame {
    Frame::new(
        0,
        0,
        Body::Reject(Close {
            code,
            reason: reason.into(),
        }),
    )
}

/// A CLOSE before any session.
fn closing(code: ErrorCode, reason: String) -> Frame {
    Frame::new(0, 0, Body::Close(Close { code, reason }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::FrameType;
    use crate::proto::session::{ClientConfig, Session};
    use rand::SeedableRng;

    fn at(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    fn endpoint(max_connections: usize, throttle: Option<ThrottleConfig>) -> ServerEndpoint<u8> {
        let mut e = ServerEndpoint::new(
            ServerEndpointConfig {
                server: ServerConfig::default(),
                max_connections,
                handshake_timeout: Duration::from_secs(5),
                throttle,
                report_load: false,
            },
            ChaCha20Rng::seed_from_u64(3),
        );
        e.handle_started(at(0));
        e
    }

    fn open(e: &mut ServerEndpoint<u8>, now: Time, handle: u8) -> ConnId {
        match e.handle_accept(now, handle) {
            Opening::Open { conn, .. } => conn,
            refused => panic!("refused: {refused:?}"),
        }
    }

    /// A client session's HELLO (a resume once `client` has a session).
    fn hello(client: &mut Session, now: Time) -> Frame {
        client.handle_connected(now);
        client.poll_transmit(now).expect("HELLO")
    }

    /// A REJECT's or CLOSE's type and code.
    fn answer(frame: &Frame) -> (FrameType, ErrorCode) {
        match &frame.body {
            Body::Close(c) | Body::Reject(c) => (frame.frame_type(), c.code),
            other => panic!("not a refusal: {other:?}"),
        }
    }

    fn served(g: Greeting<u8>) -> Box<Session> {
        match g {
            Greeting::Serve(s) => s,
            other => panic!("not served: {other:?}"),
        }
    }

    #[test]
    fn connections_past_the_limit_are_refused_with_server_busy_until_one_closes() {
        let mut e = endpoint(2, None);
        let a = open(&mut e, at(0), 1);
        open(&mut e, at(0), 2);
        let Opening::Refuse { reject, reason } = e.handle_accept(at(1), 3) else {
            panic!("a third connection was served");
        };
        assert_eq!(reason, "connection limit");
        assert_eq!(answer(&reject), (FrameType::Reject, ErrorCode::ServerBusy));
        assert!(!e.handle_closed(at(2), a, None));
        assert!(matches!(e.handle_accept(at(2), 3), Opening::Open { .. }));
    }

    #[test]
    fn an_accepted_connection_must_say_hello_within_the_handshake_timeout() {
        let mut e = endpoint(10, None);
        let Opening::Open { conn, deadline } = e.handle_accept(at(700), 1) else {
            panic!("refused");
        };
        assert_eq!(deadline, at(5_700));
        let close = e.handle_handshake_timeout(conn);
        assert_eq!(
            answer(&close),
            (FrameType::Close, ErrorCode::HandshakeTimeout)
        );
    }

    #[test]
    fn a_hello_is_served_a_session_that_is_parked_for_a_resume_when_its_connection_ends() {
        let mut e = endpoint(10, None);
        let mut client = Session::client(ClientConfig::default());
        let conn = open(&mut e, at(0), 1);
        let session = served(e.handle_first_frame(at(0), conn, Ok(&hello(&mut client, at(0)))));
        assert_eq!(e.sessions(), 1);
        assert!(
            !e.handle_closed(at(10), conn, Some(*session)),
            "still resumable"
        );
        assert_eq!(e.detached(), 1);
        assert_eq!(e.connections(), 0);
    }

    #[test]
    fn a_first_frame_that_does_not_decode_gets_a_close_with_the_decoders_code() {
        let mut e = endpoint(10, None);
        let conn = open(&mut e, at(0), 1);
        let error = Error::BadMagic(0xdead_beef);
        let Greeting::Close {
            frame: Some(frame),
            error: Some(reported),
            session_id: 0,
        } = e.handle_first_frame(at(0), conn, Err(error.clone()))
        else {
            panic!("not a close");
        };
        assert_eq!(reported, error);
        assert_eq!(answer(&frame), (FrameType::Close, ErrorCode::BadMagic));
    }

    #[test]
    fn a_resume_of_a_session_still_attached_asks_its_holder_to_let_go_then_takes_it_over() {
        let mut e = endpoint(10, None);
        let mut client = Session::client(ClientConfig::default());
        let old = open(&mut e, at(0), 7);
        let first = hello(&mut client, at(0));
        let mut session = served(e.handle_first_frame(at(0), old, Ok(&first)));
        // The client learns its session from WELCOME, then its connection breaks unnoticed.
        let welcome = session.poll_transmit(at(0)).expect("WELCOME");
        let _ = client.handle_frame(at(1), welcome);
        client.handle_disconnect(at(2));
        let resume = hello(&mut client, at(3));
        let new = open(&mut e, at(3), 9);
        let Greeting::TakeOver { owner, retry_at } = e.handle_first_frame(at(3), new, Ok(&resume))
        else {
            panic!("not a takeover");
        };
        assert_eq!((owner, retry_at), (Some(7), at(23)));
        // The holder lets go; the resume offered again gets the session.
        e.handle_closed(at(10), old, Some(*session));
        let resumed = served(e.handle_first_frame(at(23), new, Ok(&resume)));
        assert_eq!(resumed.id(), client.id());
    }

    #[test]
    fn a_resume_whose_session_is_never_let_go_is_refused_busy_after_its_tries() {
        let mut e = endpoint(10, None);
        let mut client = Session::client(ClientConfig::default());
        let old = open(&mut e, at(0), 7);
        let mut session = served(e.handle_first_frame(at(0), old, Ok(&hello(&mut client, at(0)))));
        let _ = client.handle_frame(at(1), session.poll_transmit(at(0)).expect("WELCOME"));
        client.handle_disconnect(at(2));
        let resume = hello(&mut client, at(3));
        let new = open(&mut e, at(3), 9);
        let mut now = at(3);
        let mut takeovers = 0;
        let busy = loop {
            match e.handle_first_frame(now, new, Ok(&resume)) {
                Greeting::TakeOver { retry_at, .. } => {
                    takeovers += 1;
                    now = retry_at;
                }
                other => break other,
            }
        };
        assert_eq!(takeovers, TAKEOVER_TRIES);
        let Greeting::Close {
            frame: Some(frame),
            error: None,
            ..
        } = busy
        else {
            panic!("not refused: {busy:?}");
        };
        assert_eq!(answer(&frame), (FrameType::Reject, ErrorCode::ServerBusy));
    }

    #[test]
    fn throttling_lengthens_every_grant_by_its_factor_while_the_load_stays_high() {
        let config = ThrottleConfig {
            hold: Duration::from_secs(2),
            ..ThrottleConfig::default()
        };
        let factor = config.factor;
        let mut e = endpoint(10, Some(config));
        let busy = Load {
            cpu_permille: 990,
            mem_permille: 0,
        };
        let mut now = at(0);
        let mut factors = Vec::new();
        for _ in 0..4 {
            assert!(e.sample_due(now));
            factors.push(e.handle_load(now, busy).factor);
            assert!(!e.sample_due(now));
            now += LOAD_SAMPLE_INTERVAL;
        }
        assert_eq!(factors, [1, 1, factor, factor]);
        assert!(matches!(
            e.poll_event(),
            Some(ServerEvent::Throttle {
                throttling: true,
                ..
            })
        ));
    }

    #[test]
    fn a_server_that_neither_throttles_nor_reports_load_never_samples_it() {
        let e = endpoint(10, None);
        assert!(!e.sample_due(at(0)));
        assert!(!e.sample_due(at(60_000)));
    }

    #[test]
    fn an_expired_session_is_reported_with_what_it_left_undelivered() {
        let mut e = endpoint(10, None);
        let mut client = Session::client(ClientConfig::default());
        let conn = open(&mut e, at(0), 1);
        let session = served(e.handle_first_frame(at(0), conn, Ok(&hello(&mut client, at(0)))));
        let id = session.id();
        e.handle_closed(at(0), conn, Some(*session));
        let expiry = e.poll_timeout().expect("a resume window");
        e.handle_timeout(expiry);
        assert!(matches!(
            e.poll_event(),
            Some(ServerEvent::Registry(RegistryEvent::Expired { session_id, .. })) if session_id == id
        ));
        assert_eq!(e.sessions(), 0);
    }
}
