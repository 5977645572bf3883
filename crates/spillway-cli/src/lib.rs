//! The `spillway` command line: the options and [`run`], kept out of `main` so that tests drive
//! them in-process.

use std::process::ExitCode;

use clap::Parser;

/// spillway: keep a service alive under overload by shedding what it cannot finish.
#[derive(Debug, Parser)]
#[command(name = "spillway", version, about, long_about = None)]
pub struct Cli {}

/// Runs the parsed command.
///
/// # Errors
///
/// Whatever the command reports; `main` prints it and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli {} = cli;
    Ok(ExitCode::SUCCESS)
}
