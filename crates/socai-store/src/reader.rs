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
use socai_chain::receipt::{Receipt, ReceiptEvent, ReceiptRejection};
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
        self.proof_at(seq, size, signed.note)
    }

    /// Inclusion proof of `seq` under a tree head this ledger signed but may not have stored as
    /// a checkpoint: a receipt's (`note`, a C2SP checkpoint note). The note must carry this
    /// log's signature, its size must be within the durable head, and this ledger's root at that
    /// size must be the note's root (otherwise the note is another log's, or this ledger forked
    /// or lost entries); `seq` must be below its size. The proof's `checkpoint` is `note` as
    /// given, so `socai proof verify --vkey` checks it like any other.
    pub fn inclusion_proof_under(
        &self,
        seq: u64,
        note: &str,
    ) -> std::result::Result<InclusionProof, ReceiptProofError> {
        let signed = self
            .verifier
            .verify(note)
            .map_err(|e| ReceiptProofError::NotThisLog {
                why: format!("its tree head is not signed by this ledger's key: {e}"),
            })?;
        let size = signed.checkpoint.size;
        let head = self.head();
        if size > head.size {
            return Err(ReceiptProofError::NotThisLog {
                why: format!(
                    "its tree head is of size {size}, but this ledger holds {} entries: it lost entries it had signed (restored from an older backup?) or the receipt is another log's",
                    head.size
                ),
            });
        }
        if seq >= size {
            return Err(ReceiptProofError::NotThisLog {
                why: format!("seq {seq} is not below its tree head's size {size}"),
            });
        }
        let ours = self.tree_root(size)?;
        if ours != signed.checkpoint.root {
            return Err(ReceiptProofError::NotThisLog {
                why: format!(
                    "its tree head's root at size {size} is {}, this ledger's is {ours}: the receipt's tree head is not this ledger's (a fork, or another log under the same key)",
                    signed.checkpoint.root
                ),
            });
        }
        Ok(self.proof_at(seq, size, signed.note)?)
    }

    /// The inclusion proof of `seq` (below `size`) in the tree of `size` entries, under `note`.
    fn proof_at(&self, seq: u64, size: u64, note: String) -> Result<InclusionProof> {
        let entry = self.entry_bytes(seq)?;
        let path = merkle::prove_inclusion(size, seq, &StoredHashes(&self.storage))?;
        Ok(InclusionProof {
            leaf_index: seq,
            tree_size: size,
            leaf_hash: leaf_hash(&entry),
            entry,
            path,
            checkpoint: note,
        })
    }

    /// The inclusion proof a receipt entitles its holder to: the event `id` names (`ID` or
    /// `AGENCY/ID`; without `id`, the receipt's only event), at the receipt's tree size, under
    /// the receipt's tree head ([`LedgerReader::inclusion_proof_under`]). The receipt must carry
    /// this log's signature and the entry at its seq must have the leaf hash it states.
    pub fn receipt_inclusion_proof(
        &self,
        receipt: &Receipt,
        id: Option<&str>,
    ) -> std::result::Result<InclusionProof, ReceiptProofError> {
        let event = receipt_event(receipt, id)?;
        receipt
            .verify(&self.verifier)
            .map_err(|e| ReceiptProofError::NotThisLog { why: e.to_string() })?;
        let proof = self.inclusion_proof_under(event.seq, &receipt.checkpoint)?;
        if event.leaf_hash() != Some(proof.leaf_hash) {
            return Err(ReceiptProofError::NotThisLog {
                why: format!(
                    "it says event {:?} is seq {} with leaf hash {}, but this ledger's entry {} has leaf hash {}",
                    event.id, event.seq, event.leaf_hash, event.seq, proof.leaf_hash
                ),
            });
        }
        // The entry must be the event the receipt names (its agency's, with its id).
        let entry = self.entry(event.seq)?;
        let field = |name: &str| entry.event.get(name).and_then(|v| v.as_str());
        if field("id") != Some(event.id.as_str())
            || field("agency") != Some(receipt.agency.as_str())
        {
            return Err(ReceiptProofError::NotThisLog {
                why: format!(
                    "it says entry {} is event {:?} of {}, but this ledger's entry {} is event {:?} of {:?}",
                    event.seq,
                    event.id,
                    receipt.agency,
                    event.seq,
                    field("id").unwrap_or_default(),
                    field("agency").unwrap_or_default()
                ),
            });
        }
        Ok(proof)
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

/// Why a receipt gives no inclusion proof.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptProofError {
    /// The event to prove is not (or not uniquely) named by the receipt: the caller's choice.
    #[error("{0}")]
    Choice(String),
    /// The receipt names the event as rejected: there is nothing in the ledger to prove.
    #[error(
        "the receipt says event {id:?} was rejected ({code} at {path:?}: {reason}); the ledger holds no entry for it (its copy is on the REJECTED stream)"
    )]
    Rejected {
        id: String,
        code: String,
        path: String,
        reason: String,
    },
    /// The receipt is not this ledger's, or this ledger no longer matches it.
    #[error("the receipt does not match this ledger: {why}")]
    NotThisLog { why: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<socai_chain::merkle::MerkleError> for ReceiptProofError {
    fn from(e: socai_chain::merkle::MerkleError) -> Self {
        ReceiptProofError::Ledger(e.into())
    }
}

/// The event of `receipt` that `id` names (`ID`, or `AGENCY/ID` with the receipt's agency);
/// without `id`, the receipt's only event. A rejected event is [`ReceiptProofError::Rejected`].
pub fn receipt_event<'r>(
    receipt: &'r Receipt,
    id: Option<&str>,
) -> std::result::Result<&'r ReceiptEvent, ReceiptProofError> {
    let listed = || {
        let ids: Vec<&str> = receipt
            .events
            .iter()
            .map(|e| e.id.as_str())
            .chain(receipt.rejected.iter().map(|r| r.id.as_str()))
            .collect();
        let shown: Vec<String> = ids.iter().take(20).map(|i| format!("{i:?}")).collect();
        format!(
            "{}{}",
            shown.join(", "),
            if ids.len() > 20 {
                format!(" and {} more", ids.len() - 20)
            } else {
                String::new()
            }
        )
    };
    let Some(spec) = id else {
        return match (receipt.events.as_slice(), receipt.rejected.as_slice()) {
            ([only], []) => Ok(only),
            ([], [only]) => Err(rejected(only)),
            ([], []) => Err(ReceiptProofError::Choice(
                "the receipt names no event".into(),
            )),
            _ => Err(ReceiptProofError::Choice(format!(
                "the receipt names {} events; choose one with id: {}",
                receipt.events.len() + receipt.rejected.len(),
                listed()
            ))),
        };
    };
    let id = match spec.split_once('/') {
        Some((agency, id)) if agency == receipt.agency => id,
        Some((agency, _)) => {
            return Err(ReceiptProofError::Choice(format!(
                "{spec:?} names agency {agency}, but the receipt is agency {}'s",
                receipt.agency
            )));
        }
        None => spec,
    };
    if let Some(event) = receipt.events.iter().find(|e| e.id == id) {
        return Ok(event);
    }
    if let Some(r) = receipt.rejected.iter().find(|r| r.id == id) {
        return Err(rejected(r));
    }
    Err(ReceiptProofError::Choice(format!(
        "the receipt does not name event {id:?}; it names {}",
        listed()
    )))
}

fn rejected(r: &ReceiptRejection) -> ReceiptProofError {
    ReceiptProofError::Rejected {
        id: r.id.clone(),
        code: r.code.clone(),
        path: r.path.clone(),
        reason: r.reason.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ledger, LedgerConfig, SledStorage};
    use socai_chain::checkpoint::{Checkpoint, CheckpointSigner};
    use socai_chain::receipt::RECEIPT_VERSION;

    const ORIGIN: &str = "test.socai/ledger";

    fn ledger(n: usize) -> (tempfile::TempDir, Ledger<SledStorage>, CheckpointSigner) {
        let tmp = tempfile::tempdir().unwrap();
        let (_, skey, _) = CheckpointSigner::generate(ORIGIN).unwrap();
        let storage = SledStorage::open(&tmp.path().join("ledger")).unwrap();
        let mut l = Ledger::open(
            storage,
            CheckpointSigner::from_skey(&skey).unwrap(),
            vec![9; 32],
            LedgerConfig::default(),
        )
        .unwrap();
        let events: Vec<_> = socai_sim::Generator::new(socai_sim::SimConfig {
            seed: 5,
            provinces: 2,
            communes_per_province: 2,
            procedures_per_agency: 3,
            ..Default::default()
        })
        .take(n)
        .collect();
        l.append_batch(&events, "2026-11-22T03:00:00.000Z").unwrap();
        (tmp, l, CheckpointSigner::from_skey(&skey).unwrap())
    }

    /// A receipt for entries `seqs` under a tree head of `size` with `root`, signed by `signer`.
    fn receipt(
        l: &Ledger<SledStorage>,
        signer: &CheckpointSigner,
        seqs: &[u64],
        size: u64,
        root: Hash,
    ) -> Receipt {
        let head = signer
            .sign(&Checkpoint {
                origin: ORIGIN.into(),
                size,
                root,
            })
            .unwrap();
        // The agency of the first event (a receipt names one agency's events).
        let agency = l.entry(seqs[0]).unwrap().event["agency"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut r = Receipt {
            v: RECEIPT_VERSION,
            agency,
            checkpoint: head.note,
            events: seqs
                .iter()
                .map(|&seq| {
                    let entry = l.entry(seq).unwrap();
                    ReceiptEvent {
                        id: entry.event_id().to_owned(),
                        seq,
                        leaf_hash: leaf_hash(&l.entry_bytes(seq).unwrap()).to_hex(),
                        duplicate: false,
                    }
                })
                .collect(),
            rejected: vec![ReceiptRejection {
                id: "bad-1".into(),
                code: "schema_violation".into(),
                path: "/data".into(),
                reason: "missing".into(),
            }],
            syncs: Vec::new(),
            batch: Default::default(),
            signature: String::new(),
        };
        r.sign(signer).unwrap();
        r
    }

    #[test]
    fn a_receipt_gives_a_proof_under_its_own_tree_head() {
        let (_tmp, l, signer) = ledger(40);
        // A tree head of size 30 that the ledger never stored as a checkpoint.
        let root = l.tree_root(30).unwrap();
        // Two events of one agency: entry 29 and an earlier one of its agency.
        let agency_of = |seq: u64| l.entry(seq).unwrap().event["agency"].clone();
        let first = (0..29)
            .find(|&seq| agency_of(seq) == agency_of(29))
            .expect("the test ledger's agency of entry 29 has an earlier entry");
        let r = receipt(&l, &signer, &[first, 29], 30, root);
        let agency = r.agency.clone();
        let other_agency = if agency == "000.00.12.H01" {
            "000.00.12.H02"
        } else {
            "000.00.12.H01"
        };
        let id = r.events[1].id.clone();
        let proof = l.receipt_inclusion_proof(&r, Some(&id)).unwrap();
        assert_eq!((proof.leaf_index, proof.tree_size), (29, 30));
        assert_eq!(proof.checkpoint, r.checkpoint);
        let (entry, signed) = proof.verify(l.verifier()).unwrap();
        assert_eq!(entry.event_id(), id);
        assert_eq!(signed.checkpoint.root, root);
        // AGENCY/ID works with the receipt's agency only.
        assert!(
            l.receipt_inclusion_proof(&r, Some(&format!("{agency}/{id}")))
                .is_ok()
        );
        assert!(matches!(
            l.receipt_inclusion_proof(&r, Some(&format!("{other_agency}/{id}"))),
            Err(ReceiptProofError::Choice(_))
        ));
        // Two events: the id must be given; a rejected one has nothing to prove.
        assert!(matches!(
            l.receipt_inclusion_proof(&r, None),
            Err(ReceiptProofError::Choice(m)) if m.contains(&id) && m.contains("bad-1")
        ));
        assert!(matches!(
            l.receipt_inclusion_proof(&r, Some("bad-1")),
            Err(ReceiptProofError::Rejected { code, .. }) if code == "schema_violation"
        ));
        assert!(matches!(
            l.receipt_inclusion_proof(&r, Some("nope")),
            Err(ReceiptProofError::Choice(_))
        ));
    }

    #[test]
    fn a_receipt_that_is_not_this_ledgers_gives_no_proof() {
        let (_tmp, l, signer) = ledger(40);
        let root = l.tree_root(30).unwrap();
        let good = receipt(&l, &signer, &[3], 30, root);
        let not_this_log = |r: &Receipt| {
            matches!(
                l.receipt_inclusion_proof(r, Some(&r.events[0].id)),
                Err(ReceiptProofError::NotThisLog { .. })
            )
        };
        // A changed seq breaks the signature.
        let mut moved = good.clone();
        moved.events[0].seq = 4;
        assert!(not_this_log(&moved));
        // Signed, but the leaf hash is not the entry's.
        let mut other_leaf = good.clone();
        other_leaf.events[0].leaf_hash = hex::encode([7u8; 32]);
        other_leaf.sign(&signer).unwrap();
        let err = l
            .receipt_inclusion_proof(&other_leaf, Some(&good.events[0].id))
            .unwrap_err();
        assert!(err.to_string().contains("leaf hash"), "{err}");
        // Signed, but the root at that size is not this ledger's: a fork.
        let fork = receipt(&l, &signer, &[3], 30, Hash([1; 32]));
        let err = l
            .receipt_inclusion_proof(&fork, Some(&good.events[0].id))
            .unwrap_err();
        assert!(err.to_string().contains("fork"), "{err}");
        // Signed, with the entry's leaf hash, but under another agency: the entry is not that
        // agency's event.
        let mut other_agency = good.clone();
        other_agency.agency = if good.agency == "000.00.12.H01" {
            "000.00.12.H02".into()
        } else {
            "000.00.12.H01".into()
        };
        other_agency.sign(&signer).unwrap();
        let err = l
            .receipt_inclusion_proof(&other_agency, Some(&good.events[0].id))
            .unwrap_err();
        assert!(
            matches!(err, ReceiptProofError::NotThisLog { .. })
                && err.to_string().contains("this ledger's entry 3 is event"),
            "{err}"
        );
        // A tree head beyond the ledger.
        let ahead = receipt(&l, &signer, &[3], 41, root);
        let err = l
            .receipt_inclusion_proof(&ahead, Some(&good.events[0].id))
            .unwrap_err();
        assert!(err.to_string().contains("holds 40 entries"), "{err}");
        // Another log's key.
        let (other, _, _) = CheckpointSigner::generate(ORIGIN).unwrap();
        assert!(not_this_log(&receipt(&l, &other, &[3], 30, root)));
        // inclusion_proof_under checks the note alone the same way.
        assert!(matches!(
            l.inclusion_proof_under(30, &good.checkpoint),
            Err(ReceiptProofError::NotThisLog { .. })
        ));
        assert!(l.inclusion_proof_under(0, &good.checkpoint).is_ok());
    }
}
