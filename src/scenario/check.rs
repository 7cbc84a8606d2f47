//! Running a plan: every pairing on every seed (common random numbers), in parallel, each run
//! reduced to a [`RunSummary`] as soon as it ends; then the metrics of each pairing and the
//! verdict of every assertion, with the command that replays the worst run.
//!
//! - A run in which a side never had a connected session ([`never_connected`]) fails the
//!   plan ([`RunError::NeverConnected`]): it would score P_A = 1 and no false suspicion.
//! - The worst run named for a check is the seed with the worst value of that very measure
//!   ([`WorstRuns`](crate::sim::metrics::WorstRuns)): for a bound on missed detections, the run
//!   with the most misses; on the rate, the run with the highest rate; and so on.
//! - A bound on the false-suspicion rate is judged on the wider of its Poisson and
//!   between-seed intervals ([`SideMetrics::false_rate_interval`]); the check says which.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rayon::prelude::*;
use serde::Serialize;

use super::file::{AssertSpec, SideSpec};
use super::units::show;
use super::{Assertion, Engine, Plan};
use crate::sim::delivery::ViolationKind;
use crate::sim::metrics::{
    Interval, Metrics, RateBound, RunSummary, SideMetrics, Watcher, never_connected,
};
use crate::sim::runner::{self, RunOptions};

/// The confidence of intervals when an assertion does not say.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// The results of one pairing.
#[derive(Clone, Debug, Serialize)]
pub struct PairingResult {
    pub pairing: String,
    pub detector: &'static str,
    pub interval_ms: u64,
    pub miss_threshold: u8,
    /// Every run merged.
    pub summary: RunSummary,
    /// At [`DEFAULT_CONFIDENCE`].
    pub metrics: Metrics,
}

/// One bound of one assertion, judged for one pairing and side.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// `file:line:column` of the `[[assert]]`.
    pub location: String,
    pub pairing: String,
    /// `client` (clients watching the server), `server`, or `fleet` (reconnect storm).
    pub side: &'static str,
    /// What is bounded, e.g. `detection p99`.
    pub what: &'static str,
    /// The bound, e.g. `<= 3s`.
    pub bound: String,
    /// What the runs gave, e.g. `3.2s`.
    pub measured: String,
    pub holds: bool,
    /// The run to replay: the worst one for this bound.
    pub seed: Option<u64>,
    /// The one command that reproduces it.
    pub replay: Option<String>,
    pub why: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.holds { "holds" } else { "FAILED" };
        write!(
            f,
            "{}: {verdict}: {}, {} side: {} is {}, bound {}",
            self.location, self.pairing, self.side, self.what, self.measured, self.bound
        )?;
        if let Some(why) = &self.why {
            write!(f, " ({why})")?;
        }
        if !self.holds
            && let Some(cmd) = &self.replay
        {
            write!(f, "\n    worst run: {cmd}")?;
        }
        Ok(())
    }
}

/// A plan's results.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub path: String,
    /// The simulator back-end the runs used.
    pub engine: super::Engine,
    pub seeds: Vec<u64>,
    pub pairings: Vec<PairingResult>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.holds)
    }
}

/// Why a plan could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("pairing {pairing}, seed {seed}: the simulation failed: {message}")]
    Simulation {
        pairing: String,
        seed: u64,
        message: String,
    },
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    #[error(
        "scenario {scenario}, pairing {pairing}, seed {seed}: the {side} side never had a \
         connected session, so the run measures nothing of it"
    )]
    NeverConnected {
        scenario: String,
        pairing: String,
        seed: u64,
        /// `client` or `server`.
        side: &'static str,
    },
}

/// The name of a side in checks and messages.
pub fn side_name(w: Watcher) -> &'static str {
    match w {
        Watcher::Client => "client",
        Watcher::Server => "server",
    }
}

/// `Err` when a side of the run of `pairing` with `seed` never had a connected session (see
/// [`never_connected`]): the first such side, client before server.
pub fn require_connected(
    plan: &Plan,
    pairing: usize,
    seed: u64,
    out: &runner::Outcome,
) -> Result<(), RunError> {
    match never_connected(out).first() {
        Some(&w) => Err(RunError::NeverConnected {
            scenario: plan.name.clone(),
            pairing: plan.pairing_name(pairing),
            seed,
            side: side_name(w),
        }),
        None => Ok(()),
    }
}

/// Runs every pairing of `plan` on every seed in `seeds`, `threads` runs at a time, calling
/// `progress(done, total)` as runs finish. The report does not depend on `threads` or on the
/// order in which runs finish.
pub fn run(
    plan: &Plan,
    seeds: &[u64],
    threads: usize,
    progress: impl Fn(Progress) + Sync,
) -> Result<Report, RunError> {
    Ok(run_by_seed(plan, seeds, threads, progress)?.0)
}

/// [`run`], also giving each pairing's runs one by one, in the order of `seeds`: for figures
/// that need the spread between seeds.
pub fn run_by_seed(
    plan: &Plan,
    seeds: &[u64],
    threads: usize,
    progress: impl Fn(Progress) + Sync,
) -> Result<(Report, Vec<Vec<RunSummary>>), RunError> {
    let jobs: Vec<(usize, u64)> = (0..plan.pairings.len())
        .flat_map(|p| seeds.iter().map(move |s| (p, *s)))
        .collect();
    let summaries = run_jobs(plan, &jobs, threads, progress)?;
    let mut by_pairing: Vec<RunSummary> = vec![RunSummary::default(); plan.pairings.len()];
    let mut by_seed: Vec<Vec<RunSummary>> = vec![Vec::new(); plan.pairings.len()];
    for (&(p, _), s) in jobs.iter().zip(summaries) {
        by_pairing[p].merge(&s);
        by_seed[p].push(s);
    }
    Ok((report(plan, by_pairing, seeds), by_seed))
}

/// How far a batch of runs has got: runs finished, and simulated time gone by over all of them
/// (runs report it as they go, so a batch of one long run shows progress too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub runs_done: usize,
    pub runs: usize,
    pub simulated: Duration,
    pub simulated_total: Duration,
}

/// Runs each `(pairing, seed)` of `jobs`, `threads` at a time; the summaries come back in the
/// order of `jobs`. `progress` is called from the worker threads as runs advance.
///
/// The runs start longest first (by the heartbeats they simulate), each thread taking the next
/// as it becomes free: a long run (a short interval) left for the end would keep one thread
/// busy while the others idle. What each run gives does not depend on when it ran; an error
/// reported is that of the first failing job in the order of `jobs`.
pub fn run_jobs(
    plan: &Plan,
    jobs: &[(usize, u64)],
    threads: usize,
    progress: impl Fn(Progress) + Sync,
) -> Result<Vec<RunSummary>, RunError> {
    let scenarios: Vec<runner::Scenario> =
        (0..plan.pairings.len()).map(|p| plan.scenario(p)).collect();
    let done = AtomicUsize::new(0);
    let simulated_ms = AtomicU64::new(0);
    let simulated_total: Duration = jobs.iter().map(|&(p, _)| scenarios[p].duration).sum();
    let report = |runs_done: usize, ms: u64| {
        progress(Progress {
            runs_done,
            runs: jobs.len(),
            simulated: Duration::from_millis(ms),
            simulated_total,
        })
    };
    let run = |(p, seed): (usize, u64)| {
        let advanced = |d: Duration| {
            let ms = simulated_ms.fetch_add(d.as_millis() as u64, Ordering::Relaxed);
            report(done.load(Ordering::Relaxed), ms + d.as_millis() as u64);
        };
        let out = match plan.engine {
            Engine::Turmoil => {
                runner::run_watched(&scenarios[p], seed, RunOptions::default(), &advanced)
                    .map_err(|e| e.to_string())
            }
            Engine::Event => crate::sim::engine::run(&scenarios[p], seed)
                .map_err(|e| format!("{e} (run it with --engine turmoil)")),
        }
        .map_err(|message| RunError::Simulation {
            pairing: plan.pairing_name(p),
            seed,
            message,
        })?;
        require_connected(plan, p, seed, &out)?;
        let summary = RunSummary::judged(seed, &out, &plan.judge_for(p));
        report(
            done.fetch_add(1, Ordering::Relaxed) + 1,
            simulated_ms.load(Ordering::Relaxed),
        );
        Ok(summary)
    };
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    // A stable sort: runs of equal work keep the order of `jobs`.
    order.sort_by_key(|&i| std::cmp::Reverse(heartbeats(&scenarios[jobs[i].0])));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| RunError::Threads(e.to_string()))?;
    // `par_bridge` hands each free thread the next job in `order`.
    let mut results: Vec<(usize, Result<RunSummary, RunError>)> = pool.install(|| {
        order
            .into_iter()
            .par_bridge()
            .map(|i| (i, run(jobs[i])))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The heartbeats a run of `scenario` simulates, to order runs by their work.
fn heartbeats(scenario: &runner::Scenario) -> u128 {
    let interval = scenario.stack.heartbeat.interval.0.as_nanos().max(1);
    scenario.sessions as u128 * scenario.duration.as_nanos() / interval
}

/// The command that replays one run exactly: on the engine that ran it, named (`--engine
/// turmoil` on the same command re-checks a finding of the event engine on the drivers
/// themselves).
fn replay_command(plan: &Plan, seed: u64, pairing: &str) -> String {
    let mut command = format!(
        "mcpsim replay {} --seed {seed} --pairing {pairing} --engine {}",
        plan.path, plan.engine
    );
    for arg in &plan.replay_args {
        command.push(' ');
        command.push_str(arg);
    }
    command
}

/// The report of `plan` from each pairing's merged summary (`by_pairing[i]` for pairing `i`):
/// metrics, and every assertion judged.
pub fn report(plan: &Plan, by_pairing: Vec<RunSummary>, seeds: &[u64]) -> Report {
    let pairings: Vec<PairingResult> = by_pairing
        .into_iter()
        .enumerate()
        .map(|(i, summary)| {
            let p = &plan.pairings[i];
            PairingResult {
                pairing: plan.pairing_name(i),
                detector: p.detector.name(),
                interval_ms: p.interval.as_millis() as u64,
                miss_threshold: p.miss_threshold,
                metrics: summary.metrics(DEFAULT_CONFIDENCE),
                summary,
            }
        })
        .collect();
    let mut checks = Vec::new();
    for a in &plan.asserts {
        for (i, result) in pairings.iter().enumerate() {
            if a.pairing.is_none_or(|p| p == i) {
                checks.extend(judge(plan, a, result, seeds));
            }
        }
    }
    // With traffic, every pairing is held to exactly-once, in-order delivery unless an
    // assertion sets its own bound.
    if plan.has_traffic() {
        for (i, result) in pairings.iter().enumerate() {
            let applies = |a: &&Assertion| a.pairing.is_none_or(|p| p == i);
            let set = |f: fn(&AssertSpec) -> Option<u64>| {
                plan.asserts
                    .iter()
                    .filter(applies)
                    .any(|a| f(&a.spec).is_some())
            };
            let spec = AssertSpec {
                max_lost: (!set(|s| s.max_lost)).then_some(0),
                max_duplicated: (!set(|s| s.max_duplicated)).then_some(0),
                max_reordered: (!set(|s| s.max_reordered)).then_some(0),
                max_unaccounted: (!set(|s| s.max_unaccounted)).then_some(0),
                why: Some("the protocol's promise: exactly once, in order, or reported".into()),
                ..AssertSpec::default()
            };
            let implicit = Assertion {
                pairing: Some(i),
                side: SideSpec::Both,
                spec,
                location: format!("{} [traffic]", plan.path),
            };
            checks.extend(judge_delivery(plan, &implicit, result, seeds));
        }
    }
    Report {
        scenario: plan.name.clone(),
        path: plan.path.clone(),
        engine: plan.engine,
        seeds: seeds.to_vec(),
        pairings,
        checks,
    }
}

/// The checks of one assertion on one pairing.
fn judge(plan: &Plan, a: &Assertion, r: &PairingResult, seeds: &[u64]) -> Vec<Check> {
    let spec = &a.spec;
    let confidence = spec.confidence.unwrap_or(DEFAULT_CONFIDENCE);
    let metrics = if confidence == DEFAULT_CONFIDENCE {
        r.metrics.clone()
    } else {
        r.summary.metrics(confidence)
    };
    let sides: &[Watcher] = match a.side {
        SideSpec::Client => &[Watcher::Client],
        SideSpec::Server => &[Watcher::Server],
        SideSpec::Both => &[Watcher::Client, Watcher::Server],
    };
    let replay = |seed: u64| replay_command(plan, seed, &r.pairing);
    let check = |side: &'static str,
                 what: &'static str,
                 bound: String,
                 measured: String,
                 holds: bool,
                 seed: Option<u64>| {
        // With one seed there is nothing to choose: the run is that seed.
        let seed = seed.or((seeds.len() == 1).then(|| seeds[0]));
        Check {
            location: a.location.clone(),
            pairing: r.pairing.clone(),
            side,
            what,
            bound,
            measured,
            holds,
            seed,
            replay: seed.map(replay),
            why: spec.why.clone(),
        }
    };
    let mut out = Vec::new();
    for &w in sides {
        let m = metrics.side(w);
        let side = side_name(w);
        let worst = m.worst_runs;
        let secs = |x: Option<f64>| x.map_or("none".to_string(), fmt_secs);
        let at_most = |d: std::time::Duration| format!("<= {}", show(d));
        let within =
            |x: Option<f64>, d: std::time::Duration| x.is_none_or(|x| x <= d.as_secs_f64());
        let quantiles = [
            ("detection p50", spec.max_detection_p50, m.detection.p50),
            ("detection p90", spec.max_detection_p90, m.detection.p90),
            ("detection p99", spec.max_detection_p99, m.detection.p99),
            ("detection max", spec.max_detection, m.detection.max),
        ];
        for (what, bound, value) in quantiles {
            if let Some(b) = bound {
                out.push(check(
                    side,
                    what,
                    at_most(b.0),
                    secs(value),
                    within(value, b.0),
                    worst.detection,
                ));
            }
        }
        if let Some(b) = spec.max_missed {
            out.push(check(
                side,
                "missed detections",
                format!("<= {b}"),
                format!("{} of {}", m.missed, m.failures),
                m.missed <= b,
                worst.missed,
            ));
        }
        if let Some(b) = spec.min_failures {
            out.push(check(
                side,
                "failures",
                format!(">= {b}"),
                m.failures.to_string(),
                m.failures >= b,
                None,
            ));
        }
        if let Some(b) = spec.max_false_suspicions {
            out.push(check(
                side,
                "false suspicions",
                format!("<= {b}"),
                m.false_suspicions.to_string(),
                m.false_suspicions <= b,
                worst.false_suspicions,
            ));
        }
        if let Some(b) = spec.max_false_per_hour {
            out.push(check(
                side,
                "false suspicions per connection-hour",
                format!("<= {b}/h at {}%", confidence * 100.0),
                rate_measured(m, confidence),
                m.false_rate_upper().is_some_and(|u| u <= b),
                worst.false_rate,
            ));
        }
        if let Some(b) = spec.max_mistake_duration {
            out.push(check(
                side,
                "mistake duration max",
                at_most(b.0),
                secs(m.mistake_duration.max),
                within(m.mistake_duration.max, b.0),
                worst.mistake_duration,
            ));
        }
        if let Some(b) = spec.min_query_accuracy {
            out.push(check(
                side,
                "query accuracy",
                format!(">= {b}"),
                m.query_accuracy
                    .map_or("no exposure".into(), |q| format!("{q:.6}")),
                m.query_accuracy.is_some_and(|q| q >= b),
                worst.query_accuracy,
            ));
        }
    }
    out.extend(judge_delivery(plan, a, r, seeds));
    if let Some(b) = spec.max_connect_peak {
        let rc = &metrics.reconnects;
        out.push(check(
            "fleet",
            "connection attempts in any 1s",
            format!("<= {b}"),
            rc.peak_attempts_per_window.to_string(),
            rc.peak_attempts_per_window <= b,
            rc.peak_seed,
        ));
    }
    out
}

/// The delivery bounds of one assertion on one pairing.
fn judge_delivery(plan: &Plan, a: &Assertion, r: &PairingResult, seeds: &[u64]) -> Vec<Check> {
    let spec = &a.spec;
    let d = r.metrics.delivery.as_ref();
    let mut out = Vec::new();
    let mut check =
        |what: &'static str, bound: String, measured: String, holds: bool, seed: Option<u64>| {
            let seed = seed.or((seeds.len() == 1).then(|| seeds[0]));
            out.push(Check {
                location: a.location.clone(),
                pairing: r.pairing.clone(),
                side: "delivery",
                what,
                bound,
                measured,
                holds,
                seed,
                replay: seed.map(|seed| replay_command(plan, seed, &r.pairing)),
                why: spec.why.clone(),
            });
        };
    let sent = d.map_or(0, |d| d.fates.sent);
    let counts = [
        (
            "lost messages",
            spec.max_lost,
            d.map_or(0, |d| d.fates.lost),
            ViolationKind::Lost,
        ),
        (
            "duplicated messages",
            spec.max_duplicated,
            d.map_or(0, |d| d.fates.duplicated),
            ViolationKind::Duplicated,
        ),
        (
            "reordered messages",
            spec.max_reordered,
            d.map_or(0, |d| d.fates.reordered),
            ViolationKind::Reordered,
        ),
        (
            "unaccounted deliveries",
            spec.max_unaccounted,
            d.map_or(0, |d| d.fates.unaccounted),
            ViolationKind::Unaccounted,
        ),
    ];
    for (what, bound, value, kind) in counts {
        if let Some(b) = bound {
            // The run to replay: the first that showed this kind of violation.
            let seed = d.and_then(|d| {
                d.violations
                    .iter()
                    .find(|(_, v)| v.kind == kind)
                    .map(|(s, _)| *s)
            });
            let first = d
                .and_then(|d| d.violations.iter().find(|(_, v)| v.kind == kind))
                .map_or(String::new(), |(_, v)| format!(" (first: {v})"));
            check(
                what,
                format!("<= {b}"),
                format!("{value} of {sent}{first}"),
                value <= b,
                seed,
            );
        }
    }
    let latency = d.and_then(|d| d.latency);
    for (what, bound, value) in [
        (
            "delivery p50",
            spec.max_delivery_p50,
            latency.map(|l| l.p50),
        ),
        (
            "delivery p99",
            spec.max_delivery_p99,
            latency.map(|l| l.p99),
        ),
    ] {
        if let Some(b) = bound {
            check(
                what,
                format!("<= {}", show(b.0)),
                value.map_or("no delivery".into(), fmt_secs),
                value.is_some_and(|v| v <= b.0.as_secs_f64()),
                None,
            );
        }
    }
    if let Some(b) = spec.min_messages {
        check(
            "messages sent",
            format!(">= {b}"),
            sent.to_string(),
            sent >= b,
            None,
        );
    }
    out
}

/// What a rate check measured: the rate, its evidence, both intervals and which one bounds it.
fn rate_measured(m: &SideMetrics, confidence: f64) -> String {
    let (Some(r), Some(p)) = (m.mistake_rate_per_hour, m.mistake_rate_interval) else {
        return "no exposure".into();
    };
    let interval = |i: Interval| format!("{}–{}", fmt_rate(i.lower), fmt_rate(i.upper));
    let between = match m.mistake_rate_between_seeds {
        Some(b) => format!("between {} seeds {}", m.seeds, interval(b)),
        None => "no between-seed interval with one seed".into(),
    };
    let used = match m.mistake_rate_bound_from {
        Some(RateBound::BetweenSeeds) => "between-seed bound used",
        _ => "Poisson bound used",
    };
    format!(
        "{} ({} over {:.1} connection-hours; {}% intervals: Poisson {}, {between}; {used})",
        fmt_rate(r),
        m.false_suspicions,
        m.exposure_hours,
        confidence * 100.0,
        interval(p),
    )
}

/// Seconds to three decimals, e.g. `2.030s`.
pub fn fmt_secs(x: f64) -> String {
    if x.is_infinite() {
        "never".into()
    } else {
        format!("{x:.3}s")
    }
}

/// A rate per hour to three significant digits, e.g. `0.0123/h`, `8.55/h`, `120/h`.
pub fn fmt_rate(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}/h");
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}/h")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::proto::frame::HeartbeatMode;
    use crate::sim::qos::PairQos;
    use crate::sim::runner::{Heartbeats, Outcome, SERVER};

    const HOUR: f64 = 3600.0;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn plan(asserts: &str) -> Plan {
        let text = format!(
            "duration = \"1h\"\nseeds = 2\n[topology]\nsessions = 1\n[grid]\ninterval = [\"1s\"]\n\
             miss_threshold = [3]\n[[assert]]\nside = \"client\"\n{asserts}"
        );
        crate::scenario::parse("t.toml", "t", &text).expect("a valid scenario")
    }

    #[test]
    fn runs_come_back_in_the_order_of_their_jobs_though_the_longest_start_first() {
        // Three intervals: the 200 ms pairing simulates the most heartbeats and starts first,
        // then the 500 ms one, then the 1 s one, on one thread as on two.
        let text = "duration = \"1m\"\nseeds = 2\n[topology]\nsessions = 2\n[grid]\n\
                    interval = [\"1s\", \"200ms\", \"500ms\"]\nmiss_threshold = [3]\n\
                    [network]\nlatency = { dist = \"uniform\", min = \"1ms\", max = \"40ms\" }\n";
        let plan = crate::scenario::parse("t.toml", "t", text)
            .expect("a valid scenario")
            .on_engine(Engine::Event);
        let jobs: Vec<(usize, u64)> = (0..3).flat_map(|p| [(p, 1), (p, 2)]).collect();
        let each: Vec<RunSummary> = jobs
            .iter()
            .map(|&(p, seed)| {
                let out = crate::sim::engine::run(&plan.scenario(p), seed).expect("runs");
                RunSummary::judged(seed, &out, &plan.judge_for(p))
            })
            .collect();
        assert_ne!(each[0], each[2], "the pairings' runs differ");
        for threads in [1, 2] {
            let all = run_jobs(&plan, &jobs, threads, |_| {}).expect("runs");
            assert_eq!(all, each, "{threads} thread(s)");
        }
    }

    /// The run of `seed`: one client, judged as `pair` says.
    fn run(seed: u64, pair: PairQos) -> RunSummary {
        let mut hosts = BTreeMap::new();
        hosts.insert(SERVER.to_string(), SERVER.to_string());
        hosts.insert("client-0".to_string(), "clients".to_string());
        let out = Outcome {
            trace: Vec::new(),
            down: Vec::new(),
            transitions: Vec::new(),
            hosts,
            duration: s(HOUR),
            mode: HeartbeatMode::OneWay,
            reconnects: BTreeMap::new(),
            connect_attempts: Vec::new(),
            traffic: BTreeMap::new(),
            connected: BTreeMap::new(),
            client_heartbeats: Heartbeats::default(),
            server_heartbeats: Heartbeats::default(),
            delivery: None,
            queue_drops: 0,
        };
        let pair = PairQos {
            watcher: "client-0".into(),
            peer: SERVER.into(),
            ..pair
        };
        RunSummary::of_run(seed, &out, &[pair])
    }

    fn live(exposure: f64) -> PairQos {
        PairQos {
            exposure: s(exposure),
            ..PairQos::default()
        }
    }

    /// The failed checks' `(what, seed)`.
    fn failed_seeds(plan: &Plan, runs: Vec<RunSummary>) -> Vec<(&'static str, Option<u64>)> {
        let seeds: Vec<u64> = (2..2 + runs.len() as u64).collect();
        let all: RunSummary = runs.into_iter().collect();
        report(plan, vec![all], &seeds)
            .checks
            .iter()
            .filter(|c| !c.holds)
            .map(|c| (c.what, c.seed))
            .collect()
    }

    #[test]
    fn a_failed_check_names_the_seed_with_the_worst_value_of_that_very_measure() {
        // Seed 2: the longest detection, no miss. Seed 3: the most false suspicions, spread
        // over 4 h. Seed 4: fewer, in half an hour, one of them 9 s long. Seed 5: the miss.
        let runs = vec![
            run(
                2,
                PairQos {
                    failures: 1,
                    detections: vec![s(8.0)],
                    ..live(HOUR)
                },
            ),
            run(
                3,
                PairQos {
                    false_suspicions: 4,
                    mistake_durations: vec![s(1.0); 4],
                    suspected: s(4.0),
                    ..live(4.0 * HOUR)
                },
            ),
            run(
                4,
                PairQos {
                    false_suspicions: 2,
                    mistake_durations: vec![s(2.0), s(9.0)],
                    suspected: s(11.0),
                    ..live(HOUR / 2.0)
                },
            ),
            run(
                5,
                PairQos {
                    failures: 1,
                    missed: 1,
                    ..live(HOUR)
                },
            ),
        ];
        let plan = plan(
            "max_detection = \"2s\"\nmax_missed = 0\nmax_false_suspicions = 1\n\
             max_false_per_hour = 0.01\nmax_mistake_duration = \"1.5s\"\n\
             min_query_accuracy = 0.9999\n",
        );
        assert_eq!(
            failed_seeds(&plan, runs),
            vec![
                ("detection max", Some(5)),
                ("missed detections", Some(5)),
                ("false suspicions", Some(3)),
                ("false suspicions per connection-hour", Some(4)),
                ("mistake duration max", Some(4)),
                ("query accuracy", Some(4)),
            ]
        );
    }

    #[test]
    fn a_bound_on_the_rate_is_judged_on_the_between_seed_interval_when_it_is_wider() {
        // 20 false suspicions in 4 connection-hours, all in one run: the Poisson upper bound
        // (7.7/h) is under 10/h, the between-seed one (20.9/h) is not.
        let all: RunSummary = [0, 0, 0, 20]
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                run(
                    i as u64 + 2,
                    PairQos {
                        false_suspicions: n,
                        ..live(HOUR)
                    },
                )
            })
            .collect();
        let plan = plan("max_false_per_hour = 10\n");
        let r = report(&plan, vec![all], &[2, 3, 4, 5]);
        let c = &r.checks[0];
        assert!(!c.holds, "{c}");
        assert!(c.measured.contains("between-seed bound used"), "{c}");
        assert!(c.measured.contains("Poisson 3.05/h–7.72/h"), "{c}");
        assert_eq!(c.seed, Some(5));
    }

    #[test]
    fn with_one_seed_a_rate_check_says_there_is_no_between_seed_interval() {
        let plan = plan("max_false_per_hour = 10\n");
        let r = report(&plan, vec![run(7, live(HOUR))], &[7]);
        let c = &r.checks[0];
        assert!(c.holds, "{c}");
        assert!(
            c.measured
                .contains("no between-seed interval with one seed; Poisson bound used"),
            "{c}"
        );
    }

    #[test]
    fn a_run_in_which_no_client_ever_connects_is_an_error_naming_scenario_pairing_seed_and_side() {
        let text = "name = \"far\"\nduration = \"10s\"\nseeds = 1\n[topology]\nsessions = 1\n\
                    [grid]\ninterval = [\"1s\"]\nmiss_threshold = [3]\n[network]\n\
                    latency = \"1000h\"\n";
        let plan = crate::scenario::parse("far.toml", "far", text).expect("a valid scenario");
        let err = super::run(&plan, &[3], 1, |_| {}).expect_err("nothing was measured");
        assert!(
            matches!(
                &err,
                RunError::NeverConnected {
                    seed: 3,
                    side: "client",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "scenario far, pairing 1s/3, seed 3: the client side never had a connected \
             session, so the run measures nothing of it"
        );
    }
}
