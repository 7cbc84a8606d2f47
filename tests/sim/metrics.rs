//! Metrics over runs of the real drivers.

use mcpsim::sim::metrics::{RunSummary, Watcher};
use mcpsim::sim::qos::Judge;
use mcpsim::sim::runner::{Fault, run};

use crate::endpoint_faults::{scenario, secs};

#[test]
fn over_two_seeds_a_server_crash_is_one_detection_per_client_k_intervals_after_the_last_reply() {
    let crash = Fault::Crash {
        host: "server".into(),
        downtime: Some(secs(10.0)),
    };
    let s = scenario(3, 40.0, vec![(secs(10.0), crash)]);
    let all: RunSummary = [1, 2]
        .into_iter()
        .map(|seed| RunSummary::judged(seed, &run(&s, seed).unwrap(), &Judge::default()))
        .collect();
    let m = all.metrics(0.95);
    let clients = m.side(Watcher::Client);
    assert_eq!(m.runs, 2);
    assert_eq!(
        (clients.failures, clients.detected, clients.missed),
        (6, 6, 0)
    );
    // Last reply 9.030, k·η = 3 s: suspected at 12.030, 2.030 s into the failure, every time.
    let d = clients.detection;
    assert_eq!((d.p50, d.p99, d.max), (Some(2.03), Some(2.03), Some(2.03)));
    assert_eq!(clients.worst_detection.map(|w| w.seed), Some(1));
    assert_eq!(clients.false_suspicions, 0);
    assert_eq!(clients.exposure_hours, 6.0 * 30.0 / 3600.0);
    // The server is back at 20.000, trusted again once a new session is established (~20.16 s,
    // after one refused resume): about 0.16 s of the 30 s exposure.
    let p_a = clients.query_accuracy.unwrap();
    assert!(p_a > 0.99 && p_a < 0.999, "{p_a}");
    // A heartbeat a second while connected (the last second of each connection is unreported).
    let hb = clients.overhead.heartbeats_sent_per_sec.unwrap();
    assert!(hb > 0.9 && hb <= 1.0, "{hb}");
    // The server lived through nothing it should detect.
    assert_eq!((m.server.failures, m.server.false_suspicions), (0, 0));
    // The rebooted server has forgotten every session: each client opens one afresh.
    assert_eq!((m.reconnects.renewed, m.reconnects.resumed), (6, 0));
    assert!(m.reconnects.peak_attempts_per_window >= 3);
}
