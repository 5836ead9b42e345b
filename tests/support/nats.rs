//! Real nats-server processes and `socai serve` processes for the ingestion tests, and the
//! JetStream reads the tests check results with.

use crate::{Ledger, socai_bin};
use async_nats::jetstream;
use socai_client::publisher::{NatsConfig, Publisher, ServerErrors};
use socai_testkit::{LocalNats, LocalNatsOptions, find_nats_server};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The repository root (configs under deploy/ are tested as they ship).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// nats-server: $SOCAI_NATS_SERVER, else .tools/nats/bin/nats-server (tests/run.sh installs it),
/// else PATH. A missing server fails the test with what to do; it never skips it.
pub fn nats_server_binary() -> PathBuf {
    let explicit = std::env::var_os("SOCAI_NATS_SERVER").map(PathBuf::from);
    let cwd_root = repo_root();
    let tools = cwd_root.join(socai_testkit::TOOLS_NATS_SERVER);
    if explicit.is_none() && tools.is_file() {
        return tools;
    }
    find_nats_server(explicit.as_deref()).unwrap_or_else(|e| panic!("{e}"))
}

/// Passwords for every user of deploy/nats/users.conf, as nats-server reads them.
pub const USERS: &[(&str, &str)] = &[
    ("ledger", "SOCAI_NATS_LEDGER_PASSWORD"),
    ("ledger_replica", "SOCAI_NATS_LEDGER_REPLICA_PASSWORD"),
    ("dashboard", "SOCAI_NATS_DASHBOARD_PASSWORD"),
    ("projector", "SOCAI_NATS_PROJECTOR_PASSWORD"),
    ("000.00.12.H01", "SOCAI_NATS_AGENCY_000_00_12_H01_PASSWORD"),
    ("000.00.12.H02", "SOCAI_NATS_AGENCY_000_00_12_H02_PASSWORD"),
    ("gateway", "SOCAI_NATS_GATEWAY_PASSWORD"),
];

/// The test password of `user`.
pub fn password(user: &str) -> String {
    format!("pw-{}", user.replace('.', "-"))
}

/// A nats-server on a port of its own with its own store dir under `dir`; with
/// `deploy/nats/single.conf` (auth, sync_interval: always) when `secured`.
pub fn start_nats(dir: &Path, secured: bool) -> LocalNats {
    start_nats_with(dir, secured, |users| users)
}

/// [`start_nats`], the shipped users.conf first changed by `users` (a test's own permissions).
pub fn start_nats_with(
    dir: &Path,
    secured: bool,
    users: impl FnOnce(String) -> String,
) -> LocalNats {
    let (config, env) = if secured {
        let (config, vars) =
            socai_testkit::shipped_config_in(&repo_root().join("deploy/nats"), dir)
                .expect("copy the shipped config");
        let path = dir.join("users.conf");
        let shipped = std::fs::read_to_string(&path).expect("users.conf copied");
        std::fs::write(&path, users(shipped)).expect("write users.conf");
        let listed: Vec<&str> = USERS.iter().map(|(_, var)| *var).collect();
        assert_eq!(
            vars,
            {
                let mut l = listed.clone();
                l.sort_unstable();
                l
            },
            "users.conf's password variables"
        );
        (
            Some(config),
            USERS
                .iter()
                .map(|(user, var)| (var.to_string(), password(user)))
                .collect(),
        )
    } else {
        (None, Vec::new())
    };
    LocalNats::start(LocalNatsOptions {
        binary: nats_server_binary(),
        dir: dir.to_path_buf(),
        config,
        env,
        port: 0,
    })
    .unwrap_or_else(|e| panic!("starting nats-server: {e}"))
}

/// The password of the cluster's route user in the tests.
pub const ROUTE_PASSWORD: &str = "pw-route";

/// The shipped 3-node cluster (`deploy/nats/cluster/`, authenticated routes) on loopback, each
/// node with its own store dir under `dir`; node N is `nodes[N-1]`, server name `socai-nats-N`.
pub fn start_cluster(dir: &Path) -> Vec<LocalNats> {
    let cluster =
        socai_testkit::shipped_cluster_in(&repo_root().join("deploy/nats"), dir, ROUTE_PASSWORD)
            .expect("copy the shipped cluster configs");
    let mut env: Vec<(String, String)> = USERS
        .iter()
        .map(|(user, var)| (var.to_string(), password(user)))
        .collect();
    assert_eq!(
        cluster.password_vars.len(),
        env.len(),
        "users.conf's password variables"
    );
    env.extend(cluster.route_env);
    let nodes = cluster.nodes;
    // Started one after the other: a node dials the routes of nodes not up yet again until
    // they are; start() waits only for its own listeners.
    nodes
        .iter()
        .map(|node| {
            LocalNats::start(LocalNatsOptions {
                binary: nats_server_binary(),
                dir: node.dir.clone(),
                config: Some(node.config.clone()),
                env: env.clone(),
                port: 0,
            })
            .unwrap_or_else(|e| panic!("starting cluster node {}: {e}", node.config.display()))
        })
        .collect()
}

/// The client URLs of a cluster's nodes as one seed list (`--nats`).
pub fn seed_list(nodes: &[LocalNats]) -> String {
    nodes
        .iter()
        .map(LocalNats::url)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn nats_config(url: &str, user: Option<&str>) -> NatsConfig {
    NatsConfig {
        user: user.map(String::from),
        password: user.map(password),
        ..NatsConfig::new(url)
    }
}

pub async fn connect(url: &str, user: Option<&str>) -> (async_nats::Client, ServerErrors) {
    socai_client::publisher::connect(&nats_config(url, user))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn publisher(url: &str, user: Option<&str>) -> Publisher {
    let (client, errors) = connect(url, user).await;
    Publisher::new(client, errors)
}

/// A running `socai serve` (or other long-running socai command) on a test data dir; killed
/// when dropped.
pub struct Serve {
    child: Option<Child>,
    pub log: PathBuf,
    out: PathBuf,
    /// The log line that says the process is up (its signal handlers are installed).
    ready: &'static str,
}

impl Ledger {
    /// Writes `<data-dir>/socai.toml`.
    pub fn configure(&self, toml: &str) {
        std::fs::write(self.dir().join("socai.toml"), toml).expect("write socai.toml");
    }

    /// Starts `socai serve` against `url` (as `user`, with its test password); its log goes to
    /// `serve-<n>.log` in the temp dir.
    pub fn serve(&self, url: &str, user: Option<&str>) -> Serve {
        self.spawn(
            &self.dir(),
            &["serve", "--http", "127.0.0.1:0"],
            url,
            user,
            "serving",
        )
    }

    /// Starts `socai --data-dir <data_dir> --json <args> --nats <url>` as `user`; `ready` is the
    /// log line that says it is up. Logs go to `<args[0]>-<n>.log` in the temp dir.
    pub fn spawn(
        &self,
        data_dir: &Path,
        args: &[&str],
        url: &str,
        user: Option<&str>,
        ready: &'static str,
    ) -> Serve {
        self.spawn_env(data_dir, args, url, user, ready, &[])
    }

    /// `socai serve` with extra environment variables (e.g. a test-only fault point).
    pub fn serve_env(&self, url: &str, user: Option<&str>, env: &[(&str, &str)]) -> Serve {
        self.spawn_env(
            &self.dir(),
            &["serve", "--http", "127.0.0.1:0"],
            url,
            user,
            "serving",
            env,
        )
    }

    /// [`Ledger::spawn`] with extra environment variables.
    pub fn spawn_env(
        &self,
        data_dir: &Path,
        args: &[&str],
        url: &str,
        user: Option<&str>,
        ready: &'static str,
        env: &[(&str, &str)],
    ) -> Serve {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.path(&format!("{}-{n}.log", args[0]));
        let out = self.path(&format!("{}-{n}.out", args[0]));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(socai_bin());
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--json")
            .args(args)
            .args(["--nats", url])
            .env_remove("SOCAI_NATS_USER")
            .env_remove("SOCAI_NATS_PASSWORD")
            // The tests size their freezes on the default heartbeat.
            .env_remove("SOCAI_NATS_PING_INTERVAL")
            .env("SOCAI_LOG", "info")
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(file);
        cmd.envs(env.iter().copied());
        if let Some(user) = user {
            cmd.env("SOCAI_NATS_USER", user)
                .env("SOCAI_NATS_PASSWORD", password(user));
        }
        Serve {
            child: Some(cmd.spawn().expect("socai starts")),
            log,
            out,
            ready,
        }
    }
}

impl Serve {
    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM once it is serving (a process still starting up has no handler yet), then waits
    /// for a clean exit (asserted).
    pub fn stop(&mut self) {
        let started = std::time::Instant::now();
        while self.running()
            && !std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains(self.ready)
            && started.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut c) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(status.success());
            let status = c.wait().expect("wait for socai");
            assert!(
                status.success(),
                "socai exited with {status}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// The base URL of the HTTP API of a `socai serve` started with `--http 127.0.0.1:0`
    /// (from its log line `http api listening on http://ADDR`).
    pub fn http_url(&mut self) -> String {
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(url) = log
                .lines()
                .find_map(|l| l.split("http api listening on ").nth(1))
                .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
            {
                return url.trim_end_matches('/').to_owned();
            }
            assert!(
                self.running() && started.elapsed() < Duration::from_secs(60),
                "socai serve did not open its HTTP API; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The JSON summary a stopped `socai serve` printed (counts of this run).
    pub fn summary(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.out).expect("serve stdout");
        serde_json::from_str(text.lines().last().unwrap_or("null")).expect("serve summary json")
    }

    /// Whether the process is still running.
    /// Sends `signal` (e.g. "STOP", "CONT") to the process, as `kill -<signal>` does.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The most memory the process has held so far (its `VmHWM`, peak resident set), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Messages a stream holds (0 if it does not exist yet).
pub async fn stream_messages(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// `GET url`: status and JSON body (text when it is not JSON).
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Waits (at most `limit`; a hang guard, not a timing assertion) until `cond` holds.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !cond().await {
        assert!(
            started.elapsed() < limit,
            "gave up after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `socai serve` has created the streams.
pub async fn wait_for_streams(js: &jetstream::Context) {
    wait_until(
        Duration::from_secs(60),
        "socai serve to create the streams",
        || async { js.get_stream(socai_wire::stream::COMMITTED).await.is_ok() },
    )
    .await;
}

/// Entries COMMITTED holds (the last message's `Socai-Seq + Socai-Count`; 0 if none yet).
pub async fn committed_entries(js: &jetstream::Context) -> u64 {
    socai_projector::committed::committed_size(js)
        .await
        .unwrap_or(0)
}

/// Waits until COMMITTED holds `n` entries and the ledger's EVENTS consumer has delivered every
/// message EVENTS holds.
pub async fn wait_committed(js: &jetstream::Context, n: u64, limit: Duration) {
    wait_until(limit, &format!("{n} entries on COMMITTED"), || async {
        committed_entries(js).await >= n
    })
    .await;
    wait_read_all(js, limit).await;
}

/// The EVENTS stream and its last seq, if they can be read.
async fn events_last_seq(js: &jetstream::Context) -> Option<(jetstream::stream::Stream, u64)> {
    let mut s = js.get_stream(socai_wire::stream::EVENTS).await.ok()?;
    let last = s.info().await.ok()?.state.last_sequence;
    Some((s, last))
}

/// Waits until the ledger's EVENTS consumer has delivered every message EVENTS holds.
pub async fn wait_read_all(js: &jetstream::Context, limit: Duration) {
    wait_until(limit, "the ledger to read all of EVENTS", || async {
        let Some((s, last)) = events_last_seq(js).await else {
            return false;
        };
        let mut names = s.consumer_names();
        while let Some(Ok(name)) = futures::StreamExt::next(&mut names).await {
            if name.starts_with("ledger")
                && let Ok(c) = s.consumer_info(&name).await
                && c.num_pending == 0
                && c.delivered.stream_sequence >= last
            {
                return true;
            }
        }
        false
    })
    .await;
}

/// Waits until the ledger behind `serve` has finished (committed, or found duplicate or
/// rejected) every message EVENTS holds, as its `/metrics` says.
pub async fn wait_processed(serve: &mut Serve, js: &jetstream::Context, limit: Duration) {
    let url = format!("{}/metrics", serve.http_url());
    wait_until(limit, "the ledger to process all of EVENTS", || async {
        let Some((_, last)) = events_last_seq(js).await else {
            return false;
        };
        let Ok(text) = reqwest::get(&url).await.and_then(|r| r.error_for_status()) else {
            return false;
        };
        let text = text.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("socai_events_processed_seq "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|seq| seq as u64 >= last)
    })
    .await;
}

/// Waits until `node` says on `/healthz` that it is current: in contact with the meta leader and
/// caught up on every stream and consumer it holds a replica of. A node that has restarted is not
/// part of the quorum until then; an R3 cluster survives one node down, not a second one lost
/// while the first is still catching up (the rule `deploy/nats/cluster/` gives operators).
pub async fn wait_healthy(node: &LocalNats, limit: Duration) {
    let url = format!(
        "{}/healthz",
        node.monitor_url().expect("the node runs, with monitoring")
    );
    let started = Instant::now();
    loop {
        let last = match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        assert!(
            started.elapsed() < limit,
            "{url} still unhealthy after {limit:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A message kept on a stream: subject, headers, payload.
pub struct Kept {
    pub subject: String,
    pub headers: async_nats::HeaderMap,
    pub payload: bytes::Bytes,
}

impl Kept {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.as_str().to_string())
    }
}

/// Every message of a stream, in order.
pub async fn stream_contents(js: &jetstream::Context, name: &str) -> Vec<Kept> {
    let Ok(mut stream) = js.get_stream(name).await else {
        return Vec::new();
    };
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(Kept {
                subject: m.subject.to_string(),
                headers: m.headers,
                payload: m.payload,
            });
        }
    }
    out
}

/// The entries of a data dir's ledger, as stored, in seq order (no socai process may be running
/// on it).
pub fn ledger_entries(ledger: &Ledger) -> Vec<Vec<u8>> {
    entries_in(&ledger.dir())
}

/// The entries of the ledger in data dir `dir`, as stored, in seq order (no socai process may be
/// running on it).
pub fn entries_in(dir: &Path) -> Vec<Vec<u8>> {
    use socai_store::Storage;
    let storage = socai_store::DataDir::new(dir)
        .open_storage()
        .expect("open the ledger store");
    let size = storage.head().expect("head").size;
    storage
        .entries(0, size)
        .map(|r| r.expect("entry").1)
        .collect()
}

/// (id, agency, type) of every entry of a data dir's ledger, in seq order (no socai process may
/// be running on it).
pub fn ledger_events(ledger: &Ledger) -> Vec<(String, String, String)> {
    ledger_entries(ledger)
        .iter()
        .map(|bytes| {
            let v: serde_json::Value = serde_json::from_slice(bytes).expect("entry json");
            let e = &v["event"];
            (
                e["id"].as_str().expect("id").to_string(),
                e["agency"].as_str().expect("agency").to_string(),
                e["type"].as_str().expect("type").to_string(),
            )
        })
        .collect()
}
