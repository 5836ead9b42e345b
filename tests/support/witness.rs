//! A `socai witness serve` process for the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{socai_bin, stderr, stdout};

/// A hang guard for a witness starting, far above what it takes.
const PATIENCE: Duration = Duration::from_secs(90);

/// A `socai witness serve` process on a directory; killed (-9) on drop.
pub struct WitnessProcess {
    dir: PathBuf,
    log_vkey: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    /// Its log (stderr) file.
    pub log: PathBuf,
    /// The address it listens on.
    pub addr: String,
}

impl WitnessProcess {
    /// `socai witness init` in `dir` (named `name`); returns its verifier key text.
    pub fn init(dir: &Path, name: &str) -> String {
        let out = Command::new(socai_bin())
            .args(["--json", "witness", "init", "--name", name, "--dir"])
            .arg(dir)
            .output()
            .expect("socai witness init runs");
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
        let vkey = v["vkey"].as_str().expect("vkey").to_owned();
        assert_eq!(
            std::fs::read_to_string(dir.join("witness.vkey"))
                .unwrap()
                .trim(),
            vkey
        );
        vkey
    }

    /// Starts the witness following the log whose key is `log_vkey`, on `addr` (port 0: a port
    /// of [`socai_testkit::free_port`], which a restart can bind again).
    pub fn start(dir: &Path, log_vkey: &Path, addr: &str) -> WitnessProcess {
        WitnessProcess::start_with(dir, log_vkey, addr, &[])
    }

    /// [`WitnessProcess::start`] with more arguments for `socai witness serve` (e.g.
    /// `--follow URL`), kept for restarts.
    pub fn start_with(dir: &Path, log_vkey: &Path, addr: &str, extra: &[&str]) -> WitnessProcess {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.with_extension(format!("{n}.log"));
        // Not the kernel's pick: kill_and_restart binds the same port again, and a port the
        // kernel handed out could be given to another test's server in between.
        let addr = match addr.strip_suffix(":0") {
            Some(host) => format!(
                "{host}:{}",
                socai_testkit::free_port().expect("a port for the witness")
            ),
            None => addr.to_owned(),
        };
        let child = Command::new(socai_bin())
            .args(["witness", "serve", "--listen", &addr, "--dir"])
            .arg(dir)
            .arg("--log")
            .arg(log_vkey)
            .args(extra)
            .env("SOCAI_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("socai witness serve starts");
        let mut w = WitnessProcess {
            dir: dir.to_owned(),
            log_vkey: log_vkey.to_owned(),
            child: Some(child),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            log,
            addr: String::new(),
        };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&w.log).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("witness listening on http://").nth(1))
                .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
            {
                w.addr = addr.to_owned();
                return w;
            }
            let exited = w.child.as_mut().unwrap().try_wait().unwrap().is_some();
            assert!(
                !exited && started.elapsed() < PATIENCE,
                "the witness did not start; log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// kill -9, then the same witness again on the same directory and address.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        *self = WitnessProcess::start_with(
            &self.dir.clone(),
            &self.log_vkey.clone(),
            &self.addr.clone(),
            &extra,
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What it cosigned for the log (its `/v1/witness`): (size, root hex).
    pub async fn cosigned(&self) -> Option<(u64, String)> {
        let v: serde_json::Value = reqwest::get(format!("{}v1/witness", self.url()))
            .await
            .expect("witness answers")
            .json()
            .await
            .expect("json");
        let log = &v["logs"][0];
        Some((log["size"].as_u64()?, log["root"].as_str()?.to_owned()))
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
