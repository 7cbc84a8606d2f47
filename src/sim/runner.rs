//! Runs the real drivers in a turmoil simulation over [`SimNet`], applies faults on schedule,
//! and records the trace and the ground truth.
//!
//! # Hosts
//!
//! The simulated hosts are `server`, which runs the server, and `clients` (or `clients-0` …),
//! which run the client sessions (each its own `net::client::run` task, named `client-0 …
//! client-N-1`). Faults aimed at a client host hit all of its sessions; per-session variety
//! comes from the path models. Every host's process runs in one turmoil host, so one tokio
//! runtime (see `Processes` in `process.rs`): turmoil's cost per step grows with its host count,
//! and hosts here do not add to it. What the stacks report is recorded by `record.rs`.
//!
//! # Determinism
//!
//! One master seed. The turmoil seed, the server's token RNG, each client's jitter RNG and each
//! connection's path model get their own stream derived from it ([`super::synthetic::stream`]).
//! Time is turmoil's only. Every `select!` in the drivers is `biased;`. Trace lines are recorded
//! in the order the single simulation thread produces them.
//!
//! # Trace levels
//!
//! [`TraceLevel::Events`] (the default) traces what a reader of a run wants: connections,
//! suspicions, faults. [`TraceLevel::Segments`] adds a line for every heartbeat frame received
//! and every probe, resend and timeout of the simulated TCP, to line a run up against a packet
//! capture; whatever logs at that level goes through a
//! [`SegmentTrace`], which does nothing (and builds no text) below it. Heartbeat round trips and
//! gaps are counted at every level: they come from the sessions' own events
//! (`Event::HeartbeatReceived`, `Event::Rtt`), as on real sockets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use super::delivery::{self, Delivery, Log as DeliveryLog, RunFacts};
use super::fault::{FaultError, Latency, RandomOutages};
use super::histogram::LogHistogram;
use super::links::{FaultLinks, NetworkSpec};
use super::load::{Cpu, Idle, LoadModel};
use super::net::{HostState, SimNet};
use super::process::{Processes, Software};
use super::record::{Recorder, TraceObserver};
use super::synthetic::{Purpose, stream};
use super::traffic::{Apps, ClientApp, ServerApp, Workload};
use crate::config::StackConfig;
use crate::net::Observer;
use crate::net::client::{self, ClientOptions};
use crate::net::conn::{Discard, Handler};
use crate::net::server::{Server, ServerOptions};
use crate::proto::frame::HeartbeatMode;
use crate::proto::session::Sabotage;
use rand::RngCore;

/// The name of the server host.
pub const SERVER: &str = "server";
/// The name of the host that runs every client session.
pub const CLIENTS: &str = "clients";
const PORT: u16 = 7800;

/// A fault applied to a host at a time.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The process dies (FIN/RST from a live kernel) and is restarted after `downtime`, if given,
    /// with fresh state.
    Kill {
        host: String,
        downtime: Option<Duration>,
    },
    /// The machine dies: silence. With `downtime`, it reboots then (peers' next transmission
    /// gets RST) and the process starts afresh.
    Crash {
        host: String,
        downtime: Option<Duration>,
    },
    /// The process stops for `duration` (SIGSTOP, GC stall) and then resumes.
    Pause { host: String, duration: Duration },
    /// Nothing gets from `from` to `to` (and, unless `oneway`, back) for `duration`: segments
    /// are retransmitted until it heals, or until the sender's retransmission budget runs out.
    Partition {
        from: String,
        to: String,
        duration: Duration,
        oneway: bool,
    },
    /// One-way delays from `from` to `to` (and back, unless `oneway`) are drawn from `latency`
    /// for `duration`: a latency spike, or with a long duration a slow but alive "gray" peer.
    Slow {
        from: String,
        to: String,
        latency: Latency,
        duration: Duration,
        oneway: bool,
    },
}

impl Fault {
    pub fn host(&self) -> &str {
        match self {
            Fault::Kill { host, .. } | Fault::Crash { host, .. } | Fault::Pause { host, .. } => {
                host
            }
            Fault::Partition { from, .. } | Fault::Slow { from, .. } => from,
        }
    }
}

/// Which fault a [`RandomFault`] process produces.
#[derive(Clone, Debug, PartialEq)]
pub enum RandomKind {
    /// Process kills, restarted after the drawn duration.
    Kill,
    /// Machine crashes, rebooted after the drawn duration.
    Crash,
    /// Pauses of the drawn duration.
    Pause,
    /// Partitions from the host to `to` (both ways unless `oneway`) of the drawn duration.
    Partition { to: String, oneway: bool },
    /// Latency episodes of the drawn duration from the host to `to` (both ways unless
    /// `oneway`), one-way delays drawn from `latency` while they last.
    Slow {
        to: String,
        latency: Latency,
        oneway: bool,
    },
}

impl RandomKind {
    /// The fault this kind produces on `host` for `duration`.
    fn fault(&self, host: String, duration: Duration) -> Fault {
        match self {
            RandomKind::Kill => Fault::Kill {
                host,
                downtime: Some(duration),
            },
            RandomKind::Crash => Fault::Crash {
                host,
                downtime: Some(duration),
            },
            RandomKind::Pause => Fault::Pause { host, duration },
            RandomKind::Partition { to, oneway } => Fault::Partition {
                from: host,
                to: to.clone(),
                duration,
                oneway: *oneway,
            },
            RandomKind::Slow {
                to,
                latency,
                oneway,
            } => Fault::Slow {
                from: host,
                to: to.clone(),
                latency: *latency,
                duration,
                oneway: *oneway,
            },
        }
    }
}

/// A random fault process aimed at one host (or, for partitions and latency episodes, one
/// client session such as `client-7`): `process.rate_per_hour` arrivals per hour of simulated
/// time, each lasting a duration drawn from `process.duration`. Overlapping ones merge.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomFault {
    pub host: String,
    pub kind: RandomKind,
    pub process: RandomOutages,
}

impl RandomFault {
    /// The faults this process produces over `horizon` with `seed` (stream keyed by `index`).
    pub fn sample(
        &self,
        horizon: Duration,
        seed: u64,
        index: u64,
    ) -> Result<Vec<(Duration, Fault)>, FaultError> {
        let timeline = self
            .process
            .sample_seeded(horizon, seed, &[0x00ff_a017, index])?;
        Ok(timeline
            .intervals()
            .iter()
            .map(|r| (r.start, self.kind.fault(self.host.clone(), r.end - r.start)))
            .collect())
    }
}

/// What to simulate. (Scenario files map onto this.)
pub struct Scenario {
    pub duration: Duration,
    /// turmoil's step: how often control returns to the runner. It changes the cost of a run,
    /// not its trace (timers, deliveries and faults happen at their own millisecond). The
    /// duration must be a whole number of ticks.
    pub tick: Duration,
    pub sessions: usize,
    /// Hosts the sessions are spread over, round robin: `clients` if 1, else `clients-0` …
    pub client_hosts: usize,
    /// Each session starts at a seed-drawn instant uniform over `[0, connect_ramp)`, so that
    /// faults meet sessions at every phase of their heartbeat. Zero: all start at once.
    pub connect_ramp: Duration,
    /// What both sides run: the same configuration `mcpsim serve/client --config` take, turned
    /// into the drivers' options by the same functions. Its `tcp.user_timeout`, when set, is
    /// the simulated kernels' user timeout.
    pub stack: StackConfig,
    /// Latency, loss and random outages between the hosts, and the kernels' TCP settings.
    pub network: NetworkSpec,
    /// Faults by start time.
    pub faults: Vec<(Duration, Fault)>,
    /// Faults that strike at random: each a Poisson process in simulated time, sampled from
    /// the seed when the run starts and then applied like scheduled ones.
    pub random_faults: Vec<RandomFault>,
    /// What the applications at both ends send; none by default.
    pub traffic: Workload,
    /// The server's processing cost per frame and message; `None`: its work is free.
    pub load: Option<LoadModel>,
    /// A deliberate bug in the clients' sessions, for proving the delivery checker catches it.
    #[doc(hidden)]
    pub sabotage: Option<Sabotage>,
}

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLine {
    pub at: Duration,
    pub node: String,
    pub text: String,
}

/// How much a run's trace says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceLevel {
    /// Connections, sessions, suspicions, faults: the trace `mcpsim replay` prints by default
    /// and the snapshots keep.
    #[default]
    Events,
    /// Also every heartbeat frame received (a heartbeat, or the reply to one of ours with its
    /// round trip), every probe, resend and timeout of the simulated kernels' TCP
    /// (`tcp: …  (connection N)`), and whatever else logs through a [`SegmentTrace`].
    Segments,
}

/// How to run a scenario, beyond the scenario itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub trace: TraceLevel,
}

/// Where lines of the [`TraceLevel::Segments`] level go: the heartbeat receipts of every session
/// now, and anything below the sessions (the simulated TCP's segments and retransmissions) that
/// is handed a clone. Below that level it is off: [`SegmentTrace::line`] returns at once without
/// building its text, so default runs do not pay for it.
#[derive(Clone, Default)]
pub struct SegmentTrace {
    sink: Option<Arc<dyn Fn(TraceLine) + Send + Sync>>,
}

impl SegmentTrace {
    /// A trace that takes nothing.
    pub fn off() -> SegmentTrace {
        SegmentTrace::default()
    }

    /// Lines go to the run's trace.
    fn recording(rec: &Arc<Mutex<Recorder>>) -> SegmentTrace {
        let rec = rec.clone();
        SegmentTrace {
            sink: Some(Arc::new(move |line| {
                let mut rec = rec.lock().unwrap_or_else(|e| e.into_inner());
                rec.lines.push(line);
            })),
        }
    }

    /// Whether lines are taken (the run's level is [`TraceLevel::Segments`]).
    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    /// Adds a line at simulated time `at` for `node` (a host, a client session or `server`);
    /// `text` is only called when the trace is on. Lines of one node at one instant keep the
    /// order in which they were added, with the run's other lines.
    pub fn line(&self, at: Duration, node: &str, text: impl FnOnce() -> String) {
        if let Some(sink) = &self.sink {
            sink(TraceLine {
                at,
                node: node.to_string(),
                text: text(),
            });
        }
    }
}

impl std::fmt::Debug for SegmentTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_on() { "on" } else { "off" };
        write!(f, "SegmentTrace({state})")
    }
}

/// When a host was really down, as the fault schedule made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownPeriod {
    /// The host, or for a partition `from<->to` / `from->to`.
    pub host: String,
    /// For a partition: the directions it blocked.
    pub blocked: Vec<(String, String)>,
    pub start: Duration,
    /// `None`: still down when the run ended.
    pub end: Option<Duration>,
    pub kind: &'static str,
}

/// A detector transition on one side of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at: Duration,
    /// The watching node: `client-7`, or `server` (watching that client).
    pub watcher: String,
    /// The watched node.
    pub peer: String,
    pub suspect: bool,
}

/// One client's connection history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconnects {
    /// Connection attempts (`NetEvent::Connecting`), the first one included.
    pub attempts: u64,
    /// Sessions established afresh.
    pub fresh: u64,
    /// Sessions resumed on a new connection.
    pub resumed: u64,
}

/// What one end of a client's connections sent and received, and how long it was connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Every byte of the connections: handshakes, heartbeats, and data if any.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Heartbeat frames (heartbeats and their replies).
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    /// Time during which this end had an established connection: from `Established` to
    /// `Disconnected`, to the death of its process, or to the end of the run.
    pub connected: Duration,
}

/// What one side's ends of the connections received of heartbeats in a run: the clients' ends
/// (watching the server) or the server's (watching the clients). Per side, not per pair: it is
/// fed at every heartbeat, so it is kept small.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeats {
    /// Round trips of this side's own heartbeats, µs: from sending one to receiving its reply
    /// ([`Event::Rtt`](crate::proto::session::Event::Rtt)). Empty when this side sends none (the server in one-way mode, unless an
    /// adaptive detector probes).
    pub rtt: LogHistogram,
    /// The longest time between two consecutive pieces of liveness evidence received on one
    /// connection (see [`Event::Rtt`](crate::proto::session::Event::Rtt)'s `gap`): never across a reconnect, and not the silence
    /// before a connection ends or after it starts. `None` without two on one connection.
    pub longest_gap: Option<Duration>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub trace: Vec<TraceLine>,
    pub down: Vec<DownPeriod>,
    pub transitions: Vec<Transition>,
    /// Which host each node ran on (`server`, `client-7`, …).
    pub hosts: BTreeMap<String, String>,
    /// How long the run lasted.
    pub duration: Duration,
    pub mode: HeartbeatMode,
    /// Per client node: connection attempts, fresh sessions and resumes.
    pub reconnects: BTreeMap<String, Reconnects>,
    /// The time of every reconnection attempt (every connection attempt but each client's
    /// first), ascending.
    pub connect_attempts: Vec<Duration>,
    /// Per `(watcher, peer)` pair, like [`Transition`]: `(client-7, server)` is the client's
    /// end of its connections, `(server, client-7)` the server's end.
    pub traffic: BTreeMap<(String, String), Traffic>,
    /// Per `(watcher, peer)` pair, like [`Outcome::traffic`]: when the watcher had an
    /// established connection to the peer, from `Established` to the connection's end (its
    /// `Disconnected`, the death of the watcher's process, or the end of the run); sorted,
    /// disjoint, merged over the watcher's connections and sessions. A pair that never had a
    /// session is absent. What [`Traffic::connected`] sums.
    pub connected: BTreeMap<(String, String), Vec<Range<Duration>>>,
    /// The clients' heartbeat round trips and gaps, over all clients.
    pub client_heartbeats: Heartbeats,
    /// The server's, over all its connections.
    pub server_heartbeats: Heartbeats,
    /// What became of every application message, when the run had traffic.
    pub delivery: Option<Delivery>,
    /// Packets dropped by full link queues (tail drops, each resent by TCP): links with a
    /// rate only.
    pub queue_drops: u64,
}

impl Outcome {
    /// The trace as text: one event per line, simulated time first.
    pub fn trace_text(&self) -> String {
        let mut s = String::new();
        for l in &self.trace {
            let _ = writeln!(
                s,
                "{:>10.3}s  {:<10} {}",
                l.at.as_secs_f64(),
                l.node,
                l.text
            );
        }
        s
    }
}

/// What the fault schedule did: the ground truth's down periods and the faults' trace lines.
#[derive(Default)]
struct FaultLog {
    down: Vec<DownPeriod>,
    lines: Vec<TraceLine>,
}

/// The turmoil host every simulated host's process runs in.
const HOSTS: &str = "hosts";

/// Whether a run of `duration` ends on a step boundary, as it must: turmoil steps a whole
/// tick at a time.
pub fn whole_ticks(duration: Duration, tick: Duration) -> bool {
    !tick.is_zero() && duration.as_nanos().is_multiple_of(tick.as_nanos())
}

/// Runs `scenario` with `seed` at the default trace level. Same scenario and seed, same outcome,
/// byte for byte.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Outcome, Box<dyn std::error::Error>> {
    run_with(scenario, seed, RunOptions::default())
}

/// Runs `scenario` with `seed` and `options`. Same scenario, seed and options, same outcome,
/// byte for byte; a higher trace level only adds lines to the trace (every other line, and
/// every measurement, is the same at every level).
pub fn run_with(
    scenario: &Scenario,
    seed: u64,
    options: RunOptions,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    run_watched(scenario, seed, options, &|_| {})
}

/// [`run_with`], calling `advanced` with the simulated time gone by since its last call, about
/// a hundred times over the run (at most once a simulated second), so that a long run can show
/// its progress. The calls change nothing in the outcome.
pub fn run_watched(
    scenario: &Scenario,
    seed: u64,
    options: RunOptions,
    advanced: &(dyn Fn(Duration) + Sync),
) -> Result<Outcome, Box<dyn std::error::Error>> {
    // turmoil steps a whole tick at a time: a run that ended inside a step would go on to its
    // end.
    if !whole_ticks(scenario.duration, scenario.tick) {
        return Err(format!(
            "the duration ({:?}) must be a whole number of ticks ({:?})",
            scenario.duration, scenario.tick
        )
        .into());
    }
    let mut turmoil_rng = stream(seed, Purpose::Simulator, &[0]);
    // Partitions are known in advance: they go into the links' outage timelines, so that every
    // segment's retransmissions see them.
    let mut network = scenario.network.clone();
    if let Some(t) = scenario.stack.tcp.user_timeout {
        network.tcp.user_timeout = Some(t.0);
    }
    if let Some(b) = scenario.stack.tcp.send_buffer {
        network.tcp.send_buffer = usize::try_from(b.0).unwrap_or(usize::MAX);
    }
    scenario
        .stack
        .validate()
        .map_err(|e| format!("the stack configuration cannot run: {e}"))?;
    let mut client_options = scenario
        .stack
        .client_options()
        .map_err(|e| format!("the stack configuration cannot run: {e}"))?;
    client_options.session.session.sabotage = scenario.sabotage.clone();
    // The clients' CPU is not modelled: they report an idle machine, not the one running this.
    client_options.load = Some(Arc::new(Idle));
    check_targets(scenario)?;
    let mut faults = scenario.faults.clone();
    for (i, r) in scenario.random_faults.iter().enumerate() {
        faults.extend(r.sample(scenario.duration, seed, i as u64)?);
    }
    faults.sort_by_key(|(at, _)| *at);
    let (faults, merged_lines) = merge_host_faults(faults);
    for (at, f) in &faults {
        match f {
            Fault::Partition {
                from,
                to,
                duration,
                oneway,
            } => {
                for key in directions(from, to, *oneway) {
                    network
                        .partitions
                        .entry(key)
                        .or_default()
                        .push(*at..*at + *duration);
                }
            }
            Fault::Slow {
                from,
                to,
                latency,
                duration,
                oneway,
            } => {
                for key in directions(from, to, *oneway) {
                    network
                        .episodes
                        .entry(key)
                        .or_default()
                        .push((*at..*at + *duration, *latency));
                }
            }
            _ => {}
        }
    }
    let links = FaultLinks::new(network, seed, scenario.duration + Duration::from_secs(3600))?;
    let net = SimNet::new(Box::new(links));
    // What every application of the run shares. Flows stop a drain before the end, so that
    // what they sent can arrive.
    let apps = Apps {
        workload: Arc::new(scenario.traffic.clone()),
        net: net.clone(),
        log: Arc::new(Mutex::new(DeliveryLog::default())),
        end: scenario.duration.saturating_sub(scenario.traffic.drain),
        seed,
    };
    if options.trace == TraceLevel::Segments {
        // The kernels' probes, resends and timeouts join the trace at the end of the run.
        net.keep_notes();
    }
    net.add_host(SERVER);
    let client_hosts: Vec<String> = match scenario.client_hosts.max(1) {
        1 => vec![CLIENTS.to_string()],
        n => (0..n).map(|h| format!("{CLIENTS}-{h}")).collect(),
    };
    for h in &client_hosts {
        net.add_host(h);
    }
    let rec = Arc::new(Mutex::new(Recorder::default()));
    // Everything that logs at the segment level takes a clone: the sessions' heartbeat receipts
    // (through their observer). The simulated TCP's notes are taken from the network at the end.
    let segments = match options.trace {
        TraceLevel::Events => SegmentTrace::off(),
        TraceLevel::Segments => SegmentTrace::recording(&rec),
    };
    let mut sim = turmoil::Builder::new()
        .tick_duration(scenario.tick)
        .simulation_duration(scenario.duration + Duration::from_secs(3600))
        .epoch(UNIX_EPOCH)
        .rng_seed(turmoil_rng.next_u64())
        .build();

    let mut software: Vec<(String, Software)> = Vec::new();
    // Each incarnation of the server process draws its own session ids and tokens: a restarted
    // server must not hand out the ids and tokens of its previous life.
    let incarnation = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let net = net.clone();
        let rec = rec.clone();
        let segments = segments.clone();
        let server_options = scenario.stack.server_options();
        let incarnation = incarnation.clone();
        let apps = apps.clone();
        let load = scenario.load;
        let server: Software = Box::new(move || {
            let net = net.clone();
            let rec = rec.clone();
            let segments = segments.clone();
            let mut opts = ServerOptions {
                name: SERVER.into(),
                ..server_options.clone()
            };
            let life = incarnation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            opts.seed = Some(stream(seed, Purpose::Simulator, &[1, life]).next_u64());
            let traffic = apps.workload.is_on();
            let (app, started) = ServerApp::new(apps.clone(), life as u32);
            // Each life of the server process starts with an idle CPU.
            let cpu = load.map(|m| Cpu::new(m, net.clone()));
            let app = app.with_cpu(cpu.clone());
            let handler: Arc<dyn Handler> = if traffic {
                Arc::new(app)
            } else {
                Arc::new(Discard)
            };
            Box::pin(async move {
                opts.gate = Some(match &cpu {
                    Some(cpu) => cpu.gate(net.gate(SERVER)),
                    None => net.gate(SERVER),
                });
                // Load comes from the model, never from the machine running the simulation.
                opts.load = Some(match &cpu {
                    Some(cpu) => cpu.clone(),
                    None => Arc::new(Idle),
                });
                let listener = net.listen(SERVER, PORT).map_err(|e| e.to_string())?;
                let observer = Arc::new(TraceObserver { rec, segments, cpu });
                let server = Server::new(opts, observer, handler);
                let (_keep, shutdown) = tokio::sync::watch::channel(false);
                // The generators of the server's application live and die with its process.
                let (served, ()) = tokio::join!(
                    server.serve(listener, shutdown),
                    ServerApp::run_generators(started)
                );
                served.map_err(|e| e.to_string())
            })
        });
        software.push((SERVER.to_string(), server));
    }
    for (h, host) in client_hosts.iter().enumerate() {
        let host = host.clone();
        let stride = client_hosts.len();
        let net = net.clone();
        let rec = rec.clone();
        let segments = segments.clone();
        let sessions = scenario.sessions;
        let client_options = client_options.clone();
        let ramp = scenario.connect_ramp;
        let name = host.clone();
        // A host's processes start at the run's start or at a restart; the ramp applies to
        // the first life only (a restarted host's clients start when it is back).
        let lives = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let apps = apps.clone();
        let clients: Software = Box::new(move || {
            let net = net.clone();
            let rec = rec.clone();
            let segments = segments.clone();
            let client_options = client_options.clone();
            let host = host.clone();
            let apps = apps.clone();
            let life = lives.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let first_life = life == 0;
            Box::pin(async move {
                let observer: Arc<dyn Observer> = Arc::new(TraceObserver {
                    rec,
                    segments,
                    cpu: None,
                });
                let (_keep, shutdown) = tokio::sync::watch::channel(false);
                let mut tasks = tokio::task::JoinSet::new();
                for i in (h..sessions).step_by(stride) {
                    let mut draws = stream(seed, Purpose::Simulator, &[2, i as u64]);
                    let mut opts = ClientOptions {
                        name: format!("client-{i}"),
                        seed: draws.next_u64(),
                        ..client_options.clone()
                    };
                    let start = if first_life && !ramp.is_zero() {
                        // Whole microseconds, uniform over the ramp.
                        let us = ramp.as_micros().max(1) as u64;
                        Duration::from_micros(draws.next_u64() % us)
                    } else {
                        Duration::ZERO
                    };
                    opts.session.client_id = opts.name.clone();
                    opts.gate = Some(net.gate(&host));
                    let connector = net.connector(&host, &opts.name, SERVER, PORT);
                    let observer = observer.clone();
                    let shutdown = shutdown.clone();
                    let handler: Arc<dyn Handler> = if apps.workload.is_on() {
                        Arc::new(ClientApp {
                            node: opts.name.clone(),
                            net: net.clone(),
                            log: apps.log.clone(),
                        })
                    } else {
                        Arc::new(Discard)
                    };
                    let sender = apps.client_generator(i, &host, life as u32);
                    let outgoing = match sender {
                        Some((generator, tx, rx)) => {
                            // The application starts with its client, after the ramp.
                            tasks.spawn(async move {
                                if !start.is_zero() {
                                    tokio::time::sleep(start).await;
                                }
                                generator.run(tx).await;
                            });
                            Some(rx)
                        }
                        None => None,
                    };
                    tasks.spawn(async move {
                        if !start.is_zero() {
                            tokio::time::sleep(start).await;
                        }
                        let _ = client::run(connector, opts, observer, handler, outgoing, shutdown)
                            .await;
                    });
                }
                while tasks.join_next().await.is_some() {}
                Ok(())
            })
        });
        software.push((name, clients));
    }
    let procs = Rc::new(RefCell::new(Processes::new(software)));
    // Faults: each becomes a start and, where it has one, an end action at a time.
    enum Action {
        Start(Fault),
        Restart { host: String, reboot: bool },
        Resume { host: String },
        Heal,
    }
    let mut actions: Vec<(Duration, usize, Action)> = Vec::new();
    for (i, (at, f)) in faults.iter().enumerate() {
        match f {
            Fault::Kill {
                host,
                downtime: Some(d),
            } => actions.push((
                *at + *d,
                i,
                Action::Restart {
                    host: host.clone(),
                    reboot: false,
                },
            )),
            Fault::Crash {
                host,
                downtime: Some(d),
            } => actions.push((
                *at + *d,
                i,
                Action::Restart {
                    host: host.clone(),
                    reboot: true,
                },
            )),
            Fault::Pause { host, duration } => {
                actions.push((*at + *duration, i, Action::Resume { host: host.clone() }))
            }
            Fault::Partition { duration, .. } | Fault::Slow { duration, .. } => {
                actions.push((*at + *duration, i, Action::Heal))
            }
            _ => {}
        }
        actions.push((*at, i, Action::Start(f.clone())));
    }
    // By time, then in scenario order, so equal times apply deterministically.
    actions.sort_by_key(|(t, i, a)| (*t, *i, matches!(a, Action::Start(_))));
    let failure = procs.borrow().failure.clone();
    let mut hosts = BTreeMap::new();
    hosts.insert(SERVER.to_string(), SERVER.to_string());
    for i in 0..scenario.sessions {
        hosts.insert(
            format!("client-{i}"),
            client_hosts[i % client_hosts.len()].clone(),
        );
    }

    // The fault schedule runs in the hosts' runtime beside the processes, so each action
    // applies at its own millisecond whatever the tick.
    let delivery_log = apps.log.clone();
    let log = Rc::new(RefCell::new(FaultLog {
        down: Vec::new(),
        lines: merged_lines,
    }));
    let schedule = Rc::new(RefCell::new(Some(actions)));
    {
        let procs = procs.clone();
        let net = net.clone();
        let rec = rec.clone();
        let log = log.clone();
        let hosts = hosts.clone();
        let delivery_log = delivery_log.clone();
        sim.host(HOSTS, move || {
            let procs = procs.clone();
            let net = net.clone();
            let rec = rec.clone();
            let log = log.clone();
            let hosts = hosts.clone();
            let delivery_log = delivery_log.clone();
            let actions = schedule.borrow_mut().take().unwrap_or_default();
            async move {
                procs.borrow_mut().boot(tokio::runtime::Handle::current());
                let faults = async {
                    for (at, _, action) in actions {
                        let now = net.now();
                        if at > now {
                            tokio::time::sleep(at - now).await;
                        }
                        let now = net.now();
                        let mut log = log.borrow_mut();
                        match action {
                            Action::Start(Fault::Slow {
                                from,
                                to,
                                latency,
                                duration,
                                oneway,
                            }) => {
                                let arrow = if oneway { "->" } else { "<->" };
                                let (ms, typical) =
                                    (duration.as_millis(), latency.typical().as_millis());
                                let text = format!(
                                    "fault: slow {from} {arrow} {to} ({typical}ms) for {ms}ms"
                                );
                                log.lines.push(TraceLine {
                                    at: now,
                                    node: from,
                                    text,
                                });
                            }
                            Action::Start(Fault::Partition {
                                from,
                                to,
                                duration,
                                oneway,
                            }) => {
                                let arrow = if oneway { "->" } else { "<->" };
                                let ms = duration.as_millis();
                                let text =
                                    format!("fault: partition {from} {arrow} {to} for {ms}ms");
                                let link = format!("{from}{arrow}{to}");
                                let end = Some(now + duration);
                                let blocked = directions(&from, &to, oneway);
                                log.down.push(DownPeriod {
                                    host: link,
                                    blocked,
                                    start: now,
                                    end,
                                    kind: "partitioned",
                                });
                                log.lines.push(TraceLine {
                                    at: now,
                                    node: from,
                                    text,
                                });
                            }
                            Action::Heal => {}
                            Action::Start(f) => {
                                let host = f.host().to_string();
                                let (state, kind, text) = match &f {
                                    Fault::Kill { .. } => (
                                        HostState::Killed,
                                        "killed",
                                        "fault: process killed".to_string(),
                                    ),
                                    Fault::Crash { .. } => (
                                        HostState::Crashed,
                                        "crashed",
                                        "fault: machine crashed".to_string(),
                                    ),
                                    Fault::Pause { duration, .. } => (
                                        HostState::Paused,
                                        "paused",
                                        format!("fault: paused for {}ms", duration.as_millis()),
                                    ),
                                    Fault::Partition { .. } | Fault::Slow { .. } => {
                                        unreachable!("handled above")
                                    }
                                };
                                net.set_host_state(&host, state);
                                if state != HostState::Paused {
                                    procs.borrow_mut().stop(&host);
                                    delivery_log
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .host_died(&host, now);
                                    let mut rec = rec.lock().unwrap_or_else(|e| e.into_inner());
                                    rec.cut_host(&host, &hosts, now);
                                }
                                log.down.push(DownPeriod {
                                    host: host.clone(),
                                    blocked: Vec::new(),
                                    start: now,
                                    end: None,
                                    kind,
                                });
                                log.lines.push(TraceLine {
                                    at: now,
                                    node: host,
                                    text,
                                });
                            }
                            Action::Restart { host, reboot } => {
                                if reboot {
                                    net.reboot(&host);
                                } else {
                                    net.set_host_state(&host, HostState::Up);
                                }
                                procs.borrow_mut().start(&host);
                                close_period(&mut log.down, &host, now);
                                log.lines.push(TraceLine {
                                    at: now,
                                    node: host,
                                    text: "fault ends: restarted".into(),
                                });
                            }
                            Action::Resume { host } => {
                                net.resume(&host);
                                close_period(&mut log.down, &host, now);
                                log.lines.push(TraceLine {
                                    at: now,
                                    node: host,
                                    text: "fault ends: resumed".into(),
                                });
                            }
                        }
                    }
                    std::future::pending::<()>().await
                };
                tokio::join!(net.postman(), faults);
                Ok(())
            }
        });
    }

    let report_every = (scenario.duration / 100).max(Duration::from_secs(1));
    let mut reported = Duration::ZERO;
    while sim.elapsed() < scenario.duration {
        net.set_time(sim.elapsed());
        sim.step()?;
        let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(e) = failed {
            return Err(e.into());
        }
        let now = sim.elapsed().min(scenario.duration);
        if now - reported >= report_every {
            advanced(now - reported);
            reported = now;
        }
    }
    if scenario.duration > reported {
        advanced(scenario.duration - reported);
    }

    let FaultLog {
        down,
        lines: fault_lines,
    } = std::mem::take(&mut *log.borrow_mut());
    let mut rec = std::mem::take(&mut *rec.lock().unwrap_or_else(|e| e.into_inner()));
    let (traffic, connected) = rec.traffic(scenario.duration);
    let transitions = rec.transitions();
    let mut trace = rec.lines;
    trace.extend(fault_lines);
    if segments.is_on() {
        trace.extend(
            net.take_notes()
                .into_iter()
                .filter(|(at, ..)| *at <= scenario.duration)
                .map(|(at, id, node, note)| TraceLine {
                    at,
                    node,
                    text: format!("{}  (connection {id})", note.text),
                }),
        );
    }
    // Within one instant, lines are grouped by node (stable, so each node keeps its own order).
    // Which of two tasks woken for the same instant tokio runs first can depend on
    // process-wide state (task ids), so cross-node order within an instant is not part of
    // the contract; everything a node does, and when, is.
    trace.sort_by(|a, b| (a.at, &a.node).cmp(&(b.at, &b.node)));
    let delivery = apps.workload.is_on().then(|| {
        let log = delivery_log.lock().unwrap_or_else(|e| e.into_inner());
        delivery::check(
            &log,
            &RunFacts {
                seed,
                end: scenario.duration,
                drain: apps.workload.drain,
                connected: &connected,
                trace: &trace,
                hosts: &hosts,
            },
        )
    });
    Ok(Outcome {
        trace,
        down,
        transitions,
        hosts,
        duration: scenario.duration,
        mode: scenario.stack.heartbeat.mode.into(),
        reconnects: rec.reconnects,
        connect_attempts: rec.attempts,
        traffic,
        connected,
        client_heartbeats: rec.client_heartbeats,
        server_heartbeats: rec.server_heartbeats,
        delivery,
        queue_drops: net.queue_drops(),
    })
}

/// When a host fault (kill, crash, pause) strikes a host already down from another (two random
/// processes, or a schedule and a process), the host stays down until the later end: a fault
/// of the same kind extends the one in force, one of another kind is left out. Each merged or
/// left-out fault gets a trace line at its start. `faults` is sorted by start.
fn merge_host_faults(faults: Vec<(Duration, Fault)>) -> (Vec<(Duration, Fault)>, Vec<TraceLine>) {
    // Until when each host is down (`None`: for good), and the index of the fault in force.
    let mut down: BTreeMap<String, (usize, Option<Duration>)> = BTreeMap::new();
    let mut out: Vec<(Duration, Fault)> = Vec::new();
    let mut lines = Vec::new();
    let end = |at: Duration, f: &Fault| match f {
        Fault::Kill { downtime, .. } | Fault::Crash { downtime, .. } => downtime.map(|d| at + d),
        Fault::Pause { duration, .. } => Some(at + *duration),
        _ => Some(at),
    };
    for (at, f) in faults {
        if matches!(f, Fault::Partition { .. } | Fault::Slow { .. }) {
            out.push((at, f));
            continue;
        }
        let host = f.host().to_string();
        let in_force = down
            .get(&host)
            .filter(|(_, until)| until.is_none_or(|u| at < u))
            .copied();
        let Some((i, until)) = in_force else {
            down.insert(host, (out.len(), end(at, &f)));
            out.push((at, f));
            continue;
        };
        let (start, first) = &mut out[i];
        let same = std::mem::discriminant(first) == std::mem::discriminant(&f);
        let text = if same {
            let new_end = match (until, end(at, &f)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            match first {
                Fault::Kill { downtime, .. } | Fault::Crash { downtime, .. } => {
                    *downtime = new_end.map(|e| e - *start);
                }
                Fault::Pause { duration, .. } => {
                    *duration = new_end.map_or(*duration, |e| e - *start);
                }
                _ => {}
            }
            down.insert(host.clone(), (i, new_end));
            "fault merged: the host is already down from the same kind of fault, which now lasts as long as both"
        } else {
            "fault left out: the host is already down from another kind of fault"
        };
        lines.push(TraceLine {
            at,
            node: host,
            text: text.to_string(),
        });
    }
    (out, lines)
}

/// Every fault must name something that exists: a host for kills, crashes and pauses; a host
/// or a client session for partitions and latency episodes.
fn check_targets(scenario: &Scenario) -> Result<(), String> {
    let hosts: Vec<String> = match scenario.client_hosts.max(1) {
        1 => vec![SERVER.into(), CLIENTS.into()],
        n => std::iter::once(SERVER.to_string())
            .chain((0..n).map(|h| format!("{CLIENTS}-{h}")))
            .collect(),
    };
    let is_host = |h: &str| hosts.iter().any(|x| x == h);
    let is_session = |h: &str| {
        h.strip_prefix("client-")
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < scenario.sessions)
    };
    let random = scenario
        .random_faults
        .iter()
        .map(|r| r.kind.fault(r.host.clone(), Duration::ZERO));
    for f in scenario.faults.iter().map(|(_, f)| f.clone()).chain(random) {
        let bad = match &f {
            Fault::Kill { host, .. } | Fault::Crash { host, .. } | Fault::Pause { host, .. } => {
                (!is_host(host)).then(|| host.clone())
            }
            Fault::Partition { from, to, .. } | Fault::Slow { from, to, .. } => [from, to]
                .into_iter()
                .find(|h| !is_host(h) && !is_session(h))
                .cloned(),
        };
        if let Some(name) = bad {
            let known = hosts.join(", ");
            return Err(format!(
                "fault aimed at unknown host or session `{name}` (hosts: {known})"
            ));
        }
    }
    Ok(())
}

/// The directions a link fault covers: `from → to`, and back unless one-way.
fn directions(from: &str, to: &str, oneway: bool) -> Vec<(String, String)> {
    let there = (from.to_string(), to.to_string());
    let back = (to.to_string(), from.to_string());
    if oneway {
        vec![there]
    } else {
        vec![there, back]
    }
}

fn close_period(down: &mut [DownPeriod], host: &str, at: Duration) {
    if let Some(p) = down
        .iter_mut()
        .rev()
        .find(|p| p.host == host && p.end.is_none())
    {
        p.end = Some(at);
    }
}
