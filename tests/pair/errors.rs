use bytes::Bytes;
use mcpsim::proto::frame::{Body, Close, Data, Frame};
use mcpsim::proto::registry::ServerConfig;
use mcpsim::proto::session::{ClientConfig, Event, State};
use mcpsim::proto::{Error, ErrorCode, Time};

use crate::harness::{Pair, at};

fn closed_with(events: &[(Time, Event)]) -> Vec<ErrorCode> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ConnectionClosed {
                code,
                by_peer: false,
                ..
            } => Some(*code),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wrong_credential_is_rejected_with_auth_failed() {
    let server = ServerConfig {
        credential: Some(Bytes::from_static(b"s3cret")),
        ..ServerConfig::default()
    };
    let client = ClientConfig {
        credential: Bytes::from_static(b"guess"),
        ..ClientConfig::default()
    };
    let mut p = Pair::new(client, server);
    p.run_until(at(0.05));
    assert!(p.client_events.iter().any(|(_, e)| matches!(
        e,
        Event::ConnectionClosed {
            code: ErrorCode::AuthFailed,
            by_peer: true,
            resumable: false,
            ..
        }
    )));
    assert_eq!(p.registry.len(), 0);
}

#[test]
fn a_frame_with_another_session_id_closes_with_wrong_session() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    let id = p.client.id();
    let err = p
        .server
        .as_mut()
        .unwrap()
        .handle_frame(at(0.5), Frame::heartbeat(id ^ 1, 1));
    assert_eq!(
        err,
        Err(Error::WrongSession {
            got: id ^ 1,
            expected: id
        })
    );
    p.pump();
    assert_eq!(closed_with(&p.server_events), vec![ErrorCode::WrongSession]);
    p.run_until(at(0.6));
    assert!(p.client_events.iter().any(|(_, e)| matches!(
        e,
        Event::ConnectionClosed {
            code: ErrorCode::WrongSession,
            by_peer: true,
            ..
        }
    )));
}

#[test]
fn data_beyond_the_advertised_window_is_a_window_violation() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    let id = p.client.id();
    let s = p.server.as_mut().unwrap();
    let data = |seq| {
        Frame::new(
            id,
            seq,
            Body::Data(Data {
                channel: 0,
                priority: 0,
                payload: Bytes::new(),
            }),
        )
    };
    assert_eq!(s.handle_frame(at(0.5), data(1)), Ok(()));
    assert_eq!(
        s.handle_frame(at(0.5), data(1)),
        Ok(()),
        "a duplicate is dropped quietly"
    );
    assert_eq!(
        s.handle_frame(at(0.5), data(3)).unwrap_err().code(),
        ErrorCode::SequenceError
    );
}

#[test]
fn a_client_may_not_send_config() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    let id = p.client.id();
    let f = Frame::new(
        id,
        0,
        Body::Config(mcpsim::proto::frame::HeartbeatParams {
            interval_ms: 5,
            miss_threshold: 1,
        }),
    );
    let err = p
        .server
        .as_mut()
        .unwrap()
        .handle_frame(at(0.5), f)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnexpectedFrame);
}

#[test]
fn garbage_bytes_close_the_connection_with_bad_magic() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    let s = p.server.as_mut().unwrap();
    let err = Error::BadMagic(0x47455420);
    s.handle_decode_error(&err);
    p.pump();
    assert_eq!(closed_with(&p.server_events), vec![ErrorCode::BadMagic]);
}

#[test]
fn a_close_with_another_session_id_is_obeyed_and_never_answered() {
    // Id 0, as from a client that refused the WELCOME before taking its id, and a wrong id.
    for (other_id, code) in [(false, ErrorCode::ProtocolError), (true, ErrorCode::Normal)] {
        let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
        p.run_until(at(0.5));
        let id = p.client.id();
        let session_id = if other_id { id ^ 1 } else { 0 };
        let s = p.server.as_mut().unwrap();
        let close = Frame::new(
            session_id,
            0,
            Body::Close(Close {
                code,
                reason: "bye".into(),
            }),
        );
        assert!(matches!(
            s.handle_frame(at(0.5), close),
            Err(Error::PeerClosed { code: c, .. }) if c == code
        ));
        assert_eq!(s.poll_transmit(at(0.5)), None, "a CLOSE is never answered");
        // The code decides the session's fate as usual: NORMAL ends it, a protocol error not.
        let expected = if code.ends_session() {
            State::Closed
        } else {
            State::Disconnected
        };
        assert_eq!(s.state(), expected, "{code:?}");
        p.pump();
        assert!(closed_with(&p.server_events).is_empty());
    }
}

#[test]
fn an_ack_beyond_what_was_sent_closes_with_sequence_error() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    let id = p.client.id();
    let s = p.server.as_mut().unwrap();
    s.send(0, 0, Bytes::from_static(b"one")).unwrap();
    assert!(matches!(s.poll_transmit(at(0.5)), Some(f) if f.seq == 1));
    let err = s
        .handle_frame(at(0.5), Frame::new(id, 2, Body::Ack { window: 8 }))
        .unwrap_err();
    assert_eq!(err, Error::AckBeyondSent { acked: 2, sent: 1 });
    p.pump();
    assert_eq!(
        closed_with(&p.server_events),
        vec![ErrorCode::SequenceError]
    );
}

#[test]
fn a_duplicate_is_dropped_whatever_its_content_and_closes_nothing() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    p.client.send(1, 0, Bytes::from_static(b"first")).unwrap();
    p.pump();
    p.run_until(at(0.6));
    // Number 1 again on the same connection, with another channel, priority and message.
    let id = p.client.id();
    let again = Frame::new(
        id,
        1,
        Body::Data(Data {
            channel: 9,
            priority: 3,
            payload: Bytes::from_static(b"second"),
        }),
    );
    let s = p.server.as_mut().unwrap();
    assert_eq!(s.handle_frame(at(0.6), again), Ok(()));
    assert_eq!(s.poll_transmit(at(0.6)), None, "no ACK, no CLOSE");
    p.run_until(at(1.0));
    let got: Vec<(u16, &[u8])> = p
        .server_received
        .iter()
        .map(|m| (m.channel, &m.payload[..]))
        .collect();
    assert_eq!(got, [(1, &b"first"[..])]);
    assert_eq!(p.server.as_ref().unwrap().state(), State::Established);
    assert!(closed_with(&p.server_events).is_empty());
}

#[test]
fn a_new_session_refused_with_server_busy_is_tried_again() {
    let server = ServerConfig {
        max_sessions: 0,
        ..ServerConfig::default()
    };
    let mut p = Pair::new(ClientConfig::default(), server);
    p.run_until(at(1.0));
    let busy = p
        .client_events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::ConnectionClosed {
                    code: ErrorCode::ServerBusy,
                    by_peer: true,
                    resumable: true,
                    ..
                }
            )
        })
        .count();
    assert!(busy >= 5, "only {busy} attempts in a second");
    assert_ne!(p.client.state(), State::Closed);
}

#[test]
fn auth_failed_to_a_resume_ends_the_session_on_the_client() {
    let mut p = Pair::new(ClientConfig::default(), ServerConfig::default());
    p.run_until(at(0.5));
    p.client.send(0, 0, Bytes::from_static(b"lost")).unwrap();
    p.pump();
    p.break_connection();
    p.run_for(p.reconnect_delay);
    assert_eq!(
        p.client.state(),
        State::Handshaking,
        "the resume HELLO is out"
    );
    let reject = Frame::new(
        0,
        0,
        Body::Reject(Close {
            code: ErrorCode::AuthFailed,
            reason: "credential refused".into(),
        }),
    );
    let now = p.now;
    assert!(p.client.handle_frame(now, reject).is_err());
    assert_eq!(p.client.state(), State::Closed);
    p.pump();
    assert!(p.client_events.iter().any(|(_, e)| matches!(
        e,
        Event::ConnectionClosed {
            code: ErrorCode::AuthFailed,
            resumable: false,
            ..
        }
    )));
    assert!(p.client_events.iter().any(|(_, e)| matches!(
        e,
        Event::Undelivered { messages } if messages.len() == 1
    )));
}
