use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcpsim::net::{ConnEnd, NetEvent, PeerLoss};
use mcpsim::proto::frame::{
    Body, Frame, HeartbeatMode, HeartbeatParams, Hello, MAX_PAYLOAD_LEN, Welcome,
};
use mcpsim::proto::session::Event;
use mcpsim::proto::{Decoder, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::support::*;

fn hello(interval_ms: u32, k: u8) -> Frame {
    Frame::new(
        0,
        0,
        Body::Hello(Hello {
            client_id: "raw".into(),
            credential: Bytes::new(),
            requested: Some(HeartbeatParams {
                interval_ms,
                miss_threshold: k,
            }),
            mode: Some(HeartbeatMode::OneWay),
            resume: None,
        }),
    )
}

/// Reads frames until one matches, or the stream ends.
async fn read_until(s: &mut TcpStream, pred: impl Fn(&Frame) -> bool) -> Option<Frame> {
    let mut buf = BytesMut::new();
    let mut dec = Decoder::new(MAX_PAYLOAD_LEN);
    loop {
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            if pred(&f) {
                return Some(f);
            }
        }
        if s.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// The server's `PeerLost` events: when, why, and how long the peer had been silent.
fn losses(r: &Recorder) -> Vec<(Instant, PeerLoss, Duration)> {
    let v = r.events.lock().unwrap();
    v.iter()
        .filter(|(_, n, ..)| n == "server")
        .filter_map(|(t, _, _, e)| match e {
            NetEvent::PeerLost { reason, silent, .. } => Some((*t, *reason, *silent)),
            _ => None,
        })
        .collect()
}

/// Waits (2 s at most) for the server to declare a peer lost, checks that it did within 100 ms
/// of `since` and only once, and returns why.
async fn lost_at_once(r: &Recorder, since: Instant) -> PeerLoss {
    let seen = r
        .wait_for("server", Duration::from_secs(2), |e| {
            matches!(e, NetEvent::PeerLost { .. })
        })
        .await
        .expect("server noticed");
    assert!(
        seen - since < Duration::from_millis(100),
        "{:?}",
        seen - since
    );
    let lost = losses(r);
    assert_eq!(lost.len(), 1, "{lost:?}");
    lost[0].1
}

/// Connects a raw client that says HELLO and waits for WELCOME: an established session.
async fn raw_established(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello(100, 3).to_bytes().unwrap())
        .await
        .unwrap();
    read_until(&mut s, |f| matches!(f.body, Body::Welcome(_)))
        .await
        .expect("welcome");
    s
}

#[tokio::test]
async fn a_silent_client_is_declared_dead_and_closed_at_k_intervals_not_twice_that() {
    let srv = start_server(fast_server_options(), echo()).await;
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    s.write_all(&hello(100, 3).to_bytes().unwrap())
        .await
        .unwrap();
    // Say nothing more; keep reading.
    let close = tokio::time::timeout(
        Duration::from_secs(3),
        read_until(&mut s, |f| matches!(f.body, Body::Close(_))),
    )
    .await
    .expect("closed in time")
    .expect("a CLOSE frame");
    let closed = Instant::now();
    let Body::Close(c) = close.body else {
        unreachable!()
    };
    assert_eq!(c.code, ErrorCode::HeartbeatTimeout);
    let r = &srv.recorder;
    let at = |pred: fn(&Event) -> bool| r.times("server", is_session(pred))[0];
    let est = at(|e| matches!(e, Event::Established { .. }));
    let suspect = at(|e| matches!(e, Event::PeerSuspected { .. }));
    let dead = at(|e| matches!(e, Event::PeerDead { .. }));
    let closing = at(|e| {
        matches!(
            e,
            Event::ConnectionClosed {
                code: ErrorCode::HeartbeatTimeout,
                ..
            }
        )
    });
    // k·η = 300 ms after the detector was armed; scheduling slack only.
    let slack = Duration::from_millis(100);
    let to_suspect = suspect - est;
    assert!(
        to_suspect >= Duration::from_millis(300) && to_suspect < Duration::from_millis(300) + slack,
        "{to_suspect:?}"
    );
    // Dead, and the CLOSE queued, in the same turn as the suspicion: not k·η later.
    assert!(
        dead - suspect < Duration::from_millis(5),
        "{:?}",
        dead - suspect
    );
    assert!(closing - suspect < Duration::from_millis(5));
    assert!(
        closed - est < Duration::from_millis(300) + slack,
        "{:?}",
        closed - est
    );
    // One detection, by the detector, reported with the silence.
    let lost = losses(r);
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].1, PeerLoss::HeartbeatTimeout);
    assert!(lost[0].0 - suspect < Duration::from_millis(5));
    assert!(lost[0].2 >= Duration::from_millis(300), "{:?}", lost[0].2);
    // The session is kept for a resume.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(srv.server.sessions(), 1);
}

#[tokio::test]
async fn a_killed_client_is_declared_dead_by_end_of_stream_at_once() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (conn, mut opts) = fast_client_options("c1", &srv.addr);
    opts.session.client_id = "c1".into();
    let c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    let killed = Instant::now();
    c.task.abort(); // the socket is dropped: FIN, as when a process dies on a live kernel
    assert_eq!(lost_at_once(&srv.recorder, killed).await, PeerLoss::Eof);
    // Noticed through the stream, not through missed heartbeats.
    assert_eq!(
        srv.recorder.count(
            "server",
            is_session(|e| matches!(e, Event::PeerSuspected { .. }))
        ),
        0
    );
    let v = srv.recorder.events.lock().unwrap();
    let peer = v.iter().find_map(|(.., e)| match e {
        NetEvent::PeerLost { peer, .. } => Some(peer.clone()),
        _ => None,
    });
    assert!(
        peer.as_deref()
            .is_some_and(|p| p.starts_with("client \"c1\" at 127.0.0.1:")),
        "{peer:?}"
    );
}

#[tokio::test]
async fn a_reset_client_is_declared_dead_with_reason_reset_at_once() {
    let srv = start_server(fast_server_options(), echo()).await;
    let s = raw_established(&srv.addr).await;
    // SO_LINGER 0: closing the socket sends RST instead of FIN.
    s.set_zero_linger().unwrap();
    let reset = Instant::now();
    drop(s);
    assert_eq!(lost_at_once(&srv.recorder, reset).await, PeerLoss::Reset);
    assert_eq!(
        srv.recorder.count("server", |e| matches!(
            e,
            NetEvent::Disconnected {
                reason: ConnEnd::Reset(_),
                ..
            }
        )),
        1
    );
}

#[tokio::test]
async fn a_connection_ended_by_close_is_no_detection_on_either_side() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (conn, opts) = fast_client_options("c1", &srv.addr);
    let c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    // The client shuts down: CLOSE NORMAL, then FIN.
    c.stop.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), c.task).await;
    srv.recorder
        .wait_for("server", Duration::from_secs(2), |e| {
            matches!(e, NetEvent::Disconnected { .. })
        })
        .await
        .expect("connection ended");
    // And a server shutdown (GOAWAY) seen by a second client.
    let (conn, opts) = fast_client_options("c2", &srv.addr);
    let c2 = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c2").await;
    srv.stop.send(true).unwrap();
    srv.recorder
        .wait_for("c2", Duration::from_secs(2), |e| {
            matches!(e, NetEvent::Disconnected { .. })
        })
        .await
        .expect("connection ended");
    let lost = |node| {
        srv.recorder
            .count(node, |e| matches!(e, NetEvent::PeerLost { .. }))
    };
    assert_eq!((lost("server"), lost("c1"), lost("c2")), (0, 0, 0));
    c2.task.abort();
}

#[tokio::test]
async fn a_hung_server_is_suspected_declared_dead_and_the_client_reconnects() {
    // A "server" that welcomes and then never speaks again, but keeps the connection open.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = read_until(&mut s, |f| matches!(f.body, Body::Hello(_))).await;
            let w = Welcome {
                token: [9; 16],
                params: HeartbeatParams {
                    interval_ms: 100,
                    miss_threshold: 3,
                },
                mode: HeartbeatMode::OneWay,
                resumed: false,
                last_received: 0,
                window: 16,
                max_payload: 1024,
            };
            s.write_all(&Frame::new(42, 0, Body::Welcome(w)).to_bytes().unwrap())
                .await
                .unwrap();
            held.push(s);
        }
    });
    let recorder = std::sync::Arc::new(Recorder::default());
    let (conn, opts) = fast_client_options("c1", &addr);
    let c = start_client(conn, opts, recorder.clone(), echo());
    let reconnect = recorder
        .wait_for("c1", Duration::from_secs(3), |e| {
            matches!(e, NetEvent::ReconnectIn { .. })
        })
        .await
        .expect("client gave up on the hung server");
    let est = recorder.times("c1", is_session(|e| matches!(e, Event::Established { .. })))[0];
    let suspect = recorder.times(
        "c1",
        is_session(|e| matches!(e, Event::PeerSuspected { .. })),
    )[0];
    let to_suspect = suspect - est;
    assert!(
        to_suspect >= Duration::from_millis(300) && to_suspect < Duration::from_millis(400),
        "{to_suspect:?}"
    );
    assert!(reconnect - est < Duration::from_millis(700));
    c.task.abort();
    hung.abort();
}
