//! An in-memory TCP for the simulator: connections between named hosts whose faults behave as
//! they do on Linux (`shared/docs/network-semantics.md`).
//!
//! turmoil's own TCP drops a segment for good under `fail_rate` or `partition` and wedges the
//! stream, and its `crash` always sends FIN. So connections here do not use turmoil's network
//! at all: turmoil provides the runtime and the clock; this module provides the hosts' sockets
//! and what their faults do (the runner starts and stops the hosts' processes). The drivers in
//! `net` run on them unchanged through [`SimListener`] and [`SimConnector`].
//!
//! # The model
//!
//! Each write is one segment, or with a congestion window (on when a link has a rate) one per
//! MSS. Each connection's two kernels are a [`TcpModel`] (`sim::tcp`):
//! retransmission timers, tail loss probes, SACK recovery, delayed ACKs and timeouts as Linux
//! runs them, over a [`PathModel`] per direction that says when (if ever) each packet arrives.
//! Loss and partitions become retransmission delay, never missing bytes. Segments are delivered
//! in order: a late one holds back everything behind it (head-of-line blocking). Unacknowledged
//! bytes (data the window holds back included) count against the sender's buffer
//! ([`TcpConfig::send_buffer`], fixed where Linux autotunes), so a long stall or a slow link
//! blocks the writer as a real socket does. The postman ([`SimNet::postman`]) runs each connection's model at its next event.
//!
//! Endpoint faults:
//!
//! - **kill** (process dies, kernel alive): each socket sends FIN, or RST if it had unread data;
//!   the peer reads EOF or gets `ConnectionReset`; connects to the host are refused.
//! - **crash** (machine dies): silence. Nothing more leaves the host; what is sent to it is never
//!   acknowledged, so senders time out by their retransmission budget; connects time out.
//! - **reboot**: a crash, then the host is up again with no memory of old connections: a peer's
//!   next transmission on one gets RST.
//! - **pause** (SIGSTOP, GC stall): the host's kernel keeps acknowledging, so peers see no
//!   retransmissions; its sockets deliver nothing to the application and send nothing until it
//!   resumes, then the backlog flows at once. The drivers stop too: their clock's gate
//!   ([`SimNet::gate`]) holds every sleep until the resume. Anything written during the pause
//!   anyway is held and leaves at the resume.
//!
//! All times are durations since the simulation started (`turmoil::sim_elapsed`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Sleep;

use crate::net::{Gate, GateHandle};

pub use super::fault::ConnectOutcome;
use super::fault::TcpConfig;
use super::tcp::{Note, Output, TcpInfo, TcpModel, Wire};

/// One direction of one connection: the faults between two hosts as this connection sees them.
pub trait PathModel: Send {
    /// A packet with `payload` bytes of data sent at `at`: when it arrives, or `None` if it is
    /// lost (a link with a rate queues and serializes it first, and may drop it).
    fn carry(&mut self, at: Duration, payload: usize) -> Option<Duration>;
    /// A SYN sent at `at` towards a listening host.
    fn connect(&mut self, at: Duration) -> ConnectOutcome;
    /// A seeded number for the sending kernel's timer wheel (see `sim::tcp`).
    fn wheel_seed(&self) -> u64 {
        0
    }
}

/// Makes the path models for new connections.
pub trait Links: Send {
    /// The model for data from host `from` to host `to` on connection `conn`, opened by the
    /// client session `client.1` on host `client.0` (faults may name the session).
    fn path(&mut self, from: &str, to: &str, conn: u64, client: (&str, &str))
    -> Box<dyn PathModel>;
    /// The kernels' TCP settings.
    fn tcp(&self) -> TcpConfig {
        TcpConfig::default()
    }
    /// Packets dropped so far by full link queues, over every direction.
    fn queue_drops(&self) -> u64 {
        0
    }
}

/// A path with a fixed one-way delay and no faults.
#[derive(Clone, Copy, Debug)]
pub struct Ideal(pub Duration);

impl PathModel for Ideal {
    fn carry(&mut self, at: Duration, _payload: usize) -> Option<Duration> {
        Some(at + self.0)
    }
    fn connect(&mut self, at: Duration) -> ConnectOutcome {
        ConnectOutcome::Established(at + self.0 * 2)
    }
}

impl Links for Ideal {
    fn path(&mut self, _: &str, _: &str, _: u64, _: (&str, &str)) -> Box<dyn PathModel> {
        Box::new(*self)
    }
}

/// What a host is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostState {
    Up,
    /// The process died; the kernel answers (FIN/RST, connection refused).
    Killed,
    /// The machine is gone: silence.
    Crashed,
    /// The process is stopped; the kernel still acknowledges.
    Paused,
}

/// The most one `poll_write` takes (a write of more returns a partial count).
pub(crate) const MAX_SEGMENT: usize = 64 * 1024;

struct Segment {
    /// When it is in the receiver's buffer; `Duration::MAX` while it is not yet.
    at: Duration,
    data: Bytes,
}

/// Data flowing from one side of a connection to the other.
#[derive(Default)]
struct Pipe {
    /// Written and not yet read, in order; the first has TCP sequence `first_seq`.
    segments: VecDeque<Segment>,
    first_seq: u64,
    /// The FIN's sequence number, once the writer has shut down.
    fin_seq: Option<u64>,
    /// The reader sees end of stream from this time on.
    fin_at: Option<Duration>,
    /// The reader sees a reset from this time on.
    rst_at: Option<Duration>,
    /// The writer's side failed (ETIMEDOUT) from this time on.
    timed_out_at: Option<Duration>,
    /// Bytes written while the sender's host was paused, sent when it resumes.
    held: Vec<Bytes>,
    write_shut: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct Conn {
    hosts: [String; 2],
    /// Each side's node as the trace names it: the client session, and the server's host.
    nodes: [String; 2],
    /// Each side's host as an index into [`State::clocks`].
    host_ids: [usize; 2],
    /// `pipes[i]` carries data from side `i` to side `1 - i`.
    pipes: [Pipe; 2],
    paths: [Box<dyn PathModel>; 2],
    /// The two kernels' TCP.
    tcp: TcpModel,
    /// The earliest time this connection is filed with the postman at (see `State::mail`).
    scheduled: Option<Duration>,
    /// Side `i` has dropped its socket.
    closed: [bool; 2],
    /// Side `i`'s host has forgotten this connection (crash and reboot).
    forgotten: [bool; 2],
}

/// Connections by id. Ids are handed out in order from 1, so a vector indexed by id finds one
/// without a search and iterates in id order; a closed connection leaves an empty slot.
#[derive(Default)]
struct Conns(Vec<Option<Box<Conn>>>);

impl Conns {
    fn get(&self, id: u64) -> Option<&Conn> {
        self.0.get(usize::try_from(id).ok()?)?.as_deref()
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.0.get_mut(usize::try_from(id).ok()?)?.as_deref_mut()
    }

    fn insert(&mut self, id: u64, conn: Conn) {
        let i = usize::try_from(id).expect("connection ids fit in memory");
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(Box::new(conn));
    }

    fn remove(&mut self, id: u64) {
        if let Some(slot) = usize::try_from(id).ok().and_then(|i| self.0.get_mut(i)) {
            *slot = None;
        }
    }

    /// Removes connection `id` once both its sockets are closed and its kernels have nothing
    /// more to do (what they held sent and acknowledged, or aborted by a RST, or given up):
    /// until then a closed socket's kernel goes on as an orphan, as Linux's does.
    fn retire_if_done(&mut self, id: u64) {
        if self
            .get(id)
            .is_some_and(|c| c.closed[0] && c.closed[1] && c.tcp.poll_timeout().is_none())
        {
            self.remove(id);
        }
    }

    fn values(&self) -> impl Iterator<Item = &Conn> {
        self.0.iter().filter_map(|c| c.as_deref())
    }
}

struct Pending {
    stream: SimStream,
    peer: SocketAddr,
}

struct ListenerState {
    queue: VecDeque<Pending>,
    waker: Option<Waker>,
}

struct State {
    hosts: BTreeMap<String, HostState>,
    /// Hosts paused by the fault schedule, and hosts whose process its CPU stops
    /// ([`SimNet::stall`]): a host is `Paused` while it is in either.
    fault_paused: BTreeSet<String>,
    stalled: BTreeSet<String>,
    /// A stop its CPU has asked for, per host, as `[from, until)`: the host's sockets and gate
    /// act stopped from `from` on, before anything of that instant runs, even before the task
    /// that carries the stop out ([`SimNet::stall`]) does.
    stops: BTreeMap<String, (Duration, Duration)>,
    listeners: BTreeMap<(String, u16), ListenerState>,
    conns: Conns,
    next_conn: u64,
    links: Box<dyn Links>,
    /// The kernels' TCP settings, shared by every connection's model.
    tcp: Arc<TcpConfig>,
    /// Time as last seen inside a host, for code that runs outside one (drops during a crash).
    last_now: Duration,
    /// Wakers from sockets dropped outside any host (turmoil dropping a host's tasks,
    /// in an order that depends on tokio's process-wide task ids): woken before the next step
    /// ([`SimNet::set_time`]) in connection order, so the run stays deterministic.
    deferred: BTreeMap<(u64, usize, usize), Waker>,
    /// Bumped whenever a host's state changes, so sockets can cache theirs.
    host_epoch: u64,
    /// Each host's gate: closed while it is paused.
    gates: BTreeMap<String, Arc<HostGate>>,
    /// Counts [`SimNet::set_time`] calls, one before each simulation step; 0 until the first.
    step: u64,
    /// Index of each host that has connections, into `clocks`.
    host_ids: BTreeMap<String, usize>,
    /// Per host, its clock as read once in the current step (see [`State::host_now`]).
    clocks: Vec<Option<StepClock>>,
    /// Connections whose TCP has something to do, by when: (time, connection). The postman
    /// ([`SimNet::postman`]) runs each then and wakes the readers and writers it concerns; a
    /// reader woken when a segment was sent would only find it in flight and sleep again.
    /// Entries are never removed: one a connection no longer needs (its next event moved later,
    /// or it closed) is skipped or finds nothing due, which is cheaper than keeping the queue
    /// exact at every change ([`reschedule`]).
    mail: BinaryHeap<Reverse<(Duration, u64)>>,
    /// The running postman's waker, and the instant it sleeps until.
    postman: Option<(Waker, Option<Duration>)>,
    /// Segment-level notes of every connection's TCP, when asked for ([`SimNet::keep_notes`]).
    notes: Option<Vec<(Duration, u64, String, Note)>>,
}

/// A host's clock as read at one instant of one step: within that step, the host's simulated
/// time is `sim` plus however far its tokio clock has moved since `instant`.
#[derive(Clone, Copy)]
struct StepClock {
    step: u64,
    instant: tokio::time::Instant,
    sim: Duration,
}

/// Holds a paused host's drivers: their timers wait for the resume (see `net::Gate`).
pub struct HostGate {
    paused: AtomicBool,
    resumed: Notify,
    /// A stop asked for ahead ([`SimNet::stop_ahead`]), `[from, until)` in nanoseconds of
    /// simulated time; `from == u64::MAX` when there is none.
    stop_from: AtomicU64,
    stop_until: AtomicU64,
}

impl HostGate {
    /// Closed: paused, or within a stop asked for ahead.
    fn closed(&self) -> bool {
        if self.paused.load(Ordering::Acquire) {
            return true;
        }
        let from = self.stop_from.load(Ordering::Acquire);
        if from == u64::MAX {
            return false;
        }
        let now = turmoil::sim_elapsed().unwrap_or_default().as_nanos() as u64;
        from <= now && now < self.stop_until.load(Ordering::Acquire)
    }
}

/// A gate found open: resolves at once. Zero-sized, so boxing it does not allocate.
struct Open;

impl Future for Open {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

impl Gate for HostGate {
    fn wait_open(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        // The drivers ask at every turn of their loops and the gate is almost always open:
        // answer that without touching the `Notify`. Only a closed gate needs the careful path.
        if !self.closed() {
            return Box::pin(Open);
        }
        Box::pin(async move {
            loop {
                let resumed = self.resumed.notified();
                tokio::pin!(resumed);
                // Registered before the check, so a resume in between is not missed.
                resumed.as_mut().enable();
                if !self.closed() {
                    return;
                }
                resumed.await;
            }
        })
    }
}

impl State {
    /// The state of the host on `side` of connection `id`, through the socket's cache.
    fn host_state_of(
        &self,
        id: u64,
        side: usize,
        cache: &mut Option<(u64, HostState)>,
    ) -> HostState {
        if let Some((epoch, state)) = *cache
            && epoch == self.host_epoch
            && self.stops.is_empty()
        {
            return state;
        }
        let host = self.conns.get(id).map(|c| &c.hosts[side]);
        let state = host
            .and_then(|h| self.hosts.get(h).copied())
            .unwrap_or(HostState::Crashed);
        *cache = Some((self.host_epoch, state));
        // Within a stop its CPU asked for ahead, a running host acts stopped.
        if state == HostState::Up
            && let Some(&(from, until)) = host.and_then(|h| self.stops.get(h))
            && (from..until).contains(&self.last_now)
        {
            return HostState::Paused;
        }
        state
    }

    /// Brings `last_now` up to the present for [`State::host_state_of`] while a stop is asked
    /// for ahead (it depends on the time then); nothing otherwise.
    fn clock_for_stops(&mut self, id: u64, side: usize) {
        if self.stops.is_empty() {
            return;
        }
        if let Some(host) = self.conns.get(id).map(|c| c.host_ids[side]) {
            host_now(&mut self.clocks, host, self.step, &mut self.last_now);
        }
    }

    /// A host's state changed: sockets look theirs up again, and every host's clock is read
    /// afresh (a host restarted by turmoil runs on a new tokio clock).
    fn host_changed(&mut self) {
        self.host_epoch += 1;
        self.clocks.fill(None);
    }

    /// The index of `host` in `clocks`.
    fn host_id(&mut self, host: &str) -> usize {
        if let Some(&i) = self.host_ids.get(host) {
            return i;
        }
        self.clocks.push(None);
        self.host_ids
            .insert(host.to_string(), self.clocks.len() - 1);
        self.clocks.len() - 1
    }
}

/// The current time for a socket on host `id`, when called from inside that host.
///
/// `turmoil::sim_elapsed` finds the running host in a hash map and reads the host's tokio
/// clock, for every call. Within one step a host's simulated time is a fixed offset from its
/// tokio clock (turmoil computes it that way), so the first call in a step reads it and later
/// ones only read the tokio clock. A step is known from [`SimNet::set_time`]; without it (step 0)
/// nothing is cached.
fn host_now(
    clocks: &mut [Option<StepClock>],
    id: usize,
    step: u64,
    last_now: &mut Duration,
) -> Duration {
    if step != 0
        && let Some(c) = clocks[id]
        && c.step == step
    {
        let t = c.sim + tokio::time::Instant::now().duration_since(c.instant);
        return seen(last_now, Some(t));
    }
    let in_host = turmoil::sim_elapsed();
    if step != 0
        && let Some(sim) = in_host
    {
        clocks[id] = Some(StepClock {
            step,
            instant: tokio::time::Instant::now(),
            sim,
        });
    }
    seen(last_now, in_host)
}

/// The current time, given what the host's clock says (if inside a host), and `last_now`
/// brought up to it.
fn seen(last_now: &mut Duration, in_host: Option<Duration>) -> Duration {
    match in_host {
        Some(t) => {
            *last_now = (*last_now).max(t);
            t
        }
        None => *last_now,
    }
}

/// The simulated network. Cheap to clone; every host holds one.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
}

fn ip_of(index: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (index >> 8) as u8, index as u8))
}

/// The client's address as the server sees it on connection `id`.
pub(crate) fn peer_addr(id: u64) -> SocketAddr {
    SocketAddr::new(ip_of(id), (id % 50_000 + 10_000) as u16)
}

impl SimNet {
    pub fn new(links: Box<dyn Links>) -> SimNet {
        SimNet {
            state: Arc::new(Mutex::new(State {
                hosts: BTreeMap::new(),
                fault_paused: BTreeSet::new(),
                stalled: BTreeSet::new(),
                stops: BTreeMap::new(),
                listeners: BTreeMap::new(),
                conns: Conns::default(),
                next_conn: 1,
                tcp: Arc::new(links.tcp()),
                links,
                last_now: Duration::ZERO,
                deferred: BTreeMap::new(),
                host_epoch: 0,
                gates: BTreeMap::new(),
                step: 0,
                host_ids: BTreeMap::new(),
                clocks: Vec::new(),
                mail: BinaryHeap::new(),
                postman: None,
                notes: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current simulated time: the host's clock inside a host, else the last one seen.
    pub fn now(&self) -> Duration {
        match turmoil::sim_elapsed() {
            Some(t) => {
                let mut s = self.lock();
                s.last_now = s.last_now.max(t);
                t
            }
            None => self.lock().last_now,
        }
    }

    /// Tells the network the time when no host is running. Call it between simulation steps,
    /// before each one: sockets read a host's clock once per step and reuse it within the step.
    /// Tasks left waiting by sockets dropped outside a host are woken here, in a fixed order.
    pub fn set_time(&self, t: Duration) {
        let deferred = {
            let mut s = self.lock();
            s.last_now = s.last_now.max(t);
            s.step += 1;
            std::mem::take(&mut s.deferred)
        };
        deferred.into_values().for_each(Waker::wake);
    }

    /// Runs each connection's TCP at its next event, and wakes the readers and writers that
    /// concerns, for as long as it runs. Run it as a task in the runtime the sockets are used
    /// in (one runtime for every host: a postman cannot set timers in another host's runtime).
    /// Without one, sockets run their connection's TCP themselves when polled and set their own
    /// timers for its next event: a turn more per segment.
    pub async fn postman(&self) {
        let mut sleep = Box::pin(tokio::time::sleep(Duration::ZERO));
        std::future::poll_fn(|cx| {
            let mut wake = Vec::new();
            let next;
            let now;
            {
                let mut guard = self.lock();
                let s = &mut *guard;
                now = seen(&mut s.last_now, turmoil::sim_elapsed());
                let State {
                    conns, mail, notes, ..
                } = s;
                while let Some(&Reverse((at, id))) = mail.peek()
                    && at <= now
                {
                    mail.pop();
                    // An entry superseded by an earlier one for the same connection is stale.
                    if let Some(conn) = conns.get_mut(id)
                        && conn.scheduled == Some(at)
                    {
                        conn.scheduled = None;
                        run_tcp(conn, id, now, &mut wake, notes);
                        reschedule(mail, conn, id);
                        conns.retire_if_done(id);
                    }
                }
                next = mail.peek().map(|m| m.0.0);
                s.postman = Some((cx.waker().clone(), next));
            }
            wake.into_iter().for_each(Waker::wake);
            if let Some(at) = next {
                let deadline = tokio::time::Instant::now() + at.saturating_sub(now);
                sleep.as_mut().reset(deadline);
                if sleep.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
            Poll::<()>::Pending
        })
        .await
    }

    /// Keep segment-level notes (every retransmission, probe and timeout) of connections opened
    /// from now on, for a detailed trace.
    pub fn keep_notes(&self) {
        self.lock().notes.get_or_insert_with(Vec::new);
    }

    /// The notes kept so far: (time, connection, node, note), in the order they were taken; the
    /// node is the client session or the server's host.
    pub fn take_notes(&self) -> Vec<(Duration, u64, String, Note)> {
        self.lock()
            .notes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The kernel's view of side `side` (0 = the connecting side) of connection `conn`, as
    /// `ss -ti` would show it.
    pub fn tcp_info(&self, conn: u64, side: usize) -> Option<TcpInfo> {
        self.lock().conns.get(conn).map(|c| c.tcp.info(side))
    }

    pub fn add_host(&self, name: &str) {
        let mut s = self.lock();
        s.hosts.insert(name.to_string(), HostState::Up);
        s.host_changed();
    }

    pub fn host_state(&self, name: &str) -> HostState {
        self.lock()
            .hosts
            .get(name)
            .copied()
            .unwrap_or(HostState::Crashed)
    }

    /// The gate of `host`, for the drivers running there.
    pub fn gate(&self, host: &str) -> GateHandle {
        let mut s = self.lock();
        let g = s.gates.entry(host.to_string()).or_insert_with(|| {
            Arc::new(HostGate {
                paused: AtomicBool::new(false),
                resumed: Notify::new(),
                stop_from: AtomicU64::new(u64::MAX),
                stop_until: AtomicU64::new(0),
            })
        });
        GateHandle(g.clone())
    }

    fn set_paused(s: &mut State, host: &str, paused: bool) {
        if let Some(g) = s.gates.get(host) {
            g.paused.store(paused, Ordering::Release);
            if !paused {
                g.resumed.notify_waiters();
            }
        }
    }

    /// A listener for `host:port`. Fails if the port is taken.
    pub fn listen(&self, host: &str, port: u16) -> io::Result<SimListener> {
        let mut s = self.lock();
        let key = (host.to_string(), port);
        if s.listeners.contains_key(&key) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        s.listeners.insert(
            key,
            ListenerState {
                queue: VecDeque::new(),
                waker: None,
            },
        );
        Ok(SimListener {
            net: self.clone(),
            host: host.to_string(),
            port,
        })
    }

    /// A connector from `from` to `to:port`, for the client session `node`.
    pub fn connector(&self, from: &str, node: &str, to: &str, port: u16) -> SimConnector {
        SimConnector {
            net: self.clone(),
            from: from.to_string(),
            node: node.to_string(),
            to: to.to_string(),
            port,
        }
    }

    /// Applies an endpoint fault to `host` (call before stopping its process).
    ///
    /// `Killed` and `Crashed` make the host's sockets behave as described in the module docs
    /// when they are dropped; a crashed machine's kernel also falls silent at once. `Paused`
    /// holds its traffic until [`SimNet::resume`]. Either way the host's gate closes and its
    /// sockets read nothing.
    pub fn set_host_state(&self, host: &str, state: HostState) {
        {
            let mut s = self.lock();
            if state == HostState::Paused {
                s.fault_paused.insert(host.to_string());
                if s.hosts.get(host) == Some(&HostState::Paused) {
                    // Already stopped by its CPU: it stays stopped for both.
                    return;
                }
            } else {
                s.fault_paused.remove(host);
                s.stalled.remove(host);
                SimNet::clear_stop(&mut s, host);
            }
        }
        self.enter_state(host, state);
    }

    fn enter_state(&self, host: &str, state: HostState) {
        let now = self.now();
        let mut wake = Vec::new();
        {
            let mut s = self.lock();
            s.hosts.insert(host.to_string(), state);
            s.host_changed();
            // A process that is stopped, dead or gone runs nothing more: its tasks wait at the
            // gate until it resumes or until they are dropped.
            SimNet::set_paused(&mut s, host, state != HostState::Up);
            match state {
                HostState::Crashed => s.for_ends_on(host, now, &mut wake, |conn, side, _| {
                    conn.tcp.machine_down(side)
                }),
                HostState::Paused => s.for_ends_on(host, now, &mut wake, |conn, side, _| {
                    conn.tcp.set_reading(side, false)
                }),
                HostState::Up | HostState::Killed => {}
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// Resumes a paused host: what it wrote goes out now, what it was sent becomes readable.
    /// A host whose CPU still stops it ([`SimNet::stall`]) stays paused until its CPU lets it
    /// run.
    pub fn resume(&self, host: &str) {
        {
            let mut s = self.lock();
            s.fault_paused.remove(host);
            if s.stalled.contains(host) {
                return;
            }
        }
        self.leave_pause(host);
    }

    /// Stops (`on`) or lets run again a live host's process for its CPU's queue
    /// ([`super::load`]): to its connections and peers the same as a pause, and kept apart
    /// from the fault schedule's pauses, so that each ends only its own.
    pub fn stall(&self, host: &str, on: bool) {
        let state = {
            let mut s = self.lock();
            let state = s.hosts.get(host).copied().unwrap_or(HostState::Up);
            if matches!(state, HostState::Killed | HostState::Crashed) {
                return;
            }
            if on {
                s.stalled.insert(host.to_string());
            } else {
                s.stalled.remove(host);
                SimNet::clear_stop(&mut s, host);
                if s.fault_paused.contains(host) {
                    return;
                }
            }
            state
        };
        match (on, state) {
            (true, HostState::Up) => self.enter_state(host, HostState::Paused),
            (false, HostState::Paused) => self.leave_pause(host),
            _ => {}
        }
    }

    /// Asks ahead for a stop of `host`'s process by its CPU over `[from, until)`: from `from`
    /// on its sockets read and send nothing and its gate is closed, whatever the order the
    /// tasks of that instant run in; [`SimNet::stall`] then carries the stop out.
    pub fn stop_ahead(&self, host: &str, from: Duration, until: Duration) {
        let mut s = self.lock();
        s.stops.insert(host.to_string(), (from, until));
        // The gate keeps its own copy: it answers the drivers without taking this lock.
        if let Some(g) = s.gates.get(host) {
            g.stop_until
                .store(until.as_nanos() as u64, Ordering::Release);
            g.stop_from.store(from.as_nanos() as u64, Ordering::Release);
        }
    }

    fn clear_stop(s: &mut State, host: &str) {
        if s.stops.remove(host).is_some()
            && let Some(g) = s.gates.get(host)
        {
            g.stop_from.store(u64::MAX, Ordering::Release);
        }
    }

    fn leave_pause(&self, host: &str) {
        let now = self.now();
        let mut wake = Vec::new();
        {
            let mut s = self.lock();
            s.hosts.insert(host.to_string(), HostState::Up);
            s.host_changed();
            SimNet::set_paused(&mut s, host, false);
            s.for_ends_on(host, now, &mut wake, |conn, side, wake| {
                conn.tcp.set_reading(side, true);
                let held = std::mem::take(&mut conn.pipes[side].held);
                for data in held {
                    write_segment(conn, side, now, data);
                }
                wake.extend(conn.pipes[side].reader.take());
                wake.extend(conn.pipes[1 - side].reader.take());
                wake.extend(conn.pipes[side].writer.take());
            });
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// A crashed host comes back with an empty kernel: its old connections are forgotten, and a
    /// peer's next transmission on one gets RST. Call before starting its process again.
    pub fn reboot(&self, host: &str) {
        let now = self.now();
        let mut wake = Vec::new();
        {
            let mut s = self.lock();
            s.hosts.insert(host.to_string(), HostState::Up);
            s.fault_paused.remove(host);
            s.stalled.remove(host);
            SimNet::clear_stop(&mut s, host);
            s.host_changed();
            SimNet::set_paused(&mut s, host, false);
            s.for_ends_on(host, now, &mut wake, |conn, side, wake| {
                conn.forgotten[side] = true;
                conn.closed[side] = true;
                // The peer's next transmission (a resend, new data) is answered with RST.
                conn.tcp.forget(side);
                wake.extend(conn.pipes[side].reader.take());
            });
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// Packets dropped so far by full link queues (tail drops), over every direction.
    pub fn queue_drops(&self) -> u64 {
        self.lock().links.queue_drops()
    }

    /// Number of connections not yet closed by both sides (for tests).
    pub fn open_connections(&self) -> usize {
        self.lock()
            .conns
            .values()
            .filter(|c| !(c.closed[0] && c.closed[1]))
            .count()
    }
}

/// The application on `side` writes `data` now: one segment into the connection's TCP, or
/// with a congestion window one per MSS (the kernel cuts a write into MSS-sized segments).
fn write_segment(conn: &mut Conn, side: usize, now: Duration, mut data: Bytes) {
    let Conn {
        tcp, paths, pipes, ..
    } = conn;
    let segments = &mut pipes[side].segments;
    tcp.write_bytes(side, data.len(), now, &mut Paths(paths), |n| {
        segments.push_back(Segment {
            at: Duration::MAX,
            data: data.split_to(n),
        });
    });
}

/// The packets of one connection, for its TCP: `0[i]` carries what side `i` sends.
pub(crate) struct Paths<'a>(pub(crate) &'a mut [Box<dyn PathModel>; 2]);

impl Wire for Paths<'_> {
    fn carry(&mut self, from: usize, at: Duration, payload: usize) -> Option<Duration> {
        self.0[from].carry(at, payload)
    }
}

/// Runs connection `id`'s TCP up to `now` and applies what it did to the sockets' buffers,
/// collecting the wakers of the readers and writers concerned.
fn run_tcp(
    conn: &mut Conn,
    id: u64,
    now: Duration,
    wake: &mut Vec<Waker>,
    notes: &mut Option<Vec<(Duration, u64, String, Note)>>,
) {
    let Conn {
        tcp,
        paths,
        pipes,
        nodes,
        ..
    } = conn;
    if tcp.due(now) {
        tcp.advance(now, &mut Paths(paths));
    }
    if tcp.has_outputs() {
        for out in tcp.take_outputs() {
            match out {
                Output::Delivered { from, seq, at, .. } => {
                    let pipe = &mut pipes[from];
                    if pipe.fin_seq == Some(seq) {
                        pipe.fin_at = Some(pipe.fin_at.map_or(at, |x| x.min(at)));
                    } else if let Some(seg) = seq
                        .checked_sub(pipe.first_seq)
                        .and_then(|i| pipe.segments.get_mut(usize::try_from(i).ok()?))
                    {
                        seg.at = at;
                    }
                    wake.extend(pipe.reader.take());
                }
                Output::TimedOut { side, at } => {
                    let p = &mut pipes[side];
                    p.timed_out_at = Some(p.timed_out_at.map_or(at, |x| x.min(at)));
                    wake.extend(p.writer.take());
                    wake.extend(pipes[1 - side].reader.take());
                }
                Output::Reset { side, at } => {
                    // The reader on `side` reads the other pipe, and finds the reset there.
                    let p = &mut pipes[1 - side];
                    p.rst_at = Some(p.rst_at.map_or(at, |x| x.min(at)));
                    wake.extend(p.reader.take());
                    wake.extend(pipes[side].writer.take());
                }
                Output::Acked { side, .. } => wake.extend(pipes[side].writer.take()),
            }
        }
    }
    if let Some(n) = notes {
        for note in tcp.take_notes() {
            n.push((note.at, id, nodes[note.side].clone(), note));
        }
    }
}

/// Files connection `id` with the postman at its TCP's next event, unless an entry at or
/// before it is already filed (that one runs the model, which files the next): the time filed.
fn reschedule(
    mail: &mut BinaryHeap<Reverse<(Duration, u64)>>,
    conn: &mut Conn,
    id: u64,
) -> Option<Duration> {
    let next = conn.tcp.poll_timeout()?;
    if conn.scheduled.is_some_and(|s| s <= next) {
        return None;
    }
    mail.push(Reverse((next, id)));
    conn.scheduled = Some(next);
    Some(next)
}

impl State {
    /// Connection `id`'s TCP run up to `now`, its effects applied, and the postman told when it
    /// next has work (woken if that is sooner than it sleeps until).
    fn touch(&mut self, id: u64, now: Duration, wake: &mut Vec<Waker>) {
        let State {
            conns,
            mail,
            notes,
            postman,
            ..
        } = self;
        let Some(conn) = conns.get_mut(id) else {
            return;
        };
        run_tcp(conn, id, now, wake, notes);
        if let Some(t) = reschedule(mail, conn, id)
            && let Some((w, until)) = postman
            && until.is_none_or(|u| t < u)
        {
            *until = Some(t);
            wake.push(w.clone());
        }
    }

    /// `act(conn, side, wake)` for every connection end on `host`, in connection order, with
    /// each connection's TCP run up to `now` before and its effects applied after.
    fn for_ends_on(
        &mut self,
        host: &str,
        now: Duration,
        wake: &mut Vec<Waker>,
        mut act: impl FnMut(&mut Conn, usize, &mut Vec<Waker>),
    ) {
        let ids: Vec<u64> = self
            .conns
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_deref()
                    .filter(|c| c.hosts.iter().any(|h| h == host))
                    .map(|_| i as u64)
            })
            .collect();
        for id in ids {
            self.touch(id, now, wake);
            let conn = self.conns.get_mut(id).expect("listed");
            for side in 0..2 {
                if conn.hosts[side] == host {
                    act(conn, side, wake);
                }
            }
            self.touch(id, now, wake);
            self.conns.retire_if_done(id);
        }
    }
}

/// A simulated TCP socket.
pub struct SimStream {
    net: SimNet,
    conn: u64,
    side: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    /// This socket's host state as of a host epoch.
    host_cache: Option<(u64, HostState)>,
}

impl std::fmt::Debug for SimStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimStream(conn {}, side {})", self.conn, self.side)
    }
}

impl SimStream {
    /// Sleeps until simulated time `at`, waking this task then.
    fn arm(&mut self, cx: &mut Context<'_>, now: Duration, at: Duration) {
        let deadline = tokio::time::Instant::now() + at.saturating_sub(now);
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        if let Some(s) = &mut self.sleep {
            // Registers the waker; if it is already due, poll again at once.
            if s.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (side, id) = (this.side, this.conn);
        let mut next: Option<Duration> = None;
        let mut wake = Vec::new();
        let mut now = Duration::ZERO;
        let result = 'read: {
            let mut guard = this.net.lock();
            let s = &mut *guard;
            // A stopped process reads nothing (a dead one is being dropped).
            s.clock_for_stops(id, side);
            let paused = s.host_state_of(id, side, &mut this.host_cache) != HostState::Up;
            let Some(conn) = s.conns.get(id) else {
                break 'read Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            let incoming = &conn.pipes[1 - side];
            // Nothing here depends on the time when nothing is due or pending, which is the
            // common case (a reader waiting for the next heartbeat): skip reading the clock.
            let idle = incoming.segments.is_empty()
                && incoming.fin_at.is_none()
                && incoming.rst_at.is_none()
                && conn.pipes[side].timed_out_at.is_none()
                && conn.scheduled.is_none();
            if !idle {
                let host = conn.host_ids[side];
                now = host_now(&mut s.clocks, host, s.step, &mut s.last_now);
                s.touch(id, now, &mut wake);
            }
            let no_postman = s.postman.is_none();
            let conn = s.conns.get_mut(id).expect("looked up above");
            if let Some(t) = conn.pipes[side].timed_out_at
                && t <= now
            {
                break 'read Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            let incoming = &mut conn.pipes[1 - side];
            if paused {
                register(&mut incoming.reader, cx);
                break 'read Poll::Pending;
            }
            if incoming.rst_at.is_some_and(|t| t <= now) {
                break 'read Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let mut read_any = false;
            while buf.remaining() > 0 {
                let Some(seg) = incoming.segments.front_mut() else {
                    break;
                };
                if seg.at > now {
                    break;
                }
                let n = seg.data.len().min(buf.remaining());
                buf.put_slice(&seg.data[..n]);
                seg.data.advance(n);
                if seg.data.is_empty() {
                    incoming.segments.pop_front();
                    incoming.first_seq += 1;
                }
                read_any = true;
            }
            if read_any {
                break 'read Poll::Ready(Ok(()));
            }
            if incoming.segments.is_empty() && incoming.fin_at.is_some_and(|t| t <= now) {
                break 'read Poll::Ready(Ok(()));
            }
            register(&mut incoming.reader, cx);
            // What this reader waits for; segments not yet delivered have no time yet, and
            // the TCP's next event is watched by the postman when there is one.
            let tcp_next = if no_postman {
                conn.tcp.poll_timeout()
            } else {
                None
            };
            let incoming = &conn.pipes[1 - side];
            for t in [
                incoming
                    .segments
                    .front()
                    .map(|s| s.at)
                    .filter(|&t| t != Duration::MAX),
                incoming.fin_at,
                incoming.rst_at,
                conn.pipes[side].timed_out_at,
                tcp_next,
            ]
            .into_iter()
            .flatten()
            {
                next = Some(next.map_or(t, |n: Duration| n.min(t)));
            }
            Poll::Pending
        };
        wake.into_iter().for_each(Waker::wake);
        if result.is_pending()
            && let Some(at) = next
        {
            this.arm(cx, now, at);
        }
        result
    }
}

/// Stores the task's waker in `slot`, unless the one already there wakes the same task.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let (side, id) = (this.side, this.conn);
        let mut wait_until = None;
        let mut wake = Vec::new();
        let mut now = Duration::ZERO;
        let result = 'write: {
            let mut guard = this.net.lock();
            let s = &mut *guard;
            s.clock_for_stops(id, side);
            let host_state = s.host_state_of(id, side, &mut this.host_cache);
            let Some(conn) = s.conns.get(id) else {
                break 'write Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            now = host_now(&mut s.clocks, conn.host_ids[side], s.step, &mut s.last_now);
            s.touch(id, now, &mut wake);
            let no_postman = s.postman.is_none();
            let conn = s.conns.get_mut(id).expect("looked up above");
            let incoming_rst = conn.pipes[1 - side].rst_at.is_some_and(|t| t <= now);
            let pipe = &conn.pipes[side];
            if pipe.timed_out_at.is_some_and(|t| t <= now) {
                break 'write Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            if incoming_rst {
                break 'write Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if pipe.write_shut {
                break 'write Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let send_buffer = conn.tcp.config().send_buffer;
            let buffered =
                conn.tcp.unacked_bytes(side) + pipe.held.iter().map(Bytes::len).sum::<usize>();
            if buffered >= send_buffer {
                // An ACK wakes the writer (through the postman, or its own timer without one).
                register(&mut conn.pipes[side].writer, cx);
                if no_postman {
                    wait_until = conn.tcp.poll_timeout();
                }
                break 'write Poll::Pending;
            }
            let n = data.len().min(send_buffer - buffered).min(MAX_SEGMENT);
            let bytes = Bytes::copy_from_slice(&data[..n]);
            match host_state {
                HostState::Paused => conn.pipes[side].held.push(bytes),
                // A crashed or killed host's writes go nowhere (its tasks are being dropped).
                HostState::Crashed | HostState::Killed => {}
                HostState::Up => {
                    write_segment(conn, side, now, bytes);
                    s.touch(id, now, &mut wake);
                    if no_postman {
                        // Without a postman the reader runs the TCP itself: let it look now.
                        let conn = s.conns.get_mut(id).expect("looked up above");
                        wake.extend(conn.pipes[side].reader.take());
                    }
                }
            }
            Poll::Ready(Ok(n))
        };
        wake.into_iter().for_each(Waker::wake);
        if result.is_pending()
            && let Some(at) = wait_until
        {
            this.arm(cx, now, at);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = self.net.now();
        let mut wake = Vec::new();
        {
            let mut s = self.net.lock();
            s.touch(self.conn, now, &mut wake);
            if let Some(conn) = s.conns.get_mut(self.conn) {
                send_fin(conn, self.side, now);
            }
            s.touch(self.conn, now, &mut wake);
        }
        wake.into_iter().for_each(Waker::wake);
        Poll::Ready(Ok(()))
    }
}

/// FIN from `side`, in order behind its data.
fn send_fin(conn: &mut Conn, side: usize, now: Duration) {
    if conn.pipes[side].write_shut {
        return;
    }
    conn.pipes[side].write_shut = true;
    let seq = conn.tcp.write(side, 0, now, &mut Paths(&mut conn.paths));
    conn.pipes[side].fin_seq = Some(seq);
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let now = self.net.now();
        let mut wake = Vec::new();
        {
            let mut s = self.net.lock();
            let (id, side) = (self.conn, self.side);
            let host = s.conns.get(id).map(|c| c.hosts[side].clone());
            let host_state = host
                .and_then(|h| s.hosts.get(&h).copied())
                .unwrap_or(HostState::Crashed);
            let mut woken = Vec::new();
            s.touch(id, now, &mut woken);
            let Some(conn) = s.conns.get_mut(id) else {
                return;
            };
            conn.closed[side] = true;
            if host_state != HostState::Crashed && !conn.forgotten[side] {
                // The kernel closes the socket: RST if the application left data unread,
                // else FIN behind whatever it had written. Data arriving later gets RST.
                // Only what has arrived counts: segments still in flight are not in the buffer.
                let unread = conn.pipes[1 - side]
                    .segments
                    .front()
                    .is_some_and(|seg| seg.at <= now);
                if unread {
                    conn.tcp.abort(side, now, &mut Paths(&mut conn.paths));
                } else {
                    send_fin(conn, side, now);
                    conn.tcp.close(side);
                }
            }
            s.touch(id, now, &mut woken);
            let conn = s.conns.get_mut(id).expect("looked up above");
            let wakers = [
                conn.pipes[side].reader.take(),
                conn.pipes[1 - side].reader.take(),
                conn.pipes[1 - side].writer.take(),
            ];
            s.conns.retire_if_done(id);
            let inside_host = turmoil::sim_elapsed().is_some();
            for (kind, w) in wakers
                .into_iter()
                .chain(woken.into_iter().map(Some))
                .enumerate()
            {
                if let Some(w) = w {
                    if inside_host {
                        wake.push(w);
                    } else {
                        s.deferred.insert((id, side, kind), w);
                    }
                }
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }
}

/// Accepts connections on `host:port`.
pub struct SimListener {
    net: SimNet,
    host: String,
    port: u16,
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let key = (self.host.clone(), self.port);
        let listener = self.net.lock().listeners.remove(&key);
        // Connections still waiting to be accepted close now, and a stream's drop takes the
        // network's lock: drop them only once it is released.
        drop(listener);
    }
}

impl crate::net::Listener for SimListener {
    type Stream = SimStream;
    fn accept(&mut self) -> impl Future<Output = io::Result<(SimStream, SocketAddr)>> + Send {
        std::future::poll_fn(move |cx| {
            let mut s = self.net.lock();
            let Some(l) = s.listeners.get_mut(&(self.host.clone(), self.port)) else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            match l.queue.pop_front() {
                Some(p) => Poll::Ready(Ok((p.stream, p.peer))),
                None => {
                    l.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

/// Connects from one host to another's listener.
#[derive(Clone)]
pub struct SimConnector {
    net: SimNet,
    from: String,
    /// The client session connecting, so faults can be aimed at it alone.
    node: String,
    to: String,
    port: u16,
}

impl crate::net::Connector for SimConnector {
    type Stream = SimStream;
    fn connect(&self) -> impl Future<Output = io::Result<SimStream>> + Send {
        let this = self.clone();
        async move {
            let net = &this.net;
            let now = net.now();
            let (id, outcome) = {
                let mut s = net.lock();
                let id = s.next_conn;
                s.next_conn += 1;
                let client = (this.from.as_str(), this.node.as_str());
                let mut path = s.links.path(&this.from, &this.to, id, client);
                let back = s.links.path(&this.to, &this.from, id, client);
                let outcome = path.connect(now);
                (id, (outcome, path, back))
            };
            let (outcome, path, back) = outcome;
            let at = match outcome {
                ConnectOutcome::Established(t) | ConnectOutcome::TimedOut(t) => t,
            };
            // The handshake takes its time whatever the answer.
            tokio::time::sleep(at.saturating_sub(now)).await;
            if let ConnectOutcome::TimedOut(_) = outcome {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let target = net
                .lock()
                .hosts
                .get(&this.to)
                .copied()
                .unwrap_or(HostState::Crashed);
            if target == HostState::Crashed {
                // A dead machine answers nothing: the SYNs go unanswered until the attempt's
                // own timeout (the driver's connect timeout cuts it shorter).
                std::future::pending::<()>().await;
            }
            let mut s = net.lock();
            let key = (this.to.clone(), this.port);
            if !s.listeners.contains_key(&key) {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            let host_ids = [s.host_id(&this.from), s.host_id(&this.to)];
            // Both kernels take their first RTT sample from the handshake, unless a SYN had to
            // be resent (Karn's rule: then the RTO starts at its initial 1 s).
            let handshake = at.saturating_sub(now);
            let sample = (handshake < s.tcp.syn_rto).then_some(handshake);
            let mut tcp = TcpModel::new(
                s.tcp.clone(),
                sample,
                [path.wheel_seed(), back.wheel_seed()],
            );
            if s.notes.is_some() {
                tcp.keep_notes();
            }
            s.conns.insert(
                id,
                Conn {
                    hosts: [this.from.clone(), this.to.clone()],
                    nodes: [this.node.clone(), this.to.clone()],
                    host_ids,
                    pipes: [Pipe::default(), Pipe::default()],
                    paths: [path, back],
                    tcp,
                    scheduled: None,
                    closed: [false, false],
                    forgotten: [false, false],
                },
            );
            let server_side = SimStream {
                net: net.clone(),
                conn: id,
                side: 1,
                sleep: None,
                host_cache: None,
            };
            let peer = peer_addr(id);
            let l = s.listeners.get_mut(&key).expect("checked above");
            l.queue.push_back(Pending {
                stream: server_side,
                peer,
            });
            let waker = l.waker.take();
            drop(s);
            if let Some(w) = waker {
                w.wake();
            }
            Ok(SimStream {
                net: net.clone(),
                conn: id,
                side: 0,
                sleep: None,
                host_cache: None,
            })
        }
    }
}
