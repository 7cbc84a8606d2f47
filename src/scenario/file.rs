//! What a scenario file says, exactly as written: the serde model of the TOML, with the
//! JSON Schema derived from the same types. [`super::parse`] turns it into runs.
//!
//! Every table refuses unknown keys. Durations and percentages are strings with units
//! ([`super::units`]). Fields that can be wrong only in relation to others (a fault aimed at a
//! host that does not exist, an assertion naming a pairing not in the grid) keep their place in
//! the file ([`Spanned`]) so the error can point at them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::units::{ByteSize, Dur, Percent, Rate};

/// A scenario: the situation to simulate, the heartbeat pairings to try in it, and what must
/// hold for each.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Defaults to the file's name without `.toml`.
    pub name: Option<String>,
    /// The real situation this models, in a sentence or two; shown in reports.
    pub description: Option<String>,
    /// Simulated time of each run.
    pub duration: Dur,
    /// Seeds to run every pairing on (common random numbers): a count `n` (seeds 1 … n) or an
    /// explicit list.
    #[serde(default)]
    pub seeds: Seeds,
    /// How far the simulation runs between two returns to the runner (default 10ms): a cost
    /// knob only, traces are the same at any tick. The duration is a whole number of ticks.
    #[schemars(with = "Option<Dur>")]
    pub tick: Option<Spanned<Dur>>,
    #[schemars(with = "Topology")]
    pub topology: Spanned<Topology>,
    /// The stack configuration both sides run (`docs/configuration.md`), the same a real
    /// server and client run with `--config`.
    #[serde(default = "unplaced::<Stack>")]
    #[schemars(with = "Stack")]
    pub stack: Spanned<Stack>,
    /// The pairings to compare; what it leaves out is the stack's.
    #[serde(default = "unplaced::<Grid>")]
    #[schemars(with = "Grid")]
    pub grid: Spanned<Grid>,
    #[serde(default)]
    pub network: Network,
    /// Faults at scheduled times.
    #[serde(default)]
    #[schemars(with = "Vec<FaultSpec>")]
    pub faults: Vec<Spanned<FaultSpec>>,
    /// Faults that strike at random (a Poisson process in simulated time).
    #[serde(default)]
    #[schemars(with = "Vec<RandomFaultSpec>")]
    pub random_faults: Vec<Spanned<RandomFaultSpec>>,
    /// What the applications at both ends send; none unless the file says.
    #[serde(default = "unplaced::<TrafficSpec>")]
    #[schemars(with = "TrafficSpec")]
    pub traffic: Spanned<TrafficSpec>,
    /// The server's processing costs: what saturates it.
    #[schemars(with = "Option<LoadSpec>")]
    pub load: Option<Spanned<LoadSpec>>,
    #[serde(default)]
    pub judge: JudgeSpec,
    /// What must hold. Every assertion applies to every pairing unless it names one.
    #[serde(default, rename = "assert")]
    #[schemars(with = "Vec<AssertSpec>")]
    pub asserts: Vec<Spanned<AssertSpec>>,
    /// What `mcpsim tune` must find: its default limits for this scenario.
    #[serde(default = "unplaced::<LimitsSpec>")]
    #[schemars(with = "LimitsSpec")]
    pub limits: Spanned<LimitsSpec>,
    /// The short fixed-seed run whose trace `cargo test` keeps as a snapshot.
    #[serde(default = "unplaced::<SnapshotSpec>")]
    #[schemars(with = "SnapshotSpec")]
    pub snapshot: Spanned<SnapshotSpec>,
}

/// A table the file leaves out: its defaults, placed at the start of the file.
fn unplaced<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

/// Seeds: a count or a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seeds {
    Count(u64),
    List(Vec<u64>),
}

impl Default for Seeds {
    fn default() -> Seeds {
        Seeds::Count(8)
    }
}

impl Seeds {
    pub fn list(&self) -> Vec<u64> {
        match self {
            Seeds::Count(n) => (1..=*n).collect(),
            Seeds::List(v) => v.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Seeds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seeds, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Seeds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seeds (e.g. 20) or a list of seeds (e.g. [1, 7, 42])")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seeds, E> {
                match u64::try_from(n) {
                    Ok(n) if n > 0 => Ok(Seeds::Count(n)),
                    _ => Err(E::custom(format!("seeds must be at least 1, found {n}"))),
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seeds, E> {
                self.visit_i64(n.min(i64::MAX as u64) as i64)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seeds, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<u64>()? {
                    v.push(s);
                }
                if v.is_empty() {
                    return Err(de::Error::custom("the list of seeds is empty"));
                }
                Ok(Seeds::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Seeds {
    fn schema_name() -> Cow<'static, str> {
        "Seeds".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of seeds n (runs seeds 1 … n) or an explicit list.",
            "anyOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "array", "items": { "type": "integer", "minimum": 0 }, "minItems": 1 }
            ]
        })
    }
}

/// Who runs: one server host, and client sessions spread over client hosts.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Client sessions (`client-0` … `client-N-1`), each its own connection to the server.
    pub sessions: usize,
    /// Client hosts the sessions are spread over, round robin: one host `clients`, or
    /// `clients-0` … when more. Keep it small: the simulator's cost grows fast with hosts.
    #[serde(default = "one")]
    pub client_hosts: usize,
    /// Each session starts at a seed-drawn instant, uniform over this span from the start of
    /// the run (default: one heartbeat interval of the pairing), so that faults meet sessions
    /// at every phase of their heartbeat and seeds sample that phase.
    pub connect_ramp: Option<Dur>,
}

fn one() -> usize {
    1
}

pub use crate::config::{AdaptiveSpec, DetectorKind, Mode, PhiSpec, StackConfig as Stack};

/// The grid of pairings: every interval × miss threshold × detector.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Heartbeat intervals η (default: the stack's `heartbeat.interval` only).
    #[schemars(length(min = 1))]
    pub interval: Option<Vec<Dur>>,
    /// Miss thresholds k, 1 to 255 (default: the stack's `heartbeat.miss_threshold` only).
    #[schemars(length(min = 1))]
    pub miss_threshold: Option<Vec<u8>>,
    /// Detectors to compare (default: the stack's `heartbeat.detector` only).
    #[schemars(length(min = 1))]
    pub detector: Option<Vec<DetectorKind>>,
}

/// The network: what every direction does unless overridden, overrides per direction, and the
/// kernels' TCP settings.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way delay of every direction (default 1ms).
    #[schemars(with = "Option<LatencySpec>")]
    pub latency: Option<Spanned<LatencySpec>>,
    /// Loss of every direction (default none). Lost segments are retransmitted, as TCP does.
    #[schemars(with = "Option<LossSpec>")]
    pub loss: Option<Spanned<LossSpec>>,
    /// Bandwidth of every direction, like netem's `rate`: `"10mbit"`, `"512kbit"`, or bits per
    /// second (default: infinitely fast). Each packet (payload plus 52 bytes of headers) takes
    /// its serialization time after the ones queued before it, then the latency.
    #[schemars(with = "Option<Rate>")]
    pub rate: Option<Spanned<Rate>>,
    /// Packets the queue in front of a link with a `rate` holds, like netem's `limit` (default
    /// 1000); a packet arriving at a full queue is dropped, and TCP resends it.
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub queue: Option<Spanned<u64>>,
    /// Overrides for one direction, keyed `"from->to"`, e.g. `"server->clients"`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, DirectionSpec>")]
    pub direction: BTreeMap<Spanned<String>, DirectionSpec>,
    #[serde(default)]
    pub tcp: TcpSpec,
}

/// One direction's override.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectionSpec {
    #[schemars(with = "Option<LatencySpec>")]
    pub latency: Option<Spanned<LatencySpec>>,
    #[schemars(with = "Option<LossSpec>")]
    pub loss: Option<Spanned<LossSpec>>,
    /// This direction's bandwidth (default: `[network]`'s).
    #[schemars(with = "Option<Rate>")]
    pub rate: Option<Spanned<Rate>>,
    /// This direction's queue, in packets (default: `[network]`'s, else 1000).
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub queue: Option<Spanned<u64>>,
}

/// The kernels' TCP settings (Linux defaults unless given). The socket option
/// `TCP_USER_TIMEOUT` is the application's: `stack.tcp.user_timeout`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// The RTO floor (default 200ms), at most the RTO's ceiling (`rto_max`, 120s).
    #[schemars(with = "Option<Dur>")]
    pub rto_min: Option<Spanned<Dur>>,
    /// `tcp_retries2` (default 15).
    pub retries2: Option<u32>,
    /// `tcp_syn_retries` (default 6).
    pub syn_retries: Option<u32>,
    /// The send buffer (`SO_SNDBUF`): bytes written and not yet acknowledged before a write
    /// blocks (default 4MiB, the top of Linux's autotuning; fixed here, not autotuned).
    #[schemars(with = "Option<ByteSize>")]
    pub send_buffer: Option<Spanned<ByteSize>>,
}

/// A delay distribution: a fixed duration (`"20ms"`) or a table with `dist`.
#[derive(Clone, Debug, PartialEq)]
pub enum LatencySpec {
    Constant(Dur),
    Dist(LatencyDist),
}

/// Delay distributions, in the words of `tc netem` where it has them. `mean` and `median` are
/// of the whole delay, floor included.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LatencyDist {
    /// Always `value`.
    Constant { value: Dur },
    /// Uniform on [`min`, `max`] (Toxiproxy's latency ± jitter).
    Uniform { min: Dur, max: Dur },
    /// Normal with `mean` and `sd`, redrawn below `min` (default 0).
    Normal {
        mean: Dur,
        sd: Dur,
        min: Option<Dur>,
    },
    /// `min` plus a lognormal part; `median` is the whole delay's median, `sigma` the log-scale
    /// spread (0.5 is moderate, 1.5 heavy-tailed).
    Lognormal { min: Dur, median: Dur, sigma: f64 },
    /// `min` plus a Pareto (Lomax) tail of `scale` and `shape` (finite mean needs shape > 1).
    Pareto { min: Dur, scale: Dur, shape: f64 },
    /// `min` plus an exponential part; `mean` is the whole delay's mean.
    Exponential { min: Dur, mean: Dur },
}

impl<'de> Deserialize<'de> for LatencySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LatencySpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LatencySpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a delay (e.g. \"20ms\") or a table with `dist` \
                     (constant, uniform, normal, lognormal, pareto, exponential)",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LatencySpec, E> {
                Dur::parse(s).map(LatencySpec::Constant).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LatencySpec, A::Error> {
                LatencyDist::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(LatencySpec::Dist)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for LatencySpec {
    fn schema_name() -> Cow<'static, str> {
        "Latency".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let dur = g.subschema_for::<Dur>();
        let dist = g.subschema_for::<LatencyDist>();
        json_schema!({
            "description": "A fixed one-way delay, or a distribution table with `dist`.",
            "anyOf": [dur, dist]
        })
    }
}

/// How a direction loses segments: a percentage (independent loss) or a table with `model`.
#[derive(Clone, Debug, PartialEq)]
pub enum LossSpec {
    Independent(Percent),
    Model(LossModel),
}

/// Loss models. Every lost transmission is retransmitted after the RTO, as TCP does.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LossModel {
    /// Each transmission lost independently with probability `p`.
    Independent { p: Percent },
    /// Gilbert-Elliott bursts in simulated time: Good and Bad states lasting exponential times
    /// with means `mean_good` and `mean_bad`, losing `loss_good` and `loss_bad` of
    /// transmissions (netem's `gemodel`, with sojourn times instead of per-packet odds).
    GilbertElliott {
        mean_good: Dur,
        mean_bad: Dur,
        #[serde(default = "zero_percent")]
        loss_good: Percent,
        loss_bad: Percent,
    },
}

fn zero_percent() -> Percent {
    Percent(0.0)
}

impl<'de> Deserialize<'de> for LossSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LossSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LossSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a percentage (e.g. \"1%\") or a table with `model` \
                     (independent, gilbert-elliott)",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LossSpec, E> {
                Percent::parse(s)
                    .map(LossSpec::Independent)
                    .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LossSpec, A::Error> {
                LossModel::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(LossSpec::Model)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for LossSpec {
    fn schema_name() -> Cow<'static, str> {
        "Loss".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let pct = g.subschema_for::<Percent>();
        let model = g.subschema_for::<LossModel>();
        json_schema!({
            "description": "Independent loss as a percentage, or a loss model table with `model`.",
            "anyOf": [pct, model]
        })
    }
}

/// A fault at a scheduled time, starting `at`, optionally repeated. Hosts are `server`,
/// `clients` (or `clients-0` … with several client hosts); link faults may also name one
/// session, `client-7`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultSpec {
    /// The process dies: its kernel sends FIN (RST if unread data had arrived). With
    /// `downtime`, it restarts afresh then.
    Kill {
        at: Dur,
        host: String,
        downtime: Option<Dur>,
        repeat: Option<Repeat>,
    },
    /// The machine dies: silence, no FIN, no RST. With `downtime`, it reboots then.
    Crash {
        at: Dur,
        host: String,
        downtime: Option<Dur>,
        repeat: Option<Repeat>,
    },
    /// The machine crashes and is back after `downtime`: peers' next retransmission gets RST.
    Reboot {
        at: Dur,
        host: String,
        downtime: Dur,
        repeat: Option<Repeat>,
    },
    /// SIGSTOP or a GC stall: the process is silent while its kernel still acknowledges data;
    /// the backlog is delivered on resume.
    Pause {
        at: Dur,
        host: String,
        duration: Dur,
        repeat: Option<Repeat>,
    },
    /// Nothing gets from `from` to `to` (and back, unless `oneway`) for `duration`.
    Partition {
        at: Dur,
        from: String,
        to: String,
        duration: Dur,
        #[serde(default)]
        oneway: bool,
        repeat: Option<Repeat>,
    },
    /// Delays from `from` to `to` (and back, unless `oneway`) follow `latency` for
    /// `duration`: a latency spike, or a gray (slow but alive) peer.
    Slow {
        at: Dur,
        from: String,
        to: String,
        latency: LatencySpec,
        duration: Dur,
        #[serde(default)]
        oneway: bool,
        repeat: Option<Repeat>,
    },
}

impl FaultSpec {
    /// When it (first) starts, and how it repeats.
    pub fn schedule(&self) -> (Dur, Option<&Repeat>) {
        match self {
            FaultSpec::Kill { at, repeat, .. }
            | FaultSpec::Crash { at, repeat, .. }
            | FaultSpec::Reboot { at, repeat, .. }
            | FaultSpec::Pause { at, repeat, .. }
            | FaultSpec::Partition { at, repeat, .. }
            | FaultSpec::Slow { at, repeat, .. } => (*at, repeat.as_ref()),
        }
    }
}

/// A repetition: `times` occurrences in all, one every `every` (a flapping link, recurring
/// pauses).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub every: Dur,
    pub times: u32,
}

/// Faults that strike at random: `per_hour` arrivals per simulated hour, each lasting a draw
/// of `duration`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomFaultSpec {
    pub kind: RandomKindSpec,
    /// The host struck; for partitions, one end (a host or a session `client-7`).
    pub host: String,
    /// For partitions and slow episodes: the other end.
    pub to: Option<String>,
    /// For partitions and slow episodes: only `host → to`.
    #[serde(default)]
    pub oneway: bool,
    /// For slow episodes: the one-way delay while they last.
    pub latency: Option<LatencySpec>,
    /// Mean arrivals per simulated hour.
    pub per_hour: f64,
    /// How long each lasts (downtime of kills and crashes).
    pub duration: LatencySpec,
}

/// Random fault kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RandomKindSpec {
    Kill,
    Crash,
    Pause,
    Partition,
    /// Latency episodes (spikes) between `host` and `to`.
    Slow,
}

/// Application traffic: flows of messages, each checked for exactly-once, in-order delivery.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// Flows stop this long before the run ends, so that what they sent can arrive; a message
    /// sent within it, or while the two ends were not connected throughout it, may be in flight
    /// at the end without being lost (default 10s).
    pub drain: Option<Dur>,
    /// The flows (`[[traffic.flow]]`); sessions may run several.
    #[serde(default)]
    #[schemars(with = "Vec<FlowSpec>")]
    pub flow: Vec<Spanned<FlowSpec>>,
}

/// One flow: what the applications of some sessions send, one way or both.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// The sessions it applies to, `[first, last]` (both included); default all.
    pub sessions: Option<[usize; 2]>,
    /// `up` (client to server), `down` or `both` (default).
    #[serde(default)]
    pub direction: FlowDirection,
    /// Messages a second, per session and direction. Give this or `bulk`.
    pub rate: Option<f64>,
    /// How messages arrive at that rate (default poisson).
    #[serde(default)]
    pub arrivals: Arrivals,
    /// A bulk transfer instead of a rate: this many payload bytes per session and direction,
    /// back to back, as fast as the session takes them.
    pub bulk: Option<u64>,
    /// Payload bytes: a number or `[min, max]`, uniform (default 256). At least 16: the first
    /// 16 bytes carry the message's id.
    pub size: Option<Size>,
    /// Messages are spread evenly over this many channels (default 1) …
    pub channels: Option<u16>,
    /// … starting at this one (default 0).
    pub channel: Option<u16>,
    /// Priority of every message (0 most urgent, default 0).
    pub priority: Option<u8>,
    /// Bursts: the flow sends for `burst_on`, then is quiet for `burst_off`, and again.
    pub burst_on: Option<Dur>,
    pub burst_off: Option<Dur>,
    /// When the flow starts (default 0s) and stops (default: the run's end less the drain).
    pub start: Option<Dur>,
    pub stop: Option<Dur>,
}

/// The server's CPU: what each frame and message costs it, and how many cores share the work.
/// A server whose work outgrows its cores falls behind: it answers and beats late.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Per heartbeat frame handled (a HEARTBEAT or a HEARTBEAT_ACK), e.g. "400us".
    pub frame_cost: Option<Dur>,
    /// Per application message received, on top of its frame.
    pub message_cost: Option<Dur>,
    /// Cores (default 1).
    pub cores: Option<u32>,
}

/// Which way a flow's messages go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FlowDirection {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
    #[default]
    Both,
}

/// How messages arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps.
    #[default]
    Poisson,
}

/// A payload size: fixed, or uniform over `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Size {
    Fixed(usize),
    Range([usize; 2]),
}

/// How runs are judged.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    /// Pauses up to this long are noise to ride out, not failures to detect (default 0).
    pub tolerable_pause: Option<Dur>,
    /// A failure still undetected at the end of the run is *censored* (undecided), not
    /// missed, when it began less than this before the end. Default: (k + 1)·η + grace of
    /// each pairing (for phi: 2·η + its acceptable pause).
    pub decision_window: Option<Dur>,
}

/// Which side's detectors an assertion is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SideSpec {
    /// The clients watching the server.
    Client,
    /// The server watching its clients.
    Server,
    /// Both.
    #[default]
    Both,
}

/// A bound that must hold over every seed of a pairing. Bounds are inclusive.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertSpec {
    /// The pairing it is about, e.g. `"1s/3"` or `"phi:1s/3"`; default every pairing.
    pub pairing: Option<String>,
    #[serde(default)]
    pub side: SideSpec,
    /// Why this bound: shown when it fails.
    pub why: Option<String>,
    pub max_detection_p50: Option<Dur>,
    pub max_detection_p90: Option<Dur>,
    pub max_detection_p99: Option<Dur>,
    pub max_detection: Option<Dur>,
    /// Failures that may end undetected.
    pub max_missed: Option<u64>,
    /// False suspicions counted over all runs.
    pub max_false_suspicions: Option<u64>,
    /// False suspicions per connection-hour: the upper end of the confidence interval must be
    /// at most this.
    pub max_false_per_hour: Option<f64>,
    /// Confidence of that interval (default 0.95).
    pub confidence: Option<f64>,
    pub max_mistake_duration: Option<Dur>,
    /// Fraction of time a live peer is trusted, e.g. 0.999.
    pub min_query_accuracy: Option<f64>,
    /// Reconnection attempts (every attempt but each client's first) in any one-second window:
    /// a reconnect storm's peak.
    pub max_connect_peak: Option<u64>,
    /// Failures that must occur (guards against a fault schedule that silently does nothing).
    pub min_failures: Option<u64>,
    /// Messages lost over all runs: neither delivered nor reported undelivered to their sender
    /// (default 0 whenever the scenario has traffic).
    pub max_lost: Option<u64>,
    /// Messages delivered more than once (default 0 with traffic).
    pub max_duplicated: Option<u64>,
    /// Messages delivered after a later one of their channel (default 0 with traffic).
    pub max_reordered: Option<u64>,
    /// Deliveries no sender can account for (default 0 with traffic).
    pub max_unaccounted: Option<u64>,
    /// Delivery latency, from the hand-over to the session to the receiving application.
    pub max_delivery_p50: Option<Dur>,
    pub max_delivery_p99: Option<Dur>,
    /// Messages checked that must be sent (guards against traffic that silently sends nothing).
    pub min_messages: Option<u64>,
}

/// Limits a recommended pairing must meet (flags of `mcpsim tune` override them).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Detection time p99 on both sides at most this, and no missed detection.
    pub max_detection: Option<Dur>,
    /// False suspicions per connection-hour (the upper end of the interval) at most this.
    pub max_false_per_hour: Option<f64>,
    /// Of that interval (default 0.95).
    pub confidence: Option<f64>,
}

/// The snapshot run: one seed, one pairing, few sessions, so its trace reads in a diff.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSpec {
    /// Default: the first seed.
    pub seed: Option<u64>,
    /// Default: the first pairing.
    pub pairing: Option<String>,
    /// Default: the scenario's sessions, at most 3.
    pub sessions: Option<usize>,
    /// Default: the scenario's duration.
    pub duration: Option<Dur>,
}
