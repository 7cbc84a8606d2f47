//! What the stacks report during a run, recorded: the trace, detector transitions, connection
//! histories, traffic and heartbeat receipts ([`TraceObserver`], the observer every simulated
//! process is given), and the [`SegmentTrace`] level's extra lines.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::runner::{Heartbeats, Reconnects, SERVER, SegmentTrace, TraceLine, Traffic, Transition};
use crate::net::{NetEvent, Observer};
use crate::proto::session::{Event, Side};

#[derive(Default)]
pub(super) struct Recorder {
    pub(super) lines: Vec<TraceLine>,
    /// What each side saw of its peer, in time order; [`Recorder::transitions`] turns it into
    /// detector transitions once every session is named.
    views: Vec<View>,
    /// Connections whose session reported a CLOSE (sent or received) before the connection
    /// ended, by `(server side?, node, session id)`: their end is not a loss of the peer.
    closed_cleanly: std::collections::BTreeSet<(bool, String, u32)>,
    /// Session id → client name, learned from the client side.
    names: BTreeMap<u32, String>,
    pub(super) reconnects: BTreeMap<String, Reconnects>,
    pub(super) attempts: Vec<Duration>,
    /// The clients' ends of their connections, by client name.
    /// (Looked up once a second per connection, never iterated into anything ordered: hashed.)
    client_ends: BTreeMap<String, End>,
    /// The server's ends, by session id (named once the run is over).
    server_ends: BTreeMap<u32, End>,
    pub(super) client_heartbeats: Heartbeats,
    pub(super) server_heartbeats: Heartbeats,
}

/// Something a watcher learned about its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The detector began to suspect.
    Suspect,
    /// The detector trusts again.
    Trust,
    /// A session with the peer was established (or resumed): the peer is there.
    Up,
    /// An established connection to the peer ended without a CLOSE from either side (EOF,
    /// RST, a timeout): the peer is gone for now. A connection closed by a CLOSE frame (the
    /// peer's or our own: a heartbeat timeout, a replaced session) says nothing new.
    Down,
}

#[derive(Clone, Debug)]
struct View {
    at: Duration,
    side: Side,
    node: String,
    session_id: u32,
    seen: Seen,
}

/// One end's traffic, and its established connections: how many, since when, and the periods
/// during which it had one.
#[derive(Clone, Debug, Default)]
struct End {
    traffic: Traffic,
    open: u32,
    since: Duration,
    periods: Vec<Range<Duration>>,
    /// The session of its latest connection, and how many connections that session has had at
    /// this end (for the segment-level trace).
    session: u32,
    connections: u32,
}

impl End {
    fn up(&mut self, at: Duration) {
        if self.open == 0 {
            self.since = at;
        }
        self.open += 1;
    }

    fn down(&mut self, at: Duration) {
        if self.open > 0 {
            self.open -= 1;
            if self.open == 0 {
                self.traffic.connected += at.saturating_sub(self.since);
                if self.since < at {
                    self.periods.push(self.since..at);
                }
            }
        }
    }

    /// Every connection of this end is gone (its process died, or the run ended).
    fn cut(&mut self, at: Duration) {
        self.open = self.open.min(1);
        self.down(at);
    }
}

impl Recorder {
    /// The watchers' transitions. A watcher suspects its peer when its detector says so or
    /// when its connection to the peer ends without a CLOSE (a FIN or RST tells it at once
    /// that the peer is gone); it trusts again when its detector says so or when a session with the peer is
    /// established again. Repeats (a detector suspecting a peer already lost) are dropped.
    ///
    /// Within one instant, a pair's losses come before its recoveries: two connections of one
    /// pair (one ending, one starting) may be run by different tasks in either order.
    pub(super) fn transitions(&self) -> Vec<Transition> {
        let pair = |v: &View| match v.side {
            Side::Client => (v.node.clone(), SERVER.to_string()),
            Side::Server => (SERVER.to_string(), self.client_name(v.session_id)),
        };
        let rank = |s: Seen| match s {
            Seen::Down => 0,
            Seen::Suspect => 1,
            Seen::Trust => 2,
            Seen::Up => 3,
        };
        let mut views: Vec<(Duration, (String, String), u8, Seen)> = self
            .views
            .iter()
            .map(|v| (v.at, pair(v), rank(v.seen), v.seen))
            .collect();
        views.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        let mut suspecting: BTreeMap<(String, String), bool> = BTreeMap::new();
        let mut out = Vec::new();
        for (at, (watcher, peer), _, seen) in views {
            let state = suspecting
                .entry((watcher.clone(), peer.clone()))
                .or_default();
            let suspect = match seen {
                Seen::Suspect | Seen::Down => true,
                Seen::Trust | Seen::Up => false,
            };
            if suspect != *state {
                *state = suspect;
                out.push(Transition {
                    at,
                    watcher,
                    peer,
                    suspect,
                });
            }
        }
        out
    }

    fn client_name(&self, session_id: u32) -> String {
        self.names
            .get(&session_id)
            .cloned()
            .unwrap_or_else(|| format!("session-{session_id:08x}"))
    }

    fn end(&mut self, node: &str, side: Side, session_id: u32) -> &mut End {
        match side {
            Side::Client => {
                if !self.client_ends.contains_key(node) {
                    self.client_ends.insert(node.to_string(), End::default());
                }
                self.client_ends.get_mut(node).expect("inserted above")
            }
            Side::Server => self.server_ends.entry(session_id).or_default(),
        }
    }

    fn heartbeats_mut(&mut self, side: Side) -> &mut Heartbeats {
        match side {
            Side::Client => &mut self.client_heartbeats,
            Side::Server => &mut self.server_heartbeats,
        }
    }

    fn add_traffic(&mut self, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        if let NetEvent::Traffic {
            bytes_in,
            bytes_out,
            heartbeats_sent,
            heartbeats_received,
        } = event
        {
            // Once a second per connection: one lookup where the end is known (almost always).
            let known = match side {
                Side::Client => self.client_ends.get_mut(node),
                Side::Server => self.server_ends.get_mut(&session_id),
            };
            let t = match known {
                Some(end) => &mut end.traffic,
                None => &mut self.end(node, side, session_id).traffic,
            };
            t.bytes_in += bytes_in;
            t.bytes_out += bytes_out;
            t.heartbeats_sent += heartbeats_sent;
            t.heartbeats_received += heartbeats_received;
        }
    }

    /// Connection attempts, sessions and connected time.
    fn count(&mut self, at: Duration, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        match event {
            NetEvent::Connecting { .. } => {
                let r = self.reconnects_of(node);
                // A client's first connection is not a reconnection: only later attempts count
                // towards a storm.
                if r.attempts > 0 {
                    self.attempts.push(at);
                }
                self.reconnects_of(node).attempts += 1;
            }
            NetEvent::Session(Event::Established { resumed, .. }) => {
                self.see(at, node, side, session_id, Seen::Up);
                let end = self.end(node, side, session_id);
                end.up(at);
                if end.session != session_id {
                    end.session = session_id;
                    end.connections = 0;
                }
                end.connections += 1;
                if side == Side::Client {
                    let r = self.reconnects_of(node);
                    if *resumed {
                        r.resumed += 1;
                    } else {
                        r.fresh += 1;
                    }
                }
            }
            NetEvent::Session(Event::ConnectionClosed { .. }) => {
                let key = (side == Side::Server, node.to_string(), session_id);
                self.closed_cleanly.insert(key);
            }
            NetEvent::Disconnected { .. } => {
                let key = (side == Side::Server, node.to_string(), session_id);
                if !self.closed_cleanly.remove(&key) && session_id != 0 {
                    self.see(at, node, side, session_id, Seen::Down);
                }
                self.end(node, side, session_id).down(at);
            }
            _ => {}
        }
    }

    fn see(&mut self, at: Duration, node: &str, side: Side, session_id: u32, seen: Seen) {
        self.views.push(View {
            at,
            side,
            node: node.to_string(),
            session_id,
            seen,
        });
    }

    fn reconnects_of(&mut self, node: &str) -> &mut Reconnects {
        if !self.reconnects.contains_key(node) {
            self.reconnects
                .insert(node.to_string(), Reconnects::default());
        }
        self.reconnects.get_mut(node).expect("inserted above")
    }

    /// The process on `host` died: its ends' connections are gone with it.
    pub(super) fn cut_host(&mut self, host: &str, hosts: &BTreeMap<String, String>, at: Duration) {
        if host == SERVER {
            self.server_ends.values_mut().for_each(|e| e.cut(at));
        }
        for (node, end) in &mut self.client_ends {
            if hosts.get(node).is_some_and(|h| h == host) {
                end.cut(at);
            }
        }
    }

    /// Every end's traffic and connected periods by `(watcher, peer)`, the run having ended at
    /// `at`.
    #[allow(clippy::type_complexity)]
    pub(super) fn traffic(
        &mut self,
        at: Duration,
    ) -> (
        BTreeMap<(String, String), Traffic>,
        BTreeMap<(String, String), Vec<Range<Duration>>>,
    ) {
        let mut out: BTreeMap<(String, String), Traffic> = BTreeMap::new();
        let mut connected: BTreeMap<(String, String), Vec<Range<Duration>>> = BTreeMap::new();
        for (node, end) in &mut self.client_ends {
            end.cut(at);
            let key = (node.clone(), SERVER.to_string());
            if !end.periods.is_empty() {
                connected.insert(key.clone(), end.periods.clone());
            }
            out.insert(key, end.traffic);
        }
        for (id, end) in &mut self.server_ends {
            end.cut(at);
            let client = self
                .names
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("session-{id:08x}"));
            let key = (SERVER.to_string(), client);
            if !end.periods.is_empty() {
                connected
                    .entry(key.clone())
                    .or_default()
                    .extend(end.periods.iter().cloned());
            }
            let sum = out.entry(key).or_default();
            sum.bytes_out += end.traffic.bytes_out;
            sum.bytes_in += end.traffic.bytes_in;
            sum.heartbeats_sent += end.traffic.heartbeats_sent;
            sum.heartbeats_received += end.traffic.heartbeats_received;
            sum.connected += end.traffic.connected;
        }
        // A client's sessions at the server may overlap (a new one accepted before the old
        // one's end is noticed): merged, so that each instant counts once.
        for periods in connected.values_mut() {
            periods.sort_by_key(|r| (r.start, r.end));
            let mut merged: Vec<Range<Duration>> = Vec::with_capacity(periods.len());
            for r in periods.drain(..) {
                match merged.last_mut() {
                    Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                    _ => merged.push(r),
                }
            }
            *periods = merged;
        }
        (out, connected)
    }
}

/// Writes every event worth reading into the trace, stamped with simulated time.
pub(super) struct TraceObserver {
    pub(super) rec: Arc<Mutex<Recorder>>,
    /// Heartbeat receipts go here, at the segment level only.
    pub(super) segments: SegmentTrace,
    /// Where simulated time comes from: the event engine's clock, or turmoil's (`None`).
    pub(super) clock: Option<super::engine::EngineClock>,
}

impl TraceObserver {
    /// The simulated time of what is being observed.
    fn now(&self) -> Duration {
        match &self.clock {
            Some(clock) => clock.now(),
            None => turmoil::sim_elapsed().unwrap_or_default(),
        }
    }

    /// A heartbeat frame arrived at `node`'s end: `rtt` when it is the reply to one of ours,
    /// `gap` when it was liveness evidence after earlier evidence on the same connection.
    fn heartbeat(&self, node: &str, side: Side, session_id: u32, receipt: Receipt) {
        let Receipt { seq, rtt, gap } = receipt;
        let mut rec = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        let hb = rec.heartbeats_mut(side);
        if let Some(rtt) = rtt {
            hb.rtt
                .record(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
        }
        if gap > hb.longest_gap {
            hb.longest_gap = gap;
        }
        if !self.segments.is_on() {
            return;
        }
        let connection = rec.end(node, side, session_id).connections;
        let (watcher, peer) = match side {
            Side::Client => (node, SERVER.to_string()),
            Side::Server => (SERVER, rec.client_name(session_id)),
        };
        // The sink takes the recorder's lock itself.
        drop(rec);
        let at = self.now();
        self.segments.line(at, watcher, || {
            let what = match rtt {
                Some(rtt) => format!(
                    "heartbeat reply {seq} from {peer}, rtt {:.3}ms",
                    rtt.as_secs_f64() * 1e3
                ),
                None => format!("heartbeat {seq} from {peer}"),
            };
            format!("{what}  (session {session_id:08x}, connection {connection})")
        });
    }

    /// Everything but the hot events: counted, and traced if worth reading.
    fn event(&self, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        let at = self.now();
        let mut rec = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        rec.count(at, node, side, session_id, event);
        if side == Side::Client
            && let NetEvent::Session(Event::Established { .. }) = event
        {
            rec.names.insert(session_id, node.to_string());
        }
        let peer = match side {
            Side::Client => SERVER.to_string(),
            Side::Server => rec
                .names
                .get(&session_id)
                .cloned()
                .unwrap_or_else(|| format!("session-{session_id:08x}")),
        };
        let watcher = match side {
            Side::Client => node.to_string(),
            Side::Server => SERVER.to_string(),
        };
        let text = match event {
            NetEvent::Connecting { attempt } if *attempt > 1 => {
                format!("connect attempt {attempt}")
            }
            NetEvent::ConnectFailed { error } => format!("connect failed: {error}"),
            NetEvent::ReconnectIn { delay, .. } => format!("reconnect in {}ms", delay.as_millis()),
            NetEvent::GaveUp { attempts } => format!("gave up after {attempts} attempts"),
            NetEvent::Expired { .. } => format!("session of {peer} expired"),
            NetEvent::Throttle {
                interval_ms,
                cpu_permille,
                throttling,
            } => format!(
                "{} at cpu {}%: granting {interval_ms}ms",
                if *throttling {
                    "throttling"
                } else {
                    "throttling ends"
                },
                cpu_permille / 10
            ),
            NetEvent::Rejected { error } => format!("rejected frame from {peer}: {error}"),
            NetEvent::Disconnected { reason, .. } => {
                format!("connection to {peer} ended: {reason}")
            }
            NetEvent::Session(e) => match e {
                Event::Established { resumed: true, .. } => format!("resumed with {peer}"),
                Event::Established { .. } if side == Side::Client => "connected".to_string(),
                Event::PeerSuspected { silent } => {
                    rec.see(at, node, side, session_id, Seen::Suspect);
                    format!("suspect {peer}  (silent {}ms)", silent.as_millis())
                }
                Event::PeerTrusted => {
                    rec.see(at, node, side, session_id, Seen::Trust);
                    format!("trust {peer}")
                }
                Event::PeerDead { silent } => {
                    format!("dead {peer}  (silent {}ms)", silent.as_millis())
                }
                Event::ConnectionClosed { code, by_peer, .. } => {
                    let who = if *by_peer { "by peer" } else { "by us" };
                    format!("closed {who}: {code}")
                }
                Event::GoAway { retry_after, .. } => {
                    format!("goaway, retry after {}ms", retry_after.as_millis())
                }
                Event::Undelivered { messages } => {
                    format!("{} messages undelivered", messages.len())
                }
                _ => return,
            },
            _ => return,
        };
        let node = watcher;
        rec.lines.push(TraceLine { at, node, text });
    }
}

/// A heartbeat frame received, from [`Event::HeartbeatReceived`] or [`Event::Rtt`].
struct Receipt {
    seq: u32,
    rtt: Option<Duration>,
    gap: Option<Duration>,
}

impl Observer for TraceObserver {
    fn observe(&self, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        // The hot events (one per heartbeat or per second) never reach the default trace:
        // leave before reading the clock; traffic only adds to its end's counters, heartbeats to
        // their side's round trips and gaps.
        let receipt = match event {
            NetEvent::Traffic { .. } => {
                let mut rec = self.rec.lock().unwrap_or_else(|e| e.into_inner());
                rec.add_traffic(node, side, session_id, event);
                return;
            }
            NetEvent::Session(Event::HeartbeatReceived { seq, gap, .. }) => Receipt {
                seq: *seq,
                rtt: None,
                gap: *gap,
            },
            NetEvent::Session(Event::Rtt { rtt, seq, gap, .. }) => Receipt {
                seq: *seq,
                rtt: Some(*rtt),
                gap: *gap,
            },
            NetEvent::Accepted { .. } | NetEvent::Session(Event::Health(_)) => return,
            _ => return self.event(node, side, session_id, event),
        };
        self.heartbeat(node, side, session_id, receipt);
    }
}
