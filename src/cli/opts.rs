//! Flags and helpers shared by `mcpsim serve` and `mcpsim client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::CliError;
use crate::config::{self, StackConfig};
use crate::units::Dur;

/// Parses `500ms`, `1s`, `2.5s`, `1m 30s`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    // humantime has no fractional units; `2.5s` is common enough to accept.
    if let Some(secs) = s.strip_suffix('s').filter(|n| n.contains('.'))
        && let Ok(v) = secs.parse::<f64>()
    {
        return Duration::try_from_secs_f64(v).map_err(|e| e.to_string());
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 500ms, 1s, 2.5s)"))
}

/// The failure detector watching the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DetectorKind {
    /// Suspect after k missed heartbeats.
    KMiss,
    /// φ accrual over the observed inter-arrival times.
    Phi,
    /// Probe on the first miss, suspect when probes go unanswered.
    Adaptive,
    /// Wait for the next heartbeat's (k − 1)-th TCP resend, timed from measured round trips.
    Tcp,
}

impl From<DetectorKind> for config::DetectorKind {
    fn from(d: DetectorKind) -> config::DetectorKind {
        match d {
            DetectorKind::KMiss => config::DetectorKind::KMiss,
            DetectorKind::Phi => config::DetectorKind::Phi,
            DetectorKind::Adaptive => config::DetectorKind::Adaptive,
            DetectorKind::Tcp => config::DetectorKind::Tcp,
        }
    }
}

/// Who sends heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The client beats, the server acknowledges.
    OneWay,
    /// Both sides beat and acknowledge.
    TwoWay,
}

impl From<Mode> for config::Mode {
    fn from(m: Mode) -> config::Mode {
        match m {
            Mode::OneWay => config::Mode::OneWay,
            Mode::TwoWay => config::Mode::TwoWay,
        }
    }
}

/// The stack configuration (`docs/configuration.md`) and the flags that override it, shared
/// by `mcpsim serve` and `mcpsim client`. Without `--config` the built-in defaults apply, the
/// same the simulator runs.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Run this stack configuration (TOML; `mcpsim tune --emit-config` writes one). Flags
    /// override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (defaults, then --config, then flags) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Heartbeat interval η [config: heartbeat.interval, default 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Missed heartbeats before the peer is suspected [heartbeat.miss_threshold, default 3].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u8).range(1..))]
    pub miss_threshold: Option<u8>,
    /// Failure detector watching the peer [heartbeat.detector, default k-miss].
    #[arg(long, value_enum)]
    pub detector: Option<DetectorKind>,
    /// Heartbeat mode [heartbeat.mode, default two-way].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Grace added to the detector's deadline [heartbeat.grace, default 0ms].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub grace: Option<Duration>,
    /// A connection without a complete handshake by then is closed [session.handshake_timeout,
    /// default 5s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub handshake_timeout: Option<Duration>,
    /// TCP_USER_TIMEOUT: unacknowledged data this old breaks the connection [tcp.user_timeout].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub tcp_user_timeout: Option<Duration>,
    /// TCP keepalive: probe after this much idle time, and as often after that [tcp.keepalive].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keepalive: Option<Duration>,
}

impl StackArgs {
    /// The configuration to run: the defaults, then `--config`, then the flags (the common
    /// ones here, the command's own in `more`), checked as a whole.
    pub fn effective(&self, more: impl FnOnce(&mut StackConfig)) -> Result<StackConfig, CliError> {
        let mut c = match &self.config {
            Some(path) => StackConfig::load(path).map_err(CliError::Usage)?,
            None => StackConfig::default(),
        };
        let h = &mut c.heartbeat;
        if let Some(d) = self.heartbeat_interval {
            h.interval = Dur(d);
        }
        if let Some(k) = self.miss_threshold {
            h.miss_threshold = k;
        }
        if let Some(d) = self.detector {
            h.detector = d.into();
        }
        if let Some(m) = self.mode {
            h.mode = m.into();
        }
        if let Some(g) = self.grace {
            h.grace = Dur(g);
        }
        if let Some(t) = self.handshake_timeout {
            c.session.handshake_timeout = Dur(t);
        }
        if let Some(t) = self.tcp_user_timeout {
            c.tcp.user_timeout = Some(Dur(t));
        }
        if let Some(t) = self.keepalive {
            c.tcp.keepalive = Some(Dur(t));
        }
        more(&mut c);
        c.validate().map_err(|e| {
            let source = self.config.as_ref().map_or("the flags".to_string(), |p| {
                format!("{} with the flags", p.display())
            });
            CliError::Usage(format!("the configuration ({source}) cannot run: {e}"))
        })?;
        Ok(c)
    }
}

/// What `--print-config` prints: the effective configuration, with where it came from.
pub fn print_config(command: &str, args: &StackArgs, c: &StackConfig) {
    let from = args
        .config
        .as_ref()
        .map_or("the built-in defaults".to_string(), |p| {
            p.display().to_string()
        });
    println!(
        "# The effective stack configuration of `mcpsim {command}` ({from}, then flags).\n\
         # Reference: docs/configuration.md\n\n{}",
        c.to_toml()
    );
}

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the shared secret comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretArgs {
    /// Read the shared secret from this file (trailing newline ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "secret_env")]
    pub secret_file: Option<PathBuf>,
    /// Read the shared secret from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
}

impl SecretArgs {
    /// The secret, if one was asked for.
    pub fn load(&self) -> Result<Option<Bytes>, CliError> {
        let secret = if let Some(path) = &self.secret_file {
            let raw = std::fs::read(path).map_err(|e| {
                CliError::Run(format!("cannot read secret file {}: {e}", path.display()))
            })?;
            let end = raw
                .iter()
                .rposition(|b| !matches!(b, b'\n' | b'\r'))
                .map_or(0, |i| i + 1);
            if end == 0 {
                return Err(CliError::Run(format!(
                    "secret file {} is empty",
                    path.display()
                )));
            }
            Bytes::copy_from_slice(&raw[..end])
        } else if let Some(var) = &self.secret_env {
            match std::env::var_os(var) {
                Some(v) if !v.is_empty() => Bytes::from(v.into_encoded_bytes()),
                _ => {
                    return Err(CliError::Run(format!(
                        "environment variable {var} (--secret-env) is not set or empty"
                    )));
                }
            }
        } else {
            return Ok(None);
        };
        Ok(Some(secret))
    }
}

/// Logs, metrics and alerts.
#[derive(Debug, Clone, clap::Args)]
pub struct ObserveArgs {
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log format on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// POST a JSON alert to this URL when a peer is declared dead.
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
}

/// SIGINT and SIGTERM, registered up front so that neither kills the process before a
/// graceful shutdown can start.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn register() -> Result<Signals, CliError> {
        let err = |e: std::io::Error| CliError::Run(format!("cannot install signal handlers: {e}"));
        Ok(Signals {
            int: signal(SignalKind::interrupt()).map_err(err)?,
            term: signal(SignalKind::terminate()).map_err(err)?,
        })
    }

    /// Resolves at the first SIGINT or SIGTERM, with the signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_forms_people_write() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(duration("xyz").is_err());
        assert!(duration("-1.5s").is_err());
    }
}
