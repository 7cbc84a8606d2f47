//! Every scenario file in `scenarios/` is two tests, named after the file:
//!
//! - `<name>::trace`: the file's short fixed-seed snapshot run; its trace must match the insta
//!   snapshot `tests/scenarios/snapshots/<name>.snap` byte for byte. A changed trace fails with a
//!   diff; `cargo insta review` (or `INSTA_UPDATE=always cargo test --test scenarios`) accepts it.
//! - `<name>::assertions`: every pairing on every seed of the file, judged; every assertion must
//!   hold. A failure prints the command that replays the worst run. The same runs again on the
//!   event engine: every assertion holds there too, and each pairing's false suspicions,
//!   detections and detection p99 on each side agree with the turmoil engine's within noise.
//!
//! A file added to `scenarios/` is picked up with no change here.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use mcpsim::scenario::{self, check};
use mcpsim::sim::metrics::{RunSummary, SideMetrics};
use mcpsim::sim::runner;

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("scenarios"))
        .expect("scenarios/ exists")
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut trials = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let relative = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
        let (a, b) = (relative.clone(), relative);
        let snapshot_name = name.clone();
        trials.push(Trial::test(format!("{name}::trace"), move || {
            trace_matches_snapshot(&a, &snapshot_name)
        }));
        trials.push(Trial::test(format!("{name}::assertions"), move || {
            assertions_hold(&b)
        }));
    }
    trials.push(Trial::test(
        "tune-default::engines_agree",
        tune_default_engines_agree,
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// `mcpsim tune`'s built-in scenario (crashing servers and clients, paused clients, bursty
/// loss) on both engines, over part of its grid and 4 seeds: the same measures within noise.
fn tune_default_engines_agree() -> Result<(), Failed> {
    use mcpsim::config::DetectorKind;
    let text = mcpsim::cli::tune::DEFAULT_SCENARIO;
    let plan = scenario::parse("<built-in>", "wan-crashes", text).map_err(|e| e.to_string())?;
    let ms = std::time::Duration::from_millis;
    let mut plan = plan.with_grid(
        &[ms(500), ms(1000)],
        &[2, 3],
        &[DetectorKind::KMiss, DetectorKind::Phi],
    )?;
    plan.seeds = (1..=4).collect();
    let path = Path::new("<built-in wan-crashes>");
    let turmoil = run_plan(&plan, path)?;
    let event = run_plan(&plan.on_engine(scenario::Engine::Event), path)?;
    let failures: u64 = turmoil
        .report
        .pairings
        .iter()
        .map(|p| p.metrics.client.failures)
        .sum();
    if failures < 100 {
        return Err(format!("only {failures} failures compared").into());
    }
    compare_engines(&turmoil, &event)
}

fn load(path: &Path) -> Result<scenario::Plan, Failed> {
    // Paths in messages and replay commands are relative to the crate, as a user types them.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).map_err(|e| e.to_string())?;
    scenario::load(path).map_err(|e| Failed::from(format!("{e}")))
}

fn trace_matches_snapshot(path: &Path, name: &str) -> Result<(), Failed> {
    let plan = load(path)?;
    let run = runner::run(&plan.snapshot_scenario(), plan.snapshot.seed)
        .map_err(|e| format!("{}: the simulation failed: {e}", path.display()))?;
    let header = format!(
        "{}: seed {}, pairing {}, {} sessions, {} simulated\n\
         replay: mcpsim replay {} --seed {} --pairing {} --snapshot",
        path.display(),
        plan.snapshot.seed,
        plan.pairing_name(plan.snapshot.pairing),
        plan.snapshot.sessions,
        scenario::units::show(plan.snapshot.duration),
        path.display(),
        plan.snapshot.seed,
        plan.pairing_name(plan.snapshot.pairing),
    );
    insta::with_settings!({
        snapshot_path => "scenarios/snapshots",
        prepend_module_to_snapshot => false,
        description => header,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, run.trace_text());
    });
    Ok(())
}

fn assertions_hold(path: &Path) -> Result<(), Failed> {
    let plan = load(path)?;
    let turmoil = run_plan(&plan, path)?;
    failures(&turmoil.report)?;
    engines_agree(&plan, path, &turmoil)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A plan's runs: its report, and each pairing's runs seed by seed (in the plan's order).
struct Runs {
    report: check::Report,
    by_seed: Vec<Vec<RunSummary>>,
}

/// Runs every pairing on every seed of `plan`, keeping each run.
fn run_plan(plan: &scenario::Plan, path: &Path) -> Result<Runs, Failed> {
    let (report, by_seed) = check::run_by_seed(plan, &plan.seeds, threads(), |_| {})
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Runs { report, by_seed })
}

/// The event engine measures what the turmoil engine does: its assertions hold, and each
/// pairing's figures agree with turmoil's ([`compare_engines`]).
fn engines_agree(plan: &scenario::Plan, path: &Path, turmoil: &Runs) -> Result<(), Failed> {
    let event = run_plan(&plan.on_engine(scenario::Engine::Event), path)?;
    failures(&event.report)?;
    compare_engines(turmoil, &event)
}

/// The standard error of a figure summed (`total`) or pooled over seeds, from how much it
/// moves between seeds: where a run's events share a cause (one fault, one stall of the
/// server), they move together and a seed is one sample, not hundreds.
fn between_seeds(per_seed: &[f64], total: bool) -> f64 {
    let n = per_seed.len() as f64;
    if per_seed.len() < 2 {
        return 0.0;
    }
    let mean = per_seed.iter().sum::<f64>() / n;
    let var = per_seed
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum::<f64>()
        / (n - 1.0);
    if total {
        (n * var).sqrt()
    } else {
        (var / n).sqrt()
    }
}

/// How far apart two figures measured over `n_a` and `n_b` seeds, with between-seed standard
/// errors `se_a` and `se_b`, may fall by chance: Student's t at 99% (two-sided; many figures
/// are compared) on the seeds' degrees of freedom (few seeds say little), times the standard
/// error of the difference.
fn seeds_apart(se_a: f64, se_b: f64, n_a: usize, n_b: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let freedom = (n_a + n_b).saturating_sub(2).max(1) as f64;
    let t = StudentsT::new(0.0, 1.0, freedom)
        .expect("positive degrees of freedom")
        .inverse_cdf(0.995);
    t * (se_a * se_a + se_b * se_b).sqrt()
}

/// The turmoil engine's runs and the event engine's, of the same plan: for each pairing and
/// side, false suspicions and detections agree within two Poisson standard deviations of their
/// difference (plus 3, for small counts), and the detection p99 within 5% or 50 ms; or, where
/// the seeds' own figures spread wider, within what that spread allows ([`seeds_apart`]).
/// The spread is nil where the seeds agree (many independent events) and large where a seed's
/// events move as one (a saturated server's crash, detected by every client from the same
/// last reply; its stalls, which fool every client at once).
fn compare_engines(turmoil: &Runs, event: &Runs) -> Result<(), Failed> {
    let mut parted = Vec::new();
    let side_of = |run: &RunSummary, side: &str| {
        let m = run.metrics(check::DEFAULT_CONFIDENCE);
        if side == "client" { m.client } else { m.server }
    };
    for (p, (t, e)) in turmoil
        .report
        .pairings
        .iter()
        .zip(&event.report.pairings)
        .enumerate()
    {
        for (side, a, b) in [
            ("client", &t.metrics.client, &e.metrics.client),
            ("server", &t.metrics.server, &e.metrics.server),
        ] {
            let name = &t.pairing;
            let seeds = |runs: &Runs, f: &dyn Fn(&SideMetrics) -> Option<f64>| -> Vec<f64> {
                runs.by_seed[p]
                    .iter()
                    .filter_map(|r| f(&side_of(r, side)))
                    .collect()
            };
            let within = |x: u64, y: u64, f: &dyn Fn(&SideMetrics) -> Option<f64>| {
                let (x, y) = (x as f64, y as f64);
                let poisson = 2.0 * (x + y).sqrt() + 3.0;
                let (a, b) = (seeds(turmoil, f), seeds(event, f));
                let spread = seeds_apart(
                    between_seeds(&a, true),
                    between_seeds(&b, true),
                    a.len(),
                    b.len(),
                );
                (x - y).abs() <= poisson.max(spread)
            };
            let false_suspicions = |m: &SideMetrics| Some(m.false_suspicions as f64);
            if !within(a.false_suspicions, b.false_suspicions, &false_suspicions) {
                parted.push(format!(
                    "{name} {side}: false suspicions {} on turmoil (seeds: {:?}), {} on the \
                     event engine ({:?})",
                    a.false_suspicions,
                    seeds(turmoil, &false_suspicions),
                    b.false_suspicions,
                    seeds(event, &false_suspicions),
                ));
            }
            let detected = |m: &SideMetrics| Some(m.detected as f64);
            if !within(a.detected, b.detected, &detected) {
                parted.push(format!(
                    "{name} {side}: {} detections on turmoil, {} on the event engine",
                    a.detected, b.detected
                ));
            }
            let p99 = |m: &SideMetrics| m.detection.p99.filter(|x| x.is_finite());
            if let (Some(x), Some(y)) = (p99(a), p99(b)) {
                let (sa, sb) = (seeds(turmoil, &p99), seeds(event, &p99));
                let spread = seeds_apart(
                    between_seeds(&sa, false),
                    between_seeds(&sb, false),
                    sa.len(),
                    sb.len(),
                );
                let tolerance = (0.05 * x.max(y)).max(0.050).max(spread);
                if (x - y).abs() > tolerance {
                    parted.push(format!(
                        "{name} {side}: detection p99 {x:.3} s on turmoil (seeds: {sa:.3?}), \
                         {y:.3} s on the event engine ({sb:.3?}), within {tolerance:.3} s"
                    ));
                }
            }
        }
    }
    if parted.is_empty() {
        Ok(())
    } else {
        Err(parted.join("\n").into())
    }
}

fn failures(report: &check::Report) -> Result<(), Failed> {
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.holds)
        .map(|c| c.to_string())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n").into())
    }
}
