//! Every scenario file in `scenarios/` is two tests, named after the file:
//!
//! - `<name>::trace`: the file's short fixed-seed snapshot run; its trace must match the insta
//!   snapshot `tests/scenarios/snapshots/<name>.snap` byte for byte. A changed trace fails with a
//!   diff; `cargo insta review` (or `INSTA_UPDATE=always cargo test --test scenarios`) accepts it.
//! - `<name>::assertions`: every pairing on every seed of the file, judged; every assertion must
//!   hold. A failure prints the command that replays the worst run. Where the event engine
//!   models the file (no host faults, traffic or load yet), the same runs again on it: every
//!   assertion holds there too, and each pairing's false suspicions on each side agree with
//!   the turmoil engine's within noise.
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
    libtest_mimic::run(&args, trials).exit();
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
    let scenario = plan.scenario(0);
    if let Err(why) = mcpsim::sim::engine::Engine::supports(&scenario) {
        println!("{}: not on the event engine yet: {why}", path.display());
        return Ok(());
    }
    let event = run_plan(&plan.on_engine(scenario::Engine::Event), path)?;
    failures(&event)?;
    let mut parted = Vec::new();
    for (t, e) in turmoil.pairings.iter().zip(&event.pairings) {
        for (side, a, b) in [
            ("client", &t.metrics.client, &e.metrics.client),
            ("server", &t.metrics.server, &e.metrics.server),
        ] {
            let (a, b) = (a.false_suspicions as f64, b.false_suspicions as f64);
            if (a - b).abs() > 2.0 * (a + b).sqrt() + 3.0 {
                parted.push(format!(
                    "{} {side}: false suspicions {a} on turmoil, {b} on the event engine",
                    t.pairing
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
