//! The `spillway` binary. See the crate's `lib.rs` for the commands.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc reuses freed memory per thread instead of returning 500 KiB buffers to the OS and
/// faulting them in again, as glibc does under this load; every mode of `simulate` runs with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = spillway_cli::Cli::parse();
    init_logs();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(spillway_cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            spillway_cli::exit_code(&err)
        }
    }
}

/// With `RUST_LOG` set (`spillway=debug` shows why the adaptive limit moved), the library's
/// tracing events go to stderr (coloured only on a terminal); without it nothing is installed
/// and nothing is printed.
/// `simulate`'s children inherit the variable and their stderr is printed when they end.
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
