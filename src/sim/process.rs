//! The simulated hosts' processes: each host's software, started, killed and restarted by the
//! fault schedule, all in one turmoil host.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

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
