//! Flags and helpers shared by `mcpsim serve` and `mcpsim client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::CliError;
use crate::proto::detector::DetectorConfig;
use crate::proto::frame::HeartbeatMode;

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
}

impl DetectorKind {
    pub fn config(self) -> DetectorConfig {
        match self {
            DetectorKind::KMiss => DetectorConfig::KMiss(Default::default()),
            DetectorKind::Phi => DetectorConfig::Phi(Default::default()),
            DetectorKind::Adaptive => DetectorConfig::Adaptive(Default::default()),
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

impl From<Mode> for HeartbeatMode {
    fn from(m: Mode) -> HeartbeatMode {
        match m {
            Mode::OneWay => HeartbeatMode::OneWay,
            Mode::TwoWay => HeartbeatMode::TwoWay,
        }
    }
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
