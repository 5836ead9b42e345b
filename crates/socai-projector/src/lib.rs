//! Projection workers: COMMITTED → socai-metrics → the KV bucket METRICS (latest value of every
//! (metric, scope, window)) and `dvc.metrics.<metric>.<scope>` (every change).
//!
//! The cursor is the state file: the fold's snapshot and the Merkle frontier of the entries it
//! applied, written atomically (temp file, fsync, rename) only once every value changed up to
//! that tree size is stored in KV. Snapshots are incremental: between two full ones, each is a
//! delta (the dossiers and offerings that changed) appended to `NAME.state.log` and fsynced,
//! each record checksummed and tied to its base; a new full snapshot is written once the log
//! has grown to half the base (see [`FoldState::take_snapshot`]). A restart resumes COMMITTED at
//! the first entry the files do not hold: nothing is skipped, and entries after it are re-applied to the state as of the
//! snapshot, so nothing is counted twice. Each entry is checked against its predecessor's leaf
//! hash, so every value carries the root of the entries it was computed from.
//!
//! Several workers may split the scopes (`shard_index` of `shard_count`, by a hash of the scope):
//! each folds every entry and publishes only its scopes.
//!
//! COMMITTED holds one message per commit (a large one split, a backlog merged): entries
//! `Socai-Seq .. Socai-Seq + Socai-Count` as an entry bundle, or a single entry for a message
//! without `Socai-Count` (older ledgers), so an entry's stream seq is not derived from its seq
//! (see [`committed`]). At start the worker finds the message holding the entry after its state
//! file by a binary search over the stream's seqs ([`committed::locate`], O(log n) direct gets),
//! then reads on from there; entries of that message below its tree size are skipped.
//!
//! Workers run in a NATS account without JetStream (`deploy/nats/users.conf`): they may not
//! create consumers or streams (nats-server#8274), so they read COMMITTED by its stream info and
//! batched direct gets (`socai_client::js::StreamReader`; polled every `poll_interval` once
//! caught up), write METRICS through the ledger's imported KV subjects, and wait for `socai
//! serve` to create the bucket. Reading the bucket back (`read_published`) uses direct gets too,
//! so dashboards and auditors need no consumer either.

pub mod committed;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use socai_chain::merkle::CompactRange;
use socai_chain::{Entry, Hash, leaf_hash};
use socai_client::js::{
    BatchRequest, DirectGetError, StoredMessage, StreamReader, direct_get_batch,
};
use socai_metrics::{MetricValue, Projection, Scope};

use socai_wire::kv::{METRICS_BUCKET, METRICS_STREAM, kv_subject, worker_key};
use socai_wire::stream::COMMITTED;

/// Revisions kept per key: what `socai audit metrics --at SIZE` can look back on. The ledger
/// creates the bucket with this history (`socai_ingest::streams::METRICS_HISTORY`).
pub const METRICS_HISTORY: i64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("nats: {0}")]
    Nats(String),
    /// The worker cannot go on safely (COMMITTED does not continue its state); the message says
    /// what to do.
    #[error("{0}")]
    Diverged(String),
    /// The state file could not be written.
    #[error("{0}")]
    State(String),
}

/// The subject a value's changes are published on: `dvc.metrics.<metric>.<scope token>`.
pub fn metrics_subject(value: &MetricValue) -> String {
    socai_wire::subject::metrics_subject(value.metric.name(), &value.scope.token())
}

/// Whether shard `index` of `count` publishes `scope`.
pub fn owns(index: u32, count: u32, scope: &Scope) -> bool {
    if count <= 1 {
        return true;
    }
    let digest = socai_chain::hash::sha256(scope.token().as_bytes());
    let n = u64::from_be_bytes(digest.0[..8].try_into().expect("8 bytes"));
    n % u64::from(count) == u64::from(index)
}

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Names the state file and the `_workers.<name>` key.
    pub name: String,
    pub shard_index: u32,
    pub shard_count: u32,
    /// Where the state file lives.
    pub state_dir: PathBuf,
    /// Longest a change waits before it is published on `dvc.metrics.…`.
    pub flush_interval: Duration,
    /// Shortest time between two KV writes: the changes in between are coalesced, so a key
    /// that changes at every flush is stored once per interval.
    pub kv_interval: Duration,
    pub snapshot_interval: Duration,
    /// Once COMMITTED holds nothing new, ask again after this long.
    pub poll_interval: Duration,
    /// How often the worker says it is alive on `dvc.workers.<name>` (dashboards show
    /// a stale warning when it stops).
    pub heartbeat_interval: Duration,
}

impl ProjectorConfig {
    pub fn new(name: &str, state_dir: &Path) -> ProjectorConfig {
        ProjectorConfig {
            name: name.into(),
            shard_index: 0,
            shard_count: 1,
            state_dir: state_dir.into(),
            flush_interval: Duration::from_millis(100),
            kv_interval: Duration::from_millis(1000),
            snapshot_interval: Duration::from_secs(10),
            poll_interval: Duration::from_millis(20),
            heartbeat_interval: Duration::from_secs(HEARTBEAT_SECS),
        }
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join(format!("{}.state", self.name))
    }
}

/// Running totals, readable while the worker runs.
#[derive(Debug, Default)]
pub struct ProjectorCounters {
    /// Entries applied (the tree size of the fold).
    pub applied: AtomicU64,
    /// Tree size of the last flush stored in KV.
    pub published_size: AtomicU64,
    /// Values stored in KV.
    pub values: AtomicU64,
    pub flushes: AtomicU64,
    pub snapshots: AtomicU64,
}

/// A worker's last flush, stored under `_workers.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerMark {
    pub worker: String,
    pub shard_index: u32,
    pub shard_count: u32,
    pub tree_size: u64,
    pub root: String,
    /// `socai_metrics::definitions()` of the values it stored ("" before it was recorded).
    #[serde(default)]
    pub definitions: String,
}

#[derive(Serialize, Deserialize)]
struct StateHeader {
    format: u32,
    tree_size: u64,
    frontier: Vec<String>,
    last_leaf: String,
    /// `socai_metrics::definitions()` the fold was made with ("" before it was recorded).
    #[serde(default)]
    definitions: String,
    /// Names this base: the deltas of `NAME.state.log` carry it (0 before deltas existed).
    #[serde(default)]
    base_id: u64,
}

/// The header line of a delta in `NAME.state.log`.
#[derive(Serialize, Deserialize)]
struct DeltaHeader {
    base_id: u64,
    /// The tree size of the state this delta continues (the base's or the delta's before).
    #[serde(default)]
    from_size: Option<u64>,
    tree_size: u64,
    frontier: Vec<String>,
    last_leaf: String,
}

/// The fold and the Merkle frontier of the entries it applied.
pub struct FoldState {
    pub projection: Projection,
    tree: CompactRange,
    last_leaf: Hash,
    files: Files,
}

/// What is on disk: the base the deltas extend, and how far the log goes.
#[derive(Debug, Clone, Default)]
struct Files {
    base_id: u64,
    base_bytes: u64,
    log_bytes: u64,
    /// The tree size of the last snapshot written (where the next delta starts).
    size: u64,
    /// The next snapshot must be a full one (no base yet, a log that cannot be extended, or a
    /// snapshot taken and not written).
    rewrite: bool,
    /// Snapshots taken so far.
    taken: u64,
}

impl Default for FoldState {
    fn default() -> Self {
        FoldState {
            projection: Projection::new(),
            tree: CompactRange::new(),
            last_leaf: Hash::ZERO,
            files: Files {
                rewrite: true,
                ..Files::default()
            },
        }
    }
}

/// A snapshot taken, to be written once KV holds every value up to its tree size.
pub struct PendingSnapshot {
    tree_size: u64,
    kind: SnapshotKind,
    bytes: Vec<u8>,
    /// Which snapshot taken this is (only the latest taken may be written).
    number: u64,
}

enum SnapshotKind {
    Base(u64),
    /// A delta continuing the state of this tree size.
    Delta(u64),
}

impl PendingSnapshot {
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }
}

/// The delta log beside a state file.
pub fn log_path(state_file: &Path) -> PathBuf {
    let mut name = state_file.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

/// A log record: 8-byte little-endian length, SHA-256 of the payload, the payload.
const RECORD_HEAD: usize = 8 + 32;

/// The payloads of `log`'s records up to the first one cut short or damaged (a crash while
/// appending), and the bytes they take.
fn read_log(bytes: &[u8]) -> (Vec<&[u8]>, u64) {
    use sha2::{Digest, Sha256};
    let (mut records, mut at) = (Vec::new(), 0usize);
    while let Some(head) = bytes.get(at..at + RECORD_HEAD) {
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let Some(payload) = usize::try_from(len)
            .ok()
            .and_then(|len| (at + RECORD_HEAD).checked_add(len))
            .and_then(|end| bytes.get(at + RECORD_HEAD..end))
        else {
            break;
        };
        if Sha256::digest(payload).as_slice() != &head[8..] {
            break;
        }
        records.push(payload);
        at += RECORD_HEAD + payload.len();
    }
    (records, at as u64)
}

impl FoldState {
    pub fn tree_size(&self) -> u64 {
        self.projection.tree_size()
    }
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Applies entry `seq` after checking it continues the chain.
    pub fn apply(&mut self, seq: u64, entry: &[u8]) -> Result<(), String> {
        let header = Entry::decode_header(entry).map_err(|e| format!("entry {seq}: {e}"))?;
        if header.seq != seq {
            return Err(format!("entry {seq} says it is entry {}", header.seq));
        }
        if header.prev != self.last_leaf {
            return Err(format!(
                "entry {seq}'s prev {} is not the leaf hash of entry {} ({}): COMMITTED does not continue the entries this worker applied",
                header.prev.to_hex(),
                seq.wrapping_sub(1),
                self.last_leaf.to_hex()
            ));
        }
        self.projection
            .apply(seq, entry)
            .map_err(|e| e.to_string())?;
        let leaf = leaf_hash(entry);
        self.tree.push(leaf);
        self.last_leaf = leaf;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Option<FoldState>, String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let bad = |why: String| {
            format!(
                "{} is not a projector state file ({why}); move it away to rebuild the metrics from COMMITTED's first entry",
                path.display()
            )
        };
        let split = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header line".into()))?;
        let header: StateHeader =
            serde_json::from_slice(&bytes[..split]).map_err(|e| bad(e.to_string()))?;
        if header.format != 1 {
            return Err(bad(format!("format {}", header.format)));
        }
        if header.definitions != socai_metrics::definitions() {
            // Another units file or score table: the fold's scopes and scores may differ.
            tracing::warn!(
                path = %path.display(),
                "the state file was folded with other definitions (units file, score_766 table): folding COMMITTED again from its first entry"
            );
            return Ok(None);
        }
        let (mut tree, mut last_leaf) =
            tree_of(header.tree_size, &header.frontier, &header.last_leaf).map_err(&bad)?;
        // The deltas after this base: up to the first damaged record, and none of another
        // base (a crash between writing a new base and removing the old log).
        let log = log_path(path);
        let log_bytes = match std::fs::read(&log) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("reading {}: {e}", log.display())),
        };
        let (records, valid) = read_log(&log_bytes);
        // A record cut short is cut off by the next append ([`FoldState::write_snapshot`]).
        let mut rewrite = header.base_id == 0;
        let mut deltas = Vec::new();
        let mut size = header.tree_size;
        for record in records {
            let split = record
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(record.len());
            let delta: DeltaHeader = serde_json::from_slice(&record[..split]).map_err(|e| {
                format!(
                    "{} holds a delta that is not one ({e}); move it away to resume from {} alone",
                    log.display(),
                    path.display()
                )
            })?;
            // Of another base, or not continuing the state so far (a snapshot lost between
            // two written): nothing after it can be applied.
            if delta.base_id != header.base_id
                || header.base_id == 0
                || delta.from_size != Some(size)
            {
                rewrite = true;
                break;
            }
            (tree, last_leaf) =
                tree_of(delta.tree_size, &delta.frontier, &delta.last_leaf).map_err(&bad)?;
            size = delta.tree_size;
            deltas.push(record.get(split + 1..).unwrap_or_default());
        }
        let projection = Projection::restore_chain(&bytes[split + 1..], &deltas).map_err(|e| {
            bad(format!(
                "{e} (with {} deltas of {})",
                deltas.len(),
                log.display()
            ))
        })?;
        if projection.tree_size() != size {
            return Err(bad("sizes disagree".into()));
        }
        Ok(Some(FoldState {
            projection,
            tree,
            last_leaf,
            files: Files {
                base_id: header.base_id,
                base_bytes: bytes.len() as u64,
                log_bytes: valid,
                size,
                rewrite,
                taken: 0,
            },
        }))
    }

    /// The state file's bytes: a header line (tree size, Merkle frontier, last leaf hash, the
    /// base's id), then the fold's full snapshot.
    fn encode_base(&mut self, base_id: u64) -> Vec<u8> {
        let header = StateHeader {
            format: 1,
            tree_size: self.tree_size(),
            frontier: self.tree.frontier().iter().map(Hash::to_hex).collect(),
            last_leaf: self.last_leaf.to_hex(),
            definitions: socai_metrics::definitions(),
            base_id,
        };
        let mut bytes = serde_json::to_vec(&header).expect("a header serializes");
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.projection.take_snapshot());
        bytes
    }

    /// A snapshot of the state now: a delta after the last one written, or a full one when
    /// there is no base to extend, the log has grown to half the base, the projection stopped
    /// recording changes (too many), or the last snapshot taken was never written.
    pub fn take_snapshot(&mut self) -> PendingSnapshot {
        let tree_size = self.tree_size();
        // Until this one is written, the next cannot be a delta after it.
        let rewrite = std::mem::replace(&mut self.files.rewrite, true);
        self.files.taken += 1;
        let number = self.files.taken;
        let delta = if rewrite || self.files.log_bytes * 2 > self.files.base_bytes {
            None
        } else {
            self.projection.take_delta()
        };
        let Some(delta) = delta else {
            let base_id = new_base_id(tree_size);
            return PendingSnapshot {
                tree_size,
                kind: SnapshotKind::Base(base_id),
                bytes: self.encode_base(base_id),
                number,
            };
        };
        let header = DeltaHeader {
            base_id: self.files.base_id,
            from_size: Some(self.files.size),
            tree_size,
            frontier: self.tree.frontier().iter().map(Hash::to_hex).collect(),
            last_leaf: self.last_leaf.to_hex(),
        };
        let mut bytes = serde_json::to_vec(&header).expect("a header serializes");
        bytes.push(b'\n');
        bytes.extend_from_slice(&delta);
        PendingSnapshot {
            tree_size,
            kind: SnapshotKind::Delta(self.files.size),
            bytes,
            number,
        }
    }

    /// Writes a snapshot taken by [`FoldState::take_snapshot`] (the last one taken: snapshots
    /// are written in the order taken, none skipped). A base: temp file, fsync, rename, fsync
    /// of the directory, then the old log goes. A delta: appended to the log and fsynced.
    pub fn write_snapshot(&mut self, path: &Path, snapshot: PendingSnapshot) -> Result<(), String> {
        if snapshot.number != self.files.taken {
            return Err(format!(
                "snapshot {} of {} taken is not the latest: only the latest may be written",
                snapshot.number, self.files.taken
            ));
        }
        match snapshot.kind {
            SnapshotKind::Base(base_id) => {
                write_state(path, &snapshot.bytes)?;
                let log = log_path(path);
                match std::fs::remove_file(&log) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // Harmless (its deltas name the old base), but say so.
                    Err(e) => {
                        tracing::warn!(log = %log.display(), cause = %e, "the old delta log could not be removed")
                    }
                }
                self.files = Files {
                    base_id,
                    base_bytes: snapshot.bytes.len() as u64,
                    log_bytes: 0,
                    size: snapshot.tree_size,
                    rewrite: false,
                    taken: self.files.taken,
                };
            }
            SnapshotKind::Delta(from) => {
                if from != self.files.size {
                    return Err(format!(
                        "a delta from tree size {from} does not continue the files at {}",
                        self.files.size
                    ));
                }
                use sha2::{Digest, Sha256};
                let log = log_path(path);
                let append = || -> std::io::Result<()> {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)?;
                    // Anything after the last good record (a crash while appending) goes; a log
                    // shorter than what was written (moved, truncated) is not extended.
                    let len = f.metadata()?.len();
                    if len < self.files.log_bytes {
                        return Err(std::io::Error::other(format!(
                            "it holds {len} bytes, {} were written: was it moved or cut? Restart the worker: it resumes from what the files hold",
                            self.files.log_bytes
                        )));
                    }
                    f.set_len(self.files.log_bytes)?;
                    let mut record = Vec::with_capacity(RECORD_HEAD + snapshot.bytes.len());
                    record.extend_from_slice(&(snapshot.bytes.len() as u64).to_le_bytes());
                    record.extend_from_slice(&Sha256::digest(&snapshot.bytes));
                    record.extend_from_slice(&snapshot.bytes);
                    f.write_all(&record)?;
                    f.sync_data()?;
                    if self.files.log_bytes == 0 {
                        let dir = path.parent().unwrap_or(Path::new("."));
                        std::fs::File::open(dir)?.sync_all()?;
                    }
                    Ok(())
                };
                // On failure `rewrite` stays set: the next snapshot starts a new base rather
                // than extend a log in doubt.
                append().map_err(|e| format!("writing {}: {e}", log.display()))?;
                self.files.log_bytes += (RECORD_HEAD + snapshot.bytes.len()) as u64;
                self.files.size = snapshot.tree_size;
                self.files.rewrite = false;
            }
        }
        Ok(())
    }

    /// Writes a full snapshot now (and drops the delta log).
    pub fn save(&mut self, path: &Path) -> Result<(), String> {
        self.files.rewrite = true;
        let snapshot = self.take_snapshot();
        self.write_snapshot(path, snapshot)
    }

    /// Bytes of the last full snapshot and of the deltas after it.
    pub fn files_bytes(&self) -> (u64, u64) {
        (self.files.base_bytes, self.files.log_bytes)
    }
}

/// The Merkle range and last leaf a header records.
fn tree_of(
    size: u64,
    frontier: &[String],
    last_leaf: &str,
) -> Result<(CompactRange, Hash), String> {
    let frontier = frontier
        .iter()
        .map(|h| Hash::from_hex(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let tree = CompactRange::from_frontier(size, frontier).map_err(|e| e.to_string())?;
    Ok((tree, Hash::from_hex(last_leaf).map_err(|e| e.to_string())?))
}

/// An id for a new base: unique enough that a stale log never matches it.
fn new_base_id(tree_size: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ tree_size.rotate_left(32) ^ u64::from(std::process::id())).max(1)
}

fn write_state(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = path.with_extension("state.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Opens the METRICS bucket, which `socai serve` creates (workers are in an account that cannot
/// create streams). A bucket that does not exist yet is an error saying so.
pub async fn open_metrics_bucket(js: &jetstream::Context) -> Result<kv::Store, ProjectorError> {
    match js.get_key_value(METRICS_BUCKET).await {
        Ok(store) => Ok(store),
        Err(e) => {
            let missing = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<jetstream::context::GetStreamError>())
                .is_some_and(|g| {
                    matches!(
                        g.kind(),
                        jetstream::context::GetStreamErrorKind::JetStream(ref j)
                            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    )
                });
            Err(ProjectorError::Nats(if missing {
                format!(
                    "the KV bucket {METRICS_BUCKET} does not exist yet: `socai serve` creates it when it starts (is the ledger running against this nats-server?)"
                )
            } else {
                format!(
                    "cannot open the KV bucket {METRICS_BUCKET}: {e} (this NATS user must be allowed to read it, e.g. projector)"
                )
            }))
        }
    }
}

/// Deletes the values of provinces that no longer exist (merged into another: their events now
/// count there), left in the bucket by workers with older definitions.
async fn purge_ended_units(
    js: &jetstream::Context,
    store: &kv::Store,
) -> Result<(), ProjectorError> {
    for unit in socai_metrics::units().all() {
        if unit.level != socai_metrics::Level::Province || unit.is_current() {
            continue;
        }
        let scope = Scope {
            kind: socai_metrics::ScopeKind::Province,
            code: unit.code.clone(),
        };
        for (key, _) in read_published(js, false, &format!("*.{}.>", scope.token())).await? {
            store.delete(&key).await.map_err(|e| {
                ProjectorError::Nats(format!("deleting {key} from {METRICS_BUCKET}: {e}"))
            })?;
        }
    }
    Ok(())
}

/// This worker's mark, from the bucket's stream leader (STREAM.MSG.GET): on a cluster any
/// replica answers a kv get (a direct get), and a replica still catching up after a restart
/// would give an older mark, so a worker starting from an older state would publish values
/// older than those KV holds.
async fn read_mark(store: &kv::Store, name: &str) -> Result<Option<WorkerMark>, ProjectorError> {
    let key = worker_key(name);
    let msg = match store
        .stream
        .get_last_raw_message_by_subject(&kv_subject(&key))
        .await
    {
        Ok(msg) => msg,
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            return Ok(None);
        }
        Err(e) => {
            return Err(ProjectorError::Nats(format!(
                "reading {key} from {METRICS_BUCKET}: {e}"
            )));
        }
    };
    // A deleted or purged key keeps a marker message with an empty payload: no mark.
    Ok(serde_json::from_slice(&msg.payload).ok())
}

/// What the fold loop hands the KV writer: the latest payload of every changed key, and the
/// tree size and root of the latest flush merged in.
#[derive(Default)]
struct KvQueue {
    pending: BTreeMap<String, Bytes>,
    pending_size: u64,
    pending_root: String,
    /// Every change up to this tree size is stored in KV (and the mark says so).
    stored_size: u64,
}

struct KvShared {
    queue: std::sync::Mutex<KvQueue>,
    wake: tokio::sync::Notify,
    stored: tokio::sync::Notify,
}

/// How often a worker sends its heartbeat on `dvc.workers.<name>` by default (dashboards wait
/// for two before they call the figures stale).
pub const HEARTBEAT_SECS: u64 = 5;

/// Runs a projection worker until `shutdown` resolves; then publishes what is pending and
/// saves its state.
/// The fold loop applies COMMITTED's entries and, every `flush_interval` while they change
/// anything, publishes the changed values on `dvc.metrics.…` at once (live subscribers never
/// wait for storage) and hands them to the KV writer, which stores the latest value of each key
/// (awaiting every ack) and then the worker's mark. The state file is written only once KV
/// holds every change up to its tree size.
pub async fn run(
    js: jetstream::Context,
    live: async_nats::Client,
    config: ProjectorConfig,
    counters: Arc<ProjectorCounters>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectorError> {
    tokio::pin!(shutdown);
    let path = config.state_file();
    let mut state = FoldState::load(&path)
        .map_err(ProjectorError::Diverged)?
        .unwrap_or_default();
    // The bucket and this worker's mark, once they can be read: a bucket `socai serve` has not
    // made yet, or (on a cluster) one whose stream has no leader yet, answers "no responders".
    let (store, mark) = loop {
        match open_metrics_bucket(&js).await {
            Ok(store) => match read_mark(&store, &config.name).await {
                Ok(mark) => break (store, mark),
                Err(e) => tracing::warn!(
                    cause = %e,
                    "cannot read this worker's mark from the METRICS bucket yet (on a cluster, a bucket just made has no leader for a moment); retrying every 2 s. If it goes on, check that the projector's account imports the bucket's stream info and $JS.API.STREAM.MSG.GET.KV_METRICS as $JS.ledger.API.STREAM.MSG.GET.KV_METRICS (deploy/nats/users.conf; socai before this release did not need the latter)"
                ),
            },
            Err(e) => {
                tracing::warn!(cause = %e, "waiting for the METRICS bucket; retrying every 2 s")
            }
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    // A KV bucket that is behind the state file (recreated, restored, or a crash between the
    // state file and the mark) gets every value again.
    // So does a change of shard (keys this worker did not own before).
    // So does a change of definitions (units file, score table): every value again, and the
    // keys of provinces that no longer exist go.
    let redefined = mark
        .as_ref()
        .is_some_and(|m| m.definitions != socai_metrics::definitions());
    if redefined {
        tracing::warn!(
            worker = %config.name,
            "the METRICS bucket holds values made with other definitions (units file, score_766 table): publishing every value again"
        );
        purge_ended_units(&js, &store).await?;
    }
    let mut republish_all = redefined
        || state.tree_size() > 0
            && mark.as_ref().is_none_or(|m| {
                m.tree_size < state.tree_size()
                    || (m.shard_index, m.shard_count) != (config.shard_index, config.shard_count)
            });
    // A state file older than the mark (a crash between two state files): fold without
    // publishing up to the mark's size, so KV never goes back in time.
    let hold_until = mark.as_ref().map_or(0, |m| m.tree_size);
    tracing::info!(
        worker = %config.name,
        shard = %format!("{}/{}", config.shard_index, config.shard_count),
        tree_size = state.tree_size(),
        republish_all,
        "projector resuming after entry {}",
        state.tree_size() as i64 - 1
    );
    counters.applied.store(state.tree_size(), Relaxed);
    let shared = Arc::new(KvShared {
        queue: std::sync::Mutex::new({
            // Until the first flush hands it something, the writer has nothing to store.
            let stored_size = if republish_all { 0 } else { state.tree_size() };
            KvQueue {
                stored_size,
                pending_size: stored_size,
                ..KvQueue::default()
            }
        }),
        wake: tokio::sync::Notify::new(),
        stored: tokio::sync::Notify::new(),
    });
    let (writer_stop, writer_stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(kv_writer(
        js.clone(),
        store.clone(),
        config.clone(),
        shared.clone(),
        counters.clone(),
        writer_stopped,
    ));
    let mut dirty = republish_all;
    let mut saved_size = state.tree_size();
    let mut snapshot: Option<PendingSnapshot> = None;
    let mut last_snapshot = tokio::time::Instant::now();
    let mut flush_at = tokio::time::Instant::now();
    // When the last flush began: the next is due `flush_interval` after it, so a change that
    // came in while a flush ran waits out the rest of the interval, not the flush plus a whole
    // interval.
    let now = tokio::time::Instant::now();
    let mut last_flush = now.checked_sub(config.flush_interval).unwrap_or(now);
    // COMMITTED by direct gets, from the message holding entry `tree_size` (found at the first
    // read, once the stream can be read).
    let mut committed: Option<StreamReader> = None;
    // When to ask COMMITTED again after it had nothing new (or failed).
    let mut poll_at: Option<tokio::time::Instant> = None;
    let mut unreadable_since: Option<tokio::time::Instant> = None;
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat_subject = socai_wire::subject::worker_heartbeat_subject(&config.name);
    loop {
        {
            let wait = poll_at;
            let tree_size = state.tree_size();
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = heartbeat.tick() => {
                    let beat = serde_json::json!({
                        "worker": config.name,
                        "tree_size": state.tree_size(),
                        "root": state.root().to_hex(),
                    });
                    // Core NATS, fire and forget: a lost beat only delays "last updated".
                    if let Err(e) = live.publish(heartbeat_subject.clone(), beat.to_string().into()).await {
                        tracing::debug!(cause = %e, "heartbeat not sent");
                    }
                }
                _ = tokio::time::sleep_until(flush_at), if dirty && state.tree_size() >= hold_until => {
                    last_flush = tokio::time::Instant::now();
                    flush(&live, &config, &mut state, &shared, republish_all).await;
                    republish_all = false;
                    dirty = false;
                    counters.flushes.fetch_add(1, Relaxed);
                    if snapshot.is_none() && last_snapshot.elapsed() >= config.snapshot_interval
                        && saved_size != state.tree_size()
                    {
                        snapshot = Some(blocking(|| state.take_snapshot()));
                        last_snapshot = tokio::time::Instant::now();
                    }
                }
                _ = shared.stored.notified(), if snapshot.is_some() => {}
                next = async {
                    if let Some(at) = wait {
                        tokio::time::sleep_until(at).await;
                    }
                    next_committed(&js, &mut committed, tree_size).await
                } => {
                    poll_at = None;
                    match next {
                        Err(e @ ProjectorError::Diverged(_)) => return Err(e),
                        Ok(Some(msg)) => {
                            unreadable_since = None;
                            apply_committed(&mut state, &msg, &path)?;
                            counters.applied.store(state.tree_size(), Relaxed);
                            if !dirty {
                                dirty = true;
                                flush_at = (last_flush + config.flush_interval)
                                    .max(tokio::time::Instant::now());
                            }
                        }
                        Ok(None) => {
                            unreadable_since = None;
                            poll_at = Some(tokio::time::Instant::now() + config.poll_interval);
                        }
                        Err(e) => {
                            // Said at once, then every minute: a worker started before the
                            // ledger waits for it.
                            let now = tokio::time::Instant::now();
                            if unreadable_since.is_none_or(|t| now - t >= Duration::from_secs(60)) {
                                unreadable_since = Some(now);
                                tracing::warn!(cause = %e, "cannot read COMMITTED yet; retrying every 2 s after entry {} (is `socai serve` running?)", state.tree_size() as i64 - 1);
                            }
                            poll_at = Some(now + Duration::from_secs(2));
                        }
                    }
                }
            }
        }
        // The state file follows KV: written once KV holds every change up to its size.
        let stored = shared.queue.lock().expect("kv queue").stored_size;
        if let Some(pending) = snapshot.take_if(|s| s.tree_size() <= stored) {
            let size = pending.tree_size();
            blocking(|| state.write_snapshot(&path, pending)).map_err(ProjectorError::State)?;
            counters.snapshots.fetch_add(1, Relaxed);
            saved_size = size;
        }
    }
    // Shutdown: publish what is pending, let KV store it (bounded), then keep the state. Not
    // below the mark's size (a worker folding again after a definitions change, or from an old
    // state file): KV never goes back in time; the next start holds and republishes again.
    if dirty && state.tree_size() >= hold_until {
        flush(&live, &config, &mut state, &shared, republish_all).await;
    }
    // The writer stores what is pending once more, then stops (bounded).
    let _ = writer_stop.send(true);
    if tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .is_err()
    {
        tracing::warn!("KV did not answer within 10 s at shutdown");
    }
    let stored = shared.queue.lock().expect("kv queue").stored_size;
    // A snapshot taken and not yet written goes first (deltas are written in the order taken),
    // if KV holds what it covers.
    if let Some(pending) = snapshot.take_if(|s| s.tree_size() <= stored) {
        let size = pending.tree_size();
        blocking(|| state.write_snapshot(&path, pending)).map_err(ProjectorError::State)?;
        counters.snapshots.fetch_add(1, Relaxed);
        saved_size = size;
    }
    if stored < state.tree_size() {
        tracing::warn!(
            stored,
            tree_size = state.tree_size(),
            "stopping before KV stored every value: the state file is not advanced, so the next start publishes them"
        );
        return Ok(());
    }
    if saved_size != state.tree_size() || !path.exists() {
        if !path.exists() {
            // No base to extend (the file was moved away while the worker ran): a full one.
            state.files.rewrite = true;
        }
        let pending = blocking(|| state.take_snapshot());
        blocking(|| state.write_snapshot(&path, pending)).map_err(ProjectorError::State)?;
        counters.snapshots.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// Runs `f` off the async workers when the runtime allows it (serialising or writing a large
/// state takes a while).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// The next message of COMMITTED (`None`: nothing new yet). The first call finds where to
/// start ([`committed::locate`]); until it succeeds, every call tries again.
async fn next_committed(
    js: &jetstream::Context,
    reader: &mut Option<StreamReader>,
    tree_size: u64,
) -> Result<Option<StoredMessage>, ProjectorError> {
    let reader = match reader {
        Some(reader) => reader,
        None => {
            let located = committed::locate(js, tree_size).await?;
            tracing::info!(
                tree_size,
                stream_seq = located.stream_seq,
                committed_size = located.committed_size,
                reads = located.reads,
                "reading COMMITTED from stream seq {}",
                located.stream_seq
            );
            reader.insert(StreamReader::new(js.clone(), COMMITTED, located.stream_seq))
        }
    };
    reader
        .next()
        .await
        .map_err(|e| ProjectorError::Nats(e.to_string()))
}

/// Applies one message of COMMITTED (see [`committed::message_entries`]): its entries from the
/// fold's tree size on, in order; those below it were applied before. A message that starts
/// after the tree size means entries are missing.
pub fn apply_committed(
    state: &mut FoldState,
    msg: &StoredMessage,
    path: &Path,
) -> Result<(), ProjectorError> {
    let (span, entries) = committed::message_entries(msg)?;
    if span.first > state.tree_size() {
        return Err(ProjectorError::Diverged(format!(
            "COMMITTED jumps from entry {} to entry {} (stream seq {}): entries are missing from the stream (deleted, or purged while the ledger was publishing?); restore COMMITTED from the ledger (purge it, `nats stream purge COMMITTED` as the NATS admin, once the ledger's /readyz shows committed_stalled: the ledger then publishes every entry again), then restart the worker",
            state.tree_size() as i64 - 1,
            span.first,
            msg.seq
        )));
    }
    for (seq, entry) in (span.first..).zip(entries) {
        if seq < state.tree_size() {
            continue; // already applied
        }
        state.apply(seq, entry).map_err(|e| {
            ProjectorError::Diverged(format!(
                "{e} (COMMITTED stream seq {}, state file {}); if it was made from another ledger's entries, stop the worker and move the file away to rebuild from COMMITTED",
                msg.seq,
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// One message on `dvc.metrics.<metric>.<scope>`: the values of that metric and scope that
/// changed at this tree size (one per window).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveUpdate {
    pub tree_size: u64,
    pub root: String,
    pub values: Vec<MetricValue>,
}

/// Takes the changed values of this worker's scopes, scope by scope (national first), and
/// publishes each scope's on `dvc.metrics.<metric>.<scope>` as soon as they are computed (one
/// message per metric and scope, on the live connection; best effort while NATS is away); then
/// hands them all to the KV writer.
async fn flush(
    live: &async_nats::Client,
    config: &ProjectorConfig,
    state: &mut FoldState,
    shared: &KvShared,
    republish_all: bool,
) {
    let root = state.root().to_hex();
    let tree_size = state.tree_size();
    let t0 = std::time::Instant::now();
    let changes = state.projection.take_change_plan();
    let projection = &state.projection;
    let groups: Box<dyn Iterator<Item = Vec<MetricValue>> + Send + '_> = if republish_all {
        Box::new(std::iter::once(projection.values(&root)))
    } else {
        Box::new((0..changes.scopes()).map(|i| projection.changed_values(&changes, i, &root)))
    };
    let mut encoded = Vec::new();
    let mut published = 0;
    for mut values in groups {
        values.retain(|v| owns(config.shard_index, config.shard_count, &v.scope));
        values.sort_by(|a, b| (&a.scope, a.metric).cmp(&(&b.scope, b.metric)));
        published += values.len();
        // One message per (metric, scope), made of the values' own JSON (serialised once, for
        // the live message and for KV).
        let mut rest = values.as_slice();
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .take_while(|v| v.metric == first.metric && v.scope == first.scope)
                .count();
            let (group, tail) = rest.split_at(run);
            rest = tail;
            let mut message =
                format!("{{\"tree_size\":{tree_size},\"root\":\"{root}\",\"values\":[");
            for (i, value) in group.iter().enumerate() {
                let json = serde_json::to_vec(value).expect("values serialize");
                if i > 0 {
                    message.push(',');
                }
                message.push_str(std::str::from_utf8(&json).expect("JSON is UTF-8"));
                encoded.push((value.key(), Bytes::from(json)));
            }
            message.push_str("]}");
            if let Err(e) = live.publish(metrics_subject(first), message.into()).await {
                tracing::debug!(cause = %e, "live publication skipped");
            }
        }
    }
    {
        let mut queue = shared.queue.lock().expect("kv queue");
        queue.pending.extend(encoded);
        queue.pending_size = tree_size;
        queue.pending_root = root;
    }
    shared.wake.notify_one();
    tracing::debug!(
        tree_size,
        values = published,
        took_ms = t0.elapsed().as_millis() as u64,
        "flushed"
    );
}

/// Stores the queued values in KV (latest per key, every ack awaited), then the mark; on
/// failure keeps them (newer values win) and retries with backoff.
async fn kv_writer(
    js: jetstream::Context,
    store: kv::Store,
    config: ProjectorConfig,
    shared: Arc<KvShared>,
    counters: Arc<ProjectorCounters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut retry = Duration::from_millis(100);
    loop {
        let taken = {
            let mut queue = shared.queue.lock().expect("kv queue");
            (!queue.pending.is_empty() || queue.stored_size < queue.pending_size).then(|| {
                (
                    std::mem::take(&mut queue.pending),
                    queue.pending_size,
                    queue.pending_root.clone(),
                )
            })
        };
        let Some((batch, size, root)) = taken else {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        match store_batch(&js, &store, &config, &batch, size, &root).await {
            Ok(()) => {
                retry = Duration::from_millis(100);
                counters.values.fetch_add(batch.len() as u64, Relaxed);
                counters.published_size.store(size, Relaxed);
                shared.queue.lock().expect("kv queue").stored_size = size;
                shared.stored.notify_waiters();
                // Coalesce what changes meanwhile (a shutdown skips the wait).
                if !*stop.borrow() {
                    tokio::select! {
                        _ = tokio::time::sleep(config.kv_interval) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(cause = %e, pending = batch.len(), "storing metric values failed; retrying");
                let stopping = *stop.borrow();
                {
                    let mut queue = shared.queue.lock().expect("kv queue");
                    for (key, payload) in batch {
                        queue.pending.entry(key).or_insert(payload);
                    }
                }
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = stop.changed() => {}
                }
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn store_batch(
    js: &jetstream::Context,
    store: &kv::Store,
    config: &ProjectorConfig,
    batch: &BTreeMap<String, Bytes>,
    size: u64,
    root: &str,
) -> Result<(), ProjectorError> {
    let mut acks = futures::stream::FuturesUnordered::new();
    for (key, payload) in batch {
        let ack = js
            .publish(kv_subject(key), payload.clone())
            .await
            .map_err(|e| ProjectorError::Nats(format!("storing {key}: {e}")))?;
        acks.push(ack.into_future());
        while acks.len() >= 1024 {
            if let Some(r) = acks.next().await {
                r.map_err(|e| {
                    ProjectorError::Nats(format!("{METRICS_BUCKET} did not store a value: {e}"))
                })?;
            }
        }
    }
    while let Some(r) = acks.next().await {
        r.map_err(|e| {
            ProjectorError::Nats(format!("{METRICS_BUCKET} did not store a value: {e}"))
        })?;
    }
    let mark = WorkerMark {
        worker: config.name.clone(),
        shard_index: config.shard_index,
        shard_count: config.shard_count,
        tree_size: size,
        root: root.to_owned(),
        definitions: socai_metrics::definitions(),
    };
    store
        .put(
            worker_key(&config.name),
            Bytes::from(serde_json::to_vec(&mark).expect("marks serialize")),
        )
        .await
        .map_err(|e| ProjectorError::Nats(format!("storing the worker mark: {e}")))?;
    Ok(())
}

/// A message of the METRICS bucket as read back: a value or a worker's mark.
#[derive(Debug, Clone)]
pub enum Published {
    Value(MetricValue),
    Mark(WorkerMark),
}

/// Reads the METRICS bucket: the latest revision of each key (`all_revisions = false`), or
/// every revision it keeps, oldest first. `filter` narrows the keys (`on_time_rate.>`; `>` for
/// all). A bucket that does not exist yet reads as empty.
pub async fn read_published(
    js: &jetstream::Context,
    all_revisions: bool,
    filter: &str,
) -> Result<Vec<(String, Published)>, ProjectorError> {
    read(js, all_revisions, &[filter.to_owned()], None)
        .await
        .map_err(|e| match e {
            ReadError::Other(e) => e,
            ReadError::TooMany { .. } => unreachable!("no bound was set"),
        })
}

/// Why a bounded read returned nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{matching} keys match, more than asked for")]
    TooMany { matching: u64 },
    #[error(transparent)]
    Other(#[from] ProjectorError),
}

/// The latest revision of each key matching `filter`, unless more than `max` keys match.
pub async fn read_published_bounded(
    js: &jetstream::Context,
    filter: &str,
    max: usize,
) -> Result<Vec<(String, Published)>, ReadError> {
    read(js, false, &[filter.to_owned()], Some(max)).await
}

/// The latest revision of each key matching any of `filters` (one request for all of them),
/// unless more than `max` keys match.
pub async fn read_published_any(
    js: &jetstream::Context,
    filters: &[String],
    max: usize,
) -> Result<Vec<(String, Published)>, ReadError> {
    if filters.is_empty() {
        return Ok(Vec::new());
    }
    read(js, false, filters, Some(max)).await
}

async fn read(
    js: &jetstream::Context,
    all_revisions: bool,
    filters: &[String],
    max: Option<usize>,
) -> Result<Vec<(String, Published)>, ReadError> {
    let stream = match js.get_stream(METRICS_STREAM).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(ReadError::Other(ProjectorError::Nats(format!(
                "cannot open the {METRICS_BUCKET} bucket: {e}"
            ))));
        }
    };
    let state = &stream.cached_info().state;
    if state.messages == 0 {
        return Ok(Vec::new());
    }
    let last_seq = state.last_sequence;
    let subjects: Vec<String> = filters.iter().map(|f| kv_subject(f)).collect();
    let messages = if all_revisions {
        let mut all = Vec::new();
        for subjects in &subjects {
            all.extend(scan(js, subjects, last_seq).await?);
        }
        all.sort_by_key(|m| m.seq);
        all.dedup_by_key(|m| m.seq);
        all
    } else {
        latest(js, &subjects, max, last_seq).await?
    };
    let mut out = Vec::new();
    for msg in messages {
        let key = socai_wire::kv::key_of_subject(&msg.subject).map(str::to_owned);
        if let Some(key) = key
            && msg.header("KV-Operation").is_none()
            && !msg.payload.is_empty()
        {
            let parsed = if key.starts_with(socai_wire::kv::WORKER_KEY_PREFIX) {
                serde_json::from_slice(&msg.payload).map(Published::Mark)
            } else {
                serde_json::from_slice(&msg.payload).map(Published::Value)
            };
            match parsed {
                Ok(p) => out.push((key, p)),
                Err(e) => tracing::warn!(%key, cause = %e, "not a socai metric value; skipped"),
            }
        }
    }
    Ok(out)
}

fn read_failed(e: DirectGetError) -> ReadError {
    ReadError::Other(ProjectorError::Nats(format!(
        "reading the {METRICS_BUCKET} bucket: {e}"
    )))
}

/// Every message of the bucket's stream on `subjects`, up to `last_seq`, in stream order.
async fn scan(
    js: &jetstream::Context,
    subjects: &str,
    last_seq: u64,
) -> Result<Vec<StoredMessage>, ReadError> {
    let mut reader = StreamReader::new(js.clone(), METRICS_STREAM, 1).filter(subjects);
    let mut out = Vec::new();
    while reader.next_seq() <= last_seq {
        let batch = reader.next_batch().await.map_err(read_failed)?;
        if batch.is_empty() {
            break;
        }
        out.extend(batch.into_iter().filter(|m| m.seq <= last_seq));
        if reader.caught_up() {
            break;
        }
    }
    Ok(out)
}

/// The latest message of each subject matching `subjects`, in stream order, or `TooMany` when
/// more than `max` subjects match. The server answers up to 1024 subjects at once (multi_last);
/// beyond that the stream is scanned.
async fn latest(
    js: &jetstream::Context,
    subjects: &[String],
    max: Option<usize>,
    last_seq: u64,
) -> Result<Vec<StoredMessage>, ReadError> {
    let mut request = BatchRequest {
        multi_last: subjects.to_vec(),
        batch: 1024,
        max_bytes: 8 << 20,
        ..Default::default()
    };
    let mut out: Vec<StoredMessage> = Vec::new();
    loop {
        let batch = match direct_get_batch(js, METRICS_STREAM, &request).await {
            Ok(batch) => batch,
            Err(DirectGetError::TooManyResults { .. }) => {
                let mut last: BTreeMap<String, StoredMessage> = BTreeMap::new();
                for subjects in subjects {
                    for msg in scan(js, subjects, last_seq).await? {
                        if last.get(&msg.subject).is_none_or(|m| m.seq < msg.seq) {
                            last.insert(msg.subject.clone(), msg);
                        }
                    }
                }
                if let Some(max) = max
                    && last.len() > max
                {
                    return Err(ReadError::TooMany {
                        matching: last.len() as u64,
                    });
                }
                let mut out: Vec<StoredMessage> = last.into_values().collect();
                out.sort_by_key(|m| m.seq);
                return Ok(out);
            }
            Err(e) => return Err(read_failed(e)),
        };
        if out.is_empty()
            && let Some(first) = batch.messages.first()
        {
            // The first answer says how many follow it: the number of matching subjects.
            let matching = first
                .header("Nats-Num-Pending")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            if max.is_some_and(|max| matching > max as u64) {
                return Err(ReadError::TooMany { matching });
            }
        }
        let Some(last) = batch.messages.last() else {
            break;
        };
        // The next page: after the last message, as of the same stream seq.
        request.seq = last.seq + 1;
        if let Some(up_to) = batch.up_to_seq {
            request.up_to_seq = up_to;
        }
        let more = batch.num_pending > 0;
        out.extend(batch.messages);
        if !more {
            break;
        }
    }
    Ok(out)
}
