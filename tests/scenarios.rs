//! Every scenario file in `scenarios/` is two tests, named after the file:
//!
//! - `<name>::trace`: the file's short fixed-seed snapshot run; its trace must match the insta
//!   snapshot `tests/scenarios/snapshots/<name>.snap` byte for byte. A changed trace fails with a
//!   diff; `cargo insta review` (or `INSTA_UPDATE=always cargo test --test scenarios`) accepts it.
//! - `<name>::assertions`: every pairing on every seed of the file, judged; every assertion must
//!   hold. A failure prints the command that replays the worst run. Where the event engine
//!   models the file (not the server's load or link rates yet), the same runs again on it: every
//!   assertion holds there too, and each pairing's false suspicions, detections and detection
//!   p99 on each side agree with the turmoil engine's within noise. A file it models but for
//!   its application traffic is run on both engines without the traffic and compared alike.
//!
//! A file added to `scenarios/` is picked up with no change here.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use mcpsim::scenario::{self, check};
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
    if let Err(why) = mcpsim::sim::engine::Engine::supports(&plan.scenario(0)) {
        return Err(format!("the event engine must model tune's default scenario: {why}").into());
    }
    let turmoil = run_plan(&plan, path)?;
    let event = run_plan(&plan.on_engine(scenario::Engine::Event), path)?;
    let failures: u64 = turmoil
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
    let report = run_plan(&plan, path)?;
    failures(&report)?;
    engines_agree(&plan, path, &report)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn run_plan(plan: &scenario::Plan, path: &Path) -> Result<check::Report, Failed> {
    check::run(plan, &plan.seeds, threads(), |_| {})
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The event engine, where it models the file, measures what the turmoil engine does: its
/// assertions hold, and each pairing's false suspicions on each side agree within two
/// standard deviations of the difference of two Poisson counts (plus 3, for small counts).
fn engines_agree(
    plan: &scenario::Plan,
    path: &Path,
    turmoil: &check::Report,
) -> Result<(), Failed> {
    if plan.event_engine_lacks().is_none() {
        let event = run_plan(&plan.on_engine(scenario::Engine::Event), path)?;
        failures(&event)?;
        return compare_engines(turmoil, &event);
    }
    // Not with its application traffic yet: its faults and heartbeats, without the traffic,
    // on both engines (the file's assertions may be about the traffic, so only the engines
    // are compared).
    let idle = plan.without_traffic();
    if let Some(why) = idle.event_engine_lacks() {
        println!("{}: not on the event engine yet: {why}", path.display());
        return Ok(());
    }
    println!(
        "{}: compared on both engines without its traffic (the event engine does not model it yet)",
        path.display()
    );
    let turmoil = run_plan(&idle, path)?;
    let event = run_plan(&idle.on_engine(scenario::Engine::Event), path)?;
    compare_engines(&turmoil, &event)
}

/// The turmoil engine's report and the event engine's, of the same plan: for each pairing and
/// side, false suspicions and detections agree within two standard deviations of the
/// difference of two Poisson counts (plus 3, for small counts), and the detection p99 within 5%
/// or 50 ms.
fn compare_engines(turmoil: &check::Report, event: &check::Report) -> Result<(), Failed> {
    let mut parted = Vec::new();
    let within = |a: u64, b: u64| {
        let (a, b) = (a as f64, b as f64);
        (a - b).abs() <= 2.0 * (a + b).sqrt() + 3.0
    };
    for (t, e) in turmoil.pairings.iter().zip(&event.pairings) {
        for (side, a, b) in [
            ("client", &t.metrics.client, &e.metrics.client),
            ("server", &t.metrics.server, &e.metrics.server),
        ] {
            let name = &t.pairing;
            if !within(a.false_suspicions, b.false_suspicions) {
                parted.push(format!(
                    "{name} {side}: false suspicions {} on turmoil, {} on the event engine",
                    a.false_suspicions, b.false_suspicions
                ));
            }
            if !within(a.detected, b.detected) {
                parted.push(format!(
                    "{name} {side}: {} detections on turmoil, {} on the event engine",
                    a.detected, b.detected
                ));
            }
            if let (Some(x), Some(y)) = (a.detection.p99, b.detection.p99)
                && x.is_finite()
                && y.is_finite()
                && (x - y).abs() > (0.05 * x.max(y)).max(0.050)
            {
                parted.push(format!(
                    "{name} {side}: detection p99 {x:.3} s on turmoil, {y:.3} s on the event engine"
                ));
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
