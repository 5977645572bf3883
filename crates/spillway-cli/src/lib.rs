//! The `spillway` command line: the options and [`run`], kept out of `main` so that tests drive
//! them in-process.
//!
//! * `spillway simulate`: rerun the seed's overload experiment (naive spawning, a semaphore and
//!   the spillway pool) and report goodput, latency and memory.
//! * `spillway serve`: seed 001's HTTP service in each mode (naive, semaphore, pool), with
//!   shedding, cancellation on disconnect, hardening and a graceful drain.
//! * `spillway load`: an open-loop HTTP/1.1 and HTTP/2 load generator whose latencies, by status
//!   class, count from each request's due time when the server held it back.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod child;
mod cpu_time;
#[doc(hidden)]
pub mod fuzzing;
mod histogram;
mod live;
pub mod load;
mod memory;
mod net;
mod output;
mod priority;
pub mod serve;
pub mod simulate;
mod status;
mod workload;

pub use args::{FaultArgs, PoolArgs, UsageError, WorkloadArgs};
pub use child::ChildOf;
pub use priority::PriorityMix;

/// spillway: keep a service alive under overload by shedding what it cannot finish.
#[derive(Debug, Parser)]
#[command(
    name = "spillway",
    version,
    about,
    long_about = None,
    arg_required_else_help = true,
    args_override_self = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rerun the seed experiment: offer far more jobs than the machine can do, to naive
    /// spawning, a semaphore and the spillway pool, and compare goodput, latency and memory.
    Simulate(simulate::SimulateArgs),
    /// Serve seed 001's HTTP service (`/work`, `/metrics`, `/healthz`) in one of its modes;
    /// pool mode answers what it cannot take with 503 and Retry-After.
    Serve(serve::ServeArgs),
    /// Offer an HTTP server a fixed rate of requests (open loop) and report goodput, shed and
    /// latency by status class, free of coordinated omission.
    Load(load::LoadArgs),
    /// Internal: one task of a parent `simulate` or `load`, whose settings arrive as JSON on
    /// stdin and whose results leave as JSON lines on stdout.
    #[command(hide = true)]
    Child {
        /// Which subcommand the task belongs to.
        #[arg(value_enum)]
        of: ChildOf,
    },
}

/// Runs the parsed command.
///
/// # Errors
///
/// Whatever the command reports; `main` prints it and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => simulate::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Child { of } => match of {
            ChildOf::Simulate => simulate::run_as_child().await,
            ChildOf::Load => load::run_as_child().await,
        },
    }
}

/// The exit status for an error [`run`] returned: 2 for bad input (a [`UsageError`]
/// anywhere in its chain, as clap exits for its own), 1 for anything else.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<UsageError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}
