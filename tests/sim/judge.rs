//! The QoS judge on real runs.

use std::time::Duration;

use mcpsim::sim::qos::Judge;
use mcpsim::sim::runner::{Fault, run};

use crate::endpoint_faults::{every_second, scenario, secs, slow_server};

#[test]
fn a_server_crash_is_one_failure_per_client_detected_k_intervals_after_the_last_reply() {
    let crash = Fault::Crash {
        host: "server".into(),
        downtime: Some(secs(10.0)),
    };
    let out = run(&scenario(3, 40.0, vec![(secs(10.0), crash)]), 1).unwrap();
    let pairs = Judge::default().judge(&out);
    let to_server: Vec<_> = pairs.iter().filter(|p| p.peer == "server").collect();
    assert_eq!(to_server.len(), 3);
    for p in to_server {
        assert_eq!(p.failures, 1, "{p:?}");
        // Last reply 9.030, k·η = 3 s: suspected at 12.030, 2.030 s into the failure.
        assert_eq!(p.detections, vec![Duration::from_millis(2030)], "{p:?}");
        assert_eq!(
            (p.missed, p.false_suspicions),
            (0, 0),
            "{p:?}\n{}",
            out.trace_text()
        );
        // 40 s from its session (established at 0.020) minus the 10 s failure.
        assert_eq!(p.exposure, secs(30.0 - 0.020));
    }
}

#[test]
fn a_slow_live_server_yields_false_suspicions_and_no_failures() {
    let slow = slow_server(4.0, 10.0);
    let s = every_second(3, 2, 40.0, vec![(secs(10.5), slow)]);
    let out = run(&s, 1).unwrap();
    for p in Judge::default()
        .judge(&out)
        .iter()
        .filter(|p| p.peer == "server")
    {
        assert_eq!(p.failures, 0);
        assert_eq!(p.false_suspicions, 2, "{p:?}\n{}", out.trace_text());
        // Suspected, declared dead and disconnected at 13.030, k·η after the last reply; the new
        // connection's handshake crawls through the 4 s path (the session resumes at 21.08).
        // The server's detector ran out on that new connection at 20.08, before its WELCOME
        // had even reached the client, and closed it; the client learns it from the RST its
        // next heartbeat draws (23.1): a second, short suspicion until the next resume.
        let expected = match p.watcher.as_str() {
            "client-0" => [8051, 47],
            _ => [8048, 61],
        };
        assert_eq!(
            p.mistake_durations,
            expected.map(Duration::from_millis),
            "{}: {}",
            p.watcher,
            out.trace_text()
        );
        // From the session (0.020) to the end: no failure to take out.
        assert_eq!(p.exposure, secs(40.0 - 0.020));
    }
}

#[test]
fn a_killed_server_is_suspected_when_its_fin_arrives_and_trusted_when_a_session_is_back() {
    let kill = Fault::Kill {
        host: "server".into(),
        downtime: Some(secs(4.0)),
    };
    let out = run(&scenario(2, 60.0, vec![(secs(10.0), kill)]), 1).unwrap();
    for p in Judge::default()
        .judge(&out)
        .iter()
        .filter(|p| p.peer == "server")
    {
        // The FIN takes the one-way delay (5 ms), and the client reads it as it arrives.
        assert_eq!(p.failures, 1, "{p:?}");
        assert_eq!(p.detections, vec![Duration::from_millis(5)], "{p:?}");
        assert_eq!((p.missed, p.false_suspicions), (0, 0), "{p:?}");
    }
    for t in out.transitions.iter().filter(|t| t.peer == "server") {
        // Suspected at the FIN, trusted once the restarted server has given it a new session.
        assert!(
            t.suspect == (t.at < secs(14.0)),
            "{t:?}\n{}",
            out.trace_text()
        );
    }
}

#[test]
fn a_server_that_loses_a_client_and_gets_it_back_trusts_it_again() {
    // A partition longer than the server's detection: it suspects the client, the connection
    // dies of its user timeout, and the client comes back with a session of its own.
    let cut = Fault::Partition {
        from: "clients".into(),
        to: "server".into(),
        duration: secs(20.0),
        oneway: false,
    };
    let mut s = scenario(1, 90.0, vec![(secs(10.0), cut)]);
    s.network.tcp.user_timeout = Some(secs(5.0));
    let out = run(&s, 1).unwrap();
    let server: Vec<_> = out
        .transitions
        .iter()
        .filter(|t| t.watcher == "server")
        .collect();
    assert!(
        server.first().is_some_and(|t| t.suspect),
        "{}",
        out.trace_text()
    );
    assert!(
        server
            .last()
            .is_some_and(|t| !t.suspect && t.at > secs(30.0)),
        "the server still suspects a client that is back: {server:?}\n{}",
        out.trace_text()
    );
}

#[test]
fn a_server_crash_too_close_to_the_end_to_be_detected_is_censored_not_missed() {
    // Crashed at 18.5 s of 20: the clients' last reply came at 18.030, so k·η = 3 s would
    // suspect at 21.030, after the end. Within a decision window of (k + 1)·η = 4 s the run
    // could not decide: censored. Without one, missed.
    let crash = Fault::Crash {
        host: "server".into(),
        downtime: None,
    };
    let out = run(&scenario(2, 20.0, vec![(secs(18.5), crash)]), 1).unwrap();
    let windowed = Judge {
        decision_window: secs(4.0),
        ..Judge::default()
    };
    for p in windowed.judge(&out).iter().filter(|p| p.peer == "server") {
        assert_eq!(
            (p.failures, p.missed, p.censored_failures),
            (1, 0, 1),
            "{p:?}"
        );
        assert!(p.detections.is_empty(), "{p:?}");
    }
    for p in Judge::default()
        .judge(&out)
        .iter()
        .filter(|p| p.peer == "server")
    {
        assert_eq!((p.missed, p.censored_failures), (1, 0), "{p:?}");
    }
}

#[test]
fn a_slow_live_servers_false_suspicions_are_all_the_detectors_doing() {
    // The connections live through the latency episode: every suspected instant is one with a
    // connection, so none of it is reconnecting.
    let slow = slow_server(4.0, 10.0);
    let mut s = scenario(2, 40.0, vec![(secs(10.5), slow)]);
    // A suspicion must last 10 s before the peer is dead and its connection closed (the default
    // closes it at once), so the connection outlives every suspicion.
    s.stack.health.dead_after = mcpsim::units::Dur(secs(10.0));
    let out = run(&s, 1).unwrap();
    for p in Judge::default()
        .judge(&out)
        .iter()
        .filter(|p| p.peer == "server")
    {
        assert!(p.false_suspicions > 0, "{p:?}");
        assert!(p.suspected > Duration::ZERO, "{p:?}");
        assert_eq!(p.suspected_mistaken, p.suspected, "{p:?}");
        assert_eq!(p.mistake_connected, p.mistake_durations, "{p:?}");
    }
}

#[test]
fn the_suspicion_outlasting_a_killed_server_is_time_spent_reconnecting() {
    // Killed at 10 s, back at 14 s: the clients lost their connections at its FIN and suspect
    // it until a new session is established, after the failure; none of that suspected time had
    // a connection.
    let kill = Fault::Kill {
        host: "server".into(),
        downtime: Some(secs(4.0)),
    };
    let out = run(&scenario(2, 60.0, vec![(secs(10.0), kill)]), 1).unwrap();
    for p in Judge::default()
        .judge(&out)
        .iter()
        .filter(|p| p.peer == "server")
    {
        assert!(p.suspected > Duration::ZERO, "{p:?}\n{}", out.trace_text());
        assert_eq!(p.suspected_mistaken, Duration::ZERO, "{p:?}");
        let periods = &out.connected[&(p.watcher.clone(), "server".to_string())];
        assert_eq!(periods.len(), 2, "{periods:?}");
        assert!(periods[0].end >= secs(10.0) && periods[0].end < secs(10.1));
        assert!(periods[1].start >= secs(14.0) && periods[1].end == secs(60.0));
    }
}
