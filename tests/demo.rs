//! `socai demo` left running: nats-server, the ledger and a projection worker as real child
//! processes, a live trickle of events until SIGINT (Ctrl-C), which stops everything cleanly;
//! running it again on the same dir resumes where it stopped, committing nothing twice.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socai_e2e::{Ledger, socai_bin};

const PATIENCE: Duration = Duration::from_secs(120);

/// The demo's saved position (`demo.json`).
fn state(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("demo.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

fn generated(dir: &Path) -> u64 {
    state(dir)["generated"].as_u64().unwrap_or(0)
}

/// Starts the demo on `dir`; returns the child and a channel of its stdout lines.
fn start(dir: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(socai_bin())
        .args(["demo", "--dir"])
        .arg(dir)
        .args(["--events", "1500", "--rate", "40"])
        .env_remove("SOCAI_DEMO_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("socai demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("demo| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line containing `needle`; returns it.
fn line_with(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} from the demo: {e}"),
        }
    }
}

/// SIGINT, as Ctrl-C sends it; then the exit status, within `PATIENCE`.
fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ledger's size, from `socai verify --json` (which must pass).
fn verified_size(dir: &Path) -> u64 {
    let data = dir.join("data");
    let out = Command::new(socai_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["--json", "verify", "--vkey"])
        .arg(data.join("checkpoint.vkey"))
        .output()
        .expect("socai verify runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify --json");
    assert_eq!(v["ok"], true, "verify: {v}");
    v["report"]["entries"].as_u64().expect("entries")
}

/// Every event the simulator produced was answered exactly once (committed, or a duplicate of
/// what the ledger held, or rejected), and the ledger holds each committed event once: its
/// size is the committed count, plus at most the duplicates (an event committed whose receipt
/// was lost is published again and answered as a duplicate).
fn assert_answered_once(state: &serde_json::Value, size: u64) {
    let n = |k: &str| {
        state[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {state}"))
    };
    assert_eq!(
        n("generated"),
        n("committed") + n("duplicates") + n("rejected"),
        "every event answered once: {state}"
    );
    assert!(
        n("committed") <= size && size <= n("committed") + n("duplicates"),
        "ledger size {size} vs {state}"
    );
}

#[test]
fn the_demo_runs_until_ctrl_c_and_resumes_where_it_stopped() {
    let tmp = Ledger::new();
    let dir = tmp.path("demo");

    // First run: the workload, then the trickle; the dashboard answers while it runs.
    let (mut demo, rx) = start(&dir);
    let url = line_with(&rx, "dashboard:");
    let url = url
        .split_whitespace()
        .last()
        .expect("the dashboard URL")
        .to_owned();
    let status = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async { reqwest::get(&url).await.map(|r| r.status()) })
        .expect("GET the dashboard");
    assert_eq!(status, 200, "{url}");
    // The demo's witness cosigns the ledger's checkpoints.
    let api = url.trim_end_matches("/dashboard").to_owned();
    let deadline = Instant::now() + PATIENCE;
    let cosigned_size = |api: &str| -> u64 {
        let witnesses: serde_json::Value = tokio::runtime::Runtime::new()
            .expect("a runtime")
            .block_on(async {
                reqwest::get(format!("{api}/v1/witnesses"))
                    .await?
                    .json()
                    .await
            })
            .expect("GET /v1/witnesses");
        witnesses["witnesses"][0]["cosigned_size"]
            .as_u64()
            .unwrap_or(0)
    };
    while cosigned_size(&api) == 0 {
        assert!(
            Instant::now() < deadline,
            "the demo's witness cosigned nothing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + PATIENCE;
    while generated(&dir) < 1500 + 50 {
        assert!(
            Instant::now() < deadline,
            "the trickle did not go on: {}",
            state(&dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = interrupt(&mut demo);
    assert!(status.success(), "the demo exits 0 after Ctrl-C: {status}");
    let first = state(&dir);
    let size = verified_size(&dir);
    assert_answered_once(&first, size);
    assert_eq!(first["rejected"], 0, "{first}");

    // Second run: resumes after the last answered event, commits nothing twice.
    let (mut demo, rx) = start(&dir);
    line_with(&rx, "dashboard:");
    let from = first["generated"].as_u64().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while generated(&dir) < from + 30 {
        assert!(
            Instant::now() < deadline,
            "the second run did not trickle: {}",
            state(&dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = interrupt(&mut demo);
    assert!(status.success(), "second run exits 0: {status}");
    let second = state(&dir);
    let grown = verified_size(&dir);
    assert!(grown > size, "the ledger grew: {size} -> {grown}");
    assert_answered_once(&second, grown);
    assert_eq!(second["runs"], 2, "{second}");
    // Resumed, not restarted: a run from the stream's start would answer the first run's 1,500+
    // events again as duplicates (the only duplicates here are re-sends after a lost receipt).
    let dups = |s: &serde_json::Value| s["duplicates"].as_u64().unwrap();
    assert!(
        dups(&second) - dups(&first) < 50,
        "the second run sent the first run's events again: {first} -> {second}"
    );
    assert!(
        second["stream"].as_str().is_some_and(|s| !s.is_empty()),
        "demo.json names the stream it counts in: {second}"
    );
}
