//! Support for the end-to-end tests: the real `socai` binary, real data dirs, real processes.

pub mod nats;
pub mod openapi;
pub mod rfc6962;
pub mod witness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the `socai` binary, built once per test process with the same profile as the tests.
pub fn socai_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "socai",
            "--bin",
            "socai",
            "--message-format=json-render-diagnostics",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let out = cmd.output().expect("cargo build -p socai runs");
        assert!(
            out.status.success(),
            "building socai failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "socai")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the socai executable")
    })
}

/// A data dir in a temp dir, and the socai command line bound to it.
pub struct Ledger {
    pub tmp: tempfile::TempDir,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

/// A test that fails says what its processes said: the last lines of every `*.log` the
/// ledger's temp dir holds (the spawned `socai` processes' stderr) go to the test's output
/// before the dir is deleted, since CI keeps nothing else.
impl Drop for Ledger {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.tmp.path())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- {} (last {} of {} lines) ---\n{}",
                log.display(),
                tail.len(),
                lines.len(),
                tail.join("\n")
            );
        }
    }
}

impl Ledger {
    /// A fresh, initialised data dir.
    pub fn new() -> Ledger {
        let l = Ledger {
            tmp: tempfile::tempdir().expect("temp dir"),
        };
        l.ok(&["init", "--origin", "test.socai/ledger"]);
        l
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(socai_bin());
        c.arg("--data-dir")
            .arg(self.dir())
            .args(args)
            .env_remove("SOCAI_DATA_DIR")
            // The tests size their freezes on the default heartbeat.
            .env_remove("SOCAI_NATS_PING_INTERVAL");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("socai runs")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "socai {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with --json and parses the last stdout line.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(out.lines().last().unwrap_or("null")).expect("json output")
    }

    /// Writes `n` simulated events (a small country: 3 provinces with 2 communes each, 5
    /// procedures per agency, so dossiers start early) to a file and returns its path.
    pub fn simulate(&self, name: &str, n: u64, seed: u64) -> PathBuf {
        let path = self.path(name);
        let (n, seed) = (n.to_string(), seed.to_string());
        let out = path.to_str().expect("utf-8 path");
        self.ok(&[
            "simulate",
            "--events",
            &n,
            "--seed",
            &seed,
            "--provinces",
            "3",
            "--communes-per-province",
            "2",
            "--procedures-per-agency",
            "5",
            "--out",
            out,
        ]);
        path
    }

    /// The log's published key (`checkpoint.vkey`), as an auditor holds it.
    pub fn verifier(&self) -> socai_chain::CheckpointVerifier {
        let text = std::fs::read_to_string(self.dir().join("checkpoint.vkey")).expect("vkey");
        socai_chain::CheckpointVerifier::from_vkey(text.trim()).expect("a verifier key")
    }

    /// Ledger size from `verify --json --vkey <its checkpoint.vkey>` (which must pass).
    pub fn verified_size(&self) -> u64 {
        let vkey = self.dir().join("checkpoint.vkey");
        let v = self.json(&["verify", "--vkey", vkey.to_str().expect("utf-8 path")]);
        assert_eq!(v["ok"], true, "verify: {v}");
        v["report"]["entries"].as_u64().expect("entries")
    }

    /// Opens the sled store directly (no socai process may be running).
    pub fn sled(&self) -> (sled::Db, sled::Tree) {
        let db = sled::Config::new()
            .path(self.dir().join("ledger"))
            .open()
            .expect("open sled");
        let tree = db.open_tree("ledger").expect("ledger tree");
        (db, tree)
    }

    /// A copy of this data dir (for destructive tests).
    pub fn copy(&self) -> Ledger {
        let l = Ledger {
            tmp: tempfile::tempdir().expect("temp dir"),
        };
        copy_dir(&self.dir(), &l.dir());
        l
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Rewrites the stored entries of the bundle holding `seq` directly in sled (for tamper tests):
/// `edit` gets the bundle's entries and `seq`'s position among them.
pub fn edit_bundle(tree: &sled::Tree, seq: u64, edit: impl FnOnce(&mut Vec<Vec<u8>>, usize)) {
    use socai_store::storage::{SledStorage, join_bundle, open_bundle, split_bundle};
    let (key, pos) = SledStorage::bundle_key(seq);
    let value = tree.get(key).expect("read bundle").expect("bundle exists");
    let plain = open_bundle(&value).expect("bundle decompresses");
    let mut entries: Vec<Vec<u8>> = split_bundle(&plain)
        .expect("bundle decodes")
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    edit(&mut entries, pos);
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    tree.insert(key, join_bundle(&refs)).expect("write bundle");
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n` simulated events of a small country (3 provinces, 5 procedures per agency, so dossiers
/// start early): what `Ledger::simulate` writes with the same seed.
pub fn workload(n: usize, seed: u64) -> Vec<socai_model::Event> {
    socai_sim::Generator::new(socai_sim::SimConfig {
        seed,
        provinces: 3,
        communes_per_province: 2,
        procedures_per_agency: 5,
        ..Default::default()
    })
    .take(n)
    .collect()
}

/// The ids of a JSON Lines file, in order.
pub fn ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read events")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json line")["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect()
}
