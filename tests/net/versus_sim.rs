//! The real server and client on loopback against the simulator, through the same faults: the
//! server's detection instant after a client is paused (silence) and after it is killed (FIN)
//! must be what the simulator's judge measures for the same fault at the same heartbeat phase.
//!
//! Tolerance: 50 ms. On loopback the real server's timers fire up to a millisecond late plus
//! whatever scheduling delay this machine adds (a shared VM: tens of ms at worst); the
//! simulator rounds to its 1 ms tick and its link takes 1 ms. 50 ms is a quarter of η = 200 ms:
//! small enough that counting one heartbeat more or less (η), closing at 2·k·η instead of k·η
//! (+600 ms), or noticing a FIN by the detector instead of at once (up to k·η) would all fail.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mcpsim::net::{Gate, GateHandle, NetEvent, PeerLoss};
use mcpsim::proto::frame::{HeartbeatMode, HeartbeatParams};
use mcpsim::proto::session::Event;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::*;

const TOLERANCE: Duration = Duration::from_millis(50);

/// One client paused at `at` for 2 s, or killed at `at`; η = 200 ms, k = 3, 1 ms links.
fn scenario(fault: &str, at: Duration) -> String {
    let extra = match fault {
        "pause" => "duration = \"2s\"\n",
        _ => "",
    };
    format!(
        r#"
description = "one client, one {fault}"
duration = "10s"
seeds = 1

[topology]
sessions = 1

[grid]
interval = ["200ms"]
miss_threshold = [3]

[network]
latency = "1ms"

[[faults]]
kind = "{fault}"
at = "{}ms"
host = "clients"
{extra}"#,
        at.as_millis()
    )
}

/// The simulator's run of `fault` at `at`: the judge's detection time of the server watching
/// the client, and how long before the fault the server had last heard from it.
fn simulated(fault: &'static str, at: Duration) -> (Duration, Duration) {
    // The simulator runs its own runtime: not inside this test's.
    std::thread::spawn(move || simulate(fault, at))
        .join()
        .expect("the simulation")
}

fn simulate(fault: &str, at: Duration) -> (Duration, Duration) {
    let text = scenario(fault, at);
    let plan = mcpsim::scenario::parse("versus.toml", "versus", &text).expect("a good scenario");
    let out = mcpsim::sim::runner::run(&plan.scenario(0), 1).expect("the run");
    let pairs = plan.judge_for(0).judge(&out);
    let pair = pairs
        .iter()
        .find(|p| p.watcher == "server" && p.peer == "client-0")
        .expect("the server's view of client-0");
    assert_eq!(
        (pair.failures, pair.detections.len()),
        (1, 1),
        "{pair:?}\n{}",
        out.trace_text()
    );
    let detection = pair.detections[0];
    // The detector's suspicion names the silence: the last arrival was `silent` before it.
    let silent = out
        .trace
        .iter()
        .filter(|l| l.node == "server" && l.at >= at)
        .find_map(|l| {
            let ms = l.text.strip_prefix("suspect client-0  (silent ")?;
            ms.strip_suffix("ms)")?.parse::<u64>().ok()
        })
        .map(Duration::from_millis);
    let phase = silent.map_or(Duration::ZERO, |s| s.saturating_sub(detection));
    (detection, phase)
}

/// A gate the test opens and closes: the client's process paused (SIGSTOP) while closed.
struct Switch(watch::Sender<bool>);

impl Gate for Switch {
    fn wait_open(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut open = self.0.subscribe();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
        })
    }
}

/// A real server and a client with `gate`, two-way heartbeats (the scenario's default mode),
/// η = 200 ms, k = 3, established and past a few heartbeats.
async fn real_pair(gate: Option<GateHandle>) -> (Running, RunningClient) {
    let mut sopts = fast_server_options();
    sopts.config.default_interval_ms = 200;
    let srv = start_server(sopts, echo()).await;
    let (conn, mut opts) = fast_client_options("c1", &srv.addr);
    opts.session.requested = Some(HeartbeatParams {
        interval_ms: 200,
        miss_threshold: 3,
    });
    opts.session.mode = Some(HeartbeatMode::TwoWay);
    opts.gate = gate;
    let c = start_client(conn, opts, srv.recorder.clone(), echo());
    srv.recorder.established("c1").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    (srv, c)
}

/// When the server next declares its peer lost (at most 3 s), and why.
async fn server_loss(srv: &Running) -> (Instant, PeerLoss) {
    srv.recorder
        .wait_for("server", Duration::from_secs(3), |e| {
            matches!(e, NetEvent::PeerLost { .. })
        })
        .await
        .expect("the server declared the client lost");
    let v = srv.recorder.events.lock().unwrap();
    v.iter()
        .find_map(|(t, n, _, e)| match e {
            NetEvent::PeerLost { reason, .. } if n == "server" => Some((*t, *reason)),
            _ => None,
        })
        .expect("found above")
}

fn agree(what: &str, real: Duration, simulated: Duration) {
    let diff = real.abs_diff(simulated);
    eprintln!("{what}: real {real:?}, simulated {simulated:?}");
    assert!(
        diff <= TOLERANCE,
        "{what}: real {real:?}, simulated {simulated:?}"
    );
}

#[tokio::test]
async fn a_paused_client_is_declared_dead_when_the_simulator_says_it_is_detected() {
    // A fault time whose heartbeat phase leaves room for scheduling on both sides of it: the
    // real fault must fall between the same two heartbeats as the simulated one.
    let (sim_detection, phase) = [5000, 5050, 5100, 5150]
        .into_iter()
        .map(|ms| simulated("pause", Duration::from_millis(ms)))
        .find(|(_, phase)| (30..=170).contains(&phase.as_millis()))
        .expect("a fault time mid-interval");

    let (open, _) = watch::channel(true);
    let switch = Arc::new(Switch(open));
    let (srv, c) = real_pair(Some(GateHandle(switch.clone()))).await;
    // The same phase: pause the client `phase` after the server hears a heartbeat.
    let mark = Instant::now();
    let heard = loop {
        let after_mark = srv
            .recorder
            .times(
                "server",
                is_session(|e| matches!(e, Event::HeartbeatReceived { .. })),
            )
            .into_iter()
            .find(|t| *t >= mark);
        if let Some(t) = after_mark {
            break t;
        }
        assert!(mark.elapsed() < Duration::from_secs(1), "no heartbeat");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    tokio::time::sleep_until(heard + phase).await;
    switch.0.send_replace(false);
    let paused = Instant::now();
    let (dead, reason) = server_loss(&srv).await;
    switch.0.send_replace(true);
    assert_eq!(reason, PeerLoss::HeartbeatTimeout);
    agree("paused client", dead - paused, sim_detection);
    c.task.abort();
}

#[tokio::test]
async fn a_killed_client_is_declared_dead_when_the_simulator_says_it_is_detected() {
    let (sim_detection, _) = simulated("kill", Duration::from_secs(5));
    let (srv, c) = real_pair(None).await;
    let killed = Instant::now();
    c.task.abort(); // the process dies, its kernel sends FIN
    let (dead, reason) = server_loss(&srv).await;
    assert_eq!(reason, PeerLoss::Eof);
    agree("killed client", dead - killed, sim_detection);
}
