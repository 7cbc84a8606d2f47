//! A client and a server session joined by a fake link with a fake clock.
//!
//! The link is what TCP gives an application: an ordered, reliable byte stream per direction,
//! with latency. Loss inside a connection does not exist at this level (TCP retransmits it);
//! what the harness can do is what really loses data: break the connection, dropping every byte
//! in flight both ways, or crash a side so it goes silent. Frames cross the link as bytes, through
//! the real encoder and decoder.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcpsim::proto::registry::{Admission, Registry, ServerConfig};
use mcpsim::proto::session::{ClientConfig, Event, Message, Session};
use mcpsim::proto::{Decoder, Frame, Time};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Conn {
    to_server: VecDeque<(Time, Bytes)>,
    to_client: VecDeque<(Time, Bytes)>,
    server_rx: BytesMut,
    client_rx: BytesMut,
    server_dec: Decoder,
    client_dec: Decoder,
    /// Set when either side closed: the connection is torn down at this time.
    teardown_at: Option<Time>,
}

pub struct Pair {
    pub now: Time,
    pub client: Session,
    pub registry: Registry,
    /// The server session attached to the current connection, if any.
    pub server: Option<Session>,
    conn: Option<Conn>,
    pub latency: Duration,
    pub reconnect_delay: Duration,
    reconnect_at: Option<Time>,
    pub client_events: Vec<(Time, Event)>,
    pub server_events: Vec<(Time, Event)>,
    /// A crashed server neither reads, writes nor runs timers, and refuses new connections.
    pub server_up: bool,
    /// A crashed client neither reads, writes nor runs timers.
    pub client_up: bool,
    /// Whether the server application reads its messages (false: it never drains the inbox).
    pub server_reads: bool,
    pub server_received: Vec<Message>,
    pub client_received: Vec<Message>,
    /// Bytes written towards the server on all connections, for overhead checks.
    pub bytes_to_server: usize,
    /// Largest number of bytes a receiver ever had buffered undecoded.
    pub max_rx_buffered: usize,
}

impl Pair {
    pub fn new(client: ClientConfig, server: ServerConfig) -> Pair {
        let mut pair = Pair {
            now: Time::ZERO,
            client: Session::client(client),
            registry: Registry::new(server, ChaCha20Rng::seed_from_u64(7)),
            server: None,
            conn: None,
            latency: Duration::from_millis(5),
            reconnect_delay: Duration::from_millis(100),
            reconnect_at: None,
            client_events: Vec::new(),
            server_events: Vec::new(),
            server_up: true,
            client_up: true,
            server_reads: true,
            server_received: Vec::new(),
            client_received: Vec::new(),
            bytes_to_server: 0,
            max_rx_buffered: 0,
        };
        pair.connect();
        pair
    }

    fn connect(&mut self) {
        self.reconnect_at = None;
        if !self.server_up || !self.client_up {
            self.reconnect_at = Some(self.now + self.reconnect_delay);
            return;
        }
        let max = self.registry.config().session.max_payload;
        self.conn = Some(Conn {
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            server_rx: BytesMut::new(),
            client_rx: BytesMut::new(),
            server_dec: Decoder::new(max),
            client_dec: Decoder::new(u16::MAX as usize),
            teardown_at: None,
        });
        self.client.handle_connected(self.now);
        self.pump();
    }

    /// Drops the connection as a reset would: bytes in flight are lost both ways.
    pub fn break_connection(&mut self) {
        if self.conn.take().is_none() {
            return;
        }
        self.client.handle_disconnect(self.now);
        if let Some(s) = self.server.take() {
            self.registry.detach(self.now, s);
        }
        self.drain_events();
        if self.client_up {
            self.reconnect_at = Some(self.now + self.reconnect_delay);
        }
    }

    /// Runs the world until `t`.
    pub fn run_until(&mut self, t: Time) {
        let mut steps_at_same_time = 0;
        while let Some(next) = self.next_time().filter(|n| *n <= t) {
            steps_at_same_time = if next <= self.now {
                steps_at_same_time + 1
            } else {
                0
            };
            assert!(steps_at_same_time < 10_000, "no progress at {:?}", self.now);
            // A side back from a crash finds overdue bytes and timers: handle them now.
            self.now = next.max(self.now);
            self.step();
        }
        self.now = t;
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn next_time(&self) -> Option<Time> {
        let mut ts = vec![self.reconnect_at, self.registry.poll_timeout()];
        if self.client_up {
            ts.push(self.client.poll_timeout());
        }
        if let (true, Some(s)) = (self.server_up, &self.server) {
            ts.push(s.poll_timeout());
        }
        if let Some(c) = &self.conn {
            ts.push(c.teardown_at);
            // A crashed side reads nothing: its bytes wait in the link until it comes back.
            if self.server_up {
                ts.push(c.to_server.front().map(|x| x.0));
            }
            if self.client_up {
                ts.push(c.to_client.front().map(|x| x.0));
            }
        }
        ts.into_iter().flatten().min()
    }

    fn step(&mut self) {
        let now = self.now;
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.connect();
        }
        self.deliver();
        if self.client_up && self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.server_up
            && let Some(s) = &mut self.server
            && s.poll_timeout().is_some_and(|t| t <= now)
        {
            s.handle_timeout(now);
        }
        if self.registry.poll_timeout().is_some_and(|t| t <= now) {
            self.registry.handle_timeout(now);
        }
        self.pump();
        // The core must make progress: after handle_timeout(now) no deadline is still due.
        if self.client_up {
            let t = self.client.poll_timeout();
            assert!(
                t.is_none_or(|t| t > now),
                "client deadline stuck at {now:?}"
            );
        }
        if let (true, Some(s)) = (self.server_up, &self.server) {
            let t = s.poll_timeout();
            assert!(
                t.is_none_or(|t| t > now),
                "server deadline stuck at {now:?}"
            );
        }
        if self
            .conn
            .as_ref()
            .and_then(|c| c.teardown_at)
            .is_some_and(|t| t <= now)
        {
            self.break_connection();
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let Some(conn) = &mut self.conn else { return };
        if self.server_up {
            while conn.to_server.front().is_some_and(|x| x.0 <= now) {
                let (_, b) = conn.to_server.pop_front().unwrap();
                conn.server_rx.extend_from_slice(&b);
            }
        }
        if self.client_up {
            while conn.to_client.front().is_some_and(|x| x.0 <= now) {
                let (_, b) = conn.to_client.pop_front().unwrap();
                conn.client_rx.extend_from_slice(&b);
            }
        }
        self.max_rx_buffered = self
            .max_rx_buffered
            .max(conn.server_rx.len())
            .max(conn.client_rx.len());
        // Server side.
        loop {
            let Some(conn) = &mut self.conn else { return };
            let decoded = conn.server_dec.decode(&mut conn.server_rx);
            if decoded.is_err() {
                conn.server_rx.clear();
            }
            match decoded {
                Ok(Some(frame)) => self.server_frame(frame),
                Ok(None) => break,
                Err(e) => {
                    match &mut self.server {
                        Some(s) => s.handle_decode_error(&e),
                        None => self.close_soon(),
                    }
                    break;
                }
            }
        }
        loop {
            let Some(conn) = &mut self.conn else { return };
            match conn.client_dec.decode(&mut conn.client_rx) {
                Ok(Some(frame)) => {
                    let _ = self.client.handle_frame(now, frame);
                }
                Ok(None) => break,
                Err(e) => {
                    self.client.handle_decode_error(&e);
                    conn.client_rx.clear();
                    break;
                }
            }
        }
    }

    fn server_frame(&mut self, frame: Frame) {
        let now = self.now;
        match &mut self.server {
            Some(s) => {
                let _ = s.handle_frame(now, frame);
            }
            None => match self.registry.admit(now, &frame) {
                Admission::Accepted(s) => self.server = Some(*s),
                Admission::Rejected { frame, .. } => {
                    self.write_to_client(&frame);
                    self.close_soon();
                }
                Admission::Unexpected { close, .. } => {
                    if let Some(close) = close {
                        self.write_to_client(&close);
                    }
                    self.close_soon();
                }
                Admission::Attached { session_id } => panic!("session {session_id} attached twice"),
            },
        }
    }

    fn close_soon(&mut self) {
        let at = self.now + self.latency;
        if let Some(c) = &mut self.conn {
            c.teardown_at.get_or_insert(at);
        }
    }

    fn write_to_client(&mut self, frame: &Frame) {
        let at = self.now + self.latency;
        if let Some(c) = &mut self.conn {
            let t = c.to_client.back().map_or(at, |x| x.0.max(at));
            c.to_client.push_back((t, frame.to_bytes().unwrap()));
        }
    }

    fn write_to_server(&mut self, frame: &Frame) {
        let at = self.now + self.latency;
        if let Some(c) = &mut self.conn {
            let t = c.to_server.back().map_or(at, |x| x.0.max(at));
            let b = frame.to_bytes().unwrap();
            self.bytes_to_server += b.len();
            c.to_server.push_back((t, b));
        }
    }

    /// Moves every frame both sides want to send onto the link, and reads their events.
    pub fn pump(&mut self) {
        let now = self.now;
        if self.conn.is_some() {
            while self.client_up
                && let Some(f) = self.client.poll_transmit(now)
            {
                self.write_to_server(&f);
            }
            while self.server_up
                && let Some(f) = self.server.as_mut().and_then(|s| s.poll_transmit(now))
            {
                self.write_to_client(&f);
            }
        }
        self.drain_events();
    }

    fn drain_events(&mut self) {
        let now = self.now;
        while let Some(e) = self.client.poll_event() {
            if matches!(e, Event::ConnectionClosed { .. }) {
                self.close_soon();
            }
            self.client_events.push((now, e));
        }
        while let Some(m) = self.client.recv() {
            self.client_received.push(m);
        }
        if let Some(s) = &mut self.server {
            while let Some(e) = s.poll_event() {
                if matches!(e, Event::ConnectionClosed { .. })
                    && let Some(c) = &mut self.conn
                {
                    c.teardown_at.get_or_insert(now + self.latency);
                }
                self.server_events.push((now, e));
            }
            while self.server_reads
                && let Some(m) = s.recv()
            {
                self.server_received.push(m);
            }
        }
    }

    /// Times at which the client's events matched `pred`.
    pub fn client_times(&self, pred: impl Fn(&Event) -> bool) -> Vec<Time> {
        self.client_events
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn server_times(&self, pred: impl Fn(&Event) -> bool) -> Vec<Time> {
        self.server_events
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(t, _)| *t)
            .collect()
    }
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

pub fn at(s: f64) -> Time {
    Time::from_epoch(secs(s))
}
