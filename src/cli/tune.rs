//! `mcpsim tune` and `mcpsim merge`: sweep the heartbeat pairings of a scenario and recommend
//! one; split a large sweep into shards and merge their results.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::CliError;
use super::run::{advance, bar};
use crate::scenario::check::{self, fmt_rate, fmt_secs};
use crate::scenario::file::DetectorKind;
use crate::scenario::units::{Dur, show};
use crate::scenario::{self, EngineChoice, Plan};
use crate::sim::metrics::RunSummary;
use crate::tune::{self, Budget, Limits, StopReason, TuneMeta, TuneReport, render};

/// The scenario `tune` runs when given none: a WAN with bursty loss and crashing servers.
pub const DEFAULT_SCENARIO: &str = include_str!("../tune/default.toml");
const DEFAULT_NAME: &str = "builtin:wan-crashes";

/// Arguments of `mcpsim tune`.
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// The scenario file (default: a built-in WAN with bursty loss and server crashes; see
    /// `mcpsim tune --print-default`).
    pub scenario: Option<PathBuf>,
    /// Print the built-in scenario and exit.
    #[arg(long)]
    pub print_default: bool,
    /// Heartbeat intervals to try, comma-separated (default: the scenario's grid).
    #[arg(long)]
    pub intervals: Option<String>,
    /// Miss thresholds k to try, comma-separated.
    #[arg(long)]
    pub thresholds: Option<String>,
    /// Detectors to compare, comma-separated: k-miss, phi, adaptive, tcp.
    #[arg(long)]
    pub detectors: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Stop adding seeds to a pairing when its false-suspicion rate's interval half-width is at
    /// most this fraction of the estimate (or the interval is wholly on one side of the limit).
    #[arg(long, default_value_t = 0.25)]
    pub precision: f64,
    /// Seeds added to each unsettled pairing per round.
    #[arg(long, default_value_t = 2)]
    pub seeds_per_round: u64,
    /// At most this many seeds per pairing.
    #[arg(long, default_value_t = 32)]
    pub max_seeds: u64,
    /// Start no new round after this much wall time, e.g. 90s or 10m.
    #[arg(long, default_value = "3m")]
    pub budget: String,
    /// Run exactly seeds 1 … N for every pairing (no stopping rule).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Run only slice K of N (e.g. 2/8) of the pairings × seeds given by --seeds, and write its
    /// runs as JSON Lines (to --out, or standard output) for `mcpsim merge`.
    #[arg(long, value_name = "K/N", requires = "seeds")]
    pub shard: Option<String>,
    /// Where a shard writes its JSON Lines.
    #[arg(long, value_name = "FILE", requires = "shard")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Runs at once (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The simulator back-end, as `mcpsim run --engine`: by default the event engine wherever
    /// it models the scenario (the built-in one included), else turmoil. The report names it.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
}

/// Limits on the recommended pairing.
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Detection time p99 (both sides) at most this (default: the scenario's, else 10s).
    #[arg(long)]
    pub max_detection: Option<String>,
    /// False suspicions per connection-hour at most this, e.g. 0.01 or 0.01/h (the upper end of
    /// the confidence interval; default: the scenario's, else 0.1).
    #[arg(long)]
    pub max_false_rate: Option<String>,
    /// Confidence of the false-rate interval (default: the scenario's, else 0.95).
    #[arg(long)]
    pub confidence: Option<f64>,
    /// The recommendation must beat each limit by this share of it, e.g. 20% or 0.2
    /// (default 20%): a detection p99 at most 80% of its limit, a rate bound at most 80% of
    /// its limit.
    #[arg(long)]
    pub margin: Option<String>,
}

/// Report files.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per pairing.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write a self-contained HTML page with charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the recommended stack configuration (TOML) for `mcpsim serve --config` and
    /// `mcpsim client --config`; nothing is written when no pairing is recommended.
    #[arg(long, value_name = "FILE")]
    pub emit_config: Option<PathBuf>,
}

/// Arguments of `mcpsim merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' JSON Lines files.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The first line of a shard file.
#[derive(Debug, Serialize, Deserialize)]
struct ShardHeader {
    shard: String,
    seeds: u64,
    meta: TuneMeta,
    /// The file's limits, if any, for `merge` to default to.
    limits: Limits,
    command: String,
}

/// Every other line: one run.
#[derive(Debug, Serialize, Deserialize)]
struct ShardRun {
    pairing: usize,
    seed: u64,
    summary: RunSummary,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

pub(super) fn list<T>(
    flag: &str,
    s: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, CliError> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| parse(x).map_err(|e| usage(format!("--{flag}: {e}"))))
        .collect()
}

fn load(args: &TuneArgs) -> Result<Plan, CliError> {
    let plan = match &args.scenario {
        Some(path) => scenario::load(path)?,
        None => scenario::parse(DEFAULT_NAME, "wan-crashes", DEFAULT_SCENARIO)?,
    };
    if args.intervals.is_none() && args.thresholds.is_none() && args.detectors.is_none() {
        return Ok(plan);
    }
    let intervals = match &args.intervals {
        Some(s) => list("intervals", s, |x| Dur::parse(x).map(|d| d.0))?,
        None => plan.pairings.iter().map(|p| p.interval).collect(),
    };
    let thresholds = match &args.thresholds {
        Some(s) => list("thresholds", s, |x| {
            x.parse::<u8>()
                .map_err(|_| format!("{x:?} is not a threshold in 1..=255"))
        })?,
        None => plan.pairings.iter().map(|p| p.miss_threshold).collect(),
    };
    let detectors = match &args.detectors {
        Some(s) => list("detectors", s, |x| {
            DetectorKind::parse(x).ok_or_else(|| {
                format!("unknown detector {x:?}; choose from k-miss, phi, adaptive, tcp")
            })
        })?,
        None => plan.pairings.iter().map(|p| p.detector).collect(),
    };
    let (intervals, thresholds, detectors) = (
        distinct(intervals),
        distinct(thresholds),
        distinct(detectors),
    );
    plan.with_grid(&intervals, &thresholds, &detectors)
        .map_err(usage)
}

/// Sorted, without repeats.
pub(super) fn distinct<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

fn limits(
    args: &LimitArgs,
    plan_limits: Option<&scenario::file::LimitsSpec>,
) -> Result<Limits, CliError> {
    let max_detection = match &args.max_detection {
        Some(s) => {
            Dur::parse(s)
                .map_err(|e| usage(format!("--max-detection: {e}")))?
                .0
        }
        None => plan_limits
            .and_then(|l| l.max_detection)
            .map_or(Duration::from_secs(10), |d| d.0),
    };
    let max_false_rate = match &args.max_false_rate {
        Some(s) => {
            let n = s.strip_suffix("/h").unwrap_or(s);
            match n.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => r,
                _ => {
                    return Err(usage(format!(
                        "--max-false-rate: expected a rate per connection-hour > 0 such as 0.01 or 0.01/h, found {s:?}"
                    )));
                }
            }
        }
        None => plan_limits
            .and_then(|l| l.max_false_per_hour)
            .unwrap_or(0.1),
    };
    let confidence = args
        .confidence
        .or(plan_limits.and_then(|l| l.confidence))
        .unwrap_or(0.95);
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(usage(format!(
            "--confidence must be in (0, 1), found {confidence}"
        )));
    }
    let margin = match &args.margin {
        None => tune::DEFAULT_MARGIN,
        Some(s) => {
            let parsed = match s.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
                None => s.trim().parse::<f64>(),
            };
            match parsed {
                Ok(m) if (0.0..1.0).contains(&m) => m,
                _ => {
                    return Err(usage(format!(
                        "--margin: expected a share of the limits in [0%, 100%) such as 20% or 0.2, found {s:?}"
                    )));
                }
            }
        }
    };
    Ok(Limits {
        max_detection,
        max_false_rate,
        confidence,
        margin,
    })
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// `K/N` with 1 ≤ K ≤ N.
fn parse_shard(s: &str) -> Result<(u64, u64), CliError> {
    let bad = || {
        usage(format!(
            "--shard: expected K/N with 1 <= K <= N, e.g. 2/8; found {s:?}"
        ))
    };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u64, u64) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// The command line that reproduces this sweep.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:,=".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    format!("mcpsim {}", quoted.join(" "))
}

/// Runs `mcpsim tune`.
pub fn run(args: TuneArgs) -> Result<(), CliError> {
    if args.print_default {
        print!("{DEFAULT_SCENARIO}");
        return Ok(());
    }
    let plan = load(&args)?.choosing(args.engine);
    let limits = limits(&args.limits, Some(&plan.limits))?;
    if !(args.precision > 0.0 && args.precision < 1.0) {
        return Err(usage(format!(
            "--precision must be in (0, 1), found {}",
            args.precision
        )));
    }
    let most = args.seeds.unwrap_or(0).max(args.max_seeds);
    if most > scenario::limits::MAX_SEEDS {
        return Err(usage(format!(
            "{most} seeds (--seeds / --max-seeds) is over the bound of {}",
            scenario::limits::MAX_SEEDS
        )));
    }
    if args.seeds_per_round == 0 || args.max_seeds < args.seeds_per_round {
        return Err(usage(
            "--seeds-per-round must be at least 1 and at most --max-seeds",
        ));
    }
    let wall = Dur::parse(&args.budget)
        .map_err(|e| usage(format!("--budget: {e}")))?
        .0;
    let budget = Budget {
        precision: args.precision,
        seeds_per_round: args.seeds_per_round,
        max_seeds: args.max_seeds,
        wall: Some(wall),
    };
    let threads = jobs(args.jobs);
    let command = command_line();
    if let Some(shard) = &args.shard {
        let seeds = args.seeds.expect("clap requires --seeds with --shard");
        return run_shard(
            &plan,
            parse_shard(shard)?,
            seeds,
            limits,
            threads,
            command,
            args.out.as_deref(),
        );
    }
    let started = Instant::now();
    let report = match args.seeds {
        Some(0) => return Err(usage("--seeds must be at least 1")),
        Some(n) => {
            let jobs: Vec<(usize, u64)> = (0..plan.pairings.len())
                .flat_map(|p| (1..=n).map(move |s| (p, s)))
                .collect();
            let b = bar(plan.name.clone());
            let results = check::run_jobs(&plan, &jobs, threads, |p| advance(&b, p))
                .map_err(|e| CliError::Run(e.to_string()))?;
            b.finish_and_clear();
            let mut summaries = vec![RunSummary::default(); plan.pairings.len()];
            for (&(p, _), s) in jobs.iter().zip(&results) {
                summaries[p].merge(s);
            }
            tune::build_report(
                &TuneMeta::of(&plan),
                limits,
                budget,
                StopReason::FixedSeeds,
                summaries,
                vec![n; plan.pairings.len()],
                started.elapsed().as_secs_f64(),
                command,
            )
        }
        None => {
            let b = bar(format!("{} round 1", plan.name));
            let shown = std::sync::atomic::AtomicU64::new(0);
            let report = tune::tune(&plan, limits, budget, threads, command, |p, round| {
                if shown.swap(round, std::sync::atomic::Ordering::Relaxed) != round {
                    b.reset();
                    b.set_prefix(format!("{} round {}", plan.name, round + 1));
                }
                advance(&b, p);
            })
            .map_err(|e| CliError::Run(e.to_string()))?;
            b.finish_and_clear();
            report
        }
    };
    emit(&report, &args.output)
}

fn run_shard(
    plan: &Plan,
    (k, n): (u64, u64),
    seeds: u64,
    limits: Limits,
    threads: usize,
    command: String,
    out: Option<&Path>,
) -> Result<(), CliError> {
    let all: Vec<(usize, u64)> = (0..plan.pairings.len())
        .flat_map(|p| (1..=seeds).map(move |s| (p, s)))
        .collect();
    let mine: Vec<(usize, u64)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 % n == k - 1)
        .map(|(_, j)| *j)
        .collect();
    let b = bar(format!("{} shard {k}/{n}", plan.name));
    let results = check::run_jobs(plan, &mine, threads, |p| advance(&b, p))
        .map_err(|e| CliError::Run(e.to_string()))?;
    b.finish_and_clear();
    let mut text = String::new();
    let header = ShardHeader {
        shard: format!("{k}/{n}"),
        seeds,
        meta: TuneMeta::of(plan),
        limits,
        command,
    };
    text.push_str(&json_line(&header));
    for (&(pairing, seed), summary) in mine.iter().zip(results) {
        text.push_str(&json_line(&ShardRun {
            pairing,
            seed,
            summary,
        }));
    }
    match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::Run(format!("cannot write {}: {e}", path.display())))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}

/// One JSON value and a newline.
fn json_line<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).expect("plain data serialises");
    s.push('\n');
    s
}

/// Runs `mcpsim merge`.
pub fn merge(args: MergeArgs) -> Result<(), CliError> {
    let mut header: Option<(ShardHeader, PathBuf)> = None;
    let mut runs: BTreeMap<(usize, u64), RunSummary> = BTreeMap::new();
    let mut shards_seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in &args.shards {
        let file = std::fs::File::open(path)
            .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
        let mut lines = BufReader::new(file).lines().enumerate();
        let bad =
            |line: usize, what: String| usage(format!("{}:{}: {what}", path.display(), line + 1));
        let (_, first) = lines
            .next()
            .ok_or_else(|| usage(format!("{} is empty: not a shard", path.display())))?;
        let first = first.map_err(|e| bad(0, e.to_string()))?;
        let h: ShardHeader =
            serde_json::from_str(&first).map_err(|e| bad(0, format!("not a shard header: {e}")))?;
        if let Some(other) = shards_seen.insert(h.shard.clone(), path.clone()) {
            return Err(usage(format!(
                "{} and {} are both shard {}",
                other.display(),
                path.display(),
                h.shard
            )));
        }
        match &header {
            Some((h0, p0)) if h0.meta != h.meta || h0.seeds != h.seeds => {
                return Err(usage(format!(
                    "{} and {} come from different sweeps (scenario, grid or seeds differ)",
                    p0.display(),
                    path.display()
                )));
            }
            Some(_) => {}
            None => header = Some((h, path.clone())),
        }
        for (i, line) in lines {
            let line = line.map_err(|e| bad(i, e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let r: ShardRun =
                serde_json::from_str(&line).map_err(|e| bad(i, format!("not a run: {e}")))?;
            if runs.insert((r.pairing, r.seed), r.summary).is_some() {
                return Err(bad(
                    i,
                    format!("pairing {} seed {} appears twice", r.pairing, r.seed),
                ));
            }
        }
    }
    let (h, _) = header.expect("at least one shard (clap requires it)");
    let n = h.meta.pairings.len();
    let missing: Vec<String> = (0..n)
        .flat_map(|p| (1..=h.seeds).map(move |s| (p, s)))
        .filter(|k| !runs.contains_key(k))
        .map(|(p, s)| format!("{} seed {s}", h.meta.pairings[p].pairing))
        .collect();
    if !missing.is_empty() {
        return Err(usage(format!(
            "{} runs are missing (a shard not given?), e.g. {}",
            missing.len(),
            missing
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut summaries = vec![RunSummary::default(); n];
    for ((p, _), s) in &runs {
        if *p >= n {
            return Err(usage(format!(
                "a run names pairing {p}, but the grid has {n}"
            )));
        }
        summaries[*p].merge(s);
    }
    let file_limits = scenario::file::LimitsSpec {
        max_detection: Some(Dur(h.limits.max_detection)),
        max_false_per_hour: Some(h.limits.max_false_rate),
        confidence: Some(h.limits.confidence),
    };
    let limits = limits(&args.limits, Some(&file_limits))?;
    let budget = Budget {
        precision: 0.0,
        seeds_per_round: h.seeds,
        max_seeds: h.seeds,
        wall: None,
    };
    let report = tune::build_report(
        &h.meta,
        limits,
        budget,
        StopReason::FixedSeeds,
        summaries,
        vec![h.seeds; n],
        0.0,
        format!("{} (merged from {} shards)", h.command, shards_seen.len()),
    );
    emit(&report, &args.output)
}

fn emit(report: &TuneReport, out: &OutputArgs) -> Result<(), CliError> {
    print!("{}", text(report));
    let write = |path: &Option<PathBuf>, body: String| -> Result<(), CliError> {
        if let Some(p) = path {
            std::fs::write(p, body)
                .map_err(|e| CliError::Run(format!("cannot write {}: {e}", p.display())))?;
        }
        Ok(())
    };
    write(
        &out.json,
        serde_json::to_string_pretty(report).expect("plain data serialises") + "\n",
    )?;
    write(&out.csv, render::csv(report))?;
    write(&out.markdown, render::markdown(report))?;
    write(&out.html, render::html(report))?;
    if let Some(path) = &out.emit_config {
        match &report.recommendation {
            Some(rec) => write(&out.emit_config, emitted_config(report, rec))?,
            None => {
                return Err(CliError::Run(format!(
                    "no pairing meets the limits with the {} margin: {} not written",
                    percent(report.limits.margin),
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// A share as people write it: `20%`.
fn percent(x: f64) -> String {
    format!("{}%", (x * 1000.0).round() / 10.0)
}

/// The file `--emit-config` writes: the recommended configuration, with what it was measured
/// to do and where.
pub fn emitted_config(r: &TuneReport, rec: &tune::Recommendation) -> String {
    let row = r.rows.iter().find(|x| x.pairing == rec.pairing);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# mcpsim stack configuration, recommended by `mcpsim tune` for scenario {}.",
        r.scenario
    );
    if let Some(row) = row {
        let _ = writeln!(
            o,
            "# Measured on {} seeds: detection p99 {} (limit {}), false suspicions <= {} per \
             connection at {}% (limit {}/h); margin {}.",
            row.seeds,
            row.detection_p99_s.map_or("-".into(), fmt_secs),
            show(r.limits.max_detection),
            row.false_rate_upper.map_or("-".into(), fmt_rate),
            r.limits.confidence * 100.0,
            r.limits.max_false_rate,
            percent(rec.safety)
        );
    }
    let _ = writeln!(
        o,
        "# Run it: mcpsim serve --config FILE / mcpsim client --config FILE"
    );
    let _ = writeln!(
        o,
        "# Re-measure it: mcpsim run SCENARIO --config FILE --seeds N"
    );
    let _ = writeln!(o, "# Reference: docs/configuration.md\n");
    o.push_str(&rec.config.to_toml());
    o
}

/// The terminal report.
pub fn text(r: &TuneReport) -> String {
    let mut o = String::new();
    let l = &r.limits;
    let _ = writeln!(
        o,
        "{}: {} sessions, {} simulated per run; {} pairings; {:.0} simulated connection-hours in {:.1}s on the {} engine",
        r.scenario,
        r.sessions,
        show(Duration::from_secs_f64(r.duration_s)),
        r.rows.len(),
        r.connection_hours,
        r.wall_s,
        r.engine
    );
    if let Some(d) = &r.description {
        let _ = writeln!(o, "  {d}");
    }
    let _ = writeln!(
        o,
        "limits: detection p99 <= {} with no missed detection; false suspicions <= {}/h per connection at {}% confidence",
        show(l.max_detection),
        l.max_false_rate,
        l.confidence * 100.0
    );
    let _ = writeln!(o, "stopped: {}", r.stop.describe());
    let _ = writeln!(o);
    let mut rows = vec![
        [
            "",
            "pairing",
            "seeds",
            "T_D p50 c/s",
            "T_D p99 c/s",
            "missed",
            "λ_M per conn-h [CI]",
            "T_M mean",
            "P_A",
            "B/s",
            "hb/s",
            "meets",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for row in &r.rows {
        let m = &row.metrics;
        let q = |x: Option<f64>| x.map_or("-".to_string(), fmt_secs);
        let pair = |a: Option<f64>, b: Option<f64>| format!("{}/{}", q(a), q(b));
        let rate = match (row.false_rate, row.false_rate_lower, row.false_rate_upper) {
            (Some(x), Some(lo), Some(hi)) => {
                format!("{} [{}, {}]", fmt_rate(x), fmt_rate(lo), fmt_rate(hi))
            }
            _ => "-".into(),
        };
        let tm = tune::worse(
            m.client.mistake_duration.mean,
            m.server.mistake_duration.mean,
        );
        let pa = match (m.client.query_accuracy, m.server.query_accuracy) {
            (Some(a), Some(b)) => format!("{:.5}", a.min(b)),
            _ => "-".into(),
        };
        rows.push(vec![
            if row.pareto { "*" } else { "" }.to_string(),
            row.pairing.clone(),
            row.seeds.to_string(),
            pair(m.client.detection.p50, m.server.detection.p50),
            pair(m.client.detection.p99, m.server.detection.p99),
            (m.client.missed + m.server.missed).to_string(),
            rate,
            q(tm),
            pa,
            row.overhead_bytes_per_s
                .map_or("-".into(), |x| format!("{x:.0}")),
            row.overhead_frames_per_s
                .map_or("-".into(), |x| format!("{x:.2}")),
            match (row.meets_with_margin, row.meets_limits) {
                (true, _) => "yes",
                (false, true) => "thin",
                _ => "no",
            }
            .to_string(),
        ]);
    }
    o.push_str(&super::run::columns(&rows));
    let _ = writeln!(
        o,
        "  * Pareto frontier of detection p99 against false rate. c/s: clients watching the server / server watching clients."
    );
    let _ = writeln!(
        o,
        "  λ_M: the worse side's false suspicions per connection-hour, {}% interval. B/s, hb/s: heartbeat bytes and frames per connection, both ends.",
        l.confidence * 100.0
    );
    let _ = writeln!(
        o,
        "  meets: yes with the {} margin on both limits; thin: within the limits, by less than the margin.",
        percent(l.margin)
    );
    let _ = writeln!(o, "  {}", crate::config::DetectorKind::PAIRING_LEGEND);
    let _ = writeln!(o);
    match (&r.recommendation, &r.closest) {
        (Some(rec), _) => {
            let _ = writeln!(
                o,
                "recommended: {} (the least heartbeat overhead that meets the limits with a {} margin); margins: detection {:.3}s under the limit, false rate {} under it ({} of the tighter limit)",
                rec.pairing,
                percent(l.margin),
                rec.detection_margin_s,
                fmt_rate(rec.false_rate_margin),
                percent(rec.safety)
            );
            match &rec.alternative {
                Some(a) => {
                    let _ = writeln!(
                        o,
                        "next safer: {} ({} margin) for {:.0} heartbeat bytes/s more per connection",
                        a.pairing,
                        percent(a.safety),
                        a.extra_bytes_per_s
                    );
                }
                None => {
                    let _ = writeln!(o, "next safer: none; no other pairing has a wider margin");
                }
            }
            let _ = writeln!(
                o,
                "\nthe recommended stack configuration (--emit-config FILE writes it; serve and client take it with --config):\n"
            );
            for line in rec.config.to_toml().lines() {
                let _ = writeln!(o, "    {line}");
            }
            let _ = writeln!(o);
        }
        (None, Some(c)) => {
            let _ = writeln!(
                o,
                "no pairing meets the limits with a {} margin; closest: {}, whose {} is {:.2}x its limit",
                percent(l.margin),
                c.pairing,
                if c.limit == "detection" {
                    "detection p99"
                } else {
                    "false-suspicion rate (upper bound)"
                },
                c.ratio
            );
        }
        (None, None) => {
            let _ = writeln!(o, "no pairing meets the limits");
        }
    }
    let _ = writeln!(o, "reproduce: {}", r.command);
    o
}
