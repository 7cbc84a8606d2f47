//! Command-line front ends: argument parsing and presentation only.
//!
//! Each subcommand lives in its own module with a `clap::Args` struct and a `run` function.
//! Errors reach `main` as one clear message and a non-zero exit status, never a panic.
//!
//! - [`serve`] and [`client`]: the network server and a client (or many, for load).
//! - [`observe`]: logs, Prometheus metrics and alert webhooks for what the drivers report.
//! - [`cert`]: a CA and a server certificate for TLS.
//! - [`opts`]: flags and helpers both network commands share.

pub mod cert;
pub mod client;
pub mod compare;
pub mod observe;
pub mod opts;
pub mod replay;
pub mod run;
pub mod serve;
pub mod sweep;
pub mod tune;

/// An error from a subcommand, already worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Something failed while running, e.g. an address that cannot be bound.
    #[error("{0}")]
    Run(String),
    /// A scenario file that cannot be used: its place and what is wrong.
    #[error(transparent)]
    Scenario(Box<crate::scenario::ScenarioError>),
    /// The run worked and an assertion did not hold (already reported).
    #[error("{0}")]
    Failed(String),
}

impl From<crate::scenario::ScenarioError> for CliError {
    fn from(e: crate::scenario::ScenarioError) -> CliError {
        CliError::Scenario(Box::new(e))
    }
}

impl CliError {
    /// The exit status: 2 for input that cannot be used, 1 for everything else (a failed
    /// assertion, a run that could not be done).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Scenario(_) => 2,
            _ => 1,
        }
    }
}
