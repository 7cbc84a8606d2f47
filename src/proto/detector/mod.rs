//! Failure detectors: pure state machines that turn heartbeat arrivals into trust and suspicion.
//!
//! # Calling protocol
//!
//! - [`Detector::handle_heartbeat`] for every heartbeat (or probe reply) from the peer.
//! - [`Detector::handle_timeout`] whenever `now` reaches [`Detector::poll_timeout`]; calling it
//!   early or more often is harmless.
//! - Drain [`Detector::poll_event`] after either call: `Suspect`, `Trust` and `Probe` requests,
//!   oldest first. A `Probe` asks the owner to send one extra heartbeat now (adaptive probing).
//! - [`Detector::set_params`] when the heartbeat interval or miss threshold changes (handshake,
//!   CONFIG frame). The detector re-arms as if a heartbeat had arrived at `now`.
//!
//! A detector starts trusting, with a virtual heartbeat at its creation time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::Time;

/// What a detector currently believes about its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Verdict {
    Trust,
    Suspect,
}

/// An output of a detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DetectorEvent {
    /// Trust → suspect. `silent` is the time since the last heartbeat.
    Suspect { silent: Duration },
    /// Suspect → trust: a heartbeat arrived.
    Trust,
    /// Send one extra heartbeat to the peer now (its reply counts as a heartbeat).
    Probe,
}

/// The interface every failure detector implements.
pub trait Detector {
    fn handle_heartbeat(&mut self, now: Time);
    fn handle_timeout(&mut self, now: Time);
    fn poll_timeout(&self) -> Option<Time>;
    fn poll_event(&mut self) -> Option<DetectorEvent>;
    fn verdict(&self) -> Verdict;
    fn set_params(&mut self, now: Time, interval: Duration, miss_threshold: u32);
}

pub mod adaptive;
pub mod kmiss;
pub mod phi;
pub mod interim;
pub use interim::{AnyDetector, DetectorConfig};
