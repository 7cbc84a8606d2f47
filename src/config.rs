//! One stack configuration for the simulator and the real binaries.
//!
//! [`StackConfig`] is everything that decides how a side of MCP behaves: the heartbeat (mode,
//! interval η, miss threshold k, detector and its tunables, grace), the health rules, the
//! client's reconnect policy (backoff and circuit breaker), the session's resume window and
//! handshake timeout, the server's interval bounds, and the TCP socket options. The same struct,
//! with the same defaults, is
//!
//! - a scenario file's `[stack]` table (the grid then varies η, k and the detector),
//! - what `mcpsim tune --emit-config` writes for the recommended pairing,
//! - what `mcpsim serve --config F` and `mcpsim client --config F` run (flags override it).
//!
//! and [`StackConfig::server_options`] / [`StackConfig::client_options`] are the only way the
//! simulator and the binaries turn it into the drivers' options, so a figure measured on one
//! configuration is a figure for the binaries run with it. `docs/configuration.md` is the
//! reference.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::net::client::ClientOptions;
use crate::net::server::ServerOptions;
use crate::proto::backoff::{BackoffConfig, BreakerConfig, Jitter, Policy, ReconnectConfig};
use crate::proto::detector::{
    AdaptiveConfig, DetectorConfig, KMissConfig, PhiConfig, TcpScheduleConfig,
};
use crate::proto::frame::{HeartbeatMode, HeartbeatParams};
use crate::proto::health::HealthConfig;
use crate::proto::throttle::ThrottleConfig;
use crate::units::{ByteSize, Dur, Percent, show};

/// The whole stack configuration. Every table and field may be left out: it then takes the
/// default shown in `docs/configuration.md` (`mcpsim serve --print-config` prints them all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    pub heartbeat: Heartbeat,
    pub health: Health,
    pub reconnect: Reconnect,
    pub session: SessionLimits,
    pub server: ServerBounds,
    pub tcp: Tcp,
    pub throttle: Throttle,
}

/// Load-aware heartbeats, server side (`docs/configuration.md`): while the server's CPU stays
/// high it grants a longer interval (CONFIG), and the configured one again when it falls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Throttle {
    /// Throttle at all (default false).
    pub enabled: bool,
    /// CPU share at or above which the interval is lengthened (default 80%).
    pub high: Percent,
    /// CPU share at or below which the configured interval comes back (default 50%).
    pub low: Percent,
    /// The lengthened interval is the granted one times this (default 2).
    pub factor: u32,
    /// How long the load must stay past a threshold before the grant changes (default 2s).
    pub hold: Dur,
    /// Heartbeats and their replies carry the sender's timestamp and load (CPU, memory), which
    /// the peer's logs show (default: when throttling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_load: Option<bool>,
}

impl Default for Throttle {
    fn default() -> Throttle {
        let d = ThrottleConfig::default();
        Throttle {
            enabled: false,
            high: Percent(d.high),
            low: Percent(d.low),
            factor: d.factor,
            hold: Dur(d.hold),
            report_load: None,
        }
    }
}

impl Throttle {
    /// The policy, when throttling is on.
    pub fn policy(&self) -> Option<ThrottleConfig> {
        self.enabled.then_some(ThrottleConfig {
            high: self.high.0,
            low: self.low.0,
            factor: self.factor,
            hold: self.hold.0,
        })
    }

    /// Whether heartbeats carry load figures.
    pub fn reports_load(&self) -> bool {
        self.report_load.unwrap_or(self.enabled)
    }
}

/// Who beats, how often, and who judges the peer from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Heartbeat {
    /// Who sends heartbeats (default two-way).
    pub mode: Mode,
    /// Heartbeat interval η (default 1s).
    pub interval: Dur,
    /// Miss threshold k (1 to 255, default 3).
    pub miss_threshold: u8,
    /// The failure detector each side runs on its peer (default k-miss).
    pub detector: DetectorKind,
    /// Grace δ₀ added to the k-miss and adaptive deadlines, to absorb delay and jitter
    /// (default 0ms).
    pub grace: Dur,
    pub phi: PhiSpec,
    pub adaptive: AdaptiveSpec,
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat {
            mode: Mode::TwoWay,
            interval: Dur(Duration::from_secs(1)),
            miss_threshold: 3,
            detector: DetectorKind::KMiss,
            grace: Dur(Duration::ZERO),
            phi: PhiSpec::default(),
            adaptive: AdaptiveSpec::default(),
        }
    }
}

/// Heartbeat mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The client heartbeats; the server answers each beat.
    OneWay,
    /// Both sides heartbeat on their own schedule.
    #[default]
    TwoWay,
}

impl From<Mode> for HeartbeatMode {
    fn from(m: Mode) -> HeartbeatMode {
        match m {
            Mode::OneWay => HeartbeatMode::OneWay,
            Mode::TwoWay => HeartbeatMode::TwoWay,
        }
    }
}

/// A failure detector.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// Suspect after k missed heartbeats (plus grace).
    #[default]
    KMiss,
    /// Phi accrual (Hayashibara et al.), as in Akka and Cassandra.
    Phi,
    /// On a first miss, probe faster before suspecting.
    Adaptive,
    /// Wait for the next heartbeat's (k − 1)-th TCP resend, timed from measured round trips.
    Tcp,
}

impl DetectorKind {
    /// What `η/k` means for each detector, for the legends of every table that shows pairings.
    pub const PAIRING_LEGEND: &'static str = "pairings are [detector:]η/k: k-miss (no prefix) \
        suspects after k missed heartbeats; phi uses its threshold (8 unless set) with an \
        acceptable pause of (k − 1)·η, the threshold itself does not depend on k; adaptive \
        sends k − 1 probes η/4 apart after a first miss; tcp suspects when the next heartbeat \
        is later than its (k − 1)-th TCP resend would be.";

    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::KMiss => "k-miss",
            DetectorKind::Phi => "phi",
            DetectorKind::Adaptive => "adaptive",
            DetectorKind::Tcp => "tcp",
        }
    }

    /// `k-miss`, `phi`, `adaptive` or `tcp`.
    pub fn parse(s: &str) -> Option<DetectorKind> {
        match s {
            "k-miss" => Some(DetectorKind::KMiss),
            "phi" => Some(DetectorKind::Phi),
            "adaptive" => Some(DetectorKind::Adaptive),
            "tcp" => Some(DetectorKind::Tcp),
            _ => None,
        }
    }
}

/// Phi accrual tunables (Akka's defaults unless given).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhiSpec {
    /// Suspect when phi reaches this (default 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Floor on the standard deviation (default 100ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_std_deviation: Option<Dur>,
    /// Silence tolerated on top of the mean interval. Default: (k − 1)·η, so that the miss
    /// threshold k means for phi what it means for k-miss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acceptable_pause: Option<Dur>,
    /// Inter-arrival samples kept (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sample_size: Option<usize>,
}

/// Adaptive probing tunables.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSpec {
    /// Time between probes after a first miss (default η/4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_interval: Option<Dur>,
    /// Probes before suspecting (default k − 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
}

/// When a connection is degraded, and when a suspected peer is dead
/// (`docs/protocol.md` §11.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    /// A heartbeat round trip over this is a bad sample (default 500ms) …
    pub rtt_limit: Dur,
    /// … and this many in a row degrade the connection (default 3); as many good ones recover.
    pub rtt_count: u32,
    /// The lost fraction of the last `loss_window` heartbeats over this is a bad evaluation
    /// (default 5%) …
    pub loss_limit: Percent,
    /// … and this many in a row degrade the connection (default 2).
    pub loss_count: u32,
    /// Heartbeats the loss fraction covers (default 20).
    pub loss_window: u32,
    /// How long a suspicion lasts before the peer is declared dead and its connection closed
    /// (default 0ms: dead at the instant of suspicion, as the protocol's k·η says).
    pub dead_after: Dur,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            rtt_limit: Dur(Duration::from_millis(500)),
            rtt_count: 3,
            loss_limit: Percent(0.05),
            loss_count: 2,
            loss_window: 20,
            dead_after: Dur(Duration::ZERO),
        }
    }
}

/// How delays grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackoffKind {
    Fixed,
    #[default]
    Exponential,
}

/// How delays are randomised (AWS, "Exponential Backoff And Jitter", 2015).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JitterKind {
    None,
    #[default]
    Full,
    Equal,
    Decorrelated,
}

/// The client's reconnect policy: backoff, a retry cap and a circuit breaker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Reconnect {
    /// How delays grow (default exponential).
    pub backoff: BackoffKind,
    /// Growth factor of exponential backoff (default 2).
    pub factor: f64,
    /// First delay (default 100ms).
    pub base: Dur,
    /// Longest delay (default 30s).
    pub cap: Dur,
    /// How delays are randomised (default full).
    pub jitter: JitterKind,
    /// Failed attempts in a row before the client gives up; 0 retries forever (default 0).
    pub max_attempts: u32,
    /// A connection attempt that takes longer fails (default 5s).
    pub connect_timeout: Dur,
    /// Failures in a row that open the circuit breaker (default 5).
    pub breaker_threshold: u32,
    /// How long an open breaker refuses attempts, at most (default 30s) …
    pub breaker_cooldown: Dur,
    /// … and at least this much less, drawn at random each time it opens, so that clients
    /// refused together do not return together (default 50%).
    pub breaker_jitter: Percent,
}

impl Default for Reconnect {
    fn default() -> Reconnect {
        Reconnect {
            backoff: BackoffKind::Exponential,
            factor: 2.0,
            base: Dur(Duration::from_millis(100)),
            cap: Dur(Duration::from_secs(30)),
            jitter: JitterKind::Full,
            max_attempts: 0,
            connect_timeout: Dur(Duration::from_secs(5)),
            breaker_threshold: 5,
            breaker_cooldown: Dur(Duration::from_secs(30)),
            breaker_jitter: Percent(0.5),
        }
    }
}

/// Session lifetimes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SessionLimits {
    /// How long the server keeps a disconnected session for its client to resume (default 30s).
    pub resume_window: Dur,
    /// Both sides: a connection without a complete handshake by then is closed (default 5s).
    pub handshake_timeout: Dur,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            resume_window: Dur(Duration::from_secs(30)),
            handshake_timeout: Dur(Duration::from_secs(5)),
        }
    }
}

/// What the server grants: requested intervals are clamped into these bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerBounds {
    /// Shortest interval granted (default 100ms).
    pub min_interval: Dur,
    /// Longest interval granted (default 60s).
    pub max_interval: Dur,
    /// Connections served at once; more are refused with SERVER_BUSY (default 50,000).
    pub max_connections: usize,
    /// Sessions kept, attached or awaiting resume; more are refused with SERVER_BUSY (default
    /// 100,000).
    pub max_sessions: usize,
}

impl Default for ServerBounds {
    fn default() -> ServerBounds {
        ServerBounds {
            min_interval: Dur(Duration::from_millis(100)),
            max_interval: Dur(Duration::from_secs(60)),
            max_connections: 50_000,
            max_sessions: 100_000,
        }
    }
}

/// Socket options of both sides' TCP connections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Tcp {
    /// `TCP_USER_TIMEOUT`: a connection whose sent data stays unacknowledged this long is
    /// broken by the kernel. Default: the kernel's (`tcp_retries2`, about 15 minutes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_timeout: Option<Dur>,
    /// TCP keepalive: probe after this much idle time, and as often after that (default off).
    /// Heartbeats keep a connection from idling, so it matters only when η is longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Dur>,
    /// `SO_SNDBUF` on both sides' sockets, and the drivers' own write buffer (default 256 KiB)
    /// capped at it. The protocol sends control frames (heartbeats, their replies, ACKs) ahead of
    /// DATA, but only ahead of what is still in the session: behind a bulk transfer they wait for
    /// everything already in these two buffers. Small buffers keep that wait short. Default: the
    /// kernel's (autotuned, up to 4 MiB on Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_buffer: Option<ByteSize>,
}

/// A configuration that cannot run, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// `heartbeat.interval`, `reconnect.base`, …
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        message: message.into(),
    }
}

fn whole_ms(field: &'static str, d: Dur) -> Result<u64, ConfigError> {
    if !d.0.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(bad(
            field,
            format!("{d} must be a whole number of milliseconds"),
        ));
    }
    Ok(d.0.as_millis() as u64)
}

impl StackConfig {
    /// Reads a configuration file (TOML). The error names the file, and the line, column and
    /// field of the mistake.
    pub fn load(path: &std::path::Path) -> Result<StackConfig, String> {
        let text = crate::scenario::read_text(path)
            .map_err(|e| format!("configuration {}: {e}", path.display()))?;
        StackConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a configuration's TOML text.
    pub fn parse(text: &str) -> Result<StackConfig, String> {
        let c: StackConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// The configuration as a TOML document.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a stack configuration is always representable")
    }

    /// The heartbeat pairing it runs: `k-miss:1s/3`.
    pub fn pairing_name(&self) -> String {
        format!(
            "{}:{}/{}",
            self.heartbeat.detector.name(),
            show(self.heartbeat.interval.0),
            self.heartbeat.miss_threshold
        )
    }

    /// Checks every field, and the fields against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.heartbeat;
        let interval = whole_ms("heartbeat.interval", h.interval)?;
        if interval == 0 || interval > u32::MAX as u64 {
            return Err(bad(
                "heartbeat.interval",
                format!("{} is out of range (1ms up to 49 days)", h.interval),
            ));
        }
        for (key, n) in [
            ("server.max_connections", self.server.max_connections),
            ("server.max_sessions", self.server.max_sessions),
        ] {
            if n == 0 {
                return Err(bad(
                    key,
                    "must be at least 1: the server would refuse everyone",
                ));
            }
        }
        let (lo, hi) = (
            whole_ms("server.min_interval", self.server.min_interval)?,
            whole_ms("server.max_interval", self.server.max_interval)?,
        );
        if lo == 0 || lo > hi || hi > u32::MAX as u64 {
            return Err(bad(
                "server.min_interval",
                format!(
                    "the bounds [{}, {}] are not an interval of at least 1ms",
                    self.server.min_interval, self.server.max_interval
                ),
            ));
        }
        if !(lo..=hi).contains(&interval) {
            return Err(bad(
                "heartbeat.interval",
                format!(
                    "{} is outside the server's bounds [{}, {}]: the server would grant a \
                     different interval (set server.min_interval / server.max_interval)",
                    h.interval, self.server.min_interval, self.server.max_interval
                ),
            ));
        }
        if h.miss_threshold == 0 {
            return Err(bad("heartbeat.miss_threshold", "must be at least 1"));
        }
        if let Some(p) = self.throttle.policy() {
            p.check().map_err(|e| bad("throttle", e))?;
        }
        if let Some(t) = h.phi.threshold
            && !(t.is_finite() && t > 0.0)
        {
            return Err(bad(
                "heartbeat.phi.threshold",
                format!("must be a positive number, found {t}"),
            ));
        }
        if let Some(n) = h.phi.max_sample_size
            && !(1..=65_536).contains(&n)
        {
            return Err(bad(
                "heartbeat.phi.max_sample_size",
                format!("must be 1 to 65536, found {n}"),
            ));
        }
        if h.adaptive.probes == Some(0) {
            return Err(bad("heartbeat.adaptive.probes", "must be at least 1"));
        }
        if h.adaptive.probe_interval.is_some_and(|d| d.0.is_zero()) {
            return Err(bad("heartbeat.adaptive.probe_interval", "must be positive"));
        }
        let he = &self.health;
        if he.rtt_count == 0 {
            return Err(bad("health.rtt_count", "must be at least 1"));
        }
        if he.loss_count == 0 {
            return Err(bad("health.loss_count", "must be at least 1"));
        }
        if !(1..=4096).contains(&he.loss_window) {
            return Err(bad(
                "health.loss_window",
                format!("must be 1 to 4096, found {}", he.loss_window),
            ));
        }
        if he.loss_limit.0 > 1.0 {
            return Err(bad("health.loss_limit", "must be at most 100%"));
        }
        let r = &self.reconnect;
        if r.breaker_jitter.0 > 1.0 {
            return Err(bad("reconnect.breaker_jitter", "must be at most 100%"));
        }
        if r.connect_timeout.0.is_zero() {
            return Err(bad("reconnect.connect_timeout", "must be positive"));
        }
        if self.session.handshake_timeout.0.is_zero() {
            return Err(bad("session.handshake_timeout", "must be positive"));
        }
        self.reconnect_config()?;
        if let Some(b) = self.tcp.send_buffer
            && !(1448..=(1 << 30)).contains(&b.0)
        {
            return Err(bad(
                "tcp.send_buffer",
                format!("{b} is out of range: at least one segment (1448 bytes), at most 1GiB"),
            ));
        }
        if let Some(t) = self.tcp.user_timeout
            && (t.0.is_zero() || t.0.as_millis() > u32::MAX as u128)
        {
            return Err(bad(
                "tcp.user_timeout",
                format!("{t} is out of range (1ms up to 49 days)"),
            ));
        }
        if let Some(t) = self.tcp.keepalive
            && t.0 < Duration::from_secs(1)
        {
            return Err(bad(
                "tcp.keepalive",
                format!("{t} is shorter than the kernel's 1s granularity"),
            ));
        }
        Ok(())
    }

    /// The heartbeat parameters a client asks for and a server grants by default.
    pub fn heartbeat_params(&self) -> HeartbeatParams {
        HeartbeatParams {
            interval_ms: self.heartbeat.interval.0.as_millis() as u32,
            miss_threshold: self.heartbeat.miss_threshold,
        }
    }

    /// The failure detector of both sides.
    pub fn detector_config(&self) -> DetectorConfig {
        let h = &self.heartbeat;
        match h.detector {
            DetectorKind::KMiss => DetectorConfig::KMiss(KMissConfig { grace: h.grace.0 }),
            DetectorKind::Phi => {
                let d = PhiConfig::default();
                DetectorConfig::Phi(PhiConfig {
                    threshold: h.phi.threshold.unwrap_or(d.threshold),
                    max_sample_size: h.phi.max_sample_size.unwrap_or(d.max_sample_size),
                    min_std_deviation: h.phi.min_std_deviation.map_or(d.min_std_deviation, |x| x.0),
                    acceptable_heartbeat_pause: h.phi.acceptable_pause.map_or(
                        PhiConfig::pause_for_miss_threshold(h.interval.0, h.miss_threshold.into()),
                        |x| x.0,
                    ),
                })
            }
            DetectorKind::Adaptive => DetectorConfig::Adaptive(AdaptiveConfig {
                grace: h.grace.0,
                probe_interval: h.adaptive.probe_interval.map(|x| x.0),
                probes: h.adaptive.probes,
            }),
            DetectorKind::Tcp => DetectorConfig::Tcp(TcpScheduleConfig { grace: h.grace.0 }),
        }
    }

    /// The health rules of both sides.
    pub fn health_config(&self) -> HealthConfig {
        let h = &self.health;
        HealthConfig {
            rtt_limit: h.rtt_limit.0,
            rtt_consecutive: h.rtt_count,
            loss_limit: h.loss_limit.0,
            loss_consecutive: h.loss_count,
            loss_window: h.loss_window,
            reply_timeout: self.heartbeat.interval.0,
            dead_after: h.dead_after.0,
        }
    }

    /// The client's reconnect policy.
    pub fn reconnect_config(&self) -> Result<ReconnectConfig, ConfigError> {
        let r = &self.reconnect;
        let backoff = BackoffConfig {
            policy: match r.backoff {
                BackoffKind::Fixed => Policy::Fixed,
                BackoffKind::Exponential => Policy::Exponential { factor: r.factor },
            },
            base_ms: whole_ms("reconnect.base", r.base)?,
            cap_ms: whole_ms("reconnect.cap", r.cap)?,
            jitter: match r.jitter {
                JitterKind::None => Jitter::None,
                JitterKind::Full => Jitter::Full,
                JitterKind::Equal => Jitter::Equal,
                JitterKind::Decorrelated => Jitter::Decorrelated,
            },
            max_attempts: (r.max_attempts != 0).then_some(r.max_attempts),
        };
        backoff
            .validate()
            .map_err(|e| bad("reconnect", e.to_string()))?;
        let breaker = BreakerConfig {
            failure_threshold: r.breaker_threshold,
            cooldown_ms: whole_ms("reconnect.breaker_cooldown", r.breaker_cooldown)?,
            cooldown_jitter: r.breaker_jitter.0,
        };
        breaker
            .validate()
            .map_err(|e| bad("reconnect", e.to_string()))?;
        Ok(ReconnectConfig { backoff, breaker })
    }

    /// The server's options: defaults granted to clients that ask for nothing, interval
    /// bounds, detector, health, resume window and handshake timeout. The caller adds the
    /// name, credential, limits and seed.
    pub fn server_options(&self) -> ServerOptions {
        let mut opts = ServerOptions {
            handshake_timeout: self.session.handshake_timeout.0,
            ..ServerOptions::default()
        };
        let c = &mut opts.config;
        let p = self.heartbeat_params();
        c.default_interval_ms = p.interval_ms;
        c.default_miss_threshold = p.miss_threshold;
        c.default_mode = self.heartbeat.mode.into();
        c.min_interval_ms = self.server.min_interval.0.as_millis() as u32;
        c.max_interval_ms = self.server.max_interval.0.as_millis() as u32;
        c.resume_window = self.session.resume_window.0;
        c.session.detector = self.detector_config();
        c.session.health = Some(self.health_config());
        opts.throttle = self.throttle.policy();
        opts.report_load = self.throttle.reports_load();
        opts.limits.write_buffer = self.write_buffer(opts.limits.write_buffer);
        opts.max_connections = self.server.max_connections;
        opts.config.max_sessions = self.server.max_sessions;
        opts
    }

    /// The drivers' write buffer: `default`, capped at `tcp.send_buffer` when set.
    fn write_buffer(&self, default: usize) -> usize {
        match self.tcp.send_buffer {
            Some(b) => default.min(usize::try_from(b.0).unwrap_or(usize::MAX)),
            None => default,
        }
    }

    /// The client's options: the heartbeat it asks for, its detector and health rules, its
    /// reconnect policy and timeouts. The caller adds the name, credential and seed.
    pub fn client_options(&self) -> Result<ClientOptions, ConfigError> {
        let mut opts = ClientOptions {
            reconnect: self.reconnect_config()?,
            connect_timeout: self.reconnect.connect_timeout.0,
            ..ClientOptions::default()
        };
        let s = &mut opts.session;
        s.requested = Some(self.heartbeat_params());
        s.mode = Some(self.heartbeat.mode.into());
        s.handshake_timeout = self.session.handshake_timeout.0;
        s.session.detector = self.detector_config();
        s.session.health = Some(self.health_config());
        opts.limits.write_buffer = self.write_buffer(opts.limits.write_buffer);
        opts.report_load = self.throttle.reports_load();
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_survive_a_round_trip_through_toml() {
        let c = StackConfig::default();
        assert_eq!(StackConfig::parse(&c.to_toml()), Ok(c));
    }

    #[test]
    fn an_empty_file_is_the_default_configuration() {
        assert_eq!(StackConfig::parse(""), Ok(StackConfig::default()));
    }

    #[test]
    fn the_server_limits_reach_the_server_on_both_the_binary_and_the_simulator() {
        let c = StackConfig::parse("[server]\nmax_connections = 7\nmax_sessions = 9\n").unwrap();
        let opts = c.server_options();
        assert_eq!((opts.max_connections, opts.config.max_sessions), (7, 9));
        let e = StackConfig::parse("[server]\nmax_connections = 0\n").unwrap_err();
        assert!(e.starts_with("server.max_connections:"), "{e}");
    }

    #[test]
    fn a_misspelt_field_is_an_error_naming_it() {
        let e = StackConfig::parse("[heartbeat]\nintervall = \"1s\"\n").unwrap_err();
        assert!(e.contains("intervall"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn an_interval_the_server_would_clamp_is_refused() {
        let e = StackConfig::parse("[heartbeat]\ninterval = \"50ms\"\n").unwrap_err();
        assert!(e.starts_with("heartbeat.interval:"), "{e}");
        assert!(e.contains("server.min_interval"), "{e}");
        let ok = StackConfig::parse(
            "[heartbeat]\ninterval = \"50ms\"\n[server]\nmin_interval = \"10ms\"\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn phi_pauses_for_k_minus_one_intervals_unless_told() {
        let mut c = StackConfig::default();
        c.heartbeat.detector = DetectorKind::Phi;
        c.heartbeat.interval = Dur(Duration::from_millis(500));
        c.heartbeat.miss_threshold = 4;
        match c.detector_config() {
            DetectorConfig::Phi(p) => {
                assert_eq!(p.acceptable_heartbeat_pause, Duration::from_millis(1500))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_and_client_run_the_same_heartbeat() {
        let c = StackConfig::parse(
            "[heartbeat]\nmode = \"one-way\"\ninterval = \"2s\"\nmiss_threshold = 2\ngrace = \"100ms\"\n",
        )
        .unwrap();
        let server = c.server_options();
        let client = c.client_options().unwrap();
        assert_eq!(server.config.default_interval_ms, 2000);
        assert_eq!(server.config.default_miss_threshold, 2);
        assert_eq!(server.config.default_mode, HeartbeatMode::OneWay);
        assert_eq!(client.session.requested, Some(c.heartbeat_params()));
        assert_eq!(client.session.mode, Some(HeartbeatMode::OneWay));
        assert_eq!(
            server.config.session.detector,
            client.session.session.detector
        );
        assert_eq!(server.config.session.health, client.session.session.health);
    }

    #[test]
    fn a_bad_reconnect_policy_names_its_table() {
        let e = StackConfig::parse("[reconnect]\nbase = \"0ms\"\n").unwrap_err();
        assert!(e.starts_with("reconnect"), "{e}");
    }
}
