//! Scenario files: what to simulate, the heartbeat pairings to try, and what must hold.
//!
//! [`load`] reads a TOML file ([`file::ScenarioFile`]) and checks it whole, so that every
//! mistake is reported with its file, line and column before anything runs; the result is a
//! [`Plan`], which builds the [`runner::Scenario`] of each pairing. `docs/scenarios.md` is the
//! reference; [`schema`] gives the JSON Schema editors use to complete and check files.

pub mod check;
pub mod error;
pub mod file;
pub use crate::units;

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

pub use error::ScenarioError;
use file::{
    AssertSpec, DetectorKind, FaultSpec, LatencyDist, LatencySpec, LossModel, LossSpec,
    RandomKindSpec, ScenarioFile, SideSpec,
};
use units::{Dur, show};

use crate::config::{self, StackConfig};
use crate::proto::detector::DetectorConfig;
use crate::proto::session::SessionConfig;
use crate::sim::delivery::ID_LEN;
use crate::sim::fault::{Latency, LinkRate, Loss, RandomOutages, TcpConfig};
use crate::sim::links::{DirectionSpec, NetworkSpec};
use crate::sim::load::LoadModel;
use crate::sim::qos::Judge;
use crate::sim::runner::{self, CLIENTS, Fault, RandomFault, RandomKind, SERVER};
use crate::sim::traffic::{Direction, Flow, Pace, Workload};

/// How long before a run's end its traffic stops, unless the file says (`traffic.drain`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// The most messages a second one flow may ask of a session: each is a task wake-up and a
/// frame each way in the simulation.
const MAX_RATE: f64 = 10_000.0;

/// Bounds on what a file may ask for, checked before anything is sized or run: each keeps a
/// typo (`sessions = 1000000000`) from exhausting memory or running for years. Each error names
/// its bound.
pub mod limits {
    /// Client sessions of a run.
    pub const MAX_SESSIONS: usize = 20_000;
    /// Pairings of a grid.
    pub const MAX_PAIRINGS: usize = 1_000;
    /// Seeds of a file, `--seeds` or `--max-seeds`.
    pub const MAX_SEEDS: u64 = 100_000;
    /// Scheduled faults after their repetitions are expanded.
    pub const MAX_FAULTS: u64 = 100_000;
    /// Expected occurrences of one random fault process over a run (rate × duration).
    pub const MAX_RANDOM_EXPECTED: f64 = 100_000.0;
    /// Simulated connection-hours of one run (sessions × duration): about ten minutes of wall
    /// time on one core.
    pub const MAX_CONNECTION_HOURS: f64 = 10_000.0;
    /// Simulated time of one run: longer runs would show no progress for minutes; more seeds
    /// give the same exposure, in parallel, with progress.
    pub const MAX_DURATION_HOURS: u64 = 168;
    /// `[[assert]]` tables.
    pub const MAX_ASSERTS: usize = 10_000;
    /// Size of a scenario or configuration file.
    pub const MAX_FILE_BYTES: u64 = 4 << 20;
}

/// One heartbeat pairing of the grid: a detector, an interval η and a miss threshold k.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pairing {
    pub detector: DetectorKind,
    pub interval: Duration,
    pub miss_threshold: u8,
}

impl Pairing {
    /// `1s/3`, or `phi:1s/3` when the grid compares detectors.
    pub fn name(&self, with_detector: bool) -> String {
        let base = format!("{}/{}", show(self.interval), self.miss_threshold);
        if with_detector {
            format!("{}:{base}", self.detector.name())
        } else {
            base
        }
    }
}

/// An assertion, checked and tied to its place in the file.
#[derive(Clone, Debug)]
pub struct Assertion {
    /// Index into [`Plan::pairings`]; `None` = every pairing.
    pub pairing: Option<usize>,
    pub side: SideSpec,
    pub spec: AssertSpec,
    /// `path:line:column` of the `[[assert]]` table.
    pub location: String,
}

/// A checked scenario, ready to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The file it came from, as given.
    pub path: String,
    pub name: String,
    pub description: Option<String>,
    pub seeds: Vec<u64>,
    pub pairings: Vec<Pairing>,
    pub asserts: Vec<Assertion>,
    pub judge: Judge,
    /// The snapshot run: a seed, a pairing index, sessions and duration.
    pub snapshot: Snapshot,
    /// Limits for `mcpsim tune`, as the file gives them.
    pub limits: file::LimitsSpec,
    /// The simulator back-end its runs use.
    pub engine: Engine,
    /// What else `mcpsim replay` must be told to make this plan from its file (`--config
    /// FILE`, `--no-traffic`), in that order, for a replay command to replay a run exactly.
    pub replay_args: Vec<String>,
    base: Base,
}

/// Which simulator back-end runs a plan.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The tokio drivers themselves on turmoil's clock (`sim::runner`): everything modelled.
    #[default]
    Turmoil,
    /// The sans-IO endpoints from one event queue (`sim::engine`): about 4× faster; every
    /// fault, the application traffic, the server's load and throttling.
    Event,
}

/// The back-end a user asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// The event engine (the report says which ran).
    #[default]
    Auto,
    /// The tokio drivers themselves on turmoil's clock: everything modelled.
    Turmoil,
    /// The sans-IO endpoints from one event queue.
    Event,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Turmoil => "turmoil",
            Engine::Event => "event",
        })
    }
}

/// The fixed-seed run `cargo test` keeps a trace snapshot of.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub seed: u64,
    pub pairing: usize,
    pub sessions: usize,
    pub duration: Duration,
}

/// Everything of a run but the pairing.
#[derive(Clone, Debug)]
struct Base {
    duration: Duration,
    tick: Duration,
    sessions: usize,
    client_hosts: usize,
    /// Sessions start uniformly over this; `None`: one interval of the pairing.
    connect_ramp: Option<Duration>,
    /// The file's stack; each pairing sets its heartbeat's interval, k and detector.
    stack: StackConfig,
    network: NetworkSpec,
    faults: Vec<(Duration, Fault)>,
    random_faults: Vec<RandomFault>,
    traffic: Workload,
    load: Option<LoadModel>,
}

impl Plan {
    /// Whether runs carry application traffic (and so are checked for delivery).
    pub fn has_traffic(&self) -> bool {
        self.base.traffic.is_on()
    }

    /// The same scenario with idle applications: its `[traffic]` left out, and with it the
    /// delivery checks. Assertions on delivery then have nothing to count.
    /// The same plan, on the engine `choice` picks: `Auto` takes the event engine.
    pub fn choosing(&self, choice: EngineChoice) -> Plan {
        let engine = match choice {
            EngineChoice::Turmoil => Engine::Turmoil,
            EngineChoice::Event | EngineChoice::Auto => Engine::Event,
        };
        self.on_engine(engine)
    }

    /// The same plan, run on `engine`.
    pub fn on_engine(&self, engine: Engine) -> Plan {
        Plan {
            engine,
            ..self.clone()
        }
    }

    pub fn without_traffic(&self) -> Plan {
        let mut plan = self.clone();
        plan.base.traffic = Workload::default();
        plan.replay_args.push("--no-traffic".into());
        plan
    }

    /// Whether pairing names carry the detector: the grid has more than one, or its one
    /// detector is not the default k-miss.
    pub fn names_detector(&self) -> bool {
        self.pairings
            .iter()
            .any(|p| p.detector != self.pairings[0].detector || p.detector != DetectorKind::KMiss)
    }

    /// The pairing's name as reports and `--pairing` write it.
    pub fn pairing_name(&self, i: usize) -> String {
        self.pairings[i].name(self.names_detector())
    }

    /// The pairing called `name`: `1s/3`, `1000ms/3` or `phi:1s/3` (the detector may be left
    /// out when only one is in the grid).
    pub fn find_pairing(&self, name: &str) -> Result<usize, String> {
        let wanted = parse_pairing(name)?;
        let matches: Vec<usize> = (0..self.pairings.len())
            .filter(|&i| {
                let p = &self.pairings[i];
                p.interval == wanted.1
                    && p.miss_threshold == wanted.2
                    && wanted.0.is_none_or(|d| d == p.detector)
            })
            .collect();
        let known = || {
            const SHOWN: usize = 12;
            let mut names: Vec<String> = (0..self.pairings.len().min(SHOWN))
                .map(|i| self.pairing_name(i))
                .collect();
            if self.pairings.len() > SHOWN {
                names.push(format!("… ({} pairings in all)", self.pairings.len()));
            }
            names.join(", ")
        };
        match matches.as_slice() {
            [i] => Ok(*i),
            [] => Err(format!(
                "no pairing {name:?} in the grid; the grid has {}",
                known()
            )),
            _ => Err(format!(
                "pairing {name:?} is ambiguous: name the detector, e.g. \"phi:{name}\" \
                 (the grid has {})",
                known()
            )),
        }
    }

    /// The same scenario over another grid: every interval × threshold × detector. Assertions
    /// name pairings of the file's grid, so they are dropped.
    pub fn with_grid(
        &self,
        intervals: &[Duration],
        thresholds: &[u8],
        detectors: &[DetectorKind],
    ) -> Result<Plan, String> {
        if intervals.is_empty() || thresholds.is_empty() || detectors.is_empty() {
            return Err("the grid needs at least one interval, threshold and detector".into());
        }
        if let Some(i) = intervals
            .iter()
            .find(|i| i.is_zero() || i.subsec_nanos() % 1_000_000 != 0)
        {
            return Err(format!(
                "interval {} must be a whole number of milliseconds, at least 1ms",
                show(*i)
            ));
        }
        if thresholds.contains(&0) {
            return Err("miss thresholds must be at least 1".into());
        }
        let mut pairings = Vec::new();
        for &detector in detectors {
            for &interval in intervals {
                for &miss_threshold in thresholds {
                    let p = Pairing {
                        detector,
                        interval,
                        miss_threshold,
                    };
                    if !pairings.contains(&p) {
                        pairings.push(p);
                    }
                }
            }
        }
        for p in &pairings {
            pairing_stack(&self.base.stack, p)
                .map_err(|e| format!("pairing {}: stack.{e}", p.name(true)))?;
        }
        let mut plan = self.clone();
        plan.snapshot.pairing = 0;
        plan.pairings = pairings;
        plan.asserts.clear();
        Ok(plan)
    }

    /// The stack configuration pairing `i` runs: the file's, with the pairing's interval,
    /// miss threshold and detector. It is what `mcpsim serve --config` and
    /// `mcpsim client --config` would run.
    pub fn stack(&self, i: usize) -> StackConfig {
        let mut s = self.base.stack.clone();
        let p = &self.pairings[i];
        s.heartbeat.interval = Dur(p.interval);
        s.heartbeat.miss_threshold = p.miss_threshold;
        s.heartbeat.detector = p.detector;
        s
    }

    /// The same scenario run on one stack configuration: its single pairing replaces the
    /// grid, and assertions naming a pairing of the file's grid are dropped.
    pub fn with_stack(&self, stack: StackConfig) -> Plan {
        let mut plan = self.clone();
        let pairing = Pairing {
            detector: stack.heartbeat.detector,
            interval: stack.heartbeat.interval.0,
            miss_threshold: stack.heartbeat.miss_threshold,
        };
        let kept = plan.pairings.iter().position(|p| *p == pairing);
        plan.asserts
            .retain(|a| a.pairing.is_none() || a.pairing == kept);
        for a in &mut plan.asserts {
            a.pairing = a.pairing.map(|_| 0);
        }
        plan.pairings = vec![pairing];
        plan.snapshot.pairing = 0;
        plan.base.stack = stack;
        plan
    }

    /// How pairing `i` is judged: the file's judge, with a decision window of (k + 1)·η +
    /// grace (for phi, η + its acceptable pause + η) unless the file sets one.
    pub fn judge_for(&self, i: usize) -> Judge {
        let mut j = self.judge;
        if j.decision_window.is_zero() {
            let s = self.stack(i);
            let eta = s.heartbeat.interval.0;
            let k = u32::from(s.heartbeat.miss_threshold);
            j.decision_window = match s.detector_config() {
                DetectorConfig::Phi(p) => eta * 2 + p.acceptable_heartbeat_pause,
                _ => eta * (k + 1) + s.heartbeat.grace.0,
            };
        }
        j
    }

    /// The run of pairing `i`.
    pub fn scenario(&self, i: usize) -> runner::Scenario {
        let b = &self.base;
        runner::Scenario {
            duration: b.duration,
            tick: b.tick,
            sessions: b.sessions,
            client_hosts: b.client_hosts,
            connect_ramp: b.connect_ramp.unwrap_or(self.pairings[i].interval),
            stack: self.stack(i),
            network: b.network.clone(),
            faults: b.faults.clone(),
            random_faults: b.random_faults.clone(),
            traffic: b.traffic.clone(),
            load: b.load,
            sabotage: None,
        }
    }

    /// The snapshot run: fewer sessions, perhaps shorter, one pairing.
    pub fn snapshot_scenario(&self) -> runner::Scenario {
        let mut s = self.scenario(self.snapshot.pairing);
        s.sessions = self.snapshot.sessions;
        s.client_hosts = s.client_hosts.min(s.sessions);
        s.duration = self.snapshot.duration;
        s
    }
}

/// The first seed a list repeats.
fn repeated(seeds: &[u64]) -> Option<u64> {
    let mut seen = std::collections::BTreeSet::new();
    seeds.iter().copied().find(|s| !seen.insert(*s))
}

/// `stack` running pairing `p`, checked: the server must grant the pairing's interval.
fn pairing_stack(stack: &StackConfig, p: &Pairing) -> Result<StackConfig, config::ConfigError> {
    let mut s = stack.clone();
    s.heartbeat.interval = Dur(p.interval);
    s.heartbeat.miss_threshold = p.miss_threshold;
    s.heartbeat.detector = p.detector;
    s.validate()?;
    Ok(s)
}

/// `(detector, interval, k)` from `phi:1s/3` or `1s/3`.
fn parse_pairing(name: &str) -> Result<(Option<DetectorKind>, Duration, u8), String> {
    let bad = || {
        format!(
            "pairing {name:?} is not of the form INTERVAL/K or DETECTOR:INTERVAL/K, e.g. \"1s/3\" or \"phi:1s/3\""
        )
    };
    let (detector, rest) = match name.split_once(':') {
        Some((d, rest)) => {
            let d = DetectorKind::parse(d).ok_or_else(|| {
                format!(
                    "unknown detector {d:?} in pairing {name:?}; detectors are k-miss, phi, adaptive, tcp"
                )
            })?;
            (Some(d), rest)
        }
        None => (None, name),
    };
    let (interval, k) = rest.split_once('/').ok_or_else(bad)?;
    let interval = Dur::parse(interval)
        .map_err(|e| format!("{}: {e}", bad()))?
        .0;
    let k = k.parse().map_err(|_| bad())?;
    Ok((detector, interval, k))
}

/// Reads and checks the scenario file at `path`.
pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
    let shown = path.display().to_string();
    let text = read_text(path).map_err(|m| ScenarioError::whole(&shown, m))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    parse(&shown, &stem, &text)
}

/// Reads a scenario or configuration file: a regular file of at most
/// [`limits::MAX_FILE_BYTES`], in UTF-8. A FIFO, a device or a directory is refused before it
/// is read; bytes that are not UTF-8 are reported by line and column.
pub fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file (a FIFO, a device or a directory?): refused".into());
    }
    if meta.len() > limits::MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes, over the {} bytes a scenario or configuration may have",
            meta.len(),
            limits::MAX_FILE_BYTES
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limits::MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > limits::MAX_FILE_BYTES {
        return Err(format!(
            "the file grew over the {} bytes a scenario or configuration may have",
            limits::MAX_FILE_BYTES
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..good]);
        let (line, column) = error::line_column(&text, good);
        format!("not UTF-8 text: invalid byte at line {line}, column {column} (byte {good})")
    })
}

/// Checks scenario `text`, read from `path` (used in messages); `stem` names it when the file
/// does not.
pub fn parse(path: &str, stem: &str, text: &str) -> Result<Plan, ScenarioError> {
    let file: ScenarioFile = toml::from_str(text)
        .map_err(|e| ScenarioError::at(path, text, e.span(), e.message().trim_end().to_string()))?;
    Checker {
        path,
        text,
        lines: error::LineIndex::new(text),
    }
    .plan(file, stem)
}

/// The JSON Schema of scenario files, pretty-printed.
pub fn schema() -> String {
    let schema = schemars::schema_for!(ScenarioFile);
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    s.push('\n');
    s
}

/// Turns a parsed file into a plan, reporting the first mistake with its place.
struct Checker<'a> {
    path: &'a str,
    text: &'a str,
    lines: error::LineIndex,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(self.path, self.text, Some(span), message.into())
    }

    fn location(&self, span: &Range<usize>) -> String {
        let (l, c) = self.lines.locate(self.text, span.start);
        format!("{}:{l}:{c}", self.path)
    }

    fn plan(&self, f: ScenarioFile, stem: &str) -> Result<Plan, ScenarioError> {
        let whole = 0..0;
        let duration = f.duration.0;
        if duration.is_zero() {
            return Err(self.err(whole, "duration must be more than 0s"));
        }
        if duration > Duration::from_secs(limits::MAX_DURATION_HOURS * 3600) {
            return Err(self.err(
                whole,
                format!(
                    "duration {} is over the bound of {}h a run: run more seeds instead \
                     (the same exposure, in parallel, with progress shown)",
                    show(duration),
                    limits::MAX_DURATION_HOURS
                ),
            ));
        }
        let tick = match &f.tick {
            Some(t) if t.get_ref().0.is_zero() || t.get_ref().0 > Duration::from_millis(100) => {
                return Err(self.err(t.span(), "tick must be in (0s, 100ms]"));
            }
            // The stacks' clock advances by whole milliseconds a step; a fractional tick would
            // make it run fast.
            Some(t) if !t.get_ref().0.subsec_nanos().is_multiple_of(1_000_000) => {
                return Err(self.err(
                    t.span(),
                    format!(
                        "tick {} must be a whole number of milliseconds, e.g. \"1ms\"",
                        t.get_ref()
                    ),
                ));
            }
            Some(t) => t.get_ref().0,
            None => Duration::from_millis(10),
        };
        if !runner::whole_ticks(duration, tick) {
            return Err(self.err(
                whole,
                format!(
                    "duration ({}) must be a whole number of ticks ({})",
                    show(duration),
                    show(tick)
                ),
            ));
        }
        let seed_count = match &f.seeds {
            file::Seeds::Count(n) => *n,
            file::Seeds::List(v) => v.len() as u64,
        };
        if seed_count > limits::MAX_SEEDS {
            return Err(self.err(
                whole.clone(),
                format!(
                    "seeds asks for {seed_count} seeds, over the bound of {}",
                    limits::MAX_SEEDS
                ),
            ));
        }
        let seeds = f.seeds.list();
        if let Some(s) = repeated(&seeds) {
            return Err(self.err(
                whole,
                format!(
                    "seeds lists seed {s} more than once: a repeated seed repeats the same run, \
                     it is not more evidence"
                ),
            ));
        }

        let topo = f.topology.get_ref();
        if topo.sessions == 0 {
            return Err(self.err(f.topology.span(), "topology.sessions must be at least 1"));
        }
        if topo.sessions > limits::MAX_SESSIONS {
            return Err(self.err(
                f.topology.span(),
                format!(
                    "topology.sessions = {} is over the bound of {} sessions a run",
                    topo.sessions,
                    limits::MAX_SESSIONS
                ),
            ));
        }
        let connection_hours = topo.sessions as f64 * duration.as_secs_f64() / 3600.0;
        if connection_hours > limits::MAX_CONNECTION_HOURS {
            return Err(self.err(
                whole.clone(),
                format!(
                    "{} sessions for {} is {connection_hours:.0} simulated connection-hours a \
                     run, over the bound of {}: use more seeds rather than one longer run",
                    topo.sessions,
                    show(duration),
                    limits::MAX_CONNECTION_HOURS
                ),
            ));
        }
        if topo.client_hosts == 0 || topo.client_hosts > topo.sessions.min(64) {
            return Err(self.err(
                f.topology.span(),
                format!(
                    "topology.client_hosts must be in 1..={} (at most one per session, and few: \
                     the simulator's cost grows fast with hosts)",
                    topo.sessions.min(64)
                ),
            ));
        }
        let names = Names {
            sessions: topo.sessions,
            client_hosts: topo.client_hosts,
        };

        let stack = f.stack.get_ref();
        stack
            .validate()
            .map_err(|e| self.err(f.stack.span(), format!("stack.{e}")))?;
        let pairings = self.pairings(&f.grid, stack)?;
        // The stack's `tcp.user_timeout` reaches the simulated kernels in the runner, so that a
        // stack swapped in later (`Plan::with_stack`) brings its own.
        let network = self.network(&f.network, &names)?;
        let mut faults = Vec::new();
        for spec in &f.faults {
            faults.extend(self.fault(spec, &names, duration)?);
        }
        faults.sort_by_key(|(at, _)| *at);
        let random_faults = f
            .random_faults
            .iter()
            .map(|r| self.random_fault(r, &names, duration))
            .collect::<Result<Vec<_>, _>>()?;
        let traffic = self.traffic(&f.traffic, &names, duration, stack)?;
        let load = self.load(&f.load)?;

        let mut plan = Plan {
            path: self.path.to_string(),
            name: f.name.clone().unwrap_or_else(|| stem.to_string()),
            description: f.description.clone(),
            seeds,
            pairings,
            asserts: Vec::new(),
            judge: Judge {
                tolerable_pause: f.judge.tolerable_pause.map_or(Duration::ZERO, |d| d.0),
                decision_window: f.judge.decision_window.map_or(Duration::ZERO, |d| d.0),
            },
            limits: f.limits.get_ref().clone(),
            snapshot: Snapshot {
                seed: 0,
                pairing: 0,
                sessions: 0,
                duration,
            },
            engine: Engine::default(),
            replay_args: Vec::new(),
            base: Base {
                duration,
                tick,
                sessions: topo.sessions,
                client_hosts: topo.client_hosts,
                connect_ramp: topo.connect_ramp.map(|d| d.0),
                stack: stack.clone(),
                network,
                faults,
                random_faults,
                traffic,
                load,
            },
        };
        if let Some(c) = f.limits.get_ref().confidence
            && !(c > 0.0 && c < 1.0)
        {
            return Err(self.err(
                f.limits.span(),
                format!("limits.confidence must be in (0, 1); found {c}"),
            ));
        }
        if let Some(r) = f.limits.get_ref().max_false_per_hour
            && !(r.is_finite() && r > 0.0)
        {
            return Err(self.err(
                f.limits.span(),
                format!("limits.max_false_per_hour must be a rate > 0; found {r}"),
            ));
        }
        if f.asserts.len() > limits::MAX_ASSERTS {
            return Err(self.err(
                f.asserts[limits::MAX_ASSERTS].span(),
                format!(
                    "the file has {} [[assert]] tables, over the bound of {}",
                    f.asserts.len(),
                    limits::MAX_ASSERTS
                ),
            ));
        }
        for a in &f.asserts {
            let checked = self.assertion(a, &plan)?;
            plan.asserts.push(checked);
        }
        plan.snapshot = self.snapshot(&f, &plan, &names)?;
        Ok(plan)
    }

    fn pairings(
        &self,
        grid: &Spanned<file::Grid>,
        stack: &StackConfig,
    ) -> Result<Vec<Pairing>, ScenarioError> {
        let g = grid.get_ref();
        let span = grid.span();
        let intervals = g
            .interval
            .clone()
            .unwrap_or_else(|| vec![stack.heartbeat.interval]);
        let thresholds = g
            .miss_threshold
            .clone()
            .unwrap_or_else(|| vec![stack.heartbeat.miss_threshold]);
        let detectors = g
            .detector
            .clone()
            .unwrap_or_else(|| vec![stack.heartbeat.detector]);
        let product = intervals.len() * thresholds.len() * detectors.len();
        if product > limits::MAX_PAIRINGS {
            return Err(self.err(
                span,
                format!(
                    "the grid has {} intervals × {} thresholds × {} detectors = {product} \
                     pairings, over the bound of {}",
                    intervals.len(),
                    thresholds.len(),
                    detectors.len(),
                    limits::MAX_PAIRINGS
                ),
            ));
        }
        if intervals.is_empty() || thresholds.is_empty() || detectors.is_empty() {
            return Err(self.err(
                span,
                "grid.interval, grid.miss_threshold and grid.detector need at least one value each \
                 (leave one out to use the stack's)",
            ));
        }
        for i in &intervals {
            let ms = i.0.as_millis();
            if i.0.is_zero() || i.0 != Duration::from_millis(ms as u64) || ms > u32::MAX as u128 {
                return Err(self.err(
                    span,
                    format!(
                        "grid.interval {i} must be a whole number of milliseconds, at least 1ms"
                    ),
                ));
            }
        }
        if let Some(k) = thresholds.iter().find(|k| **k == 0) {
            return Err(self.err(span, format!("grid.miss_threshold {k}: must be at least 1")));
        }
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for &detector in &detectors {
            for i in &intervals {
                for &k in &thresholds {
                    let p = Pairing {
                        detector,
                        interval: i.0,
                        miss_threshold: k,
                    };
                    if !seen.insert(p.clone()) {
                        return Err(self.err(
                            span.clone(),
                            format!("grid repeats pairing {}", p.name(true)),
                        ));
                    }
                    pairing_stack(stack, &p).map_err(|e| {
                        self.err(span.clone(), format!("pairing {}: stack.{e}", p.name(true)))
                    })?;
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    fn latency(&self, l: &Spanned<LatencySpec>) -> Result<Latency, ScenarioError> {
        to_latency(l.get_ref()).map_err(|m| self.err(l.span(), m))
    }

    fn loss(&self, l: &Spanned<LossSpec>) -> Result<Loss, ScenarioError> {
        let loss = match l.get_ref() {
            LossSpec::Independent(p) | LossSpec::Model(LossModel::Independent { p }) => {
                Loss::Independent { p: p.0 }
            }
            LossSpec::Model(LossModel::GilbertElliott {
                mean_good,
                mean_bad,
                loss_good,
                loss_bad,
            }) => {
                if mean_good.0.is_zero() || mean_bad.0.is_zero() {
                    return Err(self.err(l.span(), "mean_good and mean_bad must be more than 0s"));
                }
                Loss::GilbertElliott {
                    p_good_to_bad_per_s: 1.0 / mean_good.0.as_secs_f64(),
                    p_bad_to_good_per_s: 1.0 / mean_bad.0.as_secs_f64(),
                    loss_good: loss_good.0,
                    loss_bad: loss_bad.0,
                }
            }
        };
        loss.validate()
            .map_err(|e| self.err(l.span(), e.to_string()))?;
        Ok(loss)
    }

    /// A queue length in packets, checked (1000 when not given, netem's default `limit`).
    fn queue(&self, q: Option<&Spanned<u64>>) -> Result<usize, ScenarioError> {
        let Some(q) = q else {
            return Ok(LinkRate::DEFAULT_QUEUE);
        };
        match usize::try_from(*q.get_ref()) {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(self.err(
                q.span(),
                format!("queue must hold at least 1 packet, found {}", q.get_ref()),
            )),
        }
    }

    /// A direction's rate: its own or else `inherited`, with `queue` packets; a `queue` given
    /// (`own_queue`) with no rate in effect is an error.
    fn link_rate(
        &self,
        own: Option<&Spanned<units::Rate>>,
        inherited: Option<&Spanned<units::Rate>>,
        own_queue: Option<&Spanned<u64>>,
        queue: usize,
    ) -> Result<Option<LinkRate>, ScenarioError> {
        let Some(rate) = own.or(inherited) else {
            if let Some(q) = own_queue {
                return Err(self.err(
                    q.span(),
                    "queue without a rate: a queue forms only in front of a link with a \
                     finite rate; set rate too (e.g. rate = \"10mbit\")",
                ));
            }
            return Ok(None);
        };
        let r = LinkRate {
            bits_per_s: rate.get_ref().0,
            queue,
        };
        r.validate()
            .map_err(|e| self.err(rate.span(), e.to_string()))?;
        Ok(Some(r))
    }

    fn network(&self, n: &file::Network, names: &Names) -> Result<NetworkSpec, ScenarioError> {
        let mut spec = NetworkSpec::constant(Duration::from_millis(1));
        if let Some(l) = &n.latency {
            spec.default.latency = self.latency(l)?;
        }
        if let Some(l) = &n.loss {
            spec.default.loss = self.loss(l)?;
        }
        if let Some(q) = &n.queue
            && n.rate.is_none()
            && n.direction.values().all(|d| d.rate.is_none())
        {
            return Err(self.err(
                q.span(),
                "queue without a rate: a queue forms only in front of a link with a finite \
                 rate; set rate too (e.g. rate = \"10mbit\")",
            ));
        }
        let default_queue = self.queue(n.queue.as_ref())?;
        spec.default.rate = self.link_rate(n.rate.as_ref(), None, None, default_queue)?;
        for (key, d) in &n.direction {
            let bad = |m: String| self.err(key.span(), m);
            let (from, to) = key.get_ref().split_once("->").ok_or_else(|| {
                bad(format!(
                    "direction {:?} is not of the form \"from->to\", e.g. \"server->clients\"",
                    key.get_ref()
                ))
            })?;
            for end in [from, to] {
                names.check_link_end(end).map_err(bad)?;
            }
            let mut dir = DirectionSpec {
                latency: spec.default.latency,
                loss: spec.default.loss,
                outages: None,
                rate: None,
            };
            let queue = match &d.queue {
                Some(q) => self.queue(Some(q))?,
                None => default_queue,
            };
            dir.rate = self.link_rate(d.rate.as_ref(), n.rate.as_ref(), d.queue.as_ref(), queue)?;
            if let Some(l) = &d.latency {
                dir.latency = self.latency(l)?;
            }
            if let Some(l) = &d.loss {
                dir.loss = self.loss(l)?;
            }
            spec.directions
                .insert((from.to_string(), to.to_string()), dir);
        }
        let t = &n.tcp;
        let mut tcp = TcpConfig::default();
        if let Some(x) = &t.rto_min {
            let floor = x.get_ref().0;
            // A floor above the ceiling would make every RTO the ceiling, which no kernel does.
            if floor > tcp.rto_max {
                return Err(self.err(
                    x.span(),
                    format!(
                        "rto_min of {} is above the RTO's ceiling (rto_max, {})",
                        x.get_ref(),
                        Dur(tcp.rto_max)
                    ),
                ));
            }
            tcp.rto_min = floor;
        }
        if let Some(x) = t.retries2 {
            tcp.retries2 = x;
        }
        if let Some(x) = t.syn_retries {
            tcp.syn_retries = x;
        }
        if let Some(b) = &t.send_buffer {
            let bytes = usize::try_from(b.get_ref().0).unwrap_or(usize::MAX);
            // Less than one segment could never send a full one; Linux's own floor is 4.6 KB.
            if bytes < tcp.mss {
                return Err(self.err(
                    b.span(),
                    format!(
                        "send_buffer of {bytes} bytes is below one segment ({} bytes)",
                        tcp.mss
                    ),
                ));
            }
            tcp.send_buffer = bytes;
        }
        spec.tcp = tcp;
        Ok(spec)
    }

    /// A scheduled fault, expanded over its repetitions.
    fn fault(
        &self,
        spec: &Spanned<FaultSpec>,
        names: &Names,
        horizon: Duration,
    ) -> Result<Vec<(Duration, Fault)>, ScenarioError> {
        let bad = |m: String| self.err(spec.span(), m);
        let host = |h: &str| names.check_host(h).map(|()| h.to_string()).map_err(bad);
        let link = |a: &str, b: &str| -> Result<(), ScenarioError> {
            names.check_link_end(a).map_err(bad)?;
            names.check_link_end(b).map_err(bad)?;
            if a == b {
                return Err(bad(format!(
                    "a link fault needs two different ends, got {a:?} twice"
                )));
            }
            Ok(())
        };
        let fault = match spec.get_ref() {
            FaultSpec::Kill {
                host: h, downtime, ..
            } => Fault::Kill {
                host: host(h)?,
                downtime: downtime.map(|d| d.0),
            },
            FaultSpec::Crash {
                host: h, downtime, ..
            } => Fault::Crash {
                host: host(h)?,
                downtime: downtime.map(|d| d.0),
            },
            FaultSpec::Reboot {
                host: h, downtime, ..
            } => Fault::Crash {
                host: host(h)?,
                downtime: Some(downtime.0),
            },
            FaultSpec::Pause {
                host: h, duration, ..
            } => Fault::Pause {
                host: host(h)?,
                duration: duration.0,
            },
            FaultSpec::Partition {
                from,
                to,
                duration,
                oneway,
                ..
            } => {
                link(from, to)?;
                Fault::Partition {
                    from: from.clone(),
                    to: to.clone(),
                    duration: duration.0,
                    oneway: *oneway,
                }
            }
            FaultSpec::Slow {
                from,
                to,
                latency,
                duration,
                oneway,
                ..
            } => {
                link(from, to)?;
                Fault::Slow {
                    from: from.clone(),
                    to: to.clone(),
                    latency: to_latency(latency).map_err(bad)?,
                    duration: duration.0,
                    oneway: *oneway,
                }
            }
        };
        let (at, repeat) = spec.get_ref().schedule();
        if at.0 >= horizon {
            return Err(bad(format!(
                "the fault starts at {at}, at or after the end of the run ({})",
                show(horizon)
            )));
        }
        let (every, times) = match repeat {
            None => (Duration::ZERO, 1),
            Some(r) if r.every.0.is_zero() || r.times == 0 => {
                return Err(bad("repeat needs every > 0s and times >= 1".into()));
            }
            Some(r) => (r.every.0, r.times),
        };
        // How many fall inside the run, computed before any is made.
        let within = if every.is_zero() {
            1
        } else {
            ((horizon - at.0).as_nanos().div_ceil(every.as_nanos())).min(u128::from(times)) as u64
        };
        if within > limits::MAX_FAULTS {
            return Err(bad(format!(
                "this repeat makes {within} faults within the run, over the bound of {}",
                limits::MAX_FAULTS
            )));
        }
        Ok((0..times)
            .map(|n| (at.0 + every * n, fault.clone()))
            .take_while(|(t, _)| *t < horizon)
            .collect())
    }

    fn random_fault(
        &self,
        spec: &Spanned<file::RandomFaultSpec>,
        names: &Names,
        duration: Duration,
    ) -> Result<RandomFault, ScenarioError> {
        let bad = |m: String| self.err(spec.span(), m);
        let r = spec.get_ref();
        if !(r.per_hour.is_finite() && r.per_hour >= 0.0) {
            return Err(bad(format!(
                "per_hour must be a finite rate >= 0, found {}",
                r.per_hour
            )));
        }
        let expected = r.per_hour * duration.as_secs_f64() / 3600.0;
        if expected > limits::MAX_RANDOM_EXPECTED {
            return Err(bad(format!(
                "per_hour = {} over the run's {} is {expected:.0} expected faults, over the \
                 bound of {}",
                r.per_hour,
                show(duration),
                limits::MAX_RANDOM_EXPECTED
            )));
        }
        let link = |to: &str| -> Result<(), ScenarioError> {
            names.check_link_end(&r.host).map_err(bad)?;
            names.check_link_end(to).map_err(bad)
        };
        if r.latency.is_some() && r.kind != RandomKindSpec::Slow {
            return Err(bad("`latency` applies only to slow episodes".into()));
        }
        let kind = match (r.kind, &r.to) {
            (RandomKindSpec::Partition, Some(to)) => {
                link(to)?;
                RandomKind::Partition {
                    to: to.clone(),
                    oneway: r.oneway,
                }
            }
            (RandomKindSpec::Slow, Some(to)) => {
                link(to)?;
                let latency = r
                    .latency
                    .as_ref()
                    .ok_or_else(|| bad("a random slow episode needs `latency`".into()))?;
                RandomKind::Slow {
                    to: to.clone(),
                    latency: to_latency(latency).map_err(bad)?,
                    oneway: r.oneway,
                }
            }
            (RandomKindSpec::Partition | RandomKindSpec::Slow, None) => {
                return Err(bad("a random link fault needs `to`, its other end".into()));
            }
            (_, Some(_)) => {
                return Err(bad(
                    "`to` applies only to partitions and slow episodes".into()
                ));
            }
            (kind, None) => {
                names.check_host(&r.host).map_err(bad)?;
                match kind {
                    RandomKindSpec::Kill => RandomKind::Kill,
                    RandomKindSpec::Crash => RandomKind::Crash,
                    _ => RandomKind::Pause,
                }
            }
        };
        let process = RandomOutages {
            rate_per_hour: r.per_hour,
            duration: to_latency(&r.duration).map_err(bad)?,
        };
        Ok(RandomFault {
            host: r.host.clone(),
            kind,
            process,
        })
    }

    fn traffic(
        &self,
        t: &Spanned<file::TrafficSpec>,
        names: &Names,
        duration: Duration,
        stack: &StackConfig,
    ) -> Result<Workload, ScenarioError> {
        let spec = t.get_ref();
        let drain = spec.drain.map_or(DEFAULT_DRAIN, |d| d.0);
        if drain >= duration && !spec.flow.is_empty() {
            return Err(self.err(
                t.span(),
                format!(
                    "traffic.drain ({}) must be shorter than the run ({})",
                    show(drain),
                    show(duration)
                ),
            ));
        }
        // DATA carries the channel and priority (3 bytes) in its payload.
        let largest = stack
            .client_options()
            .map_or(SessionConfig::default().max_payload, |o| {
                o.session.session.max_payload
            })
            .saturating_sub(3);
        let mut flows = Vec::new();
        for f in &spec.flow {
            let bad = |m: String| self.err(f.span(), format!("traffic.flow: {m}"));
            let g = f.get_ref();
            let sessions = match g.sessions {
                None => 0..names.sessions,
                Some([a, b]) if a <= b && b < names.sessions => a..b + 1,
                Some([a, b]) => {
                    return Err(bad(format!(
                        "sessions = [{a}, {b}] must name sessions first to last, within 0..={}",
                        names.sessions - 1
                    )));
                }
            };
            let pace = match (g.rate, g.bulk) {
                (Some(r), None) if r.is_finite() && r > 0.0 && r <= MAX_RATE => match g.arrivals {
                    file::Arrivals::Constant => Pace::Constant { rate: r },
                    file::Arrivals::Poisson => Pace::Poisson { rate: r },
                },
                (Some(r), None) => {
                    return Err(bad(format!(
                        "rate must be in (0, {MAX_RATE}] messages a second; found {r}"
                    )));
                }
                (None, Some(b)) if b > 0 => Pace::Bulk { bytes: b },
                (None, Some(_)) => return Err(bad("bulk must be at least 1 byte".into())),
                (Some(_), Some(_)) => {
                    return Err(bad("give rate or bulk, not both".into()));
                }
                (None, None) => {
                    return Err(bad(
                        "give rate (messages a second) or bulk (bytes to transfer)".into(),
                    ));
                }
            };
            let size = match g.size {
                None => (256, 256),
                Some(file::Size::Fixed(n)) => (n, n),
                Some(file::Size::Range([a, b])) => (a, b),
            };
            if size.0 > size.1 || size.0 < ID_LEN || size.1 > largest {
                return Err(bad(format!(
                    "size must be in [{ID_LEN}, {largest}] bytes (the first {ID_LEN} carry the \
                     message id; the stack's max_payload less 3 bytes of channel and priority), \
                     min <= max; found {}..={}",
                    size.0, size.1
                )));
            }
            let channels = g.channels.unwrap_or(1);
            let channel = g.channel.unwrap_or(0);
            if channels == 0 || u32::from(channel) + u32::from(channels) > 1 << 16 {
                return Err(bad(format!(
                    "channels ({channels}) from channel {channel} must be at least 1 and end by \
                     channel 65535"
                )));
            }
            let burst = match (g.burst_on, g.burst_off) {
                (None, None) => None,
                (Some(on), Some(off)) if !on.0.is_zero() => Some((on.0, off.0)),
                _ => {
                    return Err(bad(
                        "bursts need both burst_on (more than 0s) and burst_off".into(),
                    ));
                }
            };
            let start = g.start.map_or(Duration::ZERO, |d| d.0);
            let stop = g.stop.map(|d| d.0);
            if start >= duration || stop.is_some_and(|s| s <= start) {
                return Err(bad(format!(
                    "start ({}) must be within the run ({}) and before stop",
                    show(start),
                    show(duration)
                )));
            }
            let direction = match g.direction {
                file::FlowDirection::Up => Direction::Up,
                file::FlowDirection::Down => Direction::Down,
                file::FlowDirection::Both => Direction::Both,
            };
            flows.push(Flow {
                sessions,
                direction,
                pace,
                size,
                channel,
                channels,
                priority: g.priority.unwrap_or(0),
                burst,
                start,
                stop,
            });
        }
        Ok(Workload { flows, drain })
    }

    fn load(
        &self,
        l: &Option<Spanned<file::LoadSpec>>,
    ) -> Result<Option<LoadModel>, ScenarioError> {
        let Some(l) = l else { return Ok(None) };
        let spec = l.get_ref();
        let cores = spec.cores.unwrap_or(1);
        if cores == 0 || cores > 1024 {
            return Err(self.err(
                l.span(),
                format!("load.cores must be in 1..=1024; found {cores}"),
            ));
        }
        let frame_cost = spec.frame_cost.map_or(Duration::ZERO, |d| d.0);
        let message_cost = spec.message_cost.map_or(Duration::ZERO, |d| d.0);
        if frame_cost.is_zero() && message_cost.is_zero() {
            return Err(self.err(
                l.span(),
                "load needs frame_cost or message_cost (e.g. \"500us\"): without a cost the \
                 server is never loaded",
            ));
        }
        Ok(Some(LoadModel {
            frame_cost,
            message_cost,
            cores,
        }))
    }

    fn assertion(&self, a: &Spanned<AssertSpec>, plan: &Plan) -> Result<Assertion, ScenarioError> {
        let bad = |m: String| self.err(a.span(), m);
        let spec = a.get_ref();
        let pairing = match &spec.pairing {
            Some(name) => Some(plan.find_pairing(name).map_err(bad)?),
            None => None,
        };
        if let Some(c) = spec.confidence
            && !(c > 0.0 && c < 1.0)
        {
            return Err(bad(format!(
                "confidence must be in (0, 1), e.g. 0.95; found {c}"
            )));
        }
        if let Some(q) = spec.min_query_accuracy
            && !(0.0..=1.0).contains(&q)
        {
            return Err(bad(format!(
                "min_query_accuracy must be in [0, 1]; found {q}"
            )));
        }
        if let Some(r) = spec.max_false_per_hour
            && !(r.is_finite() && r >= 0.0)
        {
            return Err(bad(format!(
                "max_false_per_hour must be a finite rate >= 0; found {r}"
            )));
        }
        Ok(Assertion {
            pairing,
            side: spec.side,
            spec: spec.clone(),
            location: self.location(&a.span()),
        })
    }

    fn snapshot(
        &self,
        f: &ScenarioFile,
        plan: &Plan,
        names: &Names,
    ) -> Result<Snapshot, ScenarioError> {
        let s = f.snapshot.get_ref();
        let bad = |m: String| self.err(f.snapshot.span(), m);
        let pairing = match &s.pairing {
            Some(name) => plan.find_pairing(name).map_err(bad)?,
            None => 0,
        };
        // Enough sessions to include every session a fault names.
        let named = f
            .faults
            .iter()
            .flat_map(|s| session_names(s.get_ref()))
            .chain(f.random_faults.iter().flat_map(|r| {
                let r = r.get_ref();
                [Some(r.host.as_str()), r.to.as_deref()]
            }))
            .flatten()
            .chain(f.network.direction.keys().flat_map(|k| {
                let (a, b) = k.get_ref().split_once("->").unwrap_or(("", ""));
                [a, b]
            }))
            .filter_map(session_index)
            .max()
            .map_or(0, |i| i + 1);
        let sessions = s.sessions.unwrap_or(names.sessions.min(3).max(named));
        if sessions == 0 || sessions > names.sessions {
            return Err(bad(format!(
                "snapshot.sessions must be in 1..={}",
                names.sessions
            )));
        }
        if sessions < named {
            return Err(bad(format!(
                "snapshot.sessions is {sessions}, but faults name client-{}",
                named - 1
            )));
        }
        let duration = s.duration.map_or(plan.base.duration, |d| d.0);
        if duration.is_zero() || duration > plan.base.duration {
            return Err(bad(format!(
                "snapshot.duration must be in (0s, {}]",
                show(plan.base.duration)
            )));
        }
        if !runner::whole_ticks(duration, plan.base.tick) {
            return Err(bad(format!(
                "snapshot.duration ({}) must be a whole number of ticks ({})",
                show(duration),
                show(plan.base.tick)
            )));
        }
        Ok(Snapshot {
            seed: s.seed.unwrap_or(plan.seeds[0]),
            pairing,
            sessions,
            duration,
        })
    }
}

fn session_names(f: &FaultSpec) -> [Option<&str>; 2] {
    match f {
        FaultSpec::Partition { from, to, .. } | FaultSpec::Slow { from, to, .. } => {
            [Some(from), Some(to)]
        }
        _ => [None, None],
    }
}

/// `7` from `client-7`.
fn session_index(name: &str) -> Option<usize> {
    name.strip_prefix("client-")?.parse().ok()
}

/// The names a scenario may aim faults at.
struct Names {
    sessions: usize,
    client_hosts: usize,
}

impl Names {
    fn hosts(&self) -> Vec<String> {
        let mut h = vec![SERVER.to_string()];
        match self.client_hosts {
            1 => h.push(CLIENTS.to_string()),
            n => h.extend((0..n).map(|i| format!("{CLIENTS}-{i}"))),
        }
        h
    }

    /// A host (for kills, crashes, pauses).
    fn check_host(&self, name: &str) -> Result<(), String> {
        let hosts = self.hosts();
        if hosts.iter().any(|h| h == name) {
            return Ok(());
        }
        let hint = if session_index(name).is_some() {
            " (a session is not a host: kill, crash and pause strike hosts)"
        } else {
            ""
        };
        Err(format!(
            "no host {name:?}{hint}; the hosts are {}",
            hosts.join(", ")
        ))
    }

    /// A host or a session (for link faults).
    fn check_link_end(&self, name: &str) -> Result<(), String> {
        if self.check_host(name).is_ok() {
            return Ok(());
        }
        match session_index(name) {
            Some(i) if i < self.sessions => Ok(()),
            Some(_) => Err(format!(
                "no session {name:?}: the scenario has client-0 … client-{}",
                self.sessions - 1
            )),
            None => Err(format!(
                "no host or session {name:?}; the hosts are {}, the sessions client-0 … client-{}",
                self.hosts().join(", "),
                self.sessions - 1
            )),
        }
    }
}

/// The simulator's latency model of a file's latency.
fn to_latency(l: &LatencySpec) -> Result<Latency, String> {
    let ms = |d: &Dur| d.0.as_secs_f64() * 1e3;
    let above = |what: &str, total: &Dur, min: &Dur| {
        if total.0 > min.0 {
            Ok(ms(total) - ms(min))
        } else {
            Err(format!("{what} {total} must be more than min {min}"))
        }
    };
    let latency = match l {
        LatencySpec::Constant(d) | LatencySpec::Dist(LatencyDist::Constant { value: d }) => {
            Latency::constant(d.0)
        }
        LatencySpec::Dist(LatencyDist::Uniform { min, max }) => Latency::Uniform {
            min_ms: ms(min),
            max_ms: ms(max),
        },
        LatencySpec::Dist(LatencyDist::Normal { mean, sd, min }) => Latency::Normal {
            mean_ms: ms(mean),
            sd_ms: ms(sd),
            min_ms: min.as_ref().map_or(0.0, ms),
        },
        LatencySpec::Dist(LatencyDist::Lognormal { min, median, sigma }) => Latency::Lognormal {
            min_ms: ms(min),
            median_ms: above("median", median, min)?,
            sigma: *sigma,
        },
        LatencySpec::Dist(LatencyDist::Pareto { min, scale, shape }) => Latency::Pareto {
            min_ms: ms(min),
            scale_ms: ms(scale),
            shape: *shape,
        },
        LatencySpec::Dist(LatencyDist::Exponential { min, mean }) => Latency::Exponential {
            min_ms: ms(min),
            mean_ms: above("mean", mean, min)?,
        },
    };
    latency.validate().map_err(|e| e.to_string())?;
    Ok(latency)
}
