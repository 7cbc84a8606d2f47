use std::collections::BTreeMap;

use bytes::Bytes;
use mcpsim::proto::registry::ServerConfig;
use mcpsim::proto::session::{ClientConfig, Event, Message, SendError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::harness::{Pair, at, secs};

fn payload(channel: u16, n: u32) -> Bytes {
    Bytes::from(format!("{channel}:{n}"))
}

/// Per channel, the payloads in the order they arrived.
fn by_channel(msgs: &[Message]) -> BTreeMap<u16, Vec<Bytes>> {
    let mut m: BTreeMap<u16, Vec<Bytes>> = BTreeMap::new();
    for msg in msgs {
        m.entry(msg.channel).or_default().push(msg.payload.clone());
    }
    m
}

#[test]
fn resume_after_a_break_delivers_every_message_exactly_once_in_order() {
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
        p.latency = secs(0.02);
        let mut sent_up: BTreeMap<u16, Vec<Bytes>> = BTreeMap::new();
        let mut sent_down: BTreeMap<u16, Vec<Bytes>> = BTreeMap::new();
        let mut n = 0u32;
        let mut breaks = 0;
        let mut t = 0.0;
        while t < 60.0 {
            t += rng.random_range(0.0..0.05);
            p.run_until(at(t));
            // Each way, messages on three channels with mixed priorities.
            let ch: u16 = rng.random_range(0..3);
            let prio = rng.random_range(0..3u8);
            if p.client.send(ch, prio, payload(ch, n)).is_ok() {
                sent_up.entry(ch).or_default().push(payload(ch, n));
            }
            if let Some(s) = &mut p.server
                && s.send(ch, prio, payload(ch, n)).is_ok()
            {
                sent_down.entry(ch).or_default().push(payload(ch, n));
            }
            p.pump();
            n += 1;
            // Random connection breaks lose everything in flight both ways.
            if rng.random_bool(0.01) {
                p.break_connection();
                breaks += 1;
            }
        }
        p.run_for(secs(5.0));
        assert!(breaks > 5, "seed {seed}: only {breaks} breaks");
        assert_eq!(
            by_channel(&p.server_received),
            sent_up,
            "seed {seed}: client → server"
        );
        assert_eq!(
            by_channel(&p.client_received),
            sent_down,
            "seed {seed}: server → client"
        );
        let seqs: Vec<u64> = p.server_received.iter().map(|m| m.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "seed {seed}: gap or repeat"
        );
        let resumed = p.client_times(|e| matches!(e, Event::Established { resumed: true, .. }));
        assert!(
            resumed.len() > 5,
            "seed {seed}: only {} resumes",
            resumed.len()
        );
    }
}

#[test]
fn messages_sent_while_disconnected_are_delivered_after_resume() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(1.0));
    p.reconnect_delay = secs(2.0);
    p.break_connection();
    for i in 0..10 {
        p.client.send(0, 0, payload(0, i)).unwrap();
    }
    p.run_until(at(4.0));
    assert_eq!(p.server_received.len(), 10);
}

#[test]
fn an_expired_session_hands_unacknowledged_messages_back() {
    let server = ServerConfig {
        resume_window: secs(1.0),
        ..ServerConfig::default()
    };
    let mut p = Pair::new(ClientConfig::default(), server);
    p.run_until(at(1.0));
    p.server_up = false;
    for i in 0..3 {
        p.client.send(0, 0, payload(0, i)).unwrap();
    }
    p.pump();
    p.break_connection();
    p.run_until(at(3.0)); // server "restarts" with its registry, but the resume window passed
    p.server_up = true;
    p.run_until(at(5.0));
    let lost: Vec<_> = p
        .client_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Undelivered { messages } => Some(messages.len()),
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec![3]);
    assert!(p.server_received.is_empty());
    // The client carries on with a fresh session.
    assert_eq!(
        p.client_times(|e| matches!(e, Event::Established { resumed: false, .. }))
            .len(),
        2
    );
    assert_eq!(p.client.send(0, 0, payload(0, 9)), Ok(()));
    p.run_for(secs(1.0));
    assert_eq!(p.server_received.len(), 1);
    assert_eq!(p.server_received[0].seq, 1);
}

#[test]
fn a_closed_session_refuses_to_send() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(1.0));
    p.client.close(mcpsim::proto::ErrorCode::Normal, "bye");
    p.pump();
    p.run_for(secs(1.0));
    assert_eq!(p.client.send(0, 0, payload(0, 0)), Err(SendError::Closed));
    assert!(p.server_events.iter().any(|(_, e)| matches!(
        e,
        Event::ConnectionClosed {
            by_peer: true,
            resumable: false,
            ..
        }
    )));
    // The server forgot the session: nothing is kept for a resume.
    assert_eq!(p.registry.len(), 0);
}
