use std::time::Duration;

use bytes::BytesMut;
use mcpsim::net::NetEvent;
use mcpsim::net::server::ServerOptions;
use mcpsim::proto::frame::{Body, Frame, MAX_PAYLOAD_LEN};
use mcpsim::proto::session::Event;
use mcpsim::proto::{Decoder, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads until EOF (or 3 s) and returns the CLOSE or REJECT code the server sent, if any.
async fn closing_code(s: &mut TcpStream) -> Option<ErrorCode> {
    let mut buf = BytesMut::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while s.read_buf(&mut buf).await.unwrap_or(0) > 0 {}
    })
    .await;
    let mut dec = Decoder::new(MAX_PAYLOAD_LEN);
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        if let Body::Close(c) | Body::Reject(c) = f.body {
            return Some(c.code);
        }
    }
    None
}

async fn server_with(opts: ServerOptions) -> Running {
    start_server(opts, echo()).await
}

#[tokio::test]
async fn garbage_bytes_get_bad_magic_and_the_server_keeps_serving() {
    let srv = server_with(fast_server_options()).await;
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(closing_code(&mut s).await, Some(ErrorCode::BadMagic));
    // Someone else still gets served.
    let (conn, opts) = fast_client_options("c1", &srv.addr);
    let _c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
}

#[tokio::test]
async fn an_oversized_length_is_refused_from_the_header_alone() {
    let srv = server_with(fast_server_options()).await;
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    let mut h = Frame::heartbeat(0, 0).to_bytes().unwrap().to_vec();
    h[6] = 0xFF; // payload length 0xFF00, over the default 16 KiB limit; no payload follows
    s.write_all(&h).await.unwrap();
    assert_eq!(closing_code(&mut s).await, Some(ErrorCode::FrameTooLarge));
}

#[tokio::test]
async fn a_truncated_frame_then_end_of_stream_is_malformed() {
    let srv = server_with(fast_server_options()).await;
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    s.write_all(&Frame::heartbeat(0, 0).to_bytes().unwrap()[..10])
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(closing_code(&mut s).await, Some(ErrorCode::MalformedFrame));
    let seen = srv
        .recorder
        .wait_for("server", Duration::from_secs(1), |e| {
            matches!(e, NetEvent::Rejected { .. })
        });
    assert!(seen.await.is_some());
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_handshake_timeout() {
    let mut opts = fast_server_options();
    opts.handshake_timeout = Duration::from_millis(200);
    let srv = server_with(opts).await;
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(
        closing_code(&mut s).await,
        Some(ErrorCode::HandshakeTimeout)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(500),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_byte_dribbler_is_closed_after_the_handshake_timeout() {
    let mut opts = fast_server_options();
    opts.handshake_timeout = Duration::from_millis(300);
    let srv = server_with(opts).await;
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    let hello = Frame::heartbeat(0, 0).to_bytes().unwrap();
    // One byte every 50 ms: never a whole frame in time.
    for b in hello.iter().take(8) {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        closing_code(&mut s).await,
        Some(ErrorCode::HandshakeTimeout)
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_server_busy() {
    let mut opts = fast_server_options();
    opts.max_connections = 2;
    let srv = server_with(opts).await;
    let _a = TcpStream::connect(&srv.addr).await.unwrap();
    let _b = TcpStream::connect(&srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = TcpStream::connect(&srv.addr).await.unwrap();
    assert_eq!(closing_code(&mut c).await, Some(ErrorCode::ServerBusy));
    let refused = srv
        .recorder
        .count("server", |e| matches!(e, NetEvent::Refused { .. }));
    assert_eq!(refused, 1);
}

#[tokio::test]
async fn a_peer_that_never_reads_is_dropped_and_memory_stays_bounded() {
    let mut opts = fast_server_options();
    opts.limits.write_timeout = Duration::from_millis(500);
    opts.limits.write_buffer = 64 * 1024;
    let srv = server_with(opts).await;
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    let hello = Frame::new(
        0,
        0,
        Body::Hello(mcpsim::proto::frame::Hello {
            client_id: "flood".into(),
            credential: bytes::Bytes::new(),
            requested: None,
            mode: None,
            resume: None,
        }),
    );
    s.write_all(&hello.to_bytes().unwrap()).await.unwrap();
    // Wait for WELCOME to learn the session id, without reading anything else afterwards.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).await.unwrap();
    let mut buf = BytesMut::from(&first[..n]);
    let Some(welcome) = Decoder::new(MAX_PAYLOAD_LEN).decode(&mut buf).unwrap() else {
        panic!("no welcome")
    };
    let id = welcome.session_id;
    // Flood heartbeats (each asks for a reply) and never read again.
    let mut batch = BytesMut::new();
    for i in 0..1000u32 {
        Frame::heartbeat(id, i).encode(&mut batch).unwrap();
    }
    // Flood until the server hangs up (its kernel send buffer may take a few MiB first).
    let flood = tokio::spawn(async move {
        for _ in 0..20_000 {
            if s.write_all(&batch).await.is_err() {
                break;
            }
        }
    });
    // The server keeps reading (the heartbeats prove the peer alive), caps its replies, and
    // drops the connection once its write buffer has stayed non-empty for the write timeout.
    let dropped = srv
        .recorder
        .wait_for("server", Duration::from_secs(10), |e| {
            matches!(
                e,
                NetEvent::Disconnected {
                    reason: mcpsim::net::ConnEnd::WriteStalled,
                    ..
                }
            )
        })
        .await;
    assert!(dropped.is_some(), "the server dropped the non-reading peer");
    assert_eq!(
        srv.recorder.count(
            "server",
            is_session(|e| matches!(e, Event::PeerDead { .. }))
        ),
        0
    );
    flood.abort();
}
