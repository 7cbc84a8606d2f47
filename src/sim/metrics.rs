//! The QoS metrics of `shared/docs/qos.md` over many runs (seeds) of one parameter pairing,
//! per side: the clients watching the server, and the server watching its clients.
//!
//! A run is reduced to a small [`RunSummary`] (from its [`Outcome`] and the [`Judge`]'s
//! [`PairQos`]), so that thousands of runs need not be kept; summaries merge, and the merged
//! summary gives [`Metrics`]. Summaries serialize (JSON Lines) and merge across machines:
//! times are whole microseconds, so totals do not depend on how the runs were grouped, and
//! merging in halves gives the summary of the whole. The quantiles sort the samples, so the
//! metrics do not depend on the order of the merges either.
//!
//! # Definitions
//!
//! - **Exposure**: the sum over watcher → peer pairs of the run's length minus the pair's
//!   failures, in connection-hours. λ_M is false suspicions per connection-hour of exposure,
//!   with an exact (Garwood) Poisson interval.
//! - **Detection time** quantiles are nearest-rank over every failure of every pair, a missed
//!   detection counting as infinitely late (as in [`DetectionStats`]); the mean is over the
//!   detected ones.
//! - **Mistake duration** T_M: the false suspicions that ended in trust; censored ones (still
//!   open at a failure or at the end of the run) are counted as false suspicions and left out.
//! - **Query accuracy** P_A: 1 − suspected time / exposure, measured directly: every
//!   suspicion counts for the time it overlaps the exposure, a censored one up to the failure
//!   or the end of the run that cut it (see [`PairQos::suspected`]).
//! - **Reconnects**: connection attempts after each client's first, per connection-hour of
//!   client time (clients × run length). **Storm peak**: the most reconnection attempts (every
//!   attempt but each client's first) of all clients in any [`STORM_WINDOW`], the maximum over
//!   runs.
//! - **Heartbeat overhead**: each end's bytes and heartbeat frames per second of connected
//!   time. Traffic is reported at most once a second, so the last second of a connection that
//!   outlives the run or its process is not counted.
//! - **Heartbeat round trip** (RTT): from a side sending a heartbeat to its receiving the
//!   reply, over every reply of every connection of the side (the session core's
//!   [`Event::Rtt`](crate::proto::session::Event::Rtt)). Quantiles are nearest-rank from a
//!   [`LogHistogram`] (at most 0.78% high, never low); the maximum is exact. A side that sends
//!   no heartbeats (the server in one-way mode, unless an adaptive detector probes) has none.
//! - **Longest heartbeat gap**: the longest time between two consecutive pieces of liveness
//!   evidence received on one connection, the maximum over runs. Liveness evidence is what
//!   feeds the side's detector: in two-way mode the peer's heartbeats; in one-way mode the
//!   client's heartbeats for the server and the server's replies for a client; on either side
//!   the replies to an adaptive detector's probes. Only gaps between two receipts on the same
//!   connection count: the silence before a connection ends (the peer died, or the socket gave
//!   up) and from a connection's start to its first receipt is not a gap, so a reconnect never
//!   makes one. A paused watcher receives nothing until it resumes, so its pause is in its gaps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::histogram::LogHistogram;
use super::qos::{Judge, PairQos};
use super::runner::{Heartbeats, Outcome, SERVER};
use super::synthetic::{DetectionStats, poisson_interval};

/// The window of the reconnect-storm peak.
pub const STORM_WINDOW: Duration = Duration::from_secs(1);

/// Who watches whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Watcher {
    /// A client watching the server.
    Client,
    /// The server watching a client.
    Server,
}

impl Watcher {
    /// The side of a `watcher → peer` pair, or of an `Outcome::traffic` key.
    pub fn of(watcher: &str) -> Watcher {
        if watcher == SERVER {
            Watcher::Server
        } else {
            Watcher::Client
        }
    }
}

/// The run that was worst by one measure: its seed and value. Ties go to the smaller seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worst {
    pub seed: u64,
    pub value: u64,
}

/// The worse of two, whatever their order.
fn worse(a: Option<Worst>, b: Option<Worst>) -> Option<Worst> {
    match (a, b) {
        (Some(x), Some(y)) => {
            let key = |w: Worst| (w.value, std::cmp::Reverse(w.seed));
            Some(if key(y) > key(x) { y } else { x })
        }
        (x, None) => x,
        (None, y) => y,
    }
}

fn smaller(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn hours(us: u64) -> f64 {
    us as f64 / 3_600_000_000.0
}

/// One side's counts, of one run or of many merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideTally {
    /// Watcher → peer pairs, summed over runs.
    pub pairs: u64,
    pub failures: u64,
    pub missed: u64,
    /// Detection times in µs, in merge order.
    pub detections_us: Vec<u64>,
    pub false_suspicions: u64,
    /// False suspicions without a duration (see [`PairQos::censored`]).
    pub censored: u64,
    /// Durations of the false suspicions that ended in trust, µs, in merge order.
    pub mistake_durations_us: Vec<u64>,
    pub exposure_us: u64,
    /// Time within the exposure during which the watcher suspected its live peer.
    pub suspected_us: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    pub connected_us: u64,
    /// The run with the longest detection time (µs).
    pub worst_detection: Option<Worst>,
    /// The smallest seed of a run with a missed detection.
    pub missed_seed: Option<u64>,
    /// The run with the most false suspicions.
    pub most_false_suspicions: Option<Worst>,
    /// Heartbeat round trips, µs. (Absent from summaries written before it was measured.)
    #[serde(default)]
    pub rtt: LogHistogram,
    /// The run with the longest gap between heartbeats received on one connection (µs).
    #[serde(default)]
    pub longest_gap: Option<Worst>,
}

impl SideTally {
    fn add_pair(&mut self, seed: u64, q: &PairQos) {
        self.pairs += 1;
        self.failures += q.failures as u64;
        self.missed += q.missed as u64;
        self.detections_us
            .extend(q.detections.iter().copied().map(micros));
        self.false_suspicions += q.false_suspicions as u64;
        self.censored += q.censored as u64;
        self.mistake_durations_us
            .extend(q.mistake_durations.iter().copied().map(micros));
        self.exposure_us += micros(q.exposure);
        self.suspected_us += micros(q.suspected);
        let longest = q.detections.iter().max().map(|d| Worst {
            seed,
            value: micros(*d),
        });
        self.worst_detection = worse(self.worst_detection, longest);
        if q.missed > 0 {
            self.missed_seed = smaller(self.missed_seed, Some(seed));
        }
    }

    fn add_heartbeats(&mut self, seed: u64, h: &Heartbeats) {
        self.rtt.merge(&h.rtt);
        let gap = h.longest_gap.map(|g| Worst {
            seed,
            value: micros(g),
        });
        self.longest_gap = worse(self.longest_gap, gap);
    }

    fn add_traffic(&mut self, t: &super::runner::Traffic) {
        self.bytes_out += t.bytes_out;
        self.bytes_in += t.bytes_in;
        self.heartbeats_sent += t.heartbeats_sent;
        self.heartbeats_received += t.heartbeats_received;
        self.connected_us += micros(t.connected);
    }

    fn merge(&mut self, o: &SideTally) {
        self.pairs += o.pairs;
        self.failures += o.failures;
        self.missed += o.missed;
        self.detections_us.extend_from_slice(&o.detections_us);
        self.false_suspicions += o.false_suspicions;
        self.censored += o.censored;
        self.mistake_durations_us
            .extend_from_slice(&o.mistake_durations_us);
        self.exposure_us += o.exposure_us;
        self.suspected_us += o.suspected_us;
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        self.heartbeats_sent += o.heartbeats_sent;
        self.heartbeats_received += o.heartbeats_received;
        self.connected_us += o.connected_us;
        self.worst_detection = worse(self.worst_detection, o.worst_detection);
        self.missed_seed = smaller(self.missed_seed, o.missed_seed);
        self.most_false_suspicions = worse(self.most_false_suspicions, o.most_false_suspicions);
        self.rtt.merge(&o.rtt);
        self.longest_gap = worse(self.longest_gap, o.longest_gap);
    }

    fn metrics(&self, confidence: f64) -> SideMetrics {
        let exposure_hours = hours(self.exposure_us);
        let per_hour = |n: f64| (exposure_hours > 0.0).then(|| n / exposure_hours);
        let (lower, upper) = poisson_interval(self.false_suspicions, confidence);
        let rate_interval = per_hour(1.0).map(|h| Interval {
            lower: lower * h,
            upper: upper * h,
        });
        let exposure_secs = self.exposure_us as f64 / 1e6;
        SideMetrics {
            pairs: self.pairs,
            failures: self.failures,
            detected: self.detections_us.len() as u64,
            missed: self.missed,
            detection: Quantiles::of(&self.detections_us, self.missed as usize),
            false_suspicions: self.false_suspicions,
            censored: self.censored,
            exposure_hours,
            mistake_rate_per_hour: per_hour(self.false_suspicions as f64),
            mistake_rate_interval: rate_interval,
            mistake_duration: Quantiles::of(&self.mistake_durations_us, 0),
            query_accuracy: (exposure_secs > 0.0)
                .then(|| 1.0 - self.suspected_us as f64 / 1e6 / exposure_secs),
            overhead: Overhead::of(self),
            worst_detection: self.worst_detection.map(|w| WorstRun {
                seed: w.seed,
                value: w.value as f64 / 1e6,
            }),
            missed_seed: self.missed_seed,
            most_false_suspicions: self.most_false_suspicions.map(|w| WorstRun {
                seed: w.seed,
                value: w.value as f64,
            }),
            rtt: RttQuantiles::of(&self.rtt),
            longest_gap: self.longest_gap.map(|w| WorstRun {
                seed: w.seed,
                value: w.value as f64 / 1e6,
            }),
        }
    }
}

/// The clients' connection attempts, of one run or of many merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconnectTally {
    /// Clients, summed over runs.
    pub clients: u64,
    /// Clients × run length, µs.
    pub client_time_us: u64,
    /// Connection attempts, each client's first included.
    pub attempts: u64,
    /// Connection attempts after each client's first.
    pub reconnects: u64,
    /// Sessions established afresh, each client's first included.
    pub fresh: u64,
    /// Fresh sessions after each client's first: sessions lost and opened again.
    pub renewed: u64,
    pub resumed: u64,
    /// The run with the most connection attempts in one [`STORM_WINDOW`].
    pub storm: Option<Worst>,
}

impl ReconnectTally {
    fn of_run(seed: u64, out: &Outcome) -> ReconnectTally {
        let clients = out.hosts.keys().filter(|n| *n != SERVER).count() as u64;
        let mut t = ReconnectTally {
            clients,
            client_time_us: clients * micros(out.duration),
            ..ReconnectTally::default()
        };
        for r in out.reconnects.values() {
            t.attempts += r.attempts;
            t.reconnects += r.attempts.saturating_sub(1);
            t.fresh += r.fresh;
            t.renewed += r.fresh.saturating_sub(1);
            t.resumed += r.resumed;
        }
        let peak = peak_in_window(&out.connect_attempts, STORM_WINDOW);
        t.storm = (peak > 0).then_some(Worst { seed, value: peak });
        t
    }

    fn merge(&mut self, o: &ReconnectTally) {
        self.clients += o.clients;
        self.client_time_us += o.client_time_us;
        self.attempts += o.attempts;
        self.reconnects += o.reconnects;
        self.fresh += o.fresh;
        self.renewed += o.renewed;
        self.resumed += o.resumed;
        self.storm = worse(self.storm, o.storm);
    }

    fn metrics(&self) -> ReconnectMetrics {
        let h = hours(self.client_time_us);
        let per_hour = |n: u64| (h > 0.0).then(|| n as f64 / h);
        ReconnectMetrics {
            clients: self.clients,
            connection_hours: h,
            attempts: self.attempts,
            reconnects: self.reconnects,
            fresh: self.fresh,
            renewed: self.renewed,
            resumed: self.resumed,
            reconnects_per_hour: per_hour(self.reconnects),
            renewed_per_hour: per_hour(self.renewed),
            resumed_per_hour: per_hour(self.resumed),
            peak_attempts_per_window: self.storm.map_or(0, |w| w.value),
            peak_seed: self.storm.map(|w| w.seed),
        }
    }
}

/// The most of `times` (ascending) that fall in any window `[t, t + window)`.
pub fn peak_in_window(times: &[Duration], window: Duration) -> u64 {
    let mut first = 0;
    let mut peak = 0;
    for (last, t) in times.iter().enumerate() {
        while *t >= times[first] + window {
            first += 1;
        }
        peak = peak.max(last + 1 - first);
    }
    peak as u64
}

/// What runs of one pairing showed: one run's, or many merged ([`RunSummary::merge`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub runs: u64,
    pub client: SideTally,
    pub server: SideTally,
    pub reconnects: ReconnectTally,
}

impl RunSummary {
    /// Reduces the run with `seed` to its summary; `pairs` are the [`Judge`]'s verdicts on it.
    pub fn of_run(seed: u64, out: &Outcome, pairs: &[PairQos]) -> RunSummary {
        let mut s = RunSummary {
            runs: 1,
            reconnects: ReconnectTally::of_run(seed, out),
            ..RunSummary::default()
        };
        for q in pairs {
            s.side_mut(Watcher::of(&q.watcher)).add_pair(seed, q);
        }
        for ((watcher, _), t) in &out.traffic {
            s.side_mut(Watcher::of(watcher)).add_traffic(t);
        }
        s.client.add_heartbeats(seed, &out.client_heartbeats);
        s.server.add_heartbeats(seed, &out.server_heartbeats);
        for w in [Watcher::Client, Watcher::Server] {
            let side = s.side_mut(w);
            side.most_false_suspicions = (side.false_suspicions > 0).then_some(Worst {
                seed,
                value: side.false_suspicions,
            });
        }
        s
    }

    /// Judges the run with `judge` and reduces it.
    pub fn judged(seed: u64, out: &Outcome, judge: &Judge) -> RunSummary {
        RunSummary::of_run(seed, out, &judge.judge(out))
    }

    /// Adds `other`'s runs to these.
    pub fn merge(&mut self, other: &RunSummary) {
        self.runs += other.runs;
        self.client.merge(&other.client);
        self.server.merge(&other.server);
        self.reconnects.merge(&other.reconnects);
    }

    pub fn side(&self, w: Watcher) -> &SideTally {
        match w {
            Watcher::Client => &self.client,
            Watcher::Server => &self.server,
        }
    }

    fn side_mut(&mut self, w: Watcher) -> &mut SideTally {
        match w {
            Watcher::Client => &mut self.client,
            Watcher::Server => &mut self.server,
        }
    }

    /// The metrics, intervals at `confidence` (e.g. 0.95).
    pub fn metrics(&self, confidence: f64) -> Metrics {
        Metrics {
            runs: self.runs,
            confidence,
            client: self.client.metrics(confidence),
            server: self.server.metrics(confidence),
            reconnects: self.reconnects.metrics(),
        }
    }
}

impl FromIterator<RunSummary> for RunSummary {
    fn from_iter<I: IntoIterator<Item = RunSummary>>(iter: I) -> RunSummary {
        let mut all = RunSummary::default();
        for s in iter {
            all.merge(&s);
        }
        all
    }
}

/// Quantiles of a sample, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Nearest rank; infinite when the rank falls among missed detections (`null` in JSON);
    /// `None` without a sample.
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// Of the finite values.
    pub mean: Option<f64>,
}

impl Quantiles {
    /// Of `us` (microseconds, any order) and `missed` infinite values.
    fn of(us: &[u64], missed: usize) -> Quantiles {
        let mut sorted = us.to_vec();
        sorted.sort_unstable();
        let mean = (!sorted.is_empty())
            .then(|| sorted.iter().map(|x| u128::from(*x)).sum::<u128>() as f64 / 1e6)
            .map(|sum| sum / sorted.len() as f64);
        let stats = DetectionStats {
            samples: sorted.iter().map(|x| *x as f64 / 1e6).collect(),
            missed,
        };
        Quantiles {
            p50: stats.quantile(0.5),
            p90: stats.quantile(0.9),
            p99: stats.quantile(0.99),
            max: stats.max(),
            mean,
        }
    }
}

/// Heartbeat round-trip quantiles, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttQuantiles {
    /// Round trips measured.
    pub samples: u64,
    /// Nearest rank, each the top of its histogram bucket (at most 0.78% high).
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// Exact.
    pub max: f64,
}

impl RttQuantiles {
    /// `None` without a sample.
    fn of(h: &LogHistogram) -> Option<RttQuantiles> {
        let secs = |q: f64| h.quantile(q).map_or(0.0, |us| us as f64 / 1e6);
        (h.count() > 0).then(|| RttQuantiles {
            samples: h.count(),
            p50: secs(0.5),
            p99: secs(0.99),
            p999: secs(0.999),
            max: h.max().map_or(0.0, |us| us as f64 / 1e6),
        })
    }
}

/// A confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// The run that was worst by one measure, to replay: its seed and the value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorstRun {
    pub seed: u64,
    pub value: f64,
}

/// What heartbeating cost one end of a connection, per second of connected time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overhead {
    pub connected_hours: f64,
    pub bytes_out_per_sec: Option<f64>,
    pub bytes_in_per_sec: Option<f64>,
    pub heartbeats_sent_per_sec: Option<f64>,
    pub heartbeats_received_per_sec: Option<f64>,
}

impl Overhead {
    fn of(t: &SideTally) -> Overhead {
        let secs = t.connected_us as f64 / 1e6;
        let per_sec = |n: u64| (secs > 0.0).then(|| n as f64 / secs);
        Overhead {
            connected_hours: hours(t.connected_us),
            bytes_out_per_sec: per_sec(t.bytes_out),
            bytes_in_per_sec: per_sec(t.bytes_in),
            heartbeats_sent_per_sec: per_sec(t.heartbeats_sent),
            heartbeats_received_per_sec: per_sec(t.heartbeats_received),
        }
    }
}

/// One side's metrics over the runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideMetrics {
    /// Watcher → peer pairs, summed over runs.
    pub pairs: u64,
    pub failures: u64,
    pub detected: u64,
    pub missed: u64,
    /// Detection time T_D, seconds; a missed detection counts as infinitely late.
    pub detection: Quantiles,
    pub false_suspicions: u64,
    /// False suspicions cut by a failure or the end of the run: no duration.
    pub censored: u64,
    /// Connection-hours during which a false suspicion was possible.
    pub exposure_hours: f64,
    /// λ_M: false suspicions per connection-hour; `None` without exposure.
    pub mistake_rate_per_hour: Option<f64>,
    /// The exact Poisson interval of λ_M at [`Metrics::confidence`].
    pub mistake_rate_interval: Option<Interval>,
    /// Mistake duration T_M, seconds.
    pub mistake_duration: Quantiles,
    /// P_A: the share of the exposure during which the live peer was trusted.
    pub query_accuracy: Option<f64>,
    pub overhead: Overhead,
    /// The run with the longest detection time (seconds).
    pub worst_detection: Option<WorstRun>,
    /// The smallest seed of a run with a missed detection.
    pub missed_seed: Option<u64>,
    /// The run with the most false suspicions on this side (their count).
    pub most_false_suspicions: Option<WorstRun>,
    /// Heartbeat round trips; left out when this side measured none (the server in one-way
    /// mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<RttQuantiles>,
    /// The longest gap between heartbeats received on one connection (seconds), and the run
    /// that had it; left out when no connection received two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_gap: Option<WorstRun>,
}

/// The clients' connection attempts over the runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconnectMetrics {
    /// Clients, summed over runs.
    pub clients: u64,
    /// Clients × run length.
    pub connection_hours: f64,
    pub attempts: u64,
    /// Attempts after each client's first.
    pub reconnects: u64,
    pub fresh: u64,
    /// Fresh sessions after each client's first.
    pub renewed: u64,
    pub resumed: u64,
    pub reconnects_per_hour: Option<f64>,
    pub renewed_per_hour: Option<f64>,
    pub resumed_per_hour: Option<f64>,
    /// The most connection attempts of all clients in any [`STORM_WINDOW`] of any run.
    pub peak_attempts_per_window: u64,
    /// The run that had it.
    pub peak_seed: Option<u64>,
}

/// The metrics of a pairing over its runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub runs: u64,
    /// Of the intervals.
    pub confidence: f64,
    /// The clients watching the server.
    pub client: SideMetrics,
    /// The server watching its clients.
    pub server: SideMetrics,
    pub reconnects: ReconnectMetrics,
}

impl Metrics {
    pub fn side(&self, w: Watcher) -> &SideMetrics {
        match w {
            Watcher::Client => &self.client,
            Watcher::Server => &self.server,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::proto::frame::HeartbeatMode;
    use crate::sim::runner::{Reconnects, Traffic};

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    const HOUR: f64 = 3600.0;

    /// A run of `clients` clients lasting `duration` seconds, with nothing recorded.
    fn outcome(clients: usize, duration: f64) -> Outcome {
        let mut hosts = BTreeMap::new();
        hosts.insert(SERVER.to_string(), SERVER.to_string());
        for c in 0..clients {
            hosts.insert(format!("client-{c}"), "clients".to_string());
        }
        Outcome {
            trace: Vec::new(),
            down: Vec::new(),
            transitions: Vec::new(),
            hosts,
            duration: s(duration),
            mode: HeartbeatMode::OneWay,
            reconnects: BTreeMap::new(),
            connect_attempts: Vec::new(),
            traffic: BTreeMap::new(),
            client_heartbeats: Heartbeats::default(),
            server_heartbeats: Heartbeats::default(),
        }
    }

    /// A client's verdict on the server: live for `exposure` seconds.
    fn client_pair(c: usize, exposure: f64) -> PairQos {
        PairQos {
            watcher: format!("client-{c}"),
            peer: SERVER.into(),
            exposure: s(exposure),
            ..PairQos::default()
        }
    }

    fn detected(c: usize, times: &[f64]) -> PairQos {
        PairQos {
            failures: times.len(),
            detections: times.iter().copied().map(s).collect(),
            ..client_pair(c, 100.0)
        }
    }

    fn run(seed: u64, pairs: &[PairQos]) -> RunSummary {
        RunSummary::of_run(seed, &outcome(pairs.len(), 100.0), pairs)
    }

    #[test]
    fn detection_quantiles_are_nearest_rank_over_every_pair_of_every_run() {
        let one = run(1, &[detected(0, &[1.0, 2.0, 3.0, 4.0, 5.0])]);
        let two = run(2, &[detected(0, &[6.0, 7.0, 8.0, 9.0, 10.0])]);
        let m = [two, one].into_iter().collect::<RunSummary>().metrics(0.95);
        let d = m.client.detection;
        assert_eq!((m.client.failures, m.client.detected), (10, 10));
        assert_eq!(
            (d.p50, d.p90, d.p99, d.max),
            (Some(5.0), Some(9.0), Some(10.0), Some(10.0))
        );
        assert_eq!(d.mean, Some(5.5));
        assert_eq!(
            m.client.worst_detection,
            Some(WorstRun {
                seed: 2,
                value: 10.0
            })
        );
    }

    #[test]
    fn a_missed_detection_counts_as_infinitely_late_and_names_its_seed() {
        let missed = PairQos {
            failures: 1,
            missed: 1,
            ..client_pair(0, 100.0)
        };
        let all: RunSummary = [run(4, &[detected(0, &[2.0])]), run(9, &[missed])]
            .into_iter()
            .collect();
        let m = all.metrics(0.95);
        assert_eq!((m.client.failures, m.client.missed), (2, 1));
        assert_eq!(m.client.detection.p50, Some(2.0));
        assert_eq!(m.client.detection.max, Some(f64::INFINITY));
        assert_eq!(m.client.detection.mean, Some(2.0));
        assert_eq!(m.client.missed_seed, Some(9));
    }

    #[test]
    fn no_false_suspicion_in_one_connection_hour_is_a_rate_of_zero_below_3_689_per_hour_at_95_percent()
     {
        let m = run(1, &[client_pair(0, HOUR)]).metrics(0.95);
        assert_eq!(m.client.exposure_hours, 1.0);
        assert_eq!(m.client.mistake_rate_per_hour, Some(0.0));
        let ci = m.client.mistake_rate_interval.unwrap();
        assert_eq!(ci.lower, 0.0);
        assert!((ci.upper - 3.689).abs() < 1e-3, "{ci:?}");
        assert_eq!(m.client.query_accuracy, Some(1.0));
    }

    #[test]
    fn the_mistake_rate_is_false_suspicions_per_connection_hour_with_an_exact_interval() {
        // Two connections, an hour each, two false suspicions each: 2/h, and the Garwood 95%
        // interval of a count of 4, [1.0899, 10.2416], halved.
        let pair = PairQos {
            false_suspicions: 2,
            mistake_durations: vec![s(1.0), s(3.0)],
            suspected: s(4.0),
            ..client_pair(0, HOUR)
        };
        let m = run(1, &[pair.clone(), pair]).metrics(0.95);
        assert_eq!(m.client.false_suspicions, 4);
        assert_eq!(m.client.mistake_rate_per_hour, Some(2.0));
        let ci = m.client.mistake_rate_interval.unwrap();
        let (lo, hi) = poisson_interval(4, 0.95);
        assert_eq!((ci.lower, ci.upper), (lo / 2.0, hi / 2.0));
        assert!((lo - 1.0899).abs() < 1e-3 && (hi - 10.2416).abs() < 1e-3);
        let t = m.client.mistake_duration;
        assert_eq!((t.mean, t.p99, t.max), (Some(2.0), Some(3.0), Some(3.0)));
    }

    #[test]
    fn query_accuracy_is_the_share_of_the_exposure_the_live_peer_was_trusted() {
        // 36 s suspected in one hour: trusted 99% of the time, censored suspicions included.
        let pair = PairQos {
            false_suspicions: 1,
            censored: 1,
            suspected: s(36.0),
            ..client_pair(0, HOUR)
        };
        let m = run(1, &[pair]).metrics(0.95);
        assert!((m.client.query_accuracy.unwrap() - 0.99).abs() < 1e-12);
        assert_eq!(m.client.censored, 1);
        assert_eq!(m.client.mistake_duration.mean, None);
    }

    #[test]
    fn the_server_side_is_kept_apart_from_the_client_side() {
        let server_view = PairQos {
            watcher: SERVER.into(),
            peer: "client-0".into(),
            false_suspicions: 3,
            exposure: s(HOUR),
            ..PairQos::default()
        };
        let m = run(5, &[client_pair(0, HOUR), server_view]).metrics(0.95);
        assert_eq!(m.client.false_suspicions, 0);
        assert_eq!(m.server.false_suspicions, 3);
        assert_eq!(m.side(Watcher::Server).mistake_rate_per_hour, Some(3.0));
        assert_eq!(m.client.most_false_suspicions, None);
        assert_eq!(
            m.server.most_false_suspicions,
            Some(WorstRun {
                seed: 5,
                value: 3.0
            })
        );
    }

    #[test]
    fn of_two_equally_bad_runs_the_smaller_seed_is_named_in_any_merge_order() {
        let a = run(7, &[detected(0, &[4.0])]);
        let b = run(3, &[detected(0, &[4.0])]);
        let ab: RunSummary = [a.clone(), b.clone()].into_iter().collect();
        let ba: RunSummary = [b, a].into_iter().collect();
        assert_eq!(ab.client.worst_detection.map(|w| w.seed), Some(3));
        assert_eq!(ab.metrics(0.95), ba.metrics(0.95));
    }

    fn eventful_run(seed: u64) -> RunSummary {
        let mut out = outcome(2, 60.0);
        out.reconnects.insert(
            "client-0".into(),
            Reconnects {
                attempts: 3 + seed % 3,
                fresh: 2,
                resumed: seed % 2,
            },
        );
        out.connect_attempts = (0..seed % 5).map(|i| s(10.0 + 0.1 * i as f64)).collect();
        out.traffic.insert(
            ("client-0".into(), SERVER.into()),
            Traffic {
                bytes_out: 17 * seed,
                connected: s(seed as f64),
                ..Traffic::default()
            },
        );
        let pairs = [
            detected(0, &[seed as f64 * 0.1]),
            PairQos {
                false_suspicions: (seed % 4) as usize,
                mistake_durations: vec![s(0.5); (seed % 4) as usize],
                ..client_pair(1, 60.0)
            },
        ];
        RunSummary::of_run(seed, &out, &pairs)
    }

    #[test]
    fn summaries_merged_in_two_halves_equal_the_summary_of_the_whole() {
        let runs: Vec<RunSummary> = (1..=10).map(eventful_run).collect();
        let whole: RunSummary = runs.iter().cloned().collect();
        let mut halves: RunSummary = runs[..4].iter().cloned().collect();
        halves.merge(&runs[4..].iter().cloned().collect());
        assert_eq!(halves, whole);
        assert_eq!(whole.runs, 10);
        // And the metrics do not depend on the order of the runs.
        let reversed: RunSummary = runs.iter().rev().cloned().collect();
        assert_eq!(reversed.metrics(0.9), whole.metrics(0.9));
    }

    #[test]
    fn a_summary_survives_a_json_line() {
        let summary: RunSummary = (1..=3).map(eventful_run).collect();
        let line = serde_json::to_string(&summary).unwrap();
        assert!(!line.contains('\n'));
        let back: RunSummary = serde_json::from_str(&line).unwrap();
        assert_eq!(back, summary);
        assert!(serde_json::to_string(&summary.metrics(0.95)).is_ok());
    }

    #[test]
    fn reconnects_are_attempts_after_each_clients_first_per_connection_hour() {
        let mut out = outcome(2, HOUR);
        let r = |attempts, fresh, resumed| Reconnects {
            attempts,
            fresh,
            resumed,
        };
        out.reconnects.insert("client-0".into(), r(5, 2, 2));
        out.reconnects.insert("client-1".into(), r(1, 1, 0));
        let m = RunSummary::of_run(1, &out, &[]).metrics(0.95).reconnects;
        assert_eq!((m.clients, m.connection_hours), (2, 2.0));
        assert_eq!((m.attempts, m.reconnects), (6, 4));
        assert_eq!((m.fresh, m.renewed, m.resumed), (3, 1, 2));
        assert_eq!(m.reconnects_per_hour, Some(2.0));
        assert_eq!(m.resumed_per_hour, Some(1.0));
    }

    #[test]
    fn the_storm_peak_is_the_most_attempts_in_any_one_second_of_any_run() {
        let times = |v: &[f64]| v.iter().copied().map(s).collect::<Vec<_>>();
        // 10.0, 10.5, 10.99 are in one second; 11.0 starts the next.
        let attempts = times(&[0.0, 10.0, 10.5, 10.99, 11.0, 11.2]);
        assert_eq!(peak_in_window(&attempts, STORM_WINDOW), 4);
        assert_eq!(peak_in_window(&times(&[1.0, 2.0, 3.0]), STORM_WINDOW), 1);
        assert_eq!(peak_in_window(&[], STORM_WINDOW), 0);
        let mut calm = outcome(1, 60.0);
        calm.connect_attempts = times(&[0.0, 30.0]);
        let mut stormy = outcome(1, 60.0);
        stormy.connect_attempts = attempts;
        let all: RunSummary = [
            RunSummary::of_run(1, &calm, &[]),
            RunSummary::of_run(2, &stormy, &[]),
        ]
        .into_iter()
        .collect();
        let m = all.metrics(0.95).reconnects;
        assert_eq!((m.peak_attempts_per_window, m.peak_seed), (4, Some(2)));
    }

    /// A run whose clients measured `rtts_ms` and whose longest gaps were `gaps` (client side,
    /// server side), in seconds.
    fn heartbeat_run(seed: u64, rtts_ms: &[u64], gaps: (f64, Option<f64>)) -> RunSummary {
        let mut out = outcome(1, 60.0);
        rtts_ms
            .iter()
            .for_each(|ms| out.client_heartbeats.rtt.record(ms * 1000));
        out.client_heartbeats.longest_gap = Some(s(gaps.0));
        out.server_heartbeats.longest_gap = gaps.1.map(s);
        RunSummary::of_run(seed, &out, &[])
    }

    #[test]
    fn round_trips_and_the_longest_gap_merge_to_the_same_metrics_in_any_grouping() {
        let runs: Vec<RunSummary> = (1..=9)
            .map(|seed| {
                let rtts: Vec<u64> = (0..100).map(|i| 10 + (i * seed) % 7).collect();
                heartbeat_run(seed, &rtts, (1.0 + seed as f64 % 4.0, Some(0.5)))
            })
            .collect();
        let whole: RunSummary = runs.iter().cloned().collect();
        let mut halves: RunSummary = runs[..5].iter().cloned().collect();
        halves.merge(&runs[5..].iter().cloned().collect());
        let reversed: RunSummary = runs.iter().rev().cloned().collect();
        assert_eq!(halves, whole);
        assert_eq!(reversed, whole);
        let m = whole.metrics(0.95);
        let rtt = m.client.rtt.unwrap();
        assert_eq!(rtt.samples, 900);
        // 10 … 16 ms: the median is 13 ms, the tail 16 ms, each within a bucket (0.78%).
        assert!(rtt.p50 >= 0.013 && rtt.p50 < 0.013 * 1.008, "{rtt:?}");
        assert!(rtt.p99 >= 0.016 && rtt.p999 <= 0.016, "{rtt:?}");
        assert_eq!(rtt.max, 0.016);
        // The longest gap is the worst run's, and the smaller seed wins a tie (3 and 7: 4 s).
        assert_eq!(
            m.client.longest_gap,
            Some(WorstRun {
                seed: 3,
                value: 4.0
            })
        );
        assert_eq!(m.server.longest_gap.map(|g| g.value), Some(0.5));
    }

    #[test]
    fn a_side_that_measured_no_round_trip_leaves_it_out_of_the_json() {
        let m = heartbeat_run(1, &[10], (1.0, None)).metrics(0.95);
        assert!(m.client.rtt.is_some());
        assert_eq!((m.server.rtt, m.server.longest_gap), (None, None));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["client"]["rtt"]["p50"], 0.01);
        assert_eq!(json["client"]["longest_gap"]["value"], 1.0);
        let server = json["server"].as_object().unwrap();
        assert!(!server.contains_key("rtt") && !server.contains_key("longest_gap"));
    }

    #[test]
    fn a_summary_written_before_round_trips_were_measured_still_reads() {
        let mut line = serde_json::to_value(eventful_run(1)).unwrap();
        for side in ["client", "server"] {
            let side = line[side].as_object_mut().unwrap();
            side.remove("rtt");
            side.remove("longest_gap");
        }
        let old: RunSummary = serde_json::from_value(line).unwrap();
        assert_eq!(old, eventful_run(1));
    }

    #[test]
    fn heartbeat_overhead_is_per_second_of_connected_time() {
        let mut out = outcome(2, 100.0);
        let end = |bytes_out, heartbeats_sent, connected| Traffic {
            bytes_out,
            heartbeats_sent,
            connected: s(connected),
            ..Traffic::default()
        };
        out.traffic
            .insert(("client-0".into(), SERVER.into()), end(1600, 80, 80.0));
        out.traffic
            .insert(("client-1".into(), SERVER.into()), end(400, 20, 20.0));
        out.traffic
            .insert((SERVER.into(), "client-0".into()), end(900, 0, 90.0));
        let m = RunSummary::of_run(1, &out, &[]).metrics(0.95);
        assert_eq!(m.client.overhead.bytes_out_per_sec, Some(20.0));
        assert_eq!(m.client.overhead.heartbeats_sent_per_sec, Some(1.0));
        assert_eq!(m.server.overhead.bytes_out_per_sec, Some(10.0));
        assert_eq!(m.server.overhead.heartbeats_sent_per_sec, Some(0.0));
        assert_eq!(m.client.overhead.connected_hours, 100.0 / 3600.0);
    }
}
