//! `mcpsim replay`: one run of a scenario, exactly as `mcpsim run` ran it, with its trace; and
//! `mcpsim schema`: the JSON Schema of scenario files.

use std::io::Write as _;
use std::path::PathBuf;

use super::CliError;
use crate::config::StackConfig;
use crate::scenario::{self, Engine, EngineChoice};
use crate::sim::runner::{self, RunOptions, TraceLevel};

/// Arguments of `mcpsim replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The scenario file.
    pub file: PathBuf,
    /// The seed of the run.
    #[arg(long)]
    pub seed: u64,
    /// The pairing, e.g. `1s/3` or `phi:1s/3` (default: the grid's first).
    #[arg(long)]
    pub pairing: Option<String>,
    /// The stack configuration the run used, as `mcpsim run --config`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The run left the file's traffic out, as `mcpsim run --no-traffic`.
    #[arg(long)]
    pub no_traffic: bool,
    /// Write the trace to FILE instead of standard output (a summary goes to standard output).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Replay the scenario's snapshot run instead (its sessions and duration; `--seed` and
    /// `--pairing` still choose the seed and pairing).
    #[arg(long)]
    pub snapshot: bool,
    /// How much the trace says: `events` (connections, suspicions, faults) or `segments`
    /// (also every heartbeat received, with its sequence number and round trip, to line the
    /// run up against a packet capture).
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = TraceLevelArg::Events)]
    pub trace_level: TraceLevelArg,
    /// The simulator back-end, as `mcpsim run --engine`. `auto` takes the engine `mcpsim run`
    /// takes, but turmoil for `--snapshot` (the committed snapshots are turmoil's traces).
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
}

/// `--trace-level`: [`TraceLevel`] as a flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceLevelArg {
    /// What a replay prints by default: connections, sessions, suspicions, faults.
    #[default]
    Events,
    /// Also a line per heartbeat frame received.
    Segments,
}

impl From<TraceLevelArg> for TraceLevel {
    fn from(l: TraceLevelArg) -> TraceLevel {
        match l {
            TraceLevelArg::Events => TraceLevel::Events,
            TraceLevelArg::Segments => TraceLevel::Segments,
        }
    }
}

/// Runs the replay: the trace is byte-identical every time for the same file, seed and pairing.
pub fn replay(args: ReplayArgs) -> Result<(), CliError> {
    let mut plan = scenario::load(&args.file)?;
    if let Some(path) = &args.config {
        let stack = StackConfig::load(path).map_err(CliError::Usage)?;
        plan = plan.with_stack(stack);
    }
    if args.no_traffic {
        plan = plan.without_traffic();
    }
    let pairing = match &args.pairing {
        Some(p) => plan.find_pairing(p).map_err(CliError::Usage)?,
        None => 0,
    };
    let mut sc = plan.scenario(pairing);
    if args.snapshot {
        let snap = plan.snapshot_scenario();
        sc.sessions = snap.sessions;
        sc.client_hosts = snap.client_hosts;
        sc.duration = snap.duration;
    }
    let options = RunOptions {
        trace: args.trace_level.into(),
    };
    let engine = match args.engine {
        EngineChoice::Auto if args.snapshot => Engine::Turmoil,
        choice => plan.choosing(choice).engine,
    };
    let outcome = match engine {
        Engine::Turmoil => runner::run_with(&sc, args.seed, options).map_err(|e| e.to_string()),
        Engine::Event => {
            crate::sim::engine::run_with(&sc, args.seed, options).map_err(|e| e.to_string())
        }
    }
    .map_err(|e| CliError::Run(format!("the simulation failed: {e}")))?;
    let trace = outcome.trace_text();
    match &args.trace {
        None => std::io::stdout().write_all(trace.as_bytes())?,
        Some(path) => {
            std::fs::write(path, &trace).map_err(|e| {
                CliError::Run(format!("cannot write the trace to {}: {e}", path.display()))
            })?;
            let qos = plan.judge_for(pairing).judge(&outcome);
            let suspicions: usize = qos.iter().map(|q| q.false_suspicions).sum();
            let missed: usize = qos.iter().map(|q| q.missed).sum();
            let failures: usize = qos.iter().map(|q| q.failures).sum();
            println!(
                "{} seed {} pairing {}: {} trace lines in {}; {failures} failures \
                 ({missed} missed), {suspicions} false suspicions over all watcher/peer pairs \
                 (the {engine} engine)",
                plan.name,
                args.seed,
                plan.pairing_name(pairing),
                outcome.trace.len(),
                path.display(),
            );
        }
    }
    Ok(())
}

/// Prints the JSON Schema of scenario files.
pub fn schema() -> Result<(), CliError> {
    std::io::stdout().write_all(scenario::schema().as_bytes())?;
    Ok(())
}
