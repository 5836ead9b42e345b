//! Full verification of a stored ledger on every core: each entry's structure and leaf hash, seqs
//! without gaps, `prev` links, every stored signed checkpoint (signature by the trusted key and root
//! at its size), the head record, and personal data against commitments where present.
//!
//! Pipeline: a reader thread cuts the entry stream into chunks (also at checkpoint sizes), worker
//! threads run [`socai_chain::verify_chunk`], and the calling thread joins chunks in order, so the
//! first bad seq is always the one reported.

use crate::storage::{Storage, StorageError};
use socai_chain::checkpoint::{CheckpointError, CheckpointVerifier};
use socai_chain::entry::check_personal;
use socai_chain::verify::{ChainErrorKind, Chunk};
use socai_chain::{ChainError, ChainVerifier, Hash, verify_chunk};
use std::collections::{BTreeMap, BTreeSet};
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
    #[error("pinned checkpoint {index}: {reason}")]
    Pinned { index: usize, reason: String },
    #[error(
        "seq 0: {entries} entries but no signed checkpoint covers any of them; nothing attests the log (run `socai checkpoint` if this is a new log)"
    )]
    Unattested { entries: u64 },
    #[error("seq {found}: a checkpoint signs {size} entries but only {found} are stored")]
    Missing { size: u64, found: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl VerifyError {
    /// The first bad seq, when the failure is tied to one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Chain(e) => Some(e.seq),
            VerifyError::Checkpoint { size, .. } => Some(*size),
            VerifyError::Head { seq, .. } => Some(*seq),
            VerifyError::Missing { found, .. } => Some(*found),
            VerifyError::Unattested { .. } => Some(0),
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
    /// Auditor-pinned checkpoints that matched.
    pub pinned_checked: usize,
}

type Work = (u64, u64);
type RangeResult = Result<(Chunk, u64, u64), VerifyError>;
type Done = (u64, RangeResult);

/// Reads entries `[first, last)` and checks them (structure, seqs, links inside the range, leaf
/// hashes, personal data against commitments). Returns the chunk, its byte count and the number of
/// personal records checked; a gap in the store or a personal mismatch becomes the chunk's error
/// when it comes before any other.
fn check_range<S: Storage>(storage: &S, first: u64, last: u64) -> RangeResult {
    let mut entries = Vec::with_capacity((last - first) as usize);
    let mut bytes = 0u64;
    for item in storage.entries(first, last) {
        let (seq, entry) = item?;
        // The store's position jumped: the entry at the expected position is gone.
        if seq != first + entries.len() as u64 {
            break;
        }
        bytes += entry.len() as u64;
        entries.push(entry);
    }
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let got = first + refs.len() as u64;
    if refs.is_empty() {
        return Err(ChainError {
            seq: first,
            kind: ChainErrorKind::Missing,
        }
        .into());
    }
    let mut chunk = verify_chunk(first, &refs)?;
    if got < last && chunk.error.is_none() {
        chunk.error = Some(ChainError {
            seq: got,
            kind: ChainErrorKind::Missing,
        });
    }
    // Commitments stop before the chunk's first error, so a mismatch here always comes first.
    let mut personal = 0u64;
    for (seq, commitment) in &chunk.commitments {
        let Some(rec) = storage.personal(*seq)? else {
            continue;
        };
        let salt = hex::decode(&rec.salt)
            .ok()
            .and_then(|s| <[u8; 16]>::try_from(s).ok());
        if !salt.is_some_and(|salt| check_personal(commitment, &salt, &rec.personal)) {
            chunk.error = Some(ChainError {
                seq: *seq,
                kind: ChainErrorKind::PersonalMismatch,
            });
            break;
        }
        personal += 1;
    }
    Ok((chunk, bytes, personal))
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

    std::thread::scope(|scope| {
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
                loop {
                    let item = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((first, last))) = item else {
                        return;
                    };
                    if done_tx
                        .send((first, check_range(storage, first, last)))
                        .is_err()
                    {
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
        let mut checkpoints_checked = 0usize;
        let result = (|| -> Result<(), VerifyError> {
            for (first, result) in done_rx.iter() {
                pending.insert(first, result);
                while let Some(result) = pending.remove(&chain.size()) {
                    let (chunk, bytes, personal) = result?;
                    personal_checked += personal;
                    chain.push_chunk(&chunk)?;
                    let _ = token_tx.send(());
                    entry_bytes += bytes;
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
        if head.size != chain.size() || head.leaf != chain.head() {
            return Err(VerifyError::Head {
                seq: chain.size().min(head.size),
                head_size: head.size,
                found: chain.size(),
            });
        }
        Ok(VerifyReport {
            entries: chain.size(),
            entry_bytes,
            root: chain.root(),
            checkpoints_checked,
            latest_checkpoint_size: signed_roots.keys().next_back().copied().unwrap_or(0),
            personal_checked,
            pinned_checked,
        })
    })
}
