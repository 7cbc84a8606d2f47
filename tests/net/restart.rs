use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mcpsim::net::NetEvent;
use mcpsim::net::conn::Outgoing;
use mcpsim::proto::ErrorCode;
use mcpsim::proto::session::Event;
use tokio::sync::mpsc;

use crate::support::*;

async fn send_range(
    tx: &mpsc::Sender<Outgoing>,
    sent: &mut Vec<Bytes>,
    range: std::ops::Range<u32>,
) {
    for i in range {
        let payload = Bytes::from(format!("m{i}"));
        sent.push(payload.clone());
        tx.send(Outgoing {
            channel: 1,
            priority: 0,
            payload,
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn clients_back_off_while_the_server_is_down_and_resume_exactly_once() {
    let got = Arc::new(Collect::default());
    let srv = start_server(fast_server_options(), got.clone()).await;
    let (conn, opts) = fast_client_options("c1", &srv.addr);
    let (base, cap) = (
        opts.reconnect.backoff.base_ms,
        opts.reconnect.backoff.cap_ms,
    );
    let c = start_client(conn, opts, srv.recorder.clone(), echo());
    let r = srv.recorder.clone();
    r.established("c1").await;

    // Messages before, during and after the outage.
    let mut sent = Vec::new();
    send_range(&c.send, &mut sent, 0..50).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Stop the server: GOAWAY to the client, then nobody listens for a while.
    srv.stop.send(true).unwrap();
    srv.task.await.unwrap().unwrap();
    let goaway = is_session(|e| {
        matches!(
            e,
            Event::GoAway {
                code: ErrorCode::ShuttingDown,
                ..
            }
        )
    });
    r.wait_for("c1", Duration::from_secs(2), goaway)
        .await
        .expect("goaway");
    send_range(&c.send, &mut sent, 50..100).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (stop2, task2) = restart_server(srv.server.clone(), &srv.addr).await;
    let resumed = is_session(|e| matches!(e, Event::Established { resumed: true, .. }));
    assert!(
        r.wait_for("c1", Duration::from_secs(3), resumed)
            .await
            .is_some(),
        "client resumed"
    );
    send_range(&c.send, &mut sent, 100..150).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every message arrived exactly once, in order.
    let received: Vec<Bytes> = got
        .messages
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(received, sent);

    // The delays: the first honours the GOAWAY's retry-after (200 ms); the rest are full-jitter
    // draws within [0, min(cap, base·2^n)].
    let delays: Vec<Duration> = r
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, n, _, e)| match e {
            NetEvent::ReconnectIn { delay, .. } if n == "c1" => Some(*delay),
            _ => None,
        })
        .collect();
    assert!(delays.len() >= 3, "{delays:?}");
    assert!(delays[0] >= Duration::from_millis(200), "{delays:?}");
    for (n, d) in delays.iter().enumerate().skip(1) {
        let bound = (base << n.min(20)).min(cap);
        assert!(
            *d <= Duration::from_millis(bound),
            "delay {n} = {d:?} over {bound} ms"
        );
    }

    stop2.send(true).unwrap();
    task2.await.unwrap().unwrap();
    c.task.abort();
}
