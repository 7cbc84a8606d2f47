//! Every scenario file in `scenarios/` is two tests, named after the file:
//!
//! - `<name>::trace`: the file's short fixed-seed snapshot run; its trace must match the insta
//!   snapshot `tests/scenarios/snapshots/<name>.snap` byte for byte. A changed trace fails with a
//!   diff; `cargo insta review` (or `INSTA_UPDATE=always cargo test --test scenarios`) accepts it.
//! - `<name>::assertions`: every pairing on every seed of the file, judged; every assertion must
//!   hold. A failure prints the command that replays the worst run.
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
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let report = check::run(&plan, &plan.seeds, threads, |_| {})
        .map_err(|e| format!("{}: {e}", path.display()))?;
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
