//! The server's CPU in the simulation: a processing cost per frame and per message, so that a
//! server can be saturated by its own work (a gray failure by overload, not only by a scheduled
//! slowdown).
//!
//! A fluid single-queue model. Every heartbeat frame the server handles (a HEARTBEAT from a
//! client, or the reply to its own) costs `frame_cost`, every application message it receives
//! `frame_cost + message_cost`; the work of all its connections queues on `cores` cores
//! ([`CpuQueue`]). Work is charged when it is done, at the instant the frame is handled, and
//! what it costs stops the process afterwards: once a millisecond or more of work is queued,
//! the process stops at the next whole millisecond and runs again at the first whole
//! millisecond with less than one left ([`CpuQueue::stop_at`], [`CpuQueue::resume_at`]). While
//! it is stopped it is a paused process (`sim::net`, `sim::engine::hosts`): its kernel goes on
//! receiving and acknowledging, its tasks read nothing, decide nothing and send nothing, its
//! timers wait; when it runs again each connection reads what reached it before it judges its
//! peer, which is the work the next stop pays for. Work under a millisecond does not stop the
//! process (the simulated clock moves in whole milliseconds): it is carried in the queue until
//! it adds up.
//!
//! Why stops on the millisecond grid rather than a gate each task waits at: which tasks run at
//! an instant must not hang on the order they are woken in. The queue only adds (the same total
//! whatever the order of the charges within an instant) and a stop starts at the next
//! millisecond, before anything else of that instant, so every engine stops the same process
//! at the same instants: the event engine takes the stop before the instant's first event, and
//! on turmoil the charge that asks for it tells the network at once ([`SimNet::stop_ahead`]),
//! whose sockets and gate act stopped from then on whatever order the tasks wake in, before
//! [`Cpu::run_stops`] carries the stop out. An earlier model
//! closed a gate at the top of each connection's loop the moment the work was queued; tasks
//! that were already waiting for input still took their read, and which waiting task went
//! first when the gate opened was tokio's wake order. Its figures hung on that order: on
//! `overloaded-server.toml` over 8 seeds, 3,217 and 1,936 false suspicions (clients, server)
//! in tokio's order, 435 and 566 with the waiting tasks let through in arrival order.
//!
//! What it leaves out, and why: handshakes, ACK frames and the kernel's own work cost nothing
//! (they are small against heartbeats and messages); memory is not modelled (the load figures
//! report 0 for it).
//!
//! [`CpuQueue::sample`] reports the share of the cores used since the previous sample, as the
//! operating system would: the figure the throttling policy reads.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::net::SimNet;
use super::traffic::AppClock;
use crate::net::load::{LoadSource, permille};
use crate::net::{NetEvent, Observer};
use crate::proto::frame::Load;
use crate::proto::session::{Event, Side};

/// What the server's work costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadModel {
    /// Per heartbeat frame handled (a HEARTBEAT or a HEARTBEAT_ACK).
    pub frame_cost: Duration,
    /// Per application message received, on top of its frame.
    pub message_cost: Duration,
    /// Cores the work spreads over.
    pub cores: u32,
}

/// Work below this does not stop the process: the simulated clock moves in milliseconds.
const GRAIN: Duration = Duration::from_millis(1);

/// The whole millisecond strictly after `t`.
fn next_ms(t: Duration) -> Duration {
    let ms = t.as_millis() as u64;
    Duration::from_millis(ms + 1)
}

/// The queue of one machine's CPU, with time passed in: what is charged, when the process must
/// stop and when it runs again, and the share of the cores used between samples.
#[derive(Clone, Debug)]
pub struct CpuQueue {
    model: LoadModel,
    /// When the queued work will be done.
    busy_until: Duration,
    /// Work charged since the last sample.
    charged: Duration,
    last_sample: Duration,
}

impl CpuQueue {
    /// An idle CPU at `now`.
    pub fn new(model: LoadModel, now: Duration) -> CpuQueue {
        CpuQueue {
            model,
            busy_until: now,
            charged: Duration::ZERO,
            last_sample: now,
        }
    }

    /// Queues `work` done at `now`.
    pub fn charge(&mut self, now: Duration, work: Duration) {
        self.busy_until = self.busy_until.max(now) + work / self.model.cores.max(1);
        self.charged += work;
    }

    /// A heartbeat frame handled at `now`.
    pub fn frame(&mut self, now: Duration) {
        self.charge(now, self.model.frame_cost);
    }

    /// An application message received at `now`.
    pub fn message(&mut self, now: Duration) {
        self.charge(now, self.model.frame_cost + self.model.message_cost);
    }

    /// The first whole millisecond with less than a millisecond of work left: when a stopped
    /// process runs again.
    pub fn resume_at(&self) -> Duration {
        next_ms(self.busy_until.saturating_sub(GRAIN))
    }

    /// When a process running at `now` must stop for what is queued: the next whole
    /// millisecond, if a millisecond or more of work is still left then; else never.
    pub fn stop_at(&self, now: Duration) -> Option<Duration> {
        let at = next_ms(now);
        (self.resume_at() > at).then_some(at)
    }

    /// The share of the cores used since the previous sample, taken at `now`.
    pub fn sample(&mut self, now: Duration) -> Load {
        let window = now.saturating_sub(self.last_sample);
        let capacity = window.as_secs_f64() * f64::from(self.model.cores.max(1));
        let cpu = if capacity > 0.0 {
            self.charged.as_secs_f64() / capacity
        } else {
            0.0
        };
        self.charged = Duration::ZERO;
        self.last_sample = now;
        Load {
            cpu_permille: permille(cpu),
            mem_permille: 0,
        }
    }
}

/// One server machine's CPU, shared by the server process's tasks (or the event engine), the
/// observer that charges heartbeats, the application that charges messages, and the load
/// sampler.
pub struct Cpu {
    clock: AppClock,
    queue: Mutex<CpuQueue>,
    /// Set when a charge means the process must stop ([`CpuQueue::stop_at`]); taken by
    /// whoever stops it.
    stop: Mutex<Option<Duration>>,
    /// Wakes [`Cpu::run_stops`] when a stop is wanted.
    wanted: Notify,
    /// On the turmoil runner: the network and host whose process this CPU stops, told of
    /// each stop as soon as it is asked for ([`SimNet::stop_ahead`]).
    stops_on: Option<(SimNet, &'static str)>,
}

impl Cpu {
    /// An idle CPU, its time read from `clock`; the event engine carries out its stops.
    pub fn new(model: LoadModel, clock: AppClock) -> Arc<Cpu> {
        Cpu::build(model, clock, None)
    }

    /// An idle CPU of `host` on the turmoil runner's `net`, whose stops
    /// [`Cpu::run_stops`] carries out.
    pub fn on_net(model: LoadModel, net: SimNet, host: &'static str) -> Arc<Cpu> {
        Cpu::build(model, AppClock::Net(net.clone()), Some((net, host)))
    }

    fn build(
        model: LoadModel,
        clock: AppClock,
        stops_on: Option<(SimNet, &'static str)>,
    ) -> Arc<Cpu> {
        let now = clock.now();
        Arc::new(Cpu {
            clock,
            queue: Mutex::new(CpuQueue::new(model, now)),
            stop: Mutex::new(None),
            wanted: Notify::new(),
            stops_on,
        })
    }

    fn queue(&self) -> MutexGuard<'_, CpuQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn charged(&self, charge: impl FnOnce(&mut CpuQueue, Duration)) {
        let now = self.clock.now();
        let (stop, until) = {
            let mut q = self.queue();
            charge(&mut q, now);
            (q.stop_at(now), q.resume_at())
        };
        if let Some(at) = stop {
            if let Some((net, host)) = &self.stops_on {
                net.stop_ahead(host, at, until);
            }
            let mut s = self.stop.lock().unwrap_or_else(|e| e.into_inner());
            *s = Some(s.map_or(at, |asked| asked.max(at)));
            self.wanted.notify_one();
        }
    }

    /// A heartbeat frame was handled.
    pub fn frame(&self) {
        self.charged(CpuQueue::frame);
    }

    /// An application message was received.
    pub fn message(&self) {
        self.charged(CpuQueue::message);
    }

    /// The stop a charge asked for since the last call, if any: the instant the process must
    /// stop at (when it comes, [`Cpu::resume_at`] says until when).
    pub fn take_stop(&self) -> Option<Duration> {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// When a process stopped now runs again.
    pub fn resume_at(&self) -> Duration {
        self.queue().resume_at()
    }

    /// Back to idle at `now`: a new life of the process on the same machine.
    pub fn reset(&self, now: Duration) {
        let model = self.queue().model;
        *self.queue() = CpuQueue::new(model, now);
        self.take_stop();
    }

    /// Stops the process of the host this CPU was made for ([`Cpu::on_net`]) whenever its work
    /// asks for it, for as long as it asks; run inside that process, so that it dies with it.
    /// A CPU the event engine drives ([`Cpu::new`]) has nothing to do here: it waits for ever.
    pub async fn run_stops(self: Arc<Cpu>) -> std::convert::Infallible {
        let Some((net, host)) = self.stops_on.clone() else {
            return std::future::pending().await;
        };
        loop {
            self.wanted.notified().await;
            let Some(mut at) = self.take_stop() else {
                continue;
            };
            loop {
                sleep_until(&net, at).await;
                let until = self.resume_at();
                if until <= net.now() {
                    break;
                }
                net.stall(host, true);
                sleep_until(&net, until).await;
                net.stall(host, false);
                // The process runs again: what it does now may stop it from the next
                // millisecond, asked for by its charges or taken here.
                match self.take_stop() {
                    Some(next) => at = next,
                    None => break,
                }
            }
        }
    }
}

/// Passes everything on to `inner`, charging `cpu` for each heartbeat frame the server handles
/// (a HEARTBEAT received, or the reply to its own): how either engine's server pays for its
/// heartbeats.
pub struct Charging {
    pub inner: Arc<dyn Observer>,
    pub cpu: Arc<Cpu>,
}

impl Observer for Charging {
    fn observe(&self, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        if side == Side::Server
            && let NetEvent::Session(Event::HeartbeatReceived { .. } | Event::Rtt { .. }) = event
        {
            self.cpu.frame();
        }
        self.inner.observe(node, side, session_id, event);
    }
}

/// Sleeps until the simulated instant `t`.
async fn sleep_until(net: &SimNet, t: Duration) {
    let now = net.now();
    if t > now {
        tokio::time::sleep(t - now).await;
    }
}

impl LoadSource for Cpu {
    fn sample(&self) -> Load {
        let now = self.clock.now();
        self.queue().sample(now)
    }
}

/// The load of a host whose CPU is not modelled: idle. The simulator gives it to every process
/// that reports or acts on load without a [`LoadModel`], so that no figure of the machine the
/// simulation runs on leaks into a run.
pub struct Idle;

impl LoadSource for Idle {
    fn sample(&self) -> Load {
        Load::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn one_core(frame_us: u64) -> CpuQueue {
        let model = LoadModel {
            frame_cost: us(frame_us),
            message_cost: us(1200),
            cores: 1,
        };
        CpuQueue::new(model, Duration::ZERO)
    }

    #[test]
    fn work_under_a_millisecond_does_not_stop_the_process() {
        let mut q = one_core(800);
        q.frame(ms(10));
        assert_eq!(q.stop_at(ms(10)), None);
        assert_eq!(q.resume_at(), ms(10));
    }

    #[test]
    fn a_millisecond_of_work_stops_the_process_from_the_next_millisecond_until_it_is_done() {
        let mut q = one_core(800);
        // 5 frames at 10.2 ms: 4 ms of work, done at 14.2 ms.
        for _ in 0..5 {
            q.frame(ms(10) + us(200));
        }
        assert_eq!(q.stop_at(ms(10) + us(200)), Some(ms(11)));
        // At 14 ms 0.2 ms is left: under a millisecond, so the process runs then.
        assert_eq!(q.resume_at(), ms(14));
    }

    #[test]
    fn charges_of_one_instant_add_up_the_same_in_any_order() {
        let mut a = one_core(800);
        a.frame(ms(3));
        a.message(ms(3));
        a.frame(ms(3));
        let mut b = one_core(800);
        b.message(ms(3));
        b.frame(ms(3));
        b.frame(ms(3));
        assert_eq!(a.resume_at(), b.resume_at());
        assert_eq!(a.stop_at(ms(3)), b.stop_at(ms(3)));
    }

    #[test]
    fn work_carried_under_a_millisecond_adds_up_to_a_stop() {
        let mut q = one_core(600);
        q.frame(ms(1));
        assert_eq!(q.stop_at(ms(1)), None);
        // 0.6 ms carried into 1.5 ms: 0.1 left there, plus 0.6 + 0.6 = 1.3 ms of work.
        q.frame(ms(1) + us(500));
        q.frame(ms(1) + us(500));
        assert_eq!(q.resume_at(), ms(2));
        assert_eq!(q.stop_at(ms(1) + us(500)), None);
        q.frame(ms(1) + us(500));
        assert_eq!(q.stop_at(ms(1) + us(500)), Some(ms(2)));
        assert_eq!(q.resume_at(), ms(3));
    }

    #[test]
    fn work_spreads_over_the_cores_and_a_sample_is_the_share_used() {
        let model = LoadModel {
            frame_cost: ms(10),
            message_cost: Duration::ZERO,
            cores: 2,
        };
        let mut q = CpuQueue::new(model, Duration::ZERO);
        for _ in 0..100 {
            q.frame(ms(0));
        }
        // 1 s of work on 2 cores: done at 0.5 s; over a second, half the capacity.
        assert_eq!(q.resume_at(), ms(500));
        assert_eq!(q.sample(ms(1000)).cpu_permille, 500);
        assert_eq!(q.sample(ms(2000)).cpu_permille, 0);
    }
}
