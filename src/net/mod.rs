//! Async drivers: thin loops that move bytes between a socket and the sans-IO core.
//!
//! The drivers are generic over the stream (`AsyncRead + AsyncWrite + Unpin`) and take the
//! [`Listener`] or [`Connector`] as an argument, so the very same code runs on `tokio::net`
//! in production and on `turmoil::net` in the simulator. They read time only through
//! `tokio::time` (virtual under turmoil) and every `select!` is `biased;` so that the order in
//! which ready branches run does not depend on tokio's random choice. For the same reason a
//! value many connections follow goes through [`latest`], not `tokio::sync::watch`.
//!
//! What they must not do: decide anything about the protocol. Every decision is made by
//! [`crate::proto`]; a driver only reads, writes, sleeps until the core's next deadline, and
//! reports what happened to an [`Observer`].
//!
//! # Layout
//!
//! - [`conn`]: one connection's loop, shared by both sides.
//! - [`client`]: connect, drive, reconnect with backoff and a circuit breaker, resume.
//! - [`server`]: accept with limits, handshake timeout, session registry, graceful shutdown.
//! - [`tls`]: TLS around any listener or connector.

pub mod client;
pub mod conn;
pub mod latest;
pub mod load;
pub mod server;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::proto::backoff::BreakerEvent;
use crate::proto::session::{Event, Side};
use crate::proto::{Error as ProtoError, Time};

/// A byte stream the drivers can run a connection over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Accepts incoming connections (a `tokio::net::TcpListener`, a `turmoil::net::TcpListener`).
pub trait Listener: Send + 'static {
    type Stream: Stream;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

/// Opens outgoing connections to one server.
pub trait Connector: Send + Sync + 'static {
    type Stream: Stream;
    fn connect(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// The server as logs and alerts name it: `server at ADDR` where the address is known.
    fn peer(&self) -> String {
        "server".into()
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, addr) = tokio::net::TcpListener::accept(self).await?;
        // Heartbeats are small writes: without TCP_NODELAY, Nagle holds them behind
        // unacknowledged data.
        s.set_nodelay(true)?;
        Ok((s, addr))
    }
}

/// The listen backlog when nothing else is said: the system's maximum (Linux:
/// `/proc/sys/net/core/somaxconn`), else 4096. The kernel caps any larger request at that
/// maximum anyway; a small backlog (the old 128) drops SYNs in a reconnect storm, and each
/// dropped SYN costs its client a second before the retry.
pub fn system_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4096)
}

/// Binds a TCP listener on `addr` (`host:port`; the first address that binds wins) with a
/// listen backlog of `backlog` connections (see [`system_backlog`]).
/// `tokio::net::TcpListener::bind` always asks for 1024 at most and cannot be told otherwise.
pub async fn listen(addr: &str, backlog: u32) -> io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted server can bind while old connections linger
        // in TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(backlog)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: no address"))
    }))
}

/// Connects over `tokio::net` with TCP_NODELAY on.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    pub addr: String,
}

impl Connector for TcpConnector {
    type Stream = tokio::net::TcpStream;
    async fn connect(&self) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect(&self.addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    fn peer(&self) -> String {
        format!("server at {}", self.addr)
    }
}

/// Whether the process may run right now. Production has none: it always may. The simulator
/// closes a host's gate while it is paused (SIGSTOP, a GC stall), so that the drivers' timers
/// cannot fire during the pause and fire, overdue, the moment it ends, as in a stopped process.
pub trait Gate: Send + Sync {
    /// Resolves at once while open; while closed, when it opens.
    fn wait_open(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

pub use crate::proto::server::Steer;

/// A shared [`Gate`], for options structs.
#[derive(Clone)]
pub struct GateHandle(pub Arc<dyn Gate>);

impl std::fmt::Debug for GateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GateHandle")
    }
}

/// The protocol core's clock, read from `tokio::time`, and the drivers' way to sleep.
#[derive(Clone, Debug)]
pub struct Clock {
    epoch: tokio::time::Instant,
    gate: Option<GateHandle>,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Clock {
        Clock {
            epoch: tokio::time::Instant::now(),
            gate: None,
        }
    }

    /// A clock whose sleeps also wait for `gate` to be open.
    pub fn with_gate(gate: Option<GateHandle>) -> Clock {
        Clock {
            gate,
            ..Clock::start()
        }
    }

    pub fn now(&self) -> Time {
        Time::from_epoch(self.epoch.elapsed())
    }

    /// The tokio instant of a core time, to sleep until it.
    pub fn instant(&self, t: Time) -> tokio::time::Instant {
        self.epoch + t.since_epoch()
    }

    /// Waits until the process may run (at once, outside the simulator).
    pub async fn wait_open(&self) {
        if let Some(g) = &self.gate {
            g.0.wait_open().await;
        }
    }

    /// Sleeps until `deadline`, and until the process may run.
    pub async fn sleep_until(&self, deadline: tokio::time::Instant) {
        tokio::time::sleep_until(deadline).await;
        self.wait_open().await;
    }
}

/// Why a connection ended, from the driver's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEnd {
    /// The session closed the connection (CLOSE sent or received, GOAWAY, REJECT).
    Closed,
    /// The peer closed its end without a CLOSE.
    Eof,
    /// The connection was reset: ECONNRESET (RST), ECONNABORTED, or EPIPE on a write.
    Reset(String),
    /// TCP gave up: ETIMEDOUT (the TCP user timeout, or retransmissions exhausted).
    TimedOut(String),
    /// The byte stream broke some other way.
    Io(String),
    /// The peer sent bytes that are not MCP; a CLOSE with the code was attempted.
    Decode(ProtoError),
    /// The peer stopped reading: our writes made no progress for the write timeout.
    WriteStalled,
    /// This side is shutting down.
    Shutdown,
}

impl std::fmt::Display for ConnEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnEnd::Closed => f.write_str("closed"),
            ConnEnd::Eof => f.write_str("peer closed the stream"),
            ConnEnd::Reset(e) | ConnEnd::TimedOut(e) | ConnEnd::Io(e) => {
                write!(f, "i/o error: {e}")
            }
            ConnEnd::Decode(e) => write!(f, "bad input: {e}"),
            ConnEnd::WriteStalled => f.write_str("peer stopped reading"),
            ConnEnd::Shutdown => f.write_str("shutting down"),
        }
    }
}

impl ConnEnd {
    /// An I/O error that ended the connection, by kind.
    pub fn from_io(e: &io::Error) -> ConnEnd {
        use io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe => ConnEnd::Reset(e.to_string()),
            TimedOut => ConnEnd::TimedOut(e.to_string()),
            _ => ConnEnd::Io(e.to_string()),
        }
    }

    /// What this end says about the peer when the connection ended without a CLOSE from either
    /// side: how it was lost. `None` for an end that is no detection (a CLOSE, GOAWAY or REJECT
    /// ended it, the peer sent garbage and was told so, or this side is shutting down).
    pub fn loss(&self) -> Option<PeerLoss> {
        match self {
            ConnEnd::Eof => Some(PeerLoss::Eof),
            ConnEnd::Reset(_) => Some(PeerLoss::Reset),
            ConnEnd::TimedOut(_) => Some(PeerLoss::Timeout),
            ConnEnd::Io(_) => Some(PeerLoss::Io),
            ConnEnd::WriteStalled => Some(PeerLoss::WriteStalled),
            ConnEnd::Closed | ConnEnd::Decode(_) | ConnEnd::Shutdown => None,
        }
    }
}

/// How a side lost its peer (`docs/protocol.md` §11.6): the `reason` of
/// [`NetEvent::PeerLost`], of the `mcp_peer_dead_total` metric and of the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerLoss {
    /// The failure detector suspected the peer (k·η + grace of silence for k-miss); this side
    /// sent CLOSE HEARTBEAT_TIMEOUT and closed the connection.
    HeartbeatTimeout,
    /// End of stream (FIN) without a CLOSE: the peer's process died, its kernel did not.
    Eof,
    /// The connection was reset (RST): a process killed with unread data, a rebooted machine.
    Reset,
    /// TCP gave up retransmitting (ETIMEDOUT, the TCP user timeout).
    Timeout,
    /// The peer stopped reading: our writes made no progress for the write timeout.
    WriteStalled,
    /// Any other I/O error.
    Io,
}

impl PeerLoss {
    /// The metric label: `heartbeat_timeout`, `eof`, `reset`, `timeout`, `write_stalled`, `io`.
    pub fn name(self) -> &'static str {
        match self {
            PeerLoss::HeartbeatTimeout => "heartbeat_timeout",
            PeerLoss::Eof => "eof",
            PeerLoss::Reset => "reset",
            PeerLoss::Timeout => "timeout",
            PeerLoss::WriteStalled => "write_stalled",
            PeerLoss::Io => "io",
        }
    }
}

impl std::fmt::Display for PeerLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Something a driver did or saw, for logs, metrics, alerts and simulation traces.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// Client: a connection attempt starts.
    Connecting { attempt: u32 },
    /// Client: the attempt failed before a connection existed.
    ConnectFailed { error: String },
    /// Client: the next attempt is scheduled.
    ReconnectIn { delay: Duration, attempt: u32 },
    /// Client: the circuit breaker changed state.
    Breaker(BreakerEvent),
    /// Client: the reconnect policy gave up.
    GaveUp { attempts: u32 },
    /// Server: a connection was accepted.
    Accepted { peer: SocketAddr },
    /// Server: a connection was refused at a limit.
    Refused {
        peer: SocketAddr,
        reason: &'static str,
    },
    /// Server: no valid HELLO within the handshake timeout.
    HandshakeTimeout { peer: SocketAddr },
    /// Server: a detached session expired unresumed.
    Expired { undelivered: usize },
    /// The session was established on this connection with `peer` (`client "id" at addr` on
    /// the server, `server at addr` on a client), so that logs of what follows can name it.
    Attached { peer: String },
    /// Server: throttling started (`throttling`) or ended because of the load: every session
    /// is told to beat at `interval_ms` times its own over the configured one.
    Throttle {
        interval_ms: u32,
        cpu_permille: u16,
        throttling: bool,
    },
    /// A frame was rejected as malformed or illegal.
    Rejected { error: ProtoError },
    /// The session core reported something.
    Session(Event),
    /// Traffic since the previous `Traffic` event of this connection: at most one a second
    /// while it lives, and a last one just before `Disconnected`. Counters add these up.
    Traffic {
        bytes_in: u64,
        bytes_out: u64,
        heartbeats_sent: u64,
        heartbeats_received: u64,
    },
    /// This side declared its peer lost, at the instant it decided so (`docs/protocol.md`
    /// §11.6): its detector suspected it (right after the session's [`Event::PeerDead`]), or
    /// an established connection ended without a CLOSE from either side (right before
    /// `Disconnected`). `silent`: time since the last sign of life from the peer on this
    /// connection. `peer` names it as this side knows it (client id and address on the
    /// server).
    PeerLost {
        reason: PeerLoss,
        silent: Duration,
        peer: String,
    },
    /// A connection ended, with its totals.
    Disconnected {
        reason: ConnEnd,
        bytes_in: u64,
        bytes_out: u64,
    },
}

/// Receives every [`NetEvent`]; logging, metrics and the simulator's trace implement it.
pub trait Observer: Send + Sync {
    /// `session_id` is 0 while no session is known. `node` names the client or server.
    fn observe(&self, node: &str, side: Side, session_id: u32, event: &NetEvent);
}

/// An observer that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {
    fn observe(&self, _: &str, _: Side, _: u32, _: &NetEvent) {}
}

/// Shared handle to an observer.
pub type SharedObserver = Arc<dyn Observer>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_end_connections_by_kind_and_keep_their_text() {
        let end = |k: io::ErrorKind| ConnEnd::from_io(&io::Error::from(k));
        assert_eq!(
            end(io::ErrorKind::ConnectionReset).loss(),
            Some(PeerLoss::Reset)
        );
        assert_eq!(end(io::ErrorKind::BrokenPipe).loss(), Some(PeerLoss::Reset));
        assert_eq!(end(io::ErrorKind::TimedOut).loss(), Some(PeerLoss::Timeout));
        assert_eq!(end(io::ErrorKind::NotConnected).loss(), Some(PeerLoss::Io));
        assert_eq!(
            end(io::ErrorKind::ConnectionReset).to_string(),
            "i/o error: connection reset"
        );
    }

    #[test]
    fn only_ends_without_a_close_are_losses() {
        assert_eq!(ConnEnd::Eof.loss(), Some(PeerLoss::Eof));
        assert_eq!(ConnEnd::WriteStalled.loss(), Some(PeerLoss::WriteStalled));
        assert_eq!(ConnEnd::Closed.loss(), None);
        assert_eq!(ConnEnd::Shutdown.loss(), None);
        assert_eq!(
            ConnEnd::Decode(ProtoError::BadMagic(0x1234)).loss(),
            None,
            "a peer sending garbage is told so with a CLOSE"
        );
    }
}
