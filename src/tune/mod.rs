//! `mcpsim tune`: which heartbeat interval, miss threshold and detector to run, given a network
//! (a scenario) and limits on detection time and false suspicions.
//!
//! Every pairing of the grid runs on the same seeds (common random numbers), in rounds: each
//! round adds seeds to the pairings whose false-suspicion rate is not yet known well enough,
//! until all are ([`Budget::precision`]) or the seed or time budget is spent; the report says
//! which. A pairing's rate is known well enough when its confidence interval lies wholly on one
//! side of the limit (the decision cannot change) or is narrow: half-width at most
//! `precision` × the estimate.
//!
//! The report ([`TuneReport`]) marks the Pareto frontier of detection time against
//! false-suspicion rate (overhead breaks ties) and recommends the cheapest pairing (least heartbeat overhead) that meets
//! the limits, with its margins; or says that none does and which limit came closest.

pub mod compare;
pub mod render;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::StackConfig;
use crate::scenario::check::{self, Progress, RunError};
use crate::scenario::{Engine, Plan};
use crate::sim::metrics::{Metrics, RunSummary, SideMetrics};

/// What the chosen pairing must achieve, on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Detection time p99 at most this (and no missed detection).
    pub max_detection: Duration,
    /// False suspicions per connection-hour: the upper end of the interval at most this.
    pub max_false_rate: f64,
    /// Of that interval.
    pub confidence: f64,
    /// The recommendation must beat both limits by at least this fraction of each (0.2: a
    /// detection p99 at most 80% of its limit, a rate upper bound at most 80% of its limit),
    /// so that what was measured still holds where conditions are a little worse.
    #[serde(default = "default_margin")]
    pub margin: f64,
}

/// The margin a recommendation needs unless told otherwise.
pub const DEFAULT_MARGIN: f64 = 0.2;

fn default_margin() -> f64 {
    DEFAULT_MARGIN
}

/// How long to keep running seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Stop adding seeds to a pairing when its rate interval's half-width is at most this
    /// fraction of the estimate (or the interval is wholly on one side of the limit).
    pub precision: f64,
    /// Seeds every pairing runs at least, and the seeds added per round.
    pub seeds_per_round: u64,
    /// At most this many seeds per pairing.
    pub max_seeds: u64,
    /// Start no new round after this much wall time.
    pub wall: Option<Duration>,
}

/// Why the sweep stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Every pairing's rate is known to the requested precision or decided against the limit.
    Precision,
    /// Some pairing reached the most seeds allowed.
    SeedBudget,
    /// The wall-time budget ran out.
    TimeBudget,
    /// Fixed seeds were run (a shard, or `--seeds`): no stopping rule.
    FixedSeeds,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Precision => {
                "every pairing's false-suspicion rate reached the requested precision"
            }
            StopReason::SeedBudget => {
                "the seed budget was spent before every rate reached the requested precision"
            }
            StopReason::TimeBudget => {
                "the time budget was spent before every rate reached the requested precision"
            }
            StopReason::FixedSeeds => "a fixed set of seeds was run",
        }
    }
}

/// One pairing's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneRow {
    /// `1s/3` or `phi:1s/3`.
    pub pairing: String,
    pub detector: String,
    pub interval_ms: u64,
    pub miss_threshold: u8,
    /// Seeds run.
    pub seeds: u64,
    /// At [`Limits::confidence`].
    pub metrics: Metrics,
    /// The worse side's detection p99, seconds (`inf` when a failure went undetected, `None`
    /// when there were no failures).
    pub detection_p99_s: Option<f64>,
    /// The worse side's λ_M and its interval, per connection-hour.
    pub false_rate: Option<f64>,
    pub false_rate_lower: Option<f64>,
    pub false_rate_upper: Option<f64>,
    /// Heartbeat overhead: the client's and the server's bytes sent per second of connection.
    pub overhead_bytes_per_s: Option<f64>,
    /// Heartbeat frames sent per second per connection, both ends.
    pub overhead_frames_per_s: Option<f64>,
    /// On the Pareto frontier of detection p99 against false rate (see [`mark_pareto`]).
    pub pareto: bool,
    pub meets_limits: bool,
    /// The smaller of its two margins as a fraction of the limit: detection (1 − p99 ÷ limit)
    /// and false rate (1 − upper bound ÷ limit); `None` when a limit is missed.
    #[serde(default)]
    pub safety: Option<f64>,
    /// Meets both limits with at least [`Limits::margin`] to spare.
    #[serde(default)]
    pub meets_with_margin: bool,
    /// Whether the rate's interval settled (see the module docs).
    pub settled: bool,
}

/// The recommendation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recommendation {
    pub pairing: String,
    /// Limit minus measured, seconds.
    pub detection_margin_s: f64,
    /// Limit minus the rate's upper bound, per connection-hour.
    pub false_rate_margin: f64,
    /// The smaller margin as a fraction of its limit.
    pub safety: f64,
    /// The whole stack configuration that was measured: what `--emit-config` writes and
    /// `mcpsim serve/client --config` run.
    pub config: StackConfig,
    /// The next-safer choice: the cheapest pairing with a wider margin, and what it costs.
    pub alternative: Option<Alternative>,
}

/// A safer pairing than the recommendation, at a price.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Alternative {
    pub pairing: String,
    pub detection_margin_s: f64,
    pub false_rate_margin: f64,
    pub safety: f64,
    /// Heartbeat bytes per second per connection (both ends) over the recommendation's.
    pub extra_bytes_per_s: f64,
}

/// When nothing meets the limits: the pairing that came closest, and the limit it misses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Closest {
    pub pairing: String,
    /// `detection` or `false-rate`.
    pub limit: String,
    /// Measured ÷ limit for that limit (> 1).
    pub ratio: f64,
}

/// A pairing of the grid, as reports name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingInfo {
    pub pairing: String,
    pub detector: String,
    pub interval_ms: u64,
    pub miss_threshold: u8,
}

/// What was swept: enough to build a report without the scenario file (shards carry it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneMeta {
    pub scenario: String,
    pub description: Option<String>,
    pub sessions: usize,
    pub duration_s: f64,
    pub pairings: Vec<PairingInfo>,
    /// The stack every pairing runs, but for its interval, k and detector.
    #[serde(default)]
    pub stack: StackConfig,
    /// The simulator back-end the runs use.
    #[serde(default)]
    pub engine: Engine,
}

impl TuneMeta {
    pub fn of(plan: &Plan) -> TuneMeta {
        let base = plan.scenario(0);
        TuneMeta {
            scenario: plan.name.clone(),
            description: plan.description.clone(),
            sessions: base.sessions,
            duration_s: base.duration.as_secs_f64(),
            pairings: plan
                .pairings
                .iter()
                .enumerate()
                .map(|(i, p)| PairingInfo {
                    pairing: plan.pairing_name(i),
                    detector: p.detector.name().to_string(),
                    interval_ms: p.interval.as_millis() as u64,
                    miss_threshold: p.miss_threshold,
                })
                .collect(),
            stack: plan.stack(0),
            engine: plan.engine,
        }
    }
}

/// Everything `tune` found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneReport {
    pub scenario: String,
    pub description: Option<String>,
    pub sessions: usize,
    pub duration_s: f64,
    /// The simulator back-end the runs used.
    #[serde(default)]
    pub engine: Engine,
    pub limits: Limits,
    pub budget: Budget,
    pub stop: StopReason,
    /// Wall time of the sweep, seconds.
    pub wall_s: f64,
    /// Simulated connection-hours over all runs.
    pub connection_hours: f64,
    pub rows: Vec<TuneRow>,
    pub recommendation: Option<Recommendation>,
    pub closest: Option<Closest>,
    /// The command that reproduces this sweep.
    pub command: String,
}

/// The seeds of round `r` (0-based): `seeds_per_round` consecutive seeds.
fn round_seeds(budget: &Budget, r: u64) -> std::ops::Range<u64> {
    let n = budget.seeds_per_round.max(1);
    1 + r * n..1 + (r + 1) * n
}

/// Runs the adaptive sweep of `plan` and reports. `progress(progress_this_round, round)`.
pub fn tune(
    plan: &Plan,
    limits: Limits,
    budget: Budget,
    threads: usize,
    command: String,
    progress: impl Fn(Progress, u64) + Sync,
) -> Result<TuneReport, RunError> {
    let started = Instant::now();
    let n = plan.pairings.len();
    let mut summaries = vec![RunSummary::default(); n];
    let mut seeds = vec![0u64; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut round = 0;
    let stop = loop {
        let round_seeds = round_seeds(&budget, round);
        let jobs: Vec<(usize, u64)> = active
            .iter()
            .flat_map(|&p| round_seeds.clone().map(move |s| (p, s)))
            .collect();
        let results = check::run_jobs(plan, &jobs, threads, |p| progress(p, round))?;
        for (&(p, _), s) in jobs.iter().zip(&results) {
            summaries[p].merge(s);
            seeds[p] += 1;
        }
        round += 1;
        active.retain(|&p| !settled(&summaries[p], &limits, budget.precision));
        if active.is_empty() {
            break StopReason::Precision;
        }
        if active
            .iter()
            .any(|&p| seeds[p] + budget.seeds_per_round > budget.max_seeds)
        {
            break StopReason::SeedBudget;
        }
        if budget.wall.is_some_and(|w| started.elapsed() >= w) {
            break StopReason::TimeBudget;
        }
    };
    Ok(build_report(
        &TuneMeta::of(plan),
        limits,
        budget,
        stop,
        summaries,
        seeds,
        started.elapsed().as_secs_f64(),
        command,
    ))
}

/// Whether a pairing's false-suspicion rate is known well enough (see the module docs).
pub fn settled(s: &RunSummary, limits: &Limits, precision: f64) -> bool {
    let m = s.metrics(limits.confidence);
    [&m.client, &m.server].into_iter().all(|side| {
        let (Some(rate), Some(ci)) = (side.mistake_rate_per_hour, side.false_rate_interval())
        else {
            return false;
        };
        // Decided against the limit the recommendation must meet: the limit less its margin.
        let limit = limits.max_false_rate * (1.0 - limits.margin);
        let decided = ci.upper <= limit || ci.lower > limit;
        let narrow = rate > 0.0 && (ci.upper - ci.lower) / 2.0 <= precision * rate;
        decided || narrow
    })
}

/// The report from each pairing's merged summary and seed count.
#[allow(clippy::too_many_arguments)]
pub fn build_report(
    meta: &TuneMeta,
    limits: Limits,
    budget: Budget,
    stop: StopReason,
    summaries: Vec<RunSummary>,
    seeds: Vec<u64>,
    wall_s: f64,
    command: String,
) -> TuneReport {
    let mut rows: Vec<TuneRow> = summaries
        .iter()
        .zip(&meta.pairings)
        .zip(&seeds)
        .map(|((s, p), n)| row(p, s, *n, &limits, budget.precision))
        .collect();
    mark_pareto(&mut rows);
    let connection_hours = summaries
        .iter()
        .map(|s| s.metrics(limits.confidence).reconnects.connection_hours)
        .sum();
    let recommendation = recommend(&rows, &limits, &meta.stack);
    let closest = if recommendation.is_none() {
        closest(&rows, &limits)
    } else {
        None
    };
    TuneReport {
        scenario: meta.scenario.clone(),
        description: meta.description.clone(),
        sessions: meta.sessions,
        duration_s: meta.duration_s,
        engine: meta.engine,
        limits,
        budget,
        stop,
        wall_s,
        connection_hours,
        rows,
        recommendation,
        closest,
        command,
    }
}

/// The larger of two optional values (the worse side's), or the one present.
pub fn worse(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn row(p: &PairingInfo, s: &RunSummary, seeds: u64, limits: &Limits, precision: f64) -> TuneRow {
    let m = s.metrics(limits.confidence);
    let sides: [&SideMetrics; 2] = [&m.client, &m.server];
    let detection_p99_s = worse(m.client.detection.p99, m.server.detection.p99);
    // The worse side's rate, and that side's interval.
    let worst_side = sides
        .iter()
        .max_by(|a, b| {
            let r = |x: &SideMetrics| x.false_rate_interval().map_or(0.0, |i| i.upper);
            r(a).total_cmp(&r(b))
        })
        .expect("two sides");
    let add = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
    let overhead_bytes_per_s = add(
        m.client.overhead.bytes_out_per_sec,
        m.server.overhead.bytes_out_per_sec,
    );
    let overhead_frames_per_s = add(
        m.client.overhead.heartbeats_sent_per_sec,
        m.server.overhead.heartbeats_sent_per_sec,
    );
    let missed = m.client.missed + m.server.missed;
    let detection_ok =
        missed == 0 && detection_p99_s.is_none_or(|d| d <= limits.max_detection.as_secs_f64());
    let rate_ok = sides.iter().all(|x| {
        x.false_rate_interval()
            .is_some_and(|ci| ci.upper <= limits.max_false_rate)
    });
    let false_rate_upper = worst_side.false_rate_interval().map(|i| i.upper);
    let safety = (detection_ok && rate_ok).then(|| {
        let det = 1.0 - detection_p99_s.unwrap_or(0.0) / limits.max_detection.as_secs_f64();
        let rate = 1.0 - false_rate_upper.unwrap_or(0.0) / limits.max_false_rate;
        det.min(rate)
    });
    TuneRow {
        pairing: p.pairing.clone(),
        detector: p.detector.clone(),
        interval_ms: p.interval_ms,
        miss_threshold: p.miss_threshold,
        seeds,
        detection_p99_s,
        false_rate: worst_side.mistake_rate_per_hour,
        false_rate_lower: worst_side.false_rate_interval().map(|i| i.lower),
        false_rate_upper: worst_side.false_rate_interval().map(|i| i.upper),
        overhead_bytes_per_s,
        overhead_frames_per_s,
        pareto: false,
        meets_limits: detection_ok && rate_ok,
        meets_with_margin: safety.is_some_and(|s| s >= limits.margin - 1e-12),
        safety,
        settled: settled(s, limits, precision),
        metrics: m,
    }
}

/// Objectives to minimise: detection p99, false rate, overhead (missing = worst).
fn objectives(r: &TuneRow) -> [f64; 3] {
    [
        r.detection_p99_s.unwrap_or(f64::INFINITY),
        r.false_rate.unwrap_or(f64::INFINITY),
        r.overhead_bytes_per_s.unwrap_or(f64::INFINITY),
    ]
}

/// Marks the rows on the Pareto frontier of detection p99 against false rate: no other row is
/// at least as good on both and better on one. Of rows equal on both, only the cheapest in
/// overhead is on the frontier.
pub fn mark_pareto(rows: &mut [TuneRow]) {
    let obj: Vec<[f64; 3]> = rows.iter().map(objectives).collect();
    let dominates = |a: &[f64; 3], b: &[f64; 3]| {
        let (ad, ar, ao) = (a[0], a[1], a[2]);
        let (bd, br, bo) = (b[0], b[1], b[2]);
        ad <= bd && ar <= br && (ad < bd || ar < br || ao < bo)
    };
    for (i, r) in rows.iter_mut().enumerate() {
        r.pareto = !obj
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && dominates(o, &obj[i]));
    }
}

/// The cheapest row that meets the limits with the required margin: least overhead, then
/// fastest detection; with the next-safer alternative, the cheapest row with a wider margin.
fn recommend(rows: &[TuneRow], limits: &Limits, stack: &StackConfig) -> Option<Recommendation> {
    let cost = |r: &TuneRow| objectives(r)[2];
    let cheaper = |a: &&TuneRow, b: &&TuneRow| {
        let (oa, ob) = (objectives(a), objectives(b));
        oa[2].total_cmp(&ob[2]).then(oa[0].total_cmp(&ob[0]))
    };
    let best = rows
        .iter()
        .filter(|r| r.meets_with_margin)
        .min_by(cheaper)?;
    let margins = |r: &TuneRow| {
        (
            limits.max_detection.as_secs_f64() - r.detection_p99_s.unwrap_or(0.0),
            limits.max_false_rate - r.false_rate_upper.unwrap_or(0.0),
        )
    };
    let safety = best.safety.unwrap_or(0.0);
    let alternative = rows
        .iter()
        .filter(|r| r.meets_with_margin && r.safety.is_some_and(|s| s > safety + 1e-9))
        .min_by(cheaper)
        .map(|r| {
            let (d, f) = margins(r);
            Alternative {
                pairing: r.pairing.clone(),
                detection_margin_s: d,
                false_rate_margin: f,
                safety: r.safety.unwrap_or(0.0),
                extra_bytes_per_s: cost(r) - cost(best),
            }
        });
    let (detection_margin_s, false_rate_margin) = margins(best);
    let mut config = stack.clone();
    config.heartbeat.interval = crate::units::Dur(Duration::from_millis(best.interval_ms));
    config.heartbeat.miss_threshold = best.miss_threshold;
    config.heartbeat.detector =
        crate::config::DetectorKind::parse(&best.detector).unwrap_or_default();
    Some(Recommendation {
        pairing: best.pairing.clone(),
        detection_margin_s,
        false_rate_margin,
        safety,
        config,
        alternative,
    })
}

/// The row whose worst limit ratio (measured ÷ limit) is smallest, and that limit.
fn closest(rows: &[TuneRow], limits: &Limits) -> Option<Closest> {
    rows.iter()
        .map(|r| {
            let det = if r.metrics.client.missed + r.metrics.server.missed > 0 {
                f64::INFINITY
            } else {
                r.detection_p99_s.unwrap_or(0.0) / limits.max_detection.as_secs_f64()
            };
            let rate = r.false_rate_upper.unwrap_or(f64::INFINITY) / limits.max_false_rate;
            if det >= rate {
                (r, "detection", det)
            } else {
                (r, "false-rate", rate)
            }
        })
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(r, limit, ratio)| Closest {
            pairing: r.pairing.clone(),
            limit: limit.to_string(),
            ratio,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, detection: f64, rate: f64, bytes: f64) -> TuneRow {
        let summary = RunSummary::default();
        TuneRow {
            pairing: name.into(),
            detector: "k-miss".into(),
            interval_ms: 1000,
            miss_threshold: 3,
            seeds: 1,
            metrics: summary.metrics(0.95),
            detection_p99_s: Some(detection),
            false_rate: Some(rate),
            false_rate_lower: Some(rate / 2.0),
            false_rate_upper: Some(rate * 2.0),
            overhead_bytes_per_s: Some(bytes),
            overhead_frames_per_s: Some(bytes / 32.0),
            pareto: false,
            meets_limits: false,
            safety: None,
            meets_with_margin: false,
            settled: false,
        }
    }

    /// Marks rows against the limits the way [`row`](super::row) does.
    fn judge(rows: &mut [TuneRow], limits: &Limits) {
        for r in rows {
            let det = 1.0 - r.detection_p99_s.unwrap() / limits.max_detection.as_secs_f64();
            let rate = 1.0 - r.false_rate_upper.unwrap() / limits.max_false_rate;
            r.meets_limits = det >= 0.0 && rate >= 0.0;
            r.safety = r.meets_limits.then_some(det.min(rate));
            r.meets_with_margin = r.safety.is_some_and(|s| s >= limits.margin);
        }
    }

    fn frontier(rows: &mut [TuneRow]) -> Vec<&str> {
        mark_pareto(rows);
        rows.iter()
            .filter(|r| r.pareto)
            .map(|r| r.pairing.as_str())
            .collect()
    }

    #[test]
    fn a_row_slower_and_noisier_than_another_is_off_the_frontier() {
        let mut rows = [
            row("fast-noisy", 1.0, 5.0, 64.0),
            row("slow-quiet", 4.0, 0.1, 64.0),
            row("worse", 4.5, 6.0, 32.0),
        ];
        assert_eq!(frontier(&mut rows), ["fast-noisy", "slow-quiet"]);
    }

    #[test]
    fn of_two_rows_equal_on_detection_and_rate_only_the_cheaper_is_on_the_frontier() {
        let mut rows = [row("dear", 2.0, 1.0, 128.0), row("cheap", 2.0, 1.0, 64.0)];
        assert_eq!(frontier(&mut rows), ["cheap"]);
    }

    #[test]
    fn the_recommendation_is_the_cheapest_row_meeting_the_limits_with_its_margins() {
        let limits = Limits {
            max_detection: Duration::from_secs(5),
            max_false_rate: 1.0,
            confidence: 0.95,
            margin: 0.2,
        };
        let mut rows = vec![
            row("dear", 1.0, 0.1, 128.0),
            row("cheap", 3.0, 0.25, 64.0),
            row("cheapest-but-noisy", 4.0, 2.0, 32.0),
        ];
        judge(&mut rows, &limits);
        let rec = recommend(&rows, &limits, &StackConfig::default()).unwrap();
        assert_eq!(rec.pairing, "cheap");
        assert!((rec.detection_margin_s - 2.0).abs() < 1e-9);
        assert!((rec.false_rate_margin - 0.5).abs() < 1e-9);
        assert!((rec.safety - 0.4).abs() < 1e-9);
        let alt = rec.alternative.expect("a safer row exists");
        assert_eq!(alt.pairing, "dear");
        assert!((alt.extra_bytes_per_s - 64.0).abs() < 1e-9);
    }

    #[test]
    fn a_cheaper_pairing_with_a_thin_margin_is_not_recommended() {
        let limits = Limits {
            max_detection: Duration::from_secs(5),
            max_false_rate: 0.5,
            confidence: 0.95,
            margin: 0.2,
        };
        // Rate upper bounds are twice the rate: 0.44 (a 12% margin) and 0.2 (60%).
        let mut rows = vec![row("thin", 4.1, 0.22, 32.0), row("safe", 3.7, 0.1, 64.0)];
        judge(&mut rows, &limits);
        assert!(rows[0].meets_limits && !rows[0].meets_with_margin);
        let rec = recommend(&rows, &limits, &StackConfig::default()).unwrap();
        assert_eq!(rec.pairing, "safe");
        assert!(rec.alternative.is_none());
    }

    #[test]
    fn the_recommended_configuration_is_the_stack_with_the_pairing_applied() {
        let limits = Limits {
            max_detection: Duration::from_secs(5),
            max_false_rate: 1.0,
            confidence: 0.95,
            margin: 0.2,
        };
        let mut rows = vec![row("phi:2s/2", 1.0, 0.1, 128.0)];
        rows[0].detector = "phi".into();
        rows[0].interval_ms = 2000;
        rows[0].miss_threshold = 2;
        judge(&mut rows, &limits);
        let mut stack = StackConfig::default();
        stack.heartbeat.grace = crate::units::Dur(Duration::from_millis(100));
        let rec = recommend(&rows, &limits, &stack).unwrap();
        let h = &rec.config.heartbeat;
        assert_eq!(h.interval.0, Duration::from_secs(2));
        assert_eq!(h.miss_threshold, 2);
        assert_eq!(h.detector, crate::config::DetectorKind::Phi);
        assert_eq!(h.grace.0, Duration::from_millis(100));
    }

    #[test]
    fn when_nothing_meets_the_limits_the_closest_row_and_its_missed_limit_are_named() {
        let limits = Limits {
            max_detection: Duration::from_secs(2),
            max_false_rate: 1.0,
            confidence: 0.95,
            margin: 0.2,
        };
        // Upper bounds are twice the rate: 3.0 (ratio 3) and 1.2 (ratio 1.2, but detection 1.5).
        let rows = vec![row("noisy", 1.0, 1.5, 64.0), row("slow", 3.0, 0.6, 64.0)];
        let c = closest(&rows, &limits).unwrap();
        assert_eq!(
            (c.pairing.as_str(), c.limit.as_str()),
            ("slow", "detection")
        );
        assert!((c.ratio - 1.5).abs() < 1e-9);
    }
}
