//! Same scenario and seed, same trace, byte for byte: within a process here, and across
//! processes through the committed snapshot.

use mcpsim::sim::runner::{Fault, run};

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
