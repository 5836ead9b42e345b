//! `socai`: the one binary of Sổ Cái. Thin wiring over the library crates: parse the command line,
//! set up logging, run a subcommand, map failures to exit statuses.

mod bench;
mod cli;
mod cmd;
mod config;
mod output;
mod pipeline;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(&cli.global);
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = output::exit_code(&err);
            output::report_error(&err);
            ExitCode::from(code)
        }
    }
}
