//! The demo's processes: its lock on the dir, the children it starts (`socai serve`, `socai
//! project`, nats-server) and stops in order, the signals that stop it.

use anyhow::{Context, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// `<dir>/pids`: the processes of the run in progress (checked by the next run).
const PIDS_FILE: &str = "pids";

/// Holds `<dir>/demo.lock` for the whole run: one demo per dir. The kernel releases it when
/// this process ends, however it ends.
pub(super) fn lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write;
    let path = dir.join("demo.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            let pid = pid.trim();
            bail!(
                "another `socai demo` (pid {}) is running on {}: stop it (Ctrl-C in its terminal, or `kill {}`), or give this one another --dir",
                if pid.is_empty() { "?" } else { pid },
                dir.display(),
                if pid.is_empty() { "PID" } else { pid }
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The processes an earlier run recorded in `<dir>/pids` that still run on this dir: that run
/// was killed (kill -9) before it could stop them, and they hold its stores.
pub(super) fn leftovers(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(PIDS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let needle = dir.display().to_string();
    let alive: Vec<(String, u32)> = text
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(name, pid)| Some((name.to_owned(), pid.trim().parse().ok()?)))
        .filter(|(_, pid)| cmdline(*pid).is_some_and(|c| c.contains(&needle)))
        .collect();
    if alive.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    let listed: Vec<String> = alive
        .iter()
        .map(|(name, pid)| format!("{name} (pid {pid})"))
        .collect();
    let pids: Vec<String> = alive.iter().map(|(_, pid)| pid.to_string()).collect();
    bail!(
        "processes of an earlier demo run on {} are still running: {}; that run was killed before it could stop them, and they hold its stores. Stop them with `kill {}` (they finish cleanly on SIGTERM), then run the demo again",
        dir.display(),
        listed.join(", "),
        pids.join(" ")
    )
}

/// A live (not zombie) process's command line.
fn cmdline(pid: u32) -> Option<String> {
    if !process_alive(pid) {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Whether `pid` runs (exists and is not a zombie).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// SIGINT, SIGTERM and SIGHUP (the terminal closed): the first asks the demo to stop (the
/// watch turns true); later ones only say it is under way.
pub(super) fn signals(rt: &tokio::runtime::Runtime) -> anyhow::Result<watch::Receiver<bool>> {
    use std::io::Write;
    use tokio::signal::unix::{SignalKind, signal};
    let _enter = rt.enter();
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = watch::channel(false);
    rt.spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            seen += 1;
            let _ = tx.send(true);
            // Not eprintln!: after SIGHUP the terminal may be gone.
            let _ = if seen == 1 {
                writeln!(
                    std::io::stderr(),
                    "\n{name}: stopping cleanly: the events in flight get their receipts, then the worker, the ledger, the witness and nats-server stop"
                )
            } else {
                writeln!(
                    std::io::stderr(),
                    "{name}: already stopping (nothing is lost by waiting)"
                )
            };
        }
    });
    Ok(rx)
}

/// A child process (nats-server, `socai serve`, `socai project`) in a process group of its own,
/// logging to a file.
pub(super) struct Proc {
    pub(super) name: &'static str,
    child: Option<Child>,
    pub(super) log: PathBuf,
    /// Where this run's part of the log starts (logs are appended across runs).
    from: u64,
    /// A log line saying its signal handlers are installed and it is working.
    ready_marker: &'static str,
    status: Option<ExitStatus>,
}

impl Proc {
    /// `socai ARGS` (this binary).
    pub(super) fn socai(
        name: &'static str,
        args: &[String],
        env: &[(&str, String)],
        log: PathBuf,
        ready_marker: &'static str,
    ) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("finding the socai binary")?;
        Proc::spawn(name, &exe, args, env, log, ready_marker)
    }

    pub(super) fn spawn(
        name: &'static str,
        exe: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: PathBuf,
        ready_marker: &'static str,
    ) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt;
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        for var in [
            "SOCAI_DATA_DIR",
            "SOCAI_NATS_URL",
            "SOCAI_NATS_USER",
            "SOCAI_NATS_PASSWORD",
            "SOCAI_NATS_PING_INTERVAL",
            "SOCAI_API_URL",
            "SOCAI_API_TOKEN",
            "SOCAI_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        // A process group of its own: the terminal's Ctrl-C reaches the demo alone, which stops
        // the processes in order (the worker, the ledger, then nats-server).
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", exe.display()))?;
        Ok(Proc {
            name,
            child: Some(child),
            log,
            from,
            ready_marker,
            status: None,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// This run's part of its log.
    pub(super) fn log_text(&self) -> String {
        use std::io::{Read, Seek};
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.seek(std::io::SeekFrom::Start(self.from));
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    fn tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its exit status, once it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.status = Some(status);
            self.child = None;
        }
        self.status
    }

    /// It exited when it should be running: what happened, and where to look.
    fn died(&self, status: ExitStatus) -> anyhow::Error {
        let tail = self.tail(15);
        let mut hint = String::new();
        if tail.contains("cannot listen on") {
            hint.push_str(
                "\nthe HTTP address is taken: pass another --http ADDR, or leave --http out and the demo picks a free port",
            );
        }
        if tail.contains("is locked by another process") {
            hint.push_str(
                "\nanother process holds the ledger's data dir (a `socai` command on it, or a `socai serve` left by a killed demo run): stop it, then run the demo again",
            );
        }
        anyhow!(
            "{} exited ({status}) while the demo needed it; the last lines of {}:\n{tail}{hint}",
            self.name,
            self.log.display()
        )
    }

    /// Waits until its log shows `needle` (returns that line), it exits, `stop` turns true
    /// (`None`), or `limit` passes.
    pub(super) async fn wait_for(
        &mut self,
        needle: &str,
        limit: Duration,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<String>> {
        let started = Instant::now();
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(Some(line.to_owned()));
            }
            if let Some(status) = self.exited() {
                return Err(self.died(status));
            }
            if *stop.borrow() {
                return Ok(None);
            }
            if started.elapsed() > limit {
                bail!(
                    "{} did not get ready within {} s; the last lines of {}:\n{}",
                    self.name,
                    limit.as_secs(),
                    self.log.display(),
                    self.tail(15)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits up to `limit` for it to finish (SIGKILL after that). A process
    /// still starting (no handler yet) gets a moment to install its handlers first.
    pub(super) fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exited().is_some() {
            return self.status;
        }
        let started = Instant::now();
        while !self.log_text().contains(self.ready_marker)
            && self.exited().is_none()
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(pid) = self.pid() else {
            return self.status;
        };
        if !terminate(pid)
            && let Some(child) = self.child.as_mut()
        {
            let _ = child.kill();
        }
        let started = Instant::now();
        while self.exited().is_none() {
            if started.elapsed() > limit {
                say_err!(
                    "{} did not stop within {} s of SIGTERM: killed (it loses nothing acknowledged; see {})",
                    self.name,
                    limit.as_secs(),
                    self.log.display()
                );
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    self.status = child.wait().ok();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(30));
    }
}

/// `kill -TERM pid` (std has no way to send a signal other than SIGKILL).
fn terminate(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The running processes, stopped in order (worker, ledger, witness, nats-server) by [`Stack::stop`] or
/// when dropped.
pub(super) struct Stack {
    pub(super) dir: PathBuf,
    pub(super) nats: Option<Proc>,
    /// The witness that cosigns the ledger's checkpoints.
    pub(super) witness: Option<Proc>,
    pub(super) serve: Option<Proc>,
    pub(super) project: Option<Proc>,
}

pub(super) struct Stopped {
    pub(super) lines: Vec<String>,
    /// A process that did not end cleanly.
    pub(super) problem: Option<String>,
}

impl Stack {
    /// An error if one of the processes exited.
    pub(super) fn check(&mut self) -> anyhow::Result<()> {
        let all = [
            self.nats.as_mut(),
            self.witness.as_mut(),
            self.serve.as_mut(),
            self.project.as_mut(),
        ];
        for p in all.into_iter().flatten() {
            if let Some(status) = p.exited() {
                return Err(anyhow!(
                    "{}\nthe demo stops the other processes; once the cause is fixed, run it again: it resumes (what was in flight is sent again, and the ledger answers what it already holds as duplicates)",
                    p.died(status)
                ));
            }
        }
        Ok(())
    }

    pub(super) fn write_pids(&self) {
        let mut text = String::new();
        let all = [
            self.nats.as_ref(),
            self.witness.as_ref(),
            self.serve.as_ref(),
            self.project.as_ref(),
        ];
        for p in all.into_iter().flatten() {
            if let Some(pid) = p.pid() {
                text.push_str(&format!("{} {pid}\n", p.name));
            }
        }
        let _ = std::fs::write(self.dir.join(PIDS_FILE), text);
    }

    pub(super) fn stop(&mut self) -> Stopped {
        let mut lines = Vec::new();
        let mut problem = None;
        for (slot, limit) in [
            (&mut self.project, Duration::from_secs(30)),
            (&mut self.serve, Duration::from_secs(60)),
            (&mut self.witness, Duration::from_secs(30)),
            (&mut self.nats, Duration::from_secs(30)),
        ] {
            let Some(mut p) = slot.take() else { continue };
            if let Some(status) = p.exited() {
                // It died on its own: the error that ends the demo says so, with its log.
                lines.push(format!("{} had already exited ({status})", p.name));
                continue;
            }
            let started = Instant::now();
            let status = p.stop(limit);
            let took = started.elapsed().as_secs_f64();
            // nats-server before 2.11 exits 1 on SIGTERM (2.11 made it 0): that is its clean
            // stop too (Debian's and Ubuntu's packages are older).
            let clean =
                |s: &ExitStatus| s.success() || (p.name == "nats-server" && s.code() == Some(1));
            match status {
                Some(s) if clean(&s) => {
                    // Its own last line says what it did.
                    let last = p
                        .log_text()
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("stopped: "))
                        .map(|l| format!(": {}", l.trim_start_matches("stopped: ")))
                        .unwrap_or_default();
                    lines.push(format!("{} stopped in {took:.1} s ({s}){last}", p.name));
                }
                other => {
                    let what = other.map_or("an unknown status".to_string(), |s| s.to_string());
                    lines.push(format!(
                        "{} ended with {what}; the last lines of {}:\n{}",
                        p.name,
                        p.log.display(),
                        p.tail(10)
                    ));
                    problem.get_or_insert(format!(
                        "{} did not stop cleanly ({what}); see {}",
                        p.name,
                        p.log.display()
                    ));
                }
            }
        }
        let _ = std::fs::remove_file(self.dir.join(PIDS_FILE));
        Stopped { lines, problem }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
