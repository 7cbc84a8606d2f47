//! The simulation layer: drives the sans-IO protocol core against a model of the network, with
//! ground truth, and measures what the detectors do.
//!
//! For now it holds only [`synthetic`], the abstract heartbeat model of `docs/qos.md`: a peer
//! heartbeating every η over a channel that loses heartbeats (independently or in bursts) and
//! delays them, with no TCP underneath. The TCP-faithful network simulator comes later and will
//! sit beside it; both report the same QoS metrics.
//!
//! - [`fault`]: its fault model: latency distributions, loss and outages in simulated time, and
//!   the Linux retransmission schedule that turns them into delays (`docs/network-semantics.md`).
//! - [`metrics`]: the QoS metrics over many runs of one pairing, per side, from mergeable
//!   per-run summaries.
//! - [`histogram`]: fixed log-spaced buckets of microseconds (heartbeat round trips), exact to
//!   merge.
//!
//! Like the protocol core, nothing here reads a clock or a global RNG: time is simulated and
//! every random draw comes from a ChaCha stream derived from one master seed.

pub mod delivery;
pub mod fault;
pub mod histogram;
pub mod links;
pub mod load;
pub mod metrics;
pub mod net;
pub mod qos;
pub mod runner;
pub mod synthetic;
pub mod tcp;
pub mod traffic;
