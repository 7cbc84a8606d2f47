use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mcpsim::net::NetEvent;
use mcpsim::net::conn::Outgoing;
use mcpsim::proto::session::Event;

use crate::support::*;

#[tokio::test]
async fn heartbeats_flow_and_messages_echo_over_loopback() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (conn, opts) = fast_client_options("c1", &srv.addr);
    let got = Arc::new(Collect::default());
    let c = start_client(conn, opts, srv.recorder.clone(), got.clone());
    srv.recorder.established("c1").await;
    for i in 0..100u32 {
        let payload = Bytes::from(format!("{{\"n\":{i}}}"));
        c.send
            .send(Outgoing {
                channel: (i % 3) as u16,
                priority: 0,
                payload,
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let msgs = got.messages.lock().unwrap().clone();
    assert_eq!(msgs.len(), 100);
    for ch in 0..3u16 {
        let ns: Vec<_> = msgs
            .iter()
            .filter(|m| m.channel == ch)
            .map(|m| m.payload.clone())
            .collect();
        let expected: Vec<_> = (0..100u32)
            .filter(|i| (i % 3) as u16 == ch)
            .map(|i| Bytes::from(format!("{{\"n\":{i}}}")))
            .collect();
        assert_eq!(ns, expected, "channel {ch} out of order");
    }
    // 100 ms heartbeats for ~0.6 s at least: several RTT samples, all well under a heartbeat.
    let rtts: Vec<Duration> = srv
        .recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, n, _, e)| match e {
            NetEvent::Session(Event::Rtt { rtt, .. }) if n == "c1" => Some(*rtt),
            _ => None,
        })
        .collect();
    assert!(rtts.len() >= 4, "{} rtt samples", rtts.len());
    assert!(
        rtts.iter().all(|r| *r < Duration::from_millis(50)),
        "{rtts:?}"
    );
    assert_eq!(
        srv.recorder.count(
            "c1",
            is_session(|e| matches!(e, Event::PeerSuspected { .. }))
        ),
        0
    );
    c.stop.send(true).unwrap();
    assert!(c.task.await.unwrap().is_ok());
}

#[tokio::test]
async fn client_shutdown_ends_the_session_on_the_server() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (conn, opts) = fast_client_options("c1", &srv.addr);
    let c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    assert_eq!(srv.server.sessions(), 1);
    c.stop.send(true).unwrap();
    c.task.await.unwrap().unwrap();
    let closed = srv
        .recorder
        .wait_for(
            "server",
            Duration::from_secs(2),
            is_session(|e| {
                matches!(
                    e,
                    Event::ConnectionClosed {
                        by_peer: true,
                        resumable: false,
                        ..
                    }
                )
            }),
        )
        .await;
    assert!(closed.is_some());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        srv.server.sessions(),
        0,
        "an ended session is not kept for resume"
    );
}

/// A load source the test sets.
struct Dial(std::sync::atomic::AtomicU16);

impl mcpsim::net::load::LoadSource for Dial {
    fn sample(&self) -> mcpsim::proto::frame::Load {
        mcpsim::proto::frame::Load {
            cpu_permille: self.0.load(std::sync::atomic::Ordering::Relaxed),
            mem_permille: 100,
        }
    }
}

#[tokio::test]
async fn a_loaded_server_throttles_its_clients_over_real_sockets_and_lets_go_when_load_falls() {
    let dial = Arc::new(Dial(std::sync::atomic::AtomicU16::new(950)));
    let mut opts = fast_server_options();
    opts.throttle = Some(mcpsim::proto::throttle::ThrottleConfig {
        hold: Duration::from_millis(500),
        ..Default::default()
    });
    opts.load = Some(dial.clone());
    let srv = start_server(opts, echo()).await;
    let (conn, opts) = fast_client_options("c1", &srv.addr);
    let _c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    let changed_to = |ms: u32| {
        is_session(
            move |e| matches!(e, Event::ParamsChanged { interval_ms, .. } if *interval_ms == ms),
        )
    };
    // Sampled once a second: held for 0.5 s past 80%, it throttles within about 2 s.
    srv.recorder
        .wait_for("c1", Duration::from_secs(4), changed_to(200))
        .await
        .expect("the client is told to beat every 200 ms");
    dial.0.store(100, std::sync::atomic::Ordering::Relaxed);
    srv.recorder
        .wait_for("c1", Duration::from_secs(4), changed_to(100))
        .await
        .expect("and back to 100 ms when the load falls");
    let suspected = srv.recorder.count(
        "c1",
        is_session(|e| matches!(e, Event::PeerSuspected { .. })),
    );
    assert_eq!(suspected, 0);
}

#[tokio::test]
async fn a_client_that_reports_its_load_puts_it_in_every_heartbeat_the_server_receives() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (conn, mut opts) = fast_client_options("c1", &srv.addr);
    opts.report_load = true;
    opts.load = Some(Arc::new(Dial(std::sync::atomic::AtomicU16::new(420))));
    let _c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    let loaded = is_session(|e| {
        matches!(
            e,
            Event::HeartbeatReceived {
                load: Some(mcpsim::proto::frame::Load {
                    cpu_permille: 420,
                    ..
                }),
                ..
            }
        )
    });
    srv.recorder
        .wait_for("server", Duration::from_secs(2), loaded)
        .await
        .expect("the server receives the client's load with its heartbeats");
}
