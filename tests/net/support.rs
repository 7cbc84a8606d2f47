//! A server and clients on loopback, with an observer that records every event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpsim::net::client::{self, ClientError, ClientOptions};
use mcpsim::net::conn::{Echo, Handler, Outgoing};
use mcpsim::net::server::{Server, ServerOptions};
use mcpsim::net::{NetEvent, Observer, TcpConnector};
use mcpsim::proto::frame::{HeartbeatMode, HeartbeatParams};
use mcpsim::proto::session::{Event, Message, Side};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Every event seen, with the time it was seen.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(Instant, String, u32, NetEvent)>>,
}

impl Observer for Recorder {
    fn observe(&self, node: &str, _side: Side, session_id: u32, event: &NetEvent) {
        let mut v = self.events.lock().unwrap();
        v.push((Instant::now(), node.to_string(), session_id, event.clone()));
    }
}

impl Recorder {
    /// Times at which `node` saw an event matching `pred`.
    pub fn times(&self, node: &str, pred: impl Fn(&NetEvent) -> bool) -> Vec<Instant> {
        let v = self.events.lock().unwrap();
        v.iter()
            .filter(|(_, n, _, e)| n == node && pred(e))
            .map(|(t, ..)| *t)
            .collect()
    }

    pub fn count(&self, node: &str, pred: impl Fn(&NetEvent) -> bool) -> usize {
        self.times(node, pred).len()
    }

    /// Polls until `node` has seen a matching event, or `within` has passed.
    pub async fn wait_for(
        &self,
        node: &str,
        within: Duration,
        pred: impl Fn(&NetEvent) -> bool,
    ) -> Option<Instant> {
        let end = Instant::now() + within;
        loop {
            if let Some(t) = self.times(node, &pred).first() {
                return Some(*t);
            }
            if Instant::now() > end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub fn is_session(pred: impl Fn(&Event) -> bool) -> impl Fn(&NetEvent) -> bool {
    move |e| matches!(e, NetEvent::Session(ev) if pred(ev))
}

/// Collects received messages.
#[derive(Default)]
pub struct Collect {
    pub messages: Mutex<Vec<Message>>,
}

impl Handler for Collect {
    fn on_message(&self, _: u32, m: Message) -> Option<Outgoing> {
        self.messages.lock().unwrap().push(m);
        None
    }
}

pub fn fast_server_options() -> ServerOptions {
    let mut o = ServerOptions {
        name: "server".into(),
        seed: Some(1),
        ..ServerOptions::default()
    };
    o.config.default_interval_ms = 100;
    o.config.default_miss_threshold = 3;
    o.shutdown_grace = Duration::from_secs(2);
    o.retry_after = Duration::from_millis(200);
    o
}

pub fn fast_client_options(name: &str, addr: &str) -> (TcpConnector, ClientOptions) {
    let mut o = ClientOptions {
        name: name.into(),
        seed: 7,
        ..ClientOptions::default()
    };
    o.session.requested = Some(HeartbeatParams {
        interval_ms: 100,
        miss_threshold: 3,
    });
    o.session.mode = Some(HeartbeatMode::OneWay);
    o.reconnect.backoff.base_ms = 50;
    o.reconnect.backoff.cap_ms = 400;
    o.reconnect.backoff.max_attempts = Some(30);
    o.reconnect.breaker.failure_threshold = 100;
    (TcpConnector { addr: addr.into() }, o)
}

pub struct Running {
    pub addr: String,
    pub recorder: Arc<Recorder>,
    pub server: Arc<Server>,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Starts a server on a free loopback port.
pub async fn start_server(opts: ServerOptions, handler: Arc<dyn Handler>) -> Running {
    let recorder = Arc::new(Recorder::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = Arc::new(Server::new(opts, recorder.clone(), handler));
    let (stop, rx) = watch::channel(false);
    let s = server.clone();
    let task = tokio::spawn(async move { s.serve(listener, rx).await });
    Running {
        addr,
        recorder,
        server,
        stop,
        task,
    }
}

/// Serves again on the same address with the same registry (a restart that keeps sessions).
pub async fn restart_server(
    server: Arc<Server>,
    addr: &str,
) -> (watch::Sender<bool>, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move { server.serve(listener, rx).await });
    (stop, task)
}

pub struct RunningClient {
    pub send: mpsc::Sender<Outgoing>,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), ClientError>>,
}

pub fn start_client(
    connector: TcpConnector,
    opts: ClientOptions,
    recorder: Arc<Recorder>,
    handler: Arc<dyn Handler>,
) -> RunningClient {
    let (send, rx) = mpsc::channel(1024);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(client::run(
        connector,
        opts,
        recorder,
        handler,
        Some(rx),
        stop_rx,
    ));
    RunningClient { send, stop, task }
}

impl Recorder {
    /// Waits until `node` has established a session (at most 2 s), or fails the test.
    pub async fn established(&self, node: &str) {
        let est = is_session(|e| matches!(e, Event::Established { .. }));
        self.wait_for(node, Duration::from_secs(2), est)
            .await
            .expect("session established");
    }
}

pub fn echo() -> Arc<dyn Handler> {
    Arc::new(Echo)
}
