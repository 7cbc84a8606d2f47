//! Heartbeat intervals longer than the drivers' write timeout: a quiet connection is not a
//! stalled one.

use std::time::Duration;

use mcpsim::sim::runner::{Reconnects, run};

use crate::endpoint_faults::{scenario, secs};

#[test]
fn heartbeats_further_apart_than_the_write_timeout_keep_the_connection() {
    // One-way heartbeats every 12 s, over the drivers' 10 s write timeout: each heartbeat and
    // each reply is written after 12 s with nothing to write. Only a write buffer that stays
    // non-empty for 10 s means the peer stopped reading; these are drained at once. k = 3 keeps
    // the detector quiet on a clean link.
    let mut s = scenario(2, 180.0, vec![]);
    s.stack.heartbeat.interval = mcpsim::units::Dur(Duration::from_millis(12_000));
    s.stack.heartbeat.miss_threshold = 3;
    let out = run(&s, 1).unwrap();
    // Neither a dropped connection ("ended: peer stopped reading" on the server, "ended: peer
    // closed the stream" on the client) nor a suspicion: the replies kept coming too, since a
    // one-way client's detector lives on them.
    let trouble: Vec<_> = out
        .trace
        .iter()
        .filter(|l| l.text.contains("ended") || l.text.contains("suspect"))
        .collect();
    assert!(trouble.is_empty(), "{}", out.trace_text());
    let once = Reconnects {
        attempts: 1,
        fresh: 1,
        resumed: 0,
    };
    for c in ["client-0", "client-1"] {
        assert_eq!(out.reconnects[c], once, "{c}");
        let client = &out.traffic[&(c.to_string(), "server".to_string())];
        let server = &out.traffic[&("server".to_string(), c.to_string())];
        // Established at 0.020 (the client) and 0.015 (the server), up to the end of the run.
        assert_eq!(client.connected, secs(179.98), "{client:?}");
        assert_eq!(server.connected, secs(179.985), "{server:?}");
        // Heartbeats at 12.020, 24.020 … 168.020: 14. Traffic is reported at most once a
        // second, so the client's last one may not be counted yet.
        assert!((13..=14).contains(&client.heartbeats_sent), "{client:?}");
        assert!(
            (13..=14).contains(&server.heartbeats_received),
            "{server:?}"
        );
    }
}
