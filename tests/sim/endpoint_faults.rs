use std::time::Duration;

use mcpsim::proto::detector::DetectorConfig;
use mcpsim::proto::frame::{HeartbeatMode, HeartbeatParams};
use mcpsim::sim::net::Ideal;
use mcpsim::sim::runner::{Fault, Scenario, run};

fn scenario(sessions: usize, faults: Vec<(Duration, Fault)>) -> Scenario {
    Scenario {
        duration: Duration::from_secs(30),
        tick: Duration::from_millis(1),
        sessions,
        heartbeat: HeartbeatParams {
            interval_ms: 1000,
            miss_threshold: 3,
        },
        mode: HeartbeatMode::OneWay,
        detector: DetectorConfig::default(),
        links: Box::new(|_| Box::new(Ideal(Duration::from_millis(5)))),
        faults,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn a_crashed_server_is_suspected_by_every_client_after_k_intervals() {
    let crash = Fault::Crash {
        host: "server".into(),
        downtime: None,
    };
    let out = run(&scenario(3, vec![(secs(10.0), crash)]), 1).unwrap();
    println!("{}", out.trace_text());
    let suspects: Vec<_> = out
        .transitions
        .iter()
        .filter(|t| t.suspect && t.peer == "server")
        .collect();
    assert_eq!(suspects.len(), 3, "{}", out.trace_text());
    for s in suspects {
        let d = s.at - secs(10.0);
        assert!(
            d > secs(2.0) && d <= secs(3.1),
            "{} suspected after {d:?}",
            s.watcher
        );
    }
}
