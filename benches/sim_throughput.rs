//! Simulated connection-hours per wall-second: one server and N client sessions heartbeating
//! every second over the simulated network, with no faults.
//!
//!   cargo bench --bench sim_throughput      # 1,000 sessions, 1 simulated hour, 10 ms tick
//!   SESSIONS=100 MINUTES=10 TICK_MS=1 THREADS=1 HOSTS=4 cargo bench --bench sim_throughput
//!
//! HOSTS spreads the sessions over that many client hosts (plus the server host).
//!
//! THREADS (default: one per core) runs that many seeds at once, one simulation per thread (a
//! `Sim` is `!Send`, so each is built inside its thread); the figure is the total over all
//! threads.
//!
//! TICK_MS changes the cost of a run, not its trace (`tests/sim/determinism.rs`).

use std::time::{Duration, Instant};

use mcpsim::config::{Mode, StackConfig};
use mcpsim::sim::links::NetworkSpec;
use mcpsim::sim::runner::{Scenario, run};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sessions = env("SESSIONS", 1000) as usize;
    let minutes = env("MINUTES", 60);
    let tick = Duration::from_millis(env("TICK_MS", 10));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let threads = env("THREADS", cores);
    let hosts = env("HOSTS", 1) as usize;
    let start = Instant::now();
    let lines: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let scenario = Scenario {
                        duration: Duration::from_secs(60 * minutes),
                        tick,
                        sessions,
                        client_hosts: hosts,
                        connect_ramp: Duration::ZERO,
                        stack: one_way(),
                        network: NetworkSpec::constant(Duration::from_millis(1)),
                        faults: Vec::new(),
                        random_faults: Vec::new(),
                        traffic: Default::default(),
                        load: None,
                        sabotage: None,
                    };
                    run(&scenario, i).expect("simulation").trace.len()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let wall = start.elapsed().as_secs_f64();
    let conn_hours = (sessions as u64 * minutes * threads) as f64 / 60.0;
    println!(
        "sessions={sessions} hosts={hosts}+1 simulated={minutes}min tick={}ms threads={threads}: wall {wall:.2} s, \
         {:.1} simulated connection-hours per wall-second ({lines} trace lines)",
        tick.as_millis(),
        conn_hours / wall
    );
}

/// The default stack with one-way heartbeats (1 s, k = 3, k-miss).
fn one_way() -> StackConfig {
    let mut s = StackConfig::default();
    s.heartbeat.mode = Mode::OneWay;
    s
}
