//! Projection workers: COMMITTED → socai-metrics → the KV bucket METRICS (latest value of every
//! (metric, scope, window)) and `dvc.metrics.<metric>.<scope>` (every change).
//!
//! The cursor is the state file: the fold's snapshot and the Merkle frontier of the entries it
//! applied, written atomically (temp file, fsync, rename) only once every value changed up to
//! that tree size is stored in KV. A restart resumes COMMITTED right after it: nothing is skipped,
//! and entries after it are re-applied to the state as of the snapshot, so nothing is counted
//! twice. Each entry is checked against its predecessor's leaf hash, so every value carries the
//! root of the entries it was computed from.
//!
//! Several workers may split the scopes (`shard_index` of `shard_count`, by a hash of the scope):
//! each folds every entry and publishes only its scopes.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream::StorageType};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use socai_chain::merkle::CompactRange;
use socai_chain::{Entry, Hash, leaf_hash};
use socai_metrics::{MetricValue, Projection, Scope};

use crate::IngestError;
use crate::check::H_SEQ;
use crate::streams::COMMITTED;

pub const METRICS_BUCKET: &str = "METRICS";
pub const METRICS_STREAM: &str = "KV_METRICS";
pub const METRICS_SUBJECT_PREFIX: &str = "dvc.metrics";
/// KV keys `_workers.<name>`: each worker's last flush (tree size and root).
pub const WORKER_KEY_PREFIX: &str = "_workers";
/// Revisions kept per key: what `socai audit metrics --at SIZE` can look back on.
pub const METRICS_HISTORY: i64 = 64;

/// The subject a value's changes are published on: `dvc.metrics.<metric>.<scope token>`.
pub fn metrics_subject(value: &MetricValue) -> String {
    format!(
        "{METRICS_SUBJECT_PREFIX}.{}.{}",
        value.metric.name(),
        value.scope.token()
    )
}

/// The KV subject of a key.
pub fn kv_subject(key: &str) -> String {
    format!("$KV.{METRICS_BUCKET}.{key}")
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
    /// Longest a change waits before it is published.
    pub flush_interval: Duration,
    pub snapshot_interval: Duration,
    pub replicas: usize,
}

impl ProjectorConfig {
    pub fn new(name: &str, state_dir: &Path) -> ProjectorConfig {
        ProjectorConfig {
            name: name.into(),
            shard_index: 0,
            shard_count: 1,
            state_dir: state_dir.into(),
            flush_interval: Duration::from_millis(50),
            snapshot_interval: Duration::from_secs(10),
            replicas: 1,
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
}

#[derive(Serialize, Deserialize)]
struct StateHeader {
    format: u32,
    tree_size: u64,
    frontier: Vec<String>,
    last_leaf: String,
}

/// The fold and the Merkle frontier of the entries it applied.
pub struct FoldState {
    pub projection: Projection,
    tree: CompactRange,
    last_leaf: Hash,
}

impl Default for FoldState {
    fn default() -> Self {
        FoldState {
            projection: Projection::new(),
            tree: CompactRange::new(),
            last_leaf: Hash::ZERO,
        }
    }
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
        let frontier = header
            .frontier
            .iter()
            .map(|h| Hash::from_hex(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let tree = CompactRange::from_frontier(header.tree_size, frontier)
            .map_err(|e| bad(e.to_string()))?;
        let projection =
            Projection::restore(&bytes[split + 1..]).map_err(|e| bad(e.to_string()))?;
        if projection.tree_size() != header.tree_size {
            return Err(bad("sizes disagree".into()));
        }
        Ok(Some(FoldState {
            projection,
            tree,
            last_leaf: Hash::from_hex(&header.last_leaf).map_err(|e| bad(e.to_string()))?,
        }))
    }

    /// Writes the state atomically: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let header = StateHeader {
            format: 1,
            tree_size: self.tree_size(),
            frontier: self.tree.frontier().iter().map(Hash::to_hex).collect(),
            last_leaf: self.last_leaf.to_hex(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let tmp = path.with_extension("state.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer(&mut f, &header)?;
            f.write_all(b"\n")?;
            f.write_all(&self.projection.snapshot())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// Creates the METRICS bucket if missing.
pub async fn ensure_metrics_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<kv::Store, IngestError> {
    if let Ok(store) = js.get_key_value(METRICS_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: METRICS_BUCKET.into(),
        description:
            "socai: latest value of every (metric, scope, window); keys <metric>.<scope>.<window>"
                .into(),
        history: METRICS_HISTORY,
        storage: StorageType::File,
        num_replicas: replicas,
        max_value_size: 64 * 1024,
        ..Default::default()
    })
    .await
    .map_err(|e| IngestError::Nats(format!("cannot create the KV bucket {METRICS_BUCKET}: {e}")))
}

async fn read_mark(store: &kv::Store, name: &str) -> Result<Option<WorkerMark>, IngestError> {
    let key = format!("{WORKER_KEY_PREFIX}.{name}");
    let bytes = store
        .get(&key)
        .await
        .map_err(|e| IngestError::Nats(format!("reading {key} from {METRICS_BUCKET}: {e}")))?;
    Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Runs a projection worker until `shutdown` resolves; then publishes what is pending and
/// saves its state.
pub async fn run(
    js: jetstream::Context,
    config: ProjectorConfig,
    counters: Arc<ProjectorCounters>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    tokio::pin!(shutdown);
    let path = config.state_file();
    let mut state = FoldState::load(&path)
        .map_err(IngestError::Diverged)?
        .unwrap_or_default();
    let store = loop {
        match ensure_metrics_bucket(&js, config.replicas).await {
            Ok(store) => break store,
            Err(e) => {
                tracing::warn!(cause = %e, "waiting for JetStream to open the METRICS bucket");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let mark = read_mark(&store, &config.name).await?;
    // A KV bucket that is behind the state file (recreated, restored, or a crash between the
    // state file and the mark) gets every value again.
    let mut republish_all = state.tree_size() > 0
        && mark
            .as_ref()
            .is_none_or(|m| m.tree_size < state.tree_size());
    tracing::info!(
        worker = %config.name,
        shard = %format!("{}/{}", config.shard_index, config.shard_count),
        tree_size = state.tree_size(),
        republish_all,
        "projector resuming after entry {}",
        state.tree_size() as i64 - 1
    );
    counters.applied.store(state.tree_size(), Relaxed);
    let mut unpublished: BTreeMap<String, MetricValue> = BTreeMap::new();
    let mut dirty = republish_all;
    let mut saved_size = state.tree_size();
    let mut last_save = tokio::time::Instant::now();
    let mut flush_at = tokio::time::Instant::now();
    let mut retry_delay = Duration::from_millis(100);
    'consume: loop {
        let mut messages = match committed_messages(&js, state.tree_size()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(cause = %e, "cannot read COMMITTED yet; retrying (is `socai serve` running?)");
                tokio::select! {
                    _ = &mut shutdown => break 'consume,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue 'consume,
                }
            }
        };
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break 'consume,
                _ = tokio::time::sleep_until(flush_at), if dirty || !unpublished.is_empty() => {
                    match flush(&js, &store, &config, &mut state, &mut unpublished, republish_all).await {
                        Ok(stored) => {
                            counters.values.fetch_add(stored, Relaxed);
                            republish_all = false;
                            dirty = false;
                            retry_delay = Duration::from_millis(100);
                            counters.flushes.fetch_add(1, Relaxed);
                            counters.published_size.store(state.tree_size(), Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(cause = %e, pending = unpublished.len(), "publishing metric values failed; retrying");
                            flush_at = tokio::time::Instant::now() + retry_delay;
                            retry_delay = (retry_delay * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    }
                    if last_save.elapsed() >= config.snapshot_interval && saved_size != state.tree_size() {
                        save(&state, &path, &counters).await?;
                        saved_size = state.tree_size();
                        last_save = tokio::time::Instant::now();
                    }
                }
                next = messages.next() => {
                    let msg = match next {
                        Some(Ok(msg)) => msg,
                        Some(Err(e)) => {
                            tracing::warn!(cause = %e, "reading COMMITTED failed; resuming after entry {}", state.tree_size() as i64 - 1);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue 'consume;
                        }
                        None => continue 'consume,
                    };
                    let seq = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(H_SEQ))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .ok_or_else(|| IngestError::Diverged(format!(
                            "a message on COMMITTED has no {H_SEQ} header: only the ledger may publish there"
                        )))?;
                    if seq < state.tree_size() {
                        continue; // redelivered after a consumer reset
                    }
                    state.apply(seq, &msg.payload).map_err(|e| IngestError::Diverged(format!(
                        "{e}; the state file {} was made from another ledger's entries: stop the worker and move the file away to rebuild",
                        path.display()
                    )))?;
                    counters.applied.store(state.tree_size(), Relaxed);
                    if !dirty {
                        dirty = true;
                        flush_at = tokio::time::Instant::now() + config.flush_interval;
                    }
                }
            }
        }
    }
    // Shutdown: publish what is pending (bounded), then keep the state.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    while dirty || !unpublished.is_empty() {
        match flush(
            &js,
            &store,
            &config,
            &mut state,
            &mut unpublished,
            republish_all,
        )
        .await
        {
            Ok(stored) => {
                counters.values.fetch_add(stored, Relaxed);
                counters.published_size.store(state.tree_size(), Relaxed);
                break;
            }
            Err(e) if tokio::time::Instant::now() < give_up => {
                tracing::warn!(cause = %e, "publishing metric values at shutdown failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                tracing::warn!(cause = %e, "stopping with values unpublished: the state file is not advanced, so the next start publishes them");
                return Ok(());
            }
        }
    }
    if saved_size != state.tree_size() || !path.exists() {
        save(&state, &path, &counters).await?;
    }
    Ok(())
}

async fn save(
    state: &FoldState,
    path: &Path,
    counters: &ProjectorCounters,
) -> Result<(), IngestError> {
    // Serialising a large fold takes a while; the runtime has other work.
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    let result = if multi_thread {
        tokio::task::block_in_place(|| state.save(path))
    } else {
        state.save(path)
    };
    result.map_err(IngestError::Ledger)?;
    counters.snapshots.fetch_add(1, Relaxed);
    Ok(())
}

/// COMMITTED from the entry after `tree_size`, as an ordered consumer (ephemeral; it recreates
/// itself after gaps and reconnects).
async fn committed_messages(
    js: &jetstream::Context,
    tree_size: u64,
) -> Result<consumer::push::Ordered, IngestError> {
    let stream = js
        .get_stream(COMMITTED)
        .await
        .map_err(|e| IngestError::Nats(format!("cannot open stream {COMMITTED}: {e}")))?;
    // Entry seq n is COMMITTED's stream seq n + 1.
    let deliver_policy = match tree_size {
        0 => consumer::DeliverPolicy::All,
        n => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: n + 1,
        },
    };
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: js_inbox(js),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| IngestError::Nats(format!("cannot create a consumer on {COMMITTED}: {e}")))?;
    consumer
        .messages()
        .await
        .map_err(|e| IngestError::Nats(format!("cannot read {COMMITTED}: {e}")))
}

fn js_inbox(js: &jetstream::Context) -> String {
    js.client().new_inbox()
}

/// Publishes every changed value of this worker's scopes: first on `dvc.metrics.…` (live
/// subscribers), then into KV (awaiting every ack), then the worker's mark. Values that fail
/// stay in `unpublished` for the next try.
async fn flush(
    js: &jetstream::Context,
    store: &kv::Store,
    config: &ProjectorConfig,
    state: &mut FoldState,
    unpublished: &mut BTreeMap<String, MetricValue>,
    republish_all: bool,
) -> Result<u64, IngestError> {
    let root = state.root().to_hex();
    let mut changes = state.projection.take_changes(&root);
    if republish_all {
        changes = state.projection.values(&root);
    }
    for value in changes {
        if owns(config.shard_index, config.shard_count, &value.scope) {
            unpublished.insert(value.key(), value);
        }
    }
    let client = js.client();
    let mut encoded = Vec::with_capacity(unpublished.len());
    for (key, value) in unpublished.iter() {
        let payload = Bytes::from(serde_json::to_vec(value).expect("values serialize"));
        client
            .publish(metrics_subject(value), payload.clone())
            .await
            .map_err(|e| IngestError::Nats(format!("publishing {key}: {e}")))?;
        encoded.push((key, payload));
    }
    let mut acks = futures::stream::FuturesUnordered::new();
    for (key, payload) in encoded {
        let ack = js
            .publish(kv_subject(key), payload)
            .await
            .map_err(|e| IngestError::Nats(format!("storing {key}: {e}")))?;
        acks.push(ack.into_future());
        // Bounded in flight.
        while acks.len() >= 1024 {
            if let Some(r) = acks.next().await {
                r.map_err(|e| {
                    IngestError::Nats(format!("{METRICS_BUCKET} did not store a value: {e}"))
                })?;
            }
        }
    }
    while let Some(r) = acks.next().await {
        r.map_err(|e| IngestError::Nats(format!("{METRICS_BUCKET} did not store a value: {e}")))?;
    }
    let stored = unpublished.len() as u64;
    unpublished.clear();
    let mark = WorkerMark {
        worker: config.name.clone(),
        shard_index: config.shard_index,
        shard_count: config.shard_count,
        tree_size: state.tree_size(),
        root,
    };
    store
        .put(
            format!("{WORKER_KEY_PREFIX}.{}", config.name),
            Bytes::from(serde_json::to_vec(&mark).expect("marks serialize")),
        )
        .await
        .map_err(|e| IngestError::Nats(format!("storing the worker mark: {e}")))?;
    Ok(stored)
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
) -> Result<Vec<(String, Published)>, IngestError> {
    let mut stream = match js.get_stream(METRICS_STREAM).await {
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
            return Err(IngestError::Nats(format!(
                "cannot open the {METRICS_BUCKET} bucket: {e}"
            )));
        }
    };
    let info = stream
        .info()
        .await
        .map_err(|e| IngestError::Nats(format!("reading {METRICS_STREAM}'s info: {e}")))?;
    if info.state.messages == 0 {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: js_inbox(js),
            filter_subject: kv_subject(filter),
            deliver_policy: if all_revisions {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::LastPerSubject
            },
            ..Default::default()
        })
        .await
        .map_err(|e| IngestError::Nats(format!("cannot read {METRICS_BUCKET}: {e}")))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| IngestError::Nats(format!("cannot read {METRICS_BUCKET}: {e}")))?;
    let prefix = format!("$KV.{METRICS_BUCKET}.");
    let mut out = Vec::new();
    loop {
        // A filter that matches nothing delivers nothing: stop after a quiet second.
        let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
        let msg = match next {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(IngestError::Nats(format!("reading {METRICS_BUCKET}: {e}")));
            }
            Ok(Some(Ok(msg))) => msg,
        };
        let pending = msg.info().map(|i| i.pending).unwrap_or(0);
        let key = msg.subject.as_str().trim_start_matches(&prefix).to_owned();
        let operation = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .map(|v| v.as_str().to_owned());
        if operation.is_none() && !msg.payload.is_empty() {
            let parsed = if key.starts_with(WORKER_KEY_PREFIX) {
                serde_json::from_slice(&msg.payload).map(Published::Mark)
            } else {
                serde_json::from_slice(&msg.payload).map(Published::Value)
            };
            match parsed {
                Ok(p) => out.push((key, p)),
                Err(e) => tracing::warn!(%key, cause = %e, "not a socai metric value; skipped"),
            }
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}
