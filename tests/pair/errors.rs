use bytes::Bytes;
use mcpsim::proto::frame::{Body, Data, Frame};
use mcpsim::proto::registry::ServerConfig;
use mcpsim::proto::session::{ClientConfig, Event};
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
