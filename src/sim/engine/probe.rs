//! Where an event's memory accesses fall, for `scripts/lines-per-event.sh`: a run of the bench
//! shape with two sessions that prints the addresses of each connection, its sessions and the
//! engine's event counter, then marks two simulated seconds of steady state by stores to
//! [`MARK`]. Under `valgrind --tool=lackey --trace-mem=yes`, the script counts the cache lines
//! of each object that each event touches (a store to the event counter starts an event).
//! Ignored in the suite: it asserts nothing a run could fail but the run itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::conn::{Conn, Holder};
use super::{Engine, EngineClock};

/// Stored 1 when the measured window starts and 2 when it ends.
static MARK: AtomicU64 = AtomicU64::new(0);

#[test]
#[ignore = "a probe for scripts/lines-per-event.sh, run under valgrind"]
fn a_steady_heartbeat_window_is_marked_for_the_memory_trace() {
    let text = "description = \"probe\"\nduration = \"1m\"\n\
                [topology]\nsessions = 2\nconnect_ramp = \"0ms\"\n\
                [grid]\ninterval = [\"1s\"]\nmiss_threshold = [3]\n\
                [network]\nlatency = \"1ms\"\n\
                [stack.heartbeat]\nmode = \"one-way\"\n";
    let plan = crate::scenario::parse("probe", "probe", text).expect("the probe's shape");
    let scenario = plan.scenario(0);
    let mut e = Engine::new(
        &scenario,
        1,
        Arc::new(crate::net::Quiet),
        EngineClock::default(),
    )
    .expect("an engine");
    e.run_until(Duration::from_secs(10));
    eprintln!("MARK {:p}", &MARK);
    eprintln!("EVENTS {:p}", &e.stats.events);
    for c in e.conns.iter().flatten() {
        eprintln!("Conn {:p} {}", &**c, size_of::<Conn>());
        match &c.ends[0].holder {
            Holder::Client(_, ep) => eprintln!("ClientEndpoint {:p} {}", &**ep, size_of_val(&**ep)),
            _ => panic!("a client end without its endpoint"),
        }
        match &c.ends[1].holder {
            Holder::Server(s) => eprintln!("Session {:p} {}", &**s, size_of_val(&**s)),
            _ => panic!("a server end without its session"),
        }
    }
    let before = e.stats.events;
    MARK.store(1, Ordering::SeqCst);
    e.run_until(Duration::from_secs(12));
    MARK.store(2, Ordering::SeqCst);
    assert!(e.stats.events > before, "the window ran events");
}
