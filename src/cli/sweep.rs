//! `mcpsim sweep` (in progress).

use super::CliError;

/// Arguments of `mcpsim sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {}

pub fn run(_args: SweepArgs) -> Result<(), CliError> {
    Err(CliError::Usage("sweep is not built yet".into()))
}
