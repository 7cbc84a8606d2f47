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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sweep(args) => cli::sweep::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
