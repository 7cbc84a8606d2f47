//! [`Path`]: what a packet, or a whole connection attempt, meets on one direction of one
//! connection.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::Rng;

use super::{Direction, HISTORY, TcpConfig};

/// How a connection attempt ends for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The SYN-ACK arrived at this instant: the client is connected.
    Established(Duration),
    /// connect() failed with ETIMEDOUT at this instant.
    TimedOut(Duration),
}

/// One direction of one connection (`forward`, carrying its packets) with the reverse
/// direction (carrying the answers of a connection attempt), under `tcp`'s settings. Cheap: make
/// one per call if that is easier than keeping it.
#[derive(Debug)]
pub struct Path<'a> {
    forward: &'a mut Direction,
    reverse: &'a mut Direction,
    tcp: &'a TcpConfig,
}

/// A guard against endless resending (only reachable with absurd settings).
const MAX_ATTEMPTS: u32 = 100_000;

impl<'a> Path<'a> {
    pub fn new(
        forward: &'a mut Direction,
        reverse: &'a mut Direction,
        tcp: &'a TcpConfig,
    ) -> Path<'a> {
        Path {
            forward,
            reverse,
            tcp,
        }
    }

    /// One packet sent forward at `t`: when it arrives, or `None` if the direction is blocked
    /// or loses it. Draws one `f64` for the loss, then the latency if it got through.
    pub fn carry<R: Rng + ?Sized>(&mut self, t: Duration, rng: &mut R) -> Option<Duration> {
        self.carry_sized(t, 0, rng)
    }

    /// [`Path::carry`] for a packet of `payload` bytes, which a link with a rate queues and
    /// serializes first.
    pub fn carry_sized<R: Rng + ?Sized>(
        &mut self,
        t: Duration,
        payload: usize,
        rng: &mut R,
    ) -> Option<Duration> {
        self.forward.carry_packet(t, payload, rng)
    }

    /// A connection attempt from the forward direction's sender at `connect_at`: SYNs at
    /// `connect_at` and on the SYN backoff, SYN-ACKs from the server for every SYN that arrives
    /// plus its own SYN-ACK resends; established when the first SYN-ACK reaches the client,
    /// timed out at the first SYN timer past the `tcp_syn_retries` budget.
    pub fn syn<R: Rng + ?Sized>(&mut self, connect_at: Duration, rng: &mut R) -> ConnectOutcome {
        let floor = connect_at.saturating_sub(HISTORY);
        self.forward.loss.forget_before(floor);
        self.reverse.loss.forget_before(floor);

        let budget = self.tcp.budget(self.tcp.syn_rto, self.tcp.syn_retries);
        let deadline = connect_at.saturating_add(budget);
        let mut synacks: BinaryHeap<Reverse<Duration>> = BinaryHeap::new();
        let mut server_saw_syn = false;
        let mut established: Option<Duration> = None;
        let mut offsets = self.tcp.syn_offsets();
        let mut timer = connect_at;
        for k in 0..MAX_ATTEMPTS {
            // SYN-ACKs the server sends before this timer fires, in time order.
            while let Some(&Reverse(x)) = synacks.peek() {
                if x > timer {
                    break;
                }
                synacks.pop();
                if let Some(arrival) = self.reverse.carry(x, None, rng) {
                    established = Some(established.map_or(arrival, |e| e.min(arrival)));
                }
            }
            if k > 0 {
                if let Some(e) = established.filter(|&e| e <= timer) {
                    return ConnectOutcome::Established(e);
                }
                if timer >= deadline {
                    return ConnectOutcome::TimedOut(timer);
                }
            }
            if let Some(at_server) = self.forward.carry(timer, None, rng) {
                synacks.push(Reverse(at_server));
                if !server_saw_syn {
                    server_saw_syn = true;
                    let resends = self.tcp.syn_offsets();
                    for off in resends.take(self.tcp.synack_retries as usize) {
                        synacks.push(Reverse(at_server.saturating_add(off)));
                    }
                }
            }
            timer = connect_at.saturating_add(offsets.next().expect("unbounded"));
        }
        ConnectOutcome::TimedOut(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fault::testing::{MASTER, ge, ms, rng, secs};
    use crate::sim::fault::{Latency, Loss, LossProcess, RandomOutages, Timeline};
    use crate::sim::synthetic::{Purpose, stream};

    /// Equal within a microsecond (float milliseconds in the latency parameters).
    fn assert_close(a: Duration, b: Duration) {
        assert!(a.abs_diff(b) < Duration::from_micros(1), "{a:?} != {b:?}");
    }

    /// 1 ms each way, so srtt = 2 ms and the RTO 202 ms.
    fn lan(loss: Loss, outages: Timeline, key: u64) -> Direction {
        let loss = LossProcess::seeded(&loss, MASTER, &[key]).unwrap();
        Direction::new(Latency::constant(ms(1)), loss, outages).unwrap()
    }

    fn down(from: Duration, len: Duration) -> Timeline {
        Timeline::new([from..from + len])
    }

    #[test]
    fn connect_into_a_partition_times_out_after_the_syn_budget_never_refused() {
        let t0 = secs(5.0);
        let cut = down(Duration::ZERO, secs(1000.0));
        let tcp = TcpConfig::default();
        let (mut fwd, mut rev) = (lan(Loss::None, cut.clone(), 1), lan(Loss::None, cut, 2));
        let out = Path::new(&mut fwd, &mut rev, &tcp).syn(t0, &mut rng(1));
        assert_eq!(out, ConnectOutcome::TimedOut(t0 + secs(127.0)));
    }

    #[test]
    fn connect_during_a_partition_succeeds_at_the_first_syn_after_the_heal() {
        let t0 = secs(5.0);
        let cut = down(t0, secs(10.0));
        let tcp = TcpConfig::default();
        let (mut fwd, mut rev) = (lan(Loss::None, cut.clone(), 1), lan(Loss::None, cut, 2));
        let out = Path::new(&mut fwd, &mut rev, &tcp).syn(t0, &mut rng(1));
        // SYNs at 0, 1, 3, 7, 15 s.
        let ConnectOutcome::Established(at) = out else {
            panic!("{out:?}")
        };
        assert_close(at, t0 + secs(15.002));
    }

    #[test]
    fn server_synack_resends_complete_a_connection_whose_later_syns_are_lost() {
        let t0 = secs(5.0);
        // The first SYN gets through, every later one is dropped; SYN-ACKs are dropped for 2 s.
        let mut fwd = lan(Loss::None, down(t0 + ms(500), secs(1000.0)), 1);
        let mut rev = lan(Loss::None, down(t0, secs(2.0)), 2);
        let tcp = TcpConfig::default();
        let out = Path::new(&mut fwd, &mut rev, &tcp).syn(t0, &mut rng(1));
        // SYN-ACKs at 0.001, 1.001 (dropped) and 3.001 s.
        let ConnectOutcome::Established(at) = out else {
            panic!("{out:?}")
        };
        assert_close(at, t0 + secs(3.002));
    }

    fn lossy_link(master: u64) -> (Direction, Direction) {
        let mk = |key: u64| {
            let loss = LossProcess::seeded(&ge(0.05, 0.5, 0.01, 0.5), master, &[key]).unwrap();
            let outages = RandomOutages {
                rate_per_hour: 20.0,
                duration: Latency::Exponential {
                    min_ms: 1000.0,
                    mean_ms: 5000.0,
                },
            }
            .sample_seeded(secs(15_000.0), master, &[key])
            .unwrap();
            let latency = Latency::Lognormal {
                min_ms: 5.0,
                median_ms: 10.0,
                sigma: 0.8,
            };
            Direction::new(latency, loss, outages).unwrap()
        };
        (mk(1), mk(2))
    }

    fn run(master: u64) -> (Vec<Option<Duration>>, Vec<ConnectOutcome>) {
        let (mut fwd, mut rev) = lossy_link(master);
        let tcp = TcpConfig::default();
        let mut r = stream(master, Purpose::Segments, &[1]);
        let mut path = Path::new(&mut fwd, &mut rev, &tcp);
        let data = (0..7000)
            .map(|i| path.carry(secs(f64::from(i)), &mut r))
            .collect();
        // Queries go forward in time (the loss state keeps only recent history).
        let syns = (0..100)
            .map(|i| path.syn(secs(7000.0 + f64::from(i) * 70.0), &mut r))
            .collect();
        (data, syns)
    }

    #[test]
    fn same_seed_gives_identical_outcomes() {
        let a = run(11);
        assert_eq!(a, run(11));
        assert_ne!(a, run(12));
        // The run exercised losses and deliveries.
        assert!(a.0.iter().any(Option::is_none));
        assert!(a.0.iter().any(Option::is_some));
    }

    #[test]
    fn without_a_rate_packet_sizes_change_nothing() {
        // The same draws and the same arrivals as before sizes existed, whatever the sizes.
        let (mut a_fwd, mut a_rev) = lossy_link(3);
        let (mut b_fwd, mut b_rev) = lossy_link(3);
        let tcp = TcpConfig::default();
        let mut ra = stream(3, Purpose::Segments, &[1]);
        let mut rb = stream(3, Purpose::Segments, &[1]);
        let mut a = Path::new(&mut a_fwd, &mut a_rev, &tcp);
        let mut b = Path::new(&mut b_fwd, &mut b_rev, &tcp);
        for i in 0..5000u32 {
            let t = ms(u64::from(i) * 7);
            let size = (i as usize * 7919) % 70_000;
            assert_eq!(a.carry(t, &mut ra), b.carry_sized(t, size, &mut rb), "{i}");
        }
    }
}
