use bytes::Bytes;
use mcpsim::proto::ErrorCode;
use mcpsim::proto::detector::{AdaptiveConfig, DetectorConfig};
use mcpsim::proto::frame::{HeartbeatMode, HeartbeatParams};
use mcpsim::proto::health::HealthState;
use mcpsim::proto::registry::ServerConfig;
use mcpsim::proto::session::{ClientConfig, Event, SessionConfig};

use crate::harness::{Pair, at, secs};

fn one_way(interval_ms: u32, k: u8) -> ClientConfig {
    ClientConfig {
        requested: Some(HeartbeatParams {
            interval_ms,
            miss_threshold: k,
        }),
        mode: Some(HeartbeatMode::OneWay),
        ..ClientConfig::default()
    }
}

#[test]
fn slow_round_trips_degrade_health_with_a_reason() {
    let mut p = Pair::new(one_way(1000, 3), ServerConfig::default());
    p.latency = secs(0.3); // RTT 600 ms, over the protocol's limit of 500 ms
    p.run_until(at(4.5));
    let degraded: Vec<_> = p
        .client_events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Health(h) if h.to == HealthState::Degraded => Some((*t, h.reason.clone())),
            _ => None,
        })
        .collect();
    // WELCOME reaches the client at 0.305; the third slow beat leaves at 3.305, answered at 3.905.
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert_eq!(degraded[0].0, at(3.905));
    assert!(degraded[0].1.contains("rtt"), "{}", degraded[0].1);
    assert_eq!(p.client.health(), HealthState::Degraded);
}

#[test]
fn a_dead_peer_goes_suspect_then_dead_and_the_connection_closes() {
    let mut p = Pair::new(one_way(1000, 2), ServerConfig::default());
    p.run_until(at(2.5));
    p.server_up = false;
    p.run_until(at(9.0));
    let states: Vec<_> = p
        .client_events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Health(h) => Some((*t, h.to)),
            _ => None,
        })
        .collect();
    // Last reply 2.02; suspect at 2.02 + 2 s, and dead at that very instant (dead_after 0).
    assert_eq!(
        states
            .iter()
            .filter(|s| s.1 >= HealthState::Suspect)
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            (at(4.02), HealthState::Suspect),
            (at(4.02), HealthState::Dead)
        ]
    );
    assert!(p.client_events.iter().any(|(t, e)| *t == at(4.02)
        && matches!(
            e,
            Event::ConnectionClosed {
                code: ErrorCode::HeartbeatTimeout,
                resumable: true,
                ..
            }
        )));
}

#[test]
fn adaptive_server_probes_a_silent_client_before_suspecting_it() {
    let server = ServerConfig {
        session: SessionConfig {
            detector: DetectorConfig::Adaptive(AdaptiveConfig::default()),
            ..SessionConfig::default()
        },
        ..ServerConfig::default()
    };
    let mut p = Pair::new(one_way(1000, 3), server);
    p.run_until(at(3.5));
    p.client_up = false;
    p.run_until(at(6.0));
    // Last heartbeat arrived at 3.015. First miss at 4.015: probes at 4.015 and 4.265
    // (n = k − 1 = 2, π = η/4), suspicion at 4.015 + 2·0.25.
    let suspected = p.server_times(|e| matches!(e, Event::PeerSuspected { .. }));
    assert_eq!(suspected, vec![at(4.515)]);
}

#[test]
fn adaptive_probe_replies_keep_a_live_client_trusted() {
    let server = ServerConfig {
        session: SessionConfig {
            detector: DetectorConfig::Adaptive(AdaptiveConfig::default()),
            ..SessionConfig::default()
        },
        ..ServerConfig::default()
    };
    // The client stalls for 0.7 s and misses a beat. The server probes at 2.015; the client's
    // late heartbeat (2.205) and its answers to the probes arrive before the suspicion is due.
    let mut p = Pair::new(one_way(1000, 3), server);
    p.run_until(at(1.5));
    p.client_up = false;
    p.run_until(at(2.2));
    p.client_up = true;
    p.run_until(at(5.0));
    assert!(
        p.server_times(|e| matches!(e, Event::PeerSuspected { .. }))
            .is_empty()
    );
    // The server measured RTT from its probe's reply.
    assert!(
        !p.server_times(|e| matches!(e, Event::Rtt { .. }))
            .is_empty()
    );
}

#[test]
fn closing_hands_back_every_message_not_known_to_be_delivered() {
    let mut p = Pair::new(one_way(1000, 3), ServerConfig::default());
    p.run_until(at(1.0));
    p.server_up = false;
    for i in 0..5u8 {
        p.client.send(0, 0, Bytes::from(vec![i])).unwrap();
    }
    p.pump();
    p.client.close(ErrorCode::Normal, "done");
    p.pump();
    let undelivered: Vec<usize> = p
        .client_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Undelivered { messages } => Some(messages.len()),
            _ => None,
        })
        .collect();
    assert_eq!(undelivered, vec![5]);
}
