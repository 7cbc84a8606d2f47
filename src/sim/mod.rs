//! The simulation layer: runs the real client and server stacks over a model of the network,
//! with ground truth, and measures what the detectors do and what becomes of every message.
//!
//! - [`runner`]: one scenario run on turmoil's clock, step by step, and the run's
//!   [`runner::Outcome`]; beside it the hosts' processes (the unchanged drivers, `process.rs`),
//!   the fault schedule (`schedule.rs`) and the recorder of the trace (`record.rs`).
//! - [`engine`]: the event-driven engine: the same sessions, TCP model and links driven from
//!   one event queue in simulated time, without tokio or turmoil (heartbeats without faults
//!   so far).
//! - [`net`]: the sockets the drivers use in simulation, whose bytes [`tcp`] carries: a sans-IO
//!   model of the two kernels' TCP, over the links of [`links`] and [`fault`] (one file each for
//!   latency, loss, outages, a direction with its rate and queue, the kernels' TCP settings and
//!   the SYN schedule, and the path a packet or SYN takes; `docs/network-semantics.md`).
//! - [`traffic`]: the applications at both ends (flows of messages through the drivers' API),
//!   and [`delivery`]: the checker that decides each message's fate (exactly once and in order,
//!   or reported to its sender; anything else a violation with its id).
//! - [`load`]: the server's CPU, a processing cost per frame and message, so a server can be
//!   saturated by its own work.
//! - [`qos`]: the judge (failures, detections, false suspicions); [`metrics`]: the QoS metrics
//!   over many runs of one pairing, from mergeable per-run summaries; [`histogram`]: fixed
//!   log-spaced buckets of microseconds, exact to merge.
//! - [`synthetic`]: the abstract heartbeat model of `docs/qos.md` (no TCP underneath), the
//!   closed forms the machinery is tested against, and the seeded ChaCha streams every random
//!   draw comes from.
//!
//! Like the protocol core, nothing here reads a clock or a global RNG: time is simulated and
//! every random draw comes from a ChaCha stream derived from one master seed.

pub mod delivery;
pub mod engine;
pub mod fault;
pub mod histogram;
pub mod links;
pub mod load;
pub mod metrics;
pub mod net;
mod prefetch;
mod process;
pub mod qos;
mod record;
pub mod runner;
mod schedule;
pub mod synthetic;
pub mod tcp;
pub mod traffic;
