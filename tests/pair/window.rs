use bytes::Bytes;
use mcpsim::proto::registry::ServerConfig;
use mcpsim::proto::session::{ClientConfig, SendError, SessionConfig};

use crate::harness::{Pair, at, secs};

fn small_window() -> ServerConfig {
    ServerConfig {
        session: SessionConfig {
            window: 8,
            send_queue: 16,
            ..SessionConfig::default()
        },
        ..ServerConfig::default()
    }
}

#[test]
fn a_reader_that_stops_bounds_the_senders_memory() {
    let client = ClientConfig {
        session: SessionConfig {
            window: 8,
            send_queue: 16,
            ..SessionConfig::default()
        },
        ..ClientConfig::default()
    };
    let mut p = Pair::new(client, small_window());
    p.server_reads = false;
    p.run_until(at(1.0));
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..100 {
        match p.client.send(0, 0, Bytes::from(vec![0u8; 1000])) {
            Ok(()) => accepted += 1,
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
        p.pump();
        p.run_for(secs(0.05));
    }
    // 8 frames fill the server's window, 16 more wait in the send queue, then back-pressure.
    assert_eq!(accepted, 24);
    assert!(
        matches!(refused, Some((_, SendError::Full { queued: 16, .. }))),
        "{refused:?}"
    );
    // The server took exactly its window and acknowledged it with a zero window; the client
    // holds only its bounded send queue.
    assert_eq!(p.server.as_ref().unwrap().last_received(), 8);
    assert_eq!(p.client.unacknowledged(), 0);
    assert_eq!(p.client.queued(), 16);
    // The reader resumes: everything flows.
    p.server_reads = true;
    p.pump();
    p.run_for(secs(2.0));
    assert_eq!(p.server_received.len(), 24);
    assert_eq!(p.client.queued(), 0);
}

#[test]
fn bulk_data_does_not_delay_heartbeats_or_urgent_channels() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    for i in 0..500u32 {
        p.client
            .send(9, 200, Bytes::from(format!("bulk {i}")))
            .unwrap();
    }
    p.client.send(1, 0, Bytes::from_static(b"urgent")).unwrap();
    p.pump();
    p.run_until(at(10.0));
    // The urgent message jumped the queue of bulk messages that had not been sequenced yet.
    let pos = p
        .server_received
        .iter()
        .position(|m| m.channel == 1)
        .unwrap();
    assert!(pos <= 256, "urgent message arrived at position {pos}");
    assert_eq!(p.server_received.len(), 501);
    assert!(
        p.server_times(|e| matches!(e, mcpsim::proto::Event::PeerSuspected { .. }))
            .is_empty()
    );
}

#[test]
fn same_priority_channels_take_turns() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    // Queue before the window opens so the scheduler decides the order.
    p.break_connection();
    for i in 0..3u8 {
        for ch in [1u16, 2] {
            p.client.send(ch, 5, Bytes::from(vec![i])).unwrap();
        }
    }
    p.run_until(at(2.0));
    let order: Vec<u16> = p.server_received.iter().map(|m| m.channel).collect();
    assert_eq!(order, vec![1, 2, 1, 2, 1, 2]);
}

#[test]
fn the_bytes_a_session_holds_stay_under_its_budget_when_the_peer_stops_reading() {
    let budget = 512 * 1024;
    let client = ClientConfig {
        session: SessionConfig {
            max_held_bytes: budget,
            ..SessionConfig::default()
        },
        ..ClientConfig::default()
    };
    let mut p = Pair::new(client, ServerConfig::default());
    p.server_reads = false;
    p.run_until(at(1.0));
    let mut refused = None;
    for _ in 0..10_000 {
        assert!(p.client.held_bytes() <= budget, "{}", p.client.held_bytes());
        if let Err(e) = p.client.send(0, 0, Bytes::from(vec![0u8; 4000])) {
            refused = Some(e);
            break;
        }
        p.pump();
        p.run_for(secs(0.001));
    }
    // Refused by bytes, long before the send queue's 1,024 messages.
    assert_eq!(p.client.send_capacity(), 0);
    // Refused by bytes: the error says how many the session holds.
    match refused {
        Some(SendError::Full { queued, held_bytes }) => {
            assert!(queued < 1024, "{queued}");
            assert!(held_bytes + 4000 > budget, "{held_bytes}");
        }
        other => panic!("{other:?}"),
    }
    assert!(p.client.held_bytes() <= budget);
}
