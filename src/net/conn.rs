//! One connection's loop, shared by the client and the server.
//!
//! Each turn: hand received messages to the application, move the core's frames into the write
//! buffer, report its events, run any deadline already due, write what the socket takes at
//! once, then wait (biased, in this order) for shutdown, a replacement notice, write progress,
//! the core's next deadline, a stalled writer, bytes to read, or an outgoing application
//! message. Every input goes straight into
//! the [`Session`]. Deadlines come before reads so that a flooding peer cannot starve them.
//!
//! Memory per connection is bounded: the read buffer holds at most one frame (the decoder's
//! limit), the write buffer stops taking frames at [`ConnLimits::write_buffer`], and the
//! session bounds everything else.

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::latest::Follower;
use super::{Clock, ConnEnd, NetEvent, Observer, PeerLoss, Steer, Stream};
use crate::proto::session::{Event, Message, Session, Shutdown, State};
use crate::proto::writes::WriteProgress;
use crate::proto::{Decoder, Error as ProtoError, Time};

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Bytes of encoded frames buffered for the socket before the core is asked for more.
    pub write_buffer: usize,
    /// A connection with bytes to write that the socket has taken none of for this long is
    /// dropped: the peer is not reading. A slow but live reader keeps taking some (a bulk
    /// transfer on a slow link may keep the buffer busy for minutes), so it is never cut off.
    pub write_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            write_buffer: 256 * 1024,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// An application message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub channel: u16,
    pub priority: u8,
    pub payload: Bytes,
}

/// The application's side of a session: what to do with a received message, what to send on
/// its own, and what it is told about messages that will not be delivered.
pub trait Handler: Send + Sync + 'static {
    /// A message arrived on session `session_id`. A returned message is sent back on it.
    fn on_message(&self, session_id: u32, message: Message) -> Option<Outgoing>;

    /// Whether `on_message` may return a reply. A handler that may is given a message only
    /// when the session has room to queue the reply; one that never does is given every
    /// message at once, whatever its own sending holds up.
    fn replies(&self) -> bool {
        true
    }

    /// Messages this side sent on session `session_id` that are not known to be delivered
    /// and never will be (§12): the session ended, or the server lost it. Nothing is dropped
    /// silently; the application decides whether to send them again.
    fn undelivered(&self, _session_id: u32, _messages: Vec<Message>) {}

    /// Server side: the application's own messages for session `session_id` (of the client
    /// that said `client_id` in its HELLO), taken by the
    /// connection that carries the session and handed back ([`Handler::give_back`]) when that
    /// connection ends. `None` (the default): the application only replies.
    fn outgoing(&self, _session_id: u32, _client_id: &str) -> Option<mpsc::Receiver<Outgoing>> {
        None
    }

    /// Server side: the receiver [`Handler::outgoing`] gave, back from a connection that ended;
    /// the session may be resumed on another.
    fn give_back(&self, _session_id: u32, _outgoing: mpsc::Receiver<Outgoing>) {}

    /// Server side: session `session_id` is over (its resume window expired, or it closed);
    /// no connection will carry it again.
    fn ended(&self, _session_id: u32) {}
}

/// A handler that drops every message.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Handler for Discard {
    fn on_message(&self, _: u32, _: Message) -> Option<Outgoing> {
        None
    }

    fn replies(&self) -> bool {
        false
    }
}

/// A handler that sends every message back on its channel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&self, _: u32, m: Message) -> Option<Outgoing> {
        Some(Outgoing {
            channel: m.channel,
            priority: m.priority,
            payload: m.payload,
        })
    }
}

/// What a connection loop needs besides the stream and the session.
pub struct ConnCtx<'a> {
    pub node: &'a str,
    /// The peer as this side knows it, for logs and alerts: `client "id" at addr` (or
    /// `client at addr` without an id) on the server, `server at addr` on the client (`server` where its connector knows no address).
    pub peer: String,
    pub clock: Clock,
    pub observer: &'a dyn Observer,
    pub handler: &'a dyn Handler,
    pub limits: ConnLimits,
    /// What to do when `shutdown` fires: the server sends GOAWAY, the client closes.
    pub on_shutdown: Shutdown,
    /// Server: its throttle and load figures, applied to the session as they change.
    pub steer: Option<Follower<Steer>>,
}

/// Bytes already read and the decoder's state, handed from the handshake to the loop.
pub struct ReadState {
    pub buf: BytesMut,
    pub decoder: Decoder,
}

/// The most an overdue deadline's drain reads before the deadline runs: a peer that keeps the
/// socket full may not hold a judgement of it off for ever (a kernel's receive buffer holds
/// less, so on a real socket the drain ends when the buffer is empty).
const DRAIN_LIMIT: usize = 4 << 20;

/// Runs one connection until it ends. The caller then tells the session
/// ([`Session::handle_disconnect`]) or the registry.
pub async fn drive<S: Stream>(
    stream: S,
    session: &mut Session,
    ctx: &ConnCtx<'_>,
    mut read: ReadState,
    mut outgoing: Option<&mut mpsc::Receiver<Outgoing>>,
    mut shutdown: watch::Receiver<bool>,
    replaced: Option<Arc<Notify>>,
) -> ConnEnd {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut wbuf = BytesMut::with_capacity(1024);
    let mut bytes_in = read.buf.len() as u64;
    let mut bytes_out = 0u64;
    // When the writes give up (`proto::writes`): bytes waiting with no progress for longer
    // than the write timeout, or a replaced session's flush time.
    let mut writes = WriteProgress::new(ctx.clock.now(), ctx.limits.write_timeout);
    let mut closing = false;
    let mut reading = true;
    let mut end: Option<ConnEnd> = None;
    // The overdue deadline for which the socket was already drained before judging, and the
    // deadline being drained for with the bytes taken so far.
    let mut drained_for: Option<Instant> = None;
    let mut drain: (Option<Instant>, usize) = (None, 0);
    let rep = ctx.reporter();
    let mut traffic = TrafficMeter::new(session, ctx.clock.now());
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        session.handle_shutdown(ctx.on_shutdown);
    }
    // One wait for the whole connection, not a new one (registered with the watch shared by
    // every connection, then dropped) at every turn of the loop.
    let mut shutdown_changed = std::pin::pin!(shutdown.changed());
    // Likewise one wait for a replacement notice, renewed after each notice.
    let mut replaced_notice = std::pin::pin!(wait_replaced(&replaced));
    // The server's throttle and load, as they are now and whenever they change.
    let mut steer = ctx.steer.clone();
    if let Some(s) = &mut steer {
        let current = s.now();
        session.apply_steer(ctx.clock.now(), &current);
    }
    // Frames that arrived with the handshake's read are still in the buffer.
    if let Err(e) = rep.decode_all(&mut read, session, || ctx.clock.now()) {
        reading = false;
        end = Some(ConnEnd::Decode(e));
    }

    // One timer for the core's deadline, moved when the deadline moves, instead of a new one
    // registered and dropped at every turn. `armed` is the deadline it is set to.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed: Option<Instant> = None;

    let result = loop {
        // A paused process does nothing until it resumes (see `Gate`).
        ctx.clock.wait_open().await;
        rep.deliver(session);
        closing |= pump(session, &mut wbuf, &mut writes, ctx);
        if closing && wbuf.is_empty() {
            // Best effort: the peer may be gone. The FIN tells it we are done.
            let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
            break end.take().unwrap_or(ConnEnd::Closed);
        }
        let now = Instant::now();
        traffic.maybe_report(session, &rep, bytes_in, bytes_out, ctx.clock.now(), false);
        let deadline = session.poll_timeout().map(|t| ctx.clock.instant(t));
        let stall = ctx.clock.instant(writes.stall_deadline());
        // Checked here as well as in the select: a peer that floods us keeps the read branch
        // ready, and no deadline may starve behind it.
        if writes.stalled(ctx.clock.now(), !wbuf.is_empty()) {
            break ConnEnd::WriteStalled;
        }
        if let Some(d) = deadline.filter(|d| *d <= now) {
            // Before judging the peer, take what already arrived, until the socket has nothing
            // more (or `DRAIN_LIMIT` bytes came), once per overdue deadline: after a stall of
            // our own (a GC pause, SIGSTOP, a descheduled VM, a saturated CPU) its heartbeats may
            // be waiting unread, behind more than one read's worth of other frames, and an
            // overdue timer must not blame the peer for our stall.
            if reading && !closing && drained_for != Some(d) {
                if drain.0 != Some(d) {
                    drain = (Some(d), 0);
                }
                let mut cx = Context::from_waker(Waker::noop());
                let mut rd_now = std::pin::pin!(rd.read_buf(&mut read.buf));
                if let Poll::Ready(Ok(n)) = rd_now.as_mut().poll(&mut cx)
                    && n > 0
                {
                    bytes_in += n as u64;
                    drain.1 += n;
                    // A read that left room in the buffer took all there was.
                    if read.buf.len() < read.buf.capacity() || drain.1 >= DRAIN_LIMIT {
                        drained_for = Some(d);
                    }
                    if let Err(e) = rep.decode_all(&mut read, session, || ctx.clock.now()) {
                        reading = false;
                        end = Some(ConnEnd::Decode(e));
                    }
                    continue;
                }
                drained_for = Some(d);
            }
            session.handle_timeout(ctx.clock.now());
            // Go round again only if the core moved its deadline: a deadline it keeps in the
            // past must not become a busy loop that never writes.
            if session.poll_timeout().map(|t| ctx.clock.instant(t)) != deadline {
                continue;
            }
        }
        if deadline != armed {
            if let Some(d) = deadline {
                timer.as_mut().reset(d);
            }
            armed = deadline;
        }
        // Before waiting, write what this turn queued if the socket takes it now, rather than
        // in a turn of its own.
        if !wbuf.is_empty()
            && let Some(r) = try_write(&mut wr, &wbuf).await
        {
            if let Err(end) = wrote(r, &mut wbuf, &mut bytes_out, &mut writes, ctx) {
                break end;
            }
            if wbuf.is_empty() && closing {
                continue;
            }
        }
        let can_send = outgoing.is_some() && session.send_capacity() > 0 && !closing;
        // Reading goes on while writes are blocked: what a peer can make us buffer is bounded
        // anyway (the session caps replies and windows data), and its heartbeats must still
        // reach the detector.
        let can_read = reading && !closing;

        tokio::select! {
            biased;
            _ = &mut shutdown_changed, if !shutting_down => {
                shutting_down = true;
                session.handle_shutdown(ctx.on_shutdown);
                end = Some(ConnEnd::Shutdown);
                closing |= pump(session, &mut wbuf, &mut writes, ctx);
                if !closing {
                    // Nothing to say on this connection (not established): just stop.
                    break ConnEnd::Shutdown;
                }
            }
            _ = &mut replaced_notice => {
                replaced_notice.set(wait_replaced(&replaced));
                session.handle_replaced();
                // The session is wanted elsewhere: its CLOSE gets a short while to leave, not
                // the write timeout, or a peer that stopped reading would hold it hostage.
                writes.replaced(ctx.clock.now());
            }
            _ = sleep_until_some(writes.replaced_deadline().map(|t| ctx.clock.instant(t))),
                if writes.replaced_deadline().is_some() => break ConnEnd::Closed,
            s = steer_changed(&mut steer), if steer.is_some() => session.apply_steer(ctx.clock.now(), &s),
            r = wr.write(&wbuf), if !wbuf.is_empty() => {
                if let Err(end) = wrote(r, &mut wbuf, &mut bytes_out, &mut writes, ctx) {
                    break end;
                }
            }
            // Due: the top of the loop handles it, reading what already arrived first (after
            // waiting for the gate: a paused process runs no timers).
            _ = &mut timer, if armed.is_some() => {}
            _ = ctx.clock.sleep_until(stall), if !wbuf.is_empty() => break ConnEnd::WriteStalled,
            r = rd.read_buf(&mut read.buf), if can_read => match r {
                Ok(0) => {
                    match read.decoder.decode_eof(&mut read.buf) {
                        Err(e) => {
                            rep.reject(session, &e);
                            reading = false;
                            end = Some(ConnEnd::Decode(e));
                        }
                        Ok(Some(frame)) => {
                            let _ = session.handle_frame(ctx.clock.now(), frame);
                            reading = false;
                            end = Some(ConnEnd::Eof);
                        }
                        Ok(None) => break ConnEnd::Eof,
                    }
                    closing |= pump(session, &mut wbuf, &mut writes, ctx);
                    if !closing {
                        break end.take().unwrap_or(ConnEnd::Eof);
                    }
                }
                Ok(n) => {
                    bytes_in += n as u64;
                    if let Err(e) = rep.decode_all(&mut read, session, || ctx.clock.now()) {
                        reading = false;
                        end = Some(ConnEnd::Decode(e));
                    }
                }
                Err(e) => break ConnEnd::from_io(&e),
            },
            m = recv_or_never(&mut outgoing), if can_send => match m {
                Some(o) => {
                    // Capacity was checked, so only an oversized payload can fail here.
                    if let Err(e) = session.send(o.channel, o.priority, o.payload) {
                        tracing::warn!(node = ctx.node, error = %e, "message not sent");
                    }
                }
                None => outgoing = None,
            },
        }
    };
    // Whatever the core still wants to say about this connection.
    closing |= pump(session, &mut wbuf, &mut writes, ctx);
    let totals = (bytes_in, bytes_out);
    rep.ended(
        session,
        &result,
        closing,
        ctx.clock.now(),
        &mut traffic,
        totals,
    );
    result
}

/// Reports traffic deltas at most once a second, so metrics stay live on long connections
/// without an event per frame.
pub(crate) struct TrafficMeter {
    /// A second after the last report (or the connection's start): when the next is due.
    due: Time,
    bytes_in: u64,
    bytes_out: u64,
    counters: crate::proto::session::Counters,
}

impl TrafficMeter {
    pub(crate) fn new(session: &Session, now: Time) -> TrafficMeter {
        TrafficMeter {
            due: now + Duration::from_secs(1),
            bytes_in: 0,
            bytes_out: 0,
            counters: session.counters(),
        }
    }

    /// Reports the traffic since the last report if a second has gone by since it, or if this
    /// is the `last` report of the connection. `bytes_in` and `bytes_out` are the connection's
    /// totals so far.
    #[inline]
    pub(crate) fn maybe_report(
        &mut self,
        session: &Session,
        rep: &Reporter<'_>,
        bytes_in: u64,
        bytes_out: u64,
        now: Time,
        last: bool,
    ) {
        // Checked at every turn of a driver: one comparison until a report is due.
        if !last && now < self.due {
            return;
        }
        self.report(session, rep, (bytes_in, bytes_out), now);
    }

    fn report(
        &mut self,
        session: &Session,
        rep: &Reporter<'_>,
        (bytes_in, bytes_out): (u64, u64),
        now: Time,
    ) {
        let c = session.counters();
        let ev = NetEvent::Traffic {
            bytes_in: bytes_in - self.bytes_in,
            bytes_out: bytes_out - self.bytes_out,
            heartbeats_sent: c.heartbeats_sent - self.counters.heartbeats_sent,
            heartbeats_received: c.heartbeats_received - self.counters.heartbeats_received,
        };
        *self = TrafficMeter {
            due: now + Duration::from_secs(1),
            bytes_in,
            bytes_out,
            counters: c,
        };
        if !matches!(
            ev,
            NetEvent::Traffic {
                bytes_in: 0,
                bytes_out: 0,
                ..
            }
        ) {
            rep.observe(session, &ev);
        }
    }
}

/// Where a connection's reports go, and what a driver does with what its session says: the
/// mapping from the session's events, refused frames and the connection's end to
/// [`NetEvent`]s and the [`Handler`]. Every driver of a session uses it: [`drive`] here, and
/// the simulator's event engine (`sim::engine`), so both report the same events.
pub(crate) struct Reporter<'a> {
    /// The node's name in logs and traces.
    pub node: &'a str,
    /// The peer as this side knows it (see [`ConnCtx::peer`]).
    pub peer: &'a str,
    pub observer: &'a dyn Observer,
    pub handler: &'a dyn Handler,
}

impl<'a> ConnCtx<'a> {
    pub(crate) fn reporter(&self) -> Reporter<'_> {
        Reporter {
            node: self.node,
            peer: &self.peer,
            observer: self.observer,
            handler: self.handler,
        }
    }
}

impl Reporter<'_> {
    fn observe(&self, session: &Session, ev: &NetEvent) {
        self.observer
            .observe(self.node, session.side(), session.id(), ev);
    }

    /// Decodes every complete frame in the buffer into the session, each at `now()`. On a
    /// decode error the session has queued CLOSE with the error's code; the stream is not read
    /// any further.
    pub(crate) fn decode_all(
        &self,
        read: &mut ReadState,
        session: &mut Session,
        now: impl Fn() -> Time,
    ) -> Result<(), ProtoError> {
        loop {
            match read.decoder.decode(&mut read.buf) {
                Ok(Some(frame)) => {
                    if let Err(e) = session.handle_frame(now(), frame)
                        && !matches!(
                            e,
                            ProtoError::PeerClosed { .. } | ProtoError::Rejected { .. }
                        )
                    {
                        self.observe(session, &NetEvent::Rejected { error: e });
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.reject(session, &e);
                    read.buf.clear();
                    return Err(e);
                }
            }
        }
    }

    /// The stream broke the codec: the session closes with the error's code, and it is reported.
    pub(crate) fn reject(&self, session: &mut Session, e: &ProtoError) {
        session.handle_decode_error(e);
        self.observe(session, &NetEvent::Rejected { error: e.clone() });
    }

    /// Gives received messages to the handler. A reply needs room in the send queue; without it
    /// the message stays in the session, whose window then pushes back on the peer. A handler
    /// that never replies takes every message at once.
    #[inline]
    pub(crate) fn deliver(&self, session: &mut Session) {
        if session.has_received() {
            self.hand_over(session);
        }
    }

    fn hand_over(&self, session: &mut Session) {
        let replies = self.handler.replies();
        while !replies || session.send_capacity() > 0 {
            let Some(m) = session.recv() else { break };
            if let Some(reply) = self.handler.on_message(session.id(), m)
                && let Err(e) = session.send(reply.channel, reply.priority, reply.payload)
            {
                tracing::warn!(node = self.node, error = %e, "reply not sent");
            }
        }
    }

    /// Encodes the session's frames into `buf` until it holds `limit` bytes or the session has
    /// nothing more to send.
    pub(crate) fn transmit(
        &self,
        session: &mut Session,
        now: Time,
        buf: &mut BytesMut,
        limit: usize,
    ) {
        while buf.len() < limit {
            let Some(frame) = session.poll_transmit(now) else {
                break;
            };
            if let Err(e) = frame.encode(buf) {
                // Only a payload over 64 KiB fails, and `send` refuses those: a bug, not input.
                tracing::error!(node = self.node, error = %e, "frame not encodable");
            }
        }
    }

    /// Reports the session's events (and hands undelivered messages to the handler). True once
    /// the connection is closing.
    #[inline]
    pub(crate) fn events(&self, session: &mut Session) -> bool {
        // Asked at every turn of a driver, and most turns have nothing to report.
        if !session.has_events() {
            return false;
        }
        self.report_events(session)
    }

    fn report_events(&self, session: &mut Session) -> bool {
        let mut closing = false;
        while let Some(ev) = session.poll_event() {
            closing |= matches!(ev, Event::ConnectionClosed { .. });
            let dead = match ev {
                Event::PeerDead { silent } => Some(silent),
                _ => None,
            };
            if let Event::Undelivered { messages } = &ev {
                self.handler.undelivered(session.id(), messages.clone());
            }
            let established = matches!(ev, Event::Established { .. });
            self.observe(session, &NetEvent::Session(ev));
            if established {
                let peer = self.peer.to_string();
                self.observe(session, &NetEvent::Attached { peer });
            }
            if let Some(silent) = dead {
                self.lost(session, PeerLoss::HeartbeatTimeout, silent);
            }
        }
        closing
    }

    /// Reports that this side declared its peer lost.
    pub(crate) fn lost(&self, session: &Session, reason: PeerLoss, silent: Duration) {
        let peer = self.peer.to_string();
        self.observe(
            session,
            &NetEvent::PeerLost {
                reason,
                silent,
                peer,
            },
        );
    }

    /// The connection ended at `now` for `end`, `closing` if the session had closed it: a loss
    /// of the peer if it was established and neither side sent CLOSE, then the last traffic
    /// report and `Disconnected` with the connection's `(bytes_in, bytes_out)`.
    pub(crate) fn ended(
        &self,
        session: &Session,
        end: &ConnEnd,
        closing: bool,
        now: Time,
        traffic: &mut TrafficMeter,
        (bytes_in, bytes_out): (u64, u64),
    ) {
        // An established connection that ended without a CLOSE either way is a detection, now.
        if !closing
            && session.state() == State::Established
            && let Some(reason) = end.loss()
        {
            self.lost(session, reason, session.silence(now));
        }
        traffic.maybe_report(session, self, bytes_in, bytes_out, now, true);
        let ev = NetEvent::Disconnected {
            reason: end.clone(),
            bytes_in,
            bytes_out,
        };
        self.observe(session, &ev);
    }
}

/// Moves frames into the write buffer and events to the observer. True once the connection
/// is closing.
///
/// Every frame enters the buffer here, so this is where the writes' progress is stamped: at
/// each call that finds the buffer empty, which makes it the time the buffer last became
/// non-empty. A stamp taken only at the top of a loop turn would be as old as the previous
/// turn, and the first write after a quiet spell longer than the write timeout would count as
/// a stall.
fn pump(
    session: &mut Session,
    wbuf: &mut BytesMut,
    writes: &mut WriteProgress,
    ctx: &ConnCtx<'_>,
) -> bool {
    // The clock read the core needs anyway, so no second one.
    let now = ctx.clock.now();
    writes.encoding(now, wbuf.is_empty());
    let rep = ctx.reporter();
    rep.transmit(session, now, wbuf, ctx.limits.write_buffer);
    rep.events(session)
}

/// Takes a write's result: the bytes written leave the buffer; a write of nothing or an error
/// ends the connection.
fn wrote(
    r: std::io::Result<usize>,
    wbuf: &mut BytesMut,
    bytes_out: &mut u64,
    writes: &mut WriteProgress,
    ctx: &ConnCtx<'_>,
) -> Result<(), ConnEnd> {
    match r {
        Ok(0) => Err(ConnEnd::Io("write returned zero".into())),
        Ok(n) => {
            wbuf.advance(n);
            *bytes_out += n as u64;
            writes.wrote(ctx.clock.now());
            Ok(())
        }
        Err(e) => Err(ConnEnd::from_io(&e)),
    }
}

/// One write attempt, answered at once: `None` if the socket cannot take bytes now (the
/// attempt registers this task to be woken when it can, as any poll does).
async fn try_write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
) -> Option<std::io::Result<usize>> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *wr).poll_write(cx, buf) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
    })
    .await
}

async fn steer_changed(follower: &mut Option<Follower<Steer>>) -> Steer {
    match follower {
        Some(f) => f.changed().await,
        None => pending().await,
    }
}

async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => pending().await,
    }
}

async fn wait_replaced(n: &Option<Arc<Notify>>) {
    match n {
        Some(n) => n.notified().await,
        None => pending().await,
    }
}

async fn recv_or_never(rx: &mut Option<&mut mpsc::Receiver<Outgoing>>) -> Option<Outgoing> {
    match rx {
        Some(rx) => rx.recv().await,
        None => pending().await,
    }
}
