//! Receipts: what the ledger tells an agency after a commit's fsync — which of its event ids got
//! which seq — under the commit's signed tree head. Like Certificate Transparency's SCTs, a
//! receipt is the agency's evidence that the ledger accepted its event: signed by the log's key,
//! and later turned into an inclusion proof at the receipt's tree size.
//!
//! A receipt is JSON (`v` = 1):
//!
//! ```json
//! { "v": 1, "agency": "000.00.12.H01",
//!   "checkpoint": "<C2SP signed note: origin, tree size, root; signed by the log's key>",
//!   "events": [ { "id": "…", "seq": 41, "leaf_hash": "<hex>" },
//!               { "id": "…", "seq": 7, "leaf_hash": "<hex>", "duplicate": true } ],
//!   "rejected": [ { "id": "…", "code": "schema_violation", "path": "/data/x", "reason": "…" } ],
//!   "batch": { "index": 3, "count": 120, "root": "<hex>", "path": ["<hex>", …] },
//!   "signature": "<base64 Ed25519 signature>" }
//! ```
//!
//! One commit answers many agencies, so the ledger signs once per commit, not once per receipt:
//! each receipt's leaf hash is SHA-256(0x00 ‖ `socai-receipt/v1\n` ‖ the RFC 8785 canonical JSON
//! of the receipt without `batch` and `signature`); the commit's receipts, in order, form an RFC
//! 6962 Merkle tree; `batch` gives this receipt's index, the tree's size and root, and its audit
//! path; `signature` is the log key's Ed25519 signature of `socai-receipts/v1\n` ‖ the
//! checkpoint note ‖ `<count> <root hex>\n`, the same for every receipt of the commit (so a
//! client checks it once per commit). The same key signs the checkpoints; the prefix keeps the
//! two kinds of signed bytes apart (a checkpoint note's text starts with the origin line, never
//! with `socai-receipts/`). Every seq a receipt names is below its checkpoint's tree size.
//! `duplicate` marks an event the ledger already held (a re-publish): its seq is the original
//! one. The ledger sends each receipt as its RFC 8785 canonical JSON (its members sorted:
//! `agency`, `batch`, `checkpoint`, …), made from the signed content it already wrote; a reader
//! takes any JSON with these members.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
use crate::hash::{Hash, leaf_hash};
use crate::merkle::{LeafTree, verify_inclusion};

/// The receipt format's version.
pub const RECEIPT_VERSION: u32 = 1;

/// What precedes a receipt's canonical JSON in its leaf.
pub const RECEIPT_LEAF_PREFIX: &[u8] = b"socai-receipt/v1\n";

/// What precedes the checkpoint note and the receipts' root in the signed bytes.
pub const RECEIPTS_SIGNING_PREFIX: &[u8] = b"socai-receipts/v1\n";

/// One agency's receipt for one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub v: u32,
    /// The publishing agency (its code, e.g. `000.00.12.H01`).
    pub agency: String,
    /// The commit's signed tree head (C2SP checkpoint note) covering every seq listed.
    pub checkpoint: String,
    /// Events the ledger holds: committed by this commit, or before (`duplicate`).
    pub events: Vec<ReceiptEvent>,
    /// Events refused (their copies are on REJECTED with the same reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<ReceiptRejection>,
    /// Portal sync bodies (`dvc.sync.<agency>`) this commit dealt with: the events each yielded
    /// (answered above, in `events` or `rejected`) and the parts that could not be mapped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syncs: Vec<ReceiptSync>,
    /// This receipt's place among the commit's receipts (see the module docs).
    #[serde(default)]
    pub batch: ReceiptBatch,
    /// Base64 Ed25519 signature by the log's key over the checkpoint and the batch's root.
    #[serde(default)]
    pub signature: String,
}

/// Where a receipt sits in the Merkle tree of its commit's receipts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBatch {
    pub index: u64,
    pub count: u64,
    /// Hex root of the tree of the commit's receipts.
    pub root: String,
    /// Hex RFC 6962 audit path of this receipt's leaf.
    pub path: Vec<String>,
}

/// An event the ledger holds, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptEvent {
    pub id: String,
    pub seq: u64,
    /// Hex SHA-256 leaf hash of the entry at `seq` (what an inclusion proof proves).
    pub leaf_hash: String,
    /// The ledger already held this event (same id, same content): `seq` is the original.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A portal sync body, answered: its id (`sync-` + 32 hex digits of the SHA-256 of its bytes),
/// the ids of the events it yielded (none when the ledger already held everything it says), and
/// what could not be mapped (`id` = the dossier, or empty for the whole body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptSync {
    pub id: String,
    /// Events it yielded that the ledger holds.
    pub events: Vec<String>,
    /// Its parts that could not be mapped (`id`: the dossier, empty for the whole body) and the
    /// events it yielded that the ledger refused (`id`: the event's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<ReceiptRejection>,
    /// Events yielded left out to keep the receipt small (COMMITTED holds them all).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: u64,
    /// Refusals left out to keep the receipt small (REJECTED holds them all): not zero means
    /// parts of the body were refused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_rejected: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An event refused, with the reason REJECTED carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRejection {
    pub id: String,
    pub code: String,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("not a receipt: {0}")]
    Malformed(String),
    #[error("receipt version {0} is not supported (this socai reads version 1)")]
    Version(u32),
    #[error("the receipt's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the receipt's signature does not verify with key {0}")]
    BadSignature(String),
    #[error("the receipt is not in its commit's batch: {0}")]
    NotInBatch(String),
    #[error("event {id:?}: seq {seq} is not below the receipt's tree size {size}")]
    SeqBeyondTree { id: String, seq: u64, size: u64 },
    #[error("event {id:?}: leaf_hash {leaf_hash:?} is not 64 hex digits")]
    BadLeafHash { id: String, leaf_hash: String },
}

fn unhex(what: &str, s: &str) -> Result<Hash, ReceiptError> {
    Hash::from_hex(s)
        .map_err(|_| ReceiptError::NotInBatch(format!("{what} {s:?} is not 64 hex digits")))
}

impl Receipt {
    /// This receipt's leaf in its commit's tree (see the module docs).
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.leaf_bytes().0)
    }

    /// The bytes of this receipt's leaf ([`RECEIPT_LEAF_PREFIX`] and the signed content), with
    /// where `batch` and `signature` go into the content to make the receipt's JSON.
    fn leaf_bytes(&self) -> LeafBytes {
        let mut bytes = Vec::with_capacity(512 + 160 * self.events.len());
        bytes.extend_from_slice(RECEIPT_LEAF_PREFIX);
        let splice = self.write_signed_content(&mut bytes);
        (bytes, splice)
    }

    /// The RFC 8785 canonical JSON of this receipt without `batch` and `signature`, written
    /// directly: members in JCS order (all keys are ASCII, so byte order is UTF-16 order), those
    /// serde skips skipped alike. The same bytes as `canonical_json` of its `serde_json::Value`
    /// (a test checks), without building that tree for every receipt a ledger signs or a
    /// publisher checks. Returns where, in `out`, the members `batch` and `signature` go to
    /// make the whole receipt's canonical JSON.
    fn write_signed_content(&self, out: &mut Vec<u8>) -> Splice {
        use crate::entry::{write_number, write_string};
        fn key(out: &mut Vec<u8>, first: &mut bool, k: &str) {
            if !std::mem::take(first) {
                out.push(b',');
            }
            write_string(out, k);
            out.push(b':');
        }
        fn list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                each(out, item);
            }
            out.push(b']');
        }
        fn rejection(out: &mut Vec<u8>, r: &ReceiptRejection) {
            let first = &mut true;
            out.push(b'{');
            for (k, v) in [
                ("code", &r.code),
                ("id", &r.id),
                ("path", &r.path),
                ("reason", &r.reason),
            ] {
                key(out, first, k);
                write_string(out, v);
            }
            out.push(b'}');
        }
        let first = &mut true;
        out.push(b'{');
        key(out, first, "agency");
        write_string(out, &self.agency);
        // JCS order: `batch` after `agency`, `signature` after `rejected`, before `syncs`.
        let batch = out.len();
        key(out, first, "checkpoint");
        write_string(out, &self.checkpoint);
        key(out, first, "events");
        list(out, &self.events, |out, e| {
            let first = &mut true;
            out.push(b'{');
            if e.duplicate {
                key(out, first, "duplicate");
                out.extend_from_slice(b"true");
            }
            key(out, first, "id");
            write_string(out, &e.id);
            key(out, first, "leaf_hash");
            write_string(out, &e.leaf_hash);
            key(out, first, "seq");
            write_number(out, e.seq as f64);
            out.push(b'}');
        });
        if !self.rejected.is_empty() {
            key(out, first, "rejected");
            list(out, &self.rejected, rejection);
        }
        let signature = out.len();
        if !self.syncs.is_empty() {
            key(out, first, "syncs");
            list(out, &self.syncs, |out, s| {
                let first = &mut true;
                out.push(b'{');
                key(out, first, "events");
                list(out, &s.events, |out, id| write_string(out, id));
                key(out, first, "id");
                write_string(out, &s.id);
                for (k, n) in [("more", s.more), ("more_rejected", s.more_rejected)] {
                    if n != 0 {
                        key(out, first, k);
                        write_number(out, n as f64);
                    }
                }
                if !s.rejected.is_empty() {
                    key(out, first, "rejected");
                    list(out, &s.rejected, rejection);
                }
                out.push(b'}');
            });
        }
        key(out, first, "v");
        write_number(out, f64::from(self.v));
        out.push(b'}');
        Splice { batch, signature }
    }

    /// The receipt's JSON from its signed content (`content[splice.batch..]` and so on, as
    /// [`Receipt::write_signed_content`] wrote it): the content with `batch` and `signature`
    /// put in their places, so the whole is RFC 8785 canonical too.
    fn json_from_content(
        content: &[u8],
        splice: Splice,
        batch: BatchJson<'_>,
        signature: &str,
    ) -> Vec<u8> {
        use crate::entry::{write_hash, write_number, write_string};
        let mut out = Vec::with_capacity(content.len() + 192 + 67 * batch.path.len());
        out.extend_from_slice(&content[..splice.batch]);
        out.extend_from_slice(b",\"batch\":{\"count\":");
        write_number(&mut out, batch.count as f64);
        out.extend_from_slice(b",\"index\":");
        write_number(&mut out, batch.index as f64);
        out.extend_from_slice(b",\"path\":[");
        for (i, h) in batch.path.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match h {
                Hex::Hash(h) => write_hash(&mut out, h),
                Hex::Text(t) => write_string(&mut out, t),
            }
        }
        out.extend_from_slice(b"],\"root\":");
        match batch.root {
            Hex::Hash(h) => write_hash(&mut out, &h),
            Hex::Text(t) => write_string(&mut out, t),
        }
        out.push(b'}');
        out.extend_from_slice(&content[splice.batch..splice.signature]);
        out.extend_from_slice(b",\"signature\":");
        write_string(&mut out, signature);
        out.extend_from_slice(&content[splice.signature..]);
        out
    }

    /// Whether every number of this receipt is below 2^53, which RFC 8785 (numbers as doubles)
    /// writes exactly: always, for seqs inside a real tree.
    fn numbers_exact(&self) -> bool {
        self.content_numbers_exact() && self.batch.index < EXACT && self.batch.count < EXACT
    }

    /// [`Receipt::numbers_exact`] of the signed content alone (all but `batch`).
    fn content_numbers_exact(&self) -> bool {
        self.events.iter().all(|e| e.seq < EXACT)
            && self
                .syncs
                .iter()
                .all(|s| s.more < EXACT && s.more_rejected < EXACT)
    }

    /// The bytes the signature covers: the same for every receipt of a commit.
    pub fn signed_bytes(checkpoint: &str, count: u64, root: &Hash) -> Vec<u8> {
        let mut bytes = RECEIPTS_SIGNING_PREFIX.to_vec();
        bytes.extend_from_slice(checkpoint.as_bytes());
        bytes.extend_from_slice(format!("{count} {root}\n").as_bytes());
        bytes
    }

    /// Signs a commit's receipts (all under the same checkpoint) with one signature: sets each
    /// one's `batch` and `signature`.
    pub fn sign_all(
        receipts: &mut [Receipt],
        signer: &CheckpointSigner,
    ) -> Result<(), CheckpointError> {
        let Some((_, signed)) = SignedBatch::new(receipts, signer)? else {
            return Ok(());
        };
        let root = signed.tree.root().to_string();
        for (i, r) in receipts.iter_mut().enumerate() {
            r.batch = ReceiptBatch {
                index: i as u64,
                count: signed.tree.size(),
                root: root.clone(),
                path: signed.path(i)?.iter().map(Hash::to_string).collect(),
            };
            r.signature = signed.signature.clone();
        }
        Ok(())
    }

    /// [`Receipt::sign_all`], returning each receipt's JSON (as [`Receipt::to_json`] would give
    /// after `sign_all`) and leaving the receipts as they are: what a ledger sends. Each receipt
    /// is serialized once, its leaf content made into its JSON in place.
    pub fn sign_all_json(
        receipts: &[Receipt],
        signer: &CheckpointSigner,
    ) -> Result<Vec<Vec<u8>>, CheckpointError> {
        let Some((leaves, signed)) = SignedBatch::new(receipts, signer)? else {
            return Ok(Vec::new());
        };
        let root = signed.tree.root();
        let mut out = Vec::with_capacity(receipts.len());
        for (i, (r, (bytes, splice))) in receipts.iter().zip(leaves).enumerate() {
            let path = signed.path(i)?;
            let batch = BatchJson {
                index: i as u64,
                count: signed.tree.size(),
                root: Hex::Hash(root),
                path: path.into_iter().map(Hex::Hash).collect(),
            };
            // Its own batch is the new one, not what `r.batch` held.
            if r.content_numbers_exact() && batch.count < EXACT {
                let content = &bytes[RECEIPT_LEAF_PREFIX.len()..];
                let splice = splice.after(RECEIPT_LEAF_PREFIX.len());
                out.push(Receipt::json_from_content(
                    content,
                    splice,
                    batch,
                    &signed.signature,
                ));
            } else {
                let mut r = r.clone();
                r.batch = batch.owned();
                r.signature = signed.signature.clone();
                out.push(serde_json::to_vec(&r).expect("a receipt always serializes"));
            }
        }
        Ok(out)
    }

    /// Signs one receipt alone (a batch of one).
    pub fn sign(&mut self, signer: &CheckpointSigner) -> Result<(), CheckpointError> {
        Receipt::sign_all(std::slice::from_mut(self), signer)
    }

    /// Checks everything a receipt claims with the log's published key: the checkpoint's
    /// signature, this receipt's place in its commit's batch, the batch's signature, and that
    /// every seq is inside the signed tree. Returns the signed tree head.
    pub fn verify(&self, verifier: &CheckpointVerifier) -> Result<SignedCheckpoint, ReceiptError> {
        self.verify_in(verifier, None)
    }

    /// [`Receipt::verify`] that skips the two signature checks (and parsing the checkpoint) when
    /// `seen` holds this receipt's checkpoint, batch size, root and signature, verified before
    /// (byte for byte equal), and remembers them when it verifies them now.
    fn verify_in(
        &self,
        verifier: &CheckpointVerifier,
        seen: Option<&SeenBatches>,
    ) -> Result<SignedCheckpoint, ReceiptError> {
        if self.v != RECEIPT_VERSION {
            return Err(ReceiptError::Version(self.v));
        }
        let root = unhex("batch root", &self.batch.root)?;
        let path = self
            .batch
            .path
            .iter()
            .map(|h| unhex("batch path hash", h))
            .collect::<Result<Vec<_>, _>>()?;
        verify_inclusion(
            &self.leaf_hash(),
            self.batch.index,
            self.batch.count,
            &path,
            &root,
        )
        .map_err(|e| ReceiptError::NotInBatch(e.to_string()))?;
        let known = seen.and_then(|seen| seen.find(self, &root));
        let signed = match known {
            Some(signed) => signed,
            None => {
                let signed = verifier.verify(&self.checkpoint)?;
                let signature = STANDARD
                    .decode(&self.signature)
                    .map_err(|_| ReceiptError::BadSignature(verifier.vkey().to_owned()))?;
                let signed_bytes = Receipt::signed_bytes(&self.checkpoint, self.batch.count, &root);
                if !verifier.verify_bytes(&signed_bytes, &signature) {
                    return Err(ReceiptError::BadSignature(verifier.vkey().to_owned()));
                }
                if let Some(seen) = seen {
                    seen.remember(self, root, &signed);
                }
                signed
            }
        };
        let size = signed.checkpoint.size;
        for event in &self.events {
            if event.seq >= size {
                return Err(ReceiptError::SeqBeyondTree {
                    id: event.id.clone(),
                    seq: event.seq,
                    size,
                });
            }
            if event.leaf_hash().is_none() {
                return Err(ReceiptError::BadLeafHash {
                    id: event.id.clone(),
                    leaf_hash: event.leaf_hash.clone(),
                });
            }
        }
        Ok(signed)
    }

    /// Parses a receipt (the JSON of a `dvc.receipts.<agency>` message).
    pub fn from_json(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        serde_json::from_slice(bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }

    /// The receipt's JSON (one line): RFC 8785 canonical, unless a number is too large for that
    /// to keep it exact (2^53 and up, never a seq of a real tree; then serde's plain JSON).
    pub fn to_json(&self) -> Vec<u8> {
        if !self.numbers_exact() {
            return serde_json::to_vec(self).expect("a receipt always serializes");
        }
        let mut content = Vec::with_capacity(512 + 160 * self.events.len());
        let splice = self.write_signed_content(&mut content);
        let batch = BatchJson {
            index: self.batch.index,
            count: self.batch.count,
            root: Hex::Text(&self.batch.root),
            path: self.batch.path.iter().map(|p| Hex::Text(p)).collect(),
        };
        Receipt::json_from_content(&content, splice, batch, &self.signature)
    }
}

/// Integers from this one up are not all exact as doubles (RFC 8785's numbers).
const EXACT: u64 = 1 << 53;

/// Where `batch` and `signature` go into a receipt's signed content (byte offsets: each member
/// goes in before the `,` found there).
#[derive(Debug, Clone, Copy)]
struct Splice {
    batch: usize,
    signature: usize,
}

impl Splice {
    /// The same places in the content once `prefix` bytes before it are cut off.
    fn after(self, prefix: usize) -> Splice {
        Splice {
            batch: self.batch - prefix,
            signature: self.signature - prefix,
        }
    }
}

/// A hash as the JSON string of its hex: from a [`Hash`], or a receipt's text as it is.
enum Hex<'a> {
    Hash(Hash),
    Text(&'a str),
}

/// A receipt's `batch` to write as JSON.
struct BatchJson<'a> {
    index: u64,
    count: u64,
    root: Hex<'a>,
    path: Vec<Hex<'a>>,
}

impl BatchJson<'_> {
    fn owned(&self) -> ReceiptBatch {
        let text = |h: &Hex<'_>| match h {
            Hex::Hash(h) => h.to_string(),
            Hex::Text(t) => (*t).to_owned(),
        };
        ReceiptBatch {
            index: self.index,
            count: self.count,
            root: text(&self.root),
            path: self.path.iter().map(text).collect(),
        }
    }
}

/// A commit's receipts, signed: their tree and the one signature.
struct SignedBatch {
    tree: LeafTree,
    signature: String,
}

/// A receipt's leaf bytes, and where `batch` and `signature` go into them.
type LeafBytes = (Vec<u8>, Splice);

impl SignedBatch {
    /// Signs a commit's receipts, which must all name the same checkpoint; with each one's leaf
    /// bytes. `None` if there are none.
    fn new(
        receipts: &[Receipt],
        signer: &CheckpointSigner,
    ) -> Result<Option<(Vec<LeafBytes>, SignedBatch)>, CheckpointError> {
        let Some(first) = receipts.first() else {
            return Ok(None);
        };
        if let Some(other) = receipts.iter().find(|r| r.checkpoint != first.checkpoint) {
            return Err(CheckpointError::Malformed(format!(
                "receipts of one batch name different checkpoints ({})",
                other.agency
            )));
        }
        let leaves: Vec<LeafBytes> = receipts.iter().map(Receipt::leaf_bytes).collect();
        let tree = LeafTree::new(leaves.iter().map(|(bytes, _)| leaf_hash(bytes)).collect());
        let signed = Receipt::signed_bytes(&first.checkpoint, tree.size(), &tree.root());
        let signature = STANDARD.encode(signer.sign_bytes(&signed)?);
        Ok(Some((leaves, SignedBatch { tree, signature })))
    }

    fn path(&self, index: usize) -> Result<Vec<Hash>, CheckpointError> {
        self.tree
            .path(index as u64)
            .map_err(|e| CheckpointError::Malformed(format!("receipts tree: {e}")))
    }
}

/// Verifies receipts with the log's key, checking each commit's two signatures once: receipts of
/// one commit share them, so a client answered by hundreds of receipts per commit (a gateway)
/// pays for one check. Remembers the last [`ReceiptVerifier::REMEMBERED`] commits.
#[derive(Debug)]
pub struct ReceiptVerifier {
    verifier: CheckpointVerifier,
    seen: SeenBatches,
}

/// The signed bytes of a commit's receipts, verified: what its signature covers (the checkpoint
/// note, kept in `signed.note`, the batch's size and root) and the signature itself, with the
/// signed tree head.
#[derive(Debug)]
struct SeenBatch {
    count: u64,
    root: Hash,
    signature: String,
    signed: SignedCheckpoint,
}

impl SeenBatch {
    /// Whether `receipt` (whose batch root is `root`) carries exactly these signed bytes and
    /// this signature.
    fn covers(&self, receipt: &Receipt, root: &Hash) -> bool {
        self.root == *root
            && self.count == receipt.batch.count
            && self.signature == receipt.signature
            && self.signed.note == receipt.checkpoint
    }
}

/// The last [`ReceiptVerifier::REMEMBERED`] commits whose signatures verified, newest last.
#[derive(Debug, Default)]
struct SeenBatches(std::sync::Mutex<std::collections::VecDeque<SeenBatch>>);

impl SeenBatches {
    /// The signed tree head of `receipt`'s batch, if its signed bytes and signature are those
    /// of a batch verified before (compared whole, not by a digest).
    fn find(&self, receipt: &Receipt, root: &Hash) -> Option<SignedCheckpoint> {
        let seen = self.0.lock().ok()?;
        // Newest first: a commit's receipts arrive together.
        seen.iter()
            .rev()
            .find(|b| b.covers(receipt, root))
            .map(|b| b.signed.clone())
    }

    fn remember(&self, receipt: &Receipt, root: Hash, signed: &SignedCheckpoint) {
        if let Ok(mut seen) = self.0.lock() {
            if seen.iter().any(|b| b.covers(receipt, &root)) {
                return; // another thread verified it meanwhile
            }
            while seen.len() >= ReceiptVerifier::REMEMBERED {
                seen.pop_front();
            }
            seen.push_back(SeenBatch {
                count: receipt.batch.count,
                root,
                signature: receipt.signature.clone(),
                signed: signed.clone(),
            });
        }
    }
}

impl ReceiptVerifier {
    pub const REMEMBERED: usize = 64;

    pub fn new(verifier: CheckpointVerifier) -> ReceiptVerifier {
        ReceiptVerifier {
            verifier,
            seen: SeenBatches::default(),
        }
    }

    pub fn verifier(&self) -> &CheckpointVerifier {
        &self.verifier
    }

    /// [`Receipt::verify`], with the signatures of a commit already seen not checked again.
    pub fn verify(&self, receipt: &Receipt) -> Result<SignedCheckpoint, ReceiptError> {
        receipt.verify_in(&self.verifier, Some(&self.seen))
    }
}

impl ReceiptEvent {
    /// The leaf hash, if it is 64 hex digits.
    pub fn leaf_hash(&self) -> Option<Hash> {
        Hash::from_hex(&self.leaf_hash).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use proptest::prelude::*;

    fn receipt(signer: &CheckpointSigner) -> Receipt {
        let head = signer
            .sign(&Checkpoint {
                origin: signer.name().to_owned(),
                size: 10,
                root: Hash([7; 32]),
            })
            .unwrap();
        let mut r = Receipt {
            v: RECEIPT_VERSION,
            agency: "000.00.12.H01".into(),
            checkpoint: head.note,
            events: vec![
                ReceiptEvent {
                    id: "a".into(),
                    seq: 9,
                    leaf_hash: hex::encode([1u8; 32]),
                    duplicate: false,
                },
                ReceiptEvent {
                    id: "b".into(),
                    seq: 2,
                    leaf_hash: hex::encode([2u8; 32]),
                    duplicate: true,
                },
            ],
            rejected: vec![ReceiptRejection {
                id: "c".into(),
                code: "schema_violation".into(),
                path: "/data/x".into(),
                reason: "must be a string".into(),
            }],
            syncs: Vec::new(),
            batch: ReceiptBatch::default(),
            signature: String::new(),
        };
        r.sign(signer).unwrap();
        r
    }

    /// The leaf content as the format defines it: the receipt's JSON value without `batch` and
    /// `signature`, canonicalized by the general RFC 8785 writer.
    fn signed_content_via_value(r: &Receipt) -> Vec<u8> {
        let mut content = serde_json::to_value(r).unwrap();
        let map = content.as_object_mut().unwrap();
        map.remove("batch");
        map.remove("signature");
        crate::entry::canonical_json(&content)
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9._-]{0,12}",
            any::<String>(),
            Just("Hồ sơ \"nộp\" trực tuyến\n\u{1}\u{7f}\u{e000}\u{10000}".to_owned()),
        ]
    }

    fn arb_rejection() -> impl Strategy<Value = ReceiptRejection> {
        (arb_text(), arb_text(), arb_text(), arb_text()).prop_map(|(id, code, path, reason)| {
            ReceiptRejection {
                id,
                code,
                path,
                reason,
            }
        })
    }

    /// Any u64, mostly below 2^53 (a seq of a real tree), around 2^53 often.
    fn arb_number() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..1 << 53,
            1 => (1u64 << 53) - 2..(1u64 << 53) + 2,
            1 => any::<u64>(),
        ]
    }

    fn arb_receipt() -> impl Strategy<Value = Receipt> {
        let event = (arb_text(), arb_number(), arb_text(), any::<bool>()).prop_map(
            |(id, seq, leaf_hash, duplicate)| ReceiptEvent {
                id,
                seq,
                leaf_hash,
                duplicate,
            },
        );
        let sync = (
            arb_text(),
            prop::collection::vec(arb_text(), 0..3),
            prop::collection::vec(arb_rejection(), 0..2),
            prop_oneof![Just(0u64), arb_number()],
            prop_oneof![Just(0u64), arb_number()],
        )
            .prop_map(|(id, events, rejected, more, more_rejected)| ReceiptSync {
                id,
                events,
                rejected,
                more,
                more_rejected,
            });
        (
            any::<u32>(),
            arb_text(),
            arb_text(),
            prop::collection::vec(event, 0..4),
            prop::collection::vec(arb_rejection(), 0..3),
            prop::collection::vec(sync, 0..3),
            (arb_number(), arb_number()),
        )
            .prop_map(
                |(v, agency, checkpoint, events, rejected, syncs, (index, count))| Receipt {
                    v,
                    agency,
                    checkpoint,
                    events,
                    rejected,
                    syncs,
                    batch: ReceiptBatch {
                        index,
                        count,
                        root: "r".into(),
                        path: vec!["p\"".into(), hex::encode([3u8; 32])],
                    },
                    signature: "s".into(),
                },
            )
    }

    proptest! {
        #[test]
        fn the_leaf_content_is_the_canonical_json_of_the_receipt_without_batch_and_signature(
            r in arb_receipt()
        ) {
            let mut direct = Vec::new();
            r.write_signed_content(&mut direct);
            prop_assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(signed_content_via_value(&r)).unwrap()
            );
        }

        #[test]
        fn a_receipts_json_reads_back_the_same_and_is_canonical_when_its_numbers_allow(
            r in arb_receipt()
        ) {
            let json = r.to_json();
            prop_assert_eq!(&Receipt::from_json(&json).unwrap(), &r);
            if r.numbers_exact() {
                let value = serde_json::to_value(&r).unwrap();
                prop_assert_eq!(
                    String::from_utf8(json).unwrap(),
                    String::from_utf8(serde_json_canonicalizer::to_vec(&value).unwrap()).unwrap()
                );
            }
        }

        #[test]
        fn sign_all_json_gives_what_sign_all_then_to_json_gives(
            receipts in prop::collection::vec(arb_receipt(), 1..6)
        ) {
            let signer = signer();
            let mut receipts = receipts;
            for r in &mut receipts {
                r.checkpoint = receipts_checkpoint();
            }
            let json = Receipt::sign_all_json(&receipts, &signer).unwrap();
            Receipt::sign_all(&mut receipts, &signer).unwrap();
            prop_assert_eq!(json.len(), receipts.len());
            for (r, json) in receipts.iter().zip(json) {
                prop_assert_eq!(String::from_utf8(json).unwrap(), String::from_utf8(r.to_json()).unwrap());
            }
        }
    }

    /// One key for the property tests (generating one per case would dominate their time).
    fn signer() -> CheckpointSigner {
        static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let skey = KEY.get_or_init(|| CheckpointSigner::generate("test.example/log").unwrap().1);
        CheckpointSigner::from_skey(skey).unwrap()
    }

    fn receipts_checkpoint() -> String {
        "test.example/log\n3\nAAAA\n".to_owned()
    }

    fn tampered(e: Result<SignedCheckpoint, ReceiptError>) -> bool {
        matches!(
            e,
            Err(ReceiptError::NotInBatch(_)) | Err(ReceiptError::BadSignature(_))
        )
    }

    #[test]
    fn a_signed_receipt_verifies_and_any_change_breaks_it() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.example/log").unwrap();
        let verifier = CheckpointVerifier::from_vkey(&vkey).unwrap();
        let r = receipt(&signer);
        let back = Receipt::from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.verify(&verifier).unwrap().checkpoint.size, 10);

        let mut moved = r.clone();
        moved.events[0].seq = 8;
        assert!(tampered(moved.verify(&verifier)));
        let mut renamed = r.clone();
        renamed.agency = "000.00.12.H02".into();
        assert!(tampered(renamed.verify(&verifier)));
        let mut hidden = r.clone();
        hidden.rejected.clear();
        assert!(tampered(hidden.verify(&verifier)));

        // Signed by another log's key: refused.
        let (other, _, _) = CheckpointSigner::generate("test.example/log").unwrap();
        let forged = receipt(&other);
        assert!(forged.verify(&verifier).is_err());

        // A seq outside the signed tree is refused even when signed.
        let mut beyond = r.clone();
        beyond.events[0].seq = 10;
        beyond.sign(&signer).unwrap();
        assert!(matches!(
            beyond.verify(&verifier),
            Err(ReceiptError::SeqBeyondTree {
                seq: 10,
                size: 10,
                ..
            })
        ));
        // Unknown members are refused, not ignored.
        let mut v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(Receipt::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
    }

    #[test]
    fn one_signature_covers_a_commits_receipts_and_each_proves_its_place() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.example/log").unwrap();
        let verifier = CheckpointVerifier::from_vkey(&vkey).unwrap();
        for n in [1usize, 2, 3, 7, 64, 100] {
            let mut batch: Vec<Receipt> = (0..n)
                .map(|i| {
                    let mut r = receipt(&signer);
                    r.agency = format!("000.00.12.H{i:02}");
                    r
                })
                .collect();
            Receipt::sign_all(&mut batch, &signer).unwrap();
            let cached = ReceiptVerifier::new(verifier.clone());
            for (i, r) in batch.iter().enumerate() {
                assert_eq!(r.batch.index, i as u64);
                assert_eq!(r.batch.count, n as u64);
                assert_eq!(r.signature, batch[0].signature, "one signature per commit");
                r.verify(&verifier).unwrap();
                cached.verify(r).unwrap();
                // Another receipt's place, or a changed receipt, does not verify, cached or not.
                let mut moved = r.clone();
                moved.batch.index = (i as u64 + 1) % n as u64;
                if n > 1 {
                    assert!(tampered(moved.verify(&verifier)));
                    assert!(tampered(cached.verify(&moved)));
                }
                let mut changed = r.clone();
                changed.events[0].seq = 3;
                assert!(tampered(cached.verify(&changed)));
                let mut resigned = r.clone();
                resigned.signature = batch[0].signature.replace('A', "B");
                if resigned.signature != r.signature {
                    assert!(tampered(cached.verify(&resigned)));
                }
            }
        }
    }

    #[test]
    fn the_signature_cache_answers_only_for_the_bytes_it_verified() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.example/log").unwrap();
        let cached = ReceiptVerifier::new(CheckpointVerifier::from_vkey(&vkey).unwrap());
        let mut a = vec![receipt(&signer), receipt(&signer)];
        a[1].agency = "000.00.12.H02".into();
        Receipt::sign_all(&mut a, &signer).unwrap();
        cached.verify(&a[0]).unwrap();
        // Another commit (tree size 11), validly signed, then its receipt with the first
        // commit's (cached) signature: the cache does not answer for it.
        let head = signer
            .sign(&Checkpoint {
                origin: signer.name().to_owned(),
                size: 11,
                root: Hash([8; 32]),
            })
            .unwrap();
        let mut b = a.clone();
        for r in &mut b {
            r.checkpoint = head.note.clone();
        }
        Receipt::sign_all(&mut b, &signer).unwrap();
        assert_eq!(cached.verify(&b[0]).unwrap().checkpoint.size, 11);
        let mut forged = b[1].clone();
        forged.signature = a[1].signature.clone();
        assert!(matches!(
            cached.verify(&forged),
            Err(ReceiptError::BadSignature(_))
        ));
        // Each commit is remembered once, however many of its receipts are checked.
        cached.verify(&a[1]).unwrap();
        cached.verify(&b[1]).unwrap();
        assert_eq!(cached.seen.0.lock().unwrap().len(), 2);
    }
}
