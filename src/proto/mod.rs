//! The MCP protocol core, sans-IO.
//!
//! Everything here is a pure state machine: no tokio, no sockets, no clock reads, no global
//! random number generator. Time comes in as a [`Time`] argument on every input; randomness
//! comes from an RNG the caller passes in (a seeded ChaCha stream in the simulator, one seeded
//! from the OS in production). The async drivers in `net` and the simulator in `sim` drive this
//! same code.
//!
//! # Layout
//!
//! - [`frame`]: the 16-byte header, frame types, encoding and the streaming [`Decoder`].
//! - [`error`]: the layer's [`Error`] and the wire [`ErrorCode`]s.
//! - [`time`]: [`Time`], the driver's clock as the core sees it.
//! - [`detector`]: failure detectors (k-miss, phi accrual, adaptive probing) behind one
//!   [`detector::Detector`] trait, chosen at run time with [`detector::DetectorConfig`].
//! - [`health`]: the [`health::HealthEvaluator`] that folds RTT, loss and suspicion into a state.
//! - [`session`]: one session's state machine ([`Session`]), across connections.
//! - [`client`]: the client endpoint ([`client::ClientEndpoint`]): when to connect, what a
//!   finished connection means, backoff and breaker between attempts, when to give up.
//! - [`server`]: the server endpoint ([`server::ServerEndpoint`]): the connection limit,
//!   handshake deadlines, admission through the registry, takeovers, expiry, throttling.
//! - [`backoff`]: the reconnect policy the client endpoint follows; [`registry`]: the server's
//!   sessions, admission and resume; [`throttle`]: load-aware heartbeat lengthening.
//! - [`writes`]: when a connection gives up on its writes (stalled, or replaced), as both
//!   drivers apply it.

pub mod backoff;
pub mod client;
pub mod detector;
pub mod error;
pub mod frame;
pub mod health;
pub mod registry;
pub mod server;
pub mod session;
pub mod throttle;
pub mod time;
pub mod writes;

pub use error::{Error, ErrorCode};
pub use frame::{Body, Decoder, Frame, FrameType, Header};
pub use registry::{Admission, Registry, ServerConfig};
pub use session::{ClientConfig, Event, Message, SendError, Session, SessionConfig, Side, State};
pub use time::Time;
