//! Command-line front ends: argument parsing and presentation only.
//!
//! Each subcommand lives in its own module with a `clap::Args` struct and a `run` function.
//! Errors reach `main` as one clear message and a non-zero exit status, never a panic.

pub mod sweep;

/// An error from a subcommand, already worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
