//! One connection in the engine: its two ends (a session each, with the reading and writing a
//! driver does), the bytes in flight each way, and the two kernels' TCP between them.
//!
//! Each end does what `net::conn::drive` does in a turn of its loop, through the same
//! [`Reporter`]: hand messages to the handler, encode the session's frames, report its events,
//! run a deadline that is due, then write what the turn encoded as one segment. Reading
//! decodes with the real [`Decoder`](crate::proto::Decoder) and feeds
//! [`Session::handle_frame`]. Bytes cross in the [`Pipe`]s; the [`TcpModel`] only carries their
//! counts and says when each segment is in the receiver's buffer.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};

use super::queue::{Queue, Timer};
use super::{Ev, Stats, wake_at};
use crate::net::conn::{Handler, ReadState, Reporter, TrafficMeter};
use crate::net::server::client_peer;
use crate::net::{ConnEnd, NetEvent, Observer};
use crate::proto::registry::{Admission, Registry};
use crate::proto::session::{Session, Side};
use crate::proto::{Error as ProtoError, Time};
use crate::sim::net::{PathModel, Paths, peer_addr};
use crate::sim::tcp::{Output, TcpModel};

/// What every connection's handling borrows from the engine.
pub(super) struct World<'a> {
    pub now: Duration,
    pub queue: &'a mut Queue<Ev>,
    pub observer: &'a dyn Observer,
    pub handler: &'a dyn Handler,
    pub registry: &'a mut Registry,
    pub stats: &'a mut Stats,
}

/// Data flowing from one side of a connection to the other.
#[derive(Default)]
pub(super) struct Pipe {
    /// Bytes written and not yet read, oldest first: `readable` of them in the receiver's
    /// socket buffer, then those in flight (`segments`), then those encoded this turn and not
    /// yet written (`unwritten`).
    bytes: BytesMut,
    unwritten: usize,
    /// The length of each segment written and not yet delivered; the first has TCP sequence
    /// number `first_seq`.
    segments: VecDeque<usize>,
    first_seq: u64,
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
}

impl Names {
    fn reporter<'r>(&'r self, w: &World<'r>) -> Reporter<'r> {
        Reporter {
            node: &self.node,
            peer: &self.peer,
            observer: w.observer,
            handler: w.handler,
        }
    }
}

/// An end's socket as its driver keeps it: what it read and not yet decoded, what it wrote.
pub(super) struct Io {
    read: ReadState,
    /// Bytes of frames a turn encodes at most.
    write_buffer: usize,
    traffic: Option<TrafficMeter>,
    bytes_in: u64,
    bytes_out: u64,
    /// The session deadline last handled, to not handle it again while the session keeps it.
    handled: Option<Time>,
    /// The session's deadline as its last turn left it, and whether a turn (or the end of the
    /// connection) has run since the timer was last armed.
    deadline: Option<Time>,
    touched: bool,
}

/// One side of a connection, as its driver sees it.
pub(super) struct End {
    pub names: Names,
    /// When the driver's clock started: the session's time is the engine's minus this.
    pub epoch: Duration,
    /// The server's session is known once the registry has admitted the HELLO.
    pub session: Option<Box<Session>>,
    io: Io,
    pub timer: Timer,
    /// The connection is up at this end (from the handshake until its end).
    pub open: bool,
}

impl End {
    pub fn new(
        names: Names,
        epoch: Duration,
        session: Option<Box<Session>>,
        read: ReadState,
        write_buffer: usize,
    ) -> End {
        End {
            names,
            epoch,
            session,
            io: Io {
                read,
                write_buffer,
                traffic: None,
                bytes_in: 0,
                bytes_out: 0,
                handled: None,
                deadline: None,
                touched: false,
            },
            timer: Timer::default(),
            open: false,
        }
    }

    fn time(&self, now: Duration) -> Time {
        Time::from_epoch(now.saturating_sub(self.epoch))
    }

    /// What a turn of the driver works with: where it reports, the session (if there is one
    /// yet), the socket, and the session's time now.
    fn driver<'r>(
        &'r mut self,
        w: &World<'r>,
    ) -> Option<(Reporter<'r>, &'r mut Session, &'r mut Io, Time)> {
        let t = self.time(w.now);
        let session = self.session.as_deref_mut()?;
        Some((self.names.reporter(w), session, &mut self.io, t))
    }
}

/// One TCP connection between a client session (side 0) and the server (side 1).
pub(super) struct Conn {
    pub id: u64,
    pub ends: [End; 2],
    pipes: [Pipe; 2],
    paths: [Box<dyn PathModel>; 2],
    tcp: TcpModel,
    pub tcp_timer: Timer,
}

impl Conn {
    pub fn new(id: u64, ends: [End; 2], paths: [Box<dyn PathModel>; 2], tcp: TcpModel) -> Conn {
        Conn {
            id,
            ends,
            pipes: Default::default(),
            paths,
            tcp,
            tcp_timer: Timer::default(),
        }
    }

    /// The handshake completed at `w.now`: the server accepts, the client sends HELLO.
    pub fn open(&mut self, w: &mut World<'_>) {
        let now = w.now;
        let accepted = NetEvent::Accepted {
            peer: peer_addr(self.id),
        };
        w.observer
            .observe(&self.ends[1].names.node, Side::Server, 0, &accepted);
        self.ends[1].open = true;
        let client = &mut self.ends[0];
        client.open = true;
        let t = client.time(now);
        if let Some(s) = client.session.as_mut() {
            s.handle_connected(t);
            client.io.traffic = Some(TrafficMeter::new(s, t));
        }
        self.step(0, None, w);
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
        if self.ends[side].open {
            self.step(side, None, w);
        }
        self.arm(w);
    }

    /// Files the connection's next events: the session deadline of each end that had a turn
    /// (no other input moves it) and the TCP model's.
    fn arm(&mut self, w: &mut World<'_>) {
        let now = w.now;
        for (side, end) in self.ends.iter_mut().enumerate() {
            if !std::mem::take(&mut end.io.touched) {
                continue;
            }
            // A deadline the session keeps after it was handled waits for another input, as
            // in the driver (which would otherwise loop without end).
            let deadline = match end.io.deadline {
                Some(d) if end.open && end.io.handled != Some(d) => {
                    Some(wake_at(end.epoch + d.since_epoch()).max(now))
                }
                Some(d) if end.open && end.epoch + d.since_epoch() > now => {
                    Some(wake_at(end.epoch + d.since_epoch()))
                }
                _ => None,
            };
            if let Some(filed) = end.timer.arm(deadline) {
                w.queue.push(filed.0, Ev::session(self.id, side, filed.1));
            }
        }
        let next = self.tcp.poll_timeout().map(|t| wake_at(t).max(now));
        if let Some((at, generation)) = self.tcp_timer.arm(next) {
            w.queue.push(at, Ev::tcp(self.id, generation));
        }
    }

    /// Runs the kernels up to now: segments reach their receivers' buffers, which read them;
    /// a timeout or a reset ends a side.
    fn run_tcp(&mut self, w: &mut World<'_>) {
        let now = w.now;
        if self.tcp.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        self.tcp.advance(now, &mut Paths(&mut self.paths));
        // Which ends have something to read, in the order their first input came.
        let mut readers: [Option<usize>; 2] = [None; 2];
        let mut ended: [Option<ConnEnd>; 2] = [None, None];
        for out in self.tcp.take_outputs() {
            let side = match out {
                Output::Delivered { from, seq, .. } => {
                    let pipe = &mut self.pipes[from];
                    if pipe.fin_seq == Some(seq) {
                        pipe.fin_delivered = true;
                    } else if let Some(len) = pipe.segments.pop_front() {
                        debug_assert_eq!(seq, pipe.first_seq, "segments arrive in order");
                        pipe.first_seq += 1;
                        pipe.readable += len;
                    }
                    1 - from
                }
                Output::TimedOut { side, .. } => {
                    let e = io::Error::from(io::ErrorKind::TimedOut);
                    ended[side].get_or_insert(ConnEnd::from_io(&e));
                    side
                }
                Output::Reset { side, .. } => {
                    let e = io::Error::from(io::ErrorKind::ConnectionReset);
                    ended[side].get_or_insert(ConnEnd::from_io(&e));
                    side
                }
                // Writes never wait for room in the send buffer here (see the module docs).
                Output::Acked { .. } => continue,
            };
            if readers[0].is_none() {
                readers[0] = Some(side);
            } else if readers[0] != Some(side) {
                readers[1] = Some(side);
            }
        }
        for side in readers.into_iter().flatten() {
            match ended[side].take() {
                Some(end) => self.end(side, end, false, w),
                None => self.read(side, w),
            }
        }
    }

    /// Side `side` reads what has reached it, as the driver does: a read takes what its buffer
    /// has room for (`read_buf` into a `BytesMut`, which makes room for 64 bytes when it has
    /// none), the frames it completes go to the session, and a turn answers them before the
    /// next read. Then the end of the stream, if it came.
    fn read(&mut self, side: usize, w: &mut World<'_>) {
        loop {
            let pipe = &mut self.pipes[1 - side];
            if !self.ends[side].open {
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
            pipe.bytes.advance(n);
            pipe.readable -= n;
            io.bytes_in += n as u64;
            if self.ends[side].session.is_none() && !self.admit(w) {
                continue;
            }
            let Some((rep, session, io, t)) = self.ends[side].driver(w) else {
                return;
            };
            let ending = rep
                .decode_all(&mut io.read, session, || t)
                .err()
                .map(ConnEnd::Decode);
            self.step(side, ending, w);
        }
    }

    /// Side `side` read the end of the stream: what is left in its buffer is a last frame or
    /// a truncated one, and the connection ends.
    fn read_eof(&mut self, side: usize, w: &mut World<'_>) {
        let Some((rep, session, io, t)) = self.ends[side].driver(w) else {
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

    /// The server's first frame: the registry admits it or not. Whether a session now runs.
    fn admit(&mut self, w: &mut World<'_>) -> bool {
        let end = &mut self.ends[1];
        let hello = match end.io.read.decoder.decode(&mut end.io.read.buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return false,
            Err(error) => {
                let rejected = NetEvent::Rejected { error };
                w.observer
                    .observe(&end.names.node, Side::Server, 0, &rejected);
                w.stats.unsupported += 1;
                self.close(1, w);
                return false;
            }
        };
        let t = end.time(w.now);
        match w.registry.admit(t, &hello) {
            Admission::Accepted(session) => {
                end.names.peer = client_peer(&hello, peer_addr(self.id)).1;
                // Bytes read with the HELLO count; the HELLO itself was the handshake's.
                end.io.bytes_in = end.io.read.buf.len() as u64;
                end.io.traffic = Some(TrafficMeter::new(&session, t));
                end.session = Some(session);
                true
            }
            refused => {
                let error = match refused {
                    Admission::Rejected { code, reason, .. } => {
                        ProtoError::Rejected { code, reason }
                    }
                    Admission::Unexpected { error, .. } => error,
                    _ => ProtoError::Protocol("the session is attached to another connection"),
                };
                let (id, rejected) = (hello.session_id, NetEvent::Rejected { error });
                w.observer
                    .observe(&end.names.node, Side::Server, id, &rejected);
                // Refusals and resumes are not modelled yet: the connection just closes.
                w.stats.unsupported += 1;
                self.close(1, w);
                false
            }
        }
    }

    /// A [`Conn::turn`] of side `side`, and the end of the connection there if the session
    /// closed it or the stream ended (`ending`), as the driver reports it: the stream's end if
    /// there was one, else `Closed`.
    fn step(&mut self, side: usize, ending: Option<ConnEnd>, w: &mut World<'_>) {
        let closing = self.turn(side, w);
        match ending {
            Some(why) => self.end(side, why, closing, w),
            None if closing => self.end(side, ConnEnd::Closed, true, w),
            None => {}
        }
    }

    /// One turn of side `side`'s driver after its inputs: messages to the handler, frames
    /// encoded, events reported, a due deadline run (reading came first), and what the turn
    /// encoded written as one segment. Whether the session is closing the connection.
    fn turn(&mut self, side: usize, w: &mut World<'_>) -> bool {
        let now = w.now;
        let Some((rep, session, io, t)) = self.ends[side].driver(w) else {
            return false;
        };
        let pipe = &mut self.pipes[side];
        let mut closing = false;
        loop {
            rep.deliver(session);
            let limit = pipe.bytes.len() - pipe.unwritten + io.write_buffer;
            let before = pipe.bytes.len();
            rep.transmit(session, t, &mut pipe.bytes, limit);
            pipe.unwritten += pipe.bytes.len() - before;
            closing |= rep.events(session);
            // Where the driver reports traffic in its turn: after the session's output, before
            // a deadline's (so the bytes this turn writes count in the next report).
            if let Some(m) = &mut io.traffic {
                m.maybe_report(session, &rep, io.bytes_in, io.bytes_out, t, false);
            }
            if closing {
                break;
            }
            io.deadline = session.poll_timeout();
            match io.deadline {
                Some(d) if d <= t && io.handled != Some(d) => {
                    session.handle_timeout(t);
                    io.handled = Some(d);
                }
                _ => break,
            }
        }
        io.touched = true;
        let n = std::mem::take(&mut pipe.unwritten);
        if n > 0 {
            pipe.segments.push_back(n);
            self.tcp.write(side, n, now, &mut Paths(&mut self.paths));
            io.bytes_out += n as u64;
        }
        closing
    }

    /// The connection ends at side `side` for `why`: reported as the driver reports it, then
    /// the socket closes (a FIN behind what it wrote).
    fn end(&mut self, side: usize, why: ConnEnd, closing: bool, w: &mut World<'_>) {
        let end = &mut self.ends[side];
        if !end.open {
            return;
        }
        if let Some((rep, session, io, t)) = end.driver(w)
            && let Some(traffic) = io.traffic.as_mut()
        {
            let totals = (io.bytes_in, io.bytes_out);
            rep.ended(session, &why, closing, t, traffic, totals);
            session.handle_disconnect(t);
        }
        w.stats.ended += 1;
        self.close(side, w);
    }

    /// Side `side` closes its socket: FIN, and the kernel answers later data with RST. No
    /// reconnection follows (not modelled yet).
    fn close(&mut self, side: usize, w: &mut World<'_>) {
        self.ends[side].open = false;
        self.ends[side].io.touched = true;
        if self.pipes[side].fin_seq.is_none() {
            let seq = self.tcp.write(side, 0, w.now, &mut Paths(&mut self.paths));
            self.pipes[side].fin_seq = Some(seq);
            self.tcp.close(side);
        }
    }

    /// The heartbeat counters of the session on `side`, if it has one.
    pub fn counters(&self, side: usize) -> Option<crate::proto::session::Counters> {
        self.ends[side].session.as_ref().map(|s| s.counters())
    }
}
