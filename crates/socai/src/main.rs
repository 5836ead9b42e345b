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
    no_transparent_huge_pages();
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

/// Opts this process (and what it starts: the flag is inherited) out of transparent huge pages.
/// mimalloc asks the kernel for huge pages on its arenas (`MADV_HUGEPAGE`) and gives idle
/// memory back; each reuse then faults in a fresh 2 MiB page that the kernel zeroes first.
/// `perf` of `socai bench ingest` showed 5–9 % of the process's CPU in `clear_page_erms` under
/// `do_huge_pmd_anonymous_page`, and verify runs swung between 0.6 and 1.4 s for 300k entries
/// (ARCHITECTURE.md, "Decisions"). The kernel checks this flag at fault time, so it covers
/// memory mapped before. Failing it (an old kernel) costs only speed.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
