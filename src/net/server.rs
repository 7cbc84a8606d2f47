//! The server driver: carries out a [`ServerEndpoint`]'s decisions over a [`Listener`]. It
//! accepts, reads each connection's first frame by the endpoint's deadline, writes what the
//! endpoint answers, drives each served connection in its own task, wakes the endpoint for
//! expiries and load samples, and shuts down gracefully (GOAWAY, then a grace period). Whether
//! a connection is served, what its HELLO gets, takeovers, expiry and throttling are decided
//! in `proto::server`, sans-IO, the same in production and in simulation.
//!
//! The endpoint is the only shared state, touched at accept, handshake and disconnect; a
//! connection's frames are handled by its own task alone.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, timeout_at};

use super::Steer;
use super::conn::{ConnCtx, ConnLimits, Handler, ReadState, drive};
use super::latest::Latest;
use super::load::LoadSource;
use super::{Clock, GateHandle, Listener, NetEvent, Observer, Stream};
use crate::proto::frame::{Body, Frame};
use crate::proto::registry::{RegistryEvent, ServerConfig};
use crate::proto::server::{
    ConnId, Greeting, Opening, ServerEndpoint, ServerEndpointConfig, ServerEvent,
};
use crate::proto::session::{Shutdown, Side};
use crate::proto::throttle::ThrottleConfig;
use crate::proto::{Decoder, Error as ProtoError};

/// Everything a server needs besides its listener.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The node's name in logs and traces.
    pub name: String,
    pub config: ServerConfig,
    /// Connections served at once; more are refused with SERVER_BUSY.
    pub max_connections: usize,
    /// The listen backlog to ask for when the listener is made with [`super::listen`]:
    /// connections the kernel completes before the server accepts them. Defaults to the
    /// system's maximum ([`super::system_backlog`]).
    pub backlog: u32,
    /// A connection without a complete valid HELLO by then is closed.
    pub handshake_timeout: Duration,
    pub limits: ConnLimits,
    /// On shutdown, how long connections get to flush their GOAWAY.
    pub shutdown_grace: Duration,
    /// The retry-after told to clients in GOAWAY on shutdown.
    pub retry_after: Duration,
    /// Seed for session ids and resume tokens. `None` seeds from the operating system, as
    /// production must (tokens have to be unguessable); the simulator passes its own.
    pub seed: Option<u64>,
    /// Closed while the simulator holds this process paused; `None` in production.
    pub gate: Option<GateHandle>,
    /// Load-aware heartbeats: lengthen the granted interval while the load is high.
    pub throttle: Option<ThrottleConfig>,
    /// Heartbeats and replies carry this server's load figures.
    pub report_load: bool,
    /// Where load figures come from; `None`: the operating system
    /// ([`super::load::OsLoad`]). Sampled only when throttling or reporting load.
    pub load: Option<Arc<dyn LoadSource>>,
}

impl std::fmt::Debug for dyn LoadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadSource")
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            name: "server".into(),
            config: ServerConfig::default(),
            max_connections: 50_000,
            backlog: super::system_backlog(),
            handshake_timeout: Duration::from_secs(5),
            limits: ConnLimits::default(),
            shutdown_grace: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            seed: None,
            gate: None,
            throttle: None,
            report_load: false,
            load: None,
        }
    }
}

/// Refusals written at once, beyond which extra connections are just dropped: a flood must not
/// turn into unbounded tasks.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

struct Shared {
    opts: ServerOptions,
    clock: Clock,
    /// The server's decisions; a connection's handle is its task's notifier, woken to let go
    /// of its session when a resume takes it over.
    endpoint: Mutex<ServerEndpoint<Arc<Notify>>>,
    observer: Arc<dyn Observer>,
    handler: Arc<dyn Handler>,
    /// The throttle's factor and the load heartbeats report, for every connection.
    steer: Latest<Steer>,
}

/// A lock that survives a panicked holder: the data is plain state, still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn observe(&self, session_id: u32, ev: NetEvent) {
        self.observer
            .observe(&self.opts.name, Side::Server, session_id, &ev);
    }
}

/// A server: its session registry outlives any one listener, so sessions detached by a
/// shutdown can be resumed when [`Server::serve`] runs again (a restart within the process).
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    pub fn new(
        opts: ServerOptions,
        observer: Arc<dyn Observer>,
        handler: Arc<dyn Handler>,
    ) -> Server {
        let rng = match opts.seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_os_rng(),
        };
        Server {
            shared: Arc::new(Shared {
                endpoint: Mutex::new(ServerEndpoint::new(
                    ServerEndpointConfig {
                        server: opts.config.clone(),
                        max_connections: opts.max_connections,
                        handshake_timeout: opts.handshake_timeout,
                        throttle: opts.throttle.clone(),
                        report_load: opts.report_load,
                    },
                    rng,
                )),
                clock: Clock::with_gate(opts.gate.clone()),
                observer,
                handler,
                steer: Latest::new(Steer::default()),
                opts,
            }),
        }
    }

    /// Sessions known to the registry, attached or detached.
    pub fn sessions(&self) -> usize {
        lock(&self.shared.endpoint).sessions()
    }

    /// Serves until `shutdown` turns true, then sends GOAWAY on every connection, waits up to
    /// the grace period for them to flush, and returns. Keep the `shutdown` sender alive.
    pub async fn serve<L: Listener>(
        &self,
        listener: L,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<()> {
        serve_on(self.shared.clone(), listener, shutdown).await
    }
}

/// Runs a fresh [`Server`] on `listener` until `shutdown`.
pub async fn serve<L: Listener>(
    listener: L,
    opts: ServerOptions,
    observer: Arc<dyn Observer>,
    handler: Arc<dyn Handler>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    Server::new(opts, observer, handler)
        .serve(listener, shutdown)
        .await
}

async fn serve_on<L: Listener>(
    shared: Arc<Shared>,
    mut listener: L,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let clock = shared.clock.clone();
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    // Load is sampled when the endpoint says, if it throttles or reports load.
    let sampling = shared.opts.throttle.is_some() || shared.opts.report_load;
    let load = super::load::source(
        &shared.opts.load,
        sampling,
        "not throttling, not reporting load",
    );
    lock(&shared.endpoint).handle_started(clock.now());
    loop {
        // A paused server accepts nothing and expires nothing until it resumes.
        clock.wait_open().await;
        if let Some(source) = &load {
            let now = clock.now();
            let mut endpoint = lock(&shared.endpoint);
            if endpoint.sample_due(now) {
                let steer = endpoint.handle_load(now, source.sample());
                shared.report(&mut endpoint);
                shared.steer.modify(|s| {
                    let changed = *s != steer;
                    *s = steer;
                    changed
                });
            }
        }
        // Wake at the next expiry, or within a second to notice newly detached sessions.
        let next = lock(&shared.endpoint).poll_timeout();
        let tick = clock.now() + Duration::from_secs(1);
        let wake = clock.instant(next.map_or(tick, |t| t.min(tick)));
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "accept failed");
                        sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let owner = Arc::new(Notify::new());
                let opening = lock(&shared.endpoint).handle_accept(clock.now(), owner.clone());
                match opening {
                    Opening::Open { conn, deadline } => {
                        let shared = shared.clone();
                        let shutdown = shutdown.clone();
                        tasks.spawn(async move {
                            connection(shared, stream, peer, conn, deadline, owner, shutdown).await;
                        });
                    }
                    Opening::Refuse { reject, reason } => {
                        shared.observe(0, NetEvent::Refused { peer, reason });
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            tasks.spawn(async move {
                                let mut stream = stream;
                                write_and_close(&mut stream, &reject).await;
                                drop(permit);
                            });
                        }
                    }
                }
            }
            _ = clock.sleep_until(wake) => {
                let mut endpoint = lock(&shared.endpoint);
                endpoint.handle_timeout(clock.now());
                shared.report(&mut endpoint);
            }
        }
    }
    // Graceful shutdown: every connection task sees the same watch and sends GOAWAY.
    let grace = shared.opts.shutdown_grace;
    let drained = timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "connections still open after the grace period"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

impl Shared {
    /// Passes the endpoint's events on ([`report`]).
    fn report(&self, endpoint: &mut ServerEndpoint<Arc<Notify>>) {
        report(endpoint, |id, ev| self.observe(id, ev), &*self.handler);
    }
}

/// Passes a server endpoint's events on: to `observe` (with the session id, 0 for none), and
/// expired sessions' leftovers to the application. The server driver's and the simulator's
/// event engine's.
pub(crate) fn report<H: Clone>(
    endpoint: &mut ServerEndpoint<H>,
    observe: impl Fn(u32, NetEvent),
    handler: &dyn Handler,
) {
    while let Some(ev) = endpoint.poll_event() {
        match ev {
            ServerEvent::Registry(RegistryEvent::Expired {
                session_id,
                undelivered,
            }) => {
                observe(
                    session_id,
                    NetEvent::Expired {
                        undelivered: undelivered.len(),
                    },
                );
                if !undelivered.is_empty() {
                    handler.undelivered(session_id, undelivered);
                }
                handler.ended(session_id);
            }
            ServerEvent::Throttle {
                interval_ms,
                cpu_permille,
                throttling,
            } => observe(
                0,
                NetEvent::Throttle {
                    interval_ms,
                    cpu_permille,
                    throttling,
                },
            ),
        }
    }
}

async fn write_and_close<S: Stream>(stream: &mut S, frame: &Frame) {
    let mut buf = BytesMut::new();
    if frame.encode(&mut buf).is_ok() {
        let _ = timeout(Duration::from_secs(1), async {
            stream.write_all(&buf).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// What stopped a handshake.
enum HandshakeEnd {
    Eof,
    Io,
    Bad(ProtoError),
}

/// Reads until the first frame is complete.
async fn first_frame<S: Stream>(
    stream: &mut S,
    read: &mut ReadState,
) -> Result<Frame, HandshakeEnd> {
    loop {
        match read.decoder.decode(&mut read.buf) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(HandshakeEnd::Bad(e)),
        }
        match stream.read_buf(&mut read.buf).await {
            Ok(0) => {
                return match read.decoder.decode_eof(&mut read.buf) {
                    Ok(Some(f)) => Ok(f),
                    Ok(None) => Err(HandshakeEnd::Eof),
                    Err(e) => Err(HandshakeEnd::Bad(e)),
                };
            }
            Ok(_) => {}
            Err(_) => return Err(HandshakeEnd::Io),
        }
    }
}

/// The client id a HELLO gives (empty if none), and the client as the server names it in logs
/// and alerts: `client "id" at addr`, or `client at addr` without an id.
pub(crate) fn client_peer(hello: &Frame, addr: SocketAddr) -> (&str, String) {
    let client_id = match &hello.body {
        Body::Hello(h) => h.client_id.as_str(),
        _ => "",
    };
    let peer = match client_id {
        "" => format!("client at {addr}"),
        id => format!("client {id:?} at {addr}"),
    };
    (client_id, peer)
}

async fn connection<S: Stream>(
    shared: Arc<Shared>,
    mut stream: S,
    peer: SocketAddr,
    conn: ConnId,
    deadline: crate::proto::Time,
    owner: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let served = greet(&shared, &mut stream, peer, conn, deadline, &mut shutdown).await;
    let Some((session, read, hello)) = served else {
        lock(&shared.endpoint).handle_closed(shared.clock.now(), conn, None);
        return;
    };
    let mut session = *session;
    let opts = &shared.opts;
    let id = session.id();
    let (client_id, peer) = client_peer(&hello, peer);
    let ctx = ConnCtx {
        node: &opts.name,
        peer,
        clock: shared.clock.clone(),
        observer: &*shared.observer,
        handler: &*shared.handler,
        limits: opts.limits,
        on_shutdown: Shutdown::GoAway {
            retry_after: opts.retry_after,
        },
        steer: Some(shared.steer.follow()),
    };
    let mut outgoing = shared.handler.outgoing(id, client_id);
    drive(
        stream,
        &mut session,
        &ctx,
        read,
        outgoing.as_mut(),
        shutdown,
        Some(owner),
    )
    .await;
    if let Some(rx) = outgoing {
        shared.handler.give_back(id, rx);
    }
    let ended = lock(&shared.endpoint).handle_closed(shared.clock.now(), conn, Some(session));
    if ended {
        shared.handler.ended(id);
    }
}

/// Reads the connection's first frame by `deadline` and carries out what the endpoint answers:
/// the session to serve (with the read state and the HELLO), or `None` once the connection has
/// been answered and closed.
async fn greet<S: Stream>(
    shared: &Shared,
    stream: &mut S,
    peer: SocketAddr,
    conn: ConnId,
    deadline: crate::proto::Time,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Box<crate::proto::Session>, ReadState, Frame)> {
    shared.observe(0, NetEvent::Accepted { peer });
    let clock = &shared.clock;
    let mut read = ReadState {
        buf: BytesMut::with_capacity(512),
        decoder: Decoder::new(shared.opts.config.session.max_payload),
    };
    let first = tokio::select! {
        biased;
        _ = shutdown.changed() => return None,
        r = timeout_at(clock.instant(deadline), first_frame(stream, &mut read)) => r,
    };
    let first = match first {
        Ok(Ok(frame)) => Ok(frame),
        Ok(Err(HandshakeEnd::Bad(e))) => Err(e),
        Ok(Err(HandshakeEnd::Eof | HandshakeEnd::Io)) => return None,
        Err(_) => {
            shared.observe(0, NetEvent::HandshakeTimeout { peer });
            let close = lock(&shared.endpoint).handle_handshake_timeout(conn);
            write_and_close(stream, &close).await;
            return None;
        }
    };
    loop {
        let greeting = {
            let hello = first.as_ref().map_err(Clone::clone);
            lock(&shared.endpoint).handle_first_frame(clock.now(), conn, hello)
        };
        match greeting {
            Greeting::Serve(session) => {
                let hello = first.ok()?;
                return Some((session, read, hello));
            }
            Greeting::Close {
                frame,
                error,
                session_id,
            } => {
                if let Some(error) = error {
                    shared.observe(session_id, NetEvent::Rejected { error });
                }
                match frame {
                    Some(frame) => write_and_close(stream, &frame).await,
                    None => {
                        let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
                    }
                }
                return None;
            }
            Greeting::TakeOver { owner, retry_at } => {
                if let Some(owner) = owner {
                    owner.notify_one();
                }
                sleep_until(clock.instant(retry_at)).await;
            }
        }
    }
}
