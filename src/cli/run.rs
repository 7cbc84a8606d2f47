//! `mcpsim run`: every pairing of every scenario file on every seed, judged, with a table per
//! scenario and the assertions that failed, each with the command that replays its worst run.
//!
//! The table shows, per pairing and side, censored failures beside missed ones, λ_M with the
//! interval its assertions use (the wider of the Poisson and the between-seed one, and which),
//! and P_A beside the detector's part of it (false suspicions) and the share lost to reconnecting
//! after real failures. The JSON
//! (`--json`) holds every metric, both intervals among them
//! ([`crate::sim::metrics::SideMetrics`]).
//!
//! Exit status: 0 when every assertion holds, 1 when one fails, 2 on unusable input. A run in
//! which a side never had a connected session is an error (it would measure nothing), named by
//! scenario, pairing, seed and side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::CliError;
use crate::config::StackConfig;
use crate::scenario::check::{self, Progress, Report, fmt_rate, fmt_secs};
use crate::scenario::units::show;
use crate::scenario::{self, EngineChoice, Plan};
use crate::sim::metrics::SideMetrics;

/// Arguments of `mcpsim run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files, or directories whose `*.toml` files are all run.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Run seeds 1 … N instead of the files' seeds.
    #[arg(long, conflicts_with = "seed")]
    pub seeds: Option<u64>,
    /// Run this one seed instead of the files' seeds.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run every scenario on this stack configuration (e.g. from `mcpsim tune --emit-config`)
    /// instead of the file's stack and grid: its one pairing, and the assertions that apply
    /// to every pairing or name that one.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Also write every result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Runs at once (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Leave the files' `[traffic]` out: the same runs with idle applications, to see what the
    /// traffic costs the heartbeats (round trips, false suspicions) and the simulator.
    #[arg(long)]
    pub no_traffic: bool,
    /// The simulator back-end: `event` drives the endpoints and sessions from one event queue,
    /// about 4× faster, but refuses scenarios with the server's load or throttling (not
    /// modelled yet); `turmoil` runs the tokio drivers themselves and models everything;
    /// `auto` takes the event engine wherever it models the file. The report names the engine
    /// that ran.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
}

/// The scenario files named by `paths`: files as given, directories' `*.toml` in name order.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| CliError::Usage(format!("cannot list {}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            if found.is_empty() {
                return Err(CliError::Usage(format!(
                    "{} holds no scenario (*.toml) files",
                    p.display()
                )));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Runs `mcpsim run`.
pub fn run(args: RunArgs) -> Result<(), CliError> {
    if args.seeds == Some(0) {
        return Err(CliError::Usage("--seeds must be at least 1".into()));
    }
    if let Some(n) = args.seeds
        && n > scenario::limits::MAX_SEEDS
    {
        return Err(CliError::Usage(format!(
            "--seeds {n} is over the bound of {} seeds",
            scenario::limits::MAX_SEEDS
        )));
    }
    // Every file is checked before anything runs: a typo in the last file should not cost the
    // time of the first.
    let mut plans = files(&args.paths)?
        .iter()
        .map(|f| scenario::load(f))
        .collect::<Result<Vec<Plan>, _>>()?;
    if let Some(path) = &args.config {
        let stack = StackConfig::load(path).map_err(CliError::Usage)?;
        let named = path.to_string_lossy().into_owned();
        plans = plans
            .iter()
            .map(|p| {
                let mut p = p.with_stack(stack.clone());
                p.replay_args
                    .extend(["--config".to_string(), named.clone()]);
                p
            })
            .collect();
    }
    if args.no_traffic {
        plans = plans.iter().map(Plan::without_traffic).collect();
    }
    plans = plans.iter().map(|p| p.choosing(args.engine)).collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut reports = Vec::new();
    for plan in &plans {
        let seeds = match (args.seed, args.seeds) {
            (Some(s), _) => vec![s],
            (None, Some(n)) => (1..=n).collect(),
            (None, None) => plan.seeds.clone(),
        };
        let bar = bar(plan.name.clone());
        let started = Instant::now();
        let report = check::run(plan, &seeds, jobs, |p| advance(&bar, p))
            .map_err(|e| CliError::Run(format!("{}: {e}", plan.path)))?;
        bar.finish_and_clear();
        print!("{}", table(plan, &report, started.elapsed().as_secs_f64()));
        reports.push(report);
    }
    if let Some(path) = &args.json {
        write_json(path, &reports)?;
    }
    let failed: usize = reports.iter().map(|r| r.failed().count()).sum();
    let checks: usize = reports.iter().map(|r| r.checks.len()).sum();
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} of {checks} assertion checks failed"
        )));
    }
    println!("all {checks} assertion checks hold");
    Ok(())
}

/// A progress bar of simulated time with an ETA on standard error; indicatif draws nothing when
/// that is not a terminal. [`advance`] moves it.
pub(crate) fn bar(prefix: String) -> ProgressBar {
    let b = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {msg}, {elapsed} elapsed, ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(prefix);
    b
}

/// Shows `p` on `b`: the bar measures simulated time over all runs (a single long run moves it
/// too), the message counts runs.
pub(crate) fn advance(b: &ProgressBar, p: Progress) {
    b.set_length(p.simulated_total.as_millis() as u64);
    b.set_position(p.simulated.as_millis() as u64);
    let total = p.simulated_total.as_secs_f64();
    let (unit, per) = match total {
        t if t >= 2.0 * 3600.0 => ("h", 3600.0),
        t if t >= 120.0 => ("min", 60.0),
        _ => ("s", 1.0),
    };
    b.set_message(format!(
        "{}/{} runs, {:.0} of {:.0} {unit} simulated",
        p.runs_done,
        p.runs,
        p.simulated.as_secs_f64() / per,
        total / per
    ));
}

fn write_json(path: &Path, reports: &[Report]) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(reports)
        .map_err(|e| CliError::Run(format!("cannot encode the results: {e}")))?;
    std::fs::write(path, text + "\n")
        .map_err(|e| CliError::Run(format!("cannot write {}: {e}", path.display())))
}

/// The report of one scenario: a row per pairing and side, then the assertion checks.
pub fn table(plan: &Plan, r: &Report, wall_s: f64) -> String {
    let mut o = String::new();
    let sc = plan.scenario(0);
    let _ = writeln!(
        o,
        "{} ({}): {} pairings x {} seeds, {} sessions for {} each; {:.1}s wall on the {} engine",
        plan.name,
        plan.path,
        plan.pairings.len(),
        r.seeds.len(),
        sc.sessions,
        show(sc.duration),
        wall_s,
        r.engine
    );
    if let Some(d) = &plan.description {
        let _ = writeln!(o, "  {d}");
    }
    let mut rows = vec![
        [
            "pairing",
            "side",
            "failures",
            "T_D p50",
            "p90",
            "p99",
            "max",
            "missed",
            "censored",
            "false",
            "λ_M per conn-h [95% CI, from]",
            "T_M max",
            "P_A",
            "P_A det",
            "reconnecting",
            "reconn/h",
            "B/s out",
            "hb/s out",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in &r.pairings {
        let m = &p.metrics;
        for (side, s) in [("client", &m.client), ("server", &m.server)] {
            let mut row = vec![
                if side == "client" {
                    p.pairing.clone()
                } else {
                    String::new()
                },
                side.to_string(),
            ];
            row.extend(side_cells(s));
            row.push(if side == "client" {
                m.reconnects
                    .reconnects_per_hour
                    .map_or("-".into(), |x| format!("{x:.2}"))
            } else {
                String::new()
            });
            row.push(
                s.overhead
                    .bytes_out_per_sec
                    .map_or("-".into(), |x| format!("{x:.1}")),
            );
            row.push(
                s.overhead
                    .heartbeats_sent_per_sec
                    .map_or("-".into(), |x| format!("{x:.2}")),
            );
            rows.push(row);
        }
    }
    o.push_str(&columns(&rows));
    let _ = writeln!(
        o,
        "  client: the clients watching the server; server: the server watching each client. \
         T_D, T_M in seconds; censored: failures the run ended too early to decide."
    );
    let _ = writeln!(
        o,
        "  CI from: poisson (pooled count), seeds (between seeds, when wider: the false \
         suspicions cluster), poisson (1 seed) (no between-seed interval with one seed)."
    );
    let _ = writeln!(
        o,
        "  P_A: share of live time trusted; P_A det: counting only the detector's false \
         suspicions (and the reconnects they cost); reconnecting: share still suspected after \
         a real failure ended, waiting for the session (P_A = P_A det − reconnecting)."
    );
    // The legend goes where pairing names carry a detector.
    if plan.names_detector() {
        let _ = writeln!(o, "  {}", crate::config::DetectorKind::PAIRING_LEGEND);
    }
    o.push_str(&heartbeat_table(r));
    if plan.has_traffic() {
        o.push_str(&delivery_table(r));
    }
    let drops: Vec<String> = r
        .pairings
        .iter()
        .filter(|p| p.metrics.queue_drops > 0)
        .map(|p| format!("{} {}", p.pairing, p.metrics.queue_drops))
        .collect();
    if !drops.is_empty() {
        let _ = writeln!(
            o,
            "  packets dropped by full link queues (tail drops, each resent by TCP): {}",
            drops.join(", ")
        );
    }
    let held = r.checks.iter().filter(|c| c.holds).count();
    let _ = writeln!(o, "  assertions: {held} of {} checks hold", r.checks.len());
    for c in r.failed() {
        let _ = writeln!(o, "  {c}");
    }
    o.push('\n');
    o
}

/// What each side received of heartbeats: round trips and the longest gap, a row per pairing and
/// side.
fn heartbeat_table(r: &Report) -> String {
    let mut rows = vec![
        [
            "pairing",
            "side",
            "RTT p50",
            "p99",
            "p99.9",
            "max",
            "RTTs",
            "longest gap",
            "in run",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in &r.pairings {
        let m = &p.metrics;
        for (side, s) in [("client", &m.client), ("server", &m.server)] {
            let pairing = if side == "client" {
                p.pairing.clone()
            } else {
                String::new()
            };
            let mut row = vec![pairing, side.to_string()];
            // A side that sends no heartbeats has no round trip: a dash, not a zero.
            let ms = |x: f64| format!("{:.2}ms", x * 1e3);
            match &s.rtt {
                Some(q) => row.extend([
                    ms(q.p50),
                    ms(q.p99),
                    ms(q.p999),
                    ms(q.max),
                    q.samples.to_string(),
                ]),
                None => row.extend(std::iter::repeat_n("—".to_string(), 5)),
            }
            match s.longest_gap {
                Some(g) => row.extend([fmt_secs(g.value), format!("seed {}", g.seed)]),
                None => row.extend(["—".to_string(), String::new()]),
            }
            rows.push(row);
        }
    }
    let mut o = columns(&rows);
    let _ = writeln!(
        o,
        "  RTT: from sending a heartbeat to receiving its reply (— : the side sends none, as the \
         server in one-way mode). Longest gap: between two heartbeats received on one \
         connection (one-way client: replies), never across a reconnect."
    );
    o
}

/// What became of the applications' messages, a row per pairing, and the first violations.
fn delivery_table(r: &Report) -> String {
    let mut rows = vec![
        [
            "pairing",
            "messages",
            "delivered",
            "reported",
            "died w/ sender",
            "in flight",
            "lost",
            "dup",
            "reord",
            "unacc",
            "latency p50",
            "p99",
            "max",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut violations = Vec::new();
    for p in &r.pairings {
        let Some(d) = &p.metrics.delivery else {
            continue;
        };
        let mut row = vec![p.pairing.clone()];
        row.extend(
            [
                d.fates.sent,
                d.fates.delivered,
                d.fates.reported,
                d.fates.died_with_sender,
                d.fates.in_flight,
                d.fates.lost,
                d.fates.duplicated,
                d.fates.reordered,
                d.fates.unaccounted,
            ]
            .map(|n| n.to_string()),
        );
        let ms = |x: f64| format!("{:.2}ms", x * 1e3);
        match &d.latency {
            Some(q) => row.extend([ms(q.p50), ms(q.p99), ms(q.max)]),
            None => row.extend(std::iter::repeat_n("—".to_string(), 3)),
        }
        rows.push(row);
        for (seed, v) in &d.violations {
            violations.push((p.pairing.clone(), *seed, v.clone()));
        }
    }
    let mut o = columns(&rows);
    let _ = writeln!(
        o,
        "  messages: handed to a session, both ways. Reported: not delivered, and the sender was \
         told (§12). Died w/ sender: its process was killed or crashed. In flight: undelivered \
         at the end, but sent in the drain or while the ends were apart. Lost, dup(licated), \
         reord(ered), unacc(ounted): violations. Latency: hand-over to delivery."
    );
    for (pairing, seed, v) in violations.iter().take(4) {
        let _ = writeln!(o, "  {pairing} seed {seed}: {v}");
        for line in &v.trace {
            let _ = writeln!(o, "      {line}");
        }
    }
    o
}

fn side_cells(s: &SideMetrics) -> Vec<String> {
    let q = |x: Option<f64>| x.map_or("-".to_string(), fmt_secs);
    let rate = match (s.mistake_rate_per_hour, s.false_rate_interval()) {
        (Some(r), Some(i)) => format!(
            "{} [{}, {}, {}]",
            fmt_rate(r),
            fmt_rate(i.lower),
            fmt_rate(i.upper),
            s.mistake_rate_bound_from.map_or("-", |b| b.label())
        ),
        _ => "-".into(),
    };
    let share = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.6}"));
    vec![
        s.failures.to_string(),
        q(s.detection.p50),
        q(s.detection.p90),
        q(s.detection.p99),
        q(s.detection.max),
        s.missed.to_string(),
        s.censored_failures.to_string(),
        s.false_suspicions.to_string(),
        rate,
        q(s.mistake_duration.max),
        share(s.query_accuracy),
        share(s.query_accuracy_detector),
        share(s.reconnecting_share),
    ]
}

/// Left-aligned text in columns two spaces apart, indented by two.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut o = String::new();
    for r in rows {
        let mut line = String::from(" ");
        for (i, c) in r.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            let _ = write!(line, " {c}{}", " ".repeat(pad));
        }
        let _ = writeln!(o, "{}", line.trim_end());
    }
    o
}
