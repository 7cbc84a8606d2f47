//! Running a plan: every pairing on every seed (common random numbers), in parallel, each run
//! reduced to a [`RunSummary`] as soon as it ends; then the metrics of each pairing and the
//! verdict of every assertion, with the command that replays the worst run.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use super::file::SideSpec;
use super::units::show;
use super::{Assertion, Plan};
use crate::sim::metrics::{Metrics, RunSummary, Watcher};
use crate::sim::runner;

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
}

/// Runs every pairing of `plan` on every seed in `seeds`, `threads` runs at a time, calling
/// `progress(done, total)` as runs finish. The report does not depend on `threads` or on the
/// order in which runs finish.
pub fn run(
    plan: &Plan,
    seeds: &[u64],
    threads: usize,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Report, RunError> {
    let jobs: Vec<(usize, u64)> = (0..plan.pairings.len())
        .flat_map(|p| seeds.iter().map(move |s| (p, *s)))
        .collect();
    let summaries = run_jobs(plan, &jobs, threads, progress)?;
    let mut by_pairing: Vec<RunSummary> = vec![RunSummary::default(); plan.pairings.len()];
    for (&(p, _), s) in jobs.iter().zip(&summaries) {
        by_pairing[p].merge(s);
    }
    Ok(report(plan, by_pairing, seeds))
}

/// Runs each `(pairing, seed)` of `jobs`, `threads` at a time; the summaries come back in the
/// order of `jobs`.
pub fn run_jobs(
    plan: &Plan,
    jobs: &[(usize, u64)],
    threads: usize,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<Vec<RunSummary>, RunError> {
    let scenarios: Vec<runner::Scenario> =
        (0..plan.pairings.len()).map(|p| plan.scenario(p)).collect();
    let done = AtomicUsize::new(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| RunError::Threads(e.to_string()))?;
    pool.install(|| {
        jobs.par_iter()
            .map(|&(p, seed)| {
                let out = runner::run(&scenarios[p], seed).map_err(|e| RunError::Simulation {
                    pairing: plan.pairing_name(p),
                    seed,
                    message: e.to_string(),
                })?;
                let summary = RunSummary::judged(seed, &out, &plan.judge);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
                Ok(summary)
            })
            .collect()
    })
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
    Report {
        scenario: plan.name.clone(),
        path: plan.path.clone(),
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
    let replay = |seed: u64| {
        format!(
            "mcpsim replay {} --seed {seed} --pairing {}",
            plan.path, r.pairing
        )
    };
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
        let side = match w {
            Watcher::Client => "client",
            Watcher::Server => "server",
        };
        let worst_detection = m.worst_detection.map(|w| w.seed).or(m.missed_seed);
        let worst_false = m.most_false_suspicions.map(|w| w.seed);
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
                    worst_detection,
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
                m.missed_seed,
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
                worst_false,
            ));
        }
        if let Some(b) = spec.max_false_per_hour {
            let upper = m.mistake_rate_interval.map(|i| i.upper);
            out.push(check(
                side,
                "false suspicions per connection-hour",
                format!("<= {b}/h at {}%", confidence * 100.0),
                match (m.mistake_rate_per_hour, m.mistake_rate_interval) {
                    (Some(r), Some(i)) => format!(
                        "{} ({} over {:.1} connection-hours; {}% interval {}–{})",
                        fmt_rate(r),
                        m.false_suspicions,
                        m.exposure_hours,
                        confidence * 100.0,
                        fmt_rate(i.lower),
                        fmt_rate(i.upper)
                    ),
                    _ => "no exposure".into(),
                },
                upper.is_some_and(|u| u <= b),
                worst_false,
            ));
        }
        if let Some(b) = spec.max_mistake_duration {
            out.push(check(
                side,
                "mistake duration max",
                at_most(b.0),
                secs(m.mistake_duration.max),
                within(m.mistake_duration.max, b.0),
                worst_false,
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
                worst_false,
            ));
        }
    }
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
