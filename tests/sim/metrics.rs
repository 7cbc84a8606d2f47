//! Metrics over runs of the real drivers.

use std::time::Duration;

use mcpsim::sim::links::NetworkSpec;
use mcpsim::sim::metrics::{Metrics, RunSummary, Watcher, never_connected};
use mcpsim::sim::qos::Judge;
use mcpsim::sim::runner::{Fault, Scenario, run};

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
    // Each client's 40 s from its session (0.020) minus the 10 s crash.
    assert!((clients.exposure_hours - 6.0 * (30.0 - 0.020) / 3600.0).abs() < 1e-12);
    // Declared dead at 12.030, each client closes its connection and tries again; into the
    // crashed machine every attempt times out (5 s), so the server, back at 20.000, sees them
    // at about 22.3 s (one refused resume, then a fresh session): about 2.3 s of the 30 s
    // exposure, all of it spent reconnecting, none of it the detector's.
    let p_a = clients.query_accuracy.unwrap();
    assert!(p_a > 0.9 && p_a < 0.95, "{p_a}");
    assert_eq!(clients.query_accuracy_detector, Some(1.0));
    let reconnecting = clients.reconnecting_share.unwrap();
    assert!(
        (p_a + reconnecting - 1.0).abs() < 1e-9,
        "{p_a} {reconnecting}"
    );
    // A heartbeat a second while connected (the last second of each connection is unreported).
    let hb = clients.overhead.heartbeats_sent_per_sec.unwrap();
    assert!(hb > 0.9 && hb <= 1.0, "{hb}");
    // The server lived through nothing it should detect.
    assert_eq!((m.server.failures, m.server.false_suspicions), (0, 0));
    // The rebooted server has forgotten every session: each client opens one afresh.
    assert_eq!((m.reconnects.renewed, m.reconnects.resumed), (6, 0));
    assert!(m.reconnects.peak_attempts_per_window >= 3);
}

/// `scenario`, both sides heartbeating.
fn two_way(sessions: usize, duration: f64, faults: Vec<(Duration, Fault)>) -> Scenario {
    let mut s = scenario(sessions, duration, faults);
    s.stack.heartbeat.mode = mcpsim::config::Mode::TwoWay;
    s
}

fn metrics_of(s: &Scenario, seed: u64) -> Metrics {
    RunSummary::judged(seed, &run(s, seed).unwrap(), &Judge::default()).metrics(0.95)
}

const MS: f64 = 0.001;

#[test]
fn on_a_constant_5ms_link_every_heartbeat_round_trip_is_10ms_give_or_take_a_timer_tick() {
    let m = metrics_of(&two_way(3, 30.0, vec![]), 1);
    for side in [Watcher::Client, Watcher::Server] {
        let rtt = m.side(side).rtt.expect("two-way: both sides measure");
        // Quantiles are never below the truth, and at most one bucket (0.78%) above it.
        for q in [rtt.p50, rtt.p99, rtt.p999, rtt.max] {
            assert!((10.0 * MS..=11.0 * MS).contains(&q), "{side:?}: {rtt:?}");
        }
        // A heartbeat a second from each of 3 sessions, answered from the first second on.
        assert!((80..=90).contains(&rtt.samples), "{side:?}: {rtt:?}");
        // Heartbeats arrive a second apart: the longest gap is the interval, to the millisecond.
        let gap = m.side(side).longest_gap.unwrap().value;
        assert!((999.0 * MS..=1001.0 * MS).contains(&gap), "{side:?}: {gap}");
    }
}

#[test]
fn in_one_way_mode_the_server_measures_no_round_trip_and_its_gaps_are_the_clients_beats() {
    let m = metrics_of(&scenario(2, 30.0, vec![]), 1);
    let rtt = m.client.rtt.unwrap();
    assert!((10.0 * MS..=11.0 * MS).contains(&rtt.max), "{rtt:?}");
    assert_eq!(m.server.rtt, None);
    let gap = m.server.longest_gap.unwrap().value;
    assert!((999.0 * MS..=1001.0 * MS).contains(&gap), "{gap}");
}

#[test]
fn a_partition_of_2_5s_is_a_heartbeat_gap_at_least_as_long_on_both_sides() {
    let cut = Fault::Partition {
        from: "server".into(),
        to: "clients".into(),
        duration: secs(2.5),
        oneway: false,
    };
    let mut s = two_way(2, 30.0, vec![(secs(10.3), cut)]);
    // k·η = 6 s: the detectors ride the cut out, so the gap is seen on a connection that lives.
    s.stack.heartbeat.miss_threshold = 6;
    let m = metrics_of(&s, 1);
    for side in [Watcher::Client, Watcher::Server] {
        let gap = m.side(side).longest_gap.unwrap();
        // The last heartbeat before the cut arrived before it began; the first after it, at a
        // retransmission after the heal; the connection lived through it (no reconnect).
        assert!(gap.value >= 2.5 && gap.value < 5.0, "{side:?}: {gap:?}");
        assert_eq!(gap.seed, 1);
    }
    assert_eq!(m.reconnects.reconnects, 0);
}

#[test]
fn the_silence_around_a_reconnect_is_not_a_heartbeat_gap() {
    // The killed server's FIN ends every connection at once; the clients come back only after
    // its restart and their backoff. Silence for seconds, and no gap longer than a beat.
    let kill = Fault::Kill {
        host: "server".into(),
        downtime: Some(secs(4.0)),
    };
    let m = metrics_of(&scenario(2, 45.0, vec![(secs(10.0), kill)]), 1);
    assert!(m.reconnects.reconnects > 0);
    for side in [Watcher::Client, Watcher::Server] {
        let gap = m.side(side).longest_gap.unwrap().value;
        assert!(gap <= 1001.0 * MS, "{side:?}: {gap}");
    }
}

#[test]
fn a_run_whose_clients_never_connect_names_both_sides_as_never_connected() {
    // Every SYN is 1000 h on its way: no session, so nothing to judge (no exposure, no P_A),
    // which `mcpsim run` refuses as an error rather than report as a perfect score.
    let mut s = scenario(2, 20.0, vec![]);
    s.network = NetworkSpec::constant(secs(3_600_000.0));
    let out = run(&s, 1).unwrap();
    assert_eq!(
        never_connected(&out),
        vec![Watcher::Client, Watcher::Server]
    );
    let m = RunSummary::judged(1, &out, &Judge::default()).metrics(0.95);
    assert_eq!(
        (m.client.query_accuracy, m.client.false_suspicions),
        (None, 0)
    );
    // A run that connected has no such side.
    let ok = run(&scenario(2, 20.0, vec![]), 1).unwrap();
    assert!(never_connected(&ok).is_empty());
}

#[test]
fn after_a_server_kill_p_a_loses_to_reconnecting_not_to_the_detector() {
    let kill = Fault::Kill {
        host: "server".into(),
        downtime: Some(secs(4.0)),
    };
    let m = metrics_of(&scenario(2, 60.0, vec![(secs(10.0), kill)]), 1);
    let c = &m.client;
    let (p_a, det, rec) = (
        c.query_accuracy.unwrap(),
        c.query_accuracy_detector.unwrap(),
        c.reconnecting_share.unwrap(),
    );
    assert!(p_a < 1.0 && rec > 0.0, "{c:?}");
    assert_eq!(det, 1.0);
    assert!((p_a - (det - rec)).abs() < 1e-12);
}
