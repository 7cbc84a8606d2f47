use std::time::Duration;

use mcpsim::proto::Time;
use mcpsim::proto::frame::{Frame, FrameType, HeartbeatMode, HeartbeatParams, Load};
use mcpsim::proto::health::HealthConfig;
use mcpsim::proto::registry::ServerConfig;
use mcpsim::proto::session::{ClientConfig, Event, State};

use crate::harness::{Pair, at, secs};

fn client(interval_ms: u32, k: u8, mode: HeartbeatMode) -> ClientConfig {
    ClientConfig {
        client_id: "c1".into(),
        requested: Some(HeartbeatParams {
            interval_ms,
            miss_threshold: k,
        }),
        mode: Some(mode),
        ..ClientConfig::default()
    }
}

#[test]
fn handshake_establishes_both_sides() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_for(secs(0.1));
    assert_eq!(p.client.state(), State::Established);
    let server = p.server.as_ref().expect("server session");
    assert_eq!(server.state(), State::Established);
    assert_ne!(p.client.id(), 0);
    assert_eq!(p.client.id(), server.id());
    assert_eq!(p.client.token(), server.token());
}

#[test]
fn one_way_heartbeats_flow_and_measure_rtt() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(10.5));
    let rtts: Vec<Duration> = p
        .client_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Rtt { rtt, .. } => Some(*rtt),
            _ => None,
        })
        .collect();
    // Handshake at 10 ms (5 ms each way), then a heartbeat every second.
    assert_eq!(rtts.len(), 10);
    assert!(rtts.iter().all(|r| *r == Duration::from_millis(10)));
    assert!(
        p.client_times(|e| matches!(e, Event::PeerSuspected { .. }))
            .is_empty()
    );
    assert!(
        p.server_times(|e| matches!(e, Event::PeerSuspected { .. }))
            .is_empty()
    );
    // One-way: the server sends no heartbeats of its own, so it measures no RTT.
    assert!(
        p.server_times(|e| matches!(e, Event::Rtt { .. }))
            .is_empty()
    );
}

#[test]
fn empty_heartbeat_costs_sixteen_bytes() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(1.0));
    let before = p.bytes_to_server;
    p.run_until(at(101.0));
    assert_eq!(p.bytes_to_server - before, 100 * 16);
}

#[test]
fn two_way_heartbeats_flow_both_ways() {
    let mut p = Pair::new(
        client(500, 3, HeartbeatMode::TwoWay),
        ServerConfig::default(),
    );
    p.run_until(at(5.2));
    assert_eq!(p.client_times(|e| matches!(e, Event::Rtt { .. })).len(), 10);
    assert_eq!(p.server_times(|e| matches!(e, Event::Rtt { .. })).len(), 10);
}

#[test]
fn k_miss_detection_fires_at_exactly_k_intervals_after_the_last_reply() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(4.5));
    p.server_up = false; // machine crash: silence
    p.run_until(at(12.0));
    let last_reply = *p
        .client_times(|e| matches!(e, Event::Rtt { .. }))
        .last()
        .unwrap();
    // Heartbeats leave at 1.010, 2.010, ... and replies come back 10 ms later.
    assert_eq!(last_reply, at(4.02));
    let suspected = p.client_times(|e| matches!(e, Event::PeerSuspected { .. }));
    assert_eq!(suspected, vec![at(4.02 + 3.0)]);
    // Dead at the instant of suspicion (dead_after defaults to 0), and the connection is dropped.
    let dead = p.client_times(|e| matches!(e, Event::PeerDead { .. }));
    assert_eq!(dead, vec![at(7.02)]);
}

#[test]
fn server_detects_a_crashed_client_at_k_intervals_after_its_last_heartbeat() {
    let mut p = Pair::new(
        client(1000, 2, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(3.5));
    p.client_up = false;
    p.run_until(at(8.0));
    // Last heartbeat left at 3.010 and arrived at 3.015.
    let suspected = p.server_times(|e| matches!(e, Event::PeerSuspected { .. }));
    assert_eq!(suspected, vec![at(5.015)]);
}

#[test]
fn suspicion_ends_when_heartbeats_return() {
    // A later close than the default (dead at suspicion), so that the suspicion can end.
    let mut config = client(1000, 2, HeartbeatMode::OneWay);
    config.session.health = Some(HealthConfig {
        dead_after: secs(10.0),
        ..HealthConfig::for_params(secs(1.0), 2)
    });
    let mut p = Pair::new(config, ServerConfig::default());
    p.latency = secs(0.005);
    p.run_until(at(2.5));
    // A 2.5 s stall on the server: its kernel keeps the bytes, its application is paused.
    p.server_up = false;
    p.run_until(at(5.0));
    p.server_up = true;
    p.run_until(at(8.0));
    let suspected = p.client_times(|e| matches!(e, Event::PeerSuspected { .. }));
    let trusted = p.client_times(|e| matches!(e, Event::PeerTrusted));
    assert_eq!(suspected.len(), 1);
    assert_eq!(trusted.len(), 1);
    // Suspected at 4.02 (last reply 2.02, k = 2); the stalled server answers its backlog at 5.0.
    assert_eq!(suspected, vec![at(4.02)]);
    assert_eq!(trusted, vec![at(5.005)]);
    assert!(
        p.client_times(|e| matches!(e, Event::PeerDead { .. }))
            .is_empty()
    );
}

#[test]
fn server_can_lengthen_the_interval_and_the_client_follows() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(2.5));
    let now = p.now;
    p.server.as_mut().unwrap().set_params(
        now,
        HeartbeatParams {
            interval_ms: 3000,
            miss_threshold: 2,
        },
    );
    p.pump();
    let before = p.bytes_to_server;
    p.run_until(at(32.5));
    assert_eq!(p.client.params().interval_ms, 3000);
    // CONFIG reaches the client at 2.505; it re-arms from then: 5.505, 8.505, ..., 29.505.
    assert_eq!((p.bytes_to_server - before) / 16, 9);
    assert!(matches!(
        p.client_events
            .iter()
            .find(|(_, e)| matches!(e, Event::ParamsChanged { .. })),
        Some((
            _,
            Event::ParamsChanged {
                interval_ms: 3000,
                miss_threshold: 2
            }
        ))
    ));
    assert!(
        p.server_times(|e| matches!(e, Event::PeerSuspected { .. }))
            .is_empty()
    );
}

#[test]
fn a_config_outside_the_servers_bounds_is_applied_as_given() {
    // The server's bounds are [100 ms, 60 s]; its CONFIG says 50 ms all the same.
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(2.5));
    let now = p.now;
    let fast = HeartbeatParams {
        interval_ms: 50,
        miss_threshold: 2,
    };
    p.server.as_mut().unwrap().set_params(now, fast);
    p.pump();
    let before = p.bytes_to_server;
    p.run_until(at(3.53));
    assert_eq!(p.client.params(), fast);
    // CONFIG reaches the client at 2.505; heartbeats at 2.555, 2.605, ..., 3.505.
    assert_eq!((p.bytes_to_server - before) / 16, 20);
    assert!(
        p.server_times(|e| matches!(e, Event::PeerSuspected { .. }))
            .is_empty()
    );
}

#[test]
fn heartbeats_numbered_zero_or_two_to_the_32_minus_one_are_answered_with_that_number() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(0.5));
    let id = p.client.id();
    let s = p.server.as_mut().unwrap();
    for seq in [u32::MAX, 0] {
        assert_eq!(s.handle_frame(at(0.5), Frame::heartbeat(id, seq)), Ok(()));
        let reply = s.poll_transmit(at(0.5)).expect("a HEARTBEAT_ACK");
        assert_eq!(
            (reply.frame_type(), reply.seq),
            (FrameType::HeartbeatAck, seq)
        );
    }
}

#[test]
fn a_closing_session_has_no_deadlines_left() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(1.5));
    assert!(p.client.poll_timeout().is_some());
    p.client.close(mcpsim::proto::ErrorCode::Normal, "bye");
    // A driver flushing the CLOSE must not be woken (or spun) by the heartbeat timer.
    assert_eq!(p.client.poll_timeout(), None);
}

/// The gaps of the liveness evidence in `events`: a heartbeat or a reply that fed the detector,
/// `None` for the first on its connection.
fn evidence_gaps(events: &[(Time, Event)]) -> Vec<Option<Duration>> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::HeartbeatReceived { gap, .. } => Some(*gap),
            Event::Rtt { gap: Some(g), .. } => Some(Some(*g)),
            _ => None,
        })
        .collect()
}

#[test]
fn heartbeat_gaps_are_measured_within_a_connection_and_start_afresh_on_the_next() {
    let mut p = Pair::new(
        client(500, 3, HeartbeatMode::TwoWay),
        ServerConfig::default(),
    );
    p.run_until(at(3.2));
    p.reconnect_delay = secs(2.0);
    p.break_connection();
    p.run_until(at(8.0));
    for (side, events) in [("client", &p.client_events), ("server", &p.server_events)] {
        let gaps = evidence_gaps(events);
        // A beat every 500 ms on each connection; the silence of the reconnect is no gap.
        assert_eq!(
            gaps.iter().filter(|g| g.is_none()).count(),
            2,
            "{side}: {gaps:?}"
        );
        assert!(gaps.len() > 10, "{side}: {gaps:?}");
        assert!(
            gaps.iter()
                .flatten()
                .all(|g| *g == Duration::from_millis(500)),
            "{side}: {gaps:?}"
        );
        // Two-way: replies time round trips and say nothing about liveness.
        assert!(
            events
                .iter()
                .all(|(_, e)| !matches!(e, Event::Rtt { gap: Some(_), .. }))
        );
    }
}

#[test]
fn in_one_way_mode_the_client_hears_liveness_in_the_replies_and_the_server_in_the_heartbeats() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(5.5));
    let replies: Vec<(u32, Option<Duration>)> = p
        .client_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Rtt { seq, gap, .. } => Some((*seq, *gap)),
            _ => None,
        })
        .collect();
    let second = Some(Duration::from_secs(1));
    assert_eq!(
        replies,
        vec![
            (1, None),
            (2, second),
            (3, second),
            (4, second),
            (5, second)
        ]
    );
    let beats: Vec<(u32, Option<Duration>)> = p
        .server_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::HeartbeatReceived { seq, gap, .. } => Some((*seq, *gap)),
            _ => None,
        })
        .collect();
    assert_eq!(beats, replies);
}

#[test]
fn a_new_connection_starts_a_fresh_detector_and_no_stale_verdict_surfaces_later() {
    // Suspicions do not close the connection here (dead_after 10 s), so the client still
    // suspects the server when that connection breaks and a new one is made.
    let mut config = client(1000, 2, HeartbeatMode::OneWay);
    config.session.health = Some(HealthConfig {
        dead_after: secs(10.0),
        ..HealthConfig::for_params(secs(1.0), 2)
    });
    let mut p = Pair::new(config, ServerConfig::default());
    p.run_until(at(2.5));
    p.server_up = false;
    p.run_until(at(4.5));
    assert_eq!(
        p.client_times(|e| matches!(e, Event::PeerSuspected { .. })),
        vec![at(4.02)]
    );
    // The server is back; the connection breaks; the client resumes over a new one.
    p.server_up = true;
    p.break_connection();
    p.run_until(at(4.7));
    let established = p.client_times(|e| matches!(e, Event::Established { .. }));
    let resumed_at = *established.last().unwrap();
    assert!(resumed_at > at(4.5), "{established:?}");
    // Then the server falls silent on the new connection. The fresh detector suspects it k·η
    // after the handshake, and nothing from the old connection's verdict (a "trust" a timer
    // later, at a moment when nothing arrived) is reported on the new one.
    p.server_up = false;
    p.run_until(at(9.0));
    let suspected = p.client_times(|e| matches!(e, Event::PeerSuspected { .. }));
    assert_eq!(suspected, vec![at(4.02), resumed_at + secs(2.0)]);
    let trusted = p.client_times(|e| matches!(e, Event::PeerTrusted));
    assert!(trusted.iter().all(|t| *t <= resumed_at), "{trusted:?}");
}

#[test]
fn a_watcher_that_was_not_running_reads_what_arrived_before_it_suspects() {
    // Two-way, η = 1 s, k = 2. The server suspects a silent client but keeps the connection.
    let mut server = ServerConfig::default();
    server.session.health = Some(HealthConfig {
        dead_after: secs(30.0),
        ..HealthConfig::for_params(secs(1.0), 2)
    });
    let mut p = Pair::new(client(1000, 2, HeartbeatMode::TwoWay), server);
    p.run_until(at(2.5));
    // The client process stops for 3.5 s; the server's heartbeats wait in its socket.
    p.client_up = false;
    p.run_until(at(6.0));
    // Back, its runtime happens to fire the overdue detector timer before reading: 2 s late.
    p.client.handle_timeout(at(6.0));
    p.client_up = true;
    p.run_until(at(8.0));
    assert!(
        p.client_times(|e| matches!(e, Event::PeerSuspected { .. }))
            .is_empty(),
        "the client blamed the server for its own pause"
    );
    // A peer that really is silent is still suspected, a few milliseconds later.
    p.server_up = false;
    p.run_until(at(20.0));
    assert_eq!(
        p.client_times(|e| matches!(e, Event::PeerSuspected { .. }))
            .len(),
        1
    );
}

#[test]
fn a_throttled_server_doubles_the_interval_and_back_without_a_suspicion_on_either_side() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::TwoWay),
        ServerConfig::default(),
    );
    p.run_until(at(2.5));
    let now = p.now;
    p.server.as_mut().unwrap().set_throttle(now, 2, 60_000);
    p.pump();
    p.run_until(at(20.5));
    assert_eq!(p.client.params().interval_ms, 2000);
    assert_eq!(p.server.as_ref().unwrap().params().interval_ms, 2000);
    // Back to the negotiated interval, not to half of whatever it is now.
    let now = p.now;
    p.server.as_mut().unwrap().set_throttle(now, 1, 60_000);
    p.pump();
    p.run_until(at(40.5));
    assert_eq!(p.client.params().interval_ms, 1000);
    let suspected = |e: &Event| matches!(e, Event::PeerSuspected { .. });
    assert!(p.server_times(suspected).is_empty());
    assert!(p.client_times(suspected).is_empty());
}

#[test]
fn throttling_never_grants_more_than_the_servers_longest_interval() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::OneWay),
        ServerConfig::default(),
    );
    p.run_until(at(2.5));
    let now = p.now;
    p.server.as_mut().unwrap().set_throttle(now, 8, 4_000);
    p.pump();
    p.run_until(at(3.5));
    assert_eq!(p.client.params().interval_ms, 4000);
}

#[test]
fn heartbeats_and_replies_carry_the_senders_load_once_it_reports_one() {
    let mut p = Pair::new(
        client(1000, 3, HeartbeatMode::TwoWay),
        ServerConfig::default(),
    );
    let busy = Load {
        cpu_permille: 870,
        mem_permille: 410,
    };
    p.run_until(at(0.5));
    p.server.as_mut().unwrap().set_load(Some(busy));
    p.run_until(at(3.5));
    let loads: Vec<Option<Load>> = p
        .client_events
        .iter()
        .filter(|(t, _)| *t > at(0.5))
        .filter_map(|(_, e)| match e {
            Event::HeartbeatReceived { load, .. } | Event::Rtt { load, .. } => Some(*load),
            _ => None,
        })
        .collect();
    assert!(loads.len() >= 4, "{loads:?}");
    assert!(loads.iter().all(|l| *l == Some(busy)));
    // The client reports none: its heartbeats and replies stay empty (16 bytes).
    assert!(p.server_events.iter().all(|(_, e)| !matches!(
        e,
        Event::HeartbeatReceived { load: Some(_), .. } | Event::Rtt { load: Some(_), .. }
    )));
}
