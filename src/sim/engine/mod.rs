//! The event-driven engine: the sans-IO endpoints and sessions driven from one event queue in
//! simulated time, over the same TCP model and links as the turmoil runner, with no tokio and
//! no ticks.
//!
//! [`super::runner`] runs the real async drivers on turmoil. This engine drives what those
//! drivers drive, directly: the client endpoints ([`ClientEndpoint`]), the server endpoint
//! ([`ServerEndpoint`]) and their `Session`s, from one [`Queue`] of events, each handled at its
//! instant, nothing done between events. What a driver does with a session's output (frames
//! into the socket, events into `NetEvent`s for an [`Observer`]) is the same code
//! `net::conn::drive` runs (`net::conn::Reporter`), and the client endpoint's events are
//! reported by `net::client`'s own function, so an observer sees the same events; the server
//! endpoint's registry is seeded as the runner seeds the server's, so session ids match.
//!
//! # Events
//!
//! - A client is due ([`ClientEndpoint`]): it starts (at its instant of the scenario's connect
//!   ramp), its wait between attempts is over, or it asked for a connection. An attempt opens
//!   through the path model (SYN loss and backoff included) by the endpoint's deadline; the
//!   endpoint hears how it went and decides what next (backoff, breaker, giving up), as
//!   `net::client` carries its decisions out.
//! - A connection's handshake is over: the [`ServerEndpoint`] accepts it (or refuses it at its
//!   connection limit) and its handshake deadline is filed; the client's session sends HELLO.
//!   The HELLO's answer is the server endpoint's: a session, a REJECT or CLOSE, or a takeover
//!   of a session still attached to another connection, which is told to let go at once and
//!   the HELLO offered again when the endpoint says.
//! - A session deadline of one end of a connection ([`Session::poll_timeout`](crate::proto::Session::poll_timeout)):
//!   like the driver, the end first reads whatever has reached it, then runs the deadline.
//! - The TCP model's next event of a connection ([`TcpModel::poll_timeout`](super::tcp::TcpModel::poll_timeout)),
//!   or a reset or timeout reaching a socket: packets arrive, timers fire; segments that reach
//!   a receiver's buffer are read at once, decoded with the real decoder and fed to the
//!   session. When a connection ends, a client's endpoint decides what comes next and the
//!   server endpoint parks the session for a resume.
//! - The server endpoint's next expiry of a detached session.
//!
//! Events of one instant run in the order they were scheduled ([`queue`]). Deadlines that move
//! are not removed from the queue: see [`Timer`]. Every wake-up happens on a whole millisecond
//! (`wake_at`), as on tokio's timer wheel in the runner, and a read takes what the driver's
//! read buffer has room for, as `read_buf` does: so a session goes the same way, to the
//! nanosecond and to the packet, on both (`tests/sim/engine.rs` checks it, with loss and
//! reconnects), except where a session deadline and an arrival fall on the same nanosecond:
//! the engine delivers the arrival first (the tie rule of [`crate::proto::detector`]), while
//! which comes first in the runner depends on the order its tasks wake in.
//!
//! # What is modelled, and what not yet
//!
//! Modelled: connection set-up through the path model, the client endpoint's reconnects
//! (backoff, breaker, giving up, resumes, fresh sessions after `UNKNOWN_SESSION`), the server
//! endpoint's admission, refusals, takeovers, handshake timeouts and expiry, heartbeats,
//! replies, detectors and health, the kernels' TCP of `sim::tcp` (RTT, retransmissions,
//! probes, delayed ACKs, resets, user timeout) over the links' latency and loss, the events of
//! `net::conn::drive` (traffic reports once a second, a session closing its connection, a
//! connection ending by EOF, reset or timeout, with its `PeerLost` and `Disconnected`), and
//! [`run`]'s [`Outcome`] through the runner's recorder and judge.
//!
//! Faults, scheduled or random, through the runner's own fault schedule (`sim::schedule`):
//! the same faults drawn from the seed and merged, the same links with the partitions' outages
//! and the latency episodes in them from the start, and each action an event at its
//! millisecond that logs its trace line and the ground truth's down period
//! (`FaultLog::record`) and carries out what it does to a host: kills, crashes, reboots and
//! pauses (`hosts.rs`), meaning to the connections what `sim::net` makes them mean to the
//! runner's sockets.
//!
//! Application traffic: each stream's generator paced by events (`feeds.rs`), feeding the
//! queues the runner's applications and drivers use, with the same delivery log.
//!
//! Writing (`conn.rs`): the driver's write buffer, the socket's writes of up to 64 KiB cut
//! into segments as `sim::net` cuts them (one per MSS on a link with a rate, where the
//! congestion window is on), the kernel's send buffer, the write-stall timeout, a closing
//! session's wait for its buffer, a replaced session's flush limit; and a connection gone from
//! the network once both its sockets are closed and its kernels are done (a closed socket's
//! kernel sends what it holds as an orphan until it is acknowledged, a RST aborts it or it
//! gives up), as `sim::net` retires it.
//!
//! The segment-level trace ([`run_with`]): every heartbeat frame received, through the
//! runner's recorder, and the kernels' notes of each connection, taken after each of its events
//! and in the runner's form and order (`runner::kernel_lines`).
//!
//! The server's CPU (`sim::load`): the server's heartbeat frames and messages are charged as
//! they are handled (through [`Charging`] and the server application), and once a millisecond
//! or more of work is queued the server process stops, before anything else of the next
//! millisecond, until less than one is left: a pause to its connections and endpoint, kept
//! apart from the fault schedule's pauses. The server endpoint's load samples come due through
//! its `poll_timeout`; what it decides (throttle factor, load figures) reaches every session at
//! once, and a new session when it starts. Clients that report load report an idle one.
//!
//! # Determinism
//!
//! Time is the engine's only ([`EngineClock`] lets an observer read it). Randomness comes from
//! the ChaCha streams of [`super::synthetic::stream`] keyed as the runner keys them: the
//! server's registry, each client's draws (its ramp), each connection's path models.
//! Connections are numbered in the order their clients start (ties: in client order).

mod conn;
mod feeds;
mod hosts;
#[cfg(test)]
mod probe;
pub mod queue;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub use queue::{Queue, Timer};

use self::conn::{Conn, End, Holder, Names, World};
use self::feeds::Feeds;
use super::delivery::Log as DeliveryLog;
use super::fault::{FaultError, TcpConfig};
use super::links::LinkTable;
use super::load::{Charging, Cpu, Idle};
use super::net::{ConnectOutcome, HostState};
use super::process::{client_draws, server_seed};
use super::record::{Recorder, TraceObserver};
use super::runner::{
    CLIENTS, Connected, Outcome, RunOptions, SERVER, Scenario, SegmentTrace, TraceLevel, TraceLine,
    client_hosts, judge, kernel_lines, network, node_hosts,
};
use super::schedule::{self, Action, FaultLog};
use super::tcp::{Note, TcpModel};
use super::traffic::{AppClock, Apps, ClientApp, Generator, ServerApp};
use crate::net::Observer;
use crate::net::client::ClientOptions;
use crate::net::conn::{Discard, Handler, Outgoing, ReadState};
use crate::net::load::LoadSource;
use crate::net::server::ServerOptions;
use crate::proto::Decoder;
use crate::proto::client::{ClientEndpoint, EndpointConfig};
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::server::{ServerEndpoint, ServerEndpointConfig, Steer};
use crate::proto::session::{Counters, Side};
use crate::proto::time::nanos;
use tokio::sync::mpsc;

/// Runs `scenario` with `seed` on the event engine: the same [`Outcome`] as
/// [`super::runner::run`] gives, through the same recorder and judge (trace lines,
/// transitions, traffic, connected periods, heartbeat statistics). Refuses what the engine does
/// not model yet (see the module docs).
pub fn run(scenario: &Scenario, seed: u64) -> Result<Outcome, EngineError> {
    run_with(scenario, seed, RunOptions::default())
}

/// [`run`] with options: at [`TraceLevel::Segments`] the trace also has every heartbeat frame
/// received and every probe, resend and timeout of the simulated kernels, as the turmoil
/// runner's [`super::runner::run_with`] gives them.
pub fn run_with(
    scenario: &Scenario,
    seed: u64,
    options: RunOptions,
) -> Result<Outcome, EngineError> {
    let clock = EngineClock::default();
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let observer = Arc::new(TraceObserver {
        rec: rec.clone(),
        segments: SegmentTrace::at_level(options.trace, &rec),
        clock: Some(clock.clone()),
    });
    let mut engine = Engine::new(scenario, seed, observer, clock)?;
    if options.trace == TraceLevel::Segments {
        engine.keep_notes();
    }
    let hosts = node_hosts(scenario.sessions, &client_hosts(scenario.client_hosts));
    // A host's death cuts its ends' connected periods, as the runner's schedule has it.
    let (dying, of) = (rec.clone(), hosts.clone());
    engine.on_deaths(Box::new(move |host, at| {
        let mut rec = dying.lock().unwrap_or_else(|e| e.into_inner());
        rec.cut_host(host, &of, at);
    }));
    engine.run();
    let rec = std::mem::take(&mut *rec.lock().unwrap_or_else(|e| e.into_inner()));
    let FaultLog { down, mut lines } = std::mem::take(&mut engine.faults);
    lines.extend(engine.take_notes(scenario.duration));
    let apps = engine.apps.take();
    let facts = hosts.clone();
    let delivery = |trace: &[TraceLine], connected: &Connected| {
        apps.as_ref().map(|apps| {
            let log = apps.log.lock().unwrap_or_else(|e| e.into_inner());
            super::delivery::check(
                &log,
                &super::delivery::RunFacts {
                    seed,
                    end: scenario.duration,
                    drain: apps.workload.drain,
                    connected,
                    trace,
                    hosts: &facts,
                },
            )
        })
    };
    let drops = engine.links.queue_drops();
    Ok(judge(scenario, rec, lines, down, hosts, &delivery, drops))
}

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
        self.set_ns(nanos(t));
    }

    fn set_ns(&self, ns: u64) {
        self.0.store(ns, Ordering::Relaxed);
    }
}

/// When a wake-up for `t` happens: at the next whole millisecond, as tokio's timer wheel makes
/// it in the turmoil runner. The drivers' timers have that resolution in production too (a
/// deadline is rounded up to the wheel's 1 ms tick); that segments are read on it too is the
/// runner's doing (its postman sleeps on the same wheel), kept so that both agree.
pub(crate) fn wake_at(t: Duration) -> Duration {
    // A second is a whole number of milliseconds: only the fraction rounds (and no 128-bit
    // division, this being on every event's path).
    let ms = t
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(t.subsec_nanos().div_ceil(1_000_000)));
    Duration::from_millis(ms)
}

/// [`wake_at`] in nanoseconds: the next whole millisecond at or after `ns`.
pub(crate) fn wake_at_ns(ns: u64) -> u64 {
    ns.div_ceil(1_000_000).saturating_mul(1_000_000)
}

/// Why a scenario cannot run on the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the stack configuration cannot run: {0}")]
    Config(String),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("{0}")]
    Schedule(String),
}

/// What the engine did, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events handled, stale ones included.
    pub events: u64,
    /// Connection ends (either side).
    pub ended: u64,
}

/// Something due at an instant.
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// The client of this index is due: it starts, its wait is over, or it opens a connection.
    Client { client: u32, generation: u32 },
    /// The server endpoint's next expiry.
    Server { generation: u32 },
    /// The server's handshake deadline on the connection of this id.
    Handshake(u32),
    /// A HELLO waiting for a takeover on the connection of this id is offered again.
    Retry(u32),
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
    /// The fault schedule's action of this index: a fault starts or ends.
    Fault(u32),
    /// An application stream's next message is due.
    Feed { feed: u32, generation: u32 },
    /// The server's CPU lets its process run again (`sim::load`), in this life.
    CpuResume { life: u32 },
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

/// A session's queue of application messages, and the stream (its index in the engine's
/// feeds) that fills it.
pub(crate) type AppQueue = (mpsc::Receiver<Outgoing>, u32);

/// The generators the server's application starts (with the sending half of each one's
/// queue), while its process lives.
pub(crate) type ServerStarts = Option<mpsc::UnboundedReceiver<(Generator, mpsc::Sender<Outgoing>)>>;

/// Told the host and the time whenever a host's processes die.
pub(crate) type Deaths = Box<dyn FnMut(&str, Duration) + Send>;

/// Work a paused process does when it resumes.
#[derive(Clone, Copy, Debug)]
enum Deferred {
    /// The server accepts the connection of this id.
    Accept(u32),
    /// The server's handshake deadline on this connection.
    Handshake(u32),
    /// A HELLO offered again to the server endpoint.
    Retry(u32),
    /// A client's connect attempt returns (the connection of this id, or its failure).
    Open(u32),
}

/// The server endpoint of the `life`-th life of the server process (0: the first), drawing its
/// session ids and tokens as the runner's server process does.
fn server_endpoint(server: &ServerOptions, seed: u64, life: u64) -> ServerEndpoint<u64> {
    let server_seed = server_seed(seed, life);
    let mut endpoint = ServerEndpoint::new(
        ServerEndpointConfig {
            server: server.config.clone(),
            max_connections: server.max_connections,
            handshake_timeout: server.handshake_timeout,
            throttle: server.throttle.clone(),
            report_load: server.report_load,
        },
        ChaCha20Rng::seed_from_u64(server_seed),
    );
    endpoint.handle_started(crate::proto::Time::ZERO);
    endpoint
}

/// The server's application in its process's `life`, and the generators it starts; nothing
/// without traffic.
fn server_app(
    apps: Option<&Apps>,
    life: u32,
    cpu: Option<&Arc<Cpu>>,
) -> (Arc<dyn Handler>, ServerStarts) {
    match apps {
        Some(apps) => {
            let (app, starts) = ServerApp::new(apps.clone(), life);
            let app = app.with_cpu(cpu.cloned());
            (Arc::new(app), Some(starts))
        }
        None => (Arc::new(Discard), None),
    }
}

/// Client `i`'s application (`name`, on `host`) in its process's `life` from `start`, and the
/// queue its stream feeds, the stream filed in `feeds`; nothing without traffic.
#[allow(clippy::too_many_arguments)]
fn client_app(
    apps: Option<&Apps>,
    name: &str,
    i: usize,
    host: &str,
    life: u32,
    start: Duration,
    feeds: &mut Feeds,
    queue: &mut Queue<Ev>,
) -> (Arc<dyn Handler>, Option<AppQueue>) {
    let Some(apps) = apps else {
        return (Arc::new(Discard), None);
    };
    let handler: Arc<dyn Handler> = Arc::new(ClientApp {
        node: name.to_string(),
        clock: apps.clock.clone(),
        log: apps.log.clone(),
    });
    let Some((generator, tx, rx)) = apps.client_generator(i, host, life) else {
        return (handler, None);
    };
    let id = feeds.start(&generator, tx, start, queue);
    (handler, Some((rx, id)))
}

/// The endpoint of the client `name`, its reconnect jitter drawn from `jitter`.
fn client_endpoint(
    client: &ClientOptions,
    name: &str,
    jitter: u64,
) -> Result<ClientEndpoint, EngineError> {
    let mut session = client.session.clone();
    session.client_id = name.to_string();
    ClientEndpoint::new(EndpointConfig {
        session,
        reconnect: client.reconnect,
        connect_timeout: client.connect_timeout,
        seed: jitter,
    })
    .map_err(|e| EngineError::Config(e.to_string()))
}

/// A client: its endpoint (with its session) whenever no connection holds it.
pub(crate) struct Client {
    name: String,
    host: String,
    /// When its process started: the epoch of its clock.
    start: Duration,
    endpoint: Option<Box<ClientEndpoint>>,
    /// The endpoint's next step: its start, the end of a wait, an attempt to make now.
    timer: Timer,
    /// The endpoint asked for a connection: the timer's firing makes it.
    connecting: bool,
    /// Its process runs (not killed or crashed with its host).
    alive: bool,
    /// Its process's life (0: the first).
    life: u32,
    /// Its application, and the queue its stream feeds (which outlives connections).
    handler: Arc<dyn Handler>,
    outgoing: Option<AppQueue>,
}

/// The event engine. See the module docs.
pub struct Engine {
    now: Duration,
    duration: Duration,
    queue: Queue<Ev>,
    clock: EngineClock,
    observer: Arc<dyn Observer>,
    links: LinkTable,
    /// The kernels' TCP settings, shared by every connection's model.
    tcp: Arc<TcpConfig>,
    endpoint: ServerEndpoint<u64>,
    server_timer: Timer,
    /// Connections whose server end must let go of its session (a takeover).
    replace: Vec<u64>,
    server: ServerOptions,
    client: ClientOptions,
    clients: Vec<Client>,
    /// Connections by id − 1; `None` for an attempt that failed or a connection done with.
    conns: Vec<Option<Box<Conn>>>,
    /// Attempts that failed, by connection id: the client and what it reports.
    failed: BTreeMap<u64, (u32, String)>,
    /// The fault schedule's actions, each taken when its event comes.
    actions: Vec<Option<Action>>,
    /// What the fault schedule did: trace lines and the ground truth's down periods.
    faults: FaultLog,
    /// The master seed: a restarted process draws from it as the runner's does.
    seed: u64,
    /// Hosts not up (killed, crashed or paused), by name.
    states: BTreeMap<String, HostState>,
    /// The server's process runs; since `server_epoch`, in its life `server_life` (0: the
    /// first).
    server_alive: bool,
    server_epoch: Duration,
    server_life: u64,
    /// What a paused host's processes will do when it resumes, in the order it came due.
    deferred: BTreeMap<String, Vec<Deferred>>,
    /// Hosts the fault schedule paused; a host is paused while it is here or its CPU stops
    /// it (`stalled`, the server only).
    fault_paused: std::collections::BTreeSet<String>,
    stalled: bool,
    /// The server machine's CPU, with a load model; and the stop filed for it, if one is.
    cpu: Option<Arc<Cpu>>,
    cpu_stop: Option<Duration>,
    /// What the server last told its connections of its throttle and load; whether the
    /// clients report load.
    steer: Steer,
    client_load: bool,
    /// Told of every death of a host's processes.
    deaths: Option<Deaths>,
    /// The run's applications, when it has traffic; the streams they send, and those whose
    /// queue has room again.
    apps: Option<Apps>,
    feeds: Feeds,
    room: Vec<u32>,
    /// The server's application in its process's life, the generators it starts and its
    /// sessions' streams.
    server_app: Arc<dyn Handler>,
    server_starts: ServerStarts,
    server_feeds: BTreeMap<u32, u32>,
    stats: Stats,
    /// The kernels' segment-level notes, when kept: (time, connection, node, note), taken from
    /// each connection after each of its events and when the run ends.
    notes: Option<Vec<(Duration, u64, String, Note)>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("now", &self.now)
            .field("clients", &self.clients.len())
            .field("connections", &self.conns.len())
            .field("pending", &self.queue.len())
            .field("streams", &self.feeds.counts())
            .finish()
    }
}

impl Engine {
    /// An engine for `scenario` under the master `seed`, reporting to `observer`, which may read
    /// the time of what it is told from `clock` (the engine sets it).
    pub fn new(
        scenario: &Scenario,
        seed: u64,
        observer: Arc<dyn Observer>,
        clock: EngineClock,
    ) -> Result<Engine, EngineError> {
        let config = |e: crate::config::ConfigError| EngineError::Config(e.to_string());
        let client = super::runner::client_options(scenario).map_err(config)?;
        let client_load = client.report_load;
        let server = scenario.stack.server_options();
        // The same schedule as the runner's: the link faults go into the links' outages and
        // latency, and each action is an event that logs it.
        let faults =
            schedule::faults(scenario, seed).map_err(|e| EngineError::Schedule(e.to_string()))?;
        let (faults, merged) = schedule::merge_host_faults(faults);
        let horizon = scenario.duration + Duration::from_secs(3600);
        let links = LinkTable::new(network(scenario, &faults), seed, horizon)?;
        let endpoint = server_endpoint(&server, seed, 0);
        let hosts = scenario.client_hosts.max(1);
        let mut queue = Queue::with_capacity(scenario.sessions * 8);
        // The applications, as the runner's: flows stop a drain before the end.
        let apps = scenario.traffic.is_on().then(|| Apps {
            workload: Arc::new(scenario.traffic.clone()),
            clock: AppClock::Engine(clock.clone()),
            log: Arc::new(Mutex::new(DeliveryLog::default())),
            end: scenario.duration.saturating_sub(scenario.traffic.drain),
            seed,
        });
        // The server machine's CPU charges the server's heartbeats through the observer and
        // its messages through its application, as in the runner's server process.
        let cpu = scenario
            .load
            .map(|m| Cpu::new(m, AppClock::Engine(clock.clone())));
        let observer: Arc<dyn Observer> = match &cpu {
            Some(cpu) => Arc::new(Charging {
                inner: observer,
                cpu: cpu.clone(),
            }),
            None => observer,
        };
        let (server_app, server_starts) = server_app(apps.as_ref(), 0, cpu.as_ref());
        let mut feeds = Feeds::default();
        let mut actions = Vec::new();
        for (i, (at, _, action)) in schedule::actions(&faults).into_iter().enumerate() {
            // The schedule's task sleeps until each action: tokio wakes it on the millisecond.
            queue.push(wake_at(at), Ev::Fault(i as u32));
            actions.push(Some(action));
        }
        let mut clients = Vec::with_capacity(scenario.sessions);
        for i in 0..scenario.sessions {
            let host = match hosts {
                1 => CLIENTS.to_string(),
                n => format!("{CLIENTS}-{}", i % n),
            };
            // The client's draws: its reconnect jitter's seed, then its start.
            let mut draws = client_draws(seed, i);
            let jitter = draws.next_u64();
            let ramp_us = scenario.connect_ramp.as_micros() as u64;
            let start = match ramp_us {
                0 => Duration::ZERO,
                us => Duration::from_micros(draws.next_u64() % us),
            };
            let start = wake_at(start);
            let name = format!("client-{i}");
            let endpoint = client_endpoint(&client, &name, jitter)?;
            let (handler, outgoing) = client_app(
                apps.as_ref(),
                &name,
                i,
                &host,
                0,
                start,
                &mut feeds,
                &mut queue,
            );
            let mut timer = Timer::default();
            if let Some((at, generation)) = timer.arm(Some(start)) {
                let client = i as u32;
                queue.push(at, Ev::Client { client, generation });
            }
            clients.push(Client {
                name,
                host,
                start,
                endpoint: Some(Box::new(endpoint)),
                timer,
                connecting: false,
                alive: true,
                life: 0,
                handler,
                outgoing,
            });
        }
        let mut engine = Engine {
            now: Duration::ZERO,
            duration: scenario.duration,
            queue,
            clock,
            observer,
            tcp: Arc::new(links.tcp()),
            links,
            endpoint,
            server_timer: Timer::default(),
            replace: Vec::new(),
            server,
            client,
            clients,
            conns: Vec::with_capacity(scenario.sessions),
            failed: BTreeMap::new(),
            actions,
            faults: FaultLog {
                down: Vec::new(),
                lines: merged,
            },
            seed,
            states: BTreeMap::new(),
            server_alive: true,
            server_epoch: Duration::ZERO,
            server_life: 0,
            deferred: BTreeMap::new(),
            fault_paused: Default::default(),
            stalled: false,
            cpu,
            cpu_stop: None,
            steer: Steer::default(),
            client_load,
            deaths: None,
            apps,
            feeds,
            room: Vec::new(),
            server_app,
            server_starts,
            server_feeds: BTreeMap::new(),
            stats: Stats::default(),
            notes: None,
        };
        // A server that samples its load does so at once, and from then on when its endpoint
        // says.
        engine.world().0.arm_server();
        Ok(engine)
    }

    /// Keep segment-level notes (every retransmission, probe and timeout) of the connections
    /// opened from now on, for a detailed trace.
    pub fn keep_notes(&mut self) {
        self.notes.get_or_insert_with(Vec::new);
    }

    /// The kernels' notes up to `end` as trace lines, in the runner's form and order
    /// ([`kernel_lines`]).
    fn take_notes(&mut self, end: Duration) -> Vec<TraceLine> {
        for id in 1..=self.conns.len() {
            self.harvest(id);
        }
        kernel_lines(self.notes.take().unwrap_or_default(), end)
    }

    /// Moves connection `id`'s kernel notes, if any are kept, to the run's.
    fn harvest(&mut self, id: usize) {
        if let Some(notes) = self.notes.as_mut()
            && let Some(Some(c)) = self.conns.get_mut(id.wrapping_sub(1))
        {
            c.take_notes(notes);
        }
    }

    /// Calls `f` with the host and the time whenever a host's processes die (killed or
    /// crashed), as the runner tells its recorder (`Recorder::cut_host`).
    pub(crate) fn on_deaths(&mut self, f: Deaths) {
        self.deaths = Some(f);
    }

    /// The current simulated time.
    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The application streams started so far, and those still feeding their queue (a
    /// stream's feed is freed once its generator is done or its queue's holder is gone).
    pub fn streams(&self) -> (usize, usize) {
        self.feeds.counts()
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
        let until_ns = nanos(until);
        loop {
            // The server's CPU stops its process before anything else of the stop's instant.
            if let Some(stop) = self.cpu_stop
                && self
                    .queue
                    .peek_time()
                    .is_some_and(|at| at <= until && stop <= at)
            {
                self.cpu_stop = None;
                self.now = stop;
                self.clock.set(stop);
                self.stop_server();
                continue;
            }
            let Some((at, ev)) = self.queue.pop_until(until_ns) else {
                break;
            };
            self.prefetch_ahead();
            self.clock.set_ns(at);
            let at = Duration::from_nanos(at);
            self.now = at;
            self.stats.events += 1;
            self.handle(ev);
        }
        self.now = self.now.max(until);
        self.clock.set(self.now);
    }

    /// While an event runs, the processor fetches what the next two read first: the packets at
    /// the heads of the next one's connection, the first lines of the connection after it.
    /// With more connections than the caches hold, each event finds its connection's state in
    /// memory; a hint changes nothing the engine computes (`docs/simulator.md`, "Speed").
    fn prefetch_ahead(&self) {
        let conn = |ev: &Ev| match *ev {
            Ev::Tcp { conn, .. } | Ev::Session { conn, .. } => self
                .conns
                .get((conn as usize).wrapping_sub(1))
                .and_then(|c| c.as_deref()),
            _ => None,
        };
        let mut ahead = self.queue.upcoming();
        if let Some(c) = ahead.next().and_then(conn) {
            c.prefetch_near();
        }
        if let Some(c) = ahead.next().and_then(conn) {
            c.prefetch_far();
        }
    }

    fn handle(&mut self, ev: Ev) {
        if !self.dispatch(ev) {
            // A connection's timer that found nothing to do: nothing ran.
            return;
        }
        // A takeover asked connections to let go of their sessions: they do at once.
        while !self.replace.is_empty() {
            for id in std::mem::take(&mut self.replace) {
                let (mut w, conns) = self.world();
                if let Some(c) = conns[id as usize - 1].as_mut() {
                    c.on_replaced(&mut w);
                }
                self.reap(id as usize);
            }
        }
        self.settle_feeds();
        match ev {
            Ev::Handshake(id) | Ev::Retry(id) | Ev::Open(id) => self.reap(id as usize),
            Ev::Session { conn, .. } | Ev::Tcp { conn, .. } => self.reap(conn as usize),
            Ev::Client { .. }
            | Ev::Server { .. }
            | Ev::Fault(_)
            | Ev::Feed { .. }
            | Ev::CpuResume { .. } => {}
        }
        // Work done in this event may stop the server from the next millisecond.
        if let Some(cpu) = &self.cpu
            && let Some(at) = cpu.take_stop()
            && self.cpu_stop.is_none()
        {
            self.cpu_stop = Some(at);
        }
    }

    /// Streams whose queue has room again hand over what waits, and the ends holding a queue
    /// that got a message take it, until nothing moves.
    fn settle_feeds(&mut self) {
        while let Some(f) = self.room.pop() {
            self.pace(f);
        }
    }

    /// Stream `f` hands over what is due; the end holding its queue, if any, takes it.
    fn pace(&mut self, f: u32) {
        let now = self.now;
        if let Some((id, side)) = self.feeds.pace(f, now, &mut self.queue) {
            let (mut w, conns) = self.world();
            if let Some(c) = conns.get_mut(id as usize - 1).and_then(Option::as_mut) {
                c.kick(side, &mut w);
            }
        }
    }

    /// Frees the connection of this id once nothing can happen on it any more, so that a long
    /// run with many reconnects keeps only the connections alive (events still filed for it
    /// find nothing and are dropped).
    fn reap(&mut self, id: usize) {
        self.harvest(id);
        if let Some(slot) = self.conns.get_mut(id.wrapping_sub(1))
            && slot.as_ref().is_some_and(|c| c.is_done())
        {
            *slot = None;
        }
    }

    /// Runs `ev`. False when it was a connection's timer that found nothing to do (its deadline
    /// had moved later and it filed itself again, a later arm replaced it, or the connection is
    /// gone): nothing ran, so nothing is left to settle.
    fn dispatch(&mut self, ev: Ev) -> bool {
        match ev {
            Ev::Client { client, generation } => {
                let i = client as usize;
                let now = self.now;
                let c = &mut self.clients[i];
                let (due, again) = c.timer.fire(generation, now);
                if let Some((at, generation)) = again {
                    self.queue.push(at, Ev::Client { client, generation });
                }
                // A dead client does nothing; a paused one steps when it resumes.
                if due && self.clients[i].alive && !self.paused(&self.clients[i].host) {
                    if std::mem::take(&mut self.clients[i].connecting) {
                        self.connect(i);
                    } else {
                        self.world().0.step_client(i);
                    }
                }
            }
            Ev::Server { generation } => {
                let now = self.now;
                let (due, again) = self.server_timer.fire(generation, now);
                if let Some((at, generation)) = again {
                    self.queue.push(at, Ev::Server { generation });
                }
                // A paused server expires what is due when it resumes.
                if due && self.server_alive && !self.paused(SERVER) {
                    self.expire();
                }
            }
            Ev::Handshake(id) if self.paused(SERVER) => self.defer(SERVER, Deferred::Handshake(id)),
            Ev::Retry(id) if self.paused(SERVER) => self.defer(SERVER, Deferred::Retry(id)),
            Ev::Handshake(id) => {
                let (mut w, conns) = self.world();
                if let Some(c) = conns[id as usize - 1].as_mut() {
                    c.on_handshake_deadline(&mut w);
                }
            }
            Ev::Retry(id) => {
                let (mut w, conns) = self.world();
                if let Some(c) = conns[id as usize - 1].as_mut() {
                    c.on_retry(&mut w);
                }
            }
            Ev::Open(id) => self.open(id as usize),
            Ev::Feed { feed, generation } => {
                let now = self.now;
                if let Some(f) = self.feeds.get_mut(feed)
                    && f.fire(generation, now, &mut self.queue, feed)
                {
                    self.pace(feed);
                }
            }
            Ev::CpuResume { life } => {
                if u64::from(life) == self.server_life && self.server_alive {
                    self.stall(false);
                }
            }
            Ev::Fault(i) => {
                let Some(action) = self.actions[i as usize].take() else {
                    return true;
                };
                if let Some(change) = self.faults.record(self.now, action) {
                    self.change_host(change);
                }
            }
            Ev::Session {
                conn,
                side,
                generation,
            } => {
                let side = side as usize;
                let refile = |g| Ev::session(conn.into(), side, g);
                let Some((mut w, c)) =
                    self.due(conn, generation, |c| &mut c.ends[side].timer, refile)
                else {
                    return false;
                };
                c.on_session_timer(side, &mut w);
            }
            Ev::Tcp { conn, generation } => {
                let refile = |g| Ev::tcp(conn.into(), g);
                let Some((mut w, c)) = self.due(conn, generation, |c| &mut c.tcp_timer, refile)
                else {
                    return false;
                };
                c.on_tcp(&mut w);
            }
        }
        true
    }

    /// Connection `conn`'s timer (the one `timer` picks) popped with its entry of
    /// `generation`. An entry early for a deadline that moved later is filed again (`refile`
    /// makes its event) and goes no further: the connection and the world it acts in come back
    /// only when the deadline is due and the connection is still there.
    fn due(
        &mut self,
        conn: u32,
        generation: u32,
        timer: impl FnOnce(&mut Conn) -> &mut Timer,
        refile: impl FnOnce(u32) -> Ev,
    ) -> Option<(World<'_>, &mut Conn)> {
        let now = self.now;
        let (w, conns) = self.world();
        let c = conns[conn as usize - 1].as_deref_mut()?;
        let (due, again) = timer(c).fire(generation, now);
        if let Some((at, generation)) = again {
            w.queue.push(at, refile(generation));
        }
        due.then_some((w, c))
    }

    fn world(&mut self) -> (World<'_>, &mut Vec<Option<Box<Conn>>>) {
        (
            World {
                now: self.now,
                queue: &mut self.queue,
                links: &mut self.links,
                observer: &*self.observer,
                server: &mut self.endpoint,
                server_timer: &mut self.server_timer,
                server_epoch: self.server_epoch,
                clients: &mut self.clients,
                replace: &mut self.replace,
                stats: &mut self.stats,
                feeds: &mut self.feeds,
                room: &mut self.room,
                server_starts: &mut self.server_starts,
                server_feeds: &mut self.server_feeds,
                steer: &self.steer,
                client_load: self.client_load,
            },
            &mut self.conns,
        )
    }

    /// The server's CPU has a millisecond or more of work queued: its process stops until the
    /// work is done (`sim::load`).
    fn stop_server(&mut self) {
        let Some(cpu) = &self.cpu else { return };
        let until = cpu.resume_at();
        if until > self.now && self.server_alive {
            self.stall(true);
            let life = self.server_life as u32;
            self.queue.push(until, Ev::CpuResume { life });
        }
    }

    /// The server endpoint's expiry is due: detached sessions whose resume window is over go,
    /// reported as the server driver reports them.
    fn expire(&mut self) {
        let t = crate::proto::Time::from_epoch(self.now.saturating_sub(self.server_epoch));
        self.endpoint.handle_timeout(t);
        self.report_server();
        // Then a load sample, if one is due, as the server driver takes it at the top of its
        // loop: what it decides goes to every connection.
        if self.endpoint.sample_due(t) {
            // Load comes from the model, never from the machine running the simulation.
            let sample = match &self.cpu {
                Some(cpu) => LoadSource::sample(&**cpu),
                None => LoadSource::sample(&Idle),
            };
            let steer = self.endpoint.handle_load(t, sample);
            self.report_server();
            if steer != self.steer {
                self.steer = steer;
                for k in 0..self.conns.len() {
                    let (mut w, conns) = self.world();
                    if let Some(c) = conns[k].as_mut() {
                        c.steer(&mut w);
                    }
                    self.reap(k + 1);
                }
            }
        }
        self.world().0.arm_server();
    }

    /// Passes the server endpoint's events on, as the server driver does.
    fn report_server(&mut self) {
        let (observer, name) = (&self.observer, &self.server.name);
        crate::net::server::report(
            &mut self.endpoint,
            |id, ev| observer.observe(name, Side::Server, id, &ev),
            &*self.server_app,
        );
    }

    /// Client `i`'s endpoint asked for a connection: it opens through the path model, as the
    /// client driver's connect does, by the attempt's deadline.
    fn connect(&mut self, i: usize) {
        let now = self.now;
        let client = &mut self.clients[i];
        let Some(endpoint) = client.endpoint.as_ref() else {
            return;
        };
        let deadline = endpoint
            .poll_timeout()
            .map(|d| client.start + d.since_epoch());
        let id = self.conns.len() as u64 + 1;
        let route = (client.host.as_str(), client.name.as_str());
        let mut there = self.links.conn_path(route.0, SERVER, id, route);
        let back = self.links.conn_path(SERVER, route.0, id, route);
        let timeout = deadline.map_or(self.client.connect_timeout, |d| d.saturating_sub(now));
        let (at, failure) = match self.links.connect(&mut there, now) {
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
        let handshake = at - now;
        let sample = (handshake < self.tcp.syn_rto).then_some(handshake);
        let mut tcp = TcpModel::new(
            self.tcp.clone(),
            sample,
            [there.wheel_seed(), back.wheel_seed()],
        );
        if self.notes.is_some() {
            tcp.keep_notes();
        }
        let holder = match client.endpoint.take() {
            Some(e) => Holder::Client(i, e),
            None => Holder::None,
        };
        let names = Names {
            node: client.name.clone(),
            peer: "server".to_string(),
            handler: client.handler.clone(),
        };
        let outgoing = client.outgoing.take();
        let client_end = End::new(
            names,
            client.start,
            holder,
            ReadState {
                buf: BytesMut::with_capacity(512),
                decoder: Decoder::new(MAX_PAYLOAD_LEN),
            },
            self.client.limits.write_buffer,
            self.client.limits.write_timeout,
        );
        let names = Names {
            node: self.server.name.clone(),
            peer: String::new(),
            handler: self.server_app.clone(),
        };
        let server_end = End::new(
            names,
            Duration::ZERO,
            Holder::None,
            ReadState {
                buf: BytesMut::with_capacity(512),
                decoder: Decoder::new(self.server.config.session.max_payload),
            },
            self.server.limits.write_buffer,
            self.server.limits.write_timeout,
        );
        let mut client_end = client_end;
        if let Some((_, f)) = &outgoing
            && let Some(feed) = self.feeds.get_mut(*f)
        {
            feed.consumer = Some((id, 0));
        }
        client_end.io.outgoing = outgoing;
        let mut conn = Conn::new(id, i as u32, [client_end, server_end], [there, back], tcp);
        if self.paused(SERVER) {
            conn.pause(1, self.now, &mut self.links);
        }
        self.conns.push(Some(Box::new(conn)));
        self.queue.push(at, Ev::Open(id as u32));
    }

    fn open(&mut self, id: usize) {
        let now = self.now;
        if let Some(&(i, _)) = self.failed.get(&(id as u64)) {
            let client = &self.clients[i as usize];
            if !client.alive {
                self.failed.remove(&(id as u64));
                return;
            }
            if self.paused(&client.host.clone()) {
                let host = client.host.clone();
                self.defer(&host, Deferred::Open(id as u32));
                return;
            }
            let Some((i, error)) = self.failed.remove(&(id as u64)) else {
                return;
            };
            // The attempt failed: the endpoint hears how, reports it and decides what next.
            let client = &mut self.clients[i as usize];
            if let Some(endpoint) = client.endpoint.as_mut() {
                let t = crate::proto::Time::from_epoch(now.saturating_sub(client.start));
                match error.as_str() {
                    "connect timed out" => endpoint.handle_timeout(t),
                    _ => endpoint.handle_connect_failed(t, error, false),
                }
            }
            self.world().0.step_client(i as usize);
            return;
        }
        if self.conns.get(id - 1).is_none_or(Option::is_none) {
            return;
        }
        if !self.server_alive {
            // Nothing listens: a dead machine leaves the SYNs unanswered until the attempt's
            // deadline, a live kernel without the process refuses the connection.
            let Some(conn) = self.conns[id - 1].take() else {
                return;
            };
            let [client_end, _] = conn.ends;
            let Holder::Client(i, endpoint) = client_end.holder else {
                return; // the client died meanwhile too
            };
            let client = &mut self.clients[i];
            let deadline = endpoint.poll_timeout();
            client.endpoint = Some(endpoint);
            // Its queue stays with it for the next attempt.
            if let Some((_, f)) = &client_end.io.outgoing {
                self.feeds.let_go(*f);
            }
            client.outgoing = client_end.io.outgoing;
            let (at, error) = match self.states.get(SERVER) {
                Some(HostState::Crashed) => {
                    let at = deadline.map_or(now, |d| wake_at(client.start + d.since_epoch()));
                    (at.max(now), "connect timed out")
                }
                _ => (now, "connection refused"),
            };
            self.failed.insert(id as u64, (i as u32, error.to_string()));
            if at > now {
                self.queue.push(at, Ev::Open(id as u32));
            } else {
                self.open(id);
            }
            return;
        }
        let server_paused = self.paused(SERVER);
        let (mut w, conns) = self.world();
        if let Some(c) = conns.get_mut(id - 1).and_then(Option::as_mut) {
            c.open(server_paused, &mut w);
        }
        if server_paused {
            self.defer(SERVER, Deferred::Accept(id as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wake_at;
    use std::time::Duration;

    #[test]
    fn a_wake_up_is_at_the_next_whole_millisecond() {
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_micros(1_000), 1),
            (Duration::from_micros(1_001), 2),
            (Duration::new(7, 999_000_001), 8_000),
            (Duration::new(7, 0), 7_000),
        ];
        for (t, ms) in cases {
            assert_eq!(wake_at(t), Duration::from_millis(ms), "{t:?}");
        }
        assert_eq!(wake_at(Duration::MAX), Duration::from_millis(u64::MAX));
    }
}
