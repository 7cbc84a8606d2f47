//! The simulated hosts' processes: each host's software (the server, or a client host's
//! sessions, over the simulated network), started, killed and restarted by the fault schedule,
//! all in one turmoil host.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::load::{Charging, Cpu, Idle};
use super::net::SimNet;
use super::record::{Recorder, TraceObserver};
use super::runner::{SERVER, Scenario, SegmentTrace};
use super::synthetic::{Purpose, stream};
use super::traffic::{AppClock, Apps, ClientApp, ServerApp};
use crate::net::Observer;
use crate::net::client::{self, ClientOptions};
use crate::net::conn::{Discard, Handler};
use crate::net::server::{Server, ServerOptions};

/// The port the server listens on.
const PORT: u16 = 7800;

/// A simulated host's software: builds the future of one incarnation of its process.
pub(super) type Software =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>>;

/// The processes of the simulated hosts, all in one turmoil host.
///
/// turmoil steps every host's runtime at every tick, busy or idle, and that fixed cost is per
/// host: one runtime for all of them costs the same whatever the number of hosts. Nothing here
/// needs one runtime per host: the network and the endpoint faults are this crate's own
/// ([`SimNet`]), keyed by host name. A process is its host's software spawned as one task
/// (which owns every task it spawns, through `JoinSet`s). A kill or crash marks the host down
/// in the network first, which closes its gate and stops its sockets, so none of its tasks
/// does anything more; then the process is aborted, and its tasks are dropped before the clock
/// moves on. A restart spawns the software again.
pub(super) struct Processes {
    handle: Option<tokio::runtime::Handle>,
    /// In start order: the server first, then the client hosts.
    software: Vec<(String, Software)>,
    running: BTreeMap<String, tokio::task::AbortHandle>,
    /// The first process that failed (its software returned an error): it fails the run.
    pub(super) failure: Arc<Mutex<Option<String>>>,
}

impl Processes {
    pub(super) fn new(software: Vec<(String, Software)>) -> Processes {
        Processes {
            handle: None,
            software,
            running: BTreeMap::new(),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts every host, from inside the runtime they share.
    pub(super) fn boot(&mut self, handle: tokio::runtime::Handle) {
        self.handle = Some(handle);
        let hosts: Vec<String> = self.software.iter().map(|(h, _)| h.clone()).collect();
        for h in hosts {
            self.start(&h);
        }
    }

    /// Spawns a new incarnation of `host`'s process.
    pub(super) fn start(&mut self, host: &str) {
        let (Some(handle), Some((_, software))) =
            (&self.handle, self.software.iter().find(|(h, _)| h == host))
        else {
            return;
        };
        let process = software();
        let failure = self.failure.clone();
        let name = host.to_string();
        let task = handle.spawn(async move {
            if let Err(e) = process.await {
                let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                f.get_or_insert(format!("{name}: {e}"));
            }
        });
        self.running.insert(host.to_string(), task.abort_handle());
    }

    /// Ends `host`'s process: its tasks never run again and are dropped in the next step.
    pub(super) fn stop(&mut self, host: &str) {
        if let Some(task) = self.running.remove(host) {
            task.abort();
        }
    }
}

/// What every process of a run shares: the network, the run's recorder, the segment-level trace,
/// the applications and the master seed.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) net: SimNet,
    pub(super) rec: Arc<Mutex<Recorder>>,
    pub(super) segments: SegmentTrace,
    pub(super) apps: Apps,
    pub(super) seed: u64,
}

/// Every host's software, the server first, then the client hosts in order.
pub(super) fn software(
    shared: &Shared,
    scenario: &Scenario,
    client_options: &ClientOptions,
    client_hosts: &[String],
) -> Vec<(String, Software)> {
    let mut software = vec![(SERVER.to_string(), server(shared, scenario))];
    for (h, host) in client_hosts.iter().enumerate() {
        let clients = clients(
            shared,
            scenario,
            client_options,
            host,
            h,
            client_hosts.len(),
        );
        software.push((host.clone(), clients));
    }
    software
}

/// The seed of the server process's `life`-th life (0: the first): its session ids and
/// tokens. Both engines draw it here.
pub(super) fn server_seed(seed: u64, life: u64) -> u64 {
    stream(seed, Purpose::Simulator, &[1, life]).next_u64()
}

/// Client `i`'s draws: its reconnect jitter's seed, then (in its first life, with a connect
/// ramp) its start. Both engines draw them here.
pub(super) fn client_draws(seed: u64, i: usize) -> ChaCha8Rng {
    stream(seed, Purpose::Simulator, &[2, i as u64])
}

/// The server's software. Each incarnation of the server process draws its own session ids and
/// tokens: a restarted server must not hand out the ids and tokens of its previous life.
fn server(shared: &Shared, scenario: &Scenario) -> Software {
    let shared = shared.clone();
    let server_options = scenario.stack.server_options();
    let incarnation = Arc::new(AtomicU64::new(0));
    let load = scenario.load;
    Box::new(move || {
        let net = shared.net.clone();
        let rec = shared.rec.clone();
        let segments = shared.segments.clone();
        let apps = &shared.apps;
        let mut opts = ServerOptions {
            name: SERVER.into(),
            ..server_options.clone()
        };
        let life = incarnation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        opts.seed = Some(server_seed(shared.seed, life));
        let traffic = apps.workload.is_on();
        let (app, started) = ServerApp::new(apps.clone(), life as u32);
        // Each life of the server process starts with an idle CPU.
        let cpu = load.map(|m| Cpu::on_net(m, net.clone(), SERVER));
        let app = app.with_cpu(cpu.clone());
        let handler: Arc<dyn Handler> = if traffic {
            Arc::new(app)
        } else {
            Arc::new(Discard)
        };
        Box::pin(async move {
            // Its CPU stops the process as a pause does: one gate for both.
            opts.gate = Some(net.gate(SERVER));
            // Load comes from the model, never from the machine running the simulation.
            opts.load = Some(match &cpu {
                Some(cpu) => cpu.clone(),
                None => Arc::new(Idle),
            });
            let listener = net.listen(SERVER, PORT).map_err(|e| e.to_string())?;
            let stops = cpu.clone().map(Cpu::run_stops);
            let observer: Arc<dyn Observer> = Arc::new(TraceObserver {
                rec,
                segments,
                clock: None,
            });
            let observer = match cpu {
                Some(cpu) => Arc::new(Charging {
                    inner: observer,
                    cpu,
                }),
                None => observer,
            };
            let server = Server::new(opts, observer, handler);
            let (_keep, shutdown) = tokio::sync::watch::channel(false);
            // The generators of the server's application, and the stops its CPU imposes, live
            // and die with its process.
            let serving = async {
                let (served, ()) = tokio::join!(
                    server.serve(listener, shutdown),
                    ServerApp::run_generators(started)
                );
                served
            };
            let served = tokio::select! {
                biased;
                served = serving => served,
                never = async move {
                    match stops {
                        Some(stops) => stops.await,
                        None => std::future::pending().await,
                    }
                } => match never {},
            };
            served.map_err(|e| e.to_string())
        })
    })
}

/// The software of the client host `host`, the `h`-th of `stride`: the sessions `h`,
/// `h + stride` … below `scenario.sessions`, each its own `net::client::run` task.
fn clients(
    shared: &Shared,
    scenario: &Scenario,
    client_options: &ClientOptions,
    host: &str,
    h: usize,
    stride: usize,
) -> Software {
    let shared = shared.clone();
    let host = host.to_string();
    let sessions = scenario.sessions;
    let client_options = client_options.clone();
    let ramp = scenario.connect_ramp;
    // A host's processes start at the run's start or at a restart; the ramp applies to
    // the first life only (a restarted host's clients start when it is back).
    let lives = Arc::new(AtomicU64::new(0));
    Box::new(move || {
        let net = shared.net.clone();
        let rec = shared.rec.clone();
        let segments = shared.segments.clone();
        let client_options = client_options.clone();
        let host = host.clone();
        let apps = shared.apps.clone();
        let seed = shared.seed;
        let life = lives.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let first_life = life == 0;
        Box::pin(async move {
            let observer: Arc<dyn Observer> = Arc::new(TraceObserver {
                rec,
                segments,
                clock: None,
            });
            let (_keep, shutdown) = tokio::sync::watch::channel(false);
            let mut tasks = tokio::task::JoinSet::new();
            for i in (h..sessions).step_by(stride) {
                let mut draws = client_draws(seed, i);
                let mut opts = ClientOptions {
                    name: format!("client-{i}"),
                    seed: draws.next_u64(),
                    ..client_options.clone()
                };
                let start = if first_life && !ramp.is_zero() {
                    // Whole microseconds, uniform over the ramp.
                    let us = ramp.as_micros().max(1) as u64;
                    Duration::from_micros(draws.next_u64() % us)
                } else {
                    Duration::ZERO
                };
                opts.session.client_id = opts.name.clone();
                opts.gate = Some(net.gate(&host));
                let connector = net.connector(&host, &opts.name, SERVER, PORT);
                let observer = observer.clone();
                let shutdown = shutdown.clone();
                let handler: Arc<dyn Handler> = if apps.workload.is_on() {
                    Arc::new(ClientApp {
                        node: opts.name.clone(),
                        clock: AppClock::Net(net.clone()),
                        log: apps.log.clone(),
                    })
                } else {
                    Arc::new(Discard)
                };
                let sender = apps.client_generator(i, &host, life as u32);
                let outgoing = match sender {
                    Some((generator, tx, rx)) => {
                        // The application starts with its client, after the ramp.
                        tasks.spawn(async move {
                            if !start.is_zero() {
                                tokio::time::sleep(start).await;
                            }
                            generator.run(tx).await;
                        });
                        Some(rx)
                    }
                    None => None,
                };
                tasks.spawn(async move {
                    if !start.is_zero() {
                        tokio::time::sleep(start).await;
                    }
                    let _ =
                        client::run(connector, opts, observer, handler, outgoing, shutdown).await;
                });
            }
            while tasks.join_next().await.is_some() {}
            Ok(())
        })
    })
}
