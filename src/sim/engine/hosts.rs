//! Host faults on the engine: a host's processes killed, its machine crashed (and rebooted),
//! or its processes paused, as the fault schedule ([`super::schedule`]) says, with what each
//! means to the connections and to the peers as `sim::net` gives it to the runner's sockets.
//!
//! - Killed: the processes die (their endpoints and sessions with them, reporting nothing);
//!   the kernel closes their sockets (RST if data lies unread, else FIN) and refuses new
//!   connections. A restart starts the processes afresh.
//! - Crashed: the processes die and the machine falls silent: no ACK, no retransmission, SYNs
//!   unanswered. A reboot brings it back with an empty kernel: a peer's next transmission on an
//!   old connection gets RST.
//! - Paused: the processes stop; the kernel goes on receiving and acknowledging. Nothing on
//!   the host reads, writes or decides until it resumes: its timers, accepts, handshake
//!   deadlines and connect returns wait ([`Deferred`]), then run at the resume, each end
//!   reading what reached it before it judges its peer.

use rand::RngCore;

use super::{Deferred, Engine, Ev, client_endpoint, server_endpoint};
use crate::sim::net::HostState;
use crate::sim::process::client_draws;
use crate::sim::runner::SERVER;
use crate::sim::schedule::HostChange;

impl Engine {
    /// Whether `host`'s processes are paused.
    pub(super) fn paused(&self, host: &str) -> bool {
        self.states.get(host) == Some(&HostState::Paused)
    }

    /// `host` will do `work` when it resumes.
    pub(super) fn defer(&mut self, host: &str, work: Deferred) {
        self.deferred
            .entry(host.to_string())
            .or_default()
            .push(work);
    }

    /// Carries out what the fault schedule does to a host.
    pub(super) fn change_host(&mut self, change: HostChange) {
        match change {
            HostChange::Down {
                host,
                state: HostState::Paused,
            } => {
                self.fault_paused.insert(host.clone());
                // A server its CPU stops is already paused: it stays so for both.
                if !self.paused(&host) {
                    self.pause(&host);
                }
            }
            HostChange::Down { host, state } => {
                self.fault_paused.remove(&host);
                self.kill(&host, state);
            }
            HostChange::Restart { host, reboot } => self.restart(&host, reboot),
            HostChange::Resume { host } => {
                self.fault_paused.remove(&host);
                // A server its CPU still stops runs again when its CPU lets it.
                if !(host == SERVER && self.stalled) {
                    self.resume(&host);
                }
            }
        }
    }

    /// The server's CPU stops its process (`on`) or lets it run again (`sim::load`): to its
    /// connections and clients the same as a pause, kept apart from the fault schedule's
    /// pauses so that each ends only its own.
    pub(super) fn stall(&mut self, on: bool) {
        self.stalled = on;
        match (on, self.paused(SERVER)) {
            (true, false) => self.pause(SERVER),
            (false, true) if !self.fault_paused.contains(SERVER) => self.resume(SERVER),
            _ => {}
        }
    }

    /// The ends on `host` of every connection, as `(connection index, side)`, in connection
    /// order.
    fn ends_on(&self, host: &str) -> Vec<(usize, usize)> {
        let mut ends = Vec::new();
        for (k, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            if self.clients[c.client as usize].host == host {
                ends.push((k, 0));
            }
            if host == SERVER {
                ends.push((k, 1));
            }
        }
        ends
    }

    /// The indices of the clients on `host`.
    fn clients_on(&self, host: &str) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|i| self.clients[*i].host == host)
            .collect()
    }

    fn pause(&mut self, host: &str) {
        self.states.insert(host.to_string(), HostState::Paused);
        let now = self.now;
        for (k, side) in self.ends_on(host) {
            if let Some(c) = self.conns[k].as_mut() {
                c.pause(side, now, &mut self.links);
            }
        }
    }

    /// `host` runs again: each end on it reads what reached it and takes its turn, what came
    /// due meanwhile runs in the order it came due, then its clients step and its server
    /// expires what is due.
    fn resume(&mut self, host: &str) {
        self.states.remove(host);
        for (k, side) in self.ends_on(host) {
            let (mut w, conns) = self.world();
            if let Some(c) = conns[k].as_mut() {
                c.resume(side, &mut w);
            }
            self.reap(k + 1);
        }
        for work in self.deferred.remove(host).unwrap_or_default() {
            let (mut w, conns) = self.world();
            let conn = |id: u32| id as usize - 1;
            match work {
                Deferred::Accept(id) => {
                    if let Some(c) = conns[conn(id)].as_mut() {
                        c.accept(&mut w);
                        c.on_tcp(&mut w);
                    }
                }
                Deferred::Handshake(id) => {
                    if let Some(c) = conns[conn(id)].as_mut() {
                        c.on_handshake_deadline(&mut w);
                    }
                }
                Deferred::Retry(id) => {
                    if let Some(c) = conns[conn(id)].as_mut() {
                        c.on_retry(&mut w);
                    }
                }
                Deferred::Open(id) => self.open(id as usize),
            }
        }
        for i in self.clients_on(host) {
            let client = &mut self.clients[i];
            if !client.alive || client.endpoint.is_none() {
                continue;
            }
            if std::mem::take(&mut client.connecting) {
                self.connect(i);
            } else {
                self.world().0.step_client(i);
            }
        }
        if host == SERVER && self.server_alive {
            self.expire();
        }
    }

    /// `host`'s processes die (`Killed`), or its machine with them (`Crashed`).
    fn kill(&mut self, host: &str, state: HostState) {
        self.states.insert(host.to_string(), state);
        self.deferred.remove(host);
        for (k, side) in self.ends_on(host) {
            let (mut w, conns) = self.world();
            if let Some(c) = conns[k].as_mut() {
                c.process_dies(side, state, &mut w);
            }
            self.reap(k + 1);
        }
        for i in self.clients_on(host) {
            let client = &mut self.clients[i];
            client.alive = false;
            client.endpoint = None;
            // Its queue dies with it: its stream sends no more.
            client.outgoing = None;
            client.connecting = false;
            // Its pending wake-up, if any, finds it dead.
            let _ = client.timer.arm(None);
        }
        if host == SERVER {
            self.server_alive = false;
            let _ = self.server_timer.arm(None);
            // The application and the sessions' queues it keeps die with the process.
            (self.server_app, self.server_starts) = super::server_app(None, 0, None);
            self.server_feeds.clear();
            // So do its CPU's stops (its events find another life).
            self.stalled = false;
            self.cpu_stop = None;
        }
        let now = self.now;
        if let Some(apps) = &self.apps {
            crate::sim::traffic::lock(&apps.log).host_died(host, now);
        }
        if let Some(deaths) = self.deaths.as_mut() {
            deaths(host, now);
        }
    }

    /// `host` comes back (after a crash, `reboot`: with an empty kernel) and its processes
    /// start again: a restarted server draws the ids of its next life, restarted clients
    /// connect at once (the connect ramp is for the first life only).
    fn restart(&mut self, host: &str, reboot: bool) {
        self.states.remove(host);
        if reboot {
            for (k, side) in self.ends_on(host) {
                let (mut w, conns) = self.world();
                if let Some(c) = conns[k].as_mut() {
                    c.forget(side, &mut w);
                }
            }
        }
        let now = self.now;
        if host == SERVER {
            self.server_life += 1;
            self.endpoint = server_endpoint(&self.server, self.seed, self.server_life);
            self.server_epoch = now;
            self.server_alive = true;
            // Each life of the server process starts with an idle CPU and tells its
            // connections nothing yet; it samples its load at once.
            if let Some(cpu) = &self.cpu {
                cpu.reset(now);
            }
            self.steer = Default::default();
            (self.server_app, self.server_starts) = super::server_app(
                self.apps.as_ref(),
                self.server_life as u32,
                self.cpu.as_ref(),
            );
            self.world().0.arm_server();
        }
        for i in self.clients_on(host) {
            // The same draws as its first life: the jitter's seed first.
            let jitter = client_draws(self.seed, i).next_u64();
            let client = &mut self.clients[i];
            let endpoint = client_endpoint(&self.client, &client.name, jitter)
                .expect("the configuration was accepted at the start");
            client.endpoint = Some(Box::new(endpoint));
            client.alive = true;
            client.start = now;
            client.life += 1;
            let (name, life) = (client.name.clone(), client.life);
            let (handler, outgoing) = super::client_app(
                self.apps.as_ref(),
                &name,
                i,
                host,
                life,
                now,
                &mut self.feeds,
                &mut self.queue,
            );
            let client = &mut self.clients[i];
            client.handler = handler;
            client.outgoing = outgoing;
            if let Some((at, generation)) = client.timer.arm(Some(now)) {
                let client = i as u32;
                self.queue.push(at, Ev::Client { client, generation });
            }
        }
    }
}
