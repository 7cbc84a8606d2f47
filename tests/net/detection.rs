use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcpsim::net::{ConnEnd, NetEvent};
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

#[tokio::test]
async fn a_silent_client_is_suspected_after_k_intervals_and_closed_as_dead() {
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
    let Body::Close(c) = close.body else {
        unreachable!()
    };
    assert_eq!(c.code, ErrorCode::HeartbeatTimeout);
    let r = &srv.recorder;
    let est = r.times(
        "server",
        is_session(|e| matches!(e, Event::Established { .. })),
    )[0];
    let suspect = r.times(
        "server",
        is_session(|e| matches!(e, Event::PeerSuspected { .. })),
    )[0];
    let dead = r.times(
        "server",
        is_session(|e| matches!(e, Event::PeerDead { .. })),
    )[0];
    // k·η = 300 ms after the detector was armed, then k·η of suspicion; scheduling slack only.
    let margin = Duration::from_millis(100);
    let to_suspect = suspect - est;
    assert!(
        to_suspect >= Duration::from_millis(300)
            && to_suspect < Duration::from_millis(300) + margin,
        "{to_suspect:?}"
    );
    let to_dead = dead - suspect;
    assert!(
        to_dead >= Duration::from_millis(300) && to_dead < Duration::from_millis(300) + margin,
        "{to_dead:?}"
    );
    // The session is kept for a resume.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(srv.server.sessions(), 1);
}

#[tokio::test]
async fn a_killed_client_is_noticed_by_end_of_stream_at_once() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (conn, opts) = fast_client_options("c1", &srv.addr);
    let c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    let killed = Instant::now();
    c.task.abort(); // the socket is dropped: FIN, as when a process dies on a live kernel
    let seen = srv
        .recorder
        .wait_for("server", Duration::from_secs(2), |e| {
            matches!(
                e,
                NetEvent::Disconnected {
                    reason: ConnEnd::Eof | ConnEnd::Io(_),
                    ..
                }
            )
        })
        .await
        .expect("server noticed");
    assert!(
        seen - killed < Duration::from_millis(100),
        "{:?}",
        seen - killed
    );
    // Noticed through the stream, not through missed heartbeats.
    assert_eq!(
        srv.recorder.count(
            "server",
            is_session(|e| matches!(e, Event::PeerSuspected { .. }))
        ),
        0
    );
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
