//! One connection in the engine: its two ends (a session each, with the reading and writing a
//! driver does), the bytes in flight each way, and the two kernels' TCP between them.
//!
//! Each end does what `net::conn::drive` does in a turn of its loop, through the same
//! [`Reporter`]: hand messages to the handler, encode the session's frames, report its events,
//! run a deadline that is due, then write what the turn encoded as one segment. Reading
//! decodes with the real [`Decoder`](crate::proto::Decoder) and feeds
//! [`Session::handle_frame`]. Bytes cross in the [`Pipe`]s; the [`TcpModel`] only carries their
//! counts and says when each segment is in the receiver's buffer.
//!
//! Writing is the driver's and the simulated socket's (`sim::net`): what a turn encodes waits
//! in the end's write buffer (at most `write_buffer` bytes); the socket takes it in writes of
//! up to 64 KiB while the kernel's send buffer (`TcpConfig::send_buffer`, counting what is not
//! yet acknowledged) has room, the session encoding more after each write, as the driver's
//! loop does; an acknowledgement that makes room brings a turn. A buffer that makes no
//! progress for `write_timeout` ends the connection (`WriteStalled`); a session that closes
//! the connection lingers until its buffer is written.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};

use super::feeds::Feeds;
use super::queue::{Queue, Timer};
use super::{AppQueue, Client, Ev, ServerStarts, Stats, wake_at, wake_at_ns};
use crate::net::conn::{Handler, ReadState, Reporter, TrafficMeter};
use crate::net::load::LoadSource;
use crate::net::server::client_peer;
use crate::net::{ConnEnd, NetEvent, Observer};
use crate::proto::client::ClientEndpoint;
use crate::proto::server::{ConnId, Greeting, Opening, ServerEndpoint, Steer};
use crate::proto::session::{Session, Side};
use crate::proto::time::{earlier, nanos};
use crate::proto::writes::WriteProgress;
use crate::proto::{Frame, Time};
use crate::sim::links::{ConnPath, ConnWire, LinkTable};
use crate::sim::load::Idle;
use crate::sim::net::{HostState, MAX_SEGMENT, peer_addr};
use crate::sim::tcp::{Note, Output, TcpModel};

/// What every connection's handling borrows from the engine.
pub(super) struct World<'a> {
    pub now: Duration,
    pub queue: &'a mut Queue<Ev>,
    /// The network every connection's packets cross.
    pub links: &'a mut LinkTable,
    pub observer: &'a dyn Observer,
    pub server: &'a mut ServerEndpoint<u64>,
    /// The server endpoint's timer (the next expiry of a detached session).
    pub server_timer: &'a mut Timer,
    /// When the server's process started: its endpoint's clock reads time since then.
    pub server_epoch: Duration,
    pub clients: &'a mut [Client],
    /// Connections whose server end must let go of its session (a takeover), in order.
    pub replace: &'a mut Vec<u64>,
    pub stats: &'a mut Stats,
    /// The application streams, and those whose queue has room again since the event began.
    pub feeds: &'a mut Feeds,
    pub room: &'a mut Vec<u32>,
    /// The generators the server's application starts, and its sessions' streams.
    pub server_starts: &'a mut ServerStarts,
    pub server_feeds: &'a mut BTreeMap<u32, u32>,
    /// What the server tells every connection of its throttle and load, as the driver's
    /// `apply_steer` has it; and whether the clients' heartbeats report (idle) load.
    pub steer: &'a Steer,
    pub client_load: bool,
}

impl World<'_> {
    /// Files the server endpoint's next expiry.
    pub fn arm_server(&mut self) {
        let next = self
            .server
            .poll_timeout()
            .map(|t| wake_at(self.server_epoch + t.since_epoch()).max(self.now));
        if let Some((at, generation)) = self.server_timer.arm(next) {
            self.queue.push(at, Ev::Server { generation });
        }
    }

    /// Client `i`'s endpoint is back from a connection, or due: it decides (reporting what it
    /// does) and its next step is filed: an attempt now, or a wake-up at its deadline.
    pub fn step_client(&mut self, i: usize) {
        let now = self.now;
        let client = &mut self.clients[i];
        let Some(endpoint) = client.endpoint.as_mut() else {
            return;
        };
        let t = Time::from_epoch(now.saturating_sub(client.start));
        endpoint.handle_timeout(t);
        let attempt = endpoint.poll_connect(t);
        crate::net::client::report(endpoint, &client.name, self.observer);
        let next = match (attempt, endpoint.ending()) {
            (_, Some(_)) => {
                // The client's run is over: what its session still holds will not be
                // delivered, and the application hears so; its queue goes.
                let session = endpoint.session_mut();
                let left = session.take_undelivered();
                if !left.is_empty() {
                    client.handler.undelivered(session.id(), left);
                }
                if let Some((_, f)) = client.outgoing.take() {
                    self.feeds.let_go(f);
                }
                None
            }
            (Some(_), None) => {
                client.connecting = true;
                Some(now)
            }
            (None, None) => endpoint
                .poll_timeout()
                .map(|d| wake_at(client.start + d.since_epoch()).max(now)),
        };
        if let Some((at, generation)) = client.timer.arm(next) {
            self.queue.push(
                at,
                Ev::Client {
                    client: i as u32,
                    generation,
                },
            );
        }
    }
}

/// What an end's driver holds: nothing yet (a server end before its HELLO is admitted), the
/// server's session, or a client's endpoint (with its session) and the client's index.
pub(super) enum Holder {
    None,
    Server(Box<Session>),
    Client(usize, Box<ClientEndpoint>),
}

impl Holder {
    fn session_mut(&mut self) -> Option<&mut Session> {
        match self {
            Holder::None => None,
            Holder::Server(s) => Some(s),
            Holder::Client(_, e) => Some(e.session_mut()),
        }
    }

    fn session(&self) -> Option<&Session> {
        match self {
            Holder::None => None,
            Holder::Server(s) => Some(s),
            Holder::Client(_, e) => Some(e.session()),
        }
    }
}

/// Data flowing from one side of a connection to the other.
#[derive(Default)]
pub(super) struct Pipe {
    /// Bytes written and not yet read, oldest first: `readable` of them in the receiver's
    /// socket buffer, then those in flight (the TCP model's segments, which know their
    /// lengths), then those encoded this turn and not yet written (`unwritten`).
    bytes: BytesMut,
    unwritten: usize,
    /// Bytes at the front of `bytes` in the receiver's socket buffer, not yet read.
    readable: usize,
    /// The FIN's sequence number, once this side has closed, and whether it has arrived.
    fin_seq: Option<u64>,
    fin_delivered: bool,
}

/// How an end names itself and its peer in what it reports.
pub(super) struct Names {
    /// The node's name (`client-7`, `server`).
    pub node: String,
    /// The peer as the node names it (`server`; `client "client-7" at …`).
    pub peer: String,
    /// The node's application.
    pub handler: Arc<dyn Handler>,
}

impl Names {
    fn reporter<'r>(&'r self, observer: &'r dyn Observer) -> Reporter<'r> {
        Reporter {
            node: &self.node,
            peer: &self.peer,
            observer,
            handler: &*self.handler,
        }
    }
}

/// An end's socket as its driver keeps it: what it read and not yet decoded, what it wrote.
pub(super) struct Io {
    /// The session's queue of application messages, and the stream that feeds it.
    pub outgoing: Option<AppQueue>,
    read: ReadState,
    /// Bytes of frames the write buffer holds at most, and when its writes give up.
    write_buffer: usize,
    writes: WriteProgress,
    /// The session closed the connection, or its stream ended, while the write buffer still
    /// held bytes: the end comes (for this reason) once they are written.
    linger: Option<ConnEnd>,
    traffic: Option<TrafficMeter>,
    bytes_in: u64,
    bytes_out: u64,
    /// The session deadline last handled, to not handle it again while the session keeps it.
    handled: Option<Time>,
    /// The session's deadline as its last turn left it.
    deadline: Option<Time>,
}

/// One side of a connection, as its driver sees it.
pub(super) struct End {
    pub names: Names,
    /// When the driver's clock started: the session's time is the engine's minus this.
    pub epoch: Duration,
    /// The server's session is known once its endpoint has admitted the HELLO.
    pub holder: Holder,
    /// Server: the connection as the server endpoint names it, once accepted; and a HELLO
    /// waiting to be offered again while its session is taken over from another connection
    /// (boxed: rare, and a frame inline would spread the end's hot fields over more lines).
    pub accepted: Option<ConnId>,
    pub pending: Option<Box<Frame>>,
    pub(super) io: Io,
    pub timer: Timer,
    /// Its socket was closed with data unread: the kernel reset the connection.
    pub reset: bool,
}

/// What the events of either side read of an end: kept in the connection, both ends' side by
/// side, so that an event does not touch a cache line of the other end only for these
/// (`docs/simulator.md`, "Lines per event, measured").
#[derive(Clone, Copy, Default)]
struct Flags {
    /// The connection is up at this end (from the handshake until its end).
    open: bool,
    /// The end's process is paused: it reads, writes and decides nothing until it resumes,
    /// while its kernel goes on receiving and acknowledging.
    paused: bool,
    /// A turn (or the end of the connection) has run since the end's timer was last armed.
    touched: bool,
}

impl Flags {
    /// The end's driver acts: its connection is up and its process is not paused.
    fn acting(self) -> bool {
        self.open && !self.paused
    }
}

impl End {
    pub fn new(
        names: Names,
        epoch: Duration,
        holder: Holder,
        read: ReadState,
        write_buffer: usize,
        write_timeout: Duration,
    ) -> End {
        End {
            names,
            epoch,
            holder,
            accepted: None,
            pending: None,
            io: Io {
                outgoing: None,
                read,
                write_buffer,
                writes: WriteProgress::new(Time::ZERO, write_timeout),
                linger: None,
                traffic: None,
                bytes_in: 0,
                bytes_out: 0,
                handled: None,
                deadline: None,
            },
            timer: Timer::default(),
            reset: false,
        }
    }

    fn time(&self, now: Duration) -> Time {
        Time::from_nanos(nanos(now).saturating_sub(nanos(self.epoch)))
    }

    /// What a turn of the driver works with: where it reports, the session (if there is one
    /// yet), the socket, and the session's time now.
    fn driver<'r>(
        &'r mut self,
        now: Duration,
        observer: &'r dyn Observer,
    ) -> Option<(Reporter<'r>, &'r mut Session, &'r mut Io, Time)> {
        let t = self.time(now);
        let session = self.holder.session_mut()?;
        Some((self.names.reporter(observer), session, &mut self.io, t))
    }
}

/// One TCP connection between a client session (side 0) and the server (side 1).
pub(super) struct Conn {
    pub id: u64,
    /// The index of the client whose connection this is.
    pub client: u32,
    /// Its handshake is over (its [`Conn::open`] ran).
    opened: bool,
    pub ends: [End; 2],
    pipes: [Pipe; 2],
    paths: [ConnPath; 2],
    tcp: TcpModel,
    pub tcp_timer: Timer,
    /// A reset or timeout the kernel has decided for a side, and when it reaches that side's
    /// socket (a reader meets it then; a paused end when it resumes).
    failures: [Option<(Duration, io::ErrorKind)>; 2],
    /// Which sides' sockets are gone (closed by their driver, or with their process). Once
    /// both are and the kernels are done (see [`Conn::gone`]), so is the connection.
    dropped: [bool; 2],
    /// What the kernels did that the ends have not met yet ([`Conn::kernels`]).
    woken: Woken,
    /// Each end's open, paused and touched flags, by side.
    flags: [Flags; 2],
}

/// The sockets the kernels woke, for their ends to meet at the connection's next event: which
/// ends have something to read, in the order their first input came, and which have room to
/// write again.
#[derive(Default)]
struct Woken {
    readers: [Option<usize>; 2],
    writable: [bool; 2],
}

impl Woken {
    fn reader(&mut self, side: usize) {
        if self.readers[0].is_none() {
            self.readers[0] = Some(side);
        } else if self.readers[0] != Some(side) {
            self.readers[1] = Some(side);
        }
    }

    fn any(&self) -> bool {
        self.readers[0].is_some() || self.writable.contains(&true)
    }
}

impl Conn {
    pub fn new(id: u64, client: u32, ends: [End; 2], paths: [ConnPath; 2], tcp: TcpModel) -> Conn {
        Conn {
            id,
            client,
            opened: false,
            ends,
            pipes: Default::default(),
            paths,
            tcp,
            tcp_timer: Timer::default(),
            failures: [None, None],
            dropped: [false; 2],
            woken: Woken::default(),
            flags: [Flags::default(); 2],
        }
    }

    /// The handshake completed at `w.now`: the client's connect returns and its session sends
    /// HELLO; the server's endpoint accepts (or refuses) the connection, now or, if the server
    /// is paused, when it resumes ([`Conn::accept`]). A client whose process died while it
    /// connected leaves its kernel's side as the death made it ([`Conn::process_dies`]).
    pub fn open(&mut self, server_paused: bool, w: &mut World<'_>) {
        self.opened = true;
        self.kernels(w.now, w.links);
        if !server_paused {
            self.accept(w);
        }
        let client = &mut self.ends[0];
        let t = client.time(w.now);
        if let Holder::Client(_, e) = &mut client.holder {
            self.flags[0].open = true;
            e.handle_connected(t);
            if w.client_load {
                // The client driver's sampler: a simulated client's load is idle.
                e.session_mut().set_load(Some(LoadSource::sample(&Idle)));
            }
            client.io.traffic = Some(TrafficMeter::new(e.session(), t));
            if !self.flags[0].paused {
                self.step(0, None, w);
            }
        }
        self.arm(w);
    }

    /// The server's accept of this connection, on its clock (`epoch`: when its process
    /// started): its endpoint admits it (its handshake deadline filed) or refuses it at its
    /// connection limit.
    pub fn accept(&mut self, w: &mut World<'_>) {
        let now = w.now;
        self.kernels(now, w.links);
        let peer = peer_addr(self.id);
        let server = &mut self.ends[1];
        server.epoch = w.server_epoch;
        self.flags[1].open = true;
        match w.server.handle_accept(server.time(now), self.id) {
            Opening::Open { conn, deadline } => {
                let accepted = NetEvent::Accepted { peer };
                w.observer
                    .observe(&server.names.node, Side::Server, 0, &accepted);
                server.accepted = Some(conn);
                let at = wake_at(server.epoch + deadline.since_epoch());
                w.queue.push(at, Ev::Handshake(self.id as u32));
            }
            Opening::Refuse { reject, reason } => {
                let refused = NetEvent::Refused { peer, reason };
                w.observer
                    .observe(&server.names.node, Side::Server, 0, &refused);
                self.write_frame(1, &reject, w);
                self.close(1, w);
            }
        }
        // What arrived before the accept (a HELLO sent to a paused server) is read now.
        if self.flags[1].open {
            self.read(1, w);
        }
    }

    /// The server's handshake deadline: a connection still without a session is closed.
    pub fn on_handshake_deadline(&mut self, w: &mut World<'_>) {
        self.kernels(w.now, w.links);
        let end = &mut self.ends[1];
        let Some(conn) = end.accepted else { return };
        if !self.flags[1].open || end.holder.session().is_some() || end.pending.is_some() {
            return;
        }
        let timed_out = NetEvent::HandshakeTimeout {
            peer: peer_addr(self.id),
        };
        w.observer
            .observe(&end.names.node, Side::Server, 0, &timed_out);
        let close = w.server.handle_handshake_timeout(conn);
        self.write_frame(1, &close, w);
        self.close(1, w);
        self.arm(w);
    }

    /// A resume on another connection takes this connection's session over: the session
    /// closes this connection (CLOSE SESSION_REPLACED) and goes back to the server endpoint.
    pub fn on_replaced(&mut self, w: &mut World<'_>) {
        self.run_tcp(w);
        let end = &mut self.ends[1];
        if !self.flags[1].open {
            return;
        }
        let t = end.time(w.now);
        if let Some(session) = end.holder.session_mut() {
            session.handle_replaced();
            end.io.writes.replaced(t);
            self.step(1, None, w);
        }
        self.arm(w);
    }

    /// The HELLO that waited for a takeover is offered to the server endpoint again.
    pub fn on_retry(&mut self, w: &mut World<'_>) {
        self.kernels(w.now, w.links);
        if let Some(hello) = self.ends[1].pending.take()
            && self.flags[1].open
            && self.greet(Ok(*hello), w)
        {
            // The session starts with what arrived behind the HELLO, then reads on.
            self.feed(1, w);
            self.read(1, w);
        }
        self.arm(w);
    }

    /// Runs the TCP model to `w.now` and lets each end read what reached it, then files the
    /// connection's next events.
    pub fn on_tcp(&mut self, w: &mut World<'_>) {
        self.run_tcp(w);
        self.arm(w);
    }

    /// Side `side`'s session deadline fell due. Like the driver, it first reads what has
    /// arrived, so that the session does not judge its peer on stale input.
    pub fn on_session_timer(&mut self, side: usize, w: &mut World<'_>) {
        self.run_tcp(w);
        let end = &self.ends[side];
        let t = end.time(w.now);
        if self.flags[side].open && end.io.writes.replaced_deadline().is_some_and(|d| d <= t) {
            // Its CLOSE had its while to leave.
            self.end(side, ConnEnd::Closed, true, w);
            self.arm(w);
            return;
        }
        if self.flags[side].acting() {
            // What reached the socket first, as the driver drains it before it judges.
            if self.ends[side].io.linger.is_none() && self.pipes[1 - side].readable > 0 {
                self.read(side, w);
            }
            if self.flags[side].open {
                self.step(side, None, w);
            }
        }
        self.arm(w);
    }

    /// Files the connection's next events: the session deadline of each end that had a turn
    /// (no other input moves it) and the TCP model's.
    fn arm(&mut self, w: &mut World<'_>) {
        // In nanoseconds, as the queue files its events: this runs after every event.
        let now = nanos(w.now);
        for (side, end) in self.ends.iter_mut().enumerate() {
            let flags = &mut self.flags[side];
            if !std::mem::take(&mut flags.touched) {
                continue;
            }
            let open = flags.open;
            let epoch = nanos(end.epoch);
            let at = |t: Time| epoch.saturating_add(t.as_nanos());
            // A deadline the session keeps after it was handled waits for another input, as
            // in the driver (which would otherwise loop without end).
            let deadline = match end.io.deadline {
                Some(d) if open && end.io.handled != Some(d) => Some(wake_at_ns(at(d)).max(now)),
                Some(d) if open && at(d) > now => Some(wake_at_ns(at(d))),
                _ => None,
            };
            // Where its writes give up: bytes stalled in the buffer, a replaced session.
            let writes = match end.io.writes.next_deadline(self.pipes[side].unwritten > 0) {
                Some(t) if open => Some(wake_at_ns(at(t)).max(now)),
                _ => None,
            };
            let deadline = earlier(deadline, writes);
            if let Some(filed) = end.timer.arm_ns(deadline) {
                w.queue
                    .push_ns(filed.0, Ev::session(self.id, side, filed.1));
            }
        }
        // A paused end meets its failure when it resumes.
        let mut next = self.tcp.wake_ns(self.waiting());
        for side in 0..2 {
            if let Some((t, _)) = self.failures[side]
                && !self.flags[side].paused
            {
                next = earlier(next, Some(nanos(t)));
            }
        }
        // What the kernels woke is met at once, at this instant's next event.
        if self.woken.any() {
            next = Some(now);
        }
        let next = next
            .filter(|_| !self.gone())
            .map(|t| wake_at_ns(t).max(now));
        if let Some((at, generation)) = self.tcp_timer.arm_ns(next) {
            w.queue.push_ns(at, Ev::tcp(self.id, generation));
        }
    }

    /// Which ends have bytes waiting for room in the kernel's send buffer.
    fn waiting(&self) -> [bool; 2] {
        [self.pipes[0].unwritten > 0, self.pipes[1].unwritten > 0]
    }

    /// The kernels run up to `now`, as a socket operation on the runner runs them first: what
    /// reached a kernel before `now` is taken before anything else touches it (a write, a
    /// close, a pause), including the acknowledgements [`Conn::arm`] left to the connection's
    /// next event ([`TcpModel::poll_wake`]). What they deliver, fail or acknowledge is noted
    /// for the ends, which meet it at the connection's next event, as the runner's sockets
    /// wake their tasks.
    fn kernels(&mut self, now: Duration, links: &mut LinkTable) {
        if self.gone() || !self.tcp.due(now) {
            return;
        }
        let wire = &mut ConnWire::new(links, &mut self.paths);
        self.tcp.advance(now, wire);
        for out in self.tcp.take_outputs() {
            let side = match out {
                Output::Delivered { from, seq, len, .. } => {
                    let pipe = &mut self.pipes[from];
                    if pipe.fin_seq == Some(seq) {
                        pipe.fin_delivered = true;
                    } else {
                        pipe.readable += len;
                    }
                    1 - from
                }
                // The socket meets these when they happen: filed below.
                Output::TimedOut { side, at } => {
                    fail(&mut self.failures[side], at, io::ErrorKind::TimedOut);
                    continue;
                }
                Output::Reset { side, at } => {
                    fail(&mut self.failures[side], at, io::ErrorKind::ConnectionReset);
                    continue;
                }
                // Room in the send buffer: a writer waiting for it writes on.
                Output::Acked { side, .. } => {
                    self.woken.writable[side] = true;
                    continue;
                }
            };
            self.woken.reader(side);
        }
    }

    /// Runs the kernels up to now: segments reach their receivers' buffers, which read them;
    /// a timeout or a reset ends a side.
    fn run_tcp(&mut self, w: &mut World<'_>) {
        if self.gone() {
            return;
        }
        let now = w.now;
        self.kernels(now, w.links);
        let failing = (0..2).any(|side| {
            !self.flags[side].paused && self.failures[side].is_some_and(|f| f.0 <= now)
        });
        if !failing && !self.woken.any() {
            return;
        }
        let mut woken = std::mem::take(&mut self.woken);
        let mut ended: [Option<ConnEnd>; 2] = [None, None];
        // A reset or timeout whose time has come ends its side, as a read would find it.
        for (side, (failure, ended)) in self.failures.iter_mut().zip(&mut ended).enumerate() {
            if let Some((at, kind)) = *failure
                && at <= now
                && !self.flags[side].paused
            {
                *failure = None;
                ended.get_or_insert(ConnEnd::from_io(&io::Error::from(kind)));
                woken.reader(side);
            }
        }
        for side in woken.readers.into_iter().flatten() {
            match ended[side].take() {
                Some(end) => self.end(side, end, false, w),
                None => self.read(side, w),
            }
        }
        for (side, writable) in woken.writable.into_iter().enumerate() {
            if writable && self.flags[side].acting() && self.pipes[side].unwritten > 0 {
                self.step(side, None, w);
            }
        }
    }

    /// Side `side` reads what has reached it, as the driver does: a read takes what its buffer
    /// has room for (`read_buf` into a `BytesMut`, which makes room for 64 bytes when it has
    /// none), the frames it completes go to the session, and a turn answers them before the
    /// next read. Then the end of the stream, if it came.
    fn read(&mut self, side: usize, w: &mut World<'_>) {
        if self.flags[side].paused {
            return;
        }
        loop {
            let pipe = &mut self.pipes[1 - side];
            if self.flags[side].open && self.ends[side].io.linger.is_some() {
                // Closing: the driver reads no more while it writes what it has.
                return;
            }
            if !self.flags[side].open {
                // A closed socket's kernel answers with RST; nobody reads the bytes.
                pipe.bytes.advance(pipe.readable);
                pipe.readable = 0;
                return;
            }
            let io = &mut self.ends[side].io;
            let room = io.read.buf.chunk_mut().len();
            let n = room.min(pipe.readable);
            if n == 0 {
                if pipe.fin_delivered {
                    self.read_eof(side, w);
                }
                return;
            }
            io.read.buf.extend_from_slice(&pipe.bytes[..n]);
            if n == pipe.bytes.len() {
                // All of it read (the usual case): the buffer keeps its room where it is.
                pipe.bytes.clear();
            } else {
                pipe.bytes.advance(n);
            }
            pipe.readable -= n;
            io.bytes_in += n as u64;
            if side == 1 && self.ends[1].holder.session().is_none() && !self.admit(w) {
                continue;
            }
            self.feed(side, w);
        }
    }

    /// Side `side`'s session takes the frames its read buffer holds, and its driver has a turn.
    fn feed(&mut self, side: usize, w: &mut World<'_>) {
        let Some((rep, session, io, t)) = self.ends[side].driver(w.now, w.observer) else {
            return;
        };
        let ending = rep
            .decode_all(&mut io.read, session, || t)
            .err()
            .map(ConnEnd::Decode);
        self.step(side, ending, w);
    }

    /// Side `side` read the end of the stream: what is left in its buffer is a last frame or
    /// a truncated one, and the connection ends.
    fn read_eof(&mut self, side: usize, w: &mut World<'_>) {
        let Some((rep, session, io, t)) = self.ends[side].driver(w.now, w.observer) else {
            self.close(side, w);
            return;
        };
        let read = &mut io.read;
        let ending = match read.decoder.decode_eof(&mut read.buf) {
            Err(e) => {
                rep.reject(session, &e);
                ConnEnd::Decode(e)
            }
            Ok(Some(frame)) => {
                let _ = session.handle_frame(t, frame);
                ConnEnd::Eof
            }
            Ok(None) => ConnEnd::Eof,
        };
        self.step(side, Some(ending), w);
    }

    /// The server's first frame, once it is complete. Whether a session now runs.
    fn admit(&mut self, w: &mut World<'_>) -> bool {
        let end = &mut self.ends[1];
        if end.pending.is_some() || !self.flags[1].open {
            return false;
        }
        let first = match end.io.read.decoder.decode(&mut end.io.read.buf) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => return false,
            Err(error) => Err(error),
        };
        self.greet(first, w)
    }

    /// Carries out what the server endpoint answers to the first frame `first`. Whether a
    /// session now runs.
    fn greet(&mut self, first: Result<Frame, crate::proto::Error>, w: &mut World<'_>) -> bool {
        let end = &mut self.ends[1];
        let Some(conn) = end.accepted else {
            return false;
        };
        let t = end.time(w.now);
        let greeting = w
            .server
            .handle_first_frame(t, conn, first.as_ref().map_err(Clone::clone));
        match greeting {
            Greeting::Serve(session) => {
                let Ok(hello) = first else { return false };
                let (client_id, peer) = client_peer(&hello, peer_addr(self.id));
                end.names.peer = peer;
                // The application's queue for the session, as the server driver asks for it;
                // a stream it opens starts now.
                let rx = end.names.handler.outgoing(session.id(), client_id);
                while let Some((generator, tx)) =
                    w.server_starts.as_mut().and_then(|r| r.try_recv().ok())
                {
                    let id = w.feeds.start(&generator, tx, w.now, w.queue);
                    w.server_feeds
                        .insert(generator.stream.session_or_client(), id);
                }
                if let (Some(rx), Some(&f)) = (rx, w.server_feeds.get(&session.id())) {
                    if let Some(feed) = w.feeds.get_mut(f) {
                        feed.consumer = Some((self.id, 1));
                    }
                    end.io.outgoing = Some((rx, f));
                }
                // Bytes read with the HELLO count; the HELLO itself was the handshake's.
                end.io.bytes_in = end.io.read.buf.len() as u64;
                end.io.traffic = Some(TrafficMeter::new(&session, t));
                let mut session = session;
                session.apply_steer(t, w.steer);
                end.holder = Holder::Server(session);
                true
            }
            Greeting::Close {
                frame,
                error,
                session_id,
            } => {
                if let Some(error) = error {
                    let rejected = NetEvent::Rejected { error };
                    w.observer
                        .observe(&end.names.node, Side::Server, session_id, &rejected);
                }
                if let Some(frame) = frame {
                    self.write_frame(1, &frame, w);
                }
                self.close(1, w);
                false
            }
            Greeting::TakeOver { owner, retry_at } => {
                end.pending = first.ok().map(Box::new);
                if let Some(owner) = owner {
                    w.replace.push(owner);
                }
                let at = wake_at(end.epoch + retry_at.since_epoch());
                w.queue.push(at, Ev::Retry(self.id as u32));
                false
            }
        }
    }

    /// Side `side` writes one frame outside a session (a REJECT, a CLOSE before any session)
    /// as one segment.
    fn write_frame(&mut self, side: usize, frame: &Frame, w: &mut World<'_>) {
        let pipe = &mut self.pipes[side];
        let before = pipe.bytes.len();
        if frame.encode(&mut pipe.bytes).is_err() {
            return;
        }
        let n = pipe.bytes.len() - before;
        let wire = &mut ConnWire::new(w.links, &mut self.paths);
        self.tcp.write(side, n, w.now, wire);
        self.ends[side].io.bytes_out += n as u64;
    }

    /// A [`Conn::turn`] of side `side`, and the end of the connection there if the session
    /// closed it or the stream ended (`ending`), as the driver reports it: the stream's end if
    /// there was one, else `Closed`.
    fn step(&mut self, side: usize, ending: Option<ConnEnd>, w: &mut World<'_>) {
        let (closing, stalled) = self.turn(side, w);
        let ending = ending.or_else(|| self.ends[side].io.linger.take());
        let unwritten = self.pipes[side].unwritten > 0;
        match ending {
            _ if stalled => self.end(side, ConnEnd::WriteStalled, closing, w),
            // The session is done with the connection: it goes once its buffer is written.
            Some(why) if closing && unwritten => self.ends[side].io.linger = Some(why),
            None if closing && unwritten => self.ends[side].io.linger = Some(ConnEnd::Closed),
            Some(why) => self.end(side, why, closing, w),
            None if closing => self.end(side, ConnEnd::Closed, true, w),
            None => {}
        }
    }

    /// One turn of side `side`'s driver after its inputs, round its loop: messages to the
    /// handler, frames encoded, events reported, a due deadline run (reading came first), and
    /// a write of what the buffer holds while the socket takes it (then round again). Whether
    /// the session is closing the connection, and whether the buffer stalled.
    fn turn(&mut self, side: usize, w: &mut World<'_>) -> (bool, bool) {
        let now = w.now;
        // Bytes that reached the socket and that the driver will read before it judges its
        // peer (`net::conn` drains them first): the read loop comes back to run the deadline.
        let end = &self.ends[side];
        let unread = self.flags[side].acting()
            && end.io.linger.is_none()
            && self.pipes[1 - side].readable > 0;
        let links = &mut *w.links;
        let Some((rep, session, io, t)) = self.ends[side].driver(w.now, w.observer) else {
            return (false, false);
        };
        let pipe = &mut self.pipes[side];
        let send_buffer = self.tcp.config().send_buffer;
        let mut closing = false;
        let mut stalled = false;
        let mut room = None;
        loop {
            rep.deliver(session);
            // Application messages, as the driver takes them: while the session has room.
            if let Some((rx, feed)) = io.outgoing.as_mut() {
                while session.send_capacity() > 0 {
                    let Ok(o) = rx.try_recv() else { break };
                    room = Some(*feed);
                    if let Err(e) = session.send(o.channel, o.priority, o.payload) {
                        tracing::warn!(node = rep.node, error = %e, "message not sent");
                    }
                }
            }
            io.writes.encoding(t, pipe.unwritten == 0);
            let limit = pipe.bytes.len() - pipe.unwritten + io.write_buffer;
            let before = pipe.bytes.len();
            rep.transmit(session, t, &mut pipe.bytes, limit);
            pipe.unwritten += pipe.bytes.len() - before;
            // The buffer is full: the session may have more once the socket takes some.
            let full = pipe.unwritten >= io.write_buffer;
            closing |= rep.events(session);
            // Where the driver reports traffic in its turn: after the session's output, before
            // a deadline's (so the bytes this turn writes count in the next report).
            if let Some(m) = &mut io.traffic {
                m.maybe_report(session, &rep, io.bytes_in, io.bytes_out, t, false);
            }
            if io.writes.stalled(t, pipe.unwritten > 0) {
                stalled = true;
                break;
            }
            if !closing {
                io.deadline = session.poll_timeout();
                if let Some(d) = io.deadline
                    && d <= t
                    && io.handled != Some(d)
                    && !unread
                {
                    session.handle_timeout(t);
                    io.handled = Some(d);
                    continue;
                }
            }
            // The socket takes writes while the kernel's send buffer has room. After each, the
            // driver goes round its loop; that only changes something (the session encodes
            // more) when the buffer was full, so only then does the turn go round.
            let mut wrote = false;
            while pipe.unwritten > 0 {
                let free = send_buffer.saturating_sub(self.tcp.unacked_bytes(side));
                if free == 0 {
                    break;
                }
                let n = pipe.unwritten.min(free).min(MAX_SEGMENT);
                pipe.unwritten -= n;
                let wire = &mut ConnWire::new(&mut *links, &mut self.paths);
                self.tcp.write_bytes(side, n, now, wire, |_| ());
                io.bytes_out += n as u64;
                io.writes.wrote(t);
                wrote = true;
                if full {
                    break;
                }
            }
            if !(wrote && full) {
                break;
            }
        }
        self.flags[side].touched = true;
        w.room.extend(room);
        (closing, stalled)
    }

    /// The connection ends at side `side` for `why`: reported as the driver reports it, then
    /// the socket closes (a FIN behind what it wrote).
    fn end(&mut self, side: usize, why: ConnEnd, closing: bool, w: &mut World<'_>) {
        if !self.flags[side].open {
            return;
        }
        let end = &mut self.ends[side];
        if let Some((rep, session, io, t)) = end.driver(w.now, w.observer)
            && let Some(traffic) = io.traffic.as_mut()
        {
            let totals = (io.bytes_in, io.bytes_out);
            rep.ended(session, &why, closing, t, traffic, totals);
        }
        w.stats.ended += 1;
        self.close(side, w);
    }

    /// Side `side` closes its socket: FIN, and the kernel answers later data with RST. Its
    /// driver hands the session back: a client's endpoint decides what comes next, the server
    /// endpoint parks the session for a resume.
    fn close(&mut self, side: usize, w: &mut World<'_>) {
        self.flags[side].open = false;
        self.flags[side].touched = true;
        let end = &mut self.ends[side];
        let t = end.time(w.now);
        let outgoing = end.io.outgoing.take();
        if let Some((_, f)) = &outgoing {
            w.feeds.let_go(*f);
        }
        match std::mem::replace(&mut end.holder, Holder::None) {
            Holder::Client(i, mut endpoint) => {
                endpoint.handle_connection_ended(t);
                w.clients[i].endpoint = Some(endpoint);
                // The client's queue outlives its connections.
                w.clients[i].outgoing = outgoing;
                w.clients[i].connecting = false;
                w.step_client(i);
            }
            server => {
                if let Some(conn) = end.accepted.take() {
                    let session = match server {
                        Holder::Server(s) => Some(*s),
                        _ => None,
                    };
                    let id = session.as_ref().map(Session::id);
                    // As the server driver: the queue goes back to the application, then the
                    // endpoint parks or ends the session, and the application hears if it ended.
                    if let (Some((rx, _)), Some(id)) = (outgoing, id) {
                        end.names.handler.give_back(id, rx);
                    }
                    let ended = w.server.handle_closed(t, conn, session);
                    if let (true, Some(id)) = (ended, id) {
                        end.names.handler.ended(id);
                    }
                    w.arm_server();
                }
            }
        }
        // What the write buffer still holds goes with the socket.
        drop_unwritten(&mut self.pipes[side]);
        self.ends[side].io.linger = None;
        self.dropped[side] = true;
        self.kernel_closes(side, w.now, w.links);
    }

    /// Side `side`'s kernel closes its socket: RST if data it was sent lies unread (and what
    /// it still had to send goes with it), else FIN behind what it wrote; it answers later
    /// data with RST. Once only.
    fn kernel_closes(&mut self, side: usize, now: Duration, links: &mut LinkTable) {
        let pipe = &mut self.pipes[1 - side];
        let unread = pipe.readable > 0;
        pipe.bytes.advance(pipe.readable);
        pipe.readable = 0;
        if self.pipes[side].fin_seq.is_some() || self.ends[side].reset {
            return;
        }
        let wire = &mut ConnWire::new(links, &mut self.paths);
        if unread {
            self.ends[side].reset = true;
            self.tcp.abort(side, now, wire);
        } else {
            let seq = self.tcp.write(side, 0, now, wire);
            self.pipes[side].fin_seq = Some(seq);
            self.tcp.close(side);
        }
    }

    /// The process of side `side` stopped (paused): its kernel goes on receiving and
    /// acknowledging, but nothing reads, writes or decides there until [`Conn::resume`].
    pub fn pause(&mut self, side: usize, now: Duration, links: &mut LinkTable) {
        self.kernels(now, links);
        self.flags[side].paused = true;
        self.tcp.set_reading(side, false);
    }

    /// The process of side `side` runs again, reading first what reached it meanwhile (as the
    /// driver does before judging an overdue deadline), then taking its turn; a reset or
    /// timeout that reached its socket meanwhile ends the connection there.
    pub fn resume(&mut self, side: usize, w: &mut World<'_>) {
        self.flags[side].paused = false;
        self.tcp.set_reading(side, true);
        self.run_tcp(w);
        if let Some((at, kind)) = self.failures[side]
            && at <= w.now
        {
            self.failures[side] = None;
            self.end(side, ConnEnd::from_io(&io::Error::from(kind)), false, w);
        } else if self.flags[side].open {
            self.read(side, w);
            if self.flags[side].open {
                self.step(side, None, w);
            }
        }
        self.arm(w);
    }

    /// The process of side `side` died (`Killed`) or its machine with it (`Crashed`): its
    /// driver, session and endpoint go with it, reporting nothing. A dead machine's kernel
    /// falls silent; a killed process's kernel closes the socket, with RST if data it was sent
    /// lies unread, else with FIN, and answers what comes later with RST.
    pub fn process_dies(&mut self, side: usize, state: HostState, w: &mut World<'_>) {
        self.kernels(w.now, w.links);
        drop_unwritten(&mut self.pipes[side]);
        self.dropped[side] = true;
        self.flags[side] = Flags {
            touched: true,
            ..Flags::default()
        };
        let end = &mut self.ends[side];
        end.io.linger = None;
        end.holder = Holder::None;
        end.accepted = None;
        end.pending = None;
        if let Some((_, f)) = end.io.outgoing.take() {
            w.feeds.let_go(f);
        }
        self.failures[side] = None;
        if state == HostState::Crashed {
            let pipe = &mut self.pipes[1 - side];
            pipe.bytes.advance(pipe.readable);
            pipe.readable = 0;
            self.tcp.machine_down(side);
        } else {
            self.kernel_closes(side, w.now, w.links);
        }
        self.arm(w);
    }

    /// The server's throttle or load figures changed: its session here applies them, and a
    /// running end takes a turn (a CONFIG to send, its deadlines moved), as the driver's
    /// `select!` does.
    pub fn steer(&mut self, w: &mut World<'_>) {
        self.kernels(w.now, w.links);
        let end = &mut self.ends[1];
        let t = end.time(w.now);
        let Holder::Server(session) = &mut end.holder else {
            return;
        };
        session.apply_steer(t, w.steer);
        self.kick(1, w);
    }

    /// Side `side`'s queue of application messages has one: its driver takes it if its
    /// session has room.
    pub fn kick(&mut self, side: usize, w: &mut World<'_>) {
        if self.flags[side].acting() {
            self.kernels(w.now, w.links);
            self.step(side, None, w);
            self.arm(w);
        }
    }

    /// Side `side`'s machine came back after a crash with an empty kernel: the peer's next
    /// transmission on this connection gets RST.
    pub fn forget(&mut self, side: usize, w: &mut World<'_>) {
        self.kernels(w.now, w.links);
        self.tcp.forget(side);
        self.arm(w);
    }

    /// Whether nothing can happen on this connection any more: both ends closed (or never
    /// opened, with nothing waiting to open them), neither paused, no failure on its way to a
    /// socket, and both kernels done with it.
    pub fn is_done(&self) -> bool {
        self.opened
            && self.ends.iter().zip(&self.flags).all(|(e, f)| {
                !f.open && !f.paused && e.pending.is_none() && matches!(e.holder, Holder::None)
            })
            && (self.gone()
                || (self.failures.iter().all(Option::is_none) && self.tcp.poll_timeout().is_none()))
    }

    /// Moves the kernels' segment-level notes to `to`: (time, connection, node, note).
    pub fn take_notes(&mut self, to: &mut Vec<(Duration, u64, String, Note)>) {
        for note in self.tcp.take_notes() {
            let node = self.ends[note.side].names.node.clone();
            to.push((note.at, self.id, node, note));
        }
    }

    /// Both sockets are gone and their kernels have nothing more to do: so is the connection,
    /// as `sim::net` retires it. Until then a closed socket's kernel goes on as an orphan:
    /// it sends what it holds until that is acknowledged, a RST aborts it, or it gives up.
    fn gone(&self) -> bool {
        self.dropped[0] && self.dropped[1] && self.tcp.poll_timeout().is_none()
    }

    /// Hints the processor, two events before this connection's next, at the lines of it that
    /// event reads first: their addresses only, nothing is read.
    pub fn prefetch_far(&self) {
        use crate::sim::prefetch::line;
        line(&self.dropped);
        line(&self.failures);
        line(&self.pipes);
        self.tcp.prefetch_model();
        for end in &self.ends {
            line(&end.holder);
            line(&end.io.deadline);
        }
    }

    /// Hints the processor, the event before this connection's, at what hangs off the lines
    /// [`Conn::prefetch_far`] asked for: the packets at the heads of its directions.
    pub fn prefetch_near(&self) {
        self.tcp.prefetch_packets();
    }

    /// The heartbeat counters of the session on `side`, if it has one.
    pub fn counters(&self, side: usize) -> Option<crate::proto::session::Counters> {
        self.ends[side].holder.session().map(|s| s.counters())
    }
}

/// Forgets the bytes encoded and not yet written: their socket is gone.
fn drop_unwritten(pipe: &mut Pipe) {
    let keep = pipe.bytes.len() - std::mem::take(&mut pipe.unwritten);
    pipe.bytes.truncate(keep);
}

/// Files a failure for a side at `at`, keeping the earliest; a timeout of the side's own
/// kernel wins over a reset from the peer's at the same instant, as a read checks it first.
fn fail(slot: &mut Option<(Duration, io::ErrorKind)>, at: Duration, kind: io::ErrorKind) {
    match slot {
        Some((t, k)) if *t < at || (*t == at && *k == io::ErrorKind::TimedOut) => {}
        _ => *slot = Some((at, kind)),
    }
}
