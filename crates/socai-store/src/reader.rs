//! Readers of a ledger that a writer is appending to: entries, histories, checkpoints, proofs,
//! export bundles and tiles, served from the store while the single writer commits.
//!
//! A reader sees the ledger as of the last commit the writer finished (fsync included): the
//! writer publishes its head and latest checkpoint into a shared [`View`] only after
//! [`crate::Storage::commit`] returned. Everything a reader touches below that head is immutable
//! (entries, stored hashes, checkpoints), so reads need no lock the writer waits on: a slow reader
//! can never stall the writer, and a reader never sees anything that could still be lost.

use crate::ledger::{LedgerError, Result};
use crate::storage::{Head, PersonalRecord, Storage, StoredHashes};
use socai_chain::bundle::{BUNDLE_FORMAT, Bundle, PersonalDisclosure};
use socai_chain::checkpoint::{CheckpointVerifier, SignedCheckpoint};
use socai_chain::entry::Entry;
use socai_chain::merkle;
use socai_chain::{ConsistencyProof, Hash, InclusionProof, leaf_hash};
use std::io::Write;
use std::sync::{Arc, RwLock};

/// What readers see: the ledger as of the writer's last finished commit.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub head: Head,
    /// The latest signed checkpoint (covers at most `head.size` entries).
    pub latest: Option<SignedCheckpoint>,
}

/// A read-only handle on a ledger, cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct LedgerReader<S> {
    storage: S,
    verifier: CheckpointVerifier,
    view: Arc<RwLock<View>>,
}

impl<S: Storage> LedgerReader<S> {
    pub(crate) fn new(storage: S, verifier: CheckpointVerifier, view: View) -> Self {
        LedgerReader {
            storage,
            verifier,
            view: Arc::new(RwLock::new(view)),
        }
    }

    /// Called by the writer after each finished commit.
    pub(crate) fn publish(&self, view: View) {
        let mut shared = self.view.write().unwrap_or_else(|e| e.into_inner());
        debug_assert!(
            view.head.size >= shared.head.size,
            "the head never goes back"
        );
        *shared = view;
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The ledger as of the last finished commit.
    pub fn view(&self) -> View {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn head(&self) -> Head {
        self.view.read().unwrap_or_else(|e| e.into_inner()).head
    }

    /// The log's origin (its checkpoints' first line and key name).
    pub fn origin(&self) -> &str {
        self.verifier.name()
    }

    pub fn verifier(&self) -> &CheckpointVerifier {
        &self.verifier
    }

    /// The verifier key text auditors need (C2SP signed-note).
    pub fn verifier_vkey(&self) -> String {
        self.verifier.vkey().to_owned()
    }

    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>> {
        Ok(self.view().latest)
    }

    fn latest_size(&self) -> u64 {
        self.view().latest.map_or(0, |c| c.checkpoint.size)
    }

    /// The signed checkpoint of tree size `size`, verified.
    pub fn checkpoint_at(&self, size: u64) -> Result<SignedCheckpoint> {
        let latest = self.view().latest;
        if let Some(latest) = latest.as_ref().filter(|c| c.checkpoint.size == size) {
            return Ok(latest.clone());
        }
        if size > latest.map_or(0, |c| c.checkpoint.size) {
            return Err(LedgerError::NoCheckpointAt(size));
        }
        let note = self
            .storage
            .checkpoint(size)?
            .ok_or(LedgerError::NoCheckpointAt(size))?;
        Ok(self.verifier.verify(&note)?)
    }

    /// Signed checkpoint notes with tree size `>= from`, ascending, at most `limit`.
    pub fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        let latest = self.latest_size();
        Ok(self
            .storage
            .checkpoints_from(from, limit)?
            .into_iter()
            .filter(|(size, _)| *size <= latest)
            .collect())
    }

    fn check_seq(&self, seq: u64) -> Result<Head> {
        let head = self.head();
        if seq >= head.size {
            return Err(LedgerError::UnknownSeq {
                seq,
                size: head.size,
            });
        }
        Ok(head)
    }

    pub fn entry(&self, seq: u64) -> Result<Entry> {
        let bytes = self.entry_bytes(seq)?;
        Entry::decode(&bytes)
            .map_err(|e| LedgerError::Invariant(format!("stored entry {seq} does not decode: {e}")))
    }

    pub fn entry_bytes(&self, seq: u64) -> Result<Vec<u8>> {
        let head = self.check_seq(seq)?;
        self.storage.entry(seq)?.ok_or(LedgerError::UnknownSeq {
            seq,
            size: head.size,
        })
    }

    /// Entries `from..to` (clamped to the head), in seq order, as (seq, canonical bytes); a gap in
    /// the store is an error naming the missing seq.
    pub fn entries(&self, from: u64, to: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + '_ {
        let to = to.min(self.head().size);
        let mut stored = self.storage.entries(from, to);
        let mut next = from;
        std::iter::from_fn(move || {
            if next >= to {
                return None;
            }
            let item = match stored.next() {
                Some(Ok((seq, bytes))) if seq == next => {
                    next += 1;
                    return Some(Ok((seq, bytes)));
                }
                Some(Err(e)) => Err(LedgerError::from(e)),
                _ => Err(LedgerError::Invariant(format!(
                    "entry {next} is missing from the store; run `socai verify`"
                ))),
            };
            next = to; // nothing after an error
            Some(item)
        })
    }

    /// Replays committed entries from `from` up to the head, in seq order, as (seq, canonical
    /// bytes). Projection workers fold these; the stream stops at the head as of this call.
    pub fn replay(&self, from: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + '_ {
        self.entries(from, u64::MAX)
    }

    /// The seq of a committed event, named `AGENCY/ID` or by its id alone. Ids are unique per
    /// agency only: an id alone that several agencies used is [`LedgerError::AmbiguousId`].
    pub fn seq_of(&self, spec: &str) -> Result<u64> {
        let head = self.head();
        // An id of a commit still in progress is not visible yet.
        let visible = |rec: Option<crate::storage::IdRecord>| {
            rec.filter(|r| r.seq < head.size)
                .map(|r| r.seq)
                .ok_or_else(|| LedgerError::UnknownId(spec.to_string()))
        };
        if let Some((agency, id)) = spec.split_once('/') {
            return visible(self.storage.id(agency, id)?);
        }
        let mut named = self.storage.ids_named(spec)?;
        named.retain(|(_, r)| r.seq < head.size);
        match named.len() {
            0 => Err(LedgerError::UnknownId(spec.to_string())),
            1 => Ok(named[0].1.seq),
            _ => Err(LedgerError::AmbiguousId {
                id: spec.to_string(),
                agencies: named.into_iter().map(|(a, _)| a).collect(),
            }),
        }
    }

    /// Seqs of a dossier's entries in ledger order.
    pub fn history(&self, dossier: &str) -> Result<Vec<u64>> {
        let head = self.head();
        let mut seqs = self.storage.dossier(dossier)?;
        seqs.retain(|&s| s < head.size);
        Ok(seqs)
    }

    /// Entry `seq` as JSON, as `socai show --json` prints it and the HTTP API serves it: the
    /// entry's fields, its `leaf_hash`, and with `with_personal` its `personal` record (or null;
    /// authorised auditors only).
    pub fn entry_json(&self, seq: u64, with_personal: bool) -> Result<serde_json::Value> {
        let bytes = self.entry_bytes(seq)?;
        let mut value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| LedgerError::Invariant(format!("stored entry {seq} is not JSON: {e}")))?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "leaf_hash".into(),
                serde_json::Value::String(leaf_hash(&bytes).to_hex()),
            );
            if with_personal {
                let personal = self.personal(seq)?;
                obj.insert(
                    "personal".into(),
                    serde_json::to_value(personal).map_err(|e| {
                        LedgerError::Invariant(format!("personal record {seq}: {e}"))
                    })?,
                );
            }
        }
        Ok(value)
    }

    /// A dossier's entries as `socai history --json` prints them: `{"dossier", "entries"}`.
    pub fn history_json(&self, dossier: &str) -> Result<serde_json::Value> {
        let entries = self
            .history(dossier)?
            .into_iter()
            .map(|seq| self.entry_json(seq, false))
            .collect::<Result<Vec<_>>>()?;
        Ok(serde_json::json!({"dossier": dossier, "entries": entries}))
    }

    pub fn personal(&self, seq: u64) -> Result<Option<PersonalRecord>> {
        self.check_seq(seq)?;
        Ok(self.storage.personal(seq)?)
    }

    pub fn tree_root(&self, size: u64) -> Result<Hash> {
        let head = self.head();
        if size > head.size {
            return Err(LedgerError::Range(format!(
                "tree size {size} is beyond the ledger's {} entries",
                head.size
            )));
        }
        Ok(merkle::tree_root(size, &StoredHashes(&self.storage))?)
    }

    /// The stored Merkle hashes (for tiles), readable up to `stored_hash_count(head.size)`.
    pub fn hashes(&self) -> StoredHashes<'_, S> {
        StoredHashes(&self.storage)
    }

    /// Inclusion proof of `seq` against the signed checkpoint at `tree_size` (default: the latest).
    pub fn inclusion_proof(&self, seq: u64, tree_size: Option<u64>) -> Result<InclusionProof> {
        let signed = match tree_size {
            Some(size) => self.checkpoint_at(size)?,
            None => self.latest_checkpoint()?.ok_or(LedgerError::NoCheckpoint)?,
        };
        let size = signed.checkpoint.size;
        // Not in the ledger at all: not found (retrying will not help); in it but not yet under
        // a signed checkpoint: not covered (yet).
        self.check_seq(seq)?;
        if seq >= size {
            return Err(LedgerError::NotCovered {
                seq,
                checkpoint_size: size,
            });
        }
        let entry = self.entry_bytes(seq)?;
        let path = merkle::prove_inclusion(size, seq, &StoredHashes(&self.storage))?;
        Ok(InclusionProof {
            leaf_index: seq,
            tree_size: size,
            leaf_hash: leaf_hash(&entry),
            entry,
            path,
            checkpoint: signed.note,
        })
    }

    /// Consistency proof between two tree sizes (new default: the latest signed checkpoint).
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: Option<u64>,
    ) -> Result<ConsistencyProof> {
        let view = self.view();
        let new_size = match new_size {
            Some(n) => n,
            None => {
                view.latest
                    .as_ref()
                    .ok_or(LedgerError::NoCheckpoint)?
                    .checkpoint
                    .size
            }
        };
        if old_size == 0 || old_size > new_size || new_size > view.head.size {
            return Err(LedgerError::Range(format!(
                "need 1 <= from <= to <= {} (the ledger size), got from {old_size} to {new_size}",
                view.head.size
            )));
        }
        let reader = StoredHashes(&self.storage);
        Ok(ConsistencyProof {
            old_size,
            new_size,
            old_root: merkle::tree_root(old_size, &reader)?,
            new_root: merkle::tree_root(new_size, &reader)?,
            path: merkle::prove_consistency(old_size, new_size, &reader)?,
        })
    }

    /// The bounds of an export of `[from, to)` bound to the latest signed checkpoint (`to`
    /// defaults to its size): (checkpoint, to).
    pub fn export_bounds(&self, from: u64, to: Option<u64>) -> Result<(SignedCheckpoint, u64)> {
        let signed = self.latest_checkpoint()?.ok_or(LedgerError::NoCheckpoint)?;
        let tree_size = signed.checkpoint.size;
        let to = to.unwrap_or(tree_size);
        if from > to || to > tree_size {
            return Err(LedgerError::Range(format!(
                "need from <= to <= {tree_size} (the latest signed checkpoint), got from {from} to {to}"
            )));
        }
        Ok((signed, to))
    }

    /// A self-contained bundle of entries `[from, to)` bound to the latest signed checkpoint.
    /// Personal data is included only when `with_personal` (authorised auditors).
    pub fn export(
        &self,
        from: u64,
        to: Option<u64>,
        with_personal: bool,
        progress: &dyn Fn(u64),
    ) -> Result<Bundle> {
        let mut bytes = Vec::new();
        self.export_to(&mut bytes, from, to, with_personal, progress)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| LedgerError::Invariant(format!("an export does not parse back: {e}")))
    }

    /// Writes the bundle of [`LedgerReader::export`] as JSON to `out` while reading the entries,
    /// in bounded memory: the bytes are exactly
    /// `serde_json::to_vec(&bundle)`. Returns the number of bytes written.
    pub fn export_to(
        &self,
        out: &mut dyn Write,
        from: u64,
        to: Option<u64>,
        with_personal: bool,
        progress: &dyn Fn(u64),
    ) -> Result<u64> {
        let (signed, to) = self.export_bounds(from, to)?;
        let tree_size = signed.checkpoint.size;
        let reader = StoredHashes(&self.storage);
        let frontier = self.storage.read_hashes(&merkle::frontier_indexes(from))?;
        let consistency = if to == tree_size || to == 0 {
            Vec::new()
        } else {
            merkle::prove_consistency(to, tree_size, &reader)?
        };
        let mut w = CountingWriter { out, written: 0 };
        let json = |v: &dyn erased::Json| v.to_json();
        let io = |e: std::io::Error| LedgerError::Range(format!("writing the export: {e}"));
        // Field order and encoding as `Bundle`'s serde derive writes them.
        write!(
            w,
            "{{\"format\":{},\"vkey\":{},\"checkpoint\":{},\"tree_size\":{tree_size},\"from\":{from},\"to\":{to},\"frontier\":{},\"entries\":[",
            json(&BUNDLE_FORMAT),
            json(&self.verifier_vkey()),
            json(&signed.note),
            json(&frontier),
        )
        .map_err(io)?;
        let mut count = 0u64;
        for item in self.entries(from, to) {
            let (_, bytes) = item?;
            if count > 0 {
                w.write_all(b",").map_err(io)?;
            }
            w.write_all(b"\"").map_err(io)?;
            w.write_all(socai_chain::proof::b64::encode(&bytes).as_bytes())
                .map_err(io)?;
            w.write_all(b"\"").map_err(io)?;
            count += 1;
            if count.is_multiple_of(4096) {
                progress(count);
            }
        }
        if count != to - from {
            return Err(LedgerError::Invariant(format!(
                "entries {from}..{to} are not all present"
            )));
        }
        write!(w, "],\"consistency\":{}", json(&consistency)).map_err(io)?;
        // A second pass over the personal records alone: memory stays bounded whatever the
        // range (the member is left out when there is none, as serde's `skip_serializing_if`).
        if with_personal {
            let mut disclosed = 0u64;
            for item in self.storage.personal_range(from, to) {
                let (seq, rec) = item?;
                let disclosure = PersonalDisclosure {
                    seq,
                    salt: rec.salt,
                    personal: rec.personal,
                };
                w.write_all(if disclosed == 0 {
                    b",\"personal\":["
                } else {
                    b","
                })
                .map_err(io)?;
                w.write_all(json(&disclosure).as_bytes()).map_err(io)?;
                disclosed += 1;
            }
            if disclosed > 0 {
                w.write_all(b"]").map_err(io)?;
            }
        }
        w.write_all(b"}").map_err(io)?;
        w.flush().map_err(io)?;
        progress(count);
        Ok(w.written)
    }
}

/// `serde_json::to_string` for the few values written by hand above.
mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize + ?Sized> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).expect("plain values serialize")
        }
    }
}

struct CountingWriter<'a> {
    out: &'a mut dyn Write,
    written: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
