//! The witness: `POST /add-checkpoint` (C2SP tlog-witness), one state file per log it follows.
//!
//! A witness directory holds `witness.key` (its private key, mode 0600), `witness.vkey` (what to
//! publish) and `logs/<hex SHA-256 of the origin>.checkpoint`: the latest checkpoint cosigned for
//! that log, as the log sent it. Checking a request against that file and replacing the file
//! happen under one lock, and the file is written to a temporary name, fsynced, renamed over the
//! old one and the directory fsynced before the cosignature leaves: a crash at any point leaves
//! either the old checkpoint or the new one, never a cosignature the file does not account for.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use socai_chain::CheckpointVerifier;
use socai_chain::cosign::{AddCheckpoint, Cosigner, Decision, WitnessState, decide, note_origin};

/// Largest `add-checkpoint` body taken (a checkpoint with many signatures and 63 proof lines is
/// a few KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The key files of a witness directory.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("witness.key")
}
pub fn vkey_path(dir: &Path) -> PathBuf {
    dir.join("witness.vkey")
}

/// Creates a witness directory with a fresh key named `name`; returns the verifier key text.
/// Refuses a directory that already holds a key.
pub fn init(dir: &Path, name: &str) -> Result<String, WitnessError> {
    let key = key_path(dir);
    if key.exists() {
        return Err(WitnessError::Invalid(format!(
            "{} already holds a witness key: a witness keeps its key for life (its cosignatures are checked against it); use another directory for another witness",
            dir.display()
        )));
    }
    let (_, skey, vkey) =
        Cosigner::generate(name).map_err(|e| WitnessError::Invalid(e.to_string()))?;
    fs::create_dir_all(dir.join("logs")).map_err(io(dir))?;
    write_durably(&key, skey.as_bytes(), true)?;
    write_durably(&vkey_path(dir), format!("{vkey}\n").as_bytes(), false)?;
    Ok(vkey)
}

/// Writes `bytes` to `path` through a temporary file, fsynced, renamed, the directory fsynced.
fn write_durably(path: &Path, bytes: &[u8], private: bool) -> Result<(), WitnessError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// A running witness: its key, the logs it follows, and what it cosigned for each.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, CheckpointVerifier>,
    dir: PathBuf,
    /// origin → the latest checkpoint cosigned; the lock is held from the check to the fsync.
    state: Mutex<HashMap<String, WitnessState>>,
    /// `<dir>/lock`, locked for as long as this witness serves: a second process on the same
    /// directory would keep its own idea of what was cosigned and could cosign a fork.
    _lock: Option<fs::File>,
}

/// What the witness holds for one log, for `GET /v1/witness` and `socai witness status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogStatus {
    pub origin: String,
    pub vkey: String,
    /// Size and root (hex) of the latest checkpoint cosigned, if any.
    pub size: Option<u64>,
    pub root: Option<String>,
}

impl Witness {
    /// Opens the witness directory `dir` to cosign for the logs whose verifier keys are `logs`,
    /// holding its lock (another process serving the same directory is refused). Every state
    /// file of a followed log must hold a checkpoint signed by its key.
    pub fn open(dir: &Path, logs: Vec<CheckpointVerifier>) -> Result<Witness, WitnessError> {
        if !key_path(dir).exists() {
            // Witness::inspect says what to do.
            return Witness::inspect(dir, logs);
        }
        let path = dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(WitnessError::Invalid(format!(
                    "another `socai witness serve` holds {}: one process per witness directory (two would each keep their own idea of what was cosigned); stop the other one first",
                    dir.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        let mut witness = Witness::inspect(dir, logs)?;
        witness._lock = Some(file);
        Ok(witness)
    }

    /// Reads the witness directory without taking its lock (`socai witness status`, while it
    /// serves): for looking only.
    pub fn inspect(dir: &Path, logs: Vec<CheckpointVerifier>) -> Result<Witness, WitnessError> {
        let key_file = key_path(dir);
        let skey = fs::read_to_string(&key_file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                WitnessError::Invalid(format!(
                    "{} holds no witness key; create one with `socai witness init --dir {} --name <witness name>`",
                    dir.display(),
                    dir.display()
                ))
            } else {
                io(&key_file)(e)
            }
        })?;
        let cosigner = Cosigner::from_skey(&skey)
            .map_err(|e| WitnessError::Invalid(format!("{}: {e}", key_file.display())))?;
        if logs.is_empty() {
            return Err(WitnessError::Invalid(
                "no log to follow: give each log's verifier key with --log FILE".into(),
            ));
        }
        fs::create_dir_all(dir.join("logs")).map_err(io(dir))?;
        let mut by_origin = HashMap::new();
        let mut state = HashMap::new();
        for log in logs {
            let origin = log.name().to_owned();
            let file = state_path(dir, &origin);
            match fs::read_to_string(&file) {
                Ok(note) => {
                    let signed = log.verify(&note).map_err(|e| {
                        WitnessError::Invalid(format!(
                            "{} (the latest checkpoint cosigned for {origin}) does not verify with its key: {e}; it was damaged or the log's key was changed. Never delete it to get past this: it is what stops this witness cosigning a fork",
                            file.display()
                        ))
                    })?;
                    state.insert(
                        origin.clone(),
                        WitnessState {
                            size: signed.checkpoint.size,
                            root: signed.checkpoint.root,
                            note,
                        },
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&file)(e)),
            }
            if by_origin.insert(origin.clone(), log).is_some() {
                return Err(WitnessError::Invalid(format!(
                    "two keys given for log {origin}: a witness trusts one key per log"
                )));
            }
        }
        Ok(Witness {
            cosigner,
            logs: by_origin,
            dir: dir.to_owned(),
            state: Mutex::new(state),
            _lock: None,
        })
    }

    pub fn vkey(&self) -> String {
        self.cosigner.vkey()
    }

    /// The key this witness trusts for the log of `origin`, if it follows that log.
    pub fn log(&self, origin: &str) -> Option<&CheckpointVerifier> {
        self.logs.get(origin)
    }

    /// The latest checkpoint cosigned for the log of `origin`.
    pub fn held(&self, origin: &str) -> Option<WitnessState> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .cloned()
    }
    pub fn name(&self) -> &str {
        self.cosigner.name()
    }

    /// What the witness holds for each log it follows, by origin.
    pub fn status(&self) -> Vec<LogStatus> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = self
            .logs
            .iter()
            .map(|(origin, log)| {
                let held = state.get(origin);
                LogStatus {
                    origin: origin.clone(),
                    vkey: log.vkey().to_owned(),
                    size: held.map(|s| s.size),
                    root: held.map(|s| s.root.to_hex()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        out
    }

    /// Handles an `add-checkpoint` body at `now` (seconds since the epoch): the HTTP status,
    /// and the body (cosignature lines, the witness's size for a 409, or the reason).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> (u16, String) {
        let Ok(text) = std::str::from_utf8(body) else {
            return (400, "the request body is not UTF-8\n".into());
        };
        let request = match AddCheckpoint::parse(text) {
            Ok(r) => r,
            Err(e) => return (400, format!("{e}\n")),
        };
        let origin = note_origin(&request.note).unwrap_or_default().to_owned();
        let Some(log) = self.logs.get(&origin) else {
            return (
                404,
                format!("this witness does not follow log {origin:?}\n"),
            );
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let decision = decide(&request, log, state.get(&origin));
        match decision {
            Decision::Cosign(record) => {
                let changed = state.get(&origin).is_none_or(|s| s.size != record.size);
                if changed
                    && let Err(e) = write_durably(
                        &state_path(&self.dir, &origin),
                        record.note.as_bytes(),
                        false,
                    )
                {
                    tracing::error!(error = %e, origin, "could not record a checkpoint: not cosigned");
                    return (
                        500,
                        format!("the witness could not record the checkpoint: {e}\n"),
                    );
                }
                let body = socai_chain::cosign::note_body(&record.note)
                    .unwrap_or_default()
                    .to_owned();
                if changed {
                    tracing::info!(origin, size = record.size, "cosigned");
                }
                state.insert(origin, record);
                (200, self.cosigner.cosign(&body, now))
            }
            Decision::Conflict { size, reason } => {
                if reason.contains("fork") {
                    tracing::error!(origin, %reason, note = %request.note, "refused: the log forked");
                } else {
                    tracing::info!(origin, %reason, "told the log the size this witness cosigned");
                }
                (409, format!("{size}\n"))
            }
            Decision::Unprocessable(reason) => {
                tracing::error!(origin, %reason, note = %request.note, "refused: inconsistent with what this witness cosigned");
                (422, format!("{reason}\n"))
            }
            other => {
                let status = other.status();
                let reason = match other {
                    Decision::BadRequest(r) | Decision::Forbidden(r) | Decision::UnknownLog(r) => r,
                    _ => String::new(),
                };
                tracing::warn!(origin, status, %reason, "refused");
                (status, format!("{reason}\n"))
            }
        }
    }

    /// The witness's HTTP routes: `POST /add-checkpoint`, `GET /v1/witness`, `GET /healthz`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .route("/v1/witness", get(info))
            .route("/healthz", get(|| async { "ok\n" }))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }
}

fn state_path(dir: &Path, origin: &str) -> PathBuf {
    dir.join("logs").join(format!(
        "{}.checkpoint",
        hex::encode(Sha256::digest(origin))
    ))
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let (status, text) = match tokio::task::spawn_blocking(move || {
        witness.add_checkpoint(&body, now_secs())
    })
    .await
    {
        Ok(answer) => answer,
        Err(e) => (500, format!("the witness failed: {e}\n")),
    };
    let content_type = if status == 409 {
        "text/x.tlog.size"
    } else {
        "text/plain; charset=utf-8"
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, content_type)],
        text,
    )
        .into_response()
}

async fn info(State(witness): State<Arc<Witness>>) -> Response {
    axum::Json(serde_json::json!({
        "name": witness.name(),
        "vkey": witness.vkey(),
        "logs": witness.status(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use socai_chain::cosign::{CosignatureVerifier, note_body};
    use socai_chain::merkle::{MemoryHashes, prove_consistency, tree_root};
    use socai_chain::{Checkpoint, CheckpointSigner, leaf_hash};

    fn tree(tag: &str, n: u64) -> MemoryHashes {
        let mut hashes = MemoryHashes::new();
        for i in 0..n {
            hashes.push_leaf(leaf_hash(format!("{tag}{i}").as_bytes()));
        }
        hashes
    }

    fn body(log: &CheckpointSigner, hashes: &MemoryHashes, old: u64, size: u64) -> String {
        let checkpoint = Checkpoint {
            origin: log.name().to_owned(),
            size,
            root: tree_root(size, hashes).unwrap(),
        };
        AddCheckpoint {
            old_size: old,
            proof: if old == 0 || old == size {
                vec![]
            } else {
                prove_consistency(old, size, hashes).unwrap()
            },
            note: log.sign(&checkpoint).unwrap().note,
        }
        .body()
    }

    #[test]
    fn what_was_cosigned_survives_a_restart_and_forks_stay_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vkey = init(dir.path(), "w.example").unwrap();
        assert!(
            init(dir.path(), "w.example").is_err(),
            "a key is never replaced"
        );
        let (log, skey, log_vkey) = CheckpointSigner::generate("log.example").unwrap();
        let trusted = || vec![CheckpointVerifier::from_vkey(&log_vkey).unwrap()];
        let honest = tree("a", 50);
        let witness = Witness::open(dir.path(), trusted()).unwrap();
        let (status, lines) = witness.add_checkpoint(body(&log, &honest, 0, 20).as_bytes(), 100);
        assert_eq!(status, 200, "{lines}");
        let note = AddCheckpoint::parse(&body(&log, &honest, 0, 20))
            .unwrap()
            .note;
        let verifier = CosignatureVerifier::from_vkey(&vkey).unwrap();
        assert_eq!(
            verifier
                .verify_line(note_body(&note).unwrap(), &lines)
                .unwrap(),
            Some(100)
        );
        drop(witness);
        // After a restart the witness still knows size 20: a fork of the same key is refused at
        // the same size and beyond, and so is a rollback.
        let witness = Witness::open(dir.path(), trusted()).unwrap();
        assert_eq!(witness.status()[0].size, Some(20));
        let forked = tree("b", 50);
        let fork_log = CheckpointSigner::from_skey(&skey).unwrap();
        assert_eq!(
            witness.add_checkpoint(body(&fork_log, &forked, 20, 20).as_bytes(), 101),
            (409, "20\n".into())
        );
        assert_eq!(
            witness
                .add_checkpoint(body(&fork_log, &forked, 20, 30).as_bytes(), 101)
                .0,
            422
        );
        assert_eq!(
            witness.add_checkpoint(body(&log, &honest, 0, 10).as_bytes(), 101),
            (409, "20\n".into())
        );
        // The honest log goes on.
        assert_eq!(
            witness
                .add_checkpoint(body(&log, &honest, 20, 35).as_bytes(), 102)
                .0,
            200
        );
        drop(witness);
        let witness = Witness::open(dir.path(), trusted()).unwrap();
        assert_eq!(witness.status()[0].size, Some(35));
        // One process per directory: a second serving witness is refused while this one holds
        // the lock; looking (`status`) is allowed.
        let err = Witness::open(dir.path(), trusted())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("one process per witness directory"), "{err}");
        assert_eq!(
            Witness::inspect(dir.path(), trusted()).unwrap().status()[0].size,
            Some(35)
        );
        drop(witness);
        // A damaged state file stops the witness, saying not to delete it.
        let file = state_path(dir.path(), "log.example");
        fs::write(&file, "log.example\n35\nAAAA\n\n— log.example AAAA\n").unwrap();
        let err = Witness::open(dir.path(), trusted())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("Never delete it"), "{err}");
    }

    #[test]
    fn unknown_logs_and_bad_bodies_get_the_protocols_statuses() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "w.example").unwrap();
        let (log, _, log_vkey) = CheckpointSigner::generate("log.example").unwrap();
        let (other, _, _) = CheckpointSigner::generate("other.example").unwrap();
        let witness = Witness::open(
            dir.path(),
            vec![CheckpointVerifier::from_vkey(&log_vkey).unwrap()],
        )
        .unwrap();
        let hashes = tree("a", 5);
        assert_eq!(
            witness
                .add_checkpoint(body(&other, &hashes, 0, 5).as_bytes(), 1)
                .0,
            404
        );
        assert_eq!(witness.add_checkpoint(b"hello", 1).0, 400);
        assert_eq!(witness.add_checkpoint(&[0xff, 0xfe], 1).0, 400);
        assert_eq!(
            witness
                .add_checkpoint(body(&log, &hashes, 0, 5).as_bytes(), 1)
                .0,
            200
        );
        let missing = tempfile::tempdir().unwrap();
        let err = Witness::open(missing.path(), vec![])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("socai witness init"), "{err}");
    }
}
