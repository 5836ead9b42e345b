//! Output conventions: logs and progress on stderr (progress only on a terminal), results on
//! stdout (text, or JSON with `--json`), and one exit status per kind of failure.

use crate::cli::Global;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

static MODE: OnceLock<(bool, bool)> = OnceLock::new();

/// Exit statuses: 0 ok, 1 failure, 2 usage, 3 verification failed, 4 not found,
/// 10.. an event rejection (see `socai_model::ErrorCode::exit_code`).
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_VERIFY: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;

/// A failure with a chosen exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
    /// Machine-readable name of the failure, e.g. "verification_failed".
    pub kind: &'static str,
}

impl Exit {
    pub fn error(code: u8, kind: &'static str, message: impl Into<String>) -> anyhow::Error {
        Exit {
            code,
            kind,
            message: message.into(),
        }
        .into()
    }
}

/// Logs at `default_level` unless -v/-q or SOCAI_LOG say otherwise.
pub fn init_tracing(global: &Global, default_level: &'static str) {
    let _ = MODE.set((global.json, global.quiet));
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => default_level,
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOCAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if global.json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

pub fn json_mode() -> bool {
    MODE.get().is_some_and(|m| m.0)
}

fn quiet() -> bool {
    MODE.get().is_some_and(|m| m.1)
}

/// A progress bar on stderr when it is a terminal (and not --json/-q); hidden otherwise.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if json_mode() || quiet() || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Same, counting bytes.
pub fn progress_bytes(len: u64, what: &str) -> ProgressBar {
    let bar = progress(len, what);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Prints a result: `json` with --json, else the text.
pub fn emit(json: &serde_json::Value, text: impl FnOnce() -> String) {
    if json_mode() {
        print_line(&json.to_string());
    } else if !quiet() {
        print_line(&text());
    }
}

/// One line on standard output. A reader that went away (`socai ... | head`) ends the process
/// as SIGPIPE would (status 141), instead of a panic.
pub fn print_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing the result to standard output: {e}");
        std::process::exit(i32::from(EXIT_FAILURE));
    }
}

pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<Exit>() {
        return e.code;
    }
    if let Some(r) = err.downcast_ref::<socai_model::Rejection>() {
        return u8::try_from(r.code.exit_code()).unwrap_or(EXIT_FAILURE);
    }
    EXIT_FAILURE
}

fn kind(err: &anyhow::Error) -> &'static str {
    if let Some(e) = err.downcast_ref::<Exit>() {
        return e.kind;
    }
    if let Some(r) = err.downcast_ref::<socai_model::Rejection>() {
        return r.code.as_str();
    }
    "failure"
}

pub fn report_error(err: &anyhow::Error) {
    if json_mode() {
        let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
        println!(
            "{}",
            serde_json::json!({"error": {"code": kind(err), "message": chain.join(": ")}})
        );
    } else {
        eprintln!("error: {err:#}");
    }
}
