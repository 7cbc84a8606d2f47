//! Heartbeat intervals longer than the write timeout: a quiet connection is not a stalled one.

use std::time::Duration;

use mcpsim::net::NetEvent;
use mcpsim::proto::frame::HeartbeatParams;
use mcpsim::proto::session::Event;

use crate::support::*;

/// Heartbeat frames `node` received, from its traffic reports.
fn heartbeats_received(r: &Recorder, node: &str) -> u64 {
    let v = r.events.lock().unwrap();
    v.iter()
        .filter_map(|(_, n, _, e)| match e {
            NetEvent::Traffic {
                heartbeats_received,
                ..
            } if n == node => Some(heartbeats_received),
            _ => None,
        })
        .sum()
}

// Paused time: tokio jumps to the next timer whenever every task waits, so three minutes of
// 12 s heartbeats take milliseconds. Loopback hands a write to the peer's socket at once, so
// the clock does not jump over a frame in flight.
#[tokio::test(start_paused = true)]
async fn heartbeats_further_apart_than_the_write_timeout_keep_the_connection() {
    let srv = start_server(fast_server_options(), echo()).await;
    let (conn, mut opts) = fast_client_options("c1", &srv.addr);
    // One-way (as `fast_client_options` sets) every 12 s, over the default 10 s write timeout
    // on both sides: each heartbeat and each reply is written after 12 s with nothing to write.
    opts.session.requested = Some(HeartbeatParams {
        interval_ms: 12_000,
        miss_threshold: 3,
    });
    let c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    tokio::time::sleep(Duration::from_secs(180)).await;

    let r = &srv.recorder;
    // The server first: its end is the one that judged the peer (a client sees only the EOF).
    for node in ["server", "c1"] {
        let ended: Vec<String> = r
            .events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, n, _, e)| match e {
                NetEvent::Disconnected { reason, .. } if n == node => Some(reason.to_string()),
                _ => None,
            })
            .collect();
        assert!(ended.is_empty(), "{node} lost its connection: {ended:?}");
        assert_eq!(
            r.count(node, is_session(|e| matches!(e, Event::Established { .. }))),
            1,
            "{node} connected again"
        );
    }
    assert_eq!(
        r.count("c1", |e| matches!(e, NetEvent::Connecting { .. })),
        1
    );
    // 180 s / 12 s: about 15 heartbeats, each answered, so the client's detector never suspects.
    // (Traffic is reported when a second has passed since the last report: the last heartbeat
    // may not be counted yet.)
    let received = heartbeats_received(r, "server");
    assert!(received >= 14, "the server received {received} heartbeats");
    let replies = r.count("c1", is_session(|e| matches!(e, Event::Rtt { .. })));
    assert!(replies >= 14, "the client received {replies} replies");
    for node in ["c1", "server"] {
        let suspected = r.count(
            node,
            is_session(|e| matches!(e, Event::PeerSuspected { .. })),
        );
        assert_eq!(suspected, 0, "{node} suspected its peer");
    }

    c.stop.send(true).unwrap();
    assert!(c.task.await.unwrap().is_ok());
}
