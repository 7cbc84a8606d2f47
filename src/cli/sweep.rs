//! `mcpsim sweep`: compares the failure detectors over a grid of heartbeat interval η × miss
//! threshold k on the synthetic heartbeat model ([`crate::sim::synthetic`]) and recommends a
//! pairing.
//!
//! Per detector, k means:
//!
//! - `k-miss`: suspect after k missing heartbeats plus the grace (`--grace`, default 0).
//! - `phi`: Akka's defaults (threshold 8, min σ 100 ms) with an acceptable heartbeat pause of
//!   `(k − 1)·η`, so that it tolerates about as many missing heartbeats as k-miss (Akka's own
//!   1 s / 3 s is k = 4). The phi detector itself ignores k.
//! - `adaptive`: after a first miss, k − 1 probes η/4 apart (its defaults), with the same grace.
//!
//! Durations are written with a unit, as `humantime` reads them: `250ms`, `1s`, `1.5s`, `2m`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::CliError;
use crate::proto::detector::{AdaptiveConfig, DetectorConfig, KMissConfig, PhiConfig};
use crate::sim::synthetic::{
    Effort, GilbertElliott, KMissClosedForm, Loss, Measurement, Model, Pairing, measure_all,
};

/// Bytes of one empty HEARTBEAT or HEARTBEAT_ACK frame (the header alone).
const HEARTBEAT_FRAME: f64 = 16.0;

/// Confidence of the interval on λ_M.
const CONFIDENCE: f64 = 0.95;

/// Arguments of `mcpsim sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Heartbeat intervals η to try, comma-separated.
    #[arg(long, default_value = "250ms,500ms,1s,2s")]
    pub intervals: String,
    /// Miss thresholds k to try, comma-separated.
    #[arg(long, default_value = "2,3,4,6")]
    pub thresholds: String,
    /// Detectors to compare, comma-separated: k-miss, phi, adaptive.
    #[arg(long, default_value = "k-miss,phi,adaptive")]
    pub detectors: String,
    /// Mean probability that a heartbeat (or probe, or its answer) is lost, in [0, 1).
    #[arg(long, default_value_t = 0.02)]
    pub loss: f64,
    /// Bursty loss: mean burst length in heartbeats (Gilbert model: everything lost in the Bad
    /// state, nothing in Good, mean loss as --loss). Without it, losses are independent.
    #[arg(long, value_name = "HEARTBEATS")]
    pub burst: Option<f64>,
    /// Grace added to the k-miss and adaptive deadlines, to absorb delay jitter.
    #[arg(long, default_value = "0ms")]
    pub grace: String,
    /// One-way delay, drawn uniformly from [0, jitter].
    #[arg(long, default_value = "50ms")]
    pub jitter: String,
    /// Simulated connection-hours per pairing for the false-suspicion run.
    #[arg(long, default_value_t = 500.0)]
    pub hours: f64,
    /// Crash trials per pairing for detection times.
    #[arg(long, default_value_t = 2000)]
    pub crashes: usize,
    /// Master seed of every random stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Limit on the p99 detection time for the recommendation.
    #[arg(long, default_value = "5s")]
    pub max_detection: String,
    /// Limit on false suspicions per connection-hour (upper 95% bound) for the recommendation.
    #[arg(long, default_value_t = 0.1)]
    pub max_false_rate: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// The validated sweep.
struct Plan {
    model: Model,
    pairings: Vec<Pairing>,
    effort: Effort,
    max_detection: Duration,
    max_false_rate: f64,
    command: String,
}

fn usage(flag: &str, msg: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("--{flag}: {msg}"))
}

fn parse_duration(flag: &str, s: &str) -> Result<Duration, CliError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        usage(
            flag,
            format_args!("bad duration {s:?} ({e}); write e.g. 250ms or 1s"),
        )
    })
}

fn list<'a>(flag: &str, s: &'a str) -> Result<Vec<&'a str>, CliError> {
    let items: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect();
    if items.is_empty() {
        return Err(usage(flag, "empty list"));
    }
    Ok(items)
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

impl Plan {
    fn new(a: &SweepArgs) -> Result<Plan, CliError> {
        let mut intervals = BTreeSet::new();
        for s in list("intervals", &a.intervals)? {
            let d = parse_duration("intervals", s)?;
            if d < Duration::from_millis(1) {
                return Err(usage("intervals", format_args!("{s:?} is below 1ms")));
            }
            intervals.insert(d);
        }
        let mut thresholds = BTreeSet::new();
        for s in list("thresholds", &a.thresholds)? {
            let k: u32 = s
                .parse()
                .map_err(|_| usage("thresholds", format_args!("{s:?} is not a whole number")))?;
            if !(1..=1000).contains(&k) {
                return Err(usage("thresholds", format_args!("{k} is outside 1..=1000")));
            }
            thresholds.insert(k);
        }
        let mut detectors = Vec::new();
        for s in list("detectors", &a.detectors)? {
            let d = match s {
                "k-miss" => "k-miss",
                "phi" => "phi",
                "adaptive" => "adaptive",
                _ => {
                    return Err(usage(
                        "detectors",
                        format_args!("unknown detector {s:?}; choose from k-miss, phi, adaptive"),
                    ));
                }
            };
            if !detectors.contains(&d) {
                detectors.push(d);
            }
        }
        if !(0.0..1.0).contains(&a.loss) {
            return Err(usage("loss", format_args!("{} is outside [0, 1)", a.loss)));
        }
        let loss = match a.burst {
            None => Loss::Independent { p: a.loss },
            Some(b) => {
                Loss::Bursty(GilbertElliott::with_mean_loss(a.loss, b).ok_or_else(|| {
                    usage(
                        "burst",
                        format_args!(
                            "{b} cannot give mean loss {}: the mean burst length must be at \
                             least 1 and at least p/(1 − p)",
                            a.loss
                        ),
                    )
                })?)
            }
        };
        let jitter = parse_duration("jitter", &a.jitter)?;
        if !(a.hours > 0.0 && a.hours <= 1e6) {
            return Err(usage(
                "hours",
                format_args!("{} is outside (0, 1e6]", a.hours),
            ));
        }
        let max_detection = parse_duration("max-detection", &a.max_detection)?;
        let grace = parse_duration("grace", &a.grace)?;
        if !(a.max_false_rate >= 0.0 && a.max_false_rate.is_finite()) {
            return Err(usage("max-false-rate", "must be a finite rate ≥ 0"));
        }
        let mut pairings = Vec::new();
        for d in &detectors {
            for &eta in &intervals {
                for &k in &thresholds {
                    let detector = match *d {
                        "k-miss" => DetectorConfig::KMiss(KMissConfig { grace }),
                        "phi" => DetectorConfig::Phi(PhiConfig {
                            acceptable_heartbeat_pause: PhiConfig::pause_for_miss_threshold(eta, k),
                            ..PhiConfig::default()
                        }),
                        _ => DetectorConfig::Adaptive(AdaptiveConfig {
                            grace,
                            ..AdaptiveConfig::default()
                        }),
                    };
                    pairings.push(Pairing {
                        detector,
                        interval: eta,
                        miss_threshold: k,
                    });
                }
            }
        }
        let join = |v: Vec<String>| v.join(",");
        let mut command = format!(
            "mcpsim sweep --intervals {} --thresholds {} --detectors {} --loss {}",
            join(intervals.iter().map(|&d| show(d)).collect()),
            join(thresholds.iter().map(u32::to_string).collect()),
            detectors.join(","),
            a.loss
        );
        if let Some(b) = a.burst {
            let _ = write!(command, " --burst {b}");
        }
        let _ = write!(
            command,
            " --grace {} --jitter {} --hours {} --crashes {} --seed {} --max-detection {} --max-false-rate {}",
            show(grace),
            show(jitter),
            a.hours,
            a.crashes,
            a.seed,
            show(max_detection),
            a.max_false_rate
        );
        if a.format == Format::Json {
            command.push_str(" --format json");
        }
        Ok(Plan {
            model: Model { loss, jitter },
            pairings,
            effort: Effort {
                hours: a.hours,
                crashes: a.crashes,
                seed: a.seed,
            },
            max_detection,
            max_false_rate: a.max_false_rate,
            command,
        })
    }

    fn header(&self) -> String {
        let loss = match self.model.loss {
            Loss::Independent { p } => format!("independent heartbeat loss p={p}"),
            Loss::Bursty(ge) => format!(
                "bursty heartbeat loss (Gilbert, mean {:.4}, mean burst {} heartbeats)",
                ge.mean_loss(),
                1.0 / ge.bad_to_good
            ),
        };
        format!(
            "synthetic heartbeat model (abstract, no TCP): {loss}, one-way delay uniform in [0, {}], in-order delivery",
            show(self.model.jitter)
        )
    }
}

/// One row of the result.
#[derive(Debug, Serialize)]
struct Row {
    detector: &'static str,
    interval_ms: f64,
    k: u32,
    detection_p50_s: Option<f64>,
    detection_p99_s: Option<f64>,
    detection_max_s: Option<f64>,
    detection_mean_s: Option<f64>,
    missed_detections: usize,
    false_suspicions: u64,
    exposure_hours: f64,
    false_rate_per_hour: f64,
    false_rate_ci95: (f64, f64),
    mean_mistake_duration_s: Option<f64>,
    query_accuracy: f64,
    overhead_bytes_per_s: f64,
    pareto: bool,
    meets_limits: bool,
    /// For k-miss: the closed forms for independent loss and no delay.
    closed_form: Option<KMissClosedForm>,
}

impl Row {
    fn new(m: &Measurement, p: f64) -> Row {
        let live = &m.live;
        let eta = m.pairing.interval;
        // One HEARTBEAT and its HEARTBEAT_ACK per heartbeat and per probe.
        let frames = 2.0 * (live.heartbeats + live.probes) as f64;
        let name = m.pairing.detector.name();
        Row {
            detector: name,
            interval_ms: eta.as_secs_f64() * 1000.0,
            k: m.pairing.miss_threshold,
            detection_p50_s: m.detection.quantile(0.5),
            detection_p99_s: m.detection.quantile(0.99),
            detection_max_s: m.detection.max(),
            detection_mean_s: m.detection.mean(),
            missed_detections: m.detection.missed,
            false_suspicions: live.false_suspicions,
            exposure_hours: live.exposure_hours(),
            false_rate_per_hour: live.mistake_rate_per_hour(),
            false_rate_ci95: live.mistake_rate_interval(CONFIDENCE),
            mean_mistake_duration_s: live.mean_mistake_duration(),
            query_accuracy: live.query_accuracy(),
            overhead_bytes_per_s: frames * HEARTBEAT_FRAME / live.exposure.as_secs_f64(),
            pareto: false,
            meets_limits: false,
            closed_form: (name == "k-miss")
                .then(|| KMissClosedForm::new(p, eta, m.pairing.miss_threshold)),
        }
    }

    /// p99 T_D, infinite without trials.
    fn p99(&self) -> f64 {
        self.detection_p99_s.unwrap_or(f64::INFINITY)
    }
}

/// Marks the rows that no other row beats on both p99 T_D and λ_M.
fn mark_pareto(rows: &mut [Row]) {
    let keys: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.p99(), r.false_rate_per_hour))
        .collect();
    for (i, r) in rows.iter_mut().enumerate() {
        let (d, l) = keys[i];
        r.pareto = !keys
            .iter()
            .any(|&(d2, l2)| d2 <= d && l2 <= l && (d2 < d || l2 < l));
    }
}

#[derive(Debug, Serialize)]
struct Recommendation {
    row: usize,
    detector: &'static str,
    interval_ms: f64,
    k: u32,
    /// Limit minus p99 T_D.
    detection_margin_s: f64,
    /// Limit minus the upper 95% bound of λ_M.
    false_rate_margin_per_hour: f64,
}

#[derive(Debug, Serialize)]
struct Closest {
    row: usize,
    /// p99 T_D over its limit, and the upper bound of λ_M over its limit.
    detection_ratio: f64,
    false_rate_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    model_note: String,
    model: &'a Model,
    effort: &'a Effort,
    max_detection_s: f64,
    max_false_rate_per_hour: f64,
    rows: Vec<Row>,
    recommendation: Option<Recommendation>,
    closest: Option<Closest>,
    command: &'a str,
}

pub fn run(args: SweepArgs) -> Result<(), CliError> {
    let plan = Plan::new(&args)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results = measure_all(&plan.model, &plan.pairings, &plan.effort, threads);
    let p = plan.model.loss.mean();
    let mut rows: Vec<Row> = results.iter().map(|m| Row::new(m, p)).collect();
    mark_pareto(&mut rows);
    let limit_td = plan.max_detection.as_secs_f64();
    for r in &mut rows {
        r.meets_limits = r.p99() <= limit_td && r.false_rate_ci95.1 <= plan.max_false_rate;
    }
    let recommendation = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.meets_limits)
        .min_by(|(_, a), (_, b)| {
            a.overhead_bytes_per_s
                .total_cmp(&b.overhead_bytes_per_s)
                .then(a.p99().total_cmp(&b.p99()))
                .then(a.false_rate_ci95.1.total_cmp(&b.false_rate_ci95.1))
        })
        .map(|(i, r)| Recommendation {
            row: i,
            detector: r.detector,
            interval_ms: r.interval_ms,
            k: r.k,
            detection_margin_s: limit_td - r.p99(),
            false_rate_margin_per_hour: plan.max_false_rate - r.false_rate_ci95.1,
        });
    let ratio = |x: f64, limit: f64| {
        if limit > 0.0 {
            x / limit
        } else {
            f64::INFINITY
        }
    };
    let closest = if recommendation.is_some() {
        None
    } else {
        rows.iter()
            .enumerate()
            .map(|(i, r)| Closest {
                row: i,
                detection_ratio: ratio(r.p99(), limit_td),
                false_rate_ratio: ratio(r.false_rate_ci95.1, plan.max_false_rate),
            })
            .min_by(|a, b| {
                a.detection_ratio
                    .max(a.false_rate_ratio)
                    .total_cmp(&b.detection_ratio.max(b.false_rate_ratio))
            })
    };
    let report = Report {
        model_note: plan.header(),
        model: &plan.model,
        effort: &plan.effort,
        max_detection_s: limit_td,
        max_false_rate_per_hour: plan.max_false_rate,
        rows,
        recommendation,
        closest,
        command: &plan.command,
    };
    let out = match args.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::Io(std::io::Error::other(e)))?;
            s.push('\n');
            s
        }
        Format::Table => table(&plan, &report),
    };
    use std::io::Write;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

/// Seconds with millisecond precision, `∞` for a missed detection, `-` for none.
fn secs(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x.is_infinite() => "∞".into(),
        Some(x) => format!("{x:.3}"),
    }
}

/// A rate with three significant digits, without an exponent down to 0.001.
fn rate(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 0.001 {
        let digits = (2 - x.log10().floor() as i32).max(0) as usize;
        format!("{x:.digits$}")
    } else {
        format!("{x:.2e}")
    }
}

fn accuracy(x: f64) -> String {
    if x >= 1.0 {
        "1".into()
    } else {
        format!("{x:.7}")
    }
}

fn table(plan: &Plan, r: &Report) -> String {
    let mut o = String::new();
    let e = &plan.effort;
    let _ = writeln!(o, "{}", plan.header());
    let _ = writeln!(
        o,
        "per pairing: {} simulated connection-hours for false suspicions, {} crash trials at a uniformly random phase; seed {}",
        e.hours, e.crashes, e.seed
    );
    let _ = writeln!(
        o,
        "k: k-miss suspects after k missing heartbeats; phi uses threshold 8 with acceptable pause (k-1)·η; adaptive sends k-1 probes η/4 apart"
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {:<8} {:>6} {:>3} | {:>7} {:>7} {:>7} {:>6} | {:>26} {:>7} {:>9} | {:>6}",
        "detector",
        "η",
        "k",
        "T_D p50",
        "p99",
        "max",
        "missed",
        "λ_M /h [95% CI]",
        "E(T_M)",
        "P_A",
        "B/s"
    );
    for row in &r.rows {
        let (lo, hi) = row.false_rate_ci95;
        let _ = writeln!(
            o,
            "{} {:<8} {:>6} {:>3} | {:>7} {:>7} {:>7} {:>6} | {:>26} {:>7} {:>9} | {:>6.1}",
            if row.pareto { '*' } else { ' ' },
            row.detector,
            show(Duration::from_secs_f64(row.interval_ms / 1000.0)),
            row.k,
            secs(row.detection_p50_s),
            secs(row.detection_p99_s),
            secs(row.detection_max_s),
            row.missed_detections,
            format!(
                "{} [{}, {}]",
                rate(row.false_rate_per_hour),
                rate(lo),
                rate(hi)
            ),
            secs(row.mean_mistake_duration_s),
            accuracy(row.query_accuracy),
            row.overhead_bytes_per_s,
        );
    }
    let _ = writeln!(
        o,
        "* Pareto frontier of p99 T_D vs λ_M. T_D in seconds from the crash; E(T_M) in seconds. B/s: frame bytes on the wire,"
    );
    let _ = writeln!(
        o,
        "  both directions: an empty HEARTBEAT and its HEARTBEAT_ACK (16 B each) per heartbeat and per probe; TCP/IP headers not counted."
    );

    // The k-miss closed forms next to the measured figures.
    let kmiss: Vec<&Row> = r.rows.iter().filter(|x| x.closed_form.is_some()).collect();
    if !kmiss.is_empty() {
        let _ = writeln!(o);
        let p = plan.model.loss.mean();
        let mut caveat = Vec::new();
        if matches!(plan.model.loss, Loss::Bursty(_)) {
            caveat.push("loss is bursty, so they do not apply".to_string());
        }
        if !plan.model.jitter.is_zero() {
            caveat.push(format!(
                "the measured runs have jitter up to {}, which lets a late heartbeat miss the deadline and adds to T_D",
                show(plan.model.jitter)
            ));
        }
        let _ = writeln!(
            o,
            "k-miss, measured vs closed form (independent loss p={p}, zero delay){}",
            if caveat.is_empty() {
                String::new()
            } else {
                format!(": {}", caveat.join("; "))
            }
        );
        let _ = writeln!(
            o,
            "  {:>6} {:>3} | {:>9} {:>9} | {:>7} {:>7} | {:>9} {:>9} | {:>7} {:>7}",
            "η", "k", "λ_M /h", "closed", "E(T_M)", "closed", "P_A", "closed", "mean TD", "closed"
        );
        for row in kmiss {
            let c = row.closed_form.expect("k-miss rows have closed forms");
            let _ = writeln!(
                o,
                "  {:>6} {:>3} | {:>9} {:>9} | {:>7} {:>7} | {:>9} {:>9} | {:>7} {:>7}",
                show(Duration::from_secs_f64(row.interval_ms / 1000.0)),
                row.k,
                rate(row.false_rate_per_hour),
                rate(c.mistake_rate_per_hour),
                secs(row.mean_mistake_duration_s),
                secs(Some(c.mean_mistake_duration)),
                accuracy(row.query_accuracy),
                accuracy(c.query_accuracy),
                secs(row.detection_mean_s),
                secs(Some(c.mean_detection)),
            );
        }
    }

    let _ = writeln!(o);
    let limits = format!(
        "p99 T_D ≤ {} and λ_M ≤ {}/h at 95%",
        show(plan.max_detection),
        plan.max_false_rate
    );
    let name = |row: &Row| {
        format!(
            "{} η={} k={}",
            row.detector,
            show(Duration::from_secs_f64(row.interval_ms / 1000.0)),
            row.k
        )
    };
    match (&r.recommendation, &r.closest) {
        (Some(rec), _) => {
            let row = &r.rows[rec.row];
            let _ = writeln!(
                o,
                "recommendation ({limits}, lowest heartbeat overhead): {}",
                name(row)
            );
            let _ = writeln!(
                o,
                "  p99 T_D {}s, {}s under the limit; λ_M ≤ {}/h at 95%, {}/h under the limit; overhead {:.1} B/s",
                secs(row.detection_p99_s),
                secs(Some(rec.detection_margin_s)),
                rate(row.false_rate_ci95.1),
                rate(rec.false_rate_margin_per_hour),
                row.overhead_bytes_per_s
            );
        }
        (None, Some(c)) => {
            let row = &r.rows[c.row];
            let _ = writeln!(o, "no pairing meets {limits}.");
            let _ = writeln!(
                o,
                "  closest: {}: p99 T_D {}s ({:.2}× the limit), λ_M ≤ {}/h at 95% ({:.2}× the limit)",
                name(row),
                secs(row.detection_p99_s),
                c.detection_ratio,
                rate(row.false_rate_ci95.1),
                c.false_rate_ratio
            );
            let _ = writeln!(
                o,
                "  the {} limit came closer to being met",
                if c.detection_ratio <= c.false_rate_ratio {
                    "detection-time"
                } else {
                    "false-suspicion"
                }
            );
        }
        (None, None) => {
            let _ = writeln!(o, "no pairing to recommend.");
        }
    }
    let _ = writeln!(o, "reproduce: {}", plan.command);
    o
}
