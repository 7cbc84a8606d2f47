//! The event engine (`sim::engine`): the sessions driven from one event queue, checked on its
//! own and against the turmoil runner on the same small shape.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpsim::net::{NetEvent, Observer};
use mcpsim::proto::session::{Event, Side};
use mcpsim::sim::engine::{Engine, EngineClock};
use mcpsim::sim::histogram::LogHistogram;
use mcpsim::sim::runner::{Fault, Scenario, run};

use crate::endpoint_faults::{both_ways, scenario, secs};

/// What one end saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct EndTally {
    established: u32,
    /// From the session's own events: heartbeats received, replies received.
    heartbeats: u64,
    replies: u64,
    /// From the traffic reports, as the runner's counters add them up.
    reported_sent: u64,
    reported_received: u64,
    bytes_in: u64,
    bytes_out: u64,
    suspicions: u32,
    /// When the first suspicion came.
    first_suspicion: Option<Duration>,
    lost: u32,
    disconnected: u32,
    /// When the first connection ended.
    first_disconnect: Option<Duration>,
    session_id: u32,
}

#[derive(Default)]
struct Seen {
    /// Every event, one line each, stamped with the engine's time.
    lines: Vec<String>,
    clients: BTreeMap<String, EndTally>,
    /// The server's ends by session id.
    server: BTreeMap<u32, EndTally>,
    /// The clients' heartbeat round trips, µs.
    rtt: LogHistogram,
}

/// Records what the engine reports.
struct Recording {
    clock: EngineClock,
    seen: Mutex<Seen>,
}

impl Observer for Recording {
    fn observe(&self, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        let at = self.clock.now();
        let mut seen = self.seen.lock().unwrap();
        seen.lines
            .push(format!("{at:?} {node} {side:?} {session_id:08x} {event:?}"));
        if let NetEvent::Session(Event::Rtt { rtt, .. }) = event {
            seen.rtt.record(rtt.as_micros() as u64);
        }
        let end = match side {
            Side::Client => seen.clients.entry(node.to_string()).or_default(),
            Side::Server => seen.server.entry(session_id).or_default(),
        };
        match event {
            NetEvent::Session(Event::Established { session_id, .. }) => {
                end.established += 1;
                end.session_id = *session_id;
            }
            NetEvent::Session(Event::HeartbeatReceived { .. }) => end.heartbeats += 1,
            NetEvent::Session(Event::Rtt { .. }) => end.replies += 1,
            NetEvent::Session(Event::PeerSuspected { .. }) => {
                end.suspicions += 1;
                end.first_suspicion.get_or_insert(at);
            }
            NetEvent::PeerLost { .. } => end.lost += 1,
            NetEvent::Disconnected { .. } => {
                end.disconnected += 1;
                end.first_disconnect.get_or_insert(at);
            }
            NetEvent::Traffic {
                heartbeats_sent,
                heartbeats_received,
                bytes_in,
                bytes_out,
            } => {
                end.reported_sent += heartbeats_sent;
                end.reported_received += heartbeats_received;
                end.bytes_in += bytes_in;
                end.bytes_out += bytes_out;
            }
            _ => {}
        }
    }
}

/// Runs `scenario` on the engine with `seed`: what it reported, and its engine.
fn engine_run(scenario: &Scenario, seed: u64) -> (Seen, Engine) {
    let clock = EngineClock::default();
    let rec = Arc::new(Recording {
        clock: clock.clone(),
        seen: Mutex::new(Seen::default()),
    });
    let mut engine = Engine::new(scenario, seed, rec.clone(), clock).expect("engine");
    engine.run();
    let seen = std::mem::take(&mut *rec.seen.lock().unwrap());
    (seen, engine)
}

/// `sessions` clients heartbeating every second (one-way, k = 3) over constant 1 ms links,
/// for `seconds`.
fn quiet(sessions: usize, seconds: f64) -> Scenario {
    let mut s = scenario(sessions, seconds, Vec::new());
    s.network = mcpsim::sim::links::NetworkSpec::constant(Duration::from_millis(1));
    s.tick = Duration::from_millis(10);
    s
}

#[test]
fn every_session_completes_its_handshake_and_heartbeats_once_per_interval() {
    let (seen, engine) = engine_run(&quiet(5, 60.0), 1);
    assert_eq!(seen.clients.len(), 5);
    assert_eq!(seen.server.len(), 6, "five sessions and the accepts' id 0");
    for (name, c) in &seen.clients {
        assert_eq!(c.established, 1, "{name}");
        // Connected at 4 ms (SYN and HELLO round trips), then a heartbeat every second: 59
        // before 60 s, each answered 2 ms later.
        assert_eq!(c.replies, 59, "{name}: {c:?}");
        let server = &seen.server[&c.session_id];
        assert_eq!(server.established, 1, "{name}");
        assert_eq!(server.heartbeats, 59, "{name}: {server:?}");
    }
    let ids: std::collections::BTreeSet<u32> =
        seen.clients.values().map(|c| c.session_id).collect();
    assert_eq!(ids.len(), 5, "distinct session ids: {ids:?}");
    assert!(!ids.contains(&0));
    assert_eq!(engine.counters(Side::Client).heartbeats_sent, 5 * 59);
    assert_eq!(engine.counters(Side::Server).heartbeats_received, 5 * 59);
    assert_eq!(seen.rtt.max(), Some(2_000), "two 1 ms hops");
}

#[test]
fn no_heartbeat_is_suspected_on_an_ideal_link() {
    let (seen, engine) = engine_run(&quiet(20, 120.0), 3);
    let ends = seen.clients.values().chain(seen.server.values());
    for end in ends {
        assert_eq!(
            (end.suspicions, end.lost, end.disconnected),
            (0, 0, 0),
            "{end:?}"
        );
    }
    assert_eq!(engine.stats().ended, 0);
}

#[test]
fn the_same_seed_gives_a_byte_identical_trace() {
    let mut s = quiet(10, 30.0);
    // A ramp, so that sessions start at seed-drawn instants.
    s.connect_ramp = secs(2.0);
    let a = engine_run(&s, 7).0.lines.join("\n");
    let b = engine_run(&s, 7).0.lines.join("\n");
    assert!(a.len() > 10_000, "{}", a.len());
    assert_eq!(a, b);
    // Another seed: other session ids and start times.
    let c = engine_run(&s, 8).0.lines.join("\n");
    assert_ne!(a, c);
}

#[test]
fn the_engine_and_the_turmoil_runner_agree_on_heartbeats_round_trips_and_suspicions() {
    let s = quiet(20, 120.0);
    let out = run(&s, 5).unwrap();
    let (seen, _) = engine_run(&s, 5);
    assert!(out.transitions.is_empty(), "{:?}", out.transitions);
    // Each end's traffic as its reports add up (the last second of a live connection is not
    // reported, in either): heartbeats each way and bytes, the same to the frame and the byte.
    let totals = |t: &mcpsim::sim::runner::Traffic| {
        (
            t.heartbeats_sent,
            t.heartbeats_received,
            t.bytes_out,
            t.bytes_in,
        )
    };
    let ours = |e: &EndTally| {
        (
            e.reported_sent,
            e.reported_received,
            e.bytes_out,
            e.bytes_in,
        )
    };
    let mut names = BTreeMap::new();
    for (name, c) in &seen.clients {
        assert_eq!(c.suspicions, 0, "{name}");
        names.insert(c.session_id, name.clone());
        let theirs = &out.traffic[&(name.clone(), "server".to_string())];
        assert_eq!(ours(c), totals(theirs), "{name}: engine, runner");
        assert!(c.reported_sent >= 118, "{name}: {c:?}");
    }
    for (id, end) in &seen.server {
        let Some(name) = names.get(id) else {
            assert_eq!(*id, 0, "only the accepts have no session");
            continue;
        };
        assert_eq!(end.suspicions, 0, "server watching {name}");
        let theirs = &out.traffic[&("server".to_string(), name.clone())];
        assert_eq!(
            ours(end),
            totals(theirs),
            "server watching {name}: engine, runner"
        );
    }
    assert_eq!(names.len(), 20);
    // Replies received, over all clients, and their round trips.
    let (ours, theirs) = (&seen.rtt, &out.client_heartbeats.rtt);
    assert_eq!(ours.count(), theirs.count());
    for q in [0.5, 0.99, 1.0] {
        let (a, b) = (ours.quantile(q).unwrap(), theirs.quantile(q).unwrap());
        assert!(a.abs_diff(b) <= 1_000, "q{q}: engine {a} µs, runner {b} µs");
    }
}

/// [`quiet`] with `p` of the packets lost each way: the kernels' TCP resends them, and long
/// enough stalls make suspicions.
fn lossy(sessions: usize, seconds: f64, p: f64) -> Scenario {
    let mut s = quiet(sessions, seconds);
    s.network.default.loss = mcpsim::sim::fault::Loss::Independent { p };
    s
}

#[test]
fn a_connection_that_ends_is_followed_by_a_reconnect_that_resumes_the_session() {
    let (seen, engine) = engine_run(&lossy(20, 300.0, 0.3), 2);
    let lost: u32 = seen.clients.values().map(|e| e.lost).sum();
    assert!(
        lost > 0,
        "the loss makes some client declare the server dead"
    );
    let mut resumed = 0;
    for (name, c) in &seen.clients {
        assert!(
            c.lost <= c.disconnected,
            "a loss ends the connection: {c:?}"
        );
        if c.disconnected > 0 {
            assert!(c.established > 1, "{name} connected again: {c:?}");
            resumed += 1;
        }
    }
    assert!(resumed > 0, "some client reconnected");
    // A resume keeps the session: the server saw each client under one session id.
    let ids: std::collections::BTreeSet<u32> =
        seen.clients.values().map(|c| c.session_id).collect();
    assert_eq!(ids.len(), 20);
    assert!(
        seen.server
            .keys()
            .filter(|id| **id != 0)
            .all(|id| ids.contains(id))
    );
    let disconnected: u32 = seen
        .clients
        .values()
        .chain(seen.server.values())
        .map(|e| e.disconnected)
        .sum();
    assert_eq!(engine.stats().ended, u64::from(disconnected));
}

#[test]
fn with_loss_and_reconnects_both_engines_judge_every_suspicion_and_connection_the_same() {
    // 20% of the packets lost each way: resends, probes, stalls, connects that time out,
    // peers declared dead, reconnects with backoff and resumes (some taking over a session
    // the server still holds). Each session must go the same way in both engines, to the
    // nanosecond, for the whole run, as the same judge sees it.
    let s = lossy(20, 120.0, 0.2);
    let ours = both_engines_judge_the_same(&s, 4);
    let suspicions = ours.transitions.iter().filter(|t| t.suspect).count();
    assert!(suspicions >= 5, "{suspicions} suspicions compared");
    let resumes: u64 = ours.reconnects.values().map(|r| r.resumed).sum();
    assert!(resumes >= 3, "{resumes} resumes");
}

#[test]
fn over_many_lossy_runs_both_engines_count_the_same_suspicions_and_reconnects_within_noise() {
    // Where a session deadline and an arrival fall on the same nanosecond the engines may
    // order them differently (docs/simulator.md), so runs may part ways there; what they
    // measure must still agree. The bound is two standard deviations of the difference of two
    // independent Poisson counts, loose for two engines that mostly agree run by run.
    let s = lossy(20, 300.0, 0.2);
    let (mut theirs, mut ours) = ((0f64, 0f64), (0f64, 0f64));
    for seed in 0..6 {
        let a = run(&s, seed).unwrap();
        let b = mcpsim::sim::engine::run(&s, seed).unwrap();
        let count = |o: &mcpsim::sim::runner::Outcome| {
            let suspicions = o.transitions.iter().filter(|t| t.suspect).count() as f64;
            let attempts: u64 = o.reconnects.values().map(|r| r.attempts).sum();
            (suspicions, attempts as f64)
        };
        let (x, y) = (count(&a), count(&b));
        theirs = (theirs.0 + x.0, theirs.1 + x.1);
        ours = (ours.0 + y.0, ours.1 + y.1);
    }
    assert!(
        theirs.0 >= 50.0,
        "{} suspicions: too few to compare",
        theirs.0
    );
    for (what, a, b) in [
        ("suspicions", theirs.0, ours.0),
        ("connect attempts", theirs.1, ours.1),
    ] {
        let bound = 2.0 * (a + b).sqrt();
        assert!((a - b).abs() <= bound, "{what}: runner {a}, engine {b}");
    }
}

#[test]
fn through_partitions_and_a_slow_episode_both_engines_judge_every_failure_the_same() {
    // A two-way partition of every client, a one-way one of a single session, and a heavy
    // latency tail from the server for a while, over a jittery lossy link: suspicions,
    // connections that time out, reconnects. The fault schedule is the runner's own, so the
    // ground truth and the faults' trace lines must be the same too.
    let slow = mcpsim::sim::fault::Latency::Lognormal {
        min_ms: 5.0,
        median_ms: 400.0,
        sigma: 1.0,
    };
    let faults = vec![
        (
            secs(20.3),
            Fault::Partition {
                from: "server".into(),
                to: "clients".into(),
                duration: secs(6.0),
                oneway: false,
            },
        ),
        (
            secs(50.0),
            Fault::Partition {
                from: "server".into(),
                to: "client-3".into(),
                duration: secs(40.0),
                oneway: true,
            },
        ),
        (
            secs(100.0),
            Fault::Slow {
                from: "server".into(),
                to: "clients".into(),
                latency: slow,
                duration: secs(30.0),
                oneway: true,
            },
        ),
    ];
    let mut s = lossy(10, 150.0, 0.02);
    s.faults = faults;
    s.network.default.latency = mcpsim::sim::fault::Latency::Uniform {
        min_ms: 1.0,
        max_ms: 4.0,
    };
    let ours = both_engines_judge_the_same(&s, 3);
    let suspicions = ours.transitions.iter().filter(|t| t.suspect).count();
    assert!(suspicions >= 20, "{suspicions} suspicions compared");
    assert_eq!(ours.down.len(), 2, "two partitions in the ground truth");
    let faults = ours.trace.iter().filter(|l| l.text.starts_with("fault"));
    assert_eq!(faults.count(), 3);
}

/// Both engines run `s` with `seed`: the same transitions to the nanosecond, down periods,
/// fault lines, reconnects, connect attempts and connected periods. Returns the engine's.
fn both_engines_judge_the_same(s: &Scenario, seed: u64) -> mcpsim::sim::runner::Outcome {
    both_engines_judge_alike(s, seed, Duration::ZERO).0
}

/// [`both_engines_judge_the_same`], with the instants of transitions, connect attempts and
/// connected periods allowed to differ by `within`; everything else, counts included, alike.
/// Returns the engine's outcome and the runner's.
fn both_engines_judge_alike(
    s: &Scenario,
    seed: u64,
    within: Duration,
) -> (mcpsim::sim::runner::Outcome, mcpsim::sim::runner::Outcome) {
    let theirs = run(s, seed).unwrap();
    let ours = mcpsim::sim::engine::run(s, seed).unwrap();
    let near = |what: &str, a: Duration, b: Duration| {
        assert!(
            a.abs_diff(b) <= within,
            "{what}: engine {a:?}, runner {b:?}, more than {within:?} apart"
        );
    };
    // Each watcher's view of each peer, in time order.
    let key =
        |t: &mcpsim::sim::runner::Transition| (t.watcher.clone(), t.peer.clone(), t.at, t.suspect);
    let (a, b): (Vec<_>, Vec<_>) = (
        sorted(ours.transitions.iter().map(key).collect()),
        sorted(theirs.transitions.iter().map(key).collect()),
    );
    assert_eq!(a.len(), b.len(), "transitions: engine {a:?}\nrunner {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.0, &x.1, x.3),
            (&y.0, &y.1, y.3),
            "engine {x:?}, runner {y:?}"
        );
        near("transition", x.2, y.2);
    }
    assert_eq!(ours.down, theirs.down);
    let faults = |o: &mcpsim::sim::runner::Outcome| -> Vec<String> {
        o.trace
            .iter()
            .filter(|l| l.text.starts_with("fault"))
            .map(|l| format!("{:?} {} {}", l.at, l.node, l.text))
            .collect()
    };
    assert_eq!(faults(&ours), faults(&theirs));
    assert_eq!(ours.reconnects, theirs.reconnects);
    assert_eq!(ours.connect_attempts.len(), theirs.connect_attempts.len());
    for (x, y) in ours.connect_attempts.iter().zip(&theirs.connect_attempts) {
        near("connect attempt", *x, *y);
    }
    assert_eq!(
        ours.connected.keys().collect::<Vec<_>>(),
        theirs.connected.keys().collect::<Vec<_>>()
    );
    for (x, y) in ours.connected.values().zip(theirs.connected.values()) {
        assert_eq!(x.len(), y.len(), "connected: engine {x:?}, runner {y:?}");
        for (x, y) in x.iter().zip(y) {
            near("connected from", x.start, y.start);
            near("connected until", x.end, y.end);
        }
    }
    (ours, theirs)
}

#[test]
fn through_kills_crashes_reboots_and_pauses_both_engines_judge_every_failure_the_same() {
    // Two client hosts and the server, each struck in turn: the server's process killed and
    // restarted (connections refused meanwhile), its machine crashed and rebooted (silence,
    // then RST for the old connections), a client host paused (its kernel still ACKs) and one
    // crashed for good. The links are constant: a host fault strikes many connections at one
    // instant, and on a jittery link the order the runner's sockets close in (tokio's order of
    // dropping tasks) would decide which connection draws which delay.
    let host = |h: &str| h.to_string();
    let faults = vec![
        (
            secs(10.0),
            Fault::Kill {
                host: host("server"),
                downtime: Some(secs(3.0)),
            },
        ),
        (
            secs(30.0),
            Fault::Pause {
                host: host("clients-0"),
                duration: secs(6.0),
            },
        ),
        (
            secs(50.0),
            Fault::Crash {
                host: host("server"),
                downtime: Some(secs(8.0)),
            },
        ),
        (
            secs(80.0),
            Fault::Pause {
                host: host("server"),
                duration: secs(4.5),
            },
        ),
        (
            secs(100.0),
            Fault::Crash {
                host: host("clients-1"),
                downtime: None,
            },
        ),
    ];
    let mut s = quiet(12, 130.0);
    s.client_hosts = 2;
    s.faults = faults;
    s.network = mcpsim::sim::links::NetworkSpec::constant(Duration::from_millis(3));
    let ours = both_engines_judge_the_same(&s, 6);
    let suspicions = ours.transitions.iter().filter(|t| t.suspect).count();
    assert!(suspicions >= 30, "{suspicions} suspicions compared");
}

#[test]
fn with_traffic_through_a_kill_a_pause_and_a_crash_both_engines_deliver_every_message_alike() {
    // Messages both ways, five a second per session, through a server kill and restart, a
    // client-host pause and a server crash and reboot: resumes, fresh sessions after the
    // restarts, messages reported undelivered. Both engines judge every session the same, and
    // on neither is a message lost, duplicated or reordered. How many messages a generator
    // hands over around a fault may differ by a few (the instant a driver takes a message
    // from its queue is a same-instant order the engines do not share): within 1%.
    use mcpsim::sim::traffic::Pace;
    let host = |h: &str| h.to_string();
    let mut s = quiet(10, 90.0);
    s.client_hosts = 2;
    s.network = mcpsim::sim::links::NetworkSpec::constant(Duration::from_millis(3));
    s.faults = vec![
        (
            secs(15.0),
            Fault::Kill {
                host: host("server"),
                downtime: Some(secs(2.0)),
            },
        ),
        (
            secs(35.0),
            Fault::Pause {
                host: host("clients-1"),
                duration: secs(5.0),
            },
        ),
        (
            secs(55.0),
            Fault::Crash {
                host: host("server"),
                downtime: Some(secs(4.0)),
            },
        ),
    ];
    s.traffic = both_ways(10, Pace::Poisson { rate: 5.0 }, 600, secs(5.0));
    both_engines_judge_the_same(&s, 2);
    let theirs = run(&s, 2).unwrap().delivery.expect("traffic");
    let ours = mcpsim::sim::engine::run(&s, 2)
        .unwrap()
        .delivery
        .expect("traffic");
    assert!(ours.fates.sent > 5_000, "{:?}", ours.fates);
    assert!(
        ours.fates.reported + ours.fates.died_with_sender > 0,
        "{:?}",
        ours.fates
    );
    assert_eq!(ours.violations, Vec::new());
    assert_eq!(theirs.violations, Vec::new());
    let near = |a: u64, b: u64| a.abs_diff(b) * 100 <= a.max(b);
    let (o, t) = (&ours.fates, &theirs.fates);
    assert!(
        near(o.sent, t.sent) && near(o.delivered, t.delivered),
        "engine {o:?}, runner {t:?}"
    );
    assert_eq!(o.sent_by_server, t.sent_by_server);
}

/// One session uploading as fast as its window allows over a 20 Mbit/s link (30 ms each way,
/// a queue of 1,000 packets), heartbeats every second sharing the stream.
fn bulk_upload(seconds: f64, faults: Vec<(Duration, Fault)>) -> Scenario {
    use mcpsim::sim::traffic::{Direction, Flow, Pace, Workload};
    let mut s = quiet(1, seconds);
    s.faults = faults;
    s.network = mcpsim::sim::links::NetworkSpec::constant(Duration::from_millis(30));
    s.network.default.rate = Some(mcpsim::sim::fault::LinkRate {
        bits_per_s: 20_000_000,
        queue: mcpsim::sim::fault::LinkRate::DEFAULT_QUEUE,
    });
    s.traffic = Workload {
        flows: vec![Flow {
            sessions: 0..1,
            direction: Direction::Up,
            pace: Pace::Bulk { bytes: 100_000_000 },
            size: (16_000, 16_000),
            channel: 0,
            channels: 1,
            priority: 0,
            burst: None,
            start: secs(5.0),
            stop: None,
        }],
        drain: secs(5.0),
    };
    s
}

#[test]
fn a_bulk_upload_fills_the_same_buffers_and_link_queue_on_both_engines() {
    // The window grows in MSS packets until the link's queue is full, the send buffer (4 MiB)
    // and the driver's write buffer fill behind it, and each heartbeat waits behind all of it
    // (round trips of about 1.7 s). The engines cut the writes alike, so they agree on the
    // bytes, the queue's drops and the round trips to the millisecond.
    let s = bulk_upload(25.0, Vec::new());
    let theirs = run(&s, 1).unwrap();
    let ours = mcpsim::sim::engine::run(&s, 1).unwrap();
    let up = ("client-0".to_string(), "server".to_string());
    let (a, b) = (&ours.traffic[&up], &theirs.traffic[&up]);
    assert!(b.bytes_out > 25_000_000, "{b:?}");
    assert!(
        a.bytes_out.abs_diff(b.bytes_out) * 1000 <= b.bytes_out,
        "engine {a:?}, runner {b:?}"
    );
    let (o, t) = (
        &ours.delivery.as_ref().unwrap().fates,
        &theirs.delivery.as_ref().unwrap().fates,
    );
    // The instant the driver takes a message from its queue within a millisecond is an order
    // the engines do not share: a message more or fewer by the end.
    let near = |a: u64, b: u64| a.abs_diff(b) * 1000 <= a.max(b);
    assert!(
        o.sent > 1_500 && near(o.sent, t.sent) && near(o.delivered, t.delivered),
        "engine {o:?}, runner {t:?}"
    );
    let (x, y) = (&ours.client_heartbeats.rtt, &theirs.client_heartbeats.rtt);
    assert_eq!(x.count(), y.count());
    for q in [0.5, 0.99] {
        let (a, b) = (x.quantile(q).unwrap(), y.quantile(q).unwrap());
        assert!(
            a > 1_000_000,
            "q{q}: the heartbeats wait behind the data: {a} µs"
        );
        assert!(a.abs_diff(b) <= 1_000, "q{q}: engine {a} µs, runner {b} µs");
    }
    assert!(theirs.queue_drops > 0);
    assert_eq!(ours.queue_drops, theirs.queue_drops);
    // At these short intervals, slow start's first queue costs a suspicion each way: the same
    // ones on both.
    assert_eq!(ours.transitions, theirs.transitions);
}

#[test]
fn an_upload_cut_by_a_partition_ends_alike_on_both_engines() {
    // The partition stops the ACKs: the send buffer stays full, the detectors suspect, the
    // closing sessions wait for their write buffers, which make no progress. Both engines end
    // and resume the session the same way, and deliver every message once.
    //
    // Not to the millisecond: which of two writes of one millisecond the driver takes first is
    // an order the engines do not share (above), so a heartbeat may sit one 16 kB message
    // earlier or later in the byte stream, 6.7 ms at 20 Mbit/s. Seed 1 moves heartbeats by one
    // or two messages, and the suspicions they end with by 13 ms.
    let s = bulk_upload(
        60.0,
        vec![(
            secs(20.0),
            Fault::Partition {
                from: "clients".into(),
                to: "server".into(),
                duration: secs(15.0),
                oneway: false,
            },
        )],
    );
    let message = Duration::from_micros(6_700);
    let (ours, theirs) = both_engines_judge_alike(&s, 1, 3 * message);
    assert!(!ours.transitions.is_empty());
    for (o, t) in [&ours, &theirs].into_iter().zip(["engine", "runner"]) {
        let delivery = o.delivery.as_ref().expect("traffic");
        assert_eq!(delivery.violations, Vec::new(), "{t}");
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn at_the_segments_level_the_event_engine_adds_receipts_and_kernel_lines_and_changes_nothing_else()
{
    use mcpsim::sim::runner::{RunOptions, TraceLevel, TraceLine, run_with};
    let segments = RunOptions {
        trace: TraceLevel::Segments,
    };
    let s = lossy(20, 120.0, 0.2);
    let default = mcpsim::sim::engine::run(&s, 4).unwrap();
    let detailed = mcpsim::sim::engine::run_with(&s, 4, segments).unwrap();
    let receipt = |l: &&TraceLine| l.text.starts_with("heartbeat ");
    let kernel = |l: &&TraceLine| l.text.starts_with("tcp: ");
    assert!(!default.trace.iter().any(|l| receipt(&l) || kernel(&l)));
    let others: Vec<TraceLine> = detailed
        .trace
        .iter()
        .filter(|l| !receipt(l) && !kernel(l))
        .cloned()
        .collect();
    assert_eq!(others, default.trace);
    let replies = detailed
        .trace
        .iter()
        .filter(receipt)
        .filter(|l| l.text.contains(", rtt "))
        .count() as u64;
    assert_eq!(replies, detailed.client_heartbeats.rtt.count());

    // The turmoil runner's trace at the same level: the kernels' lines in the same order (of
    // connections freed during the run too), and every line the same; only the server's
    // receipts of one instant from different connections may come in another order, the order
    // in which the runner's tasks wake (docs/simulator.md).
    let theirs = run_with(&s, 4, segments).unwrap();
    let kernel_lines = |o: &mcpsim::sim::runner::Outcome| -> Vec<TraceLine> {
        o.trace.iter().filter(kernel).cloned().collect()
    };
    let ours = kernel_lines(&detailed);
    assert!(ours.len() > 500, "{} kernel lines", ours.len());
    assert_eq!(ours, kernel_lines(&theirs));
    let sorted = |o: &mcpsim::sim::runner::Outcome| {
        let mut lines: Vec<String> = o.trace_text().lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&detailed), sorted(&theirs));
}

#[test]
fn a_stream_is_freed_once_its_generator_is_done_or_its_process_died() {
    // Messages both ways from 10 sessions; the server's process is killed at 20 s and back at
    // 22 s, so its 10 streams die with it and its new sessions (as the clients come back, by
    // 50 s) start 10 more; every flow stops 10 s before the end, to drain.
    use mcpsim::sim::traffic::Pace;
    let mut s = quiet(10, 60.0);
    s.traffic = both_ways(10, Pace::Poisson { rate: 5.0 }, 600, secs(10.0));
    s.faults = vec![(
        secs(20.0),
        Fault::Kill {
            host: "server".to_string(),
            downtime: Some(secs(2.0)),
        },
    )];
    let clock = EngineClock::default();
    let rec = Arc::new(Recording {
        clock: clock.clone(),
        seen: Mutex::new(Seen::default()),
    });
    let mut engine = Engine::new(&s, 1, rec, clock).expect("engine");
    engine.run_until(secs(15.0));
    assert_eq!(
        engine.streams(),
        (20, 20),
        "each side's stream of every session"
    );
    engine.run_until(secs(21.9));
    assert_eq!(
        engine.streams(),
        (20, 10),
        "the dead server's streams are gone"
    );
    engine.run();
    assert_eq!(
        engine.streams(),
        (30, 0),
        "the new server's sessions started 10 more; every generator is done"
    );
}

/// `sessions` clients heartbeating every second two-way over constant 1 ms links, to a server
/// whose every heartbeat frame costs `frame_ms` of its one core.
fn saturated(sessions: usize, seconds: f64, frame_ms: u64) -> Scenario {
    let mut s = quiet(sessions, seconds);
    s.stack.heartbeat.mode = mcpsim::config::Mode::TwoWay;
    s.load = Some(mcpsim::sim::load::LoadModel {
        frame_cost: Duration::from_millis(frame_ms),
        message_cost: Duration::ZERO,
        cores: 1,
    });
    s
}

/// A run's segment-level trace on both engines, each sorted: the lines of one instant from
/// different connections come in the order tokio wakes the runner's tasks, which the engine
/// does not reproduce (docs/simulator.md), so only the sets of lines can be compared.
fn sorted_segment_traces(s: &Scenario, seed: u64) -> (Vec<String>, Vec<String>) {
    use mcpsim::sim::runner::{RunOptions, TraceLevel, run_with};
    let segments = RunOptions {
        trace: TraceLevel::Segments,
    };
    let lines = |o: mcpsim::sim::runner::Outcome| {
        sorted(
            o.trace
                .iter()
                .map(|l| format!("{:>12?} {} {}", l.at, l.node, l.text))
                .collect(),
        )
    };
    let engine = lines(mcpsim::sim::engine::run_with(s, seed, segments).unwrap());
    let turmoil = lines(run_with(s, seed, segments).unwrap());
    (engine, turmoil)
}

/// The longest heartbeat round trip in a trace's receipts, in milliseconds.
fn longest_rtt_ms(lines: &[String]) -> f64 {
    lines
        .iter()
        .filter_map(|l| l.split(", rtt ").nth(1))
        .filter_map(|r| r.split("ms").next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[test]
fn a_server_saturated_by_its_heartbeats_stops_on_the_same_milliseconds_on_both_engines() {
    // 20 sessions, two frames a second each at 30 ms: 1.2 of the core.
    let s = saturated(20, 60.0, 30);
    let (engine, turmoil) = sorted_segment_traces(&s, 1);
    assert!(engine.len() > 2_000, "{} lines", engine.len());
    // Over 1 ms links the round trips are 2 to 4 ms while the server keeps up; its stops make
    // them hundreds.
    assert!(
        longest_rtt_ms(&engine) > 300.0,
        "{}",
        longest_rtt_ms(&engine)
    );
    assert_eq!(engine, turmoil);
}

#[test]
fn a_throttling_server_grants_the_same_interval_at_the_same_instant_on_both_engines() {
    // 0.96 of the core at 1 s heartbeats: the server throttles to 2 s once it has sampled 80%
    // or more for 2 s, and every session's heartbeats carry its load from then on.
    let mut s = saturated(20, 30.0, 24);
    s.stack.throttle.enabled = true;
    let (engine, turmoil) = sorted_segment_traces(&s, 2);
    let grants: Vec<&String> = engine.iter().filter(|l| l.contains("granting")).collect();
    assert!(engine.len() > 1_000, "{} lines", engine.len());
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert!(grants[0].contains("granting 2000ms"), "{grants:?}");
    assert_eq!(engine, turmoil);
}
