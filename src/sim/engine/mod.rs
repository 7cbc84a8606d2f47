//! The event-driven engine: the sans-IO sessions driven from one event queue in simulated
//! time, over the same TCP model and links as the turmoil runner, with no tokio and no ticks.
//!
//! [`super::runner`] runs the real async drivers on turmoil. This engine drives the same
//! `Session`s directly: one [`Queue`] of events, each handled at its instant, nothing done
//! between events. What a driver does with a session's output (frames into the socket, events
//! into `NetEvent`s for an [`Observer`]) is the same code `net::conn::drive` runs
//! (`net::conn::Reporter`), so an observer sees the same events; the server's sessions come
//! from a [`Registry`] seeded as the runner seeds the server's, so session ids match.
//!
//! # Events
//!
//! - A client starts (at its instant of the scenario's connect ramp): it reports its attempt,
//!   opens a connection (its path models from [`FaultLinks`], the SYN exchange from the path)
//!   and the connection opens when the handshake completes.
//! - A session deadline of one end of a connection ([`Session::poll_timeout`](crate::proto::Session::poll_timeout)):
//!   like the driver, the end first reads whatever has reached it, then runs the deadline.
//! - The TCP model's next event of a connection ([`TcpModel::poll_timeout`](super::tcp::TcpModel::poll_timeout)):
//!   packets arrive, timers fire; segments that reach a receiver's buffer are read at once,
//!   decoded with the real decoder and fed to the session.
//!
//! Events of one instant run in the order they were scheduled ([`queue`]). Deadlines that move
//! are not removed from the queue: see [`Timer`]. Every wake-up happens on a whole millisecond
//! (`wake_at`), as on tokio's timer wheel in the runner, and a read takes what the driver's
//! read buffer has room for, as `read_buf` does: so a session goes the same way, to the
//! nanosecond and to the packet, on both (`tests/sim/engine.rs` checks it, with loss).
//!
//! # What is modelled, and what not yet
//!
//! Modelled: connection set-up through the path model (SYN loss and backoff included), the
//! handshake through the real [`Registry`] and sessions, heartbeats, replies, detectors and
//! health, the kernels' TCP of `sim::tcp` (RTT, retransmissions, probes, delayed ACKs, user
//! timeout) over the links' latency and loss, the events of `net::conn::drive` (traffic reports
//! once a second, a session closing its connection, a connection ending by EOF, reset or
//! timeout, with its `PeerLost` and `Disconnected`).
//!
//! Not yet, and refused by [`Engine::new`]: scheduled and random faults (kills, crashes,
//! pauses, partitions, latency episodes), application traffic, the server's load model,
//! throttling and load reports, links with a rate (the congestion window), sabotage. Not yet,
//! and only counted ([`Stats`]): a connection that ends is not followed by a reconnection (the
//! client stays down); a connect that times out, a HELLO the registry refuses and a resume are
//! not retried. Writes never wait for room in the send buffer, and the server's handshake
//! timeout, the drivers' write-stall timeout and the registry's expiry of detached sessions do
//! not run.
//!
//! # Determinism
//!
//! Time is the engine's only ([`EngineClock`] lets an observer read it). Randomness comes from
//! the ChaCha streams of [`super::synthetic::stream`] keyed as the runner keys them: the
//! server's registry, each client's draws (its ramp), each connection's path models.
//! Connections are numbered in the order their clients start (ties: in client order).

mod conn;
pub mod queue;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub use queue::{Queue, Timer};

use self::conn::{Conn, End, Names, World};
use super::fault::FaultError;
use super::links::FaultLinks;
use super::net::{ConnectOutcome, Links};
use super::runner::{CLIENTS, SERVER, Scenario};
use super::synthetic::{Purpose, stream};
use super::tcp::TcpModel;
use crate::net::NetEvent;
use crate::net::Observer;
use crate::net::client::ClientOptions;
use crate::net::conn::{Discard, ReadState};
use crate::net::server::ServerOptions;
use crate::proto::Decoder;
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::registry::Registry;
use crate::proto::session::{Counters, Session, Side};

/// The engine's simulated time, for observers: the instant of the event being handled.
/// Cheap to clone; every clone reads the same clock.
#[derive(Clone, Debug, Default)]
pub struct EngineClock(Arc<AtomicU64>);

impl EngineClock {
    /// Time since the simulation started.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, t: Duration) {
        let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(ns, Ordering::Relaxed);
    }
}

/// When a wake-up for `t` happens: at the next whole millisecond, as tokio's timer wheel makes
/// it in the turmoil runner. The drivers' timers have that resolution in production too (a
/// deadline is rounded up to the wheel's 1 ms tick); that segments are read on it too is the
/// runner's doing (its postman sleeps on the same wheel), kept so that both agree.
pub(crate) fn wake_at(t: Duration) -> Duration {
    const MS: u128 = 1_000_000;
    let ms = t.as_nanos().div_ceil(MS);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Why a scenario cannot run on the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the event engine does not model {0} yet")]
    Unsupported(&'static str),
    #[error("the stack configuration cannot run: {0}")]
    Config(String),
    #[error(transparent)]
    Fault(#[from] FaultError),
}

/// What the engine did, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events handled, stale ones included.
    pub events: u64,
    /// Connection ends (either side): nothing follows them yet.
    pub ended: u64,
    /// Things the engine met that it does not model yet and skipped: a connect that timed out,
    /// a refused HELLO, a resume (see the module docs).
    pub unsupported: u64,
}

/// Something due at an instant.
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// The client of this index starts: its first connection attempt.
    Connect(u32),
    /// The handshake of the connection of this id is over (or the attempt failed).
    Open(u32),
    /// A session deadline of one end of a connection.
    Session {
        conn: u32,
        side: u8,
        generation: u32,
    },
    /// The TCP model's next event on a connection.
    Tcp { conn: u32, generation: u32 },
}

impl Ev {
    fn session(conn: u64, side: usize, generation: u32) -> Ev {
        let (conn, side) = (conn as u32, side as u8);
        Ev::Session {
            conn,
            side,
            generation,
        }
    }

    fn tcp(conn: u64, generation: u32) -> Ev {
        let conn = conn as u32;
        Ev::Tcp { conn, generation }
    }
}

/// A client session before its connection exists.
struct Client {
    name: String,
    host: String,
    start: Duration,
    /// The session, until its connection takes it.
    session: Option<Box<Session>>,
}

/// The event engine. See the module docs.
pub struct Engine {
    now: Duration,
    duration: Duration,
    queue: Queue<Ev>,
    clock: EngineClock,
    observer: Arc<dyn Observer>,
    links: FaultLinks,
    registry: Registry,
    server: ServerOptions,
    client: ClientOptions,
    clients: Vec<Client>,
    /// Connections by id − 1; `None` for an attempt that failed.
    conns: Vec<Option<Conn>>,
    /// Attempts that failed, by connection id: the client and what it reports.
    failed: BTreeMap<u64, (u32, String)>,
    stats: Stats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("now", &self.now)
            .field("clients", &self.clients.len())
            .field("connections", &self.conns.len())
            .field("pending", &self.queue.len())
            .finish()
    }
}

impl Engine {
    /// An engine for `scenario` under the master `seed`, reporting to `observer`, which may read
    /// the time of what it is told from `clock` (the engine sets it). Refuses what it does not
    /// model yet (see the module docs).
    pub fn new(
        scenario: &Scenario,
        seed: u64,
        observer: Arc<dyn Observer>,
        clock: EngineClock,
    ) -> Result<Engine, EngineError> {
        let unsupported = [
            (!scenario.faults.is_empty(), "scheduled faults"),
            (!scenario.random_faults.is_empty(), "random faults"),
            (scenario.traffic.is_on(), "application traffic"),
            (scenario.load.is_some(), "the server's load"),
            (scenario.sabotage.is_some(), "sabotage"),
            (scenario.network.has_rate(), "links with a rate"),
            (!scenario.network.partitions.is_empty(), "partitions"),
            (!scenario.network.episodes.is_empty(), "latency episodes"),
            (scenario.stack.throttle.reports_load(), "load reports"),
            (scenario.stack.throttle.policy().is_some(), "throttling"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return Err(EngineError::Unsupported(what));
        }
        let config = |e: crate::config::ConfigError| EngineError::Config(e.to_string());
        scenario.stack.validate().map_err(config)?;
        let client = scenario.stack.client_options().map_err(config)?;
        let server = scenario.stack.server_options();
        let mut network = scenario.network.clone();
        network.tcp.user_timeout = scenario.stack.tcp.user_timeout.map(|t| t.0);
        let horizon = scenario.duration + Duration::from_secs(3600);
        let links = FaultLinks::new(network, seed, horizon)?;
        if links.tcp().window {
            return Err(EngineError::Unsupported("a congestion window"));
        }
        // The first life of the server process draws its ids and tokens as the runner's does.
        let server_seed = stream(seed, Purpose::Simulator, &[1, 0]).next_u64();
        let registry = Registry::new(
            server.config.clone(),
            ChaCha20Rng::seed_from_u64(server_seed),
        );
        let hosts = scenario.client_hosts.max(1);
        let mut queue = Queue::with_capacity(scenario.sessions * 8);
        let mut clients = Vec::with_capacity(scenario.sessions);
        for i in 0..scenario.sessions {
            let host = match hosts {
                1 => CLIENTS.to_string(),
                n => format!("{CLIENTS}-{}", i % n),
            };
            // The client's draws: its reconnect jitter's seed (unused here), then its start.
            let mut draws = stream(seed, Purpose::Simulator, &[2, i as u64]);
            let _jitter = draws.next_u64();
            let ramp_us = scenario.connect_ramp.as_micros() as u64;
            let start = match ramp_us {
                0 => Duration::ZERO,
                us => Duration::from_micros(draws.next_u64() % us),
            };
            let start = wake_at(start);
            queue.push(start, Ev::Connect(i as u32));
            clients.push(Client {
                name: format!("client-{i}"),
                host,
                start,
                session: None,
            });
        }
        Ok(Engine {
            now: Duration::ZERO,
            duration: scenario.duration,
            queue,
            clock,
            observer,
            links,
            registry,
            server,
            client,
            clients,
            conns: Vec::with_capacity(scenario.sessions),
            failed: BTreeMap::new(),
            stats: Stats::default(),
        })
    }

    /// The current simulated time.
    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The sessions' heartbeat counters, summed over the clients' sessions (`Side::Client`) or
    /// the server's.
    pub fn counters(&self, side: Side) -> Counters {
        let i = match side {
            Side::Client => 0,
            Side::Server => 1,
        };
        let mut total = Counters::default();
        for c in self.conns.iter().flatten().filter_map(|c| c.counters(i)) {
            total.heartbeats_sent += c.heartbeats_sent;
            total.heartbeats_received += c.heartbeats_received;
            total.heartbeat_acks_received += c.heartbeat_acks_received;
        }
        total
    }

    /// Runs the scenario to its end.
    pub fn run(&mut self) {
        self.run_until(self.duration);
    }

    /// Handles every event due at or before `until`, then stands at `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(at) = self.queue.peek_time()
            && at <= until
        {
            let Some((at, ev)) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.clock.set(at);
            self.stats.events += 1;
            self.handle(ev);
        }
        self.now = self.now.max(until);
        self.clock.set(self.now);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Connect(i) => self.connect(i as usize),
            Ev::Open(id) => self.open(id as usize),
            Ev::Session {
                conn,
                side,
                generation,
            } => {
                let now = self.now;
                let (mut w, conns) = self.world();
                let Some(c) = conns[conn as usize - 1].as_mut() else {
                    return;
                };
                let side = side as usize;
                let (due, again) = c.ends[side].timer.fire(generation, now);
                if let Some((at, generation)) = again {
                    w.queue.push(at, Ev::session(conn.into(), side, generation));
                }
                if due {
                    c.on_session_timer(side, &mut w);
                }
            }
            Ev::Tcp { conn, generation } => {
                let now = self.now;
                let (mut w, conns) = self.world();
                let Some(c) = conns[conn as usize - 1].as_mut() else {
                    return;
                };
                let (due, again) = c.tcp_timer.fire(generation, now);
                if let Some((at, generation)) = again {
                    w.queue.push(at, Ev::tcp(conn.into(), generation));
                }
                if due {
                    c.on_tcp(&mut w);
                }
            }
        }
    }

    fn world(&mut self) -> (World<'_>, &mut Vec<Option<Conn>>) {
        (
            World {
                now: self.now,
                queue: &mut self.queue,
                observer: &*self.observer,
                handler: &Discard,
                registry: &mut self.registry,
                stats: &mut self.stats,
            },
            &mut self.conns,
        )
    }

    /// Client `i` starts and makes its first connection attempt, as `net::client::run` does.
    fn connect(&mut self, i: usize) {
        let now = self.now;
        let client = &mut self.clients[i];
        let mut config = self.client.session.clone();
        config.client_id = client.name.clone();
        let session = Box::new(Session::client(config));
        let attempt = NetEvent::Connecting { attempt: 1 };
        self.observer
            .observe(&client.name, Side::Client, session.id(), &attempt);
        client.session = Some(session);
        let id = self.conns.len() as u64 + 1;
        let route = (client.host.as_str(), client.name.as_str());
        let mut there = self.links.path(route.0, SERVER, id, route);
        let back = self.links.path(SERVER, route.0, id, route);
        let timeout = self.client.connect_timeout;
        let (at, failure) = match there.connect(now) {
            ConnectOutcome::Established(at) if at - now <= timeout => (at, None),
            ConnectOutcome::Established(_) => (now + timeout, Some("connect timed out")),
            ConnectOutcome::TimedOut(at) if at - now <= timeout => (at, Some("timed out")),
            ConnectOutcome::TimedOut(_) => (now + timeout, Some("connect timed out")),
        };
        // The driver sleeps until the handshake's end (or its timeout) on the timer wheel.
        let at = wake_at(at);
        if let Some(error) = failure {
            self.failed.insert(id, (i as u32, error.to_string()));
            self.conns.push(None);
            self.queue.push(at, Ev::Open(id as u32));
            return;
        }
        // Both kernels take their first RTT sample from the handshake, unless a SYN had to be
        // resent (Karn's rule), as in `sim::net`.
        let tcp_cfg = self.links.tcp();
        let handshake = at - now;
        let sample = (handshake < tcp_cfg.syn_rto).then_some(handshake);
        let tcp = TcpModel::new(tcp_cfg, sample, [there.wheel_seed(), back.wheel_seed()]);
        let session = client.session.take();
        let names = Names {
            node: client.name.clone(),
            peer: "server".to_string(),
        };
        let client_end = End::new(
            names,
            client.start,
            session,
            ReadState {
                buf: BytesMut::with_capacity(512),
                decoder: Decoder::new(MAX_PAYLOAD_LEN),
            },
            self.client.limits.write_buffer,
        );
        let names = Names {
            node: self.server.name.clone(),
            peer: String::new(),
        };
        let server_end = End::new(
            names,
            Duration::ZERO,
            None,
            ReadState {
                buf: BytesMut::with_capacity(512),
                decoder: Decoder::new(self.server.config.session.max_payload),
            },
            self.server.limits.write_buffer,
        );
        let conn = Conn::new(id, [client_end, server_end], [there, back], tcp);
        self.conns.push(Some(conn));
        self.queue.push(at, Ev::Open(id as u32));
    }

    fn open(&mut self, id: usize) {
        if let Some((i, error)) = self.failed.remove(&(id as u64)) {
            // No retry yet: the client stays down.
            let client = &self.clients[i as usize];
            let id = client.session.as_ref().map_or(0, |s| s.id());
            let failed = NetEvent::ConnectFailed { error };
            self.observer
                .observe(&client.name, Side::Client, id, &failed);
            self.stats.unsupported += 1;
            return;
        }
        let (mut w, conns) = self.world();
        if let Some(c) = conns.get_mut(id - 1).and_then(Option::as_mut) {
            c.open(&mut w);
        }
    }
}
