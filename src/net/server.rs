//! The server driver: accept with limits, handshake with a timeout, admit through the session
//! registry, drive each connection in its own task, expire detached sessions, shut down
//! gracefully.
//!
//! Shared state is touched only at handshake and disconnect (the registry) and on a resume that
//! takes over a session still attached elsewhere (the owners table); a connection's frames are
//! handled by its own task alone.

use std::collections::BTreeMap;
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
use tokio::time::{sleep, timeout};

use super::Steer;
use super::conn::{ConnCtx, ConnLimits, Handler, OnShutdown, ReadState, drive};
use super::load::{LoadSource, OsLoad};
use super::{Clock, GateHandle, Listener, NetEvent, Observer, Stream};
use crate::proto::frame::{Body, Close, Frame};
use crate::proto::registry::{Admission, Registry, RegistryEvent, ServerConfig};
use crate::proto::session::{Side, State};
use crate::proto::throttle::{Throttle, ThrottleConfig};
use crate::proto::{Decoder, Error as ProtoError, ErrorCode};

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
    /// Where load figures come from; `None`: the operating system ([`OsLoad`]). Sampled only
    /// when throttling or reporting load.
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
/// How often a resume waits for the connection that still holds its session to let go.
const TAKEOVER_TRIES: u32 = 50;

struct Shared {
    opts: ServerOptions,
    clock: Clock,
    registry: Mutex<Registry>,
    /// Who holds each attached session, to take it over on a resume from elsewhere.
    owners: Mutex<BTreeMap<u32, Arc<Notify>>>,
    observer: Arc<dyn Observer>,
    handler: Arc<dyn Handler>,
    /// The throttle's factor and the load heartbeats report, for every connection.
    steer: watch::Sender<Steer>,
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
                registry: Mutex::new(Registry::new(opts.config.clone(), rng)),
                owners: Mutex::new(BTreeMap::new()),
                clock: Clock::with_gate(opts.gate.clone()),
                observer,
                handler,
                steer: watch::Sender::new(Steer::default()),
                opts,
            }),
        }
    }

    /// Sessions known to the registry, attached or detached.
    pub fn sessions(&self) -> usize {
        lock(&self.shared.registry).len()
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
    let conns = Arc::new(Semaphore::new(shared.opts.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    // Load is sampled once a second, when throttling or reporting it.
    let sampling = shared.opts.throttle.is_some() || shared.opts.report_load;
    let load: Option<Arc<dyn LoadSource>> = match (&shared.opts.load, sampling) {
        (_, false) => None,
        (Some(l), true) => Some(l.clone()),
        (None, true) => match OsLoad::new() {
            Ok(os) => Some(Arc::new(os)),
            Err(e) => {
                tracing::warn!(error = %e, "no load figures: not throttling, not reporting load");
                None
            }
        },
    };
    let base = crate::proto::frame::HeartbeatParams {
        interval_ms: shared.opts.config.default_interval_ms,
        miss_threshold: shared.opts.config.default_miss_threshold,
    };
    let mut throttle = shared.opts.throttle.clone().map(|c| Throttle::new(c, base));
    let mut next_sample = clock.now();
    loop {
        // A paused server accepts nothing and expires nothing until it resumes.
        clock.wait_open().await;
        if let Some(source) = &load
            && clock.now() >= next_sample
        {
            let now = clock.now();
            next_sample = now + Duration::from_secs(1);
            let sample = source.sample();
            let factor = match &mut throttle {
                Some(t) => {
                    if let Some(p) = t.handle_load(now, sample) {
                        shared.observe(
                            0,
                            NetEvent::Throttle {
                                interval_ms: p.interval_ms,
                                cpu_permille: sample.cpu_permille,
                                throttling: t.is_throttling(),
                            },
                        );
                    }
                    if t.is_throttling() {
                        shared.opts.throttle.as_ref().map_or(1, |c| c.factor)
                    } else {
                        1
                    }
                }
                None => 1,
            };
            let report = shared.opts.report_load.then_some(sample);
            shared.steer.send_if_modified(|s| {
                let new = Steer {
                    factor,
                    cap_ms: shared.opts.config.max_interval_ms,
                    load: report,
                };
                let changed = *s != new;
                *s = new;
                changed
            });
        }
        // Wake at the next expiry, or within a second to notice newly detached sessions.
        let next = lock(&shared.registry).poll_timeout();
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
                match conns.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        let shutdown = shutdown.clone();
                        tasks.spawn(async move {
                            connection(shared, stream, peer, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        shared.observe(0, NetEvent::Refused { peer, reason: "connection limit" });
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            tasks.spawn(async move {
                                refuse(stream, ErrorCode::ServerBusy, "connection limit").await;
                                drop(permit);
                            });
                        }
                    }
                }
            }
            _ = clock.sleep_until(wake) => {
                let mut registry = lock(&shared.registry);
                registry.handle_timeout(clock.now());
                while let Some(RegistryEvent::Expired { session_id, undelivered }) = registry.poll_event() {
                    shared.observe(session_id, NetEvent::Expired { undelivered: undelivered.len() });
                    if !undelivered.is_empty() {
                        shared.handler.undelivered(session_id, undelivered);
                    }
                    shared.handler.ended(session_id);
                }
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

/// Writes a REJECT and closes, within a second.
async fn refuse<S: Stream>(mut stream: S, code: ErrorCode, reason: &str) {
    let frame = Frame::new(
        0,
        0,
        Body::Reject(Close {
            code,
            reason: reason.into(),
        }),
    );
    write_and_close(&mut stream, &frame).await;
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
    mut shutdown: watch::Receiver<bool>,
) {
    let opts = &shared.opts;
    shared.observe(0, NetEvent::Accepted { peer });
    let mut read = ReadState {
        buf: BytesMut::with_capacity(512),
        decoder: Decoder::new(opts.config.session.max_payload),
    };
    let hello = tokio::select! {
        biased;
        _ = shutdown.changed() => return,
        r = timeout(opts.handshake_timeout, first_frame(&mut stream, &mut read)) => r,
    };
    let hello = match hello {
        Ok(Ok(frame)) => frame,
        Ok(Err(HandshakeEnd::Bad(e))) => {
            let close = Frame::new(
                0,
                0,
                Body::Close(Close {
                    code: e.code(),
                    reason: e.to_string(),
                }),
            );
            shared.observe(0, NetEvent::Rejected { error: e });
            write_and_close(&mut stream, &close).await;
            return;
        }
        Ok(Err(HandshakeEnd::Eof | HandshakeEnd::Io)) => return,
        Err(_) => {
            shared.observe(0, NetEvent::HandshakeTimeout { peer });
            let reason = "no hello in time".to_string();
            let close = Frame::new(
                0,
                0,
                Body::Close(Close {
                    code: ErrorCode::HandshakeTimeout,
                    reason,
                }),
            );
            write_and_close(&mut stream, &close).await;
            return;
        }
    };

    let mut tries = 0;
    let mut session = loop {
        let admission = lock(&shared.registry).admit(shared.clock.now(), &hello);
        match admission {
            Admission::Accepted(s) => break *s,
            Admission::Rejected {
                frame,
                code,
                reason,
            } => {
                let error = ProtoError::Rejected { code, reason };
                shared.observe(hello.session_id, NetEvent::Rejected { error });
                write_and_close(&mut stream, &frame).await;
                return;
            }
            Admission::Unexpected { close, error } => {
                shared.observe(0, NetEvent::Rejected { error });
                match close {
                    Some(close) => write_and_close(&mut stream, &close).await,
                    None => {
                        let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
                    }
                }
                return;
            }
            Admission::Attached { session_id } => {
                // The client resumed before we noticed its old connection died: take over.
                if let Some(owner) = lock(&shared.owners).get(&session_id) {
                    owner.notify_one();
                }
                tries += 1;
                if tries > TAKEOVER_TRIES {
                    refuse(stream, ErrorCode::ServerBusy, "session busy").await;
                    return;
                }
                sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let id = session.id();
    let owner = Arc::new(Notify::new());
    lock(&shared.owners).insert(id, owner.clone());
    let (client_id, peer) = client_peer(&hello, peer);
    let ctx = ConnCtx {
        node: &opts.name,
        peer,
        clock: shared.clock.clone(),
        observer: &*shared.observer,
        handler: &*shared.handler,
        limits: opts.limits,
        on_shutdown: OnShutdown::GoAway {
            retry_after: opts.retry_after,
        },
        steer: Some(shared.steer.subscribe()),
    };
    let mut outgoing = shared.handler.outgoing(id, client_id);
    drive(
        stream,
        &mut session,
        &ctx,
        read,
        outgoing.as_mut(),
        shutdown,
        Some(owner.clone()),
    )
    .await;
    if let Some(rx) = outgoing {
        shared.handler.give_back(id, rx);
    }
    if session.state() == State::Closed {
        shared.handler.ended(id);
    }
    {
        let mut owners = lock(&shared.owners);
        if owners.get(&id).is_some_and(|o| Arc::ptr_eq(o, &owner)) {
            owners.remove(&id);
        }
    }
    lock(&shared.registry).detach(shared.clock.now(), session);
}
