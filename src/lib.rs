//! mcpsim: the Message Channel Protocol (MCP) and a deterministic simulator to tune its heartbeats.
//!
//! # Layout
//!
//! - [`proto`]: the sans-IO protocol core: frames, sessions, failure detectors, health, backoff.
//! - [`net`]: async drivers over any byte stream: the real server and client, also run by the
//!   simulator.
//! - [`sim`]: the simulation layer; for now the synthetic heartbeat model that measures detectors.
//! - [`cli`]: the `mcpsim` subcommands (presentation only).
//!
//! Dependencies point one way: `cli → report → sim → net → proto`.

pub mod cli;
pub mod config;
pub mod net;
pub mod proto;
pub mod scenario;
pub mod sim;
pub mod tune;
pub mod units;
