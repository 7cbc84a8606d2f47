//! `mcpsim compare`: the detectors side by side. For each scenario, every detector over the
//! same grid of intervals and thresholds on the same seeds, and for each the lowest detection p99
//! it reaches at a target false-suspicion rate, read off its frontier with a seed-bootstrap
//! interval ([`crate::tune::compare`]); then, over all scenarios, each detector's p99 relative
//! to k-miss's (geometric mean of the per-scenario ratios where both reach the rate).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use super::CliError;
use super::run::{advance, bar, files};
use super::tune::{DEFAULT_SCENARIO, distinct, list};
use crate::config::DetectorKind;
use crate::scenario::units::Dur;
use crate::scenario::{self, Engine, EngineChoice, Plan, check};
use crate::sim::metrics::RunSummary;
use crate::tune::compare::{Comparison, compare};

/// The false-suspicion rate compared at when neither `--rate` nor the scenario gives one: the
/// built-in tune scenario's limit.
const DEFAULT_RATE: f64 = 0.5;

/// Arguments of `mcpsim compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Scenario files, or directories of them (default: the scenario `mcpsim tune` runs).
    pub paths: Vec<PathBuf>,
    /// Detectors to compare, comma-separated.
    #[arg(long, default_value = "k-miss,phi,adaptive,tcp")]
    pub detectors: String,
    /// Heartbeat intervals of every detector's grid, comma-separated.
    #[arg(long, default_value = "250ms,500ms,1s,2s")]
    pub intervals: String,
    /// Miss thresholds of every detector's grid, comma-separated.
    #[arg(long, default_value = "2,3,4,5")]
    pub thresholds: String,
    /// The false-suspicion rate (per connection-hour) at which detection is compared (default:
    /// each scenario's `[limits] max_false_per_hour`, else 0.5).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seeds 1 … N, common to every pairing.
    #[arg(long, default_value_t = 8)]
    pub seeds: u64,
    /// Also write the comparisons as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Runs at once (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The simulator back-end, as `mcpsim run --engine` (default: the event engine wherever it
    /// models the scenario).
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
}

/// Runs `mcpsim compare`.
pub fn run(args: CompareArgs) -> Result<(), CliError> {
    let usage = CliError::Usage;
    if let Some(r) = args.rate
        && !(r >= 0.0 && r.is_finite())
    {
        return Err(usage(format!("--rate {r} is not a rate ≥ 0")));
    }
    if args.seeds < 2 || args.seeds > scenario::limits::MAX_SEEDS {
        return Err(usage(format!(
            "--seeds {} is outside 2..={}: the interval resamples seeds",
            args.seeds,
            scenario::limits::MAX_SEEDS
        )));
    }
    let detectors = distinct(list("detectors", &args.detectors, |x| {
        DetectorKind::parse(x).ok_or_else(|| {
            format!("unknown detector {x:?}; choose from k-miss, phi, adaptive, tcp")
        })
    })?);
    let intervals = distinct(list("intervals", &args.intervals, |x| {
        Dur::parse(x).map(|d| d.0)
    })?);
    let thresholds = distinct(list("thresholds", &args.thresholds, |x| {
        x.parse::<u8>()
            .map_err(|_| format!("{x:?} is not a threshold in 1..=255"))
    })?);
    let plans: Vec<Plan> = if args.paths.is_empty() {
        vec![scenario::parse(
            "builtin:wan-crashes",
            "wan-crashes",
            DEFAULT_SCENARIO,
        )?]
    } else {
        files(&args.paths)?
            .iter()
            .map(|f| scenario::load(f))
            .collect::<Result<_, _>>()?
    };
    let plans = plans
        .iter()
        .map(|p| {
            p.with_grid(&intervals, &thresholds, &detectors)
                .map(|p| p.choosing(args.engine))
                .map_err(|e| usage(format!("{}: {e}", p.path)))
        })
        .collect::<Result<Vec<Plan>, _>>()?;
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let seeds: Vec<u64> = (1..=args.seeds).collect();
    let mut out = Vec::new();
    for plan in &plans {
        let started = Instant::now();
        let jobs: Vec<(usize, u64)> = (0..plan.pairings.len())
            .flat_map(|p| seeds.iter().map(move |&s| (p, s)))
            .collect();
        let b = bar(plan.name.clone());
        let results = check::run_jobs(plan, &jobs, threads, |p| advance(&b, p))
            .map_err(|e| CliError::Run(format!("{}: {e}", plan.path)))?;
        b.finish_and_clear();
        let mut runs: Vec<Vec<RunSummary>> = vec![Vec::new(); plan.pairings.len()];
        for (&(p, _), s) in jobs.iter().zip(results) {
            runs[p].push(s);
        }
        let names: Vec<(String, String)> = (0..plan.pairings.len())
            .map(|i| {
                (
                    plan.pairing_name(i),
                    plan.pairings[i].detector.name().to_string(),
                )
            })
            .collect();
        let rate = args
            .rate
            .or(plan.limits.max_false_per_hour)
            .unwrap_or(DEFAULT_RATE);
        let c = compare(&plan.name, &names, &seeds, &runs, rate, 0.95);
        print!(
            "{}",
            table(&c, started.elapsed().as_secs_f64(), plan.engine)
        );
        out.push(c);
    }
    if out.len() > 1 {
        print!("{}", overall(&out));
    }
    println!("{}", DetectorKind::PAIRING_LEGEND);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| CliError::Run(format!("cannot encode the comparison: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| CliError::Run(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_infinite() => "missed".into(),
        Some(x) => format!("{x:.3}s"),
        None => "-".into(),
    }
}

/// One scenario's comparison as a table.
pub fn table(c: &Comparison, wall_s: f64, engine: Engine) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: detection p99 at {} false suspicions per connection-hour, {} seeds; {:.1}s wall on the {engine} engine",
        c.scenario,
        c.target_rate_per_hour,
        c.seeds.len(),
        wall_s
    );
    let _ = writeln!(
        o,
        "  {:<10} {:>9} {:>21} {:>8}  read from",
        "detector", "p99", "95% interval (seeds)", "reached"
    );
    for d in &c.detectors {
        let _ = writeln!(
            o,
            "  {:<10} {:>9} {:>21} {:>7.0}%  {}",
            d.detector,
            match (d.p99_at_rate_s, d.failures) {
                (Some(v), _) => secs(Some(v)),
                (None, true) => "not reached".into(),
                (None, false) => "no failures".into(),
            },
            format!("[{}, {}]", secs(d.lower_s), secs(d.upper_s)),
            d.reached * 100.0,
            d.from.join(" .. ")
        );
    }
    o
}

/// Each detector's p99 relative to k-miss's over all scenarios: the geometric mean of the
/// per-scenario ratios where both reach the rate with a finite p99.
pub fn overall(cs: &[Comparison]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "overall, relative to k-miss (geometric mean of per-scenario ratios of p99 at the rate):"
    );
    let mut names: Vec<&str> = Vec::new();
    for c in cs {
        for d in &c.detectors {
            if !names.contains(&d.detector.as_str()) {
                names.push(&d.detector);
            }
        }
    }
    for name in names {
        let ratios: Vec<f64> = cs
            .iter()
            .filter_map(|c| {
                let get = |n: &str| {
                    c.detectors
                        .iter()
                        .find(|d| d.detector == n)
                        .and_then(|d| d.p99_at_rate_s)
                        .filter(|v| v.is_finite() && *v > 0.0)
                };
                Some(get(name)? / get("k-miss")?)
            })
            .collect();
        if ratios.is_empty() {
            let _ = writeln!(o, "  {name:<10} no scenario where both reach the rate");
            continue;
        }
        let g = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        let _ = writeln!(
            o,
            "  {name:<10} {:>6.3}  ({} of {} scenarios)",
            g,
            ratios.len(),
            cs.len()
        );
    }
    o
}
