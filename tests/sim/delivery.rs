//! The delivery checker on whole runs: it passes a correct resume and catches a broken one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpsim::proto::session::Sabotage;
use mcpsim::sim::delivery::{MessageId, ViolationKind};
use mcpsim::sim::runner::{Fault, Outcome, Scenario, run};
use mcpsim::sim::traffic::Pace;

use crate::endpoint_faults::{both_ways, every_second, secs};

/// One session whose client sends 20 messages a second on two channels, and a partition of
/// 8 s at 10 s: the server's detector (1 s, k = 3) drops the connection with DATA unacknowledged,
/// and the client resumes after the partition heals.
fn cut_with_traffic() -> Scenario {
    let cut = Fault::Partition {
        from: "clients".into(),
        to: "server".into(),
        duration: secs(8.0),
        oneway: false,
    };
    let mut s = every_second(3, 1, 60.0, vec![(secs(10.0), cut)]);
    s.traffic = both_ways(1, Pace::Constant { rate: 20.0 }, 200, secs(10.0));
    s
}

#[test]
fn a_resume_after_a_partition_delivers_every_message_exactly_once_in_order() {
    let out = run(&cut_with_traffic(), 1).unwrap();
    let d = out.delivery.expect("the run had traffic");
    assert!(
        out.reconnects.values().any(|r| r.resumed > 0),
        "the partition must end in a resume"
    );
    assert!(d.fates.sent > 1_500, "{} messages sent", d.fates.sent);
    assert_eq!(d.fates.violations(), 0, "{:?}", d.violations);
    assert_eq!(
        d.fates.sent,
        d.fates.delivered + d.fates.reported + d.fates.in_flight
    );
}

#[test]
fn a_resume_that_drops_one_retransmission_is_a_lost_message_named_by_its_id() {
    dropping_one_retransmission_loses_that_message(|s| run(s, 1).unwrap());
}

#[test]
fn on_the_event_engine_too_a_dropped_retransmission_is_a_lost_message_named_by_its_id() {
    dropping_one_retransmission_loses_that_message(|s| mcpsim::sim::engine::run(s, 1).unwrap());
}

fn dropping_one_retransmission_loses_that_message(run: impl Fn(&Scenario) -> Outcome) {
    let dropped = Arc::new(Mutex::new(None));
    let mut s = cut_with_traffic();
    s.sabotage = Some(Sabotage::DropOneRetransmission(dropped.clone()));
    let out = run(&s);
    let d = out.delivery.expect("the run had traffic");
    let payload = dropped
        .lock()
        .unwrap()
        .take()
        .expect("the resume had DATA to send again");
    let id = MessageId::read(&payload).expect("a generated payload");
    assert_eq!(
        (d.fates.lost, d.fates.duplicated, d.fates.reordered),
        (1, 0, 0)
    );
    let (seed, v) = &d.violations[0];
    assert_eq!((*seed, v.kind), (1, ViolationKind::Lost));
    assert_eq!(v.message, format!("client-0@0>server#{}", id.index));
    assert!(!v.trace.is_empty(), "the trace around the loss is kept");
}

#[test]
fn the_same_seed_gives_the_same_trace_and_the_same_fate_for_every_message() {
    let mut s = cut_with_traffic();
    s.sessions = 3;
    s.traffic.flows[0].sessions = 0..3;
    s.traffic.flows[0].pace = Pace::Poisson { rate: 30.0 };
    // Throttling on: both sides report load, which must come from the model (the clients':
    // idle), never from the machine running the test.
    s.stack.throttle.enabled = true;
    s.load = Some(mcpsim::sim::load::LoadModel {
        frame_cost: Duration::from_micros(300),
        message_cost: Duration::from_micros(700),
        cores: 1,
    });
    let a = run(&s, 5).unwrap();
    let b = run(&s, 5).unwrap();
    assert_eq!(a.trace_text(), b.trace_text());
    assert_eq!(a.delivery, b.delivery);
    assert!(a.delivery.unwrap().fates.delivered > 3_000);
}
