//! Same scenario and seed, same trace, byte for byte: within a process here, and across
//! processes through the committed snapshot.

use mcpsim::sim::runner::{Fault, RunOptions, TraceLevel, TraceLine, run, run_watched, run_with};

use crate::endpoint_faults::{scenario, secs};

fn eventful() -> mcpsim::sim::runner::Scenario {
    scenario(
        4,
        40.0,
        vec![
            (
                secs(5.0),
                Fault::Pause {
                    host: "clients".into(),
                    duration: secs(4.0),
                },
            ),
            (
                secs(12.5),
                Fault::Crash {
                    host: "server".into(),
                    downtime: Some(secs(2.0)),
                },
            ),
            (
                secs(25.0),
                Fault::Kill {
                    host: "server".into(),
                    downtime: Some(secs(1.0)),
                },
            ),
        ],
    )
}

#[test]
fn the_same_seed_gives_a_byte_identical_trace() {
    let a = run(&eventful(), 42).unwrap().trace_text();
    let b = run(&eventful(), 42).unwrap().trace_text();
    assert_eq!(a, b);
    assert!(a.lines().count() > 20, "an eventful run: {a}");
}

#[test]
fn another_seed_draws_other_jitter() {
    let a = run(&eventful(), 42).unwrap().trace_text();
    let c = run(&eventful(), 43).unwrap().trace_text();
    assert_ne!(a, c);
}

#[test]
fn eventful_trace_snapshot() {
    insta::assert_snapshot!(run(&eventful(), 42).unwrap().trace_text());
}

/// The eventful run on a jittery, lossy link (sub-millisecond arrivals, retransmissions).
fn eventful_on_a_rough_link() -> mcpsim::sim::runner::Scenario {
    let mut s = eventful();
    s.network.default.latency = mcpsim::sim::fault::Latency::Lognormal {
        min_ms: 2.0,
        median_ms: 3.5,
        sigma: 0.8,
    };
    s.network.default.loss = mcpsim::sim::fault::Loss::Independent { p: 0.05 };
    s
}

#[test]
fn the_tick_changes_the_cost_of_a_run_and_nothing_in_its_trace() {
    // Timers, deliveries and faults all happen at their own millisecond in the hosts' shared
    // runtime; the tick is only how often turmoil hands control back to the runner.
    for scenario in [eventful, eventful_on_a_rough_link] {
        let at = |tick_ms: u64| {
            let s = mcpsim::sim::runner::Scenario {
                tick: std::time::Duration::from_millis(tick_ms),
                ..scenario()
            };
            run(&s, 42).unwrap().trace_text()
        };
        let fine = at(1);
        assert!(fine.lines().count() > 20, "an eventful run: {fine}");
        assert_eq!(fine, at(8));
        assert_eq!(fine, at(100));
    }
}

#[test]
fn a_duration_that_is_not_a_whole_number_of_ticks_is_refused() {
    let s = mcpsim::sim::runner::Scenario {
        tick: std::time::Duration::from_millis(7),
        ..eventful()
    };
    let e = run(&s, 42).unwrap_err().to_string();
    assert!(e.contains("whole number of ticks"), "{e}");
}

#[test]
fn the_segments_level_adds_a_line_per_heartbeat_received_and_changes_nothing_else() {
    let segments = RunOptions {
        trace: TraceLevel::Segments,
    };
    let default = run(&eventful(), 42).unwrap();
    let detailed = run_with(&eventful(), 42, segments).unwrap();
    let receipt = |l: &&TraceLine| l.text.starts_with("heartbeat ");
    let kernel = |l: &&TraceLine| l.text.starts_with("tcp: ");
    assert!(!default.trace.iter().any(|l| receipt(&l) || kernel(&l)));
    let others: Vec<TraceLine> = detailed
        .trace
        .iter()
        .filter(|l| !receipt(l) && !kernel(l))
        .cloned()
        .collect();
    assert_eq!(others, default.trace);
    assert_eq!(detailed.client_heartbeats, default.client_heartbeats);
    assert_eq!(detailed.server_heartbeats, default.server_heartbeats);

    // One-way: the clients receive replies (each with its round trip), the server heartbeats.
    let lines: Vec<&TraceLine> = detailed.trace.iter().filter(receipt).collect();
    let replies = lines.iter().filter(|l| l.text.contains(", rtt ")).count() as u64;
    assert_eq!(replies, detailed.client_heartbeats.rtt.count());
    assert!(
        lines
            .iter()
            .all(|l| (l.node == "server") != l.text.contains(", rtt "))
    );
    // Connected at 0.020 s, the first heartbeat leaves at 1.020 s; its reply is back 10 ms later.
    let first = lines.iter().find(|l| l.node == "client-0").unwrap();
    assert_eq!(first.at, secs(1.030));
    assert!(
        first
            .text
            .starts_with("heartbeat reply 1 from server, rtt 10.000ms  (session ")
            && first.text.ends_with(", connection 1)"),
        "{}",
        first.text
    );
    let beat = lines.iter().find(|l| l.node == "server").unwrap();
    assert_eq!(beat.at, secs(1.025));
    assert!(
        beat.text.starts_with("heartbeat 1 from client-"),
        "{}",
        beat.text
    );

    // The machine crash at 12.5 s leaves each client's next heartbeat unacknowledged: its
    // kernel probes it about an RTO later, then resends it on the backed-off RTO until the
    // rebooted server (14.5 s) answers with RST.
    for c in 0..4 {
        let node = format!("client-{c}");
        let mine: Vec<&TraceLine> = detailed
            .trace
            .iter()
            .filter(|l| l.node == node && kernel(l))
            .collect();
        let probe = mine
            .iter()
            .find(|l| l.text.contains("tail loss probe"))
            .unwrap_or_else(|| panic!("{node}: no probe in {mine:?}"));
        assert!(probe.at > secs(12.5) && probe.at < secs(14.5), "{probe:?}");
        assert!(
            mine.iter()
                .any(|l| l.text.contains("retransmission timeout") && l.at > probe.at),
            "{mine:?}"
        );
    }
}

#[test]
fn a_watched_run_reports_its_simulated_time_as_it_goes_and_changes_nothing() {
    let steps = std::sync::Mutex::new(Vec::new());
    let watched = run_watched(&eventful(), 42, RunOptions::default(), &|d| {
        steps.lock().unwrap().push(d)
    })
    .unwrap();
    let steps = steps.into_inner().unwrap();
    // 40 simulated seconds, reported at least once a simulated second rather than at the end.
    assert!(steps.len() >= 40, "{} reports", steps.len());
    assert_eq!(steps.iter().sum::<std::time::Duration>(), secs(40.0));
    assert_eq!(watched.trace, run(&eventful(), 42).unwrap().trace);
}

/// A saturated server that throttles, with application traffic: every connection applies the
/// server's throttle as it changes, and the order they are woken in is the order the CPU serves
/// them. That order once came from tokio's randomly seeded watch channel, and two runs of one
/// seed parted within seconds of the burst.
#[test]
fn a_saturated_throttling_server_gives_a_byte_identical_trace() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/overloaded-server-throttled.toml");
    let plan = mcpsim::scenario::load(&path).unwrap();
    let s = mcpsim::sim::runner::Scenario {
        // The burst starts at 60 s and the server throttles from about 64 s; traffic stops
        // 10 s before the end, to drain.
        duration: secs(80.0),
        ..plan.scenario(0)
    };
    let segments = RunOptions {
        trace: TraceLevel::Segments,
    };
    let a = run_with(&s, 2, segments).unwrap();
    let b = run_with(&s, 2, segments).unwrap();
    assert!(
        a.trace
            .iter()
            .any(|l| l.text.starts_with("throttling at cpu")),
        "the server throttles within the run"
    );
    assert_eq!(a.trace_text(), b.trace_text());
}
