use std::time::Duration;

use mcpsim::config::{Mode, StackConfig};
use mcpsim::sim::links::NetworkSpec;
use mcpsim::sim::runner::{Fault, Outcome, Scenario, run};

pub fn scenario(sessions: usize, duration: f64, faults: Vec<(Duration, Fault)>) -> Scenario {
    Scenario {
        duration: secs(duration),
        tick: Duration::from_millis(1),
        sessions,
        client_hosts: 1,
        connect_ramp: Duration::ZERO,
        stack: one_way(),
        network: NetworkSpec::constant(Duration::from_millis(5)),
        faults,
        random_faults: Vec::new(),
        traffic: Default::default(),
        load: None,
        sabotage: None,
    }
}

/// [`scenario`] with heartbeats every second and suspicion after `k` misses.
pub fn every_second(
    k: u8,
    sessions: usize,
    duration: f64,
    faults: Vec<(Duration, Fault)>,
) -> Scenario {
    let mut s = scenario(sessions, duration, faults);
    s.stack.heartbeat.interval = mcpsim::units::Dur(Duration::from_secs(1));
    s.stack.heartbeat.miss_threshold = k;
    s
}

/// The server alive but slow: everything it sends to the clients takes `delay` seconds, for
/// `duration` seconds.
pub fn slow_server(delay: f64, duration: f64) -> Fault {
    Fault::Slow {
        from: "server".into(),
        to: "clients".into(),
        latency: mcpsim::sim::fault::Latency::constant(secs(delay)),
        duration: secs(duration),
        oneway: true,
    }
}

/// Messages both ways on sessions `0..sessions`, `pace`, of 16 to `max` bytes over two
/// channels, stopping `drain` before the end.
pub fn both_ways(
    sessions: usize,
    pace: mcpsim::sim::traffic::Pace,
    max: usize,
    drain: Duration,
) -> mcpsim::sim::traffic::Workload {
    use mcpsim::sim::traffic::{Direction, Flow, Workload};
    Workload {
        flows: vec![Flow {
            sessions: 0..sessions,
            direction: Direction::Both,
            pace,
            size: (16, max),
            channel: 0,
            channels: 2,
            priority: 0,
            burst: None,
            start: Duration::ZERO,
            stop: None,
        }],
        drain,
    }
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn lines<'a>(out: &'a Outcome, node: &str, text: &str) -> Vec<&'a mcpsim::sim::runner::TraceLine> {
    out.trace
        .iter()
        .filter(|l| l.node == node && l.text.contains(text))
        .collect()
}

#[test]
fn a_crashed_server_is_silence_and_clients_suspect_it_k_intervals_after_the_last_reply() {
    let crash = Fault::Crash {
        host: "server".into(),
        downtime: None,
    };
    let out = run(&scenario(3, 20.0, vec![(secs(10.0), crash)]), 1).unwrap();
    // Connected at 0.020 s; heartbeats leave at 1.020, 2.020 … and are answered 10 ms later.
    // The last reply before the crash arrives at 9.030; k·η later the client suspects.
    for c in ["client-0", "client-1", "client-2"] {
        let s = lines(&out, c, "suspect server");
        assert_eq!(s.len(), 1, "{}", out.trace_text());
        assert_eq!(s[0].at, secs(12.030), "{c}");
        // Silence: no end of stream, no reset, only the detector notices.
        assert!(lines(&out, c, "ended: peer closed").is_empty());
        assert!(lines(&out, c, "connection reset").is_empty());
    }
}

#[test]
fn a_killed_server_closes_its_connections_and_refuses_new_ones_until_restarted() {
    let kill = Fault::Kill {
        host: "server".into(),
        downtime: Some(secs(4.0)),
    };
    // Long enough for the circuit breaker (open after 5 refusals, 30 s cooldown) to let the
    // clients try again.
    let out = run(&scenario(2, 45.0, vec![(secs(10.0), kill)]), 1).unwrap();
    for c in ["client-0", "client-1"] {
        // FIN from the dead process's kernel reaches the client one link delay later.
        let ended = lines(&out, c, "ended: peer closed the stream");
        // (Timers fire on the 1 ms tick grid, so one tick of rounding is allowed.)
        let at = ended.first().map(|l| l.at).unwrap();
        assert!(
            at >= secs(10.005) && at <= secs(10.006),
            "{}",
            out.trace_text()
        );
        assert!(
            lines(&out, c, "suspect server").is_empty(),
            "EOF, not the detector"
        );
        assert!(!lines(&out, c, "connect failed: connection refused").is_empty());
        // After the restart the server has no memory of the session: a new one starts.
        assert!(lines(&out, c, "resumed").is_empty());
        let connected = lines(&out, c, "connected");
        assert!(
            connected.len() >= 2 && connected.last().unwrap().at > secs(14.0),
            "{}",
            out.trace_text()
        );
    }
    assert_eq!(out.down[0].start, secs(10.0));
    assert_eq!(out.down[0].end, Some(secs(14.0)));
}

#[test]
fn a_paused_server_is_declared_dead_at_k_intervals_and_its_session_resumes_when_it_wakes() {
    let pause = Fault::Pause {
        host: "server".into(),
        duration: secs(5.0),
    };
    let out = run(&scenario(1, 20.0, vec![(secs(10.0), pause)]), 1).unwrap();
    // The last reply came at 9.030: suspected k·η later, and dead at that same instant
    // (protocol §11.6): the client closes the connection and keeps the session.
    for what in [
        "suspect server",
        "dead server",
        "closed by us: heartbeat_timeout",
    ] {
        let l = lines(&out, "client-0", what);
        assert_eq!(l.len(), 1, "{what}\n{}", out.trace_text());
        assert_eq!(l[0].at, secs(12.030), "{what}\n{}", out.trace_text());
    }
    // The new connection's handshake waits in the paused server's kernel; the server answers
    // it when it wakes, and the session resumes.
    let resumed = lines(&out, "client-0", "resumed with server");
    assert_eq!(resumed.len(), 1, "{}", out.trace_text());
    assert_eq!(resumed[0].at, secs(15.005), "{}", out.trace_text());
    // For the judge that is one suspicion, held through the pause, ended by the resume.
    let t: Vec<_> = out
        .transitions
        .iter()
        .filter(|t| t.watcher == "client-0")
        .map(|t| (t.at, t.suspect))
        .collect();
    assert_eq!(t, [(secs(12.030), true), (secs(15.005), false)]);
    // A stopped process decides nothing: the paused server's own detector stays quiet until it
    // resumes (its timers wait for the resume, as a SIGSTOPped process's would).
    assert!(
        out.trace
            .iter()
            .all(|l| !(l.node == "server" && l.text.contains("suspect") && l.at < secs(15.0))),
        "{}",
        out.trace_text()
    );
}

#[test]
fn a_rebooted_server_answers_the_old_connection_with_a_reset() {
    let crash = Fault::Crash {
        host: "server".into(),
        downtime: Some(secs(1.5)),
    };
    let out = run(&scenario(1, 20.0, vec![(secs(10.0), crash)]), 1).unwrap();
    // The machine is back at 11.5 before the client's detector fires (12.030). The client's
    // heartbeat of 10.020 went unacknowledged into the crash and is being resent (~0.2, 0.4,
    // 0.8, 1.6 s after it, plus timer lateness): the first resend after 11.5 is answered with
    // RST, before the next heartbeat (12.020) is even sent.
    let reset = lines(&out, "client-0", "connection reset");
    assert_eq!(reset.len(), 1, "{}", out.trace_text());
    assert!(
        reset[0].at > secs(11.5) && reset[0].at < secs(10.020 + 1.632 + 0.1 + 0.1),
        "{}",
        out.trace_text()
    );
    assert!(lines(&out, "client-0", "suspect server").is_empty());
}

#[test]
fn random_crashes_strike_at_their_rate_and_every_one_is_in_the_ground_truth() {
    use mcpsim::sim::fault::{Latency, RandomOutages};
    use mcpsim::sim::runner::{RandomFault, RandomKind};
    let mut s = scenario(2, 600.0, vec![]);
    s.random_faults = vec![RandomFault {
        host: "server".into(),
        kind: RandomKind::Crash,
        process: RandomOutages {
            rate_per_hour: 60.0,
            duration: Latency::constant(secs(10.0)),
        },
    }];
    let out = run(&s, 3).unwrap();
    let crashes: Vec<_> = out.down.iter().filter(|d| d.kind == "crashed").collect();
    // Poisson with mean 10 over ten minutes (fewer if two overlap and merge).
    assert!(
        (2..=22).contains(&crashes.len()),
        "{} crashes",
        crashes.len()
    );
    for d in &crashes {
        let lasted = d.end.map(|e| e - d.start).unwrap();
        assert!(lasted >= secs(10.0), "{d:?}");
    }
    // Each crash is noticed by both clients, through silence (k·η = 3 s < 20 s of downtime).
    for c in ["client-0", "client-1"] {
        let suspicions = out
            .transitions
            .iter()
            .filter(|t| t.watcher == c && t.suspect)
            .count();
        assert_eq!(suspicions, crashes.len(), "{c}\n{}", out.trace_text());
    }
}

#[test]
fn sessions_spread_over_client_hosts_and_a_host_crash_takes_only_its_own() {
    let crash = Fault::Crash {
        host: "clients-1".into(),
        downtime: None,
    };
    let mut s = scenario(4, 20.0, vec![(secs(10.0), crash)]);
    s.client_hosts = 2;
    let out = run(&s, 1).unwrap();
    let suspected: Vec<_> = out
        .transitions
        .iter()
        .filter(|t| t.watcher == "server" && t.suspect)
        .map(|t| t.peer.as_str())
        .collect();
    // Round robin: clients-1 ran client-1 and client-3.
    assert_eq!(suspected.len(), 2, "{}", out.trace_text());
    assert!(
        suspected.contains(&"client-1") && suspected.contains(&"client-3"),
        "{suspected:?}"
    );
}

#[test]
fn a_server_resuming_from_a_pause_reads_waiting_heartbeats_before_judging_its_clients() {
    // Its clients kept sending; their heartbeats wait in the server's socket. On waking, its
    // detectors' deadlines are all overdue: it must read before blaming the clients.
    let pause = Fault::Pause {
        host: "server".into(),
        duration: secs(5.0),
    };
    let out = run(&scenario(3, 20.0, vec![(secs(10.0), pause)]), 1).unwrap();
    assert!(
        lines(&out, "server", "suspect").is_empty(),
        "{}",
        out.trace_text()
    );
    // The clients, who really heard nothing for 5 s, did suspect the server.
    assert_eq!(lines(&out, "client-0", "suspect server").len(), 1);
}

#[test]
fn two_overlapping_pauses_keep_the_host_paused_until_the_later_one_ends() {
    let pause = |d: f64| Fault::Pause {
        host: "server".into(),
        duration: secs(d),
    };
    let out = run(
        &scenario(
            1,
            30.0,
            vec![(secs(5.0), pause(4.0)), (secs(8.0), pause(3.0))],
        ),
        1,
    )
    .unwrap();
    let paused: Vec<_> = out.down.iter().filter(|d| d.kind == "paused").collect();
    assert_eq!(paused.len(), 1, "{:?}", out.down);
    assert_eq!(
        (paused[0].start, paused[0].end),
        (secs(5.0), Some(secs(11.0)))
    );
    assert_eq!(lines(&out, "server", "fault merged").len(), 1);
    assert_eq!(
        lines(&out, "server", "fault ends: resumed")[0].at,
        secs(11.0)
    );
}

#[test]
fn a_server_that_dies_with_connections_it_has_not_accepted_closes_them() {
    use mcpsim::net::Connector;
    use mcpsim::sim::links::{FaultLinks, NetworkSpec};
    use mcpsim::sim::net::SimNet;

    // Run in a thread of its own: the bug this guards against was a deadlock.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let links = FaultLinks::new(NetworkSpec::constant(secs(0.005)), 1, secs(60.0)).unwrap();
        let net = SimNet::new(Box::new(links));
        net.add_host("server");
        net.add_host("clients");
        let mut sim = turmoil::Builder::new()
            .tick_duration(secs(0.001))
            .simulation_duration(secs(60.0))
            .build();
        let server_net = net.clone();
        sim.host("server", move || {
            let net = server_net.clone();
            async move {
                // Listens and never accepts: the connection waits in the backlog.
                let _listener = net.listen("server", 7800)?;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let connector = net.connector("clients", "client-0", "server", 7800);
        sim.host("clients", move || {
            let connector = connector.clone();
            async move {
                let _stream = connector.connect().await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        while sim.elapsed() < secs(1.0) {
            net.set_time(sim.elapsed());
            sim.step().unwrap();
        }
        net.set_host_state("server", mcpsim::sim::net::HostState::Killed);
        sim.crash("server");
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("killing a server with an unaccepted connection deadlocked");
}

/// The default stack with one-way heartbeats (1 s, k = 3, k-miss).
pub fn one_way() -> StackConfig {
    let mut s = StackConfig::default();
    s.heartbeat.mode = Mode::OneWay;
    s
}
