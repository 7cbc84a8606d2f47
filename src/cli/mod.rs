//! Command-line front ends: argument parsing and presentation only.
//!
//! Each subcommand lives in its own module with a `clap::Args` struct and a `run` function.
//! Errors reach `main` as one clear message and a non-zero exit status, never a panic.
//!
//! - [`serve`] and [`client`]: the network server and a client (or many, for load).
//! - [`observe`]: logs, Prometheus metrics and alert webhooks for what the drivers report.
//! - [`opts`]: flags and helpers both network commands share.

pub mod client;
pub mod observe;
pub mod opts;
pub mod serve;
pub mod sweep;

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
}
