//! The fault schedule of a run: the scenario's faults and those drawn from the seed, checked
//! against the hosts and sessions and merged per host, become actions (each fault's start, and
//! its end where it has one) that a task in the hosts' runtime applies at their own millisecond
//! to the network and the processes, keeping the ground truth's down periods and the faults'
//! trace lines.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::delivery::Log as DeliveryLog;
use super::net::{HostState, SimNet};
use super::process::Processes;
use super::record::Recorder;
use super::runner::{DownPeriod, Fault, SERVER, Scenario, TraceLine, client_hosts};

/// What the fault schedule did: the ground truth's down periods and the faults' trace lines.
#[derive(Default)]
pub(super) struct FaultLog {
    pub(super) down: Vec<DownPeriod>,
    pub(super) lines: Vec<TraceLine>,
}

/// The scenario's faults and those its random fault processes draw from `seed`, by start time.
/// An error if a fault names no host or session, or a random process is invalid.
pub(super) fn faults(
    scenario: &Scenario,
    seed: u64,
) -> Result<Vec<(Duration, Fault)>, Box<dyn std::error::Error>> {
    check_targets(scenario)?;
    let mut faults = scenario.faults.clone();
    for (i, r) in scenario.random_faults.iter().enumerate() {
        faults.extend(r.sample(scenario.duration, seed, i as u64)?);
    }
    faults.sort_by_key(|(at, _)| *at);
    Ok(faults)
}

/// What the schedule does at an instant: a fault starts, or one ends.
pub(super) enum Action {
    Start(Fault),
    Restart { host: String, reboot: bool },
    Resume { host: String },
    Heal,
}

/// Faults: each becomes a start and, where it has one, an end action at a time. `faults` is
/// sorted by start; the actions come `(at, index of the fault, action)`.
pub(super) fn actions(faults: &[(Duration, Fault)]) -> Vec<(Duration, usize, Action)> {
    let mut actions: Vec<(Duration, usize, Action)> = Vec::new();
    for (i, (at, f)) in faults.iter().enumerate() {
        match f {
            Fault::Kill {
                host,
                downtime: Some(d),
            } => actions.push((
                *at + *d,
                i,
                Action::Restart {
                    host: host.clone(),
                    reboot: false,
                },
            )),
            Fault::Crash {
                host,
                downtime: Some(d),
            } => actions.push((
                *at + *d,
                i,
                Action::Restart {
                    host: host.clone(),
                    reboot: true,
                },
            )),
            Fault::Pause { host, duration } => {
                actions.push((*at + *duration, i, Action::Resume { host: host.clone() }))
            }
            Fault::Partition { duration, .. } | Fault::Slow { duration, .. } => {
                actions.push((*at + *duration, i, Action::Heal))
            }
            _ => {}
        }
        actions.push((*at, i, Action::Start(f.clone())));
    }
    // By time, then in scenario order, so equal times apply deterministically.
    actions.sort_by_key(|(t, i, a)| (*t, *i, matches!(a, Action::Start(_))));
    actions
}

/// What the schedule acts on: the processes it stops and starts, the network whose hosts it
/// takes down and brings back, the recorder and the delivery log that learn of a host's death
/// (`hosts`: which host each node runs on), and the log of what it did.
#[derive(Clone)]
pub(super) struct Schedule {
    pub(super) procs: Rc<RefCell<Processes>>,
    pub(super) net: SimNet,
    pub(super) rec: Arc<Mutex<Recorder>>,
    pub(super) delivery_log: Arc<Mutex<DeliveryLog>>,
    pub(super) hosts: BTreeMap<String, String>,
    pub(super) log: Rc<RefCell<FaultLog>>,
}

impl Schedule {
    /// Applies each action at its time, then waits for the end of the run.
    pub(super) async fn run(self, actions: Vec<(Duration, usize, Action)>) {
        for (at, _, action) in actions {
            let now = self.net.now();
            if at > now {
                tokio::time::sleep(at - now).await;
            }
            self.apply(self.net.now(), action);
        }
        std::future::pending::<()>().await
    }

    /// Applies one action at `now`: logs it, then sets the hosts' states and stops or starts
    /// their processes.
    fn apply(&self, now: Duration, action: Action) {
        let Schedule {
            procs,
            net,
            rec,
            delivery_log,
            hosts,
            log,
        } = self;
        let Some(change) = log.borrow_mut().record(now, action) else {
            return;
        };
        match change {
            HostChange::Down { host, state } => {
                net.set_host_state(&host, state);
                if state != HostState::Paused {
                    procs.borrow_mut().stop(&host);
                    delivery_log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .host_died(&host, now);
                    let mut rec = rec.lock().unwrap_or_else(|e| e.into_inner());
                    rec.cut_host(&host, hosts, now);
                }
            }
            HostChange::Restart { host, reboot } => {
                if reboot {
                    net.reboot(&host);
                } else {
                    net.set_host_state(&host, HostState::Up);
                }
                procs.borrow_mut().start(&host);
            }
            HostChange::Resume { host } => net.resume(&host),
        }
    }
}

/// What an action does to a host, for the engine that runs the hosts to carry out.
#[derive(Debug)]
pub(super) enum HostChange {
    /// The host goes down: its kernel as `state` says; unless paused, its processes stop and
    /// their connections and messages die with them.
    Down { host: String, state: HostState },
    /// The host comes back (after a crash: `reboot`, with an empty kernel) and its processes
    /// start again.
    Restart { host: String, reboot: bool },
    /// A paused host runs again.
    Resume { host: String },
}

impl FaultLog {
    /// Logs `action` at `now` (its trace line, and the ground truth's down periods) and says
    /// what it does to a host, if anything. Link faults do nothing here: their outages and
    /// latency are in the links from the start.
    pub(super) fn record(&mut self, now: Duration, action: Action) -> Option<HostChange> {
        match action {
            Action::Start(Fault::Slow {
                from,
                to,
                latency,
                duration,
                oneway,
            }) => {
                let arrow = if oneway { "->" } else { "<->" };
                let (ms, typical) = (duration.as_millis(), latency.typical().as_millis());
                let text = format!("fault: slow {from} {arrow} {to} ({typical}ms) for {ms}ms");
                self.lines.push(TraceLine {
                    at: now,
                    node: from,
                    text,
                });
                None
            }
            Action::Start(Fault::Partition {
                from,
                to,
                duration,
                oneway,
            }) => {
                let arrow = if oneway { "->" } else { "<->" };
                let ms = duration.as_millis();
                let text = format!("fault: partition {from} {arrow} {to} for {ms}ms");
                let link = format!("{from}{arrow}{to}");
                let end = Some(now + duration);
                let blocked = directions(&from, &to, oneway);
                self.down.push(DownPeriod {
                    host: link,
                    blocked,
                    start: now,
                    end,
                    kind: "partitioned",
                });
                self.lines.push(TraceLine {
                    at: now,
                    node: from,
                    text,
                });
                None
            }
            Action::Heal => None,
            Action::Start(f) => {
                let host = f.host().to_string();
                let (state, kind, text) = match &f {
                    Fault::Kill { .. } => (
                        HostState::Killed,
                        "killed",
                        "fault: process killed".to_string(),
                    ),
                    Fault::Crash { .. } => (
                        HostState::Crashed,
                        "crashed",
                        "fault: machine crashed".to_string(),
                    ),
                    Fault::Pause { duration, .. } => (
                        HostState::Paused,
                        "paused",
                        format!("fault: paused for {}ms", duration.as_millis()),
                    ),
                    Fault::Partition { .. } | Fault::Slow { .. } => {
                        unreachable!("handled above")
                    }
                };
                self.down.push(DownPeriod {
                    host: host.clone(),
                    blocked: Vec::new(),
                    start: now,
                    end: None,
                    kind,
                });
                self.lines.push(TraceLine {
                    at: now,
                    node: host.clone(),
                    text,
                });
                Some(HostChange::Down { host, state })
            }
            Action::Restart { host, reboot } => {
                close_period(&mut self.down, &host, now);
                self.lines.push(TraceLine {
                    at: now,
                    node: host.clone(),
                    text: "fault ends: restarted".into(),
                });
                Some(HostChange::Restart { host, reboot })
            }
            Action::Resume { host } => {
                close_period(&mut self.down, &host, now);
                self.lines.push(TraceLine {
                    at: now,
                    node: host.clone(),
                    text: "fault ends: resumed".into(),
                });
                Some(HostChange::Resume { host })
            }
        }
    }
}

/// When a host fault (kill, crash, pause) strikes a host already down from another (two random
/// processes, or a schedule and a process), the host stays down until the later end: a fault
/// of the same kind extends the one in force, one of another kind is left out. Each merged or
/// left-out fault gets a trace line at its start. `faults` is sorted by start.
pub(super) fn merge_host_faults(
    faults: Vec<(Duration, Fault)>,
) -> (Vec<(Duration, Fault)>, Vec<TraceLine>) {
    // Until when each host is down (`None`: for good), and the index of the fault in force.
    let mut down: BTreeMap<String, (usize, Option<Duration>)> = BTreeMap::new();
    let mut out: Vec<(Duration, Fault)> = Vec::new();
    let mut lines = Vec::new();
    let end = |at: Duration, f: &Fault| match f {
        Fault::Kill { downtime, .. } | Fault::Crash { downtime, .. } => downtime.map(|d| at + d),
        Fault::Pause { duration, .. } => Some(at + *duration),
        _ => Some(at),
    };
    for (at, f) in faults {
        if matches!(f, Fault::Partition { .. } | Fault::Slow { .. }) {
            out.push((at, f));
            continue;
        }
        let host = f.host().to_string();
        let in_force = down
            .get(&host)
            .filter(|(_, until)| until.is_none_or(|u| at < u))
            .copied();
        let Some((i, until)) = in_force else {
            down.insert(host, (out.len(), end(at, &f)));
            out.push((at, f));
            continue;
        };
        let (start, first) = &mut out[i];
        let same = std::mem::discriminant(first) == std::mem::discriminant(&f);
        let text = if same {
            let new_end = match (until, end(at, &f)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            match first {
                Fault::Kill { downtime, .. } | Fault::Crash { downtime, .. } => {
                    *downtime = new_end.map(|e| e - *start);
                }
                Fault::Pause { duration, .. } => {
                    *duration = new_end.map_or(*duration, |e| e - *start);
                }
                _ => {}
            }
            down.insert(host.clone(), (i, new_end));
            "fault merged: the host is already down from the same kind of fault, which now lasts as long as both"
        } else {
            "fault left out: the host is already down from another kind of fault"
        };
        lines.push(TraceLine {
            at,
            node: host,
            text: text.to_string(),
        });
    }
    (out, lines)
}

/// Every fault must name something that exists: a host for kills, crashes and pauses; a host
/// or a client session for partitions and latency episodes.
fn check_targets(scenario: &Scenario) -> Result<(), String> {
    let hosts: Vec<String> = std::iter::once(SERVER.to_string())
        .chain(client_hosts(scenario.client_hosts))
        .collect();
    let is_host = |h: &str| hosts.iter().any(|x| x == h);
    let is_session = |h: &str| {
        h.strip_prefix("client-")
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < scenario.sessions)
    };
    let random = scenario
        .random_faults
        .iter()
        .map(|r| r.kind.fault(r.host.clone(), Duration::ZERO));
    for f in scenario.faults.iter().map(|(_, f)| f.clone()).chain(random) {
        let bad = match &f {
            Fault::Kill { host, .. } | Fault::Crash { host, .. } | Fault::Pause { host, .. } => {
                (!is_host(host)).then(|| host.clone())
            }
            Fault::Partition { from, to, .. } | Fault::Slow { from, to, .. } => [from, to]
                .into_iter()
                .find(|h| !is_host(h) && !is_session(h))
                .cloned(),
        };
        if let Some(name) = bad {
            let known = hosts.join(", ");
            return Err(format!(
                "fault aimed at unknown host or session `{name}` (hosts: {known})"
            ));
        }
    }
    Ok(())
}

/// The directions a link fault covers: `from → to`, and back unless one-way.
pub(super) fn directions(from: &str, to: &str, oneway: bool) -> Vec<(String, String)> {
    let there = (from.to_string(), to.to_string());
    let back = (to.to_string(), from.to_string());
    if oneway {
        vec![there]
    } else {
        vec![there, back]
    }
}

fn close_period(down: &mut [DownPeriod], host: &str, at: Duration) {
    if let Some(p) = down
        .iter_mut()
        .rev()
        .find(|p| p.host == host && p.end.is_none())
    {
        p.end = Some(at);
    }
}
