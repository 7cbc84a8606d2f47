//! Runs the real drivers in a turmoil simulation over [`SimNet`], applies faults on schedule,
//! and records the trace and the ground truth.
//!
//! # Hosts
//!
//! The simulated hosts are `server`, which runs the server, and `clients` (or `clients-0` …),
//! which run the client sessions (each its own `net::client::run` task, named `client-0 …
//! client-N-1`). Faults aimed at a client host hit all of its sessions; per-session variety
//! comes from the path models. Every host's process runs in one turmoil host, so one tokio
//! runtime (see `Processes` in `process.rs`, beside each host's software): turmoil's cost per
//! step grows with its host count, and hosts here do not add to it. What the stacks report is
//! recorded by `record.rs`; the faults are applied by the schedule of `schedule.rs`.
//!
//! # The run
//!
//! [`run_watched`] checks the configuration and draws the faults, builds the links and the
//! network with its hosts, the hosts' software and the fault schedule, steps turmoil to the end
//! of the run (`step_to_end`) and assembles the [`Outcome`] from what the recorder, the
//! schedule, the network and the applications kept.
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
use super::load::{Idle, LoadModel};
use super::net::SimNet;
use super::process::{self, Processes, Shared};
use super::record::Recorder;
use super::schedule::{self, Action, FaultLog, Schedule, directions};
use super::synthetic::{Purpose, stream};
use super::traffic::{AppClock, Apps, Workload};
use crate::config::StackConfig;
use crate::net::client::ClientOptions;
use crate::proto::frame::HeartbeatMode;
use crate::proto::session::Sabotage;
use rand::RngCore;

/// The name of the server host.
pub const SERVER: &str = "server";
/// The name of the host that runs every client session.
pub const CLIENTS: &str = "clients";

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
    pub(super) fn fault(&self, host: String, duration: Duration) -> Fault {
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

    /// What a run at `level` keeps: nothing at [`TraceLevel::Events`], lines into `rec`'s trace
    /// at [`TraceLevel::Segments`].
    pub(super) fn at_level(level: TraceLevel, rec: &Arc<Mutex<Recorder>>) -> SegmentTrace {
        match level {
            TraceLevel::Events => SegmentTrace::off(),
            TraceLevel::Segments => SegmentTrace::recording(rec),
        }
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
    let client_options =
        client_options(scenario).map_err(|e| format!("the stack configuration cannot run: {e}"))?;
    let (faults, merged_lines) = schedule::merge_host_faults(schedule::faults(scenario, seed)?);
    let horizon = scenario.duration + Duration::from_secs(3600);
    let links = FaultLinks::new(network(scenario, &faults), seed, horizon)?;
    let client_hosts = client_hosts(scenario.client_hosts);
    let shared = shared(
        scenario,
        seed,
        options,
        SimNet::new(Box::new(links)),
        &client_hosts,
    );
    let software = process::software(&shared, scenario, &client_options, &client_hosts);
    let procs = Rc::new(RefCell::new(Processes::new(software)));
    let failure = procs.borrow().failure.clone();
    let hosts = node_hosts(scenario.sessions, &client_hosts);
    let log = Rc::new(RefCell::new(FaultLog {
        down: Vec::new(),
        lines: merged_lines,
    }));
    let schedule = Schedule {
        procs,
        net: shared.net.clone(),
        rec: shared.rec.clone(),
        delivery_log: shared.apps.log.clone(),
        hosts: hosts.clone(),
        log: log.clone(),
    };
    let mut sim = turmoil::Builder::new()
        .tick_duration(scenario.tick)
        .simulation_duration(horizon)
        .epoch(UNIX_EPOCH)
        .rng_seed(stream(seed, Purpose::Simulator, &[0]).next_u64())
        .build();
    host_runtime(&mut sim, schedule, schedule::actions(&faults));
    step_to_end(&mut sim, &shared.net, &failure, scenario.duration, advanced)?;
    let fault_log = std::mem::take(&mut *log.borrow_mut());
    Ok(outcome(scenario, seed, &shared, fault_log, hosts))
}

/// The client options the stack configuration gives, with the scenario's sabotage: what the
/// clients run on, on either engine. An error if the configuration cannot run.
pub(crate) fn client_options(
    scenario: &Scenario,
) -> Result<ClientOptions, crate::config::ConfigError> {
    scenario.stack.validate()?;
    let mut client_options = scenario.stack.client_options()?;
    client_options.session.session.sabotage = scenario.sabotage.clone();
    // The clients' CPU is not modelled: they report an idle machine, not the one running this.
    client_options.load = Some(Arc::new(Idle));
    Ok(client_options)
}

/// The scenario's network with the stack's kernel settings (user timeout, send buffer) and the
/// link faults of `faults`. Partitions are known in advance: they go into the links' outage
/// timelines, so that every segment's retransmissions see them; latency episodes likewise.
pub(super) fn network(scenario: &Scenario, faults: &[(Duration, Fault)]) -> NetworkSpec {
    let mut network = scenario.network.clone();
    if let Some(t) = scenario.stack.tcp.user_timeout {
        network.tcp.user_timeout = Some(t.0);
    }
    if let Some(b) = scenario.stack.tcp.send_buffer {
        network.tcp.send_buffer = usize::try_from(b.0).unwrap_or(usize::MAX);
    }
    for (at, f) in faults {
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
    network
}

/// The client hosts: `clients`, or `clients-0` … `clients-{n-1}` for `n` of them.
pub(super) fn client_hosts(n: usize) -> Vec<String> {
    match n.max(1) {
        1 => vec![CLIENTS.to_string()],
        n => (0..n).map(|h| format!("{CLIENTS}-{h}")).collect(),
    }
}

/// What the run's processes share, over `net`, whose hosts it adds: the applications, and the
/// recorder with the segment-level trace when `options` asks for it.
fn shared(
    scenario: &Scenario,
    seed: u64,
    options: RunOptions,
    net: SimNet,
    client_hosts: &[String],
) -> Shared {
    // What every application of the run shares. Flows stop a drain before the end, so that
    // what they sent can arrive.
    let apps = Apps {
        workload: Arc::new(scenario.traffic.clone()),
        clock: AppClock::Net(net.clone()),
        log: Arc::new(Mutex::new(DeliveryLog::default())),
        end: scenario.duration.saturating_sub(scenario.traffic.drain),
        seed,
    };
    if options.trace == TraceLevel::Segments {
        // The kernels' probes, resends and timeouts join the trace at the end of the run.
        net.keep_notes();
    }
    net.add_host(SERVER);
    for h in client_hosts {
        net.add_host(h);
    }
    let rec = Arc::new(Mutex::new(Recorder::default()));
    // Everything that logs at the segment level takes a clone: the sessions' heartbeat receipts
    // (through their observer). The simulated TCP's notes are taken from the network at the end.
    let segments = SegmentTrace::at_level(options.trace, &rec);
    Shared {
        net,
        rec,
        segments,
        apps,
        seed,
    }
}

/// Which host each node runs on: the server on `server`, the sessions round robin over the
/// client hosts.
pub(super) fn node_hosts(sessions: usize, client_hosts: &[String]) -> BTreeMap<String, String> {
    let mut hosts = BTreeMap::new();
    hosts.insert(SERVER.to_string(), SERVER.to_string());
    for i in 0..sessions {
        hosts.insert(
            format!("client-{i}"),
            client_hosts[i % client_hosts.len()].clone(),
        );
    }
    hosts
}

/// Adds the turmoil host every simulated host's process runs in. It boots the processes, and
/// runs the network's postman and the fault schedule beside them, so each action applies at its
/// own millisecond whatever the tick.
fn host_runtime(
    sim: &mut turmoil::Sim<'_>,
    schedule: Schedule,
    actions: Vec<(Duration, usize, Action)>,
) {
    let actions = Rc::new(RefCell::new(Some(actions)));
    sim.host(HOSTS, move || {
        let schedule = schedule.clone();
        let actions = actions.borrow_mut().take().unwrap_or_default();
        async move {
            let net = schedule.net.clone();
            schedule
                .procs
                .borrow_mut()
                .boot(tokio::runtime::Handle::current());
            tokio::join!(net.postman(), schedule.run(actions));
            Ok(())
        }
    });
}

/// Steps turmoil to the end of the run, telling the network the time before each step. A
/// process that fails fails the run at once; `advanced` hears of the time gone by as
/// [`run_watched`] says.
fn step_to_end(
    sim: &mut turmoil::Sim<'_>,
    net: &SimNet,
    failure: &Mutex<Option<String>>,
    duration: Duration,
    advanced: &(dyn Fn(Duration) + Sync),
) -> Result<(), Box<dyn std::error::Error>> {
    let report_every = (duration / 100).max(Duration::from_secs(1));
    let mut reported = Duration::ZERO;
    while sim.elapsed() < duration {
        net.set_time(sim.elapsed());
        sim.step()?;
        let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(e) = failed {
            return Err(e.into());
        }
        let now = sim.elapsed().min(duration);
        if now - reported >= report_every {
            advanced(now - reported);
            reported = now;
        }
    }
    if duration > reported {
        advanced(duration - reported);
    }
    Ok(())
}

/// The run's outcome, from what the recorder, the fault schedule, the network and the
/// applications kept: the trace in order, the ground truth, the measurements and, with traffic,
/// the fate of every message.
fn outcome(
    scenario: &Scenario,
    seed: u64,
    shared: &Shared,
    faults: FaultLog,
    hosts: BTreeMap<String, String>,
) -> Outcome {
    let Shared {
        net,
        rec,
        segments,
        apps,
        ..
    } = shared;
    let FaultLog {
        down,
        lines: fault_lines,
    } = faults;
    let rec = std::mem::take(&mut *rec.lock().unwrap_or_else(|e| e.into_inner()));
    let mut extra = fault_lines;
    if segments.is_on() {
        extra.extend(kernel_lines(net.take_notes(), scenario.duration));
    }
    let delivery = |trace: &[TraceLine], connected: &Connected| {
        apps.workload.is_on().then(|| {
            let log = apps.log.lock().unwrap_or_else(|e| e.into_inner());
            delivery::check(
                &log,
                &RunFacts {
                    seed,
                    end: scenario.duration,
                    drain: apps.workload.drain,
                    connected,
                    trace,
                    hosts: &hosts,
                },
            )
        })
    };
    judge(
        scenario,
        rec,
        extra,
        down,
        hosts.clone(),
        &delivery,
        net.queue_drops(),
    )
}

/// The simulated kernels' notes (time, connection, node, note) as trace lines, up to `end`:
/// at one instant in connection order, each connection's in the order its kernels took them,
/// whichever engine ran (the trace's sort then keeps that order among a node's lines).
pub(super) fn kernel_lines(
    mut notes: Vec<(Duration, u64, String, super::tcp::Note)>,
    end: Duration,
) -> Vec<TraceLine> {
    notes.sort_by_key(|(at, id, ..)| (*at, *id));
    notes
        .into_iter()
        .filter(|(at, ..)| *at <= end)
        .map(|(at, id, node, note)| TraceLine {
            at,
            node,
            text: format!("{}  (connection {id})", note.text),
        })
        .collect()
}

/// Who had an established connection to whom, when (see [`Outcome::connected`]).
pub(super) type Connected = BTreeMap<(String, String), Vec<Range<Duration>>>;

/// A run's [`Outcome`] from what its recorder saw, whichever engine ran it: the trace (the
/// recorder's lines and `extra` ones, in the trace's order), the judge's transitions, traffic
/// and connected periods, and what `delivery` makes of the messages.
pub(super) fn judge(
    scenario: &Scenario,
    mut rec: Recorder,
    extra: Vec<TraceLine>,
    down: Vec<DownPeriod>,
    hosts: BTreeMap<String, String>,
    delivery: &dyn Fn(&[TraceLine], &Connected) -> Option<Delivery>,
    queue_drops: u64,
) -> Outcome {
    let (traffic, connected) = rec.traffic(scenario.duration);
    let transitions = rec.transitions();
    let mut trace = rec.lines;
    trace.extend(extra);
    // Within one instant, lines are grouped by node (stable, so each node keeps its own order).
    // Which of two tasks woken for the same instant tokio runs first can depend on
    // process-wide state (task ids), so cross-node order within an instant is not part of
    // the contract; everything a node does, and when, is.
    trace.sort_by(|a, b| (a.at, &a.node).cmp(&(b.at, &b.node)));
    let delivery = delivery(&trace, &connected);
    Outcome {
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
        queue_drops,
    }
}
