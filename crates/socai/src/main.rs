//! `socai`: the one binary of Sổ Cái. Thin wiring over the library crates: parse the command line,
//! set up logging, run a subcommand, map failures to exit statuses.

mod bench;
mod bench_api;
mod bench_report;
mod bench_scale;
mod cli;
mod cmd;
mod config;
mod output;
mod pipeline;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A service logs what it does; a command speaks only when something is wrong.
    let level = match cli.command {
        cli::Command::Serve { .. } => "info",
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
