use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcpsim::cli;

/// MCP, the Message Channel Protocol, and a simulator to tune its heartbeats.
#[derive(Debug, Parser)]
#[command(name = "mcpsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare failure detectors over a grid of heartbeat interval × miss threshold on a
    /// synthetic heartbeat-loss model, and recommend a pairing.
    Sweep(cli::sweep::SweepArgs),
    /// Run an MCP server on TCP (or TLS) until SIGINT or SIGTERM.
    Serve(cli::serve::ServeArgs),
    /// Run one MCP client, or many for load, printing stats periodically.
    Client(cli::client::ClientArgs),
    /// Which heartbeat interval, miss threshold and detector to run: sweep the pairings of a
    /// scenario (default: a built-in WAN with bursty loss and crashing servers) and recommend
    /// the cheapest that meets the limits.
    Tune(cli::tune::TuneArgs),
    /// Detectors side by side: for each scenario (default: the one `tune` runs), every
    /// detector over the same grid and seeds, and the lowest detection p99 each reaches at a
    /// false-suspicion rate, with seed-bootstrap intervals.
    Compare(cli::compare::CompareArgs),
    /// Combine the JSON Lines of `mcpsim tune --shard` runs into one report.
    Merge(cli::tune::MergeArgs),
    /// Run scenario files: every pairing on every seed, judged against the files' assertions.
    /// Exit status 0 when all hold, 1 when one fails, 2 on unusable input.
    Run(cli::run::RunArgs),
    /// Re-run one run of a scenario (a seed and a pairing) and print its trace, byte-identical
    /// every time.
    Replay(cli::replay::ReplayArgs),
    /// Write a CA and a server certificate signed by it, for `serve --tls-cert` and
    /// `client --tls-ca`.
    Cert(cli::cert::CertArgs),
    /// Print the JSON Schema of scenario files (for editors: `#:schema` in a TOML file).
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Client(_)) {
        quiet_on_broken_pipe();
    }
    let result = match cli.command {
        Command::Sweep(args) => cli::sweep::run(args),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(cli::serve::run(args))),
        Command::Client(args) => runtime().and_then(|rt| rt.block_on(cli::client::run(args))),
        Command::Tune(args) => cli::tune::run(args),
        Command::Compare(args) => cli::compare::run(args),
        Command::Merge(args) => cli::tune::merge(args),
        Command::Run(args) => cli::run::run(args),
        Command::Replay(args) => cli::replay::replay(args),
        Command::Cert(args) => cli::cert::run(args),
        Command::Schema => cli::replay::schema(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::CliError::Scenario(e)) => {
            eprintln!("{:?}", miette::Report::new_boxed(e));
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The offline commands print reports: `mcpsim run FILE | head -1` should end quietly when
/// `head` has read enough, as Unix tools do, not panic on the broken pipe. Rust ignores SIGPIPE
/// so that writes fail with `EPIPE` instead; these commands take the default action back. (The
/// network commands keep ignoring it: a peer that goes away must be an error to handle, not the
/// end of the process.)
fn quiet_on_broken_pipe() {
    // SAFETY: called at the start of main, before any thread is spawned; restoring the default
    // disposition of SIGPIPE has no other effect on the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The network commands run on tokio's multi-thread runtime; `sweep` stays synchronous.
fn runtime() -> Result<tokio::runtime::Runtime, cli::CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| cli::CliError::Run(format!("cannot start the async runtime: {e}")))
}
