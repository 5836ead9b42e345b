//! `socai`: the one binary of Sổ Cái. Thin wiring over the library crates: parse the command line,
//! set up logging, run a subcommand, map failures to exit statuses.

mod bench;
mod bench_api;
mod bench_cluster;
mod bench_report;
mod bench_scale;
mod cli;
mod cmd;
mod config;
mod output;
mod pipeline;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: sled allocates and frees a node copy per insert from every
/// thread, and glibc's arena locks and consolidation took a fifth of the writer's time
/// (ARCHITECTURE.md, "Decisions").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A service logs what it does; a command speaks only when something is wrong.
    let level = match cli.command {
        cli::Command::Serve { .. }
        | cli::Command::Witness {
            action: cli::WitnessAction::Serve { .. },
        } => "info",
        _ => "warn",
    };
    output::init_tracing(&cli.global, level);
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = output::exit_code(&err);
            output::report_error(&err);
            ExitCode::from(code)
        }
    }
}
