//! The client driver: connect, drive the session, reconnect with backoff and a circuit breaker,
//! resume.
//!
//! The session outlives connections: messages queued while disconnected, and messages sent but
//! not acknowledged when a connection died, are delivered after the resume exactly once.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use super::conn::{ConnCtx, ConnLimits, Handler, OnShutdown, Outgoing, ReadState, drive};
use super::load::{LoadSource, OsLoad};
use super::tls::{CertificateProblem, certificate_problem};
use super::{Clock, ConnEnd, Connector, GateHandle, NetEvent, Observer, Steer};
use crate::proto::backoff::{Action, ConfigError, ReconnectConfig, ReconnectPolicy};
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::session::{ClientConfig, Event, Session, Side, State};
use crate::proto::{Decoder, ErrorCode};

/// Everything a client needs besides its connector.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The node's name in logs and traces.
    pub name: String,
    pub session: ClientConfig,
    pub reconnect: ReconnectConfig,
    /// A connection attempt that takes longer fails.
    pub connect_timeout: Duration,
    pub limits: ConnLimits,
    /// Seed of the jitter RNG. Production seeds it from the OS; the simulator from its master seed.
    pub seed: u64,
    /// Closed while the simulator holds this process paused; `None` in production.
    pub gate: Option<GateHandle>,
    /// Heartbeats and replies carry this client's load figures, sampled once a second from
    /// `load` (the operating system's when `None`).
    pub report_load: bool,
    pub load: Option<Arc<dyn LoadSource>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            name: "client".into(),
            session: ClientConfig::default(),
            reconnect: ReconnectConfig::default(),
            connect_timeout: Duration::from_secs(5),
            limits: ConnLimits::default(),
            seed: 0,
            gate: None,
            report_load: false,
            load: None,
        }
    }
}

/// How a client run ended.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("invalid reconnect policy: {0}")]
    Config(#[from] ConfigError),
    #[error("gave up after {attempts} failed attempts")]
    GaveUp { attempts: u32 },
    #[error("server refused the session: {code}: {reason}")]
    Refused { code: ErrorCode, reason: String },
    /// The server's TLS certificate cannot be verified: retrying would meet it again.
    #[error("server certificate refused: {0}")]
    Certificate(CertificateProblem),
}

/// Runs a client until its session ends, `shutdown` turns true, or the reconnect policy gives up.
///
/// Messages from `outgoing` are sent in order; received messages go to `handler`. Keep the
/// `shutdown` sender alive for as long as the client should run.
pub async fn run<C: Connector>(
    connector: C,
    opts: ClientOptions,
    observer: Arc<dyn Observer>,
    handler: Arc<dyn Handler>,
    outgoing: Option<mpsc::Receiver<Outgoing>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ClientError> {
    let mut session = Session::client(opts.session.clone());
    let (steer, steered) = watch::channel(Steer::default());
    let source: Option<Arc<dyn LoadSource>> = match (&opts.load, opts.report_load) {
        (_, false) => None,
        (Some(l), true) => Some(l.clone()),
        (None, true) => match OsLoad::new() {
            Ok(os) => Some(Arc::new(os)),
            Err(e) => {
                tracing::warn!(error = %e, "no load figures: heartbeats go without");
                None
            }
        },
    };
    let result = tokio::select! {
        biased;
        r = connect_loop(
            &mut session,
            connector,
            &opts,
            observer,
            handler.clone(),
            outgoing,
            shutdown,
            source.is_some().then_some(steered),
        ) => r,
        never = sample_load(source, Clock::with_gate(opts.gate.clone()), steer) => match never {},
    };
    // The session ends with the client (it gave up, was refused, or shut down while not
    // connected): what it still holds will not be delivered, and the application hears so
    // (§12). A session that closed on a connection has already reported.
    let left = session.take_undelivered();
    if !left.is_empty() {
        handler.undelivered(session.id(), left);
    }
    result
}

/// Samples `source` once a second into `steer`, forever (nothing without a source).
async fn sample_load(
    source: Option<Arc<dyn LoadSource>>,
    clock: Clock,
    steer: watch::Sender<Steer>,
) -> std::convert::Infallible {
    let Some(source) = source else {
        return std::future::pending().await;
    };
    loop {
        let load = source.sample();
        steer.send_modify(|s| s.load = Some(load));
        clock
            .sleep_until(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect_loop<C: Connector>(
    session: &mut Session,
    connector: C,
    opts: &ClientOptions,
    observer: Arc<dyn Observer>,
    handler: Arc<dyn Handler>,
    mut outgoing: Option<mpsc::Receiver<Outgoing>>,
    mut shutdown: watch::Receiver<bool>,
    steer: Option<watch::Receiver<Steer>>,
) -> Result<(), ClientError> {
    let clock = Clock::with_gate(opts.gate.clone());
    let mut policy = ReconnectPolicy::new(opts.reconnect)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let ctx = ConnCtx {
        node: &opts.name,
        peer: connector.peer(),
        clock: clock.clone(),
        observer: &*observer,
        handler: &*handler,
        limits: opts.limits,
        on_shutdown: OnShutdown::Close,
        steer,
    };
    let observe = |session: &Session, ev: NetEvent| {
        observer.observe(&opts.name, Side::Client, session.id(), &ev)
    };
    let mut attempt = 0u32;
    loop {
        if *shutdown.borrow() || session.state() == State::Closed {
            return Ok(());
        }
        attempt += 1;
        observe(session, NetEvent::Connecting { attempt });
        let mut go_away: Option<Duration> = None;
        let mut refused: Option<(ErrorCode, String)> = None;
        let connected = tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(()),
            r = timeout(opts.connect_timeout, connector.connect()) => r,
        };
        match connected {
            Ok(Ok(stream)) => {
                session.handle_connected(clock.now());
                let read = ReadState {
                    buf: BytesMut::new(),
                    decoder: Decoder::new(MAX_PAYLOAD_LEN),
                };
                let watcher = EventWatch::default();
                let end = {
                    let obs = WatchingObserver {
                        inner: &*observer,
                        watch: &watcher,
                    };
                    let ctx = ConnCtx {
                        observer: &obs,
                        ..ctx_ref(&ctx)
                    };
                    drive(
                        stream,
                        session,
                        &ctx,
                        read,
                        outgoing.as_mut(),
                        shutdown.clone(),
                        None,
                    )
                    .await
                };
                session.handle_disconnect(clock.now());
                let seen = watcher.take();
                go_away = seen.go_away;
                refused = seen.refused;
                if seen.established || seen.session_lost {
                    // The server is reachable: the breaker closes and backoff starts over.
                    policy.handle_success(clock.now());
                    attempt = 0;
                }
                if seen.session_lost {
                    // The session was reset by the REJECT; open a new one without waiting.
                    continue;
                }
                if end == ConnEnd::Shutdown {
                    return Ok(());
                }
            }
            Ok(Err(e)) => {
                observe(
                    session,
                    NetEvent::ConnectFailed {
                        error: e.to_string(),
                    },
                );
                if let Some(problem) = certificate_problem(&e) {
                    return Err(ClientError::Certificate(problem));
                }
            }
            Err(_) => observe(
                session,
                NetEvent::ConnectFailed {
                    error: "connect timed out".into(),
                },
            ),
        }
        if let Some((code, reason)) = refused
            && code == ErrorCode::AuthFailed
        {
            return Err(ClientError::Refused { code, reason });
        }
        if session.state() == State::Closed {
            return Ok(());
        }
        let now = clock.now();
        // After a working connection died the policy was reset, so this is its first, short,
        // jittered delay; never sooner than a GOAWAY's retry-after.
        let action = policy.handle_failure(now, &mut rng);
        while let Some(ev) = policy.poll_event() {
            observe(session, NetEvent::Breaker(ev));
        }
        let wait = match action {
            Action::Retry { after } => after,
            Action::WaitForBreaker { until } => until.saturating_since(now),
            Action::GiveUp { attempts } => {
                observe(session, NetEvent::GaveUp { attempts });
                return Err(ClientError::GaveUp { attempts });
            }
        };
        let wait = wait.max(go_away.unwrap_or(Duration::ZERO));
        observe(
            session,
            NetEvent::ReconnectIn {
                delay: wait,
                attempt: attempt + 1,
            },
        );
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(()),
            _ = clock.sleep_until(tokio::time::Instant::now() + wait) => {}
        }
        // The breaker may still be open if the wait was cut short by rounding: wait it out.
        while !policy.allow(clock.now()) {
            match policy.poll_timeout() {
                Some(t) => clock.sleep_until(clock.instant(t)).await,
                None => break,
            }
        }
    }
}

fn ctx_ref<'a>(c: &ConnCtx<'a>) -> ConnCtx<'a> {
    ConnCtx {
        node: c.node,
        peer: c.peer.clone(),
        clock: c.clock.clone(),
        observer: c.observer,
        handler: c.handler,
        limits: c.limits,
        on_shutdown: c.on_shutdown,
        steer: c.steer.clone(),
    }
}

/// What the client loop needs to know about a finished connection.
#[derive(Default)]
struct Seen {
    established: bool,
    /// The server answered but no longer knows the session: start a new one at once.
    session_lost: bool,
    go_away: Option<Duration>,
    refused: Option<(ErrorCode, String)>,
}

#[derive(Default)]
struct EventWatch(std::sync::Mutex<Seen>);

impl EventWatch {
    fn take(&self) -> Seen {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Passes events on, noting the few the reconnect loop acts on.
struct WatchingObserver<'a> {
    inner: &'a dyn Observer,
    watch: &'a EventWatch,
}

impl Observer for WatchingObserver<'_> {
    fn observe(&self, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        if let NetEvent::Session(
            e @ (Event::Established { .. } | Event::ConnectionClosed { .. } | Event::GoAway { .. }),
        ) = event
        {
            let mut seen = self.watch.0.lock().unwrap_or_else(|e| e.into_inner());
            match e {
                Event::Established { .. } => seen.established = true,
                Event::ConnectionClosed {
                    code: ErrorCode::UnknownSession,
                    by_peer: true,
                    ..
                } => seen.session_lost = true,
                Event::GoAway { retry_after, .. } => seen.go_away = Some(*retry_after),
                Event::ConnectionClosed {
                    code,
                    reason,
                    by_peer: true,
                    resumable: false,
                } => seen.refused = Some((*code, reason.clone())),
                _ => {}
            }
        }
        self.inner.observe(node, side, session_id, event);
    }
}
