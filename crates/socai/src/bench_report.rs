//! `socai bench all`: every benchmark, each as its own `socai bench …` process (exactly as an
//! operator runs it, with its own peak memory), their figures collected into
//! `docs/BENCHMARKS.md` and `docs/benchmarks.json`, with PNG charts of ingest rate and
//! freshness over time and of the fold's memory against the dossiers folded.
//!
//! A benchmark process hands its figures over through two JSON Lines files named by environment
//! variables ([`ROWS_ENV`], [`SERIES_ENV`]): every row of its table ([`record_row`]) and the
//! points of its time series ([`record_point`]). Without them set, both do nothing.

use anyhow::Context;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Where a benchmark appends its table rows (JSON Lines), when set.
pub const ROWS_ENV: &str = "SOCAI_BENCH_ROWS";
/// Where a benchmark appends the points of its time series (JSON Lines), when set.
pub const SERIES_ENV: &str = "SOCAI_BENCH_SERIES";

/// One row of a benchmark's table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub figure: String,
    pub socai: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    pub target: String,
}

/// One point of a named series (e.g. `ingest rate: receipts`, x seconds, y events/s).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub series: String,
    pub x: f64,
    pub y: f64,
}

fn sink(
    var: &'static str,
    cell: &'static OnceLock<Option<Mutex<std::fs::File>>>,
) -> Option<&'static Mutex<std::fs::File>> {
    cell.get_or_init(|| {
        let path = std::env::var_os(var)?;
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(f) => Some(Mutex::new(f)),
            Err(e) => {
                eprintln!(
                    "{var}={}: {e}; figures are not recorded",
                    PathBuf::from(&path).display()
                );
                None
            }
        }
    })
    .as_ref()
}

fn append(file: &Mutex<std::fs::File>, value: &impl serde::Serialize) {
    let mut line = serde_json::to_vec(value).expect("bench records serialize");
    line.push(b'\n');
    let _ = file
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(&line);
}

/// Records a row of the table being printed (see the module docs).
pub fn record_row(figure: &str, socai: &str, baseline: &str, ratio: Option<f64>, target: &str) {
    static ROWS: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    if let Some(file) = sink(ROWS_ENV, &ROWS) {
        append(
            file,
            &Row {
                figure: figure.trim().to_owned(),
                socai: socai.to_owned(),
                baseline: baseline.to_owned(),
                ratio: ratio.filter(|r| r.is_finite()),
                target: target.to_owned(),
            },
        );
    }
}

/// Records a point of a time series (see the module docs).
pub fn record_point(series: &str, x: f64, y: f64) {
    static SERIES: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    if let Some(file) = sink(SERIES_ENV, &SERIES) {
        append(
            file,
            &Point {
                series: series.to_owned(),
                x,
                y,
            },
        );
    }
}

/// Whether a benchmark is being recorded (so that it bothers to sample its series).
pub fn recording() -> bool {
    std::env::var_os(SERIES_ENV).is_some()
}

/// The resident memory of this process now, in MiB.
pub fn rss_now_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

/// One benchmark as `bench all` ran it.
#[derive(Debug, serde::Serialize)]
struct Run {
    name: String,
    command: String,
    seconds: f64,
    /// What it printed, in order: table rows and the lines between them (what was measured,
    /// which part of the run a table is about, summaries).
    output: Vec<Item>,
    /// `None` if it succeeded.
    error: Option<String>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Item {
    Row(Row),
    Note(String),
}

/// Puts the recorded rows back among the other lines the benchmark printed, in order (each row
/// is the next printed line that starts with its figure; table headers are dropped).
fn interleave(stdout: &str, rows: Vec<Row>) -> Vec<Item> {
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        if rows
            .peek()
            .is_some_and(|r| line.trim_start().starts_with(r.figure.as_str()))
        {
            out.push(Item::Row(rows.next().expect("peeked")));
        } else if !line.starts_with("figure ") {
            out.push(Item::Note(line.to_owned()));
        }
    }
    // Rows whose line was not found (never expected) still count.
    out.extend(rows.map(Item::Row));
    out
}

#[derive(Debug, serde::Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_gib: f64,
    kernel: String,
    socai_commit: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let socai_commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_gib,
        kernel,
        socai_commit,
    }
}

/// The benchmarks `bench all` runs, with their arguments.
fn plan(
    quick: bool,
    nats_server: Option<&Path>,
    dir: Option<&Path>,
) -> Vec<(&'static str, Vec<String>)> {
    let n = |full: u64, small: u64| (if quick { small } else { full }).to_string();
    let mut extra = Vec::new();
    if let Some(dir) = dir {
        extra.extend(["--dir".to_owned(), dir.display().to_string()]);
    }
    let mut nats = extra.clone();
    if let Some(server) = nats_server {
        nats.extend(["--nats-server".to_owned(), server.display().to_string()]);
    }
    let args = |list: &[&str], more: &[String]| -> Vec<String> {
        list.iter()
            .map(|s| s.to_string())
            .chain(more.iter().cloned())
            .collect()
    };
    vec![
        (
            "store",
            args(&["bench", "store", "--events", &n(300_000, 50_000)], &extra),
        ),
        (
            "ingest",
            args(&["bench", "ingest", "--events", &n(200_000, 30_000)], &nats),
        ),
        (
            "metrics",
            args(
                &[
                    "bench",
                    "metrics",
                    "--events",
                    &n(300_000, 50_000),
                    "--seconds",
                    &n(20, 5),
                ],
                &nats,
            ),
        ),
        (
            "api",
            args(
                &[
                    "bench",
                    "api",
                    "--events",
                    &n(200_000, 30_000),
                    "--seconds",
                    &n(20, 5),
                    "--subscribers",
                    &n(1000, 200),
                ],
                &nats,
            ),
        ),
    ]
}

/// Runs every benchmark and writes the report into `out` (e.g. `docs`).
pub fn all(
    out: &Path,
    quick: bool,
    nats_server: Option<&Path>,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the socai binary")?;
    let scratch = tempfile::Builder::new()
        .prefix("socai-bench-all-")
        .tempdir()?;
    let started_at = jiff::Timestamp::now();
    let mut runs = Vec::new();
    let mut points: Vec<Point> = Vec::new();
    let plan = plan(quick, nats_server, dir);
    for (i, (name, args)) in plan.iter().enumerate() {
        let rows_path = scratch.path().join(format!("{name}.rows.jsonl"));
        let series_path = scratch.path().join(format!("{name}.series.jsonl"));
        let command = format!("socai {}", args.join(" "));
        eprintln!("bench all {}/{}: {command}", i + 1, plan.len());
        let t = Instant::now();
        let output = std::process::Command::new(&exe)
            .args(args)
            .env(ROWS_ENV, &rows_path)
            .env(SERIES_ENV, &series_path)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("starting {command}"))?;
        let seconds = t.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let rows: Vec<Row> = read_jsonl(&rows_path);
        points.extend(read_jsonl::<Point>(&series_path));
        let status = output.status;
        let output = interleave(&stdout, rows);
        let error =
            (!status.success()).then(|| format!("exited with {status} (its stderr is above)"));
        if let Some(e) = &error {
            eprintln!("bench all: {command} {e}; going on with the others");
        }
        runs.push(Run {
            name: name.to_string(),
            command,
            seconds,
            output,
            error,
        });
    }
    let machine = machine();
    std::fs::create_dir_all(out.join("benchmarks"))
        .with_context(|| format!("creating {}", out.join("benchmarks").display()))?;
    // The figures first: a chart that cannot be drawn must not lose them.
    let json = serde_json::json!({
        "started_at": started_at.to_string(),
        "quick": quick,
        "machine": machine,
        "runs": runs,
        "series": points,
    });
    let json_path = out.join("benchmarks.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let charts = charts(&points, &out.join("benchmarks")).unwrap_or_else(|e| {
        eprintln!("bench all: no charts ({e:#}); the figures are in the report");
        Vec::new()
    });
    let md_path = out.join("BENCHMARKS.md");
    std::fs::write(
        &md_path,
        markdown(&started_at, quick, &machine, &runs, &charts),
    )
    .with_context(|| format!("writing {}", md_path.display()))?;
    eprintln!(
        "bench all: wrote {}, {} and {} charts in {}",
        md_path.display(),
        json_path.display(),
        charts.len(),
        out.join("benchmarks").display()
    );
    let failed: Vec<&str> = runs
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.name.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "these benchmarks failed: {} (the report marks them); run each alone to see why",
        failed.join(", ")
    );
    Ok(())
}

/// The records of a JSON Lines file (none if it is missing); a line that does not parse (a
/// benchmark killed mid-write) is skipped with a warning.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("bench all: cannot read {}: {e}", path.display());
            }
            return Vec::new();
        }
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!(
                    "bench all: {}: skipping a record ({e}): {l}",
                    path.display()
                );
                None
            }
        })
        .collect()
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn markdown(
    started_at: &jiff::Timestamp,
    quick: bool,
    m: &Machine,
    runs: &[Run],
    charts: &[(String, String)],
) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!(
        "Written by `socai bench all{}` on {started_at} (socai {}). Every figure stands beside a baseline measured in the same run, on the same machine, and its target (from the design's performance targets and the issues). Benchmarks print; they never assert a time. Regenerate with `cargo run --release -p socai -- bench all` (about 10 minutes; `--quick` for smaller runs). The same figures, and every point of the charts, are in [benchmarks.json](benchmarks.json).\n\n",
        if quick { " --quick" } else { "" },
        m.socai_commit
    ));
    md.push_str("The national-year scale run (20M entries, 30M dossiers; not part of `bench all`) is in [SCALE.md](SCALE.md).\n\n");
    md.push_str(&format!(
        "Machine: {} CPUs ({}), {:.1} GiB memory, Linux {}. Everything (nats-server, publishers, the ledger, projections) shares these cores.\n\n",
        m.cpus, m.cpu_model, m.memory_gib, m.kernel
    ));
    for run in runs {
        md.push_str(&format!(
            "## {}\n\n`{}` ({:.0} s)\n\n",
            run.name, run.command, run.seconds
        ));
        if let Some(e) = &run.error {
            md.push_str(&format!("**Failed:** {e}\n\n"));
        }
        // Runs of rows become tables, runs of other lines code blocks, in the order printed;
        // the first line (what the benchmark measures) is a paragraph.
        let mut first = true;
        let mut items = run.output.iter().peekable();
        while let Some(item) = items.next() {
            match item {
                Item::Note(line) if first => md.push_str(&format!("{}\n\n", line.trim())),
                Item::Note(line) => {
                    md.push_str("```text\n");
                    md.push_str(line);
                    md.push('\n');
                    while let Some(Item::Note(line)) = items.peek() {
                        md.push_str(line);
                        md.push('\n');
                        items.next();
                    }
                    md.push_str("```\n\n");
                }
                Item::Row(r) => {
                    md.push_str(
                        "| figure | socai | baseline | ratio | target |\n|---|---:|---:|---:|---|\n",
                    );
                    let mut row = Some(r);
                    while let Some(r) = row.take() {
                        md.push_str(&format!(
                            "| {} | {} | {} | {} | {} |\n",
                            cell(&r.figure),
                            cell(&r.socai),
                            cell(&r.baseline),
                            r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
                            cell(&r.target)
                        ));
                        if let Some(Item::Row(next)) = items.peek() {
                            row = Some(next);
                            items.next();
                        }
                    }
                    md.push('\n');
                }
            }
            first = false;
        }
    }
    if !charts.is_empty() {
        md.push_str("## Charts\n\n");
        for (file, title) in charts {
            md.push_str(&format!("### {title}\n\n![{title}](benchmarks/{file})\n\n"));
        }
    }
    md
}

/// The charts: (file, title, x label, y label, series name prefix).
const CHARTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "ingest-rate.png",
        "Ingest rate over time (socai bench ingest)",
        "seconds",
        "events/s committed",
        "ingest",
    ),
    (
        "freshness.png",
        "Freshness over time at 5k events/s (socai bench metrics)",
        "seconds",
        "ms, publish → value (worst per 100 ms)",
        "freshness",
    ),
    (
        "fold-memory.png",
        "Fold memory against dossiers folded (socai bench metrics rebuild)",
        "dossiers folded",
        "MiB resident, above the start of the rebuild",
        "memory",
    ),
];

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Draws each chart that has points; returns (file, title) of those written.
fn charts(points: &[Point], dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    anyhow::ensure!(registered, "the vendored chart font does not load");
    let mut written = Vec::new();
    for &(file, title, x_label, y_label, prefix) in CHARTS {
        let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for p in points.iter().filter(|p| p.series.starts_with(prefix)) {
            series.entry(&p.series).or_default().push((p.x, p.y));
        }
        if series.is_empty() {
            continue;
        }
        let path = dir.join(file);
        draw(&path, title, x_label, y_label, &series)
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        written.push((file.to_owned(), title.to_owned()));
    }
    Ok(written)
}

/// An axis label: no decimals from 10 on, one below.
fn short(v: f64) -> String {
    if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn draw(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &BTreeMap<&str, Vec<(f64, f64)>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let all = series.values().flatten();
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let y_max = all.map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let root = BitMapBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_png_files_with_the_points_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let points: Vec<Point> = (0..50)
            .map(|i| Point {
                series: "ingest rate: receipts".into(),
                x: i as f64 * 0.25,
                y: 1000.0 + (i * 37 % 11) as f64 * 100.0,
            })
            .chain([Point {
                series: "memory: fold".into(),
                x: 1000.0,
                y: 80.0,
            }])
            .collect();
        let written = charts(&points, dir.path()).unwrap();
        let files: Vec<&str> = written.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["ingest-rate.png", "fold-memory.png"]);
        let png = std::fs::read(dir.path().join("ingest-rate.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 5_000,
            "a chart with text and lines, not an empty image"
        );
    }

    #[test]
    fn the_report_has_a_table_per_benchmark_and_links_the_charts() {
        let m = Machine {
            cpus: 2,
            cpu_model: "test".into(),
            memory_gib: 4.0,
            kernel: "6".into(),
            socai_commit: "abc".into(),
        };
        let row = |figure: &str| Row {
            figure: figure.into(),
            socai: "100/s".into(),
            baseline: "200/s".into(),
            ratio: Some(0.5),
            target: ">= 1M/s | x".into(),
        };
        let stdout = "socai bench store: 10 events\nfigure  socai  baseline\nverify (entries/s)   100/s\n\nidle:\nproof p99  1 ms\nloaded:\nproof p99  2 ms\na | note\n";
        let output = interleave(
            stdout,
            vec![
                row("verify (entries/s)"),
                row("proof p99"),
                row("proof p99"),
            ],
        );
        let runs = vec![Run {
            name: "store".into(),
            command: "socai bench store --events 10".into(),
            seconds: 1.0,
            output,
            error: None,
        }];
        let md = markdown(
            &jiff::Timestamp::UNIX_EPOCH,
            false,
            &m,
            &runs,
            &[("ingest-rate.png".into(), "Ingest".into())],
        );
        assert!(
            md.contains("| verify (entries/s) | 100/s | 200/s | 0.50 | >= 1M/s \\| x |"),
            "{md}"
        );
        // Each part keeps its heading line: two tables of "proof p99", each after its own.
        let idle = md.find("idle:").unwrap();
        let loaded = md.find("loaded:").unwrap();
        let proofs: Vec<usize> = md.match_indices("| proof p99 |").map(|(i, _)| i).collect();
        assert_eq!(proofs.len(), 2, "{md}");
        assert!(
            idle < proofs[0] && proofs[0] < loaded && loaded < proofs[1],
            "{md}"
        );
        assert!(
            !md.contains("figure  socai"),
            "table headers of the text output are dropped"
        );
        assert!(md.contains("`socai bench store --events 10`"));
        assert!(md.contains("![Ingest](benchmarks/ingest-rate.png)"));
        assert!(
            md.contains("a | note"),
            "notes go in a code block unescaped"
        );
    }
}
