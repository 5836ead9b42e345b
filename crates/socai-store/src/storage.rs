//! The storage engine boundary. [`Storage`] is everything the ledger needs from a key-value engine;
//! the layout of keys is the engine's business. [`SledStorage`] is the sled 0.34 implementation.
//!
//! Invariants the implementation guarantees:
//! - [`Storage::commit`] is atomic (all of a batch or none of it, also across a crash) and durable
//!   (fsynced) before it returns. It is called from one thread only: the ledger's single writer.
//! - `flush` is called from exactly one place ([`SledStorage::commit`]); sled's background flusher
//!   is disabled, so no concurrent `flush_async` can deadlock (sled #1308, #1412).

use crate::idfilter::IdFilter;
use crate::keystore::{KeyReserve, KeyStore, KeyStoreError, RecordKey};
use crate::runs::{Prefixes, Runs};
use socai_chain::Hash;
use socai_chain::merkle::MerkleError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Hashes per stored chunk of the Merkle stored-hash array (8 KiB values).
pub const HASH_CHUNK: u64 = 256;

/// How long `open` waits for a lock released by a store this process just dropped.
pub const LOCK_WAIT_MS: u64 = 2000;

/// Entries per stored bundle (about 7 KiB of ~450-byte entries). Bundles turn one sled insert per
/// entry into one per 16; only the partial last bundle is rewritten by the next commit.
pub const ENTRY_BUNDLE: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "ledger store {path} is locked by another process; if it is `socai serve`, use its HTTP API instead (--api http://ADDR, e.g. http://127.0.0.1:8080), else stop the other socai process using this data dir and retry"
    )]
    Locked { path: PathBuf },
    #[error(
        "ledger store {path}: {source}; check the disk and permissions, then restore from a backup if the error persists"
    )]
    Engine { path: PathBuf, source: sled::Error },
    #[error("ledger store is corrupt: {0}; run `socai verify` and restore from a backup")]
    Corrupt(String),
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    #[error(
        "ledger store {path} was closed to be reopened (bounding sled's recovery) and could not be opened again: {reason}; check the disk (space, permissions), then restart socai"
    )]
    Reopen { path: PathBuf, reason: String },
}

impl StorageError {
    fn engine(path: &Path, source: sled::Error) -> StorageError {
        if let sled::Error::Io(io) = &source
            && io.to_string().contains("could not acquire lock")
        {
            return StorageError::Locked {
                path: path.to_path_buf(),
            };
        }
        StorageError::Engine {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The chain head: number of entries and the leaf hash of the last one (zeros when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub size: u64,
    pub leaf: Hash,
}

/// What the id index knows about a committed event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRecord {
    pub seq: u64,
    /// SHA-256 over the event's public canonical JSON and its personal commitment: "same content".
    pub digest: Hash,
}

/// An event id in the id index: ids are unique per agency, so the key names both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    pub agency: String,
    pub id: String,
}

impl EventKey {
    pub fn new(agency: impl Into<String>, id: impl Into<String>) -> EventKey {
        EventKey {
            agency: agency.into(),
            id: id.into(),
        }
    }
}

/// Personal data kept beside (never inside) an entry, with the salt of its commitment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PersonalRecord {
    /// 16-byte salt, hex.
    pub salt: String,
    pub personal: serde_json::Value,
}

/// A personal record as stored inside its seal: the JSON of a [`PersonalRecord`]
/// (`{"salt":…,"personal":…}`), wiped from memory when dropped.
pub type PlainRecord = zeroize::Zeroizing<Vec<u8>>;

impl PersonalRecord {
    /// The record's commitment, `SHA-256(salt ‖ JCS(personal))` (`None` if the salt is not 16
    /// bytes of hex), from its stored JSON. When `personal` is stored in its canonical form (the
    /// usual case) its bytes are hashed as they are, without building the value and encoding it
    /// again; otherwise the record is parsed and canonicalized, with the same result.
    pub fn commitment_of_plain(plain: &[u8]) -> std::result::Result<Option<Hash>, String> {
        const HEAD: &[u8] = b"{\"salt\":\"";
        const MID: &[u8] = b"\",\"personal\":";
        let fast = plain
            .strip_prefix(HEAD)
            .filter(|rest| rest.len() > 32 + MID.len())
            .and_then(|rest| {
                let (salt, rest) = rest.split_at(32);
                let mut bytes = [0u8; 16];
                hex::decode_to_slice(salt, &mut bytes).ok()?;
                let personal = rest.strip_prefix(MID)?.strip_suffix(b"}")?;
                socai_chain::entry::is_canonical_json(personal).then_some((bytes, personal))
            });
        if let Some((salt, personal)) = fast {
            use sha2::Digest;
            let h = sha2::Sha256::new()
                .chain_update(salt)
                .chain_update(personal);
            return Ok(Some(Hash(h.finalize().into())));
        }
        let rec: PersonalRecord = serde_json::from_slice(plain).map_err(|e| e.to_string())?;
        let salt = hex::decode(&rec.salt)
            .ok()
            .and_then(|s| <[u8; 16]>::try_from(s).ok());
        Ok(salt.map(|salt| socai_chain::entry::personal_commitment(&salt, &rec.personal)))
    }
}

/// One atomic, durable write.
#[derive(Debug, Default)]
pub struct CommitBatch {
    /// Canonical entries for seqs `head.size ..`, in order.
    pub entries: Vec<Vec<u8>>,
    pub ids: Vec<(EventKey, IdRecord)>,
    pub dossiers: Vec<(String, u64)>,
    /// New stored Merkle hashes, starting at stored-hash index `hashes_from`.
    pub hashes_from: u64,
    pub hashes: Vec<Hash>,
    pub personal: Vec<(u64, PersonalRecord)>,
    /// Personal records to erase (redaction): the record goes from the store and its key is
    /// destroyed in place once the commit is durable.
    pub erase_personal: Vec<u64>,
    /// Copies of events carrying personal data kept outside the store (EVENTS stream seqs), so
    /// that a redaction can erase them.
    pub copies: Vec<(EventKey, u64)>,
    /// Events whose outside copies must be erased (set with a redaction, durable until done).
    pub erasures_pending: Vec<EventKey>,
    /// Events whose outside copies were erased.
    pub erasures_done: Vec<EventKey>,
    /// Sync bodies decided by this commit: (EVENTS seq, JetStream time in ns) → what the ledger
    /// refused of it (opaque to the store), so a body read again is never decided again.
    pub sync_marks: Vec<(u64, i64, Vec<u8>)>,
    /// Signed checkpoint notes to store, by tree size.
    pub checkpoints: Vec<(u64, String)>,
    /// Where the committed events came from (e.g. the EVENTS stream seq of the batch's last
    /// message), stored in the same atomic batch; `None` leaves the stored value.
    pub source_cursor: Option<u64>,
    /// The source's timestamp of the message at `source_cursor` (ns since the epoch), stored
    /// with it: lets the consumer tell the same message from another one that took its place.
    pub source_cursor_time: Option<i64>,
    /// The last source seq the ledger has dealt with (committed, or answered as a duplicate
    /// or a rejection); `None` leaves the stored value. The cursor may lag it (held before a
    /// rejection whose copy is not confirmed yet): what lies between was read, not lost.
    pub source_read_through: Option<u64>,
    pub new_head: Head,
}

/// Everything the ledger needs from a storage engine.
pub trait Storage: Send + Sync {
    fn head(&self) -> Result<Head>;
    /// Atomically and durably applies `batch` (see the module invariants). [`SledStorage`] may
    /// then reopen its engine ([`SledStorage::refresh_if_due`]) before it returns.
    fn commit(&self, batch: CommitBatch) -> Result<()>;
    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>>;
    /// Entries `from..to` in storage order, each with the seq its position implies.
    fn entries(&self, from: u64, to: u64) -> Box<dyn Iterator<Item = Result<(u64, Vec<u8>)>> + '_>;
    /// Entries `from..to` appended to `buf`, the place of each in `buf` pushed to `spans`, up to
    /// the first that is missing (a gap in the store: what follows it is not read) or cannot be
    /// read (the error). For reading many entries without an allocation per entry: `buf` and
    /// `spans` are reused by the caller (what they held before is kept).
    fn read_entries(
        &self,
        from: u64,
        to: u64,
        buf: &mut Vec<u8>,
        spans: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<()> {
        let base = spans.len();
        for item in self.entries(from, to) {
            let (seq, entry) = item?;
            if seq != from + (spans.len() - base) as u64 {
                break;
            }
            spans.push(buf.len()..buf.len() + entry.len());
            buf.extend_from_slice(&entry);
        }
        Ok(())
    }
    /// The id index record of `id` published by `agency`.
    fn id(&self, agency: &str, id: &str) -> Result<Option<IdRecord>>;
    /// [`Storage::id`] for the writer's hot path: may answer `None` without reading the index
    /// when `id` was certainly never committed (see [`crate::idfilter`]).
    fn id_if_known(&self, agency: &str, id: &str) -> Result<Option<IdRecord>> {
        self.id(agency, id)
    }
    /// Every agency's record of `id` (ids are unique per agency only), by agency.
    fn ids_named(&self, id: &str) -> Result<Vec<(String, IdRecord)>>;
    /// Every pair of the id index, ([`event_fingerprint`], seq), after checking the index's own
    /// structure.
    fn id_index(&self, each: &mut dyn FnMut(u64, u64)) -> Result<()>;
    /// The id index's pairs in (fingerprint, seq) order; `each` returns `false` to stop.
    fn id_index_in_order(&self, each: &mut dyn FnMut(u64, u64) -> Result<bool>) -> Result<()>;
    /// Every pair of the dossier index, ([`dossier_fingerprint`], seq), after checking the
    /// index's own structure.
    fn dossier_index(&self, each: &mut dyn FnMut(u64, u64)) -> Result<()>;
    /// EVENTS stream seqs of the copies of an event that carried personal data.
    fn copies(&self, event: &EventKey) -> Result<Vec<u64>>;
    /// What was recorded when the sync body at this EVENTS seq and time was decided (see
    /// [`CommitBatch::sync_marks`]); `None` if it never was.
    fn sync_mark(&self, stream_seq: u64, time_ns: i64) -> Result<Option<Vec<u8>>>;
    /// Events whose outside copies a redaction still has to erase.
    fn erasures_pending(&self) -> Result<Vec<EventKey>>;
    /// Seqs of a dossier's entries, ascending.
    fn dossier(&self, dossier: &str) -> Result<Vec<u64>>;
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>>;
    fn personal(&self, seq: u64) -> Result<Option<PersonalRecord>>;
    /// [`Storage::personal`] of each of `seqs` (ascending), in order, one answer per seq, each
    /// record as its stored JSON ([`PlainRecord`]): what verify needs to check commitments.
    fn personal_plain_each(&self, seqs: &[u64]) -> Vec<Result<Option<PlainRecord>>> {
        seqs.iter()
            .map(|&seq| {
                self.personal(seq)
                    .map(|rec| rec.map(|rec| record_json(&rec).expect("a Value always serializes")))
            })
            .collect()
    }
    /// The personal records of seqs `from..to` that exist, ascending.
    fn personal_range(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, PersonalRecord)>> + '_>;
    /// Signed checkpoint notes with tree size `>= from`, by tree size ascending, at most `limit`.
    fn checkpoints_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>>;
    /// Every signed checkpoint note, by tree size ascending.
    fn checkpoints(&self) -> Result<Vec<(u64, String)>> {
        self.checkpoints_from(0, usize::MAX)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>>;
    /// The signed checkpoint note for tree size `size`, if one was stored.
    fn checkpoint(&self, size: u64) -> Result<Option<String>>;
    /// Bytes the engine uses on disk.
    fn size_on_disk(&self) -> Result<u64>;
    /// The last `CommitBatch::source_cursor` committed.
    fn source_cursor(&self) -> Result<Option<u64>>;
    /// The `CommitBatch::source_cursor_time` committed with the last source cursor, if any.
    fn source_cursor_time(&self) -> Result<Option<i64>> {
        Ok(None)
    }
    /// The last `CommitBatch::source_read_through` committed, if any.
    fn source_read_through(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// A personal record's JSON, written once into a buffer of its exact size: a growing `Vec` would
/// leave unwiped copies of the personal data behind in freed memory.
fn record_json(rec: &PersonalRecord) -> serde_json::Result<PlainRecord> {
    let mut count = WriteCount(0);
    serde_json::to_writer(&mut count, rec)?;
    let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *plain, rec)?;
    Ok(plain)
}

/// Counts what is written (the length [`record_json`] sizes its buffer by).
struct WriteCount(usize);

impl std::io::Write for WriteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// sled layout (version [`LAYOUT`]): one tree, keys prefixed by kind, numbers big-endian so they
/// sort. `b`+bundle → up to [`ENTRY_BUNDLE`] entries, each as a 4-byte big-endian length and the
/// bytes (a full bundle LZ4-compressed, [`LZ4_BUNDLE`]; zstd, [`ZSTD_BUNDLE`], up to layout 3);
/// the id index's runs under `j`/`J`/`v` and the dossier index's under `r`/`R`/`w`
/// ([`crate::runs`], [`EVENT_RUNS`], [`DOSSIER_RUNS`]; layout 2 had a key per entry instead:
/// `i`+id‖0x00‖agency → seq‖digest, `d`+dossier‖0x00‖seq → ""); `h`+chunk → up to
/// [`HASH_CHUNK`] hashes; `p`+seq → 0x01‖key slot‖personal JSON sealed under that slot's key (see
/// [`crate::keystore`]); `x`+agency‖0x00‖id‖0x00‖EVENTS seq → "" (an outside copy);
/// `y`+agency‖0x00‖id → "" (outside copies still to erase); `z`+slot → "" (a key to destroy);
/// `c`+size → checkpoint note; `m`+name → meta. One tree makes every commit a single
/// `apply_batch`, which sled recovers atomically. Ids and agencies never hold 0x00 (the envelope
/// schema's patterns), so the separators are unambiguous.
#[derive(Clone)]
pub struct SledStorage {
    /// sled's handles, replaced as a whole when the store is reopened to bound sled's recovery
    /// ([`SledStorage::refresh_if_due`]); `None` only if such a reopen failed (every use then
    /// tries to open it again). Every use clones the `Arc` for as long as it holds a sled handle
    /// (an iterator included), so a count of one means nothing holds the store open.
    handles: Arc<RwLock<Option<Arc<Handles>>>>,
    path: PathBuf,
    keys: Arc<KeyStore>,
    /// Key slots committed so far (the next record's slot); only the writer advances it.
    next_slot: Arc<AtomicU64>,
    /// Keys already durable past `next_slot`, for the next commits' personal records.
    reserve: Arc<Mutex<KeyReserve>>,
    /// Test-only fault point (`SOCAI_FAULT=abort-before-fsync[:N]`): at the N-th commit with
    /// entries (default 1), the process stalls a second after sled took the batch and before the
    /// fsync (so anything sent too early would reach its reader), then aborts, as a crash there
    /// would. Holds the commits with entries still to go before it.
    abort_before_fsync: Option<Arc<AtomicU64>>,
    /// Every committed (agency, id), approximately (see [`crate::idfilter`]); filled from the id
    /// index by a background thread started at the first [`Storage::id_if_known`].
    ids: Arc<IdFilter>,
    fill: Arc<Fill>,
    /// Entries committed since sled last wrote its page-table snapshot (at the last open).
    since_snapshot: Arc<AtomicU64>,
    /// How many times the store was reopened to bound sled's recovery.
    refreshes: Arc<AtomicU64>,
    /// Entries between two reopens ([`REFRESH_EVERY_ENTRIES`] unless a test says otherwise).
    refresh_every: u64,
    /// When and why the last reopen failed (the next use tries again, at most once a second).
    reopen_failed: Arc<Mutex<Option<(std::time::Instant, String)>>>,
    /// The multiple of `refresh_every` last warned about as overdue.
    overdue_warned: Arc<AtomicU64>,
}

/// Entries committed after which the writer reopens sled after a commit, so that sled writes a
/// fresh page-table snapshot: sled 0.34 writes one only when it opens a store, and an open
/// replays every log write since the last snapshot, so without this a restart would cost in
/// proportion to everything written since the process started (ARCHITECTURE.md).
pub const REFRESH_EVERY_ENTRIES: u64 = 500_000;

/// sled's handles on the store, and the index runs that hold its tree.
struct Handles {
    /// First, so that dropping the handles stops and joins the merger before the tree (and
    /// sled's flush on drop) goes.
    merger: Merger,
    db: sled::Db,
    tree: sled::Tree,
    /// size (big-endian) → the witnesses' cosignature lines of the checkpoint of that size.
    cosignatures: sled::Tree,
    /// The id index: sorted runs of ([`event_fingerprint`], seq), one per commit (see
    /// [`crate::runs`]).
    events: Arc<Runs>,
    /// The dossier index: sorted runs of ([`dossier_fingerprint`], seq).
    dossiers: Arc<Runs>,
}

impl Handles {
    /// Opens sled at `path` (retrying a lock this process still holds for up to
    /// [`LOCK_WAIT_MS`]: sled releases it from a background thread after a `Db` is dropped) and
    /// the index runs; the mergers are not started.
    fn open(path: &Path) -> Result<Handles> {
        let db = crate::retry_while(
            std::time::Duration::from_millis(LOCK_WAIT_MS),
            |e| matches!(e, StorageError::Locked { .. }),
            || {
                sled::Config::new()
                    .path(path)
                    .flush_every_ms(None)
                    .cache_capacity(256 * 1024 * 1024)
                    .open()
                    .map_err(|e| StorageError::engine(path, e))
            },
        )?;
        let tree = db
            .open_tree("ledger")
            .map_err(|e| StorageError::engine(path, e))?;
        // Witness cosignatures: outside the ledger's tree (they are not part of any commit; a
        // lost one is replaced by the witness's cosignature of a later checkpoint).
        let cosignatures = db
            .open_tree("cosignatures")
            .map_err(|e| StorageError::engine(path, e))?;
        let events = Arc::new(Runs::open(tree.clone(), EVENT_RUNS, path.to_path_buf())?);
        let dossiers = Arc::new(Runs::open(tree.clone(), DOSSIER_RUNS, path.to_path_buf())?);
        Ok(Handles {
            merger: Merger {
                indexes: [events.clone(), dossiers.clone()],
                threads: Mutex::new(Vec::new()),
            },
            db,
            tree,
            cosignatures,
            events,
            dossiers,
        })
    }

    /// Starts the threads that merge each index's runs.
    fn start_mergers(&self) {
        let mut threads = self
            .merger
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for runs in self.merger.indexes.clone() {
            let spawned = std::thread::Builder::new()
                .name("socai-runs".into())
                .spawn(move || runs.run_merger());
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start merging an index's runs; lookups slow down as runs accumulate")
                }
            }
        }
    }
}

/// A value that holds the store's sled handles open while it lives (test and bench access).
#[doc(hidden)]
pub struct Held<T> {
    value: T,
    _handles: Arc<Handles>,
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The threads that merge both indexes' runs: stopped and joined when the last handle of the
/// store is dropped (they hold the tree, and with it sled's lock on the store).
struct Merger {
    indexes: [Arc<Runs>; 2],
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Merger {
    fn drop(&mut self) {
        for runs in &self.indexes {
            runs.stop();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The key prefixes of the id index's runs.
pub const EVENT_RUNS: Prefixes = Prefixes {
    page: b'j',
    fence: b'J',
    marker: b'v',
};

/// The key prefixes of the dossier index's runs.
pub const DOSSIER_RUNS: Prefixes = Prefixes {
    page: b'r',
    fence: b'R',
    marker: b'w',
};

fn sha256_prefixed(domain: &[u8], text: &str) -> [u8; 32] {
    socai_chain::hash::sha256_concat(&[domain, text.as_bytes()]).0
}

/// The id index's key for `agency`'s event `id`: 48 bits of SHA-256 of the id, then 16 bits
/// telling apart the agencies that used the same id (FNV-1a of the agency code, folded), so
/// that every agency's event of one id sits in one range ([`id_fingerprints`]). Lookups confirm
/// every match against the entry, so a collision costs a read, never a wrong answer.
pub fn event_fingerprint(agency: &str, id: &str) -> u64 {
    let (lo, _) = id_fingerprints(id);
    lo | agency_tag(agency)
}

/// The low 16 bits of an [`event_fingerprint`]: FNV-1a of the agency code, folded.
fn agency_tag(agency: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in agency.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) & 0xffff
}

const ID_DOMAIN: &[u8] = b"socai-id/v1\0";
const DOSSIER_DOMAIN: &[u8] = b"socai-dossier/v1\0";

/// The range of [`event_fingerprint`]s of `id`, whatever the agency.
pub fn id_fingerprints(id: &str) -> (u64, u64) {
    let lo = id_high(&sha256_prefixed(ID_DOMAIN, id));
    (lo, lo | 0xffff)
}

/// The high 48 bits of an [`event_fingerprint`], from the SHA-256 of the id.
fn id_high(h: &[u8; 32]) -> u64 {
    u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], 0, 0])
}

/// The dossier index's key for `dossier`: the first 8 bytes of SHA-256 over a domain prefix and
/// the dossier id. Lookups confirm every match against the entry, so a collision (chosen or
/// not) costs a read, never a wrong answer.
pub fn dossier_fingerprint(dossier: &str) -> u64 {
    dossier_key(&sha256_prefixed(DOSSIER_DOMAIN, dossier))
}

fn dossier_key(h: &[u8; 32]) -> u64 {
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

/// [`event_fingerprint`] of each (agency, id) and [`dossier_fingerprint`] of each dossier, in
/// order: the SHA-256s hashed together, as verify does a range at a time (see
/// [`socai_chain::hash::sha256_many_prefixed`]).
pub fn fingerprints_many(events: &[(&str, &str)], dossiers: &[&str]) -> (Vec<u64>, Vec<u64>) {
    use socai_chain::hash::sha256_many_prefixed;
    let ids: Vec<&[u8]> = events.iter().map(|(_, id)| id.as_bytes()).collect();
    let ids = sha256_many_prefixed(ID_DOMAIN, &ids)
        .iter()
        .zip(events)
        .map(|(h, (agency, _))| id_high(h) | agency_tag(agency))
        .collect();
    let dossiers: Vec<&[u8]> = dossiers.iter().map(|d| d.as_bytes()).collect();
    let dossiers = sha256_many_prefixed(DOSSIER_DOMAIN, &dossiers)
        .iter()
        .map(dossier_key)
        .collect();
    (ids, dossiers)
}

/// The background fill of the id filter: started once, stopped when the last handle of the
/// store is dropped (the thread holds the tree, and with it sled's lock on the store).
struct Fill {
    started: std::sync::Once,
    /// While the fill runs (it holds the id index's runs, and with them sled's handles).
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    testing: IdFilterTesting,
}

/// Test knobs of the new-id filter (see [`SledStorage::open_with_id_filter`]).
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct IdFilterTesting {
    /// Keep only this many low bits of each hash (false positives become common).
    pub hash_bits: Option<u32>,
    /// Ids per chunk of the fill (default 4096).
    pub fill_chunk: Option<usize>,
    /// After its first chunk, the fill waits twice on this barrier: the test commits in between.
    pub fill_gate: Option<Arc<std::sync::Barrier>>,
    /// Entries between two reopens of sled (default [`REFRESH_EVERY_ENTRIES`]).
    pub refresh_every: Option<u64>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The environment variable that arms the test-only fault points.
pub const FAULT_ENV: &str = "SOCAI_FAULT";

/// `SOCAI_FAULT=abort-before-fsync[:N]`: the commits with entries to go until the fault.
fn abort_before_fsync_fault() -> Option<Arc<AtomicU64>> {
    let value = std::env::var(FAULT_ENV).ok()?;
    let rest = value.strip_prefix("abort-before-fsync")?;
    let n = match rest.strip_prefix(':') {
        Some(n) => n.parse().ok().filter(|&n| n > 0)?,
        None if rest.is_empty() => 1,
        None => return None,
    };
    Some(Arc::new(AtomicU64::new(n)))
}

/// `SOCAI_FAULT=redaction-read-error`: the first redaction this process applies
/// ([`crate::Ledger::redact`], not [`crate::Ledger::check_redaction`]) fails as a failed read of
/// the store would, before it reads or writes anything (a test-only fault point: the writer must
/// stop rather than pass over the request). Debug builds (the tests') only.
pub(crate) fn redaction_read_fault() -> Result<()> {
    static ARMED: std::sync::OnceLock<std::sync::atomic::AtomicBool> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::sync::atomic::AtomicBool::new(
            cfg!(debug_assertions)
                && std::env::var(FAULT_ENV).is_ok_and(|v| v == "redaction-read-error"),
        )
    });
    if armed.swap(false, Ordering::SeqCst) {
        return Err(StorageError::Engine {
            path: PathBuf::from("(test-only fault point)"),
            source: sled::Error::Io(std::io::Error::other(format!(
                "{FAULT_ENV}=redaction-read-error: a read failed"
            ))),
        });
    }
    Ok(())
}

const HEAD_KEY: &[u8] = b"mhead";
const CURSOR_KEY: &[u8] = b"msource";
/// The last source seq dealt with (`CommitBatch::source_read_through`), 8 bytes.
const READ_THROUGH_KEY: &[u8] = b"msourceread";
const LAYOUT_KEY: &[u8] = b"mlayout";
const SLOTS_KEY: &[u8] = b"mslots";
/// The key layout this code writes. Layout 1 (before per-agency ids and sealed personal
/// records) and layout 2 (a sled key per entry in the dossier index) are migrated at open;
/// layout 3 (full bundles zstd-compressed) becomes 4 (LZ4 from then on, [`LZ4_BUNDLE`]) with
/// nothing rewritten: its zstd bundles are read as they are. The number changes so that an older
/// socai refuses a store holding bundles it cannot open, with a message, instead of reading them
/// as damaged.
pub const LAYOUT: u64 = 4;
/// Entries per run when a layout-2 dossier index is migrated into runs.
const MIGRATION_RUN: u64 = 1 << 20;
/// Format byte of a sealed personal record.
const SEALED: u8 = 1;

fn key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn dossier_prefix(dossier: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(dossier.len() + 2);
    k.push(b'd');
    k.extend_from_slice(dossier.as_bytes());
    k.push(0);
    k
}

/// Splits a bundle value into its entries; `None` if a length runs past the end.
pub fn split_bundle(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(ENTRY_BUNDLE as usize);
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        out.push(bytes.get(4..4 + len)?);
        bytes = &bytes[4 + len..];
    }
    Some(out)
}

/// Format byte of a zstd-compressed bundle, as socai wrote full bundles before LZ4 (still read,
/// never written now): then the plain bundle's length (4 bytes, big-endian) and its zstd frame
/// (with zstd's checksum). A plain bundle starts with its first entry's length, whose first byte
/// is 0 (entries are at most 64 KiB: the ledger refuses larger ones, and [`SledStorage::commit`]
/// anything of 16 MiB), so no format byte is mistaken for a plain bundle.
const ZSTD_BUNDLE: u8 = 1;
/// Format byte of an LZ4-compressed bundle, how full bundles are written: then the plain bundle's
/// length (4 bytes, big-endian), the XXH3-64 of the plain bundle (8 bytes, big-endian; so a block
/// altered on disk fails to open instead of giving other bytes) and the LZ4 block. A full bundle
/// (~7 KiB of JSON) shrinks about 2.3× (zstd level 1: 3.3×), and opens about 3× faster than zstd
/// (with its checksum; measured on the bundles of a 300k-entry store, 1.9 GB/s against 0.66) —
/// what verify and rebuilds spend most of their reading on.
const LZ4_BUNDLE: u8 = 2;
/// The bytes an LZ4 bundle holds before its block.
const LZ4_HEADER: usize = 1 + 4 + 8;

thread_local! {
    static BUNDLE_ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn with_zstd<T>(f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> T) -> Option<T> {
    BUNDLE_ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        Some(f(cell.as_mut()?))
    })
}

/// The largest plain bundle: [`ENTRY_BUNDLE`] entries of less than 16 MiB, each with its length.
/// A compressed bundle claiming more is damaged (and is not given that much memory).
const MAX_PLAIN_BUNDLE: usize = ENTRY_BUNDLE as usize * ((1 << 24) + 4);

/// The plain length a compressed bundle value claims, if it is within [`MAX_PLAIN_BUNDLE`] (and,
/// for zstd, its frame's header says the same), so damage is caught before any memory is given
/// to it.
fn compressed_len(stored: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(stored.get(1..5)?.try_into().ok()?) as usize;
    if len > MAX_PLAIN_BUNDLE {
        return None;
    }
    match stored[0] {
        // An LZ4 block expands at most 255-fold (a match token and its length bytes), so a
        // length claiming more is damage, refused before the memory is given.
        LZ4_BUNDLE => (stored.len() >= LZ4_HEADER
            && len <= (stored.len() - LZ4_HEADER).saturating_mul(255))
        .then_some(len),
        _ => {
            let framed = zstd::zstd_safe::get_frame_content_size(&stored[5..]).ok()??;
            (framed == len as u64).then_some(len)
        }
    }
}

/// Whether `stored` starts with a compressed bundle's format byte.
fn is_compressed(stored: &[u8]) -> bool {
    matches!(stored.first(), Some(&(ZSTD_BUNDLE | LZ4_BUNDLE)))
}

/// Opens compressed bundle `stored` (see [`compressed_len`]: `len` is its plain length) into
/// `out`, which is `len` bytes long; `true` if it opens to exactly `len` bytes (and, for LZ4, to
/// the checksum it names).
fn open_compressed(stored: &[u8], out: &mut [u8]) -> bool {
    if stored[0] == LZ4_BUNDLE {
        let sum = u64::from_be_bytes(stored[5..LZ4_HEADER].try_into().expect("8 bytes"));
        let opened = lz4_flex::block::decompress_into(&stored[LZ4_HEADER..], out);
        return matches!(opened, Ok(n) if n == out.len()) && xxhash_rust::xxh3::xxh3_64(out) == sum;
    }
    let written = with_zstd(|d| d.decompress_to_buffer(&stored[5..], &mut *out));
    matches!(written, Some(Ok(n)) if n == out.len())
}

/// A stored bundle value as its plain bundle (see [`split_bundle`]): decompressed if it was
/// compressed; `None` if it cannot be.
pub fn open_bundle(stored: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if !is_compressed(stored) {
        return Some(std::borrow::Cow::Borrowed(stored));
    }
    let len = compressed_len(stored)?;
    let mut plain = vec![0u8; len];
    open_compressed(stored, &mut plain).then_some(std::borrow::Cow::Owned(plain))
}

/// [`open_bundle`] appending the plain bundle to `out` (no allocation once `out` is large
/// enough); `false`, with `out` unchanged, if it cannot be opened.
fn open_bundle_into(stored: &[u8], out: &mut Vec<u8>) -> bool {
    if !is_compressed(stored) {
        out.extend_from_slice(stored);
        return true;
    }
    let Some(len) = compressed_len(stored) else {
        return false;
    };
    let start = out.len();
    out.resize(start + len, 0);
    let opened = open_compressed(stored, &mut out[start..]);
    if !opened {
        out.truncate(start);
    }
    opened
}

/// The key slot a stored personal record of `seq` names, if `v` is a sealed record.
fn sealed_slot(seq: u64, v: &[u8]) -> Result<u64> {
    let corrupt =
        |what: &str| StorageError::Corrupt(format!("personal record for seq {seq}: {what}"));
    if v.first() != Some(&SEALED) || v.len() < 9 {
        return Err(corrupt("not a sealed record"));
    }
    be_u64(&v[1..]).ok_or_else(|| corrupt("truncated"))
}

/// Decrypts sealed personal record `v` of `seq` (see [`sealed_slot`]) with `key`, as read from
/// its slot, to its JSON.
fn open_sealed(
    seq: u64,
    v: &[u8],
    key: std::result::Result<RecordKey, KeyStoreError>,
) -> Result<PlainRecord> {
    key?.open(&seq.to_be_bytes(), &v[9..])
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| {
            StorageError::Corrupt(format!(
                "personal record for seq {seq}: does not decrypt under its key (tampered or swapped)"
            ))
        })
}

/// A full bundle as stored: LZ4-compressed ([`LZ4_BUNDLE`]) when that makes it smaller.
fn seal_bundle(plain: Vec<u8>) -> Vec<u8> {
    let Ok(len) = u32::try_from(plain.len()) else {
        return plain;
    };
    let block = lz4_flex::block::compress(&plain);
    if block.len() + LZ4_HEADER >= plain.len() {
        return plain;
    }
    let mut v = Vec::with_capacity(block.len() + LZ4_HEADER);
    v.push(LZ4_BUNDLE);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&plain).to_be_bytes());
    v.extend_from_slice(&block);
    v
}

/// Encodes entries as a bundle value (the inverse of [`split_bundle`]).
pub fn join_bundle(entries: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn hash_at(bytes: &[u8], i: usize) -> Option<Hash> {
    Some(Hash(bytes.get(i * 32..i * 32 + 32)?.try_into().ok()?))
}

impl SledStorage {
    /// Opens (or creates) the store. sled releases its file lock from a background thread shortly
    /// after a `Db` is dropped, so a lock held by this same process is retried for up to
    /// [`LOCK_WAIT_MS`] before reporting [`StorageError::Locked`].
    pub fn open(path: &Path) -> Result<SledStorage> {
        Self::open_with_id_filter(path, IdFilterTesting::default())
    }

    /// [`SledStorage::open`] with the new-id filter's test knobs.
    #[doc(hidden)]
    pub fn open_with_id_filter(path: &Path, testing: IdFilterTesting) -> Result<SledStorage> {
        let started = std::time::Instant::now();
        // Held for as long as this store is open (across sled's reopens): another open would
        // take the keys drawn ahead for orphans and discard them. Taken before sled's lock, so
        // another opener is refused here without holding sled while this store reopens it.
        let wait = std::time::Duration::from_millis(LOCK_WAIT_MS);
        // The key file sits beside the store: its directory is made as sled makes the store's.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeyStoreError::Io {
                path: Self::keys_path(path),
                source,
            })?;
        }
        let keys = match KeyStore::open(&Self::keys_path(path), wait) {
            Ok(keys) => Arc::new(keys),
            Err(KeyStoreError::Locked { .. }) => {
                return Err(StorageError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let handles = Handles::open(path)?;
        let recovered = started.elapsed();
        // Sized for the log as it is: the filter doubles as it grows.
        let entries = handles
            .tree
            .get(HEAD_KEY)
            .ok()
            .flatten()
            .and_then(|v| be_u64(&v))
            .unwrap_or(0);
        let refresh_every = testing.refresh_every.unwrap_or(REFRESH_EVERY_ENTRIES);
        let storage = SledStorage {
            handles: Arc::new(RwLock::new(Some(Arc::new(handles)))),
            path: path.to_path_buf(),
            keys: keys.clone(),
            next_slot: Arc::new(AtomicU64::new(0)),
            reserve: Arc::new(Mutex::new(KeyReserve::new(keys.clone()))),
            abort_before_fsync: abort_before_fsync_fault(),
            ids: Arc::new(IdFilter::with_hash_bits(
                entries,
                testing.hash_bits.unwrap_or(64),
            )),
            fill: Arc::new(Fill {
                started: std::sync::Once::new(),
                running: Arc::new(AtomicBool::new(false)),
                stop: Arc::new(AtomicBool::new(false)),
                testing,
            }),
            since_snapshot: Arc::new(AtomicU64::new(0)),
            refreshes: Arc::new(AtomicU64::new(0)),
            refresh_every,
            reopen_failed: Arc::new(Mutex::new(None)),
            overdue_warned: Arc::new(AtomicU64::new(0)),
        };
        storage.migrate()?;
        storage.drop_old_index_keys()?;
        let head = storage.head()?.size;
        let h = storage.h()?;
        Self::check_index_cover(&h, head);
        h.start_mergers();
        drop(h);
        storage.finish_erasures()?;
        let slots = match storage.get(SLOTS_KEY)? {
            Some(v) => be_u64(&v)
                .ok_or_else(|| StorageError::Corrupt("key slot count is truncated".into()))?,
            None => 0,
        };
        let held = storage.keys.slots()?;
        if held < slots {
            return Err(StorageError::Corrupt(format!(
                "the personal-data key file {} holds {held} keys but the store refers to {slots}: it was lost or replaced by an older copy, so personal records cannot be opened; restore it from the backup taken together with the store (never run `socai serve` on this data dir until then)",
                storage.keys.path().display()
            )));
        }
        let orphans = storage.keys.discard_from(slots)?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                "discarded personal-data keys nothing refers to (drawn ahead and not used, or of a commit that did not complete)"
            );
        }
        storage.next_slot.store(slots, Ordering::SeqCst);
        tracing::debug!(
            entries,
            sled_recovery_ms = recovered.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        Ok(storage)
    }

    /// Starts filling the id filter from the stored id index, once, on a thread of its own.
    fn start_fill(&self) {
        let Ok(h) = self.h() else {
            return; // tried again at the next call
        };
        self.fill.started.call_once(|| {
            let (runs, ids, stop) = (h.events.clone(), self.ids.clone(), self.fill.stop.clone());
            let (testing, running) = (self.fill.testing.clone(), self.fill.running.clone());
            // While it runs it holds the index's runs, and with them the store: no refresh.
            running.store(true, Ordering::Release);
            let spawned = std::thread::Builder::new()
                .name("socai-idfilter".into())
                .spawn(move || {
                    fill_id_filter(&runs, &ids, &stop, &testing);
                    drop(runs);
                    running.store(false, Ordering::Release);
                });
            if let Err(e) = spawned {
                self.fill.running.store(false, Ordering::Release);
                tracing::warn!(error = %e, "could not start filling the new-id filter; every append reads the id index");
            }
        });
    }

    /// Records witness cosignature lines of the signed checkpoint of size `size`, replacing any
    /// earlier line of the same witness key. The lines are not checked here: the caller verified
    /// them against the witnesses' keys. Durable with the ledger's next commit (or close).
    pub fn add_cosignatures(&self, size: u64, lines: &[String]) -> Result<()> {
        let h = self.h()?;
        // One read-modify-write as a compare-and-swap (sled retries the closure on a race): each
        // witness's follower stores its own lines for the same size at about the same moment.
        h.cosignatures
            .update_and_fetch(size.to_be_bytes(), |held| {
                let mut merged: Vec<String> = held
                    .map(|v| {
                        String::from_utf8_lossy(v)
                            .lines()
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                for line in lines {
                    let line = line.trim_end_matches('\n');
                    let key = socai_chain::cosign::line_key(line);
                    merged.retain(|l| key.is_none() || socai_chain::cosign::line_key(l) != key);
                    merged.push(line.to_owned());
                }
                let mut text = merged.join("\n");
                text.push('\n');
                Some(text.into_bytes())
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The cosignature lines recorded for the checkpoint of size `size` (each without newline).
    pub fn cosignatures(&self, size: u64) -> Result<Vec<String>> {
        let h = self.h()?;
        let held = h
            .cosignatures
            .get(size.to_be_bytes())
            .map_err(|e| self.err(e))?;
        Ok(held
            .map(|v| {
                String::from_utf8_lossy(&v)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The newest cosignature line of the witness key `key` ((name, key id)) and its checkpoint
    /// size, among the newest `scan` cosigned sizes.
    pub fn newest_cosignature_by(
        &self,
        key: &(String, u32),
        scan: usize,
    ) -> Result<Option<(u64, String)>> {
        let h = self.h()?;
        for r in h.cosignatures.iter().rev().take(scan) {
            let (k, v) = r.map_err(|e| self.err(e))?;
            let size = be_u64(&k)
                .ok_or_else(|| StorageError::Corrupt("cosignature key is truncated".into()))?;
            if let Some(line) = String::from_utf8_lossy(&v)
                .lines()
                .find(|l| socai_chain::cosign::line_key(l).as_ref() == Some(key))
            {
                return Ok(Some((size, line.to_owned())));
            }
        }
        Ok(None)
    }

    /// The newest checkpoint size with cosignature lines from at least `min` distinct witness
    /// keys (among `keys`, (name, key id) pairs, when given), and those lines; looks at the
    /// newest `scan` cosigned sizes at most.
    pub fn newest_cosigned(
        &self,
        min: usize,
        keys: Option<&std::collections::HashSet<(String, u32)>>,
        scan: usize,
    ) -> Result<Option<(u64, Vec<String>)>> {
        let h = self.h()?;
        for r in h.cosignatures.iter().rev().take(scan) {
            let (k, v) = r.map_err(|e| self.err(e))?;
            let size = be_u64(&k)
                .ok_or_else(|| StorageError::Corrupt("cosignature key is truncated".into()))?;
            let lines: Vec<String> = String::from_utf8_lossy(&v)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let found: std::collections::HashSet<_> = lines
                .iter()
                .filter_map(|l| socai_chain::cosign::line_key(l))
                .filter(|k| keys.is_none_or(|keys| keys.contains(k)))
                .collect();
            if found.len() >= min {
                return Ok(Some((size, lines)));
            }
        }
        Ok(None)
    }

    /// The new-id filter (for the benchmarks and tests).
    pub fn id_filter(&self) -> &IdFilter {
        &self.ids
    }

    /// Where the personal-data keys of the store at `path` live: `<path>.keys`, beside it.
    pub fn keys_path(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".keys");
        PathBuf::from(p)
    }

    /// Destroys the keys named by `z` markers (redactions whose commit is durable), then drops
    /// the markers. Idempotent: a crash in between only repeats it at the next open.
    fn finish_erasures(&self) -> Result<()> {
        let h = self.h()?;
        let mut slots = Vec::new();
        for r in h.tree.scan_prefix(b"z") {
            let (k, _) = r.map_err(|e| self.err(e))?;
            slots.push(
                be_u64(&k[1..])
                    .ok_or_else(|| StorageError::Corrupt("key marker is truncated".into()))?,
            );
        }
        if slots.is_empty() {
            return Ok(());
        }
        self.keys.destroy(&slots)?;
        let mut b = sled::Batch::default();
        for slot in slots {
            b.remove(&key(b'z', slot));
        }
        // Made durable by the next commit; until then a reopen destroys them again.
        h.tree.apply_batch(b).map_err(|e| self.err(e))
    }

    /// Brings an older store to [`LAYOUT`]: layout 1's id keys gain their agency and its personal
    /// records are sealed under keys of their own; layouts 1 and 2 get the indexes' runs; layout
    /// 3 only records the new number. Runs in chunks, each durable; a crash resumes it.
    fn migrate(&self) -> Result<()> {
        let layout = self.get(LAYOUT_KEY)?.as_deref().and_then(be_u64);
        match layout {
            Some(LAYOUT) => return Ok(()),
            Some(other) if other > LAYOUT => {
                return Err(StorageError::Corrupt(format!(
                    "store layout {other} is newer than this socai understands ({LAYOUT}); use a newer socai"
                )));
            }
            Some(3) => {
                tracing::info!(path = %self.path.display(), "store layout 3 -> 4: full entry bundles are LZ4-compressed from now on; the zstd ones stay as they are");
                return self.record_layout();
            }
            _ => {}
        }
        let has_entries = self.get(HEAD_KEY)?.is_some();
        if layout.is_none() && has_entries {
            tracing::info!(path = %self.path.display(), "migrating the store to layout 2 (per-agency ids, sealed personal data)");
            let (ids, personal) = (self.migrate_ids()?, self.migrate_personal()?);
            tracing::info!(ids, personal, "store migrated to layout 2");
        }
        if has_entries {
            tracing::info!(path = %self.path.display(), "migrating the store to layout 3 (the id and dossier indexes in sorted runs, built from the entries)");
            if let Some(why) = self.build_index_runs()? {
                // Opened all the same (so that `socai verify` can name the damage), with both
                // indexes marked broken: nothing is appended, and the next open tries again.
                tracing::error!(reason = %why, "the store was not migrated to layout 3");
                return Ok(());
            }
            tracing::info!("store migrated to layout 3 (and 4: LZ4 bundles from now on)");
        }
        self.record_layout()
    }

    /// Records [`LAYOUT`] as the store's, durably.
    fn record_layout(&self) -> Result<()> {
        let h = self.h()?;
        h.tree
            .insert(LAYOUT_KEY, &LAYOUT.to_be_bytes()[..])
            .map_err(|e| self.err(e))?;
        h.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Layout 2 → 3: both indexes' runs, built from the entries themselves (in seq order, runs
    /// of [`MIGRATION_RUN`] entries, in bounded memory). Runs a migration that stopped half-way
    /// left are cleared first; the old `i` and `d` keys go once layout 3 is recorded
    /// ([`SledStorage::drop_old_index_keys`]). Returns why the indexes are incomplete, if some
    /// entries could not be read: then both are marked broken (lookups fail, so no duplicate can
    /// slip past an id the index lacks), layout 3 is not recorded and the old keys stay.
    fn build_index_runs(&self) -> Result<Option<String>> {
        let h = self.h()?;
        h.events.clear()?;
        h.dossiers.clear()?;
        let head = self.head()?.size;
        let (mut ids, mut dossiers) = (Vec::new(), Vec::new());
        let (mut first, mut next) = (0u64, 0u64);
        let (mut lost, mut first_lost): (u64, Option<String>) = (0, None);
        let mut note = |what: String, n: u64| {
            lost += n;
            first_lost.get_or_insert(what);
        };
        let write = |first: u64, end: u64, ids: &mut Vec<_>, dossiers: &mut Vec<_>| -> Result<()> {
            let mut b = sled::Batch::default();
            let runs = (
                h.events.add(&mut b, first, end, std::mem::take(ids)),
                h.dossiers.add(&mut b, first, end, std::mem::take(dossiers)),
            );
            h.tree.apply_batch(b).map_err(|e| self.err(e))?;
            h.events.installed(runs.0);
            h.dossiers.installed(runs.1);
            Ok(())
        };
        for item in self.entries(0, head) {
            let (seq, bytes) = match item {
                Ok(item) => item,
                Err(e) => {
                    note(format!("{e}"), 0);
                    continue;
                }
            };
            if seq > next {
                note(format!("entries {next}..{seq} are missing"), seq - next);
            } else if seq < next {
                // A bundle holding more entries than it may: the store is damaged here.
                note(format!("entry {seq} is stored twice"), 1);
                continue;
            }
            while seq >= first + MIGRATION_RUN {
                write(first, first + MIGRATION_RUN, &mut ids, &mut dossiers)?;
                first += MIGRATION_RUN;
            }
            match socai_chain::Entry::decode_parts(&bytes) {
                Ok(parts) => {
                    ids.push((event_fingerprint(&parts.agency, &parts.id), seq));
                    dossiers.push((dossier_fingerprint(&parts.dossier), seq));
                }
                Err(e) => note(format!("entry {seq} cannot be read: {e}"), 1),
            }
            next = seq + 1;
        }
        if head > next {
            note(format!("entries {next}..{head} are missing"), head - next);
        }
        while first < head {
            let end = (first + MIGRATION_RUN).min(head);
            write(first, end, &mut ids, &mut dossiers)?;
            first = end;
        }
        let broken = first_lost.map(|what| {
            format!(
                "{lost} entries could not be read while the indexes were built from them (first: {what}); run `socai verify` and restore the data dir from a backup"
            )
        });
        for runs in [&h.events, &h.dossiers] {
            runs.set_broken(broken.clone());
        }
        Ok(broken)
    }

    /// Deletes the `i` and `d` keys of layout-2 indexes (after layout 3 is recorded; also
    /// finishes a deletion a crash interrupted).
    fn drop_old_index_keys(&self) -> Result<()> {
        let h = self.h()?;
        if self.get(LAYOUT_KEY)?.as_deref().and_then(be_u64) != Some(LAYOUT) {
            return Ok(()); // a migration that could not finish: the old keys are all there is
        }
        let mut dropped = 0u64;
        for prefix in [b"i", b"d"] {
            loop {
                let keys: Vec<sled::IVec> = h
                    .tree
                    .scan_prefix(prefix)
                    .keys()
                    .take(100_000)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| self.err(e))?;
                if keys.is_empty() {
                    break;
                }
                dropped += keys.len() as u64;
                let mut b = sled::Batch::default();
                for k in keys {
                    b.remove(k);
                }
                h.tree.apply_batch(b).map_err(|e| self.err(e))?;
            }
        }
        if dropped > 0 {
            h.db.flush().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn migrate_ids(&self) -> Result<u64> {
        let h = self.h()?;
        use std::ops::Bound::{Excluded, Included};
        let mut done = 0;
        let mut from = Included(b"i".to_vec());
        loop {
            let mut b = sled::Batch::default();
            let mut n = 0;
            for r in h
                .tree
                .range::<Vec<u8>, _>((from.clone(), Excluded(b"j".to_vec())))
            {
                let (k, v) = r.map_err(|e| self.err(e))?;
                from = Excluded(k.to_vec());
                if k.contains(&0) {
                    continue; // already migrated
                }
                let id = std::str::from_utf8(&k[1..])
                    .map_err(|_| StorageError::Corrupt("id key is not UTF-8".into()))?;
                let seq = be_u64(&v).ok_or_else(|| {
                    StorageError::Corrupt(format!("id index record for {id:?} is truncated"))
                })?;
                let entry = self.entry(seq)?.ok_or_else(|| {
                    StorageError::Corrupt(format!("id {id:?} names seq {seq}, which is missing"))
                })?;
                let agency = serde_json::from_slice::<serde_json::Value>(&entry)
                    .ok()
                    .and_then(|e| e["event"]["agency"].as_str().map(str::to_owned))
                    .ok_or_else(|| {
                        StorageError::Corrupt(format!("entry {seq} has no event.agency"))
                    })?;
                b.insert(Self::id_key(&agency, id), v);
                b.remove(k);
                n += 1;
                if n == 10_000 {
                    break;
                }
            }
            if n == 0 {
                return Ok(done);
            }
            h.tree.apply_batch(b).map_err(|e| self.err(e))?;
            h.db.flush().map_err(|e| self.err(e))?;
            done += n;
        }
    }

    fn migrate_personal(&self) -> Result<u64> {
        let h = self.h()?;
        let mut done = 0;
        let mut slot = self
            .get(SLOTS_KEY)?
            .as_deref()
            .and_then(be_u64)
            .unwrap_or(0);
        let mut from = 0;
        loop {
            let mut plain = Vec::new();
            for r in h.tree.range(key(b'p', from)..=key(b'p', u64::MAX)) {
                let (k, v) = r.map_err(|e| self.err(e))?;
                from = be_u64(&k[1..]).map_or(u64::MAX, |s| s.saturating_add(1));
                if v.first() == Some(&SEALED) {
                    continue;
                }
                let seq = be_u64(&k[1..])
                    .ok_or_else(|| StorageError::Corrupt("personal key is truncated".into()))?;
                let rec: PersonalRecord = serde_json::from_slice(&v).map_err(|e| {
                    StorageError::Corrupt(format!("personal record for seq {seq}: {e}"))
                })?;
                plain.push((seq, rec));
                if plain.len() == 10_000 {
                    break;
                }
            }
            if plain.is_empty() {
                return Ok(done);
            }
            let mut b = sled::Batch::default();
            let keys: Vec<RecordKey> = plain.iter().map(|_| RecordKey::random()).collect();
            self.keys.write(slot, &keys.iter().collect::<Vec<_>>())?;
            self.seal_into(&mut b, slot, &plain, &keys)?;
            slot += keys.len() as u64;
            b.insert(SLOTS_KEY, &slot.to_be_bytes()[..]);
            h.tree.apply_batch(b).map_err(|e| self.err(e))?;
            h.db.flush().map_err(|e| self.err(e))?;
            done += plain.len() as u64;
        }
    }

    /// Seals each record under its key (`keys[i]`, at slot `first + i`) into `b`.
    fn seal_into(
        &self,
        b: &mut sled::Batch,
        first: u64,
        records: &[(u64, PersonalRecord)],
        keys: &[RecordKey],
    ) -> Result<()> {
        assert_eq!(records.len(), keys.len(), "one key per record");
        for (i, ((seq, rec), k)) in records.iter().zip(keys).enumerate() {
            let slot = first + i as u64;
            let plain = record_json(rec)
                .map_err(|e| StorageError::Corrupt(format!("personal record: {e}")))?;
            let sealed = k.seal(&seq.to_be_bytes(), &plain);
            let mut v = Vec::with_capacity(9 + sealed.len());
            v.push(SEALED);
            v.extend_from_slice(&slot.to_be_bytes());
            v.extend_from_slice(&sealed);
            b.insert(&key(b'p', *seq), v);
        }
        Ok(())
    }

    /// Opens a stored personal record of `seq`.
    fn unseal(&self, seq: u64, v: &[u8]) -> Result<PersonalRecord> {
        let plain = self.unseal_plain(seq, v)?;
        serde_json::from_slice(&plain)
            .map_err(|e| StorageError::Corrupt(format!("personal record for seq {seq}: {e}")))
    }

    /// Decrypts a stored personal record of `seq` to its JSON.
    fn unseal_plain(&self, seq: u64, v: &[u8]) -> Result<PlainRecord> {
        let slot = sealed_slot(seq, v)?;
        open_sealed(seq, v, self.keys.read(slot))
    }

    /// Opens a record read from the live tree; `None` if a redaction destroyed its key and removed
    /// it since it was read (a reader racing the writer), an error if the key is gone but the
    /// record is not.
    fn unseal_live(&self, seq: u64, v: &[u8]) -> Result<Option<PersonalRecord>> {
        self.live(seq, self.unseal(seq, v))
    }

    /// [`SledStorage::unseal_live`] of the record's JSON.
    fn unseal_plain_live(&self, seq: u64, v: &[u8]) -> Result<Option<PlainRecord>> {
        self.live(seq, self.unseal_plain(seq, v))
    }

    /// What opening the record of `seq` gave, read as [`SledStorage::unseal_live`] says.
    fn live<T>(&self, seq: u64, opened: Result<T>) -> Result<Option<T>> {
        match opened {
            Err(StorageError::Keys(KeyStoreError::Destroyed { .. }))
                if self.get(&key(b'p', seq))?.is_none() =>
            {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// The key slot of the stored personal record of `seq`, if any.
    fn slot_of(&self, seq: u64) -> Result<Option<u64>> {
        Ok(self
            .get(&key(b'p', seq))?
            .and_then(|v| sealed_slot(seq, &v).ok()))
    }

    fn err(&self, e: sled::Error) -> StorageError {
        StorageError::engine(&self.path, e)
    }

    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>> {
        let h = self.h()?;
        h.tree.get(k).map_err(|e| self.err(e))
    }

    /// sled's handles, held open while the returned `Arc` lives. After a reopen that failed
    /// (see [`SledStorage::refresh_if_due`]), opens the store again (at most once a second), or
    /// says why it cannot.
    fn h(&self) -> Result<Arc<Handles>> {
        if let Some(h) = self
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Ok(h.clone());
        }
        let mut slot = self.handles.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let mut failed = self.reopen_failed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, reason)) = failed.as_ref()
                && at.elapsed() < std::time::Duration::from_secs(1)
            {
                return Err(StorageError::Reopen {
                    path: self.path.clone(),
                    reason: reason.clone(),
                });
            }
            match self.reopen() {
                Ok(h) => {
                    *failed = None;
                    *slot = Some(Arc::new(h));
                }
                Err(e) => {
                    *failed = Some((std::time::Instant::now(), e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(slot.as_ref().expect("just opened").clone())
    }

    /// Opens sled's handles again (after a refresh closed them): the index checks of an open,
    /// the mergers started.
    fn reopen(&self) -> Result<Handles> {
        let h = Handles::open(&self.path)?;
        let head = h.tree.get(HEAD_KEY).map_err(|e| self.err(e))?;
        let head = head.as_deref().and_then(be_u64).unwrap_or(0);
        Self::check_index_cover(&h, head);
        h.start_mergers();
        self.since_snapshot.store(0, Ordering::Release);
        self.overdue_warned.store(0, Ordering::Release);
        Ok(h)
    }

    /// Marks an index broken (and says so) unless its runs cover exactly the `head` entries.
    fn check_index_cover(h: &Handles, head: u64) {
        for (runs, name) in [(&h.events, "id"), (&h.dossiers, "dossier")] {
            if runs.broken().is_none() && runs.end() != head {
                runs.set_broken(Some(format!(
                    "the {name} index covers {} entries but the log holds {head}",
                    runs.end()
                )));
            }
            if let Some(why) = runs.broken() {
                tracing::error!(index = name, reason = %why, "the {name} index is damaged: lookups through it fail; run `socai verify` and restore the data dir from a backup");
            }
        }
    }

    /// Reopens sled once [`REFRESH_EVERY_ENTRIES`] entries were committed since it last wrote
    /// its page-table snapshot, so that a restart replays at most about that many entries'
    /// writes. Called by the writer after a commit; postponed (to a later commit) while anything
    /// else holds the store's handles (a reader's iterator, the id filter's fill, a merge in
    /// progress). The writer and readers wait for the reopen: sled's recovery of what was
    /// written since the last one, and its snapshot (0.1–0.6 s up to 10M entries).
    pub fn refresh_if_due(&self) -> Result<bool> {
        self.refresh_after(self.refresh_every)
    }

    /// [`SledStorage::refresh_if_due`] with another threshold (tests).
    #[doc(hidden)]
    pub fn refresh_after(&self, entries: u64) -> Result<bool> {
        let since = self.since_snapshot.load(Ordering::Acquire);
        if since < entries {
            return Ok(false);
        }
        let postponed = |why: &str| {
            // Said once each time another threshold's worth has gone by without a reopen.
            let overdue = since / entries.max(1);
            if overdue >= 2 && self.overdue_warned.swap(overdue, Ordering::AcqRel) != overdue {
                tracing::warn!(
                    entries_since_snapshot = since,
                    why,
                    "the store's reopen keeps being postponed: a restart now would replay everything since the last one (long-lived readers such as exports hold the store)"
                );
            }
            Ok(false)
        };
        let Ok(mut slot) = self.handles.try_write() else {
            return postponed("a reader holds the store");
        };
        let Some(h) = slot.as_ref() else {
            return Ok(false); // a failed reopen: the next use opens it again
        };
        if Arc::strong_count(h) != 1 {
            return postponed("a reader holds the store");
        }
        if self.fill.running.load(Ordering::Acquire) {
            return postponed("the new-id filter is filling");
        }
        if !h.merger.indexes.iter().all(|runs| runs.is_idle()) {
            return postponed("an index merge is running (or failed)");
        }
        let started = std::time::Instant::now();
        h.db.flush().map_err(|e| self.err(e))?;
        // Stops and joins the mergers, flushes and closes sled.
        drop(slot.take());
        let reopened = self.reopen();
        let h = match reopened {
            Ok(h) => h,
            Err(e) => {
                *self.reopen_failed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), e.to_string()));
                return Err(e);
            }
        };
        *slot = Some(Arc::new(h));
        drop(slot);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            entries = since,
            ms = started.elapsed().as_millis() as u64,
            "store reopened, so that a restart replays no more than what comes after it"
        );
        Ok(true)
    }

    /// How many times the store was reopened by [`SledStorage::refresh_if_due`].
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// [`Storage::commit`] without the reopen that may follow it.
    fn commit_batch(&self, batch: CommitBatch) -> Result<()> {
        let h = self.h()?;
        let mut b = sled::Batch::default();
        let first_seq = batch.new_head.size - batch.entries.len() as u64;
        let mut seq = first_seq;
        let mut rest = &batch.entries[..];
        while !rest.is_empty() {
            let (k, offset) = Self::bundle_key(seq);
            let mut value = if offset == 0 {
                Vec::new()
            } else {
                let stored = self.get(&k)?.unwrap_or_default();
                let existing = open_bundle(&stored)
                    .map(|v| v.into_owned())
                    .unwrap_or_default();
                if split_bundle(&existing).map(|e| e.len()) != Some(offset) {
                    return Err(StorageError::Corrupt(format!(
                        "entry bundle {} does not hold the {offset} entries before seq {seq}",
                        seq / ENTRY_BUNDLE
                    )));
                }
                existing
            };
            let take = rest.len().min(ENTRY_BUNDLE as usize - offset);
            for entry in &rest[..take] {
                let len = u32::try_from(entry.len())
                    .ok()
                    .filter(|&len| len < 1 << 24)
                    .ok_or_else(|| {
                        StorageError::Corrupt(format!("entry {seq} is larger than 16 MiB"))
                    })?;
                value.extend_from_slice(&len.to_be_bytes());
                value.extend_from_slice(entry);
            }
            // Only a full bundle is compressed: the partial last one is rewritten by the next
            // commit, so it stays plain until then.
            if offset + take == ENTRY_BUNDLE as usize {
                value = seal_bundle(value);
            }
            b.insert(&k, value);
            rest = &rest[take..];
            seq += take as u64;
        }
        // Before the batch is applied: the filter may only over-approximate the index.
        let id_fps: Vec<u64> = batch
            .ids
            .iter()
            .map(|(event, _)| event_fingerprint(&event.agency, &event.id))
            .collect();
        self.ids.insert_events(id_fps.iter().copied());
        for (event, stream_seq) in &batch.copies {
            b.insert(Self::copy_key(event, *stream_seq), &[][..]);
        }
        for event in &batch.erasures_pending {
            b.insert(Self::event_key(b'y', event), &[][..]);
        }
        for event in &batch.erasures_done {
            b.remove(Self::event_key(b'y', event));
        }
        for (stream_seq, time_ns, mark) in &batch.sync_marks {
            b.insert(Self::sync_mark_key(*stream_seq, *time_ns), &mark[..]);
        }
        let runs = (!batch.entries.is_empty()).then(|| {
            let end = batch.new_head.size;
            let ids = id_fps
                .iter()
                .zip(&batch.ids)
                .map(|(fp, (_, rec))| (*fp, rec.seq))
                .collect();
            let dossiers = batch
                .dossiers
                .iter()
                .map(|(dossier, seq)| (dossier_fingerprint(dossier), *seq))
                .collect();
            (
                h.events.add(&mut b, first_seq, end, ids),
                h.dossiers.add(&mut b, first_seq, end, dossiers),
            )
        });
        // Stored hashes: rewrite the partial first chunk, then whole chunks.
        let mut idx = batch.hashes_from;
        let mut rest = &batch.hashes[..];
        while !rest.is_empty() {
            let chunk = idx / HASH_CHUNK;
            let offset = (idx % HASH_CHUNK) as usize;
            let mut value = if offset == 0 {
                Vec::with_capacity(HASH_CHUNK as usize * 32)
            } else {
                let existing = self
                    .get(&key(b'h', chunk))?
                    .map(|v| v.to_vec())
                    .unwrap_or_default();
                if existing.len() != offset * 32 {
                    return Err(StorageError::Corrupt(format!(
                        "hash chunk {chunk} holds {} hashes, expected {offset}",
                        existing.len() / 32
                    )));
                }
                existing
            };
            let take = rest.len().min(HASH_CHUNK as usize - offset);
            for h in &rest[..take] {
                value.extend_from_slice(&h.0);
            }
            b.insert(&key(b'h', chunk), value);
            rest = &rest[take..];
            idx += take as u64;
        }
        // Keys first, durable before the commit that refers to them (see crate::keystore): drawn
        // ahead, so most commits find theirs already fsynced.
        let first_slot = self.next_slot.load(Ordering::SeqCst);
        let new_slots = batch.personal.len() as u64;
        if new_slots > 0 {
            let keys = self
                .reserve
                .lock()
                .expect("key reserve")
                .take(first_slot, batch.personal.len())?;
            self.seal_into(&mut b, first_slot, &batch.personal, &keys)?;
            b.insert(SLOTS_KEY, &(first_slot + new_slots).to_be_bytes()[..]);
        }
        let mut destroy = Vec::with_capacity(batch.erase_personal.len());
        for seq in &batch.erase_personal {
            if let Some(slot) = self.slot_of(*seq)? {
                b.insert(&key(b'z', slot), &[][..]);
                destroy.push(slot);
            }
            b.remove(&key(b'p', *seq));
        }
        for (size, note) in &batch.checkpoints {
            b.insert(&key(b'c', *size), note.as_bytes());
        }
        if let Some(cursor) = batch.source_cursor {
            let mut value = cursor.to_be_bytes().to_vec();
            if let Some(time) = batch.source_cursor_time {
                value.extend_from_slice(&time.to_be_bytes());
            }
            b.insert(CURSOR_KEY, value);
        }
        if let Some(seq) = batch.source_read_through {
            b.insert(READ_THROUGH_KEY, &seq.to_be_bytes()[..]);
        }
        let mut head = [0u8; 40];
        head[..8].copy_from_slice(&batch.new_head.size.to_be_bytes());
        head[8..].copy_from_slice(&batch.new_head.leaf.0);
        b.insert(HEAD_KEY, &head[..]);
        h.tree.apply_batch(b).map_err(|e| self.err(e))?;
        // The runs are in the tree now, so in the lists too (readers see only durable sizes).
        if let Some((ids, dossiers)) = runs {
            h.events.installed(ids);
            h.dossiers.installed(dossiers);
        }
        if let Some(to_go) = &self.abort_before_fsync
            && !batch.entries.is_empty()
            && to_go.fetch_sub(1, Ordering::SeqCst) == 1
        {
            eprintln!(
                "{FAULT_ENV}=abort-before-fsync: stalling, then aborting before the fsync (test-only fault point)"
            );
            std::thread::sleep(std::time::Duration::from_secs(1));
            std::process::abort();
        }
        h.db.flush().map_err(|e| self.err(e))?;
        self.next_slot
            .store(first_slot + new_slots, Ordering::SeqCst);
        if !destroy.is_empty() {
            // The record is gone from the durable tree: now the key, in place.
            self.finish_erasures()?;
        }
        Ok(())
    }

    /// Low-level access for tamper tests and the storage benchmark baseline (holds the store's
    /// handles while it lives).
    pub fn raw_tree(&self) -> Held<sled::Tree> {
        let h = self.h().expect("the store is open");
        Held {
            value: h.tree.clone(),
            _handles: h,
        }
    }

    pub fn raw_db(&self) -> Held<sled::Db> {
        let h = self.h().expect("the store is open");
        Held {
            value: h.db.clone(),
            _handles: h,
        }
    }

    /// Key of the bundle holding entry `seq`, and the entry's position in it.
    pub fn bundle_key(seq: u64) -> ([u8; 9], usize) {
        (key(b'b', seq / ENTRY_BUNDLE), (seq % ENTRY_BUNDLE) as usize)
    }

    pub fn id_key(agency: &str, id: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(id.len() + agency.len() + 2);
        k.push(b'i');
        k.extend_from_slice(id.as_bytes());
        k.push(0);
        k.extend_from_slice(agency.as_bytes());
        k
    }

    /// Key prefix of everything about one agency's event under `kind` (`x`, `y`).
    fn event_key(kind: u8, event: &EventKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(event.id.len() + event.agency.len() + 3);
        k.push(kind);
        k.extend_from_slice(event.agency.as_bytes());
        k.push(0);
        k.extend_from_slice(event.id.as_bytes());
        k
    }

    fn copy_key(event: &EventKey, stream_seq: u64) -> Vec<u8> {
        let mut k = Self::event_key(b'x', event);
        k.push(0);
        k.extend_from_slice(&stream_seq.to_be_bytes());
        k
    }

    /// `s` + EVENTS seq + JetStream time: a decided sync body.
    fn sync_mark_key(stream_seq: u64, time_ns: i64) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        k.push(b's');
        k.extend_from_slice(&stream_seq.to_be_bytes());
        k.extend_from_slice(&time_ns.to_be_bytes());
        k
    }

    /// What the id index needs of entry `seq` (an index match): its agency, id, and record.
    fn id_at(&self, seq: u64) -> Result<(String, String, IdRecord)> {
        self.indexed_entry(seq, "id", |parts| {
            let digest = crate::ledger::content_digest(
                parts.event,
                parts.header.personal_commitment.as_ref(),
            );
            (
                parts.agency.into_owned(),
                parts.id.into_owned(),
                IdRecord { seq, digest },
            )
        })
    }

    /// What `f` reads of entry `seq`, which the `index` index names (a match to confirm).
    fn indexed_entry<T>(
        &self,
        seq: u64,
        index: &str,
        f: impl FnOnce(socai_chain::entry::EntryParts<'_>) -> T,
    ) -> Result<T> {
        let entry = self.entry(seq)?.ok_or_else(|| {
            StorageError::Corrupt(format!(
                "the {index} index names entry {seq}, which is missing; run `socai verify`"
            ))
        })?;
        let parts = socai_chain::Entry::decode_parts(&entry).map_err(|e| {
            StorageError::Corrupt(format!(
                "entry {seq} cannot be read: {e}; run `socai verify`"
            ))
        })?;
        Ok(f(parts))
    }

    /// The id index's runs (tests that tamper with them).
    #[doc(hidden)]
    pub fn event_runs(&self) -> Held<Arc<Runs>> {
        let h = self.h().expect("the store is open");
        Held {
            value: h.events.clone(),
            _handles: h,
        }
    }

    /// The dossier index's runs (tests that tamper with them).
    #[doc(hidden)]
    pub fn dossier_runs(&self) -> Held<Arc<Runs>> {
        let h = self.h().expect("the store is open");
        Held {
            value: h.dossiers.clone(),
            _handles: h,
        }
    }

    /// A layout-2 dossier index key (the bench's per-key baseline writes these; layout 3 has none).
    pub fn dossier_key(dossier: &str, seq: u64) -> Vec<u8> {
        let mut k = dossier_prefix(dossier);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
}

impl Storage for SledStorage {
    fn head(&self) -> Result<Head> {
        match self.get(HEAD_KEY)? {
            None => Ok(Head::default()),
            Some(v) => {
                let size = be_u64(&v)
                    .ok_or_else(|| StorageError::Corrupt("head record is truncated".into()))?;
                let leaf = hash_at(&v[8..], 0)
                    .ok_or_else(|| StorageError::Corrupt("head record is truncated".into()))?;
                Ok(Head { size, leaf })
            }
        }
    }

    fn commit(&self, batch: CommitBatch) -> Result<()> {
        let entries = batch.entries.len() as u64;
        self.commit_batch(batch)?;
        self.since_snapshot.fetch_add(entries, Ordering::AcqRel);
        // The commit is durable whatever comes of the reopen: a failed one is logged, and the
        // next use of the store opens it again.
        if let Err(e) = self.refresh_if_due() {
            tracing::error!(error = %e, "reopening the store (to bound sled's recovery at the next start) failed; the next read or commit opens it again");
        }
        Ok(())
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let (k, offset) = Self::bundle_key(seq);
        let Some(bundle) = self.get(&k)? else {
            return Ok(None);
        };
        let plain = open_bundle(&bundle);
        let entries = plain.as_deref().and_then(split_bundle).ok_or_else(|| {
            StorageError::Corrupt(format!("entry bundle {} is truncated", seq / ENTRY_BUNDLE))
        })?;
        Ok(entries.get(offset).map(|e| e.to_vec()))
    }

    fn entries(&self, from: u64, to: u64) -> Box<dyn Iterator<Item = Result<(u64, Vec<u8>)>> + '_> {
        let first = from / ENTRY_BUNDLE;
        let last = to.div_ceil(ENTRY_BUNDLE);
        let h = match self.h() {
            Ok(h) => h,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let bundles = h.tree.range(key(b'b', first)..key(b'b', last));
        Box::new(bundles.flat_map(move |r| {
            let _held = &h;
            let decoded = r.map_err(|e| self.err(e)).and_then(|(k, v)| {
                let index = be_u64(&k[1..])
                    .ok_or_else(|| StorageError::Corrupt("bundle key is truncated".into()))?;
                let plain = open_bundle(&v);
                let entries = plain.as_deref().and_then(split_bundle).ok_or_else(|| {
                    StorageError::Corrupt(format!("entry bundle {index} is truncated"))
                })?;
                let base = index * ENTRY_BUNDLE;
                Ok((base..)
                    .zip(entries)
                    .filter(|(seq, _)| (from..to).contains(seq))
                    .map(|(seq, e)| Ok((seq, e.to_vec())))
                    .collect::<Vec<_>>())
            });
            match decoded {
                Ok(items) => items,
                Err(e) => vec![Err(e)],
            }
        }))
    }

    fn read_entries(
        &self,
        from: u64,
        to: u64,
        buf: &mut Vec<u8>,
        spans: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<()> {
        let h = self.h()?;
        let (base, first, last) = (spans.len(), from / ENTRY_BUNDLE, to.div_ceil(ENTRY_BUNDLE));
        for item in h.tree.range(key(b'b', first)..key(b'b', last)) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let index = be_u64(&k[1..])
                .ok_or_else(|| StorageError::Corrupt("bundle key is truncated".into()))?;
            // A gap: the bundle holding the next expected entry is not in the store (what follows
            // is not read, as with `entries`).
            if (index * ENTRY_BUNDLE).max(from) != from + (spans.len() - base) as u64 {
                return Ok(());
            }
            let truncated = || StorageError::Corrupt(format!("entry bundle {index} is truncated"));
            let start = buf.len();
            if !open_bundle_into(&v, buf) {
                return Err(truncated());
            }
            // Split the plain bundle in place: each entry is its length, then its bytes.
            let (mut at, mut seq) = (start, index * ENTRY_BUNDLE);
            while at < buf.len() {
                let len = buf
                    .get(at..at + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .filter(|len| at + 4 + len <= buf.len())
                    .ok_or_else(truncated)?;
                if (from..to).contains(&seq) {
                    spans.push(at + 4..at + 4 + len);
                }
                at += 4 + len;
                seq += 1;
            }
        }
        Ok(())
    }

    fn id(&self, agency: &str, id: &str) -> Result<Option<IdRecord>> {
        let h = self.h()?;
        for seq in h.events.lookup(event_fingerprint(agency, id))? {
            let (a, i, rec) = self.id_at(seq)?;
            if a == agency && i == id {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    fn id_if_known(&self, agency: &str, id: &str) -> Result<Option<IdRecord>> {
        self.start_fill();
        if !self.ids.may_hold(agency, id) {
            return Ok(None);
        }
        self.id(agency, id)
    }

    fn ids_named(&self, id: &str) -> Result<Vec<(String, IdRecord)>> {
        let h = self.h()?;
        let (lo, hi) = id_fingerprints(id);
        let mut out = Vec::new();
        for seq in h.events.lookup_range(lo, hi)? {
            let (agency, i, rec) = self.id_at(seq)?;
            if i == id {
                out.push((agency, rec));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn id_index(&self, each: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let h = self.h()?;
        h.events.check(each)
    }

    fn id_index_in_order(&self, each: &mut dyn FnMut(u64, u64) -> Result<bool>) -> Result<()> {
        let h = self.h()?;
        h.events.in_fingerprint_order(each)
    }

    fn dossier_index(&self, each: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let h = self.h()?;
        h.dossiers.check(each)
    }

    fn sync_mark(&self, stream_seq: u64, time_ns: i64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get(&Self::sync_mark_key(stream_seq, time_ns))?
            .map(|v| v.to_vec()))
    }

    fn copies(&self, event: &EventKey) -> Result<Vec<u64>> {
        let h = self.h()?;
        let mut prefix = Self::event_key(b'x', event);
        prefix.push(0);
        let mut out = Vec::new();
        for r in h.tree.scan_prefix(&prefix) {
            let (k, _) = r.map_err(|e| self.err(e))?;
            out.push(
                be_u64(&k[prefix.len()..])
                    .ok_or_else(|| StorageError::Corrupt("copy key is truncated".into()))?,
            );
        }
        Ok(out)
    }

    fn erasures_pending(&self) -> Result<Vec<EventKey>> {
        let h = self.h()?;
        let mut out = Vec::new();
        for r in h.tree.scan_prefix(b"y") {
            let (k, _) = r.map_err(|e| self.err(e))?;
            let text = std::str::from_utf8(&k[1..])
                .map_err(|_| StorageError::Corrupt("an erasure key is not UTF-8".into()))?;
            let (agency, id) = text.split_once('\0').ok_or_else(|| {
                StorageError::Corrupt(format!("erasure key {text:?} is malformed"))
            })?;
            out.push(EventKey::new(agency, id));
        }
        Ok(out)
    }

    fn dossier(&self, dossier: &str) -> Result<Vec<u64>> {
        let h = self.h()?;
        let mut seqs = h.dossiers.lookup(dossier_fingerprint(dossier))?;
        // A fingerprint names a dossier only probably: each match is confirmed by its entry.
        let mut keep = Vec::with_capacity(seqs.len());
        for &seq in &seqs {
            keep.push(self.indexed_entry(seq, "dossier", |parts| parts.dossier == dossier)?);
        }
        let mut keep = keep.into_iter();
        seqs.retain(|_| keep.next().unwrap_or(false));
        Ok(seqs)
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut cached: Option<(u64, sled::IVec)> = None;
        for &i in indexes {
            let chunk = i / HASH_CHUNK;
            if cached.as_ref().map(|(c, _)| *c) != Some(chunk) {
                let v = self.get(&key(b'h', chunk))?.ok_or_else(|| {
                    StorageError::Corrupt(format!("merkle hash chunk {chunk} is missing"))
                })?;
                cached = Some((chunk, v));
            }
            let (_, v) = cached.as_ref().expect("chunk cached above");
            out.push(hash_at(v, (i % HASH_CHUNK) as usize).ok_or_else(|| {
                StorageError::Corrupt(format!("merkle stored hash {i} is missing"))
            })?);
        }
        Ok(out)
    }

    fn personal(&self, seq: u64) -> Result<Option<PersonalRecord>> {
        let Some(v) = self.get(&key(b'p', seq))? else {
            return Ok(None);
        };
        self.unseal_live(seq, &v)
    }

    /// One range scan over the seqs' span instead of a lookup each (verify reads a whole range's
    /// records: a sled `get` per record was a quarter of their cost). Should the scan fail, the
    /// seqs from there on are looked up one by one, so each gets the answer `personal` gives.
    fn personal_plain_each(&self, seqs: &[u64]) -> Vec<Result<Option<PlainRecord>>> {
        let (Some(&from), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(seqs.len());
        if let Ok(h) = self.h() {
            let mut stored = h.tree.range(key(b'p', from)..=key(b'p', last)).peekable();
            let mut found = Vec::with_capacity(seqs.len());
            for &seq in seqs {
                // Pass the records of seqs not asked for; stop at the first at or past `seq`.
                let found_here = loop {
                    match stored.peek() {
                        Some(Ok((k, _))) => match be_u64(&k[1..]) {
                            Some(s) if s < seq => {
                                stored.next();
                            }
                            Some(s) if s == seq => break Some(stored.next()),
                            Some(_) => break Some(None),
                            None => break None,
                        },
                        None => break Some(None),
                        Some(Err(_)) => break None,
                    }
                };
                match found_here {
                    Some(Some(Ok((_, v)))) => found.push(Some(v)),
                    Some(None) => found.push(None),
                    // A read error or a malformed key: `personal` names it, seq by seq.
                    _ => break,
                }
            }
            // Each record found opened, or why not; the keys of the sealed ones read together.
            let mut opened: Vec<Option<Result<PlainRecord>>> = Vec::with_capacity(found.len());
            let (mut sealed, mut slots) = (Vec::new(), Vec::new());
            for (i, (v, &seq)) in found.iter().zip(seqs).enumerate() {
                opened.push(match v.as_deref().map(|v| sealed_slot(seq, v)) {
                    // No record: answered below.
                    None => None,
                    Some(Err(e)) => Some(Err(e)),
                    Some(Ok(slot)) => {
                        sealed.push(i);
                        slots.push(slot);
                        None
                    }
                });
            }
            self.keys.read_each(&slots, |k, key| {
                let i = sealed[k];
                let v = found[i].as_deref().expect("a sealed record was found");
                opened[i] = Some(open_sealed(seqs[i], v, key));
            });
            for ((v, &seq), opened) in found.iter().zip(seqs).zip(opened) {
                out.push(match (v, opened) {
                    (None, _) => Ok(None),
                    (Some(_), Some(opened)) => self.live(seq, opened),
                    (Some(_), None) => unreachable!("read_each answers every slot"),
                });
            }
        }
        let done = out.len();
        out.extend(
            seqs[done..]
                .iter()
                .map(|&seq| match self.get(&key(b'p', seq))? {
                    Some(v) => self.unseal_plain_live(seq, &v),
                    None => Ok(None),
                }),
        );
        out
    }

    fn personal_range(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, PersonalRecord)>> + '_> {
        let h = match self.h() {
            Ok(h) => h,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(
            h.tree
                .clone()
                .range(key(b'p', from)..key(b'p', to))
                .map(move |r| {
                    let _held = &h;
                    let (k, v) = r.map_err(|e| self.err(e))?;
                    let seq = be_u64(&k[1..])
                        .ok_or_else(|| StorageError::Corrupt("personal key is truncated".into()))?;
                    Ok(self.unseal_live(seq, &v)?.map(|rec| (seq, rec)))
                })
                // A record redacted while this iterator ran is skipped, as if already gone.
                .filter_map(Result::transpose),
        )
    }

    fn checkpoints_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        let h = self.h()?;
        let mut out = Vec::new();
        for r in h
            .tree
            .range(key(b'c', from)..=key(b'c', u64::MAX))
            .take(limit)
        {
            let (k, v) = r.map_err(|e| self.err(e))?;
            let size = be_u64(&k[1..])
                .ok_or_else(|| StorageError::Corrupt("checkpoint key is truncated".into()))?;
            out.push((size, String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        let h = self.h()?;
        let last = h.tree.range(key(b'c', 0)..=key(b'c', u64::MAX)).next_back();
        match last {
            None => Ok(None),
            Some(r) => {
                let (k, v) = r.map_err(|e| self.err(e))?;
                let size = be_u64(&k[1..])
                    .ok_or_else(|| StorageError::Corrupt("checkpoint key is truncated".into()))?;
                Ok(Some((size, String::from_utf8_lossy(&v).into_owned())))
            }
        }
    }

    fn checkpoint(&self, size: u64) -> Result<Option<String>> {
        Ok(self
            .get(&key(b'c', size))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn source_cursor(&self) -> Result<Option<u64>> {
        match self.get(CURSOR_KEY)? {
            None => Ok(None),
            Some(v) => be_u64(&v)
                .map(Some)
                .ok_or_else(|| StorageError::Corrupt("source cursor is truncated".into())),
        }
    }

    fn source_read_through(&self) -> Result<Option<u64>> {
        match self.get(READ_THROUGH_KEY)? {
            None => Ok(None),
            Some(v) => be_u64(&v)
                .map(Some)
                .ok_or_else(|| StorageError::Corrupt("source read-through is truncated".into())),
        }
    }

    fn source_cursor_time(&self) -> Result<Option<i64>> {
        // Older stores wrote the seq alone (8 bytes).
        Ok(self.get(CURSOR_KEY)?.and_then(|v| {
            v.get(8..16)
                .map(|t| i64::from_be_bytes(t.try_into().expect("8 bytes")))
        }))
    }

    fn size_on_disk(&self) -> Result<u64> {
        let h = self.h()?;
        h.db.size_on_disk().map_err(|e| self.err(e))
    }
}

/// Inserts every id of the stored index into `ids`, then marks it complete; gives up (leaving it
/// incomplete, so that it keeps answering "maybe") on a read error or a damaged index, and stops
/// early when `stop` is set.
fn fill_id_filter(runs: &Runs, ids: &IdFilter, stop: &AtomicBool, testing: &IdFilterTesting) {
    let started = std::time::Instant::now();
    let chunk = testing.fill_chunk.unwrap_or(4096).max(1);
    let mut gate = testing.fill_gate.clone();
    let filled = runs.fingerprints(chunk, |fps| {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        ids.insert_events(fps.iter().copied());
        if let Some(gate) = gate.take() {
            gate.wait();
            gate.wait();
        }
        true
    });
    match filled {
        Ok(true) => {
            ids.set_complete();
            let (held, bytes, _) = ids.usage();
            tracing::debug!(
                ids = held,
                bytes,
                secs = started.elapsed().as_secs_f64(),
                "new-id filter ready"
            );
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "reading the id index failed; the new-id filter stays off (run `socai verify`)");
        }
    }
}

/// Adapts a [`Storage`] to the Merkle code's hash reader.
pub struct StoredHashes<'a, S: Storage + ?Sized>(pub &'a S);

impl<S: Storage + ?Sized> socai_chain::HashReader for StoredHashes<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, MerkleError> {
        self.0
            .read_hashes(indexes)
            .map_err(|e| MerkleError::Read(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Vec<u8> {
        let entries: Vec<Vec<u8>> = (0..ENTRY_BUNDLE)
            .map(|i| {
                format!(r#"{{"seq":{i},"type":"dossier.submitted","agency":"000.00.12.H01"}}"#)
                    .into_bytes()
            })
            .collect();
        join_bundle(&entries.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    #[test]
    fn an_lz4_bundle_opens_to_its_bytes_and_an_altered_one_fails_its_checksum() {
        let plain = bundle();
        let sealed = seal_bundle(plain.clone());
        assert_eq!(sealed[0], LZ4_BUNDLE);
        assert!(sealed.len() < plain.len());
        assert_eq!(open_bundle(&sealed).as_deref(), Some(&plain[..]));
        let mut out = b"kept".to_vec();
        assert!(open_bundle_into(&sealed, &mut out));
        assert_eq!(&out[4..], &plain[..]);
        // A block's last bytes are literals: altered, it still decompresses, to other bytes; the
        // checksum is what refuses it.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let mut other = vec![0u8; plain.len()];
        let n = lz4_flex::block::decompress_into(&bad[LZ4_HEADER..], &mut other).unwrap();
        assert_eq!(n, plain.len());
        assert_ne!(other, plain);
        assert!(open_bundle(&bad).is_none());
        let mut out = b"kept".to_vec();
        assert!(!open_bundle_into(&bad, &mut out));
        assert_eq!(out, b"kept");
        // So is an altered checksum, a plain length that is not the block's, and a cut block.
        let mut bad = sealed.clone();
        bad[7] ^= 0x01;
        assert!(open_bundle(&bad).is_none());
        let mut bad = sealed.clone();
        bad[1..5].copy_from_slice(&(plain.len() as u32 + 1).to_be_bytes());
        assert!(open_bundle(&bad).is_none());
        assert!(open_bundle(&sealed[..sealed.len() - 9]).is_none());
        // A length beyond what the block could expand to is refused before any decompression.
        let mut bad = sealed[..LZ4_HEADER + 4].to_vec();
        bad[1..5].copy_from_slice(&(4u32 * 255 + 1).to_be_bytes());
        assert_eq!(compressed_len(&bad), None);
        bad[1..5].copy_from_slice(&(4u32 * 255).to_be_bytes());
        assert_eq!(compressed_len(&bad), Some(4 * 255));
        assert!(open_bundle(&sealed[..3]).is_none());
    }

    #[test]
    fn index_fingerprints_are_the_ones_on_disk() {
        // Computed independently (Python's hashlib and the FNV-1a fold by hand): stores written
        // by any build must keep finding their keys.
        assert_eq!(id_fingerprints("HS-2026-000123").0, 0x74c6_27d1_2921_0000);
        assert_eq!(
            event_fingerprint("000.00.12.H01", "HS-2026-000123"),
            0x74c6_27d1_2921_4ccd
        );
        assert_eq!(
            dossier_fingerprint("H01.12-261201-0001"),
            0xd429_81c3_c430_73ff
        );
        // 120 bytes after the domain prefix: past the short path, through the streaming hasher.
        assert_eq!(dossier_fingerprint(&"Đ".repeat(60)), 0xea07_1a76_49a4_639c);
        let (l, r) = (
            socai_chain::hash::sha256(b"left"),
            socai_chain::hash::sha256(b"right"),
        );
        assert_eq!(
            socai_chain::hash::node_hash(&l, &r).to_hex(),
            "09bda0c49344a4274d2202b56814924b5a20542fa05d321b5476b1cff86e4f1e"
        );
    }

    proptest::proptest! {
        /// Verify's batched fingerprints are the index's own, one by one, for any strings
        /// (empty, multi-byte, past one SHA-256 block) in any number.
        #[test]
        fn batched_fingerprints_are_the_single_ones(
            events in proptest::collection::vec(("\\PC{0,20}", "\\PC{0,90}"), 0..40),
            dossiers in proptest::collection::vec("\\PC{0,90}", 0..40),
        ) {
            let pairs: Vec<(&str, &str)> =
                events.iter().map(|(a, i)| (a.as_str(), i.as_str())).collect();
            let names: Vec<&str> = dossiers.iter().map(String::as_str).collect();
            let (ids, keys) = fingerprints_many(&pairs, &names);
            let singles: Vec<u64> = pairs.iter().map(|(a, i)| event_fingerprint(a, i)).collect();
            proptest::prop_assert_eq!(ids, singles);
            let singles: Vec<u64> = names.iter().map(|d| dossier_fingerprint(d)).collect();
            proptest::prop_assert_eq!(keys, singles);
        }

        /// lz4_flex decodes with its pointer-based (unsafe) decoder (ARCHITECTURE.md,
        /// "Decisions"), which keeps its bounds checks: a damaged or hostile block (a store an
        /// auditor verifies is not trusted) fails or opens to other bytes, never reads or
        /// writes out of bounds or panics.
        #[test]
        fn any_damage_to_a_bundle_is_refused_or_caught_never_a_crash(
            edits in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8),
            cut in 0usize..4096,
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let plain = bundle();
            let sealed = seal_bundle(plain.clone());
            let mut bad = sealed.clone();
            for (at, byte) in edits {
                let at = at % bad.len();
                bad[at] = byte;
            }
            bad.truncate(cut.max(1).min(bad.len()));
            for stored in [&bad[..], &[&sealed[..LZ4_HEADER], &noise[..]].concat()[..]] {
                // Still claiming LZ4, it opens only to the bundle the checksum names.
                if stored[0] == LZ4_BUNDLE && let Some(opened) = open_bundle(stored) {
                    proptest::prop_assert_eq!(&opened[..], &plain[..]);
                }
                let mut out = b"kept".to_vec();
                if !open_bundle_into(stored, &mut out) {
                    proptest::prop_assert_eq!(&out[..], b"kept");
                }
                let mut into = vec![0u8; plain.len()];
                let _ = lz4_flex::block::decompress_into(stored.get(LZ4_HEADER..).unwrap_or(&[]), &mut into);
            }
        }
    }
}
