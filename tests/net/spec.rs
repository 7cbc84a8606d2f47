//! The server against docs/protocol.md, byte for byte over loopback: takeover, frames before
//! HELLO, several frames in one write, the ACK delay bound.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcpsim::proto::frame::{
    Body, Frame, HeartbeatMode, HeartbeatParams, Hello, MAX_PAYLOAD_LEN, Resume, TOKEN_LEN, Welcome,
};
use mcpsim::proto::{Decoder, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A raw connection that keeps what it has read but not yet decoded.
struct Raw {
    s: TcpStream,
    buf: BytesMut,
    dec: Decoder,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        // Each write leaves at once (measured delays must not include Nagle's).
        s.set_nodelay(true).unwrap();
        Raw {
            s,
            buf: BytesMut::new(),
            dec: Decoder::new(MAX_PAYLOAD_LEN),
        }
    }

    async fn send(&mut self, frames: &[Frame]) {
        let mut out = BytesMut::new();
        for f in frames {
            f.encode(&mut out).unwrap();
        }
        // One write: the frames reach the server in one read.
        self.s.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` at the end of the stream or after 2 s.
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let Ok(Some(f)) = self.dec.decode(&mut self.buf) {
                    return Some(f);
                }
                if self.s.read_buf(&mut self.buf).await.ok()? == 0 {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Every frame until the end of the stream (at most 2 s of waiting for each).
    async fn rest(&mut self) -> Vec<Frame> {
        let mut v = Vec::new();
        while let Some(f) = self.next().await {
            v.push(f);
        }
        v
    }

    /// Says HELLO and returns the session id and WELCOME.
    async fn open(addr: &str) -> (Raw, u32, Welcome) {
        let mut r = Raw::connect(addr).await;
        r.send(&[hello(0, None)]).await;
        match r.next().await {
            Some(Frame {
                session_id,
                body: Body::Welcome(w),
                ..
            }) => (r, session_id, w),
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }
}

fn hello(session_id: u32, token: Option<[u8; TOKEN_LEN]>) -> Frame {
    Frame::new(
        session_id,
        0,
        Body::Hello(Hello {
            client_id: "raw".into(),
            credential: Bytes::new(),
            requested: None,
            mode: None,
            resume: token.map(|token| Resume {
                token,
                last_received: 0,
            }),
        }),
    )
}

/// The CLOSE (or REJECT) in `frames`: which body and code.
fn ending(frames: &[Frame]) -> Option<(&'static str, ErrorCode)> {
    frames.iter().find_map(|f| match &f.body {
        Body::Close(c) => Some(("CLOSE", c.code)),
        Body::Reject(c) => Some(("REJECT", c.code)),
        _ => None,
    })
}

fn kinds(frames: &[Frame]) -> Vec<&'static str> {
    frames.iter().map(|f| f.frame_type().name()).collect()
}

#[tokio::test]
async fn a_resume_while_the_old_connection_is_up_takes_the_session_over() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (mut old, id, w) = Raw::open(&srv.addr).await;
    for round in 0..3 {
        let mut new = Raw::connect(&srv.addr).await;
        new.send(&[hello(id, Some(w.token))]).await;
        match new.next().await.map(|f| f.body) {
            Some(Body::Welcome(w)) => assert!(w.resumed, "round {round}: not resumed"),
            other => panic!("round {round}: expected WELCOME resumed, got {other:?}"),
        }
        let rest = old.rest().await;
        assert_eq!(
            ending(&rest),
            Some(("CLOSE", ErrorCode::SessionReplaced)),
            "round {round}: the old connection ends with SESSION_REPLACED"
        );
        old = new;
    }
    assert_eq!(srv.server.sessions(), 1);
}

#[tokio::test]
async fn a_resume_with_a_wrong_token_leaves_the_live_session_alone() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (mut old, id, w) = Raw::open(&srv.addr).await;
    let mut wrong = w.token;
    wrong[0] ^= 1;
    let mut thief = Raw::connect(&srv.addr).await;
    thief.send(&[hello(id, Some(wrong))]).await;
    assert_eq!(
        ending(&thief.rest().await),
        Some(("REJECT", ErrorCode::UnknownSession))
    );
    // The owner still gets answers on its connection.
    old.send(&[Frame::heartbeat(id, 1)]).await;
    let f = old.next().await.expect("an answer");
    assert!(matches!(f.body, Body::HeartbeatAck(_)), "{f:?}");
    // And the right token still resumes it.
    let mut new = Raw::connect(&srv.addr).await;
    new.send(&[hello(id, Some(w.token))]).await;
    assert!(matches!(new.next().await.map(|f| f.body), Some(Body::Welcome(w)) if w.resumed));
}

#[tokio::test]
async fn a_resume_keeps_the_sessions_interval_and_mode_whatever_the_hello_asks() {
    let srv = start_server(fast_server_options(), echo()).await;
    let asking = |session_id, token: Option<[u8; TOKEN_LEN]>, interval_ms, mode| {
        Frame::new(
            session_id,
            0,
            Body::Hello(Hello {
                client_id: "raw".into(),
                credential: Bytes::new(),
                requested: Some(HeartbeatParams {
                    interval_ms,
                    miss_threshold: 3,
                }),
                mode: Some(mode),
                resume: token.map(|token| Resume {
                    token,
                    last_received: 0,
                }),
            }),
        )
    };
    let mut first = Raw::connect(&srv.addr).await;
    first
        .send(&[asking(0, None, 1000, HeartbeatMode::OneWay)])
        .await;
    let (id, w) = match first.next().await {
        Some(Frame {
            session_id,
            body: Body::Welcome(w),
            ..
        }) => (session_id, w),
        other => panic!("expected WELCOME, got {other:?}"),
    };
    assert_eq!(
        (w.params.interval_ms, w.mode),
        (1000, HeartbeatMode::OneWay)
    );
    drop(first);
    let mut again = Raw::connect(&srv.addr).await;
    again
        .send(&[asking(id, Some(w.token), 5000, HeartbeatMode::TwoWay)])
        .await;
    match again.next().await.map(|f| f.body) {
        Some(Body::Welcome(r)) => {
            assert!(r.resumed);
            assert_eq!(
                (r.params, r.mode),
                (w.params, w.mode),
                "the session's values"
            );
        }
        other => panic!("expected WELCOME resumed, got {other:?}"),
    }
}

#[tokio::test]
async fn heartbeat_data_or_ack_before_hello_gets_close_unexpected_frame_not_reject() {
    let srv = start_server(fast_server_options(), echo()).await;
    let data = Body::Data(mcpsim::proto::frame::Data {
        channel: 1,
        priority: 0,
        payload: Bytes::from_static(b"x"),
    });
    for first in [
        Frame::heartbeat(0, 1),
        Frame::new(0, 1, data),
        Frame::new(0, 0, Body::Ack { window: 8 }),
    ] {
        let name = first.frame_type().name();
        let mut r = Raw::connect(&srv.addr).await;
        r.send(&[first]).await;
        assert_eq!(
            ending(&r.rest().await),
            Some(("CLOSE", ErrorCode::UnexpectedFrame)),
            "{name} first"
        );
    }
}

#[tokio::test]
async fn two_hellos_in_one_write_get_welcome_then_close_for_the_second() {
    let srv = start_server(fast_server_options(), echo()).await;
    let mut r = Raw::connect(&srv.addr).await;
    r.send(&[hello(0, None), hello(0, None)]).await;
    let frames = r.rest().await;
    assert_eq!(kinds(&frames), ["WELCOME", "CLOSE"]);
    assert_eq!(ending(&frames), Some(("CLOSE", ErrorCode::UnexpectedFrame)));
    assert_eq!(frames[1].session_id, frames[0].session_id);
}

#[tokio::test]
async fn valid_frames_before_a_bad_one_in_the_same_write_are_answered_before_the_close() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (mut r, id, _) = Raw::open(&srv.addr).await;
    let data = Body::Data(mcpsim::proto::frame::Data {
        channel: 1,
        priority: 0,
        payload: Bytes::from_static(b"ping"),
    });
    r.send(&[
        Frame::new(id, 0, Body::Ack { window: 8 }),
        Frame::new(id, 1, data),
        Frame::heartbeat(id, 1),
        // A second HELLO on an established connection: UNEXPECTED_FRAME.
        hello(0, None),
    ])
    .await;
    let frames = r.rest().await;
    let k = kinds(&frames);
    assert_eq!(k.last(), Some(&"CLOSE"), "{k:?}");
    for answer in ["HEARTBEAT_ACK", "DATA"] {
        assert!(k.contains(&answer), "{answer} before the CLOSE: {k:?}");
    }
    assert!(
        frames
            .iter()
            .any(|f| matches!(&f.body, Body::Data(d) if d.payload == "ping")),
        "the echo"
    );
}

#[tokio::test]
async fn bytes_that_are_not_mcp_after_valid_frames_close_after_the_answers() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (mut r, id, _) = Raw::open(&srv.addr).await;
    let mut out = BytesMut::new();
    Frame::heartbeat(id, 1).encode(&mut out).unwrap();
    out.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    r.s.write_all(&out).await.unwrap();
    let frames = r.rest().await;
    assert_eq!(kinds(&frames), ["HEARTBEAT_ACK", "CLOSE"]);
    assert_eq!(ending(&frames), Some(("CLOSE", ErrorCode::BadMagic)));
}

// A timing measurement: on a busy two-core machine about one run in five sees a wake-up late
// enough to cross the bound, so it is not part of `cargo test`. Run it on a quiet machine:
// `cargo test --test net -- --ignored a_delayed_ack`.
#[tokio::test]
#[ignore = "timing measurement; flaky on a loaded machine"]
async fn a_delayed_ack_leaves_within_the_ten_milliseconds_of_section_9_4() {
    let srv = start_server(
        fast_server_options(),
        std::sync::Arc::new(Collect::default()),
    )
    .await;
    let (mut r, id, _) = Raw::open(&srv.addr).await;
    r.send(&[Frame::new(id, 0, Body::Ack { window: 8 })]).await;
    let bound = Duration::from_millis(10);
    let mut delays = Vec::new();
    for seq in 1..=20u32 {
        let data = Body::Data(mcpsim::proto::frame::Data {
            channel: 1,
            priority: 0,
            payload: Bytes::from_static(b"x"),
        });
        let sent = tokio::time::Instant::now();
        r.send(&[Frame::new(id, seq, data)]).await;
        loop {
            let f = r.next().await.expect("an ACK");
            if matches!(f.body, Body::Ack { .. }) && f.seq == seq {
                break;
            }
        }
        delays.push(sent.elapsed());
        // A sign of life, so the server's detector (300 ms here) leaves us alone.
        r.send(&[Frame::heartbeat(id, seq)]).await;
        // Not in step with the server's millisecond ticks.
        tokio::time::sleep(Duration::from_micros(1300 + 170 * seq as u64)).await;
    }
    delays.sort();
    let max = *delays.last().unwrap();
    eprintln!(
        "ACK delays: min {:?}, median {:?}, max {max:?}",
        delays[0], delays[10]
    );
    // The server keeps the bound; a test process on a shared machine can still be descheduled
    // for a few milliseconds, so one sample in twenty may miss it, none by much.
    let over = delays.iter().filter(|d| **d > bound).count();
    assert!(
        over <= 1,
        "{over} of 20 ACKs later than {bound:?}: {delays:?}"
    );
    assert!(max <= 2 * bound, "slowest ACK after {max:?}");
}

#[tokio::test]
async fn a_listener_with_the_system_backlog_takes_two_thousand_connects_before_any_accept() {
    let backlog = mcpsim::net::system_backlog();
    let l = mcpsim::net::listen("127.0.0.1:0", backlog).await.unwrap();
    let addr = l.local_addr().unwrap();
    // Fewer than the backlog, so none needs an accept; a SYN dropped on a full queue would
    // cost its connect the kernel's one-second retry.
    let n = 2000.min(backlog as usize - 1);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        tasks.spawn(async move { TcpStream::connect(addr).await.map(|_s| ()) });
    }
    let mut streams = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
        streams += 1;
    }
    let took = start.elapsed();
    assert_eq!(streams, n);
    assert!(
        took < Duration::from_millis(900),
        "{n} connects took {took:?}"
    );
    drop(l);
}

#[tokio::test]
async fn the_byte_budget_shrinks_the_window_and_a_client_that_ignores_it_is_closed() {
    let mut opts = fast_server_options();
    opts.config.session.max_held_bytes = 64 * 1024;
    let srv = start_server(opts, echo()).await;
    let (mut r, id, w) = Raw::open(&srv.addr).await;
    // Half the budget for what the server receives, at 16 KiB a frame.
    assert_eq!(w.window, 2);
    // The client never reads: the echoes pile up until the other half is full, the server
    // takes no more messages from its window, and the client, ignoring it, oversteps it.
    let frames: Vec<Frame> = (1..=80u32)
        .map(|seq| {
            let data = mcpsim::proto::frame::Data {
                channel: 1,
                priority: 0,
                payload: Bytes::from(vec![0u8; 1000]),
            };
            Frame::new(id, seq, Body::Data(data))
        })
        .collect();
    r.send(&frames).await;
    let rest = r.rest().await;
    assert_eq!(ending(&rest), Some(("CLOSE", ErrorCode::WindowViolation)));
}

#[tokio::test]
async fn a_takeover_does_not_wait_for_an_old_connection_that_stopped_reading() {
    let srv = start_server(fast_server_options(), echo()).await;
    // The old client reads nothing, through a small receive buffer, and floods heartbeats: the
    // server's answers fill both socket buffers, and its writes to it stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(srv.addr.parse().unwrap()).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut old = Raw {
        s,
        buf: BytesMut::new(),
        dec: Decoder::new(MAX_PAYLOAD_LEN),
    };
    old.send(&[hello(0, None)]).await;
    let (id, token) = match old.next().await.map(|f| (f.session_id, f.body)) {
        Some((id, Body::Welcome(w))) => (id, w.token),
        other => panic!("expected WELCOME, got {other:?}"),
    };
    let flood: Vec<Frame> = (0..50_000).map(|i| Frame::heartbeat(id, i)).collect();
    for _ in 0..40 {
        old.send(&flood).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = tokio::time::Instant::now();
    let mut new = Raw::connect(&srv.addr).await;
    new.send(&[hello(id, Some(token))]).await;
    match new.next().await.map(|f| f.body) {
        Some(Body::Welcome(w)) => assert!(w.resumed),
        other => panic!("expected WELCOME resumed, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took < Duration::from_millis(600), "takeover took {took:?}");
    eprintln!("takeover of a stalled connection: {took:?}");
    drop(old);
}
