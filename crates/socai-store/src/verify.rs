//! Full verification of a stored ledger on every core: each entry's structure, canonical form and
//! leaf hash, seqs without gaps, `prev` links, the stored Merkle hashes (re-derived from the
//! entries and compared one by one), every stored signed checkpoint (signature by the trusted key
//! and root at its size), the head record, personal data against commitments where present (and,
//! where it is gone, a redaction entry that says why), and the id and dossier indexes against the
//! entries.
//!
//! Pipeline: the ranges of the log (cut also at checkpoint sizes) go to worker threads, each of
//! which reads its entries and stored hashes, runs [`socai_chain::verify_chunk_parts`] and opens
//! the personal records; the calling thread joins ranges in order, re-derives the stored hashes
//! while it grows the root, and compares, so the first bad seq is always the one reported.
//!
//! The indexes are compared as sets: each side is summed into a keyed multiset hash (AES-128 of
//! each pair under a key drawn for this run, summed in two 64-bit lanes, so nobody can prepare a
//! store whose wrong index sums to the right value) while another thread scans the index keys.
//! Equal sums and counts mean equal sets; only on a difference does a second pass look each entry
//! up to name the first bad seq. Equal sums cannot show an event committed twice (its two entries
//! sum alike on both sides), so the index thread then also walks the id index in fingerprint
//! order for that.

use crate::storage::{
    PersonalRecord, PlainRecord, Storage, StorageError, dossier_fingerprint, event_fingerprint,
    fingerprints_many,
};
use rand_core::RngCore;
use socai_chain::checkpoint::{CheckpointError, CheckpointVerifier};
use socai_chain::entry::Entry;
use socai_chain::merkle::stored_hash_count;
use socai_chain::verify::{ChainErrorKind, Chunk};
use socai_chain::{ChainError, ChainVerifier, Hash, verify_chunk_parts};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Chain(#[from] ChainError),
    #[error("seq {size}: checkpoint for tree size {size}: {source}")]
    Checkpoint { size: u64, source: CheckpointError },
    #[error("seq {seq}: head record says {head_size} entries, found {found}")]
    Head {
        seq: u64,
        head_size: u64,
        found: u64,
    },
    #[error(
        "seq {seq}: head record says the leaf hash of entry {seq} is {recorded}, the entries give {computed}"
    )]
    HeadLeaf {
        seq: u64,
        recorded: Hash,
        computed: Hash,
    },
    #[error("pinned checkpoint {index}: {reason}")]
    Pinned { index: usize, reason: String },
    #[error(
        "seq 0: {entries} entries but no signed checkpoint covers any of them; nothing attests the log (run `socai checkpoint` if this is a new log)"
    )]
    Unattested { entries: u64 },
    #[error("seq {found}: a checkpoint signs {size} entries but only {found} are stored")]
    Missing { size: u64, found: u64 },
    /// A stored Merkle hash differs from the one the entries imply, or cannot be read.
    #[error("seq {seq}: stored Merkle hash {index} (hash chunk {chunk}) {reason}", chunk = index / crate::storage::HASH_CHUNK)]
    StoredHash {
        seq: u64,
        index: u64,
        reason: String,
    },
    /// A personal record that cannot be opened, or is gone without a redaction entry.
    #[error("seq {seq}: {reason}")]
    Personal { seq: u64, reason: String },
    /// The id or dossier index disagrees with the entries.
    #[error("seq {seq}: {reason}")]
    Index { seq: u64, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl VerifyError {
    /// The first bad seq, when the failure is tied to one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Chain(e) => Some(e.seq),
            VerifyError::Checkpoint { size, .. } => Some(*size),
            VerifyError::Head { seq, .. } | VerifyError::HeadLeaf { seq, .. } => Some(*seq),
            VerifyError::Missing { found, .. } => Some(*found),
            VerifyError::Unattested { .. } => Some(0),
            VerifyError::StoredHash { seq, .. }
            | VerifyError::Personal { seq, .. }
            | VerifyError::Index { seq, .. } => Some(*seq),
            VerifyError::Pinned { .. } => None,
            VerifyError::Storage(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub threads: usize,
    pub chunk_entries: usize,
    /// Signed checkpoint notes the auditor kept (e.g. yesterday's): each must verify under the
    /// trusted key and match the stored log's root at its size.
    pub pinned: Vec<String>,
    /// Check the id and dossier indexes against the entries (on by default).
    pub indexes: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        VerifyOptions {
            threads,
            chunk_entries: 4096,
            pinned: Vec::new(),
            indexes: true,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub entry_bytes: u64,
    pub root: Hash,
    pub checkpoints_checked: usize,
    /// Size of the latest signed checkpoint (0 if none): entries beyond it are not yet attested.
    pub latest_checkpoint_size: u64,
    pub personal_checked: u64,
    /// Personal records found erased, each with its redaction entry.
    pub personal_redacted: u64,
    /// Auditor-pinned checkpoints that matched.
    pub pinned_checked: usize,
    /// Stored Merkle hashes re-derived from the entries and compared.
    pub stored_hashes_checked: u64,
    /// Whether the id and dossier indexes were checked (then each holds exactly one key per entry).
    pub indexes_checked: bool,
}

/// Order-independent sum of a keyed pseudorandom function of a multiset's items, with its size
/// (an MSet-Add-Hash, Clarke et al. 2003): each (fingerprint, seq) pair is one AES-128 block,
/// encrypted under a key drawn for this run, and the sum is taken in two 64-bit lanes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SetSum {
    count: u64,
    a: u64,
    b: u64,
}

impl SetSum {
    fn merge(&mut self, other: SetSum) {
        self.count += other.count;
        self.a = self.a.wrapping_add(other.a);
        self.b = self.b.wrapping_add(other.b);
    }
}

/// The run's key, drawn after the store was written: nobody who prepared the store knew it. The
/// pairs on each side are distinct (seqs are unique; an index run's pairs strictly increase), so
/// two different sides differ by a sum of ±1 times AES outputs under the key, which is zero with
/// probability about 2^-128 (AES-128 as a random permutation). Encrypted [`SUM_BATCH`] blocks at a
/// time with AES-NI, it costs a seventh of the two SipHash-1-3 sums it replaced (x86-64, measured
/// here); aes 0.8 on aarch64 uses its software AES unless built with `--cfg aes_armv8`. The key
/// guards nothing once the run ends, so its schedule is not wiped.
struct SetKeys(aes::Aes128Enc);

impl SetKeys {
    fn new() -> Self {
        use aes::cipher::KeyInit;
        let mut key = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut key);
        SetKeys(aes::Aes128Enc::new(&key.into()))
    }
}

/// Items encrypted together: AES's rounds pipeline across blocks, one block alone waits on each.
const SUM_BATCH: usize = 64;

/// Sums items into a [`SetSum`], [`SUM_BATCH`] at a time.
struct Summer<'k> {
    keys: &'k SetKeys,
    blocks: Vec<aes::Block>,
    sum: SetSum,
}

impl<'k> Summer<'k> {
    fn new(keys: &'k SetKeys) -> Self {
        Summer {
            keys,
            blocks: Vec::with_capacity(SUM_BATCH),
            sum: SetSum::default(),
        }
    }
    fn add(&mut self, (fp, seq): (u64, u64)) {
        let mut block = aes::Block::default();
        block[..8].copy_from_slice(&fp.to_le_bytes());
        block[8..].copy_from_slice(&seq.to_le_bytes());
        self.blocks.push(block);
        if self.blocks.len() == SUM_BATCH {
            self.flush();
        }
    }
    fn flush(&mut self) {
        use aes::cipher::BlockEncrypt;
        self.keys.0.encrypt_blocks(&mut self.blocks);
        for block in self.blocks.drain(..) {
            let (a, b) = block.split_at(8);
            self.sum.merge(SetSum {
                count: 1,
                a: u64::from_le_bytes(a.try_into().expect("8 bytes")),
                b: u64::from_le_bytes(b.try_into().expect("8 bytes")),
            });
        }
    }
    fn finish(mut self) -> SetSum {
        self.flush();
        self.sum
    }
}

/// What a worker learned about entries `[first, last)`.
struct RangeOut {
    chunk: Chunk,
    bytes: u64,
    personal: u64,
    redacted: u64,
    /// Stored hashes `stored_hash_count(first)..`, up to `stored_hash_count(last)` or the first
    /// one that cannot be read (then `stored_error` says why).
    stored: Vec<Hash>,
    stored_error: Option<String>,
    /// The first personal-data problem (before the chunk's own error, if any).
    problem: Option<VerifyError>,
    ids: SetSum,
    dossiers: SetSum,
}

type Work = (u64, u64);
/// The index thread's answer: the id and dossier indexes' sums, and what [`committed_twice`]
/// found.
type IndexSide = (SetSum, SetSum, Result<Option<VerifyError>, VerifyError>);
type RangeResult = Result<RangeOut, VerifyError>;
type Done = (u64, RangeResult);

/// A worker's buffers for the entries of its ranges, reused from one range to the next.
#[derive(Default)]
struct Scratch {
    buf: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
}

/// Reads entries `[first, last)` and checks them (structure, canonical form, seqs, links inside
/// the range, leaf hashes, personal data against commitments), reads their stored hashes and
/// sums their index items. A gap in the store becomes the chunk's error when it comes before any
/// other.
fn check_range<S: Storage>(
    storage: &S,
    first: u64,
    last: u64,
    keys: Option<&SetKeys>,
    scratch: &mut Scratch,
) -> RangeResult {
    let Scratch { buf, spans } = scratch;
    buf.clear();
    spans.clear();
    // Room for the whole range up front (entries are ~0.5 KiB; a larger one grows it): growing
    // from empty by doubling copied and faulted in the first range's bytes several times over.
    buf.reserve(((last - first) as usize).saturating_mul(768).min(64 << 20));
    spans.reserve((last - first) as usize);
    // Up to a gap: the store's position jumped, the entry at the expected position is gone.
    storage.read_entries(first, last, buf, spans)?;
    let refs: Vec<&[u8]> = spans.iter().map(|span| &buf[span.clone()]).collect();
    let bytes = refs.iter().map(|e| e.len() as u64).sum::<u64>();
    let got = first + refs.len() as u64;
    if refs.is_empty() {
        return Err(ChainError {
            seq: first,
            kind: ChainErrorKind::Missing,
        }
        .into());
    }
    // The good entries' index keys, fingerprinted together once the range is checked (many
    // SHA-256s at once are faster than one at a time).
    let mut named = Vec::new();
    let mut chunk = verify_chunk_parts(first, &refs, |seq, parts| {
        if keys.is_some() {
            named.push((seq, parts.agency, parts.id, parts.dossier));
        }
    })?;
    let (ids, dossiers) = match keys {
        None => Default::default(),
        Some(keys) => {
            let events: Vec<(&str, &str)> = named.iter().map(|(_, a, i, _)| (&**a, &**i)).collect();
            let names: Vec<&str> = named.iter().map(|(_, _, _, d)| &**d).collect();
            let (id_fps, dossier_fps) = fingerprints_many(&events, &names);
            let (mut ids, mut dossiers) = (Summer::new(keys), Summer::new(keys));
            for ((seq, ..), (id, dossier)) in named.iter().zip(id_fps.into_iter().zip(dossier_fps))
            {
                ids.add((id, *seq));
                dossiers.add((dossier, *seq));
            }
            (ids.finish(), dossiers.finish())
        }
    };
    if got < last && chunk.error.is_none() {
        chunk.error = Some(ChainError {
            seq: got,
            kind: ChainErrorKind::Missing,
        });
    }
    let (stored, stored_error) = read_stored(storage, first, last);
    // Commitments stop before the chunk's first error, so a problem here always comes first.
    let (mut personal, mut redacted) = (0u64, 0u64);
    let mut problem = None;
    let seqs: Vec<u64> = chunk.commitments.iter().map(|(seq, _)| *seq).collect();
    let records = storage.personal_plain_each(&seqs);
    for ((seq, commitment), record) in chunk.commitments.iter().zip(records) {
        let entry = refs[(seq - first) as usize];
        match check_personal_record(storage, *seq, commitment, entry, record) {
            Ok(true) => personal += 1,
            Ok(false) => redacted += 1,
            Err(e) => {
                problem = Some(e);
                break;
            }
        }
    }
    Ok(RangeOut {
        chunk,
        bytes,
        personal,
        redacted,
        stored,
        stored_error,
        problem,
        ids,
        dossiers,
    })
}

/// The stored hashes of the leaves `[first, last)`, up to the first that cannot be read.
fn read_stored<S: Storage>(storage: &S, first: u64, last: u64) -> (Vec<Hash>, Option<String>) {
    let indexes: Vec<u64> = (stored_hash_count(first)..stored_hash_count(last)).collect();
    match storage.read_hashes(&indexes) {
        Ok(hashes) => (hashes, None),
        Err(_) => {
            let mut hashes = Vec::with_capacity(indexes.len());
            for i in indexes {
                match storage.read_hashes(&[i]) {
                    Ok(h) => hashes.extend(h),
                    Err(e) => return (hashes, Some(storage_reason(&e))),
                }
            }
            (hashes, None)
        }
    }
}

/// A storage error's own words, without the advice meant for other commands.
fn storage_reason(e: &StorageError) -> String {
    match e {
        StorageError::Corrupt(what) => what.clone(),
        other => other.to_string(),
    }
}

/// Checks the personal record of entry `seq` (`record`: what [`Storage::personal_plain_each`]
/// gave) against its commitment: `Ok(true)` if it matches, `Ok(false)` if it is gone and a
/// redaction entry says so.
fn check_personal_record<S: Storage>(
    storage: &S,
    seq: u64,
    commitment: &Hash,
    entry: &[u8],
    record: Result<Option<PlainRecord>, StorageError>,
) -> Result<bool, VerifyError> {
    let fail = |reason: String| VerifyError::Personal { seq, reason };
    // The redaction entry that explains an erased record: its id, and its seq if it exists.
    let redaction = || -> Result<(String, Option<u64>), VerifyError> {
        let parts = Entry::decode_parts(entry).map_err(|e| ChainError {
            seq,
            kind: ChainErrorKind::Entry(e),
        })?;
        let id = format!("{}{}", socai_model::event::REDACTION_ID_PREFIX, parts.id);
        let found = storage.id(&parts.agency, &id)?.filter(|r| r.seq > seq);
        // The index only points: the entry it points to must be that redaction, of this event.
        let found = match found {
            Some(r) => {
                let bytes = storage.entry(r.seq)?;
                let real = bytes
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|e| {
                        let ev = &e["event"];
                        ev["type"] == socai_model::REDACTION_TYPE
                            && ev["id"] == id.as_str()
                            && ev["agency"] == parts.agency.as_ref()
                            && ev["data"]["target_id"] == parts.id.as_ref()
                            && ev["data"]["target_seq"] == seq
                    });
                real.then_some(r.seq)
            }
            None => None,
        };
        Ok((format!("{}/{id}", parts.agency), found))
    };
    match record {
        Ok(Some(plain)) => match PersonalRecord::commitment_of_plain(&plain) {
            Ok(Some(found)) if found == *commitment => Ok(true),
            Ok(_) => Err(ChainError {
                seq,
                kind: ChainErrorKind::PersonalMismatch,
            }
            .into()),
            Err(e) => Err(fail(format!(
                "the personal record cannot be opened: personal record for seq {seq}: {e}"
            ))),
        },
        Ok(None) => match redaction()? {
            (_, Some(_)) => Ok(false),
            (id, None) => Err(fail(format!(
                "the personal record is missing, and no redaction entry {id} after this seq says it was erased"
            ))),
        },
        Err(StorageError::Keys(e)) => Err(fail(match redaction()? {
            (id, Some(at)) => format!(
                "the personal record is still stored although redaction entry {id} (seq {at}) erased it: {e}"
            ),
            (id, None) => format!(
                "the personal record cannot be opened: {e}; and no redaction entry {id} says it was erased"
            ),
        })),
        Err(e) => Err(fail(format!(
            "the personal record cannot be opened: {}",
            storage_reason(&e)
        ))),
    }
}

/// The seq of the leaf whose appending added stored hash `index` (at least `from`).
fn leaf_of(index: u64, from: u64) -> u64 {
    let mut n = from;
    while stored_hash_count(n + 1) <= index {
        n += 1;
    }
    n
}

/// Verifies the whole ledger against `trusted` (the auditor's verifier key). `progress` is called
/// with the number of entries verified so far.
pub fn verify_ledger<S: Storage>(
    storage: &S,
    trusted: &CheckpointVerifier,
    options: &VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, VerifyError> {
    let head = storage.head()?;
    let checkpoints = storage.checkpoints()?;
    let mut signed_roots = BTreeMap::new();
    for (size, note) in &checkpoints {
        let signed = trusted
            .verify(note)
            .map_err(|source| VerifyError::Checkpoint {
                size: *size,
                source,
            })?;
        if signed.checkpoint.size != *size {
            return Err(VerifyError::Checkpoint {
                size: *size,
                source: CheckpointError::Malformed(format!(
                    "stored under size {size} but signs size {}",
                    signed.checkpoint.size
                )),
            });
        }
        signed_roots.insert(*size, signed.checkpoint.root);
    }
    let mut pinned_checked = 0usize;
    for (i, note) in options.pinned.iter().enumerate() {
        let signed = trusted.verify(note).map_err(|source| VerifyError::Pinned {
            index: i,
            reason: source.to_string(),
        })?;
        let size = signed.checkpoint.size;
        match signed_roots.insert(size, signed.checkpoint.root) {
            Some(stored) if stored != signed.checkpoint.root => {
                return Err(VerifyError::Pinned {
                    index: i,
                    reason: format!(
                        "it signs root {} at size {size}, but the log's own checkpoint at that size signs {stored}: the log forked",
                        signed.checkpoint.root
                    ),
                });
            }
            _ => pinned_checked += 1,
        }
    }
    let cuts: BTreeSet<u64> = signed_roots.keys().copied().collect();
    let threads = options.threads.max(1);
    let chunk_entries = options.chunk_entries.max(1);
    let keys = options.indexes.then(SetKeys::new);
    let keys = keys.as_ref();

    // Cut [0, head) into ranges (also at every checkpoint size); each worker reads its own range
    // from the store and checks it, so reading uses every core too.
    let end = head.size;
    let mut ranges = Vec::new();
    let mut first = 0u64;
    while first < end {
        let mut last = (first + chunk_entries as u64).min(end);
        if let Some(&cut) = cuts.range(first + 1..last).next() {
            last = cut;
        }
        ranges.push((first, last));
        first = last;
    }

    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The indexes' side of the set comparison, read while the entries are checked; then the
        // search for an event committed twice (whose answer counts only if the sums agree),
        // here rather than after the entries, where it ran on one core while the other idled.
        let index_sums = keys.map(|keys| {
            let stop = &stop;
            scope.spawn(move || -> Result<IndexSide, VerifyError> {
                let (mut ids, mut dossiers) = (Summer::new(keys), Summer::new(keys));
                if !stop.load(Ordering::Relaxed) {
                    storage.id_index(&mut |fp, seq| ids.add((fp, seq)))?;
                }
                if !stop.load(Ordering::Relaxed) {
                    storage.dossier_index(&mut |fp, seq| dossiers.add((fp, seq)))?;
                }
                let (ids, dossiers) = (ids.finish(), dossiers.finish());
                let twice = committed_twice(storage, stop);
                Ok((ids, dossiers, twice))
            })
        });

        let (work_tx, work_rx) = sync_channel::<Work>(threads * 2);
        let (done_tx, done_rx) = sync_channel::<Done>(threads * 2);
        // Ranges in flight (read, hashing, or waiting to be joined in order) are bounded by tokens:
        // the dispatcher takes one per range, the joiner gives it back once the range is joined.
        let in_flight = threads * 4;
        let (token_tx, token_rx) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            let _ = token_tx.send(());
        }
        scope.spawn(move || {
            for range in ranges {
                if token_rx.recv().is_err() || work_tx.send(range).is_err() {
                    return;
                }
            }
        });
        let work_rx = Arc::new(Mutex::new(work_rx));
        for _ in 0..threads {
            let work_rx: Arc<Mutex<Receiver<Work>>> = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                let mut scratch = Scratch::default();
                loop {
                    let item = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((first, last))) = item else {
                        return;
                    };
                    let checked = check_range(storage, first, last, keys, &mut scratch);
                    if done_tx.send((first, checked)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(work_rx);
        drop(done_tx);

        let mut chain = ChainVerifier::new();
        let mut pending: BTreeMap<u64, RangeResult> = BTreeMap::new();
        let mut entry_bytes = 0u64;
        let mut personal_checked = 0u64;
        let mut personal_redacted = 0u64;
        let mut checkpoints_checked = 0usize;
        let (mut ids, mut dossiers) = (SetSum::default(), SetSum::default());
        let mut derived = Vec::new();
        let result = (|| -> Result<(), VerifyError> {
            for (first, result) in done_rx.iter() {
                pending.insert(first, result);
                while let Some(result) = pending.remove(&chain.size()) {
                    let out = result?;
                    let first = out.chunk.first_seq;
                    derived.clear();
                    chain.push_chunk_stored(&out.chunk, &mut derived)?;
                    // The first problem of the range, by seq: a stored hash, personal data, or
                    // the chunk's own error (whose entry has no leaf, hence no stored hash).
                    let mut first_bad: Option<VerifyError> =
                        out.chunk.error.clone().map(Into::into);
                    let mismatch = derived
                        .iter()
                        .enumerate()
                        .find(|&(i, h)| out.stored.get(i) != Some(h));
                    if let Some((i, h)) = mismatch {
                        let index = stored_hash_count(first) + i as u64;
                        let reason = match out.stored.get(i) {
                            Some(found) => format!("is {found}, the entries give {h}"),
                            None => format!(
                                "cannot be read ({})",
                                out.stored_error.as_deref().unwrap_or("missing")
                            ),
                        };
                        let seq = leaf_of(index, first);
                        if first_bad
                            .as_ref()
                            .and_then(VerifyError::seq)
                            .is_none_or(|s| seq < s)
                        {
                            first_bad = Some(VerifyError::StoredHash { seq, index, reason });
                        }
                    }
                    if let Some(problem) = out.problem {
                        let seq = problem.seq();
                        if first_bad.as_ref().and_then(VerifyError::seq) > seq
                            || first_bad.is_none()
                        {
                            first_bad = Some(problem);
                        }
                    }
                    if let Some(e) = first_bad {
                        return Err(e);
                    }
                    personal_checked += out.personal;
                    personal_redacted += out.redacted;
                    ids.merge(out.ids);
                    dossiers.merge(out.dossiers);
                    let _ = token_tx.send(());
                    entry_bytes += out.bytes;
                    if let Some(root) = signed_roots.get(&chain.size()) {
                        chain.check_root(root)?;
                        checkpoints_checked += 1;
                    }
                    progress(chain.size());
                }
            }
            Ok(())
        })();
        drop(done_rx);
        drop(token_tx);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let index_sums = index_sums.map(|h| h.join().expect("the index scan does not panic"));
        result?;
        // Nothing may follow the head.
        if let Some(item) = storage.entries(end, u64::MAX).next() {
            let (seq, _) = item?;
            return Err(VerifyError::Head {
                seq,
                head_size: end,
                found: seq + 1,
            });
        }
        if chain.size() > 0 && signed_roots.is_empty() {
            return Err(VerifyError::Unattested {
                entries: chain.size(),
            });
        }
        // Checkpoints beyond the entries found: their entries are missing.
        if let Some((&size, _)) = signed_roots.range(chain.size() + 1..).next() {
            return Err(VerifyError::Missing {
                size,
                found: chain.size(),
            });
        }
        if head.size == chain.size() && head.leaf != chain.head() {
            return Err(VerifyError::HeadLeaf {
                seq: head.size.saturating_sub(1),
                recorded: head.leaf,
                computed: chain.head(),
            });
        }
        if head.size != chain.size() {
            return Err(VerifyError::Head {
                seq: chain.size().min(head.size),
                head_size: head.size,
                found: chain.size(),
            });
        }
        // Nor may the stored hashes run past it.
        let next = stored_hash_count(chain.size());
        if storage.read_hashes(&[next]).is_ok() {
            return Err(VerifyError::StoredHash {
                seq: chain.size(),
                index: next,
                reason: format!(
                    "exists, but {} entries have only {next} stored hashes",
                    chain.size()
                ),
            });
        }
        if let Some(sums) = index_sums {
            let (index_ids, index_dossiers, twice) = sums?;
            if index_ids != ids || index_dossiers != dossiers {
                return Err(locate_index_fault(
                    storage,
                    chain.size(),
                    index_ids == ids,
                    index_dossiers == dossiers,
                ));
            }
            // The sums hold one pair per entry on each side, so an event committed twice (a
            // dedup failure) sums alike: its two entries share an index fingerprint.
            if let Some(e) = twice? {
                return Err(e);
            }
        }
        Ok(VerifyReport {
            entries: chain.size(),
            entry_bytes,
            root: chain.root(),
            checkpoints_checked,
            latest_checkpoint_size: signed_roots.keys().next_back().copied().unwrap_or(0),
            personal_checked,
            personal_redacted,
            pinned_checked,
            stored_hashes_checked: stored_hash_count(chain.size()),
            indexes_checked: keys.is_some(),
        })
    })
}

/// The first event (agency and id) that two entries hold, as an index fault at the later seq:
/// the id index's pairs in fingerprint order put such entries side by side.
fn committed_twice<S: Storage>(
    storage: &S,
    stop: &AtomicBool,
) -> Result<Option<VerifyError>, VerifyError> {
    // The earliest fault wins, as everywhere in verify.
    let earliest = |found: &mut Option<VerifyError>, fault: VerifyError| {
        let earlier = match (found.as_ref().and_then(VerifyError::seq), fault.seq()) {
            (None, _) => true,
            (Some(held), Some(new)) => new < held,
            (Some(_), None) => false,
        };
        if earlier {
            *found = Some(fault);
        }
    };
    // The seqs under one fingerprint: which two hold the same event?
    let twice = |seqs: &[u64]| -> Result<Option<VerifyError>, StorageError> {
        let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
        for &seq in seqs {
            let Some(bytes) = storage.entry(seq)? else {
                continue;
            };
            let Ok(parts) = Entry::decode_parts(&bytes) else {
                continue;
            };
            let key = (parts.agency.into_owned(), parts.id.into_owned());
            if let Some(&earlier) = seen.get(&key) {
                return Ok(Some(VerifyError::Index {
                    seq,
                    reason: format!(
                        "event {}/{} is committed twice: at seq {earlier} and here",
                        key.0, key.1
                    ),
                }));
            }
            seen.insert(key, seq);
        }
        Ok(None)
    };
    let mut found: Option<VerifyError> = None;
    let mut group: (u64, Vec<u64>) = (0, Vec::new());
    storage.id_index_in_order(&mut |fp, seq| {
        if !group.1.is_empty() && group.0 != fp {
            if group.1.len() > 1
                && let Some(fault) = twice(&group.1)?
            {
                earliest(&mut found, fault);
            }
            group.1.clear();
        }
        group.0 = fp;
        group.1.push(seq);
        // Once the entries failed, this answer is not wanted.
        Ok(!stop.load(Ordering::Relaxed))
    })?;
    if group.1.len() > 1
        && let Some(fault) = twice(&group.1)?
    {
        earliest(&mut found, fault);
    }
    Ok(found)
}

/// The slow pass after the index sums differed: the first entry whose key is missing or wrong,
/// else the first key that names no entry. Entries are known good here.
fn locate_index_fault<S: Storage>(
    storage: &S,
    size: u64,
    ids_ok: bool,
    dossiers_ok: bool,
) -> VerifyError {
    match find_index_fault(storage, size, ids_ok, dossiers_ok) {
        Ok(Some(e)) => e,
        Ok(None) => VerifyError::Index {
            seq: size,
            reason: format!(
                "the {} index does not hold exactly one key per entry, but no single key is to blame (repeated keys?)",
                if ids_ok { "dossier" } else { "id" }
            ),
        },
        Err(e) => e,
    }
}

fn find_index_fault<S: Storage>(
    storage: &S,
    size: u64,
    ids_ok: bool,
    dossiers_ok: bool,
) -> Result<Option<VerifyError>, VerifyError> {
    let decode = |seq: u64, bytes: &[u8]| -> Result<(String, String, String), VerifyError> {
        let parts = Entry::decode_parts(bytes).map_err(|e| ChainError {
            seq,
            kind: ChainErrorKind::Entry(e),
        })?;
        Ok((
            parts.agency.into_owned(),
            parts.id.into_owned(),
            parts.dossier.into_owned(),
        ))
    };
    let index = |seq: u64, reason: String| Ok(Some(VerifyError::Index { seq, reason }));
    for item in storage.entries(0, size) {
        let (seq, bytes) = item?;
        let (agency, id, dossier) = decode(seq, &bytes)?;
        if !ids_ok {
            match storage.id(&agency, &id)? {
                None => {
                    return index(
                        seq,
                        format!("the id index has no key for event {agency}/{id}"),
                    );
                }
                Some(rec) if rec.seq != seq => {
                    return index(
                        seq,
                        format!("the id index maps event {agency}/{id} to seq {}", rec.seq),
                    );
                }
                Some(_) => {}
            }
        }
        if !dossiers_ok && !storage.dossier(&dossier)?.contains(&seq) {
            return index(
                seq,
                format!("the dossier index has no key for this entry of dossier {dossier:?}"),
            );
        }
    }
    // Every entry has its keys: some key names no entry.
    let entry_at = |seq: u64| -> Result<Option<(String, String, String)>, VerifyError> {
        match storage.entry(seq)? {
            Some(bytes) if seq < size => decode(seq, &bytes).map(Some),
            _ => Ok(None),
        }
    };
    if !ids_ok {
        let mut pairs = Vec::new();
        storage.id_index(&mut |fp, seq| pairs.push((fp, seq)))?;
        for (fp, seq) in pairs {
            match entry_at(seq)? {
                None => {
                    return index(
                        seq,
                        format!(
                            "the id index lists seq {seq} (event fingerprint {fp:016x}), past the last entry"
                        ),
                    );
                }
                Some((a, i, _)) if event_fingerprint(&a, &i) != fp => {
                    return index(
                        seq,
                        format!(
                            "the id index lists this entry under event fingerprint {fp:016x}, but it is event {a}/{i} ({:016x})",
                            event_fingerprint(&a, &i)
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
    if !dossiers_ok {
        let mut pairs = Vec::new();
        storage.dossier_index(&mut |fp, seq| pairs.push((fp, seq)))?;
        for (fp, seq) in pairs {
            match entry_at(seq)? {
                None => {
                    return index(
                        seq,
                        format!(
                            "the dossier index lists seq {seq} (dossier fingerprint {fp:016x}), past the last entry"
                        ),
                    );
                }
                Some((_, _, d)) if dossier_fingerprint(&d) != fp => {
                    return index(
                        seq,
                        format!(
                            "the dossier index lists this entry under dossier fingerprint {fp:016x}, but it belongs to {d:?} ({:016x})",
                            dossier_fingerprint(&d)
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(keys: &SetKeys, items: impl IntoIterator<Item = (u64, u64)>) -> SetSum {
        let mut summer = Summer::new(keys);
        for item in items {
            summer.add(item);
        }
        summer.finish()
    }

    #[test]
    fn set_sums_ignore_order_and_batching_but_see_any_change() {
        let keys = SetKeys::new();
        // More than two batches, so the last one is partial.
        let items: Vec<(u64, u64)> = (0..(2 * SUM_BATCH as u64 + 7))
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i))
            .collect();
        let whole = sum(&keys, items.iter().copied());
        assert_eq!(whole.count, items.len() as u64);
        assert_eq!(sum(&keys, items.iter().rev().copied()), whole);
        // Summed in parts and merged, as the ranges are.
        for cut in [50, SUM_BATCH] {
            let mut parts = sum(&keys, items[..cut].iter().copied());
            parts.merge(sum(&keys, items[cut..].iter().copied()));
            assert_eq!(parts, whole);
        }
        // Exactly one full batch, nothing left for `finish`.
        let batch = sum(&keys, items[..SUM_BATCH].iter().copied());
        assert_eq!(batch.count, SUM_BATCH as u64);
        assert_ne!(batch, SetSum::default());
        // One pair's fingerprint changed; a pair's two halves swapped.
        let mut renamed = items.clone();
        renamed[3].0 ^= 1;
        assert_ne!(sum(&keys, renamed), whole);
        assert_ne!(sum(&keys, [(1, 2)]), sum(&keys, [(2, 1)]));
        // One pair's seq moved, one pair gone, one pair repeated instead of another.
        let mut moved = items.clone();
        moved[3].1 += 1;
        assert_ne!(sum(&keys, moved), whole);
        assert_ne!(sum(&keys, items[1..].iter().copied()), whole);
        let mut repeated = items.clone();
        repeated[5] = repeated[4];
        let repeated = sum(&keys, repeated);
        assert_eq!(repeated.count, whole.count);
        assert_ne!(repeated, whole);
        // Another run's key sums the same set to another value.
        assert_ne!(sum(&SetKeys::new(), items.iter().copied()), whole);
        assert_eq!(sum(&keys, []), SetSum::default());
    }
}
