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
//!   failures, in connection-hours. λ_M is false suspicions per connection-hour of exposure.
//! - **Intervals of λ_M**, both at the same confidence:
//!   - *Poisson*: exact (Garwood) on the pooled count, as if every false suspicion were
//!     independent of every other;
//!   - *between seeds*: batch means over seeds, each seed's run one batch (false suspicions
//!     and exposure summed over its pairs), with a Student t interval on n − 1 degrees of
//!     freedom. Centred on the pooled rate R = Σxᵢ / Σeᵢ, standard error
//!     √(Σ(xᵢ − R·eᵢ)² / (n(n − 1))) / ē (the ratio estimator: with equal exposures, the plain
//!     standard error of the per-seed rates). False suspicions on a shared lossy link come in
//!     clusters that hit many connections of one run at once; the spread between runs sees
//!     that, the Poisson interval does not. It needs two seeds with exposure.
//!
//!   Assertions on a rate, and `tune`, use the one with the larger upper bound
//!   ([`SideMetrics::false_rate_interval`], [`RunSummary::false_rate_upper`]); which one is
//!   [`SideMetrics::mistake_rate_bound_from`]. Seeds are batches by their number: a seed merged
//!   twice is one batch, not two (the same evidence twice).
//! - **Detection time** quantiles are nearest-rank over every decided failure of every pair, a
//!   missed detection counting as infinitely late (as in [`DetectionStats`]); the mean is over
//!   the detected ones. Censored failures (the run ended before a detector had to decide, see
//!   [`PairQos::censored_failures`]) are neither: counted apart.
//! - **Mistake duration** T_M: the false suspicions that ended in trust; censored mistakes
//!   (still open at a failure or at the end of the run) are counted as false suspicions and
//!   left out. Each duration splits into the part the watcher was connected to its peer (the
//!   detector's) and the part it was not (reconnecting), with quantiles of each.
//! - **Query accuracy** P_A: 1 − suspected time / exposure, measured directly: every
//!   suspicion counts for the time it overlaps the exposure, a censored one up to the failure
//!   or the end of the run that cut it (see [`PairQos::suspected`]). Beside it,
//!   `query_accuracy_detector` = 1 − (time in false suspicions) / exposure, the detector's
//!   mistakes (with a reconnect they caused), and `reconnecting_share` = (time suspicions of
//!   real failures outlasted them) / exposure, the wait for the session after the peer came
//!   back, so that P_A = `query_accuracy_detector` − `reconnecting_share`.
//! - **Worst runs** ([`WorstRuns`]): for each kind of assertion, the seed whose run had the
//!   worst value of that very measure, ties to the smaller seed.
//! - **A side that never connected**: a run in which no pair of a side ever had an
//!   established connection measures nothing of that side; [`never_connected`] finds it, and
//!   callers treat it as an error, not as a perfect score.
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

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::delivery::{Delivery, Fates, Violation};
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
    /// Failures the runs ended too early to decide (see [`PairQos::censored_failures`]).
    #[serde(default)]
    pub censored_failures: u64,
    /// Detection times in µs, in merge order.
    pub detections_us: Vec<u64>,
    pub false_suspicions: u64,
    /// False suspicions without a duration (see [`PairQos::censored_mistakes`]).
    #[serde(alias = "censored")]
    pub censored_mistakes: u64,
    /// Durations of the false suspicions that ended in trust, µs, in merge order.
    pub mistake_durations_us: Vec<u64>,
    /// Of each of those, the part during which the watcher was connected to its peer, µs.
    #[serde(default)]
    pub mistake_connected_us: Vec<u64>,
    /// And the part during which it was not (reconnecting), µs.
    #[serde(default)]
    pub mistake_reconnecting_us: Vec<u64>,
    pub exposure_us: u64,
    /// Time within the exposure during which the watcher suspected its live peer.
    pub suspected_us: u64,
    /// The part of it during which the watcher was connected to the peer (the detector's).
    #[serde(default)]
    pub suspected_mistaken_us: u64,
    /// Per seed, what the between-seed interval and the worst runs need. (Absent from
    /// summaries written before it was kept.)
    #[serde(default)]
    pub per_seed: BTreeMap<u64, SeedTally>,
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

/// One side's counts in the run of one seed (in runs of it, if merged more than once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedTally {
    pub failures: u64,
    pub missed: u64,
    pub false_suspicions: u64,
    pub exposure_us: u64,
    pub suspected_us: u64,
    /// The longest detection time, µs.
    pub longest_detection_us: Option<u64>,
    /// The longest mistake duration, µs.
    pub longest_mistake_us: Option<u64>,
}

impl SeedTally {
    fn merge(&mut self, o: &SeedTally) {
        self.failures += o.failures;
        self.missed += o.missed;
        self.false_suspicions += o.false_suspicions;
        self.exposure_us += o.exposure_us;
        self.suspected_us += o.suspected_us;
        self.longest_detection_us = self.longest_detection_us.max(o.longest_detection_us);
        self.longest_mistake_us = self.longest_mistake_us.max(o.longest_mistake_us);
    }
}

impl SideTally {
    fn add_pair(&mut self, seed: u64, q: &PairQos) {
        self.pairs += 1;
        self.failures += q.failures as u64;
        self.missed += q.missed as u64;
        self.censored_failures += q.censored_failures as u64;
        self.detections_us
            .extend(q.detections.iter().copied().map(micros));
        self.false_suspicions += q.false_suspicions as u64;
        self.censored_mistakes += q.censored_mistakes as u64;
        self.mistake_durations_us
            .extend(q.mistake_durations.iter().copied().map(micros));
        for (i, d) in q.mistake_durations.iter().enumerate() {
            let connected = q.mistake_connected.get(i).copied().unwrap_or_default();
            self.mistake_connected_us.push(micros(connected));
            self.mistake_reconnecting_us
                .push(micros(d.saturating_sub(connected)));
        }
        self.exposure_us += micros(q.exposure);
        self.suspected_us += micros(q.suspected);
        self.suspected_mistaken_us += micros(q.suspected_mistaken);
        self.per_seed.entry(seed).or_default().merge(&SeedTally {
            failures: q.failures as u64,
            missed: q.missed as u64,
            false_suspicions: q.false_suspicions as u64,
            exposure_us: micros(q.exposure),
            suspected_us: micros(q.suspected),
            longest_detection_us: q.detections.iter().max().copied().map(micros),
            longest_mistake_us: q.mistake_durations.iter().max().copied().map(micros),
        });
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
        self.censored_failures += o.censored_failures;
        self.detections_us.extend_from_slice(&o.detections_us);
        self.false_suspicions += o.false_suspicions;
        self.censored_mistakes += o.censored_mistakes;
        self.mistake_durations_us
            .extend_from_slice(&o.mistake_durations_us);
        self.mistake_connected_us
            .extend_from_slice(&o.mistake_connected_us);
        self.mistake_reconnecting_us
            .extend_from_slice(&o.mistake_reconnecting_us);
        self.exposure_us += o.exposure_us;
        self.suspected_us += o.suspected_us;
        self.suspected_mistaken_us += o.suspected_mistaken_us;
        for (seed, t) in &o.per_seed {
            self.per_seed.entry(*seed).or_default().merge(t);
        }
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

    /// The upper bound of this side's false-suspicion rate at `confidence` (per
    /// connection-hour): the larger of the Poisson and the between-seed one. `None` without
    /// exposure.
    pub fn false_rate_upper(&self, confidence: f64) -> Option<f64> {
        self.rate_intervals(confidence).2.map(|i| i.upper)
    }

    /// The Poisson interval, the between-seed one, the wider of the two (the one to use) and
    /// which that is.
    fn rate_intervals(
        &self,
        confidence: f64,
    ) -> (
        Option<Interval>,
        Option<Interval>,
        Option<Interval>,
        Option<RateBound>,
    ) {
        let exposure_hours = hours(self.exposure_us);
        if exposure_hours <= 0.0 {
            return (None, None, None, None);
        }
        let (lower, upper) = poisson_interval(self.false_suspicions, confidence);
        let poisson = Interval {
            lower: lower / exposure_hours,
            upper: upper / exposure_hours,
        };
        let seeds = self
            .per_seed
            .values()
            .map(|t| (t.false_suspicions, t.exposure_us));
        let between = between_seeds_interval(seeds, confidence);
        let (bound, from) = match between {
            Some(b) if b.upper > poisson.upper => (b, RateBound::BetweenSeeds),
            Some(_) => (poisson, RateBound::Poisson),
            None => (poisson, RateBound::PoissonOnly),
        };
        (Some(poisson), between, Some(bound), Some(from))
    }

    /// The seed with the worst value of each measure an assertion bounds.
    fn worst_runs(&self) -> WorstRuns {
        if self.per_seed.is_empty() {
            // A summary written before seeds were kept apart: what it recorded.
            return WorstRuns {
                detection: self.missed_seed.or(self.worst_detection.map(|w| w.seed)),
                missed: self.missed_seed,
                false_suspicions: self.most_false_suspicions.map(|w| w.seed),
                ..WorstRuns::default()
            };
        }
        let seeds = &self.per_seed;
        let missed = worst_seed(seeds, |t| (t.missed > 0).then_some(t.missed as f64));
        let share = |n: u64, t: &SeedTally| {
            (n > 0 && t.exposure_us > 0).then(|| n as f64 / t.exposure_us as f64)
        };
        WorstRuns {
            detection: missed.or(worst_seed(seeds, |t| {
                t.longest_detection_us.map(|d| d as f64)
            })),
            missed,
            false_suspicions: worst_seed(seeds, |t| {
                (t.false_suspicions > 0).then_some(t.false_suspicions as f64)
            }),
            false_rate: worst_seed(seeds, |t| share(t.false_suspicions, t)),
            mistake_duration: worst_seed(seeds, |t| t.longest_mistake_us.map(|d| d as f64)),
            query_accuracy: worst_seed(seeds, |t| share(t.suspected_us, t)),
        }
    }

    fn metrics(&self, confidence: f64) -> SideMetrics {
        let exposure_hours = hours(self.exposure_us);
        let per_hour = |n: f64| (exposure_hours > 0.0).then(|| n / exposure_hours);
        let (rate_interval, between, bound, from) = self.rate_intervals(confidence);
        let exposure_secs = self.exposure_us as f64 / 1e6;
        let share = |us: u64| (exposure_secs > 0.0).then(|| us as f64 / 1e6 / exposure_secs);
        let reconnecting_us = self.suspected_us.saturating_sub(self.suspected_mistaken_us);
        SideMetrics {
            pairs: self.pairs,
            failures: self.failures,
            detected: self.detections_us.len() as u64,
            missed: self.missed,
            censored_failures: self.censored_failures,
            detection: Quantiles::of(&self.detections_us, self.missed as usize),
            false_suspicions: self.false_suspicions,
            censored_mistakes: self.censored_mistakes,
            exposure_hours,
            seeds: self.per_seed.values().filter(|t| t.exposure_us > 0).count() as u64,
            mistake_rate_per_hour: per_hour(self.false_suspicions as f64),
            mistake_rate_interval: rate_interval,
            mistake_rate_between_seeds: between,
            mistake_rate_bound: bound,
            mistake_rate_bound_from: from,
            mistake_duration: Quantiles::of(&self.mistake_durations_us, 0),
            mistake_duration_detector: Quantiles::of(&self.mistake_connected_us, 0),
            mistake_duration_reconnecting: Quantiles::of(&self.mistake_reconnecting_us, 0),
            query_accuracy: share(self.suspected_us).map(|x| 1.0 - x),
            query_accuracy_detector: share(self.suspected_mistaken_us).map(|x| 1.0 - x),
            reconnecting_share: share(reconnecting_us),
            worst_runs: self.worst_runs(),
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

/// The seed of `seeds` with the largest `value` (`None`: not a candidate); ties go to the
/// smaller seed.
fn worst_seed(
    seeds: &BTreeMap<u64, SeedTally>,
    value: impl Fn(&SeedTally) -> Option<f64>,
) -> Option<u64> {
    let mut worst: Option<(u64, f64)> = None;
    for (seed, t) in seeds {
        if let Some(v) = value(t)
            && worst.is_none_or(|(_, w)| v > w)
        {
            worst = Some((*seed, v));
        }
    }
    worst.map(|(seed, _)| seed)
}

/// The between-seed interval of a rate per hour at `confidence`, from each seed's
/// `(events, exposure µs)`: batch means, a Student t interval around the pooled rate (see the
/// module docs). `None` with fewer than two seeds with exposure.
pub fn between_seeds_interval(
    seeds: impl IntoIterator<Item = (u64, u64)>,
    confidence: f64,
) -> Option<Interval> {
    let batches: Vec<(f64, f64)> = seeds
        .into_iter()
        .filter(|(_, e)| *e > 0)
        .map(|(x, e)| (x as f64, hours(e)))
        .collect();
    let n = batches.len();
    if n < 2 {
        return None;
    }
    let events: f64 = batches.iter().map(|b| b.0).sum();
    let exposure: f64 = batches.iter().map(|b| b.1).sum();
    let rate = events / exposure;
    let mean_exposure = exposure / n as f64;
    let squares: f64 = batches
        .iter()
        .map(|(x, e)| (x - rate * e) * (x - rate * e))
        .sum();
    let se = (squares / (n * (n - 1)) as f64).sqrt() / mean_exposure;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("n ≥ 2: positive degrees of freedom")
        .inverse_cdf(0.5 + confidence / 2.0);
    Some(Interval {
        lower: (rate - t * se).max(0.0),
        upper: rate + t * se,
    })
}

/// The sides of a run that never had an established connection: no pair of the side (no
/// client watching the server, or the server watching no client) was ever connected. Such a
/// run measures nothing of that side (no false suspicion, P_A = 1), so it is an error, not a
/// perfect score. A run without clients has no pairs and nothing to report.
pub fn never_connected(out: &Outcome) -> Vec<Watcher> {
    let clients = out.hosts.keys().any(|n| n != SERVER);
    if !clients {
        return Vec::new();
    }
    [Watcher::Client, Watcher::Server]
        .into_iter()
        .filter(|w| {
            !out.connected
                .iter()
                .any(|((watcher, _), periods)| Watcher::of(watcher) == *w && !periods.is_empty())
        })
        .collect()
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
    /// What became of the applications' messages, when the runs had traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Packets dropped by full link queues, summed over the runs.
    #[serde(default)]
    pub queue_drops: u64,
}

impl RunSummary {
    /// Reduces the run with `seed` to its summary; `pairs` are the [`Judge`]'s verdicts on it.
    pub fn of_run(seed: u64, out: &Outcome, pairs: &[PairQos]) -> RunSummary {
        let mut s = RunSummary {
            runs: 1,
            reconnects: ReconnectTally::of_run(seed, out),
            delivery: out.delivery.clone(),
            queue_drops: out.queue_drops,
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
        self.queue_drops += other.queue_drops;
        match (&mut self.delivery, &other.delivery) {
            (Some(d), Some(o)) => d.merge(o),
            (d @ None, Some(o)) => *d = Some(o.clone()),
            (_, None) => {}
        }
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

    /// The upper bound of the worse side's false-suspicion rate at `confidence`, per
    /// connection-hour: for each side the larger of the Poisson and the between-seed bound
    /// ([`SideTally::false_rate_upper`]). `None` when neither side had exposure.
    pub fn false_rate_upper(&self, confidence: f64) -> Option<f64> {
        let (c, s) = (
            self.client.false_rate_upper(confidence),
            self.server.false_rate_upper(confidence),
        );
        match (c, s) {
            (Some(c), Some(s)) => Some(c.max(s)),
            (c, s) => c.or(s),
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
            delivery: self.delivery.as_ref().map(DeliveryMetrics::of),
            queue_drops: self.queue_drops,
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

/// Which interval of λ_M bounds it (see [`SideMetrics::mistake_rate_bound`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateBound {
    /// The Poisson interval: its upper bound is at least the between-seed one.
    Poisson,
    /// The between-seed interval: its upper bound is larger than the Poisson one (the false
    /// suspicions cluster).
    BetweenSeeds,
    /// The Poisson interval, the only one: fewer than two seeds (one seed) have exposure.
    PoissonOnly,
}

impl RateBound {
    /// For a table: `poisson`, `seeds`, `poisson (1 seed)`.
    pub fn label(self) -> &'static str {
        match self {
            RateBound::Poisson => "poisson",
            RateBound::BetweenSeeds => "seeds",
            RateBound::PoissonOnly => "poisson (1 seed)",
        }
    }
}

/// For each kind of assertion, the seed whose run had the worst value of that very measure:
/// the run to replay when it fails. Ties go to the smaller seed; `None` when no run had any
/// (no miss, no false suspicion, …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorstRuns {
    /// For detection-time quantiles: the run with the most missed detections if any run
    /// missed one (a miss is infinitely late), else the run with the longest detection.
    pub detection: Option<u64>,
    /// The run with the most missed detections.
    pub missed: Option<u64>,
    /// The run with the most false suspicions.
    pub false_suspicions: Option<u64>,
    /// The run with the highest false suspicions per connection-hour of its exposure.
    pub false_rate: Option<u64>,
    /// The run with the longest mistake duration.
    pub mistake_duration: Option<u64>,
    /// The run with the lowest P_A (the largest share of its exposure suspected).
    pub query_accuracy: Option<u64>,
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
    /// Failures the runs ended too early to decide (see [`PairQos::censored_failures`]):
    /// neither detected nor missed, and not in the detection quantiles.
    #[serde(default)]
    pub censored_failures: u64,
    /// Detection time T_D, seconds; a missed detection counts as infinitely late.
    pub detection: Quantiles,
    pub false_suspicions: u64,
    /// False suspicions cut by a failure or the end of the run: no duration.
    #[serde(alias = "censored")]
    pub censored_mistakes: u64,
    /// Connection-hours during which a false suspicion was possible.
    pub exposure_hours: f64,
    /// Seeds (runs) with exposure: the batches of the between-seed interval.
    #[serde(default)]
    pub seeds: u64,
    /// λ_M: false suspicions per connection-hour; `None` without exposure.
    pub mistake_rate_per_hour: Option<f64>,
    /// The exact Poisson interval of λ_M at [`Metrics::confidence`].
    pub mistake_rate_interval: Option<Interval>,
    /// The between-seed (batch means, Student t) interval of λ_M at the same confidence;
    /// `None` with fewer than two seeds.
    #[serde(default)]
    pub mistake_rate_between_seeds: Option<Interval>,
    /// The interval assertions and `tune` use: of the two, the one with the larger upper
    /// bound. `None` without exposure.
    #[serde(default)]
    pub mistake_rate_bound: Option<Interval>,
    /// Which of the two [`SideMetrics::mistake_rate_bound`] is.
    #[serde(default)]
    pub mistake_rate_bound_from: Option<RateBound>,
    /// Mistake duration T_M, seconds.
    pub mistake_duration: Quantiles,
    /// Of each mistake duration, the part the watcher was connected to its peer (the
    /// detector's doing), seconds.
    #[serde(default)]
    pub mistake_duration_detector: Quantiles,
    /// And the part it had no connection (reconnecting), seconds.
    #[serde(default)]
    pub mistake_duration_reconnecting: Quantiles,
    /// P_A: the share of the exposure during which the live peer was trusted.
    pub query_accuracy: Option<f64>,
    /// P_A counting only the detector's mistakes (false suspicions, and the reconnects they
    /// cost): 1 − time in false suspicions / exposure.
    #[serde(default)]
    pub query_accuracy_detector: Option<f64>,
    /// The share of the exposure a live peer was still suspected after a real failure ended
    /// (reconnecting: backoff, breaker, handshake): reconnect policy, not detector quality.
    /// `query_accuracy` = `query_accuracy_detector` − `reconnecting_share`.
    #[serde(default)]
    pub reconnecting_share: Option<f64>,
    /// For each kind of assertion, the run to replay.
    #[serde(default)]
    pub worst_runs: WorstRuns,
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
    /// The delivery checker's counts, when the runs had traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryMetrics>,
    /// Packets dropped by full link queues over the runs (each resent by TCP).
    #[serde(default)]
    pub queue_drops: u64,
}

/// What became of the applications' messages over the runs ([`super::delivery`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryMetrics {
    #[serde(flatten)]
    pub fates: Fates,
    /// From the hand-over to the session to the receiving application, in seconds; `None`
    /// without a delivery.
    pub latency: Option<RttQuantiles>,
    /// The first violations, each with the seed of its run.
    pub violations: Vec<(u64, Violation)>,
}

impl DeliveryMetrics {
    fn of(d: &Delivery) -> DeliveryMetrics {
        DeliveryMetrics {
            fates: d.fates,
            latency: RttQuantiles::of(&d.latency),
            violations: d.violations.clone(),
        }
    }
}

impl SideMetrics {
    /// The interval of λ_M to judge by: the wider of the Poisson and the between-seed one.
    pub fn false_rate_interval(&self) -> Option<Interval> {
        self.mistake_rate_bound
    }

    /// Its upper bound, per connection-hour.
    pub fn false_rate_upper(&self) -> Option<f64> {
        self.mistake_rate_bound.map(|i| i.upper)
    }
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
            connected: BTreeMap::new(),
            client_heartbeats: Heartbeats::default(),
            server_heartbeats: Heartbeats::default(),
            delivery: None,
            queue_drops: 0,
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
            censored_mistakes: 1,
            suspected: s(36.0),
            ..client_pair(0, HOUR)
        };
        let m = run(1, &[pair]).metrics(0.95);
        assert!((m.client.query_accuracy.unwrap() - 0.99).abs() < 1e-12);
        assert_eq!(m.client.censored_mistakes, 1);
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

    /// One run of one client watching the server for an hour, with `false_suspicions`.
    fn hour_with(seed: u64, false_suspicions: usize) -> RunSummary {
        run(
            seed,
            &[PairQos {
                false_suspicions,
                ..client_pair(0, HOUR)
            }],
        )
    }

    #[test]
    fn clustered_false_suspicions_are_bounded_by_the_wider_between_seed_interval() {
        // 20 false suspicions in 4 connection-hours, all in one run: 5/h pooled. Poisson upper
        // bound 30.89/4 = 7.72/h; between seeds the rates 0, 0, 0, 20 have mean 5 and standard
        // error 5, so 5 + t(0.975, 3)·5 = 5 + 3.1824·5 = 20.91/h.
        let all: RunSummary = [0, 0, 0, 20]
            .into_iter()
            .enumerate()
            .map(|(i, n)| hour_with(i as u64 + 1, n))
            .collect();
        let m = all.metrics(0.95).client;
        assert_eq!(m.seeds, 4);
        let poisson = m.mistake_rate_interval.unwrap();
        let (_, hi) = poisson_interval(20, 0.95);
        assert!((poisson.upper - hi / 4.0).abs() < 1e-12);
        let between = m.mistake_rate_between_seeds.unwrap();
        assert!((between.upper - 20.912).abs() < 1e-3, "{between:?}");
        assert_eq!(between.lower, 0.0);
        assert_eq!(m.mistake_rate_bound, Some(between));
        assert_eq!(m.mistake_rate_bound_from, Some(RateBound::BetweenSeeds));
        assert_eq!(m.false_rate_upper(), Some(between.upper));
        assert_eq!(all.false_rate_upper(0.95), Some(between.upper));
    }

    #[test]
    fn evenly_spread_false_suspicions_are_bounded_by_the_wider_poisson_interval() {
        let all: RunSummary = (1..=4).map(|seed| hour_with(seed, 5)).collect();
        let m = all.metrics(0.95).client;
        let between = m.mistake_rate_between_seeds.unwrap();
        assert_eq!((between.lower, between.upper), (5.0, 5.0));
        assert_eq!(m.mistake_rate_bound, m.mistake_rate_interval);
        assert_eq!(m.mistake_rate_bound_from, Some(RateBound::Poisson));
    }

    #[test]
    fn with_one_seed_only_the_poisson_bound_exists_and_it_says_so() {
        let m = hour_with(1, 3).metrics(0.95).client;
        assert_eq!(m.mistake_rate_between_seeds, None);
        assert_eq!(m.mistake_rate_bound, m.mistake_rate_interval);
        assert_eq!(m.mistake_rate_bound_from, Some(RateBound::PoissonOnly));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["mistake_rate_bound_from"], "poisson-only");
    }

    #[test]
    fn a_seed_merged_twice_is_one_batch_not_two() {
        let twice: RunSummary = [hour_with(7, 2), hour_with(7, 2)].into_iter().collect();
        let m = twice.metrics(0.95).client;
        assert_eq!(m.seeds, 1);
        assert_eq!(m.mistake_rate_between_seeds, None);
    }

    #[test]
    fn the_between_seed_interval_of_equal_exposures_is_the_t_interval_of_the_per_seed_rates() {
        // Rates 1, 2, 3 per hour: mean 2, standard deviation 1, t(0.95, 2) = 2.919986.
        let hour_us = 3_600_000_000;
        let i = between_seeds_interval([(1, hour_us), (2, hour_us), (3, hour_us)], 0.9).unwrap();
        let half = 2.919986 / 3f64.sqrt();
        assert!((i.lower - (2.0 - half)).abs() < 1e-5, "{i:?}");
        assert!((i.upper - (2.0 + half)).abs() < 1e-5, "{i:?}");
        // Seeds without exposure are not batches.
        assert_eq!(between_seeds_interval([(0, 0), (1, hour_us)], 0.9), None);
    }

    #[test]
    fn each_worst_run_is_the_seed_with_the_worst_value_of_its_own_measure() {
        // Seed 2: the longest detection, no miss. Seed 5: a miss. Seed 3: the most false
        // suspicions (4 in 4 connection-hours); seed 4: fewer (2) in less time (1/2 h), so the
        // highest rate, and the longest mistake.
        let missed = PairQos {
            failures: 1,
            missed: 1,
            ..client_pair(0, 100.0)
        };
        let many = PairQos {
            false_suspicions: 4,
            mistake_durations: vec![s(1.0); 4],
            suspected: s(4.0),
            ..client_pair(0, 4.0 * HOUR)
        };
        let dense = PairQos {
            false_suspicions: 2,
            mistake_durations: vec![s(2.0), s(9.0)],
            suspected: s(11.0),
            ..client_pair(0, HOUR / 2.0)
        };
        let all: RunSummary = [
            run(2, &[detected(0, &[8.0])]),
            run(3, &[many]),
            run(4, &[dense]),
            run(5, &[missed]),
            run(6, &[detected(0, &[1.0])]),
        ]
        .into_iter()
        .collect();
        let w = all.metrics(0.95).client.worst_runs;
        assert_eq!((w.missed, w.detection), (Some(5), Some(5)));
        assert_eq!((w.false_suspicions, w.false_rate), (Some(3), Some(4)));
        assert_eq!((w.mistake_duration, w.query_accuracy), (Some(4), Some(4)));
        // Without a miss, the detection's worst run is the longest detection.
        let detected_only: RunSummary = [
            run(2, &[detected(0, &[8.0])]),
            run(6, &[detected(0, &[1.0])]),
        ]
        .into_iter()
        .collect();
        let w = detected_only.metrics(0.95).client.worst_runs;
        assert_eq!((w.detection, w.missed), (Some(2), None));
    }

    #[test]
    fn censored_failures_are_counted_apart_from_missed_and_detected_ones() {
        let pair = PairQos {
            failures: 3,
            detections: vec![s(2.0)],
            missed: 1,
            censored_failures: 1,
            ..client_pair(0, HOUR)
        };
        let m = run(1, &[pair]).metrics(0.95).client;
        assert_eq!(
            (m.failures, m.detected, m.missed, m.censored_failures),
            (3, 1, 1, 1)
        );
        assert_eq!(m.detection.p50, Some(2.0));
        assert_eq!(m.detection.max, Some(f64::INFINITY));
    }

    #[test]
    fn query_accuracy_splits_into_the_detectors_part_and_the_share_lost_reconnecting() {
        // 36 s suspected in an hour, 9 s of it in false suspicions (the rest waiting for the
        // session after a failure): P_A 0.99, the detector's 0.9975, and 0.0075 of the hour
        // spent reconnecting. The mistakes' durations split by connection: 6 + 3 s connected.
        let pair = PairQos {
            false_suspicions: 2,
            mistake_durations: vec![s(6.0), s(30.0)],
            mistake_connected: vec![s(6.0), s(3.0)],
            suspected: s(36.0),
            suspected_mistaken: s(9.0),
            ..client_pair(0, HOUR)
        };
        let m = run(1, &[pair]).metrics(0.95).client;
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        assert!(close(m.query_accuracy, 0.99));
        assert!(close(m.query_accuracy_detector, 0.9975));
        assert!(close(m.reconnecting_share, 0.0075));
        assert_eq!(m.mistake_duration_detector.max, Some(6.0));
        assert_eq!(m.mistake_duration_reconnecting.max, Some(27.0));
        assert_eq!(m.mistake_duration_reconnecting.mean, Some(13.5));
    }

    #[test]
    fn a_side_that_never_connected_is_named_and_one_that_did_is_not() {
        let mut out = outcome(2, 60.0);
        assert_eq!(
            never_connected(&out),
            vec![Watcher::Client, Watcher::Server]
        );
        out.connected
            .insert(("client-1".into(), SERVER.into()), vec![s(1.0)..s(60.0)]);
        assert_eq!(never_connected(&out), vec![Watcher::Server]);
        out.connected
            .insert((SERVER.into(), "client-1".into()), vec![s(1.0)..s(60.0)]);
        assert!(never_connected(&out).is_empty());
    }

    #[test]
    fn a_summary_written_before_seeds_were_kept_apart_still_reads_and_names_its_worst_runs() {
        let mut line = serde_json::to_value(run(9, &[detected(0, &[3.0])])).unwrap();
        for side in ["client", "server"] {
            let side = line[side].as_object_mut().unwrap();
            for key in [
                "per_seed",
                "censored_failures",
                "mistake_connected_us",
                "mistake_reconnecting_us",
                "suspected_mistaken_us",
            ] {
                side.remove(key);
            }
            let censored = side.remove("censored_mistakes").unwrap();
            side.insert("censored".into(), censored);
        }
        let old: RunSummary = serde_json::from_value(line).unwrap();
        let m = old.metrics(0.95).client;
        assert_eq!(m.worst_runs.detection, Some(9));
        assert_eq!(m.mistake_rate_bound_from, Some(RateBound::PoissonOnly));
    }
}
