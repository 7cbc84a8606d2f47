//! The client driver: carries out a [`ClientEndpoint`]'s decisions over a [`Connector`]. It
//! opens a transport when the endpoint asks, runs the connection loop (`conn::drive`) on the
//! endpoint's session, sleeps until the endpoint's deadlines, and reports the endpoint's events
//! as [`NetEvent`]s. When to connect, back off, trip the breaker, resume, start afresh or give
//! up is decided in `proto::client`, sans-IO, the same in production and in simulation.
//!
//! The session outlives connections: messages queued while disconnected, and messages sent but
//! not acknowledged when a connection died, are delivered after the resume exactly once.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout_at;

use super::conn::{ConnCtx, ConnLimits, Handler, Outgoing, ReadState, drive};
use super::latest::{Follower, Latest};
use super::load::LoadSource;
use super::tls::{CertificateProblem, certificate_problem};
use super::{Clock, ConnEnd, Connector, GateHandle, NetEvent, Observer, Steer};
use crate::proto::backoff::{ConfigError, ReconnectConfig};
use crate::proto::client::{ClientEndpoint, ClientEvent, Ending, EndpointConfig};
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::session::{ClientConfig, Shutdown, Side};
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
    /// Connecting failed in a way retrying would meet again.
    #[error("server unreachable: {0}")]
    Unreachable(String),
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
    let mut endpoint = ClientEndpoint::new(EndpointConfig {
        session: opts.session.clone(),
        reconnect: opts.reconnect,
        connect_timeout: opts.connect_timeout,
        seed: opts.seed,
    })?;
    let steer = Latest::new(Steer::default());
    let steered = steer.follow();
    let source = super::load::source(&opts.load, opts.report_load, "heartbeats go without");
    let result = tokio::select! {
        biased;
        r = connect_loop(
            &mut endpoint,
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
    let session = endpoint.session_mut();
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
    steer: Latest<Steer>,
) -> std::convert::Infallible {
    let Some(source) = source else {
        return std::future::pending().await;
    };
    loop {
        let load = source.sample();
        steer.modify(|s| {
            s.load = Some(load);
            true
        });
        clock
            .sleep_until(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
    }
}

/// Carries out the endpoint's decisions: opens transports, runs the connection loop on each,
/// sleeps between attempts, and reports what happened.
#[allow(clippy::too_many_arguments)]
async fn connect_loop<C: Connector>(
    endpoint: &mut ClientEndpoint,
    connector: C,
    opts: &ClientOptions,
    observer: Arc<dyn Observer>,
    handler: Arc<dyn Handler>,
    mut outgoing: Option<mpsc::Receiver<Outgoing>>,
    mut shutdown: watch::Receiver<bool>,
    steer: Option<Follower<Steer>>,
) -> Result<(), ClientError> {
    let clock = Clock::with_gate(opts.gate.clone());
    let ctx = ConnCtx {
        node: &opts.name,
        peer: connector.peer(),
        clock: clock.clone(),
        observer: &*observer,
        handler: &*handler,
        limits: opts.limits,
        on_shutdown: Shutdown::Close,
        steer,
    };
    let mut certificate = None;
    loop {
        if *shutdown.borrow() {
            endpoint.handle_shutdown();
        }
        let attempt = endpoint.poll_connect(clock.now());
        report(endpoint, &opts.name, &*observer);
        if let Some(ending) = endpoint.ending() {
            return match ending.clone() {
                Ending::Finished => Ok(()),
                Ending::GaveUp { attempts } => Err(ClientError::GaveUp { attempts }),
                Ending::Refused { code, reason } => Err(ClientError::Refused { code, reason }),
                Ending::Unreachable { error } => Err(match certificate.take() {
                    Some(problem) => ClientError::Certificate(problem),
                    None => ClientError::Unreachable(error),
                }),
            };
        }
        let Some(deadline) = endpoint.poll_timeout() else {
            continue;
        };
        if attempt.is_none() {
            tokio::select! {
                biased;
                _ = shutdown.changed() => endpoint.handle_shutdown(),
                _ = clock.sleep_until(clock.instant(deadline)) => endpoint.handle_timeout(clock.now()),
            }
            continue;
        }
        let connected = tokio::select! {
            biased;
            _ = shutdown.changed() => {
                endpoint.handle_shutdown();
                continue;
            }
            r = timeout_at(clock.instant(deadline), connector.connect()) => r,
        };
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                certificate = certificate_problem(&e);
                endpoint.handle_connect_failed(clock.now(), e.to_string(), certificate.is_some());
                continue;
            }
            Err(_) => {
                endpoint.handle_timeout(clock.now());
                continue;
            }
        };
        endpoint.handle_connected(clock.now());
        let read = ReadState {
            buf: BytesMut::new(),
            decoder: Decoder::new(MAX_PAYLOAD_LEN),
        };
        let end = drive(
            stream,
            endpoint.session_mut(),
            &ctx,
            read,
            outgoing.as_mut(),
            shutdown.clone(),
            None,
        )
        .await;
        if end == ConnEnd::Shutdown {
            endpoint.handle_shutdown();
        }
        endpoint.handle_connection_ended(clock.now());
    }
}

/// Passes the endpoint's events to the observer as the driver's events (the event engine
/// reports them the same way).
pub(crate) fn report(endpoint: &mut ClientEndpoint, node: &str, observer: &dyn Observer) {
    while let Some(ev) = endpoint.poll_event() {
        let ev = match ev {
            ClientEvent::Connecting { attempt } => NetEvent::Connecting { attempt },
            ClientEvent::ConnectFailed { error } => NetEvent::ConnectFailed { error },
            ClientEvent::ReconnectIn { delay, attempt } => NetEvent::ReconnectIn { delay, attempt },
            ClientEvent::Breaker(e) => NetEvent::Breaker(e),
            ClientEvent::GaveUp { attempts } => NetEvent::GaveUp { attempts },
        };
        observer.observe(node, Side::Client, endpoint.session().id(), &ev);
    }
}
