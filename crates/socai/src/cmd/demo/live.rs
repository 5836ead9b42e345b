//! `socai demo` (the default; `--once` is the run-and-exit story in `super`): the whole system
//! left running on a persistent dir, fed by a live trickle of realistic events until Ctrl-C.
//!
//! `<dir>` (default `<repo>/target/socai-demo`) holds nats-server's store (`nats/`), the ledger's
//! data dir (`data/`, the projection worker's state in `data/metrics/`), the processes' logs
//! (`logs/`) and `demo.json`: how many events of the simulator's deterministic stream the ledger
//! has answered. The first run initialises the ledger and publishes the initial workload; every
//! run then starts nats-server (the shipped config), `socai serve` and `socai project` as child
//! processes of this binary, and publishes the simulator's stream from where the last run
//! stopped, paced by the simulated clock (office hours scaled to wall time), each event kept
//! until its signed receipt. SIGINT or SIGTERM stops the trickle, waits for the receipts of what
//! is in flight, then stops the worker, the ledger and nats-server with SIGTERM, in that order.

use super::clock::{Ahead, Clock, OFF_HOURS_FACTOR};
use super::procs::{Proc, Stack, leftovers, lock, signals};
use crate::cli::Global;
use crate::output::Exit;
use anyhow::{Context, anyhow, bail};
use socai_client::publisher::{NatsConfig, Outgoing, Publisher};
use socai_client::receipts::{Outcome, ReceiptOptions, ReceiptPublisher, Report};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What `socai demo` was asked for.
pub struct Options {
    /// The initial workload (first run on a dir), if given.
    pub events: Option<u64>,
    pub dir: Option<PathBuf>,
    /// Events per second while the simulated offices are open.
    pub rate: f64,
    /// The HTTP API's address (default: a free port on loopback).
    pub http: Option<String>,
}

const ORIGIN: &str = "demo.socai.vn/ledger";
/// Initial workload events per publish round (the position is stored after each).
const BULK_CHUNK: usize = 10_000;
/// Most trickle events in one publish round (a burst, e.g. the procedure catalogue, drains in
/// rounds of this many).
const TRICKLE_MAX: usize = 200;
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// After Ctrl-C, how long the events in flight may wait for their receipts; what has none by
/// then is not counted as sent, so the next run sends it again (a duplicate if it was committed).
const STOP_GRACE: Duration = Duration::from_secs(60);
const STATE_FILE: &str = "demo.json";

/// `<dir>/demo.json`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// The first run's workload: published at full speed before the trickle starts.
    initial_events: u64,
    /// Events of the simulator's stream (`SimConfig::default()`) the ledger has answered, in
    /// stream order: the next run starts with the event at this index.
    generated: u64,
    committed: u64,
    /// Events the ledger already held when they were sent again (after a run that was killed).
    duplicates: u64,
    rejected: u64,
    runs: u64,
    /// Which stream `generated` counts in: the simulator's stream depends on the units file it
    /// was built with (`socai_metrics::definitions()`); another one would resume at the same
    /// index of different events.
    #[serde(default)]
    stream: String,
}

/// The fingerprint of the simulator's default stream in this build.
fn stream_fingerprint() -> String {
    format!(
        "sim-seed-{}-{}",
        socai_sim::SimConfig::default().seed,
        socai_metrics::definitions()
    )
}

impl State {
    fn load(dir: &Path) -> anyhow::Result<Option<State>> {
        let path = dir.join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let state: State = serde_json::from_str(&text).map_err(|e| {
                    anyhow!(
                        "{} is not readable ({e}): the demo cannot tell where its simulator stopped; delete {} to start the demo over",
                        path.display(),
                        dir.display()
                    )
                })?;
                if state.generated > 0 && state.stream != stream_fingerprint() {
                    return Err(anyhow!(
                        "{} was made by a socai whose simulator streams other events (another units file or seed): resuming would send different events under the same ids; delete {} to start the demo over",
                        dir.display(),
                        dir.display()
                    ));
                }
                Ok(Some(state))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let state = State {
            stream: stream_fingerprint(),
            ..self.clone()
        };
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(&state)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

pub fn run(g: &Global, opts: &Options) -> anyhow::Result<()> {
    if !(opts.rate.is_finite() && opts.rate > 0.0 && opts.rate <= 10_000.0) {
        return Err(Exit::error(
            2,
            "usage",
            format!(
                "--rate {}: give a number of events per second above 0 (at most 10000)",
                opts.rate
            ),
        ));
    }
    let repo = crate::cmd::repo_root()?;
    let default_dir = repo.join("target").join("socai-demo");
    let dir = match &opts.dir {
        Some(d) => std::path::absolute(d).with_context(|| format!("--dir {}", d.display()))?,
        None => default_dir.clone(),
    };
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating the demo dir {}", dir.display()))?;
    let _lock = lock(&dir)?;
    leftovers(&dir)?;
    let nats_server = nats_server(&repo)?;
    let rt = crate::cmd::nats::runtime()?;
    let stop = signals(&rt)?;
    let mut g = g.clone();
    g.data_dir = dir.join("data");
    g.api = None;
    let (mut state, first) = match State::load(&dir)? {
        Some(s) => (s, false),
        None => (
            State {
                initial_events: opts.events.unwrap_or(super::DEFAULT_EVENTS),
                ..State::default()
            },
            true,
        ),
    };
    state.runs += 1;
    say!(
        "socai demo in {} (run {}; Ctrl-C stops it cleanly, running it again resumes; `--once` runs every step in a temp dir and exits)",
        dir.display(),
        state.runs
    );
    if !first && opts.events.is_some_and(|n| n != state.initial_events) {
        say!(
            "(--events applies to a new dir: this one's initial workload is {} events, set on its first run; to start over, delete {})",
            state.initial_events,
            dir.display()
        );
    }
    if !g.data_dir.join("checkpoint.vkey").is_file() {
        super::step("init: a data dir with an Ed25519 checkpoint key and a salt key");
        crate::cmd::init(&g, ORIGIN, None)?;
    }
    state.save(&dir)?;

    let mut stack = Stack {
        dir: dir.clone(),
        nats: None,
        witness: None,
        serve: None,
        project: None,
    };
    let mut run = Run::default();
    let result = rt.block_on(live(
        &g,
        opts,
        &repo,
        &nats_server,
        &mut stack,
        &mut state,
        &mut run,
        stop,
    ));
    // Whatever happened: stop the processes (worker, ledger, nats-server), in that order.
    if stack.nats.is_some() {
        super::step(&format!(
            "stopping{}: the projection worker, the ledger, the witness, then nats-server (SIGTERM each, waiting for it to finish)",
            if result.is_err() {
                " after the error below"
            } else {
                ""
            }
        ));
    }
    let stopped = stack.stop();
    for line in &stopped.lines {
        say!("{line}");
    }
    let saved = state.save(&dir);
    drop(rt);
    result?;
    saved?;
    if let Some(problem) = stopped.problem {
        bail!("{problem}");
    }
    summary(&dir, dir != default_dir, &state, &run);
    Ok(())
}

/// This run's figures, for the summary.
#[derive(Default)]
struct Run {
    started: Option<Instant>,
    sent: u64,
    committed: u64,
    duplicates: u64,
    rejected: u64,
    size_before: Option<u64>,
    size_after: Option<u64>,
    trickle_started: Option<Instant>,
    trickled: u64,
    next_at: Option<String>,
}

fn summary(dir: &Path, own_dir: bool, state: &State, run: &Run) {
    super::step("summary");
    let secs = run.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    say!(
        "this run: {} events published in {}: {} committed, {} already in the ledger (duplicates, not committed twice), {} rejected; each answered by a signed receipt checked with checkpoint.vkey",
        run.sent,
        duration(secs),
        run.committed,
        run.duplicates,
        run.rejected
    );
    if let (Some(t), true) = (run.trickle_started, run.trickled > 0) {
        let s = t.elapsed().as_secs_f64();
        say!(
            "live trickle: {} events in {} ({:.1}/s)",
            run.trickled,
            duration(s),
            run.trickled as f64 / s.max(1e-9)
        );
    }
    match (run.size_before, run.size_after) {
        (Some(a), Some(b)) => {
            let same = b.checked_sub(a) == Some(run.committed);
            say!(
                "tree size {a} → {b} (+{}){}",
                b.saturating_sub(a),
                if same {
                    ", exactly the events committed this run"
                } else {
                    "; note: not the number committed this run (a redaction, or another publisher?)"
                }
            );
        }
        (_, Some(b)) => say!("tree size {b}"),
        _ => {}
    }
    say!(
        "all runs: {} events of the simulator's stream answered ({} committed, {} duplicates, {} rejected); the next run continues with event {}{}",
        state.generated,
        state.committed,
        state.duplicates,
        state.rejected,
        state.generated,
        run.next_at
            .as_ref()
            .map(|t| format!(" (simulated {t})"))
            .unwrap_or_default()
    );
    let exe = std::env::current_exe()
        .ok()
        .map(|e| relative(&e))
        .unwrap_or_else(|| "socai".into());
    let data = relative(&dir.join("data"));
    say!("check it:        {exe} --data-dir {data} verify --vkey {data}/checkpoint.vkey");
    say!(
        "run it again:    deploy/demo.sh{}   (it resumes; delete {} to start over)",
        if own_dir {
            format!(" --dir {}", relative(dir))
        } else {
            String::new()
        },
        relative(dir)
    );
}

/// `path` relative to the current dir when it is inside it (shorter to type).
fn relative(path: &Path) -> String {
    match std::env::current_dir()
        .ok()
        .and_then(|c| path.strip_prefix(c).ok().map(Path::to_path_buf))
    {
        Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.display().to_string(),
    }
}

fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{secs:.1} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

/// The nats-server binary: the repository's `.tools/nats` (deploy/install-nats.sh), else PATH.
fn nats_server(repo: &Path) -> anyhow::Result<PathBuf> {
    let tools = repo.join(socai_testkit::TOOLS_NATS_SERVER);
    if tools.is_file() {
        return Ok(tools);
    }
    socai_testkit::find_nats_server(None).map_err(|_| {
        anyhow!(
            "nats-server not found (looked for {} and on PATH): run deploy/install-nats.sh (it installs one into .tools/nats), or put nats-server on PATH",
            tools.display()
        )
    })
}

/// Everything while the processes run: start them, publish, trickle, until the stop signal.
#[allow(clippy::too_many_arguments)]
async fn live(
    g: &Global,
    opts: &Options,
    repo: &Path,
    binary: &Path,
    stack: &mut Stack,
    state: &mut State,
    run: &mut Run,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use socai_testkit::shipped_config_in;
    run.started = Some(Instant::now());
    let dir = stack.dir.clone();
    let data = g.data_dir.display().to_string();

    // nats-server, with the shipped config and fresh passwords.
    let (config, vars) = shipped_config_in(&repo.join("deploy").join("nats"), &dir.join("nats"))
        .context("preparing deploy/nats/single.conf for the demo")?;
    let env: Vec<(String, String)> = vars
        .iter()
        .map(|v| (v.clone(), format!("demo-{:032x}", rand::random::<u128>())))
        .collect();
    let password = |user: &str| -> String {
        env.iter()
            .find(|(v, _)| socai_testkit::user_of_password_var(v).as_deref() == Some(user))
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    };
    let logs = dir.join("logs");
    let nats_env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    // A free client port (-p -1, read from its log) and a random monitoring port (-m -1: the
    // config's 8222 may be taken).
    let nats = Proc::spawn(
        "nats-server",
        binary,
        &[
            "-c".into(),
            config.display().to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            "-1".into(),
            "-m".into(),
            "-1".into(),
        ],
        &nats_env,
        logs.join("nats-server.log"),
        "Server is ready",
    )?;
    stack.nats = Some(nats);
    stack.write_pids();
    let nats = stack.nats.as_mut().expect("just started");
    let Some(_) = nats
        .wait_for("Server is ready", Duration::from_secs(30), &stop)
        .await
        .map_err(|e| {
            anyhow!(
                "{e}\nif nats-server ({}) is too old or broken, run deploy/install-nats.sh; if its store is damaged, delete {} to start the demo over",
                binary.display(),
                dir.display()
            )
        })?
    else {
        return Ok(());
    };
    let port = nats
        .log_text()
        .lines()
        .find_map(|l| l.split("Listening for client connections on ").nth(1))
        .and_then(|addr| addr.trim().rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| {
            anyhow!(
                "nats-server logged no client port; see {}",
                nats.log.display()
            )
        })?;
    let url = format!("nats://127.0.0.1:{port}");
    say!(
        "nats-server {url} with deploy/nats/single.conf (store {}/nats/jetstream, log {}/nats-server.log)",
        relative(&dir),
        relative(&logs)
    );

    // A witness (in production another party's machine) that cosigns every checkpoint; its key
    // and what it cosigned stay in the demo dir across runs.
    let witness_dir = dir.join("witness");
    if !socai_witness::witness::key_path(&witness_dir).exists() {
        socai_witness::witness::init(&witness_dir, "witness.demo.socai/w1")?;
    }
    let witness_vkey = std::fs::read_to_string(socai_witness::witness::vkey_path(&witness_dir))
        .context("reading the demo witness's verifier key")?;
    let witness = Proc::socai(
        "socai witness",
        &[
            "witness".into(),
            "serve".into(),
            "--dir".into(),
            witness_dir.display().to_string(),
            "--log".into(),
            g.data_dir.join("checkpoint.vkey").display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        &[],
        logs.join("witness.log"),
        "witness listening on",
    )?;
    stack.witness = Some(witness);
    stack.write_pids();
    let witness = stack.witness.as_mut().expect("just started");
    let Some(line) = witness
        .wait_for("witness listening on ", Duration::from_secs(30), &stop)
        .await?
    else {
        return Ok(());
    };
    let witness_url = line
        .split("witness listening on ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
        .map(|u| format!("{}/", u.trim_end_matches('/')))
        .ok_or_else(|| anyhow!("socai witness logged an address the demo cannot read: {line}"))?;
    say!(
        "socai witness: an independent witness at {witness_url} cosigning each checkpoint (C2SP tlog-witness; log {}/witness.log)",
        relative(&logs)
    );

    // The ledger: writer + HTTP API (+ dashboard), with its NATS connection.
    let http = opts.http.clone().unwrap_or_else(|| "127.0.0.1:0".into());
    let serve = Proc::socai(
        "socai serve",
        &[
            "--data-dir".into(),
            data.clone(),
            "--nats".into(),
            url.clone(),
            "--nats-ping-interval".into(),
            g.nats_ping_interval.to_string(),
            "serve".into(),
            "--http".into(),
            http,
            "--witness".into(),
            format!("{witness_url}={}", witness_vkey.trim()),
        ],
        &[
            ("SOCAI_NATS_USER", "ledger".into()),
            ("SOCAI_NATS_PASSWORD", password("ledger")),
        ],
        logs.join("serve.log"),
        "serving",
    )?;
    stack.serve = Some(serve);
    stack.write_pids();
    let serve = stack.serve.as_mut().expect("just started");
    let Some(line) = serve
        .wait_for("http api listening on ", Duration::from_secs(60), &stop)
        .await?
    else {
        return Ok(());
    };
    let api = line
        .split("http api listening on ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
        .map(|u| u.trim_end_matches('/').to_owned())
        .ok_or_else(|| {
            anyhow!("socai serve logged an HTTP address the demo cannot read: {line}")
        })?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    if !ready(&client, &api, stack, &stop).await? {
        return Ok(());
    }
    run.size_before = tree_size(&client, &api).await;
    say!(
        "socai serve: the ledger writer and the HTTP API at {api} (log {}/serve.log)",
        relative(&logs)
    );

    // One projection worker.
    let project = Proc::socai(
        "socai project",
        &[
            "--data-dir".into(),
            data.clone(),
            "--nats".into(),
            url.clone(),
            "--nats-ping-interval".into(),
            g.nats_ping_interval.to_string(),
            "-v".into(),
            "project".into(),
            "--name".into(),
            "projector".into(),
        ],
        &[
            ("SOCAI_NATS_USER", "projector".into()),
            ("SOCAI_NATS_PASSWORD", password("projector")),
        ],
        logs.join("project.log"),
        "projector resuming",
    )?;
    stack.project = Some(project);
    stack.write_pids();
    let project = stack.project.as_mut().expect("just started");
    if project
        .wait_for("projector resuming", Duration::from_secs(60), &stop)
        .await?
        .is_none()
    {
        return Ok(());
    }
    say!(
        "socai project: one projection worker folding COMMITTED into the metrics (log {}/project.log)",
        relative(&logs)
    );
    write_env(&dir, &url, &password("dashboard"));
    print_urls(&api, &dir);

    // The integration gateway publishes, keeping each event until its receipt.
    let vkey = crate::cmd::audit::read_vkey(&g.data_dir.join("checkpoint.vkey"))?;
    let gateway = Publisher::connect(&NatsConfig {
        user: Some("gateway".into()),
        password: Some(password("gateway")),
        name: "socai-demo-gateway".into(),
        ping_interval: std::time::Duration::from_secs(g.nats_ping_interval),
        ..NatsConfig::new(url.clone())
    })
    .await?;
    let receipts = ReceiptPublisher::new(
        gateway,
        ReceiptOptions {
            receipt_timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(120),
            max_in_flight: 512,
            verifier: Some(vkey),
            ..ReceiptOptions::default()
        },
    );
    let mut sim = socai_sim::Generator::new(socai_sim::SimConfig::default());
    if state.generated > 0 {
        let started = Instant::now();
        for _ in 0..state.generated {
            sim.next();
        }
        if started.elapsed() > Duration::from_secs(1) {
            say!(
                "simulator fast-forwarded past the {} events already sent in {:.1} s",
                state.generated,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut sim = Ahead::new(sim);

    if state.generated < state.initial_events {
        initial(&receipts, &mut sim, stack, state, run, &stop).await?;
    }
    if !*stop.borrow() {
        trickle(
            &receipts, &mut sim, stack, state, run, &stop, opts.rate, &client, &api,
        )
        .await?;
    }
    run.next_at = sim.peek()?.map(|&(t, _)| super::clock::local_time(t));
    drop(receipts);
    run.size_after = tree_size(&client, &api).await;
    Ok(())
}

/// `<dir>/nats.env`: how to reach this run's nats-server as the dashboard user
/// (`set -a; . nats.env; socai metrics`).
fn write_env(dir: &Path, url: &str, password: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("nats.env");
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            writeln!(
                f,
                "SOCAI_NATS_URL={url}\nSOCAI_NATS_USER=dashboard\nSOCAI_NATS_PASSWORD={password}"
            )
        });
}

fn print_urls(api: &str, dir: &Path) {
    super::step("running");
    say!("dashboard:      {api}/dashboard");
    say!("HTTP API:       {api}/v1/log   (every route: {api}/v1/openapi.json)");
    say!("witnesses:      {api}/v1/witnesses   cosigned: {api}/v1/checkpoints/witnessed");
    say!(
        "metrics:        {api}/v1/metrics?scope=national&window=ytd   live: {api}/v1/metrics/stream"
    );
    say!(
        "NATS, as the dashboard user: set -a; . {}/nats.env; set +a; socai metrics",
        relative(dir)
    );
}

/// Waits for `/readyz` to answer 200 (the writer runs, nats-server connected). False if the
/// stop signal came first.
async fn ready(
    client: &reqwest::Client,
    api: &str,
    stack: &mut Stack,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut last;
    loop {
        match client.get(format!("{api}/readyz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(true),
            Ok(r) => last = r.text().await.unwrap_or_default(),
            Err(e) => last = e.to_string(),
        }
        stack.check()?;
        if *stop.borrow() {
            return Ok(false);
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "socai serve is not ready after 120 s ({api}/readyz: {last}); see {}",
                stack.dir.join("logs").join("serve.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ledger's size (`/v1/log`), if it answers.
async fn tree_size(client: &reqwest::Client, api: &str) -> Option<u64> {
    let v: serde_json::Value = client
        .get(format!("{api}/v1/log"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["size"].as_u64()
}

/// The tree size the dashboard's national figures were computed at (the largest of the
/// national year-to-date values in the METRICS bucket).
async fn dashboard_size(client: &reqwest::Client, api: &str) -> Option<u64> {
    let v: serde_json::Value = client
        .get(format!("{api}/v1/metrics?scope=national&window=ytd"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["values"]
        .as_array()?
        .iter()
        .filter_map(|x| x["tree_size"].as_u64())
        .max()
}

/// What the ledger answered for one publish round.
#[derive(Default)]
struct Answered {
    committed: u64,
    duplicates: u64,
    rejected: u64,
    /// Indexes (into the round) of events with no answer: sent again.
    unanswered: Vec<usize>,
    /// The largest tree size of the receipts' signed tree heads.
    tree_size: Option<u64>,
}

/// Publishes `msgs` and waits for every receipt, watching the processes. `None` when the stop
/// signal came and the receipts did not within [`STOP_GRACE`] (nothing of the round counts as
/// sent).
async fn publish_round(
    receipts: &ReceiptPublisher,
    msgs: &[Outgoing],
    stack: &mut Stack,
    stop: &watch::Receiver<bool>,
    mut on_event: impl FnMut(),
) -> anyhow::Result<Option<Answered>> {
    let mut answered = Answered::default();
    let mut pending: Vec<usize> = (0..msgs.len()).collect();
    for _attempt in 0..5 {
        let mut round = Answered::default();
        let input = pending.iter().map(|&i| (msgs[i].clone(), i));
        // Boxed, so dropping it ends its borrow of `round`.
        let mut fut = Box::pin(receipts.publish_all(input, |report| {
            if matches!(report, Report::Event(_)) {
                on_event();
            }
            round.add(report);
        }));
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut stop_by: Option<Instant> = None;
        let summary = loop {
            tokio::select! {
                r = &mut fut => break r,
                _ = tick.tick() => {
                    stack.check()?;
                    if *stop.borrow() {
                        let by = *stop_by.get_or_insert_with(|| Instant::now() + STOP_GRACE);
                        if Instant::now() >= by {
                            say_err!(
                                "no receipts within {} s of the stop: these {} events count as not sent; the next run sends them again",
                                STOP_GRACE.as_secs(),
                                msgs.len()
                            );
                            return Ok(None);
                        }
                    }
                }
            }
        };
        summary.map_err(|e| anyhow!("{e}"))?;
        drop(fut);
        answered.committed += round.committed;
        answered.duplicates += round.duplicates;
        answered.rejected += round.rejected;
        answered.tree_size = answered.tree_size.max(round.tree_size);
        pending = round.unanswered;
        if pending.is_empty() {
            return Ok(Some(answered));
        }
        if *stop.borrow() {
            return Ok(None);
        }
    }
    bail!(
        "{} events got no receipt from the ledger after 5 tries; see {}",
        pending.len(),
        stack.dir.join("logs").join("serve.log").display()
    )
}

impl Answered {
    fn add(&mut self, report: Report<usize>) {
        match report {
            Report::Receipt { receipt, .. } => {
                let size = receipt.checkpoint.lines().nth(1);
                let size = size.and_then(|s| s.trim().parse::<u64>().ok());
                self.tree_size = self.tree_size.max(size);
            }
            Report::Event(e) => match e.outcome {
                Outcome::Committed { .. } | Outcome::Synced { .. } => self.committed += 1,
                Outcome::Duplicate { .. } => self.duplicates += 1,
                Outcome::Rejected {
                    code, path, reason, ..
                } => {
                    say_err!(
                        "event {} rejected by the ledger: {code} at {path:?}: {reason}",
                        e.id
                    );
                    self.rejected += 1;
                }
                Outcome::NoReceipt { last_error } => {
                    tracing::warn!(id = %e.id, ?last_error, "no receipt; sending it again");
                    self.unanswered.push(e.tag);
                }
                Outcome::NotPublished(error) => {
                    tracing::warn!(id = %e.id, %error, "not stored on EVENTS; sending it again");
                    self.unanswered.push(e.tag);
                }
            },
            _ => {}
        }
    }
}

fn count(state: &mut State, run: &mut Run, n: usize, a: &Answered) {
    state.generated += n as u64;
    state.committed += a.committed;
    state.duplicates += a.duplicates;
    state.rejected += a.rejected;
    run.sent += n as u64;
    run.committed += a.committed;
    run.duplicates += a.duplicates;
    run.rejected += a.rejected;
}

/// The first run's workload, at full speed, in rounds of [`BULK_CHUNK`] (the position is stored
/// after each; Ctrl-C stops after the round in hand).
async fn initial(
    receipts: &ReceiptPublisher,
    sim: &mut Ahead,
    stack: &mut Stack,
    state: &mut State,
    run: &mut Run,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let total = state.initial_events;
    super::step(&format!(
        "the initial workload: {} realistic dossier events from the simulator{}, published over NATS by the integration gateway (user `gateway`); the ledger commits each once and answers with a signed receipt",
        total,
        if state.generated > 0 {
            format!(" (resuming at event {})", state.generated)
        } else {
            String::new()
        }
    ));
    let bar = crate::output::progress(total, "receipts");
    bar.set_position(state.generated);
    let started = Instant::now();
    let from = state.generated;
    let mut last_line = Instant::now();
    let mut tree = None;
    while state.generated < total && !*stop.borrow() {
        let n = BULK_CHUNK.min((total - state.generated) as usize);
        let mut msgs = Vec::with_capacity(n);
        while msgs.len() < n
            && let Some(e) = sim.pop()?
        {
            msgs.push(Outgoing::event(&e));
        }
        let n = msgs.len();
        let Some(a) = publish_round(receipts, &msgs, stack, stop, || bar.inc(1)).await? else {
            bar.abandon();
            note_round_abandoned();
            return Ok(());
        };
        tree = a.tree_size.or(tree);
        count(state, run, n, &a);
        state.save(&stack.dir)?;
        if bar.is_hidden() && (last_line.elapsed() > STATUS_EVERY || state.generated == total) {
            last_line = Instant::now();
            say!(
                "  {} of {total} events answered ({:.0}/s)",
                state.generated,
                (state.generated - from) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let done = state.generated - from;
    say!(
        "{done} events published and answered in {secs:.1} s ({:.0}/s): {} committed, {} duplicates, {} rejected{}{}",
        done as f64 / secs.max(1e-9),
        run.committed,
        run.duplicates,
        run.rejected,
        tree.map(|t| format!("; tree size {t}")).unwrap_or_default(),
        if state.generated < total {
            " (stopped before the end of the workload: the next run continues it)"
        } else {
            ""
        }
    );
    Ok(())
}

fn note_round_abandoned() {
    say_err!(
        "stopped while a round of events waited for its receipts; the next run sends that round again (what the ledger already holds comes back as duplicates)"
    );
}

/// The live trickle: the simulator's stream at the pace of its own clock (see `clock`).
#[allow(clippy::too_many_arguments)]
async fn trickle(
    receipts: &ReceiptPublisher,
    sim: &mut Ahead,
    stack: &mut Stack,
    state: &mut State,
    run: &mut Run,
    stop: &watch::Receiver<bool>,
    rate: f64,
    client: &reqwest::Client,
    api: &str,
) -> anyhow::Result<()> {
    let Some(mut clock) = Clock::new(sim, rate)? else {
        return Ok(());
    };
    super::step(&format!(
        "live trickle: the simulator's stream goes on from event {} (simulated {}) at office-hours pace",
        state.generated,
        clock.describe()
    ));
    say!(
        "the simulated clock follows its offices' hours (Mon-Fri 07:30-11:30 and 13:30-17:00, +07:00) scaled to wall time: while they are open it runs fast enough for about {rate} events/s (now {:.0}× wall time, re-estimated every {} s from the stream ahead), outside them {OFF_HOURS_FACTOR}× faster still, so fewer events arrive at lunch, at night and at weekends without the demo idling for hours (--rate changes the pace); each event is kept until its signed receipt; a status line every {} s; Ctrl-C stops",
        clock.speed,
        STATUS_EVERY.as_secs(),
        STATUS_EVERY.as_secs()
    );
    let mut stop_rx = stop.clone();
    let started = Instant::now();
    run.trickle_started = Some(started);
    let mut last = Instant::now();
    let mut status_at = Instant::now() + STATUS_EVERY;
    let mut window_sent = 0u64;
    let mut window_start = Instant::now();
    let mut tree = None;
    let mut committed_run = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        stack.check()?;
        let now = Instant::now();
        clock.tick(now.duration_since(last).as_secs_f64());
        last = now;
        let mut batch = Vec::new();
        while batch.len() < TRICKLE_MAX
            && sim.peek()?.is_some_and(|&(t, _)| t <= clock.now)
            && let Some(e) = sim.pop()?
        {
            batch.push(Outgoing::event(&e));
        }
        if !batch.is_empty() {
            let n = batch.len();
            let Some(a) = publish_round(receipts, &batch, stack, stop, || {}).await? else {
                note_round_abandoned();
                break;
            };
            tree = a.tree_size.or(tree);
            committed_run += a.committed;
            count(state, run, n, &a);
            run.trickled += n as u64;
            window_sent += n as u64;
            state.save(&stack.dir)?;
        }
        if Instant::now() >= status_at {
            let secs = window_start.elapsed().as_secs_f64();
            let dashboard = dashboard_size(client, api).await;
            say!(
                "[{}] simulated {} · clock {:.0}× wall time · {} events in {:.0} s ({:.1}/s) · {} committed by the trickle, {} duplicates · tree size {} · dashboard figures at tree size {}",
                jiff::Zoned::now().strftime("%H:%M:%S"),
                clock.describe(),
                clock.speed,
                window_sent,
                secs,
                window_sent as f64 / secs.max(1e-9),
                committed_run,
                run.duplicates,
                tree.map_or("?".to_string(), |t: u64| t.to_string()),
                dashboard.map_or("? (not published yet)".to_string(), |t| t.to_string())
            );
            clock.retune(sim)?;
            window_sent = 0;
            window_start = Instant::now();
            status_at = Instant::now() + STATUS_EVERY;
        }
        if batch.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop_rx.changed() => {}
            }
        }
    }
    Ok(())
}
