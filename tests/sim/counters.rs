//! The runner's counters: connection attempts, sessions, traffic and connected time.

use mcpsim::sim::runner::{Fault, Outcome, Reconnects, Traffic, run};

use crate::endpoint_faults::{scenario, secs};

fn end<'a>(out: &'a Outcome, watcher: &str, peer: &str) -> &'a Traffic {
    &out.traffic[&(watcher.to_string(), peer.to_string())]
}

#[test]
fn a_quiet_run_is_one_attempt_and_one_fresh_session_per_client_and_a_heartbeat_a_second() {
    let out = run(&scenario(2, 60.0, vec![]), 1).unwrap();
    let once = Reconnects {
        attempts: 1,
        fresh: 1,
        resumed: 0,
    };
    assert_eq!(out.reconnects["client-0"], once);
    assert_eq!(out.reconnects["client-1"], once);
    // First connections are not reconnections.
    assert!(
        out.connect_attempts.is_empty(),
        "{:?}",
        out.connect_attempts
    );
    for c in ["client-0", "client-1"] {
        let client = end(&out, c, "server");
        let server = end(&out, "server", c);
        // Established at 0.020 (the client) and 0.015 (the server), up to the end of the run.
        assert_eq!(client.connected, secs(59.98));
        assert_eq!(server.connected, secs(59.985));
        // Traffic is reported once a second: the last second of a live connection is not in.
        assert!((58..=60).contains(&client.heartbeats_sent), "{client:?}");
        assert!(
            (58..=60).contains(&server.heartbeats_received),
            "{server:?}"
        );
        assert!(client.bytes_out > 0 && client.bytes_in > 0, "{client:?}");
        assert!(server.bytes_out > 0 && server.bytes_in > 0, "{server:?}");
    }
}

#[test]
fn a_killed_server_costs_each_client_its_attempts_until_the_restart_and_a_fresh_session() {
    let kill = Fault::Kill {
        host: "server".into(),
        downtime: Some(secs(4.0)),
    };
    let out = run(&scenario(2, 45.0, vec![(secs(10.0), kill)]), 1).unwrap();
    for c in ["client-0", "client-1"] {
        let r = out.reconnects[c];
        assert_eq!(
            (r.fresh, r.resumed),
            (2, 0),
            "{c}: {r:?}\n{}",
            out.trace_text()
        );
        // Refused again and again until the breaker opens; one more after its cooldown.
        assert!(r.attempts > 2, "{c}: {r:?}");
    }
    // Every attempt but each client's first is a reconnection.
    let attempts: u64 = out.reconnects.values().map(|r| r.attempts).sum();
    assert_eq!(out.connect_attempts.len() as u64, attempts - 2);
    assert!(out.connect_attempts.is_sorted());
    // The server's end of client-0 was connected from 0.015 until the kill at 10.000, and
    // again from its fresh session at 34.070 to the end: its breaker opened at 10.911 for a
    // cooldown drawn between 15 and 30 s (23.123 s on this seed; client-1 drew 18.658 s, so
    // the two do not come back together).
    assert_eq!(
        end(&out, "server", "client-0").connected,
        secs(10.0 - 0.015) + secs(45.0 - 34.070),
        "{}",
        out.trace_text()
    );
}
