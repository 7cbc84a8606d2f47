use std::collections::BTreeMap;

use bytes::Bytes;
use mcpsim::proto::frame::{Body, Frame};
use mcpsim::proto::registry::ServerConfig;
use mcpsim::proto::session::{
    ClientConfig, Event, Message, SendError, SessionConfig, Shutdown, State,
};
use mcpsim::proto::{Error, ErrorCode};
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

#[test]
fn after_a_resume_an_ack_for_data_not_yet_sent_again_is_a_sequence_error() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    for i in 0..3 {
        p.server
            .as_mut()
            .unwrap()
            .send(0, 0, payload(0, i))
            .unwrap();
    }
    p.pump(); // DATA 1–3 are on the link ...
    p.break_connection(); // ... and lost with it: the client resumes with last received 0
    // Reconnect, HELLO and WELCOME take 110 ms; the client's ACK is 5 ms away from the server.
    p.run_for(p.reconnect_delay + p.latency * 2);
    let id = p.client.id();
    let s = p.server.as_mut().expect("resumed");
    assert_eq!(
        s.unacknowledged(),
        3,
        "sent on the old connection, not yet again"
    );
    let err = s
        .handle_frame(p.now, Frame::new(id, 2, Body::Ack { window: 8 }))
        .unwrap_err();
    assert_eq!(err, Error::AckBeyondSent { acked: 2, sent: 0 });
}

#[test]
fn a_server_shutting_down_sends_goaway_shutting_down_and_the_session_is_resumed() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    let id = p.client.id();
    p.server
        .as_mut()
        .unwrap()
        .handle_shutdown(Shutdown::GoAway {
            retry_after: secs(2.0),
        });
    p.pump();
    p.run_until(at(5.0));
    let told: Vec<&Event> = p
        .client_events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::GoAway { .. }))
        .collect();
    assert_eq!(
        told,
        [&Event::GoAway {
            code: ErrorCode::ShuttingDown,
            retry_after: secs(2.0)
        }]
    );
    assert!(
        p.client_events.iter().any(|(_, e)| matches!(
            e,
            Event::ConnectionClosed {
                code: ErrorCode::ShuttingDown,
                by_peer: true,
                resumable: true,
                ..
            }
        )),
        "{:?}",
        p.client_events
    );
    // When the client comes back is its endpoint's backoff, at least the 2 s asked
    // (`proto::client`); this pair reconnects at once.
    let resumed = p.client_times(|e| matches!(e, Event::Established { resumed: true, .. }));
    assert!(!resumed.is_empty(), "not resumed");
    assert_eq!(p.client.id(), id);
}

#[test]
fn a_client_shutting_down_closes_normally_and_its_session_ends_on_both_sides() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    p.client.handle_shutdown(Shutdown::Close);
    p.pump();
    p.run_until(at(5.0));
    assert_eq!(p.client.state(), State::Closed);
    assert!(
        p.server_events.iter().any(|(_, e)| matches!(
            e,
            Event::ConnectionClosed {
                code: ErrorCode::Normal,
                by_peer: true,
                resumable: false,
                ..
            }
        )),
        "{:?}",
        p.server_events
    );
    assert!(
        p.client_times(|e| matches!(e, Event::Established { .. }))
            .len()
            == 1
    );
}

#[test]
fn a_goaway_with_any_code_leaves_the_session_to_be_resumed() {
    for code in [
        ErrorCode::ShuttingDown,
        ErrorCode::Normal,
        ErrorCode::Other(0x8001),
    ] {
        let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
        p.run_until(at(0.5));
        let id = p.client.id();
        let now = p.now;
        p.server.as_mut().unwrap().go_away(code, secs(0.0), "going");
        p.pump();
        p.run_until(at(1.0));
        assert!(
            p.client_events.iter().any(|(_, e)| matches!(
                e,
                Event::ConnectionClosed { code: c, by_peer: true, resumable: true, .. } if *c == code
            )),
            "{code:?}"
        );
        let resumed = p.client_times(|e| matches!(e, Event::Established { resumed: true, .. }));
        assert!(
            !resumed.is_empty() && resumed[0] > now,
            "{code:?}: not resumed"
        );
        assert_eq!(p.client.id(), id);
    }
}

#[test]
fn data_in_flight_when_close_is_sent_is_delivered_and_still_reported_unacknowledged() {
    let server = ServerConfig {
        session: SessionConfig {
            window: 4,
            ..SessionConfig::default()
        },
        ..ServerConfig::default()
    };
    let mut p = Pair::new(ClientConfig::default(), server);
    p.run_until(at(0.5));
    for i in 0..6 {
        p.client.send(0, 0, payload(0, i)).unwrap();
    }
    p.pump(); // DATA 1–4 go out; 5 and 6 wait for the window
    p.client.close(ErrorCode::Normal, "done");
    p.pump(); // CLOSE follows DATA 4; nothing follows the CLOSE
    p.run_until(at(1.0));
    // The server's application gets the four that came before the CLOSE ...
    let got: Vec<u64> = p.server_received.iter().map(|m| m.seq).collect();
    assert_eq!(got, [1, 2, 3, 4]);
    // ... and the client, which saw no ACK, reports all six: four sent (1–4), two never sent.
    let reported: Vec<Vec<u64>> = p
        .client_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Undelivered { messages } => Some(messages.iter().map(|m| m.seq).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(reported, [vec![1, 2, 3, 4, 0, 0]]);
    assert_eq!(p.client.state(), State::Closed);
}
