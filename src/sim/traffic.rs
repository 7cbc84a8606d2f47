//! Application traffic: the simulated applications at both ends of every session.
//!
//! A scenario's `[[traffic]]` flows ([`Flow`]) say what each session's applications send: how
//! often (constant or Poisson arrivals, on/off bursts, or a bulk transfer as fast as the session
//! takes it), how large, on which channels and at which priority, one way or both. The
//! applications use the drivers' real API: a client's messages go through the outgoing queue
//! `net::client::run` reads, the server's through [`Handler::outgoing`]; both receive through
//! [`Handler::on_message`] and hear of undelivered messages through [`Handler::undelivered`].
//! Back-pressure is honoured: a generator waits while its session has no room.
//!
//! Every payload starts with its [`MessageId`]; everything that happens to it goes into the
//! run's delivery [`Log`], which [`super::delivery::check`] judges at the end.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use tokio::sync::mpsc;

use super::delivery::{ID_LEN, Log, MessageId, StreamId};
use super::engine::EngineClock;
use super::load::Cpu;
use super::net::SimNet;
use super::synthetic::{Purpose, stream};
use crate::net::conn::{Handler, Outgoing};
use crate::proto::session::Message;

/// The simulation's clock as the applications read it: the runner's network, or the event
/// engine's clock.
#[derive(Clone)]
pub enum AppClock {
    Net(SimNet),
    Engine(EngineClock),
}

impl AppClock {
    pub fn now(&self) -> Duration {
        match self {
            AppClock::Net(net) => net.now(),
            AppClock::Engine(clock) => clock.now(),
        }
    }
}

/// Which way a flow's messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
    /// Both, independently.
    Both,
}

impl Direction {
    fn up(self) -> bool {
        matches!(self, Direction::Up | Direction::Both)
    }

    fn down(self) -> bool {
        matches!(self, Direction::Down | Direction::Both)
    }
}

/// When messages are due.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// `rate` messages a second, evenly spaced (each stream at its own seed-drawn phase).
    Constant { rate: f64 },
    /// `rate` messages a second on average, exponential gaps.
    Poisson { rate: f64 },
    /// Back to back, as fast as the session takes them, until `bytes` payload bytes are sent.
    Bulk { bytes: u64 },
}

/// One flow: what the applications of some sessions send.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// The sessions (client indices) it applies to.
    pub sessions: Range<usize>,
    pub direction: Direction,
    pub pace: Pace,
    /// Payload size in bytes, uniform over the range (inclusive); at least [`ID_LEN`].
    pub size: (usize, usize),
    /// Messages are spread uniformly over channels `channel .. channel + channels`.
    pub channel: u16,
    pub channels: u16,
    pub priority: u8,
    /// On/off: sends for `on`, then is quiet for `off`, from `start`.
    pub burst: Option<(Duration, Duration)>,
    /// When the flow starts (in each process life: from the later of this and the life's start).
    pub start: Duration,
    /// When it stops; `None`: the run's end less the drain.
    pub stop: Option<Duration>,
}

/// A run's workload: its flows and how long before the end they stop.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload {
    pub flows: Vec<Flow>,
    /// Flows stop this long before the run ends (unless they stop earlier), and a message sent
    /// within it may still be in flight at the end ([`super::delivery`]).
    pub drain: Duration,
}

impl Workload {
    pub fn is_on(&self) -> bool {
        !self.flows.is_empty()
    }

    /// The flows of session `index` in the direction `up` (client to server) or down.
    fn flows_of(&self, index: usize, up: bool) -> impl Iterator<Item = (usize, &Flow)> {
        self.flows.iter().enumerate().filter(move |(_, f)| {
            f.sessions.contains(&index)
                && if up {
                    f.direction.up()
                } else {
                    f.direction.down()
                }
        })
    }

    /// Whether session `index` sends up (or down).
    pub fn sends(&self, index: usize, up: bool) -> bool {
        self.flows_of(index, up).next().is_some()
    }
}

/// Where the run's messages are recorded.
pub type SharedLog = Arc<Mutex<Log>>;

pub(crate) fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Messages a sender keeps queued for its session: the driver takes them as the session has
/// room. Small, so that back-pressure reaches the generator at once.
const QUEUE: usize = 1;

/// One stream's sender: the flows of one session in one direction, merged in time order.
pub struct Generator {
    pub clock: AppClock,
    pub log: SharedLog,
    pub stream: StreamId,
    pub flows: Vec<Flow>,
    pub end: Duration,
    pub seed: u64,
    /// Distinguishes this stream's random draws from every other's.
    pub key: Vec<u64>,
}

impl Generator {
    /// Sends until every flow is done or the session's queue is gone.
    pub async fn run(self, tx: mpsc::Sender<Outgoing>) {
        let mut pacer = self.pacer();
        loop {
            let Some((i, at)) = pacer.next_due() else {
                return;
            };
            let now = self.clock.now();
            if at > now {
                tokio::time::sleep(at - now).await;
            }
            let (message, size) = pacer.message(i);
            let (index, channel) = (pacer.index, message.channel);
            if tx.send(message).await.is_err() {
                return;
            }
            let handed = self.clock.now();
            lock(&self.log).sent(self.stream, index, channel, handed);
            pacer.handed(i, size, handed);
        }
    }

    /// The sans-IO core of [`Generator::run`], from now.
    pub fn pacer(&self) -> Pacer {
        self.pacer_at(self.clock.now())
    }

    /// The sans-IO core of [`Generator::run`], from `now`: the event engine drives it itself.
    pub fn pacer_at(&self, now: Duration) -> Pacer {
        Pacer::new(
            self.flows.clone(),
            self.end,
            self.stream,
            stream(self.seed, Purpose::Traffic, &self.key),
            now,
        )
    }
}

/// When a stream's next message is due and what it is, with every random draw in the order
/// [`Generator::run`] makes them: each flow's phase at the start, then per message its size and
/// channel, then the flow's next gap once the message is handed over.
pub struct Pacer {
    flows: Vec<Flow>,
    end: Duration,
    stream: StreamId,
    draws: ChaCha8Rng,
    /// Each flow's next due time and bytes left (bulk).
    due: Vec<(Duration, u64)>,
    /// The index the next message gets.
    pub index: u64,
}

impl Pacer {
    fn new(
        flows: Vec<Flow>,
        end: Duration,
        stream: StreamId,
        mut draws: ChaCha8Rng,
        now: Duration,
    ) -> Pacer {
        let due = flows
            .iter()
            .map(|f| {
                let first = f.start.max(now);
                let phase = match f.pace {
                    Pace::Constant { rate } => {
                        Duration::from_secs_f64(draws.random::<f64>() / rate.max(1e-9))
                    }
                    Pace::Poisson { rate } => gap(&mut draws, rate),
                    Pace::Bulk { .. } => Duration::ZERO,
                };
                let bytes = match f.pace {
                    Pace::Bulk { bytes } => bytes,
                    _ => u64::MAX,
                };
                (first + phase, bytes)
            })
            .collect();
        Pacer {
            flows,
            end,
            stream,
            draws,
            due,
            index: 0,
        }
    }

    /// The flow due first and when; `None` once every flow is done. A flow in its off period
    /// waits for its next on.
    pub fn next_due(&mut self) -> Option<(usize, Duration)> {
        let mut next: Option<(usize, Duration)> = None;
        for (i, f) in self.flows.iter().enumerate() {
            let (mut at, left) = self.due[i];
            if left == 0 {
                continue;
            }
            if let Some((on, off)) = f.burst {
                let period = on + off;
                let into = Duration::from_nanos(
                    ((at.saturating_sub(f.start)).as_nanos() % period.as_nanos().max(1)) as u64,
                );
                if into >= on {
                    at += period - into;
                    self.due[i].0 = at;
                }
            }
            let stop = f.stop.unwrap_or(self.end).min(self.end);
            if at >= stop {
                continue;
            }
            if next.is_none_or(|(_, t)| at < t) {
                next = Some((i, at));
            }
        }
        next
    }

    /// Flow `i`'s next message, numbered [`Pacer::index`], and its size.
    pub fn message(&mut self, i: usize) -> (Outgoing, usize) {
        let f = &self.flows[i];
        let size = self.draws.random_range(f.size.0..=f.size.1).max(ID_LEN);
        let channel = f.channel + self.draws.random_range(0..f.channels.max(1));
        let mut payload = vec![0u8; size];
        MessageId {
            stream: self.stream,
            index: self.index,
        }
        .write(&mut payload);
        let message = Outgoing {
            channel,
            priority: f.priority,
            payload: Bytes::from(payload),
        };
        (message, size)
    }

    /// Flow `i`'s message of `size` bytes was handed to the session's queue at `handed`.
    pub fn handed(&mut self, i: usize, size: usize, handed: Duration) {
        let f = &self.flows[i];
        self.index += 1;
        let (t, left) = &mut self.due[i];
        *t = match f.pace {
            Pace::Constant { rate } => *t + Duration::from_secs_f64(1.0 / rate),
            Pace::Poisson { rate } => *t + gap(&mut self.draws, rate),
            Pace::Bulk { .. } => handed,
        }
        // Back-pressure delays the flow; it does not make up for lost time in a burst.
        .max(handed);
        if let Pace::Bulk { .. } = f.pace {
            *left = left.saturating_sub(size as u64);
        }
    }
}

fn gap(rng: &mut ChaCha8Rng, rate: f64) -> Duration {
    let exp = Exp::new(rate.max(1e-9)).expect("a positive rate");
    Duration::from_secs_f64(exp.sample(rng))
}

/// Records that a sender was told at `now` that `messages` will not be delivered.
fn told_undelivered(log: &SharedLog, now: Duration, messages: &[Message]) {
    let mut log = lock(log);
    for m in messages {
        log.reported(&m.payload, now);
    }
}

/// A client's application: records what it receives and what its session hands back.
pub struct ClientApp {
    pub node: String,
    pub clock: AppClock,
    pub log: SharedLog,
}

impl Handler for ClientApp {
    fn on_message(&self, _: u32, message: Message) -> Option<Outgoing> {
        lock(&self.log).delivered(&self.node, &message.payload, self.clock.now());
        None
    }

    fn replies(&self) -> bool {
        false
    }

    fn undelivered(&self, _: u32, messages: Vec<Message>) {
        told_undelivered(&self.log, self.clock.now(), &messages);
    }
}

/// Per server session: the stream its queue feeds, and the queue while no connection has it.
type Queues = BTreeMap<u32, (StreamId, Option<mpsc::Receiver<Outgoing>>)>;

/// The server's application, one per server process life: records what it receives, and runs
/// a generator per session for the flows that send down.
pub struct ServerApp {
    apps: Apps,
    life: u32,
    /// Each session's queue while no connection carries it, and the stream it feeds.
    queues: Mutex<Queues>,
    /// Generators to start; the server process runs them ([`ServerApp::run_generators`]) so
    /// that they die with it.
    start: mpsc::UnboundedSender<(Generator, mpsc::Sender<Outgoing>)>,
    /// The server's CPU, charged for each message received, when a load model is on.
    cpu: Option<Arc<Cpu>>,
}

impl ServerApp {
    /// The application and the receiver of the generators it starts, which
    /// [`ServerApp::run_generators`] must run inside the server process.
    pub fn new(
        apps: Apps,
        life: u32,
    ) -> (
        ServerApp,
        mpsc::UnboundedReceiver<(Generator, mpsc::Sender<Outgoing>)>,
    ) {
        let (start, started) = mpsc::unbounded_channel();
        let app = ServerApp {
            apps,
            life,
            queues: Mutex::new(BTreeMap::new()),
            start,
            cpu: None,
        };
        (app, started)
    }

    /// The same application, charging `cpu` for every message it receives.
    pub fn with_cpu(mut self, cpu: Option<Arc<Cpu>>) -> ServerApp {
        self.cpu = cpu;
        self
    }

    /// Runs every generator the application starts, until the process ends.
    pub async fn run_generators(
        mut started: mpsc::UnboundedReceiver<(Generator, mpsc::Sender<Outgoing>)>,
    ) {
        let mut running = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                biased;
                g = started.recv() => match g {
                    Some((g, tx)) => {
                        running.spawn(g.run(tx));
                    }
                    None => break,
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `client-7` → 7.
fn client_index(client_id: &str) -> Option<usize> {
    client_id.strip_prefix("client-")?.parse().ok()
}

impl Handler for ServerApp {
    fn on_message(&self, _: u32, message: Message) -> Option<Outgoing> {
        let now = self.apps.clock.now();
        lock(&self.apps.log).delivered("server", &message.payload, now);
        if let Some(cpu) = &self.cpu {
            cpu.message();
        }
        None
    }

    fn replies(&self) -> bool {
        false
    }

    fn undelivered(&self, _: u32, messages: Vec<Message>) {
        told_undelivered(&self.apps.log, self.apps.clock.now(), &messages);
    }

    fn outgoing(&self, session_id: u32, client_id: &str) -> Option<mpsc::Receiver<Outgoing>> {
        let mut queues = self.queues();
        if let Some((_, rx)) = queues.get_mut(&session_id) {
            return rx.take();
        }
        let stream = StreamId::server(self.life, session_id);
        let ends = Ends {
            sender: "server",
            host: super::runner::SERVER,
            receiver: client_id,
        };
        let key = vec![1, u64::from(self.life), u64::from(session_id)];
        let (generator, tx, rx) = self.apps.open(
            client_index(client_id)?,
            false,
            stream,
            ends,
            self.life,
            key,
        )?;
        // The process is gone if nobody runs generators any more: then nothing is sent.
        let _ = self.start.send((generator, tx));
        queues.insert(session_id, (stream, None));
        Some(rx)
    }

    fn give_back(&self, session_id: u32, outgoing: mpsc::Receiver<Outgoing>) {
        if let Some((_, slot)) = self.queues().get_mut(&session_id) {
            *slot = Some(outgoing);
        }
    }

    fn ended(&self, session_id: u32) {
        let Some((stream, rx)) = self.queues().remove(&session_id) else {
            return;
        };
        // What is still in the queue never reached the session: it was not sent. Dropping the
        // receiver stops the generator.
        if let Some(mut rx) = rx {
            let mut log = lock(&self.apps.log);
            while let Ok(m) = rx.try_recv() {
                if let Some(id) = MessageId::read(&m.payload) {
                    log.withdrawn(stream, id.index);
                }
            }
        }
    }
}

/// What the applications of one run share: the workload, the network's clock, the delivery
/// log, when flows stop and the run's seed.
#[derive(Clone)]
pub struct Apps {
    pub workload: Arc<Workload>,
    pub clock: AppClock,
    pub log: SharedLog,
    /// Flows stop here: the run's end less the drain.
    pub end: Duration,
    pub seed: u64,
}

impl Apps {
    /// The generator of client `index` on `host` in process life `life`, if its flows send
    /// up, with both ends of its queue: the receiver goes to `net::client::run`.
    pub fn client_generator(&self, index: usize, host: &str, life: u32) -> Option<Sender> {
        let node = format!("client-{index}");
        let ends = Ends {
            sender: &node,
            host,
            receiver: super::runner::SERVER,
        };
        let stream = StreamId::client(index as u32, life);
        let key = vec![0, u64::from(life), index as u64];
        self.open(index, true, stream, ends, life, key)
    }

    /// Opens `stream` for the flows of session `index` one way (`up`: client to server), if
    /// it has any: the generator and both ends of its queue.
    fn open(
        &self,
        index: usize,
        up: bool,
        stream: StreamId,
        ends: Ends<'_>,
        life: u32,
        key: Vec<u64>,
    ) -> Option<Sender> {
        let flows: Vec<Flow> = self
            .workload
            .flows_of(index, up)
            .map(|(_, f)| f.clone())
            .collect();
        if flows.is_empty() {
            return None;
        }
        lock(&self.log).open(stream, ends.sender, ends.host, ends.receiver, life);
        let (tx, rx) = mpsc::channel(QUEUE);
        let generator = Generator {
            clock: self.clock.clone(),
            log: self.log.clone(),
            stream,
            flows,
            end: self.end,
            seed: self.seed,
            key,
        };
        Some((generator, tx, rx))
    }
}

/// A stream's generator and both ends of its queue.
pub type Sender = (Generator, mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>);

/// A stream's sending node, its host, and the receiving node.
struct Ends<'a> {
    sender: &'a str,
    host: &'a str,
    receiver: &'a str,
}
